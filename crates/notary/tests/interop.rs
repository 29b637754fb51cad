//! Wire compatibility with Notary: metadata the notary 0.3 client published
//! (fixtures) and keys the notary 0.7 CLI makes and reads (Debian package
//! `notary`, `/usr/bin/notary`).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_notary::client::{self, ClientError, FetchError};
use berth_notary::keys::{KeyType, PublicKey, Signer as _};
use berth_notary::keystore::{self, KdfParams, KeyStore, Passphrase};
use berth_notary::metadata::{FileMeta, RoleName, Root, Signed, Snapshot, Targets, Timestamp};
use berth_notary::repo::{self, TrustPinning, VerifyError};
use chrono::{TimeZone, Utc};
use tempfile::TempDir;

const GUN: &str = "docker.com/notary0.3/tst";

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/notary-0.3")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn serve_fixture(name: &str) -> Result<Vec<u8>, FetchError> {
    let files = [
        "root.json",
        "timestamp.json",
        "snapshot.json",
        "targets.json",
        "targets/releases.json",
    ];
    if name == "root.json" || name == "timestamp.json" {
        return Ok(fixture(name));
    }
    for file in files {
        let bytes = fixture(file);
        let role = file.strip_suffix(".json").unwrap();
        if name
            == format!(
                "{role}.{}.json",
                hex::encode(&FileMeta::from_bytes(&bytes).hashes["sha256"])
            )
        {
            return Ok(bytes);
        }
    }
    Err(FetchError::NotFound)
}

#[test]
fn key_ids_of_notary_metadata() {
    let root = Signed::<Root>::from_bytes(&RoleName::Root, &fixture("root.json")).unwrap();
    for (id, key) in &root.signed().keys {
        assert_eq!(&key.id(), id, "{} key", key.keytype);
    }
    // The root key is an ecdsa-x509 certificate; the notary client filed its
    // private key under the canonical id (private/root_keys/f4eaf871...key).
    let root_key = &root.signed().keys["354e203ba09dbe17807b6a9d191bff887167c06d121e738d849446a9c76c2866"];
    assert_eq!(root_key.keytype, KeyType::EcdsaX509);
    assert_eq!(
        root_key.canonical_id().unwrap(),
        "f4eaf871a74aa3b3a0ff95cef2455a1e4d461639f5625418e76756fc5c948690"
    );
    // The rsa-x509 delegation key, filed as fa842f66...key.
    let targets = Signed::<Targets>::from_bytes(&RoleName::Targets, &fixture("targets.json")).unwrap();
    let delegation_key =
        &targets.signed().delegations.keys["68243a1f948be7841403f65fc8f24d5eda9050c337e727e2eacc3d3cb5227d73"];
    assert_eq!(delegation_key.keytype, KeyType::RsaX509);
    assert_eq!(
        delegation_key.canonical_id().unwrap(),
        "fa842f66cac2dc898677a8660789dcff0e3b0b93b73f8952491f6493199936d3"
    );
}

#[test]
fn notary_files_round_trip_byte_for_byte() {
    for (role, file) in [
        (RoleName::Root, "root.json"),
        (RoleName::Targets, "targets.json"),
        (RoleName::Snapshot, "snapshot.json"),
        (RoleName::Timestamp, "timestamp.json"),
    ] {
        let bytes = fixture(file);
        let reencoded = match role {
            RoleName::Root => reencode::<Root>(&role, &bytes),
            RoleName::Targets => reencode::<Targets>(&role, &bytes),
            RoleName::Snapshot => reencode::<Snapshot>(&role, &bytes),
            _ => reencode::<Timestamp>(&role, &bytes),
        };
        assert_eq!(
            String::from_utf8(reencoded).unwrap(),
            String::from_utf8(bytes).unwrap(),
            "{file}"
        );
    }
}

