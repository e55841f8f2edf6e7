//! Root-relative paths: how a user's path string and an archive entry name become a list of
//! plain components.
//!
//! This is the *lexical* half of confinement: it guarantees a [`RelPath`] has no `..`, `.`,
//! empty or NUL-bearing component and no root. The *physical* half (symlinks, races) is
//! [`super::confine`]; neither half alone is enough.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use super::error::{FilesError, Result};

/// Longest single name Linux accepts.
const MAX_NAME_BYTES: usize = 255;
/// Deepest user path accepted; the resolver holds one fd per level.
pub(crate) const MAX_DEPTH: usize = 256;

/// A normalized path below the server root: plain components only, possibly empty (the root).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct RelPath(Vec<OsString>);

impl RelPath {
    /// The root itself.
    pub(crate) fn root() -> Self {
        Self(Vec::new())
    }

    /// Parses a path from the API.
    ///
    /// - A leading `/` means the server root, as in Pterodactyl (`/config/a.yml`).
    /// - `\` is a separator too, so a Windows-style `..\..\x` is caught like `../../x`.
    /// - `.` and empty components are dropped; `..` removes the previous component and is
    ///   refused with [`FilesError::OutsideRoot`] when it would climb above the root. This is
    ///   lexical, like Go's `filepath.Clean` in Wings; symlinks are resolved afterwards,
    ///   physically, by the resolver.
    /// - NUL bytes and names over 255 bytes are refused. Nothing is percent-decoded: that is
    ///   the HTTP layer's job, done once.
    pub(crate) fn parse(input: &str) -> Result<Self> {
        if input.contains('\0') {
            return Err(FilesError::invalid(input.escape_default(), "contains a NUL byte"));
        }
        let mut parts: Vec<OsString> = Vec::new();
        for part in input.split(['/', '\\']) {
            match part {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Err(FilesError::outside(input));
                    }
                }
                name => {
                    if name.len() > MAX_NAME_BYTES {
                        return Err(FilesError::invalid(input, "a name is longer than 255 bytes"));
                    }
                    parts.push(OsString::from(name));
                }
            }
        }
        if parts.len() > MAX_DEPTH {
            return Err(FilesError::invalid(input, format!("deeper than {MAX_DEPTH} levels")));
        }
        Ok(Self(parts))
    }

    /// Parses an archive entry name, strictly: unlike API paths, an absolute name, a drive
    /// letter, or any `..` (even one that would stay inside) refuses the archive. `\` is a
    /// separator (old Windows zip tools). `Ok(None)` for a name that is only `./`.
    pub(crate) fn parse_entry(raw: &[u8], max_depth: usize) -> Result<Option<Self>> {
        let shown = String::from_utf8_lossy(raw);
        if raw.contains(&0) {
            return Err(FilesError::rejected(format!("entry `{}` contains a NUL byte", shown.escape_default())));
        }
        if raw.first().is_some_and(|b| *b == b'/' || *b == b'\\') {
            return Err(FilesError::rejected(format!("entry `{shown}` has an absolute path")));
        }
        if raw.len() >= 2 && raw[1] == b':' && raw[0].is_ascii_alphabetic() {
            return Err(FilesError::rejected(format!("entry `{shown}` has a drive-letter path")));
        }
        let mut parts = Vec::new();
        for part in raw.split(|b| *b == b'/' || *b == b'\\') {
            match part {
                b"" | b"." => {}
                b".." => return Err(FilesError::rejected(format!("entry `{shown}` contains `..`"))),
                name if name.len() > MAX_NAME_BYTES => {
                    return Err(FilesError::rejected(format!("entry `{shown}` has a name over 255 bytes")));
                }
                name => parts.push(OsString::from_vec(name.to_vec())),
            }
        }
        if parts.len() > max_depth {
            return Err(FilesError::rejected(format!("entry `{shown}` is deeper than {max_depth} levels")));
        }
        Ok(if parts.is_empty() { None } else { Some(Self(parts)) })
    }

    /// Builds a path from components already known to be plain names (from `readdir`).
    pub(crate) fn join(&self, name: &OsStr) -> Self {
        let mut parts = self.0.clone();
        parts.push(name.to_os_string());
        Self(parts)
    }

    /// `self` followed by every component of `other`.
    pub(crate) fn concat(&self, other: &RelPath) -> Self {
        let mut parts = self.0.clone();
        parts.extend(other.0.iter().cloned());
        Self(parts)
    }

    /// The components.
    pub(crate) fn components(&self) -> &[OsString] {
        &self.0
    }

    /// Whether this is the root itself.
    pub(crate) fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The last component, `None` for the root.
    pub(crate) fn file_name(&self) -> Option<&OsStr> {
        self.0.last().map(OsString::as_os_str)
    }

    /// Everything but the last component (the root for the root).
    pub(crate) fn parent(&self) -> RelPath {
        let mut parts = self.0.clone();
        parts.pop();
        Self(parts)
    }

    /// Whether `self` is `other` or lies below it.
    pub(crate) fn starts_with(&self, other: &RelPath) -> bool {
        self.0.len() >= other.0.len() && self.0[..other.0.len()] == other.0[..]
    }

    /// `self` with the prefix `base` removed; `None` when `self` is not below `base`.
    pub(crate) fn strip_prefix(&self, base: &RelPath) -> Option<RelPath> {
        self.starts_with(base).then(|| Self(self.0[base.0.len()..].to_vec()))
    }

    /// The path as a relative `PathBuf` (for glob matching and archive names).
    pub(crate) fn to_path_buf(&self) -> PathBuf {
        self.0.iter().collect()
    }

    /// The path as `/`-joined bytes.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        self.0.iter().map(|c| c.as_bytes()).collect::<Vec<_>>().join(&b'/')
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

