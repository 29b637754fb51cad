//! The client side of content trust: update a GUN's trusted metadata from a
//! server (root → timestamp → snapshot → targets → delegations, as the TUF
//! client workflow says) and resolve a tag to the hashes and length it must
//! have.
//!
//! Attacks and what stops them: rollback (a version lower than the cached
//! one, [`VerifyError::Rollback`]); freeze (expired root, timestamp,
//! snapshot or targets, [`VerifyError::Expired`]); mix-and-match (a file not
//! matching the hashes and length its parent lists,
//! [`VerifyError::MetaMismatch`]); wrong key and threshold
//! ([`VerifyError::WrongKey`], [`VerifyError::BadSignature`],
//! [`VerifyError::ThresholdNotMet`]); a rotated root not signed by the old
//! one ([`VerifyError::RootRotation`]); endless data (every fetch capped,
//! [`ClientError::TooLarge`]); a target whose bytes differ
//! ([`ClientError::TargetMismatch`]). The root is trusted on first use per
//! GUN unless pinned ([`TrustPinning`]).
//!
//! **Architecture Invariant:** no network and no clock here: the caller
//! passes a fetch function and the time. The cache directory is the only
//! IO, and nothing is written to it until a whole update has verified.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::metadata::{FileMeta, Metadata, RoleName, Root, Signed, Snapshot, Targets, Timestamp};
use crate::repo::{self, RoleKeys, TrustPinning, VerifyError};

/// Largest root.json fetched.
pub const MAX_ROOT_SIZE: u64 = 512 * 1024;
/// Largest timestamp.json fetched.
pub const MAX_TIMESTAMP_SIZE: u64 = 16 * 1024;
/// Cap for metadata whose length nothing lists.
pub const DEFAULT_MAX_SIZE: u64 = 10 * 1024 * 1024;
/// Most root versions followed in one update.
pub const MAX_ROOT_ROTATIONS: u64 = 1024;

/// What a fetch can report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The server does not have the file (HTTP 404).
    NotFound,
    /// Anything else (network, server error).
    Other(String),
}

/// Why an update or a lookup failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// Check failed on downloaded (or cached) metadata.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The server has no root.json for the GUN.
    #[error("no trust data for {gun}")]
    RepositoryNotFound { gun: String },
    #[error("fetching {name}: not found")]
    NotFound { name: String },
    #[error("fetching {name}: {reason}")]
    Fetch { name: String, reason: String },
    /// Endless-data attack: more bytes than the cap for the file.
    #[error("{name} is larger than {limit} bytes")]
    TooLarge { name: String, limit: u64 },
    #[error("trust cache {path}: {reason}")]
    Cache { path: PathBuf, reason: String },
    #[error("no trust data for target {name:?}")]
    TargetNotFound { name: String },
    /// Fewer of the required signers signed the target than required.
    #[error("target {name:?} is signed by {found:?}, need {threshold} of {required:?}")]
    SignersThresholdNotMet {
        name: String,
        required: Vec<String>,
        found: Vec<String>,
        threshold: usize,
    },
    /// Required signers signed different contents for the same target.
    #[error("signers disagree about target {name:?}")]
    SignersDisagree { name: String },
    /// The fetched content does not match the signed target.
    #[error("content of target {name:?} does not match its trust data: {reason}")]
    TargetMismatch { name: String, reason: String },
}

/// Fetch `name` (like `root.json`, `2.root.json`, `snapshot.<sha256>.json`),
/// reading at most `max_len` bytes.
pub trait Fetcher {
    fn fetch(&self, name: &str, max_len: u64) -> Result<Vec<u8>, FetchError>;
}

impl<F: Fn(&str, u64) -> Result<Vec<u8>, FetchError>> Fetcher for F {
    fn fetch(&self, name: &str, max_len: u64) -> Result<Vec<u8>, FetchError> {
        self(name, max_len)
    }
}

fn fetch_capped(fetcher: &dyn Fetcher, name: &str, limit: u64) -> Result<Vec<u8>, ClientError> {
    let bytes = fetcher.fetch(name, limit).map_err(|e| match e {
        FetchError::NotFound => ClientError::NotFound { name: name.to_string() },
        FetchError::Other(reason) => ClientError::Fetch {
            name: name.to_string(),
            reason,
        },
    })?;
    if bytes.len() as u64 > limit {
        return Err(ClientError::TooLarge {
            name: name.to_string(),
            limit,
        });
    }
    Ok(bytes)
}

