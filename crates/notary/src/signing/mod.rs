//! The signing session of `berth trust`: everything a trust command does
//! between reading its arguments and printing its result.
//!
//! - keys ([`keyring`] and [`manage`]): generate, list, load, rotate, back
//!   up and restore keys in the [`KeyStore`] under the trust directory or on
//!   PKCS#11 tokens ([`TokenPlacement`]); signer names are recorded in
//!   `signers/NAME.json` beside it;
//! - signing ([`sign`]): create a repository, sign and revoke tags, add and
//!   remove signers, publish to the trust server, and attach the signed
//!   metadata to the image as an OCI referrer ([`remote::TRUST_ARTIFACT`]);
//!   a signature short of its role's threshold is attached as pending
//!   ([`remote::PENDING_ARTIFACT`]) for the next key holder;
//! - verification ([`inspect`]): the verified trust data of a GUN, from its
//!   trust server (with a per-GUN cache under `tuf/` pinning the root on
//!   first use) or from the referrers of an image.
//!
//! The session reaches the world through two handles the caller gives it:
//! a [`TrustRemote`] per repository (the registry and its trust server) and
//! an [`Interaction`] (passphrases, PINs and notes: the terminal is the
//! caller's). It reads no environment. Keys a command generated are removed
//! again by [`Signing::discard_generated`] when it fails before publishing,
//! so a failed command leaves no key behind. The decisions it takes (which
//! roles and keys sign, the next targets and snapshot) are the pure
//! functions of [`crate::workflow`].

mod backup;
mod inspect;
mod keyring;
mod manage;
pub mod remote;
mod sign;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::keystore::{KeyStore, Passphrase};
use crate::pkcs11::TokenPin;
use crate::workflow::WorkflowError;

pub use backup::{BackedUp, Restored};
pub use keyring::{TokenPlacement, DEFAULT_PIN_ENV};
pub use manage::{GeneratedKey, KeyListing, KeyRequest, LoadedKey};
pub use remote::{Manifest, TrustRemote};
pub use sign::{Signed, SignerAdded};

type Result<T> = std::result::Result<T, WorkflowError>;

/// Returns early with a [`WorkflowError`] made of a formatted message.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::workflow::WorkflowError(format!($($arg)*)))
    };
}
use bail;

/// What the session asks of the person running the command. The CLI reads
/// the environment and prompts on the terminal; secrets are never echoed,
/// printed or logged.
pub trait Interaction: Send + Sync {
    /// The passphrase of a class of keys (`ROOT`, `TARGETS`, `SNAPSHOT`,
    /// `DELEGATION`) or of a key backup (`BACKUP`). `creating` when a new
    /// key or backup is encrypted with it (a prompt asks twice).
    fn passphrase(&self, class: &'static str, creating: bool) -> Result<Passphrase>;
    /// The passphrase of the encrypted PEM file `file`, being imported.
    fn import_passphrase(&self, file: &str) -> Result<Passphrase>;
    /// The user PIN of a token (or, with `security_officer`, its security
    /// officer PIN / PIV management key), which the variable `var` holds.
    fn token_pin(&self, module: &Path, label: &str, var: &str, security_officer: bool) -> Result<Passphrase>;
    /// A note on what is happening (a key generated, a key used, a token
    /// waiting for a touch).
    fn note(&self, text: &str);
}

/// A repository to sign: its GUN, its path in the registry, and the
/// registry with its trust server.
pub struct Target {
    pub gun: String,
    pub repository: String,
    pub remote: Box<dyn TrustRemote>,
}

/// One trust command's session: the key store, the signer records, and the
/// secrets and generated keys of this run.
pub struct Signing {
    dir: PathBuf,
    store: KeyStore,
    interaction: Arc<dyn Interaction>,
    passphrases: Mutex<HashMap<&'static str, Passphrase>>,
    /// Token PINs read this run, by module, token and variable.
    pins: Mutex<HashMap<String, Passphrase>>,
    /// Keys this command generated and has not published yet.
    generated: Mutex<Vec<String>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Signing {
    /// Opens the trust directory `dir` (keys under `private/`, signer
    /// records under `signers/`, the TUF cache under `tuf/`).
    pub fn open(dir: &Path, interaction: Arc<dyn Interaction>) -> Result<Signing> {
        let store = KeyStore::open(&dir.join("private"))
            .map_err(|e| WorkflowError(format!("opening the key store in {}: {e}", dir.display())))?;
        Ok(Signing {
            dir: dir.to_path_buf(),
            store,
            interaction,
            passphrases: Mutex::new(HashMap::new()),
            pins: Mutex::new(HashMap::new()),
            generated: Mutex::new(Vec::new()),
        })
    }

    /// The key store.
    pub fn store(&self) -> &KeyStore {
        &self.store
    }

    /// Where the verified trust data of `gun` is cached.
    pub fn cache_dir(&self, gun: &str) -> PathBuf {
        self.dir.join("tuf").join(crate::client::escape_gun(gun))
    }

    fn note(&self, text: &str) {
        self.interaction.note(text);
    }

    /// The passphrase of a class of keys, asked once per run.
    fn passphrase(&self, class: &'static str, creating: bool) -> Result<Passphrase> {
        let mut cache = lock(&self.passphrases);
        if let Some(p) = cache.get(class) {
            return Ok(p.clone());
        }
        let passphrase = self.interaction.passphrase(class, creating)?;
        cache.insert(class, passphrase.clone());
        Ok(passphrase)
    }

    /// A token PIN, asked once per run.
    fn token_secret(&self, module: &Path, label: &str, var: &str, security_officer: bool) -> Result<TokenPin> {
        let cache_key = format!("{}\0{label}\0{var}\0{security_officer}", module.display());
        if let Some(pin) = lock(&self.pins).get(&cache_key) {
            return Ok(TokenPin::new(pin.expose()));
        }
        let pin = self.interaction.token_pin(module, label, var, security_officer)?;
        let token_pin = TokenPin::new(pin.expose());
        lock(&self.pins).insert(cache_key, pin);
        Ok(token_pin)
    }

    fn note_generated(&self, key_id: &str) {
        lock(&self.generated).push(key_id.to_string());
    }

    /// Published keys are in use: a later failure must not remove them.
    fn keep_generated(&self) {
        lock(&self.generated).clear();
    }

    /// Removes the keys this command generated (from the key store and
    /// from their tokens, with the signer records naming them); for a
    /// command that failed before publishing them.
    pub fn discard_generated(&self) {
        let ids = std::mem::take(&mut *lock(&self.generated));
        for id in ids.into_iter().rev() {
            let Ok(info) = self.store.info(&id) else { continue };
            if let Some(reference) = &info.token {
                if let Err(e) = self.delete_token_key(&info, reference) {
                    self.note(&format!(
                        "warning: key {id} generated by this command stays on token {:?}: {e}",
                        reference.token_label
                    ));
                }
            }
            // A signer named after the key goes with it: its record would
            // point at nothing and keep the name taken.
            for record in self.records().unwrap_or_default() {
                if record.key_id == id {
                    let _ = std::fs::remove_file(self.signers_dir().join(format!("{}.json", record.name)));
                }
            }
            match self.store.remove(&id) {
                Ok(()) => self.note(&format!(
                    "Removed key {id} ({}), generated by this failed command",
                    info.role
                )),
                Err(e) => self.note(&format!(
                    "warning: key {id} generated by this command could not be removed: {e}"
                )),
            }
        }
    }
}
