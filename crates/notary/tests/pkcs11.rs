//! Hardware keys against a real PKCS#11 token: SoftHSM2 (Debian package
//! `softhsm2`). Every test gets its own token directory and `SOFTHSM2_CONF`;
//! that variable is process-global and read when the library initialises, so
//! the tests hold one lock and drop every module handle before releasing it.

#![allow(clippy::unwrap_used)] // the helpers outside #[test] fns unwrap too

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};

use berth_notary::crypto::{verify_signature, SoftwareSigner};
use berth_notary::keys::{KeyType, SigMethod, Signer};
use berth_notary::pkcs11::{KeySelector, Pkcs11Module, Pkcs11Signer, Pkcs11Token, TokenPin, TokenSelector};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use p256::ecdsa::signature::Verifier as _;
use p256::pkcs8::DecodePublicKey as _;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const TOKEN_LABEL: &str = "berth-ci";
const USER_PIN: &str = "246810";
const SO_PIN: &str = "13579135";

static SOFTHSM: Mutex<()> = Mutex::new(());

/// One freshly initialised SoftHSM2 token in its own directory. Declare it
/// before any module, token or signer so those drop first.
struct SoftHsm {
    dir: tempfile::TempDir,
    _serial: MutexGuard<'static, ()>,
}

impl SoftHsm {
    fn new() -> SoftHsm {
        let serial = SOFTHSM.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(
            Path::new(MODULE).exists(),
            "SoftHSM2 is not installed: {MODULE} is missing (install the Debian package softhsm2)"
        );
        let hsm = SoftHsm {
            dir: tempfile::tempdir().unwrap(),
            _serial: serial,
        };
        // Every module of the previous test has been dropped (and so
        // finalised) by now; the next C_Initialize reads this configuration.
        hsm.use_configuration("tokens", TOKEN_LABEL);
        hsm
    }

    /// Point `SOFTHSM2_CONF` at a new token directory `name` holding one
    /// token labelled `label`.
    fn use_configuration(&self, name: &str, label: &str) {
        let tokens = self.dir.path().join(name);
        std::fs::create_dir(&tokens).unwrap();
        let conf = self.dir.path().join(format!("{name}.conf"));
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                tokens.display()
            ),
        )
        .unwrap();
        std::env::set_var("SOFTHSM2_CONF", &conf);
        let output = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args([
                "--init-token",
                "--free",
                "--label",
                label,
                "--pin",
                USER_PIN,
                "--so-pin",
                SO_PIN,
            ])
            .output()
            .unwrap_or_else(|e| panic!("softhsm2-util (Debian package softhsm2) cannot run: {e}"));
        assert!(
            output.status.success(),
            "softhsm2-util --init-token failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn module(&self) -> Pkcs11Module {
        Pkcs11Module::open(Path::new(MODULE)).unwrap()
    }

    fn token(&self, module: &Pkcs11Module) -> Pkcs11Token {
        module
            .open_token(
                &TokenSelector::Label(TOKEN_LABEL.into()),
                Some(&TokenPin::new(USER_PIN)),
            )
            .unwrap()
    }
}

fn verify_with_p256(signer: &Pkcs11Signer, message: &[u8], signature: &[u8]) -> Result<(), p256::ecdsa::Error> {
    let public = &signer.public_key().public;
    let verifying = p256::ecdsa::VerifyingKey::from_public_key_der(public).unwrap();
    let signature = p256::ecdsa::Signature::from_slice(signature)?;
    verifying.verify(message, &signature)
}

