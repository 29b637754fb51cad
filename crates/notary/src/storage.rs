//! The trust server's storage: every version of every role's signed
//! metadata per GUN, the current version of each, lookups by checksum, the
//! server-managed keys, and the changefeed, in `cluster/trust_*` tables (so
//! trust data is cluster state, replicated with it). Metadata is kept
//! byte-for-byte as uploaded or signed: signatures cover those bytes.
//!
//! **Invariant:** an update is one transaction: all of its roles become
//! current together, or none do; a version that is not above the stored
//! one is refused ([`StorageError::OldVersion`]) and nothing changes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use berth_state::records::{trust_entry_key as key3, trust_role_key as key2, trust_version_key as version_key};
use berth_state::records::{TrustCurrent as Current, TrustMetaUpdate};
use berth_state::{ClusterCommand, Outcome, State};
use berth_store::Store;

/// Every stored version: key `gun \n role \n version (20 digits)`; the
/// current version of each role: key `gun \n role`; versions by checksum:
/// key `gun \n role \n sha256-hex` → version; server-managed keys
/// (timestamp, snapshot): key `gun \n role \n key id`; the changefeed: key
/// = the change id, 20 digits.
pub use berth_state::tables::{TRUST_CHANGES, TRUST_CHECKSUMS, TRUST_CURRENT, TRUST_KEYS, TRUST_META};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Store(#[from] berth_store::Error),
    #[error("{role} version {version} is not newer than the stored version {current}")]
    OldVersion { role: String, version: u64, current: u64 },
    #[error(transparent)]
    State(berth_state::Error),
}

impl From<berth_state::Error> for StorageError {
    fn from(e: berth_state::Error) -> Self {
        match e {
            berth_state::Error::Rejected(berth_state::Rejected::OldVersion { role, version, current }) => {
                StorageError::OldVersion { role, version, current }
            }
            berth_state::Error::Store(e) => StorageError::Store(e),
            other => StorageError::State(other),
        }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// One stored version of a role's metadata.
pub use berth_state::records::StoredMeta;
/// One changefeed record, in notary-server's JSON field names.
pub use berth_state::records::TrustChange as Change;
/// A server-managed key. `private` is the sealed private key as the
/// daemon encrypted it; this module never looks inside.
pub use berth_state::records::TrustKeyRecord as KeyRecord;

/// One role's new metadata in an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub role: String,
    pub version: u64,
    pub data: Vec<u8>,
}

/// The trust tables plus a read cache of current metadata, the hot path
/// (`GET .../timestamp.json`).
#[derive(Clone)]
pub struct TrustStore {
    state: State,
    store: Store,
    /// Follows cluster state: a role's entry goes when a command changes
    /// its GUN, whoever proposed it.
    cache: Arc<RwLock<HashMap<String, Arc<StoredMeta>>>>,
}

impl TrustStore {
    /// The trust tables of cluster state.
    pub fn open(state: State) -> Result<Self> {
        let cache: Arc<RwLock<HashMap<String, Arc<StoredMeta>>>> = Default::default();
        let follower = cache.clone();
        state.subscribe(move |command| {
            let gun = match command {
                ClusterCommand::CommitTrustMetadata { gun, .. } | ClusterCommand::DeleteTrustMetadata { gun, .. } => {
                    gun
                }
                _ => return Ok(()),
            };
            let prefix = format!("{gun}\n");
            follower
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|k, _| !k.starts_with(&prefix));
            Ok(())
        });
        Ok(Self {
            store: state.store().clone(),
            state,
            cache,
        })
    }

    fn now() -> String {
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    }

    /// The current metadata of `role` in `gun`.
    pub fn current(&self, gun: &str, role: &str) -> Result<Option<Arc<StoredMeta>>> {
        let key = key2(gun, role);
        if let Some(hit) = self.read_cache().get(&key) {
            return Ok(Some(hit.clone()));
        }
        let Some(cur) = self.store.get::<Current>(TRUST_CURRENT, &key)? else {
            return Ok(None);
        };
        let meta = self
            .store
            .get::<StoredMeta>(TRUST_META, &key3(gun, role, &version_key(cur.version)))?;
        let meta = meta.map(Arc::new);
        if let Some(m) = &meta {
            self.write_cache().insert(key, m.clone());
        }
        Ok(meta)
    }

    /// A given version of `role`.
    pub fn by_version(&self, gun: &str, role: &str, version: u64) -> Result<Option<StoredMeta>> {
        Ok(self.store.get(TRUST_META, &key3(gun, role, &version_key(version)))?)
    }

    /// The version of `role` whose SHA-256 is `sha256` (hex, any case).
    pub fn by_checksum(&self, gun: &str, role: &str, sha256: &str) -> Result<Option<StoredMeta>> {
        let sha = sha256.to_ascii_lowercase();
        let Some(version) = self.store.get::<u64>(TRUST_CHECKSUMS, &key3(gun, role, &sha))? else {
            return Ok(None);
        };
        self.by_version(gun, role, version)
    }

