//! The TUF signing workflow of `berth trust`, out of the CLI: which roles and keys sign what,
//! the next targets and snapshot metadata, signer delegations, pending threshold signatures,
//! key descriptions, and the checks on trust data attached to an image. No terminal, network
//! or disk here: the CLI prompts, fetches, reads files and prints.
//!
//! # Public API
//!
//! - [`WorkflowError`]: a message, as the CLI shows it.
//! - keys: [`passphrase_class`], [`token_selector`], [`slot_cka_id`],
//!   [`describe_cka_id`], [`describe_location`], [`preferred_key`],
//!   [`public_key_pem`], [`public_key_from_pem`];
//! - repositories and roles: [`normalize_gun`], [`signer_role`],
//!   [`role_keys`], [`roles_to_sign`], [`publish_keys`], [`add_signer`],
//!   [`remove_signer`];
//! - signing: [`Change`], [`next_targets`], [`pending_file`],
//!   [`valid_signatures`], [`next_snapshot`];
//! - verification: [`View`] (verified trust data of one GUN),
//!   [`verify_attached`]; [`Inspection`], `berth trust inspect`'s
//!   document of a view (Docker's `trust inspect` shape).

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::builder::{self, BuildError, RepoEditor};
use crate::client::TrustedRepo;
use crate::crypto;
use crate::keys::{KeyType, PublicKey, SigMethod, Signer};
use crate::keystore::{KeyInfo, KeyStore};
use crate::metadata::{FileMeta, RoleName, Root, Signed, Snapshot, Targets};
use crate::pkcs11::{self, TokenSelector};
use crate::repo::{self, RoleKeys, TrustPinning, VerifyError};

/// Why a workflow step failed: the message the CLI shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WorkflowError(pub String);

impl From<BuildError> for WorkflowError {
    fn from(e: BuildError) -> WorkflowError {
        WorkflowError(e.to_string())
    }
}

impl From<VerifyError> for WorkflowError {
    fn from(e: VerifyError) -> WorkflowError {
        WorkflowError(e.to_string())
    }
}

impl WorkflowError {
    /// An error saying `message`.
    pub fn new(message: impl std::fmt::Display) -> WorkflowError {
        WorkflowError(message.to_string())
    }
}

// ---------------------------------------------------------------------------
// Keys

/// The passphrase class of a key store role.
pub fn passphrase_class(role: &str) -> &'static str {
    match role {
        "root" => "ROOT",
        "targets" => "TARGETS",
        "snapshot" => "SNAPSHOT",
        _ => "DELEGATION",
    }
}

/// The token a recorded or given label names; no label is the module's only token.
pub fn token_selector(label: Option<&str>) -> TokenSelector {
    match label {
        Some(label) if !label.is_empty() => TokenSelector::Label(label.to_string()),
        _ => TokenSelector::Only,
    }
}

/// `--slot`: a YubiKey PIV slot (`9a`, ...) or `id:HEX`, as a `CKA_ID`.
pub fn slot_cka_id(slot: &str) -> Result<Vec<u8>, WorkflowError> {
    if let Some(hex) = slot.strip_prefix("id:") {
        return pkcs11::decode_hex(hex)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| WorkflowError::new(format!("--slot {slot}: id: takes the CKA_ID in hex, e.g. id:01")));
    }
    pkcs11::piv_slot_cka_id(slot).map(|id| vec![id]).ok_or_else(|| {
        WorkflowError::new(format!(
            "--slot {slot}: not a PIV slot (9a, 9c, 9d, 9e, 82..95); give any other CKA_ID as id:HEX"
        ))
    })
}

/// How a `CKA_ID` reads to a user: the PIV slot when it is one.
pub fn describe_cka_id(cka_id_hex: &str) -> String {
    match pkcs11::decode_hex(cka_id_hex).and_then(|id| pkcs11::piv_slot_name(&id)) {
        Some(slot) => format!("slot {slot}"),
        None => format!("id {cka_id_hex}"),
    }
}

/// Where a key is, for `key list`, backups and messages.
pub fn describe_location(store: &KeyStore, info: &KeyInfo) -> String {
    match &info.token {
        None => format!("file {}", store.dir().display()),
        Some(t) => format!(
            "pkcs11 {} token {} {}",
            t.module.display(),
            t.token_label,
            describe_cka_id(&t.cka_id)
        ),
    }
}

