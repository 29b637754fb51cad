//! Replicated managers across hosts: three managers join with one command
//! each and vote in Raft; a user, a grant and a node label made through
//! one manager hold on the others; the leader is killed while the cluster
//! is written to, another takes over within seconds and nothing
//! acknowledged is lost; the audit log verifies on every manager; the
//! killed manager comes back and catches up; a manager cut off from the
//! majority refuses changes with a clear error.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::{wait_until, Cluster};

/// The HTTP status of `GET path` on host `to`'s TLS listener, from inside
/// host `from`, as `user:password`, checking the cluster CA.
fn get_status(c: &Cluster, from: usize, to: usize, path: &str, user: &str) -> u16 {
    let ca = c.host(0).data_root.join("pki/ca.pem");
    let out = Command::new("ip")
        .args(["netns", "exec", &c.host(from).netns, "curl", "-s", "-o", "/dev/null"])
        .args(["-w", "%{http_code}", "--max-time", "10", "--cacert"])
        .arg(&ca)
        .args(["-u", user])
        .arg(format!("https://{}{path}", c.host(to).endpoint()))
        .stdin(Stdio::null())
        .output()
        .expect("running curl");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
}

/// Runs `cmd` with `input` and a newline on stdin; its output.
fn fed(mut cmd: Command, input: &str) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running berth");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{input}\n").as_bytes())
        .expect("writing stdin");
    child.wait_with_output().expect("running berth")
}

fn create_user(c: &Cluster, i: usize, name: &str, password: &str) -> std::process::Output {
    fed(c.cmd(i, &["user", "create", name, "--password-stdin"]), password)
}

/// Host `of`'s state (`ready`, `unknown`, `down`) as manager `i` shows it.
fn node_state(c: &Cluster, i: usize, of: usize) -> String {
    let addr = c.host(of).endpoint();
    let out = c.berth(i, &["node", "ls", "--format", "json"]);
    let nodes: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    nodes
        .into_iter()
        .find(|n| n["addr"] == addr.as_str())
        .map(|n| n["status"]["state"].as_str().unwrap_or_default().to_string())
        .unwrap_or_else(|| "missing".into())
}

fn users(c: &Cluster, i: usize) -> String {
    c.ok(i, &["user", "ls"])
}

