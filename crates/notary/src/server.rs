//! The Notary-compatible server's logic as a pure state machine: validate an
//! update the way notary-server does, generate the snapshot (when the
//! server holds the snapshot key) and the timestamp, serve metadata by role,
//! version or checksum, re-sign an expired timestamp on read, and manage the
//! server-held `timestamp`/`snapshot` keys.
//!
//! **Architecture Invariant:** no IO and no clock. The daemon keeps one
//! [`RepoState`] per GUN, calls [`apply_update`] with the uploaded files and
//! the time, commits the returned [`MetaUpdate`]s to its store and to the
//! state, and renders errors with [`ServerError::to_json_body`]. Server keys
//! live behind [`ServerKeys`], which the daemon implements over its store
//! (or wraps [`MemoryServerKeys`]).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::crypto::SoftwareSigner;
use crate::keys::{PublicKey, Signer};
use crate::metadata::{self, FileMeta, Metadata, RoleName, Root, Signed, Snapshot, Targets, Timestamp};
use crate::repo::{self, RoleKeys, TrustPinning, VerifyError};

/// One stored metadata file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaUpdate {
    pub role: RoleName,
    pub version: u64,
    pub data: Vec<u8>,
}

/// Notary's serializable validation errors (`detail` of `INVALID_UPDATE`).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ValidationError {
    #[error("An error occurred during validation: {0}")]
    Validation(String),
    #[error("Metadata hierarchy is incomplete: {msg}")]
    BadHierarchy { missing: String, msg: String },
    #[error("The root metadata is invalid: {0}")]
    BadRoot(VerifyError),
    #[error("The root metadata is invalid: {0}")]
    BadRootMsg(String),
    #[error("The targets metadata is invalid: {0}")]
    BadTargets(VerifyError),
    #[error("The snapshot metadata is invalid: {0}")]
    BadSnapshot(VerifyError),
}

impl ValidationError {
    /// `{"Name": "ErrBadRoot", "Error": {"Msg": ...}}`, which the notary
    /// client decodes from `detail`.
    pub fn detail(&self) -> Value {
        match self {
            ValidationError::Validation(msg) => json!({"Name": "ErrValidation", "Error": {"Msg": msg}}),
            ValidationError::BadHierarchy { missing, msg } => {
                json!({"Name": "ErrBadHierarchy", "Error": {"Missing": missing, "Msg": msg}})
            }
            ValidationError::BadRoot(e) => json!({"Name": "ErrBadRoot", "Error": {"Msg": e.to_string()}}),
            ValidationError::BadRootMsg(msg) => json!({"Name": "ErrBadRoot", "Error": {"Msg": msg}}),
            ValidationError::BadTargets(e) => json!({"Name": "ErrBadTargets", "Error": {"Msg": e.to_string()}}),
            ValidationError::BadSnapshot(e) => json!({"Name": "ErrBadSnapshot", "Error": {"Msg": e.to_string()}}),
        }
    }
}

/// Errors of the trust server, each mapping to one of notary-server's error
/// codes (`code()`), HTTP status (`http_status()`) and JSON body.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ServerError {
    /// `METADATA_NOT_FOUND` (404).
    #[error("metadata {name} of {gun} not found")]
    MetadataNotFound { gun: String, name: String },
    /// `INVALID_ROLE` (400).
    #[error("invalid role {role:?}")]
    InvalidRole { role: String },
    /// `NO_FILENAME` (400): an upload part without a role file name.
    #[error("upload part has no file name")]
    NoFilename,
    /// `MALFORMED_JSON` (400).
    #[error("{role}: malformed json: {reason}")]
    MalformedJson { role: String, reason: String },
    /// `INVALID_UPDATE` (400), with Notary's serializable detail.
    #[error("invalid update: {0}")]
    InvalidUpdate(ValidationError),
    /// `VERSION` (400): the version is not newer than what is stored.
    #[error("{role}: version {version} is not newer than the stored version")]
    OldVersion { role: String, version: u64 },
    /// `NO_CRYPTOSERVICE`-like failure of the server key store (500).
    #[error("server key store: {0}")]
    Keys(String),
}

