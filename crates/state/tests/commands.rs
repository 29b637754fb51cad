//! Cluster commands are deterministic and versioned: the same command on
//! the same state makes the same change and answer on every store, a
//! refused one changes nothing, and a command from a newer berth is
//! refused by name instead of being misread.

use std::collections::BTreeSet;

use berth_model::access::{Action, Permission, Resource};
use berth_state::records::*;
use berth_state::{ClusterCommand, Envelope, Error, Outcome, Rejected, State};

fn fresh() -> (tempfile::TempDir, State) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = berth_store::Store::open(&dir.path().join("db")).expect("store");
    (dir, State::open(store).expect("state"))
}

/// A history that touches every command, refusals included.
fn history() -> Vec<ClusterCommand> {
    use ClusterCommand::*;
    let user = |name: &str| User {
        name: name.into(),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$hash-of-{name}"),
        created: "2026-12-05T10:00:00Z".into(),
    };
    let team = Team {
        name: "ops".into(),
        members: BTreeSet::new(),
        created: "2026-12-05T10:00:01Z".into(),
    };
    let org = Org {
        name: "acme".into(),
        teams: BTreeSet::new(),
        created: "2026-12-05T10:00:02Z".into(),
    };
    let grant = |id: &str, subject: &str, role: &str| Grant {
        id: id.into(),
        subject: subject.into(),
        role: role.into(),
        collection: "/prod".into(),
        created: "2026-12-05T10:00:03Z".into(),
    };
    let token = TokenRecord {
        id: "0011223344556677".into(),
        user: "alice".into(),
        hash: "ab".repeat(32),
        scopes: vec!["*".into()],
        created: "2026-12-05T10:00:04Z".into(),
        expires: Some("2027-01-01T00:00:00Z".into()),
        description: "ci".into(),
    };
    let session = |id: &str, expires: i64| SessionRecord {
        id: id.into(),
        user: "alice".into(),
        hash: "cd".repeat(32),
        csrf_hash: "ef".repeat(32),
        created: 1_800_000_000,
        expires,
        source: "198.18.0.7".into(),
    };
    vec![
        CreateUser { user: user("alice") },
        CreateUser { user: user("bob") },
        CreateUser { user: user("alice") }, // refused: taken
        SetPassword {
            name: "bob".into(),
            password_hash: "$argon2id$new".into(),
        },
        SetPassword {
            name: "nobody".into(),
            password_hash: "x".into(),
        },
        CreateTeam { team: team.clone() },
        SetTeamMember {
            team: "ops".into(),
            user: "alice".into(),
            add: true,
        },
        SetTeamMember {
            team: "ops".into(),
            user: "bob".into(),
            add: true,
        },
        SetTeamMember {
            team: "ops".into(),
            user: "ghost".into(),
            add: true,
        },
        CreateOrg { org },
        SetOrgTeam {
            org: "acme".into(),
            team: "ops".into(),
            add: true,
        },
        CreateRole {
            role: Role {
                name: "runner".into(),
                permissions: vec![Permission {
                    resource: Resource::Container,
                    action: Action::Exec,
                }],
                builtin: false,
            },
        },
        CreateGrant {
            grant: grant("g1", "team:ops", "runner"),
            builtin_role: false,
        },
        CreateGrant {
            grant: grant("g2", "user:bob", "view-only"),
            builtin_role: true,
        },
        CreateGrant {
            grant: grant("g3", "user:bob", "nonesuch"),
            builtin_role: false,
        },
        RemoveRole { name: "runner".into() }, // refused: in use
        CreateToken { token },
        CreateSession {
            session: session("s1", 1_800_000_100),
            now: 1_800_000_000,
        },
        CreateSession {
            session: session("s2", 1_800_043_200),
            now: 1_800_000_200, // drops s1, expired by then
        },
        EndSession { id: "s9".into() },
        SetRepositoryCollection {
            record: RepositoryCollection {
                prefix: "team-a".into(),
                collection: "/shared/team-a".into(),
            },
        },
        RecordBundle {
            bundle: Bundle {
                id: "b1".into(),
                user: "alice".into(),
                serial: "01".into(),
                fingerprint: "ff".into(),
                created: "2026-12-05T10:00:05Z".into(),
                not_after: "2027-12-05T10:00:05Z".into(),
                revoked: None,
            },
        },
        RevokeBundle {
            id: "b1".into(),
            at: "2026-12-05T11:00:00Z".into(),
        },
        RevokeBundle {
            id: "b1".into(),
            at: "2026-12-05T12:00:00Z".into(), // already revoked: unchanged
        },
        PutTrustPolicy {
            policy: TrustPolicy {
                pattern: "prod/*".into(),
                signers: vec!["alice".into()],
                threshold: 1,
                created: "2026-12-05T10:00:06Z".into(),
            },
        },
        PutRegistryCredentials {
            registry: "registry.example:5000".into(),
            credentials: Credentials {
                username: "ci".into(),
                password: "secret".into(),
            },
        },
        SetAuditLevel {
            resource: "image".into(),
            level: AuditLevel::Request,
        },
        SetOrgTeam {
            org: "acme".into(),
            team: "ops".into(),
            add: false,
        },
        RemoveTeam { name: "ops".into() },
        RemoveUser { name: "alice".into() },
        RemoveGrant { id: "g2".into() },
        RemoveRole { name: "runner".into() },
        RemoveOrg { name: "acme".into() },
        RemoveToken {
            id: "0011223344556677".into(),
            owner: None,
        }, // refused: went with alice
        RemoveRepositoryCollection {
            prefix: "team-a".into(),
        },
        RemoveTrustPolicy {
            pattern: "prod/*".into(),
        },
        RemoveRegistryCredentials {
            registry: "registry.example:5000".into(),
        },
        CreateAssignment {
            record: assignment("web"),
        },
        CreateAssignment {
            record: assignment("web"),
        }, // refused: the name is taken
        CreateAssignment {
            record: assignment("db"),
        },
        SetNodeTasks {
            node: "n1".into(),
            tasks: vec![task("web", "n1"), task("gone", "n1"), task("db", "n2")], // only web's is kept
        },
        SetNodeTasks {
            node: "n2".into(),
            tasks: vec![task("db", "n2")],
        },
        RemoveAssignment { name: "db".into() },
        RemoveAssignment { name: "db".into() }, // refused: gone
        StartCaRotation {
            root: "ROOT-1".into(),
            rotation: rotation("ROOT-2"),
        },
        StartCaRotation {
            root: "ROOT-1".into(),
            rotation: rotation("ROOT-3"),
        }, // refused: one is under way
        FinishCaRotation { cert: "ROOT-3".into() }, // refused: not the one under way
        FinishCaRotation { cert: "ROOT-2".into() },
        StartCaRotation {
            root: "ROOT-1".into(),
            rotation: rotation("ROOT-3"),
        }, // refused: ROOT-1 was retired
        FinishCaRotation { cert: "ROOT-2".into() }, // refused: it ended
        PinTrustRoot {
            gun: "registry.example/app".into(),
            root: "{\"signed\":{\"version\":1}}".into(),
        },
        PinTrustRoot {
            gun: "registry.example/app".into(),
            root: "{\"signed\":{\"version\":2}}".into(),
        }, // kept: the first pin stays
    ]
}

