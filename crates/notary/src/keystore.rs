//! Private keys at rest: one file per key under a directory (the CLI uses
//! `~/.berth/trust/private/<key id>.key`), directory mode 0700, files 0600,
//! each key encrypted with a passphrase.
//!
//! File format (JSON, `"format": "berth-key-v1"`): the key id, role, GUN,
//! key type and public key in the clear (so keys can be listed without a
//! passphrase); the private key as PKCS#8 DER encrypted with
//! XChaCha20-Poly1305 under a key derived from the passphrase by Argon2id,
//! whose parameters and salt are recorded in the file. The clear fields are
//! the associated data, so a file whose role, GUN or id was edited does not
//! decrypt. A wrong passphrase is an error; nothing partial comes out.
//!
//! Import and export speak PEM PKCS#8 with `role` and `gun` headers, as the
//! notary CLI writes them (`notary key import`/`export`), encrypted (PBES2)
//! or not.
//!
//! A key on a PKCS#11 token has a reference file instead (`"format":
//! "berth-token-key-v1"`): the same clear fields and a [`TokenKeyRef`] saying
//! where the key is (module, token label, `CKA_ID`, the variables naming the
//! PINs; never a PIN). Nothing secret is in it, so it has no ciphertext; a
//! reference edited to point elsewhere finds a key whose id does not match
//! and is refused when used. [`KeyStore::list`] and [`KeyStore::info`] show
//! both kinds; [`KeyStore::load`] of a token key is [`KeyStoreError::OnToken`].

use std::fmt;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{self, CryptoError, SoftwareSigner};
use crate::keys::{KeyType, PublicKey, Signer as _};

const FORMAT: &str = "berth-key-v1";
const TOKEN_FORMAT: &str = "berth-token-key-v1";

/// A passphrase. `Debug` and `Display` never show it; memory is wiped on drop.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    pub fn new(text: impl Into<String>) -> Passphrase {
        Passphrase(Zeroizing::new(text.into()))
    }

    /// The secret itself; only for handing to a KDF.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Passphrase {
    fn from(text: &str) -> Passphrase {
        Passphrase::new(text)
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

impl fmt::Display for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane.
    fn default() -> KdfParams {
        KdfParams {
            m_cost: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
        }
    }
}

/// Parameters a key file may ask for; larger ones are refused so a planted
/// file cannot make opening it exhaust memory or time.
const MAX_M_COST: u32 = 1024 * 1024;
const MAX_T_COST: u32 = 64;
const MAX_P_COST: u32 = 16;

/// Why a key store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("no key {key_id} in {dir}")]
    NotFound { key_id: String, dir: PathBuf },
    #[error("wrong passphrase for key {key_id}")]
    WrongPassphrase { key_id: String },
    #[error("key file {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("key {key_id}: {source}")]
    Crypto { key_id: String, source: CryptoError },
    #[error("PEM key: {0}")]
    Pem(String),
    #[error("the PEM key is encrypted; a passphrase is needed")]
    PassphraseRequired,
    #[error("invalid key id {0:?}")]
    InvalidKeyId(String),
    #[error(
        "key {key_id} is on token {token_label:?} of PKCS#11 module {module}; its private key cannot leave the token"
    )]
    OnToken {
        key_id: String,
        token_label: String,
        module: PathBuf,
    },
    #[error("key {key_id} is in {dir} already: {reason}")]
    Conflict {
        key_id: String,
        dir: PathBuf,
        reason: String,
    },
}

/// Where on a PKCS#11 token a key lives. PINs are named by the environment
/// variable that holds them, never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenKeyRef {
    /// The PKCS#11 module (shared library) path.
    pub module: PathBuf,
    pub token_label: String,
    #[serde(default)]
    pub token_serial: String,
    /// The key's `CKA_ID` in hex (on a YubiKey, the PIV slot's id).
    pub cka_id: String,
    /// The key's `CKA_LABEL` as berth set it (some tokens ignore it).
    #[serde(default)]
    pub key_label: String,
    /// The variable holding the user PIN (signing).
    pub pin_env: String,
    /// The variable holding the security officer PIN (on a YubiKey, the
    /// PIV management key) used to generate or import the key, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub so_pin_env: Option<String>,
}

