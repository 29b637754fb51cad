//! `berth trust sign|revoke|signer add|signer remove|key rotate`: changes to
//! a repository's trust data, signed with the keys this client holds and
//! published to its trust server, then attached to the image.
//!
//! A new repository gets a root certificate for the GUN signed by the
//! client's root key, a targets key, and the trust server's snapshot and
//! timestamp keys (as Docker sets them up). A delegation whose threshold is
//! above one is signed by several key holders in turn: a signature short of
//! the threshold is attached to the image as pending, and the next holder's
//! `sign` adds to it and publishes once the threshold is met.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::remote::{attach, attached, Manifest, OCI_MANIFEST, PENDING_ARTIFACT, TRUST_ARTIFACT};
use super::{bail, Result, Signing, Target, TokenPlacement};
use crate::builder::{BuildError, RepoEditor};
use crate::client::{self as tuf, ClientError, TrustedRepo};
use crate::crypto;
use crate::keys::{PublicKey, Signer};
use crate::metadata::{FileMeta, RoleName, Signed as SignedMeta, Targets};
use crate::repo::{self, TrustPinning};
use crate::workflow::{
    add_signer, describe_location, next_snapshot, next_targets, pending_file, preferred_key, publish_keys,
    remove_signer, role_keys, roles_to_sign, signer_role, valid_signatures, Change, WorkflowError,
};

/// What a signing change came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signed {
    /// Published: every role that signs it met its threshold.
    Published,
    /// Short of signatures: the roles whose signature is attached to the
    /// image `subject` (a digest) as pending, with the valid signatures
    /// each has and the threshold it needs.
    Pending {
        subject: String,
        roles: Vec<(RoleName, usize, i64)>,
    },
}

/// What `signer add` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerAdded {
    /// The repository had `targets/releases` already (else the signer now
    /// signs it too).
    pub had_releases: bool,
}

fn to_json(value: &Value) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(WorkflowError::new)
}

impl Signing {
    /// Verified trust data of a GUN, or `None` when the server has none.
    pub fn load_trusted(&self, target: &Target, now: DateTime<Utc>) -> Result<Option<TrustedRepo>> {
        self.load_trusted_pinned(target, &TrustPinning::default(), now)
    }

    fn load_trusted_pinned(
        &self,
        target: &Target,
        pinning: &TrustPinning,
        now: DateTime<Utc>,
    ) -> Result<Option<TrustedRepo>> {
        let cache = self.cache_dir(&target.gun);
        let fetch = |name: &str, max: u64| target.remote.trust_get(&target.gun, name, max);
        match tuf::update(&target.gun, &cache, pinning, now, &fetch) {
            Ok(repo) => Ok(Some(repo)),
            Err(ClientError::RepositoryNotFound { .. }) => Ok(None),
            Err(e) => bail!("content trust: trust data of {} does not verify: {e}", target.gun),
        }
    }

    /// A new repository's editor and the signers of its first publication.
    /// A targets or snapshot key already in the store for the GUN (from
    /// `key generate --role ... --gun`, e.g. on a token) is used instead of
    /// a new targets key or the server's snapshot key.
    fn new_repo(&self, target: &Target, now: DateTime<Utc>) -> Result<(RepoEditor, Vec<Box<dyn Signer>>)> {
        let root = self.root_signer()?;
        let cert = crypto::create_root_certificate(root.as_ref(), &target.gun, now).map_err(WorkflowError::new)?;
        let keys = self.store.list().map_err(WorkflowError::new)?;
        let targets: Box<dyn Signer> = match preferred_key(&keys, "targets", &target.gun) {
            Some(info) => {
                self.note(&format!(
                    "Using targets key {} for {} ({})",
                    info.key_id,
                    target.gun,
                    describe_location(&self.store, info)
                ));
                self.signer_for_info(info)?
            }
            None => {
                let (info, signer) = self.generate_role_key("targets", &target.gun)?;
                self.note(&format!("Generated targets key {} for {}", info.key_id, target.gun));
                Box::new(signer)
            }
        };
        let snapshot = match preferred_key(&keys, "snapshot", &target.gun) {
            Some(info) => {
                self.note(&format!(
                    "Using snapshot key {} for {} ({})",
                    info.key_id,
                    target.gun,
                    describe_location(&self.store, info)
                ));
                info.public.clone()
            }
            None => target.remote.trust_key(&target.gun, "snapshot", false)?,
        };
        let timestamp = target.remote.trust_key(&target.gun, "timestamp", false)?;
        let editor = RepoEditor::create(
            &target.gun,
            &[cert],
            &[targets.public_key().clone()],
            &[snapshot],
            &[timestamp],
            now,
        )
        .map_err(WorkflowError::new)?;
        Ok((editor, vec![root, targets]))
    }

