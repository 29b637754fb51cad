//! Validation shared by the server (checking uploads) and the client
//! (checking downloads): role keys and thresholds, signatures, structure,
//! expiry, hashes, delegation paths, and Notary's root rules (x509 root
//! certificates named after the GUN, rotation signed by the old root, trust
//! pinning).
//!
//! **Architecture Invariant:** everything here is pure: no IO, no clock
//! (the time is a parameter), no HTTP.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::crypto::{self, CertificateInfo, CryptoError};
use crate::keys::{PublicKey, SigMethod};
use crate::metadata::{FileMeta, Metadata, MetadataError, RoleName, Root, Signed, Snapshot, Targets, Timestamp};

/// A check on metadata that failed. Each kind of attack a TUF client must
/// detect has its own variant.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum VerifyError {
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("{role}: invalid metadata: {reason}")]
    Invalid { role: String, reason: String },
    #[error("{role}: no signatures")]
    NoSignatures { role: String },
    /// Signatures only by keys the role does not list (wrong key).
    #[error("{role}: signed only by keys not in the role: {key_ids:?}")]
    WrongKey { role: String, key_ids: Vec<String> },
    /// A signature by a key of the role does not verify.
    #[error("{role}: bad signature by key {key_id}")]
    BadSignature { role: String, key_id: String },
    /// Good signatures, but fewer than the role's threshold.
    #[error("{role}: {valid} valid signatures, threshold is {threshold}")]
    ThresholdNotMet { role: String, valid: usize, threshold: i64 },
    /// A role lists a key under an id that is not the key's id.
    #[error("{role}: key listed as {listed} has id {actual}")]
    KeyIdMismatch {
        role: String,
        listed: String,
        actual: String,
    },
    /// Freeze attack: the metadata's expiry has passed.
    #[error("{role}: expired at {expires}")]
    Expired { role: String, expires: DateTime<Utc> },
    /// Rollback attack: older than what is already trusted.
    #[error("{role}: version {received} is lower than trusted version {trusted}")]
    Rollback { role: String, trusted: u64, received: u64 },
    /// Mix-and-match: a file does not match the hashes or length that the
    /// snapshot or timestamp lists for it.
    #[error("{role}: does not match the {algorithm} listed for it by {listed_by}")]
    MetaMismatch {
        role: String,
        listed_by: String,
        algorithm: String,
    },
    /// The snapshot or timestamp does not list a file it must list.
    #[error("{role}: not listed by {listed_by}")]
    MissingMeta { role: String, listed_by: String },
    /// Notary's root rules: x509 root keys whose certificate names the GUN.
    #[error("root: {reason}")]
    RootCertificate { reason: String },
    /// A new root not signed by the threshold of the previous root's keys.
    #[error("root rotation from version {from} to {to} not signed by the previous root keys: {reason}")]
    RootRotation { from: u64, to: u64, reason: String },
    /// Root versions must go up by exactly one along the chain.
    #[error("root: expected version {expected}, found {found}")]
    RootVersion { expected: u64, found: u64 },
    #[error("root: trust pinning: {reason}")]
    TrustPinning { reason: String },
    #[error("{role}: target {target:?} is outside the role's paths")]
    TargetOutsidePaths { role: String, target: String },
    #[error("{role}: not delegated by its parent")]
    UnknownDelegation { role: String },
    #[error("{role}: {source}")]
    Crypto { role: String, source: CryptoError },
}

/// The keys and threshold a role's metadata must be signed with, and for
/// delegations the target paths it may sign for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleKeys {
    pub role: RoleName,
    pub keys: BTreeMap<String, PublicKey>,
    pub threshold: i64,
    /// Path prefixes the role may sign targets for; `None` for top-level
    /// roles (anything). Already restricted by every ancestor's paths.
    pub paths: Option<Vec<String>>,
}

impl RoleKeys {
    /// Whether `target` is within the role's paths (prefix match, as Notary).
    pub fn allows_target(&self, target: &str) -> bool {
        match &self.paths {
            None => true,
            Some(paths) => paths.iter().any(|p| target.starts_with(p.as_str())),
        }
    }
}

