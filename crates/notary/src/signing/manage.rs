//! `berth trust key generate|list|load`: keys for a role of a repository
//! (root, targets, snapshot) or for a named signer, in the key store or on
//! a PKCS#11 token.

use std::path::Path;

use super::keyring::{SignerRecord, TokenPlacement};
use super::{bail, Result, Signing};
use crate::keys::{KeyType, Signer as _};
use crate::keystore::{parse_private_key_pem, KeyInfo};
use crate::metadata::RoleName;
use crate::workflow::{describe_location, normalize_gun, passphrase_class, public_key_pem, slot_cka_id, WorkflowError};

/// What `key generate` makes: a key for a role (`root`, or `targets` and
/// `snapshot` of one GUN), or a named signer's key.
#[derive(Debug, Clone)]
pub enum KeyRequest {
    Role { role: String, gun: Option<String> },
    Signer { name: String, gun: Option<String> },
}

/// A key `key generate` made.
#[derive(Debug, Clone)]
pub struct GeneratedKey {
    pub info: KeyInfo,
    /// The role it serves (a signer's name for a signer key).
    pub role: String,
    /// The GUN it serves; empty for every repository.
    pub gun: String,
    /// Where it is (`file` or the token).
    pub location: String,
    /// For a signer key: its public key as PEM, to hand to repository owners.
    pub signer_public_pem: Option<String>,
}

/// One row of `key list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyListing {
    pub id: String,
    pub role: String,
    pub gun: String,
    pub location: String,
}

/// A key `key load` put in the key store.
#[derive(Debug, Clone)]
pub struct LoadedKey {
    pub info: KeyInfo,
    pub role: String,
    pub location: String,
}

impl Signing {
    /// Generates a key in the key store, or on the token `token` names.
    pub fn generate_key(&self, request: &KeyRequest, token: Option<&TokenPlacement>) -> Result<GeneratedKey> {
        let (role, gun, signer) = match request {
            KeyRequest::Role { role, gun } => match role.as_str() {
                "root" => {
                    if gun.is_some() {
                        bail!("a root key serves every repository: drop --gun");
                    }
                    (role.clone(), String::new(), None)
                }
                "targets" | "snapshot" => {
                    let gun = gun.as_deref().ok_or_else(|| {
                        WorkflowError::new(format!("a {role} key belongs to one repository: pass --gun GUN"))
                    })?;
                    (role.clone(), normalize_gun(gun)?, None)
                }
                "timestamp" => bail!("the timestamp key is always held by the trust server"),
                other => {
                    bail!("unknown role {other:?}: use root, targets or snapshot (or name a signer without --role)")
                }
            },
            KeyRequest::Signer { name, gun } => {
                RoleName::parse(&format!("targets/{name}"))
                    .map_err(|_| WorkflowError::new(format!("invalid signer name {name:?}: use a-z, 0-9, - and _")))?;
                if gun.is_some() {
                    bail!("a signer key serves every repository it is added to: drop --gun");
                }
                if self.records()?.iter().any(|r| r.name == *name) {
                    bail!(
                        "a signer key named {name:?} exists already ({})",
                        self.signers_dir().display()
                    );
                }
                (name.clone(), String::new(), Some(name.clone()))
            }
        };
        let info = match token {
            None => self.generate_role_key(&role, &gun)?.0,
            Some(t) => {
                // Signer keys keep their name as label; repository keys get
                // a fresh one, so a rotation can use the same token.
                let label = match &signer {
                    Some(name) => name.clone(),
                    None => format!("berth-{role}-{}", berth_model::short_id(&berth_model::new_id())),
                };
                self.token_generate(t, &role, &gun, &label)?
            }
        };
        let location = describe_location(&self.store, &info);
        let signer_public_pem = match &signer {
            Some(name) => {
                self.save_record(&SignerRecord::of(name, &info))?;
                Some(public_key_pem(&info.public, name))
            }
            None => None,
        };
        Ok(GeneratedKey {
            info,
            role,
            gun,
            location,
            signer_public_pem,
        })
    }

