//! The cluster across hosts: workers join with one command, the manager
//! follows them by their heartbeats (ready, unknown, down) and keeps their
//! availability and labels; bad joins are refused and leave nothing.

use std::time::Duration;

use berth_tests::{wait_until, Cluster};
use serde_json::Value;

/// Whole days from now to an RFC 3339 time.
fn days_until(rfc3339: &str) -> i64 {
    let then = chrono::DateTime::parse_from_rfc3339(rfc3339).expect("an RFC 3339 time");
    then.signed_duration_since(chrono::Utc::now()).num_days()
}

fn nodes(c: &Cluster) -> Vec<Value> {
    serde_json::from_str(&c.ok(0, &["node", "ls", "--format", "json"])).expect("node ls --format json")
}

fn node_state(c: &Cluster, i: usize) -> String {
    let addr = c.host(i).endpoint();
    nodes(c)
        .into_iter()
        .find(|n| n["addr"] == addr.as_str())
        .map(|n| n["status"]["state"].as_str().unwrap_or_default().to_string())
        .unwrap_or_else(|| "missing".into())
}

#[test]
fn workers_join_with_one_command_and_are_followed() {
    let mut c = Cluster::start_joined(3);
    let all = nodes(&c);
    assert_eq!(all.len(), 3, "{all:#?}");
    assert_eq!(all[0]["role"], "manager");
    assert_eq!(all[0]["current"], true);
    for i in 1..3 {
        assert!(
            wait_until(Duration::from_secs(5), || node_state(&c, i) == "ready"),
            "h{} is not ready: {:#?}",
            i + 1,
            nodes(&c)
        );
    }
    assert!(all.iter().filter(|n| n["role"] == "worker").count() == 2);
    // A worker knows its cluster, and sends cluster questions to a manager.
    let info = c.ok(1, &["cluster", "info"]);
    assert!(
        info.contains("(worker)") && info.contains(&c.host(0).endpoint()),
        "{info}"
    );
    // Its node certificate runs 90 days from the day before the join.
    let shown: Value = serde_json::from_str(&c.ok(1, &["cluster", "info", "--format", "json"])).expect("json");
    let expires = shown["certificate_expires"].as_str().expect("an expiry").to_string();
    let days = days_until(&expires);
    assert!((88..=90).contains(&days), "{expires}: {days} days");
    let out = c.berth(1, &["node", "ls"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("this node is a worker: ask a manager"));

    // Availability and labels.
    let h2 = all
        .iter()
        .find(|n| n["addr"] == c.host(1).endpoint().as_str())
        .expect("h2")["id"]
        .as_str()
        .expect("an id")
        .to_string();
    c.ok(
        0,
        &[
            "node",
            "update",
            "--availability",
            "drain",
            "--label-add",
            "zone=a",
            &h2[..12],
        ],
    );
    let shown: Value = serde_json::from_str(&c.ok(0, &["node", "inspect", &h2])).expect("inspect");
    assert_eq!(shown[0]["availability"], "drain");
    assert_eq!(shown[0]["labels"]["zone"], "a");
    c.ok(
        0,
        &["node", "update", "--label-rm", "zone", "--availability", "active", &h2],
    );
    let shown: Value = serde_json::from_str(&c.ok(0, &["node", "inspect", &h2])).expect("inspect");
    assert_eq!(shown[0]["availability"], "active");
    assert!(shown[0]["labels"].as_object().is_some_and(|l| l.is_empty()));
    let bad = c.berth(0, &["node", "update", "--label-add", "bad key=1", &h2]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("invalid label key"));

    // A worker that dies is suspected, then down; back, it is ready.
    c.kill(2);
    assert!(
        wait_until(Duration::from_secs(15), || node_state(&c, 2) == "down"),
        "h3 was not marked down: {:#?}",
        nodes(&c)
    );
    // It is not removed while up without --force; the manager never.
    c.restart(2);
    assert!(
        wait_until(Duration::from_secs(10), || node_state(&c, 2) == "ready"),
        "h3 did not come back: {:#?}\n{}",
        nodes(&c),
        c.host(2).log()
    );
    let refused = c.berth(0, &["node", "rm", &c.host(2).endpoint()]);
    assert!(!refused.status.success());
    let self_rm = c.berth(0, &["node", "rm", "--force", all[0]["id"].as_str().expect("id")]);
    assert!(String::from_utf8_lossy(&self_rm.stderr).contains("the node answering this request"));

    // A short partition is `unknown` first, not `down`.
    c.partition(1);
    assert!(
        wait_until(Duration::from_secs(8), || node_state(&c, 1) == "unknown"),
        "h2 not suspected: {:#?}",
        nodes(&c)
    );
    c.heal(1);
    assert!(
        wait_until(Duration::from_secs(15), || node_state(&c, 1) == "ready"),
        "h2 did not come back after the partition: {:#?}\n{}",
        nodes(&c),
        c.host(1).log()
    );

    // Removed (forced), a node's certificate is refused: it cannot come back.
    let h3 = nodes(&c)
        .into_iter()
        .find(|n| n["addr"] == c.host(2).endpoint().as_str())
        .expect("h3")["id"]
        .as_str()
        .expect("id")
        .to_string();
    c.ok(0, &["node", "rm", "--force", &h3]);
    assert_eq!(nodes(&c).len(), 2);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(node_state(&c, 2), "missing");

    // The joins are in the manager's audit log.
    let audit = c.ok(0, &["audit", "ls", "--format", "json"]);
    assert!(audit.matches("grpc Membership/Join").count() >= 2, "{audit}");
}

#[test]
fn heartbeat_timing_is_a_setting_the_workers_follow() {
    let mut c = Cluster::start_joined_with(
        2,
        &[
            "--heartbeat-period",
            "200ms",
            "--node-suspect-after",
            "700ms",
            "--node-down-after",
            "1500ms",
        ],
    );
    assert!(wait_until(Duration::from_secs(5), || node_state(&c, 1) == "ready"));
    // The worker beats at the manager's 200 ms, not its own 1 s: it never
    // looks late to a manager that suspects after 700 ms.
    for _ in 0..15 {
        assert_eq!(node_state(&c, 1), "ready", "{:#?}", nodes(&c));
        std::thread::sleep(Duration::from_millis(150));
    }
    let killed = std::time::Instant::now();
    c.kill(1);
    assert!(
        wait_until(Duration::from_secs(5), || node_state(&c, 1) == "down"),
        "{:#?}",
        nodes(&c)
    );
    assert!(
        killed.elapsed() < Duration::from_secs(4),
        "down after {:?}",
        killed.elapsed()
    );
}

#[test]
fn bad_joins_are_refused_and_leave_nothing() {
    let c = Cluster::start_joined(2);
    let good = c.join_arg(0, "worker");
    let limit = Duration::from_secs(40);
    let (token, addr) = good.split_once('@').expect("TOKEN@ADDR");
    let secret = token.rsplit('-').next().expect("a secret").to_string();
    let refused = |args: &[&str], says: &str| {
        let (out, root) = c.daemon_once(1, args, limit);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains(&secret), "the secret is in: {err}");
        assert!(!root.exists(), "{args:?} left {}", root.display());
    };
    // Another secret.
    let mut wrong = token.to_string();
    let last = wrong.pop().expect("a digit");
    wrong.push(if last == 'a' { 'b' } else { 'a' });
    refused(
        &["--join", &format!("{wrong}@{addr}")],
        "not the cluster's current worker token",
    );
    // Another CA.
    let digest = &token["berth1-worker-".len().."berth1-worker-".len() + 64];
    let flipped: String = digest
        .chars()
        .enumerate()
        .map(|(i, ch)| {
            if i == 0 {
                if ch == '0' {
                    '1'
                } else {
                    '0'
                }
            } else {
                ch
            }
        })
        .collect();
    refused(
        &["--join", &format!("{}@{addr}", token.replacen(digest, &flipped, 1))],
        "does not match the join token",
    );
    // Malformed, no port, nobody there, not berth.
    refused(&["--join", "SWMTKN-1-abc@198.18.0.11:7443"], "not a berth join token");
    refused(&["--join", token], "TOKEN@ADDR:PORT");
    refused(
        &["--join", &format!("{token}@198.18.0.11:7999")],
        "cannot reach a berth manager",
    );
    // A worker's token does not make a manager, and a manager's token
    // rotated away stops working too.
    let manager = c.join_arg(0, "manager");
    c.ok(0, &["cluster", "join-token", "--rotate", "manager"]);
    refused(&["--join", &manager], "not the cluster's current manager token");
    // A rotated token stops working.
    c.ok(0, &["cluster", "join-token", "--rotate", "worker"]);
    refused(&["--join", &good], "not the cluster's current worker token");
    // A worker hands out no token.
    assert!(!c.berth(1, &["cluster", "join-token", "worker"]).status.success());
}

