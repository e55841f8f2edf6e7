use crate::rules::RuleError;

/// Why an egg file could not be imported. Every variant names the offending part.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// Neither valid JSON nor valid YAML.
    #[error("not a valid {format} egg file: {message}")]
    Syntax {
        /// `JSON` or `YAML`.
        format: &'static str,
        /// Parser message with position.
        message: String,
    },
    /// The egg file is larger than [`MAX_EGG_BYTES`](super::MAX_EGG_BYTES).
    #[error("egg file is {size} bytes, more than the {limit} bytes an egg may have")]
    TooLarge {
        /// The file's size in bytes.
        size: usize,
        /// [`MAX_EGG_BYTES`](super::MAX_EGG_BYTES).
        limit: usize,
    },
    /// The egg file, or JSON embedded in one of its fields, nests deeper than
    /// [`MAX_EGG_DEPTH`](super::MAX_EGG_DEPTH).
    #[error("egg nests deeper than {limit} levels ({location})")]
    TooDeep {
        /// Where: a line and column of the file, or the field holding embedded JSON.
        location: String,
        /// [`MAX_EGG_DEPTH`](super::MAX_EGG_DEPTH).
        limit: usize,
    },
    /// The YAML egg repeats so much through aliases that, expanded, it would weigh more than
    /// twice its size (a "billion laughs" document).
    #[error("egg expands its YAML aliases past {limit} units, more than twice its own size")]
    ExpandsTooMuch {
        /// The budget it exceeded (a node costs one unit, a scalar one more per byte).
        limit: usize,
    },
    /// The top level is not an object.
    #[error("an egg file must be an object at the top level")]
    NotAnObject,
    /// `meta.version` is missing or not one of the known formats.
    #[error("unsupported egg format `{0}` (expected PTDL_v1, PTDL_v2, PLCN_v1, PLCN_v2 or PLCN_v3)")]
    UnsupportedVersion(String),
    /// A required field is absent.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A field has the wrong shape.
    #[error("field `{field}`: {message}")]
    InvalidField {
        /// Dotted field path.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A config file names a parser Nexus does not know.
    #[error("config file `{path}`: unknown parser `{parser}`")]
    UnknownParser {
        /// The config file.
        path: String,
        /// The parser name given.
        parser: String,
    },
    /// A `done` matcher is an invalid regular expression.
    #[error("done matcher `{pattern}` is not a valid regular expression: {message}")]
    InvalidDoneRegex {
        /// The pattern without `regex:`.
        pattern: String,
        /// Compiler message.
        message: String,
    },
    /// A variable's environment name is not a valid identifier.
    #[error("variable `{0}`: environment name must match [A-Za-z_][A-Za-z0-9_]*")]
    InvalidVariableName(String),
    /// A variable uses a name the platform sets itself.
    #[error("variable `{0}` uses a reserved name (set by the platform for every server)")]
    ReservedVariable(String),
    /// Two variables share an environment name.
    #[error("variable `{0}` is defined twice")]
    DuplicateVariable(String),
    /// A variable's rules do not parse.
    #[error("variable `{variable}`: {source}")]
    InvalidRule {
        /// The variable's environment name.
        variable: String,
        /// The rule error.
        #[source]
        source: RuleError,
    },
}
