//! Signing keys that live on a PKCS#11 token: an HSM, a YubiKey through
//! Yubico's `libykcs11`, or SoftHSM2 in tests. One code path for all of them;
//! only the module path differs.
//!
//! A [`Pkcs11Module`] is a loaded and initialised PKCS#11 library. It lists
//! its tokens ([`TokenInfo`]) and opens one ([`Pkcs11Token`]): a session on
//! the token, logged in with the user PIN when the token asks for one. On an
//! open token berth generates ECDSA P-256 key pairs (the private half is
//! created on the token, sensitive, non-extractable and sign-only), imports
//! an existing P-256 private key, finds and lists keys ([`TokenKey`], with
//! the TUF [`PublicKey`] built from `CKA_EC_POINT` and its TUF key id), deletes
//! them, and hands out a [`Pkcs11Signer`], the [`Signer`] that signs TUF
//! metadata on the token.
//!
//! Signing hashes the message with SHA-256 on the host and asks the token for
//! `CKM_ECDSA` over the digest; the token's raw `r || s` output is exactly
//! Notary's `ecdsa` signature format.
//!
//! PINs: a [`TokenPin`] is handed to the token's `C_Login` and nowhere else.
//! It never appears in `Debug` output, logs or error messages, and its memory
//! is wiped when it is dropped. Login state belongs to the process: once one
//! session of this process is logged in to a token, PKCS#11 treats every
//! other session of the process on that token as logged in too.
//!
//! YubiKeys (`/usr/lib/x86_64-linux-gnu/libykcs11.so`, Debian package
//! `ykcs11`): the token is the PIV application and each key object is a PIV
//! slot, chosen by `CKA_ID` (1 = 9a, 2 = 9c, 3 = 9d, 4 = 9e, 5..=24 = the
//! retired slots 82..95, 25 = f9; [`piv_slot_cka_id`]). Pass the slot's id to
//! [`Pkcs11Token::generate_p256_key`] or [`Pkcs11Token::import_p256_key`];
//! berth's own ids (derived from the TUF key id) do not name a PIV slot.
//! `libykcs11` requires the security officer login, whose "PIN" is the PIV
//! management key, to generate or import ([`Pkcs11Module::open_token_as_security_officer`]),
//! and the user PIN to sign. A key whose touch policy requires it makes
//! `C_Sign` — and so [`Signer::sign`] — block until the key is touched: the
//! CLI must print "touch your key" before every signature with a token key.
//! Keys with `CKA_ALWAYS_AUTHENTICATE` (PIV slot 9c) need the PIN again for
//! every signature; berth refuses them with a clear error, so use slot 9a.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType as CkKeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use p256::elliptic_curve::sec1::ToSec1Point as _;
use sha2::{Digest as _, Sha256};

use crate::keys::{KeyType, PublicKey, SigMethod, SignError, Signer};

/// DER of the named curve OID 1.2.840.10045.3.1.7 (P-256), the value of
/// `CKA_EC_PARAMS`.
const P256_EC_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// DER SubjectPublicKeyInfo of a P-256 key up to the 65-byte uncompressed
/// point: `SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING }`.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Length of a raw P-256 `r || s` signature.
const P256_SIGNATURE_LEN: usize = 64;

// ---------------------------------------------------------------------------
// PINs

/// A token PIN (or, for the security officer, the SO PIN / management key).
/// `Debug` prints no digits; the memory is wiped on drop.
pub struct TokenPin(AuthPin);

impl TokenPin {
    pub fn new(pin: impl Into<String>) -> TokenPin {
        TokenPin(AuthPin::from(pin.into()))
    }
}

impl From<String> for TokenPin {
    fn from(pin: String) -> TokenPin {
        TokenPin::new(pin)
    }
}

impl From<&str> for TokenPin {
    fn from(pin: &str) -> TokenPin {
        TokenPin::new(pin)
    }
}

impl fmt::Debug for TokenPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenPin(<redacted>)")
    }
}

// ---------------------------------------------------------------------------
// Modules

/// Modules loaded by this process, by canonical path. PKCS#11 initialisation
/// is per library and per process, so two opens of the same library share one
/// initialised context, and it is finalised when the last user drops it.
static LOADED_MODULES: Mutex<Vec<(PathBuf, Weak<ModuleInner>)>> = Mutex::new(Vec::new());

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves no half-done state
    // behind that a later caller could trip over.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

struct ModuleInner {
    /// The path as the caller gave it, for messages.
    path: PathBuf,
    /// The canonical path, the key in [`LOADED_MODULES`].
    canonical: PathBuf,
    context: Pkcs11,
    /// False when something else in the process initialised the library.
    finalize_on_drop: bool,
}

impl Drop for ModuleInner {
    fn drop(&mut self) {
        let mut loaded = lock(&LOADED_MODULES);
        // An open of the same library may have raced with this drop and taken
        // over the initialised library; it finalises it when it goes.
        let taken_over = loaded
            .iter()
            .any(|(path, module)| *path == self.canonical && module.strong_count() > 0);
        if taken_over {
            return;
        }
        loaded.retain(|(path, _)| *path != self.canonical);
        if self.finalize_on_drop {
            // Nothing useful can be done about a failing C_Finalize while dropping.
            let _ = self.context.clone().finalize();
        }
    }
}

