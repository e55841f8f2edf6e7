//! Patching a server's config files before each start, the way Wings does for the egg's
//! `config.files` block, but byte-exact on everything that is not patched.
//!
//! [`apply`] takes one [`ConfigFile`] of an egg, the file's current text and a
//! [`ConfigContext`] (the facts placeholders resolve to) and returns the patched text. It is
//! pure: reading and writing the file is the caller's business, and an error means "write
//! nothing".
//!
//! Every parser edits the original text in place: it locates the byte range of each targeted
//! value and replaces only that range. Comments, key order, blank lines, indentation, quoting
//! style, line endings (CRLF or LF) and the presence of a final newline all survive. Nothing is
//! parsed and re-serialized.
//!
//! # Keys
//!
//! | parser | key syntax |
//! |---|---|
//! | `json`, `yaml`, `toml`, `xml` | dot path (`servers.lobby.address`), `[N]` indices (`listeners[0].host`), `*` for every child (`servers.*.address`); in JSON and YAML a numeric segment on an array is an index too (`servers.0.name`, as Wings); in XML the first segment is the root element |
//! | `properties` | the whole key, dots included (`query.port`) |
//! | `ini` | `section.key`; a key without a dot lives before the first section header; `[a.b].key` for section names with dots |
//! | `file` | a line prefix: every line starting with it is replaced whole (an empty key matches every line, as in Wings) |
//!
//! # Values
//!
//! - [`FindValue::Text`](nexus_core::model::FindValue::Text) may hold placeholders (see
//!   [`ConfigContext`]). In typed formats the text keeps the type of the value it replaces
//!   where it can (a port stays a number, a string stays a string); a key that is created gets
//!   a number when the text is an integer, like Wings does, and a string otherwise.
//! - In XML, a text value written `[name='value']` sets attribute `name` of the element instead
//!   of its text, as Wings does.
//! - [`FindValue::Scalar`](nexus_core::model::FindValue::Scalar) is written as a number or a
//!   boolean in JSON, YAML and TOML, and as its text elsewhere.
//! - [`FindValue::Match`](nexus_core::model::FindValue::Match) (Pterodactyl's `if_value`)
//!   replaces a value only when it equals a literal, or matches `regex:<pattern>` (then every
//!   match in the value is replaced, `$1` naming groups). The first matching rule wins. It
//!   never creates a key. With the `file` parser it is compared with the whole line.
//!
//! # Missing keys
//!
//! `Text` and `Scalar` values create missing keys: at the end of their table, object, mapping
//! or section (INI creates the section at the end of the file if needed; XML creates missing
//! child elements). Keys are never created through an index (`[N]`) or a wildcard (`*`): those
//! only address what exists. The `file` parser never adds lines.
//!
//! # Where this differs from Wings, on purpose
//!
//! - Typed values keep their type: Wings turns any integer-looking text into a number, which
//!   breaks string settings such as a numeric password; here only created keys get that.
//! - `Match` rules are honoured by every parser (Wings ignores `if_value` outside JSON and
//!   YAML), and an invalid `regex:` is an error (the daemon shows it on the console at start
//!   and leaves the file alone) instead of a logged no-op.
//! - With `file`, a line matching several keys gets the first key's value (Wings writes them
//!   all, run together).
//! - XML indices are 0-based like everywhere else.
//!
//! # Limits
//!
//! Config files are edited by tenants and eggs come from semi-trusted authors, so every parser
//! is bounded: a file larger than [`MAX_CONFIG_BYTES`] is refused ([`ConfigError::TooLarge`]),
//! so is one nested deeper than [`MAX_DEPTH`] ([`ConfigError::TooDeep`]; measured before any
//! parser that recurses per level sees the text), an egg file entry with more than
//! [`MAX_FIND_ENTRIES`] keys ([`ConfigError::TooManyEntries`]) and a key with more than
//! [`MAX_DEPTH`] segments ([`ConfigError::InvalidKey`]). Within those limits every parser is
//! linear (or n log n) in the size of the file, once per `find` entry.

mod escape;
mod file;
mod ini;
mod json;
mod key_path;
mod lines;
mod placeholders;
mod properties;
mod replacement;
mod toml;
mod xml;
mod yaml;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

use nexus_core::model::{ConfigFile, ConfigParser};
use replacement::{Replacement, ResolveError};

pub use placeholders::ConfigContext;

pub(crate) use lines::position;

/// Largest config file [`apply`] patches: 8 MiB. Real config files are a few KiB; the limit
/// only keeps a tenant's file from tying up the node.
pub const MAX_CONFIG_BYTES: usize = 8 * 1024 * 1024;