/// The keys of a top-level role, from root.json.
pub fn root_role_keys(root: &Root, role: &RoleName) -> Result<RoleKeys, VerifyError> {
    let entry = root.roles.get(role.as_str()).ok_or_else(|| VerifyError::Invalid {
        role: "root".into(),
        reason: format!("role {role} not found in root"),
    })?;
    let mut keys = BTreeMap::new();
    for id in &entry.keyids {
        let key = root.keys.get(id).ok_or_else(|| VerifyError::Invalid {
            role: "root".into(),
            reason: format!("key {id} of role {role} was not found in root"),
        })?;
        keys.insert(id.clone(), key.clone());
    }
    Ok(RoleKeys {
        role: role.clone(),
        keys,
        threshold: entry.threshold,
        paths: None,
    })
}

/// The keys of delegation `role`, as delegated by `parent` (whose own keys,
/// paths included, are `parent_keys`). Paths are restricted to those that
/// fall under the parent's paths, as Notary does.
pub fn delegation_role_keys(
    parent: &Targets,
    parent_keys: &RoleKeys,
    role: &RoleName,
) -> Result<RoleKeys, VerifyError> {
    if role.parent().as_ref() != Some(&parent_keys.role) {
        return Err(VerifyError::UnknownDelegation { role: role.to_string() });
    }
    let entry = parent
        .delegations
        .roles
        .iter()
        .find(|r| r.name == role.as_str())
        .ok_or_else(|| VerifyError::UnknownDelegation { role: role.to_string() })?;
    let mut keys = BTreeMap::new();
    for id in &entry.keyids {
        let key = parent.delegations.keys.get(id).ok_or_else(|| VerifyError::Invalid {
            role: parent_keys.role.to_string(),
            reason: format!("delegation {role} lists unknown key {id}"),
        })?;
        if key.keytype.is_x509() {
            let cert = crypto::key_certificate(key).map_err(|source| VerifyError::Crypto {
                role: role.to_string(),
                source,
            })?;
            cert.validate(None).map_err(|source| VerifyError::Crypto {
                role: role.to_string(),
                source,
            })?;
        }
        keys.insert(id.clone(), key.clone());
    }
    let paths = entry
        .paths
        .iter()
        .filter(|p| match &parent_keys.paths {
            None => true,
            Some(parent_paths) => parent_paths.iter().any(|pp| p.starts_with(pp.as_str())),
        })
        .cloned()
        .collect();
    Ok(RoleKeys {
        role: role.clone(),
        keys,
        threshold: entry.threshold,
        paths: Some(paths),
    })
}

/// Check that `signed` carries at least `keys.threshold` valid signatures by
/// distinct keys of the role.
pub fn verify_signatures<T: Metadata>(signed: &Signed<T>, keys: &RoleKeys) -> Result<(), VerifyError> {
    let role = keys.role.to_string();
    if signed.signatures().is_empty() {
        return Err(VerifyError::NoSignatures { role });
    }
    if keys.threshold < 1 {
        return Err(VerifyError::Invalid {
            role,
            reason: format!("threshold {} is below 1", keys.threshold),
        });
    }
    let mut valid = BTreeSet::new();
    let mut unknown = Vec::new();
    let mut bad = None;
    for sig in signed.signatures() {
        let Some(key) = keys.keys.get(&sig.keyid) else {
            unknown.push(sig.keyid.clone());
            continue;
        };
        let actual = key.id();
        if actual != sig.keyid {
            return Err(VerifyError::KeyIdMismatch {
                role,
                listed: sig.keyid.clone(),
                actual,
            });
        }
        let Some(method) = SigMethod::from_wire(&sig.method) else {
            bad.get_or_insert_with(|| sig.keyid.clone());
            continue;
        };
        match crypto::verify_signature(key, method, signed.canonical_bytes(), &sig.sig) {
            Ok(()) => {
                valid.insert(sig.keyid.clone());
            }
            Err(_) => {
                bad.get_or_insert_with(|| sig.keyid.clone());
            }
        }
    }
    let needed = usize::try_from(keys.threshold).unwrap_or(usize::MAX);
    if valid.len() >= needed {
        return Ok(());
    }
    if let Some(key_id) = bad {
        return Err(VerifyError::BadSignature { role, key_id });
    }
    if valid.is_empty() && !unknown.is_empty() {
        return Err(VerifyError::WrongKey { role, key_ids: unknown });
    }
    Err(VerifyError::ThresholdNotMet {
        role,
        valid: valid.len(),
        threshold: keys.threshold,
    })
}

