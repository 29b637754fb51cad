//! What the scan service keeps: the certification record (the payload a
//! signed record carries). Its wire types (the request of a scan, its
//! progress lines, a record's headline, the vulnerability database's status
//! and what an import did, a webhook's delivery state) are
//! `berth_model::scan`'s, re-exported here for the crates that make them.

use serde::{Deserialize, Serialize};

use crate::report::{ScanReport, Summary};

pub use berth_model::scan::{
    Downloaded, NewlyVulnerable, ScanProgress, ScanRecordSummary, ScanSpec, VulnDbImport, VulnDbStatus,
    VulnDbUpdateSpec, WebhookState,
};

/// What a certification record says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanRecord {
    pub id: String,
    /// The reference as scanned.
    pub image: String,
    /// The manifest digest.
    pub image_digest: String,
    /// The image id (config digest).
    pub image_id: String,
    pub scanner_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_version: Option<String>,
    /// RFC 3339.
    pub created: String,
    /// `scan` (a user), `push` (scan on push), `vulndb` (re-evaluated after an import).
    pub trigger: String,
    /// The record this one re-evaluated, for `vulndb` records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    pub summary: Summary,
    pub report: ScanReport,
}