/// A loaded, initialised PKCS#11 library. Cheap to clone; the library is
/// finalised when the last clone, token and signer made from it are dropped.
#[derive(Clone)]
pub struct Pkcs11Module {
    inner: Arc<ModuleInner>,
}

impl fmt::Debug for Pkcs11Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Module").field("path", &self.inner.path).finish()
    }
}

/// One token as the module reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// The PKCS#11 slot the token sits in.
    pub slot_id: u64,
    pub label: String,
    pub manufacturer: String,
    pub model: String,
    pub serial: String,
    /// The token has been initialised (SoftHSM2 always offers one more,
    /// uninitialised token).
    pub initialized: bool,
    /// Keys can only be used after logging in with the user PIN.
    pub login_required: bool,
    /// The PIN is entered on the device (PIN pad), not passed by berth.
    pub protected_authentication_path: bool,
    pub user_pin_initialized: bool,
    pub user_pin_locked: bool,
    pub write_protected: bool,
}

/// Which token to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSelector {
    /// The one initialised token of the module; an error when there are
    /// several or none.
    Only,
    Label(String),
    Serial(String),
    SlotId(u64),
}

impl FromStr for TokenSelector {
    type Err = SignError;

    /// `""` → the only token, `serial:S`, `slot:N`, `label:L`, anything
    /// else is a label.
    fn from_str(text: &str) -> Result<TokenSelector, SignError> {
        if text.is_empty() {
            return Ok(TokenSelector::Only);
        }
        if let Some(serial) = text.strip_prefix("serial:") {
            return Ok(TokenSelector::Serial(serial.to_string()));
        }
        if let Some(slot) = text.strip_prefix("slot:") {
            let slot_id = slot
                .parse::<u64>()
                .map_err(|_| SignError::Token(format!("token selector {text:?}: slot must be a number")))?;
            return Ok(TokenSelector::SlotId(slot_id));
        }
        Ok(TokenSelector::Label(
            text.strip_prefix("label:").unwrap_or(text).to_string(),
        ))
    }
}

impl fmt::Display for TokenSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSelector::Only => f.write_str("the only token"),
            TokenSelector::Label(label) => write!(f, "token labelled {label:?}"),
            TokenSelector::Serial(serial) => write!(f, "token with serial {serial:?}"),
            TokenSelector::SlotId(slot) => write!(f, "token in slot {slot}"),
        }
    }
}