/// Deepest nesting [`apply`] accepts, in every format: objects and arrays (JSON), mappings,
/// sequences and flow collections (YAML), tables, arrays and inline tables (TOML), elements
/// (XML). Real config files stay below 10; 64 keeps the recursive parsers (toml_edit needs
/// about 25 KiB of stack per level in a debug build) well within a 2 MiB thread stack.
pub const MAX_DEPTH: usize = 64;

/// Most `find` entries one config file of an egg may have. Each entry re-reads the file (a
/// later entry sees what an earlier one wrote), so this bounds the work per file; real eggs
/// have at most 14.
pub const MAX_FIND_ENTRIES: usize = 64;

/// Why a config file could not be patched. Each variant names the file; those about one
/// `find` entry also name its key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The original file is not valid in the egg's format.
    #[error("config file `{path}` is not valid {parser}: {reason}")]
    Malformed {
        /// The file, relative to the server root.
        path: String,
        /// The parser named by the egg.
        parser: &'static str,
        /// What is wrong, with a position where known.
        reason: String,
    },
    /// A `regex:` match key is not a valid regular expression.
    #[error("config file `{path}`, key `{key}`: invalid regex `{pattern}`: {reason}")]
    InvalidRegex {
        /// The file, relative to the server root.
        path: String,
        /// The `find` key whose value holds the pattern.
        key: String,
        /// The pattern, without its `regex:` prefix.
        pattern: String,
        /// The regex engine's complaint.
        reason: String,
    },
    /// A value cannot be written in this format (an object in TOML, a newline in INI).
    #[error("config file `{path}`, key `{key}`: value cannot be written: {reason}")]
    UnwritableValue {
        /// The file, relative to the server root.
        path: String,
        /// The `find` key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The key is not a valid path for this parser.
    #[error("config file `{path}`: invalid key `{key}`: {reason}")]
    InvalidKey {
        /// The file, relative to the server root.
        path: String,
        /// The `find` key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The original file is larger than [`MAX_CONFIG_BYTES`], or patching it would make it
    /// grow past that (a long value written at every one of many matches).
    #[error("config file `{path}` is {size} bytes, more than the {limit} bytes a config file may have")]
    TooLarge {
        /// The file, relative to the server root.
        path: String,
        /// The file's size in bytes.
        size: usize,
        /// [`MAX_CONFIG_BYTES`].
        limit: usize,
    },
    /// The original file nests deeper than [`MAX_DEPTH`].
    #[error("config file `{path}` nests deeper than {limit} levels ({parser}: {position})")]
    TooDeep {
        /// The file, relative to the server root.
        path: String,
        /// The parser named by the egg.
        parser: &'static str,
        /// [`MAX_DEPTH`].
        limit: usize,
        /// Where the limit is first exceeded (line and column).
        position: String,
    },
    /// The original YAML file repeats so much through aliases that, expanded, it would weigh
    /// more than twice its size (a "billion laughs" document).
    #[error("config file `{path}` expands its YAML aliases past {limit} units, more than twice its own size")]
    ExpandsTooMuch {
        /// The file, relative to the server root.
        path: String,
        /// The budget it exceeded (a node costs one unit, a scalar one more per byte).
        limit: usize,
    },
    /// The egg's entry for this file has more than [`MAX_FIND_ENTRIES`] keys.
    #[error("config file `{path}` has {count} keys to patch, more than the {limit} allowed")]
    TooManyEntries {
        /// The file, relative to the server root.
        path: String,
        /// How many `find` entries the egg gives.
        count: usize,
        /// [`MAX_FIND_ENTRIES`].
        limit: usize,
    },
    /// The key addresses something that cannot be patched in place: a path through a scalar,
    /// a whole mapping, a flow-style YAML collection, an XML element with child elements.
    #[error("config file `{path}`, key `{key}`: cannot patch: {reason}")]
    CannotPatch {
        /// The file, relative to the server root.
        path: String,
        /// The `find` key.
        key: String,
        /// Why.
        reason: String,
    },
}

/// Patches `original`, the current text of `file.path`, with the file's `find` entries, in
/// the egg author's order (a later entry sees what an earlier one wrote).
///
/// Returns the new text; bytes outside the patched values are kept as they were. A leading
/// UTF-8 byte order mark is kept too.
///
/// # Errors
///
/// [`ConfigError`]: the original is too large, too deeply nested or does not parse in the
/// egg's format, the egg gives too many keys, a placeholder or regex is invalid, or a key
/// cannot be located or written. Nothing is partially applied.
pub fn apply(file: &ConfigFile, original: &str, ctx: &ConfigContext) -> Result<String, ConfigError> {
    if original.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge { path: file.path.clone(), size: original.len(), limit: MAX_CONFIG_BYTES });
    }
    if file.find.len() > MAX_FIND_ENTRIES {
        return Err(ConfigError::TooManyEntries {
            path: file.path.clone(),
            count: file.find.len(),
            limit: MAX_FIND_ENTRIES,
        });
    }
    let edits = file
        .find
        .iter()
        .map(|(key, value)| {
            Replacement::resolve(value, ctx)
                .map(|replacement| Edit { key, replacement })
                .map_err(|error| resolve_error(&file.path, key, error))
        })
        .collect::<Result<Vec<_>, _>>()?;

    // Windows-made files (Space Engineers, ARK) often start with a BOM; no parser wants it.
    const BOM: &str = "\u{feff}";
    let (bom, body) = match original.strip_prefix(BOM) {
        Some(body) => (BOM, body),
        None => ("", original),
    };

    let patched = match file.parser {
        ConfigParser::File => file::patch(body, &edits),
        ConfigParser::Properties => properties::patch(body, &edits),
        ConfigParser::Ini => ini::patch(body, &edits),
        ConfigParser::Json => json::patch(body, &edits),
        ConfigParser::Yaml => yaml::patch(body, &edits),
        ConfigParser::Xml => xml::patch(body, &edits),
        ConfigParser::Toml => toml::patch(body, &edits),
    }
    .map_err(|error| patch_error(file, error))?;

    Ok(format!("{bom}{patched}"))
}

