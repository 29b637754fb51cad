//! The trust service the daemon runs: [`crate::server`]'s state machine
//! over [`crate::storage`], with the server-held keys sealed at rest, one
//! lock per GUN for updates, and a cache of each GUN's current timestamp so
//! the hot read (`GET .../timestamp.json`) takes no lock and parses nothing
//! until the timestamp or snapshot is due to be re-signed.
//!
//! **Invariant:** what a read returns was committed to the store first.
//! Re-signed timestamps and snapshots are stored before they are served.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use zeroize::Zeroizing;

use crate::crypto::{decrypt_pkcs8, encrypt_pkcs8, SoftwareSigner};
use crate::keys::{PublicKey, Signer};
use crate::metadata::{RoleName, Signed, Snapshot, Timestamp};
use crate::server::{self, MemoryServerKeys, MetaUpdate, RepoState, ServerError, ServerKeys};
use crate::storage::{Change, KeyRecord, StorageError, TrustStore, Update};

/// Server-held keys: in memory for signing, sealed in the store (PKCS#8
/// encrypted under the daemon's seal secret) so they survive restarts.
struct StoredKeys {
    mem: MemoryServerKeys,
    store: TrustStore,
    seal: Zeroizing<String>,
    /// GUNs whose stored keys are loaded into `mem`.
    loaded: Mutex<std::collections::HashSet<String>>,
}

impl StoredKeys {
    fn load(&self, gun: &str) -> Result<(), ServerError> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if loaded.contains(gun) {
            return Ok(());
        }
        for (role, record) in self.store.server_keys(gun).map_err(keys_error)? {
            let der = base64_decode(&record.private)?;
            let signer = decrypt_pkcs8(&der, &self.seal)
                .map_err(|e| ServerError::Keys(format!("unsealing the {role} key {}: {e}", record.key_id)))?;
            let role = RoleName::parse(&role).map_err(|_| ServerError::InvalidRole { role: role.clone() })?;
            self.mem.import(&server::ServerKeyRecord {
                gun: gun.to_string(),
                role,
                key_id: record.key_id.clone(),
                pkcs8_der: signer.to_pkcs8_der(),
            })?;
        }
        loaded.insert(gun.to_string());
        Ok(())
    }
}

fn keys_error(e: StorageError) -> ServerError {
    ServerError::Keys(e.to_string())
}

fn base64_decode(s: &str) -> Result<Vec<u8>, ServerError> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| ServerError::Keys(format!("a stored server key is not base64: {e}")))
}

impl ServerKeys for StoredKeys {
    fn signer(&self, gun: &str, key_id: &str) -> Option<Arc<dyn Signer>> {
        self.mem.signer(gun, key_id)
    }

    fn latest(&self, gun: &str, role: &RoleName) -> Option<Arc<dyn Signer>> {
        self.mem.latest(gun, role)
    }

    fn create(&self, gun: &str, role: &RoleName) -> Result<Arc<dyn Signer>, String> {
        let signer = SoftwareSigner::generate_ecdsa();
        let sealed = encrypt_pkcs8(&signer, &self.seal).map_err(|e| e.to_string())?;
        let public = signer.public_key().clone();
        let record = KeyRecord {
            public: public.to_json().to_string(),
            key_id: public.id(),
            private: {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.encode(sealed)
            },
            created: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        };
        // Stored before it is used: a key the server signs with survives a restart.
        self.store
            .put_server_key(gun, role.as_str(), &record)
            .map_err(|e| e.to_string())?;
        self.mem
            .import(&server::ServerKeyRecord {
                gun: gun.to_string(),
                role: role.clone(),
                key_id: record.key_id.clone(),
                pkcs8_der: signer.to_pkcs8_der(),
            })
            .map_err(|e| e.to_string())?;
        self.mem
            .signer(gun, &record.key_id)
            .ok_or_else(|| "the new key is not available".to_string())
    }
}

/// A cached current timestamp: valid until `until`.
struct CachedTimestamp {
    data: Arc<Vec<u8>>,
    until: DateTime<Utc>,
}

/// The daemon's trust service.
pub struct TrustService {
    store: TrustStore,
    keys: StoredKeys,
    repos: Mutex<HashMap<String, Arc<Mutex<RepoState>>>>,
    timestamps: RwLock<HashMap<String, CachedTimestamp>>,
}

impl std::fmt::Debug for TrustService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustService").finish_non_exhaustive()
    }
}

impl TrustService {
    /// `seal` protects the server-held private keys at rest (the daemon
    /// keeps it in a root-only file).
    pub fn new(store: TrustStore, seal: Zeroizing<String>) -> TrustService {
        TrustService {
            keys: StoredKeys {
                mem: MemoryServerKeys::new(),
                store: store.clone(),
                seal,
                loaded: Mutex::new(Default::default()),
            },
            store,
            repos: Mutex::new(HashMap::new()),
            timestamps: RwLock::new(HashMap::new()),
        }
    }

    pub fn store(&self) -> &TrustStore {
        &self.store
    }

    fn repo(&self, gun: &str) -> Result<Arc<Mutex<RepoState>>, ServerError> {
        let mut repos = self.repos.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = repos.get(gun) {
            return Ok(r.clone());
        }
        self.keys.load(gun)?;
        let stored = self.store.all_versions(gun).map_err(keys_error)?;
        let mut updates = Vec::with_capacity(stored.len());
        for (role, meta) in stored {
            let role = RoleName::parse(&role).map_err(|_| ServerError::InvalidRole { role: role.clone() })?;
            updates.push(MetaUpdate {
                role,
                version: meta.version,
                data: meta.data.into_bytes(),
            });
        }
        let state = Arc::new(Mutex::new(RepoState::from_updates(gun, updates)));
        repos.insert(gun.to_string(), state.clone());
        Ok(state)
    }