impl Pkcs11Module {
    /// Load the PKCS#11 library at `path` (e.g. `/usr/lib/softhsm/libsofthsm2.so`)
    /// and initialise it.
    pub fn open(path: &Path) -> Result<Pkcs11Module, SignError> {
        let shown = path.display();
        let canonical = path
            .canonicalize()
            .map_err(|e| SignError::Token(format!("PKCS#11 module {shown}: cannot be loaded: {e}")))?;
        let mut loaded = lock(&LOADED_MODULES);
        let mut dying = false;
        for (loaded_path, module) in loaded.iter() {
            if *loaded_path == canonical {
                match module.upgrade() {
                    Some(inner) => return Ok(Pkcs11Module { inner }),
                    None => dying = true,
                }
            }
        }
        let context = Pkcs11::new(&canonical).map_err(|e| {
            SignError::Token(format!(
                "PKCS#11 module {shown}: cannot be loaded: {}",
                describe_error(&e)
            ))
        })?;
        let finalize_on_drop = match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) => true,
            // Either a module value of ours is being dropped right now (we
            // take over finalising) or something else in the process
            // initialised the library (it finalises it).
            Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => dying,
            Err(e) => {
                return Err(SignError::Token(format!(
                    "PKCS#11 module {shown}: initialisation failed: {}",
                    describe_error(&e)
                )))
            }
        };
        let inner = Arc::new(ModuleInner {
            path: path.to_path_buf(),
            canonical: canonical.clone(),
            context,
            finalize_on_drop,
        });
        loaded.retain(|(loaded_path, _)| *loaded_path != canonical);
        loaded.push((canonical, Arc::downgrade(&inner)));
        Ok(Pkcs11Module { inner })
    }

    /// The path the module was opened from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Every token present in the module's slots, initialised or not.
    pub fn tokens(&self) -> Result<Vec<TokenInfo>, SignError> {
        let context = &self.inner.context;
        let slots = context
            .get_slots_with_token()
            .map_err(|e| self.module_error("listing slots", &e))?;
        slots
            .into_iter()
            .map(|slot| {
                let info = context
                    .get_token_info(slot)
                    .map_err(|e| self.module_error(&format!("reading the token in slot {}", slot.id()), &e))?;
                Ok(TokenInfo {
                    slot_id: slot.id(),
                    label: info.label().trim_end().to_string(),
                    manufacturer: info.manufacturer_id().trim_end().to_string(),
                    model: info.model().trim_end().to_string(),
                    serial: info.serial_number().trim_end().to_string(),
                    initialized: info.token_initialized(),
                    login_required: info.login_required(),
                    protected_authentication_path: info.protected_authentication_path(),
                    user_pin_initialized: info.user_pin_initialized(),
                    user_pin_locked: info.user_pin_locked(),
                    write_protected: info.write_protected(),
                })
            })
            .collect()
    }

    /// Open the selected token and log in as its user. `pin` may be `None`
    /// when the token needs no login or has a PIN pad; otherwise a token that
    /// requires login and gets no PIN is an error naming the token.
    pub fn open_token(&self, selector: &TokenSelector, pin: Option<&TokenPin>) -> Result<Pkcs11Token, SignError> {
        let info = self.select_token(selector)?;
        let session = self.open_session(&info)?;
        if info.login_required {
            if pin.is_none() && !info.protected_authentication_path {
                return Err(SignError::Token(format!(
                    "token {:?} requires a PIN to log in",
                    info.label
                )));
            }
            login(&session, &info.label, UserType::User, pin.map(|p| &p.0))?;
        }
        Ok(self.token(info, session))
    }

    /// Open the selected token and log in as its security officer (the SO
    /// PIN; for `libykcs11`, the PIV management key in hex). Needed on
    /// YubiKeys to generate or import keys; SoftHSM2 and most HSMs want the
    /// user login ([`Pkcs11Module::open_token`]) for that instead.
    pub fn open_token_as_security_officer(
        &self,
        selector: &TokenSelector,
        so_pin: &TokenPin,
    ) -> Result<Pkcs11Token, SignError> {
        let info = self.select_token(selector)?;
        let session = self.open_session(&info)?;
        login(&session, &info.label, UserType::So, Some(&so_pin.0))?;
        Ok(self.token(info, session))
    }

    fn token(&self, info: TokenInfo, session: Session) -> Pkcs11Token {
        Pkcs11Token {
            shared: Arc::new(TokenSession {
                session: Mutex::new(session),
                info,
                module: Arc::clone(&self.inner),
            }),
        }
    }

    fn select_token(&self, selector: &TokenSelector) -> Result<TokenInfo, SignError> {
        let tokens = self.tokens()?;
        let mut matching: Vec<&TokenInfo> = tokens
            .iter()
            .filter(|token| match selector {
                TokenSelector::Only => token.initialized,
                TokenSelector::Label(label) => token.initialized && token.label == *label,
                TokenSelector::Serial(serial) => token.serial == *serial,
                TokenSelector::SlotId(slot) => token.slot_id == *slot,
            })
            .collect();
        let available = || {
            let names: Vec<String> = tokens
                .iter()
                .filter(|t| t.initialized)
                .map(|t| format!("{:?} (serial {}, slot {})", t.label, t.serial, t.slot_id))
                .collect();
            if names.is_empty() {
                "it has no initialised token".to_string()
            } else {
                format!("it has {}", names.join(", "))
            }
        };
        match matching.len() {
            0 => Err(SignError::Token(format!(
                "no {selector} in PKCS#11 module {}: {}",
                self.inner.path.display(),
                available()
            ))),
            1 => Ok(matching.remove(0).clone()),
            _ => Err(SignError::Token(format!(
                "more than one {selector} in PKCS#11 module {}: {}; choose one by serial or slot",
                self.inner.path.display(),
                available()
            ))),
        }
    }

    fn open_session(&self, info: &TokenInfo) -> Result<Session, SignError> {
        if !info.initialized {
            return Err(SignError::Token(format!(
                "the token in slot {} of PKCS#11 module {} is not initialised",
                info.slot_id,
                self.inner.path.display()
            )));
        }
        let slot = Slot::try_from(info.slot_id)
            .map_err(|e| SignError::Token(format!("token {:?}: bad slot id {}: {e}", info.label, info.slot_id)))?;
        match self.inner.context.open_rw_session(slot) {
            Ok(session) => Ok(session),
            // A read-only token still lists keys and signs.
            Err(CkError::Pkcs11(RvError::TokenWriteProtected, _)) => self
                .inner
                .context
                .open_ro_session(slot)
                .map_err(|e| token_error(&info.label, "opening a session", &e)),
            Err(e) => Err(token_error(&info.label, "opening a session", &e)),
        }
    }

    fn module_error(&self, action: &str, error: &CkError) -> SignError {
        SignError::Token(format!(
            "PKCS#11 module {}: {action}: {}",
            self.inner.path.display(),
            describe_error(error)
        ))
    }
}

fn login(session: &Session, label: &str, user: UserType, pin: Option<&AuthPin>) -> Result<(), SignError> {
    match session.login(user, pin) {
        // Another session of this process is logged in already; PKCS#11
        // login state is per process and token.
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(e) => Err(token_error(label, "logging in", &e)),
    }
}

// ---------------------------------------------------------------------------
// Tokens and keys

/// The session on one token. Signers share it with the token they came from.
/// Field order matters: the session closes before the module may finalise.
struct TokenSession {
    session: Mutex<Session>,
    info: TokenInfo,
    module: Arc<ModuleInner>,
}

/// An open, logged-in token.
pub struct Pkcs11Token {
    shared: Arc<TokenSession>,
}

impl fmt::Debug for Pkcs11Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Token")
            .field("module", &self.shared.module.path)
            .field("label", &self.shared.info.label)
            .field("serial", &self.shared.info.serial)
            .finish()
    }
}

