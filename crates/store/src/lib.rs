//! The embedded store: one redb database under the data root, with typed
//! JSON-valued tables. Two keyspaces share the file: `local/*` belongs to this
//! node and is written directly; `cluster/*` (replicated by Raft) changes
//! only through [`Store::write_cluster`], which only `berth_state` calls: it
//! applies typed cluster commands, so that a log can slot in underneath.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("opening store {path}: {source}")]
    Open { path: PathBuf, source: redb::DatabaseError },
    #[error("store table {table}: {message}")]
    Storage { table: &'static str, message: String },
    #[error("store table {table} key {key}: corrupt record: {source}")]
    Decode {
        table: &'static str,
        key: String,
        source: serde_json::Error,
    },
    #[error("store table {table} key {key}: cannot encode record: {source}")]
    Encode {
        table: &'static str,
        key: String,
        source: serde_json::Error,
    },
    #[error("table {0} is in the cluster keyspace: change it with a cluster command (berth_state)")]
    ClusterTable(&'static str),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A named table. Names start with `local/` or `cluster/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table(pub &'static str);

impl Table {
    fn def(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        TableDefinition::new(self.0)
    }
    pub fn is_cluster(self) -> bool {
        self.0.starts_with("cluster/")
    }
}

/// Containers on this node, by id.
pub const CONTAINERS: Table = Table("local/containers");
/// Container names to ids (uniqueness on this node).
pub const CONTAINER_NAMES: Table = Table("local/container_names");
/// Images by id (config digest).
pub const IMAGES: Table = Table("local/images");
/// Familiar `name:tag` to image id.
pub const TAGS: Table = Table("local/tags");
/// Unpacked layer snapshots, by key (diff id + id mapping).
pub const SNAPSHOTS: Table = Table("local/snapshots");
/// Intents of multi-step operations, recorded before acting and cleared after;
/// what is left here at start-up is finished or undone by reconciliation.
pub const INTENTS: Table = Table("local/intents");

const ALL_TABLES: [Table; 6] = [CONTAINERS, CONTAINER_NAMES, IMAGES, TAGS, SNAPSHOTS, INTENTS];

#[derive(Clone)]
pub struct Store {
    db: std::sync::Arc<redb::Database>,
    commits: std::sync::Arc<Commits>,
}

/// The node's group commit: which commits are on disk. Commits are
/// numbered in the order redb makes them (the number is taken inside the
/// write transaction, which redb runs one at a time); a durable commit puts
/// every earlier one on disk with it.
#[derive(Default)]
struct Commits {
    /// The number of the last commit.
    last: std::sync::atomic::AtomicU64,
    /// The number of the last commit known to be on disk.
    durable: std::sync::atomic::AtomicU64,
    /// Held while an empty durable commit is made for callers of
    /// [`Store::make_durable`]: callers that arrive meanwhile find their
    /// commits covered by it and return without a commit of their own.
    syncing: std::sync::Mutex<()>,
}

impl Store {
    /// Opens (or creates) the database at `path` and makes sure every table exists.
    pub fn open(path: &Path) -> Result<Self> {
        let db = redb::Database::create(path).map_err(|source| Error::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let store = Self {
            db: std::sync::Arc::new(db),
            commits: Default::default(),
        };
        store.write_with(true, true, |txn| -> Result<()> {
            for t in ALL_TABLES {
                txn.inner.open_table(t.def()).map_err(|e| storage(t, e))?;
            }
            Ok(())
        })?;
        Ok(store)
    }

    pub fn get<T: DeserializeOwned>(&self, table: Table, key: &str) -> Result<Option<T>> {
        let txn = self.db.begin_read().map_err(|e| storage(table, e))?;
        let t = txn.open_table(table.def()).map_err(|e| storage(table, e))?;
        let value = t.get(key).map_err(|e| storage(table, e))?;
        value.map(|v| decode(table, key, v.value())).transpose()
    }

    /// Every record of a table, in key order.
    pub fn list<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<(String, T)>> {
        let txn = self.db.begin_read().map_err(|e| storage(table, e))?;
        let t = txn.open_table(table.def()).map_err(|e| storage(table, e))?;
        let mut out = Vec::new();
        for entry in t.iter().map_err(|e| storage(table, e))? {
            let (k, v) = entry.map_err(|e| storage(table, e))?;
            out.push((k.value().to_string(), decode(table, k.value(), v.value())?));
        }
        Ok(out)
    }

    /// Runs `f` in one atomic write transaction on `local/*` tables: all of
    /// its changes become durable together, or none do.
    pub fn write<R>(&self, f: impl FnOnce(&mut Txn) -> Result<R>) -> Result<R> {
        self.write_with(false, true, f)
    }

    /// The one way to change `cluster/*` tables, for `berth_state` alone
    /// (a tidy test holds every other crate to it; tests that tamper with
    /// a store on purpose may use it too). The transaction commits when `f`
    /// returns `Ok` and is dropped otherwise; when not `durable`, the
    /// commit is not flushed to disk (see [`Store::write_deferred`]).
    pub fn write_cluster<R, E: From<Error>>(
        &self,
        durable: bool,
        f: impl FnOnce(&mut Txn) -> Result<R, E>,
    ) -> Result<R, E> {
        self.write_with(true, durable, f)
    }

    /// The number of the last commit: a caller that left writes unflushed
    /// passes it to [`Store::make_durable`].
    pub fn last_commit(&self) -> u64 {
        self.commits.last.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Makes every commit up to `commit` durable: at once when a durable
    /// commit since has done so (the usual case: the request's audit entry),
    /// else with one empty durable commit shared by every caller waiting at
    /// the time (a group commit).
    pub fn make_durable(&self, commit: u64) -> Result<()> {
        use std::sync::atomic::Ordering;
        if self.commits.durable.load(Ordering::SeqCst) >= commit {
            return Ok(());
        }
        let _syncing = self
            .commits
            .syncing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.commits.durable.load(Ordering::SeqCst) >= commit {
            return Ok(());
        }
        self.write_with(false, true, |_| Ok::<_, Error>(()))
    }

    /// The records of `table` with keys from `from` up to (not including)
    /// `to` (to the end when `None`), in key order.
    pub fn list_range<T: DeserializeOwned>(
        &self,
        table: Table,
        from: &str,
        to: Option<&str>,
    ) -> Result<Vec<(String, T)>> {
        let txn = self.db.begin_read().map_err(|e| storage(table, e))?;
        let t = match txn.open_table(table.def()) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(storage(table, e)),
        };
        let range = match to {
            Some(to) => t.range::<&str>(from..to),
            None => t.range::<&str>(from..),
        }
        .map_err(|e| storage(table, e))?;
        let mut out = Vec::new();
        for entry in range {
            let (k, v) = entry.map_err(|e| storage(table, e))?;
            out.push((k.value().to_string(), decode(table, k.value(), v.value())?));
        }
        Ok(out)
    }

    /// The record of `table` with the greatest key.
    pub fn last<T: DeserializeOwned>(&self, table: Table) -> Result<Option<(String, T)>> {
        let txn = self.db.begin_read().map_err(|e| storage(table, e))?;
        let t = match txn.open_table(table.def()) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(storage(table, e)),
        };
        let last = match t.last().map_err(|e| storage(table, e))? {
            Some((k, v)) => Some((k.value().to_string(), decode(table, k.value(), v.value())?)),
            None => None,
        };
        Ok(last)
    }

    /// Every record of `tables` as stored, read in one transaction: a
    /// consistent picture of them all.
    pub fn raw_snapshot(&self, tables: &[Table]) -> Result<Vec<TableRows>> {
        let txn = self.db.begin_read().map_err(|e| storage(Table("*"), e))?;
        let mut out = Vec::new();
        for table in tables {
            let mut rows = Vec::new();
            match txn.open_table(table.def()) {
                Ok(t) => {
                    for entry in t.iter().map_err(|e| storage(*table, e))? {
                        let (k, v) = entry.map_err(|e| storage(*table, e))?;
                        rows.push((k.value().to_string(), v.value().to_vec()));
                    }
                }
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(storage(*table, e)),
            }
            out.push((table.0, rows));
        }
        Ok(out)
    }

    /// Every record of a table as stored, in key order: for comparing two
    /// stores byte for byte. A table never written is empty.
    pub fn raw_list(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>> {
        let txn = self.db.begin_read().map_err(|e| storage(table, e))?;
        let t = match txn.open_table(table.def()) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(storage(table, e)),
        };
        let mut out = Vec::new();
        for entry in t.iter().map_err(|e| storage(table, e))? {
            let (k, v) = entry.map_err(|e| storage(table, e))?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Like [`Store::write`], but the commit is not flushed to disk: it is
    /// visible at once and becomes durable with the next durable write. A
    /// crash before that loses it, so it suits only records that a following
    /// durable write in the same operation covers, and whose loss the
    /// start-up reconciliation undoes (a container created to be started at
    /// once: its start is durable; a crash before leaves a directory without
    /// a record, which reconcile removes).
    pub fn write_deferred<R>(&self, f: impl FnOnce(&mut Txn) -> Result<R>) -> Result<R> {
        self.write_with(false, false, f)
    }

    /// [`Store::write`] when `durable`, else [`Store::write_deferred`].
    pub fn write_or_defer<R>(&self, durable: bool, f: impl FnOnce(&mut Txn) -> Result<R>) -> Result<R> {
        self.write_with(false, durable, f)
    }

    /// Makes every earlier deferred write durable (see [`Store::make_durable`]).
    pub fn flush(&self) -> Result<()> {
        self.make_durable(self.last_commit())
    }

    /// The one write path: a transaction on `cluster/*` tables too when
    /// `cluster`, committed when `f` returns `Ok` (dropped otherwise),
    /// flushed to disk when `durable`. Each commit is numbered inside the
    /// write transaction, which redb runs one at a time, so numbers follow
    /// the commit order; a failed commit leaves a number unused, which only
    /// makes a later `make_durable` flush.
    fn write_with<R, E: From<Error>>(
        &self,
        cluster: bool,
        durable: bool,
        f: impl FnOnce(&mut Txn) -> Result<R, E>,
    ) -> Result<R, E> {
        use std::sync::atomic::Ordering;
        let durability = if durable {
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        };
        let mut inner = self.db.begin_write().map_err(|e| storage(Table("*"), e))?;
        inner.set_durability(durability).map_err(|e| storage(Table("*"), e))?;
        let mut txn = Txn { inner, cluster };
        let r = f(&mut txn)?;
        let number = self.commits.last.fetch_add(1, Ordering::SeqCst) + 1;
        txn.inner.commit().map_err(|e| storage(Table("*"), e))?;
        if durable {
            self.commits.durable.fetch_max(number, Ordering::SeqCst);
        }
        Ok(r)
    }
}

/// Records as stored: (key, bytes), in key order.
pub type Rows = Vec<(String, Vec<u8>)>;

/// A table's name and its records as stored.
pub type TableRows = (&'static str, Rows);

/// A write transaction; dropped without commit when the closure fails.
pub struct Txn {
    inner: redb::WriteTransaction,
    cluster: bool,
}

impl Txn {
    fn check(&self, table: Table) -> Result<()> {
        if table.is_cluster() && !self.cluster {
            return Err(Error::ClusterTable(table.0));
        }
        Ok(())
    }

    pub fn get<T: DeserializeOwned>(&self, table: Table, key: &str) -> Result<Option<T>> {
        let t = self.inner.open_table(table.def()).map_err(|e| storage(table, e))?;
        let value = t.get(key).map_err(|e| storage(table, e))?;
        value.map(|v| decode(table, key, v.value())).transpose()
    }

    pub fn put<T: Serialize>(&mut self, table: Table, key: &str, value: &T) -> Result<()> {
        self.check(table)?;
        let bytes = serde_json::to_vec(value).map_err(|source| Error::Encode {
            table: table.0,
            key: key.to_string(),
            source,
        })?;
        let mut t = self.inner.open_table(table.def()).map_err(|e| storage(table, e))?;
        t.insert(key, bytes.as_slice()).map_err(|e| storage(table, e))?;
        Ok(())
    }

    /// Removes a key; returns whether it was there.
    pub fn delete(&mut self, table: Table, key: &str) -> Result<bool> {
        self.check(table)?;
        let mut t = self.inner.open_table(table.def()).map_err(|e| storage(table, e))?;
        let old = t.remove(key).map_err(|e| storage(table, e))?;
        Ok(old.is_some())
    }

    /// Stores bytes as they are (a snapshot's records, already encoded).
    pub fn put_raw(&mut self, table: Table, key: &str, bytes: &[u8]) -> Result<()> {
        self.check(table)?;
        let mut t = self.inner.open_table(table.def()).map_err(|e| storage(table, e))?;
        t.insert(key, bytes).map_err(|e| storage(table, e))?;
        Ok(())
    }

    /// Removes the keys from `from` up to (not including) `to` (to the end
    /// when `None`); how many there were.
    pub fn delete_range(&mut self, table: Table, from: &str, to: Option<&str>) -> Result<usize> {
        self.check(table)?;
        let mut t = self.inner.open_table(table.def()).map_err(|e| storage(table, e))?;
        let keys: Vec<String> = {
            let range = match to {
                Some(to) => t.range::<&str>(from..to),
                None => t.range::<&str>(from..),
            }
            .map_err(|e| storage(table, e))?;
            let mut keys = Vec::new();
            for entry in range {
                let (k, _) = entry.map_err(|e| storage(table, e))?;
                keys.push(k.value().to_string());
            }
            keys
        };
        for k in &keys {
            t.remove(k.as_str()).map_err(|e| storage(table, e))?;
        }
        Ok(keys.len())
    }

    pub fn list<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<(String, T)>> {
        let t = self.inner.open_table(table.def()).map_err(|e| storage(table, e))?;
        let mut out = Vec::new();
        for entry in t.iter().map_err(|e| storage(table, e))? {
            let (k, v) = entry.map_err(|e| storage(table, e))?;
            out.push((k.value().to_string(), decode(table, k.value(), v.value())?));
        }
        Ok(out)
    }
}

fn storage(table: Table, e: impl std::fmt::Display) -> Error {
    Error::Storage {
        table: table.0,
        message: e.to_string(),
    }
}

fn decode<T: DeserializeOwned>(table: Table, key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| Error::Decode {
        table: table.0,
        key: key.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_list_delete_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.redb");
        {
            let store = Store::open(&path).unwrap();
            store
                .write(|t| {
                    t.put(IMAGES, "b", &2u32)?;
                    t.put(IMAGES, "a", &1u32)
                })
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.get::<u32>(IMAGES, "a").unwrap(), Some(1));
        assert_eq!(
            store.list::<u32>(IMAGES).unwrap(),
            vec![("a".to_string(), 1), ("b".to_string(), 2)]
        );
        assert!(store.write(|t| t.delete(IMAGES, "a")).unwrap());
        assert!(!store.write(|t| t.delete(IMAGES, "a")).unwrap());
        assert_eq!(store.get::<u32>(IMAGES, "a").unwrap(), None);
    }

    /// Run as a child process by
    /// `a_deferred_write_survives_a_crash_only_once_flushed`: writes, then
    /// exits without closing the store, as a crash would.
    #[test]
    #[ignore = "a child process of a_deferred_write_survives_a_crash_only_once_flushed"]
    fn child_writes_then_dies() {
        let path = std::env::var_os("BERTH_STORE_CHILD").expect("run by the parent test");
        let store = Store::open(std::path::Path::new(&path)).unwrap();
        store.write_deferred(|t| t.put(IMAGES, "deferred", &1u32)).unwrap();
        if std::env::var_os("BERTH_STORE_CHILD_FLUSH").is_some() {
            store.flush().unwrap();
        }
        std::process::exit(0)
    }

    #[test]
    fn a_deferred_write_survives_a_crash_only_once_flushed() {
        for flush in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("berth.redb");
            Store::open(&path)
                .unwrap()
                .write(|t| t.put(IMAGES, "durable", &0u32))
                .unwrap();
            let mut child = std::process::Command::new(std::env::current_exe().unwrap());
            child
                .args([
                    "--exact",
                    "tests::child_writes_then_dies",
                    "--include-ignored",
                    "--quiet",
                ])
                .env("BERTH_STORE_CHILD", &path)
                .stdout(std::process::Stdio::null());
            if flush {
                child.env("BERTH_STORE_CHILD_FLUSH", "1");
            }
            assert!(child.status().unwrap().success());
            let store = Store::open(&path).unwrap();
            assert_eq!(store.get::<u32>(IMAGES, "durable").unwrap(), Some(0));
            assert_eq!(
                store.get::<u32>(IMAGES, "deferred").unwrap(),
                flush.then_some(1),
                "flushed: {flush}"
            );
        }
    }

    #[test]
    fn make_durable_flushes_only_what_no_durable_commit_covered() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        store.write_deferred(|t| t.put(IMAGES, "a", &1u32)).unwrap();
        let deferred = store.last_commit();
        assert!(store.commits.durable.load(std::sync::atomic::Ordering::SeqCst) < deferred);
        // A durable commit after it covers it: nothing more to do.
        store.write(|t| t.put(IMAGES, "b", &2u32)).unwrap();
        let covered = store.last_commit();
        store.make_durable(deferred).unwrap();
        assert_eq!(store.last_commit(), covered, "no extra commit");
        // Without one, make_durable commits once.
        store.write_deferred(|t| t.put(IMAGES, "c", &3u32)).unwrap();
        let pending = store.last_commit();
        store.make_durable(pending).unwrap();
        assert_eq!(store.last_commit(), pending + 1);
        assert!(store.commits.durable.load(std::sync::atomic::Ordering::SeqCst) > pending);
        store.make_durable(pending).unwrap();
        assert_eq!(store.last_commit(), pending + 1, "already durable");
    }

    #[test]
    fn failed_transaction_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let r: Result<()> = store.write(|t| {
            t.put(TAGS, "x:1", &"id")?;
            Err(Error::ClusterTable("test"))
        });
        assert!(r.is_err());
        assert_eq!(store.get::<String>(TAGS, "x:1").unwrap(), None);
    }

    #[test]
    fn cluster_tables_only_change_through_write_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let users = Table("cluster/users");
        let err = store.write(|t| t.put(users, "u", &1)).unwrap_err();
        assert!(err.to_string().contains("cluster command"), "{err}");
        store.write_cluster(true, |t| t.put(users, "u", &1)).unwrap();
        assert_eq!(store.get::<i32>(users, "u").unwrap(), Some(1));
    }

    #[test]
    fn corrupt_record_names_table_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        store.write(|t| t.put(IMAGES, "k", &"text")).unwrap();
        let err = store.get::<u64>(IMAGES, "k").unwrap_err().to_string();
        assert!(err.contains("local/images") && err.contains("key k"), "{err}");
    }
}
