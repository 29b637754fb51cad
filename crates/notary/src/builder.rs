//! Building and signing a repository's metadata on the client: a new
//! repository, targets and delegations, key rotation, and the signed files
//! to upload (`POST /v2/<gun>/_trust/tuf/`).
//!
//! [`RepoEditor`] holds the repository as last published (raw bytes, so the
//! snapshot can hash exactly what the server stores) plus pending edits.
//! [`RepoEditor::publish`] bumps versions and expiries of what changed, signs
//! with the given signers and, when one of them holds the snapshot key,
//! makes the snapshot; otherwise the server makes it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::keys::{CertifiedSigner, PublicKey, Signer};
use crate::metadata::{
    DelegationRole, FileMeta, Metadata, MetadataError, RoleName, Root, RootRole, Signed, Snapshot, Targets,
};
use crate::repo::{self, RoleKeys, VerifyError};

/// Why metadata could not be built or signed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error("{role}: have signers for {have} of its keys, threshold is {threshold}")]
    MissingSigners { role: String, have: usize, threshold: i64 },
    #[error("signing {role}: {source}")]
    Sign {
        role: String,
        source: crate::keys::SignError,
    },
    #[error("role {role} does not exist in this repository")]
    UnknownRole { role: String },
    #[error("{0}")]
    Invalid(String),
}

/// Editable state of one repository (GUN).
#[derive(Debug, Clone)]
pub struct RepoEditor {
    gun: String,
    root: Root,
    /// The root as last published, whose root keys must also sign a
    /// rotated root.
    published_root: Option<Root>,
    targets: BTreeMap<RoleName, Targets>,
    /// Current files as the server stores them.
    files: BTreeMap<RoleName, Vec<u8>>,
    snapshot: Option<Snapshot>,
    dirty: BTreeSet<RoleName>,
    expiry_overrides: BTreeMap<RoleName, DateTime<Utc>>,
}

fn role_entry(keys: &[PublicKey], threshold: i64) -> RootRole {
    RootRole {
        keyids: keys.iter().map(PublicKey::id).collect(),
        threshold,
    }
}

impl RepoEditor {
    /// A new repository: root keys (the `ecdsa-x509` certificate keys from
    /// [`crate::crypto::create_root_certificate`]), targets, snapshot (the
    /// client's own key, or the server's from `snapshot.key`) and timestamp
    /// (from the server's `timestamp.key`), each with threshold 1.
    pub fn create(
        gun: &str,
        root_keys: &[PublicKey],
        targets_keys: &[PublicKey],
        snapshot_keys: &[PublicKey],
        timestamp_keys: &[PublicKey],
        now: DateTime<Utc>,
    ) -> Result<RepoEditor, BuildError> {
        let mut root = Root::new(now + RoleName::Root.default_expiry());
        for (role, keys) in [
            ("root", root_keys),
            ("targets", targets_keys),
            ("snapshot", snapshot_keys),
            ("timestamp", timestamp_keys),
        ] {
            if keys.is_empty() {
                return Err(BuildError::Invalid(format!("role {role} needs at least one key")));
            }
            for key in keys {
                root.keys.insert(key.id(), key.clone());
            }
            root.roles.insert(role.to_string(), role_entry(keys, 1));
        }
        let mut targets = BTreeMap::new();
        targets.insert(
            RoleName::Targets,
            Targets::new(now + RoleName::Targets.default_expiry()),
        );
        let dirty = [RoleName::Root, RoleName::Targets].into_iter().collect();
        Ok(RepoEditor {
            gun: gun.to_string(),
            root,
            published_root: None,
            targets,
            files: BTreeMap::new(),
            snapshot: None,
            dirty,
            expiry_overrides: BTreeMap::new(),
        })
    }