/// A P-256 key pair on a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenKey {
    /// `CKA_LABEL`.
    pub label: String,
    /// `CKA_ID`, shared by the private and public key objects.
    pub cka_id: Vec<u8>,
    /// The TUF key id of `public_key`.
    pub key_id: String,
    /// Keytype `ecdsa`, DER SubjectPublicKeyInfo.
    pub public_key: PublicKey,
}

/// Which key to find on a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySelector {
    /// The TUF key id (hex SHA-256 of the canonical public key).
    KeyId(String),
    Label(String),
    CkaId(Vec<u8>),
}

impl fmt::Display for KeySelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySelector::KeyId(id) => write!(f, "key with id {id}"),
            KeySelector::Label(label) => write!(f, "key labelled {label:?}"),
            KeySelector::CkaId(id) => write!(f, "key with CKA_ID {}", hex_string(id)),
        }
    }
}

impl Pkcs11Token {
    /// The token as the module described it when it was opened.
    pub fn info(&self) -> &TokenInfo {
        &self.shared.info
    }

    fn label(&self) -> &str {
        &self.shared.info.label
    }

    fn session(&self) -> MutexGuard<'_, Session> {
        lock(&self.shared.session)
    }

    /// Every P-256 key pair on the token whose public key berth can read.
    pub fn keys(&self) -> Result<Vec<TokenKey>, SignError> {
        let session = self.session();
        let handles = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::KeyType(CkKeyType::EC),
            ])
            .map_err(|e| token_error(self.label(), "listing keys", &e))?;
        let mut keys = Vec::new();
        for handle in handles {
            if let Some(key) = self.describe_private_key(&session, handle)? {
                keys.push(key);
            }
        }
        Ok(keys)
    }

    /// The one key matching `selector`; an error naming the token and the
    /// key when there is none or more than one.
    pub fn find_key(&self, selector: &KeySelector) -> Result<TokenKey, SignError> {
        let mut matching: Vec<TokenKey> = self
            .keys()?
            .into_iter()
            .filter(|key| match selector {
                KeySelector::KeyId(id) => key.key_id.eq_ignore_ascii_case(id),
                KeySelector::Label(label) => key.label == *label,
                KeySelector::CkaId(id) => key.cka_id == *id,
            })
            .collect();
        match matching.len() {
            0 => Err(SignError::Token(format!(
                "token {:?} holds no {selector}",
                self.label()
            ))),
            1 => Ok(matching.remove(0)),
            n => Err(SignError::Token(format!(
                "token {:?} holds {n} keys matching {selector}; choose one by key id",
                self.label()
            ))),
        }
    }

    /// Generate an ECDSA P-256 key pair on the token. The private key is
    /// sensitive, never extractable and can only sign. `cka_id` picks the
    /// `CKA_ID` (on a YubiKey, the PIV slot); without it berth uses the TUF
    /// key id's 32 bytes, so the key can be found by either.
    pub fn generate_p256_key(&self, label: &str, cka_id: Option<&[u8]>) -> Result<TokenKey, SignError> {
        self.refuse_duplicates(label, cka_id)?;
        let session = self.session();
        // The TUF key id is known only once the key exists, so generate under
        // a random id and re-label afterwards.
        let initial_id = match cka_id {
            Some(id) => id.to_vec(),
            None => session
                .generate_random_vec(16)
                .map_err(|e| token_error(self.label(), "generating a key id", &e))?,
        };
        let public_template = public_key_template(label, &initial_id, None);
        let private_template = private_key_template(label, &initial_id, None);
        let (public, private) = session
            .generate_key_pair(&Mechanism::EccKeyPairGen, &public_template, &private_template)
            .map_err(|e| token_error(self.label(), &format!("generating key {label:?}"), &e))?;
        let spki = match read_public_point(&session, public).and_then(|point| spki_from_ec_point(&point)) {
            Ok(spki) => spki,
            Err(message) => {
                let _ = session.destroy_object(private);
                let _ = session.destroy_object(public);
                return Err(SignError::Token(format!(
                    "token {:?}: generated key {label:?} is unusable: {message}",
                    self.label()
                )));
            }
        };
        let public_key = PublicKey::new(KeyType::Ecdsa, spki);
        let key_id = public_key.id();
        let mut final_id = initial_id;
        if cka_id.is_none() {
            if let Some(derived) = decode_hex(&key_id) {
                let relabel = [Attribute::Id(derived.clone())];
                // Tokens that refuse to change CKA_ID keep the random one;
                // the key is still found by its TUF key id.
                if session.update_attributes(private, &relabel).is_ok() {
                    if session.update_attributes(public, &relabel).is_ok() {
                        final_id = derived;
                    } else {
                        let _ = session.update_attributes(private, &[Attribute::Id(final_id.clone())]);
                    }
                }
            }
        }
        Ok(TokenKey {
            label: label.to_string(),
            cka_id: final_id,
            key_id,
            public_key,
        })
    }

    /// Store an existing P-256 private key on the token, given as its 32-byte
    /// big-endian scalar. The key becomes sensitive, non-extractable and
    /// sign-only like a generated one; `cka_id` defaults to the TUF key id's
    /// 32 bytes.
    pub fn import_p256_key(&self, label: &str, cka_id: Option<&[u8]>, scalar: &[u8]) -> Result<TokenKey, SignError> {
        let secret = p256::SecretKey::from_slice(scalar)
            .map_err(|_| SignError::Token(format!("key {label:?} is not a valid P-256 private key scalar")))?;
        self.import_secret(label, cka_id, &secret)
    }

    /// Like [`Pkcs11Token::import_p256_key`], for a private key in PKCS#8 or
    /// SEC1 DER (what a decrypted Notary key file holds).
    pub fn import_p256_der(&self, label: &str, cka_id: Option<&[u8]>, der: &[u8]) -> Result<TokenKey, SignError> {
        let secret = p256::SecretKey::from_der(der).map_err(|_| {
            SignError::Token(format!(
                "key {label:?} is not a P-256 private key in PKCS#8 or SEC1 DER"
            ))
        })?;
        self.import_secret(label, cka_id, &secret)
    }

    fn import_secret(
        &self,
        label: &str,
        cka_id: Option<&[u8]>,
        secret: &p256::SecretKey,
    ) -> Result<TokenKey, SignError> {
        let point = secret.public_key().to_sec1_point(false);
        let spki = spki_from_ec_point(point.as_bytes()).map_err(|message| SignError::Token(message.to_string()))?;
        let public_key = PublicKey::new(KeyType::Ecdsa, spki);
        let key_id = public_key.id();
        let id = match cka_id {
            Some(id) => id.to_vec(),
            None => decode_hex(&key_id).unwrap_or_else(|| key_id.as_bytes().to_vec()),
        };
        self.refuse_duplicates(label, Some(&id))?;
        let session = self.session();
        let mut private_template = private_key_template(label, &id, Some(secret.to_bytes().to_vec()));
        let private = session.create_object(&private_template);
        // The template held a copy of the scalar.
        wipe_value(&mut private_template);
        let private = private.map_err(|e| token_error(self.label(), &format!("importing key {label:?}"), &e))?;
        let public_template = public_key_template(label, &id, Some(der_octet_string(point.as_bytes())));
        if let Err(e) = session.create_object(&public_template) {
            let _ = session.destroy_object(private);
            return Err(token_error(
                self.label(),
                &format!("storing the public half of key {label:?}"),
                &e,
            ));
        }
        Ok(TokenKey {
            label: label.to_string(),
            cka_id: id,
            key_id,
            public_key,
        })
    }

    /// Remove the key pair (private and public objects) from the token.
    pub fn delete_key(&self, key: &TokenKey) -> Result<(), SignError> {
        let session = self.session();
        let private = find_private_key(&session, self.label(), key)?;
        session
            .destroy_object(private)
            .map_err(|e| token_error(self.label(), &format!("deleting key {:?}", key.label), &e))?;
        let publics = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::KeyType(CkKeyType::EC),
                Attribute::Id(key.cka_id.clone()),
            ])
            .map_err(|e| {
                token_error(
                    self.label(),
                    &format!("finding the public half of key {:?}", key.label),
                    &e,
                )
            })?;
        for public in publics {
            // Only the public object that belongs to this key pair.
            let point = read_public_point(&session, public).and_then(|p| spki_from_ec_point(&p));
            if point.as_deref() == Ok(key.public_key.public.as_slice()) {
                session.destroy_object(public).map_err(|e| {
                    token_error(
                        self.label(),
                        &format!("deleting the public half of key {:?}", key.label),
                        &e,
                    )
                })?;
            }
        }
        Ok(())
    }

    /// A signer for `key`. It shares this token's logged-in session and
    /// keeps the module loaded while it lives.
    pub fn signer(&self, key: &TokenKey) -> Result<Pkcs11Signer, SignError> {
        let session = self.session();
        let private = find_private_key(&session, self.label(), key)?;
        let attributes = session
            .get_attributes(private, &[AttributeType::AlwaysAuthenticate, AttributeType::Sign])
            .map_err(|e| token_error(self.label(), &format!("reading key {:?}", key.label), &e))?;
        for attribute in attributes {
            match attribute {
                Attribute::AlwaysAuthenticate(true) => {
                    return Err(SignError::Token(format!(
                        "token {:?}: key {:?} asks for the PIN before every signature (CKA_ALWAYS_AUTHENTICATE), \
                         which berth does not support; on a YubiKey use PIV slot 9a (CKA_ID 01)",
                        self.label(),
                        key.label
                    )))
                }
                Attribute::Sign(false) => {
                    return Err(SignError::Token(format!(
                        "token {:?}: key {:?} is not allowed to sign",
                        self.label(),
                        key.label
                    )))
                }
                _ => {}
            }
        }
        drop(session);
        Ok(Pkcs11Signer {
            token: Arc::clone(&self.shared),
            private,
            key: key.clone(),
        })
    }

    fn refuse_duplicates(&self, label: &str, cka_id: Option<&[u8]>) -> Result<(), SignError> {
        let session = self.session();
        let mut template = vec![Attribute::Label(label.as_bytes().to_vec())];
        let by_label = session
            .find_objects(&template)
            .map_err(|e| token_error(self.label(), "looking for existing keys", &e))?;
        if !by_label.is_empty() {
            return Err(SignError::Token(format!(
                "token {:?} already holds an object labelled {label:?}",
                self.label()
            )));
        }
        if let Some(id) = cka_id {
            template = vec![Attribute::Class(ObjectClass::PRIVATE_KEY), Attribute::Id(id.to_vec())];
            let by_id = session
                .find_objects(&template)
                .map_err(|e| token_error(self.label(), "looking for existing keys", &e))?;
            if !by_id.is_empty() {
                return Err(SignError::Token(format!(
                    "token {:?} already holds a private key with CKA_ID {}",
                    self.label(),
                    hex_string(id)
                )));
            }
        }
        Ok(())
    }

    /// `None` for EC keys that are not P-256 or have no readable public key.
    fn describe_private_key(&self, session: &Session, private: ObjectHandle) -> Result<Option<TokenKey>, SignError> {
        let attributes = session
            .get_attributes(private, &[AttributeType::Id, AttributeType::Label])
            .map_err(|e| token_error(self.label(), "reading a key", &e))?;
        let mut cka_id = Vec::new();
        let mut label = String::new();
        for attribute in attributes {
            match attribute {
                Attribute::Id(id) => cka_id = id,
                Attribute::Label(bytes) => label = String::from_utf8_lossy(&bytes).into_owned(),
                _ => {}
            }
        }
        let mut template = vec![
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(CkKeyType::EC),
            Attribute::Id(cka_id.clone()),
        ];
        if cka_id.is_empty() {
            template.push(Attribute::Label(label.as_bytes().to_vec()));
        }
        let publics = session
            .find_objects(&template)
            .map_err(|e| token_error(self.label(), "reading a key", &e))?;
        let mut spki = None;
        for public in publics {
            if let Ok(found) = read_public_point(session, public).and_then(|p| spki_from_ec_point(&p)) {
                spki = Some(found);
                break;
            }
        }
        if spki.is_none() {
            // PKCS#11 3.0 tokens may carry the SPKI on the private key itself.
            if let Ok(attributes) = session.get_attributes(private, &[AttributeType::PublicKeyInfo]) {
                for attribute in attributes {
                    if let Attribute::PublicKeyInfo(info) = attribute {
                        if info.starts_with(&P256_SPKI_PREFIX)
                            && spki_from_ec_point(&info[P256_SPKI_PREFIX.len()..]).is_ok()
                        {
                            spki = Some(info);
                        }
                    }
                }
            }
        }
        Ok(spki.map(|spki| {
            let public_key = PublicKey::new(KeyType::Ecdsa, spki);
            TokenKey {
                label,
                cka_id,
                key_id: public_key.id(),
                public_key,
            }
        }))
    }
}

