//! The few PHP behaviours Laravel's rules rest on.

/// Characters PHP's `trim()` removes.
const TRIM: &[char] = &[' ', '\t', '\n', '\r', '\0', '\x0B'];

/// Whitespace PHP 8 allows around a numeric string.
const NUMERIC_WHITESPACE: &[char] = &[' ', '\t', '\n', '\r', '\x0B', '\x0C'];

/// PHP `trim()`.
pub(crate) fn trim(s: &str) -> &str {
    s.trim_matches(TRIM)
}

/// PHP 8 `is_numeric()` on a string, returning its value: optional surrounding whitespace, an
/// optional sign, decimal digits with an optional fraction (`5.`, `.5`) and exponent. No hex,
/// no `inf`/`nan`.
pub(crate) fn numeric_value(s: &str) -> Option<f64> {
    let core = s.trim_matches(NUMERIC_WHITESPACE);
    let bytes = core.as_bytes();
    let mut i = 0;
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let int_digits = count_digits(&bytes[i..]);
    i += int_digits;
    let mut frac_digits = 0;
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = count_digits(&bytes[i..]);
        i += frac_digits;
    }
    if int_digits + frac_digits == 0 {
        return None;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(bytes.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let exp_digits = count_digits(&bytes[j..]);
        if exp_digits == 0 {
            return None;
        }
        i = j + exp_digits;
    }
    if i != bytes.len() {
        return None;
    }
    core.parse::<f64>().ok()
}

fn count_digits(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// `filter_var($v, FILTER_VALIDATE_INT) !== false`, which Laravel's `integer` uses: optional
/// surrounding whitespace, optional sign, no leading zeros, within the 64-bit range.
pub(crate) fn is_integer(s: &str) -> bool {
    let core = s.trim_matches(&[' ', '\t', '\n', '\r', '\x0B'][..]);
    let digits = core.strip_prefix(['+', '-']).unwrap_or(core);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return false;
    }
    let signed = core.strip_prefix('+').unwrap_or(core);
    signed.parse::<i64>().is_ok()
}

/// PHP 8 loose `==` between two strings: equal text, or both numeric with equal values.
pub(crate) fn loose_eq(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (numeric_value(a), numeric_value(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// PHP `str_getcsv()` with the defaults Laravel uses for rule parameters: `,` separates,
/// `"` quotes, `""` inside quotes is one quote. Nothing is trimmed.
pub(crate) fn str_getcsv(s: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = s.chars().peekable();
    let mut in_quotes = false;
    let mut at_field_start = true;
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            ',' => {
                fields.push(std::mem::take(&mut field));
                at_field_start = true;
                continue;
            }
            '"' if at_field_start => in_quotes = true,
            other => field.push(other),
        }
        at_field_start = false;
    }
    fields.push(field);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_strings() {
        for ok in ["0", "5", "-5", "+5", "1.5", ".5", "5.", "1e3", "1E-3", " 5", "5 ", "\t-0.0\n", "007"] {
            assert!(numeric_value(ok).is_some(), "{ok:?}");
        }
        for bad in ["", " ", "abc", "0x1A", "1e", "e3", ".", "-", "inf", "NaN", "1,000", "5 5", "1.2.3"] {
            assert!(numeric_value(bad).is_none(), "{bad:?}");
        }
        assert_eq!(numeric_value("1e3"), Some(1000.0));
    }

    #[test]
    fn integers() {
        for ok in ["0", "5", "-5", "+5", " 12 ", "65535", "9223372036854775807", "-9223372036854775808"] {
            assert!(is_integer(ok), "{ok:?}");
        }
        for bad in ["", "05", "1.0", "1e3", "abc", "9223372036854775808", "--1", "+", "1 2"] {
            assert!(!is_integer(bad), "{bad:?}");
        }
    }

    #[test]
    fn csv() {
        assert_eq!(str_getcsv("a,b"), ["a", "b"]);
        assert_eq!(str_getcsv(",beta"), ["", "beta"]);
        assert_eq!(str_getcsv(""), [""]);
        assert_eq!(str_getcsv(r#""a,b",c"#), ["a,b", "c"]);
        assert_eq!(str_getcsv(r#""say ""hi""",x"#), [r#"say "hi""#, "x"]);
        assert_eq!(str_getcsv("a, b"), ["a", " b"]);
    }

    #[test]
    fn loose_equality() {
        assert!(loose_eq("1", "01"));
        assert!(loose_eq("1e1", "10"));
        assert!(!loose_eq("abc", "ABC"));
        assert!(loose_eq("", ""));
        assert!(!loose_eq("", "0"));
    }
}
