//! The managers' gRPC services on the node transport: `Membership.Join`
//! (admission with a join token), `Membership.Promote` (a promoted node
//! fetches a manager's secrets), `Membership.Renew` (node certificate
//! renewal) and `Dispatcher.Session` (agents' heartbeats, held by the
//! leader). Every call is audited.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use berth_model::node::NodeRole;
use berth_state::records::{NewAuditEntry, NodeRecord};
use berth_state::{tables, ClusterCommand, State};
use tonic::{Request, Response, Status, Streaming};

use crate::membership::{join_token, manager_addrs, now, other_manager_ids, Members};
use crate::pki::Pki;
use crate::rpc::{proto, Peer};
use crate::{Error, Result};

/// Writes an audit entry (the node's access service does).
pub type AuditHook = Arc<dyn Fn(NewAuditEntry) + Send + Sync>;

/// The managers' gRPC services.
#[derive(Clone)]
pub struct Manager {
    pub pki: Arc<Pki>,
    pub state: State,
    pub members: Arc<Members>,
    /// This manager's advertised address.
    pub addr: String,
    pub audit: AuditHook,
    /// This manager's Raft: only the leader holds agent sessions.
    pub replica: Option<crate::raft::Replica>,
    /// How long the node certificates this manager issues are valid.
    pub cert_lifetime: Duration,
    /// Changes that may change a node's assignments ([`crate::dispatch::Changes::follow`]).
    pub changes: Arc<crate::dispatch::Changes>,
}

/// The cluster's secrets every manager holds, by path under the data
/// root: the CA key (node certificates, join tokens, signatures), the
/// cluster key (seals a new CA key in cluster state), the audit log's MAC
/// key, the trust server's seal and the registry's token key. A manager
/// that joins receives them.
pub const MANAGER_FILES: &[&str] = &[
    "pki/ca.key",
    "pki/cluster.key",
    "auth/audit.key",
    "trust/seal.key",
    "registry/token.key",
];

/// The files of `names` (paths under `root`) that exist, by name.
pub(crate) fn read_files(root: &std::path::Path, names: &[&str]) -> Result<HashMap<String, Vec<u8>>> {
    let mut files = HashMap::new();
    for name in names {
        let path = root.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => {
                files.insert(name.to_string(), bytes);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::Io {
                    what: "reading",
                    path,
                    source: e,
                })
            }
        }
    }
    Ok(files)
}

impl Manager {
    /// This manager's copies of [`MANAGER_FILES`] (those it has).
    fn manager_files(&self) -> Result<HashMap<String, Vec<u8>>> {
        read_files(self.pki.dir().parent().unwrap_or(self.pki.dir()), MANAGER_FILES)
    }

    fn audit(&self, peer: &Peer, action: &str, object: &str, result: Result<(), &Status>) {
        let (result, status, detail) = match result {
            Ok(()) => ("allowed", 200, String::new()),
            Err(s) => (
                if s.code() == tonic::Code::PermissionDenied {
                    "denied"
                } else {
                    "failed"
                },
                grpc_http_status(s.code()),
                s.message().to_string(),
            ),
        };
        (self.audit)(NewAuditEntry {
            user: peer.node.as_ref().map_or("anonymous".into(), |n| format!("node:{n}")),
            source: peer.addr.to_string(),
            action: action.to_string(),
            resource: "node".into(),
            object: object.to_string(),
            result: result.into(),
            status,
            detail,
        });
    }

