//! The audit log as the API shows it: its entries, the signatures over the
//! chain, an export (everything `berth audit verify --file` checks offline)
//! and what a verification found. The stored records are the state
//! crate's; these carry the same fields, so an entry's hash, computed over
//! them, checks the same on either side.

use serde::{Deserialize, Serialize};

/// An entry of the hash-chained audit log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub seq: u64,
    /// RFC 3339.
    pub time: String,
    /// `admin` (the socket), a user name, or `anonymous`.
    pub user: String,
    /// The peer address, `local` for the socket.
    pub source: String,
    /// `METHOD /route/pattern`, `login`.
    pub action: String,
    pub resource: String,
    /// The request path (and query at the request level).
    pub object: String,
    /// `allowed`, `denied`, `failed`.
    pub result: String,
    pub status: u16,
    /// Why it was denied or failed; never a secret.
    pub detail: String,
    /// The previous entry's hash (zeros for the first).
    pub prev: String,
    pub hash: String,
}

/// A signature over the audit chain at `seq`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditSignature {
    pub seq: u64,
    pub hash: String,
    /// `head` or `checkpoint` (empty: made before signatures were typed).
    #[serde(default)]
    pub kind: String,
    /// HMAC-SHA256 under the node's audit key, hex.
    pub mac: String,
    /// ECDSA signature by the cluster key, hex (DER), once one is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
    /// Which cluster key made `sig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
}

/// An exported audit log: everything `audit verify` needs, offline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditExport {
    pub entries: Vec<AuditEntry>,
    /// `(key, signature)`: `head` and the checkpoints.
    pub signatures: Vec<(String, AuditSignature)>,
}

/// What `audit verify` found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Verification {
    pub ok: bool,
    pub entries: u64,
    pub checkpoints: u64,
    pub problems: Vec<String>,
}