    fn commit(&self, gun: &str, state: &mut RepoState, updates: &[MetaUpdate]) -> Result<(), ServerError> {
        if updates.is_empty() {
            return Ok(());
        }
        let rows: Vec<Update> = updates
            .iter()
            .map(|u| Update {
                role: u.role.as_str().to_string(),
                version: u.version,
                data: u.data.clone(),
            })
            .collect();
        self.store.commit(gun, &rows).map_err(|e| match e {
            StorageError::OldVersion { role, version, .. } => ServerError::OldVersion { role, version },
            other => ServerError::Keys(format!("storing the update: {other}")),
        })?;
        state.commit(updates);
        self.forget_timestamp(gun);
        Ok(())
    }

    fn forget_timestamp(&self, gun: &str) {
        self.timestamps.write().unwrap_or_else(|e| e.into_inner()).remove(gun);
    }

    /// `POST /v2/{gun}/_trust/tuf/`: validate and store an update
    /// (`(role file name, bytes)` per multipart part).
    pub fn update(&self, gun: &str, files: Vec<(String, Vec<u8>)>, now: DateTime<Utc>) -> Result<(), ServerError> {
        let repo = self.repo(gun)?;
        let mut state = repo.lock().unwrap_or_else(|e| e.into_inner());
        let updates = server::apply_update(&state, files, now, &self.keys)?;
        self.commit(gun, &mut state, &updates)
    }

    /// `GET /v2/{gun}/_trust/tuf/{name}.json` where `name` is `root`,
    /// `targets/x`, `3.root`, `snapshot.<sha256>`...
    pub fn get(&self, gun: &str, name: &str, now: DateTime<Utc>) -> Result<Arc<Vec<u8>>, ServerError> {
        match name {
            "timestamp" => return self.timestamp(gun, now),
            "snapshot" => {
                let repo = self.repo(gun)?;
                let mut state = repo.lock().unwrap_or_else(|e| e.into_inner());
                let (data, updates) = server::current_snapshot(&state, now, &self.keys)?;
                self.commit(gun, &mut state, &updates)?;
                return Ok(Arc::new(data));
            }
            _ => {}
        }
        let repo = self.repo(gun)?;
        let state = repo.lock().unwrap_or_else(|e| e.into_inner());
        Ok(Arc::new(server::get_metadata(&state, name)?.to_vec()))
    }

    fn timestamp(&self, gun: &str, now: DateTime<Utc>) -> Result<Arc<Vec<u8>>, ServerError> {
        if let Some(hit) = self.timestamps.read().unwrap_or_else(|e| e.into_inner()).get(gun) {
            if now < hit.until {
                return Ok(hit.data.clone());
            }
        }
        let repo = self.repo(gun)?;
        let mut state = repo.lock().unwrap_or_else(|e| e.into_inner());
        let (data, updates) = server::current_timestamp(&state, now, &self.keys)?;
        self.commit(gun, &mut state, &updates)?;
        let data = Arc::new(data);
        // Cache until the timestamp or the snapshot it lists expires.
        let ts_expiry = Signed::<Timestamp>::from_bytes(&RoleName::Timestamp, &data)
            .ok()
            .map(|t| t.signed().expires);
        let snap_expiry = state
            .current(&RoleName::Snapshot)
            .and_then(|(_, b)| Signed::<Snapshot>::from_bytes(&RoleName::Snapshot, b).ok())
            .map(|s| s.signed().expires);
        if let (Some(t), Some(s)) = (ts_expiry, snap_expiry) {
            self.timestamps.write().unwrap_or_else(|e| e.into_inner()).insert(
                gun.to_string(),
                CachedTimestamp {
                    data: data.clone(),
                    until: t.min(s),
                },
            );
        }
        Ok(data)
    }

    /// `GET .../{timestamp|snapshot}.key`: the server-held public key.
    pub fn get_key(&self, gun: &str, role: &str) -> Result<PublicKey, ServerError> {
        let role = RoleName::parse(role).map_err(|_| ServerError::InvalidRole { role: role.to_string() })?;
        let repo = self.repo(gun)?;
        let state = repo.lock().unwrap_or_else(|e| e.into_inner());
        server::get_or_create_key(&state, &role, &self.keys)
    }

    /// `POST .../{timestamp|snapshot}.key`: a new server-held key.
    pub fn rotate_key(&self, gun: &str, role: &str) -> Result<PublicKey, ServerError> {
        let role = RoleName::parse(role).map_err(|_| ServerError::InvalidRole { role: role.to_string() })?;
        let repo = self.repo(gun)?;
        let state = repo.lock().unwrap_or_else(|e| e.into_inner());
        server::rotate_key(&state, &role, &self.keys)
    }

    /// `DELETE /v2/{gun}/_trust/tuf/`: all of the GUN's metadata.
    pub fn delete(&self, gun: &str) -> Result<(), ServerError> {
        let repo = self.repo(gun)?;
        let mut state = repo.lock().unwrap_or_else(|e| e.into_inner());
        self.store.delete(gun).map_err(keys_error)?;
        *state = RepoState::new(gun);
        self.forget_timestamp(gun);
        Ok(())
    }

    /// The changefeed (see [`TrustStore::changes`]).
    pub fn changes(&self, gun: Option<&str>, change_id: i64, records: i64) -> Result<Vec<Change>, ServerError> {
        self.store.changes(gun, change_id, records).map_err(keys_error)
    }
}
