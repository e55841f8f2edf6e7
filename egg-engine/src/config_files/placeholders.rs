//! The `{{...}}` placeholders of egg config values, in the Pterodactyl and Pelican namespaces.

use nexus_core::model::{Allocation, Server};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// What placeholders in config values resolve to: the facts about one server and its node.
///
/// | placeholder | value |
/// |---|---|
/// | `{{server.build.default.ip}}`, `{{server.allocations.default.ip}}` | primary allocation's IP |
/// | `{{server.build.default.port}}`, `{{server.allocations.default.port}}` | primary allocation's port |
/// | `{{server.build.memory}}`, `{{server.build.memory_limit}}` | memory limit, MiB |
/// | `{{server.build.env.X}}`, `{{server.environment.X}}`, `{{env.X}}` | variable `X` |
/// | `{{config.X}}` | node configuration value `X`, e.g. `config.docker.interface` |
///
/// As in the Pterodactyl panel, the variables `SERVER_MEMORY`, `SERVER_IP` and `SERVER_PORT`
/// are the build facts above. Spaces inside the braces are allowed (`{{ env.X }}`); text
/// that is not a placeholder name (`{{ a b }}`) is left alone.
///
/// Unknown names never fail a start; they resolve as the Pterodactyl panel and Wings resolve
/// them, with a warning in the log:
///
/// | unknown placeholder | becomes | as |
/// |---|---|---|
/// | a variable that is not set (`{{env.NOT_SET}}`) | empty text | the panel (Pelican's Muse egg reads `BOT_TOKEN`, which it never defines) |
/// | another `server.` name (`{{server.build.threads}}`) | empty text | the panel (`Arr::get(…, '')`) |
/// | a `config.` name the node does not have | empty text | Wings (`LookupConfigurationValue`) |
/// | any other name (`{{SERVER_PORT}}`, `{{ a }}`) | itself, written literally | the panel, which only replaces `server.`, `env.` and `config.` |
///
/// `config.docker.interface` (Pterodactyl's name) and `config.docker.network.interface`
/// (the Wings configuration path) are the same value; either can be given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigContext {
    primary: SocketAddr,
    memory_mb: u64,
    environment: BTreeMap<String, String>,
    node_config: BTreeMap<String, String>,
}

impl ConfigContext {
    /// A context for a server whose primary allocation is `primary`, with `memory_mb` MiB of
    /// memory, no variables and no node configuration.
    pub fn new(primary: SocketAddr, memory_mb: u64) -> Self {
        Self { primary, memory_mb, environment: BTreeMap::new(), node_config: BTreeMap::new() }
    }

    /// A context from the panel's records: `primary` must be `server.primary_allocation`.
    /// Carries the server's variables; add the node's values with
    /// [`with_node_config`](Self::with_node_config).
    pub fn for_server(server: &Server, primary: &Allocation) -> Self {
        Self::new(SocketAddr::new(primary.ip, primary.port), server.limits.memory_mb)
            .with_environment(server.environment.clone())
    }

