//! Assignments over the agents' sessions: a node-labelled container spec
//! runs on exactly the nodes that match, follows their labels, is kept
//! running by the agents when the leader dies or the managers are out of
//! reach, and a partition heals both ways (the node removes what was
//! removed meanwhile, the managers learn what it runs).

use std::time::Duration;

use berth_tests::{images_dir, wait_until, Cluster};
use serde_json::Value;

fn node_id(c: &Cluster, i: usize) -> String {
    let nodes: Value = serde_json::from_str(&c.ok(0, &["node", "ls", "--format", "json"])).expect("node ls");
    let addr = c.host(i).endpoint();
    nodes
        .as_array()
        .expect("a list")
        .iter()
        .find(|n| n["addr"] == addr.as_str())
        .and_then(|n| n["id"].as_str())
        .expect("the host is a node")
        .to_string()
}

/// The containers host `i` has: (id, name, state, assignment label).
fn containers(c: &Cluster, i: usize) -> Vec<(String, String, String, String)> {
    let all: Value = serde_json::from_str(&c.ok(i, &["ps", "-a", "--format", "json"])).expect("ps json");
    all.as_array()
        .expect("a list")
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap_or_default().to_string(),
                c["name"].as_str().unwrap_or_default().to_string(),
                c["status"]["state"].as_str().unwrap_or_default().to_string(),
                c["spec"]["labels"]["berth.assignment"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// Host `i`'s running container for assignment `name`, if any.
fn running(c: &Cluster, i: usize, name: &str) -> Option<String> {
    containers(c, i)
        .into_iter()
        .find(|(_, _, state, a)| a == name && state == "running")
        .map(|(id, ..)| id)
}

fn has_any(c: &Cluster, i: usize, name: &str) -> bool {
    containers(c, i).iter().any(|(_, _, _, a)| a == name)
}

/// What manager `m` shows of assignment `name`'s tasks: (node, state, container, message).
fn tasks(c: &Cluster, m: usize, name: &str) -> Vec<(String, String, String, String)> {
    let out = c.berth(m, &["assignment", "inspect", name]);
    if !out.status.success() {
        return Vec::new();
    }
    let shown: Value = serde_json::from_slice(&out.stdout).expect("inspect json");
    shown[0]["tasks"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| {
                    let s = |k: &str| t[k].as_str().unwrap_or_default().to_string();
                    (s("node"), s("state"), s("container"), s("message"))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn refused(c: &Cluster, i: usize, args: &[&str], says: &str) {
    let out = c.berth(i, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "berth {}: was not refused", args.join(" "));
    assert!(stderr.contains(says), "berth {}: {stderr}", args.join(" "));
}

#[test]
fn assignments_follow_labels_and_outlive_leaders_and_partitions() {
    let mut c = Cluster::start_managers(3, 2);
    let (w1, w2) = (3, 4);
    let image = images_dir().join("busybox-docker.tar");
    for i in [w1, w2] {
        c.ok(i, &["image", "load", "-q", "-i", image.to_str().expect("utf-8")]);
    }
    let (id1, id2) = (node_id(&c, w1), node_id(&c, w2));
    c.ok(0, &["node", "update", "--label-add", "zone=a", &id1]);

    // Bad input is refused by name, and nothing is made.
    let create = |name: &str, constraint: &str, rest: &[&str]| -> Vec<String> {
        let mut args = vec![
            "assignment".to_string(),
            "create".into(),
            format!("--name={name}"),
            format!("--constraint={constraint}"),
        ];
        args.extend(rest.iter().map(|s| s.to_string()));
        args
    };
    for (args, says) in [
        (
            create("web", "zone=a", &["busybox:docker"]),
            "invalid constraint \"zone=a\"",
        ),
        (
            create("-web", "node.role==worker", &["busybox:docker"]),
            "invalid assignment name",
        ),
        (
            create("web", "node.role==worker", &["-e", "NOVALUE", "busybox:docker"]),
            "invalid env entry",
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&c, 1, &args, says);
    }
    refused(&c, w1, &["assignment", "ls"], "this node is a worker: ask a manager");
    refused(&c, 0, &["assignment", "rm", "nosuch"], "no such assignment: nosuch");
    assert!(c.ok(0, &["assignment", "ls", "--format", "json"]).trim() == "[]");

    // Made through a follower; runs on the labelled worker only.
    let args = create(
        "web",
        "node.labels.zone==a",
        &["-e", "GREETING=hi", "busybox:docker", "sleep", "3600"],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let follower = (0..3).find(|m| c.leader(0) != Some(*m)).expect("a follower");
    c.ok(follower, &args);
    refused(&c, 0, &args, "assignment web already exists");
    assert!(
        wait_until(Duration::from_secs(15), || running(&c, w1, "web").is_some()),
        "w1 does not run web: {:?}\n{}",
        containers(&c, w1),
        c.host(w1).log()
    );
    let web1 = running(&c, w1, "web").expect("web on w1");
    let env = c.ok(w1, &["exec", &web1, "sh", "-c", "echo $GREETING"]);
    assert_eq!(env.trim(), "hi", "the assignment's env reaches the container");
    assert!(!has_any(&c, w2, "web"), "w2 does not match: {:?}", containers(&c, w2));
    assert!(
        wait_until(Duration::from_secs(10), || {
            (0..3).all(|m| tasks(&c, m, "web") == vec![(id1.clone(), "running".into(), web1.clone(), String::new())])
        }),
        "every manager shows web running on w1: {:?}",
        (0..3).map(|m| tasks(&c, m, "web")).collect::<Vec<_>>()
    );
    let listed = c.ok(0, &["assignment", "ls"]);
    assert!(listed.contains("web") && listed.contains("running"), "{listed}");

    // Labels move it: w2 gains the label and runs it, w1 loses it and
    // removes its container.
    c.ok(2, &["node", "update", "--label-add", "zone=a", &id2]);
    c.ok(0, &["node", "update", "--label-rm", "zone", &id1]);
    assert!(
        wait_until(Duration::from_secs(15), || running(&c, w2, "web").is_some()
            && !has_any(&c, w1, "web")),
        "web did not move: w1 {:?}, w2 {:?}",
        containers(&c, w1),
        containers(&c, w2)
    );
    let web2 = running(&c, w2, "web").expect("web on w2");
    assert!(
        wait_until(Duration::from_secs(10), || {
            tasks(&c, 0, "web") == vec![(id2.clone(), "running".into(), web2.clone(), String::new())]
        }),
        "{:?}",
        tasks(&c, 0, "web")
    );

    // A container stopped by hand is started again by its agent.
    c.ok(w2, &["stop", "-t", "1", &web2]);
    assert!(
        wait_until(Duration::from_secs(10), || running(&c, w2, "web") == Some(web2.clone())),
        "the agent did not start web again: {:?}",
        containers(&c, w2)
    );

    // An image the node lacks and cannot pull: the task fails, and says why.
    let bad = create("broken", &format!("node.id=={id1}"), &["127.0.0.1:9/nothing:latest"]);
    let bad: Vec<&str> = bad.iter().map(String::as_str).collect();
    c.ok(0, &bad);
    assert!(
        wait_until(Duration::from_secs(15), || {
            tasks(&c, 0, "broken")
                .iter()
                .any(|(n, s, _, m)| *n == id1 && s == "failed" && m.contains("pulling it failed"))
        }),
        "{:?}",
        tasks(&c, 0, "broken")
    );
    c.ok(0, &["assignment", "rm", "broken"]);

    // The leader dies: w2's container runs on, untouched; the agents find
    // the new leader, which sends them new assignments.
    let leader = c.leader(0).expect("a leader");
    c.kill(leader);
    let survivor = (0..3).find(|m| *m != leader).expect("a survivor");
    assert!(
        wait_until(Duration::from_secs(15), || c
            .leader(survivor)
            .is_some_and(|l| l != leader)),
        "no new leader"
    );
    assert_eq!(
        running(&c, w2, "web"),
        Some(web2.clone()),
        "web ran on through the failover"
    );
    let two = create("two", "node.labels.zone==a", &["busybox:docker", "sleep", "3600"]);
    let two: Vec<&str> = two.iter().map(String::as_str).collect();
    assert!(
        wait_until(Duration::from_secs(10), || c.berth(survivor, &two).status.success()),
        "creating an assignment after the failover"
    );
    assert!(
        wait_until(Duration::from_secs(20), || running(&c, w2, "two").is_some()),
        "w2's agent did not take the new leader's assignment: {:?}\n{}",
        containers(&c, w2),
        c.host(w2).log()
    );

    // Cut off, w2 keeps running what it has. Meanwhile web is removed;
    // healed, w2 removes it, and the managers see what it runs.
    c.partition(w2);
    c.ok(survivor, &["assignment", "rm", "web"]);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(running(&c, w2, "web"), Some(web2.clone()), "w2 keeps web while cut off");
    assert!(running(&c, w2, "two").is_some(), "w2 keeps two while cut off");
    c.heal(w2);
    assert!(
        wait_until(Duration::from_secs(30), || !has_any(&c, w2, "web")),
        "healed, w2 did not remove web: {:?}\n{}",
        containers(&c, w2),
        c.host(w2).log()
    );
    let two_id = running(&c, w2, "two").expect("two runs on");
    assert!(
        wait_until(Duration::from_secs(10), || {
            tasks(&c, survivor, "two") == vec![(id2.clone(), "running".into(), two_id.clone(), String::new())]
        }),
        "{:?}",
        tasks(&c, survivor, "two")
    );
    refused(
        &c,
        survivor,
        &["assignment", "inspect", "web"],
        "no such assignment: web",
    );

    // Drained, a node runs nothing.
    c.ok(survivor, &["node", "update", "--availability", "drain", &id2]);
    assert!(
        wait_until(Duration::from_secs(15), || !has_any(&c, w2, "two")),
        "drained, w2 still runs two: {:?}",
        containers(&c, w2)
    );
}