impl ServerError {
    /// Notary's error code.
    pub fn code(&self) -> &'static str {
        match self {
            ServerError::MetadataNotFound { .. } => "METADATA_NOT_FOUND",
            ServerError::InvalidRole { .. } => "INVALID_ROLE",
            ServerError::NoFilename => "NO_FILENAME",
            ServerError::MalformedJson { .. } => "MALFORMED_JSON",
            ServerError::InvalidUpdate(_) => "INVALID_UPDATE",
            ServerError::OldVersion { .. } => "VERSION",
            ServerError::Keys(_) => "NO_CRYPTOSERVICE",
        }
    }

    /// Notary's fixed message for the code.
    pub fn message(&self) -> &'static str {
        match self {
            ServerError::MetadataNotFound { .. } => "You have requested metadata that does not exist.",
            ServerError::InvalidRole { .. } => "The role you are attempting to operate on is invalid.",
            ServerError::NoFilename => "No file/role name provided.",
            ServerError::MalformedJson { .. } => "JSON sent by the client could not be parsed by the server",
            ServerError::InvalidUpdate(_) => "Update sent by the client is invalid.",
            ServerError::OldVersion { .. } => "A newer version of metadata is already available.",
            ServerError::Keys(_) => "The server does not have a signing service configured.",
        }
    }

    pub fn http_status(&self) -> u16 {
        match self {
            ServerError::MetadataNotFound { .. } => 404,
            ServerError::Keys(_) => 500,
            _ => 400,
        }
    }

    /// The `detail` the notary client parses: the validation error for
    /// `INVALID_UPDATE`, the role for `INVALID_ROLE`, and `{}` otherwise (as
    /// notary-server writes it).
    pub fn detail(&self) -> Value {
        match self {
            ServerError::InvalidUpdate(v) => v.detail(),
            ServerError::InvalidRole { role } => Value::String(role.clone()),
            _ => json!({}),
        }
    }

    /// `{"errors":[{"code":..,"message":..,"detail":..}]}`.
    pub fn to_json_body(&self) -> Vec<u8> {
        let body = json!({"errors": [{"code": self.code(), "message": self.message(), "detail": self.detail()}]});
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

/// The server-held private keys (`timestamp`, and `snapshot` when the
/// server manages it) of every GUN.
pub trait ServerKeys: Send + Sync {
    /// The signer for `key_id` if the server holds it for `gun`.
    fn signer(&self, gun: &str, key_id: &str) -> Option<Arc<dyn Signer>>;
    /// The most recently created key for `role` of `gun`.
    fn latest(&self, gun: &str, role: &RoleName) -> Option<Arc<dyn Signer>>;
    /// Generate (ECDSA P-256), keep and return a new key for `role`.
    fn create(&self, gun: &str, role: &RoleName) -> Result<Arc<dyn Signer>, String>;
}

/// A server key with its owner, for persistence.
pub struct ServerKeyRecord {
    pub gun: String,
    pub role: RoleName,
    pub key_id: String,
    /// PKCS#8 DER of the private key.
    pub pkcs8_der: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for ServerKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerKeyRecord")
            .field("gun", &self.gun)
            .field("role", &self.role)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// [`ServerKeys`] in memory. The daemon can persist [`MemoryServerKeys::export`]
/// (encrypted) and restore with [`MemoryServerKeys::import`].
#[derive(Default)]
pub struct MemoryServerKeys {
    keys: Mutex<Vec<(String, RoleName, Arc<SoftwareSigner>)>>,
}

impl fmt::Debug for MemoryServerKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.keys.lock().map(|k| k.len()).unwrap_or(0);
        f.debug_struct("MemoryServerKeys").field("keys", &count).finish()
    }
}

