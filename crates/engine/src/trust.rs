//! Content trust on the node: trust policies (cluster state, table
//! `cluster/trust_policies`) and their enforcement where a container is
//! created, so every path that makes a container (CLI, API, services) is
//! covered.
//!
//! A policy names a repository pattern (`127.0.0.1:*/prod/*`, `prod/*`), the
//! signers whose signatures an image needs (`targets/<signer>` delegations)
//! and how many of them. The node verifies with the trust metadata in its own
//! trust store (the daemon's trust service; trust data is cluster state) and
//! the TUF client's checks: signatures and thresholds, expiry, rollback, and
//! root rotation against the root pinned per GUN on first use: pinned for
//! the cluster (`cluster/trust_pins`, the first node to verify a GUN pins
//! it, every other node starts from that pin), and kept with the node's
//! verified metadata under `<data-root>/trust/pinned/`.
//!
//! Verified state is cached in memory per GUN and reused while the trust
//! service serves the same timestamp and nothing has expired, so a `run`
//! with cached metadata costs a store read, a byte comparison and a lookup.
//!
//! **Architecture Invariant:** a refusal happens before anything of the
//! container exists, and names the policy, the image and what was missing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_model::{Image, Reference};
use berth_notary::client::{self, ClientError, FetchError, SignerRequirement, TrustedRepo};
use berth_notary::metadata::{FileMeta, Metadata as _, RoleName};
use berth_notary::repo::TrustPinning;
use berth_notary::server::ServerError;
use berth_notary::service::TrustService;
use berth_state::{ClusterCommand, Outcome, State};
use berth_store::Store;
use chrono::{DateTime, Utc};

use crate::{Engine, Error};

/// Trust policies by pattern.
pub use berth_state::tables::{TRUST_PINS, TRUST_POLICIES};

/// "Images of repositories matching `pattern` must be signed by `threshold`
/// of `signers`."
pub use berth_state::records::TrustPolicy;

/// What a policy means: its checks and the signers it requires.
pub trait PolicyRules {
    /// Checks the pattern, the signer names and the threshold.
    fn validate(&self) -> Result<(), String>;
    fn requirement(&self) -> SignerRequirement;
}

impl PolicyRules for TrustPolicy {
    fn validate(&self) -> Result<(), String> {
        validate_pattern(&self.pattern)?;
        if self.signers.is_empty() {
            return Err(format!("trust policy {:?} names no signer", self.pattern));
        }
        for signer in &self.signers {
            RoleName::parse(&format!("targets/{signer}"))
                .map_err(|e| format!("trust policy {:?}: signer {signer:?}: {e}", self.pattern))?;
        }
        if self.threshold < 1 || self.threshold > self.signers.len() {
            return Err(format!(
                "trust policy {:?}: threshold {} must be between 1 and the number of signers ({})",
                self.pattern,
                self.threshold,
                self.signers.len()
            ));
        }
        Ok(())
    }

    fn requirement(&self) -> SignerRequirement {
        SignerRequirement {
            roles: self
                .signers
                .iter()
                .map(|s| RoleName::Delegation(format!("targets/{s}")))
                .collect(),
            threshold: self.threshold,
        }
    }
}

