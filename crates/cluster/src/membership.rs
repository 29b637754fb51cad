//! Who is in the cluster: this node's own identity ([`NodeSelf`]), the
//! first manager's bootstrap, the heartbeats and gossip node status
//! follows ([`Members`]), and [`Cluster`], what the API asks of it. The
//! managers' gRPC services are in [`crate::services`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_model::node::{Node, NodeRole, NodeState, NodeStatus};
use berth_state::records::{JoinTokenRecord, NodeRecord, NodeStatusRecord};
use berth_state::{tables, ClusterCommand, State};
use serde::{Deserialize, Serialize};

use crate::join::JoinToken;
use crate::pki::Pki;
use crate::{Error, Result};

/// The nonce of a role whose token was never rotated.
const INITIAL_NONCE: &str = "initial";

/// This node's place in the cluster (`pki/node.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSelf {
    pub id: String,
    pub role: NodeRole,
    /// `IP:PORT` this node advertised when it joined.
    pub addr: String,
    /// The managers' addresses as last learned.
    pub managers: Vec<String>,
    /// A manager that joined: the node ids of the managers when it
    /// joined, whose Raft calls it takes while it catches up (before its
    /// own copy of cluster state names them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manager_ids: Vec<String>,
}

impl NodeSelf {
    fn path(pki_dir: &Path) -> std::path::PathBuf {
        pki_dir.join("node.json")
    }

    /// This node's identity, when it has one.
    pub fn load(pki_dir: &Path) -> Result<Option<NodeSelf>> {
        let path = Self::path(pki_dir);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| Error::Pem {
                path,
                message: format!("not a node identity: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Io {
                what: "reading",
                path,
                source: e,
            }),
        }
    }

    pub fn save(&self, pki_dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        crate::pki::write_public(&Self::path(pki_dir), &bytes)
    }
}

/// A fresh key and a certificate request for it (DER); the request's
/// names do not matter (the CA decides them).
pub fn node_key() -> Result<(rcgen::KeyPair, Vec<u8>)> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let csr = rcgen::CertificateParams::default().serialize_request(&key)?;
    Ok((key, csr.der().to_vec()))
}

/// The first start of a manager that has no node identity (a new cluster,
/// or a data root from before clusters): makes its node id and node
/// certificate. Later starts load it. [`record_self`] then puts it on
/// record, once cluster state can be changed.
pub fn bootstrap(pki: &Pki, addr: &str) -> Result<NodeSelf> {
    if let Some(me) = NodeSelf::load(pki.dir())? {
        return Ok(me);
    }
    let id = berth_model::new_id();
    let (key, csr) = node_key()?;
    let ips: Vec<std::net::IpAddr> = addr
        .parse::<std::net::SocketAddr>()
        .map(|a| a.ip())
        .into_iter()
        .collect();
    let issued = pki.issue_node(&id, &csr, &ips)?;
    pki.store_node_identity(&issued.cert_pem, &key.serialize_pem())?;
    let me = NodeSelf {
        id,
        role: NodeRole::Manager,
        addr: addr.to_string(),
        managers: vec![addr.to_string()],
        manager_ids: Vec::new(),
    };
    me.save(pki.dir())?;
    tracing::info!(node = %me.id, %addr, "this node is the first manager of a new cluster");
    Ok(me)
}

/// Records this manager in cluster state when it is not yet (its first
/// start, or a start after a crash before the record was made).
pub fn record_self(pki: &Pki, state: &State, me: &NodeSelf, hostname: &str) -> Result<()> {
    if is_on_record(state, &me.id)? {
        return Ok(());
    }
    let cert = match pki.node_identity() {
        Some(identity) => identity?.chain.into_iter().next(),
        None => None,
    }
    .ok_or_else(|| Error::Invalid("this manager has no node certificate".into()))?;
    state.propose(ClusterCommand::AddNode {
        node: NodeRecord {
            id: me.id.clone(),
            hostname: hostname.to_string(),
            role: NodeRole::Manager,
            availability: Default::default(),
            labels: Default::default(),
            addr: me.addr.clone(),
            certificate: crate::pki::fingerprint(&cert),
            certificate_expires: crate::pki::not_after_of(&cert).unwrap_or_default(),
            joined: now(),
            previous_certificate: None,
            status: None,
            certificate_ca: match pki.issued_by_issuing(&cert) {
                true => pki.issuing_fingerprint(),
                false => String::new(),
            },
        },
    })?;
    Ok(())
}