/// The key of `role` a new repository uses: one on a token first (the
/// user put it there for a reason), else the first.
pub fn preferred_key<'k>(keys: &'k [KeyInfo], role: &str, gun: &str) -> Option<&'k KeyInfo> {
    let mut matching = keys.iter().filter(|k| k.role == role && k.gun == gun);
    let first = matching.clone().next();
    matching.find(|k| k.token.is_some()).or(first)
}

/// `NAME.pub`: the public key as PEM (`PUBLIC KEY`, SubjectPublicKeyInfo),
/// or the certificate for `-x509` keys.
pub fn public_key_pem(key: &PublicKey, name: &str) -> String {
    if key.keytype.is_x509() {
        return String::from_utf8_lossy(&key.public).into_owned();
    }
    let mut block = pem::Pem::new("PUBLIC KEY", key.public.clone());
    let _ = block.headers_mut().add("role", name);
    pem::encode_config(&block, pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF))
}

/// A signer's public key from the PEM `bytes` of the file `shown`:
/// `PUBLIC KEY` (ECDSA P-256) or `CERTIFICATE` (`ecdsa-x509`).
pub fn public_key_from_pem(bytes: &[u8], shown: &str) -> Result<PublicKey, WorkflowError> {
    let block = pem::parse(bytes).map_err(|e| WorkflowError::new(format!("{shown}: not PEM: {e}")))?;
    let key = match block.tag() {
        "PUBLIC KEY" => PublicKey::new(KeyType::Ecdsa, block.contents().to_vec()),
        "CERTIFICATE" => {
            let text = pem::encode_config(
                &pem::Pem::new("CERTIFICATE", block.contents().to_vec()),
                pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
            );
            PublicKey::new(KeyType::EcdsaX509, text.into_bytes())
        }
        other => {
            return Err(WorkflowError::new(format!(
                "{shown}: a {other:?} block is not a public key or certificate"
            )))
        }
    };
    // A key that cannot verify anything is refused now, not when it signs.
    match key.keytype {
        KeyType::Ecdsa => {
            // Parsing is the first thing verification does: a malformed key says so.
            if let Err(e @ crypto::CryptoError::MalformedKey { .. }) =
                crypto::verify_signature(&key, SigMethod::Ecdsa, b"", &[0u8; 64])
            {
                return Err(WorkflowError::new(format!(
                    "{shown}: not an ECDSA P-256 public key: {e}"
                )));
            }
        }
        _ => {
            crypto::key_certificate(&key).map_err(|e| WorkflowError::new(format!("{shown}: {e}")))?;
        }
    }
    Ok(key)
}

// ---------------------------------------------------------------------------
// Repositories and roles

/// A repository name as berth writes GUNs: `registry/repository`.
pub fn normalize_gun(text: &str) -> Result<String, WorkflowError> {
    let r = berth_model::Reference::parse(text)
        .map_err(|e| WorkflowError::new(format!("{text:?} is not a repository name: {e}")))?;
    Ok(format!("{}/{}", r.registry, r.repository))
}

/// The delegation role of signer `name`: `targets/<name>`.
pub fn signer_role(name: &str) -> Result<RoleName, WorkflowError> {
    if name == "releases" {
        return Err(WorkflowError::new(
            "releases is managed by berth: name the signer after a person or team".to_string(),
        ));
    }
    RoleName::parse(&format!("targets/{name}"))
        .map_err(|_| WorkflowError::new(format!("invalid signer name {name:?}: use a-z, 0-9, - and _")))
}

/// Keys of a targets role: from root, a verified delegation, or the
/// parent's delegation entry for a role without metadata yet.
pub fn role_keys(repo: &TrustedRepo, role: &RoleName) -> Result<RoleKeys, WorkflowError> {
    if let Some((_, keys)) = repo.roles().find(|(r, _)| *r == role) {
        return Ok(keys.clone());
    }
    match role.parent() {
        None => Ok(repo::root_role_keys(repo.root().signed(), role)?),
        Some(parent) => {
            let parent_keys = role_keys(repo, &parent)?;
            let parent_meta = repo
                .targets(&parent)
                .ok_or_else(|| WorkflowError::new(format!("{parent} of {} is not trusted", repo.gun())))?;
            Ok(repo::delegation_role_keys(parent_meta.signed(), &parent_keys, role)?)
        }
    }
}

