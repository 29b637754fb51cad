//! The encrypted key store: round trips, wrong passphrases, file modes, and
//! secrets kept out of Debug and Display.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt as _;

use berth_notary::crypto::SoftwareSigner;
use berth_notary::keys::{KeyType, Signer as _};
use berth_notary::keystore::{self, KdfParams, KeyStore, KeyStoreError, Passphrase, TokenKeyRef};
use tempfile::TempDir;

/// Cheap Argon2 costs so the tests run fast; the format records them.
const FAST: KdfParams = KdfParams {
    m_cost: 1024,
    t_cost: 1,
    p_cost: 1,
};

fn store(dir: &TempDir) -> KeyStore {
    KeyStore::open(&dir.path().join("private"))
        .unwrap()
        .with_kdf_params(FAST)
}

#[test]
fn round_trip_ecdsa_and_ed25519() {
    let dir = TempDir::new().unwrap();
    let store = store(&dir);
    let pass = Passphrase::from("correct horse battery staple");
    for keytype in [KeyType::Ecdsa, KeyType::Ed25519] {
        let (info, signer) = store.generate(keytype, "targets", "example.com/app", &pass).unwrap();
        assert_eq!(info.key_id, signer.key_id());
        let loaded = store.load(&info.key_id, &pass).unwrap();
        assert_eq!(loaded.public_key(), signer.public_key());
        let sig = loaded.sign(b"message").unwrap();
        berth_notary::crypto::verify_signature(signer.public_key(), signer.method(), b"message", &sig).unwrap();
    }
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|k| k.role == "targets" && k.gun == "example.com/app"));
}

#[test]
fn default_kdf_is_memory_hard_and_recorded_in_the_file() {
    let dir = TempDir::new().unwrap();
    let store = KeyStore::open(dir.path()).unwrap();
    let pass = Passphrase::from("pw");
    let (info, _) = store.generate(KeyType::Ecdsa, "root", "", &pass).unwrap();
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(format!("{}.key", info.key_id))).unwrap()).unwrap();
    assert_eq!(file["kdf"]["algorithm"], "argon2id");
    assert_eq!(file["kdf"]["m_cost"], 65536);
    assert_eq!(file["kdf"]["t_cost"], 3);
    assert_eq!(file["cipher"]["algorithm"], "xchacha20poly1305");
    assert_eq!(base64_len(&file["kdf"]["salt"]), 16);
    assert_eq!(base64_len(&file["cipher"]["nonce"]), 24);
    store.load(&info.key_id, &pass).unwrap();
}

fn base64_len(v: &serde_json::Value) -> usize {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap()
        .len()
}

#[test]
fn wrong_passphrase_is_a_clear_error() {
    let dir = TempDir::new().unwrap();
    let store = store(&dir);
    let (info, _) = store
        .generate(KeyType::Ecdsa, "root", "", &Passphrase::from("right"))
        .unwrap();
    let err = store.load(&info.key_id, &Passphrase::from("wrong")).unwrap_err();
    assert!(
        matches!(err, KeyStoreError::WrongPassphrase { ref key_id } if *key_id == info.key_id),
        "{err:?}"
    );
    assert_eq!(err.to_string(), format!("wrong passphrase for key {}", info.key_id));
}

#[test]
fn files_are_0600_in_a_0700_directory() {
    let dir = TempDir::new().unwrap();
    let store = store(&dir);
    let (info, _) = store
        .generate(KeyType::Ecdsa, "root", "", &Passphrase::from("pw"))
        .unwrap();
    let dir_mode = std::fs::metadata(store.dir()).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
    let file_mode = std::fs::metadata(store.dir().join(format!("{}.key", info.key_id)))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(file_mode, 0o600);
    // No temporary files left behind.
    assert_eq!(std::fs::read_dir(store.dir()).unwrap().count(), 1);
}