/// Metadata of one GUN, verified.
#[derive(Debug, Clone)]
pub struct TrustedRepo {
    gun: String,
    root: Signed<Root>,
    timestamp: Signed<Timestamp>,
    snapshot: Signed<Snapshot>,
    targets: BTreeMap<RoleName, (Signed<Targets>, RoleKeys)>,
    /// Delegations that failed signature or expiry checks (skipped, as
    /// Notary skips them).
    invalid: BTreeMap<RoleName, VerifyError>,
    files: BTreeMap<RoleName, Vec<u8>>,
}

/// A resolved target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedTarget {
    pub name: String,
    pub meta: FileMeta,
    /// The roles that list it with these hashes.
    pub roles: Vec<RoleName>,
}

/// "Signed by at least `threshold` of these roles" (delegations named
/// after signers, like `targets/alice`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerRequirement {
    pub roles: Vec<RoleName>,
    pub threshold: usize,
}

struct Cache {
    dir: PathBuf,
}

impl Cache {
    fn path(&self, role: &RoleName) -> PathBuf {
        // Delegations live in subdirectories: targets/releases.json.
        self.dir.join(format!("{}.json", role.as_str()))
    }

    fn read(&self, role: &RoleName) -> Result<Option<Vec<u8>>, ClientError> {
        let path = self.path(role);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ClientError::Cache {
                path,
                reason: e.to_string(),
            }),
        }
    }

    fn version<T: Metadata>(&self, role: &RoleName) -> Result<u64, ClientError> {
        match self.read(role)? {
            None => Ok(0),
            Some(bytes) => Signed::<T>::from_bytes(role, &bytes)
                .map(|s| s.signed().version())
                .map_err(|e| ClientError::Cache {
                    path: self.path(role),
                    reason: e.to_string(),
                }),
        }
    }

    fn write(&self, role: &RoleName, bytes: &[u8]) -> Result<(), ClientError> {
        let path = self.path(role);
        let err = |e: std::io::Error| ClientError::Cache {
            path: path.clone(),
            reason: e.to_string(),
        };
        let parent = path.parent().unwrap_or(&self.dir);
        fs::create_dir_all(parent).map_err(err)?;
        let tmp = path.with_extension("json.tmp");
        let mut file = fs::File::create(&tmp).map_err(err)?;
        file.write_all(bytes).map_err(err)?;
        file.sync_all().map_err(err)?;
        fs::rename(&tmp, &path).map_err(err)
    }

    fn remove(&self, role: &RoleName) -> Result<(), ClientError> {
        let path = self.path(role);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ClientError::Cache {
                path,
                reason: e.to_string(),
            }),
        }
    }
}