/// One resolved `find` entry.
struct Edit<'a> {
    key: &'a str,
    replacement: Replacement,
}

impl Edit<'_> {
    /// The key as a dot path, for the parsers that take one (json, yaml, toml, xml).
    fn path(&self) -> Result<Vec<key_path::Segment>, PatchError> {
        key_path::parse(self.key).map_err(|reason| PatchError::invalid_key(self.key, reason))
    }
}

/// What a parser reports; [`apply`] adds the file's path.
#[derive(Debug)]
enum PatchError {
    Malformed(String),
    /// Nested deeper than [`MAX_DEPTH`]; the position of the first level too many.
    TooDeep(String),
    /// Expanded aliases weigh more than the budget given.
    ExpandsTooMuch(usize),
    /// Patched, the text would be this many bytes, more than a config file may hold.
    TooLarge(usize),
    InvalidKey {
        key: String,
        reason: String,
    },
    CannotPatch {
        key: String,
        reason: String,
    },
    UnwritableValue {
        key: String,
        reason: String,
    },
}

impl PatchError {
    fn invalid_key(key: &str, reason: impl Into<String>) -> Self {
        Self::InvalidKey { key: key.to_owned(), reason: reason.into() }
    }

    fn cannot_patch(key: &str, reason: impl Into<String>) -> Self {
        Self::CannotPatch { key: key.to_owned(), reason: reason.into() }
    }

    fn unwritable(key: &str, reason: impl Into<String>) -> Self {
        Self::UnwritableValue { key: key.to_owned(), reason: reason.into() }
    }

    /// `text` nests deeper than [`MAX_DEPTH`] at byte `offset`.
    fn too_deep(text: &str, offset: usize) -> Self {
        Self::TooDeep(position(text, offset))
    }
}

fn patch_error(file: &ConfigFile, error: PatchError) -> ConfigError {
    let path = file.path.clone();
    match error {
        PatchError::Malformed(reason) => ConfigError::Malformed { path, parser: file.parser.as_str(), reason },
        PatchError::TooDeep(position) => {
            ConfigError::TooDeep { path, parser: file.parser.as_str(), limit: MAX_DEPTH, position }
        }
        PatchError::ExpandsTooMuch(limit) => ConfigError::ExpandsTooMuch { path, limit },
        PatchError::TooLarge(size) => ConfigError::TooLarge { path, size, limit: MAX_CONFIG_BYTES },
        PatchError::InvalidKey { key, reason } => ConfigError::InvalidKey { path, key, reason },
        PatchError::CannotPatch { key, reason } => ConfigError::CannotPatch { path, key, reason },
        PatchError::UnwritableValue { key, reason } => ConfigError::UnwritableValue { path, key, reason },
    }
}

fn resolve_error(path: &str, key: &str, error: ResolveError) -> ConfigError {
    let (path, key) = (path.to_owned(), key.to_owned());
    match error {
        ResolveError::InvalidRegex { pattern, reason } => ConfigError::InvalidRegex { path, key, pattern, reason },
        ResolveError::UnsupportedValue(reason) => ConfigError::UnwritableValue { path, key, reason },
    }
}
