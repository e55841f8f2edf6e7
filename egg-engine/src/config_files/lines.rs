//! Lines with their byte offsets, and splicing text back together without disturbing the
//! bytes around an edit (line terminators, a missing final newline).

use std::ops::Range;

/// One line of a text.
#[derive(Clone, Copy, Debug)]
pub(super) struct Line<'a> {
    /// Byte offset of the line's first character.
    pub start: usize,
    /// The line without its terminator (`\n` or `\r\n`).
    pub content: &'a str,
    /// Byte offset just past `content`.
    pub end: usize,
    /// Byte offset of the next line: `end` plus the terminator's length.
    pub next: usize,
}

impl Line<'_> {
    /// Leading spaces (tabs do not count: no indentation-based format allows them).
    pub fn indent(&self) -> usize {
        self.content.len() - self.content.trim_start_matches(' ').len()
    }

    /// Empty or only spaces and tabs.
    pub fn is_blank(&self) -> bool {
        self.content.trim().is_empty()
    }
}

/// Splits `text` into lines; a final newline does not start an empty last line.
pub(super) fn split_lines(text: &str) -> Vec<Line<'_>> {
    let mut lines = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let rest = &text[start..];
        let (content_len, terminator_len) = match rest.find('\n') {
            Some(newline) if rest[..newline].ends_with('\r') => (newline - 1, 2),
            Some(newline) => (newline, 1),
            None => (rest.len(), 0),
        };
        let end = start + content_len;
        lines.push(Line { start, content: &text[start..end], end, next: end + terminator_len });
        start = end + terminator_len;
    }
    lines
}

/// The file's line terminator, judged by its first line; `\n` for a single-line file.
pub(super) fn line_ending(text: &str) -> &'static str {
    match text.find('\n') {
        Some(newline) if text[..newline].ends_with('\r') => "\r\n",
        _ => "\n",
    }
}

/// Replacements of byte ranges of one text, applied together. The text they add is bounded
/// by [`MAX_CONFIG_BYTES`](super::MAX_CONFIG_BYTES): a long value written at every match of a
/// wildcard in a huge file would otherwise take memory without end; past the bound the edits
/// are dropped and [`apply`](Self::apply) refuses.
#[derive(Debug, Default)]
pub(super) struct Splices {
    edits: Vec<(Range<usize>, String)>,
    added: usize,
}

impl Splices {
    /// Replaces `range` with `text`. Ranges must not overlap; insertions (empty ranges) at the
    /// same offset keep their order.
    pub fn replace(&mut self, range: Range<usize>, text: impl Into<String>) {
        let text = text.into();
        self.added = self.added.saturating_add(text.len());
        if self.added <= super::MAX_CONFIG_BYTES {
            self.edits.push((range, text));
        }
    }

    /// Inserts `text` at `offset`.
    pub fn insert(&mut self, offset: usize, text: impl Into<String>) {
        self.replace(offset..offset, text);
    }

    /// Inserts `new_lines` (which may contain `eol` inside, but not at its end) as lines after
    /// `line`, keeping whether the file ends with a newline.
    pub fn insert_lines_after(&mut self, line: &Line<'_>, new_lines: &str, eol: &str) {
        if line.next > line.end {
            self.insert(line.next, format!("{new_lines}{eol}"));
        } else {
            self.insert(line.end, format!("{eol}{new_lines}"));
        }
    }

    /// Inserts `new_lines` as lines before `line`.
    pub fn insert_lines_before(&mut self, line: &Line<'_>, new_lines: &str, eol: &str) {
        self.insert(line.start, format!("{new_lines}{eol}"));
    }

    /// Appends `new_lines` as lines at the end of `text`, keeping whether it ends with a
    /// newline (an empty text gets one).
    pub fn append_lines(&mut self, text: &str, new_lines: &str, eol: &str) {
        if text.is_empty() || text.ends_with('\n') {
            self.insert(text.len(), format!("{new_lines}{eol}"));
        } else {
            self.insert(text.len(), format!("{eol}{new_lines}"));
        }
    }

    /// Nothing to change.
    pub fn is_empty(&self) -> bool {
        self.edits.is_empty()
    }

    /// The text with every edit applied, or [`PatchError::TooLarge`](super::PatchError) when
    /// the edits add more than a config file may hold.
    pub fn apply(mut self, text: &str) -> Result<String, super::PatchError> {
        let size = text.len().saturating_add(self.added);
        if self.added > super::MAX_CONFIG_BYTES || size > super::MAX_CONFIG_BYTES.saturating_mul(2) {
            return Err(super::PatchError::TooLarge(size));
        }
        // A stable sort keeps same-offset insertions in the order they were made.
        self.edits.sort_by_key(|(range, _)| range.start);
        let mut out = String::with_capacity(text.len() + self.edits.iter().map(|(_, t)| t.len()).sum::<usize>());
        let mut copied = 0;
        for (range, replacement) in &self.edits {
            let start = range.start.max(copied);
            out.push_str(&text[copied..start]);
            out.push_str(replacement);
            copied = range.end.max(start);
        }
        out.push_str(&text[copied..]);
        Ok(out)
    }
}

/// Where each line of a text starts, so that the line holding an offset is found by binary
/// search instead of by scanning back to the previous newline (which, repeated over the nodes
/// of a one-line file, would be quadratic).
pub(super) struct LineStarts(Vec<usize>);

impl LineStarts {
    pub fn new(text: &str) -> Self {
        Self(std::iter::once(0).chain(text.match_indices('\n').map(|(newline, _)| newline + 1)).collect())
    }

    /// The offset of the first character of the line holding `offset`.
    pub fn line_start(&self, offset: usize) -> usize {
        let after = self.0.partition_point(|&start| start <= offset);
        after.checked_sub(1).and_then(|line| self.0.get(line)).copied().unwrap_or(0)
    }
}

/// The 1-based line and column of a byte offset, for error messages.
pub(crate) fn position(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |tail| tail.chars().count()) + 1;
    format!("line {line}, column {column}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_terminators_outside_content() {
        let text = "a\r\nbb\n\nc";
        let lines = split_lines(text);
        let contents: Vec<_> = lines.iter().map(|l| l.content).collect();
        assert_eq!(contents, ["a", "bb", "", "c"]);
        assert_eq!(&text[lines[0].end..lines[0].next], "\r\n");
        assert_eq!(lines[3].end, lines[3].next);
        assert_eq!(split_lines("x\n").len(), 1);
        assert!(split_lines("").is_empty());
    }

    #[test]
    fn appending_keeps_final_newline_presence() {
        let mut with = Splices::default();
        with.append_lines("a\n", "b", "\n");
        assert_eq!(with.apply("a\n").unwrap(), "a\nb\n");
        let mut without = Splices::default();
        without.append_lines("a", "b", "\r\n");
        assert_eq!(without.apply("a").unwrap(), "a\r\nb");
    }

    #[test]
    fn line_starts_find_the_line_of_an_offset() {
        let text = "ab\ncd\n\ne";
        let starts = LineStarts::new(text);
        let found: Vec<usize> = (0..=text.len()).map(|offset| starts.line_start(offset)).collect();
        assert_eq!(found, [0, 0, 0, 3, 3, 3, 6, 7, 7]);
    }

    #[test]
    fn line_ending_follows_first_line() {
        assert_eq!(line_ending("a\r\nb\n"), "\r\n");
        assert_eq!(line_ending("a\nb\r\n"), "\n");
        assert_eq!(line_ending("a"), "\n");
    }
}