#[test]
fn edited_role_or_gun_no_longer_decrypts() {
    let dir = TempDir::new().unwrap();
    let store = store(&dir);
    let pass = Passphrase::from("pw");
    let (info, _) = store.generate(KeyType::Ecdsa, "targets/releases", "", &pass).unwrap();
    let path = store.dir().join(format!("{}.key", info.key_id));
    let original = std::fs::read_to_string(&path).unwrap();
    for (from, to) in [
        ("\"targets/releases\"", "\"root\""),
        ("\"gun\": \"\"", "\"gun\": \"example.com/x\""),
    ] {
        assert!(original.contains(from), "{original}");
        std::fs::write(&path, original.replace(from, to)).unwrap();
        assert!(matches!(
            store.load(&info.key_id, &pass),
            Err(KeyStoreError::WrongPassphrase { .. })
        ));
    }
    std::fs::write(&path, &original).unwrap();
    store.load(&info.key_id, &pass).unwrap();
}

#[test]
fn oversized_kdf_parameters_are_refused() {
    let dir = TempDir::new().unwrap();
    let store = store(&dir);
    let pass = Passphrase::from("pw");
    let (info, _) = store.generate(KeyType::Ecdsa, "root", "", &pass).unwrap();
    let path = store.dir().join(format!("{}.key", info.key_id));
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"m_cost\": 1024", "\"m_cost\": 4000000000");
    std::fs::write(&path, text).unwrap();
    let err = store.load(&info.key_id, &pass).unwrap_err();
    assert!(
        matches!(err, KeyStoreError::Corrupt { ref reason, .. } if reason.contains("exceed")),
        "{err:?}"
    );
}

