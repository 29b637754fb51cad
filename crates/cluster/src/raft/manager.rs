//! Raft in a manager daemon: opened on the node's store, started alone on
//! the first manager of a cluster, the blocking proposer [`State`] hands
//! every change to, the leader's task that keeps Raft's voters equal to
//! the managers on record, and what `berth cluster info` shows of it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use berth_model::node::NodeRole;
use berth_state::{Envelope, Outcome, State};
use openraft::{BasicNode, ChangeMembers, ServerState};

use super::network::Network;
use super::store::{LogStore, Machine};
use super::{config, raft_id, Applied, ProposeError, Raft, Replica};

/// How long a change waits for a leader, or for a majority to take it,
/// before it is refused: longer than an election (under a second), short
/// enough that a caller cut off from the majority hears so at once.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// Opens this manager's Raft on the node's store (the log and the state
/// machine beside cluster state) and starts its batcher.
pub async fn open(state: &State, client: Arc<rustls::ClientConfig>, node_id: &str) -> Result<Replica, String> {
    let id = raft_id(node_id);
    let network = Network::new(client);
    let log = LogStore::new(state.store().clone()).map_err(|e| format!("opening the Raft log: {e}"))?;
    let machine = Machine::new(state.clone()).map_err(|e| format!("opening the Raft state machine: {e}"))?;
    let raft = Raft::new(id, config()?, network.clone(), log, machine)
        .await
        .map_err(|e| format!("starting Raft: {e}"))?;
    Ok(Replica::new(raft, id, network))
}

/// Starts a new cluster with this manager as its only voter, unless Raft
/// already has a log or a membership (a later start, or a manager that
/// joined; the only voter of a cluster then calls its election at once).
/// `true` when it started one.
pub async fn initialize_alone(replica: &Replica, addr: &str) -> Result<bool, String> {
    let raft = &replica.raft;
    if raft.is_initialized().await.map_err(|e| e.to_string())? {
        // The only voter need not wait out an election timeout to lead.
        let alone = {
            let m = raft.metrics().borrow().membership_config.clone();
            m.membership().voter_ids().eq([replica.id])
        };
        if alone {
            raft.trigger().elect().await.map_err(|e| e.to_string())?;
        }
        return Ok(false);
    }
    let members = BTreeMap::from([(replica.id, BasicNode::new(addr))]);
    raft.initialize(members)
        .await
        .map_err(|e| format!("starting a new cluster: {e}"))?;
    tracing::info!(raft_id = replica.id, %addr, "started the cluster's Raft log with this manager as its only voter");
    Ok(true)
}

/// Takes a snapshot now and drops the log it covers: a manager that joins
/// later receives the snapshot, which holds every table (including what a
/// node wrote before it had Raft), instead of a log that does not.
pub async fn compact_now(raft: &Raft) -> Result<(), String> {
    let applied = raft.metrics().borrow().last_applied;
    let Some(applied) = applied else { return Ok(()) };
    raft.trigger().snapshot().await.map_err(|e| e.to_string())?;
    raft.wait(Some(Duration::from_secs(30)))
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index >= applied.index),
            "the first snapshot",
        )
        .await
        .map_err(|e| format!("taking the first snapshot: {e}"))?;
    raft.trigger()
        .purge_log(applied.index)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Waits until a leader is known (an election after a start takes under
/// a second when a majority of managers is up).
pub async fn wait_for_leader(raft: &Raft, limit: Duration) -> Result<u64, String> {
    raft.wait(Some(limit))
        .metrics(|m| m.current_leader.is_some(), "a leader")
        .await
        .map_err(|_| {
            format!(
                "no manager leads the cluster after {}s: a majority of managers is not reachable",
                limit.as_secs()
            )
        })?
        .current_leader
        .ok_or_else(|| "no leader".into())
}

/// The proposer a manager's [`State`] hands every change to: the change
/// goes through the Raft log (the leader's, forwarded when this manager
/// does not lead) and the call returns once this manager has applied it.
/// Callers block: on a worker thread of the daemon's runtime the wait is
/// moved off it (`block_in_place`), so Raft's own tasks keep running.
pub fn proposer(replica: Replica, handle: tokio::runtime::Handle) -> berth_state::Proposer {
    Arc::new(move |envelope: Envelope| -> berth_state::Result<Outcome> {
        let replica = replica.clone();
        let started = std::time::Instant::now();
        // The name costs a serialization: only when it is logged.
        let name = tracing::enabled!(tracing::Level::DEBUG).then(|| envelope.command.name());
        let proposed = async move {
            let queued = started.elapsed();
            let answer = replica.propose(envelope, PATIENCE).await;
            (queued, answer)
        };
        let Some((queued, answer)) = wait_on(&handle, proposed) else {
            return Err(berth_state::Error::Unavailable(
                "cluster state cannot be changed from a single-threaded runtime (it would wait on itself)".into(),
            ));
        };
        tracing::debug!(
            command = name.as_deref().unwrap_or_default(),
            queued_us = queued.as_micros() as u64,
            total_us = started.elapsed().as_micros() as u64,
            "proposed"
        );
        match answer {
            Ok(Applied(Ok(outcome))) => Ok(outcome),
            Ok(Applied(Err(rejected))) => Err(berth_state::Error::Rejected(rejected)),
            Err(e @ ProposeError::NoLeader) => Err(berth_state::Error::Unavailable(e.to_string())),
            Err(ProposeError::Failed(m)) => Err(berth_state::Error::Unavailable(format!(
                "the change could not be replicated: {m}"
            ))),
        }
    })
}

/// Runs `f` to its end from blocking code, on `handle`'s runtime. On a
/// worker thread of a multi-threaded runtime the wait is moved off it
/// (`block_in_place`), so the runtime's other tasks (Raft's own) keep
/// running; `None` on a single-threaded runtime, which would wait on
/// itself.
pub(crate) fn wait_on<F: std::future::Future>(handle: &tokio::runtime::Handle, f: F) -> Option<F::Output> {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::CurrentThread) => None,
        Ok(_) => Some(tokio::task::block_in_place(|| handle.block_on(f))),
        Err(_) => Some(handle.block_on(f)),
    }
}