fn public_key_template(label: &str, id: &[u8], ec_point: Option<Vec<u8>>) -> Vec<Attribute> {
    let mut template = vec![
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::KeyType(CkKeyType::EC),
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::EcParams(P256_EC_PARAMS.to_vec()),
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
        Attribute::Derive(false),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.to_vec()),
    ];
    if let Some(point) = ec_point {
        template.push(Attribute::EcPoint(point));
    }
    template
}

fn private_key_template(label: &str, id: &[u8], value: Option<Vec<u8>>) -> Vec<Attribute> {
    let mut template = vec![
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::KeyType(CkKeyType::EC),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.to_vec()),
    ];
    if let Some(value) = value {
        // CKA_EC_PARAMS is given by the generation mechanism's public
        // template; a created object needs it itself.
        template.push(Attribute::EcParams(P256_EC_PARAMS.to_vec()));
        template.push(Attribute::Value(value));
    }
    template
}

fn wipe_value(template: &mut [Attribute]) {
    for attribute in template {
        if let Attribute::Value(value) = attribute {
            value.iter_mut().for_each(|byte| *byte = 0);
            // Keep the writes from being optimised away before the drop.
            std::hint::black_box(&value);
        }
    }
}

fn find_private_key(session: &Session, token_label: &str, key: &TokenKey) -> Result<ObjectHandle, SignError> {
    let mut template = vec![
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::KeyType(CkKeyType::EC),
        Attribute::Id(key.cka_id.clone()),
    ];
    if !key.label.is_empty() {
        template.push(Attribute::Label(key.label.as_bytes().to_vec()));
    }
    let handles = session
        .find_objects(&template)
        .map_err(|e| token_error(token_label, &format!("finding key {:?}", key.label), &e))?;
    match handles.as_slice() {
        [] => Err(SignError::Token(format!(
            "token {token_label:?} holds no key labelled {:?} with id {}",
            key.label, key.key_id
        ))),
        [handle] => Ok(*handle),
        _ => Err(SignError::Token(format!(
            "token {token_label:?} holds several private keys labelled {:?} with CKA_ID {}",
            key.label,
            hex_string(&key.cka_id)
        ))),
    }
}

