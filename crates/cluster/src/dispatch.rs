//! Assignments, both ends of the session.
//!
//! - The managers keep assignments in cluster state (`berth assignment
//!   create|ls|rm`). The leader sends each agent, over its session, the
//!   whole set the node is to run: when the session opens and whenever it
//!   changes (an assignment, or the node's labels or availability). It
//!   records what the node reports (`SetNodeTasks`), only when it differs
//!   from what is recorded.
//! - The agent runs exactly the set it was last sent, through an
//!   [`Executor`] (the node's engine), again every few seconds, and keeps
//!   doing so when it loses the managers: its containers keep running, and
//!   nothing is removed until a leader sends a set without them. Each new
//!   session starts with the node's whole report, so a partition that heals
//!   is reconciled both ways.
//!
//! Sets and reports are whole, not changes: a node's set is small, and a
//! lost message costs nothing (the next one says everything).

use std::sync::Arc;
use std::time::Duration;

use berth_model::assignment::{Assignment, AssignmentSpec, AssignmentTask, NodeFacts};
use berth_model::node::Availability;
use berth_state::records::{AssignmentRecord, NodeRecord, TaskRecord};
use berth_state::{tables, ClusterCommand, State};
use futures_util::future::BoxFuture;
use tokio::sync::watch;

use crate::membership::{now, values, Cluster};
use crate::rpc::proto;
use crate::{Error, Result};

/// How often the agent runs its set again (a container that died comes
/// back), and how often the leader checks a session's set besides when
/// state changes.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(3);

// --- the managers ---

/// Bumped whenever an applied command may change some node's set: the
/// leader's sessions wait on it.
pub struct Changes(watch::Sender<u64>);

