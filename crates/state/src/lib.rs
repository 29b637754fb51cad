//! Cluster state: every `cluster/*` table ([`tables`]), the records the
//! commands write ([`records`]), and [`ClusterCommand`], the typed,
//! deterministic change that Raft will replicate. [`State`] is the one
//! handle a node has on it: services read through it and change it only
//! by [`State::propose`]; derived in-memory indexes (the access index, the
//! audit levels) follow it through [`State::subscribe`], so a follower that
//! only applies the log keeps them right.
//!
//! Today `propose` applies the command on this node at once; with Raft it
//! will append to the log and every manager will apply it in log order.
#![forbid(unsafe_code)]

mod command;
pub mod directory;
pub mod records;
pub mod tables;

use std::sync::{Arc, Mutex, RwLock};

use berth_store::Store;

pub use command::{ApplyError, AuditAppend, ClusterCommand, Envelope, Outcome, Rejected, COMMAND_VERSION};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command was refused on the state it met; nothing changed.
    #[error(transparent)]
    Rejected(#[from] Rejected),
    #[error(transparent)]
    Store(#[from] berth_store::Error),
    /// A logged command that cannot be read (corrupt, or from a newer berth).
    #[error("cluster command: {0}")]
    Decode(String),
    /// The change could not be made now (no manager leads the cluster, or
    /// a majority of managers cannot be reached); nothing was changed.
    #[error("{0}")]
    Unavailable(String),
    /// The command was applied, but an index that follows the state could
    /// not be brought up to date.
    #[error("{command} was applied, but {message}")]
    Follower { command: String, message: String },
}

impl From<ApplyError> for Error {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Rejected(r) => Error::Rejected(r),
            ApplyError::Store(s) => Error::Store(s),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A table's name and its records as stored (key, bytes), in key order.
pub type TableDump = berth_store::TableRows;

/// Called with every applied command, in order; an error is reported to
/// the proposer (the command stays applied).
type Subscriber = Box<dyn Fn(&ClusterCommand) -> std::result::Result<(), String> + Send + Sync>;

/// Called after the whole state was replaced (a Raft snapshot installed).
type Reset = Box<dyn Fn() -> std::result::Result<(), String> + Send + Sync>;

/// Takes a command to the replicated log and answers once this node has
/// applied it (see [`State::replicate_with`]).
pub type Proposer = std::sync::Arc<dyn Fn(Envelope) -> Result<Outcome> + Send + Sync>;

/// Says whether a proposal made now could be committed (a leader is
/// known and, on the leader, a majority answered lately), and why not.
pub type WritableCheck = std::sync::Arc<dyn Fn() -> std::result::Result<(), String> + Send + Sync>;

/// A node's handle on cluster state; cheap to clone (all clones share the
/// subscribers and the order of application).
#[derive(Clone)]
pub struct State {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// Held while a command is applied and its subscribers told: commands
    /// are applied, and seen, one at a time, in one order.
    order: Mutex<()>,
    subscribers: RwLock<Vec<Subscriber>>,
    resets: RwLock<Vec<Reset>>,
    /// Every applied command, when recording (tests replay it).
    recorded: Mutex<Option<Vec<Envelope>>>,
    /// Set on a manager of a replicated cluster: proposals go through the
    /// Raft log and this node applies only what the log commits.
    proposer: RwLock<Option<Proposer>>,
    writable: RwLock<Option<WritableCheck>>,
}

impl State {
    /// Opens cluster state in `store`, creating every cluster table, so
    /// that reads on a fresh store find them empty.
    pub fn open(store: Store) -> Result<Self> {
        store.write_cluster(true, |t| -> berth_store::Result<()> {
            for table in tables::ALL {
                t.list::<serde::de::IgnoredAny>(table)?;
            }
            Ok(())
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                order: Mutex::new(()),
                subscribers: RwLock::new(Vec::new()),
                resets: RwLock::new(Vec::new()),
                recorded: Mutex::new(None),
                proposer: RwLock::new(None),
                writable: RwLock::new(None),
            }),
        })
    }

    /// The store, for reads of cluster tables and for the node's own
    /// `local/*` tables.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Changes cluster state: on a manager of a replicated cluster,
    /// through the Raft log (every manager applies it, and this call
    /// answers once this one has); on a node alone (tests, tools), at once
    /// on this node. Subscribers are told either way.
    pub fn propose(&self, command: ClusterCommand) -> Result<Outcome> {
        match self.proposer() {
            Some(p) => p(Envelope::new(command)),
            None => self.apply(Envelope::new(command)),
        }
    }

    /// [`State::propose`] whose commit on a node alone is not flushed to
    /// disk: visible at once, durable with the next durable write to the
    /// node's store. Only for a record that a durable command of the same
    /// request follows (the audit log's `started` entry, made durable by
    /// the entry that records the outcome). Replicated, the log is durable
    /// and this is [`State::propose`].
    pub fn propose_unflushed(&self, command: ClusterCommand) -> Result<Outcome> {
        match self.proposer() {
            Some(p) => p(Envelope::new(command)),
            None => self.apply_with(Envelope::new(command), false),
        }
    }

    /// From now on, [`State::propose`] hands commands to `proposer` (the
    /// Raft log) instead of applying them here: set once, before anything
    /// proposes, on a manager of a replicated cluster.
    pub fn replicate_with(&self, proposer: Proposer) {
        *self
            .inner
            .proposer
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(proposer);
    }

    /// Sets how [`State::writable`] tells, alongside
    /// [`State::replicate_with`].
    pub fn check_writable_with(&self, check: WritableCheck) {
        *self
            .inner
            .writable
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(check);
    }

    /// Whether a change proposed now could be committed, without
    /// proposing one: always on a node alone.
    pub fn writable(&self) -> std::result::Result<(), String> {
        let check = self
            .inner
            .writable
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        check.map_or(Ok(()), |c| c())
    }

    /// Whether changes go through a replicated log.
    pub fn is_replicated(&self) -> bool {
        self.proposer().is_some()
    }

    fn proposer(&self) -> Option<Proposer> {
        self.inner
            .proposer
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Applies one logged command: what a follower does with each entry.
    pub fn apply(&self, envelope: Envelope) -> Result<Outcome> {
        self.apply_with(envelope, true)
    }

    /// Applies the command of one Raft log entry, not flushed (the log is
    /// durable): `position` writes the entry's place in the log in the
    /// same transaction as the change, or alone when the command is
    /// refused, so that no command is applied twice. A refusal is an
    /// answer (`Ok(Err)`), the same on every manager; an error is not.
    pub fn apply_logged(
        &self,
        envelope: Envelope,
        position: impl Fn(&mut berth_store::Txn) -> berth_store::Result<()>,
    ) -> Result<std::result::Result<Outcome, Rejected>> {
        match self.apply_in(&envelope, false, &position) {
            Ok(outcome) => Ok(Ok(outcome)),
            Err(Error::Rejected(r)) => {
                self.inner.store.write_deferred(|t| position(t))?;
                Ok(Err(r))
            }
            Err(e) => Err(e),
        }
    }

    /// Applies the commands of consecutive Raft log entries in one
    /// transaction, not flushed, with `position` (the last entry's place
    /// in the log): what [`State::apply_logged`] does one by one, at a
    /// fraction of the cost. `None` when one of them is refused: then
    /// nothing was changed, and the caller applies them one by one.
    pub fn apply_logged_batch(
        &self,
        envelopes: &[Envelope],
        position: impl FnOnce(&mut berth_store::Txn) -> berth_store::Result<()>,
    ) -> Result<Option<Vec<Outcome>>> {
        let _order = self
            .inner
            .order
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let applied = self
            .inner
            .store
            .write_cluster(false, |t| -> Result<Vec<Outcome>, ApplyError> {
                let mut outcomes = Vec::with_capacity(envelopes.len());
                for e in envelopes {
                    outcomes.push(e.command.apply(t)?);
                }
                position(t)?;
                Ok(outcomes)
            });
        let outcomes = match applied {
            Ok(outcomes) => outcomes,
            Err(ApplyError::Rejected(_)) => return Ok(None),
            Err(ApplyError::Store(e)) => return Err(e.into()),
        };
        self.applied(envelopes, format!("{} commands", envelopes.len()))?;
        Ok(Some(outcomes))
    }

    /// Replaces every cluster table with `dump` (name, records as
    /// stored), and runs `extra` in the same transaction: a Raft snapshot
    /// installed. The reset subscribers then rebuild what follows the state.
    pub fn install(
        &self,
        dump: Vec<(String, berth_store::Rows)>,
        extra: impl FnOnce(&mut berth_store::Txn) -> berth_store::Result<()>,
    ) -> Result<()> {
        let _order = self
            .inner
            .order
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.inner.store.write_cluster(true, |t| -> berth_store::Result<()> {
            for table in tables::ALL {
                t.delete_range(table, "", None)?;
            }
            for (name, rows) in &dump {
                let Some(table) = tables::ALL.iter().find(|t| t.0 == name) else {
                    tracing::warn!(table = %name, "a snapshot holds a table this berth does not know: skipped");
                    continue;
                };
                for (k, v) in rows {
                    t.put_raw(*table, k, v)?;
                }
            }
            extra(t)
        })?;
        let resets = self
            .inner
            .resets
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let failed: Vec<String> = resets.iter().filter_map(|f| f().err()).collect();
        if !failed.is_empty() {
            tracing::error!(errors = ?failed, "an index could not follow an installed snapshot");
            return Err(Error::Follower {
                command: "install snapshot".into(),
                message: failed.join("; "),
            });
        }
        Ok(())
    }

    /// Calls `f` after every installed snapshot ([`State::install`]).
    pub fn on_reset(&self, f: impl Fn() -> std::result::Result<(), String> + Send + Sync + 'static) {
        self.inner
            .resets
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Box::new(f));
    }

    /// Every cluster table as stored and the records of `extra` (a
    /// `local/*` table), in one read: for a consistent Raft snapshot.
    pub fn dump_with(&self, extra: berth_store::Table) -> Result<(Vec<TableDump>, berth_store::Rows)> {
        let mut all: Vec<berth_store::Table> = tables::ALL.to_vec();
        all.push(extra);
        let mut dumped = self.inner.store.raw_snapshot(&all)?;
        let extra_rows = dumped.pop().map(|(_, rows)| rows).unwrap_or_default();
        Ok((dumped, extra_rows))
    }

    /// After a commit: records the applied commands (when recording) and
    /// tells the subscribers, in order; `what` names them in the error
    /// when an index could not follow.
    fn applied(&self, envelopes: &[Envelope], what: String) -> Result<()> {
        if let Some(log) = self
            .inner
            .recorded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_mut()
        {
            log.extend(envelopes.iter().cloned());
        }
        let subscribers = self
            .inner
            .subscribers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let failed: Vec<String> = envelopes
            .iter()
            .flat_map(|e| subscribers.iter().filter_map(|s| s(&e.command).err()))
            .collect();
        if !failed.is_empty() {
            tracing::error!(command = %what, errors = ?failed, "an index could not follow cluster state");
            return Err(Error::Follower {
                command: what,
                message: failed.join("; "),
            });
        }
        Ok(())
    }

    fn apply_with(&self, envelope: Envelope, durable: bool) -> Result<Outcome> {
        self.apply_in(&envelope, durable, &|_| Ok(()))
    }

    fn apply_in(
        &self,
        envelope: &Envelope,
        durable: bool,
        extra: &dyn Fn(&mut berth_store::Txn) -> berth_store::Result<()>,
    ) -> Result<Outcome> {
        let _order = self
            .inner
            .order
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let command = &envelope.command;
        let outcome = self
            .inner
            .store
            .write_cluster(durable, |t| -> Result<Outcome, ApplyError> {
                let outcome = command.apply(t)?;
                extra(t)?;
                Ok(outcome)
            })?;
        self.applied(std::slice::from_ref(envelope), command.name())?;
        Ok(outcome)
    }

    /// Calls `f` after every command applied from now on, in order. `f`
    /// runs while commands wait for it: it must be quick and must not
    /// propose (that would wait on itself).
    pub fn subscribe(&self, f: impl Fn(&ClusterCommand) -> std::result::Result<(), String> + Send + Sync + 'static) {
        self.inner
            .subscribers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Box::new(f));
    }

    /// Keeps every command applied from now on, for [`State::recorded`].
    pub fn record(&self) {
        *self
            .inner
            .recorded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Vec::new());
    }

    /// The commands applied since [`State::record`], in order.
    pub fn recorded(&self) -> Vec<Envelope> {
        self.inner
            .recorded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .unwrap_or_default()
    }

    /// Every cluster table as stored, in one read: a consistent backup.
    pub fn snapshot(&self) -> Result<Vec<TableDump>> {
        Ok(self.inner.store.raw_snapshot(&tables::ALL)?)
    }

    /// Every cluster table as stored, for comparing two nodes' state.
    pub fn dump(&self) -> Result<Vec<TableDump>> {
        tables::ALL
            .iter()
            .map(|t| Ok((t.0, self.inner.store.raw_list(*t)?)))
            .collect()
    }
}
