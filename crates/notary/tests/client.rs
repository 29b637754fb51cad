//! The client's update workflow against berth's server logic, and every
//! attack it must detect, each with its own error.

#![allow(clippy::unwrap_used)]

mod support;

use berth_notary::client::{self, ClientError, FetchError, SignerRequirement, TrustedRepo};
use berth_notary::crypto::{create_root_certificate, CertificateInfo, SoftwareSigner};
use berth_notary::keys::{CertifiedSigner, Signer};
use berth_notary::metadata::{FileMeta, RoleName, Root, Signed, Snapshot, Targets, Timestamp};
use berth_notary::repo::{TrustPinning, VerifyError};
use chrono::Duration;
use support::{Harness, GUN};
use tempfile::TempDir;

fn published() -> Harness {
    let mut h = Harness::new();
    h.editor
        .add_target(
            &RoleName::Targets,
            "latest",
            FileMeta::from_bytes(b"manifest v1"),
            h.now,
        )
        .unwrap();
    h.publish().unwrap();
    h
}

fn update(h: &Harness, cache: &TempDir) -> Result<TrustedRepo, ClientError> {
    client::update(GUN, cache.path(), &TrustPinning::default(), h.now, &h.fetcher())
}

fn hash_of(bytes: &[u8]) -> String {
    hex::encode(&FileMeta::from_bytes(bytes).hashes["sha256"])
}

/// Re-sign `meta` as the server would, with the server's key for `role`.
fn server_sign<T: berth_notary::metadata::Metadata>(h: &Harness, role: &RoleName, meta: T) -> Vec<u8> {
    let key = berth_notary::server::get_or_create_key(&h.state, role, &h.server_keys).unwrap();
    let signer = berth_notary::server::ServerKeys::signer(&h.server_keys, GUN, &key.id()).unwrap();
    let mut signed = Signed::new(meta).unwrap();
    signed.sign(&[signer.as_ref()]).unwrap();
    signed.to_bytes()
}

#[test]
fn update_verifies_and_resolves_a_target() {
    let h = published();
    let cache = TempDir::new().unwrap();
    let repo = update(&h, &cache).unwrap();
    let target = repo.resolve_target("latest", None).unwrap();
    assert_eq!(target.meta, FileMeta::from_bytes(b"manifest v1"));
    assert_eq!(target.roles, vec![RoleName::Targets]);
    client::check_target_bytes("latest", b"manifest v1", &target.meta).unwrap();
    assert_eq!(
        repo.resolve_target("nope", None).unwrap_err(),
        ClientError::TargetNotFound { name: "nope".into() }
    );
    // Consistent names, in workflow order.
    let fetched = h.fetched.borrow().clone();
    let snapshot_hash = hash_of(&h.current(&RoleName::Snapshot));
    let targets_hash = hash_of(&h.current(&RoleName::Targets));
    assert_eq!(
        fetched,
        vec![
            "root.json".to_string(),
            "2.root.json".into(),
            "timestamp.json".into(),
            format!("snapshot.{snapshot_hash}.json"),
            format!("targets.{targets_hash}.json"),
        ]
    );
    // The cache holds what was verified; a second update starts from it.
    assert_eq!(
        std::fs::read(cache.path().join("root.json")).unwrap(),
        h.current(&RoleName::Root)
    );
    h.fetched.borrow_mut().clear();
    update(&h, &cache).unwrap();
    assert_eq!(h.fetched.borrow()[0], "2.root.json");
}

#[test]
fn missing_repository_is_reported() {
    let h = Harness::new();
    let cache = TempDir::new().unwrap();
    assert_eq!(
        update(&h, &cache).unwrap_err(),
        ClientError::RepositoryNotFound { gun: GUN.into() }
    );
}

#[test]
fn rollback_of_timestamp_is_detected() {
    let mut h = published();
    let cache = TempDir::new().unwrap();
    update(&h, &cache).unwrap();
    let old_timestamp = h.current(&RoleName::Timestamp);
    h.editor
        .add_target(
            &RoleName::Targets,
            "latest",
            FileMeta::from_bytes(b"manifest v2"),
            h.now,
        )
        .unwrap();
    h.publish().unwrap();
    update(&h, &cache).unwrap();
    // The server (or a man in the middle) serves yesterday's timestamp.
    h.set_override("timestamp.json", Ok(old_timestamp));
    let err = update(&h, &cache).unwrap_err();
    assert_eq!(
        err,
        ClientError::Verify(VerifyError::Rollback {
            role: "timestamp".into(),
            trusted: 2,
            received: 1
        })
    );
}