impl Changes {
    /// Follows `state`'s applied commands (and snapshot installs).
    pub fn follow(state: &State) -> Arc<Changes> {
        let changes = Arc::new(Changes(watch::channel(0).0));
        let bump = {
            let c = changes.clone();
            move || c.0.send_modify(|n| *n += 1)
        };
        let on_command = bump.clone();
        state.subscribe(move |command| {
            use ClusterCommand::*;
            if matches!(
                command,
                CreateAssignment { .. }
                    | RemoveAssignment { .. }
                    | AddNode { .. }
                    | UpdateNode { .. }
                    | RemoveNode { .. }
                    | SetNodeRole { .. }
                    | StartCaRotation { .. }
                    | FinishCaRotation { .. }
            ) {
                on_command();
            }
            Ok(())
        });
        state.on_reset(move || {
            bump();
            Ok(())
        });
        changes
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

fn facts(n: &NodeRecord) -> NodeFacts<'_> {
    NodeFacts {
        id: &n.id,
        hostname: &n.hostname,
        role: n.role,
        labels: &n.labels,
    }
}

fn assignments(state: &State) -> Result<Vec<AssignmentRecord>> {
    values(state, tables::ASSIGNMENTS)
}

fn tasks(state: &State) -> Result<Vec<TaskRecord>> {
    values(state, tables::ASSIGNMENT_TASKS)
}

/// Whether `node` is to run `spec`: it meets the constraints and is
/// active; a paused node keeps what it already runs and takes nothing
/// new; a drained node runs nothing.
fn placed(spec: &AssignmentSpec, node: &NodeRecord, reported: &[TaskRecord]) -> bool {
    if !spec.places_on(&facts(node)) {
        return false;
    }
    match node.availability {
        Availability::Active => true,
        Availability::Pause => reported.iter().any(|t| t.node == node.id && t.assignment == spec.name),
        Availability::Drain => false,
    }
}

/// The set node `id` is to run now (empty for a node not on record).
pub fn node_assignments(state: &State, id: &str) -> Result<Vec<proto::Assignment>> {
    let Some(node) = state.store().get::<NodeRecord>(tables::NODES, id)? else {
        return Ok(Vec::new());
    };
    let reported = match node.availability {
        Availability::Pause => tasks(state)?,
        _ => Vec::new(),
    };
    Ok(assignments(state)?
        .into_iter()
        .filter(|a| placed(&a.spec, &node, &reported))
        .map(|a| proto::Assignment {
            name: a.spec.name,
            image: a.spec.image,
            cmd: a.spec.cmd,
            env: a.spec.env,
        })
        .collect())
}

/// Records what node `id` reports, when it differs from what is recorded
/// (a report's time alone is no change).
pub fn record_reports(state: &State, id: &str, reports: Vec<proto::TaskReport>) -> Result<()> {
    let at = now();
    let mut reported: Vec<TaskRecord> = reports
        .into_iter()
        .map(|r| TaskRecord {
            assignment: r.assignment,
            node: id.to_string(),
            state: r.state,
            container: r.container,
            message: r.message,
            reported_at: at.clone(),
        })
        .collect();
    let names: std::collections::HashSet<String> = assignments(state)?.into_iter().map(|a| a.spec.name).collect();
    reported.retain(|t| names.contains(&t.assignment) && valid_report(t));
    reported.sort_by(|a, b| a.assignment.cmp(&b.assignment));
    reported.dedup_by(|a, b| a.assignment == b.assignment);
    let recorded: Vec<TaskRecord> = tasks(state)?.into_iter().filter(|t| t.node == id).collect();
    let same = recorded.len() == reported.len() && recorded.iter().zip(&reported).all(|(a, b)| a.same_as(b));
    if same {
        return Ok(());
    }
    state.propose(ClusterCommand::SetNodeTasks {
        node: id.to_string(),
        tasks: reported,
    })?;
    Ok(())
}

/// What a node may report: a known state, and text of a sane size.
fn valid_report(t: &TaskRecord) -> bool {
    matches!(
        t.state.as_str(),
        "starting" | "running" | "exited" | "failed" | "removing"
    ) && t.container.len() <= 128
        && t.message.len() <= 4096
}

/// Sends node `node` its set over a session, when it opens and whenever it
/// changes, while this manager leads; returns when the session or the
/// leadership ends.
pub(crate) async fn push_assignments(
    state: State,
    node: String,
    tx: tokio::sync::mpsc::Sender<std::result::Result<proto::ManagerMessage, tonic::Status>>,
    mut changes: watch::Receiver<u64>,
    leads: impl Fn() -> bool,
) {
    let mut sent: Option<Vec<proto::Assignment>> = None;
    let mut sent_ca: Option<crate::ca::CaView> = None;
    loop {
        if !leads() {
            return;
        }
        // The CA first: a node renews under a new root as soon as it hears.
        let s = state.clone();
        if let Ok(Ok(Some(record))) = tokio::task::spawn_blocking(move || crate::ca::record(&s)).await {
            let view = crate::ca::CaView::of(&record);
            if sent_ca.as_ref() != Some(&view) {
                let message = proto::ManagerMessage {
                    kind: Some(proto::manager_message::Kind::Ca(view.to_proto())),
                };
                if tx.send(Ok(message)).await.is_err() {
                    return;
                }
                sent_ca = Some(view);
            }
        }
        let (s, n) = (state.clone(), node.clone());
        let set = match tokio::task::spawn_blocking(move || node_assignments(&s, &n)).await {
            Ok(Ok(set)) => Some(set),
            Ok(Err(e)) => {
                tracing::warn!(%node, error = %e, "reading the node's assignments");
                None
            }
            Err(_) => None,
        };
        if let Some(set) = set.filter(|s| sent.as_ref() != Some(s)) {
            let message = proto::ManagerMessage {
                kind: Some(proto::manager_message::Kind::Assignments(proto::Assignments {
                    items: set.clone(),
                })),
            };
            if tx.send(Ok(message)).await.is_err() {
                return;
            }
            tracing::debug!(%node, assignments = set.len(), "sent the node its assignments");
            sent = Some(set);
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep(RECONCILE_EVERY) => {}
            _ = tx.closed() => return,
        }
    }
}

impl Cluster {
    /// Records a new assignment: the leader sends it to every node that
    /// matches it.
    pub fn create_assignment(&self, spec: AssignmentSpec) -> Result<Assignment> {
        self.require_manager()?;
        spec.check().map_err(Error::Invalid)?;
        let name = spec.name.clone();
        self.state.propose(ClusterCommand::CreateAssignment {
            record: AssignmentRecord {
                spec,
                created_at: now(),
            },
        })?;
        self.assignment(&name)
    }

