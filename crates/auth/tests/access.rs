//! The access service on a real store: bootstrap, identities and grants,
//! tokens (expiry, revocation), failed-login lockout, and the audit log's
//! tamper evidence (edits, removals and reorders made directly in the store).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use berth_auth::audit::key_of;
use berth_auth::{Access, AuditEntry, Caller, NewAuditEntry, Resource, Where, AUDIT};
use berth_store::Store;

struct Fixture {
    _dir: tempfile::TempDir,
    access: Access,
    now: Arc<AtomicI64>,
    store: Store,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("db")).expect("store");
    let now = Arc::new(AtomicI64::new(1_800_000_000));
    let clock_now = now.clone();
    let clock: berth_auth::Clock =
        Arc::new(move || chrono::DateTime::from_timestamp(clock_now.load(Ordering::SeqCst), 0).expect("time"));
    let (mut access, written) = Access::open_with_clock(
        berth_state::State::open(store.clone()).expect("state"),
        dir.path(),
        clock,
    )
    .expect("open");
    access.set_checkpoint_interval(4);
    let file = written.expect("bootstrap writes the admin password");
    let meta = std::fs::metadata(&file).expect("password file");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    Fixture {
        _dir: dir,
        access,
        now,
        store,
    }
}

#[test]
fn bootstrap_admin_logs_in_with_the_one_time_password_once_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("db")).expect("store");
    let (access, written) =
        Access::open(berth_state::State::open(store.clone()).expect("state"), dir.path()).expect("open");
    let password = std::fs::read_to_string(written.expect("written")).expect("read");
    let admin = access
        .authenticate_password("admin", password.trim(), None)
        .expect("admin logs in");
    let decision = access.index().decide(
        &Caller::User(&admin),
        Resource::Grant,
        berth_auth::Action::Write,
        Where::In("/x"),
    );
    assert!(decision.allowed());
    // What the API shows of users carries no hash.
    let users = serde_json::to_string(&access.list_users().expect("list")).expect("json");
    assert!(users.contains("admin") && !users.contains("argon2"), "{users}");
    // A second open is not a bootstrap: no new password.
    drop(access);
    let (_, again) = Access::open(berth_state::State::open(store).expect("state"), dir.path()).expect("reopen");
    assert!(again.is_none());
}

#[test]
fn grants_through_teams_and_orgs() {
    let f = fixture();
    let a = &f.access;
    a.create_user("alice", "alice-password").expect("user");
    a.create_team("team-a").expect("team");
    a.set_member("team-a", "alice", true).expect("member");
    a.create_org("acme").expect("org");
    a.set_org_team("acme", "team-a", true).expect("org team");
    a.create_grant("org:acme", "view-only", "/shared").expect("grant");
    let alice = a.authenticate_password("alice", "alice-password", None).expect("login");
    let may = |action, at| {
        a.index()
            .decide(&Caller::User(&alice), Resource::Container, action, at)
            .allowed()
    };
    assert!(may(berth_auth::Action::Read, Where::In("/shared/x")));
    assert!(!may(berth_auth::Action::Write, Where::In("/shared/x")));
    assert!(!may(berth_auth::Action::Read, Where::In("/other")));
    a.set_member("team-a", "alice", false).expect("leave");
    assert!(!may(berth_auth::Action::Read, Where::In("/shared/x")));
    assert!(a.create_grant("user:nobody", "admin", "/").is_err());
    assert!(a.create_grant("user:alice", "no-such-role", "/").is_err());
    assert!(a.create_grant("user:alice", "admin", "relative").is_err());
}

#[test]
fn tokens_expire_and_are_revoked() {
    let f = fixture();
    let a = &f.access;
    a.create_user("bob", "bob-password").expect("user");
    let (view, secret) = a.create_token("bob", Some(60), &[], "ci").expect("token");
    let stored = serde_json::to_string(&a.list_tokens(None).expect("list")).expect("json");
    assert!(!stored.contains(&secret), "the secret is not stored or listed");
    assert_eq!(a.authenticate_token(&secret, None).expect("valid").name, "bob");
    f.now.fetch_add(61, Ordering::SeqCst);
    assert_eq!(a.authenticate_token(&secret, None).unwrap_err().reason, "token expired");
    let (view2, secret2) = a.create_token("bob", None, &["read".into()], "").expect("token");
    assert!(a.authenticate_token(&secret2, None).is_ok());
    a.remove_token(&view2.id, Some("someone-else")).expect_err("not theirs");
    a.remove_token(&view2.id, Some("bob")).expect("revoke");
    assert!(a.authenticate_token(&secret2, None).is_err());
    // A forged secret for a real id.
    let forged = format!("berth_pat_{}_{}", view.id, "0".repeat(64));
    assert_eq!(
        a.authenticate_token(&forged, None).unwrap_err().reason,
        "token does not match"
    );
    assert!(a.create_token("bob", None, &["bogus".into()], "").is_err());
}