    fn editor_from(&self, repo: &TrustedRepo) -> Result<RepoEditor> {
        RepoEditor::from_trusted(repo).map_err(WorkflowError::new)
    }

    /// Signers for what `editor` is about to publish: the keys of root (when
    /// it changed), targets, and snapshot (when held here) this client holds.
    fn publish_signers(&self, editor: &RepoEditor, extra: Vec<Box<dyn Signer>>) -> Result<Vec<Box<dyn Signer>>> {
        let mut signers = extra;
        let held: BTreeSet<String> = signers
            .iter()
            .map(|s| s.public_key().canonical_id().unwrap_or_default())
            .collect();
        let wanted = publish_keys(editor, &held);
        signers.extend(self.signers_for(wanted.iter())?);
        Ok(signers)
    }

    fn publish_editor(
        &self,
        target: &Target,
        editor: &mut RepoEditor,
        signers: &[Box<dyn Signer>],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let refs: Vec<&dyn Signer> = signers.iter().map(|s| s.as_ref()).collect();
        let uploads = editor.publish(&refs, now).map_err(|e| match e {
            BuildError::MissingSigners { role, .. } => WorkflowError(format!(
                "no key for role {role} of {} in {}",
                target.gun,
                self.store.dir().display()
            )),
            other => WorkflowError::new(other),
        })?;
        target.remote.trust_publish(&target.gun, &uploads)?;
        self.keep_generated();
        Ok(())
    }

