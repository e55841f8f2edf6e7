//! [`DoneWatcher`]: the egg's `done` matchers, compiled once per start.

use super::error::AgentError;
use nexus_core::model::DoneMatcher;
use regex::RegexSet;

/// Decides whether a console line means "the server is up".
///
/// A line matches when it contains any substring matcher or matches any regex matcher. With
/// no matchers at all the server counts as up as soon as its process starts
/// ([`is_empty`](Self::is_empty)).
#[derive(Clone, Debug, Default)]
pub struct DoneWatcher {
    substrings: Vec<String>,
    regexes: Option<RegexSet>,
}

impl DoneWatcher {
    /// Compiles `matchers`; a regex that does not compile is an [`AgentError::InvalidSpec`]
    /// naming it.
    pub fn new(matchers: &[DoneMatcher]) -> Result<Self, AgentError> {
        let mut substrings = Vec::new();
        let mut patterns = Vec::new();
        for matcher in matchers {
            match matcher {
                DoneMatcher::Substring(text) => substrings.push(text.clone()),
                DoneMatcher::Regex(pattern) => {
                    // Compiled alone first so the error names the pattern at fault.
                    regex::Regex::new(pattern)
                        .map_err(|e| AgentError::InvalidSpec(format!("done pattern `{pattern}`: {e}")))?;
                    patterns.push(pattern.clone());
                }
            }
        }
        let regexes = if patterns.is_empty() {
            None
        } else {
            Some(RegexSet::new(&patterns).map_err(|e| AgentError::InvalidSpec(format!("done patterns: {e}")))?)
        };
        Ok(Self { substrings, regexes })
    }

    /// Like [`new`](Self::new), but a regex that does not compile is matched as plain text.
    /// Used for specs restored from disk, which were checked when they arrived: a server must
    /// not become unmanageable because a later regex engine refuses an old pattern.
    pub fn lenient(matchers: &[DoneMatcher]) -> Self {
        let fixed: Vec<DoneMatcher> = matchers
            .iter()
            .map(|m| match m {
                DoneMatcher::Regex(p) if regex::Regex::new(p).is_err() => {
                    tracing::warn!(pattern = %p, "done regex does not compile; matching it as text");
                    DoneMatcher::Substring(p.clone())
                }
                other => other.clone(),
            })
            .collect();
        Self::new(&fixed).unwrap_or_default()
    }

    /// True when there is nothing to wait for.
    pub fn is_empty(&self) -> bool {
        self.substrings.is_empty() && self.regexes.is_none()
    }

    /// Whether `line` means the server is up.
    pub fn matches(&self, line: &str) -> bool {
        self.substrings.iter().any(|s| line.contains(s.as_str()))
            || self.regexes.as_ref().is_some_and(|r| r.is_match(line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substring_and_regex() {
        let w = DoneWatcher::new(&[
            DoneMatcher::Substring("Done (".into()),
            DoneMatcher::Regex(r"^\[\d+:\d+\] server ready on port \d+$".into()),
        ])
        .unwrap();
        assert!(!w.is_empty());
        assert!(w.matches("[12:00:01 INFO]: Done (3.2s)! For help, type \"help\""));
        assert!(w.matches("[12:01] server ready on port 27015"));
        assert!(!w.matches("[12:01] server ready on port x"));
        assert!(!w.matches("Loading world"));
    }

    #[test]
    fn empty_means_ready_at_start() {
        let w = DoneWatcher::new(&[]).unwrap();
        assert!(w.is_empty());
        assert!(!w.matches("anything"));
    }

    #[test]
    fn bad_regex_is_named() {
        let err = DoneWatcher::new(&[DoneMatcher::Regex("(unclosed".into())]).unwrap_err();
        assert!(matches!(err, AgentError::InvalidSpec(ref m) if m.contains("(unclosed")), "{err}");
        let lenient = DoneWatcher::lenient(&[DoneMatcher::Regex("(unclosed".into())]);
        assert!(lenient.matches("x (unclosed y"));
    }
}