/// A pattern: `[a-z0-9._:/*?-]`, at most 255 bytes, no empty segment.
pub fn validate_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() || pattern.len() > 255 {
        return Err(format!(
            "invalid repository pattern {pattern:?}: must be 1 to 255 characters"
        ));
    }
    if !pattern
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._:/*?-".contains(&b))
    {
        return Err(format!(
            "invalid repository pattern {pattern:?}: only a-z, 0-9, '.', '_', ':', '/', '-', '*' and '?' are allowed"
        ));
    }
    if pattern.split('/').any(str::is_empty) {
        return Err(format!("invalid repository pattern {pattern:?}: empty path segment"));
    }
    Ok(())
}

/// Whether `pattern` matches the GUN `gun` (`host[:port]/path`). A pattern
/// whose first segment names a host (has a `.` or `:`, or is `localhost`)
/// matches the whole GUN; any other pattern matches the repository path
/// after the host. `*` and `?` stay within a path segment; `**` crosses
/// segments.
pub fn pattern_matches(pattern: &str, gun: &str) -> bool {
    let first = pattern.split('/').next().unwrap_or_default();
    let names_host = first.contains('.') || first.contains(':') || first == "localhost";
    let subject = if names_host {
        gun
    } else {
        match gun.split_once('/') {
            Some((host, rest)) if host.contains('.') || host.contains(':') || host == "localhost" => rest,
            _ => gun,
        }
    };
    glob(pattern.as_bytes(), subject.as_bytes())
}

fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => {
            if let Some(rest) = rest.strip_prefix(b"*") {
                (0..=text.len()).any(|i| glob(rest, &text[i..]))
            } else {
                let segment_end = text.iter().position(|c| *c == b'/').unwrap_or(text.len());
                (0..=segment_end).any(|i| glob(rest, &text[i..]))
            }
        }
        Some((b'?', rest)) => matches!(text.split_first(), Some((c, tail)) if *c != b'/' && glob(rest, tail)),
        Some((p, rest)) => matches!(text.split_first(), Some((c, tail)) if c == p && glob(rest, tail)),
    }
}

/// Every policy, by pattern.
pub fn list_policies(store: &Store) -> Result<Vec<TrustPolicy>, Error> {
    match store.list::<TrustPolicy>(TRUST_POLICIES) {
        Ok(list) => Ok(list.into_iter().map(|(_, p)| p).collect()),
        // The table exists once a policy was ever set.
        Err(berth_store::Error::Storage { message, .. }) if message.contains("does not exist") => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// Adds or replaces the policy for its pattern.
pub fn put_policy(state: &State, policy: &TrustPolicy) -> Result<(), Error> {
    policy.validate().map_err(Error::Invalid)?;
    state.propose(ClusterCommand::PutTrustPolicy { policy: policy.clone() })?;
    Ok(())
}

/// Removes the policy for `pattern`; whether there was one.
pub fn remove_policy(state: &State, pattern: &str) -> Result<bool, Error> {
    let removed = state.propose(ClusterCommand::RemoveTrustPolicy {
        pattern: pattern.to_string(),
    })?;
    Ok(removed == Outcome::Removed(true))
}

/// What the node knows about trust: the node's trust service (opened with
/// the engine) and the verified metadata per GUN.
#[derive(Default)]
pub(crate) struct NodeTrust {
    service: Option<Arc<TrustService>>,
    verified: Mutex<HashMap<String, Verified>>,
}

impl NodeTrust {
    pub(crate) fn new(service: Option<Arc<TrustService>>) -> Self {
        Self {
            service,
            verified: Mutex::default(),
        }
    }
}

/// Opens the node's trust service on cluster state, with the seal secret
/// for server-held keys in `<data-root>/trust/seal.key` (0600); `None`,
/// logged, when it cannot open (trust policies then refuse what they cover).
pub(crate) fn open_service(data_root: &Path, state: &berth_state::State) -> Option<Arc<TrustService>> {
    let seal = match seal_secret(&data_root.join("trust")) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the trust service's key seal: content trust is unavailable");
            return None;
        }
    };
    match berth_notary::storage::TrustStore::open(state.clone()) {
        Ok(store) => Some(Arc::new(TrustService::new(store, seal))),
        Err(e) => {
            tracing::error!(error = %e, "cannot open the trust tables: content trust is unavailable");
            None
        }
    }
}

fn seal_secret(dir: &std::path::Path) -> std::io::Result<zeroize::Zeroizing<String>> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let path = dir.join("seal.key");
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() == 64 => return Ok(zeroize::Zeroizing::new(s.trim().to_string())),
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is not a 64-digit hex secret", path.display()),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let secret = zeroize::Zeroizing::new(hex::encode(rand::random::<[u8; 32]>()));
    let tmp = dir.join("seal.key.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(secret.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(secret)
}

/// A GUN's verified metadata, valid while the service serves `timestamp`
/// and until `valid_until`.
struct Verified {
    timestamp: Arc<Vec<u8>>,
    valid_until: DateTime<Utc>,
    repo: Arc<TrustedRepo>,
}

impl NodeTrust {
    /// The GUN's verified metadata at `now`: from the cache when the trust
    /// service's timestamp is the one verified last, else a full TUF update
    /// against the pinned root in `pinned_dir`.
    pub(crate) fn verified(
        &self,
        service: &TrustService,
        pinned_dir: &Path,
        state: &State,
        gun: &str,
        now: DateTime<Utc>,
    ) -> Result<Arc<TrustedRepo>, ClientError> {
        let timestamp = service.get(gun, "timestamp", now).map_err(|e| match e {
            ServerError::MetadataNotFound { .. } => ClientError::RepositoryNotFound { gun: gun.to_string() },
            other => ClientError::Fetch {
                name: "timestamp.json".into(),
                reason: other.to_string(),
            },
        })?;
        {
            let cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(hit) = cache.get(gun) {
                if now <= hit.valid_until && hit.timestamp.as_slice() == timestamp.as_slice() {
                    return Ok(hit.repo.clone());
                }
            }
        }
        let fetch = |name: &str, _max: u64| -> Result<Vec<u8>, FetchError> {
            let name = name.strip_suffix(".json").unwrap_or(name);
            match service.get(gun, name, now) {
                Ok(bytes) => Ok(bytes.as_ref().clone()),
                Err(ServerError::MetadataNotFound { .. }) => Err(FetchError::NotFound),
                Err(e) => Err(FetchError::Other(e.to_string())),
            }
        };
        let dir = pinned_dir.join(escape_gun(gun));
        seed_pin(state, &dir, gun);
        let repo = Arc::new(client::update(gun, &dir, &TrustPinning::default(), now, &fetch)?);
        record_pin(state, &dir, gun);
        let mut valid_until = repo.root().signed().expires;
        valid_until = valid_until.min(repo.timestamp().signed().expires());
        valid_until = valid_until.min(repo.snapshot().signed().expires());
        for (role, _) in repo.roles() {
            if let Some(t) = repo.targets(role) {
                valid_until = valid_until.min(t.signed().expires());
            }
        }
        // The timestamp the metadata was verified with, as the client saw it.
        let verified_timestamp = Arc::new(repo.timestamp().to_bytes());
        let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        cache.insert(
            gun.to_string(),
            Verified {
                timestamp: verified_timestamp,
                valid_until,
                repo: repo.clone(),
            },
        );
        Ok(repo)
    }
}

/// The cluster's pinned root of `gun` (`cluster/trust_pins`), written as
/// this node's trusted root when it has none yet: every node verifies from
/// the root the cluster first trusted, not from what it meets first.
fn seed_pin(state: &State, dir: &Path, gun: &str) {
    let root = dir.join("root.json");
    if root.exists() {
        return;
    }
    let pinned = match state.store().get::<String>(TRUST_PINS, gun) {
        Ok(Some(pinned)) => pinned,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(%gun, error = %e, "reading the cluster's pinned trust root");
            return;
        }
    };
    let written = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&root, pinned.as_bytes()));
    if let Err(e) = written {
        tracing::warn!(%gun, error = %e, "writing the cluster's pinned trust root");
    }
}

/// After a first verification, the root this node trusts becomes the
/// cluster's pin of `gun` when the cluster has none (the first pin stays).
fn record_pin(state: &State, dir: &Path, gun: &str) {
    if matches!(state.store().get::<String>(TRUST_PINS, gun), Ok(Some(_))) {
        return;
    }
    let Ok(root) = std::fs::read_to_string(dir.join("root.json")) else {
        return;
    };
    let pinned = state.propose(ClusterCommand::PinTrustRoot {
        gun: gun.to_string(),
        root,
    });
    if let Err(e) = pinned {
        tracing::warn!(%gun, error = %e, "pinning the trust root in cluster state (tried again at the next verification)");
    }
}

pub use berth_notary::client::escape_gun;

/// What must be signed: a repository, and a tag (or, for a digest
/// reference, any tag).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Candidate {
    gun: String,
    tag: Option<String>,
    shown: String,
}

fn candidate(reference: &str) -> Option<Candidate> {
    let parsed = Reference::parse(reference).ok()?;
    Some(Candidate {
        gun: format!("{}/{}", parsed.registry, parsed.repository),
        tag: if parsed.digest.is_some() {
            None
        } else {
            parsed.tag.clone()
        },
        shown: parsed.familiar(),
    })
}

/// Every name the image is used under or was known by. The reference
/// itself, when it names a repository, is checked as asked (its tag must be
/// signed for this image). Every other name, current tags and the
/// `name@digest` it was loaded, pulled or pushed as, is checked by digest in
/// its own repository: the image's manifest must be signed there. So an
/// image run by its id, by another name, or after its tag was removed
/// passes the same policies as under the names it came with.
fn candidates(reference: &str, image: &Image) -> Vec<Candidate> {
    let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
    let by_id = reference.starts_with("sha256:")
        || (!hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) && image.id.contains(hex));
    let mut all: Vec<Candidate> = if by_id {
        Vec::new()
    } else {
        candidate(reference).into_iter().collect()
    };
    for name in image.tags.iter().chain(&image.repo_digests) {
        let Ok(parsed) = Reference::parse(name) else { continue };
        let gun = format!("{}/{}", parsed.registry, parsed.repository);
        if all.iter().any(|c| c.gun == gun) {
            continue;
        }
        all.push(Candidate {
            gun,
            tag: None,
            shown: format!("{}@{}", parsed.familiar_name(), image.manifest_digest),
        });
    }
    all
}

/// Whether a policy's pattern covers every repository (`**`): an image with
/// no name at all is refused under such a policy, since no signature can
/// name it.
fn is_catch_all(pattern: &str) -> bool {
    const PROBES: [&str; 4] = [
        "docker.io/library/a",
        "localhost/a",
        "registry.example:5000/team/app",
        "127.0.0.1:1/a/b/c/d",
    ];
    PROBES.iter().all(|gun| pattern_matches(pattern, gun))
}

/// Why an image does not satisfy a policy, in words.
fn missing(
    repo: &TrustedRepo,
    policy: &TrustPolicy,
    candidate: &Candidate,
    digest: &str,
    length: u64,
) -> Result<String, String> {
    let requirement = policy.requirement();
    let want_hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    let matches_image =
        |meta: &FileMeta| meta.sha256_hex().as_deref() == Some(want_hex) && meta.length as u64 == length;
    let under_signed: Vec<String> = requirement
        .roles
        .iter()
        .filter_map(|r| repo.invalid_roles().get(r).map(|e| format!("{r} is not trusted ({e})")))
        .collect();
    let note = if under_signed.is_empty() {
        String::new()
    } else {
        format!("; {}", under_signed.join("; "))
    };
    match &candidate.tag {
        Some(tag) => match repo.resolve_target(tag, Some(&requirement)) {
            Ok(target) if matches_image(&target.meta) => Ok(String::new()),
            Ok(target) => Err(format!(
                "tag {tag:?} is signed by {} for manifest sha256:{}, but the image is {digest}",
                join_roles(&target.roles),
                target.meta.sha256_hex().unwrap_or_default()
            )),
            Err(ClientError::SignersThresholdNotMet { found, threshold, .. }) => Err(format!(
                "tag {tag:?} needs signatures by {threshold} of [{}], found {}{note}",
                policy.signers.join(", "),
                if found.is_empty() {
                    "none".to_string()
                } else {
                    found.join(", ")
                }
            )),
            Err(e) => Err(format!("{e}{note}")),
        },
        None => {
            // A digest reference: any tag these signers signed for this manifest.
            let mut signed_by: Vec<RoleName> = Vec::new();
            for role in &requirement.roles {
                let Some(targets) = repo.targets(role) else { continue };
                if targets.signed().targets.values().any(matches_image) {
                    signed_by.push(role.clone());
                }
            }
            if signed_by.len() >= requirement.threshold {
                Ok(String::new())
            } else {
                Err(format!(
                    "manifest {digest} needs signatures by {} of [{}], found {}{note}",
                    requirement.threshold,
                    policy.signers.join(", "),
                    if signed_by.is_empty() {
                        "none".to_string()
                    } else {
                        join_roles(&signed_by)
                    }
                ))
            }
        }
    }
}

fn join_roles(roles: &[RoleName]) -> String {
    roles.iter().map(RoleName::to_string).collect::<Vec<_>>().join(", ")
}

impl Engine {
    /// The node's trust service (the Notary-compatible server the API
    /// serves), when it could be opened.
    pub fn trust_service(&self) -> Option<Arc<TrustService>> {
        self.trust.service.clone()
    }

    pub fn trust_policies(&self) -> Result<Vec<TrustPolicy>, Error> {
        list_policies(&self.store)
    }

    pub fn set_trust_policy(&self, policy: &TrustPolicy) -> Result<(), Error> {
        put_policy(self.state(), policy)
    }

    pub fn remove_trust_policy(&self, pattern: &str) -> Result<bool, Error> {
        remove_policy(self.state(), pattern)
    }

    fn pinned_dir(&self) -> PathBuf {
        self.data_root.join("trust").join("pinned")
    }

    /// Refuses `image` (asked for as `reference`) unless every policy whose
    /// pattern matches its repository is satisfied.
    pub(crate) fn check_trust_policies(&self, reference: &str, image: &Image) -> Result<(), Error> {
        let policies = self.trust_policies()?;
        if policies.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let now = Utc::now();
        let candidates = candidates(reference, image);
        if candidates.is_empty() {
            if let Some(policy) = policies.iter().find(|p| is_catch_all(&p.pattern)) {
                return Err(Error::Forbidden(format!(
                    "trust policy {:?} refuses image {}: it has no name, so no signature can cover it \
                     (tag it, push it and sign it, or pull it by a signed name)",
                    policy.pattern, image.id
                )));
            }
        }
        for candidate in candidates {
            for policy in policies.iter().filter(|p| pattern_matches(&p.pattern, &candidate.gun)) {
                let refuse = |why: String| {
                    Error::Forbidden(format!(
                        "trust policy {:?} refuses image {}: {why}",
                        policy.pattern, candidate.shown
                    ))
                };
                let Some(service) = self.trust.service.as_deref() else {
                    return Err(refuse("content trust is not available on this node".into()));
                };
                let length = self
                    .images
                    .blob_path(&image.manifest_digest)
                    .and_then(|p| {
                        std::fs::metadata(&p)
                            .map(|m| m.len())
                            .map_err(|_| berth_image::Error::BlobNotFound(image.manifest_digest.to_string()))
                    })
                    .map_err(|e| refuse(format!("its manifest is not stored on this node: {e}")))?;
                let repo = match self
                    .trust
                    .verified(service, &self.pinned_dir(), self.state(), &candidate.gun, now)
                {
                    Ok(repo) => repo,
                    Err(ClientError::RepositoryNotFound { .. }) => {
                        return Err(refuse(format!("no trust data for {} on this node", candidate.gun)))
                    }
                    Err(e) => {
                        return Err(refuse(format!(
                            "the trust data of {} does not verify: {e}",
                            candidate.gun
                        )))
                    }
                };
                if let Err(why) = missing(&repo, policy, &candidate, &image.manifest_digest, length) {
                    return Err(refuse(why));
                }
                tracing::info!(
                    policy = %policy.pattern,
                    image = %candidate.shown,
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "trust policy satisfied"
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let cases = [
            ("prod/*", "127.0.0.1:5000/prod/app", true),
            ("prod/*", "127.0.0.1:5000/prod/team/app", false),
            ("prod/**", "127.0.0.1:5000/prod/team/app", true),
            ("prod/*", "127.0.0.1:5000/dev/app", false),
            ("127.0.0.1:*/prod/*", "127.0.0.1:5000/prod/app", true),
            ("127.0.0.1:*/prod/*", "10.0.0.1:5000/prod/app", false),
            ("127.0.0.1:*/prod/*", "127.0.0.1:5000/production/app", false),
            ("registry.example.com/app", "registry.example.com/app", true),
            ("registry.example.com/app", "registry.example.com/app2", false),
            ("library/busybox", "docker.io/library/busybox", true),
            ("*/app?", "host:1/team/app1", true),
            ("*/app?", "host:1/team/app", false),
            ("**", "anything:1/at/all", true),
            ("localhost/*", "localhost/app", true),
        ];
        for (pattern, gun, expected) in cases {
            assert_eq!(pattern_matches(pattern, gun), expected, "{pattern} vs {gun}");
        }
    }

    #[test]
    fn an_image_is_checked_under_every_name_it_has_or_had() {
        let manifest = format!("sha256:{}", "cd".repeat(32));
        let image = Image {
            id: format!("sha256:{}", "ab".repeat(32)).into(),
            manifest_digest: manifest.clone().into(),
            tags: vec!["prod/app:1".into()],
            repo_digests: vec![
                format!("prod/app@{manifest}"),
                format!("127.0.0.1:5000/team/app@{manifest}"),
            ],
            index_digest: None,
            layers: Vec::new(),
            diff_ids: Vec::new(),
            size: 0,
            created: None,
            architecture: String::new(),
            os: String::new(),
            config: Default::default(),
        };
        let guns = |reference: &str| -> Vec<(String, Option<String>)> {
            candidates(reference, &image)
                .into_iter()
                .map(|c| (c.gun, c.tag))
                .collect()
        };
        // By id: every name, each checked by digest in its repository.
        let by_digest = vec![
            ("docker.io/prod/app".to_string(), None),
            ("127.0.0.1:5000/team/app".to_string(), None),
        ];
        assert_eq!(guns(&image.id), by_digest);
        assert_eq!(guns(&"ab".repeat(6)), by_digest);
        let shown: Vec<String> = candidates(&image.id, &image).into_iter().map(|c| c.shown).collect();
        assert_eq!(
            shown,
            [
                format!("prod/app@{manifest}"),
                format!("127.0.0.1:5000/team/app@{manifest}")
            ]
        );
        // By another name: that name's tag, then every other name by digest.
        let by_name = guns("other:2");
        assert_eq!(
            by_name[0],
            ("docker.io/library/other".to_string(), Some("2".to_string()))
        );
        assert_eq!(&by_name[1..], &by_digest[..]);
        // By its own tag: the tag, and the other repository by digest.
        assert_eq!(
            guns("prod/app:1"),
            [
                ("docker.io/prod/app".to_string(), Some("1".to_string())),
                ("127.0.0.1:5000/team/app".to_string(), None)
            ]
        );
        // A nameless image has no candidate: catch-all policies refuse it.
        let nameless = Image {
            tags: Vec::new(),
            repo_digests: Vec::new(),
            ..image.clone()
        };
        assert!(candidates(&nameless.id, &nameless).is_empty());
        assert!(is_catch_all("**"));
        assert!(!is_catch_all("prod/**"));
        assert!(!is_catch_all("*"));
        assert!(!is_catch_all("127.0.0.1:*/**"));
    }

    #[test]
    fn policy_validation() {
        let policy = |pattern: &str, signers: &[&str], threshold| TrustPolicy {
            pattern: pattern.into(),
            signers: signers.iter().map(|s| s.to_string()).collect(),
            threshold,
            created: String::new(),
        };
        assert!(policy("prod/*", &["alice"], 1).validate().is_ok());
        let err = policy("prod/*", &["alice"], 2).validate().unwrap_err();
        assert!(
            err.contains("threshold 2 must be between 1 and the number of signers (1)"),
            "{err}"
        );
        let err = policy("Prod/*", &["alice"], 1).validate().unwrap_err();
        assert!(err.contains("only a-z"), "{err}");
        let err = policy("prod//x", &["alice"], 1).validate().unwrap_err();
        assert!(err.contains("empty path segment"), "{err}");
        let err = policy("prod/*", &[], 1).validate().unwrap_err();
        assert!(err.contains("names no signer"), "{err}");
        let err = policy("prod/*", &["Alice"], 1).validate().unwrap_err();
        assert!(err.contains("signer \"Alice\""), "{err}");
    }

    #[test]
    fn policy_store_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(Store::open(&dir.path().join("s.redb")).unwrap()).unwrap();
        let store = state.store().clone();
        assert!(list_policies(&store).unwrap().is_empty());
        let a = TrustPolicy {
            pattern: "prod/*".into(),
            signers: vec!["alice".into()],
            threshold: 1,
            created: "t".into(),
        };
        let b = TrustPolicy {
            pattern: "127.0.0.1:*/x/*".into(),
            signers: vec!["alice".into(), "bob".into()],
            threshold: 2,
            created: "t".into(),
        };
        put_policy(&state, &a).unwrap();
        put_policy(&state, &b).unwrap();
        assert_eq!(list_policies(&store).unwrap(), vec![b.clone(), a.clone()]);
        // Replacing keeps one policy per pattern.
        let a2 = TrustPolicy {
            signers: vec!["carol".into()],
            ..a.clone()
        };
        put_policy(&state, &a2).unwrap();
        assert_eq!(list_policies(&store).unwrap(), vec![b.clone(), a2]);
        // An invalid policy is not stored.
        let bad = TrustPolicy {
            threshold: 3,
            ..b.clone()
        };
        assert!(matches!(put_policy(&state, &bad), Err(Error::Invalid(_))));
        assert!(remove_policy(&state, "prod/*").unwrap());
        assert!(!remove_policy(&state, "prod/*").unwrap());
        assert_eq!(list_policies(&store).unwrap(), vec![b]);
    }

    /// A trust service on a temp store with `gun` published: `targets`
    /// signs tag `root-signed`, delegation `targets/alice` signs `v1`; both
    /// for `manifest`.
    fn published(dir: &Path, gun: &str, manifest: &[u8]) -> TrustService {
        use berth_notary::builder::RepoEditor;
        use berth_notary::crypto::{create_root_certificate, SoftwareSigner};
        use berth_notary::keys::Signer as _;
        use berth_notary::storage::TrustStore;
        let store = Store::open(&dir.join("s.redb")).unwrap();
        let service = TrustService::new(
            TrustStore::open(State::open(store).unwrap()).unwrap(),
            zeroize::Zeroizing::new("ab".repeat(32)),
        );
        let now = Utc::now();
        let root = SoftwareSigner::generate_ecdsa();
        let targets = SoftwareSigner::generate_ecdsa();
        let alice = SoftwareSigner::generate_ecdsa();
        let cert = create_root_certificate(&root, gun, now).unwrap();
        let timestamp = service.get_key(gun, "timestamp").unwrap();
        let snapshot = service.get_key(gun, "snapshot").unwrap();
        let mut editor = RepoEditor::create(
            gun,
            &[cert],
            &[targets.public_key().clone()],
            &[snapshot],
            &[timestamp],
            now,
        )
        .unwrap();
        let alice_role = RoleName::Delegation("targets/alice".into());
        editor
            .add_delegation(&alice_role, &[alice.public_key().clone()], 1, &["".into()], now)
            .unwrap();
        editor
            .add_target(&alice_role, "v1", FileMeta::from_bytes(manifest), now)
            .unwrap();
        editor
            .add_target(&RoleName::Targets, "root-signed", FileMeta::from_bytes(manifest), now)
            .unwrap();
        let uploads = editor.publish(&[&root, &targets, &alice], now).unwrap();
        service
            .update(gun, uploads.into_iter().map(|(r, b)| (r.to_string(), b)).collect(), now)
            .unwrap();
        service
    }

    #[test]
    fn verification_against_the_trust_service_and_its_cache() {
        let dir = tempfile::tempdir().unwrap();
        let gun = "127.0.0.1:5000/prod/app";
        let manifest = br#"{"schemaVersion":2}"#;
        let digest = format!("sha256:{}", FileMeta::from_bytes(manifest).sha256_hex().unwrap());
        let service = published(dir.path(), gun, manifest);
        let node = NodeTrust::default();
        let pinned = dir.path().join("pinned");
        let cluster = State::open(Store::open(&dir.path().join("cluster.redb")).unwrap()).unwrap();
        let policy = |signers: &[&str], threshold| TrustPolicy {
            pattern: "prod/*".into(),
            signers: signers.iter().map(|s| s.to_string()).collect(),
            threshold,
            created: String::new(),
        };
        let tag = |t: &str| Candidate {
            gun: gun.into(),
            tag: Some(t.into()),
            shown: format!("{gun}:{t}"),
        };
        let by_digest = Candidate {
            gun: gun.into(),
            tag: None,
            shown: gun.into(),
        };
        let len = manifest.len() as u64;

        let repo = node.verified(&service, &pinned, &cluster, gun, Utc::now()).unwrap();
        assert_eq!(
            missing(&repo, &policy(&["alice"], 1), &tag("v1"), &digest, len),
            Ok(String::new())
        );
        assert_eq!(
            missing(&repo, &policy(&["alice"], 1), &by_digest, &digest, len),
            Ok(String::new())
        );
        let err = missing(&repo, &policy(&["bob"], 1), &tag("v1"), &digest, len).unwrap_err();
        assert_eq!(err, "tag \"v1\" needs signatures by 1 of [bob], found none");
        let err = missing(&repo, &policy(&["alice", "bob"], 2), &tag("v1"), &digest, len).unwrap_err();
        assert_eq!(
            err,
            "tag \"v1\" needs signatures by 2 of [alice, bob], found targets/alice"
        );
        // Signed by targets only: a policy naming signers wants delegations.
        let err = missing(&repo, &policy(&["alice"], 1), &tag("root-signed"), &digest, len).unwrap_err();
        assert!(err.contains("found none"), "{err}");
        let other = format!("sha256:{}", "0".repeat(64));
        let err = missing(&repo, &policy(&["alice"], 1), &tag("v1"), &other, len).unwrap_err();
        assert_eq!(
            err,
            format!(
                "tag \"v1\" is signed by targets/alice for manifest {}, but the image is {other}",
                &digest
            )
        );
        let err = missing(&repo, &policy(&["alice"], 1), &by_digest, &other, len).unwrap_err();
        assert!(
            err.starts_with(&format!(
                "manifest {other} needs signatures by 1 of [alice], found none"
            )),
            "{err}"
        );
        // The root is pinned on first use, on the node and for the cluster.
        let root_file = pinned.join(escape_gun(gun)).join("root.json");
        let pin = cluster.store().get::<String>(TRUST_PINS, gun).unwrap();
        assert_eq!(pin, Some(std::fs::read_to_string(&root_file).unwrap()));
        // Another node starts from the cluster's pin: one pinned to
        // another root refuses this trust data.
        let other_dir = tempfile::tempdir().unwrap();
        let impostor = published(other_dir.path(), gun, manifest);
        let other_cluster = State::open(Store::open(&other_dir.path().join("cluster.redb")).unwrap()).unwrap();
        let other_pinned = other_dir.path().join("pinned");
        let from_pin = NodeTrust::default().verified(&impostor, &other_pinned, &cluster, gun, Utc::now());
        assert!(from_pin.is_err(), "another root verified against the cluster's pin");
        let fresh = NodeTrust::default().verified(&impostor, &other_pinned.join("x"), &other_cluster, gun, Utc::now());
        assert!(fresh.is_ok(), "without a pin, trust on first use");
        assert!(matches!(
            node.verified(&service, &pinned, &cluster, "127.0.0.1:5000/prod/none", Utc::now()),
            Err(ClientError::RepositoryNotFound { .. })
        ));

        // Cached: the same verified state while the timestamp is unchanged.
        let started = std::time::Instant::now();
        let rounds = 2000;
        for _ in 0..rounds {
            let again = node.verified(&service, &pinned, &cluster, gun, Utc::now()).unwrap();
            assert!(Arc::ptr_eq(&again, &repo));
            assert!(missing(&again, &policy(&["alice"], 1), &tag("v1"), &digest, len).is_ok());
        }
        let per_check = started.elapsed() / rounds;
        eprintln!("cached trust verification: {per_check:?} per check");
        // Past the metadata's expiry the cache is not used and the update fails.
        let later = Utc::now() + chrono::Duration::days(4000);
        assert!(node.verified(&service, &pinned, &cluster, gun, later).is_err());
    }

    #[test]
    fn gun_file_names() {
        assert_eq!(escape_gun("127.0.0.1:5000/prod/app"), "127.0.0.1%3A5000%2Fprod%2Fapp");
    }
}