#[test]
fn rollback_of_targets_is_detected() {
    let mut h = published();
    let cache = TempDir::new().unwrap();
    h.editor
        .add_target(
            &RoleName::Targets,
            "latest",
            FileMeta::from_bytes(b"manifest v2"),
            h.now,
        )
        .unwrap();
    h.publish().unwrap();
    update(&h, &cache).unwrap();
    // A validly signed timestamp and snapshot that point at targets v1.
    let old_targets = berth_notary::server::get_metadata(&h.state, "1.targets")
        .unwrap()
        .to_vec();
    let mut snapshot = Signed::<Snapshot>::from_bytes(&RoleName::Snapshot, &h.current(&RoleName::Snapshot))
        .unwrap()
        .into_signed();
    snapshot.version += 1;
    snapshot
        .meta
        .insert("targets".into(), FileMeta::from_bytes(&old_targets));
    let snapshot_bytes = server_sign(&h, &RoleName::Snapshot, snapshot);
    let mut ts = Signed::<Timestamp>::from_bytes(&RoleName::Timestamp, &h.current(&RoleName::Timestamp))
        .unwrap()
        .into_signed();
    ts.version += 1;
    ts.meta.insert("snapshot".into(), FileMeta::from_bytes(&snapshot_bytes));
    h.set_override("timestamp.json", Ok(server_sign(&h, &RoleName::Timestamp, ts)));
    h.set_override(
        &format!("snapshot.{}.json", hash_of(&snapshot_bytes)),
        Ok(snapshot_bytes),
    );
    let err = update(&h, &cache).unwrap_err();
    assert_eq!(
        err,
        ClientError::Verify(VerifyError::Rollback {
            role: "targets".into(),
            trusted: 2,
            received: 1
        })
    );
}

#[test]
fn expired_timestamp_is_a_freeze_attack() {
    let h = published();
    let cache = TempDir::new().unwrap();
    let old = h.current(&RoleName::Timestamp);
    h.set_override("timestamp.json", Ok(old));
    let later = h.now + Duration::days(15);
    let err = client::update(GUN, cache.path(), &TrustPinning::default(), later, &h.fetcher()).unwrap_err();
    assert!(
        matches!(err, ClientError::Verify(VerifyError::Expired { ref role, .. }) if role == "timestamp"),
        "{err:?}"
    );
}

#[test]
fn expired_snapshot_and_targets_are_freeze_attacks() {
    let mut h = published();
    let cache = TempDir::new().unwrap();
    // Targets expiring tomorrow, a client a week later (the server keeps re-signing the timestamp).
    h.editor.set_expiry(&RoleName::Targets, h.now + Duration::days(1));
    h.publish().unwrap();
    let later = h.now + Duration::days(7);
    let err = client::update(GUN, cache.path(), &TrustPinning::default(), later, &h.fetcher()).unwrap_err();
    assert!(
        matches!(err, ClientError::Verify(VerifyError::Expired { ref role, .. }) if role == "targets"),
        "{err:?}"
    );

    // A snapshot past its expiry, served with a fresh timestamp.
    let mut snapshot = Signed::<Snapshot>::from_bytes(&RoleName::Snapshot, &h.current(&RoleName::Snapshot))
        .unwrap()
        .into_signed();
    snapshot.version += 1;
    snapshot.expires = h.now - Duration::hours(1);
    let snapshot_bytes = server_sign(&h, &RoleName::Snapshot, snapshot);
    let mut ts = Signed::<Timestamp>::from_bytes(&RoleName::Timestamp, &h.current(&RoleName::Timestamp))
        .unwrap()
        .into_signed();
    ts.version += 1;
    ts.meta.insert("snapshot".into(), FileMeta::from_bytes(&snapshot_bytes));
    h.set_override("timestamp.json", Ok(server_sign(&h, &RoleName::Timestamp, ts)));
    h.set_override(
        &format!("snapshot.{}.json", hash_of(&snapshot_bytes)),
        Ok(snapshot_bytes),
    );
    let err = update(&h, &cache).unwrap_err();
    assert!(
        matches!(err, ClientError::Verify(VerifyError::Expired { ref role, .. }) if role == "snapshot"),
        "{err:?}"
    );
}

#[test]
fn expired_root_is_a_freeze_attack() {
    let mut h = published();
    h.editor.set_expiry(&RoleName::Root, h.now + Duration::days(2));
    h.publish().unwrap();
    let cache = TempDir::new().unwrap();
    let later = h.now + Duration::days(3);
    let err = client::update(GUN, cache.path(), &TrustPinning::default(), later, &h.fetcher()).unwrap_err();
    assert!(
        matches!(err, ClientError::Verify(VerifyError::Expired { ref role, .. }) if role == "root"),
        "{err:?}"
    );
}