#[test]
fn failed_logins_lock_the_user_then_expire() {
    let f = fixture();
    let a = &f.access;
    a.create_user("carol", "carol-password").expect("user");
    for _ in 0..5 {
        assert_eq!(
            a.authenticate_password("carol", "wrong", Some("10.0.0.1"))
                .unwrap_err()
                .reason,
            "wrong password"
        );
    }
    // The right password does not help while locked.
    assert_eq!(
        a.authenticate_password("carol", "carol-password", Some("10.0.0.2"))
            .unwrap_err()
            .reason,
        "user locked out after failed logins"
    );
    f.now.fetch_add(901, Ordering::SeqCst);
    assert!(a
        .authenticate_password("carol", "carol-password", Some("10.0.0.2"))
        .is_ok());
    // One source spraying many names is locked too.
    for i in 0..20 {
        let _ = a.authenticate_password(&format!("u{i}"), "x", Some("10.0.0.9"));
    }
    assert_eq!(
        a.authenticate_password("carol", "carol-password", Some("10.0.0.9"))
            .unwrap_err()
            .reason,
        "source locked out after failed logins"
    );
    assert!(a
        .authenticate_password("carol", "carol-password", Some("10.0.0.3"))
        .is_ok());
}

fn append(a: &Access, n: usize) {
    for i in 0..n {
        a.audit_append(NewAuditEntry {
            user: format!("user{}", i % 3),
            source: "127.0.0.1".into(),
            action: "POST /v1/containers".into(),
            resource: "container".into(),
            object: format!("/v1/containers/{i}"),
            result: "allowed".into(),
            status: 201,
            detail: String::new(),
        })
        .expect("append");
    }
}

fn entry(store: &Store, seq: u64) -> AuditEntry {
    store.get(AUDIT, &key_of(seq)).expect("get").expect("entry")
}

fn verify_fails(a: &Access, what: &str) {
    let v = a.audit_verify().expect("verify");
    assert!(!v.ok, "{what} was not detected");
    assert!(!v.problems.is_empty());
}

#[test]
fn audit_chain_verifies_and_filters() {
    let f = fixture();
    append(&f.access, 10);
    let v = f.access.audit_verify().expect("verify");
    assert!(v.ok, "{:?}", v.problems);
    assert_eq!((v.entries, v.checkpoints), (10, 2));
    let q = berth_auth::AuditQuery {
        user: Some("user1".into()),
        ..Default::default()
    };
    assert_eq!(f.access.audit_list(&q).expect("list").len(), 3);
    let q = berth_auth::AuditQuery {
        limit: Some(2),
        ..Default::default()
    };
    let tail = f.access.audit_list(&q).expect("list");
    assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![9, 10]);
}

#[test]
fn audit_verify_detects_an_edited_entry() {
    let f = fixture();
    append(&f.access, 10);
    let mut e = entry(&f.store, 5);
    e.entry.user = "someone-else".into();
    f.store
        .write_cluster(true, |t| t.put(AUDIT, &key_of(5), &e))
        .expect("edit");
    verify_fails(&f.access, "an edit");
}

#[test]
fn audit_verify_detects_a_rehashed_edit() {
    // The editor recomputes every hash after the edit: the chain is
    // consistent again, but the signed head and checkpoints are not.
    let f = fixture();
    append(&f.access, 10);
    let mut prev = entry(&f.store, 4).hash;
    for seq in 5..=10 {
        let mut e = entry(&f.store, seq);
        if seq == 5 {
            e.entry.result = "denied".into();
        }
        e.prev = prev.clone();
        e.hash = e.compute_hash();
        prev = e.hash.clone();
        f.store
            .write_cluster(true, |t| t.put(AUDIT, &key_of(seq), &e))
            .expect("rewrite");
    }
    verify_fails(&f.access, "a rehashed edit");
}

#[test]
fn audit_verify_detects_removed_entries() {
    let f = fixture();
    append(&f.access, 10);
    f.store
        .write_cluster(true, |t| t.delete(AUDIT, &key_of(3)))
        .expect("delete");
    verify_fails(&f.access, "a removal in the middle");

    let g = fixture();
    append(&g.access, 10);
    g.store
        .write_cluster(true, |t| t.delete(AUDIT, &key_of(10)))
        .expect("delete");
    verify_fails(&g.access, "a removal at the end");
}