/// The attributes a user relies on for a token key, read straight from the
/// token through a second PKCS#11 context of the same (initialised) library.
fn private_key_attributes(cka_id: &[u8]) -> Vec<Attribute> {
    let context = Pkcs11::new(MODULE).unwrap();
    match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => panic!("initialise {MODULE}: {e}"),
    }
    let slot = context
        .get_slots_with_initialized_token()
        .unwrap()
        .into_iter()
        .find(|slot| context.get_token_info(*slot).unwrap().label() == TOKEN_LABEL)
        .unwrap();
    // The process is logged in already through the token under test.
    let session = context.open_ro_session(slot).unwrap();
    let handles = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Id(cka_id.to_vec()),
        ])
        .unwrap();
    assert_eq!(handles.len(), 1, "exactly one private key with that CKA_ID");
    let value = session.get_attributes(handles[0], &[AttributeType::Value]);
    assert!(
        matches!(&value, Ok(attributes) if attributes.is_empty())
            || matches!(value, Err(CkError::Pkcs11(RvError::AttributeSensitive, _))),
        "the private value must not be readable"
    );
    session
        .get_attributes(
            handles[0],
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Sign,
                AttributeType::Decrypt,
                AttributeType::Derive,
                AttributeType::Token,
                AttributeType::Private,
            ],
        )
        .unwrap()
}

