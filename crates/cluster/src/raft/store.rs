//! The Raft log and state machine on the node's redb store.
//!
//! - `local/raft_log`: entries by index (20-digit zero-padded keys, so key
//!   order is index order), appended durably before openraft is told.
//! - `local/raft_meta`: `vote` (durable), `committed`, `purged` (the last
//!   purged log id), `applied` and `membership` (written with each applied
//!   command, in its transaction) and `snapshot` (the last snapshot built
//!   or installed, with its metadata).
//!
//! The state machine applies commands with [`State::apply_logged`] without
//! flushing: the log is durable, and `applied` commits with the change, so
//! a crash loses both together and the entries are applied again at start.

// openraft's traits return its `StorageError` (224 bytes); the helpers
// here return what they return.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;

use base64::Engine as _;
use berth_state::{State, TableDump};
use berth_store::{Store, Table};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};

use super::{Answers, Applied, Batch, TypeConfig};

const LOG: Table = Table("local/raft_log");
const META: Table = Table("local/raft_meta");

type NodeId = u64;
type Node = openraft::BasicNode;
type StorageResult<T> = Result<T, StorageError<NodeId>>;

fn key(index: u64) -> String {
    format!("{index:020}")
}

fn index_bound(b: std::ops::Bound<&u64>) -> Option<u64> {
    match b {
        std::ops::Bound::Included(i) => Some(*i),
        std::ops::Bound::Excluded(i) => i.checked_add(1),
        std::ops::Bound::Unbounded => None,
    }
}

/// The Raft log on the node's store.
#[derive(Clone)]
pub struct LogStore {
    store: Store,
    /// Appended entries waiting to be flushed: the commit that holds them
    /// and openraft's callback.
    flusher: std::sync::mpsc::Sender<(u64, LogFlushed<TypeConfig>)>,
}

/// Flushes appended entries for everyone waiting at once (a group
/// commit): under load, one fsync covers many appends, where one each
/// would cap the log at the disk's fsync rate. Callbacks complete in the
/// order of their appends. Ends when every [`LogStore`] is gone.
fn run_flusher(store: Store, queue: std::sync::mpsc::Receiver<(u64, LogFlushed<TypeConfig>)>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        batch.extend(queue.try_iter());
        let upto = batch.iter().map(|(commit, _)| *commit).max().unwrap_or(0);
        let flushed = store.make_durable(upto).map_err(|e| e.to_string());
        for (_, callback) in batch {
            callback.log_io_completed(flushed.clone().map_err(std::io::Error::other));
        }
    }
}

/// Creates the Raft tables, so that reads on a fresh store find them empty.
fn prepare(store: &Store) -> berth_store::Result<()> {
    store.write(|t| {
        t.list::<serde::de::IgnoredAny>(LOG)?;
        t.list::<serde::de::IgnoredAny>(META)?;
        Ok(())
    })
}

/// Forgets this node's Raft log, vote and membership, keeping cluster
/// state as applied: `--force-new-cluster` then starts a new log on it.
pub fn forget(store: &Store) -> berth_store::Result<()> {
    prepare(store)?;
    store.write(|t| {
        t.delete_range(LOG, "", None)?;
        t.delete_range(META, "", None)?;
        Ok(())
    })
}

impl LogStore {
    pub fn new(store: Store) -> berth_store::Result<Self> {
        prepare(&store)?;
        let (flusher, queue) = std::sync::mpsc::channel();
        let flushed = store.clone();
        std::thread::Builder::new()
            .name("raft-log-flush".into())
            .spawn(move || run_flusher(flushed, queue))
            .map_err(|e| berth_store::Error::Storage {
                table: LOG.0,
                message: format!("starting the log flusher: {e}"),
            })?;
        Ok(LogStore { store, flusher })
    }