/// What the store tells about a key without decrypting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Canonical key id (the file name).
    pub key_id: String,
    pub role: String,
    /// Empty for keys not tied to one repository (root keys, delegation keys).
    pub gun: String,
    pub public: PublicKey,
    /// Where the key is when it is on a token; `None` for keys in the store.
    pub token: Option<TokenKeyRef>,
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    format: String,
    key_id: String,
    role: String,
    gun: String,
    keytype: KeyType,
    #[serde(with = "b64")]
    public: Vec<u8>,
    kdf: KdfRecord,
    cipher: CipherRecord,
    #[serde(with = "b64")]
    ciphertext: Vec<u8>,
}

/// A reference to a key on a token: no secret inside.
#[derive(Serialize, Deserialize)]
struct TokenKeyFile {
    format: String,
    key_id: String,
    role: String,
    gun: String,
    keytype: KeyType,
    #[serde(with = "b64")]
    public: Vec<u8>,
    token: TokenKeyRef,
}

/// What a file in the store holds.
enum Stored {
    Software(KeyFile),
    Token(TokenKeyFile),
}

impl Stored {
    fn info(&self) -> KeyInfo {
        match self {
            Stored::Software(file) => KeyInfo {
                key_id: file.key_id.clone(),
                role: file.role.clone(),
                gun: file.gun.clone(),
                public: PublicKey::new(file.keytype, file.public.clone()),
                token: None,
            },
            Stored::Token(file) => KeyInfo {
                key_id: file.key_id.clone(),
                role: file.role.clone(),
                gun: file.gun.clone(),
                public: PublicKey::new(file.keytype, file.public.clone()),
                token: Some(file.token.clone()),
            },
        }
    }
}

#[derive(Serialize, Deserialize)]
struct KdfRecord {
    algorithm: String,
    version: u32,
    #[serde(flatten)]
    params: KdfParams,
    #[serde(with = "b64")]
    salt: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct CipherRecord {
    algorithm: String,
    #[serde(with = "b64")]
    nonce: Vec<u8>,
}

impl KeyFile {
    /// Associated data: every clear field that says what the key is.
    fn associated_data(&self) -> Vec<u8> {
        let header = serde_json::json!({
            "format": self.format,
            "key_id": self.key_id,
            "role": self.role,
            "gun": self.gun,
            "keytype": self.keytype,
            "public": base64::engine::general_purpose::STANDARD.encode(&self.public),
        });
        crate::canonical::canonical_json(&header).unwrap_or_default()
    }
}

fn derive_key(passphrase: &Passphrase, salt: &[u8], params: KdfParams) -> Result<Zeroizing<[u8; 32]>, String> {
    let argon_params =
        argon2::Params::new(params.m_cost, params.t_cost, params.p_cost, Some(32)).map_err(|e| e.to_string())?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, argon_params);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase.expose().as_bytes(), salt, key.as_mut())
        .map_err(|e| e.to_string())?;
    Ok(key)
}

/// Encrypted private keys in a directory.
#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
    kdf: KdfParams,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyStoreError + '_ {
    move |source| KeyStoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn check_key_id(key_id: &str) -> Result<(), KeyStoreError> {
    if key_id.len() == 64 && key_id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(KeyStoreError::InvalidKeyId(key_id.to_string()))
    }
}

