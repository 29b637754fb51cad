//! `berth vulndb update` and its schedule: osv.dev's per-ecosystem exports
//! (`{source}/{ecosystem}/all.zip`) are downloaded to temporary files under
//! `<data-root>/tmp/`, then `ScanService::update_vulndb` checks and imports
//! every one of them into a copy of the database, which replaces the
//! database only when all were good. A failed download, a corrupt archive or
//! one without OSV records changes nothing.
//!
//! The source is a base URL, so a mirror (or an air-gapped site's own web
//! server) serves the same layout: `berth daemon --vulndb-source URL`, or
//! `--source` on one update.
//!
//! **Architecture Invariant:** the daemon makes no network call for
//! vulnerability data unless asked: the schedule is off by default
//! (`--vulndb-update-interval 0`), and an update names its source.

pub use berth_scanner::records::{Downloaded, VulnDbUpdateSpec};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// Where osv.dev publishes its exports.
pub const DEFAULT_SOURCE: &str = "https://osv-vulnerabilities.storage.googleapis.com";
/// Largest export accepted (osv.dev's largest, npm's, is about 250 MB).
pub const MAX_EXPORT_BYTES: u64 = 4 << 30;
/// After a failed scheduled update, the next try comes after the interval
/// or this, whichever is shorter.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(3600);
/// How often a download reports its progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// One export to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub ecosystem: String,
    pub url: String,
}

/// A `--source`/`--vulndb-source` value: an http:// or https:// URL with a
/// host and no query, without its trailing `/`.
pub fn normalize_source(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("vulnerability data source {url:?} is not an http:// or https:// URL"))?;
    if rest.split('/').next().is_none_or(str::is_empty) {
        return Err(format!("vulnerability data source {url:?} names no host"));
    }
    if rest.contains(['?', '#']) || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "vulnerability data source {url:?}: give the base URL of the exports, without a query"
        ));
    }
    Ok(url.to_string())
}

/// An OSV ecosystem name as osv.dev spells it; it becomes one path segment.
pub fn validate_ecosystem(name: &str) -> Result<(), String> {
    let bad = name.is_empty()
        || name.len() > 100
        || name == "."
        || name == ".."
        || name.chars().any(|c| c == '/' || c == '\\' || c.is_control());
    match bad {
        true => Err(format!(
            "{name:?} is not an OSV ecosystem name (Debian, PyPI, Red Hat, crates.io, ...)"
        )),
        false => Ok(()),
    }
}

/// `{source}/{ecosystem}/all.zip`, the ecosystem percent-encoded
/// (`Red Hat` → `Red%20Hat`).
pub fn export_url(source: &str, ecosystem: &str) -> String {
    let mut segment = String::new();
    for byte in ecosystem.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:".contains(&byte) {
            segment.push(byte as char);
        } else {
            segment.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("{source}/{segment}/all.zip")
}

/// The exports an update fetches: `ecosystems` (else `default_ecosystems`,
/// else every supported one) from `source` (else `default_source`), each
/// once, in the order given.
pub fn plan(
    spec: &VulnDbUpdateSpec,
    default_source: &str,
    default_ecosystems: &[String],
) -> Result<Vec<Export>, String> {
    let source = normalize_source(spec.source.as_deref().unwrap_or(default_source))?;
    let mut wanted: Vec<String> = match (spec.ecosystems.is_empty(), default_ecosystems.is_empty()) {
        (false, _) => spec.ecosystems.clone(),
        (true, false) => default_ecosystems.to_vec(),
        (true, true) => berth_scanner::vuln::SUPPORTED_ECOSYSTEMS
            .iter()
            .map(|e| e.to_string())
            .collect(),
    };
    let mut seen = std::collections::BTreeSet::new();
    wanted.retain(|e| seen.insert(e.clone()));
    wanted
        .into_iter()
        .map(|ecosystem| {
            validate_ecosystem(&ecosystem)?;
            Ok(Export {
                url: export_url(&source, &ecosystem),
                ecosystem,
            })
        })
        .collect()
}