#[test]
fn snapshot_not_matching_the_timestamp_is_mix_and_match() {
    let mut h = published();
    let cache = TempDir::new().unwrap();
    let first_snapshot = h.current(&RoleName::Snapshot);
    h.editor
        .add_target(
            &RoleName::Targets,
            "latest",
            FileMeta::from_bytes(b"manifest v2"),
            h.now,
        )
        .unwrap();
    h.publish().unwrap();
    // The current timestamp's snapshot name answers with the old (validly signed) snapshot.
    let name = format!("snapshot.{}.json", hash_of(&h.current(&RoleName::Snapshot)));
    h.set_override(&name, Ok(first_snapshot));
    let err = update(&h, &cache).unwrap_err();
    assert!(
        matches!(err, ClientError::Verify(VerifyError::MetaMismatch { ref role, ref listed_by, .. }) if role == "snapshot" && listed_by == "timestamp"),
        "{err:?}"
    );
}

#[test]
fn targets_not_matching_the_snapshot_is_mix_and_match() {
    let mut h = published();
    let cache = TempDir::new().unwrap();
    let first_targets = h.current(&RoleName::Targets);
    h.editor
        .add_target(
            &RoleName::Targets,
            "latest",
            FileMeta::from_bytes(b"manifest v2"),
            h.now,
        )
        .unwrap();
    h.publish().unwrap();
    let name = format!("targets.{}.json", hash_of(&h.current(&RoleName::Targets)));
    h.set_override(&name, Ok(first_targets));
    let err = update(&h, &cache).unwrap_err();
    assert!(
        matches!(err, ClientError::Verify(VerifyError::MetaMismatch { ref role, ref listed_by, .. }) if role == "targets" && listed_by == "snapshot"),
        "{err:?}"
    );
}

#[test]
fn timestamp_signed_by_another_key_is_refused() {
    let h = published();
    let cache = TempDir::new().unwrap();
    let ts = Signed::<Timestamp>::from_bytes(&RoleName::Timestamp, &h.current(&RoleName::Timestamp))
        .unwrap()
        .into_signed();
    let mut forged = Signed::new(ts).unwrap();
    let mallory = SoftwareSigner::generate_ecdsa();
    forged.sign(&[&mallory]).unwrap();
    h.set_override("timestamp.json", Ok(forged.to_bytes()));
    let err = update(&h, &cache).unwrap_err();
    assert_eq!(
        err,
        ClientError::Verify(VerifyError::WrongKey {
            role: "timestamp".into(),
            key_ids: vec![mallory.key_id()]
        })
    );
}

#[test]
fn tampered_targets_signature_is_refused() {
    let h = published();
    let cache = TempDir::new().unwrap();
    // Flip a bit of the signature, keep the content: the snapshot still lists
    // the original bytes, so hand the client a snapshot listing these.
    let mut targets = Signed::<Targets>::from_bytes(&RoleName::Targets, &h.current(&RoleName::Targets)).unwrap();
    let mut sig = targets.signatures()[0].clone();
    sig.sig[10] ^= 1;
    targets.push_signature(sig);
    let bad_targets = targets.to_bytes();
    let mut snapshot = Signed::<Snapshot>::from_bytes(&RoleName::Snapshot, &h.current(&RoleName::Snapshot))
        .unwrap()
        .into_signed();
    snapshot.version += 1;
    snapshot
        .meta
        .insert("targets".into(), FileMeta::from_bytes(&bad_targets));
    let snapshot_bytes = server_sign(&h, &RoleName::Snapshot, snapshot);
    let mut ts = Signed::<Timestamp>::from_bytes(&RoleName::Timestamp, &h.current(&RoleName::Timestamp))
        .unwrap()
        .into_signed();
    ts.version += 1;
    ts.meta.insert("snapshot".into(), FileMeta::from_bytes(&snapshot_bytes));
    h.set_override("timestamp.json", Ok(server_sign(&h, &RoleName::Timestamp, ts)));
    h.set_override(
        &format!("snapshot.{}.json", hash_of(&snapshot_bytes)),
        Ok(snapshot_bytes),
    );
    h.set_override(&format!("targets.{}.json", hash_of(&bad_targets)), Ok(bad_targets));
    let err = update(&h, &cache).unwrap_err();
    assert_eq!(
        err,
        ClientError::Verify(VerifyError::BadSignature {
            role: "targets".into(),
            key_id: h.targets_key.key_id()
        })
    );
}