    fn meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> StorageResult<Option<T>> {
        self.store.get(META, key).map_err(|e| StorageIOError::read(&e).into())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let from = index_bound(range.start_bound()).unwrap_or(0);
        let to = match range.end_bound() {
            std::ops::Bound::Included(i) => i.checked_add(1),
            std::ops::Bound::Excluded(i) => Some(*i),
            std::ops::Bound::Unbounded => None,
        };
        if to.is_some_and(|t| t <= from) {
            return Ok(Vec::new());
        }
        let entries = self
            .store
            .list_range::<Entry<TypeConfig>>(LOG, &key(from), to.map(key).as_deref())
            .map_err(|e| StorageIOError::read_logs(&e))?;
        Ok(entries.into_iter().map(|(_, e)| e).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let purged: Option<LogId<NodeId>> = self.meta("purged")?;
        let last = self
            .store
            .last::<Entry<TypeConfig>>(LOG)
            .map_err(|e| StorageIOError::read_logs(&e))?
            .map(|(_, e)| e.log_id);
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last.or(purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        self.store
            .write(|t| t.put(META, "vote", vote))
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        self.meta("vote")
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // Written at once (visible to readers), flushed by the flusher,
        // which tells openraft when the entries are on disk.
        let written = self.store.write_deferred(|t| {
            for entry in entries {
                t.put(LOG, &key(entry.log_id.index), &entry)?;
            }
            Ok(())
        });
        match written {
            Ok(()) => {
                let commit = self.store.last_commit();
                if let Err(std::sync::mpsc::SendError((_, callback))) = self.flusher.send((commit, callback)) {
                    callback.log_io_completed(Err(std::io::Error::other("the log flusher stopped")));
                }
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.store
            .write(|t| t.delete_range(LOG, &key(log_id.index), None).map(drop))
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let end = log_id.index.checked_add(1).map(key);
        self.store
            .write(|t| {
                t.put(META, "purged", &log_id)?;
                t.delete_range(LOG, &key(0), end.as_deref()).map(drop)
            })
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

/// A snapshot as stored and sent: every cluster table as stored (values
/// base64), with the log position and membership it reflects.
#[derive(Serialize, Deserialize)]
struct SnapshotData {
    applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Node>,
    tables: Vec<(String, Vec<(String, String)>)>,
}

/// The last snapshot, as kept in `local/raft_meta`.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, Node>,
    /// The [`SnapshotData`] JSON, base64.
    data: String,
}

/// Cluster state as the Raft state machine.
#[derive(Clone)]
pub struct Machine {
    state: State,
}

impl Machine {
    pub fn new(state: State) -> berth_store::Result<Self> {
        prepare(state.store())?;
        Ok(Machine { state })
    }

    fn store(&self) -> &Store {
        self.state.store()
    }
}

fn encode_tables(tables: Vec<TableDump>) -> Vec<(String, Vec<(String, String)>)> {
    let b64 = base64::engine::general_purpose::STANDARD;
    tables
        .into_iter()
        .map(|(name, rows)| {
            let rows = rows.into_iter().map(|(k, v)| (k, b64.encode(v))).collect();
            (name.to_string(), rows)
        })
        .collect()
}

impl Machine {
    /// Applies one entry: its commands in one transaction with the
    /// entry's position, or, when one is refused, each in its own.
    fn apply_one(&self, entry: Entry<TypeConfig>) -> StorageResult<Answers> {
        let applied = Some(entry.log_id);
        let position = |t: &mut berth_store::Txn| t.put(META, "applied", &applied);
        let write = |e: berth_state::Error| StorageIOError::write_state_machine(&e);
        Ok(match entry.payload {
            EntryPayload::Normal(Batch(envelopes)) => {
                if envelopes.len() > 1 {
                    if let Some(outcomes) = self.state.apply_logged_batch(&envelopes, position).map_err(write)? {
                        return Ok(Answers(outcomes.into_iter().map(|o| Applied(Ok(o))).collect()));
                    }
                }
                let mut answers = Vec::with_capacity(envelopes.len());
                for envelope in envelopes {
                    answers.push(Applied(self.state.apply_logged(envelope, position).map_err(write)?));
                }
                Answers(answers)
            }
            EntryPayload::Blank => {
                self.store()
                    .write_deferred(position)
                    .map_err(|e| StorageIOError::write_state_machine(&e))?;
                Answers(Vec::new())
            }
            EntryPayload::Membership(m) => {
                let stored = StoredMembership::new(applied, m);
                self.store()
                    .write_deferred(|t| {
                        t.put(META, "applied", &applied)?;
                        t.put(META, "membership", &stored)
                    })
                    .map_err(|e| StorageIOError::write_state_machine(&e))?;
                Answers(Vec::new())
            }
        })
    }
}

impl RaftStateMachine<TypeConfig> for Machine {
    type SnapshotBuilder = Machine;

    async fn applied_state(&mut self) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>)> {
        let store = self.store();
        let applied: Option<Option<LogId<NodeId>>> = store
            .get(META, "applied")
            .map_err(|e| StorageIOError::read_state_machine(&e))?;
        let membership: Option<StoredMembership<NodeId, Node>> = store
            .get(META, "membership")
            .map_err(|e| StorageIOError::read_state_machine(&e))?;
        Ok((applied.flatten(), membership.unwrap_or_default()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Answers>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut answers = Vec::new();
        for entry in entries {
            answers.push(self.apply_one(entry)?);
        }
        Ok(answers)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let bytes = snapshot.into_inner();
        let signature = Some(meta.signature());
        let data: SnapshotData =
            serde_json::from_slice(&bytes).map_err(|e| StorageIOError::read_snapshot(signature.clone(), &e))?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut tables = Vec::new();
        for (name, rows) in data.tables {
            let mut decoded = Vec::new();
            for (k, v) in rows {
                let v = b64
                    .decode(v)
                    .map_err(|e| StorageIOError::read_snapshot(signature.clone(), &e))?;
                decoded.push((k, v));
            }
            tables.push((name, decoded));
        }
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: b64.encode(&bytes),
        };
        let applied = meta.last_log_id;
        let membership = meta.last_membership.clone();
        self.state
            .install(tables, |t| {
                t.put(META, "applied", &applied)?;
                t.put(META, "membership", &membership)?;
                t.put(META, "snapshot", &stored)
            })
            .map_err(|e| StorageIOError::write_snapshot(signature, &e))?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let stored: Option<StoredSnapshot> = self
            .store()
            .get(META, "snapshot")
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        let Some(stored) = stored else { return Ok(None) };
        let signature = Some(stored.meta.signature());
        let data = base64::engine::general_purpose::STANDARD
            .decode(stored.data)
            .map_err(|e| StorageIOError::read_snapshot(signature, &e))?;
        Ok(Some(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for Machine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        // One read transaction: the tables and the position agree.
        let (tables, meta_rows) = self
            .state
            .dump_with(META)
            .map_err(|e| StorageIOError::read_state_machine(&e))?;
        let find = |key: &str| meta_rows.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_slice());
        let applied: Option<LogId<NodeId>> = find("applied")
            .and_then(|b| serde_json::from_slice::<Option<LogId<NodeId>>>(b).ok())
            .flatten();
        let membership: StoredMembership<NodeId, Node> = find("membership")
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or_default();
        let data = SnapshotData {
            applied,
            membership: membership.clone(),
            tables: encode_tables(tables),
        };
        let bytes = serde_json::to_vec(&data).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let meta = SnapshotMeta {
            last_log_id: applied,
            last_membership: membership,
            snapshot_id: format!(
                "{}-{}",
                applied.map_or(0, |l| l.index),
                hex::encode(rand::random::<[u8; 4]>())
            ),
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: base64::engine::general_purpose::STANDARD.encode(&bytes),
        };
        self.store()
            .write(|t| t.put(META, "snapshot", &stored))
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}
