//! `berth cluster backup` and `berth cluster restore`: every `cluster/*`
//! table, read in one transaction, with the secrets every manager holds
//! (the CA certificate and key, the audit log's MAC key, the trust seal,
//! the registry's token key), encrypted with a passphrase (Argon2id, then
//! XChaCha20-Poly1305; the header is authenticated too). A restore makes a
//! new data root holding them: started, it is a new one-manager cluster
//! with the same CA, users, grants, trust data and registry collections;
//! nodes join it again.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use berth_state::records::JoinTokenRecord;
use berth_state::{tables, State};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use serde::{Deserialize, Serialize};

use crate::membership::MANAGER_FILES;
use crate::{Error, Result};

pub const FORMAT: &str = "berth-cluster-backup-v1";

/// The shortest passphrase a backup takes.
pub const MIN_PASSPHRASE: usize = 12;

/// Argon2id cost: 64 MiB, 3 passes (a backup is written and read rarely).
const KDF_MEMORY_KIB: u32 = 64 * 1024;
const KDF_PASSES: u32 = 3;

/// A backup file: a readable header, authenticated, and the encrypted
/// [`Contents`].
#[derive(Debug, Serialize, Deserialize)]
struct File {
    format: String,
    /// When it was written (RFC 3339).
    created: String,
    /// SHA-256 of the cluster CA's DER: which cluster it is of.
    ca_digest: String,
    /// The Raft log index the state was read at (0 without Raft).
    applied_index: u64,
    kdf: Kdf,
    /// XChaCha20-Poly1305's nonce, hex.
    nonce: String,
    /// The encrypted contents, base64.
    ciphertext: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Kdf {
    algorithm: String,
    memory_kib: u32,
    passes: u32,
    /// Hex.
    salt: String,
}

/// What a backup holds.
#[derive(Serialize, Deserialize)]
struct Contents {
    /// Each cluster table: its records as stored, values base64.
    tables: Vec<(String, Vec<(String, String)>)>,
    /// Secrets and the CA certificate, by path under the data root, base64.
    files: BTreeMap<String, String>,
}

/// What `backup` wrote: the header a user sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub ca_digest: String,
    pub created: String,
    pub applied_index: u64,
    pub tables: usize,
    pub records: usize,
}

fn check_passphrase(passphrase: &str) -> Result<()> {
    if passphrase.chars().count() < MIN_PASSPHRASE {
        return Err(Error::Invalid(format!(
            "the backup passphrase is too short: at least {MIN_PASSPHRASE} characters"
        )));
    }
    Ok(())
}

fn key(passphrase: &str, kdf: &Kdf) -> Result<[u8; 32]> {
    if kdf.algorithm != "argon2id" || kdf.memory_kib > 1024 * 1024 || kdf.passes > 64 {
        return Err(Error::Invalid(format!(
            "the backup's key derivation ({} m={} t={}) is not one berth writes",
            kdf.algorithm, kdf.memory_kib, kdf.passes
        )));
    }
    let salt = hex::decode(&kdf.salt).map_err(|_| Error::Invalid("the backup's salt is not hex".into()))?;
    let params = argon2::Params::new(kdf.memory_kib, kdf.passes, 1, Some(32))
        .map_err(|e| Error::Invalid(format!("the backup's key derivation: {e}")))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = [0u8; 32];
    argon
        .hash_password_into(passphrase.as_bytes(), &salt, &mut key)
        .map_err(|e| Error::Invalid(format!("deriving the backup key: {e}")))?;
    Ok(key)
}

/// What the ciphertext is bound to: the header, so that no field of it
/// can be changed without the passphrase.
fn associated(f: &File) -> Vec<u8> {
    format!(
        "{}\n{}\n{}\n{}\n{}:{}:{}:{}\n{}",
        f.format,
        f.created,
        f.ca_digest,
        f.applied_index,
        f.kdf.algorithm,
        f.kdf.memory_kib,
        f.kdf.passes,
        f.kdf.salt,
        f.nonce
    )
    .into_bytes()
}