#[test]
fn targets_below_threshold_is_refused() {
    let mut h = Harness::new();
    let second = SoftwareSigner::generate_ecdsa();
    let keys = [h.targets_key.public_key().clone(), second.public_key().clone()];
    h.editor.rotate_key(&RoleName::Targets, &keys, 2).unwrap();
    let signers: [&dyn Signer; 3] = [&h.root_key, &h.targets_key, &second];
    let uploads = h.editor.publish(&signers, h.now).unwrap();
    h.upload(uploads.into_iter().map(|(r, b)| (r.to_string(), b)).collect())
        .unwrap();
    let cache = TempDir::new().unwrap();
    update(&h, &cache).unwrap();

    // Serve a targets file carrying only one of the two signatures.
    let mut targets = Signed::<Targets>::from_bytes(&RoleName::Targets, &h.current(&RoleName::Targets)).unwrap();
    let second_id = second.key_id();
    targets.retain_signatures(|id| id != second_id);
    let thin = targets.to_bytes();
    let mut snapshot = Signed::<Snapshot>::from_bytes(&RoleName::Snapshot, &h.current(&RoleName::Snapshot))
        .unwrap()
        .into_signed();
    snapshot.version += 1;
    snapshot.meta.insert("targets".into(), FileMeta::from_bytes(&thin));
    let snapshot_bytes = server_sign(&h, &RoleName::Snapshot, snapshot);
    let mut ts = Signed::<Timestamp>::from_bytes(&RoleName::Timestamp, &h.current(&RoleName::Timestamp))
        .unwrap()
        .into_signed();
    ts.version += 1;
    ts.meta.insert("snapshot".into(), FileMeta::from_bytes(&snapshot_bytes));
    h.set_override("timestamp.json", Ok(server_sign(&h, &RoleName::Timestamp, ts)));
    h.set_override(
        &format!("snapshot.{}.json", hash_of(&snapshot_bytes)),
        Ok(snapshot_bytes),
    );
    h.set_override(&format!("targets.{}.json", hash_of(&thin)), Ok(thin));
    let err = update(&h, &cache).unwrap_err();
    assert_eq!(
        err,
        ClientError::Verify(VerifyError::ThresholdNotMet {
            role: "targets".into(),
            valid: 1,
            threshold: 2
        })
    );
}

#[test]
fn rotated_root_is_followed_when_signed_by_old_and_new_keys() {
    let mut h = published();
    let cache = TempDir::new().unwrap();
    update(&h, &cache).unwrap();
    let new_key = SoftwareSigner::generate_ecdsa();
    let new_cert = create_root_certificate(&new_key, GUN, h.now).unwrap();
    h.editor.rotate_root(std::slice::from_ref(&new_cert), 1).unwrap();
    let old_key = std::mem::replace(&mut h.root_key, new_key.clone());
    h.publish_with(&[&old_key, &new_key]).unwrap();
    let repo = update(&h, &cache).unwrap();
    assert_eq!(repo.root().signed().version, 2);
    assert!(h.fetched.borrow().iter().any(|n| n == "3.root.json"));
    assert_eq!(
        std::fs::read(cache.path().join("root.json")).unwrap(),
        h.current(&RoleName::Root)
    );
}

#[test]
fn rotated_root_without_the_old_keys_signature_is_refused() {
    let h = published();
    let cache = TempDir::new().unwrap();
    update(&h, &cache).unwrap();
    // A server that swapped in its own root key.
    let mallory = SoftwareSigner::generate_ecdsa();
    let cert = create_root_certificate(&mallory, GUN, h.now).unwrap();
    let mut root: Root = h.editor.root().clone();
    root.keys.retain(|id, _| *id != h.root_cert.id());
    root.keys.insert(cert.id(), cert.clone());
    root.roles.get_mut("root").unwrap().keyids = vec![cert.id()];
    root.version = 2;
    let mut signed = Signed::new(root).unwrap();
    signed.sign(&[&CertifiedSigner::new(&mallory, cert).unwrap()]).unwrap();
    h.set_override("2.root.json", Ok(signed.to_bytes()));
    let err = update(&h, &cache).unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Verify(VerifyError::RootRotation { from: 1, to: 2, .. })
        ),
        "{err:?}"
    );
}

#[test]
fn root_chain_versions_must_be_consecutive() {
    let h = published();
    let cache = TempDir::new().unwrap();
    update(&h, &cache).unwrap();
    // 2.root.json answering with root version 1 again.
    h.set_override("2.root.json", Ok(h.current(&RoleName::Root)));
    let err = update(&h, &cache).unwrap_err();
    assert_eq!(
        err,
        ClientError::Verify(VerifyError::RootVersion { expected: 2, found: 1 })
    );
}

