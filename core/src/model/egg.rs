use crate::ids::{EggId, NestId};
use serde::{Deserialize, Serialize};

/// A normalized egg: one shape for every Pterodactyl (`PTDL_v1`, `PTDL_v2`) and Pelican
/// (`PLCN_v1`..`PLCN_v3`) source format. Import and export live in `nexus-eggs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Egg {
    /// Identifier in this panel.
    pub id: EggId,
    /// The nest it is grouped in, if any.
    #[serde(default)]
    pub nest: Option<NestId>,
    /// The egg's own UUID where the source carried one (Pelican), kept for updates.
    pub source_uuid: Option<String>,
    /// Format the egg was imported from.
    pub source_format: EggSourceFormat,
    /// Display name.
    pub name: String,
    /// Author (an e-mail address by convention).
    pub author: String,
    /// Description.
    pub description: String,
    /// Where the egg's newest version can be fetched.
    pub update_url: Option<String>,
    /// Icon as a data URL (Pelican).
    pub icon: Option<String>,
    /// Export timestamp of the source, verbatim.
    pub exported_at: Option<String>,
    /// Free labels.
    pub tags: Vec<String>,
    /// Panel features the egg asks for (`eula`, `java_version`, `steam_disk_space`).
    pub features: EggFeatures,
    /// Container images the server may run, in the author's order; the first is the default.
    pub images: Vec<EggImage>,
    /// Files users may not touch through the file manager (glob patterns).
    pub file_denylist: Vec<String>,
    /// Template layers every server of this egg gets after its install script, before the
    /// server's own (Nexus' addition; not part of exported egg files).
    #[serde(default)]
    pub templates: Vec<crate::template::LayerRef>,
    /// Startup commands, labelled; the first is the default.
    pub startup_commands: Vec<EggStartup>,
    /// Config files patched before each start.
    pub config_files: Vec<ConfigFile>,
    /// Console lines that mean "the server is up". Empty: up as soon as the process runs.
    pub done: Vec<DoneMatcher>,
    /// How to ask the server to stop.
    pub stop: StopMethod,
    /// The legacy `config.logs` block, kept verbatim for export.
    pub logs: serde_json::Value,
    /// Installation script.
    pub install: EggScript,
    /// User-facing variables, in display order.
    pub variables: Vec<EggVariable>,
}

impl Egg {
    /// The default startup command.
    pub fn default_startup(&self) -> Option<&str> {
        self.startup_commands.first().map(|s| s.command.as_str())
    }

    /// The default image.
    pub fn default_image(&self) -> Option<&str> {
        self.images.first().map(|i| i.image.as_str())
    }

    /// A variable by its environment name.
    pub fn variable(&self, env: &str) -> Option<&EggVariable> {
        self.variables.iter().find(|v| v.env_variable == env)
    }
}

/// Source format of an egg file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EggSourceFormat {
    /// Pterodactyl, legacy (`images` list, string-encoded config).
    #[serde(rename = "PTDL_v1")]
    PtdlV1,
    /// Pterodactyl current.
    #[serde(rename = "PTDL_v2")]
    PtdlV2,
    /// Pelican first format.
    #[serde(rename = "PLCN_v1")]
    PlcnV1,
    /// Pelican second format.
    #[serde(rename = "PLCN_v2")]
    PlcnV2,
    /// Pelican third format (`startup_commands`, native maps).
    #[serde(rename = "PLCN_v3")]
    PlcnV3,
}

impl EggSourceFormat {
    /// The `meta.version` string.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::PtdlV1 => "PTDL_v1",
            Self::PtdlV2 => "PTDL_v2",
            Self::PlcnV1 => "PLCN_v1",
            Self::PlcnV2 => "PLCN_v2",
            Self::PlcnV3 => "PLCN_v3",
        }
    }
}

/// Egg features are free strings; kept as a list.
pub type EggFeatures = Vec<String>;

/// One selectable image.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EggImage {
    /// Label shown to users (`Java 17`); equals the image where the source gave none.
    pub label: String,
    /// Image reference (`ghcr.io/pterodactyl/yolks:java_17`).
    pub image: String,
}

/// One labelled startup command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EggStartup {
    /// Label (`Default`).
    pub label: String,
    /// Command template with `{{VAR}}` placeholders.
    pub command: String,
}

/// A config file the node patches before each start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigFile {
    /// Path relative to the server root.
    pub path: String,
    /// How the file is read and written.
    pub parser: ConfigParser,
    /// Keys to set, in the author's order.
    pub find: Vec<(String, FindValue)>,
}