/// Writes a backup of `state` (every cluster table, in one read) and of
/// the secrets under `data_root`, encrypted with `passphrase`.
pub fn write(state: &State, data_root: &Path, passphrase: &str, applied_index: u64) -> Result<(Vec<u8>, Summary)> {
    check_passphrase(passphrase)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let dumped = state
        .snapshot()
        .map_err(|e| Error::Invalid(format!("reading cluster state: {e}")))?;
    let records = dumped.iter().map(|(_, rows)| rows.len()).sum();
    let tables_n = dumped.len();
    let tables = dumped
        .into_iter()
        .map(|(name, rows)| {
            (
                name.to_string(),
                rows.into_iter().map(|(k, v)| (k, b64.encode(v))).collect(),
            )
        })
        .collect();
    let names: Vec<&str> = MANAGER_FILES.iter().copied().chain(["pki/ca.pem"]).collect();
    let files: BTreeMap<String, String> = crate::services::read_files(data_root, &names)?
        .into_iter()
        .map(|(name, bytes)| (name, b64.encode(bytes)))
        .collect();
    if !files.contains_key("pki/ca.key") {
        return Err(Error::NotManager(
            "this node holds no CA key: take the backup on a manager".into(),
        ));
    }
    let ca_pem = files
        .get("pki/ca.pem")
        .and_then(|p| b64.decode(p).ok())
        .ok_or_else(|| Error::Invalid("this node has no CA certificate".into()))?;
    let ca_digest = ca_digest_of(&ca_pem)?;
    let plain = serde_json::to_vec(&Contents { tables, files }).map_err(|e| Error::Invalid(e.to_string()))?;
    let mut file = File {
        format: FORMAT.into(),
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ca_digest: ca_digest.clone(),
        applied_index,
        kdf: Kdf {
            algorithm: "argon2id".into(),
            memory_kib: KDF_MEMORY_KIB,
            passes: KDF_PASSES,
            salt: hex::encode(rand::random::<[u8; 16]>()),
        },
        nonce: hex::encode(rand::random::<[u8; 24]>()),
        ciphertext: String::new(),
    };
    let key = key(passphrase, &file.kdf)?;
    let cipher = chacha20poly1305::XChaCha20Poly1305::new_from_slice(&key)
        .map_err(|_| Error::Invalid("the backup key has the wrong length".into()))?;
    let nonce_bytes = hex::decode(&file.nonce).unwrap_or_default();
    let nonce = chacha20poly1305::XNonce::try_from(&nonce_bytes[..])
        .map_err(|_| Error::Invalid("the backup nonce has the wrong length".into()))?;
    let aad = associated(&file);
    let sealed = cipher
        .encrypt(&nonce, Payload { msg: &plain, aad: &aad })
        .map_err(|_| Error::Invalid("encrypting the backup failed".into()))?;
    file.ciphertext = b64.encode(sealed);
    let summary = Summary {
        ca_digest,
        created: file.created.clone(),
        applied_index,
        tables: tables_n,
        records,
    };
    let bytes = serde_json::to_vec_pretty(&file).map_err(|e| Error::Invalid(e.to_string()))?;
    Ok((bytes, summary))
}

fn ca_digest_of(pem: &[u8]) -> Result<String> {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(pem)
        .map_err(|e| Error::Invalid(format!("the CA certificate does not parse: {e}")))?;
    Ok(crate::pki::fingerprint(&der))
}

/// A backup, opened with its passphrase.
pub struct Opened {
    pub summary: Summary,
    tables: Vec<(String, berth_store::Rows)>,
    files: BTreeMap<String, Vec<u8>>,
}

