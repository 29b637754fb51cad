//! Raft replication of cluster state with openraft: the log and the state
//! machine on the node's redb store ([`store`]), the transport over the
//! cluster's gRPC ([`network`]), and [`Replica`], a manager's handle that
//! proposes commands (forwarded to the leader when this manager is not)
//! and answers what applying them answered.
//!
//! The log carries [`berth_state::Envelope`]s; applying an entry is
//! [`berth_state::State::apply_logged`], which records the entry's log id
//! in the same transaction as the change, so that a crash never applies a
//! command twice. A snapshot is every `cluster/*` table as stored, and
//! installing one replaces them all in one transaction.

pub mod manager;
pub mod network;
pub mod store;

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use berth_state::{Envelope, Outcome, Rejected};
use openraft::error::{ClientWriteError, RaftError};
use serde::{Deserialize, Serialize};

openraft::declare_raft_types!(
    /// berth's Raft types: batches of commands in, their outcomes out,
    /// nodes by the 64-bit prefix of their id, reached at their advertised
    /// address.
    pub TypeConfig:
        D = Batch,
        R = Answers,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A manager's Raft instance.
pub type Raft = openraft::Raft<TypeConfig>;

/// What applying one command answered: its outcome, or why it was
/// refused (a refused command changed nothing, on every manager).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied(pub Result<Outcome, Rejected>);

/// One log entry: the commands proposed together (a manager gathers what
/// its callers propose while its last batch is in flight), applied in
/// order, in one transaction unless one of them is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch(pub Vec<Envelope>);

/// What applying a [`Batch`] answered, command by command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answers(pub Vec<Applied>);

/// The most commands one log entry carries.
const MAX_BATCH: usize = 512;

/// The Raft id of the node whose id is `node_id` (64 hex digits): its
/// first 16 digits, a 64-bit number.
pub fn raft_id(node_id: &str) -> u64 {
    node_id
        .get(..16)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or(0)
}

/// How long a follower takes its leader to be alive after it last heard
/// from it: openraft's leader lease, the longest election timeout.
pub(crate) const LEADER_LEASE: Duration = Duration::from_millis(600);

/// Timing: heartbeats every 100 ms; a follower that hears nothing from
/// its leader calls an election after the leader's lease (openraft takes
/// the longest election timeout, 600 ms) and a random 300 to 600 ms more:
/// 0.9 to 1.2 s, nine heartbeats or more, so a slow leader is not deposed
/// by mistake, and failover stays under the 2 s target with 7 managers
/// (with 400 to 800 ms, 7 managers on 2 cores took 2.2 s at the median).
/// A snapshot every 5,000 applied entries, keeping 1,000 entries behind it
/// for slow followers.
pub fn config() -> Result<Arc<openraft::Config>, String> {
    let config = openraft::Config {
        cluster_name: "berth".into(),
        heartbeat_interval: 100,
        election_timeout_min: 300,
        election_timeout_max: LEADER_LEASE.as_millis() as u64,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(5000),
        max_in_snapshot_log_to_keep: 1000,
        ..Default::default()
    };
    config.validate().map(Arc::new).map_err(|e| e.to_string())
}

/// Why a proposal did not come back applied.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposeError {
    /// No leader is known (an election is under way, or no quorum).
    #[error("no manager leads the cluster (an election is under way, or a majority of managers is unreachable): the change was not made")]
    NoLeader,
    /// The leader could not be reached or failed.
    #[error("{0}")]
    Failed(String),
}

type Waiting = (Envelope, tokio::sync::oneshot::Sender<Result<Applied, ProposeError>>);

/// A manager's replica of cluster state.
#[derive(Clone)]
pub struct Replica {
    pub raft: Raft,
    pub id: u64,
    network: network::Network,
    queue: tokio::sync::mpsc::Sender<(Waiting, tokio::time::Instant)>,
}

impl Replica {
    /// Starts the batcher on the current runtime.
    pub fn new(raft: Raft, id: u64, network: network::Network) -> Self {
        let (queue, rx) = tokio::sync::mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(batcher(raft.clone(), network.clone(), rx));
        Replica {
            raft,
            id,
            network,
            queue,
        }
    }