impl MemoryServerKeys {
    pub fn new() -> MemoryServerKeys {
        MemoryServerKeys::default()
    }

    /// Every key, for persistence.
    pub fn export(&self) -> Vec<ServerKeyRecord> {
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .map(|(gun, role, signer)| ServerKeyRecord {
                gun: gun.clone(),
                role: role.clone(),
                key_id: signer.key_id(),
                pkcs8_der: signer.to_pkcs8_der(),
            })
            .collect()
    }

    /// Restore a key saved by [`MemoryServerKeys::export`].
    pub fn import(&self, record: &ServerKeyRecord) -> Result<(), ServerError> {
        let signer = SoftwareSigner::from_pkcs8_der(&record.pkcs8_der).map_err(|e| ServerError::Keys(e.to_string()))?;
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.push((record.gun.clone(), record.role.clone(), Arc::new(signer)));
        Ok(())
    }
}

impl ServerKeys for MemoryServerKeys {
    fn signer(&self, gun: &str, key_id: &str) -> Option<Arc<dyn Signer>> {
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .find(|(g, _, s)| g == gun && s.key_id() == key_id)
            .map(|(_, _, s)| s.clone() as Arc<dyn Signer>)
    }

    fn latest(&self, gun: &str, role: &RoleName) -> Option<Arc<dyn Signer>> {
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .rev()
            .find(|(g, r, _)| g == gun && r == role)
            .map(|(_, _, s)| s.clone() as Arc<dyn Signer>)
    }

    fn create(&self, gun: &str, role: &RoleName) -> Result<Arc<dyn Signer>, String> {
        let signer = Arc::new(SoftwareSigner::generate_ecdsa());
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.push((gun.to_string(), role.clone(), signer.clone()));
        Ok(signer)
    }
}

/// Every stored version of every role of one GUN.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoState {
    gun: String,
    versions: BTreeMap<RoleName, BTreeMap<u64, Vec<u8>>>,
}

impl RepoState {
    pub fn new(gun: &str) -> RepoState {
        RepoState {
            gun: gun.to_string(),
            versions: BTreeMap::new(),
        }
    }

    /// Rebuild from stored files (any order).
    pub fn from_updates(gun: &str, updates: impl IntoIterator<Item = MetaUpdate>) -> RepoState {
        let mut state = RepoState::new(gun);
        for u in updates {
            state.versions.entry(u.role).or_default().insert(u.version, u.data);
        }
        state
    }

    pub fn gun(&self) -> &str {
        &self.gun
    }

    /// No metadata at all (the repository was never published or was deleted).
    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }

    /// Add validated updates (from [`apply_update`] and friends).
    pub fn commit(&mut self, updates: &[MetaUpdate]) {
        for u in updates {
            self.versions
                .entry(u.role.clone())
                .or_default()
                .insert(u.version, u.data.clone());
        }
    }

    /// Newest version of `role`.
    pub fn current(&self, role: &RoleName) -> Option<(u64, &[u8])> {
        self.versions
            .get(role)?
            .iter()
            .next_back()
            .map(|(v, d)| (*v, d.as_slice()))
    }

    pub fn version(&self, role: &RoleName, version: u64) -> Option<&[u8]> {
        self.versions.get(role)?.get(&version).map(Vec::as_slice)
    }

    /// The version of `role` whose SHA-256 (64 hex digits) or SHA-512 (128)
    /// is `checksum`.
    pub fn by_checksum(&self, role: &RoleName, checksum: &str) -> Option<&[u8]> {
        use sha2_next::Digest as _;
        let checksum = checksum.to_ascii_lowercase();
        self.versions.get(role)?.values().rev().map(Vec::as_slice).find(|data| {
            let digest = match checksum.len() {
                128 => hex::encode(sha2_next::Sha512::digest(data)),
                _ => hex::encode(sha2_next::Sha256::digest(data)),
            };
            digest == checksum
        })
    }

    /// Every stored file, oldest version first per role.
    pub fn all(&self) -> Vec<MetaUpdate> {
        self.versions
            .iter()
            .flat_map(|(role, versions)| {
                versions.iter().map(|(v, d)| MetaUpdate {
                    role: role.clone(),
                    version: *v,
                    data: d.clone(),
                })
            })
            .collect()
    }

    fn not_found(&self, name: &str) -> ServerError {
        ServerError::MetadataNotFound {
            gun: self.gun.clone(),
            name: name.to_string(),
        }
    }
}

