//! The audit log: who did what to which object, when, from where, with
//! which result. Entries are hash-chained (sha256 of the previous hash and
//! the entry's canonical JSON); the head of the chain is signed on every
//! append and a checkpoint is signed every N entries, with HMAC-SHA256
//! under the root-only key `<data-root>/auth/audit.key` and, once the daemon
//! has set one, with the cluster's key ([`ChainSigner`], the cluster CA's
//! ECDSA key) so that anyone holding the CA certificate can check an
//! exported log. So an edited, removed or reordered entry breaks the chain,
//! and a rewritten chain (or a cut-off tail) no longer matches the
//! signatures.
//!
//! How much is recorded is set per resource ([`AuditLevel`], stored in
//! `cluster/audit_levels`); every appended entry also goes to the sink the
//! daemon set (syslog), if any.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Makes every audit append fail, for tests of the fail-closed path (the
/// API refuses changes it cannot record). Nothing but a test sets it.
#[doc(hidden)]
pub static INJECTED_APPEND_FAILURE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
use crate::{Access, Error, Resource, Result, AUDIT, AUDIT_SIGNATURES, RESOURCES};

/// Audit levels set per resource (key: resource name); resources without a
/// record are at [`AuditLevel::Metadata`].
pub use berth_state::tables::AUDIT_LEVELS;

pub use berth_state::records::AuditLevel;

use berth_state::records::AUDIT_GENESIS as GENESIS;

/// `started` entries kept until their outcome carries them into the log
/// (replicated: see [`Access::audit_begin`]), by time and a random suffix.
pub const AUDIT_PENDING: berth_store::Table = berth_store::Table("local/audit_pending");

/// A `started` entry not yet in the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    entry: NewAuditEntry,
    time: String,
    /// The outcome, with its time, when it could not be appended with the
    /// entry: appended with it later.
    #[serde(default)]
    outcome: Option<(NewAuditEntry, String)>,
}

/// What [`Access::audit_begin`] answers, for [`Access::audit_finish`].
#[derive(Debug)]
pub enum Begun {
    /// The entry is in the log.
    Appended,
    /// The entry waits in the node's store for its outcome.
    Pending { key: String, pending: Box<Pending> },
}

fn injected_failure() -> Result<()> {
    if INJECTED_APPEND_FAILURE.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(Error::Invalid(
            "the audit log cannot be written (failure injected by a test)".into(),
        ));
    }
    Ok(())
}

/// The default level of a resource without a setting.
pub fn level(resource: Resource) -> AuditLevel {
    let _ = resource;
    AuditLevel::Metadata
}

/// The cluster's signing key for the chain (the cluster CA's key). The
/// daemon implements it; this crate only asks for signatures and checks.
pub trait ChainSigner: Send + Sync {
    /// Names the key, e.g. the SHA-256 fingerprint of the CA certificate.
    fn key_id(&self) -> String;
    fn sign(&self, message: &[u8]) -> Vec<u8>;
    fn verify(&self, message: &[u8], signature: &[u8]) -> bool;
}

/// Receives every appended entry (syslog forwarding). It must not block
/// for long: it runs under the append lock.
pub type AuditSink = Arc<dyn Fn(&AuditEntry) + Send + Sync>;

/// Audit settings that change at run time.
#[derive(Default)]
pub(crate) struct AuditExtras {
    /// Follows cluster state ([`follow_level`]).
    pub(crate) levels: Arc<RwLock<HashMap<Resource, AuditLevel>>>,
    signer: RwLock<Option<Arc<dyn ChainSigner>>>,
    sink: RwLock<Option<AuditSink>>,
    /// Keys of `local/audit_pending` whose request is still running.
    in_flight: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Keeps `levels` as cluster state has them after a `SetAuditLevel`.
pub(crate) fn follow_level(levels: &RwLock<HashMap<Resource, AuditLevel>>, resource: &str, level: AuditLevel) {
    if let Some(r) = Resource::parse(resource) {
        let mut next = read(levels);
        next.insert(r, level);
        write(levels, next);
    }
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    match lock.read() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

fn write<T>(lock: &RwLock<T>, value: T) {
    match lock.write() {
        Ok(mut g) => *g = value,
        Err(p) => *p.into_inner() = value,
    }
}

/// What a signature stands for. Head and checkpoint signatures sign
/// different messages, so a checkpoint cannot be passed off as the head of
/// a log cut there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signed {
    /// The last entry: the log ends here.
    Head,
    /// Every N-th entry, kept: the log went through here.
    Checkpoint,
}

impl Signed {
    pub fn name(self) -> &'static str {
        match self {
            Signed::Head => "head",
            Signed::Checkpoint => "checkpoint",
        }
    }