fn rotation(cert: &str) -> berth_state::records::CaRotation {
    berth_state::records::CaRotation {
        cert: cert.into(),
        cross: format!("{cert} signed by its predecessor"),
        sealed_key: format!("sealed key of {cert}"),
        started_at: "2026-12-06T11:00:00Z".into(),
    }
}

fn assignment(name: &str) -> berth_state::records::AssignmentRecord {
    berth_state::records::AssignmentRecord {
        spec: berth_model::assignment::AssignmentSpec {
            name: name.into(),
            image: "busybox:latest".into(),
            constraints: vec!["node.labels.zone==a".into()],
            ..Default::default()
        },
        created_at: "2026-12-06T10:00:00Z".into(),
    }
}

fn task(assignment: &str, node: &str) -> berth_state::records::TaskRecord {
    berth_state::records::TaskRecord {
        assignment: assignment.into(),
        node: node.into(),
        state: "running".into(),
        container: "c0ffee".into(),
        message: String::new(),
        reported_at: "2026-12-06T10:00:01Z".into(),
    }
}

fn answer(r: berth_state::Result<Outcome>) -> Result<Outcome, Rejected> {
    match r {
        Ok(o) => Ok(o),
        Err(Error::Rejected(rejected)) => Err(rejected),
        Err(e) => panic!("not a refusal: {e}"),
    }
}

#[test]
fn each_command_on_the_same_state_gives_the_same_change_and_answer() {
    let (_a_dir, a) = fresh();
    let (_b_dir, b) = fresh();
    let mut refused = 0;
    for (i, command) in history().into_iter().enumerate() {
        let before = a.dump().expect("dump");
        let on_a = answer(a.propose(command.clone()));
        let on_b = answer(b.propose(command.clone()));
        assert_eq!(on_a, on_b, "command {i} ({}) answered differently", command.name());
        let after = a.dump().expect("dump");
        assert_eq!(
            after,
            b.dump().expect("dump"),
            "command {i} ({}) changed the stores differently",
            command.name()
        );
        if on_a.is_err() {
            refused += 1;
            assert_eq!(
                before,
                after,
                "refused command {i} ({}) changed the state",
                command.name()
            );
        }
    }
    assert_eq!(refused, 12, "the history's refusals");
}