#[test]
fn endless_data_is_cut_off() {
    let h = published();
    let cache = TempDir::new().unwrap();
    h.set_override(
        "timestamp.json",
        Ok(vec![b' '; client::MAX_TIMESTAMP_SIZE as usize + 1]),
    );
    let err = update(&h, &cache).unwrap_err();
    assert_eq!(
        err,
        ClientError::TooLarge {
            name: "timestamp.json".into(),
            limit: client::MAX_TIMESTAMP_SIZE
        }
    );
    h.clear_overrides();
    h.set_override("root.json", Ok(vec![b' '; client::MAX_ROOT_SIZE as usize + 1]));
    let err = update(&h, &cache).unwrap_err();
    assert_eq!(
        err,
        ClientError::TooLarge {
            name: "root.json".into(),
            limit: client::MAX_ROOT_SIZE
        }
    );
    // Snapshot capped at the length the timestamp lists.
    h.clear_overrides();
    let snapshot = h.current(&RoleName::Snapshot);
    let name = format!("snapshot.{}.json", hash_of(&snapshot));
    let mut longer = snapshot.clone();
    longer.extend_from_slice(b"    ");
    h.set_override(&name, Ok(longer));
    let err = update(&h, &cache).unwrap_err();
    assert_eq!(
        err,
        ClientError::TooLarge {
            name,
            limit: snapshot.len() as u64
        }
    );
    // And the cap reaches the fetch function.
    let seen = std::cell::RefCell::new(Vec::new());
    let fetch = |name: &str, max: u64| -> Result<Vec<u8>, FetchError> {
        seen.borrow_mut().push((name.to_string(), max));
        h.clear_overrides();
        h.serve(name)
    };
    client::update(
        GUN,
        TempDir::new().unwrap().path(),
        &TrustPinning::default(),
        h.now,
        &fetch,
    )
    .unwrap();
    let seen = seen.into_inner();
    assert_eq!(seen[0], ("root.json".into(), client::MAX_ROOT_SIZE));
    assert!(seen
        .iter()
        .any(|(n, m)| n == "timestamp.json" && *m == client::MAX_TIMESTAMP_SIZE));
}

#[test]
fn target_content_mismatch_is_detected() {
    let h = published();
    let cache = TempDir::new().unwrap();
    let repo = update(&h, &cache).unwrap();
    let target = repo.resolve_target("latest", None).unwrap();
    let err = client::check_target_bytes("latest", b"manifest v!", &target.meta).unwrap_err();
    assert!(
        matches!(err, ClientError::TargetMismatch { ref reason, .. } if reason.contains("sha")),
        "{err:?}"
    );
    let err = client::check_target_bytes("latest", b"manifest v1 ", &target.meta).unwrap_err();
    assert!(
        matches!(err, ClientError::TargetMismatch { ref reason, .. } if reason.contains("length")),
        "{err:?}"
    );
}

#[test]
fn trust_pinning_by_key_id_and_by_ca() {
    let h = published();
    let pinned = TrustPinning {
        key_ids: vec![h.root_cert.id()],
        ..Default::default()
    };
    client::update(GUN, TempDir::new().unwrap().path(), &pinned, h.now, &h.fetcher()).unwrap();
    let wrong = TrustPinning {
        key_ids: vec!["00".repeat(32)],
        ..Default::default()
    };
    let err = client::update(GUN, TempDir::new().unwrap().path(), &wrong, h.now, &h.fetcher()).unwrap_err();
    assert!(
        matches!(err, ClientError::Verify(VerifyError::TrustPinning { .. })),
        "{err:?}"
    );
    let no_tofu = TrustPinning {
        disable_tofu: true,
        ..Default::default()
    };
    let err = client::update(GUN, TempDir::new().unwrap().path(), &no_tofu, h.now, &h.fetcher()).unwrap_err();
    assert!(
        matches!(err, ClientError::Verify(VerifyError::TrustPinning { .. })),
        "{err:?}"
    );

    // A CA that did not issue the (self-signed) root certificate.
    let ca = rcgen::generate_simple_self_signed(vec!["ca.example".to_string()]).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = params.self_signed(&ca.signing_key).unwrap();
    let by_ca = TrustPinning {
        ca_pem: Some(ca_cert.pem().into_bytes()),
        ..Default::default()
    };
    let err = client::update(GUN, TempDir::new().unwrap().path(), &by_ca, h.now, &h.fetcher()).unwrap_err();
    assert!(
        matches!(err, ClientError::Verify(VerifyError::TrustPinning { .. })),
        "{err:?}"
    );
}