    /// Makes the leader stop leading so that another manager leads: this
    /// manager's Raft when it leads, else the leader's (`Raft.StepDown`).
    /// Answers once another manager leads, or says why none did.
    pub async fn step_down_leader(&self) -> Result<(), String> {
        let m = self.raft.metrics().borrow().clone();
        let Some(leader) = m.current_leader else {
            return Err("no manager leads the cluster (an election is under way)".into());
        };
        if leader == self.id {
            return manager::step_down(&self.raft).await;
        }
        let node = m
            .membership_config
            .membership()
            .get_node(&leader)
            .cloned()
            .ok_or("the leader is not in Raft's membership")?;
        self.network.step_down(&node).await
    }

    /// Proposes `envelope` and waits until this manager has applied it:
    /// through this manager's Raft when it leads, else through the
    /// leader's (`Raft.Propose`). Retries for up to `patience` while no
    /// leader is known.
    pub async fn propose(&self, envelope: Envelope, patience: Duration) -> Result<Applied, ProposeError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let deadline = tokio::time::Instant::now() + patience;
        self.queue
            .send(((envelope, tx), deadline))
            .await
            .map_err(|_| ProposeError::Failed("this manager's Raft stopped".into()))?;
        rx.await
            .map_err(|_| ProposeError::Failed("this manager's Raft stopped".into()))?
    }
}

/// Gathers proposals into batches: the first that arrives, and all that
/// queued up behind it (while the previous batch was in flight), up to
/// [`MAX_BATCH`].
async fn batcher(
    raft: Raft,
    network: network::Network,
    mut rx: tokio::sync::mpsc::Receiver<(Waiting, tokio::time::Instant)>,
) {
    while let Some(first) = rx.recv().await {
        let mut deadline = first.1;
        let mut waiting = vec![first.0];
        while waiting.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok((w, d)) => {
                    deadline = deadline.max(d);
                    waiting.push(w);
                }
                Err(_) => break,
            }
        }
        let batch = Batch(waiting.iter().map(|(e, _)| e.clone()).collect());
        let answers = write(&raft, &network, batch, deadline).await;
        for (i, (_, tx)) in waiting.into_iter().enumerate() {
            let answer = match &answers {
                Ok(a) => {
                    a.0.get(i)
                        .cloned()
                        .ok_or_else(|| ProposeError::Failed("an answer is missing".into()))
                }
                Err(ProposeError::NoLeader) => Err(ProposeError::NoLeader),
                Err(ProposeError::Failed(m)) => Err(ProposeError::Failed(m.clone())),
            };
            let _ = tx.send(answer);
        }
    }
}

/// Writes one batch through the leader; what applying it answered.
async fn write(
    raft: &Raft,
    network: &network::Network,
    batch: Batch,
    deadline: tokio::time::Instant,
) -> Result<Answers, ProposeError> {
    loop {
        // A leader cut off from the majority waits for it: not forever.
        let leader = match tokio::time::timeout_at(deadline, raft.client_write(batch.clone())).await {
            Err(_) => {
                return Err(ProposeError::Failed(
                    "a majority of managers did not confirm the change in time (this manager may be cut off from \
                     them): it is not confirmed, and it is made only if they take it before another manager leads"
                        .into(),
                ))
            }
            Ok(Ok(r)) => return Ok(r.data),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => f.leader_id.zip(f.leader_node),
            Ok(Err(e)) => return Err(ProposeError::Failed(e.to_string())),
        };
        if let Some((id, node)) = leader {
            match network.propose(id, &node, &batch).await {
                Ok((answers, index)) => {
                    // Read-your-writes: answer once this manager has it too.
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    let wait = raft.wait(Some(left.max(Duration::from_secs(1))));
                    if let Err(e) = wait.applied_index_at_least(Some(index), "a forwarded proposal").await {
                        tracing::warn!(index, error = %e, "the leader applied a proposal this manager has not yet");
                    }
                    return Ok(answers);
                }
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(ProposeError::Failed(e)),
                Err(e) => tracing::debug!(leader = id, error = %e, "forwarding a proposal failed; retrying"),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ProposeError::NoLeader);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