/// Serve `name`, the path after `_trust/tuf/` without `.json`: `root`,
/// `targets/releases`, `3.root`, `snapshot.<sha256 hex>`. For the current
/// timestamp use [`current_timestamp`], which re-signs it when expired.
pub fn get_metadata<'a>(state: &'a RepoState, name: &str) -> Result<&'a [u8], ServerError> {
    let name = name.strip_suffix(".json").unwrap_or(name);
    // `<version>.<role>`
    if let Some((version, role)) = name.split_once('.') {
        if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()) {
            let role = RoleName::parse(role).map_err(|_| ServerError::InvalidRole { role: role.to_string() })?;
            let version: u64 = version.parse().map_err(|_| state.not_found(name))?;
            return state.version(&role, version).ok_or_else(|| state.not_found(name));
        }
    }
    // `<role>.<checksum>`
    if let Some((role, checksum)) = name.rsplit_once('.') {
        if matches!(checksum.len(), 64 | 128) && checksum.bytes().all(|b| b.is_ascii_hexdigit()) {
            let role = RoleName::parse(role).map_err(|_| ServerError::InvalidRole { role: role.to_string() })?;
            return state.by_checksum(&role, checksum).ok_or_else(|| state.not_found(name));
        }
    }
    let role = RoleName::parse(name).map_err(|_| ServerError::InvalidRole { role: name.to_string() })?;
    state
        .current(&role)
        .map(|(_, d)| d)
        .ok_or_else(|| state.not_found(name))
}

fn invalid(e: ValidationError) -> ServerError {
    ServerError::InvalidUpdate(e)
}

fn server_signer(gun: &str, keys: &RoleKeys, server_keys: &dyn ServerKeys) -> Option<Arc<dyn Signer>> {
    keys.keys.keys().find_map(|id| server_keys.signer(gun, id))
}

fn sign_with(signed: &mut Signed<impl Metadata>, signer: &dyn Signer) -> Result<(), ServerError> {
    signed.sign(&[signer]).map_err(|e| ServerError::Keys(e.to_string()))
}