fn assert_sign_only_and_sealed(cka_id: &[u8]) {
    let mut attributes = private_key_attributes(cka_id);
    attributes.sort_by_key(|a| format!("{a:?}"));
    let expected = [
        Attribute::Decrypt(false),
        Attribute::Derive(false),
        Attribute::Extractable(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Sign(true),
        Attribute::Token(true),
    ];
    assert_eq!(format!("{attributes:?}"), format!("{expected:?}"));
}

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn tokens_are_listed_with_label_serial_and_login() {
    let hsm = SoftHsm::new();
    let module = hsm.module();
    let tokens = module.tokens().unwrap();
    let ours: Vec<_> = tokens.iter().filter(|t| t.initialized).collect();
    assert_eq!(ours.len(), 1, "{tokens:?}");
    let token = ours[0];
    assert_eq!(token.label, TOKEN_LABEL);
    assert!(!token.serial.is_empty());
    assert!(token.login_required);
    assert!(token.user_pin_initialized);
    assert!(!token.user_pin_locked);
    assert!(!token.write_protected);
    assert_eq!(token.manufacturer, "SoftHSM project");

    // Every selector reaches the same token.
    let pin = TokenPin::new(USER_PIN);
    for selector in [
        TokenSelector::Only,
        TokenSelector::Label(TOKEN_LABEL.into()),
        TokenSelector::Serial(token.serial.clone()),
        TokenSelector::SlotId(token.slot_id),
        format!("serial:{}", token.serial).parse().unwrap(),
    ] {
        let opened = module.open_token(&selector, Some(&pin)).unwrap();
        assert_eq!(opened.info(), token, "{selector}");
    }
}

#[test]
fn key_generated_on_token_signs_and_p256_verifies() {
    assert_send_sync::<Pkcs11Module>();
    assert_send_sync::<Pkcs11Token>();
    assert_send_sync::<Pkcs11Signer>();

    let hsm = SoftHsm::new();
    let module = hsm.module();
    let token = hsm.token(&module);
    let key = token.generate_p256_key("targets-key", None).unwrap();
    assert_eq!(key.label, "targets-key");
    assert_eq!(key.public_key.keytype, KeyType::Ecdsa);
    assert_eq!(key.key_id, key.public_key.id());
    assert_eq!(key.key_id.len(), 64);
    // Without a chosen CKA_ID, berth uses the TUF key id's bytes.
    assert_eq!(hex(&key.cka_id), key.key_id);
    assert_sign_only_and_sealed(&key.cka_id);

    let signer = token.signer(&key).unwrap();
    assert_eq!(signer.method(), SigMethod::Ecdsa);
    assert_eq!(signer.public_key(), &key.public_key);
    let message = br#"{"_type":"Targets","expires":"2030-01-01T00:00:00Z","targets":{},"version":1}"#;
    let signature = signer.sign(message).unwrap();
    assert_eq!(signature.len(), 64, "raw r || s");
    verify_with_p256(&signer, message, &signature).unwrap();
    assert!(verify_with_p256(&signer, b"another message", &signature).is_err());
    verify_signature(signer.public_key(), SigMethod::Ecdsa, message, &signature).unwrap();

    // The signer is usable from several threads at once and outlives the
    // token and module handles it came from.
    drop(token);
    drop(module);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4u8)
            .map(|i| {
                let signer = &signer;
                scope.spawn(move || {
                    let message = [b'm', i];
                    let signature = signer.sign(&message).unwrap();
                    verify_with_p256(signer, &message, &signature).unwrap();
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
    });
}

#[test]
fn generated_key_takes_a_chosen_cka_id() {
    let hsm = SoftHsm::new();
    let module = hsm.module();
    let token = hsm.token(&module);
    let key = token.generate_p256_key("piv-9a", Some(&[0x01])).unwrap();
    assert_eq!(key.cka_id, vec![0x01]);
    let found = token.find_key(&KeySelector::CkaId(vec![0x01])).unwrap();
    assert_eq!(found, key);
    let error = token
        .generate_p256_key("other-label", Some(&[0x01]))
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        format!("hardware token: token \"{TOKEN_LABEL}\" already holds a private key with CKA_ID 01")
    );
}

#[test]
fn imported_software_key_keeps_its_key_id_and_signs() {
    let hsm = SoftHsm::new();
    let module = hsm.module();
    let token = hsm.token(&module);
    let software = SoftwareSigner::generate_ecdsa();
    let key = token
        .import_p256_der("imported-root", None, &software.to_pkcs8_der())
        .unwrap();
    assert_eq!(key.key_id, software.key_id());
    assert_eq!(&key.public_key, software.public_key());
    assert_sign_only_and_sealed(&key.cka_id);

    let signer = token.signer(&key).unwrap();
    let message = b"{\"signed\":true}";
    let signature = signer.sign(message).unwrap();
    verify_with_p256(&signer, message, &signature).unwrap();
    // The software key's own signature verifies under the token key's public key.
    let software_signature = software.sign(message).unwrap();
    verify_with_p256(&signer, message, &software_signature).unwrap();

    // A bare scalar imports to the public key p256 derives from it.
    let scalar = [0x42u8; 32];
    let expected = {
        use p256::pkcs8::EncodePublicKey as _;
        let public = p256::SecretKey::from_slice(&scalar).unwrap().public_key();
        public.to_public_key_der().unwrap().as_bytes().to_vec()
    };
    let from_scalar = token.import_p256_key("from-scalar", Some(b"scalar"), &scalar).unwrap();
    assert_eq!(from_scalar.public_key.public, expected);
    let signature = token.signer(&from_scalar).unwrap().sign(message).unwrap();
    let verifying = p256::ecdsa::VerifyingKey::from_public_key_der(&expected).unwrap();
    verifying
        .verify(message, &p256::ecdsa::Signature::from_slice(&signature).unwrap())
        .unwrap();

    let error = token.import_p256_key("bad", None, &[0u8; 32]).unwrap_err().to_string();
    assert_eq!(
        error,
        "hardware token: key \"bad\" is not a valid P-256 private key scalar"
    );
    let error = token.import_p256_der("bad", None, b"not der").unwrap_err().to_string();
    assert_eq!(
        error,
        "hardware token: key \"bad\" is not a P-256 private key in PKCS#8 or SEC1 DER"
    );
}

#[test]
fn keys_are_found_by_label_key_id_and_cka_id() {
    let hsm = SoftHsm::new();
    let module = hsm.module();
    let token = hsm.token(&module);
    let root = token.generate_p256_key("root", None).unwrap();
    let targets = token.generate_p256_key("targets", None).unwrap();
    assert_ne!(root.key_id, targets.key_id);

    let mut listed = token.keys().unwrap();
    listed.sort_by(|a, b| a.label.cmp(&b.label));
    assert_eq!(listed, vec![root.clone(), targets.clone()]);

    assert_eq!(token.find_key(&KeySelector::Label("targets".into())).unwrap(), targets);
    assert_eq!(token.find_key(&KeySelector::KeyId(root.key_id.clone())).unwrap(), root);
    assert_eq!(
        token.find_key(&KeySelector::KeyId(root.key_id.to_uppercase())).unwrap(),
        root
    );
    assert_eq!(
        token.find_key(&KeySelector::CkaId(targets.cka_id.clone())).unwrap(),
        targets
    );

    let error = token
        .find_key(&KeySelector::Label("snapshot".into()))
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        format!("hardware token: token \"{TOKEN_LABEL}\" holds no key labelled \"snapshot\"")
    );
    let error = token.generate_p256_key("root", None).unwrap_err().to_string();
    assert_eq!(
        error,
        format!("hardware token: token \"{TOKEN_LABEL}\" already holds an object labelled \"root\"")
    );

    // A second session (new module handle, new login) sees the same keys.
    drop(token);
    let again = Pkcs11Module::open(Path::new(MODULE)).unwrap();
    let token = hsm.token(&again);
    assert_eq!(token.find_key(&KeySelector::Label("root".into())).unwrap(), root);
}

