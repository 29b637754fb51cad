//! What the scan service says on the wire: the request of a scan, its
//! progress lines, a record's headline and summary counts, the
//! vulnerability database's status and what an import or update did, and a
//! webhook's delivery state. The scanner crate makes and re-exports them;
//! the report itself travels inside a signed record's payload.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /v1/scans`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct ScanSpec {
    pub image: String,
    /// `None` or `["all"]`: every enabled check; `["none"]` or empty: none.
    pub checks: Option<Vec<String>>,
    pub deny_licenses: Vec<String>,
    /// An ignore file's text (YAML, JSON or OpenVEX) and its name.
    pub ignore: Option<String>,
    pub ignore_name: Option<String>,
    /// A shell command run in the image (`/bin/sh -c`).
    pub test: Option<String>,
    /// Run the image and its HEALTHCHECK until it passes.
    pub test_healthcheck: bool,
    /// Seconds; 30 when unset.
    pub test_timeout_secs: Option<u64>,
}

/// One line of a scan's progress stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScanProgress {
    /// `inventory`, `vulnerabilities`, `licenses`, `optimization`, `checks`,
    /// `test`, `warning`, `done`, `error`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<usize>,
    /// What the line is about (a layer, a check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ScanProgress {
    /// A line with only a status (`done`, `error`).
    pub fn status(status: &str) -> ScanProgress {
        ScanProgress {
            status: status.to_string(),
            ..ScanProgress::default()
        }
    }
}

/// A record's headline, for listings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScanRecordSummary {
    pub id: String,
    pub image: String,
    pub image_digest: String,
    pub created: String,
    pub trigger: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_version: Option<String>,
    /// Counts of components, findings by severity, checks and licenses.
    pub summary: Summary,
    pub signed: bool,
}

/// What `berth vulndb status` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VulnDbStatus {
    pub version: Option<String>,
    pub digest: Option<String>,
    pub imported_at: Option<String>,
    pub advisories: usize,
    pub packages: usize,
    pub ecosystems: BTreeMap<String, usize>,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VulnDbImport {
    pub records: usize,
    pub changed: usize,
    pub skipped: usize,
    pub errors: Vec<String>,
    pub status: VulnDbStatus,
    /// Images whose latest record gained findings, by id of the new record.
    pub newly_vulnerable: Vec<NewlyVulnerable>,
    /// The exports a `vulndb update` downloaded, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub downloaded: Vec<Downloaded>,
}

/// An image that an import made vulnerable; also the webhook's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewlyVulnerable {
    pub image: String,
    pub image_digest: String,
    pub record: String,
    pub db_version: String,
    /// `id package@version` of each new finding.
    pub new_findings: Vec<String>,
}

/// One export an update downloaded and imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Downloaded {
    pub ecosystem: String,
    pub url: String,
    pub bytes: u64,
    /// OSV records read from it.
    pub records: usize,
}

/// What `berth scan webhooks ls` shows of one webhook: never its secret
/// nor its path and query, which often carry one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookState {
    /// The first 12 hex digits of the URL's SHA-256.
    pub id: String,
    /// `scheme://host[:port]` only.
    pub target: String,
    /// Where the signing secret is kept (readable by root only).
    pub secret_file: String,
    /// `idle` (nothing sent yet), `delivered`, `retrying` or `failed`.
    pub state: String,
    /// Deliveries waiting, the one being tried included.
    pub pending: usize,
    pub delivered: u64,
    /// Deliveries given up on (retry time spent, a 4xx, or the queue full).
    pub failed: u64,
    /// Attempts of the current (or last) delivery.
    pub attempts: u32,
    /// RFC 3339 time of the last attempt.
    pub last_attempt: Option<String>,
    /// The last answer: `200`, `answered 500`, or the connection error.
    pub last_result: Option<String>,
}

/// `POST /v1/vulndb/update`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct VulnDbUpdateSpec {
    /// OSV ecosystem names (`Debian`, `PyPI`, `Red Hat`); empty: the
    /// daemon's `--vulndb-ecosystem` list, by default every ecosystem the
    /// matcher uses.
    pub ecosystems: Vec<String>,
    /// Base URL of the exports; `None`: the daemon's `--vulndb-source`.
    pub source: Option<String>,
}

/// Counts per severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SeverityCounts {
    pub critical: usize,
    pub high: usize,
    pub medium: usize,
    pub low: usize,
    pub unknown: usize,
}

impl SeverityCounts {
    pub fn total(&self) -> usize {
        self.critical + self.high + self.medium + self.low + self.unknown
    }
}

/// The headline numbers of a report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Summary {
    /// Vulnerabilities that no ignore rule matched.
    pub vulnerabilities: SeverityCounts,
    /// Of those, how many have a fixed version.
    pub fixable: usize,
    pub ignored: usize,
    pub license_violations: usize,
    pub check_findings: SeverityCounts,
    pub check_failures: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub functional_test_passed: Option<bool>,
}