    /// Signs `tag` of `target` as the image `manifest` (already in the
    /// registry), as `signer` (a delegation) or with the roles whose keys
    /// this client holds; creates the repository's trust data on its first
    /// signature.
    pub fn sign(
        &self,
        target: &Target,
        tag: &str,
        manifest: &Manifest,
        signer: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Signed> {
        let meta = FileMeta::from_bytes(&manifest.bytes);
        match self.load_trusted(target, now)? {
            None => {
                if let Some(signer) = signer {
                    bail!(
                        "{signer} is not a signer of {}: add it first with `berth trust signer add {signer} {} --key {signer}.pub`",
                        target.gun,
                        target.gun
                    );
                }
                let (mut editor, extra) = self.new_repo(target, now)?;
                editor
                    .add_target(&RoleName::Targets, tag, meta, now)
                    .map_err(WorkflowError::new)?;
                let signers = self.publish_signers(&editor, extra)?;
                self.publish_editor(target, &mut editor, &signers, now)?;
            }
            Some(repo) => {
                let roles = roles_to_sign(&repo, signer, |k| self.holds(k))?;
                let change = Change::Add(tag.to_string(), meta);
                let outcome = self.update_targets(target, &repo, &roles, &change, manifest, tag, now)?;
                if outcome != Signed::Published {
                    return Ok(outcome);
                }
            }
        }
        self.attach_trust_data(target, tag, manifest, now)?;
        Ok(Signed::Published)
    }

    /// Applies `change` to each of `roles` and publishes the roles whose
    /// threshold is met; a role short of signatures is attached to the image
    /// as pending for the next key holder.
    #[allow(clippy::too_many_arguments)]
    fn update_targets(
        &self,
        target: &Target,
        repo: &TrustedRepo,
        roles: &[RoleName],
        change: &Change,
        subject: &Manifest,
        tag: &str,
        now: DateTime<Utc>,
    ) -> Result<Signed> {
        let remote = target.remote.as_ref();
        let pending_docs = attached(remote, &target.repository, &subject.digest, PENDING_ARTIFACT).unwrap_or_default();
        let mut complete: Vec<(RoleName, Vec<u8>)> = Vec::new();
        let mut partial: Vec<(RoleName, Vec<u8>, usize, i64)> = Vec::new();
        let mut adopted: Vec<String> = Vec::new();
        for role in roles {
            let keys = role_keys(repo, role)?;
            if let Change::Add(name, _) = change {
                if !keys.allows_target(name) {
                    bail!("{role} may not sign {name:?} (outside its paths)");
                }
            }
            let content = next_targets(repo, role, change, now);
            let next_version = content.version;
            // A pending signature of the same change, made by another key holder.
            let mut signed: Option<SignedMeta<Targets>> = None;
            for pending in &pending_docs {
                let Some(staged) = pending_file(&pending.annotations, &pending.document, &target.gun, role) else {
                    continue;
                };
                let s = staged.signed();
                if s.version == next_version && s.targets == content.targets && s.delegations == content.delegations {
                    let mut staged = staged;
                    staged.retain_signatures(|id| keys.keys.contains_key(id));
                    signed = Some(staged);
                    adopted.push(pending.digest.clone());
                    break;
                }
            }
            let mut signed = match signed {
                Some(s) => s,
                None => SignedMeta::new(content).map_err(WorkflowError::new)?,
            };
            let signers = self.signers_for(keys.keys.values())?;
            if signers.is_empty() {
                bail!("this client holds no key of {role} of {}", target.gun);
            }
            let refs: Vec<&dyn Signer> = signers.iter().map(|s| s.as_ref()).collect();
            signed
                .sign(&refs)
                .map_err(|e| WorkflowError::new(format!("signing {role}: {e}")))?;
            let valid = valid_signatures(&signed, &keys);
            if valid >= usize::try_from(keys.threshold).unwrap_or(usize::MAX) {
                complete.push((role.clone(), signed.to_bytes()));
            } else {
                partial.push((role.clone(), signed.to_bytes(), valid, keys.threshold));
            }
        }
        if !complete.is_empty() {
            let mut files = complete.clone();
            if let Some(snapshot) = self.client_snapshot(repo, &complete, now)? {
                files.push((RoleName::Snapshot, snapshot));
            }
            remote.trust_publish(&target.gun, &files)?;
        }
        for digest in &adopted {
            remote.delete_manifest(&target.repository, digest)?;
        }
        let subject_descriptor = subject.descriptor();
        for (role, bytes, _, _) in &partial {
            let doc = to_json(&json!({
                "gun": target.gun,
                "role": role.as_str(),
                "file": base64::engine::general_purpose::STANDARD.encode(bytes),
            }))?;
            let annotations = json!({
                "org.opencontainers.image.created": now.to_rfc3339_opts(SecondsFormat::Secs, true),
                "vnd.berth.trust.gun": target.gun,
                "vnd.berth.trust.role": role.as_str(),
                "vnd.berth.trust.tag": tag,
            });
            attach(
                remote,
                &target.repository,
                &subject_descriptor,
                PENDING_ARTIFACT,
                &doc,
                annotations,
            )?;
        }
        if partial.is_empty() {
            return Ok(Signed::Published);
        }
        Ok(Signed::Pending {
            subject: subject.digest.clone(),
            roles: partial
                .into_iter()
                .map(|(role, _, valid, threshold)| (role, valid, threshold))
                .collect(),
        })
    }

    /// A new snapshot for `changed` when this client holds the snapshot key
    /// (otherwise the trust server makes it).
    fn client_snapshot(
        &self,
        repo: &TrustedRepo,
        changed: &[(RoleName, Vec<u8>)],
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<u8>>> {
        let keys = repo::root_role_keys(repo.root().signed(), &RoleName::Snapshot).map_err(WorkflowError::new)?;
        if !keys.keys.values().any(|k| self.holds(k)) {
            return Ok(None);
        }
        let signers = self.signers_for(keys.keys.values())?;
        let refs: Vec<&dyn Signer> = signers.iter().map(|s| s.as_ref()).collect();
        let snapshot = next_snapshot(repo, &keys, changed, &refs, now).map_err(WorkflowError::new)?;
        Ok(Some(snapshot))
    }

    /// Attaches the signed metadata that vouches for `tag` to the image, and
    /// drops older trust referrers of the same tag.
    fn attach_trust_data(&self, target: &Target, tag: &str, manifest: &Manifest, now: DateTime<Utc>) -> Result<()> {
        let Some(repo) = self.load_trusted(target, now)? else {
            return Ok(());
        };
        let remote = target.remote.as_ref();
        let files: BTreeMap<String, String> = repo
            .files()
            .iter()
            .map(|(role, bytes)| {
                (
                    role.to_string(),
                    base64::engine::general_purpose::STANDARD.encode(bytes),
                )
            })
            .collect();
        let doc = to_json(&json!({"gun": target.gun, "tag": tag, "digest": manifest.digest, "files": files}))?;
        let old = remote.referrers(&target.repository, &manifest.digest, TRUST_ARTIFACT)?;
        let annotations = json!({
            "org.opencontainers.image.created": now.to_rfc3339_opts(SecondsFormat::Secs, true),
            "vnd.berth.trust.gun": target.gun,
            "vnd.berth.trust.tag": tag,
        });
        let new = attach(
            remote,
            &target.repository,
            &manifest.descriptor(),
            TRUST_ARTIFACT,
            &doc,
            annotations,
        )?;
        for descriptor in old {
            let same_tag = annotation(&descriptor, "gun") == Some(target.gun.as_str())
                && annotation(&descriptor, "tag") == Some(tag);
            let digest = descriptor.get("digest").and_then(Value::as_str).unwrap_or_default();
            if same_tag && digest != new {
                remote.delete_manifest(&target.repository, digest)?;
            }
        }
        Ok(())
    }

    /// Removes the signed `tag` from every role that signs it whose keys
    /// this client holds, and the referrers that vouched for it.
    pub fn revoke(&self, target: &Target, tag: &str, now: DateTime<Utc>) -> Result<Signed> {
        let repo = self
            .load_trusted(target, now)?
            .ok_or_else(|| WorkflowError::new(format!("no trust data for {}", target.gun)))?;
        let listing: Vec<(RoleName, FileMeta)> = repo
            .list_targets()
            .into_iter()
            .filter(|(_, name, _)| name == tag)
            .map(|(role, _, meta)| (role, meta))
            .collect();
        let Some((_, meta)) = listing.first().cloned() else {
            bail!("no signed tag {tag:?} in {}", target.gun);
        };
        let mut roles = Vec::new();
        for (role, _) in &listing {
            let keys = role_keys(&repo, role)?;
            if keys.keys.values().any(|k| self.holds(k)) {
                roles.push(role.clone());
            }
        }
        if roles.is_empty() {
            bail!(
                "tag {tag:?} of {} is signed by {} and this client holds none of their keys",
                target.gun,
                listing
                    .iter()
                    .map(|(r, _)| r.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let remote = target.remote.as_ref();
        let digest = format!("sha256:{}", meta.sha256_hex().unwrap_or_default());
        let subject = match remote.manifest(&target.repository, &digest)? {
            Some(m) => m,
            None => Manifest {
                digest,
                media_type: OCI_MANIFEST.into(),
                bytes: Vec::new(),
            },
        };
        let outcome = self.update_targets(
            target,
            &repo,
            &roles,
            &Change::Remove(tag.to_string()),
            &subject,
            tag,
            now,
        )?;
        if outcome == Signed::Published {
            // Referrers vouching for the revoked tag would otherwise outlive it.
            for descriptor in remote.referrers(&target.repository, &subject.digest, TRUST_ARTIFACT)? {
                if annotation(&descriptor, "tag") == Some(tag) {
                    let digest = descriptor.get("digest").and_then(Value::as_str).unwrap_or_default();
                    remote.delete_manifest(&target.repository, digest)?;
                }
            }
        }
        Ok(outcome)
    }

    /// Delegates `targets/<name>` (and `targets/releases`) to `keys`,
    /// creating the repository's trust data if it has none.
    pub fn add_signer(
        &self,
        target: &Target,
        name: &str,
        keys: &[PublicKey],
        threshold: i64,
        now: DateTime<Utc>,
    ) -> Result<SignerAdded> {
        let role = signer_role(name)?;
        let (mut editor, extra) = match self.load_trusted(target, now)? {
            Some(repo) => (self.editor_from(&repo)?, Vec::new()),
            None => self.new_repo(target, now)?,
        };
        let had_releases = add_signer(&mut editor, &role, keys, threshold, now)?;
        let signers = self.publish_signers(&editor, extra)?;
        self.publish_editor(target, &mut editor, &signers, now)?;
        Ok(SignerAdded { had_releases })
    }

    /// Removes the signer `name` from the repository.
    pub fn remove_signer(&self, target: &Target, name: &str, now: DateTime<Utc>) -> Result<()> {
        let role = signer_role(name)?;
        let repo = self
            .load_trusted(target, now)?
            .ok_or_else(|| WorkflowError::new(format!("no trust data for {}", target.gun)))?;
        let mut editor = self.editor_from(&repo)?;
        remove_signer(&mut editor, &role, name, &target.gun, now)?;
        let signers = self.publish_signers(&editor, Vec::new())?;
        self.publish_editor(target, &mut editor, &signers, now)
    }

    /// Replaces the key of `role` (`root`, `targets`, `snapshot`,
    /// `timestamp`): a new key here or on the token `token` names, or the
    /// trust server's with `server_managed`. The new key's id.
    pub fn rotate(
        &self,
        target: &Target,
        role: &str,
        server_managed: bool,
        token: Option<&TokenPlacement>,
        now: DateTime<Utc>,
    ) -> Result<String> {
        if token.is_some() && (server_managed || role == "timestamp") {
            bail!("a key the trust server holds cannot be on a token: drop --token or --server-managed");
        }
        let repo = self
            .load_trusted(target, now)?
            .ok_or_else(|| WorkflowError::new(format!("no trust data for {}: sign an image first", target.gun)))?;
        let mut editor = self.editor_from(&repo)?;
        let mut extra: Vec<Box<dyn Signer>> = Vec::new();
        let new_id = match role {
            "targets" => {
                if server_managed {
                    bail!("the targets key cannot be server-managed");
                }
                let (info, signer) = self.rotation_key(token, "targets", &target.gun)?;
                editor
                    .rotate_key(&RoleName::Targets, &[signer.public_key().clone()], 1)
                    .map_err(WorkflowError::new)?;
                extra.push(signer);
                info.key_id
            }
            "snapshot" => {
                let key = if server_managed {
                    target.remote.trust_key(&target.gun, "snapshot", true)?
                } else {
                    let (_, signer) = self.rotation_key(token, "snapshot", &target.gun)?;
                    let key = signer.public_key().clone();
                    extra.push(signer);
                    key
                };
                editor
                    .rotate_key(&RoleName::Snapshot, std::slice::from_ref(&key), 1)
                    .map_err(WorkflowError::new)?;
                key.id()
            }
            "timestamp" => {
                let key = target.remote.trust_key(&target.gun, "timestamp", true)?;
                editor
                    .rotate_key(&RoleName::Timestamp, std::slice::from_ref(&key), 1)
                    .map_err(WorkflowError::new)?;
                key.id()
            }
            "root" => {
                let (_, signer) = self.rotation_key(token, "root", "")?;
                let cert =
                    crypto::create_root_certificate(signer.as_ref(), &target.gun, now).map_err(WorkflowError::new)?;
                // The old root keys sign the new root too.
                let old: Vec<PublicKey> = repo::root_role_keys(editor.root(), &RoleName::Root)
                    .map_err(WorkflowError::new)?
                    .keys
                    .into_values()
                    .collect();
                extra.extend(self.signers_for(old.iter())?);
                editor
                    .rotate_root(std::slice::from_ref(&cert), 1)
                    .map_err(WorkflowError::new)?;
                extra.push(signer);
                cert.id()
            }
            other => bail!("cannot rotate {other:?}: use root, targets, snapshot or timestamp"),
        };
        let signers = self.publish_signers(&editor, extra)?;
        self.publish_editor(target, &mut editor, &signers, now)?;
        // The new root must verify from the cache's pinned one.
        self.load_trusted(target, now)?;
        Ok(new_id)
    }
}

/// A `vnd.berth.trust.<name>` annotation of a referrer's descriptor.
fn annotation<'v>(descriptor: &'v Value, name: &str) -> Option<&'v str> {
    descriptor
        .get("annotations")?
        .get(format!("vnd.berth.trust.{name}"))?
        .as_str()
}