/// `CKA_EC_POINT` of a public key object, after checking it is on P-256.
fn read_public_point(session: &Session, public: ObjectHandle) -> Result<Vec<u8>, &'static str> {
    let attributes = session
        .get_attributes(public, &[AttributeType::EcParams, AttributeType::EcPoint])
        .map_err(|_| "its public key cannot be read")?;
    let mut params = None;
    let mut point = None;
    for attribute in attributes {
        match attribute {
            Attribute::EcParams(value) => params = Some(value),
            Attribute::EcPoint(value) => point = Some(value),
            _ => {}
        }
    }
    if params.as_deref() != Some(&P256_EC_PARAMS[..]) {
        return Err("it is not a P-256 key");
    }
    point.ok_or("its public key has no CKA_EC_POINT")
}

/// DER SubjectPublicKeyInfo for a `CKA_EC_POINT` value: a DER OCTET STRING
/// around the SEC1 point as PKCS#11 specifies, or the bare point as some
/// tokens return it. Compressed points are expanded.
fn spki_from_ec_point(ec_point: &[u8]) -> Result<Vec<u8>, &'static str> {
    let sec1 = match ec_point {
        // Uncompressed (65) or compressed (33) bare point.
        [0x04, ..] if ec_point.len() == 65 => ec_point,
        [0x02 | 0x03, ..] if ec_point.len() == 33 => ec_point,
        [0x04, len, rest @ ..] if usize::from(*len) == rest.len() => rest,
        _ => return Err("CKA_EC_POINT is neither a SEC1 point nor a DER octet string holding one"),
    };
    let public = p256::PublicKey::from_sec1_bytes(sec1).map_err(|_| "CKA_EC_POINT is not a point on P-256")?;
    let mut spki = P256_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(public.to_sec1_point(false).as_bytes());
    Ok(spki)
}

