//! Text from records, made safe to print. A record's strings (`backend`, unknown keys, the
//! parse errors that quote them) are untrusted: a line feed would add a row to `ps`'s table,
//! and ESC, CSI or OSC sequences would reach the terminal. `--prom` prints no record strings;
//! `--json` escapes by its format, finished here for what serde_json leaves raw.

use std::borrow::Cow;

/// `s` with every control character (C0, DEL, C1) written as `\xNN`, and the Unicode line
/// separators and bidirectional overrides (which reorder or break what a terminal shows)
/// as `\u{NNNN}`. Plain text comes back borrowed.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// JSON text as serde_json writes it, with DEL, C1 and the characters [`printable`] escapes
/// also written as `\uXXXX` (serde_json escapes only C0). A parser reads the same values, and
/// a terminal shown the raw JSON acts on none of them. JSON is ASCII outside its strings, so
/// each of these characters is inside one, where the escape is valid.
pub fn json_safe(json: String) -> String {
    // C0 is escaped in strings already; outside them it is the layout's own line feeds.
    let raw = |c: char| c >= ' ' && needs_escape(c);
    // A fleet's JSON is megabytes: bytes first. DEL is 0x7f, and every other character that
    // needs it (U+0080–U+009F, U+2028–U+2069) starts with 0xc2 or 0xe2 in UTF-8.
    if !json.bytes().any(|b| matches!(b, 0x7f | 0xc2 | 0xe2)) || !json.chars().any(raw) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if raw(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

fn needs_escape(c: char) -> bool {
    // `is_control` is Unicode's Cc: exactly C0, DEL and C1.
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_plain_text_kept() {
        assert!(matches!(printable("pidfd"), Cow::Borrowed("pidfd")));
        assert_eq!(printable("a\nb"), "a\\x0ab");
        assert_eq!(printable("\x1b[2J\u{7f}\u{9b}"), "\\x1b[2J\\x7f\\x9b");
        assert_eq!(printable("x\u{202e}y\u{2028}"), "x\\u{202e}y\\u{2028}");
        assert_eq!(printable("é✓"), "é✓");
        for c in (0..0x20).chain(0x7f..0xa0).filter_map(char::from_u32) {
            assert!(
                !printable(&c.to_string()).chars().any(char::is_control),
                "{c:?}"
            );
        }
    }

    #[test]
    fn json_keeps_its_values_and_loses_its_controls() {
        let v = serde_json::json!({"k\u{9b}": "a\u{7f}\u{1b}\u{202e}é"});
        let text = json_safe(format!("[\n{v}\n]"));
        assert!(
            !text.chars().any(|c| c != '\n' && needs_escape(c)),
            "{text}"
        );
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, serde_json::Value::Array(vec![v]));
    }
}