/// Validate an update the way notary-server does and return every file to
/// store: the uploaded ones, plus a generated snapshot (when none was
/// uploaded; needs the server to hold the snapshot key) and a new timestamp.
/// `updates` are `(role name, file)`; a `.json` suffix on the name is
/// accepted.
pub fn apply_update(
    state: &RepoState,
    updates: Vec<(String, Vec<u8>)>,
    now: DateTime<Utc>,
    server_keys: &dyn ServerKeys,
) -> Result<Vec<MetaUpdate>, ServerError> {
    let gun = state.gun();
    let mut uploads: BTreeMap<RoleName, (u64, Vec<u8>)> = BTreeMap::new();
    for (name, data) in updates {
        let name = name.strip_suffix(".json").unwrap_or(&name).to_string();
        if name.is_empty() {
            return Err(ServerError::NoFilename);
        }
        let role = RoleName::parse(&name).map_err(|_| ServerError::InvalidRole { role: name.clone() })?;
        let version = metadata::peek_version(&role, &data).map_err(|e| ServerError::MalformedJson {
            role: name.clone(),
            reason: e.to_string(),
        })?;
        uploads.insert(role, (version, data));
    }

    let mut to_apply = Vec::new();
    // Files whose hashes a snapshot must list: root and the targets roles
    // loaded for this update.
    let mut loaded: BTreeMap<RoleName, Vec<u8>> = BTreeMap::new();

    // The stored root was validated when it was uploaded; its certificate
    // may have expired since, which must not block rotating it.
    let current_root = match state.current(&RoleName::Root) {
        Some((_, bytes)) => {
            let signed = Signed::<Root>::from_bytes(&RoleName::Root, bytes)
                .map_err(|e| invalid(ValidationError::Validation(e.to_string())))?;
            repo::validate_root(None, &signed, gun, None, &TrustPinning::default())
                .map_err(|e| invalid(ValidationError::Validation(e.to_string())))?;
            Some((signed, bytes.to_vec()))
        }
        None => None,
    };

    let (root, root_bytes) = match uploads.get(&RoleName::Root) {
        Some((version, data)) => {
            let current_version = current_root.as_ref().map(|(r, _)| r.signed().version).unwrap_or(1);
            if *version != current_version && *version != current_version + 1 {
                return Err(invalid(ValidationError::BadRootMsg(format!(
                    "Root modifications must increment the version. Current {current_version}, new {version}"
                ))));
            }
            let new = Signed::<Root>::from_bytes(&RoleName::Root, data)
                .map_err(|e| invalid(ValidationError::BadRoot(e.into())))?;
            repo::validate_root(
                current_root.as_ref().map(|(r, _)| r),
                &new,
                gun,
                Some(now),
                &TrustPinning::default(),
            )
            .map_err(|e| invalid(ValidationError::BadRoot(e)))?;
            repo::check_expiry(&RoleName::Root, new.signed(), now).map_err(|e| invalid(ValidationError::BadRoot(e)))?;
            to_apply.push(MetaUpdate {
                role: RoleName::Root,
                version: *version,
                data: data.clone(),
            });
            (new, data.clone())
        }
        None => match current_root {
            Some(current) => current,
            None => {
                return Err(invalid(ValidationError::Validation(
                    "no pre-existing root and no root provided in update.".into(),
                )))
            }
        },
    };
    loaded.insert(RoleName::Root, root_bytes);

    // Targets and delegations, parents before children.
    let mut targets_roles: Vec<RoleName> = uploads.keys().filter(|r| r.is_targets_like()).cloned().collect();
    targets_roles.sort_by(|a, b| a.depth().cmp(&b.depth()).then_with(|| a.cmp(b)));
    let mut loaded_targets: BTreeMap<RoleName, (Targets, RoleKeys)> = BTreeMap::new();
    for role in targets_roles {
        let mut ancestors = Vec::new();
        let mut parent = role.parent();
        while let Some(p) = parent {
            if !loaded_targets.contains_key(&p) {
                ancestors.push(p.clone());
            }
            parent = p.parent();
        }
        for ancestor in ancestors.iter().rev() {
            let Some((_, bytes)) = state.current(ancestor) else {
                continue;
            };
            let (meta, keys) = load_targets(ancestor, bytes, root.signed(), &loaded_targets, None)
                .map_err(|e| invalid(ValidationError::BadTargets(e)))?;
            loaded.insert(ancestor.clone(), bytes.to_vec());
            loaded_targets.insert(ancestor.clone(), (meta, keys));
        }
        let (version, data) = &uploads[&role];
        let (meta, keys) = load_targets(&role, data, root.signed(), &loaded_targets, Some(now))
            .map_err(|e| invalid(ValidationError::BadTargets(e)))?;
        loaded.insert(role.clone(), data.clone());
        loaded_targets.insert(role.clone(), (meta, keys));
        to_apply.push(MetaUpdate {
            role,
            version: *version,
            data: data.clone(),
        });
    }

    let snapshot_keys =
        repo::root_role_keys(root.signed(), &RoleName::Snapshot).map_err(|e| invalid(ValidationError::BadRoot(e)))?;
    let snapshot_bytes = match uploads.get(&RoleName::Snapshot) {
        Some((version, data)) => {
            let bad = |e: VerifyError| invalid(ValidationError::BadSnapshot(e));
            let signed = Signed::<Snapshot>::from_bytes(&RoleName::Snapshot, data).map_err(|e| bad(e.into()))?;
            repo::verify_signatures(&signed, &snapshot_keys).map_err(bad)?;
            repo::check_snapshot_structure(signed.signed()).map_err(bad)?;
            repo::check_expiry(&RoleName::Snapshot, signed.signed(), now).map_err(bad)?;
            for (role, bytes) in &loaded {
                repo::check_file_meta(
                    role.as_str(),
                    "snapshot",
                    bytes,
                    signed.signed().meta.get(role.as_str()),
                )
                .map_err(bad)?;
            }
            to_apply.push(MetaUpdate {
                role: RoleName::Snapshot,
                version: *version,
                data: data.clone(),
            });
            data.clone()
        }
        None => {
            let update = generate_snapshot(state, &snapshot_keys, &loaded, now, server_keys)?;
            let data = update.data.clone();
            to_apply.push(update);
            data
        }
    };

    let timestamp_keys =
        repo::root_role_keys(root.signed(), &RoleName::Timestamp).map_err(|e| invalid(ValidationError::BadRoot(e)))?;
    to_apply.push(generate_timestamp(
        state,
        &timestamp_keys,
        &snapshot_bytes,
        now,
        server_keys,
    )?);

    for update in &to_apply {
        if let Some((stored, _)) = state.current(&update.role) {
            if stored >= update.version {
                return Err(ServerError::OldVersion {
                    role: update.role.to_string(),
                    version: update.version,
                });
            }
        }
    }
    Ok(to_apply)
}