/// Host `i`'s node as `node ls --format json` on h1 shows it.
fn node_of(c: &Cluster, i: usize) -> Value {
    let addr = c.host(i).endpoint();
    nodes(c)
        .into_iter()
        .find(|n| n["addr"] == addr.as_str())
        .unwrap_or(Value::Null)
}

#[test]
fn node_certificates_renew_before_they_expire() {
    let mut c = Cluster::start_joined_with(2, &["--node-cert-expiry", "40s"]);
    // A duration the daemon cannot use is refused with the reason.
    let (out, _) = c.daemon_once(1, &["--node-cert-expiry", "5s"], Duration::from_secs(20));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 30s"));

    let first = node_of(&c, 1);
    let first_cert = first["certificate"].as_str().expect("a certificate").to_string();
    let expires = chrono::DateTime::parse_from_rfc3339(first["certificate_expires"].as_str().expect("an expiry"))
        .expect("an RFC 3339 expiry");
    let left = expires.signed_duration_since(chrono::Utc::now()).num_seconds();
    assert!(
        (20..=41).contains(&left),
        "the worker's certificate lives 40s: {left}s left"
    );

    // Renewed once a third of its life is left, before it expires.
    assert!(
        wait_until(Duration::from_secs(40), || node_of(&c, 1)["certificate"]
            != first_cert.as_str()),
        "the worker's certificate was not renewed: {}",
        c.host(1).log()
    );
    assert!(chrono::Utc::now() < expires, "renewed only after the old one expired");
    let renewed = node_of(&c, 1);
    let info: Value = serde_json::from_str(&c.ok(1, &["cluster", "info", "--format", "json"])).expect("cluster info");
    assert_eq!(
        info["certificate_expires"], renewed["certificate_expires"],
        "the worker uses the new one"
    );

    // Past the first certificate's expiry, the worker's new connections
    // (a restart makes them) use the renewed one and it stays ready.
    let past = (expires.signed_duration_since(chrono::Utc::now()).num_milliseconds() + 2000).max(0);
    std::thread::sleep(Duration::from_millis(past as u64));
    c.restart(1);
    assert!(
        wait_until(Duration::from_secs(15), || node_state(&c, 1) == "ready"),
        "the worker came back with its renewed certificate: {}",
        node_state(&c, 1)
    );
    let audit = c.ok(0, &["audit", "ls"]);
    assert!(audit.contains("Membership/Renew"), "renewals are in the audit log");
}