/// Whether this node takes a connection from node `id` presenting the
/// certificate `fingerprint`: it is that node's current certificate on
/// record; or this manager joined and is still catching up (its own
/// record has not reached it) and `id` was a manager when it joined.
pub fn admits(state: &State, me: &NodeSelf, id: &str, fingerprint: &str) -> Result<bool> {
    if is_member(state, id, fingerprint)? {
        return Ok(true);
    }
    Ok(me.manager_ids.iter().any(|m| m == id) && !is_on_record(state, &me.id)?)
}

/// Whether node `id` may take part in Raft: a manager on record, or one
/// of the managers this manager joined while it catches up.
pub fn is_manager_peer(state: &State, me: &NodeSelf, id: &str) -> Result<bool> {
    match state.store().get::<NodeRecord>(tables::NODES, id)? {
        Some(n) => Ok(n.role == NodeRole::Manager),
        None => Ok(me.manager_ids.iter().any(|m| m == id) && !is_on_record(state, &me.id)?),
    }
}

/// Whether node `id` is on record (a manager that joined is not, until
/// the leader's state reaches it).
pub fn is_on_record(state: &State, id: &str) -> Result<bool> {
    Ok(state.store().get::<NodeRecord>(tables::NODES, id)?.is_some())
}

/// The node ids of the managers on record but `except`: those a manager
/// that joins or is promoted takes Raft's calls from while it catches up.
pub fn other_manager_ids(state: &State, except: &str) -> Result<Vec<String>> {
    Ok(nodes(state)?
        .into_iter()
        .filter(|n| n.role == NodeRole::Manager && n.id != except)
        .map(|n| n.id)
        .collect())
}

/// Every node on record, by id.
pub fn nodes(state: &State) -> Result<Vec<NodeRecord>> {
    values(state, tables::NODES)
}

/// Every record of a cluster table, in key order, without the keys.
pub(crate) fn values<T: serde::de::DeserializeOwned>(state: &State, table: berth_store::Table) -> Result<Vec<T>> {
    Ok(state.store().list::<T>(table)?.into_iter().map(|(_, v)| v).collect())
}

/// Whether a client certificate with this fingerprint is the current
/// certificate of node `id`.
pub fn is_member(state: &State, id: &str, fingerprint: &str) -> Result<bool> {
    let node = state.store().get::<NodeRecord>(tables::NODES, id)?;
    Ok(node.is_some_and(|n| n.certificate == fingerprint || n.previous_certificate.as_deref() == Some(fingerprint)))
}

/// The managers' addresses, `first` first.
pub fn manager_addrs(state: &State, first: &str) -> Result<Vec<String>> {
    let mut addrs = vec![first.to_string()];
    for n in nodes(state)? {
        if n.role == NodeRole::Manager && !addrs.contains(&n.addr) {
            addrs.push(n.addr);
        }
    }
    Ok(addrs)
}

/// The current join token of `role`.
pub fn join_token(pki: &Pki, state: &State, role: NodeRole) -> Result<JoinToken> {
    let record = state
        .store()
        .get::<JoinTokenRecord>(tables::JOIN_TOKENS, role.as_str())?;
    let nonce = record.as_ref().map_or(INITIAL_NONCE, |r| r.nonce.as_str());
    let mac = pki.join_secret(role.as_str(), nonce)?;
    Ok(JoinToken::derived(role, &pki.ca_der(), &mac))
}

/// The command that rotates `role`'s join token (a fresh random nonce).
pub fn rotate_join_token(role: NodeRole) -> ClusterCommand {
    ClusterCommand::SetJoinToken {
        role: role.as_str().to_string(),
        record: JoinTokenRecord {
            nonce: hex::encode(rand::random::<[u8; 16]>()),
            rotated: now(),
        },
    }
}

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Heartbeat timing: how often agents send one, and when a node that
/// sends none is `unknown` (suspected) and then `down`.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub heartbeat: Duration,
    /// Late by this much: `unknown`.
    pub suspect_after: Duration,
    /// Silent for this long: `down`.
    pub down_after: Duration,
}

