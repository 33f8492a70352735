//! Durations as people write them (`90s`, `2h`, `7d`, `1h30m`, `0.5`) and as the table shows
//! them (`3s`, `2m`, `5h`, `4d`). Every flag that takes a duration (`--interval`,
//! `--timeout`, `--older-than`) parses through here, so they all accept the same forms.

/// Seconds in `s`: a bare number is seconds; otherwise one or more `<number><unit>` parts
/// (`ms`, `s`, `m`, `h`, `d`) that add up. Fractions are allowed (`1.5h`). The result is
/// finite and not negative unless a bare negative number was given (callers say why that
/// is wrong for them).
pub fn parse_secs(s: &str) -> Result<f64, DurationError> {
    let t = s.trim();
    if let Ok(v) = t.parse::<f64>() {
        if !v.is_finite() {
            return Err(DurationError::NotFinite(s.to_owned()));
        }
        return Ok(v);
    }
    let bad = || DurationError::NotADuration(s.to_owned());
    let mut rest = t;
    let mut total = 0.0;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    if !total.is_finite() {
        return Err(bad());
    }
    Ok(total)
}

/// Why a text is not a duration; each holds the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    /// A number, but infinite or NaN.
    NotFinite(String),
    NotADuration(String),
}

impl std::fmt::Display for DurationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DurationError::NotFinite(s) => write!(f, "`{s}` is not a finite number of seconds"),
            DurationError::NotADuration(s) => write!(
                f,
                "`{s}` is not a duration (examples: 90, 90s, 1.5m, 2h, 7d, 1h30m)"
            ),
        }
    }
}

impl std::error::Error for DurationError {}

/// Coarse like `ps`'s TIME: "3s", "2m", "5h", "4d" (floored).
pub fn short(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humane_forms() {
        for (text, secs) in [
            ("90", 90.0),
            ("0.05", 0.05),
            ("90s", 90.0),
            ("1.5m", 90.0),
            ("2h", 7200.0),
            ("7d", 604_800.0),
            ("1h30m", 5400.0),
            ("250ms", 0.25),
            (" 2h ", 7200.0),
            ("-1", -1.0),
        ] {
            assert_eq!(parse_secs(text).unwrap(), secs, "{text}");
        }
        for bad in [
            "", "h", "2x", "2 h", "1h-3m", "inf", "NaN", "abc", "1..2s", "-2h",
        ] {
            assert!(parse_secs(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn short_forms() {
        assert_eq!(short(0), "0s");
        assert_eq!(short(3_999), "3s");
        assert_eq!(short(125_000), "2m");
        assert_eq!(short(5 * 3600 * 1000 + 1), "5h");
        assert_eq!(short(4 * 86_400 * 1000), "4d");
    }
}