#[test]
fn wrong_pin_is_refused_without_showing_it() {
    let hsm = SoftHsm::new();
    let module = hsm.module();
    let selector = TokenSelector::Label(TOKEN_LABEL.into());

    let wrong = "97531";
    let error = module
        .open_token(&selector, Some(&TokenPin::new(wrong)))
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        format!("hardware token: token \"{TOKEN_LABEL}\": logging in: wrong PIN")
    );
    assert!(!error.contains(wrong));

    let error = module.open_token(&selector, None).unwrap_err().to_string();
    assert_eq!(
        error,
        format!("hardware token: token \"{TOKEN_LABEL}\" requires a PIN to log in")
    );

    let error = module
        .open_token_as_security_officer(&selector, &TokenPin::new("00000000"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        format!("hardware token: token \"{TOKEN_LABEL}\": logging in: wrong PIN")
    );

    // The security officer can log in but cannot use keys.
    let officer = module
        .open_token_as_security_officer(&selector, &TokenPin::new(SO_PIN))
        .unwrap();
    let error = officer.generate_p256_key("k", None).unwrap_err().to_string();
    assert!(
        error.starts_with(&format!(
            "hardware token: token \"{TOKEN_LABEL}\": generating key \"k\": "
        )),
        "{error}"
    );
    drop(officer);

    // The right PIN still works after the failures.
    let token = module.open_token(&selector, Some(&TokenPin::new(USER_PIN))).unwrap();
    let key = token.generate_p256_key("after-wrong-pin", None).unwrap();
    assert!(format!("{token:?} {key:?} {:?}", token.signer(&key).unwrap())
        .find(USER_PIN)
        .is_none());
}

#[test]
fn deleted_key_is_gone_from_the_token() {
    let hsm = SoftHsm::new();
    let module = hsm.module();
    let token = hsm.token(&module);
    let doomed = token.generate_p256_key("doomed", None).unwrap();
    let kept = token.generate_p256_key("kept", None).unwrap();
    let signer = token.signer(&doomed).unwrap();

    token.delete_key(&doomed).unwrap();
    assert_eq!(token.keys().unwrap(), vec![kept.clone()]);
    let error = token
        .find_key(&KeySelector::KeyId(doomed.key_id.clone()))
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        format!(
            "hardware token: token \"{TOKEN_LABEL}\" holds no key with id {}",
            doomed.key_id
        )
    );
    let error = token.signer(&doomed).unwrap_err().to_string();
    assert_eq!(
        error,
        format!(
            "hardware token: token \"{TOKEN_LABEL}\" holds no key labelled \"doomed\" with id {}",
            doomed.key_id
        )
    );
    assert!(signer.sign(b"x").is_err(), "a signer of a deleted key cannot sign");
    let error = token.delete_key(&doomed).unwrap_err().to_string();
    assert!(error.contains("holds no key labelled \"doomed\""), "{error}");

    // No public half is left behind either: the label is free again.
    let reused = token.generate_p256_key("doomed", None).unwrap();
    assert_ne!(reused.key_id, doomed.key_id);
    token.signer(&kept).unwrap().sign(b"still here").unwrap();
}