    /// Adds variable values by environment name (`SERVER_NAME` → `My server`).
    #[must_use]
    pub fn with_environment<K: Into<String>, V: Into<String>>(
        mut self,
        variables: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.environment.extend(variables.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Adds node configuration values by dotted name (`docker.interface` → `172.18.0.1`).
    #[must_use]
    pub fn with_node_config<K: Into<String>, V: Into<String>>(
        mut self,
        values: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.node_config.extend(values.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Replaces every placeholder in `template`. `escape` is applied to each substituted
    /// value (regex replacement templates need `$` doubled), never to the template's own text.
    /// Unknown names resolve as the table above says.
    pub(super) fn resolve(&self, template: &str, escape: fn(&str) -> Cow<'_, str>) -> String {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(open) = rest.find("{{") {
            out.push_str(&rest[..open]);
            let after_open = &rest[open + 2..];
            let Some((name, consumed)) = placeholder_name(after_open) else {
                out.push_str("{{");
                rest = after_open;
                continue;
            };
            match self.lookup(name) {
                Some(value) => out.push_str(&escape(&value)),
                None => out.push_str(&rest[open..open + 2 + consumed]),
            }
            rest = &after_open[consumed..];
        }
        out.push_str(rest);
        out
    }

    /// The value of placeholder `name`; `None` for a name outside the three namespaces, which
    /// stays as written.
    fn lookup(&self, name: &str) -> Option<Cow<'_, str>> {
        let variable = ["server.build.env.", "server.environment.", "env."]
            .iter()
            .find_map(|prefix| name.strip_prefix(prefix))
            .filter(|variable| !variable.is_empty());
        if let Some(variable) = variable {
            return Some(self.variable(variable));
        }
        let unknown = || {
            tracing::warn!(placeholder = name, "config file placeholder unknown to this node; using empty text");
            Some(Cow::Borrowed(""))
        };
        match name {
            "server.build.default.ip" | "server.allocations.default.ip" => Some(self.primary.ip().to_string().into()),
            "server.build.default.port" | "server.allocations.default.port" => {
                Some(self.primary.port().to_string().into())
            }
            "server.build.memory" | "server.build.memory_limit" => Some(self.memory_mb.to_string().into()),
            _ if name.starts_with("server.") || name.starts_with("env.") => unknown(),
            _ => match name.strip_prefix("config.") {
                Some(key) => self.node_value(key).map(Cow::Borrowed).or_else(unknown),
                None => None,
            },
        }
    }

    fn variable(&self, variable: &str) -> Cow<'_, str> {
        match variable {
            "SERVER_MEMORY" => self.memory_mb.to_string().into(),
            "SERVER_IP" => self.primary.ip().to_string().into(),
            "SERVER_PORT" => self.primary.port().to_string().into(),
            _ => match self.environment.get(variable) {
                Some(value) => value.as_str().into(),
                None => {
                    tracing::warn!(variable, "config file placeholder names an unset variable; using empty text");
                    Cow::Borrowed("")
                }
            },
        }
    }

    fn node_value(&self, key: &str) -> Option<&str> {
        const INTERFACE_ALIASES: [&str; 2] = ["docker.interface", "docker.network.interface"];
        if let Some(value) = self.node_config.get(key) {
            return Some(value);
        }
        if INTERFACE_ALIASES.contains(&key) {
            return INTERFACE_ALIASES.iter().find_map(|alias| self.node_config.get(*alias)).map(String::as_str);
        }
        None
    }
}

/// `name}}` (with optional spaces around the name) at the start of `text`: the name and the
/// bytes consumed. Names are what the panels accept: letters, digits, `_`, `.` and `-`.
fn placeholder_name(text: &str) -> Option<(&str, usize)> {
    let leading = text.len() - text.trim_start_matches(' ').len();
    let name_len = text[leading..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        .unwrap_or(text.len() - leading);
    let name = &text[leading..leading + name_len];
    let after_name = &text[leading + name_len..];
    let trailing = after_name.len() - after_name.trim_start_matches(' ').len();
    (!name.is_empty() && after_name[trailing..].starts_with("}}")).then_some((name, leading + name_len + trailing + 2))
}

/// No escaping: the substituted value is final text.
pub(super) fn verbatim(value: &str) -> Cow<'_, str> {
    Cow::Borrowed(value)
}

/// Escaping for regex replacement templates, where `$` names a group.
pub(super) fn regex_replacement(value: &str) -> Cow<'_, str> {
    if value.contains('$') { Cow::Owned(value.replace('$', "$$")) } else { Cow::Borrowed(value) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ConfigContext {
        ConfigContext::new("10.0.0.5:25565".parse().unwrap(), 2048)
            .with_environment([("SERVER_NAME", "Lobby $1"), ("MAX", "20")])
            .with_node_config([("docker.interface", "172.18.0.1")])
    }

    #[test]
    fn resolves_both_namespaces() {
        let ctx = ctx();
        let cases = [
            ("{{server.build.default.port}}", "25565"),
            ("{{server.allocations.default.port}}", "25565"),
            ("{{server.build.default.ip}}:{{server.allocations.default.port}}", "10.0.0.5:25565"),
            ("{{server.build.memory}}M", "2048M"),
            ("{{server.build.env.MAX}}/{{server.environment.MAX}}/{{env.MAX}}", "20/20/20"),
            ("{{ env.SERVER_PORT }}", "25565"),
            ("{{config.docker.interface}}", "172.18.0.1"),
            ("{{config.docker.network.interface}}", "172.18.0.1"),
            ("no placeholders {{ a b }} {{", "no placeholders {{ a b }} {{"),
        ];
        for (template, expected) in cases {
            assert_eq!(ctx.resolve(template, verbatim), expected, "{template}");
        }
    }

    /// As the panel and Wings: unset variables and unknown `server.`/`config.` names are
    /// empty; names outside the namespaces stay as written, spaces included.
    #[test]
    fn unknown_names_resolve_as_the_panel_and_wings_do() {
        let ctx = ctx();
        let cases = [
            ("t={{env.NOT_SET}}", "t="),
            ("[{{server.uuid}}]", "[]"),
            ("[{{server.build.threads}}]", "[]"),
            ("[{{config.docker.dns}}]", "[]"),
            ("-port={{SERVER_PORT}}", "-port={{SERVER_PORT}}"),
            ("{{ MOTD }} and {{env.MAX}}", "{{ MOTD }} and 20"),
            ("{{env.}}", ""),
        ];
        for (template, expected) in cases {
            assert_eq!(ctx.resolve(template, verbatim), expected, "{template}");
        }
    }

    #[test]
    fn regex_templates_get_dollars_escaped_in_values_only() {
        assert_eq!(ctx().resolve("{{env.SERVER_NAME}}$2", regex_replacement), "Lobby $$1$2");
    }
}