/// The HTTP client of downloads: no overall time limit (an export can be
/// hundreds of megabytes), but a stalled connection fails. Proxies come
/// from the environment (`HTTPS_PROXY`, `NO_PROXY`).
pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Downloads `export` into `dest` (at most [`MAX_EXPORT_BYTES`]); the bytes
/// written. `progress` gets (bytes so far, the announced length) now and
/// then. Errors name the ecosystem and the URL.
pub(crate) fn download(
    agent: &ureq::Agent,
    export: &Export,
    dest: &Path,
    progress: &dyn Fn(u64, Option<u64>),
) -> Result<u64, String> {
    let fail = |what: String| format!("ecosystem {} from {}: {what}", export.ecosystem, export.url);
    let mut response = agent.get(&export.url).call().map_err(|e| fail(e.to_string()))?;
    let status = response.status();
    if !status.is_success() {
        let hint = if status.as_u16() == 404 {
            " (is the ecosystem spelled as osv.dev spells it, and does the source have it?)"
        } else {
            ""
        };
        return Err(fail(format!("the server answered {status}{hint}")));
    }
    let total = response.body().content_length();
    if let Some(length) = total.filter(|l| *l > MAX_EXPORT_BYTES) {
        return Err(fail(format!(
            "the export is {length} bytes, more than the limit of {MAX_EXPORT_BYTES}"
        )));
    }
    let mut reader = response.body_mut().with_config().limit(MAX_EXPORT_BYTES).reader();
    let file = std::fs::File::create(dest).map_err(|e| fail(format!("creating {}: {e}", dest.display())))?;
    let mut file = std::io::BufWriter::new(file);
    let mut buffer = vec![0u8; 256 * 1024];
    let mut written = 0u64;
    let mut reported = Instant::now();
    progress(0, total);
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(fail(format!("reading the download after {written} bytes: {e}"))),
        };
        file.write_all(&buffer[..n])
            .map_err(|e| fail(format!("writing {}: {e}", dest.display())))?;
        written += n as u64;
        if reported.elapsed() >= PROGRESS_EVERY {
            progress(written, total);
            reported = Instant::now();
        }
    }
    file.flush()
        .map_err(|e| fail(format!("writing {}: {e}", dest.display())))?;
    if let Some(length) = total.filter(|l| *l != written) {
        return Err(fail(format!("the download ended after {written} of {length} bytes")));
    }
    progress(written, total);
    Ok(written)
}

/// How long the schedule waits before its next update: until the database
/// is `interval` old (at once when there is none), and after a failure at
/// least the interval or an hour, whichever is shorter.
pub fn next_update_in(
    now: DateTime<Utc>,
    imported_at: Option<DateTime<Utc>>,
    last_failure: Option<DateTime<Utc>>,
    interval: Duration,
) -> Duration {
    let after = |since: DateTime<Utc>, wait: Duration| {
        let elapsed = (now - since).to_std().unwrap_or(Duration::ZERO);
        wait.saturating_sub(elapsed)
    };
    let due = imported_at.map_or(Duration::ZERO, |at| after(at, interval));
    let retry = last_failure.map_or(Duration::ZERO, |at| after(at, interval.min(RETRY_AFTER_FAILURE)));
    due.max(retry)
}