impl Timing {
    /// Refuses timings that cannot work: a zero period, or a node marked
    /// suspect or down before a heartbeat could be late.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.heartbeat.is_zero() {
            return Err("--heartbeat-period must be above zero".into());
        }
        if self.suspect_after <= self.heartbeat {
            return Err(format!(
                "--node-suspect-after ({:?}) must be longer than --heartbeat-period ({:?})",
                self.suspect_after, self.heartbeat
            ));
        }
        if self.down_after <= self.suspect_after {
            return Err(format!(
                "--node-down-after ({:?}) must be longer than --node-suspect-after ({:?})",
                self.down_after, self.suspect_after
            ));
        }
        Ok(())
    }
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat: Duration::from_secs(1),
            suspect_after: Duration::from_secs(3),
            down_after: Duration::from_secs(10),
        }
    }
}

struct Seen {
    at: Instant,
    wall: chrono::DateTime<chrono::Utc>,
    /// How far the node's clock was from this manager's at its last
    /// heartbeat (its clock minus ours, network delay included).
    skew_ms: Option<i64>,
}

/// A node's clock further off than this is reported (certificates,
/// tokens and the audit log's times depend on clocks).
pub const CLOCK_SKEW_WARNING_MS: i64 = 5_000;

/// The heartbeats this manager has received, in memory: a node's status
/// is what this manager saw of it.
pub struct Members {
    me: String,
    /// Since when this manager holds sessions (its start, or when it
    /// became the leader).
    started: Mutex<Instant>,
    timing: Timing,
    seen: Mutex<HashMap<String, Seen>>,
    /// Nodes gossip declared down, and since when.
    gossip_down: Mutex<HashMap<String, (Instant, chrono::DateTime<chrono::Utc>)>>,
}

impl Members {
    pub fn new(me: &str, timing: Timing) -> Self {
        Members {
            me: me.to_string(),
            started: Mutex::new(Instant::now()),
            timing,
            seen: Mutex::new(HashMap::new()),
            gossip_down: Mutex::new(HashMap::new()),
        }
    }

    /// What gossip (SWIM) says of `node`: down (the cluster stopped
    /// hearing from it) or up again.
    pub fn gossip(&self, node: &str, up: bool) {
        if let Ok(mut down) = self.gossip_down.lock() {
            match up {
                true => {
                    down.remove(node);
                }
                false => {
                    down.insert(node.to_string(), (Instant::now(), chrono::Utc::now()));
                }
            }
        }
    }

    /// When gossip declared `node` down, if it did and no heartbeat came
    /// from it since.
    fn gossip_down_since(&self, node: &str, last_heartbeat: Option<Instant>) -> Option<chrono::DateTime<chrono::Utc>> {
        let down = self.gossip_down.lock().ok()?;
        let (at, wall) = down.get(node)?;
        last_heartbeat.is_none_or(|h| h < *at).then_some(*wall)
    }