#[test]
fn root_certificate_issued_by_a_pinned_ca_is_trusted() {
    // A repository whose root key is certified by a CA instead of self-signed.
    let now = support::t0();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "berth test CA");
    ca_params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    ca_params.not_after = rcgen::date_time_ymd(2035, 1, 1);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let root_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut leaf_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf_params.distinguished_name.push(rcgen::DnType::CommonName, GUN);
    leaf_params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    leaf_params.not_after = rcgen::date_time_ymd(2030, 1, 1);
    leaf_params.is_ca = rcgen::IsCa::ExplicitNoCa;
    let leaf = leaf_params.signed_by(&root_key, &issuer).unwrap();
    let root_cert = berth_notary::crypto::certificate_key(&CertificateInfo::from_der(leaf.der()).unwrap());
    let signer = SoftwareSigner::from_pkcs8_der(&root_key.serialize_der()).unwrap();

    let mut h = Harness::new();
    h.root_cert = root_cert.clone();
    let ts = berth_notary::server::get_or_create_key(&h.state, &RoleName::Timestamp, &h.server_keys).unwrap();
    let sn = berth_notary::server::get_or_create_key(&h.state, &RoleName::Snapshot, &h.server_keys).unwrap();
    h.editor = berth_notary::builder::RepoEditor::create(
        GUN,
        &[root_cert],
        &[h.targets_key.public_key().clone()],
        &[sn],
        &[ts],
        now,
    )
    .unwrap();
    let targets_key = h.targets_key.clone();
    h.publish_with(&[&signer, &targets_key]).unwrap();
    let by_ca = TrustPinning {
        ca_pem: Some(ca_cert.pem().into_bytes()),
        ..Default::default()
    };
    client::update(GUN, TempDir::new().unwrap().path(), &by_ca, now, &h.fetcher()).unwrap();
}

#[test]
fn signed_by_at_least_n_of_these_signers() {
    let mut h = Harness::new();
    let (alice, bob, carol) = (
        SoftwareSigner::generate_ecdsa(),
        SoftwareSigner::generate_ecdsa(),
        SoftwareSigner::generate_ed25519(),
    );
    let all = [""].map(String::from);
    for (name, key) in [
        ("targets/alice", &alice),
        ("targets/bob", &bob),
        ("targets/carol", &carol),
    ] {
        h.editor
            .add_delegation(
                &RoleName::parse(name).unwrap(),
                &[key.public_key().clone()],
                1,
                &all,
                h.now,
            )
            .unwrap();
    }
    h.publish().unwrap();
    let good = FileMeta::from_bytes(b"good manifest");
    h.editor
        .add_target(&RoleName::parse("targets/alice").unwrap(), "v1", good.clone(), h.now)
        .unwrap();
    h.editor
        .add_target(&RoleName::parse("targets/bob").unwrap(), "v1", good.clone(), h.now)
        .unwrap();
    h.editor
        .add_target(
            &RoleName::parse("targets/carol").unwrap(),
            "v1",
            FileMeta::from_bytes(b"evil"),
            h.now,
        )
        .unwrap();
    h.publish_with(&[&alice, &bob, &carol]).unwrap();

    let repo = update(&h, &TempDir::new().unwrap()).unwrap();
    let roles = |names: &[&str]| names.iter().map(|n| RoleName::parse(n).unwrap()).collect::<Vec<_>>();
    let two_of_ab = SignerRequirement {
        roles: roles(&["targets/alice", "targets/bob"]),
        threshold: 2,
    };
    let found = repo.resolve_target("v1", Some(&two_of_ab)).unwrap();
    assert_eq!(found.meta, good);
    assert_eq!(found.roles, roles(&["targets/alice", "targets/bob"]));

    let two_of_a_and_nobody = SignerRequirement {
        roles: roles(&["targets/alice", "targets/dave"]),
        threshold: 2,
    };
    let err = repo.resolve_target("v1", Some(&two_of_a_and_nobody)).unwrap_err();
    assert!(
        matches!(err, ClientError::SignersThresholdNotMet { ref found, threshold: 2, .. } if found == &["targets/alice".to_string()]),
        "{err:?}"
    );

    let all_three = SignerRequirement {
        roles: roles(&["targets/alice", "targets/bob", "targets/carol"]),
        threshold: 2,
    };
    assert_eq!(
        repo.resolve_target("v1", Some(&all_three)).unwrap_err(),
        ClientError::SignersDisagree { name: "v1".into() }
    );
}