/// Parse, drop the kept original bytes, and serialize again.
fn reencode<T: berth_notary::metadata::Metadata>(role: &RoleName, bytes: &[u8]) -> Vec<u8> {
    let mut signed = Signed::<T>::from_bytes(role, bytes).unwrap();
    assert_eq!(signed.to_bytes(), bytes, "original bytes are kept");
    signed.retain_signatures(|_| true);
    signed.to_bytes()
}

#[test]
fn notary_signatures_verify_including_rsa_pss_delegation() {
    let root = Signed::<Root>::from_bytes(&RoleName::Root, &fixture("root.json")).unwrap();
    let when = Utc.with_ymd_and_hms(2016, 8, 1, 0, 0, 0).unwrap();
    repo::validate_root(None, &root, GUN, Some(when), &TrustPinning::default()).unwrap();
    for (role, file) in [
        (RoleName::Targets, "targets.json"),
        (RoleName::Snapshot, "snapshot.json"),
    ] {
        let keys = repo::root_role_keys(root.signed(), &role).unwrap();
        if role == RoleName::Targets {
            repo::verify_signatures(&Signed::<Targets>::from_bytes(&role, &fixture(file)).unwrap(), &keys).unwrap();
        } else {
            repo::verify_signatures(&Signed::<Snapshot>::from_bytes(&role, &fixture(file)).unwrap(), &keys).unwrap();
        }
    }
    let timestamp = Signed::<Timestamp>::from_bytes(&RoleName::Timestamp, &fixture("timestamp.json")).unwrap();
    repo::verify_signatures(
        &timestamp,
        &repo::root_role_keys(root.signed(), &RoleName::Timestamp).unwrap(),
    )
    .unwrap();
    let targets = Signed::<Targets>::from_bytes(&RoleName::Targets, &fixture("targets.json")).unwrap();
    let top = repo::root_role_keys(root.signed(), &RoleName::Targets).unwrap();
    let releases = RoleName::parse("targets/releases").unwrap();
    let keys = repo::delegation_role_keys(targets.signed(), &top, &releases).unwrap();
    let signed = Signed::<Targets>::from_bytes(&releases, &fixture("targets/releases.json")).unwrap();
    assert_eq!(signed.signatures()[0].method, "rsapss");
    repo::verify_signatures(&signed, &keys).unwrap();
    // The same signature over different bytes fails.
    let tampered = String::from_utf8(fixture("targets/releases.json"))
        .unwrap()
        .replace("\"hello\"", "\"hellO\"");
    let signed = Signed::<Targets>::from_bytes(&releases, tampered.as_bytes()).unwrap();
    assert!(matches!(
        repo::verify_signatures(&signed, &keys),
        Err(VerifyError::BadSignature { .. })
    ));
}

#[test]
fn client_update_over_notary_published_repository() {
    let cache = TempDir::new().unwrap();
    let when = Utc.with_ymd_and_hms(2016, 8, 1, 0, 0, 0).unwrap();
    let repo = client::update(GUN, cache.path(), &TrustPinning::default(), when, &|name: &str, _| {
        serve_fixture(name)
    })
    .unwrap();
    let license = repo.resolve_target("LICENSE", None).unwrap();
    assert_eq!(
        hex::encode(&license.meta.hashes["sha256"]),
        "9395bac6fccb26bcb55efb083d1b4b0fe72a1c25f959f056c016120b3bb56a62"
    );
    assert_eq!(license.meta.length, 11309);
    let hello = repo.resolve_target("hello", None).unwrap();
    assert_eq!(hello.roles, vec![RoleName::parse("targets/releases").unwrap()]);
    assert_eq!(hello.meta, FileMeta::from_bytes(b""));
    assert!(repo.invalid_roles().is_empty());
    assert!(cache.path().join("targets/releases.json").exists());
}