/// Freeze-attack check.
pub fn check_expiry<T: Metadata>(role: &RoleName, meta: &T, now: DateTime<Utc>) -> Result<(), VerifyError> {
    if meta.expires() < now {
        return Err(VerifyError::Expired {
            role: role.to_string(),
            expires: meta.expires(),
        });
    }
    Ok(())
}

/// Rollback check against a trusted version.
pub fn check_version(role: &RoleName, received: u64, trusted: u64) -> Result<(), VerifyError> {
    if received < trusted {
        return Err(VerifyError::Rollback {
            role: role.to_string(),
            trusted,
            received,
        });
    }
    Ok(())
}

fn invalid(role: &RoleName, reason: impl Into<String>) -> VerifyError {
    VerifyError::Invalid {
        role: role.to_string(),
        reason: reason.into(),
    }
}

fn check_role_entry(
    role: &RoleName,
    name: &str,
    keyids: &[String],
    threshold: i64,
    keys: &BTreeMap<String, PublicKey>,
) -> Result<(), VerifyError> {
    if threshold < 1 {
        return Err(invalid(role, format!("invalid threshold {threshold} for {name}")));
    }
    for id in keyids {
        if !keys.contains_key(id) {
            return Err(invalid(
                role,
                format!("key {id} listed for {name} without a corresponding key"),
            ));
        }
    }
    Ok(())
}

/// Root structure: version ≥ 1, the four top-level roles with thresholds ≥ 1
/// and keys that exist.
pub fn check_root_structure(root: &Root) -> Result<(), VerifyError> {
    let role = RoleName::Root;
    if root.version < 1 {
        return Err(invalid(&role, "version cannot be less than 1"));
    }
    for base in [
        RoleName::Root,
        RoleName::Targets,
        RoleName::Snapshot,
        RoleName::Timestamp,
    ] {
        let entry = root
            .roles
            .get(base.as_str())
            .ok_or_else(|| invalid(&role, format!("missing {base} role specification")))?;
        check_role_entry(&role, base.as_str(), &entry.keyids, entry.threshold, &root.keys)?;
    }
    Ok(())
}

/// Targets structure: version ≥ 1, delegations named as direct children of
/// `role`, thresholds ≥ 1, keys that exist.
pub fn check_targets_structure(role: &RoleName, targets: &Targets) -> Result<(), VerifyError> {
    if !role.is_targets_like() {
        return Err(invalid(role, "not a targets role"));
    }
    if targets.version < 1 {
        return Err(invalid(role, "version cannot be less than 1"));
    }
    for delegation in &targets.delegations.roles {
        let name = RoleName::parse(&delegation.name)
            .map_err(|_| invalid(role, format!("delegation role {} invalid", delegation.name)))?;
        if name.parent().as_ref() != Some(role) {
            return Err(invalid(role, format!("delegation role {} invalid", delegation.name)));
        }
        check_role_entry(
            role,
            &delegation.name,
            &delegation.keyids,
            delegation.threshold,
            &targets.delegations.keys,
        )?;
    }
    Ok(())
}

fn check_listed_hashes(role: &RoleName, listed: &str, meta: Option<&FileMeta>) -> Result<(), VerifyError> {
    let meta = meta.ok_or_else(|| VerifyError::MissingMeta {
        role: listed.to_string(),
        listed_by: role.to_string(),
    })?;
    if !meta.hashes.contains_key("sha256") {
        return Err(invalid(role, format!("missing {listed} sha256 checksum information")));
    }
    for (alg, len) in [("sha256", 32), ("sha512", 64)] {
        if let Some(hash) = meta.hashes.get(alg) {
            if hash.len() != len {
                return Err(invalid(role, format!("invalid {listed} {alg} checksum")));
            }
        }
    }
    Ok(())
}