#[test]
fn delegation_with_bad_signature_is_skipped_not_trusted() {
    let mut h = Harness::new();
    let alice = SoftwareSigner::generate_ecdsa();
    let role = RoleName::parse("targets/releases").unwrap();
    h.editor
        .add_delegation(&role, &[alice.public_key().clone()], 1, &["".to_string()], h.now)
        .unwrap();
    h.editor
        .add_target(&role, "v1", FileMeta::from_bytes(b"m"), h.now)
        .unwrap();
    let (root_key, targets_key) = (h.root_key.clone(), h.targets_key.clone());
    h.publish_with(&[&root_key, &targets_key, &alice]).unwrap();
    // Delegation file re-signed by a stranger, listed consistently by a forged snapshot.
    let mut file = Signed::<Targets>::from_bytes(&role, &h.current(&role)).unwrap();
    file.clear_signatures();
    file.sign(&[&SoftwareSigner::generate_ecdsa()]).unwrap();
    let bad = file.to_bytes();
    let mut snapshot = Signed::<Snapshot>::from_bytes(&RoleName::Snapshot, &h.current(&RoleName::Snapshot))
        .unwrap()
        .into_signed();
    snapshot.version += 1;
    snapshot.meta.insert(role.to_string(), FileMeta::from_bytes(&bad));
    let snapshot_bytes = server_sign(&h, &RoleName::Snapshot, snapshot);
    let mut ts = Signed::<Timestamp>::from_bytes(&RoleName::Timestamp, &h.current(&RoleName::Timestamp))
        .unwrap()
        .into_signed();
    ts.version += 1;
    ts.meta.insert("snapshot".into(), FileMeta::from_bytes(&snapshot_bytes));
    h.set_override("timestamp.json", Ok(server_sign(&h, &RoleName::Timestamp, ts)));
    h.set_override(
        &format!("snapshot.{}.json", hash_of(&snapshot_bytes)),
        Ok(snapshot_bytes),
    );
    h.set_override(&format!("targets/releases.{}.json", hash_of(&bad)), Ok(bad));
    let repo = update(&h, &TempDir::new().unwrap()).unwrap();
    assert!(matches!(repo.invalid_roles()[&role], VerifyError::WrongKey { .. }));
    assert_eq!(
        repo.resolve_target("v1", None).unwrap_err(),
        ClientError::TargetNotFound { name: "v1".into() }
    );
}

#[test]
fn targets_key_rotation_is_followed_and_the_old_key_refused() {
    let mut h = published();
    let cache = TempDir::new().unwrap();
    update(&h, &cache).unwrap();
    let old_targets = std::mem::replace(&mut h.targets_key, SoftwareSigner::generate_ed25519());
    let new_public = h.targets_key.public_key().clone();
    h.editor.rotate_key(&RoleName::Targets, &[new_public], 1).unwrap();
    // Without the root key the rotation cannot be published.
    assert!(h.editor.clone().publish(&[&h.targets_key], h.now).is_err());
    let updates = h.publish().unwrap();
    assert_eq!(
        updates.iter().map(|u| u.role.to_string()).collect::<Vec<_>>(),
        ["root", "targets", "snapshot", "timestamp"]
    );
    let repo = update(&h, &cache).unwrap();
    assert_eq!(repo.root().signed().version, 2);
    assert_eq!(
        repo.targets(&RoleName::Targets).unwrap().signatures()[0].method,
        "eddsa"
    );

    // Targets signed by the retired key are no longer accepted by the server...
    let mut stale = h.editor.targets(&RoleName::Targets).unwrap().clone();
    stale.version += 1;
    let mut signed = Signed::new(stale).unwrap();
    signed.sign(&[&old_targets]).unwrap();
    let err = h.upload(vec![("targets".into(), signed.to_bytes())]).unwrap_err();
    assert!(err.to_string().contains("not in the role"), "{err}");
}

#[test]
fn removed_targets_and_delegations_disappear_for_clients() {
    let mut h = published();
    let alice = SoftwareSigner::generate_ecdsa();
    let role = RoleName::parse("targets/alice").unwrap();
    let nested = RoleName::parse("targets/alice/ci").unwrap();
    h.editor
        .add_delegation(&role, &[alice.public_key().clone()], 1, &["".to_string()], h.now)
        .unwrap();
    h.editor
        .add_delegation(&nested, &[alice.public_key().clone()], 1, &["ci/".to_string()], h.now)
        .unwrap();
    h.editor
        .add_target(&role, "v1", FileMeta::from_bytes(b"one"), h.now)
        .unwrap();
    h.editor
        .add_target(&nested, "ci/v1", FileMeta::from_bytes(b"ci"), h.now)
        .unwrap();
    h.editor
        .add_target(&RoleName::Targets, "old", FileMeta::from_bytes(b"old"), h.now)
        .unwrap();
    let (root_key, targets_key) = (h.root_key.clone(), h.targets_key.clone());
    h.publish_with(&[&root_key, &targets_key, &alice]).unwrap();
    let cache = TempDir::new().unwrap();
    let repo = update(&h, &cache).unwrap();
    assert_eq!(repo.resolve_target("ci/v1", None).unwrap().roles, vec![nested.clone()]);
    assert_eq!(repo.resolve_target("v1", None).unwrap().roles, vec![role.clone()]);

    assert!(h.editor.remove_target(&RoleName::Targets, "old").unwrap());
    assert!(!h.editor.remove_target(&RoleName::Targets, "old").unwrap());
    h.editor.remove_delegation(&role).unwrap();
    h.publish().unwrap();
    let repo = update(&h, &cache).unwrap();
    for gone in ["old", "v1", "ci/v1"] {
        assert_eq!(
            repo.resolve_target(gone, None).unwrap_err(),
            ClientError::TargetNotFound { name: gone.into() }
        );
    }
    assert_eq!(
        repo.resolve_target("latest", None).unwrap().roles,
        vec![RoleName::Targets]
    );
    assert!(repo.targets(&role).is_none());
}

