//! The records [`crate::ClusterCommand`] writes, as they are stored. What
//! the API shows of them (never a password hash, a token's hash or a
//! registry password) are separate types, `berth_model`'s views; the
//! conversions into them are at the end of this file.

use std::collections::BTreeSet;
use std::fmt;

use berth_model::access::Permission;
use serde::{Deserialize, Serialize};

/// Whether `name` may name a user, team, organization or role: letters,
/// digits, `-`, `_`, `.`, `@`, starting with a letter or digit, at most 64.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

/// A cluster node, as its join recorded it and `node update` changed it.
/// Its status (ready, down) is not here: managers follow it in memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: String,
    pub hostname: String,
    pub role: berth_model::node::NodeRole,
    #[serde(default)]
    pub availability: berth_model::node::Availability,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// `IP:PORT` of its TLS listener.
    pub addr: String,
    /// SHA-256 of its node certificate's DER, hex.
    pub certificate: String,
    /// RFC 3339.
    pub certificate_expires: String,
    /// RFC 3339.
    pub joined: String,
    /// The certificate it had before its last renewal, accepted until it
    /// expires: connections made just before the renewal keep working.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_certificate: Option<String>,
    /// Its state as the leader last recorded it (absent until then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<NodeStatusRecord>,
    /// SHA-256 (hex) of the CA certificate that issued its certificate
    /// (empty: issued before CA rotation existed, by the first root).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub certificate_ca: String,
}

/// A node's state as the leader recorded it when it changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatusRecord {
    pub state: berth_model::node::NodeState,
    pub message: String,
    /// When the leader recorded it (RFC 3339).
    pub since: String,
}

/// What a role's join token is derived from: a random nonce (hex) the
/// proposer made, and when it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinTokenRecord {
    pub nonce: String,
    /// RFC 3339.
    pub rotated: String,
}

/// The cluster CA as cluster state keeps it (absent until the first
/// rotation: the root is then the one in every node's `pki/ca.pem`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CaRecord {
    /// The root every node trusts and join tokens name (PEM).
    pub root: String,
    /// The root's certificate signed by the root before it (PEM; empty for
    /// the first root): chains through it verify for whoever still trusts
    /// only the old one.
    #[serde(default)]
    pub cross: String,
    /// The root's key, sealed as [`CaRotation::sealed_key`] (empty for the
    /// first root, whose key every manager has had from the start): a
    /// manager that was down while the rotation ended takes it from here.
    #[serde(default)]
    pub sealed_key: String,
    /// A rotation under way: the new root, trusted next to `root` and
    /// issuing every certificate, until every node holds one it issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<CaRotation>,
    /// Roots this one replaced (PEM), oldest first: audit checkpoints and
    /// bundles they signed still verify.
    #[serde(default)]
    pub retired: Vec<String>,
}

/// A CA rotation under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaRotation {
    /// The new root, self-signed (PEM).
    pub cert: String,
    /// The new root's certificate signed by the current root (PEM).
    pub cross: String,
    /// The new root's key, sealed by the proposer under the managers'
    /// cluster key (`pki/cluster.key`; hex of nonce and ciphertext).
    pub sealed_key: String,
    /// RFC 3339, from the proposer.
    pub started_at: String,
}

/// An assignment as cluster state keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssignmentRecord {
    pub spec: berth_model::assignment::AssignmentSpec,
    /// RFC 3339, from the proposer.
    pub created_at: String,
}

/// What a node last reported on one of its assignments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub assignment: String,
    pub node: String,
    /// `starting`, `running`, `exited`, `failed`, `removing`.
    pub state: String,
    #[serde(default)]
    pub container: String,
    #[serde(default)]
    pub message: String,
    /// When the leader recorded the report (RFC 3339).
    pub reported_at: String,
}

impl TaskRecord {
    /// Whether two reports say the same, whenever they were made.
    pub fn same_as(&self, other: &TaskRecord) -> bool {
        (
            &self.assignment,
            &self.node,
            &self.state,
            &self.container,
            &self.message,
        ) == (
            &other.assignment,
            &other.node,
            &other.state,
            &other.container,
            &other.message,
        )
    }
}

/// The key of node `node`'s report on `assignment` (names hold no `/`).
pub fn task_key(assignment: &str, node: &str) -> String {
    format!("{assignment}/{node}")
}

/// A local user. `password_hash` is argon2id in PHC form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub password_hash: String,
    pub created: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Team {
    pub name: String,
    pub members: BTreeSet<String>,
    pub created: String,
}

/// An organization: a set of teams.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Org {
    pub name: String,
    pub teams: BTreeSet<String>,
    pub created: String,
}

/// A named set of (resource, action).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    pub permissions: Vec<Permission>,
    #[serde(default)]
    pub builtin: bool,
}