/// Snapshot structure: version ≥ 1, sha256 hashes for root and targets.
pub fn check_snapshot_structure(snapshot: &Snapshot) -> Result<(), VerifyError> {
    let role = RoleName::Snapshot;
    if snapshot.version < 1 {
        return Err(invalid(&role, "version cannot be less than one"));
    }
    for listed in ["root", "targets"] {
        check_listed_hashes(&role, listed, snapshot.meta.get(listed))?;
    }
    Ok(())
}

/// Timestamp structure: version ≥ 1, a sha256 hash for the snapshot.
pub fn check_timestamp_structure(timestamp: &Timestamp) -> Result<(), VerifyError> {
    let role = RoleName::Timestamp;
    if timestamp.version < 1 {
        return Err(invalid(&role, "version cannot be less than one"));
    }
    check_listed_hashes(&role, "snapshot", timestamp.meta.get("snapshot"))
}

/// Mix-and-match check: `bytes` (the file of `role`) must have the length
/// and every supported hash that `listed_by` lists for it, and at least one
/// supported hash must be listed.
pub fn check_file_meta(role: &str, listed_by: &str, bytes: &[u8], meta: Option<&FileMeta>) -> Result<(), VerifyError> {
    let meta = meta.ok_or_else(|| VerifyError::MissingMeta {
        role: role.to_string(),
        listed_by: listed_by.to_string(),
    })?;
    let actual = FileMeta::from_bytes(bytes);
    let mut checked = 0;
    for (alg, expected) in &meta.hashes {
        let Some(computed) = actual.hashes.get(alg) else {
            continue;
        };
        if computed != expected {
            return Err(VerifyError::MetaMismatch {
                role: role.to_string(),
                listed_by: listed_by.to_string(),
                algorithm: alg.clone(),
            });
        }
        checked += 1;
    }
    if checked == 0 {
        return Err(VerifyError::MissingMeta {
            role: role.to_string(),
            listed_by: listed_by.to_string(),
        });
    }
    if meta.length != 0 && meta.length != actual.length {
        return Err(VerifyError::MetaMismatch {
            role: role.to_string(),
            listed_by: listed_by.to_string(),
            algorithm: "length".into(),
        });
    }
    Ok(())
}

/// Every target a delegation signs must be within its paths.
pub fn check_target_paths(targets: &Targets, keys: &RoleKeys) -> Result<(), VerifyError> {
    for name in targets.targets.keys() {
        if !keys.allows_target(name) {
            return Err(VerifyError::TargetOutsidePaths {
                role: keys.role.to_string(),
                target: name.clone(),
            });
        }
    }
    Ok(())
}

/// Trust pinning for a GUN's root, as in the notary client's
/// `trust_pinning` configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustPinning {
    /// Root certificate key ids (TUF ids of the `-x509` keys) to accept.
    pub key_ids: Vec<String>,
    /// PEM bundle of CA certificates root certificates must chain to.
    pub ca_pem: Option<Vec<u8>>,
    /// Refuse trust on first use when neither of the above is set.
    pub disable_tofu: bool,
}

fn cn_matches_gun(cn: &str, gun: &str) -> bool {
    match cn.strip_suffix('*') {
        Some(prefix) => gun.starts_with(prefix.trim_end_matches('*')),
        None => cn == gun,
    }
}

/// Root keys with a valid leaf certificate for `gun`: `(key id, key,
/// leaf, intermediates)`. As Notary does, the key is rebuilt from the leaf
/// and its valid intermediates, and signatures must name that key's id.
fn root_leaf_certificates(
    root: &Root,
    gun: &str,
    now: Option<DateTime<Utc>>,
) -> Vec<(String, PublicKey, CertificateInfo, Vec<CertificateInfo>)> {
    let Some(entry) = root.roles.get("root") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for id in &entry.keyids {
        let Some(key) = root.keys.get(id) else { continue };
        if !key.keytype.is_x509() {
            continue;
        }
        let Ok(certs) = crypto::parse_certificate_bundle(&key.public) else {
            continue;
        };
        let leaves: Vec<&CertificateInfo> = certs.iter().filter(|c| !c.is_ca).collect();
        if leaves.len() != 1 || certs[0].is_ca {
            continue;
        }
        let leaf = certs[0].clone();
        if !cn_matches_gun(&leaf.common_name, gun) || leaf.validate(now).is_err() {
            continue;
        }
        let intermediates: Vec<CertificateInfo> = certs[1..]
            .iter()
            .filter(|c| c.is_ca && c.validate(now).is_ok())
            .cloned()
            .collect();
        let rebuilt = crypto::certificate_bundle_key(&leaf, &intermediates);
        found.push((rebuilt.id(), rebuilt, leaf, intermediates));
    }
    found
}

