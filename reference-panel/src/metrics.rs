//! Prometheus text exposition for `GET /metrics`: requests and their latency per route of the
//! route table (labels are the table's patterns, never raw paths, so no caller can grow the
//! label set), nodes by status and the servers booked on each, sessions, resident memory.
//!
//! The scrape needs an admin: an application key (`Authorization: Bearer ptla_…`) or an
//! admin's session, as node names and counts are the operator's business.

use nexus_wings::metrics::{escape, metric, resident_memory_bytes};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency histogram's buckets, seconds.
const BUCKETS: [f64; 11] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];
/// Status classes counted (`1xx` is never answered).
const CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// Counters of one route (or of the requests no route matched). Each answer lands in exactly
/// one bucket (the last is beyond every bound); the cumulative series, `+Inf` and `_count` are
/// summed from one read of them, so a scrape never shows a bucket above the next.
#[derive(Debug, Default)]
struct RouteStats {
    by_class: [AtomicU64; CLASSES.len()],
    buckets: [AtomicU64; BUCKETS.len() + 1],
    micros: AtomicU64,
}

/// Request counters and latency histograms of the panel's HTTP API, lock-free.
#[derive(Debug)]
pub struct HttpMetrics {
    labels: Vec<(String, &'static str)>,
    routes: Vec<RouteStats>,
}

impl HttpMetrics {
    /// Counters for `routes` (method, pattern), plus one for requests that matched none.
    pub fn new(routes: impl IntoIterator<Item = (String, &'static str)>) -> Self {
        let mut labels: Vec<(String, &'static str)> = routes.into_iter().collect();
        labels.push(("any".to_owned(), "unmatched"));
        let routes = labels.iter().map(|_| RouteStats::default()).collect();
        Self { labels, routes }
    }

    /// Counts one answer of route `index` (of the table given to [`new`](Self::new); `None`
    /// when no route matched).
    pub fn record(&self, index: Option<usize>, status: u16, took: Duration) {
        let unmatched = self.routes.len() - 1;
        let Some(stats) = self.routes.get(index.unwrap_or(unmatched)).or_else(|| self.routes.last()) else {
            return;
        };
        let class = usize::from(status / 100).clamp(2, 5) - 2;
        stats.by_class[class].fetch_add(1, Ordering::Relaxed);
        let seconds = took.as_secs_f64();
        let bucket = BUCKETS.iter().position(|bound| seconds <= *bound).unwrap_or(BUCKETS.len());
        stats.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        stats.micros.fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Appends the counters and histograms (routes never called are left out).
    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP nexus_panel_http_requests_total Requests answered, by route and status class.\n");
        out.push_str("# TYPE nexus_panel_http_requests_total counter\n");
        for ((method, route), stats) in self.labels.iter().zip(&self.routes) {
            for (class, n) in CLASSES.iter().zip(&stats.by_class) {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "nexus_panel_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{class}\"}} {n}"
                    );
                }
            }
        }
        out.push_str("# HELP nexus_panel_http_request_duration_seconds Time to answer, by route.\n");
        out.push_str("# TYPE nexus_panel_http_request_duration_seconds histogram\n");
        for ((method, route), stats) in self.labels.iter().zip(&self.routes) {
            let counts: Vec<u64> = stats.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
            let count: u64 = counts.iter().sum();
            if count == 0 {
                continue;
            }
            let labels = format!("method=\"{method}\",route=\"{route}\"");
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(&counts) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "nexus_panel_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(out, "nexus_panel_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}");
            let sum = stats.micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "nexus_panel_http_request_duration_seconds_sum{{{labels}}} {sum}");
            let _ = writeln!(out, "nexus_panel_http_request_duration_seconds_count{{{labels}}} {count}");
        }
    }
}

/// What the panel knows of one node, for [`render_nodes`].
#[derive(Debug)]
pub struct NodeSample<'a> {
    /// Its name (escaped here: an admin typed it).
    pub name: &'a str,
    /// Whether its heartbeats arrive.
    pub online: bool,
    /// Servers placed on it.
    pub servers: u64,
}

/// Appends node and process gauges.
pub fn render_nodes(out: &mut String, nodes: &[NodeSample<'_>], sessions: usize) {
    let online = nodes.iter().filter(|n| n.online).count();
    out.push_str("# HELP nexus_panel_nodes Nodes, by whether their heartbeats arrive.\n");
    out.push_str("# TYPE nexus_panel_nodes gauge\n");
    let _ = writeln!(out, "nexus_panel_nodes{{status=\"online\"}} {online}");
    let _ = writeln!(out, "nexus_panel_nodes{{status=\"offline\"}} {}", nodes.len() - online);
    out.push_str("# HELP nexus_panel_node_servers Servers placed on each node.\n");
    out.push_str("# TYPE nexus_panel_node_servers gauge\n");
    for node in nodes {
        let _ = writeln!(out, "nexus_panel_node_servers{{node=\"{}\"}} {}", escape(node.name), node.servers);
    }
    metric(out, "nexus_panel_sessions", "gauge", "Browser sessions open in this panel process.", sessions);
    if let Some(rss) = resident_memory_bytes() {
        metric(out, "nexus_panel_resident_memory_bytes", "gauge", "Resident memory of the panel process.", rss);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_lands_in_every_bucket_at_or_above_it() {
        let metrics = HttpMetrics::new([("GET".to_owned(), "/api/v1/servers")]);
        metrics.record(Some(0), 200, Duration::from_millis(3));
        metrics.record(Some(0), 404, Duration::from_millis(300));
        metrics.record(None, 404, Duration::from_micros(10));
        let mut out = String::new();
        metrics.render(&mut out);
        let line = |needle: &str| out.lines().find(|l| l.starts_with(needle)).unwrap_or_default().to_owned();
        let route = "method=\"GET\",route=\"/api/v1/servers\"";
        assert!(line(&format!("nexus_panel_http_requests_total{{{route},status=\"2xx\"}}")).ends_with(" 1"), "{out}");
        assert!(line(&format!("nexus_panel_http_requests_total{{{route},status=\"4xx\"}}")).ends_with(" 1"), "{out}");
        assert!(
            line(&format!("nexus_panel_http_request_duration_seconds_bucket{{{route},le=\"0.001\"}}")).ends_with(" 0")
        );
        assert!(
            line(&format!("nexus_panel_http_request_duration_seconds_bucket{{{route},le=\"0.005\"}}")).ends_with(" 1")
        );
        assert!(
            line(&format!("nexus_panel_http_request_duration_seconds_bucket{{{route},le=\"0.5\"}}")).ends_with(" 2")
        );
        assert!(line(&format!("nexus_panel_http_request_duration_seconds_count{{{route}}}")).ends_with(" 2"));
        assert!(
            line("nexus_panel_http_requests_total{method=\"any\",route=\"unmatched\",status=\"4xx\"}").ends_with(" 1")
        );
    }
}