impl KeyStore {
    /// Open (creating it, mode 0700) the key directory.
    pub fn open(dir: &Path) -> Result<KeyStore, KeyStoreError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
        }
        Ok(KeyStore {
            dir: dir.to_path_buf(),
            kdf: KdfParams::default(),
        })
    }

    /// Use other Argon2id costs for keys written from now on.
    pub fn with_kdf_params(mut self, kdf: KdfParams) -> KeyStore {
        self.kdf = kdf;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key_id: &str) -> PathBuf {
        self.dir.join(format!("{key_id}.key"))
    }

    /// Encrypt and store `signer` for `role` (and `gun`, empty for keys
    /// usable in any repository).
    pub fn add(
        &self,
        signer: &SoftwareSigner,
        role: &str,
        gun: &str,
        passphrase: &Passphrase,
    ) -> Result<KeyInfo, KeyStoreError> {
        let key_id = signer.key_id();
        if let Ok(Stored::Token(file)) = self.read_stored(&key_id) {
            return Err(KeyStoreError::Conflict {
                key_id,
                dir: self.dir.clone(),
                reason: format!("it is a reference to a key on token {:?}", file.token.token_label),
            });
        }
        let mut salt = [0u8; 16];
        let mut nonce = [0u8; 24];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut salt);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
        let mut file = KeyFile {
            format: FORMAT.into(),
            key_id: key_id.clone(),
            role: role.to_string(),
            gun: gun.to_string(),
            keytype: signer.public_key().keytype,
            public: signer.public_key().public.clone(),
            kdf: KdfRecord {
                algorithm: "argon2id".into(),
                version: 0x13,
                params: self.kdf,
                salt: salt.to_vec(),
            },
            cipher: CipherRecord {
                algorithm: "xchacha20poly1305".into(),
                nonce: nonce.to_vec(),
            },
            ciphertext: Vec::new(),
        };
        let key = derive_key(passphrase, &salt, self.kdf).map_err(|reason| KeyStoreError::Corrupt {
            path: self.path(&key_id),
            reason: format!("key derivation: {reason}"),
        })?;
        let cipher = chacha20poly1305::XChaCha20Poly1305::new_from_slice(key.as_ref())
            .map_err(|_| KeyStoreError::Pem("bad cipher key length".into()))?;
        let aad = file.associated_data();
        let plain = signer.to_pkcs8_der();
        let nonce =
            chacha20poly1305::XNonce::try_from(&nonce[..]).map_err(|_| KeyStoreError::Pem("bad nonce".into()))?;
        file.ciphertext = cipher
            .encrypt(&nonce, Payload { msg: &plain, aad: &aad })
            .map_err(|_| KeyStoreError::Pem("encryption failed".into()))?;
        let text = serde_json::to_vec_pretty(&file).map_err(|e| KeyStoreError::Pem(e.to_string()))?;
        self.write_private(&key_id, &text)?;
        Ok(KeyInfo {
            key_id,
            role: role.to_string(),
            gun: gun.to_string(),
            public: signer.public_key().clone(),
            token: None,
        })
    }

    /// Record that the key `public` for `role` (and `gun`) lives on a token.
    /// A key with the same id already in the store is a conflict: its file
    /// is never replaced by a reference.
    pub fn add_token_key(
        &self,
        public: &PublicKey,
        role: &str,
        gun: &str,
        token: &TokenKeyRef,
    ) -> Result<KeyInfo, KeyStoreError> {
        let key_id = public.id();
        check_key_id(&key_id)?;
        match self.read_stored(&key_id) {
            Err(KeyStoreError::NotFound { .. }) => {}
            Ok(Stored::Token(file)) if file.token == *token && file.role == role && file.gun == gun => {}
            Ok(_) => {
                return Err(KeyStoreError::Conflict {
                    key_id,
                    dir: self.dir.clone(),
                    reason: "a key with this id is recorded already".into(),
                })
            }
            Err(e) => return Err(e),
        }
        let file = TokenKeyFile {
            format: TOKEN_FORMAT.into(),
            key_id: key_id.clone(),
            role: role.to_string(),
            gun: gun.to_string(),
            keytype: public.keytype,
            public: public.public.clone(),
            token: token.clone(),
        };
        let text = serde_json::to_vec_pretty(&file).map_err(|e| KeyStoreError::Pem(e.to_string()))?;
        self.write_private(&key_id, &text)?;
        Ok(Stored::Token(file).info())
    }

    /// Whether a key restored from a backup as `role`/`gun` (`on_token`
    /// for a token reference) may go into the store: `Ok(false)` when the
    /// store has no key with `key_id`, `Ok(true)` when it has the same key,
    /// role and GUN already (nothing to do), and [`KeyStoreError::Conflict`]
    /// when it holds the id as something else, which a restore never
    /// overwrites.
    pub fn check_restore(&self, key_id: &str, role: &str, gun: &str, on_token: bool) -> Result<bool, KeyStoreError> {
        let existing = match self.read_stored(key_id) {
            Ok(stored) => stored,
            Err(KeyStoreError::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        let info = existing.info();
        let conflict = |reason: String| KeyStoreError::Conflict {
            key_id: key_id.to_string(),
            dir: self.dir.clone(),
            reason,
        };
        if info.token.is_some() != on_token {
            return Err(conflict(if on_token {
                "the store holds its private key, the backup a token reference".into()
            } else {
                "the store holds a token reference, the backup its private key".into()
            }));
        }
        if info.role != role || info.gun != gun {
            return Err(conflict(format!(
                "as role {:?} of GUN {:?}, the backup has role {role:?} of GUN {gun:?}",
                info.role, info.gun
            )));
        }
        Ok(true)
    }

    /// Generate an ECDSA (default) or Ed25519 key and store it.
    pub fn generate(
        &self,
        keytype: KeyType,
        role: &str,
        gun: &str,
        passphrase: &Passphrase,
    ) -> Result<(KeyInfo, SoftwareSigner), KeyStoreError> {
        let signer = match keytype {
            KeyType::Ecdsa => SoftwareSigner::generate_ecdsa(),
            KeyType::Ed25519 => SoftwareSigner::generate_ed25519(),
            other => {
                return Err(KeyStoreError::Pem(format!(
                    "cannot generate {other} keys; use ecdsa or ed25519"
                )))
            }
        };
        let info = self.add(&signer, role, gun, passphrase)?;
        Ok((info, signer))
    }

    fn write_private(&self, key_id: &str, bytes: &[u8]) -> Result<(), KeyStoreError> {
        let path = self.path(key_id);
        let tmp = self.dir.join(format!(".{key_id}.key.tmp"));
        let _ = fs::remove_file(&tmp);
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp).map_err(io_err(&tmp))?;
        file.write_all(bytes).map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    /// The software key file of `key_id`; a token reference is [`KeyStoreError::OnToken`].
    fn read_file(&self, key_id: &str) -> Result<KeyFile, KeyStoreError> {
        match self.read_stored(key_id)? {
            Stored::Software(file) => Ok(file),
            Stored::Token(file) => Err(KeyStoreError::OnToken {
                key_id: key_id.to_string(),
                token_label: file.token.token_label,
                module: file.token.module,
            }),
        }
    }

    fn read_stored(&self, key_id: &str) -> Result<Stored, KeyStoreError> {
        check_key_id(key_id)?;
        let path = self.path(key_id);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyStoreError::NotFound {
                    key_id: key_id.to_string(),
                    dir: self.dir.clone(),
                })
            }
            Err(source) => return Err(KeyStoreError::Io { path, source }),
        };
        let corrupt = |reason: String| KeyStoreError::Corrupt {
            path: path.clone(),
            reason,
        };
        #[derive(Deserialize)]
        struct Header {
            format: String,
        }
        let header: Header = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let (stored, file_key_id) = match header.format.as_str() {
            FORMAT => {
                let file: KeyFile = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
                let id = file.key_id.clone();
                (Stored::Software(file), id)
            }
            TOKEN_FORMAT => {
                let file: TokenKeyFile = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
                let id = file.key_id.clone();
                (Stored::Token(file), id)
            }
            other => return Err(corrupt(format!("unknown format {other:?}"))),
        };
        if file_key_id != key_id {
            return Err(corrupt(format!("file holds key {file_key_id}")));
        }
        Ok(stored)
    }

    /// What `key_id` is (a key in the store or a token reference), without
    /// decrypting it.
    pub fn info(&self, key_id: &str) -> Result<KeyInfo, KeyStoreError> {
        Ok(self.read_stored(key_id)?.info())
    }

    /// Every key (id, role, GUN, token), without decrypting; files that are
    /// not berth key files are skipped.
    pub fn list(&self) -> Result<Vec<KeyInfo>, KeyStoreError> {
        let mut keys = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            let name = entry.file_name();
            let Some(key_id) = name.to_str().and_then(|n| n.strip_suffix(".key")) else {
                continue;
            };
            if check_key_id(key_id).is_err() {
                continue;
            }
            match self.read_stored(key_id) {
                Ok(stored) => keys.push(stored.info()),
                Err(KeyStoreError::Corrupt { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        keys.sort_by(|a, b| (&a.role, &a.gun, &a.key_id).cmp(&(&b.role, &b.gun, &b.key_id)));
        Ok(keys)
    }

    /// Decrypt `key_id`.
    pub fn load(&self, key_id: &str, passphrase: &Passphrase) -> Result<SoftwareSigner, KeyStoreError> {
        let file = self.read_file(key_id)?;
        let path = self.path(key_id);
        let corrupt = |reason: String| KeyStoreError::Corrupt {
            path: path.clone(),
            reason,
        };
        if file.kdf.algorithm != "argon2id" || file.kdf.version != 0x13 {
            return Err(corrupt(format!(
                "unsupported kdf {} v{}",
                file.kdf.algorithm, file.kdf.version
            )));
        }
        let p = file.kdf.params;
        if p.m_cost > MAX_M_COST || p.t_cost > MAX_T_COST || p.p_cost > MAX_P_COST {
            return Err(corrupt(format!("kdf parameters {p:?} exceed the limits")));
        }
        if file.cipher.algorithm != "xchacha20poly1305" {
            return Err(corrupt(format!("unsupported cipher {}", file.cipher.algorithm)));
        }
        let key = derive_key(passphrase, &file.kdf.salt, p).map_err(|e| corrupt(format!("key derivation: {e}")))?;
        let cipher = chacha20poly1305::XChaCha20Poly1305::new_from_slice(key.as_ref())
            .map_err(|_| corrupt("bad cipher key length".into()))?;
        let nonce = chacha20poly1305::XNonce::try_from(&file.cipher.nonce[..])
            .map_err(|_| corrupt("bad nonce length".into()))?;
        let aad = file.associated_data();
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    &nonce,
                    Payload {
                        msg: &file.ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| KeyStoreError::WrongPassphrase {
                    key_id: key_id.to_string(),
                })?,
        );
        let signer = SoftwareSigner::from_pkcs8_der(&plain).map_err(|source| KeyStoreError::Crypto {
            key_id: key_id.to_string(),
            source,
        })?;
        if signer.key_id() != file.key_id || signer.public_key().public != file.public {
            return Err(corrupt("decrypted key does not match its public key".into()));
        }
        Ok(signer)
    }

    /// Delete `key_id` (a key file or a token reference; the key on the
    /// token stays).
    pub fn remove(&self, key_id: &str) -> Result<(), KeyStoreError> {
        self.read_stored(key_id)?;
        let path = self.path(key_id);
        fs::remove_file(&path).map_err(io_err(&path))
    }

    /// Import a PEM private key (as `notary key export` or `notary key
    /// generate -o` write it). `role` and `gun` default to the PEM's
    /// headers; the key is stored encrypted with `passphrase`.
    pub fn import_pem(
        &self,
        pem_bytes: &[u8],
        pem_passphrase: Option<&Passphrase>,
        role: Option<&str>,
        gun: Option<&str>,
        passphrase: &Passphrase,
    ) -> Result<KeyInfo, KeyStoreError> {
        let parsed = parse_private_key_pem(pem_bytes, pem_passphrase)?;
        let role = role.map(str::to_string).or(parsed.role).unwrap_or_default();
        if role.is_empty() {
            return Err(KeyStoreError::Pem("the key has no role header; give a role".into()));
        }
        let gun = gun.map(str::to_string).or(parsed.gun).unwrap_or_default();
        self.add(&parsed.signer, &role, &gun, passphrase)
    }

    /// Export `key_id` as PEM PKCS#8 with `role`/`gun` headers, encrypted
    /// with `export_passphrase` (PBES2, readable by the notary CLI) or not.
    pub fn export_pem(
        &self,
        key_id: &str,
        passphrase: &Passphrase,
        export_passphrase: Option<&Passphrase>,
    ) -> Result<Zeroizing<String>, KeyStoreError> {
        let info = self.info(key_id)?;
        let signer = self.load(key_id, passphrase)?;
        private_key_to_pem(&signer, &info.role, &info.gun, export_passphrase).map_err(|source| KeyStoreError::Crypto {
            key_id: key_id.to_string(),
            source,
        })
    }
}

/// A private key read from PEM, with the `role` and `gun` headers.
pub struct PemPrivateKey {
    pub signer: SoftwareSigner,
    pub role: Option<String>,
    pub gun: Option<String>,
}

impl fmt::Debug for PemPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PemPrivateKey")
            .field("signer", &self.signer)
            .field("role", &self.role)
            .field("gun", &self.gun)
            .finish()
    }
}