/// Update the trusted metadata of `gun` kept in `cache_dir` (one directory
/// per GUN) from `fetcher`, at time `now`.
pub fn update(
    gun: &str,
    cache_dir: &Path,
    pinning: &TrustPinning,
    now: DateTime<Utc>,
    fetcher: &dyn Fetcher,
) -> Result<TrustedRepo, ClientError> {
    let cache = Cache {
        dir: cache_dir.to_path_buf(),
    };
    let mut to_write: Vec<(RoleName, Vec<u8>)> = Vec::new();

    // 1. Root: the cached one, or trust on first use (subject to pinning).
    let (mut root, mut root_bytes) = match cache.read(&RoleName::Root)? {
        Some(bytes) => {
            let signed = Signed::<Root>::from_bytes(&RoleName::Root, &bytes).map_err(|e| ClientError::Cache {
                path: cache.path(&RoleName::Root),
                reason: e.to_string(),
            })?;
            repo::validate_root(None, &signed, gun, None, &TrustPinning::default()).map_err(|e| {
                ClientError::Cache {
                    path: cache.path(&RoleName::Root),
                    reason: e.to_string(),
                }
            })?;
            (signed, bytes)
        }
        None => {
            let bytes = match fetch_capped(fetcher, "root.json", MAX_ROOT_SIZE) {
                Err(ClientError::NotFound { .. }) => {
                    return Err(ClientError::RepositoryNotFound { gun: gun.to_string() })
                }
                other => other?,
            };
            let signed = Signed::<Root>::from_bytes(&RoleName::Root, &bytes).map_err(VerifyError::from)?;
            repo::validate_root(None, &signed, gun, Some(now), pinning)?;
            to_write.push((RoleName::Root, bytes.clone()));
            (signed, bytes)
        }
    };

    // 2. Follow the chain of new roots, each signed by the previous one.
    let first_root = root.signed().clone();
    for _ in 0..MAX_ROOT_ROTATIONS {
        let next = root.signed().version + 1;
        let name = format!("{next}.root.json");
        let bytes = match fetch_capped(fetcher, &name, MAX_ROOT_SIZE) {
            Ok(bytes) => bytes,
            Err(ClientError::NotFound { .. }) => break,
            Err(e) => return Err(e),
        };
        let signed = Signed::<Root>::from_bytes(&RoleName::Root, &bytes).map_err(VerifyError::from)?;
        if signed.signed().version != next {
            return Err(VerifyError::RootVersion {
                expected: next,
                found: signed.signed().version,
            }
            .into());
        }
        repo::validate_root(Some(&root), &signed, gun, None, pinning)?;
        root = signed;
        root_bytes = bytes;
        to_write.retain(|(r, _)| *r != RoleName::Root);
        to_write.push((RoleName::Root, root_bytes.clone()));
    }
    // The trusted root's certificates must be valid now (a cached root is
    // not re-checked on load, and roots along the chain only for signatures).
    repo::validate_root(None, &root, gun, Some(now), &TrustPinning::default())?;
    repo::check_expiry(&RoleName::Root, root.signed(), now)?;

    // A rotated timestamp or snapshot key voids the versions trusted so far
    // (they could never be replaced otherwise).
    let mut trusted_timestamp = cache.version::<Timestamp>(&RoleName::Timestamp)?;
    let mut trusted_snapshot = cache.version::<Snapshot>(&RoleName::Snapshot)?;
    if first_root.roles.get("timestamp") != root.signed().roles.get("timestamp") {
        trusted_timestamp = 0;
    }
    if first_root.roles.get("snapshot") != root.signed().roles.get("snapshot") {
        trusted_snapshot = 0;
    }

    // 3. Timestamp.
    let timestamp_bytes = fetch_capped(fetcher, "timestamp.json", MAX_TIMESTAMP_SIZE)?;
    let timestamp =
        Signed::<Timestamp>::from_bytes(&RoleName::Timestamp, &timestamp_bytes).map_err(VerifyError::from)?;
    repo::verify_signatures(&timestamp, &repo::root_role_keys(root.signed(), &RoleName::Timestamp)?)?;
    repo::check_timestamp_structure(timestamp.signed())?;
    repo::check_version(&RoleName::Timestamp, timestamp.signed().version, trusted_timestamp)?;
    repo::check_expiry(&RoleName::Timestamp, timestamp.signed(), now)?;

    // 4. Snapshot, as listed by the timestamp.
    let snapshot_meta = timestamp.signed().meta.get("snapshot");
    let snapshot_bytes = fetch_listed(fetcher, &RoleName::Snapshot, snapshot_meta)?;
    repo::check_file_meta("snapshot", "timestamp", &snapshot_bytes, snapshot_meta)?;
    let snapshot = Signed::<Snapshot>::from_bytes(&RoleName::Snapshot, &snapshot_bytes).map_err(VerifyError::from)?;
    repo::verify_signatures(&snapshot, &repo::root_role_keys(root.signed(), &RoleName::Snapshot)?)?;
    repo::check_snapshot_structure(snapshot.signed())?;
    repo::check_version(&RoleName::Snapshot, snapshot.signed().version, trusted_snapshot)?;
    repo::check_expiry(&RoleName::Snapshot, snapshot.signed(), now)?;
    repo::check_file_meta("root", "snapshot", &root_bytes, snapshot.signed().meta.get("root"))?;

    // 5. Targets, as listed by the snapshot.
    let targets_meta = snapshot.signed().meta.get("targets");
    let targets_bytes = fetch_listed(fetcher, &RoleName::Targets, targets_meta)?;
    repo::check_file_meta("targets", "snapshot", &targets_bytes, targets_meta)?;
    let targets = Signed::<Targets>::from_bytes(&RoleName::Targets, &targets_bytes).map_err(VerifyError::from)?;
    let targets_keys = repo::root_role_keys(root.signed(), &RoleName::Targets)?;
    repo::verify_signatures(&targets, &targets_keys)?;
    repo::check_targets_structure(&RoleName::Targets, targets.signed())?;
    repo::check_version(
        &RoleName::Targets,
        targets.signed().version,
        cache.version::<Targets>(&RoleName::Targets)?,
    )?;
    repo::check_expiry(&RoleName::Targets, targets.signed(), now)?;

    let mut repo_out = TrustedRepo {
        gun: gun.to_string(),
        root,
        timestamp,
        snapshot,
        targets: BTreeMap::new(),
        invalid: BTreeMap::new(),
        files: BTreeMap::new(),
    };
    repo_out.files.insert(RoleName::Root, root_bytes);
    repo_out.files.insert(RoleName::Targets, targets_bytes.clone());
    repo_out.targets.insert(RoleName::Targets, (targets, targets_keys));

    // 6. Delegations, depth first in listed order.
    let mut pending: Vec<RoleName> = children(&repo_out, &RoleName::Targets);
    pending.reverse();
    while let Some(role) = pending.pop() {
        let Some(meta) = repo_out.snapshot.signed().meta.get(role.as_str()).cloned() else {
            continue;
        };
        let parent = role.parent().unwrap_or(RoleName::Targets);
        let Some((parent_meta, parent_keys)) = repo_out.targets.get(&parent) else {
            continue;
        };
        let keys = match repo::delegation_role_keys(parent_meta.signed(), parent_keys, &role) {
            Ok(keys) => keys,
            Err(e) => {
                repo_out.invalid.insert(role, e);
                continue;
            }
        };
        let bytes = fetch_listed(fetcher, &role, Some(&meta))?;
        repo::check_file_meta(role.as_str(), "snapshot", &bytes, Some(&meta))?;
        let signed = Signed::<Targets>::from_bytes(&role, &bytes).map_err(VerifyError::from)?;
        repo::check_targets_structure(&role, signed.signed())?;
        repo::check_version(&role, signed.signed().version, cache.version::<Targets>(&role)?)?;
        let checked =
            repo::verify_signatures(&signed, &keys).and_then(|()| repo::check_expiry(&role, signed.signed(), now));
        if let Err(e) = checked {
            tracing::warn!(gun, role = %role, error = %e, "skipping delegation that failed verification");
            repo_out.invalid.insert(role, e);
            continue;
        }
        repo_out.files.insert(role.clone(), bytes);
        repo_out.targets.insert(role.clone(), (signed, keys));
        let mut kids = children(&repo_out, &role);
        kids.reverse();
        pending.extend(kids);
    }

    // 7. Everything verified: update the cache.
    for (role, bytes) in &to_write {
        cache.write(role, bytes)?;
    }
    cache.write(&RoleName::Timestamp, &timestamp_bytes)?;
    cache.write(&RoleName::Snapshot, &snapshot_bytes)?;
    for (role, bytes) in &repo_out.files {
        if role.is_targets_like() {
            cache.write(role, bytes)?;
        }
    }
    for role in repo_out.invalid.keys() {
        cache.remove(role)?;
    }
    Ok(repo_out)
}

