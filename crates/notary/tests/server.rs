//! The trust server's update validation: what it accepts and each way it
//! rejects an update, with notary-server's error codes.

#![allow(clippy::unwrap_used)]

mod support;

use berth_notary::builder::RepoEditor;
use berth_notary::crypto::{create_root_certificate, SoftwareSigner};
use berth_notary::keys::Signer;
use berth_notary::metadata::{FileMeta, RoleName, Root, Signed, Snapshot, Targets, Timestamp};
use berth_notary::repo::VerifyError;
use berth_notary::server::{self, RepoState, ServerError, ValidationError};
use chrono::Duration;
use support::{Harness, GUN};

fn delegation(name: &str) -> RoleName {
    RoleName::parse(name).unwrap()
}

fn roles(updates: &[server::MetaUpdate]) -> Vec<(String, u64)> {
    updates.iter().map(|u| (u.role.to_string(), u.version)).collect()
}

#[test]
fn first_publish_stores_root_targets_and_generated_snapshot_and_timestamp() {
    let mut h = Harness::new();
    h.editor
        .add_target(&RoleName::Targets, "latest", FileMeta::from_bytes(b"manifest"), h.now)
        .unwrap();
    let updates = h.publish().unwrap();
    assert_eq!(
        roles(&updates),
        vec![
            ("root".into(), 1),
            ("targets".into(), 1),
            ("snapshot".into(), 1),
            ("timestamp".into(), 1)
        ]
    );
    // The generated snapshot lists exactly the stored root and targets bytes.
    let snapshot = Signed::<Snapshot>::from_bytes(&RoleName::Snapshot, &h.current(&RoleName::Snapshot)).unwrap();
    assert_eq!(
        snapshot.signed().meta["root"],
        FileMeta::from_bytes(&h.current(&RoleName::Root))
    );
    assert_eq!(
        snapshot.signed().meta["targets"],
        FileMeta::from_bytes(&h.current(&RoleName::Targets))
    );
    let timestamp = Signed::<Timestamp>::from_bytes(&RoleName::Timestamp, &h.current(&RoleName::Timestamp)).unwrap();
    assert_eq!(
        timestamp.signed().meta["snapshot"],
        FileMeta::from_bytes(&h.current(&RoleName::Snapshot))
    );
    assert_eq!(timestamp.signed().expires, h.now + Duration::days(14));

    // A second publish bumps only what changed, plus snapshot and timestamp.
    h.editor
        .add_target(&RoleName::Targets, "v2", FileMeta::from_bytes(b"other"), h.now)
        .unwrap();
    let updates = h.publish().unwrap();
    assert_eq!(
        roles(&updates),
        vec![("targets".into(), 2), ("snapshot".into(), 2), ("timestamp".into(), 2)]
    );
}

#[test]
fn metadata_is_served_by_role_version_and_checksum() {
    let mut h = Harness::new();
    h.publish().unwrap();
    h.editor
        .add_target(&RoleName::Targets, "a", FileMeta::from_bytes(b"a"), h.now)
        .unwrap();
    h.publish().unwrap();
    let v1 = server::get_metadata(&h.state, "1.targets").unwrap().to_vec();
    let v2 = server::get_metadata(&h.state, "targets.json").unwrap().to_vec();
    assert_ne!(v1, v2);
    assert_eq!(server::get_metadata(&h.state, "2.targets.json").unwrap(), &v2[..]);
    let sha = hex::encode(&FileMeta::from_bytes(&v1).hashes["sha256"]);
    assert_eq!(
        server::get_metadata(&h.state, &format!("targets.{sha}")).unwrap(),
        &v1[..]
    );
    let sha512 = hex::encode(&FileMeta::from_bytes(&v1).hashes["sha512"]);
    assert_eq!(
        server::get_metadata(&h.state, &format!("targets.{sha512}.json")).unwrap(),
        &v1[..]
    );
    let err = server::get_metadata(&h.state, "3.targets").unwrap_err();
    assert_eq!((err.code(), err.http_status()), ("METADATA_NOT_FOUND", 404));
    let err = server::get_metadata(&h.state, "targets/Bad").unwrap_err();
    assert_eq!(err.code(), "INVALID_ROLE");
}