#[test]
fn notary_root_certificate_is_refused_once_expired() {
    // The fixture's root certificate expired on 2026-07-25.
    let when = Utc.with_ymd_and_hms(2026, 8, 1, 0, 0, 0).unwrap();
    let err = client::update(
        GUN,
        TempDir::new().unwrap().path(),
        &TrustPinning::default(),
        when,
        &|name: &str, _| serve_fixture(name),
    )
    .unwrap_err();
    assert!(
        matches!(err, ClientError::Verify(VerifyError::RootCertificate { .. })),
        "{err:?}"
    );
    // And a root for another GUN is refused even while valid.
    let when = Utc.with_ymd_and_hms(2016, 8, 1, 0, 0, 0).unwrap();
    let err = client::update(
        "docker.com/other",
        TempDir::new().unwrap().path(),
        &TrustPinning::default(),
        when,
        &|name: &str, _| serve_fixture(name),
    )
    .unwrap_err();
    assert!(
        matches!(err, ClientError::Verify(VerifyError::RootCertificate { .. })),
        "{err:?}"
    );
}

// ---- the notary CLI ------------------------------------------------------

const NOTARY: &str = "/usr/bin/notary";
const PASS: &str = "berth-interop-pass";

fn notary(trust_dir: &Path, args: &[&str]) -> String {
    assert!(
        Path::new(NOTARY).exists(),
        "{NOTARY} is missing: install the Debian package `notary` (apt-get install notary)"
    );
    let out = Command::new(NOTARY)
        .arg("-d")
        .arg(trust_dir)
        .args(args)
        .env("NOTARY_ROOT_PASSPHRASE", PASS)
        .env("NOTARY_TARGETS_PASSPHRASE", PASS)
        .env("NOTARY_SNAPSHOT_PASSPHRASE", PASS)
        .env("NOTARY_DELEGATION_PASSPHRASE", PASS)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "notary {args:?} failed: {text}");
    text
}

fn fast_store(dir: &Path) -> KeyStore {
    KeyStore::open(dir).unwrap().with_kdf_params(KdfParams {
        m_cost: 1024,
        t_cost: 1,
        p_cost: 1,
    })
}