/// DER OCTET STRING (short form; SEC1 points are shorter than 128 bytes).
fn der_octet_string(value: &[u8]) -> Vec<u8> {
    let mut der = Vec::with_capacity(value.len() + 2);
    der.push(0x04);
    der.push(value.len() as u8);
    der.extend_from_slice(value);
    der
}

/// The `CKA_ID` `libykcs11` gives the key in a PIV slot, by the slot's hex
/// name as `ykman piv` and `yubico-piv-tool` write it: `9a` → 1, `9c` → 2,
/// `9d` → 3, `9e` → 4, the retired slots `82`..=`95` → 5..=24, `f9` → 25.
pub fn piv_slot_cka_id(slot: &str) -> Option<u8> {
    let number = u8::from_str_radix(slot.trim_start_matches("0x"), 16).ok()?;
    match number {
        0x9a => Some(1),
        0x9c => Some(2),
        0x9d => Some(3),
        0x9e => Some(4),
        0x82..=0x95 => Some(number - 0x82 + 5),
        0xf9 => Some(25),
        _ => None,
    }
}

/// The PIV slot name (`9a`, ...) of a `libykcs11` `CKA_ID`, if it is one.
pub fn piv_slot_name(cka_id: &[u8]) -> Option<String> {
    let [id] = cka_id else { return None };
    let slot = match *id {
        1 => 0x9a,
        2 => 0x9c,
        3 => 0x9d,
        4 => 0x9e,
        5..=24 => id - 5 + 0x82,
        25 => 0xf9,
        _ => return None,
    };
    Some(format!("{slot:02x}"))
}

/// Hex of a `CKA_ID` (lower case), as key references record it.
pub fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of a hex `CKA_ID`; `None` for odd length or a non-hex digit.
pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

// ---------------------------------------------------------------------------
// Signing

/// Signs TUF metadata with a P-256 key on a token: SHA-256 on the host,
/// `CKM_ECDSA` on the token, raw `r || s` out. [`Signer::sign`] may block
/// until a YubiKey is touched, when the key's touch policy says so: callers
/// that talk to a user print "touch your key" before each signature.
pub struct Pkcs11Signer {
    token: Arc<TokenSession>,
    private: ObjectHandle,
    key: TokenKey,
}

impl fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Signer")
            .field("token", &self.token.info.label)
            .field("label", &self.key.label)
            .field("key_id", &self.key.key_id)
            .finish()
    }
}

impl Pkcs11Signer {
    /// The key this signer signs with.
    pub fn key(&self) -> &TokenKey {
        &self.key
    }

    /// The token the key lives on.
    pub fn token_info(&self) -> &TokenInfo {
        &self.token.info
    }
}

impl Signer for Pkcs11Signer {
    fn public_key(&self) -> &PublicKey {
        &self.key.public_key
    }

    fn method(&self) -> SigMethod {
        SigMethod::Ecdsa
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let digest = Sha256::digest(message);
        let session = lock(&self.token.session);
        let signature = session.sign(&Mechanism::Ecdsa, self.private, &digest).map_err(|e| {
            token_error(
                &self.token.info.label,
                &format!("signing with key {:?}", self.key.label),
                &e,
            )
        })?;
        if signature.len() != P256_SIGNATURE_LEN {
            return Err(SignError::Token(format!(
                "token {:?}: key {:?} returned a {}-byte signature, not a {P256_SIGNATURE_LEN}-byte P-256 r || s",
                self.token.info.label,
                self.key.label,
                signature.len()
            )));
        }
        Ok(signature)
    }
}

// ---------------------------------------------------------------------------
// Errors

