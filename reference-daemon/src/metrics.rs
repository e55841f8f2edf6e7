//! Prometheus text exposition for `GET /metrics`: HTTP request counts (by method, route
//! template and status), the process's resident memory, and the agent's own metrics.
//!
//! Route labels are templates (`/api/servers/:id/files/*`), never raw paths, so a client
//! cannot grow the label set: ids become `:id`, everything after `files/` becomes `*`, and a
//! path outside the API's vocabulary becomes `other`.

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