    /// This manager became the leader: agents come to it from now on.
    /// Each node gets a full grace period to reconnect, as if heard now
    /// (what this manager heard when it led before is old).
    pub fn lead_from_now(&self) {
        let now = Instant::now();
        if let Ok(mut started) = self.started.lock() {
            *started = now;
        }
        if let Ok(mut seen) = self.seen.lock() {
            for s in seen.values_mut() {
                s.at = now;
            }
        }
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// A heartbeat (or a session opened) from `node`; `sent_unix_ms` is
    /// the node's clock when it sent it.
    pub(crate) fn heard(&self, node: &str, sent_unix_ms: Option<i64>) {
        let wall = chrono::Utc::now();
        let skew_ms = sent_unix_ms.map(|sent| sent - wall.timestamp_millis());
        if let Ok(mut seen) = self.seen.lock() {
            let was_off = seen
                .get(node)
                .and_then(|s| s.skew_ms)
                .is_some_and(|k| k.abs() > CLOCK_SKEW_WARNING_MS);
            if let Some(k) = skew_ms.filter(|k| k.abs() > CLOCK_SKEW_WARNING_MS && !was_off) {
                tracing::warn!(%node, skew_ms = k, "a node's clock is far from this manager's: certificates and tokens may be refused, audit times disagree; fix the clocks (NTP)");
            }
            let skew_ms = skew_ms.or_else(|| seen.get(node).and_then(|s| s.skew_ms));
            seen.insert(
                node.to_string(),
                Seen {
                    at: Instant::now(),
                    wall,
                    skew_ms,
                },
            );
        }
    }

    /// The status of node `id` as this manager sees it now.
    pub fn status(&self, id: &str) -> NodeStatus {
        if id == self.me {
            return NodeStatus {
                state: NodeState::Ready,
                message: "this node".into(),
                last_heartbeat: None,
            };
        }
        let seen = self.seen.lock().ok();
        let heard_at = seen.as_ref().and_then(|m| m.get(id)).map(|s| s.at);
        if let Some(since) = self.gossip_down_since(id, heard_at) {
            return NodeStatus {
                state: NodeState::Down,
                message: format!(
                    "gossip (SWIM) declared it down at {}: other nodes' probes go unanswered, and no heartbeat came since",
                    since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
                last_heartbeat: seen
                    .as_ref()
                    .and_then(|m| m.get(id))
                    .map(|s| s.wall.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            };
        }
        let Some(s) = seen.as_ref().and_then(|m| m.get(id)) else {
            let up = self.started.lock().map_or(Duration::ZERO, |s| s.elapsed());
            let (state, message) = if up > self.timing.down_after {
                (
                    NodeState::Down,
                    format!("no heartbeat since this manager started leading {}s ago", up.as_secs()),
                )
            } else {
                (
                    NodeState::Unknown,
                    "no heartbeat yet since this manager started leading".into(),
                )
            };
            return NodeStatus {
                state,
                message,
                last_heartbeat: None,
            };
        };
        let late = s.at.elapsed();
        let (state, message) = if late <= self.timing.suspect_after {
            (NodeState::Ready, "heartbeats arrive".to_string())
        } else if late <= self.timing.down_after {
            (
                NodeState::Unknown,
                format!("heartbeat late: the last came {:.1}s ago", late.as_secs_f64()),
            )
        } else {
            (NodeState::Down, format!("no heartbeat for {}s", late.as_secs()))
        };
        let message = match s.skew_ms.filter(|k| k.abs() > CLOCK_SKEW_WARNING_MS) {
            Some(k) => format!(
                "{message}; its clock is {:.0}s {} this manager's",
                (k.abs() as f64) / 1000.0,
                if k > 0 { "ahead of" } else { "behind" }
            ),
            None => message,
        };
        NodeStatus {
            state,
            message,
            last_heartbeat: Some(s.wall.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        }
    }

    /// A node record as the API shows it, with its status.
    pub fn view(&self, n: NodeRecord) -> Node {
        Node {
            status: self.status(&n.id),
            current: n.id == self.me,
            id: n.id,
            hostname: n.hostname,
            role: n.role,
            availability: n.availability,
            labels: n.labels,
            addr: n.addr,
            joined: n.joined,
            certificate: n.certificate,
            certificate_expires: n.certificate_expires,
        }
    }
}

pub use crate::services::{grpc_routes, AuditHook, Manager, MANAGER_FILES};

/// This node's view of the cluster, for the API: what it is, and on a
/// manager the nodes, their status and the join tokens.
pub struct Cluster {
    pub me: NodeSelf,
    pub pki: Arc<Pki>,
    pub state: State,
    pub members: Arc<Members>,
    /// This manager's Raft; `None` on a worker.
    pub replica: Option<crate::raft::Replica>,
}

impl Cluster {
    pub(crate) fn require_manager(&self) -> Result<()> {
        if self.me.role == NodeRole::Manager && self.pki.is_manager() {
            return Ok(());
        }
        Err(Error::NotManager(format!(
            "this node is a worker: ask a manager ({})",
            self.me.managers.join(", ")
        )))
    }

    /// A node record as the API shows it: the leader (and a node alone)
    /// knows its status from its heartbeats; another manager shows what
    /// the leader last recorded.
    fn view(&self, n: NodeRecord) -> Node {
        let follower = self
            .replica
            .as_ref()
            .is_some_and(|r| !crate::raft::manager::is_leader(r));
        if !follower || n.id == self.me.id {
            return self.members.view(n);
        }
        let status = match &n.status {
            Some(s) => NodeStatus {
                state: s.state,
                message: format!("{} (as the leader recorded it at {})", s.message, s.since),
                last_heartbeat: None,
            },
            None => NodeStatus {
                state: NodeState::Unknown,
                message: "the leader has not recorded its state yet".into(),
                last_heartbeat: None,
            },
        };
        Node {
            status,
            ..self.members.view(n)
        }
    }

    /// Every node with its status, managers first, then by host name.
    pub fn nodes(&self) -> Result<Vec<Node>> {
        self.require_manager()?;
        let mut all: Vec<Node> = nodes(&self.state)?.into_iter().map(|n| self.view(n)).collect();
        all.sort_by(|a, b| {
            (a.role != NodeRole::Manager, &a.hostname, &a.id).cmp(&(b.role != NodeRole::Manager, &b.hostname, &b.id))
        });
        Ok(all)
    }

    /// The node `key` names: its id, a unique prefix of it, or its unique
    /// host name.
    pub fn node(&self, key: &str) -> Result<Node> {
        Ok(self.view(self.find(key)?))
    }

    fn find(&self, key: &str) -> Result<NodeRecord> {
        self.require_manager()?;
        let all = nodes(&self.state)?;
        if let Some(n) = all.iter().find(|n| n.id == key) {
            return Ok(n.clone());
        }
        let matches: Vec<&NodeRecord> = all
            .iter()
            .filter(|n| (!key.is_empty() && n.id.starts_with(key)) || n.hostname == key)
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(Error::NotFound(format!("no such node: {key}"))),
            many => Err(Error::Invalid(format!(
                "{key:?} names {} nodes: use more of the node id",
                many.len()
            ))),
        }
    }

    /// Changes a node's availability and labels.
    pub fn update(&self, key: &str, u: berth_model::node::NodeUpdate) -> Result<Node> {
        for (k, v) in &u.label_add {
            check_label(k)?;
            if v.len() > 1024 || v.chars().any(char::is_control) {
                return Err(Error::Invalid(format!(
                    "the value of label {k:?} is too long or has control characters"
                )));
            }
        }
        for k in &u.label_rm {
            check_label(k)?;
        }
        let node = self.find(key)?;
        self.state.propose(ClusterCommand::UpdateNode {
            id: node.id.clone(),
            availability: u.availability,
            label_add: u.label_add,
            label_rm: u.label_rm,
        })?;
        self.node(&node.id)
    }

    /// Removes a node from the cluster: its certificate is refused from
    /// now on. Refused for the answering node, for the last manager, and
    /// (unless `force`) for a node that is not down.
    pub fn remove(&self, key: &str, force: bool) -> Result<Node> {
        let node = self.view(self.find(key)?);
        if node.current {
            return Err(Error::Conflict(format!(
                "node {} is the node answering this request: remove it from another manager",
                node.hostname
            )));
        }
        if node.role == NodeRole::Manager {
            let managers = nodes(&self.state)?
                .iter()
                .filter(|n| n.role == NodeRole::Manager)
                .count();
            if managers <= 1 {
                return Err(Error::Conflict("the cluster's last manager cannot be removed".into()));
            }
        }
        if !force && node.status.state != NodeState::Down {
            return Err(Error::Conflict(format!(
                "node {} is {} ({}): stop it first, or remove it with --force",
                node.hostname,
                node.status.state.as_str(),
                node.status.message
            )));
        }
        match self.state.propose(ClusterCommand::RemoveNode { id: node.id.clone() }) {
            Ok(_) => {}
            Err(berth_state::Error::Rejected(berth_state::Rejected::NotFound(m))) => return Err(Error::NotFound(m)),
            Err(e) => return Err(e.into()),
        }
        tracing::info!(node = %node.id, hostname = %node.hostname, force, "removed a node from the cluster");
        Ok(node)
    }

    pub fn info(&self) -> Result<berth_model::node::ClusterInfo> {
        let (managers, count) = match self.require_manager() {
            Ok(()) => (manager_addrs(&self.state, &self.me.addr)?, nodes(&self.state)?.len()),
            Err(_) => (self.me.managers.clone(), 0),
        };
        let certificate_expires = match self.pki.node_identity() {
            Some(Ok(identity)) => identity
                .chain
                .first()
                .and_then(|c| crate::pki::not_after_of(c))
                .unwrap_or_default(),
            _ => String::new(),
        };
        Ok(berth_model::node::ClusterInfo {
            ca_digest: self.pki.ca_fingerprint(),
            ca_expires: self.pki.ca_expires(),
            node_id: self.me.id.clone(),
            role: self.me.role,
            certificate_expires,
            managers,
            nodes: count,
            raft: self
                .replica
                .as_ref()
                .map(|r| crate::raft::manager::status(r, &self.state)),
        })
    }

    /// Promotes a worker to manager or demotes a manager to worker. The
    /// node restarts in its new role; a manager is demoted only when the
    /// managers left, of which a majority must be up, keep a quorum.
    pub fn set_role(&self, key: &str, role: NodeRole) -> Result<Node> {
        let node = self.view(self.find(key)?);
        if node.role == role {
            return Err(Error::Conflict(format!("node {} is already a {role}", node.hostname)));
        }
        if node.status.state != NodeState::Ready {
            return Err(Error::Conflict(format!(
                "node {} is {} ({}): a node changes role while it is up",
                node.hostname,
                node.status.state.as_str(),
                node.status.message
            )));
        }
        if role == NodeRole::Worker {
            let managers: Vec<Node> = nodes(&self.state)?
                .into_iter()
                .filter(|n| n.role == NodeRole::Manager && n.id != node.id)
                .map(|n| self.view(n))
                .collect();
            if managers.is_empty() {
                return Err(Error::Conflict("the cluster's last manager cannot be demoted".into()));
            }
            let up = managers.iter().filter(|m| m.status.state == NodeState::Ready).count();
            if up < managers.len() / 2 + 1 {
                return Err(Error::Conflict(format!(
                    "demoting {} would leave {} managers of which {up} are up: a majority of them must be up",
                    node.hostname,
                    managers.len()
                )));
            }
            // A leader taking itself out of Raft can strand the others in
            // an election without a majority: it steps down first, and
            // another manager records the change.
            if let Some(r) = self.replica.as_ref() {
                if r.raft.metrics().borrow().current_leader == Some(crate::raft::raft_id(&node.id)) {
                    let stepped = tokio::runtime::Handle::try_current()
                        .ok()
                        .and_then(|h| crate::raft::manager::wait_on(&h, r.step_down_leader()))
                        .unwrap_or_else(|| Err("a leader steps down only on the daemon's runtime".to_string()));
                    stepped.map_err(|e| {
                        Error::Conflict(format!(
                            "node {} leads the cluster and could not step down: {e}",
                            node.hostname
                        ))
                    })?;
                    tracing::info!(node = %node.id, "the leader stepped down to be demoted");
                }
            }
        }
        self.state.propose(ClusterCommand::SetNodeRole {
            id: node.id.clone(),
            role,
        })?;
        tracing::info!(node = %node.id, hostname = %node.hostname, %role, "changed a node's role");
        self.node(&node.id)
    }

    /// A backup of cluster state as this manager has applied it, and of
    /// the managers' secrets, encrypted with `passphrase`.
    pub fn backup(&self, passphrase: &str) -> Result<(Vec<u8>, crate::backup::Summary)> {
        self.require_manager()?;
        let applied = self
            .replica
            .as_ref()
            .map_or(0, |r| r.raft.metrics().borrow().last_applied.map_or(0, |l| l.index));
        let root = self.pki.dir().parent().unwrap_or(self.pki.dir());
        crate::backup::write(&self.state, root, passphrase, applied)
    }

    /// The join token of `role` (a new one first when `rotate`) and the
    /// command that uses it.
    pub fn join_token(&self, role: NodeRole, rotate: bool) -> Result<berth_model::node::JoinTokenView> {
        self.require_manager()?;
        if rotate {
            self.state.propose(rotate_join_token(role))?;
            tracing::info!(%role, "rotated the join token");
        }
        let token = join_token(&self.pki, &self.state, role)?.to_string();
        Ok(berth_model::node::JoinTokenView {
            role,
            command: format!("berth daemon --join {token}@{}", self.me.addr),
            token,
        })
    }
}

/// On the leader: records in cluster state each node whose state changed
/// (ready or down; `unknown` is a suspicion, not recorded), so that every
/// manager shows it, and ends a CA rotation once every node renewed
/// ([`crate::ca::finish_if_done`]). Runs until the runtime stops.
pub fn spawn_status_recorder(cluster: Arc<Cluster>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(replica) = cluster.replica.clone() else { return };
        let period = cluster.members.timing().heartbeat.max(Duration::from_millis(500));
        let mut was_leading = false;
        loop {
            tokio::time::sleep(period).await;
            let leading = crate::raft::manager::is_leader(&replica);
            if leading && !was_leading {
                cluster.members.lead_from_now();
            }
            was_leading = leading;
            if !leading {
                continue;
            }
            let c = cluster.clone();
            let recorded = tokio::task::spawn_blocking(move || -> Result<usize> {
                let since = now();
                let changed: Vec<(String, NodeStatusRecord)> = nodes(&c.state)?
                    .into_iter()
                    .filter_map(|n| {
                        let live = c.members.status(&n.id);
                        let settled = live.state != NodeState::Unknown;
                        (settled && n.status.as_ref().map(|s| s.state) != Some(live.state)).then(|| {
                            let record = NodeStatusRecord {
                                state: live.state,
                                message: live.message,
                                since: since.clone(),
                            };
                            (n.id, record)
                        })
                    })
                    .collect();
                let count = changed.len();
                if count > 0 {
                    c.state.propose(ClusterCommand::SetNodeStatus { statuses: changed })?;
                }
                crate::ca::finish_if_done(&c.state)?;
                Ok(count)
            })
            .await;
            match recorded {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::debug!(nodes = n, "recorded node state changes"),
                Ok(Err(e)) => tracing::warn!(error = %e, "recording node state changes"),
                Err(e) => tracing::warn!(error = %e, "recording node state changes"),
            }
        }
    })
}

/// A label key: letters, digits, `.`, `-`, `_`, `/`, at most 128.
fn check_label(k: &str) -> Result<()> {
    let ok = !k.is_empty() && k.len() <= 128 && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid label key {k:?}: letters, digits, '.', '-', '_' and '/', at most 128"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now_ms() -> i64 {
        chrono::Utc::now().timestamp_millis()
    }

