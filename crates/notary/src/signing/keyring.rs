//! The keys a session signs with: keys in the key store (decrypted with
//! their class's passphrase), keys on PKCS#11 tokens (the token opened with
//! the PIN its reference names), and signer keys known by name through
//! their records in `signers/NAME.json`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{bail, Interaction, Result, Signing};
use crate::crypto::SoftwareSigner;
use crate::keys::{KeyType, PublicKey, SigMethod, SignError, Signer};
use crate::keystore::{KeyInfo, KeyStoreError, TokenKeyRef};
use crate::pkcs11::{self, KeySelector, Pkcs11Module, Pkcs11Signer, Pkcs11Token, TokenKey, TokenSelector};
use crate::workflow::{describe_cka_id, passphrase_class, preferred_key, slot_cka_id, token_selector, WorkflowError};

/// The variable naming a token's PIN when none is given.
pub const DEFAULT_PIN_ENV: &str = "BERTH_TRUST_TOKEN_PIN";

/// Where a new key goes when it goes on a PKCS#11 token.
#[derive(Debug, Clone)]
pub struct TokenPlacement {
    /// The PKCS#11 module.
    pub module: PathBuf,
    /// The token's label (`None`: the module's only token).
    pub label: Option<String>,
    /// A YubiKey PIV slot (`9a`, ...) or `id:HEX` for a `CKA_ID`.
    pub slot: Option<String>,
    /// The variable holding the user PIN, recorded for signing.
    pub pin_env: String,
    /// Put the key there after the security officer login, its PIN in this variable.
    pub so_pin_env: Option<String>,
}

/// A signer key this client knows by name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SignerRecord {
    pub(super) name: String,
    pub(super) key_id: String,
    /// `file` (in the key store) or `pkcs11`.
    pub(super) source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) module: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) token_label: Option<String>,
    /// The name of the variable holding the PIN (never the PIN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) pin_env: Option<String>,
}

impl SignerRecord {
    /// The record of signer `name`, whose key is `info`.
    pub(super) fn of(name: &str, info: &KeyInfo) -> SignerRecord {
        SignerRecord {
            name: name.to_string(),
            key_id: info.key_id.clone(),
            source: if info.token.is_some() { "pkcs11" } else { "file" }.into(),
            module: info.token.as_ref().map(|t| t.module.clone()),
            token_label: info.token.as_ref().map(|t| t.token_label.clone()),
            pin_env: info.token.as_ref().map(|t| t.pin_env.clone()),
        }
    }
}

/// A token key that says so before each signature (a YubiKey may wait for a touch).
struct TokenSigner {
    inner: Pkcs11Signer,
    interaction: Arc<dyn Interaction>,
}

impl Signer for TokenSigner {
    fn public_key(&self) -> &PublicKey {
        self.inner.public_key()
    }
    fn method(&self) -> SigMethod {
        self.inner.method()
    }
    fn sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, SignError> {
        self.interaction.note(&format!(
            "Signing with key {} on token {:?} (touch the key if it blinks)",
            berth_model::short_id(&self.inner.key().key_id),
            self.inner.token_info().label
        ));
        self.inner.sign(message)
    }
}

impl Signing {
    pub(super) fn signers_dir(&self) -> PathBuf {
        self.dir.join("signers")
    }

