//! Text from records, made safe to print. A record's strings (`backend`, unknown keys, the
//! parse errors that quote them) are untrusted: a line feed would add a row to `ps`'s table,
//! and ESC, CSI or OSC sequences would reach the terminal. `--json` and `--prom` escape by
//! their own formats; this is for the table and for messages on stderr.

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
}
