//! Access control changes cluster state only through commands: what the
//! access service does, recorded as commands and replayed into a fresh
//! store, gives the same cluster tables byte for byte, and the replayed
//! node's access index (rebuilt by following the commands) decides alike.

use berth_auth::{Access, Action, Caller, Resource, Where};
use berth_state::{Envelope, State};

fn state(dir: &std::path::Path) -> State {
    State::open(berth_store::Store::open(&dir.join("db")).expect("store")).expect("state")
}

#[test]
fn what_access_control_does_replays_into_the_same_tables() {
    let a_dir = tempfile::tempdir().expect("tempdir");
    let a = state(a_dir.path());
    a.record();
    let (access, _) = Access::open(a.clone(), a_dir.path()).expect("open");
    access.create_user("alice", "correct horse battery").expect("user");
    access.create_user("bob", "correct horse battery").expect("user");
    access.set_password("bob", "another long password").expect("password");
    access.create_team("ops").expect("team");
    access.set_member("ops", "alice", true).expect("member");
    access.create_org("acme").expect("org");
    access.set_org_team("acme", "ops", true).expect("org team");
    let exec = berth_auth::Permission::parse("container:exec").expect("permission");
    access.create_role("runner", &[exec]).expect("role");
    access.create_grant("team:ops", "runner", "/prod").expect("grant");
    let bob = access.create_grant("user:bob", "view-only", "/").expect("grant");
    access.create_token("alice", Some(3600), &[], "ci").expect("token");
    access.create_session("bob", Some("198.18.0.9")).expect("session");
    access
        .set_repository_collection("team-a", "/shared/team-a")
        .expect("repos");
    access.set_audit_level("image", "request").expect("level");
    access.remove_grant(&bob.id).expect("remove grant");
    assert!(access.create_user("alice", "correct horse battery").is_err(), "taken");

    let log: Vec<Vec<u8>> = a.recorded().iter().map(Envelope::encode).collect();
    // A fresh node applies the log, as a follower would.
    let b_dir2 = tempfile::tempdir().expect("tempdir");
    let b2 = state(b_dir2.path());
    for bytes in &log {
        let envelope = Envelope::decode(bytes).expect("decode");
        b2.apply(envelope.clone()).expect("apply");
    }
    assert_eq!(a.dump().expect("dump"), b2.dump().expect("dump"));

    // An access service opened on the replayed state decides as the first.
    let (follower, bootstrap) = Access::open(b2.clone(), b_dir2.path()).expect("open follower");
    assert!(bootstrap.is_none(), "the log brought the admin: no second bootstrap");
    let alice = access
        .authenticate_password("alice", "correct horse battery", None)
        .expect("login");
    let alice_there = follower
        .authenticate_password("alice", "correct horse battery", None)
        .expect("login on the follower");
    for (resource, action, at) in [
        (Resource::Container, Action::Exec, "/prod"),
        (Resource::Container, Action::Exec, "/"),
        (Resource::Image, Action::Read, "/prod"),
    ] {
        assert_eq!(
            access
                .index()
                .decide(&Caller::User(&alice), resource, action, Where::In(at))
                .allowed(),
            follower
                .index()
                .decide(&Caller::User(&alice_there), resource, action, Where::In(at))
                .allowed(),
            "{resource:?} {action:?} at {at}"
        );
    }
    assert!(follower
        .index()
        .decide(
            &Caller::User(&alice_there),
            Resource::Container,
            Action::Exec,
            Where::In("/prod")
        )
        .allowed());
    follower.load_audit_levels().expect("levels");
    assert_eq!(follower.audit_level(Resource::Image), berth_auth::AuditLevel::Request);

    // A change applied from the log (as a follower applies it) reaches the
    // follower's index without any call on its access service.
    let remove = a.recorded().len();
    access.remove_user("alice").expect("remove");
    let entry = a.recorded()[remove].clone();
    b2.apply(entry).expect("apply");
    assert!(follower
        .authenticate_password("alice", "correct horse battery", None)
        .is_err());
    assert!(!follower
        .index()
        .decide(
            &Caller::User(&alice_there),
            Resource::Container,
            Action::Exec,
            Where::In("/prod")
        )
        .allowed());
}

/// Appends from many threads, with access changes in between, all land in
/// one chain that verifies: the audit log's commands follow its head, and
/// commands are applied one at a time.
#[test]
fn concurrent_appends_and_changes_keep_one_verified_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (access, _) = Access::open(state(dir.path()), dir.path()).expect("open");
    let access = std::sync::Arc::new(access);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let access = access.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    access
                        .audit_append(berth_auth::NewAuditEntry {
                            user: format!("user{t}"),
                            action: "POST /v1/things".into(),
                            object: format!("/v1/things/{i}"),
                            result: "allowed".into(),
                            status: 201,
                            ..Default::default()
                        })
                        .expect("append");
                    if i % 5 == 0 {
                        access
                            .create_user(&format!("u{t}-{i}"), "correct horse battery")
                            .expect("user");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    let verification = access.audit_verify().expect("verify");
    assert!(verification.ok, "{:?}", verification.problems);
    assert_eq!(verification.entries, 8 * 25);
    assert_eq!(access.list_users().expect("users").len(), 1 + 8 * 5);
}