/// Parse a PEM private key: `PRIVATE KEY` (PKCS#8), `ENCRYPTED PRIVATE KEY`
/// (PKCS#8 PBES2, needs `passphrase`), or the legacy `EC PRIVATE KEY`
/// (SEC1) and `ED25519 PRIVATE KEY` forms, plain or encrypted with
/// `Proc-Type`/`DEK-Info` headers as notary clients before 0.4 wrote them.
pub fn parse_private_key_pem(
    pem_bytes: &[u8],
    passphrase: Option<&Passphrase>,
) -> Result<PemPrivateKey, KeyStoreError> {
    let block = pem::parse(pem_bytes).map_err(|e| KeyStoreError::Pem(e.to_string()))?;
    let role = block.headers().get("role").map(str::to_string);
    let gun = block.headers().get("gun").map(str::to_string);
    let crypto_err = |source: CryptoError| KeyStoreError::Crypto {
        key_id: "(pem)".into(),
        source,
    };
    let signer = match block.tag() {
        "PRIVATE KEY" => SoftwareSigner::from_pkcs8_der(block.contents()).map_err(crypto_err)?,
        "ENCRYPTED PRIVATE KEY" => {
            let passphrase = passphrase.ok_or(KeyStoreError::PassphraseRequired)?;
            crypto::decrypt_pkcs8(block.contents(), passphrase.expose()).map_err(crypto_err)?
        }
        "EC PRIVATE KEY" | "ED25519 PRIVATE KEY" | "RSA PRIVATE KEY" => {
            // Legacy forms (notary before 0.4), optionally encrypted.
            let encrypted = block
                .headers()
                .get("Proc-Type")
                .is_some_and(|p| p.contains("ENCRYPTED"));
            let body = if encrypted {
                let passphrase = passphrase.ok_or(KeyStoreError::PassphraseRequired)?;
                let dek_info = block
                    .headers()
                    .get("DEK-Info")
                    .ok_or_else(|| KeyStoreError::Pem("encrypted PEM without DEK-Info".into()))?;
                crypto::decrypt_legacy_pem(block.contents(), dek_info, passphrase.expose()).map_err(crypto_err)?
            } else {
                Zeroizing::new(block.contents().to_vec())
            };
            let parsed = match block.tag() {
                "EC PRIVATE KEY" => SoftwareSigner::from_sec1_der(&body),
                "ED25519 PRIVATE KEY" => crypto::ed25519_from_notary_legacy(&body),
                _ => Err(CryptoError::PrivateKey(
                    "rsa private keys can be verified against but not used to sign".into(),
                )),
            };
            match parsed {
                // Garbage after decryption means the passphrase was wrong.
                Err(CryptoError::PrivateKey(_)) if encrypted && block.tag() != "RSA PRIVATE KEY" => {
                    return Err(crypto_err(CryptoError::WrongPassphrase))
                }
                other => other.map_err(crypto_err)?,
            }
        }
        other => return Err(KeyStoreError::Pem(format!("unsupported PEM block {other:?}"))),
    };
    Ok(PemPrivateKey { signer, role, gun })
}