#[test]
fn missing_token_and_unloadable_modules_are_named() {
    let hsm = SoftHsm::new();
    let module = hsm.module();
    let error = module
        .open_token(
            &TokenSelector::Label("no-such-token".into()),
            Some(&TokenPin::new(USER_PIN)),
        )
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with(&format!(
            "hardware token: no token labelled \"no-such-token\" in PKCS#11 module {MODULE}: it has \"{TOKEN_LABEL}\" (serial "
        )),
        "{error}"
    );
    let error = module
        .open_token(&TokenSelector::SlotId(4_000_000_000), None)
        .unwrap_err()
        .to_string();
    assert!(error.contains("no token in slot 4000000000"), "{error}");
    // SoftHSM2 always offers one more token, not initialised yet.
    let free = module.tokens().unwrap().into_iter().find(|t| !t.initialized).unwrap();
    let error = module
        .open_token(&TokenSelector::SlotId(free.slot_id), Some(&TokenPin::new(USER_PIN)))
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        format!(
            "hardware token: the token in slot {} of PKCS#11 module {MODULE} is not initialised",
            free.slot_id
        )
    );

    let missing = hsm.dir.path().join("libmissing-pkcs11.so");
    let error = Pkcs11Module::open(&missing).unwrap_err().to_string();
    assert!(error.starts_with(&format!(
        "hardware token: PKCS#11 module {}: cannot be loaded: ",
        missing.display()
    )));

    let garbage: PathBuf = hsm.dir.path().join("libgarbage.so");
    std::fs::write(&garbage, b"this is not a shared object").unwrap();
    let error = Pkcs11Module::open(&garbage).unwrap_err().to_string();
    assert!(error.starts_with(&format!(
        "hardware token: PKCS#11 module {}: cannot be loaded: ",
        garbage.display()
    )));
}

#[test]
fn module_handles_share_one_initialised_library() {
    let hsm = SoftHsm::new();
    let first = hsm.module();
    let second = Pkcs11Module::open(Path::new(MODULE)).unwrap();
    let token = hsm.token(&second);
    let key = token.generate_p256_key("shared", None).unwrap();
    // Dropping one handle must not finalise the library under the other.
    drop(first);
    assert_eq!(second.tokens().unwrap().iter().filter(|t| t.initialized).count(), 1);
    token.signer(&key).unwrap().sign(b"after drop").unwrap();
}

#[test]
fn dropping_the_last_handle_finalises_the_module() {
    let hsm = SoftHsm::new();
    // Keeps the library mapped, so only C_Finalize can reset its state.
    let _mapped = Pkcs11::new(MODULE).unwrap();
    let labels = |module: &Pkcs11Module| -> Vec<String> {
        module
            .tokens()
            .unwrap()
            .into_iter()
            .filter(|t| t.initialized)
            .map(|t| t.label)
            .collect()
    };
    let module = hsm.module();
    let token = hsm.token(&module);
    let key = token.generate_p256_key("before", None).unwrap();
    let signer = token.signer(&key).unwrap();
    assert_eq!(labels(&module), vec![TOKEN_LABEL.to_string()]);
    drop(token);
    drop(module);

    // A signer keeps the module initialised: a reopen shares it.
    hsm.use_configuration("other-tokens", "berth-other");
    let reopened = hsm.module();
    assert_eq!(labels(&reopened), vec![TOKEN_LABEL.to_string()]);
    signer.sign(b"still initialised").unwrap();
    drop(reopened);
    drop(signer);

    // Once the last handle is gone, the next open initialises afresh and
    // reads the new configuration.
    let fresh = hsm.module();
    assert_eq!(labels(&fresh), vec!["berth-other".to_string()]);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