fn key_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "key") {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn keys_generated_by_the_notary_cli_import_under_the_same_id() {
    let tmp = TempDir::new().unwrap();
    let trust = tmp.path().join("notary");
    notary(&trust, &["key", "generate", "ecdsa", "--role", "targets/releases"]);
    let files = key_files(&trust.join("private"));
    assert_eq!(files.len(), 1, "{files:?}");
    let notary_id = files[0].file_stem().unwrap().to_str().unwrap().to_string();

    let store = fast_store(&tmp.path().join("berth"));
    let pem = std::fs::read(&files[0]).unwrap();
    let err = store
        .import_pem(&pem, None, None, None, &Passphrase::from("x"))
        .unwrap_err();
    assert!(matches!(err, keystore::KeyStoreError::PassphraseRequired), "{err:?}");
    let err = store
        .import_pem(
            &pem,
            Some(&Passphrase::from("wrong")),
            None,
            None,
            &Passphrase::from("x"),
        )
        .unwrap_err();
    assert!(err.to_string().contains("wrong passphrase"), "{err}");
    let info = store
        .import_pem(
            &pem,
            Some(&Passphrase::from(PASS)),
            None,
            None,
            &Passphrase::from("mine"),
        )
        .unwrap();
    assert_eq!(info.key_id, notary_id);
    assert_eq!(info.role, "targets/releases");
    // The key signs, and the signature verifies under the id notary gave it.
    let signer = store.load(&notary_id, &Passphrase::from("mine")).unwrap();
    let sig = signer.sign(b"m").unwrap();
    berth_notary::crypto::verify_signature(signer.public_key(), signer.method(), b"m", &sig).unwrap();

    // `generate -o`: a PUBLIC KEY file and the encrypted private key.
    let out = tmp.path().join("exported");
    notary(
        &trust,
        &[
            "key",
            "generate",
            "ecdsa",
            "--role",
            "root",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    let public_pem = pem::parse(std::fs::read(tmp.path().join("exported.pem")).unwrap()).unwrap();
    let public = PublicKey::new(KeyType::Ecdsa, public_pem.contents().to_vec());
    let private = std::fs::read(tmp.path().join("exported-key.pem")).unwrap();
    let info = store
        .import_pem(
            &private,
            Some(&Passphrase::from(PASS)),
            None,
            None,
            &Passphrase::from("mine"),
        )
        .unwrap();
    assert_eq!(info.key_id, public.id());
    assert_eq!(info.role, "root");
}

#[test]
fn keys_exported_by_berth_import_into_the_notary_cli() {
    let tmp = TempDir::new().unwrap();
    let store = fast_store(&tmp.path().join("berth"));
    let pass = Passphrase::from("mine");
    let (ecdsa, _) = store.generate(KeyType::Ecdsa, "targets/releases", "", &pass).unwrap();
    let (ed25519, _) = store.generate(KeyType::Ed25519, "targets/ops", "", &pass).unwrap();
    let trust = tmp.path().join("notary");
    for info in [&ecdsa, &ed25519] {
        let encrypted = store
            .export_pem(&info.key_id, &pass, Some(&Passphrase::from(PASS)))
            .unwrap();
        let file = tmp.path().join(format!("{}.pem", info.key_id));
        std::fs::write(&file, encrypted.as_bytes()).unwrap();
        notary(&trust, &["key", "import", file.to_str().unwrap()]);
    }
    let listing = notary(&trust, &["key", "list"]);
    for info in [&ecdsa, &ed25519] {
        assert!(listing.contains(&info.key_id), "{listing}");
        assert!(listing.contains(&info.role), "{listing}");
    }
    // notary can decrypt them: changing the passphrase needs the old one.
    for info in [&ecdsa, &ed25519] {
        notary(&trust, &["key", "passwd", &info.key_id]);
    }
    // An unencrypted export imports too (notary encrypts it on import).
    let (plain, _) = store.generate(KeyType::Ecdsa, "targets/dev", "", &pass).unwrap();
    let text = store.export_pem(&plain.key_id, &pass, None).unwrap();
    assert!(
        text.starts_with("-----BEGIN PRIVATE KEY-----\npath: "),
        "{}",
        &text[..40]
    );
    let file = tmp.path().join("plain.pem");
    std::fs::write(&file, text.as_bytes()).unwrap();
    notary(&trust, &["key", "import", file.to_str().unwrap()]);
    assert!(notary(&trust, &["key", "list"]).contains(&plain.key_id));
}

#[test]
fn legacy_encrypted_keys_of_notary_0_3_import() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/notary-0.3-keys");
    let tmp = TempDir::new().unwrap();
    let store = fast_store(tmp.path());
    let pass = Passphrase::from("password");
    let root = Signed::<Root>::from_bytes(&RoleName::Root, &fixture("root.json")).unwrap();
    for (id, role) in [
        (
            "f4eaf871a74aa3b3a0ff95cef2455a1e4d461639f5625418e76756fc5c948690",
            "root",
        ),
        (
            "041b64dab281324ef2b62fd2d04f4758269e120ff063b7bc78709272821a0a02",
            "targets",
        ),
    ] {
        let pem_bytes = std::fs::read(dir.join(format!("{id}.key"))).unwrap();
        let err = store
            .import_pem(&pem_bytes, Some(&Passphrase::from("randompass")), None, None, &pass)
            .unwrap_err();
        assert!(err.to_string().contains("wrong passphrase"), "{err}");
        let info = store.import_pem(&pem_bytes, Some(&pass), None, None, &pass).unwrap();
        assert_eq!((info.key_id.as_str(), info.role.as_str()), (id, role));
        // The decrypted key is the one the repository lists (by canonical id).
        let listed = root.signed().roles[role].keyids[0].clone();
        assert_eq!(root.signed().keys[&listed].canonical_id().unwrap(), id);
    }
    let rsa = std::fs::read(dir.join("fa842f66cac2dc898677a8660789dcff0e3b0b93b73f8952491f6493199936d3.key")).unwrap();
    let err = store.import_pem(&rsa, Some(&pass), None, None, &pass).unwrap_err();
    assert!(err.to_string().contains("rsa private keys"), "{err}");
}