    async fn join(&self, peer: &Peer, r: proto::JoinRequest) -> Result<proto::JoinResponse, Status> {
        let role: NodeRole = r.role.parse().map_err(|e: String| Status::invalid_argument(e))?;
        let token = {
            let (pki, state) = (self.pki.clone(), self.state.clone());
            tokio::task::spawn_blocking(move || join_token(&pki, &state, role))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(|e| Status::failed_precondition(format!("this node cannot admit nodes: {e}")))?
        };
        if !token.secret_is(&r.secret) {
            return Err(Status::permission_denied(format!(
                "the join token was refused: it is not the cluster's current {role} token (rotated, or never issued)"
            )));
        }
        if !crate::join::valid_node_id(&r.node_id) {
            return Err(Status::invalid_argument("the node id is not 64 lower-case hex digits"));
        }
        let hostname = r.hostname.trim();
        if hostname.is_empty() || hostname.len() > 253 || hostname.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(Status::invalid_argument(format!("invalid host name {hostname:?}")));
        }
        let advertised: std::net::SocketAddr = r.advertise_addr.parse().map_err(|_| {
            Status::invalid_argument(format!("the advertised address {:?} is not IP:PORT", r.advertise_addr))
        })?;
        if advertised.ip().is_unspecified() || advertised.port() == 0 {
            return Err(Status::invalid_argument(format!(
                "the advertised address {advertised} names no host or no port"
            )));
        }
        // Only an address the manager sees the node at goes into its
        // certificate: a node cannot have itself certified for another's.
        let ips: Vec<std::net::IpAddr> = (advertised.ip() == peer.addr.ip())
            .then_some(advertised.ip())
            .into_iter()
            .collect();
        let issued = self
            .pki
            .issue_node_for(&r.node_id, &r.csr, &ips, self.cert_lifetime)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let node_id = r.node_id.clone();
        let node = NodeRecord {
            id: r.node_id.clone(),
            hostname: hostname.to_string(),
            role,
            availability: Default::default(),
            labels: Default::default(),
            addr: advertised.to_string(),
            certificate: issued.fingerprint.clone(),
            certificate_expires: issued.not_after.clone(),
            joined: now(),
            previous_certificate: None,
            status: None,
            certificate_ca: issued.ca.clone(),
        };
        if role == NodeRole::Manager && !self.state.is_replicated() {
            return Err(Status::failed_precondition(
                "this manager does not replicate cluster state, so it cannot admit managers",
            ));
        }
        let state = self.state.clone();
        let addr = self.addr.clone();
        let (managers, manager_ids) = tokio::task::spawn_blocking(move || -> Result<_, Status> {
            state
                .propose(ClusterCommand::AddNode { node })
                .map_err(|e| match e {
                    berth_state::Error::Rejected(berth_state::Rejected::Conflict(_)) => Status::already_exists(
                        "this node id is already a member of the cluster: a node that left joins again with a fresh data root",
                    ),
                    berth_state::Error::Unavailable(m) => Status::unavailable(m),
                    other => Status::internal(other.to_string()),
                })?;
            let ids = other_manager_ids(&state, &node_id).map_err(|e| Status::internal(e.to_string()))?;
            Ok((
                manager_addrs(&state, &addr).map_err(|e| Status::internal(e.to_string()))?,
                ids,
            ))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        let mut answer = proto::JoinResponse {
            certificate: issued.cert_pem,
            ca: self.pki.ca_pem(),
            managers,
            manager_ids: Vec::new(),
            manager_files: Default::default(),
            gossip_key: crate::gossip::key(&self.pki).map(|k| k.to_vec()).unwrap_or_default(),
        };
        if role == NodeRole::Manager {
            answer.manager_ids = manager_ids;
            answer.manager_files = self.manager_files().map_err(|e| Status::internal(e.to_string()))?;
        }
        tracing::info!(node = %r.node_id, %role, addr = %advertised, hostname, "a node joined");
        Ok(answer)
    }
}

fn grpc_http_status(code: tonic::Code) -> u16 {
    use tonic::Code::*;
    match code {
        Ok => 200,
        InvalidArgument | FailedPrecondition | OutOfRange => 400,
        Unauthenticated => 401,
        PermissionDenied => 403,
        NotFound => 404,
        AlreadyExists | Aborted => 409,
        ResourceExhausted => 429,
        Unimplemented => 501,
        Unavailable => 503,
        DeadlineExceeded => 504,
        _ => 500,
    }
}

fn peer_of<T>(r: &Request<T>) -> Result<Peer, Status> {
    r.extensions()
        .get::<Peer>()
        .cloned()
        .ok_or_else(|| Status::internal("the listener did not say who called"))
}

impl Manager {
    async fn promote(&self, peer: &Peer) -> Result<proto::PromoteResponse, Status> {
        let Some(node) = peer.node.clone() else {
            return Err(Status::unauthenticated("a promotion needs a node certificate"));
        };
        let state = self.state.clone();
        let (role, ids) = tokio::task::spawn_blocking(move || -> Result<_> {
            Ok((role_of(&state, &node)?, other_manager_ids(&state, &node)?))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::internal(e.to_string()))?;
        if role != Some(NodeRole::Manager) {
            return Err(Status::permission_denied(
                "this node is not a manager on record (promote it with `berth node promote`)",
            ));
        }
        Ok(proto::PromoteResponse {
            manager_ids: ids,
            manager_files: self.manager_files().map_err(|e| Status::internal(e.to_string()))?,
        })
    }
}

impl Manager {
    async fn renew(&self, peer: &Peer, r: proto::RenewRequest) -> Result<proto::RenewResponse, Status> {
        let Some(node) = peer.node.clone() else {
            return Err(Status::unauthenticated("a renewal needs a node certificate"));
        };
        let (state, id) = (self.state.clone(), node.clone());
        let record = tokio::task::spawn_blocking(move || state.store().get::<NodeRecord>(tables::NODES, &id))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(e.to_string()))?
            .ok_or_else(|| Status::permission_denied("this node is not on record: it left the cluster"))?;
        // As at the join: only the address the connection comes from.
        let ips: Vec<std::net::IpAddr> = record
            .addr
            .parse::<std::net::SocketAddr>()
            .ok()
            .map(|a| a.ip())
            .filter(|ip| *ip == peer.addr.ip())
            .into_iter()
            .collect();
        let issued = self
            .pki
            .issue_node_for(&node, &r.csr, &ips, self.cert_lifetime)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let state = self.state.clone();
        let command = ClusterCommand::SetNodeCertificate {
            id: node.clone(),
            certificate: issued.fingerprint.clone(),
            certificate_expires: issued.not_after.clone(),
            certificate_ca: issued.ca.clone(),
        };
        tokio::task::spawn_blocking(move || state.propose(command))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| match e {
                berth_state::Error::Unavailable(m) => Status::unavailable(m),
                other => Status::internal(other.to_string()),
            })?;
        tracing::info!(%node, expires = %issued.not_after, "renewed a node certificate");
        Ok(proto::RenewResponse {
            certificate: issued.cert_pem,
        })
    }
}

