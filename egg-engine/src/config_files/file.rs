//! The `file` parser: plain text, where each `find` key is a line prefix and every line that
//! starts with it is replaced whole by the value. Nothing is ever added.

use super::lines::split_lines;
use super::{Edit, PatchError};

/// Replaces matching lines. A line is compared with each key in the egg's order and replaced by
/// the first that applies (for a match value: whose rule matches the whole line). Keys are
/// compared with the raw line, leading spaces included (the Krypton egg relies on `"  port"`).
/// Line terminators are kept; the value is written as given, even with newlines inside. An
/// empty key is a prefix of every line, as in Wings (`bytes.HasPrefix(line, "")`): eggs whose
/// settings file holds a single value use it to replace that line.
pub(super) fn patch(text: &str, edits: &[Edit<'_>]) -> Result<String, PatchError> {
    let mut out = String::with_capacity(text.len());
    for line in split_lines(text) {
        let replacement = edits
            .iter()
            .filter(|edit| line.content.starts_with(edit.key))
            .find_map(|edit| edit.replacement.next_value(line.content));
        match replacement {
            Some(value) => out.push_str(&value.text()),
            None => out.push_str(line.content),
        }
        out.push_str(&text[line.end..line.next]);
        // A long value on every line of a huge file would grow without end.
        if out.len() > super::MAX_CONFIG_BYTES.saturating_mul(2) {
            return Err(PatchError::TooLarge(out.len()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_files::replacement::Replacement;
    use crate::config_files::test_support::set;
    use nexus_core::model::FindValue;

    #[test]
    fn replaces_prefixed_lines_and_keeps_terminators() {
        let text = "sv_port 8303\r\nsv_name \"old\"\r\n# sv_port is the port\r\nsv_port_extra 1";
        let out = patch(text, &[set("sv_port", "sv_port 8304"), set("sv_name", "sv_name \"new\"")]).unwrap();
        assert_eq!(out, "sv_port 8304\r\nsv_name \"new\"\r\n# sv_port is the port\r\nsv_port 8304");
    }

    #[test]
    fn first_applicable_key_wins_and_nothing_is_added() {
        let text = "port = 1\nbind-address = x\n";
        let out = patch(text, &[set("port", "port = 2"), set("port", "port = 3"), set("missing", "x")]).unwrap();
        assert_eq!(out, "port = 2\nbind-address = x\n");
    }

    #[test]
    fn match_values_compare_the_whole_line() {
        let ctx = crate::config_files::ConfigContext::new("127.0.0.1:1".parse().unwrap(), 0);
        let rule = FindValue::Match(vec![("regex:^level=(\\d+)$".into(), "level=$1$1".into())]);
        let edits = [Edit { key: "level", replacement: Replacement::resolve(&rule, &ctx).unwrap() }];
        assert_eq!(patch("level=4\nlevel=x\n", &edits).unwrap(), "level=44\nlevel=x\n");
    }

    /// Found on a real egg whose settings file holds one value: Wings replaces every line.
    #[test]
    fn empty_prefix_replaces_every_line() {
        assert_eq!(patch("old-token\n", &[set("", "new-token")]).unwrap(), "new-token\n");
        assert_eq!(patch("a\r\nb", &[set("", "x")]).unwrap(), "x\r\nx");
        assert_eq!(patch("", &[set("", "x")]).unwrap(), "");
    }
}
