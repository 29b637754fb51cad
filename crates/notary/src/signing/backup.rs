//! `berth trust key backup|restore`: a zip of an index and the PEM private
//! keys (re-encrypted with the backup's passphrase), written whole or not
//! at all; keys on tokens are recorded by where they are, never exported.
//! A restore reads, decrypts and checks everything before the key store
//! changes, and undoes what it added when a step fails.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{bail, Result, Signing};
use crate::crypto::SoftwareSigner;
use crate::keys::PublicKey;
use crate::keystore::{parse_private_key_pem, KeyInfo, Passphrase, TokenKeyRef};
use crate::workflow::{describe_location, normalize_gun, passphrase_class, WorkflowError};

/// The index of a key backup archive.
const BACKUP_INDEX: &str = "berth-key-backup.json";
const BACKUP_FORMAT: &str = "berth-key-backup-v1";
/// Largest key backup archive member read.
const MAX_BACKUP_MEMBER: u64 = 1 << 20;

/// One key of a backup.
#[derive(Debug, Clone)]
pub struct BackedUp {
    pub info: KeyInfo,
    /// `false` for a key on a token: the backup records where it is.
    pub exported: bool,
    pub location: String,
}

/// What a restore did.
#[derive(Debug, Clone, Default)]
pub struct Restored {
    /// Keys put in the key store: role, id, GUN.
    pub keys: Vec<(String, String, String)>,
    /// References to keys on tokens: role, id, token label.
    pub token_keys: Vec<(String, String, String)>,
    /// Keys the store had already: role, id.
    pub present: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct Index {
    format: String,
    keys: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    id: String,
    role: String,
    gun: String,
    exportable: bool,
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    public: Option<Value>,
    #[serde(default)]
    token: Option<TokenKeyRef>,
}

impl Signing {
    /// Writes the keys of `gun` (every key without one) to the new file
    /// `output`.
    pub fn backup_keys(&self, output: &Path, gun: Option<&str>, now: DateTime<Utc>) -> Result<Vec<BackedUp>> {
        let gun = gun.map(normalize_gun).transpose()?;
        let keys: Vec<KeyInfo> = self
            .store
            .list()
            .map_err(WorkflowError::new)?
            .into_iter()
            .filter(|k| gun.as_ref().is_none_or(|g| k.gun == *g))
            .collect();
        if keys.is_empty() {
            match &gun {
                Some(g) => bail!("the key store {} holds no key of {g}", self.store.dir().display()),
                None => bail!("the key store {} holds no key", self.store.dir().display()),
            }
        }
        if output.exists() {
            bail!("{} exists already: choose another file", output.display());
        }
        let backup = if keys.iter().any(|k| k.token.is_none()) {
            Some(self.passphrase("BACKUP", true)?)
        } else {
            None
        };
        // Every key is decrypted and re-encrypted before anything is written.
        let mut members = Vec::new();
        let mut index = Vec::new();
        for info in &keys {
            match &info.token {
                None => {
                    let passphrase = self.passphrase(passphrase_class(&info.role), false)?;
                    let pem = self
                        .store
                        .export_pem(&info.key_id, &passphrase, backup.as_ref())
                        .map_err(WorkflowError::new)?;
                    let path = format!("private/{}.key", info.key_id);
                    index.push(json!({
                        "id": info.key_id, "role": info.role, "gun": info.gun,
                        "exportable": true, "file": path,
                    }));
                    members.push((path, pem));
                }
                Some(reference) => {
                    index.push(json!({
                        "id": info.key_id, "role": info.role, "gun": info.gun,
                        "exportable": false, "public": info.public.to_json(), "token": reference,
                    }));
                }
            }
        }
        let doc = json!({"format": BACKUP_FORMAT, "created": now.to_rfc3339(), "keys": index});
        let index = serde_json::to_vec_pretty(&doc).map_err(WorkflowError::new)?;
        write_backup(output, &index, &members)?;
        Ok(keys
            .into_iter()
            .map(|info| BackedUp {
                exported: info.token.is_none(),
                location: describe_location(&self.store, &info),
                info,
            })
            .collect())
    }