/// Subject (`user:NAME`, `team:NAME`, `org:NAME`) + role + collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub subject: String,
    pub role: String,
    pub collection: String,
    pub created: String,
}

/// A personal access token at rest: only the sha256 of the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub user: String,
    /// Hex sha256 of the whole token string.
    pub hash: String,
    pub scopes: Vec<String>,
    pub created: String,
    /// RFC 3339; none = does not expire.
    pub expires: Option<String>,
    #[serde(default)]
    pub description: String,
}

/// A browser session at rest: only hashes of its tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: String,
    pub user: String,
    /// SHA-256 of the session token, hex.
    pub hash: String,
    /// SHA-256 of the CSRF token, hex.
    pub csrf_hash: String,
    /// Unix seconds.
    pub created: i64,
    pub expires: i64,
    pub source: String,
}

/// A registry repository-name prefix and the collection its repositories
/// belong to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryCollection {
    pub prefix: String,
    pub collection: String,
}

/// A client bundle: a certificate issued to a user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Bundle {
    pub id: String,
    pub user: String,
    /// Hex of the certificate's serial number.
    pub serial: String,
    /// SHA-256 of the certificate's DER, hex.
    pub fingerprint: String,
    /// RFC 3339.
    pub created: String,
    pub not_after: String,
    /// RFC 3339; set once revoked.
    #[serde(default)]
    pub revoked: Option<String>,
}

/// "Images of repositories matching `pattern` must be signed by `threshold`
/// of `signers`."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustPolicy {
    pub pattern: String,
    /// Signer names: the delegations `targets/<name>`.
    pub signers: Vec<String>,
    pub threshold: usize,
    /// RFC 3339.
    #[serde(default)]
    pub created: String,
}

/// A user name and password for one registry, as `berth login` stored them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

pub use berth_model::access::AuditLevel;

// --- the trust server's metadata ---

/// One stored version of a role's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMeta {
    pub version: u64,
    /// Hex SHA-256 of the uploaded bytes.
    pub sha256: String,
    /// The metadata exactly as stored (JSON text).
    pub data: String,
    /// RFC 3339.
    pub created: String,
}

/// The current version of a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustCurrent {
    pub version: u64,
    pub sha256: String,
}

/// A server-managed key. `private` is the sealed private key as the
/// daemon encrypted it; cluster state never looks inside.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustKeyRecord {
    /// The TUF key object's JSON (`{"keytype":..,"keyval":{..}}`).
    pub public: String,
    pub key_id: String,
    pub private: String,
    pub created: String,
}

impl fmt::Debug for TrustKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustKeyRecord")
            .field("key_id", &self.key_id)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// One changefeed record, in notary-server's JSON field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustChange {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "CreatedAt")]
    pub created_at: String,
    #[serde(rename = "GUN")]
    pub gun: String,
    #[serde(rename = "Version")]
    pub version: u64,
    #[serde(rename = "SHA256")]
    pub sha256: String,
    /// `update` or `deletion`.
    #[serde(rename = "Category")]
    pub category: String,
}

/// One role's new metadata in a trust update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustMetaUpdate {
    pub role: String,
    pub meta: StoredMeta,
}

/// The key of a role in a GUN: `gun \n role` ([`crate::tables::TRUST_CURRENT`]).
pub fn trust_role_key(gun: &str, role: &str) -> String {
    format!("{gun}\n{role}")
}

/// `gun \n role \n last`: a version ([`trust_version_key`]), a checksum or a key id.
pub fn trust_entry_key(gun: &str, role: &str, last: &str) -> String {
    format!("{gun}\n{role}\n{last}")
}

/// A version or change id as a key that sorts numerically (20 digits).
pub fn trust_version_key(v: u64) -> String {
    format!("{v:020}")
}

/// A signed scan record as stored and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedScanRecord {
    pub id: String,
    /// The scan record as JSON: exactly the bytes signed.
    pub payload: String,
    /// Hex of the DER signature; empty when the node had no cluster key.
    pub signature: String,
    pub key_id: String,
    pub algorithm: String,
}

// --- the audit log ---

/// What a caller records; the log adds sequence, time and hashes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewAuditEntry {
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
}

/// An entry of the hash-chained audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub time: String,
    #[serde(flatten)]
    pub entry: NewAuditEntry,
    /// The previous entry's hash (zeros for the first).
    pub prev: String,
    pub hash: String,
}