#[tonic::async_trait]
impl proto::membership_server::Membership for Manager {
    async fn renew(&self, request: Request<proto::RenewRequest>) -> Result<Response<proto::RenewResponse>, Status> {
        let peer = peer_of(&request)?;
        let object = format!("/nodes/{}", peer.node.as_deref().unwrap_or("unknown"));
        let answer = self.renew(&peer, request.into_inner()).await;
        self.audit(&peer, "grpc Membership/Renew", &object, answer.as_ref().map(|_| ()));
        answer.map(Response::new)
    }

    async fn promote(
        &self,
        request: Request<proto::PromoteRequest>,
    ) -> Result<Response<proto::PromoteResponse>, Status> {
        let peer = peer_of(&request)?;
        let object = format!("/nodes/{}", peer.node.as_deref().unwrap_or("unknown"));
        let answer = self.promote(&peer).await;
        self.audit(&peer, "grpc Membership/Promote", &object, answer.as_ref().map(|_| ()));
        answer.map(Response::new)
    }

    async fn join(&self, request: Request<proto::JoinRequest>) -> Result<Response<proto::JoinResponse>, Status> {
        let peer = peer_of(&request)?;
        let r = request.into_inner();
        let object = format!("/nodes/{}", r.node_id);
        let answer = self.join(&peer, r).await;
        self.audit(&peer, "grpc Membership/Join", &object, answer.as_ref().map(|_| ()));
        answer.map(Response::new)
    }
}

/// The shortest time between two recorded reports of one node.
const REPORT_EVERY: Duration = Duration::from_secs(1);

type ManagerStream = Pin<Box<dyn futures_util::Stream<Item = Result<proto::ManagerMessage, Status>> + Send>>;

#[tonic::async_trait]
impl proto::dispatcher_server::Dispatcher for Manager {
    type SessionStream = ManagerStream;