#[test]
fn rejects_unknown_role() {
    let mut h = Harness::new();
    let err = h.upload(vec![("releases".into(), b"{}".to_vec())]).unwrap_err();
    assert_eq!(
        err,
        ServerError::InvalidRole {
            role: "releases".into()
        }
    );
    assert_eq!(err.code(), "INVALID_ROLE");
    let body: serde_json::Value = serde_json::from_slice(&err.to_json_body()).unwrap();
    assert_eq!(body["errors"][0]["detail"], "releases");
}

#[test]
fn rejects_malformed_json() {
    let mut h = Harness::new();
    let err = h
        .upload(vec![("targets.json".into(), b"{not json".to_vec())])
        .unwrap_err();
    assert!(matches!(err, ServerError::MalformedJson { .. }), "{err:?}");
    assert_eq!(err.code(), "MALFORMED_JSON");
}

#[test]
fn rejects_update_without_any_root() {
    let mut h = Harness::new();
    let uploads = h.editor.publish(&[&h.root_key, &h.targets_key], h.now).unwrap();
    let targets_only = uploads
        .into_iter()
        .filter(|(r, _)| *r == RoleName::Targets)
        .map(|(r, b)| (r.to_string(), b))
        .collect();
    let err = h.upload(targets_only).unwrap_err();
    assert!(
        matches!(err, ServerError::InvalidUpdate(ValidationError::Validation(_))),
        "{err:?}"
    );
}