    /// Restores the keys of the backup `file`; all of them or none.
    pub fn restore_keys(&self, file: &Path) -> Result<Restored> {
        let shown = file.display();
        let opened = std::fs::File::open(file).map_err(|e| WorkflowError::new(format!("opening {shown}: {e}")))?;
        let mut archive = zip::ZipArchive::new(opened)
            .map_err(|e| WorkflowError::new(format!("{shown} is not a key backup: {e}")))?;
        let read_member = |archive: &mut zip::ZipArchive<std::fs::File>, name: &str| -> Result<Vec<u8>> {
            let member = archive
                .by_name(name)
                .map_err(|e| WorkflowError::new(format!("{shown}: no {name}: {e}")))?;
            let mut bytes = Vec::new();
            member
                .take(MAX_BACKUP_MEMBER + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| WorkflowError::new(format!("{shown}: reading {name}: {e}")))?;
            if bytes.len() as u64 > MAX_BACKUP_MEMBER {
                bail!("{shown}: {name} is larger than {MAX_BACKUP_MEMBER} bytes");
            }
            Ok(bytes)
        };
        let index: Index = serde_json::from_slice(&read_member(&mut archive, BACKUP_INDEX)?)
            .map_err(|e| WorkflowError::new(format!("{shown}: {BACKUP_INDEX} is malformed: {e}")))?;
        if index.format != BACKUP_FORMAT {
            bail!("{shown}: unknown backup format {:?}", index.format);
        }
        // Everything is read, decrypted and checked before the store changes.
        let mut software: Vec<(Entry, SoftwareSigner)> = Vec::new();
        let mut tokens: Vec<(Entry, PublicKey, TokenKeyRef)> = Vec::new();
        let mut restored = Restored::default();
        let mut backup: Option<Passphrase> = None;
        for entry in index.keys {
            if self
                .store
                .check_restore(&entry.id, &entry.role, &entry.gun, !entry.exportable)
                .map_err(|e| WorkflowError::new(format!("not restoring {shown}: {e}")))?
            {
                restored.present.push((entry.role, entry.id));
                continue;
            }
            if entry.exportable {
                let name = entry
                    .file
                    .clone()
                    .ok_or_else(|| WorkflowError::new(format!("{shown}: key {} has no file", entry.id)))?;
                let pem = read_member(&mut archive, &name)?;
                let passphrase = match &backup {
                    Some(p) => p.clone(),
                    None => backup.insert(self.passphrase("BACKUP", false)?).clone(),
                };
                let parsed = parse_private_key_pem(&pem, Some(&passphrase))
                    .map_err(|e| WorkflowError::new(format!("{shown}: {name}: {e}")))?;
                if parsed.signer.key_id() != entry.id {
                    bail!("{shown}: {name} holds key {}, not {}", parsed.signer.key_id(), entry.id);
                }
                software.push((entry, parsed.signer));
            } else {
                let (Some(public), Some(reference)) = (&entry.public, entry.token.clone()) else {
                    bail!("{shown}: token key {} has no public key or token", entry.id);
                };
                let public = PublicKey::from_json(public)
                    .map_err(|e| WorkflowError::new(format!("{shown}: key {}: {e}", entry.id)))?;
                if public.id() != entry.id {
                    bail!("{shown}: token key {} has the public key of {}", entry.id, public.id());
                }
                tokens.push((entry, public, reference));
            }
        }
        let mut added: Vec<String> = Vec::new();
        let result = (|| -> Result<()> {
            for (entry, signer) in &software {
                let passphrase = self.passphrase(passphrase_class(&entry.role), true)?;
                self.store
                    .add(signer, &entry.role, &entry.gun, &passphrase)
                    .map_err(WorkflowError::new)?;
                added.push(entry.id.clone());
            }
            for (entry, public, reference) in &tokens {
                self.store
                    .add_token_key(public, &entry.role, &entry.gun, reference)
                    .map_err(WorkflowError::new)?;
                added.push(entry.id.clone());
            }
            Ok(())
        })();
        if let Err(e) = result {
            for id in &added {
                let _ = self.store.remove(id);
            }
            bail!("restoring {shown}; nothing was restored: {e}");
        }
        for (entry, _) in software {
            restored.keys.push((entry.role, entry.id, entry.gun));
        }
        for (entry, _, reference) in tokens {
            restored.token_keys.push((entry.role, entry.id, reference.token_label));
        }
        Ok(restored)
    }
}

/// Writes a key backup: a zip of `index` and the PEM `members`, mode 0600,
/// through a temporary file beside `output` so a failure leaves nothing.
fn write_backup<S: std::ops::Deref<Target = String>>(
    output: &Path,
    index: &[u8],
    members: &[(String, S)],
) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = output
        .file_name()
        .ok_or_else(|| WorkflowError::new(format!("{} is not a file name", output.display())))?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let write = || -> std::result::Result<(), String> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| format!("creating {}: {e}", tmp.display()))?;
        let failed = |e: &dyn std::fmt::Display| format!("writing {}: {e}", tmp.display());
        let mut zip = zip::ZipWriter::new(file);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .unix_permissions(0o600);
        zip.start_file(BACKUP_INDEX, options).map_err(|e| failed(&e))?;
        zip.write_all(index).map_err(|e| failed(&e))?;
        for (path, pem) in members {
            zip.start_file(path.as_str(), options).map_err(|e| failed(&e))?;
            zip.write_all(pem.as_bytes()).map_err(|e| failed(&e))?;
        }
        zip.finish()
            .map_err(|e| failed(&e))?
            .sync_all()
            .map_err(|e| failed(&e))?;
        // No replacing a file that appeared meanwhile.
        std::fs::hard_link(&tmp, output).map_err(|e| format!("writing {}: {e}", output.display()))?;
        Ok(())
    };
    let result = write();
    let _ = std::fs::remove_file(&tmp);
    result.map_err(WorkflowError)
}