#[test]
fn list_remove_and_bad_ids() {
    let dir = TempDir::new().unwrap();
    let store = store(&dir);
    let pass = Passphrase::from("pw");
    let (a, _) = store.generate(KeyType::Ecdsa, "root", "", &pass).unwrap();
    let (b, _) = store
        .generate(KeyType::Ed25519, "targets", "example.com/app", &pass)
        .unwrap();
    std::fs::write(store.dir().join("README"), "not a key").unwrap();
    let ids: Vec<String> = store.list().unwrap().into_iter().map(|k| k.key_id).collect();
    assert_eq!(ids, vec![a.key_id.clone(), b.key_id.clone()]);
    assert_eq!(store.info(&b.key_id).unwrap().public.keytype, KeyType::Ed25519);
    store.remove(&a.key_id).unwrap();
    assert!(matches!(
        store.load(&a.key_id, &pass),
        Err(KeyStoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.load("../../etc/passwd", &pass),
        Err(KeyStoreError::InvalidKeyId(_))
    ));
}

#[test]
fn secrets_are_absent_from_debug_and_display() {
    let dir = TempDir::new().unwrap();
    let store = store(&dir);
    let secret = "hunter2-very-secret";
    let pass = Passphrase::from(secret);
    assert_eq!(format!("{pass:?}"), "Passphrase(<redacted>)");
    assert!(!format!("{pass}").contains(secret));
    let (info, signer) = store.generate(KeyType::Ecdsa, "root", "", &pass).unwrap();
    let der = signer.to_pkcs8_der();
    let private_hex = hex::encode(&der[..]);
    let scalar = ecdsa_scalar(&signer);
    let secret_scalar_hex = hex::encode(&scalar);
    for text in [format!("{signer:?}"), format!("{info:?}"), format!("{store:?}")] {
        assert!(!text.contains(secret));
        assert!(!text.contains(&private_hex));
        assert!(!text.contains(&secret_scalar_hex), "{text}");
    }
    let err = store.load(&info.key_id, &Passphrase::from("nope")).unwrap_err();
    assert!(!format!("{err:?}{err}").contains("nope"));
    // The key file holds neither the passphrase nor the key in the clear.
    let file = std::fs::read(store.dir().join(format!("{}.key", info.key_id))).unwrap();
    let file_text = String::from_utf8_lossy(&file);
    assert!(!file_text.contains(secret));
    assert!(!file.windows(scalar.len()).any(|w| w == &scalar[..]));
    let parsed = keystore::parse_private_key_pem(
        keystore::private_key_to_pem(&signer, "root", "", None)
            .unwrap()
            .as_bytes(),
        None,
    )
    .unwrap();
    assert!(!format!("{parsed:?}").contains(&secret_scalar_hex));
}

#[test]
fn pem_import_export_round_trip_with_headers() {
    let dir = TempDir::new().unwrap();
    let store = store(&dir);
    let pass = Passphrase::from("pw");
    let (info, _) = store
        .generate(KeyType::Ecdsa, "targets", "example.com/app", &pass)
        .unwrap();
    let exported = store
        .export_pem(&info.key_id, &pass, Some(&Passphrase::from("export")))
        .unwrap();
    assert!(exported.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\ngun: example.com/app\npath: "));
    let other = TempDir::new().unwrap();
    let other_store = KeyStore::open(other.path()).unwrap().with_kdf_params(FAST);
    let imported = other_store
        .import_pem(
            exported.as_bytes(),
            Some(&Passphrase::from("export")),
            None,
            None,
            &pass,
        )
        .unwrap();
    assert_eq!(imported, info);
    // Role and GUN can be overridden; a key without a role needs one.
    let plain = keystore::private_key_to_pem(&SoftwareSigner::generate_ed25519(), "", "", None).unwrap();
    let err = other_store
        .import_pem(plain.as_bytes(), None, None, None, &pass)
        .unwrap_err();
    assert!(err.to_string().contains("no role"), "{err}");
    let imported = other_store
        .import_pem(plain.as_bytes(), None, Some("targets/ops"), None, &pass)
        .unwrap();
    assert_eq!(imported.role, "targets/ops");
    // Unencrypted SEC1 keys (openssl ecparam -genkey) import too.
    let sec1 = pem::encode(&pem::Pem::new("EC PRIVATE KEY", p256_sec1()));
    let imported = other_store
        .import_pem(sec1.as_bytes(), None, Some("targets/sec1"), None, &pass)
        .unwrap();
    assert_eq!(imported.public.keytype, KeyType::Ecdsa);
}

fn p256_sec1() -> Vec<u8> {
    use p256::pkcs8::DecodePrivateKey as _;
    let der = SoftwareSigner::generate_ecdsa().to_pkcs8_der();
    p256::SecretKey::from_pkcs8_der(&der)
        .unwrap()
        .to_sec1_der()
        .unwrap()
        .to_vec()
}

/// The private scalar of an ECDSA software key.
fn ecdsa_scalar(signer: &SoftwareSigner) -> Vec<u8> {
    use p256::pkcs8::DecodePrivateKey as _;
    p256::SecretKey::from_pkcs8_der(&signer.to_pkcs8_der())
        .unwrap()
        .to_bytes()
        .to_vec()
}

fn token_ref(label: &str) -> TokenKeyRef {
    TokenKeyRef {
        module: "/usr/lib/softhsm/libsofthsm2.so".into(),
        token_label: label.into(),
        token_serial: "0123".into(),
        cka_id: "01".into(),
        key_label: "berth-root".into(),
        pin_env: "HSM_PIN".into(),
        so_pin_env: None,
    }
}

#[test]
fn token_references_are_listed_but_never_loaded() {
    let dir = TempDir::new().unwrap();
    let store = store(&dir);
    let pass = Passphrase::from("pw");
    let on_token = SoftwareSigner::generate_ecdsa();
    let info = store
        .add_token_key(on_token.public_key(), "root", "", &token_ref("hw"))
        .unwrap();
    assert_eq!(info.key_id, on_token.key_id());
    assert_eq!(info.token, Some(token_ref("hw")));
    let (file_key, _) = store
        .generate(KeyType::Ecdsa, "targets", "example.com/app", &pass)
        .unwrap();
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(store.info(&info.key_id).unwrap(), info);
    assert_eq!(store.info(&file_key.key_id).unwrap().token, None);
    // The reference file holds nothing secret and cannot be decrypted or exported.
    let text = std::fs::read_to_string(store.dir().join(format!("{}.key", info.key_id))).unwrap();
    assert!(
        text.contains("berth-token-key-v1") && !text.contains("ciphertext"),
        "{text}"
    );
    let err = store.load(&info.key_id, &pass).unwrap_err();
    assert!(matches!(err, KeyStoreError::OnToken { .. }), "{err:?}");
    assert!(err.to_string().contains("token \"hw\""), "{err}");
    assert!(matches!(
        store.export_pem(&info.key_id, &pass, None),
        Err(KeyStoreError::OnToken { .. })
    ));
    // Recording the same reference again is fine; another is a conflict,
    // and so is a software key with the id of a token key.
    store
        .add_token_key(on_token.public_key(), "root", "", &token_ref("hw"))
        .unwrap();
    assert!(matches!(
        store.add_token_key(on_token.public_key(), "root", "", &token_ref("other")),
        Err(KeyStoreError::Conflict { .. })
    ));
    assert!(matches!(
        store.add(&on_token, "root", "", &pass),
        Err(KeyStoreError::Conflict { .. })
    ));
    store.remove(&info.key_id).unwrap();
    assert_eq!(store.list().unwrap().len(), 1);
}

#[test]
fn restores_never_overwrite_a_different_key() {
    let dir = TempDir::new().unwrap();
    let store = store(&dir);
    let pass = Passphrase::from("pw");
    let (file_key, _) = store
        .generate(KeyType::Ecdsa, "targets", "example.com/app", &pass)
        .unwrap();
    let on_token = SoftwareSigner::generate_ecdsa();
    let token_key = store
        .add_token_key(on_token.public_key(), "root", "", &token_ref("hw"))
        .unwrap();
    let absent = SoftwareSigner::generate_ecdsa().key_id();
    let id = file_key.key_id.as_str();
    // (key id, role, GUN, a token reference, already present or the conflict's words)
    type Case<'a> = (&'a str, &'a str, &'a str, bool, Result<bool, &'a str>);
    let cases: Vec<Case> = vec![
        (&absent, "targets", "example.com/app", false, Ok(false)),
        (id, "targets", "example.com/app", false, Ok(true)),
        (id, "snapshot", "example.com/app", false, Err("as role \"targets\"")),
        (
            id,
            "targets",
            "example.com/other",
            false,
            Err("of GUN \"example.com/app\""),
        ),
        (
            id,
            "targets",
            "example.com/app",
            true,
            Err("the backup a token reference"),
        ),
        (&token_key.key_id, "root", "", true, Ok(true)),
        (&token_key.key_id, "root", "", false, Err("the backup its private key")),
    ];
    for (key_id, role, gun, on_token, expected) in cases {
        let got = store.check_restore(key_id, role, gun, on_token);
        match (got, expected) {
            (Ok(got), Ok(expected)) => assert_eq!(got, expected, "{role} {gun} {on_token}"),
            (Err(e), Err(expected)) => {
                assert!(matches!(e, KeyStoreError::Conflict { .. }), "{e:?}");
                assert!(e.to_string().contains(expected), "{e}");
            }
            (got, expected) => panic!("{role} {gun} {on_token}: {got:?}, expected {expected:?}"),
        }
    }
}

#[test]
fn exported_pem_keeps_a_gun_with_a_port() {
    let dir = TempDir::new().unwrap();
    let store = store(&dir);
    let pass = Passphrase::from("pw");
    let (info, _) = store
        .generate(KeyType::Ecdsa, "targets", "127.0.0.1:5000/team/app", &pass)
        .unwrap();
    let exported = store
        .export_pem(&info.key_id, &pass, Some(&Passphrase::from("export")))
        .unwrap();
    assert!(
        exported.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\ngun: 127.0.0.1:5000/team/app\npath: "),
        "{}",
        &*exported
    );
    let parsed = keystore::parse_private_key_pem(exported.as_bytes(), Some(&Passphrase::from("export"))).unwrap();
    assert_eq!(parsed.gun.as_deref(), Some("127.0.0.1:5000/team/app"));
    assert_eq!(parsed.role.as_deref(), Some("targets"));
    assert_eq!(parsed.signer.key_id(), info.key_id);
}
