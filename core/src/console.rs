//! Console lines, the splitter every runtime uses to turn byte chunks into lines, and the
//! events a console subscriber receives.

use serde::{Deserialize, Serialize};

/// Which stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line of console output, without its line ending.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleLine {
    /// Source stream.
    pub stream: ConsoleStream,
    /// Text; invalid UTF-8 is replaced.
    pub text: String,
}

/// One thing a console subscriber sees: what the node agent publishes per server and the
/// console WebSocket sends, one JSON text message each (`{"type":"line","data":{..}}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum ConsoleEvent {
    /// A line of the server's output.
    Line(ConsoleLine),
    /// A resource sample.
    Stats(crate::runtime::ResourceStats),
    /// A lifecycle transition.
    State(crate::lifecycle::LifecycleEvent),
    /// A message from the agent (throttling, crashes, skipped lines, ...).
    Notice(String),
    /// A line of install output.
    Install(String),
}

/// Longest line kept whole; longer output is cut into pieces of this size so that a process
/// printing without newlines cannot grow memory without bound.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Splits chunks of bytes into lines, keeping the unfinished tail between chunks.
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// A splitter with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk; returns the lines it completes (`\n`, `\r\n` and lone `\r` end lines).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &byte in chunk {
            match byte {
                b'\n' => {
                    if self.pending.last() == Some(&b'\r') {
                        self.pending.pop();
                    }
                    lines.push(self.take());
                }
                _ => {
                    if self.pending.last() == Some(&b'\r') {
                        // A lone carriage return (progress bars) ends the line too.
                        self.pending.pop();
                        lines.push(self.take());
                    }
                    self.pending.push(byte);
                    if self.pending.len() >= MAX_LINE_BYTES {
                        lines.push(self.take());
                    }
                }
            }
        }
        lines
    }

    /// Returns the unfinished tail, if any (call when the stream ends).
    pub fn finish(&mut self) -> Option<String> {
        if self.pending.last() == Some(&b'\r') {
            self.pending.pop();
        }
        (!self.pending.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> String {
        let line = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_across_chunks_and_line_endings() {
        let mut s = LineSplitter::new();
        assert_eq!(s.push(b"hel"), Vec::<String>::new());
        assert_eq!(s.push(b"lo\r\nwor"), vec!["hello"]);
        assert_eq!(s.push(b"ld\n\nprogress 1\rprogress 2\r"), vec!["world", "", "progress 1"]);
        assert_eq!(s.push(b"\n"), vec!["progress 2"]);
        assert_eq!(s.push(b"tail"), Vec::<String>::new());
        assert_eq!(s.finish().as_deref(), Some("tail"));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn caps_line_length() {
        let mut s = LineSplitter::new();
        let lines = s.push(&vec![b'x'; MAX_LINE_BYTES * 2 + 5]);
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.len() == MAX_LINE_BYTES));
        assert_eq!(s.finish().map(|l| l.len()), Some(5));
    }
}