/// A log cut at a checkpoint, the checkpoint's signature put in as the
/// head: heads and checkpoints sign different messages, so it does not pass.
#[test]
fn audit_verify_detects_a_log_cut_at_a_checkpoint() {
    use berth_auth::audit::Signature;
    use berth_auth::AUDIT_SIGNATURES;
    let f = fixture();
    f.access.set_chain_signer(Arc::new(TestSigner("cluster-a")));
    append(&f.access, 10);
    let checkpoint: Signature = f
        .store
        .get(AUDIT_SIGNATURES, &key_of(8))
        .expect("read")
        .expect("checkpoint 8");
    f.store
        .write_cluster(true, |t| {
            t.delete(AUDIT, &key_of(9))?;
            t.delete(AUDIT, &key_of(10))?;
            t.put(AUDIT_SIGNATURES, "head", &checkpoint)
        })
        .expect("cut");
    let v = f.access.audit_verify().expect("verify");
    assert!(!v.ok, "a log cut at a checkpoint verified");
    assert!(
        v.problems
            .iter()
            .any(|p| p.contains("signature head is not valid as a head signature")),
        "{:?}",
        v.problems
    );
    let export = f.access.audit_export().expect("export");
    let key = TestSigner("cluster-a");
    use berth_auth::ChainSigner;
    let v = berth_auth::verify_export(&export, &|m, s| key.verify(m, s));
    assert!(!v.ok, "an export cut at a checkpoint verified offline");
}

/// A log cut at its end with the head signature taken away, and an export
/// with no head at all (empty included), never verify.
#[test]
fn audit_verify_needs_a_signed_head() {
    use berth_auth::AUDIT_SIGNATURES;
    let f = fixture();
    f.access.set_chain_signer(Arc::new(TestSigner("cluster-a")));
    append(&f.access, 10);
    f.store
        .write_cluster(true, |t| {
            t.delete(AUDIT, &key_of(10))?;
            t.delete(AUDIT_SIGNATURES, "head")
        })
        .expect("cut");
    let v = f.access.audit_verify().expect("verify");
    assert!(
        !v.ok && v.problems.iter().any(|p| p.contains("signed head is missing")),
        "{:?}",
        v.problems
    );

    let key = TestSigner("cluster-a");
    use berth_auth::ChainSigner;
    let empty = berth_auth::AuditExport {
        entries: Vec::new(),
        signatures: Vec::new(),
    };
    let v = berth_auth::verify_export(&empty, &|m, s| key.verify(m, s));
    assert!(!v.ok, "an empty export with no head verified");

    // A fresh log prepared at start has a signed genesis head: it verifies
    // empty, and the first entry follows the genesis.
    let g = fixture();
    g.access.set_chain_signer(Arc::new(TestSigner("cluster-a")));
    g.access.prepare_audit_log().expect("prepare");
    let v = berth_auth::verify_export(&g.access.audit_export().expect("export"), &|m, s| key.verify(m, s));
    assert!(v.ok && v.entries == 0, "{:?}", v.problems);
    assert!(g.access.audit_verify().expect("verify").ok);
    append(&g.access, 5);
    let v = berth_auth::verify_export(&g.access.audit_export().expect("export"), &|m, s| key.verify(m, s));
    assert!(v.ok && v.entries == 5, "{:?}", v.problems);
}

#[test]
fn audit_verify_detects_reordered_entries() {
    let f = fixture();
    append(&f.access, 10);
    let (a, b) = (entry(&f.store, 6), entry(&f.store, 7));
    f.store
        .write_cluster(true, |t| {
            t.put(AUDIT, &key_of(6), &b)?;
            t.put(AUDIT, &key_of(7), &a)
        })
        .expect("swap");
    verify_fails(&f.access, "a reorder");
}

/// A stand-in for the cluster key: a keyed hash is enough to tell signers
/// apart here; the ECDSA implementation is tested in `berth-cluster`.
struct TestSigner(&'static str);

impl berth_auth::ChainSigner for TestSigner {
    fn key_id(&self) -> String {
        self.0.to_string()
    }
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        use sha2::Digest;
        sha2::Sha256::digest([self.0.as_bytes(), message].concat()).to_vec()
    }
    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.sign(message) == signature
    }
}

