//! Double-quoted strings with backslash escapes, as JSON, TOML basic strings and YAML
//! double-quoted scalars write them. The formats agree on `\"`, `\\`, `\n`, `\r` and `\t` and
//! differ in a few details, which each format states in a [`DoubleQuoted`].

/// How one format escapes the characters of a double-quoted string beyond the escapes all of
/// them share (`\"`, `\\`, `\n`, `\r`, `\t`).
pub(super) struct DoubleQuoted {
    /// Further single-letter escapes: the character and the letter after the backslash.
    pub short: &'static [(char, char)],
    /// The characters left that must be written as `\uXXXX`; every other one is written as is.
    pub unicode: fn(char) -> bool,
    /// Hex digits of `\uXXXX` in upper case (`\u001B`) rather than lower case (`\u001b`).
    pub upper_hex: bool,
}

impl DoubleQuoted {
    /// `text` in double quotes, escaped so the format reads back exactly `text`.
    pub fn quote(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len() + 2);
        out.push('"');
        for c in text.chars() {
            let letter = match c {
                '"' => Some('"'),
                '\\' => Some('\\'),
                '\n' => Some('n'),
                '\r' => Some('r'),
                '\t' => Some('t'),
                c => self.short.iter().find(|(escaped, _)| *escaped == c).map(|(_, letter)| *letter),
            };
            match letter {
                Some(letter) => {
                    out.push('\\');
                    out.push(letter);
                }
                None if (self.unicode)(c) && self.upper_hex => out.push_str(&format!("\\u{:04X}", u32::from(c))),
                None if (self.unicode)(c) => out.push_str(&format!("\\u{:04x}", u32::from(c))),
                None => out.push(c),
            }
        }
        out.push('"');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOWER: DoubleQuoted = DoubleQuoted { short: &[('\0', '0')], unicode: char::is_control, upper_hex: false };

    #[test]
    fn shared_escapes_come_first_then_the_format_s_own() {
        assert_eq!(LOWER.quote("a\"b\\c\nd\re\tf\0g"), r#""a\"b\\c\nd\re\tf\0g""#);
        assert_eq!(LOWER.quote("\x1b\u{9f}é"), "\"\\u001b\\u009fé\"");
        let upper = DoubleQuoted { upper_hex: true, ..LOWER };
        assert_eq!(upper.quote("\x1b"), "\"\\u001B\"");
    }
}