    /// Continue from published, verified metadata (raw files as the server
    /// serves them). `snapshot` may be absent when the server manages it.
    pub fn from_published(
        gun: &str,
        root: &[u8],
        targets: &BTreeMap<RoleName, Vec<u8>>,
        snapshot: Option<&[u8]>,
    ) -> Result<RepoEditor, BuildError> {
        let root_signed = Signed::<Root>::from_bytes(&RoleName::Root, root)?;
        let mut files = BTreeMap::new();
        files.insert(RoleName::Root, root.to_vec());
        let mut parsed = BTreeMap::new();
        for (role, bytes) in targets {
            let signed = Signed::<Targets>::from_bytes(role, bytes)?;
            parsed.insert(role.clone(), signed.into_signed());
            files.insert(role.clone(), bytes.clone());
        }
        if !parsed.contains_key(&RoleName::Targets) {
            return Err(BuildError::UnknownRole { role: "targets".into() });
        }
        let snapshot = match snapshot {
            Some(bytes) => Some(Signed::<Snapshot>::from_bytes(&RoleName::Snapshot, bytes)?.into_signed()),
            None => None,
        };
        Ok(RepoEditor {
            gun: gun.to_string(),
            root: root_signed.signed().clone(),
            published_root: Some(root_signed.into_signed()),
            targets: parsed,
            files,
            snapshot,
            dirty: BTreeSet::new(),
            expiry_overrides: BTreeMap::new(),
        })
    }

    /// Continue from what [`crate::client::update`] verified: the usual
    /// start of an edit (`berth trust sign`, key rotation, ...).
    pub fn from_trusted(repo: &crate::client::TrustedRepo) -> Result<RepoEditor, BuildError> {
        let root = repo
            .files()
            .get(&RoleName::Root)
            .ok_or_else(|| BuildError::UnknownRole { role: "root".into() })?;
        let targets: BTreeMap<RoleName, Vec<u8>> = repo
            .files()
            .iter()
            .filter(|(r, _)| r.is_targets_like())
            .map(|(r, b)| (r.clone(), b.clone()))
            .collect();
        RepoEditor::from_published(repo.gun(), root, &targets, Some(&repo.snapshot().to_bytes()))
    }

    /// Record the snapshot currently published (e.g. one the server made),
    /// so a snapshot this client makes next continues its version.
    pub fn observe_snapshot(&mut self, bytes: &[u8]) -> Result<(), BuildError> {
        self.snapshot = Some(Signed::<Snapshot>::from_bytes(&RoleName::Snapshot, bytes)?.into_signed());
        Ok(())
    }

    pub fn gun(&self) -> &str {
        &self.gun
    }

    pub fn root(&self) -> &Root {
        &self.root
    }

    pub fn targets(&self, role: &RoleName) -> Option<&Targets> {
        self.targets.get(role)
    }

    /// Roles changed since the last publish.
    pub fn dirty_roles(&self) -> impl Iterator<Item = &RoleName> {
        self.dirty.iter()
    }

    /// Keys and paths of a targets role, walking delegations from `targets`.
    pub fn role_keys(&self, role: &RoleName) -> Result<RoleKeys, BuildError> {
        match role {
            RoleName::Delegation(_) => {
                let parent = role
                    .parent()
                    .ok_or_else(|| BuildError::UnknownRole { role: role.to_string() })?;
                let parent_keys = self.role_keys(&parent)?;
                let parent_meta = self.targets.get(&parent).ok_or_else(|| BuildError::UnknownRole {
                    role: parent.to_string(),
                })?;
                Ok(repo::delegation_role_keys(parent_meta, &parent_keys, role)?)
            }
            _ => Ok(repo::root_role_keys(&self.root, role)?),
        }
    }

    fn targets_mut(&mut self, role: &RoleName, now_expiry: DateTime<Utc>) -> Result<&mut Targets, BuildError> {
        if role.is_delegation() && !self.targets.contains_key(role) {
            // A delegation gets its file with its first target.
            self.role_keys(role)?;
            self.targets.insert(role.clone(), Targets::new(now_expiry));
        }
        self.dirty.insert(role.clone());
        self.targets
            .get_mut(role)
            .ok_or_else(|| BuildError::UnknownRole { role: role.to_string() })
    }