/// The roles `sign` writes to: `targets/<signer>` (and `targets/releases`
/// when this client holds one of its keys), or `targets` itself. `holds`
/// tells whether this client holds a key.
pub fn roles_to_sign(
    repo: &TrustedRepo,
    signer: Option<&str>,
    holds: impl Fn(&PublicKey) -> bool,
) -> Result<Vec<RoleName>, WorkflowError> {
    let top = repo
        .targets(&RoleName::Targets)
        .ok_or_else(|| WorkflowError::new(format!("{} has no targets", repo.gun())))?;
    let delegations = &top.signed().delegations;
    let delegation_keys = |name: &str| -> Vec<PublicKey> {
        delegations
            .roles
            .iter()
            .find(|r| r.name == name)
            .map(|r| {
                r.keyids
                    .iter()
                    .filter_map(|id| delegations.keys.get(id))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    let releases = "targets/releases";
    match signer {
        Some(name) => {
            let role = format!("targets/{name}");
            if !delegations.roles.iter().any(|r| r.name == role) {
                return Err(WorkflowError::new(format!(
                    "{name} is not a signer of {}: add it with `berth trust signer add {name} {} --key {name}.pub`",
                    repo.gun(),
                    repo.gun()
                )));
            }
            let mine = delegation_keys(&role);
            if !mine.iter().any(&holds) {
                return Err(WorkflowError::new(format!(
                    "this client holds no key of signer {name} (see `berth trust key list`)"
                )));
            }
            let mut roles = vec![RoleName::Delegation(role.clone())];
            if role != releases && delegation_keys(releases).iter().any(&holds) {
                roles.push(RoleName::Delegation(releases.into()));
            }
            Ok(roles)
        }
        None => {
            let keys = repo::root_role_keys(repo.root().signed(), &RoleName::Targets)?;
            if keys.keys.values().any(&holds) {
                return Ok(vec![RoleName::Targets]);
            }
            if delegation_keys(releases).iter().any(&holds) {
                return Ok(vec![RoleName::Delegation(releases.into())]);
            }
            Err(WorkflowError::new(format!(
                "this client holds neither the targets key of {} nor a signer key: pass --signer",
                repo.gun()
            )))
        }
    }
}

/// The keys that sign what `editor` is about to publish: those of targets
/// and snapshot, and of root when it changed; without the keys whose
/// canonical id is in `held` (the signers at hand already).
pub fn publish_keys(editor: &RepoEditor, held: &BTreeSet<String>) -> Vec<PublicKey> {
    let mut wanted: Vec<PublicKey> = Vec::new();
    for role in ["targets", "snapshot"] {
        if let Some(entry) = editor.root().roles.get(role) {
            wanted.extend(entry.keyids.iter().filter_map(|id| editor.root().keys.get(id)).cloned());
        }
    }
    if editor.dirty_roles().any(|r| *r == RoleName::Root) {
        if let Some(entry) = editor.root().roles.get("root") {
            wanted.extend(entry.keyids.iter().filter_map(|id| editor.root().keys.get(id)).cloned());
        }
    }
    wanted.retain(|k| !held.contains(&k.canonical_id().unwrap_or_default()));
    wanted
}

/// Adds signer `role` with `keys` and `threshold`; the first signer also
/// signs `targets/releases` (Docker's convention). `true` when
/// `targets/releases` existed already.
pub fn add_signer(
    editor: &mut RepoEditor,
    role: &RoleName,
    keys: &[PublicKey],
    threshold: i64,
    now: DateTime<Utc>,
) -> Result<bool, BuildError> {
    editor.add_delegation(role, keys, threshold, &["".to_string()], now)?;
    let releases = RoleName::Delegation("targets/releases".into());
    let has_releases = editor
        .targets(&RoleName::Targets)
        .is_some_and(|t| t.delegations.roles.iter().any(|d| d.name == releases.as_str()));
    if !has_releases {
        // Docker's convention: the first signer also signs targets/releases.
        editor.add_delegation(&releases, keys, threshold, &["".to_string()], now)?;
    }
    Ok(has_releases)
}

/// Removes signer `role` (named `name`) from `gun`; its keys no longer
/// sign `targets/releases` either (which goes when no key is left).
pub fn remove_signer(
    editor: &mut RepoEditor,
    role: &RoleName,
    name: &str,
    gun: &str,
    now: DateTime<Utc>,
) -> Result<(), WorkflowError> {
    let top = editor
        .targets(&RoleName::Targets)
        .cloned()
        .ok_or_else(|| WorkflowError::new(format!("{gun} has no targets")))?;
    let Some(entry) = top.delegations.roles.iter().find(|d| d.name == role.as_str()).cloned() else {
        return Err(WorkflowError::new(format!("{name} is not a signer of {gun}")));
    };
    editor.remove_delegation(role)?;
    // Its keys no longer sign targets/releases either.
    if let Some(releases) = top.delegations.roles.iter().find(|d| d.name == "targets/releases") {
        let releases_role = RoleName::Delegation(releases.name.clone());
        let remaining: Vec<PublicKey> = releases
            .keyids
            .iter()
            .filter(|id| !entry.keyids.contains(id))
            .filter_map(|id| top.delegations.keys.get(id))
            .cloned()
            .collect();
        if remaining.len() != releases.keyids.len() {
            if remaining.is_empty() {
                editor.remove_delegation(&releases_role)?;
            } else {
                let threshold = releases.threshold.min(remaining.len() as i64);
                editor.add_delegation(&releases_role, &remaining, threshold, &releases.paths, now)?;
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Signing

/// What `sign` or `revoke` does to a targets role.
#[derive(Debug, Clone)]
pub enum Change {
    Add(String, FileMeta),
    Remove(String),
}

impl Change {
    pub fn apply(&self, targets: &mut Targets) {
        match self {
            Change::Add(name, meta) => {
                targets.targets.insert(name.clone(), meta.clone());
            }
            Change::Remove(name) => {
                targets.targets.remove(name);
            }
        }
    }
}

/// The next version of `role`'s metadata in `repo` (new when it has none)
/// with `change` applied and the role's default expiry from `now`.
pub fn next_targets(repo: &TrustedRepo, role: &RoleName, change: &Change, now: DateTime<Utc>) -> Targets {
    let current = repo.targets(role).map(|s| s.signed().clone());
    let next_version = current.as_ref().map(|t| t.version).unwrap_or(0) + 1;
    let mut content = current.unwrap_or_else(|| Targets::new(now));
    change.apply(&mut content);
    content.version = next_version;
    content.expires = builder::default_expires(role, now);
    content
}

/// A pending signature document's metadata file for `role` of `gun`.
pub fn pending_file(annotations: &Value, doc: &[u8], gun: &str, role: &RoleName) -> Option<Signed<Targets>> {
    if annotations.get("vnd.berth.trust.gun").and_then(Value::as_str) != Some(gun)
        || annotations.get("vnd.berth.trust.role").and_then(Value::as_str) != Some(role.as_str())
    {
        return None;
    }
    let doc: Value = serde_json::from_slice(doc).ok()?;
    let file = base64::engine::general_purpose::STANDARD
        .decode(doc.get("file")?.as_str()?)
        .ok()?;
    Signed::<Targets>::from_bytes(role, &file).ok()
}

/// Distinct keys of the role with a valid signature.
pub fn valid_signatures(signed: &Signed<Targets>, keys: &RoleKeys) -> usize {
    signed
        .signatures()
        .iter()
        .filter(|sig| {
            let Some(key) = keys.keys.get(&sig.keyid) else {
                return false;
            };
            let Some(method) = SigMethod::from_wire(&sig.method) else {
                return false;
            };
            crypto::verify_signature(key, method, signed.canonical_bytes(), &sig.sig).is_ok()
        })
        .map(|sig| sig.keyid.clone())
        .collect::<BTreeSet<_>>()
        .len()
}

/// A new snapshot of `repo` for the `changed` files, signed with
/// `signers` for the snapshot role's `keys`.
pub fn next_snapshot(
    repo: &TrustedRepo,
    keys: &RoleKeys,
    changed: &[(RoleName, Vec<u8>)],
    signers: &[&dyn Signer],
    now: DateTime<Utc>,
) -> Result<Vec<u8>, BuildError> {
    let mut snapshot: Snapshot = repo.snapshot().signed().clone();
    for (role, bytes) in changed {
        snapshot.meta.insert(role.to_string(), FileMeta::from_bytes(bytes));
    }
    snapshot.version += 1;
    snapshot.expires = builder::default_expires(&RoleName::Snapshot, now);
    let signed = builder::sign_metadata(snapshot, keys, signers)?;
    Ok(signed.to_bytes())
}

// ---------------------------------------------------------------------------
// Verification

/// Verified trust data of one GUN, from its trust server or a referrer.
pub struct View {
    pub gun: String,
    pub source: &'static str,
    pub root: Root,
    pub roles: Vec<(RoleName, RoleKeys, Targets)>,
    pub invalid: Vec<(RoleName, String)>,
}

impl View {
    pub fn from_trusted(repo: &TrustedRepo) -> View {
        let roles = repo
            .roles()
            .filter_map(|(role, keys)| {
                repo.targets(role)
                    .map(|t| (role.clone(), keys.clone(), t.signed().clone()))
            })
            .collect();
        View {
            gun: repo.gun().to_string(),
            source: "trust server",
            root: repo.root().signed().clone(),
            roles,
            invalid: repo
                .invalid_roles()
                .iter()
                .map(|(r, e)| (r.clone(), e.to_string()))
                .collect(),
        }
    }

    pub fn merge(&mut self, other: View) {
        for (role, keys, targets) in other.roles {
            match self.roles.iter_mut().find(|(r, _, _)| *r == role) {
                Some((_, _, mine)) => mine.targets.extend(targets.targets),
                None => self.roles.push((role, keys, targets)),
            }
        }
        self.invalid.extend(other.invalid);
    }

    /// `tag` as content trust resolves it: `targets/releases` first, then
    /// `targets`, then other signers.
    pub fn resolve(&self, tag: &str) -> Option<(FileMeta, RoleName)> {
        let rank = |r: &RoleName| match r.as_str() {
            "targets/releases" => 0,
            "targets" => 1,
            _ => 2,
        };
        let mut roles: Vec<&(RoleName, RoleKeys, Targets)> = self.roles.iter().collect();
        roles.sort_by_key(|(r, _, _)| (rank(r), r.depth()));
        roles.into_iter().find_map(|(role, keys, targets)| {
            targets
                .targets
                .get(tag)
                .filter(|_| keys.allows_target(tag))
                .map(|m| (m.clone(), role.clone()))
        })
    }

    pub fn invalid_note(&self) -> String {
        if self.invalid.is_empty() {
            return String::new();
        }
        let parts: Vec<String> = self
            .invalid
            .iter()
            .map(|(r, e)| format!("{r} is not trusted: {e}"))
            .collect();
        format!(" ({})", parts.join("; "))
    }
}

/// Verifies an attached trust document `doc` (the signed metadata that
/// vouches for the manifest `manifest_digest` of `manifest_len` bytes)
/// against pinned root keys: `pins`, else the root keys of the root
/// `cached_root` gives for the document's GUN (the root this client
/// pinned for it).
pub fn verify_attached(
    doc: &[u8],
    manifest_digest: &str,
    manifest_len: usize,
    pins: &[String],
    cached_root: impl FnOnce(&str) -> Option<Vec<u8>>,
    now: DateTime<Utc>,
) -> Result<View, WorkflowError> {
    #[derive(Deserialize)]
    struct Doc {
        gun: String,
        files: BTreeMap<String, String>,
    }
    let doc: Doc = serde_json::from_slice(doc)
        .map_err(|e| WorkflowError::new(format!("the attached trust document is malformed: {e}")))?;
    let decode = |role: &str| -> Result<Vec<u8>, WorkflowError> {
        let text = doc
            .files
            .get(role)
            .ok_or_else(|| WorkflowError::new(format!("the attached trust document has no {role}")))?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| WorkflowError::new(format!("{role} is not base64: {e}")))
    };
    let mut pinned: Vec<String> = pins.to_vec();
    if pinned.is_empty() {
        // The root this client trusted for the original GUN.
        if let Some(bytes) = cached_root(&doc.gun) {
            if let Ok(root) = Signed::<Root>::from_bytes(&RoleName::Root, &bytes) {
                pinned = root
                    .signed()
                    .roles
                    .get("root")
                    .map(|r| r.keyids.clone())
                    .unwrap_or_default();
            }
        }
    }
    if pinned.is_empty() {
        return Err(WorkflowError::new(format!(
            "no root key is pinned for {}: pass --root-key ID (or BERTH_TRUST_ROOT_KEY) with a root key id `berth trust inspect` shows for it",
            doc.gun
        )));
    }
    let root_bytes = decode("root")?;
    let root =
        Signed::<Root>::from_bytes(&RoleName::Root, &root_bytes).map_err(|e| WorkflowError::new(e.to_string()))?;
    // A pin may name a root certificate key or the bare key inside it.
    for (id, key) in &root.signed().keys {
        if key.canonical_id().is_ok_and(|c| pinned.contains(&c)) && !pinned.contains(id) {
            pinned.push(id.clone());
        }
    }
    let pinning = TrustPinning {
        key_ids: pinned,
        ca_pem: None,
        disable_tofu: true,
    };
    repo::validate_root(None, &root, &doc.gun, Some(now), &pinning)?;
    repo::check_expiry(&RoleName::Root, root.signed(), now)?;
    let mut view = View {
        gun: doc.gun.clone(),
        source: "referrer",
        root: root.signed().clone(),
        roles: Vec::new(),
        invalid: Vec::new(),
    };
    let mut roles: Vec<RoleName> = doc
        .files
        .keys()
        .filter_map(|r| RoleName::parse(r).ok())
        .filter(|r| r.is_targets_like())
        .collect();
    roles.sort_by(|a, b| a.depth().cmp(&b.depth()).then_with(|| a.cmp(b)));
    let mut verified: BTreeMap<RoleName, (Targets, RoleKeys)> = BTreeMap::new();
    for role in roles {
        let bytes = decode(role.as_str())?;
        let checked = (|| -> Result<(Targets, RoleKeys), WorkflowError> {
            let keys = match role.parent() {
                None => repo::root_role_keys(root.signed(), &role)?,
                Some(parent) => {
                    let (parent_meta, parent_keys) = verified
                        .get(&parent)
                        .ok_or_else(|| WorkflowError::new(format!("{parent} is not trusted")))?;
                    repo::delegation_role_keys(parent_meta, parent_keys, &role)?
                }
            };
            let signed = Signed::<Targets>::from_bytes(&role, &bytes).map_err(|e| WorkflowError::new(e.to_string()))?;
            repo::check_targets_structure(&role, signed.signed())?;
            repo::verify_signatures(&signed, &keys)?;
            repo::check_expiry(&role, signed.signed(), now)?;
            Ok((signed.into_signed(), keys))
        })();
        match checked {
            Ok(v) => {
                verified.insert(role, v);
            }
            Err(e) if role == RoleName::Targets => return Err(e),
            Err(e) => view.invalid.push((role, e.to_string())),
        }
    }
    for (role, (targets, keys)) in verified {
        view.roles.push((role, keys, targets));
    }
    // Only what vouches for this manifest counts.
    let hex = manifest_digest.trim_start_matches("sha256:").to_string();
    let length = manifest_len as i64;
    for (_, _, targets) in &mut view.roles {
        targets
            .targets
            .retain(|_, meta| meta.sha256_hex().as_deref() == Some(hex.as_str()) && meta.length == length);
    }
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passphrase_classes() {
        assert_eq!(passphrase_class("root"), "ROOT");
        assert_eq!(passphrase_class("targets"), "TARGETS");
        assert_eq!(passphrase_class("snapshot"), "SNAPSHOT");
        assert_eq!(passphrase_class("targets/alice"), "DELEGATION");
        assert_eq!(passphrase_class("alice"), "DELEGATION");
    }

    #[test]
    fn slots_and_cka_ids() {
        assert_eq!(slot_cka_id("9a"), Ok(vec![1]));
        assert_eq!(slot_cka_id("9e"), Ok(vec![4]));
        assert_eq!(slot_cka_id("id:0a0b"), Ok(vec![10, 11]));
        assert!(slot_cka_id("id:").is_err());
        assert!(slot_cka_id("id:abc").is_err());
        assert!(slot_cka_id("zz").is_err());
        assert_eq!(describe_cka_id("01"), "slot 9a");
        assert_eq!(describe_cka_id("ff"), "id ff");
        assert!(matches!(token_selector(None), TokenSelector::Only));
        assert!(matches!(token_selector(Some("")), TokenSelector::Only));
        assert!(matches!(token_selector(Some("t")), TokenSelector::Label(l) if l == "t"));
    }

    #[test]
    fn guns_and_signer_roles() {
        assert_eq!(normalize_gun("alpine").as_deref(), Ok("docker.io/library/alpine"));
        assert_eq!(
            normalize_gun("registry.example:5000/team/app:1").as_deref(),
            Ok("registry.example:5000/team/app")
        );
        assert!(normalize_gun("").is_err());
        assert_eq!(
            signer_role("alice").map(|r| r.as_str().to_string()).as_deref(),
            Ok("targets/alice")
        );
        assert!(signer_role("releases").is_err());
        assert!(signer_role("Alice").is_err());
    }

    #[test]
    fn changes_apply_to_targets() {
        let now = Utc::now();
        let mut targets = Targets::new(now);
        Change::Add("v1".into(), FileMeta::from_bytes(b"manifest")).apply(&mut targets);
        assert!(targets.targets.contains_key("v1"));
        Change::Remove("v1".into()).apply(&mut targets);
        assert!(targets.targets.is_empty());
    }
}

/// `berth trust inspect`'s document of one repository: Docker's `trust
/// inspect` shape, plus signer thresholds and the roles that did not verify.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Inspection {
    pub name: String,
    /// `trust server` or `registry` (trust data attached to the image).
    pub verified_from: String,
    pub signed_tags: Vec<SignedTag>,
    pub signers: Vec<SignerKeys>,
    pub administrative_keys: Vec<SignerKeys>,
    pub untrusted_roles: Vec<UntrustedRole>,
}

/// A tag, the digest it is signed for, and who signed it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SignedTag {
    pub signed_tag: String,
    pub digest: String,
    pub signers: Vec<String>,
}

/// A signer (or an administrative role) and its keys.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SignerKeys {
    pub name: String,
    pub keys: Vec<KeyId>,
    /// Signatures needed; administrative roles leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub struct KeyId {
    #[serde(rename = "ID")]
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UntrustedRole {
    pub role: String,
    pub reason: String,
}

impl View {
    /// What `trust inspect` shows of this view; only `tag` when given.
    pub fn inspect(&self, tag: Option<&str>) -> Inspection {
        let signer_name = |role: &RoleName| match role {
            RoleName::Targets => "Repo Admin".to_string(),
            other => other.as_str().trim_start_matches("targets/").to_string(),
        };
        let mut tags: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for (role, keys, targets) in &self.roles {
            for (name, meta) in &targets.targets {
                if tag.is_some_and(|t| t != name) || !keys.allows_target(name) {
                    continue;
                }
                let entry = tags
                    .entry((name.clone(), meta.sha256_hex().unwrap_or_default()))
                    .or_default();
                if role.as_str() != "targets/releases" {
                    entry.insert(signer_name(role));
                }
            }
        }
        let key_ids = |ids: &[String]| ids.iter().map(|id| KeyId { id: id.clone() }).collect::<Vec<_>>();
        let mut signers = Vec::new();
        if let Some((_, _, top)) = self.roles.iter().find(|(r, _, _)| *r == RoleName::Targets) {
            for d in &top.delegations.roles {
                if d.name == "targets/releases" {
                    continue;
                }
                signers.push(SignerKeys {
                    name: d.name.trim_start_matches("targets/").to_string(),
                    keys: key_ids(&d.keyids),
                    threshold: Some(d.threshold),
                });
            }
        }
        let admin = |name: &str, role: &str| SignerKeys {
            name: name.to_string(),
            keys: self
                .root
                .roles
                .get(role)
                .map(|r| key_ids(&r.keyids))
                .unwrap_or_default(),
            threshold: None,
        };
        Inspection {
            name: self.gun.clone(),
            verified_from: self.source.to_string(),
            signed_tags: tags
                .into_iter()
                .map(|((signed_tag, digest), signers)| SignedTag {
                    signed_tag,
                    digest,
                    signers: signers.into_iter().collect(),
                })
                .collect(),
            signers,
            administrative_keys: vec![
                admin("Root", "root"),
                admin("Repository", "targets"),
                admin("Snapshot", "snapshot"),
                admin("Timestamp", "timestamp"),
            ],
            untrusted_roles: self
                .invalid
                .iter()
                .map(|(r, e)| UntrustedRole {
                    role: r.as_str().to_string(),
                    reason: e.clone(),
                })
                .collect(),
        }
    }
}