/// How long a leader may go without a majority's answer and still be
/// taken to reach one (openraft's heartbeats come every 100 ms).
const QUORUM_SILENCE: Duration = Duration::from_millis(1500);

/// Whether a change proposed now could be committed: a leader is known
/// and, on the leader, a majority answered within [`QUORUM_SILENCE`]. A
/// follower cannot see its leader's majority: a change it forwards may
/// still be refused after [`PATIENCE`].
pub fn writable_check(replica: Replica) -> berth_state::WritableCheck {
    Arc::new(move || {
        let m = replica.raft.metrics().borrow().clone();
        if m.current_leader.is_none() {
            return Err(
                "no manager leads the cluster (an election is under way, or a majority is out of reach)".into(),
            );
        }
        if m.state == ServerState::Leader && m.membership_config.membership().voter_ids().count() > 1 {
            let silent = m.millis_since_quorum_ack.map(Duration::from_millis);
            if silent.is_none_or(|s| s > QUORUM_SILENCE) {
                return Err(format!(
                    "a majority of managers has not answered this leader for {} (it may be cut off from them)",
                    silent.map_or("a while".to_string(), |s| format!("{} ms", s.as_millis()))
                ));
            }
        }
        Ok(())
    })
}

/// How long a leader that steps down waits for another to lead.
const STEP_DOWN_WAIT: Duration = Duration::from_secs(5);

/// Makes this manager, when it leads, stop: it sends no more heartbeats
/// and calls no election, so the other voters elect one of them after
/// their election timeout (openraft 0.9 has no leadership transfer). Its
/// heartbeats and elections come back once another leads, or after
/// [`STEP_DOWN_WAIT`] (then it may lead again, and says so).
pub async fn step_down(raft: &Raft) -> Result<(), String> {
    let m = raft.metrics().borrow().clone();
    if m.state != ServerState::Leader {
        return Ok(());
    }
    if m.membership_config.membership().voter_ids().all(|v| v == m.id) {
        return Err("no other manager votes: none can lead instead".into());
    }
    let handle = raft.runtime_config();
    handle.elect(false);
    handle.heartbeat(false);
    let me = m.id;
    let moved = raft
        .wait(Some(STEP_DOWN_WAIT))
        .metrics(
            move |m| m.current_leader.is_some_and(|l| l != me),
            "another manager leads",
        )
        .await;
    handle.heartbeat(true);
    handle.elect(true);
    match moved {
        Ok(m) => {
            tracing::info!(leader = ?m.current_leader, "stepped down: another manager leads");
            Ok(())
        }
        Err(e) => Err(format!(
            "no other manager took the lead within {} s ({e}): this one may lead again",
            STEP_DOWN_WAIT.as_secs()
        )),
    }
}

/// The leader's advertised address, and whether it is this manager;
/// `None` while no leader is known.
pub fn leader_addr(replica: &Replica) -> Option<(String, bool)> {
    let m = replica.raft.metrics().borrow().clone();
    let leader = m.current_leader?;
    let addr = m.membership_config.membership().get_node(&leader)?.addr.clone();
    Some((addr, leader == replica.id))
}