/// A directory removed with everything in it when dropped.
pub(crate) struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// A fresh `0700` directory `<parent>/<prefix>-<id>`.
    pub fn create(parent: &Path, prefix: &str) -> Result<TempDir, String> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
        let dir = parent.join(format!("{prefix}-{}", berth_model::new_id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("creating {}: {e}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

/// Removes the `<prefix>-*` directories a stopped daemon left in `parent`
/// (a download cut short by a crash).
pub(crate) fn remove_leftovers(parent: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let leftover = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(&format!("{prefix}-")));
        if leftover {
            drop(TempDir(entry.path()));
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(dir = %self.0.display(), error = %e, "cannot remove a temporary directory");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ecosystems: &[&str], source: Option<&str>) -> VulnDbUpdateSpec {
        VulnDbUpdateSpec {
            ecosystems: ecosystems.iter().map(|e| e.to_string()).collect(),
            source: source.map(str::to_string),
        }
    }

    fn urls(plan: Result<Vec<Export>, String>) -> Vec<String> {
        plan.unwrap().into_iter().map(|e| e.url).collect()
    }

    #[test]
    fn an_update_fetches_each_named_ecosystem_once_from_the_source() {
        assert_eq!(
            urls(plan(
                &spec(
                    &["Debian", "Red Hat", "Debian", "Alpine:v3.19"],
                    Some("http://mirror.lan/osv/")
                ),
                DEFAULT_SOURCE,
                &[]
            )),
            [
                "http://mirror.lan/osv/Debian/all.zip",
                "http://mirror.lan/osv/Red%20Hat/all.zip",
                "http://mirror.lan/osv/Alpine:v3.19/all.zip",
            ]
        );
        // The daemon's settings fill in what the request leaves out.
        assert_eq!(
            urls(plan(&spec(&[], None), "https://osv.example", &["PyPI".to_string()])),
            ["https://osv.example/PyPI/all.zip"]
        );
        let every = plan(&spec(&[], None), DEFAULT_SOURCE, &[]).unwrap();
        assert_eq!(every.len(), berth_scanner::vuln::SUPPORTED_ECOSYSTEMS.len());
        assert!(every
            .iter()
            .any(|e| e.url == "https://osv-vulnerabilities.storage.googleapis.com/crates.io/all.zip"));
    }

    #[test]
    fn bad_sources_and_ecosystems_are_refused_by_name() {
        let refused = |ecosystems: &[&str], source: &str| plan(&spec(ecosystems, Some(source)), "", &[]).unwrap_err();
        assert_eq!(
            refused(&["Debian"], "ftp://mirror/osv"),
            "vulnerability data source \"ftp://mirror/osv\" is not an http:// or https:// URL"
        );
        assert_eq!(
            refused(&["Debian"], "https:///osv"),
            "vulnerability data source \"https:///osv\" names no host"
        );
        assert!(refused(&["Debian"], "https://m/osv?x=1").contains("without a query"));
        assert_eq!(
            refused(&["../etc"], "https://m"),
            "\"../etc\" is not an OSV ecosystem name (Debian, PyPI, Red Hat, crates.io, ...)"
        );
        assert!(refused(&[""], "https://m").contains("is not an OSV ecosystem name"));
    }

    #[test]
    fn temporary_directories_go_when_dropped_and_leftovers_at_start() {
        let parent = tempfile::tempdir().unwrap();
        let dir = TempDir::create(parent.path(), "vulndb-update").unwrap();
        std::fs::write(dir.0.join("0.zip"), b"partial").unwrap();
        let path = dir.0.clone();
        drop(dir);
        assert!(!path.exists());
        let left = TempDir::create(parent.path(), "vulndb-update").unwrap();
        std::fs::write(left.0.join("0.zip"), b"partial").unwrap();
        std::fs::create_dir(parent.path().join("other")).unwrap();
        let path = left.0.clone();
        std::mem::forget(left);
        remove_leftovers(parent.path(), "vulndb-update");
        assert!(!path.exists());
        assert!(parent.path().join("other").exists());
    }

    #[test]
    fn the_schedule_waits_for_the_database_to_age_and_backs_off_after_a_failure() {
        let now = DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z").unwrap().to_utc();
        let hours = |h: u64| Duration::from_secs(h * 3600);
        let ago = |h: i64| Some(now - chrono::Duration::hours(h));
        // No database: at once. A fresh one: when it is an interval old.
        assert_eq!(next_update_in(now, None, None, hours(24)), Duration::ZERO);
        assert_eq!(next_update_in(now, ago(6), None, hours(24)), hours(18));
        assert_eq!(next_update_in(now, ago(30), None, hours(24)), Duration::ZERO);
        // A failure an hour ago with a stale database: retry now; a minute
        // ago: in the rest of the hour (or of a shorter interval).
        assert_eq!(next_update_in(now, ago(30), ago(1), hours(24)), Duration::ZERO);
        let minute_ago = Some(now - chrono::Duration::minutes(1));
        assert_eq!(
            next_update_in(now, None, minute_ago, hours(24)),
            Duration::from_secs(59 * 60)
        );
        assert_eq!(
            next_update_in(now, None, minute_ago, Duration::from_secs(300)),
            Duration::from_secs(240)
        );
    }
}