fn chains_to_ca(leaf: &CertificateInfo, intermediates: &[CertificateInfo], cas: &[CertificateInfo]) -> bool {
    // Walk up at most a few intermediates to one of the pinned CAs.
    let mut current = leaf.clone();
    for _ in 0..=intermediates.len() {
        if cas.iter().any(|ca| current.is_signed_by(ca)) {
            return true;
        }
        match intermediates.iter().find(|i| current.is_signed_by(i)) {
            Some(next) => current = next.clone(),
            None => return false,
        }
    }
    false
}

/// Notary's root validation. `prev` is the root trusted so far (`None` on
/// first use); `now` enables the certificate validity checks (Notary always
/// checks the new root's certificates against the current time).
pub fn validate_root(
    prev: Option<&Signed<Root>>,
    new: &Signed<Root>,
    gun: &str,
    now: Option<DateTime<Utc>>,
    pinning: &TrustPinning,
) -> Result<(), VerifyError> {
    let root = new.signed();
    check_root_structure(root)?;
    let leaves = root_leaf_certificates(root, gun, now);
    if leaves.is_empty() {
        return Err(VerifyError::RootCertificate {
            reason: format!("no root key has a valid, unexpired certificate for {gun}"),
        });
    }

    if let Some(prev) = prev {
        let prev_root = prev.signed();
        let prev_leaves = root_leaf_certificates(prev_root, gun, None);
        let threshold = prev_root.roles.get("root").map(|r| r.threshold).unwrap_or(1);
        let keys = RoleKeys {
            role: RoleName::Root,
            keys: prev_leaves.into_iter().map(|(id, key, _, _)| (id, key)).collect(),
            threshold,
            paths: None,
        };
        verify_signatures(new, &keys).map_err(|e| VerifyError::RootRotation {
            from: prev_root.version,
            to: root.version,
            reason: e.to_string(),
        })?;
    }

    let pinned: Vec<_> = if !pinning.key_ids.is_empty() {
        leaves
            .into_iter()
            .filter(|(id, _, _, _)| pinning.key_ids.contains(id))
            .collect()
    } else if let Some(ca_pem) = &pinning.ca_pem {
        let cas: Vec<CertificateInfo> = crypto::parse_certificate_bundle(ca_pem)
            .map_err(|e| VerifyError::TrustPinning {
                reason: format!("pinned CA: {e}"),
            })?
            .into_iter()
            .filter(|ca| ca.validate(now).is_ok())
            .collect();
        if cas.is_empty() {
            return Err(VerifyError::TrustPinning {
                reason: "no valid certificate in the pinned CA bundle".into(),
            });
        }
        leaves
            .into_iter()
            .filter(|(_, _, leaf, ints)| chains_to_ca(leaf, ints, &cas))
            .collect()
    } else if pinning.disable_tofu && prev.is_none() {
        return Err(VerifyError::TrustPinning {
            reason: "trust on first use is disabled and nothing is pinned".into(),
        });
    } else {
        leaves
    };
    if pinned.is_empty() {
        return Err(VerifyError::TrustPinning {
            reason: "no root certificate matches the pinned keys or CA".into(),
        });
    }
    let threshold = root.roles.get("root").map(|r| r.threshold).unwrap_or(1);
    let keys = RoleKeys {
        role: RoleName::Root,
        keys: pinned.into_iter().map(|(id, key, _, _)| (id, key)).collect(),
        threshold,
        paths: None,
    };
    verify_signatures(new, &keys)
}

/// Hex SHA-256 of a file, as used in consistent names `role.<hex>.json`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    crypto::sha256_hex(bytes)
}