/// A token failure in words a user can act on. Names the token, never a PIN.
fn token_error(label: &str, action: &str, error: &CkError) -> SignError {
    let reason = match error {
        CkError::Pkcs11(rv, _) => match rv {
            RvError::PinIncorrect => "wrong PIN".to_string(),
            RvError::PinLocked => "the PIN is locked after too many wrong attempts".to_string(),
            RvError::PinExpired => "the PIN has expired and must be changed".to_string(),
            RvError::PinLenRange | RvError::PinInvalid => "the PIN has the wrong length or characters".to_string(),
            RvError::UserPinNotInitialized => "the token's user PIN has not been set".to_string(),
            RvError::UserNotLoggedIn => "not logged in (a PIN is needed)".to_string(),
            RvError::UserAnotherAlreadyLoggedIn => {
                "another user (security officer or user) of this process is logged in to the token".to_string()
            }
            RvError::TokenWriteProtected | RvError::SessionReadOnly => "the token is read-only".to_string(),
            RvError::DeviceMemory => "the token is full (no room for another key)".to_string(),
            RvError::TokenNotPresent | RvError::DeviceRemoved => "the token was removed".to_string(),
            RvError::CurveNotSupported | RvError::MechanismInvalid => {
                "the token does not support ECDSA P-256 keys".to_string()
            }
            RvError::KeyFunctionNotPermitted => "the key is not allowed to do that".to_string(),
            RvError::FunctionCanceled => "cancelled on the device".to_string(),
            other => format!("{other}"),
        },
        other => describe_error(other),
    };
    SignError::Token(format!("token {label:?}: {action}: {reason}"))
}

fn describe_error(error: &CkError) -> String {
    match error {
        CkError::LibraryLoading(e) => e.to_string(),
        CkError::MissingSymbol(name) => format!("not a PKCS#11 module (no {name} symbol)"),
        CkError::Pkcs11(rv, function) => format!("{function}: {rv}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::context::Function;

    #[test]
    fn token_errors_name_the_token_and_the_cause() {
        let cases = [
            (
                RvError::PinIncorrect,
                Function::Login,
                "token \"ci\": logging in: wrong PIN",
            ),
            (
                RvError::DeviceMemory,
                Function::GenerateKeyPair,
                "token \"ci\": logging in: the token is full (no room for another key)",
            ),
            (
                RvError::TokenWriteProtected,
                Function::CreateObject,
                "token \"ci\": logging in: the token is read-only",
            ),
            (
                RvError::SessionReadOnly,
                Function::CreateObject,
                "token \"ci\": logging in: the token is read-only",
            ),
            (
                RvError::PinLocked,
                Function::Login,
                "token \"ci\": logging in: the PIN is locked after too many wrong attempts",
            ),
        ];
        for (rv, function, expected) in cases {
            let error = token_error("ci", "logging in", &CkError::Pkcs11(rv, function));
            assert_eq!(error.to_string(), format!("hardware token: {expected}"));
        }
    }

    #[test]
    fn pin_debug_is_redacted() {
        let pin = TokenPin::new("918273");
        assert_eq!(format!("{pin:?}"), "TokenPin(<redacted>)");
    }

    #[test]
    fn ec_point_forms_give_the_same_spki() {
        let secret = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
        let uncompressed = secret.public_key().to_sec1_point(false).as_bytes().to_vec();
        let compressed = secret.public_key().to_sec1_point(true).as_bytes().to_vec();
        let wrapped = der_octet_string(&uncompressed);
        let expected = {
            use p256::pkcs8::EncodePublicKey as _;
            secret.public_key().to_public_key_der().unwrap().as_bytes().to_vec()
        };
        for form in [&uncompressed, &compressed, &wrapped] {
            assert_eq!(spki_from_ec_point(form).unwrap(), expected);
        }
        assert!(spki_from_ec_point(&[0x04, 0x02, 0x01]).is_err());
        let mut off_curve = uncompressed.clone();
        off_curve[64] ^= 1;
        assert!(spki_from_ec_point(&off_curve).is_err());
    }

    #[test]
    fn token_selectors_parse() {
        let cases = [
            ("", TokenSelector::Only),
            ("ci", TokenSelector::Label("ci".into())),
            ("label:slot:3", TokenSelector::Label("slot:3".into())),
            ("serial:abc123", TokenSelector::Serial("abc123".into())),
            ("slot:42", TokenSelector::SlotId(42)),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<TokenSelector>().unwrap(), expected, "{text}");
        }
        assert!("slot:x".parse::<TokenSelector>().is_err());
    }

    #[test]
    fn piv_slots_map_to_ykcs11_ids_and_back() {
        let cases = [
            ("9a", 1),
            ("9c", 2),
            ("9d", 3),
            ("9e", 4),
            ("82", 5),
            ("95", 24),
            ("f9", 25),
        ];
        for (slot, id) in cases {
            assert_eq!(piv_slot_cka_id(slot), Some(id), "{slot}");
            assert_eq!(piv_slot_name(&[id]).as_deref(), Some(slot), "{id}");
        }
        for bad in ["9b", "81", "96", "zz", ""] {
            assert_eq!(piv_slot_cka_id(bad), None, "{bad}");
        }
        assert_eq!(piv_slot_name(&[26]), None);
        assert_eq!(piv_slot_name(&[1, 2]), None);
    }

    #[test]
    fn hex_round_trips() {
        let bytes = [0x00, 0x7f, 0xab, 0xff];
        assert_eq!(decode_hex(&hex_string(&bytes)).unwrap(), bytes);
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("zz"), None);
    }
}