impl AuditEntry {
    /// sha256(prev || canonical JSON of everything but the hash), hex.
    pub fn compute_hash(&self) -> String {
        use sha2::Digest;
        #[derive(Serialize)]
        struct Canonical<'a> {
            seq: u64,
            time: &'a str,
            entry: &'a NewAuditEntry,
            prev: &'a str,
        }
        let body = serde_json::to_vec(&Canonical {
            seq: self.seq,
            time: &self.time,
            entry: &self.entry,
            prev: &self.prev,
        })
        .unwrap_or_default();
        let mut hasher = sha2::Sha256::new();
        hasher.update(self.prev.as_bytes());
        hasher.update(&body);
        hex::encode(hasher.finalize())
    }
}

/// A signature over the audit chain at `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// The key of the signed head in [`crate::tables::AUDIT_SIGNATURES`].
pub const AUDIT_HEAD: &str = "head";

/// The hash before the first entry.
pub const AUDIT_GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The key of entry (or checkpoint) `seq`: zero-padded, so keys sort by
/// sequence.
pub fn audit_key(seq: u64) -> String {
    format!("{seq:020}")
}

// --- what the API shows of each record ---

impl From<Team> for berth_model::access::Team {
    fn from(t: Team) -> Self {
        Self {
            name: t.name,
            members: t.members,
            created: t.created,
        }
    }
}

impl From<Org> for berth_model::access::Org {
    fn from(o: Org) -> Self {
        Self {
            name: o.name,
            teams: o.teams,
            created: o.created,
        }
    }
}

impl From<Role> for berth_model::access::Role {
    fn from(r: Role) -> Self {
        Self {
            name: r.name,
            permissions: r.permissions,
            builtin: r.builtin,
        }
    }
}

impl From<Grant> for berth_model::access::Grant {
    fn from(g: Grant) -> Self {
        Self {
            id: g.id,
            subject: g.subject,
            role: g.role,
            collection: g.collection,
            created: g.created,
        }
    }
}

impl From<Bundle> for berth_model::access::Bundle {
    fn from(b: Bundle) -> Self {
        Self {
            id: b.id,
            user: b.user,
            serial: b.serial,
            fingerprint: b.fingerprint,
            created: b.created,
            not_after: b.not_after,
            revoked: b.revoked,
        }
    }
}

impl From<RepositoryCollection> for berth_model::access::RepositoryCollection {
    fn from(c: RepositoryCollection) -> Self {
        Self {
            prefix: c.prefix,
            collection: c.collection,
        }
    }
}

impl From<&TokenRecord> for berth_model::access::TokenView {
    fn from(t: &TokenRecord) -> Self {
        Self {
            id: t.id.clone(),
            user: t.user.clone(),
            scopes: t.scopes.clone(),
            created: t.created.clone(),
            expires: t.expires.clone(),
            description: t.description.clone(),
        }
    }
}

impl From<TrustPolicy> for berth_model::TrustPolicy {
    fn from(p: TrustPolicy) -> Self {
        Self {
            pattern: p.pattern,
            signers: p.signers,
            threshold: p.threshold,
            created: p.created,
        }
    }
}

impl From<SignedScanRecord> for berth_model::SignedScanRecord {
    fn from(r: SignedScanRecord) -> Self {
        Self {
            id: r.id,
            payload: r.payload,
            signature: r.signature,
            key_id: r.key_id,
            algorithm: r.algorithm,
        }
    }
}

impl From<AuditEntry> for berth_model::audit::AuditEntry {
    fn from(e: AuditEntry) -> Self {
        Self {
            seq: e.seq,
            time: e.time,
            user: e.entry.user,
            source: e.entry.source,
            action: e.entry.action,
            resource: e.entry.resource,
            object: e.entry.object,
            result: e.entry.result,
            status: e.entry.status,
            detail: e.entry.detail,
            prev: e.prev,
            hash: e.hash,
        }
    }
}

impl From<berth_model::audit::AuditEntry> for AuditEntry {
    /// An entry as an export carries it, to verify offline.
    fn from(e: berth_model::audit::AuditEntry) -> Self {
        Self {
            seq: e.seq,
            time: e.time,
            entry: NewAuditEntry {
                user: e.user,
                source: e.source,
                action: e.action,
                resource: e.resource,
                object: e.object,
                result: e.result,
                status: e.status,
                detail: e.detail,
            },
            prev: e.prev,
            hash: e.hash,
        }
    }
}

impl From<AuditSignature> for berth_model::audit::AuditSignature {
    fn from(s: AuditSignature) -> Self {
        Self {
            seq: s.seq,
            hash: s.hash,
            kind: s.kind,
            mac: s.mac,
            sig: s.sig,
            signer: s.signer,
        }
    }
}

impl From<berth_model::audit::AuditSignature> for AuditSignature {
    fn from(s: berth_model::audit::AuditSignature) -> Self {
        Self {
            seq: s.seq,
            hash: s.hash,
            kind: s.kind,
            mac: s.mac,
            sig: s.sig,
            signer: s.signer,
        }
    }
}