/// File formats the config patcher understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfigParser {
    /// Java `.properties`.
    Properties,
    /// INI with `[sections]`.
    Ini,
    /// YAML (`yaml` and `yml`).
    Yaml,
    /// JSON.
    Json,
    /// XML.
    Xml,
    /// Plain text, lines matched by prefix and replaced whole.
    File,
    /// TOML.
    Toml,
}

impl ConfigParser {
    /// The name used in egg files.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Properties => "properties",
            Self::Ini => "ini",
            Self::Yaml => "yaml",
            Self::Json => "json",
            Self::Xml => "xml",
            Self::File => "file",
            Self::Toml => "toml",
        }
    }

    /// Parses an egg's parser name (`yml` is `yaml`).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "properties" => Self::Properties,
            "ini" => Self::Ini,
            "yaml" | "yml" => Self::Yaml,
            "json" => Self::Json,
            "xml" => Self::Xml,
            "file" => Self::File,
            "toml" => Self::Toml,
            _ => return None,
        })
    }
}

/// The value side of a config `find` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum FindValue {
    /// Replace with this text (placeholders allowed).
    Text(String),
    /// Replace with this JSON scalar as written by the author (a number or a boolean).
    Scalar(serde_json::Value),
    /// `if_value` object: replace only when the current value matches a key (a literal or
    /// `regex:<pattern>` whose groups can be used as `$1`), with that key's replacement.
    Match(Vec<(String, String)>),
}

/// A console line matcher meaning "the server is up".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "pattern", rename_all = "snake_case")]
pub enum DoneMatcher {
    /// The line contains this text.
    Substring(String),
    /// The line matches this regular expression (source written as `regex:<pattern>`).
    Regex(String),
}

/// How a server is asked to stop. See `nexus_eggs::stop` for how egg strings map here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum StopMethod {
    /// Write this line to the console.
    Command(String),
    /// Send this signal to the server process.
    Signal(StopSignal),
}

/// Signals a stop can send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StopSignal {
    /// SIGINT (Ctrl-C).
    #[serde(rename = "SIGINT")]
    Interrupt,
    /// SIGTERM.
    #[serde(rename = "SIGTERM")]
    Terminate,
    /// SIGQUIT.
    #[serde(rename = "SIGQUIT")]
    Quit,
    /// SIGHUP.
    #[serde(rename = "SIGHUP")]
    Hangup,
    /// SIGUSR1.
    #[serde(rename = "SIGUSR1")]
    User1,
    /// SIGUSR2.
    #[serde(rename = "SIGUSR2")]
    User2,
    /// SIGKILL: no grace period.
    #[serde(rename = "SIGKILL")]
    Kill,
}

impl StopSignal {
    /// Conventional name, e.g. `SIGINT`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Interrupt => "SIGINT",
            Self::Terminate => "SIGTERM",
            Self::Quit => "SIGQUIT",
            Self::Hangup => "SIGHUP",
            Self::User1 => "SIGUSR1",
            Self::User2 => "SIGUSR2",
            Self::Kill => "SIGKILL",
        }
    }

    /// Parses `SIGINT`, `INT`, `sigint`.
    pub fn from_name(name: &str) -> Option<Self> {
        let upper = name.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        Some(match bare {
            "INT" => Self::Interrupt,
            "TERM" => Self::Terminate,
            "QUIT" => Self::Quit,
            "HUP" => Self::Hangup,
            "USR1" => Self::User1,
            "USR2" => Self::User2,
            "KILL" => Self::Kill,
            _ => return None,
        })
    }

    /// The Linux signal number.
    pub fn number(&self) -> i32 {
        match self {
            Self::Hangup => 1,
            Self::Interrupt => 2,
            Self::Quit => 3,
            Self::Kill => 9,
            Self::User1 => 10,
            Self::User2 => 12,
            Self::Terminate => 15,
        }
    }
}

/// The installation script of an egg.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EggScript {
    /// Script body, line endings normalized to `\n`.
    pub script: String,
    /// Image the script runs in.
    pub container: String,
    /// Interpreter (`bash`, `ash`).
    pub entrypoint: String,
}

/// A user-facing variable of an egg, passed to the server as an environment variable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EggVariable {
    /// Display name.
    pub name: String,
    /// Help text.
    pub description: String,
    /// Environment name; also the `{{NAME}}` placeholder.
    pub env_variable: String,
    /// Default value (numbers and booleans in the source become their text).
    pub default_value: String,
    /// Users can see it.
    pub user_viewable: bool,
    /// Users can change it.
    pub user_editable: bool,
    /// Laravel validation rules, one per entry (`required`, `max:20`).
    pub rules: Vec<String>,
    /// UI hint (`text`), where given.
    pub field_type: Option<String>,
    /// Display order, where given.
    pub sort: Option<i64>,
}