    async fn session(
        &self,
        request: Request<Streaming<proto::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let peer = peer_of(&request)?;
        let Some(node) = peer.node.clone() else {
            return Err(Status::unauthenticated("a session needs a node certificate"));
        };
        let mut inbound = request.into_inner();
        let members = self.members.clone();
        let (managers, role) = {
            let (state, addr, id, replica) = (
                self.state.clone(),
                self.addr.clone(),
                node.clone(),
                self.replica.clone(),
            );
            tokio::task::spawn_blocking(move || -> Result<_> {
                Ok((
                    manager_addrs(&state, &addr)?,
                    effective_role(&state, replica.as_ref(), &id)?,
                ))
            })
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(e.to_string()))?
        };
        let Some(role) = role else {
            return Err(Status::permission_denied(
                "this node is not on record: it left the cluster",
            ));
        };
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        // Sessions are held by the leader, which records who is up: a
        // follower sends the agent there.
        let leader = match &self.replica {
            Some(r) => match crate::raft::manager::leader_addr(r) {
                Some((_, true)) => None,
                Some((addr, false)) => Some(addr),
                None => {
                    return Err(Status::unavailable(
                        "no manager leads the cluster (an election is under way): try again",
                    ))
                }
            },
            None => None,
        };
        let info = proto::ManagerMessage {
            kind: Some(proto::manager_message::Kind::Session(proto::SessionInfo {
                heartbeat_period_ms: u32::try_from(members.timing().heartbeat.as_millis()).unwrap_or(u32::MAX),
                managers,
                leader: leader.clone().unwrap_or_default(),
                role: role.as_str().to_string(),
            })),
        };
        let _ = tx.send(Ok(info)).await;
        if leader.is_some() {
            return Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))));
        }
        members.heard(&node, None);
        tracing::debug!(%node, addr = %peer.addr, "agent session opened");
        let (state, replica) = (self.state.clone(), self.replica.clone());
        let leads = {
            let replica = replica.clone();
            move || replica.as_ref().is_none_or(crate::raft::manager::is_leader)
        };
        let pusher = tokio::spawn(crate::dispatch::push_assignments(
            state.clone(),
            node.clone(),
            tx.clone(),
            self.changes.subscribe(),
            leads.clone(),
        ));
        tokio::spawn(async move {
            let mut last_report: Option<std::time::Instant> = None;
            // The outbound stream ends when the agent's does (tx dropped),
            // when the node's role changes (it restarts in the new one), or
            // when this manager stops leading (the agent finds the leader).
            loop {
                match inbound.message().await {
                    Ok(Some(m)) => match m.kind {
                        Some(proto::agent_message::Kind::Heartbeat(h)) => {
                            members.heard(&node, Some(h.sent_unix_ms));
                            if effective_role(&state, replica.as_ref(), &node).ok().flatten() != Some(role) {
                                tracing::info!(%node, "the node's role changed: its session ends");
                                break;
                            }
                            if !leads() {
                                tracing::debug!(%node, "this manager no longer leads: the session ends");
                                break;
                            }
                        }
                        Some(proto::agent_message::Kind::Tasks(t)) => {
                            members.heard(&node, None);
                            // A node's reports make at most one write a
                            // second, whatever it sends.
                            if let Some(since) = last_report.map(|at| at.elapsed()) {
                                if since < REPORT_EVERY {
                                    tokio::time::sleep(REPORT_EVERY - since).await;
                                }
                            }
                            last_report = Some(std::time::Instant::now());
                            let (s, n) = (state.clone(), node.clone());
                            let recorded =
                                tokio::task::spawn_blocking(move || crate::dispatch::record_reports(&s, &n, t.reports))
                                    .await;
                            if let Ok(Err(e)) = recorded {
                                tracing::warn!(%node, error = %e, "recording the node's task reports");
                            }
                        }
                        None => {}
                    },
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(%node, error = %e, "agent session ended");
                        break;
                    }
                }
            }
            pusher.abort();
            drop(tx);
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}

/// The role node `id` is told to run in: its role on record, except that
/// a demoted manager stays one until the leader took it out of Raft's
/// voters (restarting as a worker before that would cost the cluster a
/// vote it still counts on).
fn effective_role(state: &State, replica: Option<&crate::raft::Replica>, id: &str) -> Result<Option<NodeRole>> {
    let role = role_of(state, id)?;
    if role == Some(NodeRole::Worker) {
        if let Some(r) = replica {
            let raft_id = crate::raft::raft_id(id);
            let voting = r
                .raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == raft_id);
            if voting {
                return Ok(Some(NodeRole::Manager));
            }
        }
    }
    Ok(role)
}

/// The role node `id` has on record; `None` when it is not on record.
fn role_of(state: &State, id: &str) -> Result<Option<NodeRole>> {
    Ok(state.store().get::<NodeRecord>(tables::NODES, id)?.map(|n| n.role))
}

/// The managers' gRPC services, to serve on the `h2` connections of the
/// TLS listener.
pub fn grpc_routes(manager: Manager) -> tonic::service::Routes {
    tonic::service::Routes::new(proto::membership_server::MembershipServer::new(manager.clone()))
        .add_service(proto::dispatcher_server::DispatcherServer::new(manager))
}