    /// Every assignment, by name, with where it runs.
    pub fn assignments(&self) -> Result<Vec<Assignment>> {
        self.require_manager()?;
        let nodes = crate::membership::nodes(&self.state)?;
        let reported = tasks(&self.state)?;
        Ok(assignments(&self.state)?
            .into_iter()
            .map(|a| view(a, &nodes, &reported))
            .collect())
    }

    /// One assignment, by name.
    pub fn assignment(&self, name: &str) -> Result<Assignment> {
        self.assignments()?
            .into_iter()
            .find(|a| a.spec.name == name)
            .ok_or_else(|| Error::NotFound(format!("no such assignment: {name}")))
    }

    /// Removes an assignment: the nodes that run it stop and remove its
    /// containers when the leader tells them.
    pub fn remove_assignment(&self, name: &str) -> Result<Assignment> {
        let shown = self.assignment(name)?;
        self.state
            .propose(ClusterCommand::RemoveAssignment { name: name.to_string() })?;
        Ok(shown)
    }
}

/// An assignment as the API shows it: each node that is to run it (what
/// it reported, or `assigned`), and each node that still reports on it.
fn view(a: AssignmentRecord, nodes: &[NodeRecord], reported: &[TaskRecord]) -> Assignment {
    let hostname = |id: &str| {
        nodes
            .iter()
            .find(|n| n.id == id)
            .map(|n| n.hostname.clone())
            .unwrap_or_default()
    };
    let mut tasks: Vec<AssignmentTask> = reported
        .iter()
        .filter(|t| t.assignment == a.spec.name)
        .map(|t| AssignmentTask {
            node: t.node.clone(),
            hostname: hostname(&t.node),
            state: t.state.clone(),
            container: t.container.clone(),
            message: t.message.clone(),
            reported_at: Some(t.reported_at.clone()),
        })
        .collect();
    for n in nodes {
        if placed(&a.spec, n, reported) && !tasks.iter().any(|t| t.node == n.id) {
            tasks.push(AssignmentTask {
                node: n.id.clone(),
                hostname: n.hostname.clone(),
                state: "assigned".into(),
                container: String::new(),
                message: "sent to the node; no report yet".into(),
                reported_at: None,
            });
        }
    }
    tasks.sort_by(|x, y| x.hostname.cmp(&y.hostname).then(x.node.cmp(&y.node)));
    Assignment {
        spec: a.spec,
        created_at: a.created_at,
        tasks,
    }
}

// --- the agent ---

/// Runs a node's set: makes the node run exactly `wanted` (starting,
/// restarting or removing containers) and reports on each.
pub trait Executor: Send + Sync + 'static {
    fn reconcile(&self, wanted: Vec<proto::Assignment>) -> BoxFuture<'static, Vec<proto::TaskReport>>;
}

/// The agent's side: the set it was last sent, and its last report.
pub struct Tasks {
    wanted: watch::Sender<Option<Vec<proto::Assignment>>>,
    reports: watch::Sender<Vec<proto::TaskReport>>,
}

impl Tasks {
    /// Starts running sets through `executor`: each new one at once, and
    /// the last one again every [`RECONCILE_EVERY`].
    pub fn spawn(executor: Arc<dyn Executor>) -> Arc<Tasks> {
        let tasks = Arc::new(Tasks {
            wanted: watch::channel(None).0,
            reports: watch::channel(Vec::new()).0,
        });
        let t = tasks.clone();
        tokio::spawn(async move {
            let mut wanted = t.wanted.subscribe();
            loop {
                let set = wanted.borrow_and_update().clone();
                // Until a leader said what to run, the node runs what it ran.
                if let Some(set) = set {
                    let reports = executor.reconcile(set).await;
                    t.reports.send_if_modified(|last| {
                        let changed = *last != reports;
                        *last = reports;
                        changed
                    });
                }
                tokio::select! {
                    changed = wanted.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                    _ = tokio::time::sleep(RECONCILE_EVERY) => {}
                }
            }
        });
        tasks
    }

    /// A leader's set for this node.
    pub fn want(&self, set: Vec<proto::Assignment>) {
        self.wanted.send_if_modified(|last| {
            let changed = last.as_ref() != Some(&set);
            *last = Some(set);
            changed
        });
    }

    /// The node's reports: the last one at once, then each change.
    pub fn reports(&self) -> watch::Receiver<Vec<proto::TaskReport>> {
        self.reports.subscribe()
    }
}
