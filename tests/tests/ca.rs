//! `berth cluster ca --rotate`: the cluster CA is replaced while every
//! node stays up; a node that is down holds the rotation until it is back;
//! the old root retires, join tokens change with it, and the audit log
//! still verifies.

use std::time::Duration;

use berth_tests::{wait_until, Cluster};
use serde_json::Value;

fn ca(c: &Cluster, i: usize) -> Value {
    serde_json::from_str(&c.ok(i, &["cluster", "ca", "--format", "json"])).expect("cluster ca --format json")
}

fn states(c: &Cluster, i: usize) -> Vec<String> {
    let nodes: Vec<Value> =
        serde_json::from_str(&c.ok(i, &["node", "ls", "--format", "json"])).expect("node ls --format json");
    nodes
        .iter()
        .map(|n| n["status"]["state"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn certificates(c: &Cluster) -> Vec<String> {
    let nodes: Vec<Value> =
        serde_json::from_str(&c.ok(0, &["node", "ls", "--format", "json"])).expect("node ls --format json");
    nodes
        .iter()
        .map(|n| n["certificate"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn the_ca_rotates_with_every_node_up_and_a_down_node_holds_it() {
    let mut c = Cluster::start_managers(3, 1);
    let worker = 3;
    let before = ca(&c, 0);
    let old_root = before["root"]["digest"].as_str().expect("a digest").to_string();
    assert!(before.get("rotation").is_none(), "{before:#}");
    let old_token = c.join_arg(0, "worker");
    let old_certs = certificates(&c);

    // The worker is down: the rotation starts, and waits for it.
    c.stop(worker);
    let started: Value =
        serde_json::from_str(&c.ok(1, &["cluster", "ca", "--rotate", "--detach", "--format", "json"])).expect("json");
    let rotation = &started["rotation"];
    let new_root = rotation["next"]["digest"].as_str().expect("the new root").to_string();
    assert_ne!(new_root, old_root);
    assert_eq!(rotation["nodes"], 4, "{started:#}");
    // A second rotation is refused while this one runs.
    let again = c.berth(0, &["cluster", "ca", "--rotate", "--detach"]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already under way"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // The managers renew under the new root; the worker holds it.
    assert!(
        wait_until(Duration::from_secs(20), || ca(&c, 2)["rotation"]["rotated"] == 3),
        "the managers did not renew: {:#}",
        ca(&c, 2)
    );
    let waiting = ca(&c, 0);
    let pending = waiting["rotation"]["pending"].as_array().expect("pending").clone();
    assert_eq!(pending.len(), 1, "{waiting:#}");
    // Meanwhile the cluster works: writes, reads, sessions.
    let nodes: Vec<Value> = serde_json::from_str(&c.ok(0, &["node", "ls", "--format", "json"])).expect("json");
    let first = nodes[0]["id"].as_str().expect("an id").to_string();
    c.ok(2, &["node", "update", "--label-add", "during=rotation", &first]);
    assert_eq!(states(&c, 1)[..3], ["ready", "ready", "ready"]);
    let shown = c.ok(0, &["cluster", "ca"]);
    assert!(
        shown.contains("3/4 nodes renewed") && shown.contains("waiting for"),
        "{shown}"
    );

    // The worker comes back knowing only the old root; it renews, and the
    // rotation ends by itself.
    c.restart(worker);
    assert!(
        wait_until(Duration::from_secs(30), || ca(&c, 0).get("rotation").is_none()),
        "the rotation did not finish: {:#}\n{}",
        ca(&c, 0),
        c.host(worker).log()
    );
    for i in 0..3 {
        let now = ca(&c, i);
        assert_eq!(now["root"]["digest"], new_root.as_str(), "manager {i}: {now:#}");
        assert_eq!(now["retired"][0]["digest"], old_root.as_str(), "manager {i}: {now:#}");
    }
    assert!(
        wait_until(Duration::from_secs(10), || {
            let info: Value =
                serde_json::from_str(&c.ok(worker, &["cluster", "info", "--format", "json"])).expect("json");
            info["ca_digest"] == new_root.as_str()
        }),
        "the worker's root is not the new one"
    );
    let renewed = certificates(&c);
    assert!(
        renewed.iter().all(|cert| !old_certs.contains(cert)),
        "every node renewed: {old_certs:?} {renewed:?}"
    );
    for i in 0..3 {
        assert!(
            wait_until(Duration::from_secs(10), || states(&c, i).iter().all(|s| s == "ready")),
            "manager {i}: {:?}",
            states(&c, i)
        );
        // Checkpoints signed by the old root and by the new one verify.
        assert!(c.ok(i, &["audit", "verify"]).contains("intact"));
    }

    // Join tokens name the root: the old one is refused, the new one joins.
    let new_token = c.join_arg(0, "worker");
    assert_ne!(new_token, old_token);
    let (out, root) = c.daemon_once(worker, &["--join", &old_token], Duration::from_secs(40));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("does not match the join token"),
        "{err}"
    );
    assert!(!root.exists(), "a refused join left {}", root.display());
    let fresh = c.grow(&["--join".into(), new_token]);
    c.wait_ready(fresh);
    assert!(
        wait_until(Duration::from_secs(15), || states(&c, 0).len() == 5
            && states(&c, 0).iter().all(|s| s == "ready")),
        "{:?}",
        states(&c, 0)
    );

    // Everything restarts on what it wrote to disk.
    c.restart(1);
    c.restart(worker);
    assert!(
        wait_until(Duration::from_secs(15), || states(&c, 0).iter().all(|s| s == "ready")),
        "{:?}",
        states(&c, 0)
    );
    let audit = c.ok(0, &["audit", "ls"]);
    assert!(audit.contains("/v1/cluster/ca/rotate"), "the rotation is audited");
}