/// PEM PKCS#8 with `gun`, `path` and `role` headers, as `notary key export`
/// writes it.
pub fn private_key_to_pem(
    signer: &SoftwareSigner,
    role: &str,
    gun: &str,
    passphrase: Option<&Passphrase>,
) -> Result<Zeroizing<String>, CryptoError> {
    let (tag, der) = match passphrase {
        Some(p) => (
            "ENCRYPTED PRIVATE KEY",
            Zeroizing::new(crypto::encrypt_pkcs8(signer, p.expose())?),
        ),
        None => ("PRIVATE KEY", signer.to_pkcs8_der()),
    };
    let block = pem::Pem::new(tag, der.to_vec());
    // Sorted, as Go's PEM encoder writes them. `path` (the key id) lets the
    // notary CLI import an encrypted key without decrypting it first.
    let key_id = signer.key_id();
    let headers = [("gun", gun), ("path", key_id.as_str()), ("role", role)];
    let mut header_lines = String::new();
    for (name, value) in headers.into_iter().filter(|(_, v)| !v.is_empty()) {
        // The pem crate refuses a ':' in a value, which every GUN with a
        // port has; readers split a header at its first ':', so write them here.
        if value.contains(['\n', '\r']) {
            return Err(CryptoError::PrivateKey(format!("PEM header {name} holds a line break")));
        }
        header_lines.push_str(&format!("{name}: {value}\n"));
    }
    let encoded = Zeroizing::new(pem::encode_config(
        &block,
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    ));
    let mut contents = block.into_contents();
    zeroize::Zeroize::zeroize(&mut contents);
    if header_lines.is_empty() {
        return Ok(encoded);
    }
    let (begin, body) = encoded
        .split_once('\n')
        .ok_or_else(|| CryptoError::PrivateKey("PEM encoding has no lines".into()))?;
    Ok(Zeroizing::new(format!("{begin}\n{header_lines}\n{body}")))
}

mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}