/// Reads and decrypts a backup; a wrong passphrase and a changed file are
/// told apart from a file that is no backup.
pub fn open(bytes: &[u8], passphrase: &str) -> Result<Opened> {
    let file: File =
        serde_json::from_slice(bytes).map_err(|e| Error::Invalid(format!("not a berth cluster backup: {e}")))?;
    if file.format != FORMAT {
        return Err(Error::Invalid(format!(
            "a backup in format {:?}: this berth reads {FORMAT}",
            file.format
        )));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = key(passphrase, &file.kdf)?;
    let cipher = chacha20poly1305::XChaCha20Poly1305::new_from_slice(&key)
        .map_err(|_| Error::Invalid("the backup key has the wrong length".into()))?;
    let nonce_bytes = hex::decode(&file.nonce).map_err(|_| Error::Invalid("the backup's nonce is not hex".into()))?;
    let nonce = chacha20poly1305::XNonce::try_from(&nonce_bytes[..])
        .map_err(|_| Error::Invalid("the backup's nonce has the wrong length".into()))?;
    let sealed = b64
        .decode(&file.ciphertext)
        .map_err(|_| Error::Invalid("the backup's contents are not base64".into()))?;
    let plain = cipher
        .decrypt(
            &nonce,
            Payload {
                msg: &sealed,
                aad: &associated(&file),
            },
        )
        .map_err(|_| {
            Error::Invalid("the backup cannot be decrypted: wrong passphrase, or the file was changed".into())
        })?;
    let contents: Contents =
        serde_json::from_slice(&plain).map_err(|e| Error::Invalid(format!("the backup's contents: {e}")))?;
    let mut tables = Vec::new();
    let mut records = 0;
    for (name, rows) in contents.tables {
        let mut decoded = Vec::with_capacity(rows.len());
        for (k, v) in rows {
            let v = b64
                .decode(v)
                .map_err(|_| Error::Invalid(format!("a record of {name} is not base64")))?;
            decoded.push((k, v));
        }
        records += decoded.len();
        tables.push((name, decoded));
    }
    let mut files = BTreeMap::new();
    for (name, v) in contents.files {
        if !(MANAGER_FILES.contains(&name.as_str()) || name == "pki/ca.pem") {
            return Err(Error::Invalid(format!(
                "the backup holds a file berth does not keep: {name:?}"
            )));
        }
        let v = b64
            .decode(v)
            .map_err(|_| Error::Invalid(format!("{name} in the backup is not base64")))?;
        files.insert(name, v);
    }
    let pem = files
        .get("pki/ca.pem")
        .ok_or_else(|| Error::Invalid("the backup holds no CA certificate".into()))?;
    if ca_digest_of(pem)? != file.ca_digest || !files.contains_key("pki/ca.key") {
        return Err(Error::Invalid(
            "the backup's CA does not match its header, or its key is missing".into(),
        ));
    }
    Ok(Opened {
        summary: Summary {
            ca_digest: file.ca_digest,
            created: file.created,
            applied_index: file.applied_index,
            tables: tables.len(),
            records,
        },
        tables,
        files,
    })
}

/// Makes `data_root` (which must not exist, or be empty) hold the backup:
/// cluster state without its nodes (they join the restored cluster again)
/// and with new join tokens, and the secrets. `berth daemon` on it then
/// starts a one-manager cluster with the same CA. Nothing is left behind
/// when this fails.
pub fn restore(data_root: &Path, opened: Opened) -> Result<()> {
    let empty = match std::fs::read_dir(data_root) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => {
            return Err(Error::Io {
                what: "reading",
                path: data_root.to_path_buf(),
                source: e,
            })
        }
    };
    if !empty {
        return Err(Error::Conflict(format!(
            "{} is not empty: a restore makes a new data root (stop the daemon and choose a new one)",
            data_root.display()
        )));
    }
    let made = !data_root.exists();
    let result = restore_into(data_root, opened);
    if result.is_err() {
        if made {
            let _ = std::fs::remove_dir_all(data_root);
        } else if let Ok(entries) = std::fs::read_dir(data_root) {
            for e in entries.flatten() {
                let _ = std::fs::remove_dir_all(e.path()).or_else(|_| std::fs::remove_file(e.path()));
            }
        }
    }
    result
}

