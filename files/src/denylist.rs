//! The egg's `file_denylist`.
//!
//! # Semantics
//!
//! Patterns use `.gitignore` syntax, as Wings does: `*.jar` matches a name at any depth,
//! `config/secret.txt` (a pattern with an inner `/`) is anchored at the server root, a
//! trailing `/` matches directories only, `!pattern` re-allows. Matching is
//! **case-insensitive**, so `*.jar` also denies `Server.JAR` (a case-folding filesystem, or a
//! copy of the server on one, must not turn a case change into a bypass).
//!
//! A path is denied when it, or any directory above it, matches. Checks run on the
//! normalized path (so `./`, `//`, trailing `/` and `a/../` do not bypass them) and on the
//! canonical path after symlinks (so a link to a denied file is denied too). A denied path
//! cannot be read, written, created, renamed (from or to), copied (from or to), deleted or
//! chmod-ed, and an operation on a directory is refused when any entry below it is denied
//! (deleting or moving the parent would otherwise delete or move the denied file). Archive
//! extraction refuses an archive with any entry landing on a denied path; compression skips
//! denied files. Listing and `stat` still show denied entries (marked `denied`), as the panel
//! needs to display them.

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use super::error::{FilesError, Result};
use super::path::RelPath;

/// A compiled denylist; empty denies nothing.
pub(crate) struct Denylist {
    matcher: Option<Gitignore>,
}

impl Denylist {
    /// Compiles the patterns; a pattern that does not parse is a configuration error.
    pub(crate) fn new(patterns: &[String]) -> Result<Self> {
        if patterns.iter().all(|p| p.trim().is_empty()) {
            return Ok(Self { matcher: None });
        }
        // Root "." makes the matcher take our relative paths as they are.
        let mut builder = GitignoreBuilder::new(".");
        builder.case_insensitive(true).map_err(|e| FilesError::InvalidConfig { reason: format!("denylist: {e}") })?;
        for pattern in patterns {
            builder
                .add_line(None, pattern)
                .map_err(|e| FilesError::InvalidConfig { reason: format!("denylist pattern `{pattern}`: {e}") })?;
        }
        let matcher = builder.build().map_err(|e| FilesError::InvalidConfig { reason: format!("denylist: {e}") })?;
        Ok(Self { matcher: Some(matcher) })
    }

    /// Whether `path` (or a directory above it) is denied. The root itself never is.
    pub(crate) fn is_denied(&self, path: &RelPath, is_dir: bool) -> bool {
        match &self.matcher {
            Some(m) if !path.is_root() => m.matched_path_or_any_parents(path.to_path_buf(), is_dir).is_ignore(),
            _ => false,
        }
    }

    /// Whether the list is empty (lets walks skip descendant checks).
    pub(crate) fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// Refuses `path` with [`FilesError::Denied`] when denied.
    pub(crate) fn check(&self, path: &RelPath, is_dir: bool) -> Result<()> {
        if self.is_denied(path, is_dir) { Err(FilesError::Denied { path: path.to_string() }) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(list: &Denylist, p: &str, dir: bool) -> bool {
        list.is_denied(&RelPath::parse(p).unwrap(), dir)
    }

    #[test]
    fn gitignore_semantics_case_insensitive() {
        let list =
            Denylist::new(&["*.jar".into(), "config/secret.txt".into(), "logs/".into(), "!keep.jar".into()]).unwrap();
        assert!(denied(&list, "server.jar", false));
        assert!(denied(&list, "plugins/a/b.JAR", false));
        assert!(!denied(&list, "keep.jar", false));
        assert!(denied(&list, "config/secret.txt", false));
        assert!(denied(&list, "CONFIG/Secret.TXT", false));
        assert!(!denied(&list, "other/config/secret.txt", false));
        assert!(denied(&list, "logs", true));
        assert!(denied(&list, "logs/latest.log", false));
        assert!(!denied(&list, "logs", false));
        assert!(!denied(&list, "", true));
        assert!(!Denylist::new(&[]).unwrap().is_denied(&RelPath::parse("x.jar").unwrap(), false));
    }
}