    /// The kind a signature stored under `key` must be.
    fn of_key(key: &str) -> Self {
        if key == HEAD {
            Signed::Head
        } else {
            Signed::Checkpoint
        }
    }
}

/// The message a signature covers.
fn signed_message(kind: Signed, seq: u64, hash: &str) -> Vec<u8> {
    format!("berth-audit:{}:{seq}:{hash}", kind.name()).into_bytes()
}

/// The message signatures covered before they were typed (migrated at start).
fn legacy_message(seq: u64, hash: &str) -> Vec<u8> {
    format!("berth-audit:{seq}:{hash}").into_bytes()
}

/// An exported audit log: everything `audit verify` needs, offline. On the
/// wire it is `berth_model::audit::AuditExport`, field for field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditExport {
    pub entries: Vec<AuditEntry>,
    /// `(key, signature)`: `head` and the checkpoints.
    pub signatures: Vec<(String, Signature)>,
}

impl From<AuditExport> for berth_model::audit::AuditExport {
    fn from(e: AuditExport) -> Self {
        Self {
            entries: e.entries.into_iter().map(Into::into).collect(),
            signatures: e.signatures.into_iter().map(|(k, s)| (k, s.into())).collect(),
        }
    }
}

impl From<berth_model::audit::AuditExport> for AuditExport {
    fn from(e: berth_model::audit::AuditExport) -> Self {
        Self {
            entries: e.entries.into_iter().map(Into::into).collect(),
            signatures: e.signatures.into_iter().map(|(k, s)| (k, s.into())).collect(),
        }
    }
}

/// Checks a chain and its cluster-key signatures without the node's HMAC
/// key: what `berth audit verify --file` runs against an export, with the
/// CA certificate as `verify`'s key.
pub fn verify_export(export: &AuditExport, verify: &dyn Fn(&[u8], &[u8]) -> bool) -> Verification {
    let check = |kind: Signed, sig: &Signature| match sig.sig.as_deref().map(hex::decode) {
        Some(Ok(bytes)) => verify(&signed_message(kind, sig.seq, &sig.hash), &bytes),
        _ => false,
    };
    verify_chain(
        &export.entries,
        &export.signatures,
        &check,
        "not signed by the cluster key",
    )
}

