//! Cluster nodes and the cluster itself, as the API shows them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a node does in the cluster. Every node runs workloads; a manager
/// also holds cluster state and the CA key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    Manager,
    Worker,
}

impl NodeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Manager => "manager",
            NodeRole::Worker => "worker",
        }
    }
}

impl std::fmt::Display for NodeRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for NodeRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "manager" => Ok(NodeRole::Manager),
            "worker" => Ok(NodeRole::Worker),
            other => Err(format!("unknown node role {other:?}: use worker or manager")),
        }
    }
}

/// Whether the scheduler may place work on a node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Availability {
    /// New work may be placed on it.
    #[default]
    Active,
    /// Nothing new is placed on it; what runs keeps running.
    Pause,
    /// Nothing new is placed on it, and its work moves elsewhere.
    Drain,
}

impl Availability {
    pub fn as_str(self) -> &'static str {
        match self {
            Availability::Active => "active",
            Availability::Pause => "pause",
            Availability::Drain => "drain",
        }
    }
}

impl std::fmt::Display for Availability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Availability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "active" => Ok(Availability::Active),
            "pause" => Ok(Availability::Pause),
            "drain" => Ok(Availability::Drain),
            other => Err(format!("unknown availability {other:?}: use active, pause or drain")),
        }
    }
}

/// Whether a node is seen alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Its heartbeats arrive.
    Ready,
    /// Its heartbeats are late, or the manager has not heard from it since
    /// it started: not yet counted as down.
    Unknown,
    /// No heartbeat for longer than the down timeout.
    Down,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Ready => "ready",
            NodeState::Unknown => "unknown",
            NodeState::Down => "down",
        }
    }
}

/// A node's status as the answering manager sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeStatus {
    pub state: NodeState,
    /// Why it is in that state.
    pub message: String,
    /// When the answering manager last heard from it (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<String>,
}

/// A cluster node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Node {
    pub id: String,
    pub hostname: String,
    pub role: NodeRole,
    pub availability: Availability,
    pub labels: BTreeMap<String, String>,
    /// `IP:PORT` other nodes reach its TLS listener at.
    pub addr: String,
    pub status: NodeStatus,
    /// The node answering this request.
    pub current: bool,
    /// When it joined (RFC 3339).
    pub joined: String,
    /// SHA-256 of its node certificate's DER, hex.
    pub certificate: String,
    /// When its node certificate expires (RFC 3339).
    pub certificate_expires: String,
}

/// The cluster as one manager sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterInfo {
    /// SHA-256 of the cluster CA certificate's DER, hex: the cluster's
    /// identity, which join tokens carry.
    pub ca_digest: String,
    /// When the CA certificate expires (RFC 3339).
    pub ca_expires: String,
    /// The answering node's id and role.
    pub node_id: String,
    pub role: NodeRole,
    /// When the answering node's certificate expires (RFC 3339).
    pub certificate_expires: String,
    /// The managers' advertised addresses.
    pub managers: Vec<String>,
    pub nodes: usize,
    /// This manager's view of Raft; absent on a worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft: Option<RaftStatus>,
}

/// The cluster CA: its root, a rotation under way, the roots it replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CaStatus {
    pub root: CaCertificate,
    /// A rotation under way: it ends by itself once every node holds a
    /// certificate of the new root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<CaRotationStatus>,
    /// Roots the cluster had before, oldest first: audit checkpoints they
    /// signed still verify, and bundles they issued still work until they
    /// expire or are revoked.
    #[serde(default)]
    pub retired: Vec<CaCertificate>,
}

/// One CA certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CaCertificate {
    /// SHA-256 of its DER, hex.
    pub digest: String,
    pub subject: String,
    /// RFC 3339.
    pub expires: String,
}

/// A CA rotation under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CaRotationStatus {
    /// The new root.
    pub next: CaCertificate,
    /// RFC 3339.
    pub started_at: String,
    /// Nodes in the cluster, and how many hold a certificate of the new
    /// root.
    pub nodes: usize,
    pub rotated: usize,
    /// The nodes still to renew (hostname and node id); a node that is
    /// down holds the rotation until it comes back or is removed.
    pub pending: Vec<String>,
}

/// A manager's view of Raft, which replicates cluster state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RaftStatus {
    /// `leader`, `follower`, `candidate` (an election), `learner` (a
    /// manager catching up before it votes) or `shutdown`.
    pub state: String,
    pub term: u64,
    /// The last entry in this manager's log, and the last it applied.
    pub last_log_index: u64,
    pub applied_index: u64,
    /// The leading manager's node id and address, when one is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_addr: Option<String>,
    /// How many managers vote, and how many are catching up to.
    pub voters: usize,
    pub learners: usize,
}

/// A join token and the command that uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JoinTokenView {
    pub role: NodeRole,
    pub token: String,
    /// `berth daemon --join TOKEN@ADDR:PORT`, with this manager's address.
    pub command: String,
}

/// `PATCH /v1/nodes/{id}`: what to change; what is left out is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<Availability>,
    /// Labels to add or replace.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub label_add: BTreeMap<String, String>,
    /// Labels to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub label_rm: Vec<String>,
}

/// `POST /v1/cluster/backup`: the passphrase the backup is encrypted with
/// (at least 12 characters; never stored or logged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    pub passphrase: String,
}
