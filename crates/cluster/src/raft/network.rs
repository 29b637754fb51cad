//! Raft over the cluster's gRPC: `Raft.AppendEntries`, `Raft.Vote` and
//! `Raft.InstallSnapshot` carry openraft's messages as JSON, and
//! `Raft.Propose` carries a command from a manager that does not lead to
//! the one that does, and `Raft.StepDown` asks the leader to stop leading
//! (the demotion of a leader). Only managers may call any of them (the listener
//! verified the caller's node certificate; [`RaftService`] checks its
//! role).

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    ClientWriteError, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::{Answers, Batch, Raft, TypeConfig};
use crate::rpc::{self, proto, Peer};

/// The largest gRPC message either side accepts: a batch of entries or a
/// snapshot chunk, as JSON.
pub const MAX_MESSAGE: usize = 32 << 20;

type Client = proto::raft_client::RaftClient<Channel>;
type RpcError<E = openraft::error::Infallible> = RPCError<u64, BasicNode, RaftError<u64, E>>;

/// How this manager reaches the others: TLS with its node certificate.
#[derive(Clone)]
pub struct Network {
    config: Arc<rustls::ClientConfig>,
}

impl Network {
    pub fn new(config: Arc<rustls::ClientConfig>) -> Self {
        Network { config }
    }

    fn client(&self, node: &BasicNode) -> Result<Client, String> {
        let channel = rpc::channel(&node.addr, self.config.clone())?;
        Ok(Client::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE))
    }

    /// Sends `batch` to the leader `id` at `node`; what it applied, and
    /// at which log index.
    pub async fn propose(&self, id: u64, node: &BasicNode, batch: &Batch) -> Result<(Answers, u64), String> {
        let who = format!("the leader (raft id {id}, {})", node.addr);
        let answer: Result<(Answers, u64), RaftError<u64, ClientWriteError<u64, BasicNode>>> =
            self.ask(node, &who, Call::Propose, batch).await?;
        answer.map_err(|e| e.to_string())
    }

    /// Asks the leader at `node` to step down ([`super::manager::step_down`]).
    pub async fn step_down(&self, node: &BasicNode) -> Result<(), String> {
        let who = format!("the leader at {}", node.addr);
        let answer: Result<(), String> = self.ask(node, &who, Call::StepDown, &()).await?;
        answer
    }

    /// One call to the leader at `node` (`who` in errors), within 10 s.
    async fn ask<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        node: &BasicNode,
        who: &str,
        call: Call,
        req: &Req,
    ) -> Result<Resp, String> {
        let mut client = self.client(node)?;
        let json = serde_json::to_vec(req).map_err(|e| e.to_string())?;
        let answer = tokio::time::timeout(Duration::from_secs(10), send(&mut client, call, json))
            .await
            .map_err(|_| format!("{who} did not answer within 10s"))?
            .map_err(|s| format!("the leader at {}: {}", node.addr, s.message()))?;
        serde_json::from_slice(&answer.into_inner().json).map_err(|e| e.to_string())
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Connection {
        Connection {
            target,
            node: node.clone(),
            network: self.clone(),
            client: None,
        }
    }
}

/// This manager's connection to one other.
pub struct Connection {
    target: u64,
    node: BasicNode,
    network: Network,
    client: Option<Client>,
}

#[derive(Clone, Copy)]
enum Call {
    Append,
    Vote,
    Snapshot,
    Propose,
    StepDown,
}

/// Makes `call` on `client` with the JSON `json`.
async fn send(client: &mut Client, call: Call, json: Vec<u8>) -> Result<Response<proto::RaftPayload>, Status> {
    let payload = proto::RaftPayload { json };
    match call {
        Call::Append => client.append_entries(payload).await,
        Call::Vote => client.vote(payload).await,
        Call::Snapshot => client.install_snapshot(payload).await,
        Call::Propose => client.propose(payload).await,
        Call::StepDown => client.step_down(payload).await,
    }
}