    /// The keys in the key store, and signer keys on tokens known only by
    /// their records.
    pub fn list_keys(&self) -> Result<Vec<KeyListing>> {
        let mut rows = Vec::new();
        let stored = self.store.list().map_err(WorkflowError::new)?;
        for info in &stored {
            rows.push(KeyListing {
                id: info.key_id.clone(),
                role: info.role.clone(),
                gun: info.gun.clone(),
                location: describe_location(&self.store, info),
            });
        }
        // Signer keys generated on a token before the key store recorded them.
        for record in self.records()? {
            if record.source == "pkcs11" && !stored.iter().any(|k| k.key_id == record.key_id) {
                rows.push(KeyListing {
                    id: record.key_id.clone(),
                    role: record.name.clone(),
                    gun: String::new(),
                    location: format!(
                        "pkcs11 {} token {}",
                        record.module.as_deref().unwrap_or(Path::new("?")).display(),
                        record.token_label.as_deref().unwrap_or("?")
                    ),
                });
            }
        }
        Ok(rows)
    }

    /// Imports a PEM private key (`file` names it in messages) as `name`
    /// (else the role its header names), into the key store or onto the
    /// token `token` names. A signer key is recorded by its name.
    pub fn load_key(
        &self,
        pem_bytes: &[u8],
        file: &str,
        name: Option<&str>,
        gun: Option<&str>,
        token: Option<&TokenPlacement>,
    ) -> Result<LoadedKey> {
        let encrypted = String::from_utf8_lossy(pem_bytes).contains("ENCRYPTED");
        let headers = parse_private_key_pem(pem_bytes, None).ok();
        let parsed_role = headers.as_ref().and_then(|p| p.role.clone());
        let role = name.map(str::to_string).or(parsed_role).unwrap_or_default();
        if role.is_empty() {
            bail!("{file} has no role header: name the key with --name");
        }
        let gun = match gun {
            Some(gun) => normalize_gun(gun)?,
            None => headers.as_ref().and_then(|p| p.gun.clone()).unwrap_or_default(),
        };
        let pem_passphrase = if encrypted {
            Some(self.interaction.import_passphrase(file)?)
        } else {
            None
        };
        let class = passphrase_class(&role);
        let info = match token {
            None => {
                let passphrase = self.passphrase(class, true)?;
                self.store
                    .import_pem(pem_bytes, pem_passphrase.as_ref(), Some(&role), Some(&gun), &passphrase)
                    .map_err(|e| WorkflowError::new(format!("importing {file}: {e}")))?
            }
            Some(t) => {
                let parsed = parse_private_key_pem(pem_bytes, pem_passphrase.as_ref())
                    .map_err(|e| WorkflowError::new(format!("importing {file}: {e}")))?;
                if parsed.signer.public_key().keytype != KeyType::Ecdsa {
                    bail!(
                        "{file}: only ECDSA P-256 keys can go on a token, this is a {} key",
                        parsed.signer.public_key().keytype
                    );
                }
                let cka_id = t.slot.as_deref().map(slot_cka_id).transpose()?;
                let label = format!(
                    "berth-{}-{}",
                    role.replace('/', "-"),
                    berth_model::short_id(&berth_model::new_id())
                );
                let token = self.open_token_to_write(t)?;
                let der = parsed.signer.to_pkcs8_der();
                let key = token
                    .import_p256_der(&label, cka_id.as_deref(), &der)
                    .map_err(|e| WorkflowError::new(format!("importing {file}: {e}")))?;
                self.record_token_key(t, &token, &key, &role, &gun)?
            }
        };
        if let Some(name) = name {
            if RoleName::parse(&format!("targets/{name}")).is_ok() && class == "DELEGATION" {
                self.save_record(&SignerRecord::of(name, &info))?;
            }
        }
        let location = describe_location(&self.store, &info);
        Ok(LoadedKey { info, role, location })
    }
}