    /// Add or replace target `name` in `role` (`targets` or a delegation,
    /// whose paths must allow the name).
    pub fn add_target(
        &mut self,
        role: &RoleName,
        name: &str,
        meta: FileMeta,
        now: DateTime<Utc>,
    ) -> Result<(), BuildError> {
        if !role.is_targets_like() {
            return Err(BuildError::Invalid(format!("{role} cannot hold targets")));
        }
        let keys = self.role_keys(role)?;
        if !keys.allows_target(name) {
            return Err(VerifyError::TargetOutsidePaths {
                role: role.to_string(),
                target: name.to_string(),
            }
            .into());
        }
        let expiry = now + role.default_expiry();
        self.targets_mut(role, expiry)?.targets.insert(name.to_string(), meta);
        Ok(())
    }

    /// Remove target `name` from `role`; `false` if it was not there.
    pub fn remove_target(&mut self, role: &RoleName, name: &str) -> Result<bool, BuildError> {
        let Some(targets) = self.targets.get_mut(role) else {
            return Err(BuildError::UnknownRole { role: role.to_string() });
        };
        let removed = targets.targets.remove(name).is_some();
        if removed {
            self.dirty.insert(role.clone());
        }
        Ok(removed)
    }

    /// Add or replace delegation `role` (its parent must exist) with `keys`,
    /// `threshold` and target path prefixes (`""` allows everything).
    pub fn add_delegation(
        &mut self,
        role: &RoleName,
        keys: &[PublicKey],
        threshold: i64,
        paths: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), BuildError> {
        let parent = role
            .parent()
            .ok_or_else(|| BuildError::Invalid(format!("{role} is not a delegation")))?;
        if threshold < 1 || usize::try_from(threshold).unwrap_or(usize::MAX) > keys.len() {
            return Err(BuildError::Invalid(format!(
                "threshold {threshold} for {role} needs between 1 and {} keys",
                keys.len()
            )));
        }
        let expiry = now + parent.default_expiry();
        if parent.is_delegation() && !self.targets.contains_key(&parent) {
            self.role_keys(&parent)?;
        }
        let parent_meta = self.targets_mut(&parent, expiry)?;
        for key in keys {
            parent_meta.delegations.keys.insert(key.id(), key.clone());
        }
        let entry = DelegationRole {
            keyids: keys.iter().map(PublicKey::id).collect(),
            name: role.to_string(),
            paths: paths.to_vec(),
            threshold,
        };
        match parent_meta
            .delegations
            .roles
            .iter_mut()
            .find(|r| r.name == role.as_str())
        {
            Some(existing) => *existing = entry,
            None => parent_meta.delegations.roles.push(entry),
        }
        prune_delegation_keys(parent_meta);
        Ok(())
    }

    /// Remove delegation `role` and its metadata (and its sub-delegations').
    pub fn remove_delegation(&mut self, role: &RoleName) -> Result<(), BuildError> {
        let parent = role
            .parent()
            .ok_or_else(|| BuildError::Invalid(format!("{role} is not a delegation")))?;
        let parent_meta = self.targets.get_mut(&parent).ok_or_else(|| BuildError::UnknownRole {
            role: parent.to_string(),
        })?;
        let before = parent_meta.delegations.roles.len();
        parent_meta.delegations.roles.retain(|r| r.name != role.as_str());
        if parent_meta.delegations.roles.len() == before {
            return Err(BuildError::UnknownRole { role: role.to_string() });
        }
        prune_delegation_keys(parent_meta);
        self.dirty.insert(parent);
        let prefix = format!("{role}/");
        let gone: Vec<RoleName> = self
            .targets
            .keys()
            .filter(|r| *r == role || r.as_str().starts_with(&prefix))
            .cloned()
            .collect();
        for r in gone {
            self.targets.remove(&r);
            self.files.remove(&r);
            self.dirty.remove(&r);
            if let Some(snapshot) = &mut self.snapshot {
                snapshot.meta.remove(r.as_str());
            }
        }
        Ok(())
    }