#[test]
fn an_export_verifies_offline_with_the_cluster_key_only() {
    let f = fixture();
    f.access.set_chain_signer(Arc::new(TestSigner("cluster-a")));
    append(&f.access, 10);
    assert!(f.access.audit_verify().expect("verify").ok);
    let export = f.access.audit_export().expect("export");
    let key = TestSigner("cluster-a");
    use berth_auth::ChainSigner;
    let v = berth_auth::verify_export(&export, &|m, s| key.verify(m, s));
    assert!(v.ok, "{:?}", v.problems);
    assert_eq!((v.entries, v.checkpoints), (10, 2));

    // Another cluster's key does not verify it.
    let other = TestSigner("cluster-b");
    let v = berth_auth::verify_export(&export, &|m, s| other.verify(m, s));
    assert!(!v.ok && v.problems.iter().any(|p| p.contains("not signed by the cluster key")));

    // An edit rehashed through the end of the export breaks the signed head.
    let mut edited = export.clone();
    let mut prev = edited.entries[3].hash.clone();
    for e in edited.entries.iter_mut().skip(4) {
        if e.seq == 5 {
            e.entry.user = "someone-else".into();
        }
        e.prev = prev.clone();
        e.hash = e.compute_hash();
        prev = e.hash.clone();
    }
    let v = berth_auth::verify_export(&edited, &|m, s| key.verify(m, s));
    assert!(!v.ok, "a rehashed edit of an export was not detected");

    // A log signed by one cluster key fails on a node that now holds another.
    f.access.set_chain_signer(Arc::new(TestSigner("cluster-b")));
    assert!(!f.access.audit_verify().expect("verify").ok);
}

#[test]
fn audit_levels_are_set_per_resource_and_survive_a_reload() {
    let f = fixture();
    f.access.load_audit_levels().expect("load");
    assert_eq!(f.access.audit_level(Resource::Image), berth_auth::AuditLevel::Metadata);
    f.access.set_audit_level("image", "request").expect("set");
    f.access.set_audit_level("container", "none").expect("set");
    let err = f
        .access
        .set_audit_level("imagez", "none")
        .expect_err("unknown resource");
    assert!(err.to_string().contains("unknown resource \"imagez\""), "{err}");
    let err = f.access.set_audit_level("image", "loud").expect_err("unknown level");
    assert!(err.to_string().contains("unknown audit level \"loud\""), "{err}");
    assert_eq!(f.access.audit_level(Resource::Image), berth_auth::AuditLevel::Request);

    let (again, _) =
        Access::open(berth_state::State::open(f.store.clone()).expect("state"), f._dir.path()).expect("reopen");
    again.load_audit_levels().expect("load");
    assert_eq!(again.audit_level(Resource::Image), berth_auth::AuditLevel::Request);
    assert_eq!(again.audit_level(Resource::Container), berth_auth::AuditLevel::None);
    assert_eq!(again.audit_level(Resource::User), berth_auth::AuditLevel::Metadata);
}

#[test]
fn every_appended_entry_reaches_the_sink() {
    let f = fixture();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    f.access
        .set_audit_sink(Arc::new(move |e: &AuditEntry| s.lock().expect("lock").push(e.seq)));
    append(&f.access, 3);
    assert_eq!(*seen.lock().expect("lock"), vec![1, 2, 3]);
}

/// A user a directory sync cut off is refused everything, their own
/// profile included, whatever credential they still present (a TLS
/// connection opened with a bundle revoked since).
#[test]
fn a_disabled_user_is_refused_everything() {
    let mut index = berth_auth::Index::build(
        &["alice".to_string()],
        &[],
        &[],
        &[],
        &[berth_auth::Grant {
            id: "g".into(),
            subject: "user:alice".into(),
            role: "admin".into(),
            collection: "/".into(),
            created: String::new(),
        }],
        &[],
    );
    let alice = berth_auth::Identity {
        name: "alice".into(),
        scopes: None,
        token_id: None,
    };
    let decide = |index: &berth_auth::Index, resource| {
        index.decide(
            &Caller::User(&alice),
            resource,
            berth_auth::Action::Read,
            Where::Anywhere,
        )
    };
    assert!(decide(&index, Resource::Image).allowed());
    index.set_disabled([("alice".to_string(), "no longer in directory corp".to_string())].into());
    for resource in [Resource::Image, Resource::Profile] {
        match decide(&index, resource) {
            berth_auth::Decision::Deny(reason) => {
                assert_eq!(reason, "user alice is disabled: no longer in directory corp")
            }
            other => panic!("{resource:?}: {other:?}"),
        }
    }
}