impl Connection {
    async fn call<Req, Resp, E>(&mut self, call: Call, req: &Req, ttl: Duration) -> Result<Resp, RpcError<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let json = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if self.client.is_none() {
            let client = self
                .network
                .client(&self.node)
                .map_err(|e| RPCError::Unreachable(Unreachable::new(&std::io::Error::other(e))))?;
            self.client = Some(client);
        }
        let Some(client) = self.client.as_mut() else {
            return Err(RPCError::Unreachable(Unreachable::new(&std::io::Error::other(
                "no client",
            ))));
        };
        let answer = match tokio::time::timeout(ttl, send(client, call, json)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(status)) => return Err(RPCError::Unreachable(Unreachable::new(&status))),
            Err(_) => {
                let e = std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no answer within {ttl:?}"));
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
        };
        let answer: Result<Resp, RaftError<u64, E>> =
            serde_json::from_slice(&answer.into_inner().json).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new_with_node(self.target, self.node.clone(), e)))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RpcError> {
        self.call(Call::Append, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RpcError<InstallSnapshotError>> {
        self.call(Call::Snapshot, &rpc, option.hard_ttl()).await
    }

    async fn vote(&mut self, rpc: VoteRequest<u64>, option: RPCOption) -> Result<VoteResponse<u64>, RpcError> {
        self.call(Call::Vote, &rpc, option.hard_ttl()).await
    }
}

/// Whether a caller may take part in Raft (a manager's node certificate).
pub type Allowed = Arc<dyn Fn(&Peer) -> bool + Send + Sync>;

/// The `Raft` gRPC service of a manager.
#[derive(Clone)]
pub struct RaftService {
    raft: Raft,
    allowed: Allowed,
    /// When a leader's entries (or heartbeat) last arrived.
    heard: Arc<std::sync::Mutex<std::time::Instant>>,
    /// Whether this manager is already running for leader (see
    /// [`RaftService::run_if_better`]).
    running: Arc<std::sync::atomic::AtomicBool>,
}

impl RaftService {
    pub fn new(raft: Raft, allowed: Allowed) -> Self {
        RaftService {
            raft,
            allowed,
            heard: Arc::new(std::sync::Mutex::new(std::time::Instant::now())),
            running: Arc::default(),
        }
    }

    fn silence(&self) -> Duration {
        self.heard.lock().map(|at| at.elapsed()).unwrap_or_default()
    }

    /// A vote refused because this manager's log is longer than the
    /// candidate's, while no leader has been heard for a lease: the leader
    /// is gone and this manager is the one to replace it, so it runs at
    /// once instead of after its election timeout. openraft 0.9 would
    /// otherwise make the refused candidate wait twice the longest
    /// election timeout before it tries again, and the two often ran in
    /// the same term after that (3-manager failovers of 2.3 to 3 s). It
    /// runs until a leader is settled or its term is above the
    /// candidate's (a run in the candidate's own term may lose to it).
    fn run_if_better(&self, request: &VoteRequest<u64>, response: &VoteResponse<u64>) {
        let candidate_term = request.vote.leader_id().term;
        let better_log = response.last_log_id > request.last_log_id;
        if response.vote_granted || !better_log || self.silence() < super::LEADER_LEASE {
            return;
        }
        if self.running.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let (raft, running) = (self.raft.clone(), self.running.clone());
        tokio::spawn(async move {
            for _ in 0..3 {
                // Others whose logs are longer may run too: a moment apart.
                tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 50)).await;
                // Votes are (term, node id) pairs, ordered: a run in the
                // candidate's term loses to it when the candidate's node id
                // is greater (and takes its vote); the next run, a term
                // above, wins.
                let m = raft.metrics().borrow().clone();
                let term = m.vote.leader_id().term;
                let settled = m.vote.is_committed() && term >= candidate_term;
                if m.state == openraft::ServerState::Leader || term > candidate_term || settled {
                    break;
                }
                tracing::info!(
                    candidate_term,
                    "a candidate with a shorter log asked for a vote while no leader is heard: running for leader"
                );
                if raft.trigger().elect().await.is_err() {
                    break;
                }
                // The election: begun (a new term), then won or lost.
                let _ = raft
                    .wait(Some(Duration::from_millis(150)))
                    .metrics(
                        |m| {
                            m.state == openraft::ServerState::Leader
                                || m.vote.leader_id().term > term && m.state != openraft::ServerState::Candidate
                        },
                        "the election",
                    )
                    .await;
            }
            running.store(false, std::sync::atomic::Ordering::SeqCst);
        });
    }

    /// The service, to add to the listener's routes.
    pub fn server(self) -> proto::raft_server::RaftServer<RaftService> {
        proto::raft_server::RaftServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    fn open<T: DeserializeOwned>(&self, request: Request<proto::RaftPayload>) -> Result<T, Status> {
        let peer = request
            .extensions()
            .get::<Peer>()
            .cloned()
            .ok_or_else(|| Status::internal("the listener did not say who called"))?;
        if !(self.allowed)(&peer) {
            return Err(Status::permission_denied("only managers take part in Raft"));
        }
        serde_json::from_slice(&request.into_inner().json)
            .map_err(|e| Status::invalid_argument(format!("not a Raft message: {e}")))
    }
}

fn answer<T: Serialize>(value: &T) -> Result<Response<proto::RaftPayload>, Status> {
    let json = serde_json::to_vec(value).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(proto::RaftPayload { json }))
}

#[tonic::async_trait]
impl proto::raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        request: Request<proto::RaftPayload>,
    ) -> Result<Response<proto::RaftPayload>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = self.open(request)?;
        let response = self.raft.append_entries(rpc).await;
        if matches!(response, Ok(AppendEntriesResponse::Success)) {
            if let Ok(mut at) = self.heard.lock() {
                *at = std::time::Instant::now();
            }
        }
        answer(&response)
    }

    async fn vote(&self, request: Request<proto::RaftPayload>) -> Result<Response<proto::RaftPayload>, Status> {
        let rpc: VoteRequest<u64> = self.open(request)?;
        let response = self.raft.vote(rpc.clone()).await;
        if let Ok(r) = &response {
            self.run_if_better(&rpc, r);
        }
        answer(&response)
    }

    async fn install_snapshot(
        &self,
        request: Request<proto::RaftPayload>,
    ) -> Result<Response<proto::RaftPayload>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = self.open(request)?;
        answer(&self.raft.install_snapshot(rpc).await)
    }

    async fn step_down(&self, request: Request<proto::RaftPayload>) -> Result<Response<proto::RaftPayload>, Status> {
        let () = self.open(request)?;
        answer(&super::manager::step_down(&self.raft).await)
    }

    async fn propose(&self, request: Request<proto::RaftPayload>) -> Result<Response<proto::RaftPayload>, Status> {
        let batch: Batch = self.open(request)?;
        let applied = self.raft.client_write(batch).await.map(|r| (r.data, r.log_id.index));
        answer(&applied)
    }
}