/// Parse and check one targets file against its keys. `now` is `None` for
/// stored files (which may have expired since).
fn load_targets(
    role: &RoleName,
    bytes: &[u8],
    root: &Root,
    loaded: &BTreeMap<RoleName, (Targets, RoleKeys)>,
    now: Option<DateTime<Utc>>,
) -> Result<(Targets, RoleKeys), VerifyError> {
    let keys = match role.parent() {
        None => repo::root_role_keys(root, role)?,
        Some(parent) => {
            let (parent_meta, parent_keys) = loaded
                .get(&parent)
                .ok_or_else(|| VerifyError::UnknownDelegation { role: role.to_string() })?;
            repo::delegation_role_keys(parent_meta, parent_keys, role)?
        }
    };
    let signed = Signed::<Targets>::from_bytes(role, bytes)?;
    repo::check_targets_structure(role, signed.signed())?;
    repo::verify_signatures(&signed, &keys)?;
    if let Some(now) = now {
        repo::check_expiry(role, signed.signed(), now)?;
        repo::check_target_paths(signed.signed(), &keys)?;
    }
    Ok((signed.into_signed(), keys))
}

fn generate_snapshot(
    state: &RepoState,
    keys: &RoleKeys,
    loaded: &BTreeMap<RoleName, Vec<u8>>,
    now: DateTime<Utc>,
    server_keys: &dyn ServerKeys,
) -> Result<MetaUpdate, ServerError> {
    let Some(signer) = server_signer(state.gun(), keys, server_keys).filter(|_| keys.threshold <= 1) else {
        return Err(invalid(ValidationError::BadHierarchy {
            missing: "snapshot".into(),
            msg: "no snapshot was included in update and server does not hold current snapshot key for repository"
                .into(),
        }));
    };
    let mut snapshot = match state.current(&RoleName::Snapshot) {
        Some((_, bytes)) => Signed::<Snapshot>::from_bytes(&RoleName::Snapshot, bytes)
            .map_err(|e| invalid(ValidationError::Validation(e.to_string())))?
            .into_signed(),
        None => {
            if !loaded.contains_key(&RoleName::Targets) && state.current(&RoleName::Targets).is_none() {
                return Err(invalid(ValidationError::Validation(
                    "targets must be loaded first".into(),
                )));
            }
            Snapshot::new(now)
        }
    };
    for (role, bytes) in loaded {
        snapshot.meta.insert(role.to_string(), FileMeta::from_bytes(bytes));
    }
    if !snapshot.meta.contains_key("targets") {
        if let Some((_, bytes)) = state.current(&RoleName::Targets) {
            snapshot.meta.insert("targets".into(), FileMeta::from_bytes(bytes));
        }
    }
    snapshot.version += 1;
    snapshot.expires = now + RoleName::Snapshot.default_expiry();
    let mut signed = Signed::new(snapshot).map_err(|e| invalid(ValidationError::Validation(e.to_string())))?;
    sign_with(&mut signed, signer.as_ref())?;
    Ok(MetaUpdate {
        role: RoleName::Snapshot,
        version: signed.signed().version,
        data: signed.to_bytes(),
    })
}