    #[test]
    fn status_follows_heartbeats_and_names_a_clock_far_off() {
        let timing = Timing {
            heartbeat: Duration::from_millis(10),
            suspect_after: Duration::from_millis(60),
            down_after: Duration::from_millis(200),
        };
        let m = Members::new("me", timing);
        assert_eq!(m.status("me").state, NodeState::Ready);
        assert_eq!(
            m.status("n1").state,
            NodeState::Unknown,
            "not heard from yet, just started"
        );
        m.heard("n1", Some(now_ms()));
        let s = m.status("n1");
        assert_eq!((s.state, s.message.as_str()), (NodeState::Ready, "heartbeats arrive"));
        assert!(s.last_heartbeat.is_some());
        std::thread::sleep(Duration::from_millis(100));
        let s = m.status("n1");
        assert_eq!(s.state, NodeState::Unknown);
        assert!(s.message.contains("heartbeat late"), "{}", s.message);
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(m.status("n1").state, NodeState::Down);
        assert!(m
            .status("n2")
            .message
            .contains("no heartbeat since this manager started"));
        assert_eq!(m.status("n2").state, NodeState::Down);
        // Back, with its clock 12 s behind: ready, and said.
        m.heard("n1", Some(now_ms() - 12_000));
        let s = m.status("n1");
        assert_eq!(s.state, NodeState::Ready);
        assert!(
            s.message.contains("its clock is 12s behind this manager's"),
            "{}",
            s.message
        );
        // A session opened (no time) keeps what was known of the clock.
        m.heard("n1", None);
        assert!(m.status("n1").message.contains("behind"));
        m.heard("n1", Some(now_ms()));
        assert_eq!(m.status("n1").message, "heartbeats arrive");
    }

    #[test]
    fn timings_that_cannot_work_are_refused() {
        assert!(Timing::default().check().is_ok());
        let s = Duration::from_secs;
        let bad = [
            (
                Timing {
                    heartbeat: s(0),
                    ..Timing::default()
                },
                "--heartbeat-period must be above zero",
            ),
            (
                Timing {
                    heartbeat: s(5),
                    ..Timing::default()
                },
                "--node-suspect-after (3s) must be longer than --heartbeat-period (5s)",
            ),
            (
                Timing {
                    down_after: s(2),
                    ..Timing::default()
                },
                "--node-down-after (2s) must be longer than --node-suspect-after (3s)",
            ),
        ];
        for (t, says) in bad {
            assert_eq!(t.check().unwrap_err(), says);
        }
    }
}