#[test]
fn a_recorded_log_replayed_into_two_fresh_stores_gives_the_same_tables() {
    let (_a_dir, a) = fresh();
    a.record();
    for command in history() {
        let _ = a.propose(command);
    }
    let log: Vec<Vec<u8>> = a.recorded().iter().map(Envelope::encode).collect();
    assert!(log.len() > 20, "refusals are not logged, the rest are: {}", log.len());
    let replay = || {
        let (dir, state) = fresh();
        for bytes in &log {
            state
                .apply(Envelope::decode(bytes).expect("decode"))
                .expect("a logged command applies");
        }
        (dir, state.dump().expect("dump"))
    };
    let ((_b_dir, b_tables), (_c_dir, c_tables)) = (replay(), replay());
    let a_tables = a.dump().expect("dump");
    assert_eq!(b_tables, c_tables, "two replays differ");
    assert_eq!(a_tables, b_tables, "a replay differs from the node that proposed");
    // The history leaves something in the tables it does not remove.
    let rows = |tables: &[berth_state::TableDump], name: &str| {
        tables
            .iter()
            .find(|(t, _)| *t == name)
            .map(|(_, rows)| rows.len())
            .unwrap_or(0)
    };
    assert_eq!(rows(&a_tables, "cluster/users"), 1);
    assert_eq!(rows(&a_tables, "cluster/bundles"), 1);
    assert_eq!(rows(&a_tables, "cluster/audit_levels"), 1);
}

#[test]
fn subscribers_see_every_applied_command_in_order_and_no_refused_one() {
    let (_dir, state) = fresh();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    state.subscribe(move |c| {
        log.lock().unwrap().push(c.name());
        Ok(())
    });
    state.record();
    for command in history() {
        let _ = state.propose(command);
    }
    let applied: Vec<String> = state.recorded().iter().map(|e| e.command.name()).collect();
    assert_eq!(*seen.lock().unwrap(), applied);
    assert!(!applied.is_empty());
}

#[test]
fn a_failing_subscriber_is_reported_and_the_command_stays_applied() {
    let (_dir, state) = fresh();
    state.subscribe(|_| Err("the index is gone".into()));
    let err = state
        .propose(ClusterCommand::SetAuditLevel {
            resource: "image".into(),
            level: AuditLevel::None,
        })
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("set_audit_level was applied, but the index is gone"),
        "{err}"
    );
    let stored: Option<AuditLevel> = state
        .store()
        .get(berth_state::tables::AUDIT_LEVELS, "image")
        .expect("read");
    assert_eq!(stored, Some(AuditLevel::None));
}

#[test]
fn commands_from_a_newer_berth_are_refused_by_name() {
    let newer = br#"{"version":2,"command":{"op":"create_user","args":{}}}"#;
    let err = Envelope::decode(newer).unwrap_err().to_string();
    assert!(err.contains("newer berth") && err.contains("command format 2"), "{err}");
    let unknown = br#"{"version":1,"command":{"op":"create_galaxy","args":{}}}"#;
    let err = Envelope::decode(unknown).unwrap_err().to_string();
    assert!(err.contains("create_galaxy") && err.contains("newer berth"), "{err}");
    let current = Envelope::new(ClusterCommand::EndSession { id: "s".into() });
    assert_eq!(Envelope::decode(&current.encode()).expect("round trip"), current);
}

#[test]
fn node_task_reports_replace_the_nodes_earlier_ones_and_go_with_their_assignment() {
    let (_dir, state) = fresh();
    for command in history() {
        let _ = state.propose(command);
    }
    let tasks: Vec<(String, berth_state::records::TaskRecord)> = state
        .store()
        .list(berth_state::tables::ASSIGNMENT_TASKS)
        .expect("a read");
    let keys: Vec<&str> = tasks.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["web/n1"], "db's report went with db, gone's was never kept");
    let _ = state.propose(ClusterCommand::SetNodeTasks {
        node: "n1".into(),
        tasks: Vec::new(),
    });
    let tasks: Vec<(String, berth_state::records::TaskRecord)> = state
        .store()
        .list(berth_state::tables::ASSIGNMENT_TASKS)
        .expect("a read");
    assert!(
        tasks.is_empty(),
        "an empty report drops the node's earlier ones: {tasks:?}"
    );
}