#[test]
fn gossip_declares_a_dead_node_down_before_heartbeats_would() {
    // Heartbeats alone would call a silent node unknown after 30s and
    // down after 60s: anything sooner is gossip's doing.
    let mut c = Cluster::start_joined_with(3, &["--node-suspect-after", "30s", "--node-down-after", "60s"]);
    for i in 1..3 {
        assert!(wait_until(Duration::from_secs(15), || node_state(&c, i) == "ready"));
    }
    // Let the members find each other by gossip.
    std::thread::sleep(Duration::from_secs(3));
    let killed = std::time::Instant::now();
    c.kill(2);
    assert!(
        wait_until(Duration::from_secs(20), || node_state(&c, 2) == "down"),
        "gossip did not declare the dead worker down: {} {}",
        node_state(&c, 2),
        c.host(0).log()
    );
    let took = killed.elapsed();
    eprintln!("down by gossip {} ms after the kill", took.as_millis());
    assert!(took < Duration::from_secs(15), "gossip took {took:?}");
    let message = node_of(&c, 2)["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("gossip"), "{message}");
    // The other worker is not affected, and the dead one comes back.
    assert_eq!(node_state(&c, 1), "ready");
    c.restart(2);
    assert!(
        wait_until(Duration::from_secs(15), || node_state(&c, 2) == "ready"),
        "the restarted worker is ready again: {}",
        node_state(&c, 2)
    );
}