fn children(repo: &TrustedRepo, role: &RoleName) -> Vec<RoleName> {
    repo.targets
        .get(role)
        .map(|(t, _)| {
            t.signed()
                .delegations
                .roles
                .iter()
                .filter_map(|r| RoleName::parse(&r.name).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Fetch a role's file by its consistent name (`role.<sha256>.json`) when
/// the parent lists a hash, capped at the listed length.
fn fetch_listed(fetcher: &dyn Fetcher, role: &RoleName, meta: Option<&FileMeta>) -> Result<Vec<u8>, ClientError> {
    let (name, limit) = match meta {
        Some(meta) => {
            let name = match meta.sha256_hex() {
                Some(hash) => format!("{role}.{hash}.json"),
                None => format!("{role}.json"),
            };
            let limit = if meta.length > 0 {
                meta.length as u64
            } else {
                DEFAULT_MAX_SIZE
            };
            (name, limit)
        }
        None => (format!("{role}.json"), DEFAULT_MAX_SIZE),
    };
    fetch_capped(fetcher, &name, limit)
}

impl TrustedRepo {
    pub fn gun(&self) -> &str {
        &self.gun
    }

    pub fn root(&self) -> &Signed<Root> {
        &self.root
    }

    pub fn timestamp(&self) -> &Signed<Timestamp> {
        &self.timestamp
    }

    pub fn snapshot(&self) -> &Signed<Snapshot> {
        &self.snapshot
    }

    /// A verified targets role.
    pub fn targets(&self, role: &RoleName) -> Option<&Signed<Targets>> {
        self.targets.get(role).map(|(t, _)| t)
    }

    /// Every verified targets role, with its keys.
    pub fn roles(&self) -> impl Iterator<Item = (&RoleName, &RoleKeys)> {
        self.targets.iter().map(|(r, (_, k))| (r, k))
    }

    /// Delegations skipped because their signatures or expiry failed.
    pub fn invalid_roles(&self) -> &BTreeMap<RoleName, VerifyError> {
        &self.invalid
    }

    /// The files as served (root and every verified targets role), for
    /// [`crate::builder::RepoEditor::from_published`].
    pub fn files(&self) -> &BTreeMap<RoleName, Vec<u8>> {
        &self.files
    }

    /// Every target in a valid role and within the role's paths.
    pub fn list_targets(&self) -> Vec<(RoleName, String, FileMeta)> {
        let mut out = Vec::new();
        for (role, (targets, keys)) in &self.targets {
            for (name, meta) in &targets.signed().targets {
                if keys.allows_target(name) {
                    out.push((role.clone(), name.clone(), meta.clone()));
                }
            }
        }
        out
    }

    fn lookup(&self, role: &RoleName, name: &str) -> Option<&FileMeta> {
        let (targets, keys) = self.targets.get(role)?;
        if !keys.allows_target(name) {
            return None;
        }
        targets.signed().targets.get(name)
    }

    /// Resolve target `name`. Without a requirement: `targets/releases`
    /// first (as docker's content trust), then `targets` and its
    /// delegations depth first. With one: at least `threshold` of the named
    /// roles must list the target, all with the same hashes and length.
    pub fn resolve_target(
        &self,
        name: &str,
        required: Option<&SignerRequirement>,
    ) -> Result<ResolvedTarget, ClientError> {
        let Some(required) = required else {
            let releases = RoleName::Delegation("targets/releases".into());
            let mut order = vec![releases.clone()];
            let mut stack = vec![RoleName::Targets];
            while let Some(role) = stack.pop() {
                if role != releases {
                    order.push(role.clone());
                }
                let mut kids = children(self, &role);
                kids.reverse();
                stack.extend(kids);
            }
            for role in order {
                if let Some(meta) = self.lookup(&role, name) {
                    return Ok(ResolvedTarget {
                        name: name.to_string(),
                        meta: meta.clone(),
                        roles: vec![role],
                    });
                }
            }
            return Err(ClientError::TargetNotFound { name: name.to_string() });
        };
        let mut found: Vec<(RoleName, &FileMeta)> = Vec::new();
        for role in &required.roles {
            if let Some(meta) = self.lookup(role, name) {
                found.push((role.clone(), meta));
            }
        }
        if found.len() < required.threshold.max(1) {
            return Err(ClientError::SignersThresholdNotMet {
                name: name.to_string(),
                required: required.roles.iter().map(ToString::to_string).collect(),
                found: found.iter().map(|(r, _)| r.to_string()).collect(),
                threshold: required.threshold.max(1),
            });
        }
        let first = found[0].1;
        if found.iter().any(|(_, m)| !m.same_as(first)) {
            return Err(ClientError::SignersDisagree { name: name.to_string() });
        }
        Ok(ResolvedTarget {
            name: name.to_string(),
            meta: first.clone(),
            roles: found.into_iter().map(|(r, _)| r).collect(),
        })
    }
}

/// Check fetched content (e.g. a manifest) against its target: same length
/// and every listed SHA-256/SHA-512 hash.
pub fn check_target_bytes(name: &str, bytes: &[u8], target: &FileMeta) -> Result<(), ClientError> {
    let mismatch = |reason: String| ClientError::TargetMismatch {
        name: name.to_string(),
        reason,
    };
    if target.length != bytes.len() as i64 {
        return Err(mismatch(format!("length {} instead of {}", bytes.len(), target.length)));
    }
    let actual = FileMeta::from_bytes(bytes);
    let mut checked = 0;
    for (alg, expected) in &target.hashes {
        if let Some(computed) = actual.hashes.get(alg) {
            if computed != expected {
                return Err(mismatch(format!("{alg} differs")));
            }
            checked += 1;
        }
    }
    if checked == 0 {
        return Err(mismatch("no sha256 or sha512 hash to check".into()));
    }
    Ok(())
}

/// A GUN as one file name: bytes other than `[a-zA-Z0-9._-]` as `%XX`.
pub fn escape_gun(gun: &str) -> String {
    let mut out = String::with_capacity(gun.len());
    for b in gun.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