fn change(object: &str, result: &str) -> NewAuditEntry {
    NewAuditEntry {
        user: "admin".into(),
        source: "127.0.0.1".into(),
        action: "POST /v1/containers".into(),
        resource: "container".into(),
        object: object.into(),
        result: result.into(),
        status: if result == "started" { 100 } else { 201 },
        detail: String::new(),
    }
}

/// Replicated (a proposer that applies here, as a one-voter log would):
/// a change's `started` entry waits in the node's store and goes into the
/// log with its outcome, in one command; a crash between the two leaves it
/// there, and the next start appends it, saying so; a cluster that cannot
/// take writes refuses the change before it is made.
#[test]
fn replicated_started_entries_ride_with_their_outcome_and_survive_a_crash() {
    let f = fixture();
    let state = berth_state::State::open(f.store.clone()).expect("state");
    let applier = state.clone();
    let accepting = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let a = accepting.clone();
    state.replicate_with(Arc::new(move |envelope| match a.load(Ordering::SeqCst) {
        true => applier.apply(envelope),
        false => Err(berth_state::Error::Unavailable(
            "a majority did not confirm the change".into(),
        )),
    }));
    let writable = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let w = writable.clone();
    state.check_writable_with(Arc::new(move || match w.load(Ordering::SeqCst) {
        true => Ok(()),
        false => Err("no manager leads the cluster".into()),
    }));
    let (access, _) = Access::open(state.clone(), f._dir.path()).expect("open");
    access.prepare_audit_log().expect("prepare");
    let pending = |store: &Store| -> usize {
        store
            .list::<serde_json::Value>(berth_auth::audit::AUDIT_PENDING)
            .expect("pending")
            .len()
    };
    let entries = |a: &Access| a.audit_list(&Default::default()).expect("list");
    let before = entries(&access).len();

    state.record();
    let begun = access.audit_begin(change("/c/1", "started")).expect("begin");
    assert_eq!(
        entries(&access).len(),
        before,
        "the started entry waits for its outcome"
    );
    assert_eq!(pending(&f.store), 1);
    access.audit_finish(begun, change("/c/1", "allowed")).expect("finish");
    assert_eq!(pending(&f.store), 0);
    let all = entries(&access);
    let results: Vec<&str> = all[before..].iter().map(|e| e.entry.result.as_str()).collect();
    assert_eq!(results, ["started", "allowed"]);
    let commands: Vec<String> = state.recorded().iter().map(|e| e.command.name()).collect();
    assert_eq!(commands, ["append_audit_batch"], "one command carries both");

    // A crash between the two: the next start appends what was left.
    let _lost = access.audit_begin(change("/c/2", "started")).expect("begin");
    assert_eq!(pending(&f.store), 1);
    let (restarted, _) = Access::open(state.clone(), f._dir.path()).expect("open again");
    restarted.prepare_audit_log().expect("prepare");
    assert_eq!(pending(&f.store), 0);
    let last = entries(&access).pop().expect("an entry");
    assert_eq!(
        (last.entry.object.as_str(), last.entry.result.as_str()),
        ("/c/2", "started")
    );
    assert!(
        last.entry
            .detail
            .contains("the daemon stopped before the outcome was recorded"),
        "{last:?}"
    );

    // A request still running is not appended for it; one whose outcome
    // the log did not take keeps it, and both go in once the log takes
    // writes again.
    let running = access.audit_begin(change("/c/4", "started")).expect("begin");
    assert_eq!(access.audit_append_pending().expect("pending"), 0, "in flight");
    accepting.store(false, Ordering::SeqCst);
    access
        .audit_finish(running, change("/c/4", "allowed"))
        .expect_err("the log takes nothing");
    assert_eq!(pending(&f.store), 1);
    accepting.store(true, Ordering::SeqCst);
    assert_eq!(access.audit_append_pending().expect("pending"), 1);
    assert_eq!(pending(&f.store), 0);
    let all = entries(&access);
    let last: Vec<(&str, &str)> = all[all.len() - 2..]
        .iter()
        .map(|e| (e.entry.object.as_str(), e.entry.result.as_str()))
        .collect();
    assert_eq!(last, [("/c/4", "started"), ("/c/4", "allowed")]);

    // No leader: refused before the change, nothing kept.
    writable.store(false, Ordering::SeqCst);
    let refused = access.audit_begin(change("/c/3", "started")).expect_err("refused");
    assert!(
        refused.to_string().contains("no manager leads the cluster"),
        "{refused}"
    );
    assert_eq!(pending(&f.store), 0);
    let v = access.audit_verify().expect("verify");
    assert!(v.ok, "{:?}", v.problems);
}