#[test]
fn snapshot_key_moves_from_server_to_client() {
    let mut h = published();
    let cache = TempDir::new().unwrap();
    update(&h, &cache).unwrap();
    let snapshot_key = SoftwareSigner::generate_ecdsa();
    h.editor
        .rotate_key(&RoleName::Snapshot, &[snapshot_key.public_key().clone()], 1)
        .unwrap();
    // The client continues the server's snapshot versions.
    let server_snapshot = h.current(&RoleName::Snapshot);
    h.editor.observe_snapshot(&server_snapshot).unwrap();
    let (root_key, targets_key) = (h.root_key.clone(), h.targets_key.clone());
    let updates = h.publish_with(&[&root_key, &targets_key, &snapshot_key]).unwrap();
    assert_eq!(
        updates.iter().map(|u| u.role.to_string()).collect::<Vec<_>>(),
        ["root", "snapshot", "timestamp"]
    );
    let repo = update(&h, &cache).unwrap();
    assert_eq!(repo.snapshot().signatures()[0].keyid, snapshot_key.key_id());
    // From now on a publish without the snapshot key is incomplete.
    h.editor
        .add_target(&RoleName::Targets, "next", FileMeta::from_bytes(b"n"), h.now)
        .unwrap();
    let err = h.publish().unwrap_err();
    assert_eq!(err.code(), "INVALID_UPDATE");
}

#[test]
fn editing_from_a_verified_repository() {
    let h = published();
    let cache = TempDir::new().unwrap();
    let repo = update(&h, &cache).unwrap();
    let mut editor = berth_notary::builder::RepoEditor::from_trusted(&repo).unwrap();
    editor
        .add_target(&RoleName::Targets, "v2", FileMeta::from_bytes(b"v2"), h.now)
        .unwrap();
    let uploads = editor.publish(&[&h.targets_key], h.now).unwrap();
    assert_eq!(
        uploads.iter().map(|(r, _)| r.to_string()).collect::<Vec<_>>(),
        ["targets"]
    );
    let mut h = h;
    h.upload(uploads.into_iter().map(|(r, b)| (r.to_string(), b)).collect())
        .unwrap();
    let repo = update(&h, &cache).unwrap();
    assert_eq!(
        repo.resolve_target("v2", None).unwrap().meta,
        FileMeta::from_bytes(b"v2")
    );
    assert_eq!(repo.targets(&RoleName::Targets).unwrap().signed().version, 2);
}

#[test]
fn rollback_of_snapshot_is_detected() {
    let mut h = published();
    let cache = TempDir::new().unwrap();
    let old_snapshot = h.current(&RoleName::Snapshot);
    h.editor
        .add_target(
            &RoleName::Targets,
            "latest",
            FileMeta::from_bytes(b"manifest v2"),
            h.now,
        )
        .unwrap();
    h.publish().unwrap();
    update(&h, &cache).unwrap();
    // A newer, validly signed timestamp that lists the old snapshot.
    let mut ts = Signed::<Timestamp>::from_bytes(&RoleName::Timestamp, &h.current(&RoleName::Timestamp))
        .unwrap()
        .into_signed();
    ts.version += 1;
    ts.meta.insert("snapshot".into(), FileMeta::from_bytes(&old_snapshot));
    h.set_override("timestamp.json", Ok(server_sign(&h, &RoleName::Timestamp, ts)));
    let err = update(&h, &cache).unwrap_err();
    assert_eq!(
        err,
        ClientError::Verify(VerifyError::Rollback {
            role: "snapshot".into(),
            trusted: 2,
            received: 1
        })
    );
}
