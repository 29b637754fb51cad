//! The harness itself: three hosts whose daemons answer on their sockets
//! and reach each other over the bridge; a partition, packet loss, a crash
//! and a restart do to the hosts what they say and are undone; a restarted
//! daemon keeps its data root; and nothing is left behind.

use std::time::Duration;

use berth_tests::{namespaces, wait_until, Cluster};

fn each_pair(c: &Cluster) -> Vec<(usize, usize)> {
    let n = c.hosts().len();
    (0..n)
        .flat_map(|a| (0..n).filter(move |b| *b != a).map(move |b| (a, b)))
        .collect()
}

#[test]
fn hosts_reach_each_other_and_faults_come_and_go() {
    let mut c = Cluster::start(3);
    let made = c.namespaces();
    assert_eq!(made.len(), 4, "a switch and three hosts: {made:?}");
    for (i, host) in c.hosts().iter().enumerate() {
        assert_eq!(host.endpoint(), format!("198.18.0.{}:7443", 11 + i));
        assert!(c.ok(i, &["version"]).contains("Server: "), "{}", host.name);
    }
    for (a, b) in each_pair(&c) {
        assert!(c.reachable(a, b), "h{} cannot reach h{}", a + 1, b + 1);
    }
    // A partition cuts h3 off both ways, and leaves h1 and h2 together.
    c.partition(2);
    assert!(!c.reachable(0, 2) && !c.reachable(2, 0));
    assert!(c.reachable(0, 1) && c.reachable(1, 0));
    c.heal(2);
    assert!(wait_until(Duration::from_secs(5), || c.reachable(0, 2)), "h3 healed");

    // All of h3's packets lost: cut off; healed: back.
    c.lose(2, 100);
    assert!(!c.reachable(0, 2) && !c.reachable(2, 1));
    c.heal(2);
    assert!(c.reachable(0, 2) && c.reachable(2, 1));

    // A crash: h2's daemon is gone, and its data root outlives it.
    c.ok(1, &["user", "create", "carol"]);
    let pid = c.host(1).pid().expect("a running daemon");
    c.kill(1);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the daemon was killed"
    );
    assert!(!c.reachable(0, 1));
    c.restart(1);
    assert!(c.reachable(0, 1));
    assert!(
        c.ok(1, &["user", "ls"]).contains("carol"),
        "the restarted daemon kept its users"
    );

    let dir = c.dir().to_path_buf();
    drop(c);
    let left: Vec<String> = namespaces().into_iter().filter(|n| made.contains(n)).collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    assert!(!dir.exists(), "the cluster's directory is removed");
}

#[test]
fn a_sweep_removes_what_a_killed_run_left() {
    // A run killed before its clean-up leaves namespaces named after its pid.
    let mut gone = std::process::Command::new("true").spawn().expect("true");
    let dead = gone.id();
    gone.wait().expect("wait");
    let left = format!("bt{dead}x0-sw");
    let made = std::process::Command::new("ip")
        .args(["netns", "add", &left])
        .status()
        .expect("ip");
    assert!(made.success());
    assert!(namespaces().contains(&left));
    berth_tests::sweep();
    assert!(!namespaces().contains(&left), "{left} was swept");
}