fn restore_into(data_root: &Path, opened: Opened) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let mkdir = |dir: &Path| {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::Io {
                what: "creating",
                path: dir.to_path_buf(),
                source: e,
            })
    };
    mkdir(data_root)?;
    for (name, bytes) in &opened.files {
        let path = data_root.join(name);
        if let Some(dir) = path.parent() {
            mkdir(dir)?;
        }
        if name == "pki/ca.pem" {
            crate::pki::write_public(&path, bytes)?;
        } else {
            crate::pki::write_private(&path, bytes)?;
        }
    }
    let store = berth_store::Store::open(&data_root.join("berth.redb"))
        .map_err(|e| Error::Invalid(format!("creating the store: {e}")))?;
    let state = State::open(store).map_err(|e| Error::Invalid(format!("opening cluster state: {e}")))?;
    let tables: Vec<(String, berth_store::Rows)> = opened
        .tables
        .into_iter()
        // Nodes join the restored cluster again: their records and their
        // reports on assignments stay behind (the assignments come along).
        .filter(|(name, _)| {
            ![tables::NODES.0, tables::JOIN_TOKENS.0, tables::ASSIGNMENT_TASKS.0].contains(&name.as_str())
        })
        .collect();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    state
        .install(tables, |t| {
            // The tokens of the old cluster stop working.
            for role in ["worker", "manager"] {
                let record = JoinTokenRecord {
                    nonce: hex::encode(rand::random::<[u8; 16]>()),
                    rotated: now.clone(),
                };
                t.put(tables::JOIN_TOKENS, role, &record)?;
            }
            Ok(())
        })
        .map_err(|e| Error::Invalid(format!("writing cluster state: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_state::records::User;
    use berth_state::ClusterCommand;

    /// A manager's data root with a CA, the secrets and one user.
    fn manager() -> (tempfile::TempDir, State) {
        let dir = tempfile::tempdir().expect("a directory");
        crate::Pki::open(&dir.path().join("pki")).expect("a CA");
        for (name, bytes) in [
            ("auth/audit.key", &b"audit-key"[..]),
            ("trust/seal.key", b"seal"),
            ("registry/token.key", b"token"),
        ] {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("a directory");
            std::fs::write(path, bytes).expect("a secret");
        }
        let store = berth_store::Store::open(&dir.path().join("berth.redb")).expect("a store");
        let state = State::open(store).expect("state");
        state
            .propose(ClusterCommand::CreateUser {
                user: User {
                    name: "carol".into(),
                    password_hash: "$argon2id$none".into(),
                    created: "2026-12-06T00:00:00Z".into(),
                },
            })
            .expect("a user");
        state
            .propose(ClusterCommand::CreateAssignment {
                record: berth_state::records::AssignmentRecord {
                    spec: berth_model::assignment::AssignmentSpec {
                        name: "web".into(),
                        image: "busybox:latest".into(),
                        ..Default::default()
                    },
                    created_at: "2026-12-06T00:00:00Z".into(),
                },
            })
            .expect("an assignment");
        state
            .propose(ClusterCommand::SetNodeTasks {
                node: "n1".into(),
                tasks: vec![berth_state::records::TaskRecord {
                    assignment: "web".into(),
                    node: "n1".into(),
                    state: "running".into(),
                    container: "c1".into(),
                    message: String::new(),
                    reported_at: "2026-12-06T00:00:01Z".into(),
                }],
            })
            .expect("a report");
        (dir, state)
    }

    #[test]
    fn a_backup_restores_state_and_secrets_and_nothing_else() {
        let (dir, state) = manager();
        let (bytes, summary) = write(&state, dir.path(), "a long passphrase", 7).expect("a backup");
        assert_eq!(summary.applied_index, 7);
        assert!(
            !String::from_utf8_lossy(&bytes).contains("carol"),
            "the contents are encrypted"
        );
        let opened = open(&bytes, "a long passphrase").expect("opened");
        assert_eq!(opened.summary.records, summary.records);
        let target = tempfile::tempdir().expect("a directory");
        let root = target.path().join("restored");
        restore(&root, opened).expect("restored");
        for name in MANAGER_FILES {
            assert_eq!(
                std::fs::read(root.join(name)).expect("a restored secret"),
                std::fs::read(dir.path().join(name)).expect("the secret"),
                "{name}"
            );
        }
        let store = berth_store::Store::open(&root.join("berth.redb")).expect("the restored store");
        let user: Option<User> = store.get(tables::USERS, "carol").expect("a read");
        assert!(user.is_some(), "the user is restored");
        let tokens: Vec<(String, JoinTokenRecord)> = store.list(tables::JOIN_TOKENS).expect("a read");
        assert_eq!(tokens.len(), 2, "both roles get new join tokens");
        let assignments: Vec<(String, serde_json::Value)> = store.list(tables::ASSIGNMENTS).expect("a read");
        assert_eq!(assignments.len(), 1, "assignments are restored");
        let reports: Vec<(String, serde_json::Value)> = store.list(tables::ASSIGNMENT_TASKS).expect("a read");
        assert!(reports.is_empty(), "the old nodes' reports are not");
    }

    #[test]
    fn bad_passphrases_changed_files_and_used_roots_are_refused() {
        let (dir, state) = manager();
        let short = write(&state, dir.path(), "short", 0).expect_err("refused");
        assert!(short.to_string().contains("too short"), "{short}");
        let (bytes, _) = write(&state, dir.path(), "a long passphrase", 0).expect("a backup");
        let wrong = open(&bytes, "another passphrase").err().expect("refused");
        assert!(wrong.to_string().contains("wrong passphrase"), "{wrong}");
        // A header field changed: the ciphertext no longer opens.
        let mut file: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
        file["applied_index"] = serde_json::json!(99);
        let changed = serde_json::to_vec(&file).expect("JSON");
        let refused = open(&changed, "a long passphrase").err().expect("refused");
        assert!(refused.to_string().contains("was changed"), "{refused}");
        let garbage = open(b"not json", "a long passphrase").err().expect("refused");
        assert!(garbage.to_string().contains("not a berth cluster backup"), "{garbage}");
        // A data root that holds something is not overwritten.
        let used = tempfile::tempdir().expect("a directory");
        std::fs::write(used.path().join("keep"), b"x").expect("a file");
        let opened = open(&bytes, "a long passphrase").expect("opened");
        let err = restore(used.path(), opened).expect_err("refused");
        assert!(err.to_string().contains("not empty"), "{err}");
        assert!(used.path().join("keep").exists());
    }
}