fn verify_chain(
    entries: &[AuditEntry],
    signatures: &[(String, Signature)],
    valid: &dyn Fn(Signed, &Signature) -> bool,
    invalid: &str,
) -> Verification {
    let mut problems = Vec::new();
    let mut prev = GENESIS.to_string();
    let mut expected = 1u64;
    let mut hashes = std::collections::HashMap::new();
    for e in entries {
        if e.seq != expected {
            problems.push(format!(
                "entry {} found where {expected} should be: removed or reordered",
                e.seq
            ));
        }
        if e.prev != prev {
            problems.push(format!(
                "entry {} does not follow the previous entry: chain broken",
                e.seq
            ));
        }
        if e.compute_hash() != e.hash {
            problems.push(format!("entry {} was edited: its hash does not match", e.seq));
        }
        hashes.insert(e.seq, e.hash.clone());
        prev = e.hash.clone();
        expected = e.seq + 1;
    }
    let last = entries.last().map(|e| (e.seq, e.hash.clone()));
    let mut checkpoints = 0;
    let mut head_seen = false;
    for (key, sig) in signatures {
        let kind = Signed::of_key(key);
        if !valid(kind, sig) {
            problems.push(format!(
                "signature {key} is not valid as a {} signature: {invalid}",
                kind.name()
            ));
            continue;
        }
        if kind == Signed::Head {
            head_seen = true;
            // An empty log has a signed head too: the genesis.
            let ends = last.clone().unwrap_or((0, GENESIS.to_string()));
            if ends != (sig.seq, sig.hash.clone()) {
                problems.push(format!(
                    "the signed head is entry {}, the log ends at entry {}: entries removed or rewritten",
                    sig.seq, ends.0
                ));
            }
        } else {
            checkpoints += 1;
            if hashes.get(&sig.seq) != Some(&sig.hash) {
                problems.push(format!("checkpoint {} does not match the log", sig.seq));
            }
        }
    }
    if !head_seen {
        problems.push("the signed head is missing: the log cannot be shown to be whole".into());
    }
    Verification {
        ok: problems.is_empty(),
        entries: entries.len() as u64,
        checkpoints,
        problems,
    }
}

pub use berth_state::records::{AuditEntry, AuditSignature as Signature, NewAuditEntry};

/// Filters for [`Access::audit_list`].
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// RFC 3339: entries at or after.
    pub since: Option<String>,
    pub user: Option<String>,
    /// The newest this many (after filtering).
    pub limit: Option<usize>,
}

/// What `audit verify` found.
pub use berth_model::audit::Verification;

pub use berth_state::records::audit_key as key_of;
use berth_state::records::AUDIT_HEAD as HEAD;

