//! `GET /metrics` in Prometheus text format: API requests and latencies by
//! route, containers by state, image store size.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;

const BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// Bucket counts, total count, sum of seconds.
type Histogram = ([u64; BUCKETS.len()], u64, f64);

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<(String, String), Histogram>>,
    /// Audit messages that did not reach `--audit-syslog`.
    pub syslog_drops: std::sync::Arc<berth_auth::syslog::SyslogDrops>,
}

impl Metrics {
    pub fn new(syslog_drops: std::sync::Arc<berth_auth::syslog::SyslogDrops>) -> Self {
        Self {
            requests: Default::default(),
            latency: Default::default(),
            syslog_drops,
        }
    }
}

pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let start = Instant::now();
    let resp = next.run(req).await;
    let secs = start.elapsed().as_secs_f64();
    let m = &state.metrics;
    *m.requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry((method.clone(), path.clone(), resp.status().as_u16()))
        .or_default() += 1;
    let mut lat = m.latency.lock().unwrap_or_else(|e| e.into_inner());
    let e = lat.entry((method, path)).or_insert(([0; BUCKETS.len()], 0, 0.0));
    for (i, b) in BUCKETS.iter().enumerate() {
        if secs <= *b {
            e.0[i] += 1;
        }
    }
    e.1 += 1;
    e.2 += secs;
    resp
}

pub async fn render(State(state): State<AppState>) -> Response {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP berth_api_requests_total API requests by method, route and status."
    );
    let _ = writeln!(out, "# TYPE berth_api_requests_total counter");
    for ((m, p, s), n) in state.metrics.requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let _ = writeln!(
            out,
            "berth_api_requests_total{{method=\"{m}\",route=\"{p}\",status=\"{s}\"}} {n}"
        );
    }
    let _ = writeln!(out, "# HELP berth_api_request_duration_seconds API request latency.");
    let _ = writeln!(out, "# TYPE berth_api_request_duration_seconds histogram");
    for ((m, p), (b, count, sum)) in state.metrics.latency.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        for (i, le) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "berth_api_request_duration_seconds_bucket{{method=\"{m}\",route=\"{p}\",le=\"{le}\"}} {}",
                b[i]
            );
        }
        let _ = writeln!(
            out,
            "berth_api_request_duration_seconds_bucket{{method=\"{m}\",route=\"{p}\",le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "berth_api_request_duration_seconds_sum{{method=\"{m}\",route=\"{p}\"}} {sum}"
        );
        let _ = writeln!(
            out,
            "berth_api_request_duration_seconds_count{{method=\"{m}\",route=\"{p}\"}} {count}"
        );
    }
    let _ = writeln!(out, "# HELP berth_containers Containers on this node by state.");
    let _ = writeln!(out, "# TYPE berth_containers gauge");
    let mut by_state: BTreeMap<&str, u64> = ["created", "running", "restarting", "exited", "removing", "dead"]
        .iter()
        .map(|s| (*s, 0))
        .collect();
    if let Ok(list) = state.engine.list(true) {
        for c in list {
            *by_state.entry(c.status.state.as_str()).or_default() += 1;
        }
    }
    for (s, n) in by_state {
        let _ = writeln!(out, "berth_containers{{state=\"{s}\"}} {n}");
    }
    let _ = writeln!(out, "# HELP berth_image_store_bytes Bytes of image blobs on disk.");
    let _ = writeln!(out, "# TYPE berth_image_store_bytes gauge");
    let _ = writeln!(
        out,
        "berth_image_store_bytes {}",
        state.engine.images().total_size().unwrap_or(0)
    );
    let _ = writeln!(out, "# TYPE berth_images gauge");
    let _ = writeln!(
        out,
        "berth_images {}",
        state.engine.images().list().map(|l| l.len()).unwrap_or(0)
    );
    let _ = writeln!(
        out,
        "# HELP berth_audit_syslog_dropped_total Audit entries not sent to --audit-syslog (queue full or send failed); they stay in the audit log."
    );
    let _ = writeln!(out, "# TYPE berth_audit_syslog_dropped_total counter");
    let _ = writeln!(
        out,
        "berth_audit_syslog_dropped_total {}",
        state.metrics.syslog_drops.0.load(std::sync::atomic::Ordering::Relaxed)
    );
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