#[test]
fn managers_replicate_and_survive_their_leader() {
    let mut c = Cluster::start_managers(3, 1);
    let managers = [0, 1, 2];
    for i in managers {
        c.wait_voters(i, 3);
    }
    let leader = c.leader(0).expect("a leader");
    for i in managers {
        assert_eq!(c.leader(i), Some(leader), "h{} sees another leader", i + 1);
        let raft = c.raft(i);
        assert!(raft["term"].as_u64().unwrap_or(0) >= 1, "{raft}");
    }
    let follower = managers.into_iter().find(|i| *i != leader).expect("a follower");
    let other = managers
        .into_iter()
        .find(|i| *i != leader && *i != follower)
        .expect("another follower");

    // A user made through a follower (forwarded to the leader) logs in on
    // another manager; with no grant she may not look, with a grant made
    // on the leader she may.
    let made = create_user(&c, follower, "carol", "carol-password-1");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    assert!(
        wait_until(Duration::from_secs(5), || {
            get_status(&c, 3, other, "/v1/cluster", "carol:carol-password-1") == 403
        }),
        "carol logs in on h{} but has no grant",
        other + 1
    );
    assert_eq!(get_status(&c, 3, other, "/v1/cluster", "carol:wrong"), 401);
    c.ok(leader, &["grant", "create", "user:carol", "view-only"]);
    assert!(
        wait_until(Duration::from_secs(5), || {
            get_status(&c, 3, other, "/v1/cluster", "carol:carol-password-1") == 200
        }),
        "the grant made on h{} holds on h{}",
        leader + 1,
        other + 1
    );

    // A label and a drain set on one manager show on every one.
    let worker_id = c.ok(3, &["cluster", "info", "--format", "json"]);
    let worker_id: serde_json::Value = serde_json::from_str(&worker_id).expect("cluster info");
    let worker_id = worker_id["node_id"].as_str().expect("a node id").to_string();
    c.ok(
        other,
        &[
            "node",
            "update",
            "--availability",
            "drain",
            "--label-add",
            "zone=a",
            &worker_id,
        ],
    );
    for i in managers {
        let node: serde_json::Value =
            serde_json::from_str(&c.ok(i, &["node", "inspect", &worker_id])).expect("node inspect");
        let node = if node.is_array() { node[0].clone() } else { node };
        assert_eq!(node["availability"], "drain", "h{}: {node}", i + 1);
        assert_eq!(node["labels"]["zone"], "a", "h{}: {node}", i + 1);
    }

    // Every manager shows every node up: the leader hears them and
    // records it. A worker that dies is down on every manager; back, it
    // is ready again.
    for i in managers {
        for of in 0..4 {
            assert!(
                wait_until(Duration::from_secs(15), || node_state(&c, i, of) == "ready"),
                "h{} shows h{} {}",
                i + 1,
                of + 1,
                node_state(&c, i, of)
            );
        }
    }
    let died = Instant::now();
    c.kill(3);
    for i in managers {
        assert!(
            wait_until(Duration::from_secs(25), || node_state(&c, i, 3) == "down"),
            "h{} shows the dead worker {}",
            i + 1,
            node_state(&c, i, 3)
        );
    }
    eprintln!(
        "worker down on every manager {} ms after the kill",
        died.elapsed().as_millis()
    );
    c.restart(3);
    for i in managers {
        assert!(
            wait_until(Duration::from_secs(15), || node_state(&c, i, 3) == "ready"),
            "h{} shows the restarted worker {}",
            i + 1,
            node_state(&c, i, 3)
        );
    }

    // The leader dies while the cluster is written to: every write that
    // was acknowledged is kept, and writes go on within seconds.
    let mut written = Vec::new();
    for n in 0..5 {
        let name = format!("before{n}");
        assert!(create_user(&c, follower, &name, "a-password-123").status.success());
        written.push(name);
    }
    let killed_at = Instant::now();
    c.kill(leader);
    let mut first_write = None;
    let mut n = 0;
    while killed_at.elapsed() < Duration::from_secs(30) {
        let name = format!("after{n}");
        n += 1;
        if create_user(&c, follower, &name, "a-password-123").status.success() {
            first_write.get_or_insert(killed_at.elapsed());
            written.push(name);
            if written.len() >= 10 {
                break;
            }
        }
    }
    let failover = first_write.expect("a write succeeds after the leader is killed");
    eprintln!("failover: first write {} ms after the kill", failover.as_millis());
    assert!(failover < Duration::from_secs(10), "failover took {failover:?}");
    let new_leader = c.leader(follower).expect("a new leader");
    assert_ne!(new_leader, leader);
    for i in [follower, other] {
        assert!(
            wait_until(Duration::from_secs(5), || {
                let u = users(&c, i);
                written.iter().all(|w| u.contains(w.as_str()))
            }),
            "h{} lost an acknowledged write",
            i + 1
        );
        let verified = c.ok(i, &["audit", "verify"]);
        assert!(verified.contains("intact"), "h{}: {verified}", i + 1);
    }

    // The killed manager comes back, catches up, and its log verifies.
    c.restart(leader);
    assert!(
        wait_until(Duration::from_secs(20), || {
            let u = users(&c, leader);
            written.iter().all(|w| u.contains(w.as_str()))
        }),
        "the restarted manager caught up"
    );
    let verified = c.ok(leader, &["audit", "verify"]);
    assert!(verified.contains("intact"), "{verified}");
    c.wait_voters(leader, 3);

    // Cut off from the majority, a manager refuses changes, and says why.
    let alone = c.leader(follower).expect("a leader");
    for i in managers {
        if i != alone {
            c.partition(i);
        }
    }
    let started = Instant::now();
    let refused = create_user(&c, alone, "nobody", "a-password-123");
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&refused.stderr);
    eprintln!("without a majority ({} ms): {err}", took.as_millis());
    assert!(!refused.status.success(), "a write without a majority succeeded");
    assert!(err.contains("majority"), "{err}");
    assert!(took < Duration::from_secs(15), "the refusal took {took:?}");
    for i in managers {
        c.heal(i);
    }
    // Healed: the cluster takes writes again, on every manager.
    assert!(
        wait_until(Duration::from_secs(20), || create_user(
            &c,
            alone,
            "healed",
            "a-password-123"
        )
        .status
        .success()),
        "writes resume after the partition heals"
    );
    for i in managers {
        assert!(
            wait_until(Duration::from_secs(10), || users(&c, i).contains("healed")),
            "h{} has the write made after healing",
            i + 1
        );
    }

    // Two managers lost for good: the third recovers as the only manager
    // of a new log, on its state; workers carry on; managers join again.
    let survivor = alone;
    let survivor_root = c.host(survivor).data_root.clone();
    let recover = |args: &[&str]| {
        Command::new(berth_tests::berth_bin())
            .args(["cluster", "recover"])
            .args(args)
            .arg("--data-root")
            .arg(&survivor_root)
            .output()
            .expect("berth cluster recover")
    };
    let running = recover(&["--force-new-cluster"]);
    assert!(!running.status.success());
    assert!(
        String::from_utf8_lossy(&running.stderr).contains("stop the daemon first"),
        "{}",
        String::from_utf8_lossy(&running.stderr)
    );
    for i in managers {
        c.kill(i);
    }
    let unsaid = recover(&[]);
    assert!(String::from_utf8_lossy(&unsaid.stderr).contains("--force-new-cluster"));
    let recovered = recover(&["--force-new-cluster"]);
    assert!(
        recovered.status.success(),
        "{}",
        String::from_utf8_lossy(&recovered.stderr)
    );
    c.restart(survivor);
    c.wait_voters(survivor, 1);
    assert!(
        users(&c, survivor).contains("healed"),
        "the recovered manager kept its state"
    );
    assert!(create_user(&c, survivor, "recovered", "a-password-123")
        .status
        .success());
    let nodes: Vec<serde_json::Value> =
        serde_json::from_str(&c.ok(survivor, &["node", "ls", "--format", "json"])).expect("node ls");
    let managers_left = nodes.iter().filter(|n| n["role"] == "manager").count();
    assert_eq!(managers_left, 1, "{nodes:?}");
    assert!(
        wait_until(Duration::from_secs(20), || node_state(&c, survivor, 3) == "ready"),
        "the worker carries on with the recovered manager"
    );
    let join = c.join_arg(survivor, "manager");
    let fresh = c.grow(&["--join".into(), join]);
    c.wait_ready(fresh);
    c.wait_voters(survivor, 2);
    assert!(wait_until(Duration::from_secs(10), || users(&c, fresh).contains("recovered")));
}