impl Access {
    fn mac_of(&self, message: &[u8]) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.audit_key) else {
            return String::new();
        };
        mac.update(message);
        hex::encode(mac.finalize().into_bytes())
    }

    fn mac(&self, kind: Signed, seq: u64, hash: &str) -> String {
        self.mac_of(&signed_message(kind, seq, hash))
    }

    fn signature(&self, kind: Signed, seq: u64, hash: &str) -> Signature {
        let signer = read(&self.audit_extras.signer);
        Signature {
            seq,
            hash: hash.to_string(),
            kind: kind.name().to_string(),
            mac: self.mac(kind, seq, hash),
            sig: signer
                .as_ref()
                .map(|s| hex::encode(s.sign(&signed_message(kind, seq, hash)))),
            signer: signer.as_ref().map(|s| s.key_id()),
        }
    }

    /// Readies the log for verification at start (after the chain signer
    /// is set): an empty log gets a signed genesis head, so that an export
    /// without a head never verifies; signatures made before heads and
    /// checkpoints were told apart are signed again as what their key says,
    /// once their old HMAC checks out.
    pub fn prepare_audit_log(&self) -> Result<()> {
        let _serial = match self.audit_lock.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let existing = self.store.list::<Signature>(AUDIT_SIGNATURES)?;
        let mut signatures = Vec::new();
        if !existing.iter().any(|(key, _)| key == HEAD) {
            if self.store.list::<AuditEntry>(AUDIT)?.is_empty() {
                signatures.push((HEAD.to_string(), self.signature(Signed::Head, 0, GENESIS)));
            } else {
                tracing::error!("the audit log has entries but no signed head: `berth audit verify` will fail");
            }
        }
        for (key, sig) in existing.into_iter().filter(|(_, sig)| sig.kind.is_empty()) {
            if self.mac_of(&legacy_message(sig.seq, &sig.hash)) != sig.mac {
                tracing::error!(key = %key, "an audit signature does not verify; left as it is");
                continue;
            }
            let resigned = self.signature(Signed::of_key(&key), sig.seq, &sig.hash);
            signatures.push((key, resigned));
        }
        if !signatures.is_empty() {
            self.state
                .propose(berth_state::ClusterCommand::PutAuditSignatures { signatures })?;
        }
        drop(_serial);
        if let Err(e) = self.audit_append_pending() {
            tracing::warn!(error = %e, "cannot append the audit entries left pending yet; trying again");
        }
        Ok(())
    }

    /// Signs the chain with the cluster key from now on; `audit verify`
    /// then also requires the cluster key's signature on the head and on
    /// checkpoints made since.
    pub fn set_chain_signer(&self, signer: Arc<dyn ChainSigner>) {
        write(&self.audit_extras.signer, Some(signer));
    }

    /// Sends every appended entry to `sink` too.
    pub fn set_audit_sink(&self, sink: AuditSink) {
        write(&self.audit_extras.sink, Some(sink));
    }

    /// Loads the per-resource levels.
    pub fn load_audit_levels(&self) -> Result<()> {
        let stored = self.store.list::<AuditLevel>(AUDIT_LEVELS)?;
        let levels = stored
            .into_iter()
            .filter_map(|(k, v)| Resource::parse(&k).map(|r| (r, v)))
            .collect();
        write(&self.audit_extras.levels, levels);
        Ok(())
    }

    /// How much the log records for `resource`.
    pub fn audit_level(&self, resource: Resource) -> AuditLevel {
        match self.audit_extras.levels.read() {
            Ok(g) => g.get(&resource).copied(),
            Err(p) => p.into_inner().get(&resource).copied(),
        }
        .unwrap_or_else(|| level(resource))
    }

    /// Every resource with its level.
    pub fn audit_levels(&self) -> Vec<(Resource, AuditLevel)> {
        RESOURCES.into_iter().map(|r| (r, self.audit_level(r))).collect()
    }

    /// Sets `resource`'s level; returns both as parsed.
    pub fn set_audit_level(&self, resource: &str, level: &str) -> Result<(Resource, AuditLevel)> {
        let r = Resource::parse(resource).ok_or_else(|| {
            let names: Vec<&str> = RESOURCES.iter().map(|r| r.name()).collect();
            Error::Invalid(format!("unknown resource {resource:?}; one of: {}", names.join(", ")))
        })?;
        let l = AuditLevel::parse(level).ok_or_else(|| {
            Error::Invalid(format!(
                "unknown audit level {level:?}; one of: none, metadata, request"
            ))
        })?;
        self.state.propose(berth_state::ClusterCommand::SetAuditLevel {
            resource: r.name().to_string(),
            level: l,
        })?;
        Ok((r, l))
    }

    /// The whole log with its signatures, for offline verification.
    pub fn audit_export(&self) -> Result<AuditExport> {
        Ok(AuditExport {
            entries: self
                .store
                .list::<AuditEntry>(AUDIT)?
                .into_iter()
                .map(|(_, e)| e)
                .collect(),
            signatures: self.store.list::<Signature>(AUDIT_SIGNATURES)?,
        })
    }

    /// Appends one entry in one transaction with the new signed head.
    pub fn audit_append(&self, entry: NewAuditEntry) -> Result<AuditEntry> {
        let time = self.audit_time();
        let mut appended = self.append_entries(vec![(entry, time)], true)?;
        Ok(appended.pop().unwrap_or_else(|| unreachable!("one entry was appended")))
    }

    /// Records that a change is about to be made (result `started`), before
    /// it is made: if this fails, the change must not happen. Pass what it
    /// answers to [`Access::audit_finish`] with the outcome.
    ///
    /// - On a node alone the entry is appended at once, not flushed on its
    ///   own: the outcome's entry makes both durable.
    /// - Replicated, the entry is kept in the node's store (`local/
    ///   audit_pending`, not flushed) once the cluster is seen able to take
    ///   the write ([`berth_state::State::writable`]), and the outcome's
    ///   entry carries it into the log: one Raft write per audited change,
    ///   not two. What is left there ([`Access::audit_append_pending`]) is
    ///   appended by the manager every few seconds and at the next start.
    pub fn audit_begin(&self, entry: NewAuditEntry) -> Result<Begun> {
        injected_failure()?;
        let time = self.audit_time();
        if !self.state.is_replicated() {
            self.append_entries(vec![(entry, time)], false)?;
            return Ok(Begun::Appended);
        }
        self.state.writable().map_err(Error::Invalid)?;
        let key = format!("{time}-{:016x}", rand::random::<u64>());
        let pending = Pending {
            entry,
            time,
            outcome: None,
        };
        self.store
            .write_or_defer(false, |t| t.put(AUDIT_PENDING, &key, &pending))?;
        self.in_flight().insert(key.clone());
        Ok(Begun::Pending {
            key,
            pending: Box::new(pending),
        })
    }

    /// Records the outcome of a change that [`Access::audit_begin`]
    /// recorded as started.
    pub fn audit_finish(&self, begun: Begun, outcome: NewAuditEntry) -> Result<AuditEntry> {
        match begun {
            Begun::Appended => self.audit_append(outcome),
            Begun::Pending { key, pending } => {
                let time = self.audit_time();
                self.in_flight().remove(&key);
                let Pending { entry, time: began, .. } = *pending;
                let appended = self.append_entries(
                    vec![(entry.clone(), began.clone()), (outcome.clone(), time.clone())],
                    true,
                );
                let mut appended = match appended {
                    Ok(a) => a,
                    Err(e) => {
                        // Kept with its outcome: `audit_append_pending`
                        // appends both once the log takes writes again.
                        let kept = Pending {
                            entry,
                            time: began,
                            outcome: Some((outcome, time)),
                        };
                        self.store.write(|t| t.put(AUDIT_PENDING, &key, &kept))?;
                        return Err(e);
                    }
                };
                self.store
                    .write_or_defer(false, |t| t.delete(AUDIT_PENDING, &key).map(|_| ()))?;
                Ok(appended
                    .pop()
                    .unwrap_or_else(|| unreachable!("two entries were appended")))
            }
        }
    }

    fn audit_time(&self) -> String {
        self.now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    /// Appends `entries` (each with its time), in order, in one change.
    fn append_entries(&self, entries: Vec<(NewAuditEntry, String)>, durable: bool) -> Result<Vec<AuditEntry>> {
        /// How often entries are made again on a head that another manager
        /// moved before giving up.
        const MAX_APPEND_ATTEMPTS: u32 = 50;
        injected_failure()?;
        let _serial = match self.audit_lock.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        // The entries follow the head; `audit_lock` keeps this node's
        // appends in order, and the command is refused if the head moved.
        // With several managers it can move under us (another appended
        // first): then the entries are made again on the new head.
        let mut attempt = 0;
        let made = loop {
            attempt += 1;
            let head = self.store.get::<Signature>(AUDIT_SIGNATURES, HEAD)?;
            let (mut seq, mut prev) = head.map_or((1, GENESIS.to_string()), |h| (h.seq + 1, h.hash));
            let mut made = Vec::with_capacity(entries.len());
            for (entry, time) in &entries {
                let mut e = AuditEntry {
                    seq,
                    time: time.clone(),
                    entry: entry.clone(),
                    prev,
                    hash: String::new(),
                };
                e.hash = e.compute_hash();
                prev = e.hash.clone();
                seq += 1;
                made.push(e);
            }
            let mut appends: Vec<berth_state::AuditAppend> = made
                .iter()
                .map(|e| berth_state::AuditAppend {
                    head: self.signature(Signed::Head, e.seq, &e.hash),
                    checkpoint: (e.seq % self.checkpoint_every == 0)
                        .then(|| self.signature(Signed::Checkpoint, e.seq, &e.hash)),
                    entry: e.clone(),
                })
                .collect();
            let command = match appends.len() {
                1 => {
                    let a = appends.remove(0);
                    berth_state::ClusterCommand::AppendAudit {
                        entry: a.entry,
                        head: a.head,
                        checkpoint: a.checkpoint,
                    }
                }
                _ => berth_state::ClusterCommand::AppendAuditBatch { appends },
            };
            let proposed = match durable {
                true => self.state.propose(command),
                false => self.state.propose_unflushed(command),
            };
            match proposed {
                Ok(_) => break made,
                Err(berth_state::Error::Rejected(berth_state::Rejected::Conflict(_)))
                    if attempt < MAX_APPEND_ATTEMPTS && self.state.is_replicated() =>
                {
                    continue
                }
                Err(other) => return Err(other.into()),
            }
        };
        if let Some(sink) = read(&self.audit_extras.sink) {
            for e in &made {
                sink(e);
            }
        }
        Ok(made)
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.audit_extras
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends the entries left in `local/audit_pending` by requests that
    /// are no longer running (see [`Access::audit_begin`]): with their
    /// outcome when it was kept (the log did not take it then), else the
    /// `started` entry alone, saying that the daemon stopped first. Those
    /// that cannot be appended now stay for the next try. How many were
    /// appended.
    pub fn audit_append_pending(&self) -> Result<usize> {
        // Read in a write transaction, which makes the table on a fresh store.
        let left = self.store.write_or_defer(false, |t| t.list::<Pending>(AUDIT_PENDING))?;
        let mut appended = 0;
        for (key, p) in left {
            if self.in_flight().contains(&key) {
                continue;
            }
            let entries = match p.outcome {
                Some(outcome) => vec![(p.entry, p.time), outcome],
                None => {
                    let mut entry = p.entry;
                    let lost = "the daemon stopped before the outcome was recorded";
                    entry.detail = match entry.detail.is_empty() {
                        true => lost.into(),
                        false => format!("{} ({lost})", entry.detail),
                    };
                    vec![(entry, p.time)]
                }
            };
            self.append_entries(entries, true)?;
            self.store.write(|t| t.delete(AUDIT_PENDING, &key).map(|_| ()))?;
            appended += 1;
            tracing::info!(key = %key, "appended audit entries that had waited in the node's store");
        }
        Ok(appended)
    }

    pub fn audit_list(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let since = q
            .since
            .as_deref()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok());
        let mut out: Vec<AuditEntry> = self
            .store
            .list::<AuditEntry>(AUDIT)?
            .into_iter()
            .map(|(_, e)| e)
            .filter(|e| q.user.as_deref().is_none_or(|u| e.entry.user == u))
            .filter(|e| since.is_none_or(|s| chrono::DateTime::parse_from_rfc3339(&e.time).is_ok_and(|t| t >= s)))
            .collect();
        if let Some(n) = q.limit {
            let skip = out.len().saturating_sub(n);
            out.drain(..skip);
        }
        Ok(out)
    }

    /// Walks the whole chain and checks every link and signature: the
    /// node's HMAC always, the cluster key's signature when one is set.
    pub fn audit_verify(&self) -> Result<Verification> {
        let entries = self.store.list::<AuditEntry>(AUDIT)?;
        let signatures = self.store.list::<Signature>(AUDIT_SIGNATURES)?;
        let mut moved = Vec::new();
        for (key, e) in &entries {
            if *key != key_of(e.seq) {
                moved.push(format!("entry stored at {key} says it is number {}: moved", e.seq));
            }
        }
        let signer = read(&self.audit_extras.signer);
        let valid = |kind: Signed, sig: &Signature| {
            if self.mac(kind, sig.seq, &sig.hash) != sig.mac {
                return false;
            }
            match (&signer, &sig.sig) {
                (Some(signer), Some(hexsig)) => hex::decode(hexsig)
                    .is_ok_and(|bytes| signer.verify(&signed_message(kind, sig.seq, &sig.hash), &bytes)),
                (Some(_), None) => false,
                (None, _) => true,
            }
        };
        let entries: Vec<AuditEntry> = entries.into_iter().map(|(_, e)| e).collect();
        let mut v = verify_chain(&entries, &signatures, &valid, "edited or signed by another key");
        if !moved.is_empty() {
            moved.append(&mut v.problems);
            v.problems = moved;
            v.ok = false;
        }
        Ok(v)
    }
}