    /// Every role's current metadata in `gun`, by role name.
    pub fn all_current(&self, gun: &str) -> Result<Vec<(String, StoredMeta)>> {
        let prefix = format!("{gun}\n");
        let mut out = Vec::new();
        for (key, cur) in self.store.list::<Current>(TRUST_CURRENT)? {
            let Some(role) = key.strip_prefix(&prefix) else {
                continue;
            };
            if role.contains('\n') {
                continue;
            }
            if let Some(m) = self.by_version(gun, role, cur.version)? {
                out.push((role.to_string(), m));
            }
        }
        Ok(out)
    }

    /// Whether `gun` has any metadata.
    pub fn exists(&self, gun: &str) -> Result<bool> {
        Ok(self.current(gun, "root")?.is_some())
    }

    /// Stores `updates` atomically and makes them current. A timestamp in
    /// the update is recorded in the changefeed.
    pub fn commit(&self, gun: &str, updates: &[Update]) -> Result<()> {
        let created = Self::now();
        let updates = updates
            .iter()
            .map(|u| TrustMetaUpdate {
                role: u.role.clone(),
                meta: StoredMeta {
                    version: u.version,
                    sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&u.data)),
                    data: String::from_utf8_lossy(&u.data).into_owned(),
                    created: created.clone(),
                },
            })
            .collect();
        self.state.propose(ClusterCommand::CommitTrustMetadata {
            gun: gun.to_string(),
            updates,
            at: created,
        })?;
        Ok(())
    }

    /// Removes all of `gun`'s metadata (not its server keys, as
    /// notary-server keeps them) and records a deletion. Whether it existed.
    pub fn delete(&self, gun: &str) -> Result<bool> {
        let removed = self.state.propose(ClusterCommand::DeleteTrustMetadata {
            gun: gun.to_string(),
            at: Self::now(),
        })?;
        Ok(removed == Outcome::Removed(true))
    }

    /// notary-server's changefeed query: changes after `change_id` (0 or
    /// empty: from the start), at most `records` of them, oldest first,
    /// optionally only for `gun`. Negative `records` or `change_id` go
    /// backwards: the newest changes before `change_id` (before the end when
    /// it is 0 or negative).
    pub fn changes(&self, gun: Option<&str>, change_id: i64, records: i64) -> Result<Vec<Change>> {
        let all: Vec<Change> = self
            .store
            .list::<Change>(TRUST_CHANGES)?
            .into_iter()
            .map(|(_, c)| c)
            .collect();
        let reversed = change_id < 0 || records < 0;
        let n = records.unsigned_abs() as usize;
        let position = |c: &Change| c.id.parse::<i64>().unwrap_or(0);
        let selected: Vec<Change> = if reversed {
            let before = if change_id <= 0 { i64::MAX } else { change_id };
            let mut picked: Vec<Change> = all
                .into_iter()
                .rev()
                .filter(|c| position(c) < before)
                .filter(|c| gun.is_none_or(|g| c.gun == g))
                .take(n)
                .collect();
            picked.reverse();
            picked
        } else {
            all.into_iter()
                .filter(|c| position(c) > change_id)
                .filter(|c| gun.is_none_or(|g| c.gun == g))
                .take(n)
                .collect()
        };
        Ok(selected)
    }

    /// Every stored version of every role of `gun`.
    pub fn all_versions(&self, gun: &str) -> Result<Vec<(String, StoredMeta)>> {
        let prefix = format!("{gun}\n");
        Ok(self
            .store
            .list::<StoredMeta>(TRUST_META)?
            .into_iter()
            .filter_map(|(k, m)| {
                let rest = k.strip_prefix(&prefix)?;
                let (role, _) = rest.rsplit_once('\n')?;
                Some((role.to_string(), m))
            })
            .collect())
    }

    /// `gun`'s server-held keys as `(role, record)`, oldest first.
    pub fn server_keys(&self, gun: &str) -> Result<Vec<(String, KeyRecord)>> {
        let prefix = format!("{gun}\n");
        let mut keys: Vec<(String, KeyRecord)> = self
            .store
            .list::<KeyRecord>(TRUST_KEYS)?
            .into_iter()
            .filter_map(|(k, r)| {
                let rest = k.strip_prefix(&prefix)?;
                let (role, _) = rest.rsplit_once('\n')?;
                Some((role.to_string(), r))
            })
            .collect();
        keys.sort_by(|a, b| a.1.created.cmp(&b.1.created));
        Ok(keys)
    }

    pub fn put_server_key(&self, gun: &str, role: &str, key: &KeyRecord) -> Result<()> {
        self.state.propose(ClusterCommand::PutTrustKey {
            gun: gun.to_string(),
            role: role.to_string(),
            key: key.clone(),
        })?;
        Ok(())
    }

    fn read_cache(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<StoredMeta>>> {
        self.cache.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_cache(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<StoredMeta>>> {
        self.cache.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, TrustStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        (dir, TrustStore::open(State::open(store).unwrap()).unwrap())
    }

    fn up(role: &str, version: u64, data: &str) -> Update {
        Update {
            role: role.into(),
            version,
            data: data.as_bytes().to_vec(),
        }
    }

    #[test]
    fn versions_checksums_and_current() {
        let (_d, s) = open();
        s.commit("g", &[up("root", 1, "r1"), up("timestamp", 1, "t1")]).unwrap();
        s.commit("g", &[up("timestamp", 2, "t2")]).unwrap();
        assert_eq!(s.current("g", "timestamp").unwrap().unwrap().data, "t2");
        assert_eq!(s.by_version("g", "timestamp", 1).unwrap().unwrap().data, "t1");
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"t1"));
        assert_eq!(
            s.by_checksum("g", "timestamp", &sha.to_uppercase())
                .unwrap()
                .unwrap()
                .version,
            1
        );
        assert!(s.current("other", "root").unwrap().is_none());
        assert_eq!(s.all_current("g").unwrap().len(), 2);
    }

    /// A node that only applies the log (a follower) serves what the log
    /// says, not what it had cached.
    #[test]
    fn the_cache_follows_commands_applied_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(Store::open(&dir.path().join("db")).unwrap()).unwrap();
        let s = TrustStore::open(state.clone()).unwrap();
        s.commit("g", &[up("timestamp", 1, "t1")]).unwrap();
        assert_eq!(s.current("g", "timestamp").unwrap().unwrap().data, "t1");
        let meta = StoredMeta {
            version: 2,
            sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"t2")),
            data: "t2".into(),
            created: "2026-12-05T00:00:00Z".into(),
        };
        let logged = berth_state::Envelope::new(ClusterCommand::CommitTrustMetadata {
            gun: "g".into(),
            updates: vec![TrustMetaUpdate {
                role: "timestamp".into(),
                meta,
            }],
            at: "2026-12-05T00:00:00Z".into(),
        });
        state.apply(logged).unwrap();
        assert_eq!(s.current("g", "timestamp").unwrap().unwrap().data, "t2");
        let deleted = berth_state::Envelope::new(ClusterCommand::DeleteTrustMetadata {
            gun: "g".into(),
            at: "2026-12-05T00:00:01Z".into(),
        });
        state.apply(deleted).unwrap();
        assert!(s.current("g", "timestamp").unwrap().is_none());
    }

    #[test]
    fn an_old_version_changes_nothing() {
        let (_d, s) = open();
        s.commit("g", &[up("targets", 3, "a"), up("timestamp", 3, "t")])
            .unwrap();
        let err = s
            .commit("g", &[up("timestamp", 4, "t4"), up("targets", 3, "b")])
            .unwrap_err();
        assert!(matches!(err, StorageError::OldVersion { current: 3, .. }), "{err}");
        // The timestamp in the refused update did not land either.
        assert_eq!(s.current("g", "timestamp").unwrap().unwrap().version, 3);
        assert_eq!(s.changes(None, 0, 100).unwrap().len(), 1);
    }

    #[test]
    fn changefeed_pages_both_ways_and_deletion() {
        let (_d, s) = open();
        for v in 1..=3 {
            s.commit("a", &[up("timestamp", v, &format!("a{v}"))]).unwrap();
            s.commit("b", &[up("timestamp", v, &format!("b{v}"))]).unwrap();
        }
        assert!(s.delete("a").unwrap());
        assert!(!s.delete("a").unwrap());
        assert!(s.current("a", "timestamp").unwrap().is_none());
        let all = s.changes(None, 0, 100).unwrap();
        assert_eq!(all.len(), 7);
        assert_eq!(all.last().unwrap().category, "deletion");
        let ids = |v: Vec<Change>| v.into_iter().map(|c| c.id).collect::<Vec<_>>();
        assert_eq!(ids(s.changes(None, 2, 2).unwrap()), ["3", "4"]);
        assert_eq!(ids(s.changes(None, -1, 2).unwrap()), ["6", "7"]);
        assert_eq!(ids(s.changes(Some("b"), 0, 100).unwrap()), ["2", "4", "6"]);
        assert_eq!(ids(s.changes(Some("b"), 0, -2).unwrap()), ["4", "6"]);
        let json = serde_json::to_value(&all[0]).unwrap();
        assert!(json.get("GUN").is_some() && json.get("SHA256").is_some() && json.get("ID").is_some());
    }
}
