//! Where bash evaluates an expanded value as arithmetic.
//!
//! Inside `(( ))`, `$(( ))` and the numeric tests of `[[ ]]` (`-eq`, `-lt`, ...), bash treats
//! the *expanded* text of a variable as an arithmetic expression, and an arithmetic expression
//! may run commands (`a[$(cmd)]`). Quoting does not prevent it. So a placeholder used there is
//! only safe with a plain integer value; [`arithmetic_placeholders`] finds such placeholders
//! (conservatively: a name used there once is checked everywhere).

use super::scan::placeholder_at;

const NUMERIC_TESTS: [&str; 6] = ["-eq", "-ne", "-lt", "-le", "-gt", "-ge"];

/// Names of the placeholders inside arithmetic regions of `template`.
pub(crate) fn arithmetic_placeholders(template: &str) -> Vec<&str> {
    let mut names = Vec::new();
    for region in regions(template, "((", "))") {
        collect(region, &mut names);
    }
    for region in regions(template, "[[", "]]") {
        if region.split_whitespace().any(|token| NUMERIC_TESTS.contains(&token)) {
            collect(region, &mut names);
        }
    }
    names
}

/// Whether `value` is safe where bash evaluates arithmetic: empty (bash reads 0) or an integer.
pub(crate) fn is_arithmetic_safe(value: &str) -> bool {
    let digits = value.trim().trim_start_matches(['+', '-']);
    value.trim().is_empty() || (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// Every `open ... close` span (not nested; an unclosed one runs to the end).
fn regions<'a>(template: &'a str, open: &str, close: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find(open) {
        let inner = &rest[start + open.len()..];
        let end = inner.find(close).unwrap_or(inner.len());
        out.push(&inner[..end]);
        rest = &inner[end..];
    }
    out
}

fn collect<'a>(region: &'a str, names: &mut Vec<&'a str>) {
    let mut i = 0;
    while i < region.len() {
        if let Some((name, len)) = placeholder_at(region, i) {
            if !names.contains(&name) {
                names.push(name);
            }
            i += len;
        } else {
            i += region[i..].chars().next().map_or(1, char::len_utf8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_placeholders_in_arithmetic_only() {
        let t = r#"if [[ {{A}} -eq 1 ]]; then x; fi; echo $(( {{B}} + 1 )); (( {{C}} > 2 )); [[ "{{D}}" == "yes" ]]; echo {{E}}"#;
        assert_eq!(arithmetic_placeholders(t), vec!["B", "C", "A"]);
    }

    #[test]
    fn integer_values_only() {
        for ok in ["", "0", "1", "-3", "+42", " 7 "] {
            assert!(is_arithmetic_safe(ok), "{ok:?}");
        }
        for bad in ["a[$(id)]", "1+1", "x", "0x1f", "1 2", "-", "true"] {
            assert!(!is_arithmetic_safe(bad), "{bad:?}");
        }
    }
}