fn generate_timestamp(
    state: &RepoState,
    keys: &RoleKeys,
    snapshot: &[u8],
    now: DateTime<Utc>,
    server_keys: &dyn ServerKeys,
) -> Result<MetaUpdate, ServerError> {
    let Some(signer) = server_signer(state.gun(), keys, server_keys).filter(|_| keys.threshold <= 1) else {
        return Err(invalid(ValidationError::BadRootMsg(
            "no timestamp keys exist on the server".into(),
        )));
    };
    let mut timestamp = match state.current(&RoleName::Timestamp) {
        Some((_, bytes)) => Signed::<Timestamp>::from_bytes(&RoleName::Timestamp, bytes)
            .map_err(|e| invalid(ValidationError::Validation(e.to_string())))?
            .into_signed(),
        None => Timestamp::new(now),
    };
    timestamp.meta.insert("snapshot".into(), FileMeta::from_bytes(snapshot));
    timestamp.version += 1;
    timestamp.expires = now + RoleName::Timestamp.default_expiry();
    let mut signed = Signed::new(timestamp).map_err(|e| invalid(ValidationError::Validation(e.to_string())))?;
    sign_with(&mut signed, signer.as_ref())?;
    Ok(MetaUpdate {
        role: RoleName::Timestamp,
        version: signed.signed().version,
        data: signed.to_bytes(),
    })
}

fn stored_root(state: &RepoState) -> Result<Option<Root>, ServerError> {
    match state.current(&RoleName::Root) {
        None => Ok(None),
        Some((_, bytes)) => Signed::<Root>::from_bytes(&RoleName::Root, bytes)
            .map(|s| Some(s.into_signed()))
            .map_err(|e| ServerError::InvalidUpdate(ValidationError::Validation(e.to_string()))),
    }
}

/// The current snapshot; when it has expired and the server holds the
/// snapshot key, a re-signed one (same contents, next version) and the
/// update to commit.
pub fn current_snapshot(
    state: &RepoState,
    now: DateTime<Utc>,
    server_keys: &dyn ServerKeys,
) -> Result<(Vec<u8>, Vec<MetaUpdate>), ServerError> {
    let (_, bytes) = state
        .current(&RoleName::Snapshot)
        .ok_or_else(|| state.not_found("snapshot"))?;
    let signed = Signed::<Snapshot>::from_bytes(&RoleName::Snapshot, bytes)
        .map_err(|e| invalid(ValidationError::Validation(e.to_string())))?;
    if signed.signed().expires >= now {
        return Ok((bytes.to_vec(), Vec::new()));
    }
    let Some(root) = stored_root(state)? else {
        return Ok((bytes.to_vec(), Vec::new()));
    };
    let keys = repo::root_role_keys(&root, &RoleName::Snapshot).map_err(|e| invalid(ValidationError::BadRoot(e)))?;
    let Some(signer) = server_signer(state.gun(), &keys, server_keys) else {
        return Ok((bytes.to_vec(), Vec::new()));
    };
    let mut snapshot = signed.into_signed();
    snapshot.version += 1;
    snapshot.expires = now + RoleName::Snapshot.default_expiry();
    let mut signed = Signed::new(snapshot).map_err(|e| invalid(ValidationError::Validation(e.to_string())))?;
    sign_with(&mut signed, signer.as_ref())?;
    let data = signed.to_bytes();
    Ok((
        data.clone(),
        vec![MetaUpdate {
            role: RoleName::Snapshot,
            version: signed.signed().version,
            data,
        }],
    ))
}