#[test]
fn rejects_bad_signature() {
    let mut h = Harness::new();
    h.publish().unwrap();
    h.editor
        .add_target(&RoleName::Targets, "x", FileMeta::from_bytes(b"x"), h.now)
        .unwrap();
    let uploads = h.editor.publish(&[&h.root_key, &h.targets_key], h.now).unwrap();
    let (_, targets) = uploads.into_iter().find(|(r, _)| *r == RoleName::Targets).unwrap();
    // Change the signed content after signing: the signature no longer holds.
    let text = String::from_utf8(targets).unwrap().replace("\"x\"", "\"y\"");
    let err = h.upload(vec![("targets".into(), text.into_bytes())]).unwrap_err();
    match err {
        ServerError::InvalidUpdate(ValidationError::BadTargets(VerifyError::BadSignature { role, .. })) => {
            assert_eq!(role, "targets")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rejects_signature_by_a_key_not_in_the_role() {
    let mut h = Harness::new();
    h.publish().unwrap();
    h.editor
        .add_target(&RoleName::Targets, "x", FileMeta::from_bytes(b"x"), h.now)
        .unwrap();
    let mut targets = h.editor.targets(&RoleName::Targets).unwrap().clone();
    targets.version = 2;
    let mut signed = Signed::new(targets).unwrap();
    let stranger = SoftwareSigner::generate_ecdsa();
    signed.sign(&[&stranger]).unwrap();
    let err = h.upload(vec![("targets".into(), signed.to_bytes())]).unwrap_err();
    assert!(
        matches!(
            err,
            ServerError::InvalidUpdate(ValidationError::BadTargets(VerifyError::WrongKey { .. }))
        ),
        "{err:?}"
    );
    let body: serde_json::Value = serde_json::from_slice(&err.to_json_body()).unwrap();
    assert_eq!(body["errors"][0]["code"], "INVALID_UPDATE");
    assert_eq!(body["errors"][0]["detail"]["Name"], "ErrBadTargets");
    assert!(body["errors"][0]["detail"]["Error"]["Msg"]
        .as_str()
        .unwrap()
        .contains("not in the role"));
}

#[test]
fn rejects_delegation_below_threshold() {
    let mut h = Harness::new();
    let (alice, bob) = (SoftwareSigner::generate_ecdsa(), SoftwareSigner::generate_ed25519());
    let role = delegation("targets/releases");
    let keys = [alice.public_key().clone(), bob.public_key().clone()];
    h.editor
        .add_delegation(&role, &keys, 2, &["".to_string()], h.now)
        .unwrap();
    h.publish().unwrap();
    h.editor
        .add_target(&role, "v1", FileMeta::from_bytes(b"v1"), h.now)
        .unwrap();
    // Only alice signs: one of two required signatures.
    let uploads = h.editor.publish(&[&alice, &bob], h.now).unwrap();
    let (_, file) = uploads.into_iter().find(|(r, _)| *r == role).unwrap();
    let mut signed = Signed::<Targets>::from_bytes(&role, &file).unwrap();
    let bob_id = bob.public_key().id();
    signed.retain_signatures(|id| id != bob_id);
    let err = h.upload(vec![(role.to_string(), signed.to_bytes())]).unwrap_err();
    match err {
        ServerError::InvalidUpdate(ValidationError::BadTargets(VerifyError::ThresholdNotMet {
            valid,
            threshold,
            ..
        })) => {
            assert_eq!((valid, threshold), (1, 2))
        }
        other => panic!("{other:?}"),
    }
    // Both signatures: accepted.
    h.upload(vec![(role.to_string(), file)]).unwrap();
}

#[test]
fn rejects_old_version() {
    let mut h = Harness::new();
    h.publish().unwrap();
    h.editor
        .add_target(&RoleName::Targets, "x", FileMeta::from_bytes(b"x"), h.now)
        .unwrap();
    h.publish().unwrap();
    // Re-send the targets of version 1, validly signed.
    let old = server::get_metadata(&h.state, "1.targets").unwrap().to_vec();
    let err = h.upload(vec![("targets".into(), old)]).unwrap_err();
    assert_eq!(
        err,
        ServerError::OldVersion {
            role: "targets".into(),
            version: 1
        }
    );
    assert_eq!(err.code(), "VERSION");
    assert_eq!(err.http_status(), 400);
}

#[test]
fn rejects_snapshot_inconsistent_with_targets() {
    let snapshot_key = SoftwareSigner::generate_ecdsa();
    let mut h = Harness::with_client_snapshot(Some(&snapshot_key));
    let signers: [&dyn Signer; 3] = [&h.root_key, &h.targets_key, &snapshot_key];
    let uploads = h.editor.publish(&signers, h.now).unwrap();
    assert_eq!(
        uploads.last().unwrap().0,
        RoleName::Snapshot,
        "the client made the snapshot"
    );
    let files: Vec<(String, Vec<u8>)> = uploads.iter().map(|(r, b)| (r.to_string(), b.clone())).collect();
    // The snapshot lists other targets bytes than those uploaded with it.
    let mut tampered = files.clone();
    let mut targets = Signed::<Targets>::from_bytes(&RoleName::Targets, &tampered[1].1).unwrap();
    targets.clear_signatures();
    targets.sign(&[&h.targets_key]).unwrap();
    let mut bytes = targets.to_bytes();
    bytes.push(b' ');
    tampered[1].1 = bytes;
    let err = h.upload(tampered).unwrap_err();
    match err {
        ServerError::InvalidUpdate(ValidationError::BadSnapshot(VerifyError::MetaMismatch {
            role, listed_by, ..
        })) => {
            assert_eq!((role.as_str(), listed_by.as_str()), ("targets", "snapshot"))
        }
        other => panic!("{other:?}"),
    }
    // The consistent set is accepted and the uploaded snapshot is kept.
    let updates = h.upload(files).unwrap();
    assert_eq!(roles(&updates).last().unwrap().0, "timestamp");
    assert_eq!(updates.iter().filter(|u| u.role == RoleName::Snapshot).count(), 1);
}

#[test]
fn without_snapshot_key_the_server_reports_a_bad_hierarchy() {
    let snapshot_key = SoftwareSigner::generate_ecdsa();
    let mut h = Harness::with_client_snapshot(Some(&snapshot_key));
    // Publish without the snapshot key: no snapshot uploaded, server cannot make one.
    let err = h.publish().unwrap_err();
    assert_eq!(
        err,
        ServerError::InvalidUpdate(ValidationError::BadHierarchy {
            missing: "snapshot".into(),
            msg: "no snapshot was included in update and server does not hold current snapshot key for repository"
                .into()
        })
    );
    let body: serde_json::Value = serde_json::from_slice(&err.to_json_body()).unwrap();
    assert_eq!(body["errors"][0]["detail"]["Name"], "ErrBadHierarchy");
    assert_eq!(body["errors"][0]["detail"]["Error"]["Missing"], "snapshot");
}

#[test]
fn rejects_delegation_target_outside_its_paths() {
    let mut h = Harness::new();
    let alice = SoftwareSigner::generate_ecdsa();
    let role = delegation("targets/alice");
    h.editor
        .add_delegation(&role, &[alice.public_key().clone()], 1, &["alice/".to_string()], h.now)
        .unwrap();
    h.publish().unwrap();
    // The editor refuses to add it...
    let err = h
        .editor
        .add_target(&role, "bob/app", FileMeta::from_bytes(b"x"), h.now)
        .unwrap_err();
    assert!(err.to_string().contains("outside the role's paths"), "{err}");
    // ...and the server refuses a hand-made file that has it.
    let mut targets = Targets::new(h.now + Duration::days(30));
    targets.version = 1;
    targets.targets.insert("bob/app".into(), FileMeta::from_bytes(b"x"));
    let mut signed = Signed::new(targets).unwrap();
    signed.sign(&[&alice]).unwrap();
    let err = h.upload(vec![(role.to_string(), signed.to_bytes())]).unwrap_err();
    assert_eq!(
        err,
        ServerError::InvalidUpdate(ValidationError::BadTargets(VerifyError::TargetOutsidePaths {
            role: "targets/alice".into(),
            target: "bob/app".into()
        }))
    );
    h.editor
        .add_target(&role, "alice/app", FileMeta::from_bytes(b"x"), h.now)
        .unwrap();
    h.publish_with(&[&alice]).unwrap();
}

#[test]
fn rejects_delegation_its_parent_does_not_list() {
    let mut h = Harness::new();
    h.publish().unwrap();
    let mallory = SoftwareSigner::generate_ecdsa();
    let mut targets = Targets::new(h.now + Duration::days(30));
    targets.version = 1;
    let mut signed = Signed::new(targets).unwrap();
    signed.sign(&[&mallory]).unwrap();
    let err = h
        .upload(vec![("targets/mallory".into(), signed.to_bytes())])
        .unwrap_err();
    assert_eq!(
        err,
        ServerError::InvalidUpdate(ValidationError::BadTargets(VerifyError::UnknownDelegation {
            role: "targets/mallory".into()
        }))
    );
}

#[test]
fn rejects_expired_targets() {
    let mut h = Harness::new();
    h.publish().unwrap();
    h.editor.set_expiry(&RoleName::Targets, h.now - Duration::seconds(1));
    let err = h.publish().unwrap_err();
    assert!(
        matches!(
            err,
            ServerError::InvalidUpdate(ValidationError::BadTargets(VerifyError::Expired { .. }))
        ),
        "{err:?}"
    );
}

#[test]
fn root_rotation_needs_the_old_root_key() {
    let mut h = Harness::new();
    h.publish().unwrap();
    let new_key = SoftwareSigner::generate_ecdsa();
    let new_cert = create_root_certificate(&new_key, GUN, h.now).unwrap();

    // Signed by the new key only: refused.
    let mut rogue = h.editor.clone();
    rogue.rotate_root(std::slice::from_ref(&new_cert), 1).unwrap();
    let err = rogue.publish(&[&new_key], h.now).unwrap_err();
    assert!(
        err.to_string().contains("root"),
        "the editor wants the old key too: {err}"
    );
    let mut root = rogue.root().clone();
    root.version = 2;
    let mut signed = Signed::new(root).unwrap();
    let certified = berth_notary::keys::CertifiedSigner::new(&new_key, new_cert.clone()).unwrap();
    signed.sign(&[&certified]).unwrap();
    let err = h.upload(vec![("root".into(), signed.to_bytes())]).unwrap_err();
    assert!(
        matches!(
            err,
            ServerError::InvalidUpdate(ValidationError::BadRoot(VerifyError::RootRotation {
                from: 1,
                to: 2,
                ..
            }))
        ),
        "{err:?}"
    );

    // Signed by old and new: accepted.
    h.editor.rotate_root(std::slice::from_ref(&new_cert), 1).unwrap();
    let old_key = std::mem::replace(&mut h.root_key, SoftwareSigner::generate_ecdsa());
    let updates = h.publish_with(&[&old_key, &new_key]).unwrap();
    assert_eq!(roles(&updates)[0], ("root".into(), 2));
}

#[test]
fn root_version_must_increase_by_one() {
    let mut h = Harness::new();
    h.publish().unwrap();
    let mut root = h.editor.root().clone();
    root.version = 3;
    let mut signed = Signed::<Root>::new(root).unwrap();
    let certified = berth_notary::keys::CertifiedSigner::new(&h.root_key, h.root_cert.clone()).unwrap();
    signed.sign(&[&certified]).unwrap();
    let err = h.upload(vec![("root".into(), signed.to_bytes())]).unwrap_err();
    assert_eq!(
        err,
        ServerError::InvalidUpdate(ValidationError::BadRootMsg(
            "Root modifications must increment the version. Current 1, new 3".into()
        ))
    );
}

#[test]
fn root_certificate_must_name_the_gun() {
    let state = RepoState::new(GUN);
    let keys = server::MemoryServerKeys::new();
    let root_key = SoftwareSigner::generate_ecdsa();
    let wrong_cert = create_root_certificate(&root_key, "registry.example/other", support::t0()).unwrap();
    let targets_key = SoftwareSigner::generate_ecdsa();
    let ts = server::get_or_create_key(&state, &RoleName::Timestamp, &keys).unwrap();
    let sn = server::get_or_create_key(&state, &RoleName::Snapshot, &keys).unwrap();
    let mut editor = RepoEditor::create(
        GUN,
        &[wrong_cert],
        &[targets_key.public_key().clone()],
        &[sn],
        &[ts],
        support::t0(),
    )
    .unwrap();
    let uploads = editor.publish(&[&root_key, &targets_key], support::t0()).unwrap();
    let err = server::apply_update(
        &state,
        uploads.into_iter().map(|(r, b)| (r.to_string(), b)).collect(),
        support::t0(),
        &keys,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            ServerError::InvalidUpdate(ValidationError::BadRoot(VerifyError::RootCertificate { .. }))
        ),
        "{err:?}"
    );
}

#[test]
fn expired_timestamp_is_resigned_on_read() {
    let mut h = Harness::new();
    h.publish().unwrap();
    let (first, updates) = server::current_timestamp(&h.state, h.now, &h.server_keys).unwrap();
    assert!(updates.is_empty());
    assert_eq!(first, h.current(&RoleName::Timestamp));
    let later = h.now + Duration::days(15);
    let (fresh, updates) = server::current_timestamp(&h.state, later, &h.server_keys).unwrap();
    assert_eq!(updates.len(), 1);
    let ts = Signed::<Timestamp>::from_bytes(&RoleName::Timestamp, &fresh).unwrap();
    assert_eq!(ts.signed().version, 2);
    assert_eq!(ts.signed().expires, later + Duration::days(14));
    h.state.commit(&updates);
    assert_eq!(h.current(&RoleName::Timestamp), fresh);
}

#[test]
fn timestamp_key_is_stable_until_rotated() {
    let mut h = Harness::new();
    let listed = h.editor.root().roles["timestamp"].keyids[0].clone();
    assert_eq!(
        server::get_or_create_key(&h.state, &RoleName::Timestamp, &h.server_keys)
            .unwrap()
            .id(),
        listed
    );
    h.publish().unwrap();
    assert_eq!(
        server::get_or_create_key(&h.state, &RoleName::Timestamp, &h.server_keys)
            .unwrap()
            .id(),
        listed
    );
    let rotated = server::rotate_key(&h.state, &RoleName::Timestamp, &h.server_keys).unwrap();
    assert_ne!(rotated.id(), listed);
    // Still the listed key until a root lists the new one...
    assert_eq!(
        server::get_or_create_key(&h.state, &RoleName::Timestamp, &h.server_keys)
            .unwrap()
            .id(),
        listed
    );
    h.editor
        .rotate_key(&RoleName::Timestamp, std::slice::from_ref(&rotated), 1)
        .unwrap();
    h.publish().unwrap();
    // ...and the server signs new timestamps with it.
    let ts = Signed::<Timestamp>::from_bytes(&RoleName::Timestamp, &h.current(&RoleName::Timestamp)).unwrap();
    assert_eq!(ts.signatures()[0].keyid, rotated.id());
    assert_eq!(
        server::get_or_create_key(&h.state, &RoleName::Timestamp, &h.server_keys)
            .unwrap()
            .id(),
        rotated.id()
    );
    let err = server::get_or_create_key(&h.state, &RoleName::Targets, &h.server_keys).unwrap_err();
    assert_eq!(err.code(), "INVALID_ROLE");
}

#[test]
fn server_keys_survive_export_and_import() {
    let h = Harness::new();
    let records = h.server_keys.export();
    assert_eq!(records.len(), 2);
    assert!(!format!("{records:?}").contains(&hex::encode(&records[0].pkcs8_der[..])));
    let restored = server::MemoryServerKeys::new();
    for r in &records {
        restored.import(r).unwrap();
    }
    let listed = h.editor.root().roles["timestamp"].keyids[0].clone();
    assert_eq!(
        server::get_or_create_key(&h.state, &RoleName::Timestamp, &restored)
            .unwrap()
            .id(),
        listed
    );
}