    /// Replace the keys of `targets`, `snapshot` or `timestamp` in root.
    pub fn rotate_key(&mut self, role: &RoleName, keys: &[PublicKey], threshold: i64) -> Result<(), BuildError> {
        if !matches!(role, RoleName::Targets | RoleName::Snapshot | RoleName::Timestamp) {
            return Err(BuildError::Invalid(format!(
                "use rotate_root for {role}; delegations use add_delegation"
            )));
        }
        self.set_root_role(role, keys, threshold)?;
        if *role == RoleName::Targets {
            // targets must be re-signed with the new key.
            self.dirty.insert(RoleName::Targets);
        }
        Ok(())
    }

    /// Replace the root keys; the new root is signed by the old and the new
    /// root keys (both thresholds).
    pub fn rotate_root(&mut self, keys: &[PublicKey], threshold: i64) -> Result<(), BuildError> {
        self.set_root_role(&RoleName::Root, keys, threshold)
    }

    fn set_root_role(&mut self, role: &RoleName, keys: &[PublicKey], threshold: i64) -> Result<(), BuildError> {
        if keys.is_empty() || threshold < 1 || usize::try_from(threshold).unwrap_or(usize::MAX) > keys.len() {
            return Err(BuildError::Invalid(format!(
                "threshold {threshold} for {role} needs between 1 and {} keys",
                keys.len()
            )));
        }
        for key in keys {
            self.root.keys.insert(key.id(), key.clone());
        }
        self.root.roles.insert(role.to_string(), role_entry(keys, threshold));
        let used: BTreeSet<String> = self
            .root
            .roles
            .values()
            .flat_map(|r| r.keyids.iter().cloned())
            .collect();
        self.root.keys.retain(|id, _| used.contains(id));
        self.dirty.insert(RoleName::Root);
        Ok(())
    }

    /// Use `expires` instead of the default expiry the next time `role` is
    /// published.
    pub fn set_expiry(&mut self, role: &RoleName, expires: DateTime<Utc>) {
        self.expiry_overrides.insert(role.clone(), expires);
        self.dirty.insert(role.clone());
    }

    /// Re-sign `role` on the next publish even without changes (e.g. to
    /// renew its expiry).
    pub fn mark_dirty(&mut self, role: &RoleName) {
        self.dirty.insert(role.clone());
    }

    fn expiry_for(&self, role: &RoleName, now: DateTime<Utc>) -> DateTime<Utc> {
        self.expiry_overrides
            .get(role)
            .copied()
            .unwrap_or_else(|| now + role.default_expiry())
    }

    /// Sign everything that changed and return the files to upload, root
    /// first, then targets roles (parents before children), then the
    /// snapshot if one of `signers` holds a snapshot key. Signers are
    /// matched to role keys by canonical key id, so a bare root key signs as
    /// its certificate key.
    pub fn publish(
        &mut self,
        signers: &[&dyn Signer],
        now: DateTime<Utc>,
    ) -> Result<Vec<(RoleName, Vec<u8>)>, BuildError> {
        let mut uploads = Vec::new();

        if self.dirty.contains(&RoleName::Root) || self.published_root.is_none() {
            let mut root = self.root.clone();
            root.version = self.published_root.as_ref().map(|r| r.version).unwrap_or(0) + 1;
            root.expires = self.expiry_for(&RoleName::Root, now);
            let mut signed = Signed::new(root)?;
            let new_keys = repo::root_role_keys(signed.signed(), &RoleName::Root)?;
            sign_for(&mut signed, &new_keys, signers)?;
            if let Some(old) = &self.published_root {
                let old_keys = repo::root_role_keys(old, &RoleName::Root)?;
                if old_keys.keys != new_keys.keys || old_keys.threshold != new_keys.threshold {
                    sign_for(&mut signed, &old_keys, signers)?;
                }
            }
            let bytes = signed.to_bytes();
            self.root = signed.signed().clone();
            self.published_root = Some(signed.into_signed());
            self.files.insert(RoleName::Root, bytes.clone());
            uploads.push((RoleName::Root, bytes));
        }

        let mut dirty_targets: Vec<RoleName> = self.dirty.iter().filter(|r| r.is_targets_like()).cloned().collect();
        dirty_targets.sort_by(|a, b| a.depth().cmp(&b.depth()).then_with(|| a.cmp(b)));
        for role in dirty_targets {
            let Some(current) = self.targets.get(&role).cloned() else {
                continue;
            };
            let keys = self.role_keys(&role)?;
            let mut meta = current;
            meta.version += 1;
            meta.expires = self.expiry_for(&role, now);
            let mut signed = Signed::new(meta)?;
            sign_for(&mut signed, &keys, signers)?;
            let bytes = signed.to_bytes();
            self.targets.insert(role.clone(), signed.into_signed());
            self.files.insert(role.clone(), bytes.clone());
            uploads.push((role, bytes));
        }

        let snapshot_keys = repo::root_role_keys(&self.root, &RoleName::Snapshot)?;
        let holds_snapshot_key = signers.iter().any(|s| matching_key(&snapshot_keys, *s).is_some());
        if holds_snapshot_key && (!uploads.is_empty() || self.dirty.contains(&RoleName::Snapshot)) {
            let mut snapshot = self.snapshot.clone().unwrap_or_else(|| Snapshot::new(now));
            snapshot.version += 1;
            snapshot.expires = self.expiry_for(&RoleName::Snapshot, now);
            for (role, bytes) in &self.files {
                snapshot.meta.insert(role.to_string(), FileMeta::from_bytes(bytes));
            }
            let mut signed = Signed::new(snapshot)?;
            sign_for(&mut signed, &snapshot_keys, signers)?;
            let bytes = signed.to_bytes();
            self.snapshot = Some(signed.into_signed());
            uploads.push((RoleName::Snapshot, bytes));
        }

        self.dirty.clear();
        self.expiry_overrides.clear();
        Ok(uploads)
    }
}