    /// The signer records, by name.
    pub(super) fn records(&self) -> Result<Vec<SignerRecord>> {
        let dir = self.signers_dir();
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => bail!("reading {}: {e}", dir.display()),
        };
        for entry in entries {
            let path = entry
                .map_err(|e| WorkflowError::new(format!("reading {}: {e}", dir.display())))?
                .path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let text =
                std::fs::read(&path).map_err(|e| WorkflowError::new(format!("reading {}: {e}", path.display())))?;
            let record: SignerRecord = serde_json::from_slice(&text)
                .map_err(|e| WorkflowError::new(format!("{} is not a signer record: {e}", path.display())))?;
            out.push(record);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub(super) fn save_record(&self, record: &SignerRecord) -> Result<()> {
        let dir = self.signers_dir();
        std::fs::create_dir_all(&dir).map_err(|e| WorkflowError::new(format!("creating {}: {e}", dir.display())))?;
        let path = dir.join(format!("{}.json", record.name));
        let bytes = serde_json::to_vec_pretty(record).map_err(WorkflowError::new)?;
        std::fs::write(&path, bytes).map_err(|e| WorkflowError::new(format!("writing {}: {e}", path.display())))
    }

    /// A new ECDSA key for `role` of `gun` in the key store, under the
    /// role's passphrase class.
    pub(super) fn generate_role_key(&self, role: &str, gun: &str) -> Result<(KeyInfo, SoftwareSigner)> {
        let passphrase = self.passphrase(passphrase_class(role), true)?;
        let (info, signer) = self
            .store
            .generate(KeyType::Ecdsa, role, gun, &passphrase)
            .map_err(WorkflowError::new)?;
        self.note_generated(&info.key_id);
        Ok((info, signer))
    }

    pub(super) fn delete_token_key(&self, info: &KeyInfo, reference: &TokenKeyRef) -> Result<()> {
        let module = Pkcs11Module::open(&reference.module).map_err(WorkflowError::new)?;
        let selector = token_selector(Some(&reference.token_label));
        let token = match &reference.so_pin_env {
            Some(var) => {
                let so_pin = self.token_secret(&reference.module, &reference.token_label, var, true)?;
                module.open_token_as_security_officer(&selector, &so_pin)
            }
            None => {
                let pin = self.token_secret(&reference.module, &reference.token_label, &reference.pin_env, false)?;
                module.open_token(&selector, Some(&pin))
            }
        }
        .map_err(WorkflowError::new)?;
        let key = token
            .find_key(&KeySelector::KeyId(info.key_id.clone()))
            .map_err(WorkflowError::new)?;
        token.delete_key(&key).map_err(WorkflowError::new)
    }

    /// The signer of a signer key generated on a token before the key store
    /// recorded token keys.
    fn token_signer(&self, record: &SignerRecord) -> Result<Box<dyn Signer>> {
        let module_path = record
            .module
            .as_ref()
            .ok_or_else(|| WorkflowError::new(format!("signer {} has no module", record.name)))?;
        let module = Pkcs11Module::open(module_path).map_err(WorkflowError::new)?;
        let pin_env = record.pin_env.clone().unwrap_or_else(|| DEFAULT_PIN_ENV.into());
        let label = record.token_label.clone().unwrap_or_default();
        let pin = self.token_secret(module_path, &label, &pin_env, false)?;
        let selector = match &record.token_label {
            Some(label) => TokenSelector::Label(label.clone()),
            None => TokenSelector::Only,
        };
        let token = module.open_token(&selector, Some(&pin)).map_err(|e| {
            WorkflowError::new(format!("signer {}: {e} (the PIN is read from ${pin_env})", record.name))
        })?;
        let key = token
            .find_key(&KeySelector::KeyId(record.key_id.clone()))
            .map_err(WorkflowError::new)?;
        let inner = token.signer(&key).map_err(WorkflowError::new)?;
        Ok(Box::new(TokenSigner {
            inner,
            interaction: self.interaction.clone(),
        }))
    }

    /// Opens the token `t` names to put a key on it: as security officer
    /// with `so_pin_env`, else as user. A YubiKey needs both a PIV slot
    /// and the security officer.
    pub(super) fn open_token_to_write(&self, t: &TokenPlacement) -> Result<Pkcs11Token> {
        let module = Pkcs11Module::open(&t.module).map_err(WorkflowError::new)?;
        let selector = token_selector(t.label.as_deref());
        let tokens = module.tokens().map_err(WorkflowError::new)?;
        let described = tokens.iter().find(|info| match &selector {
            TokenSelector::Label(label) => info.initialized && info.label == *label,
            _ => info.initialized,
        });
        let label = described
            .map(|i| i.label.clone())
            .or(t.label.clone())
            .unwrap_or_default();
        if described.is_some_and(|i| i.manufacturer.contains("Yubico") || i.model.contains("YubiKey")) {
            if t.slot.is_none() {
                bail!("token {label:?} is a YubiKey: choose the PIV slot for the key with --slot (9a, 9c, 9d, 9e, 82..95)");
            }
            if t.so_pin_env.is_none() {
                bail!(
                    "token {label:?} is a YubiKey: libykcs11 generates and imports keys only after the security officer login; \
                     pass --so-pin-env VAR with VAR holding the PIV management key in hex"
                );
            }
        }
        match &t.so_pin_env {
            Some(var) => {
                let so_pin = self.token_secret(&t.module, &label, var, true)?;
                module
                    .open_token_as_security_officer(&selector, &so_pin)
                    .map_err(|e| WorkflowError::new(format!("{e} (the security officer PIN is read from ${var})")))
            }
            None => {
                let pin = self.token_secret(&t.module, &label, &t.pin_env, false)?;
                module
                    .open_token(&selector, Some(&pin))
                    .map_err(|e| WorkflowError::new(format!("{e} (the PIN is read from ${})", t.pin_env)))
            }
        }
    }

    /// Records `key`, just put on `token`, in the key store as `role` of
    /// `gun`; on failure the key is deleted from the token again.
    pub(super) fn record_token_key(
        &self,
        t: &TokenPlacement,
        token: &Pkcs11Token,
        key: &TokenKey,
        role: &str,
        gun: &str,
    ) -> Result<KeyInfo> {
        let reference = TokenKeyRef {
            module: t.module.canonicalize().unwrap_or_else(|_| t.module.clone()),
            token_label: token.info().label.clone(),
            token_serial: token.info().serial.clone(),
            cka_id: pkcs11::hex_string(&key.cka_id),
            key_label: key.label.clone(),
            pin_env: t.pin_env.clone(),
            so_pin_env: t.so_pin_env.clone(),
        };
        match self.store.add_token_key(&key.public_key, role, gun, &reference) {
            Ok(info) => {
                self.note_generated(&info.key_id);
                Ok(info)
            }
            Err(e) => {
                let _ = token.delete_key(key);
                Err(WorkflowError::new(e))
            }
        }
    }

    /// Generates a P-256 key for `role` of `gun` on the token `t` names and
    /// records it in the key store.
    pub(super) fn token_generate(&self, t: &TokenPlacement, role: &str, gun: &str, label: &str) -> Result<KeyInfo> {
        let cka_id = t.slot.as_deref().map(slot_cka_id).transpose()?;
        let token = self.open_token_to_write(t)?;
        let key = token.generate_p256_key(label, cka_id.as_deref()).map_err(|e| {
            let mut text = e.to_string();
            if let Some(slot) = &t.slot {
                text.push_str(&format!(" (--slot {slot})"));
            }
            if t.so_pin_env.is_some() && text.contains("not logged in") {
                text.push_str("; this token generates keys after the user login: drop --so-pin-env");
            }
            WorkflowError(text)
        })?;
        self.record_token_key(t, &token, &key, role, gun)
    }

    /// A signer for a key on a token, logged in with the user PIN.
    fn token_key_signer(&self, info: &KeyInfo, reference: &TokenKeyRef) -> Result<Box<dyn Signer>> {
        let what = format!("{} key {}", info.role, berth_model::short_id(&info.key_id));
        let module = Pkcs11Module::open(&reference.module).map_err(|e| WorkflowError::new(format!("{what}: {e}")))?;
        let pin = self
            .token_secret(&reference.module, &reference.token_label, &reference.pin_env, false)
            .map_err(|e| WorkflowError::new(format!("{what}: {e}")))?;
        let token = module
            .open_token(&token_selector(Some(&reference.token_label)), Some(&pin))
            .map_err(|e| WorkflowError::new(format!("{what}: {e} (the PIN is read from ${})", reference.pin_env)))?;
        let key = token
            .find_key(&KeySelector::KeyId(info.key_id.clone()))
            .map_err(|e| WorkflowError::new(format!("{what} ({}): {e}", describe_cka_id(&reference.cka_id))))?;
        let inner = token
            .signer(&key)
            .map_err(|e| WorkflowError::new(format!("{what}: {e}")))?;
        Ok(Box::new(TokenSigner {
            inner,
            interaction: self.interaction.clone(),
        }))
    }

    /// A signer for a key in the store: decrypted, or on its token.
    pub(super) fn signer_for_info(&self, info: &KeyInfo) -> Result<Box<dyn Signer>> {
        if let Some(reference) = &info.token {
            return self.token_key_signer(info, reference);
        }
        let passphrase = self.passphrase(passphrase_class(&info.role), false)?;
        let signer = self.store.load(&info.key_id, &passphrase).map_err(WorkflowError::new)?;
        Ok(Box::new(signer))
    }

    /// A signer for `key` (by canonical id: a root certificate key finds its
    /// bare key) if this client holds it.
    pub(super) fn signer_for(&self, key: &PublicKey) -> Result<Option<Box<dyn Signer>>> {
        let id = key.canonical_id().map_err(WorkflowError::new)?;
        match self.store.info(&id) {
            Ok(info) => return self.signer_for_info(&info).map(Some),
            Err(KeyStoreError::NotFound { .. }) => {}
            Err(e) => return Err(WorkflowError::new(e)),
        }
        for record in self.records()? {
            if record.source == "pkcs11" && record.key_id == id {
                return self.token_signer(&record).map(Some);
            }
        }
        Ok(None)
    }

    /// Signers for every key of `keys` this client holds.
    pub(super) fn signers_for<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k PublicKey>,
    ) -> Result<Vec<Box<dyn Signer>>> {
        let mut out: Vec<Box<dyn Signer>> = Vec::new();
        let mut seen = BTreeSet::new();
        for key in keys {
            let id = key.canonical_id().map_err(WorkflowError::new)?;
            if !seen.insert(id) {
                continue;
            }
            if let Some(s) = self.signer_for(key)? {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Whether this client holds `key` (in the store or as a signer record).
    pub(super) fn holds(&self, key: &PublicKey) -> bool {
        let Ok(id) = key.canonical_id() else { return false };
        self.store.info(&id).is_ok()
            || self
                .records()
                .unwrap_or_default()
                .iter()
                .any(|r| r.source == "pkcs11" && r.key_id == id)
    }

    /// The root key new repositories use: one on a token, else the first
    /// in the store, else a new one.
    pub(super) fn root_signer(&self) -> Result<Box<dyn Signer>> {
        let keys = self.store.list().map_err(WorkflowError::new)?;
        match preferred_key(&keys, "root", "") {
            Some(info) => self.signer_for_info(info),
            None => {
                let (info, signer) = self.generate_role_key("root", "")?;
                self.note(&format!("Generated root key {}", info.key_id));
                Ok(Box::new(signer))
            }
        }
    }

    /// A new key for `role` of `gun` for a rotation: on the token `token`
    /// names, else in the key store.
    pub(super) fn rotation_key(
        &self,
        token: Option<&TokenPlacement>,
        role: &str,
        gun: &str,
    ) -> Result<(KeyInfo, Box<dyn Signer>)> {
        let Some(t) = token else {
            let (info, signer) = self.generate_role_key(role, gun)?;
            return Ok((info, Box::new(signer)));
        };
        let label = format!("berth-{role}-{}", berth_model::short_id(&berth_model::new_id()));
        let info = self.token_generate(t, role, gun, &label)?;
        // The token was opened to write (perhaps as security officer); the
        // signer logs in again as its user.
        let signer = self.signer_for_info(&info)?;
        Ok((info, signer))
    }
}
