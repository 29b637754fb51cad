//! The audit log: who did what to which object, when, from where, with
//! which result. Entries are hash-chained (sha256 of the previous hash and
//! the entry's canonical JSON); the head of the chain is signed on every
//! append and a checkpoint is signed every N entries, with HMAC-SHA256
//! under the root-only key `<data-root>/auth/audit.key`. So an edited,
//! removed or reordered entry breaks the chain, and a rewritten chain (or a
//! cut-off tail) no longer matches the signatures.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::access::sha256_hex;
use crate::{Access, Resource, Result, AUDIT, AUDIT_SIGNATURES};

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How much the log records for a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditLevel {
    /// Nothing but denials and logins.
    None,
    /// Who, action, object, result.
    Metadata,
    /// Also the request's query.
    Request,
}

/// The level per resource. A simple map for now: everything at metadata.
pub fn level(resource: Resource) -> AuditLevel {
    let _ = resource;
    AuditLevel::Metadata
}

/// What a caller records; the log adds sequence, time and hashes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewAuditEntry {
    /// `admin` (the socket), a user name, or `anonymous`.
    pub user: String,
    /// The peer address, `local` for the socket.
    pub source: String,
    /// `METHOD /route/pattern`, `login`.
    pub action: String,
    pub resource: String,
    /// The request path (and query at the request level).
    pub object: String,
    /// `allowed`, `denied`, `failed`.
    pub result: String,
    pub status: u16,
    /// Why it was denied or failed; never a secret.
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub time: String,
    #[serde(flatten)]
    pub entry: NewAuditEntry,
    /// The previous entry's hash (zeros for the first).
    pub prev: String,
    pub hash: String,
}

impl AuditEntry {
    /// sha256(prev || canonical JSON of everything but the hash).
    pub fn compute_hash(&self) -> String {
        #[derive(Serialize)]
        struct Canonical<'a> {
            seq: u64,
            time: &'a str,
            entry: &'a NewAuditEntry,
            prev: &'a str,
        }
        let body = serde_json::to_vec(&Canonical {
            seq: self.seq,
            time: &self.time,
            entry: &self.entry,
            prev: &self.prev,
        })
        .unwrap_or_default();
        let mut data = self.prev.as_bytes().to_vec();
        data.extend_from_slice(&body);
        sha256_hex(&data)
    }
}

/// A signature over the chain at `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signature {
    pub seq: u64,
    pub hash: String,
    pub mac: String,
}

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub ok: bool,
    pub entries: u64,
    pub checkpoints: u64,
    pub problems: Vec<String>,
}

pub fn key_of(seq: u64) -> String {
    format!("{seq:020}")
}

const HEAD: &str = "head";

impl Access {
    fn mac(&self, seq: u64, hash: &str) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.audit_key) else {
            return String::new();
        };
        mac.update(format!("berth-audit:{seq}:{hash}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    fn signature(&self, seq: u64, hash: &str) -> Signature {
        Signature {
            seq,
            hash: hash.to_string(),
            mac: self.mac(seq, hash),
        }
    }

    /// Appends one entry in one transaction with the new signed head.
    pub fn audit_append(&self, entry: NewAuditEntry) -> Result<AuditEntry> {
        let _serial = match self.audit_lock.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let time = self.now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let every = self.checkpoint_every;
        let appended = self.store.apply(|t| {
            let head = t.get::<Signature>(AUDIT_SIGNATURES, HEAD)?;
            let (seq, prev) = head.map_or((1, GENESIS.to_string()), |h| (h.seq + 1, h.hash));
            let mut e = AuditEntry {
                seq,
                time,
                entry,
                prev,
                hash: String::new(),
            };
            e.hash = e.compute_hash();
            t.put(AUDIT, &key_of(seq), &e)?;
            let sig = self.signature(seq, &e.hash);
            t.put(AUDIT_SIGNATURES, HEAD, &sig)?;
            if seq % every == 0 {
                t.put(AUDIT_SIGNATURES, &key_of(seq), &sig)?;
            }
            Ok(e)
        })?;
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

    /// Walks the whole chain and checks every link and signature.
    pub fn audit_verify(&self) -> Result<Verification> {
        let entries = self.store.list::<AuditEntry>(AUDIT)?;
        let signatures = self.store.list::<Signature>(AUDIT_SIGNATURES)?;
        let mut problems = Vec::new();
        let mut prev = GENESIS.to_string();
        let mut expected = 1u64;
        let mut hashes = std::collections::HashMap::new();
        for (key, e) in &entries {
            if *key != key_of(e.seq) {
                problems.push(format!("entry stored at {key} says it is number {}: moved", e.seq));
            }
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
        let last = entries.last().map(|(_, e)| (e.seq, e.hash.clone()));
        let mut checkpoints = 0;
        let mut head_seen = false;
        for (key, sig) in &signatures {
            let valid = self.mac(sig.seq, &sig.hash) == sig.mac;
            if !valid {
                problems.push(format!("signature {key} is not valid"));
                continue;
            }
            if key == HEAD {
                head_seen = true;
                if last.as_ref() != Some(&(sig.seq, sig.hash.clone())) {
                    problems.push(format!(
                        "the signed head is entry {}, the log ends elsewhere: entries removed or rewritten",
                        sig.seq
                    ));
                }
            } else {
                checkpoints += 1;
                if hashes.get(&sig.seq) != Some(&sig.hash) {
                    problems.push(format!("checkpoint {} does not match the log", sig.seq));
                }
            }
        }
        if !head_seen && !entries.is_empty() {
            problems.push("the signed head is missing".into());
        }
        Ok(Verification {
            ok: problems.is_empty(),
            entries: entries.len() as u64,
            checkpoints,
            problems,
        })
    }
}