/// Drop delegation keys no delegated role uses any more.
fn prune_delegation_keys(targets: &mut Targets) {
    let used: BTreeSet<String> = targets
        .delegations
        .roles
        .iter()
        .flat_map(|r| r.keyids.iter().cloned())
        .collect();
    targets.delegations.keys.retain(|id, _| used.contains(id));
}

/// The role key a signer can sign as: the same key, or a certificate key
/// around the signer's key.
fn matching_key(keys: &RoleKeys, signer: &dyn Signer) -> Option<PublicKey> {
    let signer_id = signer.public_key().canonical_id().ok()?;
    keys.keys
        .values()
        .find(|k| k.canonical_id().ok().as_deref() == Some(signer_id.as_str()))
        .cloned()
}

/// Sign `signed` with every signer that holds a key of `keys`; fail if that
/// does not reach the threshold.
pub fn sign_for<T: Metadata>(
    signed: &mut Signed<T>,
    keys: &RoleKeys,
    signers: &[&dyn Signer],
) -> Result<(), BuildError> {
    let mut used = BTreeSet::new();
    for signer in signers {
        let Some(key) = matching_key(keys, *signer) else {
            continue;
        };
        if !used.insert(key.id()) {
            continue;
        }
        let result = if key == *signer.public_key() {
            signed.sign(&[*signer])
        } else {
            let certified = CertifiedSigner::new(*signer, key).map_err(|e| BuildError::Invalid(e.to_string()))?;
            signed.sign(&[&certified])
        };
        result.map_err(|source| BuildError::Sign {
            role: keys.role.to_string(),
            source,
        })?;
    }
    let needed = usize::try_from(keys.threshold).unwrap_or(usize::MAX);
    if used.len() < needed {
        return Err(BuildError::MissingSigners {
            role: keys.role.to_string(),
            have: used.len(),
            threshold: keys.threshold,
        });
    }
    Ok(())
}

/// Sign metadata for `role` that is not part of an editor (e.g. a timestamp
/// in tests or tools): bump nothing, just sign with `signers`.
pub fn sign_metadata<T: Metadata>(meta: T, keys: &RoleKeys, signers: &[&dyn Signer]) -> Result<Signed<T>, BuildError> {
    let mut signed = Signed::new(meta)?;
    sign_for(&mut signed, keys, signers)?;
    Ok(signed)
}

/// Default expiry of `role` from `now`.
pub fn default_expires(role: &RoleName, now: DateTime<Utc>) -> DateTime<Utc> {
    now + role.default_expiry()
}
