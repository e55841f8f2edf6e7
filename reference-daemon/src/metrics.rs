//! Prometheus text exposition for `GET /metrics`: HTTP request counts (by method, route
//! template and status), the process's resident memory, and the agent's own metrics.
//!
//! Route labels are templates (`/api/servers/:id/files/*`), never raw paths, so a client
//! cannot grow the label set: ids become `:id`, everything after `files/` becomes `*`, and a
//! path outside the API's vocabulary becomes `other`.

use nexus_agent::AgentMetrics;
use nexus_core::lifecycle::ServerState;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Path segments the API uses; anything else is not a route and is counted as `other`.
const KNOWN_SEGMENTS: &[&str] = &[
    "api",
    "servers",
    "power",
    "install",
    "commands",
    "install-log",
    "console",
    "files",
    "system",
    "metrics",
    "compress",
    "decompress",
    "rename",
    "copy",
    "mkdir",
    "chmod",
];

/// HTTP request counters.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    counts: Mutex<BTreeMap<(String, String, u16), u64>>,
}

impl HttpMetrics {
    /// Counts one request.
    pub fn record(&self, method: &str, path: &str, status: u16) {
        let key = (method.to_owned(), route_template(path), status);
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(key).or_insert(0) += 1;
        }
    }

    /// Appends the counters in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP nexus_wings_http_requests_total HTTP requests answered, by method, route and status.\n");
        out.push_str("# TYPE nexus_wings_http_requests_total counter\n");
        if let Ok(counts) = self.counts.lock() {
            for ((method, route, status), n) in counts.iter() {
                let _ = writeln!(
                    out,
                    "nexus_wings_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                    escape(method),
                    escape(route)
                );
            }
        }
    }
}

/// `/api/servers/3f2a…/files/a/b` → `/api/servers/:id/files/*`.
pub fn route_template(path: &str) -> String {
    let mut out = String::new();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        if uuid::Uuid::parse_str(segment).is_ok() {
            out.push_str(":id");
        } else if KNOWN_SEGMENTS.contains(&segment) {
            out.push_str(segment);
            if segment == "files" && out.ends_with(":id/files") {
                // Everything below `files/` is a user path, except the POST operations.
                let rest: Vec<&str> = path.split("/files/").skip(1).collect();
                if let Some(rest) = rest.first().filter(|r| !r.is_empty()) {
                    if KNOWN_SEGMENTS.contains(rest) {
                        out.push('/');
                        out.push_str(rest);
                    } else {
                        out.push_str("/*");
                    }
                }
                return out;
            }
        } else {
            return "other".into();
        }
    }
    if out.is_empty() { "/".into() } else { out }
}

/// Appends the agent's counters and gauges.
pub fn render_agent(m: &AgentMetrics, out: &mut String) {
    out.push_str("# HELP nexus_wings_servers Servers on this node by lifecycle state.\n");
    out.push_str("# TYPE nexus_wings_servers gauge\n");
    for state in ServerState::ALL {
        let n = m.servers.get(&state).copied().unwrap_or(0);
        let name = serde_json::to_value(state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let _ = writeln!(out, "nexus_wings_servers{{state=\"{name}\"}} {n}");
    }
    let gauges: [(&str, &str, u64); 3] = [
        // Not `_count`: that suffix belongs to histograms and summaries (promtool).
        ("nexus_wings_known_servers", "Servers on this node.", m.servers.values().sum::<usize>() as u64),
        ("nexus_wings_console_subscribers", "Console subscribers over all servers.", m.console_subscribers as u64),
        ("nexus_wings_outbox_queued_messages", "Messages waiting for the panel.", m.queued_messages as u64),
    ];
    for (name, help, value) in gauges {
        metric(out, name, "gauge", help, value);
    }
    let counters: [(&str, &str, u64); 11] = [
        ("nexus_wings_console_lines_total", "Console lines passed on to subscribers.", m.console_lines),
        ("nexus_wings_console_lines_dropped_total", "Console lines dropped by the throttle.", m.console_lines_dropped),
        ("nexus_wings_crashes_total", "Unexpected exits of server processes.", m.crashes),
        ("nexus_wings_auto_restarts_total", "Automatic restarts after a crash.", m.auto_restarts),
        ("nexus_wings_heartbeats_sent_total", "Heartbeats delivered to the panel.", m.heartbeats_sent),
        ("nexus_wings_heartbeat_failures_total", "Failed heartbeat deliveries.", m.heartbeat_failures),
        ("nexus_wings_events_sent_total", "Lifecycle events delivered to the panel.", m.events_sent),
        ("nexus_wings_publish_failures_total", "Failed deliveries to the panel (retried).", m.publish_failures),
        ("nexus_wings_messages_rejected_total", "Messages the panel refused as invalid.", m.messages_rejected),
        ("nexus_wings_messages_dropped_total", "Messages dropped because this node has no panel.", m.messages_dropped),
        ("nexus_wings_state_save_failures_total", "Failed saves of the agent state.", m.state_save_failures),
    ];
    for (name, help, value) in counters {
        metric(out, name, "counter", help, value);
    }
}

/// Resident set size of this process, bytes (from `/proc/self/statm`).
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

fn page_size() -> u64 {
    // 4 KiB on every Linux the daemon targets except some arm64/ppc64 kernels; `rustix` knows.
    rustix::param::page_size() as u64
}

/// Appends one gauge or counter.
pub fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
}

/// Escapes a label value.
pub fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_templates() {
        let id = uuid::Uuid::new_v4();
        assert_eq!(route_template("/api/servers"), "/api/servers");
        assert_eq!(route_template(&format!("/api/servers/{id}/power")), "/api/servers/:id/power");
        assert_eq!(route_template(&format!("/api/servers/{id}/files/a/b.txt")), "/api/servers/:id/files/*");
        assert_eq!(route_template(&format!("/api/servers/{id}/files/compress")), "/api/servers/:id/files/compress");
        assert_eq!(route_template(&format!("/api/servers/{id}/files")), "/api/servers/:id/files");
        assert_eq!(route_template("/wp-admin/login.php"), "other");
        assert_eq!(route_template("/"), "/");
    }

    #[test]
    fn renders_counters() {
        let m = HttpMetrics::default();
        m.record("GET", "/api/system", 200);
        m.record("GET", "/api/system", 200);
        m.record("GET", "/nope", 404);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("nexus_wings_http_requests_total{method=\"GET\",route=\"/api/system\",status=\"200\"} 2"));
        assert!(out.contains("route=\"other\",status=\"404\"} 1"));
    }

    #[test]
    fn reads_own_rss() {
        assert!(resident_memory_bytes().unwrap() > 0);
    }
}