/// Runs berth against host `i` with `input` on stdin.
fn with_stdin(c: &Cluster, i: usize, args: &[&str], input: &str) -> std::process::Output {
    fed(c.cmd(i, args), input)
}

#[test]
fn backup_destroy_restore_keeps_users_grants_and_trust() {
    let mut c = Cluster::start_managers(1, 0);
    assert!(create_user(&c, 0, "carol", "carol-password-1").status.success());
    c.ok(0, &["grant", "create", "user:carol", "view-only"]);
    c.ok(0, &["trust", "policy", "set", "prod/*", "--require-signer", "carol"]);
    let file = c.dir().join("cluster.backup");
    let path = file.to_str().expect("utf-8");
    let passphrase = "a long backup passphrase";

    // Bad inputs: a short passphrase, an existing file.
    let short = with_stdin(&c, 0, &["cluster", "backup", "-o", path, "--passphrase-stdin"], "short");
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("too short"));
    assert!(!file.exists(), "a refused backup wrote a file");
    let made = with_stdin(
        &c,
        0,
        &["cluster", "backup", "-o", path, "--passphrase-stdin"],
        passphrase,
    );
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let again = with_stdin(
        &c,
        0,
        &["cluster", "backup", "-o", path, "--passphrase-stdin"],
        passphrase,
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
    let text = std::fs::read_to_string(&file).expect("the backup");
    assert!(!text.contains("carol"), "the backup is not encrypted");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).expect("the backup").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // Destroy: the manager and its data root are gone.
    c.kill(0);
    let root = c.host(0).data_root.clone();
    std::fs::remove_dir_all(&root).expect("removing the data root");

    // A wrong passphrase restores nothing.
    let restore = |input: &str| {
        let mut cmd = Command::new(berth_tests::berth_bin());
        cmd.args(["cluster", "restore", path, "--passphrase-stdin", "--data-root"])
            .arg(&root);
        fed(cmd, input)
    };
    let wrong = restore("not the passphrase");
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("wrong passphrase"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    assert!(!root.exists(), "a failed restore left {}", root.display());
    let restored = restore(passphrase);
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    // Restoring over a data root that holds something is refused.
    let twice = restore(passphrase);
    assert!(String::from_utf8_lossy(&twice.stderr).contains("not empty"));

    // Started: one manager, with the same users, grants and trust policy.
    c.restart(0);
    assert!(users(&c, 0).contains("carol"));
    assert!(c.ok(0, &["grant", "ls"]).contains("carol"));
    assert!(c.ok(0, &["trust", "policy", "ls"]).contains("prod/*"));
    assert!(
        wait_until(Duration::from_secs(10), || get_status(
            &c,
            0,
            0,
            "/v1/cluster",
            "carol:carol-password-1"
        ) == 200),
        "carol logs in on the restored cluster with her grant"
    );
    assert!(c.ok(0, &["audit", "verify"]).contains("intact"));
    let raft = c.raft(0);
    assert_eq!(raft["voters"], 1, "{raft}");
    let nodes: Vec<serde_json::Value> =
        serde_json::from_str(&c.ok(0, &["node", "ls", "--format", "json"])).expect("node ls");
    assert_eq!(nodes.len(), 1, "only the restored manager is on record: {nodes:?}");

    // Nodes join the restored cluster again.
    let join = c.join_arg(0, "worker");
    let w = c.grow(&["--join".into(), join]);
    c.wait_ready(w);
    assert!(wait_until(Duration::from_secs(15), || node_state(&c, 0, w) == "ready"));
}