/// Whether this manager leads.
pub fn is_leader(replica: &Replica) -> bool {
    replica.raft.metrics().borrow().state == ServerState::Leader
}

/// What this manager knows of Raft, for `berth cluster info`.
pub fn status(replica: &Replica, state: &State) -> berth_model::node::RaftStatus {
    let m = replica.raft.metrics().borrow().clone();
    let leader = m.current_leader.and_then(|id| {
        crate::membership::nodes(state)
            .ok()?
            .into_iter()
            .find(|n| raft_id(&n.id) == id)
    });
    let membership = m.membership_config.membership();
    berth_model::node::RaftStatus {
        state: match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        }
        .into(),
        term: m.current_term,
        last_log_index: m.last_log_index.unwrap_or(0),
        applied_index: m.last_applied.map_or(0, |l| l.index),
        leader: leader.as_ref().map(|n| n.id.clone()),
        leader_addr: leader.map(|n| n.addr),
        voters: membership.voter_ids().count(),
        learners: membership.learner_ids().count(),
    }
}

/// On the leader, keeps Raft's voters equal to the managers on record:
/// a manager that joined is added as a learner, caught up, then made a
/// voter; a manager demoted or removed stops voting (the leader itself is
/// never demoted: it is refused while it leads). Runs until the
/// runtime stops; a change that fails is tried again on the next round.
pub fn spawn_reconciler(replica: Replica, state: State) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if replica.raft.metrics().borrow().state != ServerState::Leader {
                continue;
            }
            let st = state.clone();
            let all = match tokio::task::spawn_blocking(move || crate::membership::nodes(&st)).await {
                Ok(Ok(all)) => all,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "reading the managers on record");
                    continue;
                }
                Err(_) => continue,
            };
            let managers: BTreeMap<u64, String> = all
                .iter()
                .filter(|n| n.role == NodeRole::Manager)
                .map(|n| (raft_id(&n.id), n.addr.clone()))
                .collect();
            if let Err(e) = reconcile(&replica.raft, replica.id, &managers).await {
                tracing::warn!(error = %e, "bringing Raft's voters in line with the managers on record");
            }
        }
    })
}

async fn reconcile(raft: &Raft, me: u64, managers: &BTreeMap<u64, String>) -> Result<(), String> {
    let metrics = raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership().clone();
    let last = metrics.last_log_index.unwrap_or(0);
    let matched = |id: &u64| {
        metrics
            .replication
            .as_ref()
            .and_then(|r| r.get(id).cloned().flatten())
            .map_or(0, |l| l.index)
    };
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let known: BTreeSet<u64> = membership.nodes().map(|(id, _)| *id).collect();
    for (id, addr) in managers {
        if voters.contains(id) {
            continue;
        }
        if !known.contains(id) {
            tracing::info!(raft_id = id, %addr, "adding a manager to Raft as a learner");
            tokio::time::timeout(
                Duration::from_secs(60),
                raft.add_learner(*id, BasicNode::new(addr), true),
            )
            .await
            .map_err(|_| format!("manager {addr} did not catch up within 60s"))?
            .map_err(|e| format!("adding manager {addr} as a learner: {e}"))?;
        }
        if matched(id) + 100 < last {
            // Added before, not caught up yet (or not yet running as a
            // manager: a node promoted restarts first).
            tracing::debug!(raft_id = id, %addr, "a learner is not caught up yet");
            continue;
        }
        tracing::info!(raft_id = id, %addr, "making a caught-up manager a voter");
        raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([*id])), false)
            .await
            .map_err(|e| format!("making manager {addr} a voter: {e}"))?;
    }
    let gone: BTreeSet<u64> = voters
        .iter()
        // Never itself: a leader is not demoted (`Cluster::set_role`).
        .filter(|id| **id != me && !managers.contains_key(id))
        .copied()
        .collect();
    if !gone.is_empty() {
        tracing::info!(raft_ids = ?gone, "removing managers that left the cluster from Raft");
        raft.change_membership(ChangeMembers::RemoveVoters(gone), false)
            .await
            .map_err(|e| format!("removing managers from Raft: {e}"))?;
    }
    let strays: BTreeSet<u64> = membership
        .learner_ids()
        .filter(|id| !managers.contains_key(id))
        .collect();
    if !strays.is_empty() {
        raft.change_membership(ChangeMembers::RemoveNodes(strays), false)
            .await
            .map_err(|e| format!("removing learners that are no managers: {e}"))?;
    }
    Ok(())
}
