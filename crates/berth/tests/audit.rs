//! The audit log's settings and outputs end to end: levels per resource,
//! forwarding to syslog (a UDP receiver in the test), and an export checked
//! offline with nothing but the cluster CA certificate.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::Daemon;
use serde_json::Value;

#[test]
fn levels_syslog_and_offline_verification() {
    let syslog = UdpSocket::bind("127.0.0.1:0").expect("bind");
    syslog.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let target = format!("udp://{}", syslog.local_addr().expect("addr"));
    let d = Daemon::start_with_args(&["--audit-syslog", &target]);

    // Levels: set, refused when unknown, listed.
    assert_eq!(
        d.ok(&["audit", "level", "set", "image", "request"]).trim(),
        "image: request"
    );
    let (_, err) = d.fails(&["audit", "level", "set", "imagez", "none"]);
    assert!(err.contains("unknown resource \"imagez\""), "{err}");
    let (_, err) = d.fails(&["audit", "level", "set", "image", "loud"]);
    assert!(err.contains("unknown audit level \"loud\""), "{err}");
    let levels: Value = serde_json::from_str(&d.ok(&["audit", "level", "ls", "--format", "json"])).expect("json");
    let image = levels
        .as_array()
        .expect("list")
        .iter()
        .find(|l| l["resource"] == "image")
        .expect("image row");
    assert_eq!(image["level"], "request");

    // At `request`, reads are recorded too.
    d.ok(&["images"]);
    let entries: Value = serde_json::from_str(&d.ok(&["audit", "ls", "--format", "json"])).expect("json");
    assert!(
        entries
            .as_array()
            .expect("list")
            .iter()
            .any(|e| e["action"] == "GET /v1/images" && e["result"] == "allowed"),
        "{entries}"
    );

    // Containers are at `metadata`: `run` is recorded, its `wait` (a read
    // that is a POST) is not.
    d.load_busybox();
    d.ok(&["run", "--rm", "busybox", "true"]);
    let entries: Value = serde_json::from_str(&d.ok(&["audit", "ls", "--format", "json"])).expect("json");
    let actions: Vec<&str> = entries
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"POST /v1/containers"), "{actions:?}");
    assert!(!actions.iter().any(|a| a.ends_with("/wait")), "{actions:?}");

    // Every entry also went to syslog, as RFC 5424 with the entry's JSON.
    let mut buf = [0u8; 8192];
    let n = syslog.recv(&mut buf).expect("a syslog message");
    let line = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(line.starts_with("<86>1 ") && line.contains(" berth - audit "), "{line}");

    // The daemon's own check, then the export checked offline against the CA.
    d.ok(&["audit", "verify"]);
    let export = d.dir.path().join("audit.json");
    d.ok(&["audit", "export", "-o", export.to_str().expect("utf-8")]);
    let ca = d.data_root().join("pki/ca.pem");
    let args = |file: &std::path::Path| {
        vec![
            "audit".to_string(),
            "verify".into(),
            "--file".into(),
            file.display().to_string(),
            "--ca".into(),
            ca.display().to_string(),
        ]
    };
    let a = args(&export);
    let out = d.ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.contains("audit log intact"), "{out}");

    // An edited export fails, naming the entry.
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&export).expect("read")).expect("json");
    doc["entries"][0]["user"] = Value::String("someone-else".into());
    let edited = d.dir.path().join("edited.json");
    std::fs::write(&edited, doc.to_string()).expect("write");
    let a = args(&edited);
    let (code, err) = d.fails(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 1);
    assert!(err.contains("entry 1 was edited"), "{err}");

    // Another cluster's CA does not vouch for this log.
    let other = tempfile::tempdir().expect("tempdir");
    let pki = berth_cluster::Pki::open(other.path()).expect("another CA");
    let other_ca = other.path().join("other-ca.pem");
    std::fs::write(&other_ca, pki.ca_pem()).expect("write");
    let (code, err) = d.fails(&[
        "audit",
        "verify",
        "--file",
        export.to_str().expect("utf-8"),
        "--ca",
        other_ca.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("not signed by the cluster key"), "{err}");
}

/// Access control that cannot open (here the audit log's key is a
/// directory) stops the daemon at start, with the reason: it never serves
/// without its audit log.
#[test]
fn the_daemon_does_not_serve_without_its_audit_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("auth/audit.key")).expect("a directory in the key's place");
    let socket = dir.path().join("berth.sock");
    let mut child = std::process::Command::new(common::bin())
        .arg("daemon")
        .arg("--data-root")
        .arg(&root)
        .arg("--socket")
        .arg(&socket)
        .args(["--listen", &format!("127.0.0.1:{}", common::free_port())])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn daemon");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon kept running without its audit log");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err).expect("stderr");
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("cannot open access control") && err.contains("the daemon will not serve"),
        "{err}"
    );
    assert!(!socket.exists(), "the daemon made its socket");
}