/// The lines of a daemon's log about Raft and roles.
fn interesting(log: &str) -> String {
    log.lines()
        .filter(|l| {
            ["Raft", "raft", "voter", "role", "leader", "WARN", "ERROR"]
                .iter()
                .any(|k| l.contains(k))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Host `i`'s node id.
fn node_id(c: &Cluster, i: usize) -> String {
    let info: serde_json::Value =
        serde_json::from_str(&c.ok(i, &["cluster", "info", "--format", "json"])).expect("cluster info");
    info["node_id"].as_str().expect("a node id").to_string()
}

#[test]
fn workers_are_promoted_and_managers_demoted() {
    let c = Cluster::start_managers(1, 2);
    let ids: Vec<String> = (0..3).map(|i| node_id(&c, i)).collect();
    for of in 1..3 {
        assert!(wait_until(Duration::from_secs(15), || node_state(&c, 0, of) == "ready"));
    }
    // Bad inputs: a manager promoted, a worker demoted, no such node.
    let out = c.berth(0, &["node", "promote", &ids[0]]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already a manager"));
    let out = c.berth(0, &["node", "demote", &ids[1]]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already a worker"));
    let out = c.berth(0, &["node", "promote", "nosuchnode"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such node"));

    // Two workers promoted: they restart as managers, catch up and vote.
    assert!(create_user(&c, 0, "before", "a-password-123").status.success());
    c.ok(0, &["node", "promote", &ids[1], &ids[2]]);
    c.wait_voters(0, 3);
    for i in 1..3 {
        assert!(
            wait_until(Duration::from_secs(30), || c.raft(i)["voters"].as_u64() == Some(3)),
            "h{} runs Raft as a manager: {}",
            i + 1,
            c.raft(i)
        );
        assert!(users(&c, i).contains("before"), "h{} has the cluster's users", i + 1);
    }
    assert!(create_user(&c, 2, "through-h3", "a-password-123").status.success());
    assert!(wait_until(Duration::from_secs(5), || users(&c, 0).contains("through-h3")));

    // The leader demoted, through a follower: it steps down, another
    // manager leads and takes it out of Raft, and it restarts as a worker;
    // the others go on.
    let leader = c.leader(0).expect("a leader");
    let follower = (0..3).find(|i| *i != leader).expect("a follower");
    c.ok(follower, &["node", "demote", &ids[leader]]);
    let new_leader = {
        let mut found = None;
        assert!(
            wait_until(Duration::from_secs(30), || {
                found = c.leader(follower).filter(|l| *l != leader);
                found.is_some() && c.raft(follower)["voters"].as_u64() == Some(2)
            }),
            "another manager leads, with two voters: {}\n{}",
            c.raft(follower),
            interesting(&c.host(follower).log())
        );
        found.expect("a new leader")
    };
    assert!(
        wait_until(Duration::from_secs(30), || {
            let info: serde_json::Value =
                serde_json::from_slice(&c.berth(leader, &["cluster", "info", "--format", "json"]).stdout)
                    .unwrap_or_default();
            info["role"] == "worker"
        }),
        "h{}, the old leader, restarted as a worker\n{}",
        leader + 1,
        interesting(&c.host(leader).log())
    );
    assert!(create_user(&c, new_leader, "after", "a-password-123").status.success());
    assert!(wait_until(Duration::from_secs(15), || node_state(
        &c, new_leader, leader
    ) == "ready"));
    let (leader, follower) = (new_leader, leader);

    // Down to one manager; the last one is not demoted.
    let other = (0..3).find(|i| *i != leader && *i != follower).expect("the third");
    c.ok(leader, &["node", "demote", &ids[other]]);
    assert!(
        wait_until(Duration::from_secs(30), || c.raft(leader)["voters"].as_u64() == Some(1)),
        "h{} left Raft: {}\n{}",
        other + 1,
        c.raft(leader),
        interesting(&c.host(leader).log())
    );
    let out = c.berth(leader, &["node", "demote", &ids[leader]]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("last manager"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