/// The current timestamp, re-signed (next version, new expiry) when it has
/// expired or no longer matches the current snapshot. Returns the file and
/// the updates to commit (none when nothing changed).
pub fn current_timestamp(
    state: &RepoState,
    now: DateTime<Utc>,
    server_keys: &dyn ServerKeys,
) -> Result<(Vec<u8>, Vec<MetaUpdate>), ServerError> {
    let (_, bytes) = state
        .current(&RoleName::Timestamp)
        .ok_or_else(|| state.not_found("timestamp"))?;
    let signed = Signed::<Timestamp>::from_bytes(&RoleName::Timestamp, bytes)
        .map_err(|e| invalid(ValidationError::Validation(e.to_string())))?;
    let (snapshot, mut updates) = current_snapshot(state, now, server_keys)?;
    let matches =
        repo::check_file_meta("snapshot", "timestamp", &snapshot, signed.signed().meta.get("snapshot")).is_ok();
    if signed.signed().expires >= now && matches {
        return Ok((bytes.to_vec(), updates));
    }
    let root = stored_root(state)?.ok_or_else(|| state.not_found("root"))?;
    let keys = repo::root_role_keys(&root, &RoleName::Timestamp).map_err(|e| invalid(ValidationError::BadRoot(e)))?;
    tracing::debug!(
        gun = state.gun(),
        version = signed.signed().version,
        "re-signing timestamp"
    );
    let update = generate_timestamp(state, &keys, &snapshot, now, server_keys)?;
    let data = update.data.clone();
    updates.push(update);
    Ok((data, updates))
}

/// The public key of `gun`'s server-held `timestamp` or `snapshot` key
/// (`GET .../timestamp.key`): the key root.json lists if the server holds
/// it, else the newest one created, else a new one.
pub fn get_or_create_key(
    state: &RepoState,
    role: &RoleName,
    server_keys: &dyn ServerKeys,
) -> Result<PublicKey, ServerError> {
    if !matches!(role, RoleName::Timestamp | RoleName::Snapshot) {
        return Err(ServerError::InvalidRole { role: role.to_string() });
    }
    if let Some(root) = stored_root(state)? {
        if let Ok(keys) = repo::root_role_keys(&root, role) {
            if let Some(signer) = server_signer(state.gun(), &keys, server_keys) {
                return Ok(signer.public_key().clone());
            }
        }
    }
    if let Some(signer) = server_keys.latest(state.gun(), role) {
        return Ok(signer.public_key().clone());
    }
    let signer = server_keys.create(state.gun(), role).map_err(ServerError::Keys)?;
    Ok(signer.public_key().clone())
}

/// A new key for `role` (`POST .../timestamp.key`); it takes effect when
/// the client publishes a root listing it.
pub fn rotate_key(state: &RepoState, role: &RoleName, server_keys: &dyn ServerKeys) -> Result<PublicKey, ServerError> {
    if !matches!(role, RoleName::Timestamp | RoleName::Snapshot) {
        return Err(ServerError::InvalidRole { role: role.to_string() });
    }
    let signer = server_keys.create(state.gun(), role).map_err(ServerError::Keys)?;
    Ok(signer.public_key().clone())
}