/// Whether a symlink `target` stored at `link` (its own path) stays inside the root when read
/// lexically. Used before *creating* a symlink (archive entries, copies): the manager never
/// creates a link that points out on its face. It is no guarantee for chains (`a/l` →
/// `../m`, where `m` is itself a link leading elsewhere): confinement rests on the resolver,
/// which refuses every step out of the root.
pub(crate) fn symlink_target_is_confined(link: &RelPath, target: &[u8]) -> bool {
    if target.is_empty() || target.contains(&0) || target.first() == Some(&b'/') {
        return false;
    }
    let mut depth = link.components().len().saturating_sub(1);
    for part in target.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            _ => depth += 1,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(p: &str) -> String {
        RelPath::parse(p).map(|p| p.to_string()).unwrap_or_else(|e| format!("err:{}", e.code()))
    }

    #[test]
    fn parse_normalizes_and_refuses_escapes() {
        assert_eq!(shown("/config//a.yml/"), "config/a.yml");
        assert_eq!(shown("./a/./b"), "a/b");
        assert_eq!(shown("a/../b"), "b");
        assert_eq!(shown("a\\b"), "a/b");
        assert_eq!(shown(""), "");
        assert_eq!(shown("/"), "");
        assert_eq!(shown(".."), "err:outside_root");
        assert_eq!(shown("a/../../x"), "err:outside_root");
        assert_eq!(shown("..\\..\\x"), "err:outside_root");
        assert_eq!(shown("a\0b"), "err:invalid_path");
        assert_eq!(shown("%2e%2e/x"), "%2e%2e/x");
    }

    #[test]
    fn entries_are_strict() {
        let e = |raw: &[u8]| RelPath::parse_entry(raw, 8).map(|p| p.map(|p| p.to_string()));
        assert_eq!(e(b"./a/b").unwrap().as_deref(), Some("a/b"));
        assert_eq!(e(b"./").unwrap(), None);
        for bad in [&b"../x"[..], b"a/../b", b"/etc/passwd", b"\\x", b"C:/x", b"a\0b", b"1/2/3/4/5/6/7/8/9"] {
            assert!(e(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn symlink_targets_are_checked_lexically() {
        let link = RelPath::parse("a/b/link").unwrap();
        assert!(symlink_target_is_confined(&link, b"../c"));
        assert!(symlink_target_is_confined(&link, b"../../c"));
        assert!(!symlink_target_is_confined(&link, b"../../../c"));
        assert!(!symlink_target_is_confined(&link, b"/etc/passwd"));
        assert!(!symlink_target_is_confined(&link, b""));
    }
}
