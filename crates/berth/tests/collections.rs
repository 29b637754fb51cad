//! Collections beyond `/`: registry repositories mapped to collections by
//! name prefix, so a grant on `/shared/team-a` lets its holder push and pull
//! `team-a/...` and nothing else; and containers created into a collection
//! with `run --collection`, refused outside the caller's grants.

mod common;

use std::net::TcpStream;
use std::process::{Command, Output};

use common::{base64, free_port, http, wait_for, Daemon};

/// The status of one request with HTTP Basic credentials.
fn status(port: u16, method: &str, path: &str, user: &str, password: &str) -> u16 {
    let auth = format!(
        "Authorization: Basic {}",
        base64(format!("{user}:{password}").as_bytes())
    );
    http(port, method, path, &[auth], b"").status
}

#[test]
fn repositories_and_containers_in_collections() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let d = Daemon::start_with_args(&["--insecure-listen", &listen, "--registry-auth", "token"]);
    wait_for("the TCP listener", || TcpStream::connect(("127.0.0.1", port)).is_ok());
    let out = d.ok(&["user", "create", "ann"]);
    let (_, pw) = out.trim().split_once('\t').expect("name and password");
    d.ok(&[
        "grant",
        "create",
        "user:ann",
        "full-control",
        "--collection",
        "/shared/team-a",
    ]);

    // Mappings: set, listed, refused when malformed.
    assert_eq!(
        d.ok(&["registry", "collection", "set", "team-a", "/shared/team-a"])
            .trim(),
        "team-a\t/shared/team-a"
    );
    let (_, err) = d.fails(&["registry", "collection", "set", "Team A", "/x"]);
    assert!(err.contains("invalid repository prefix"), "{err}");
    let (_, err) = d.fails(&["registry", "collection", "set", "team-b", "no-slash"]);
    assert!(err.contains("invalid collection"), "{err}");
    assert!(d.ok(&["registry", "collection", "ls"]).contains("/shared/team-a"));

    // ann may push to team-a/... (an upload starts), not to team-b/...
    assert_eq!(status(port, "POST", "/v2/team-a/app/blobs/uploads/", "ann", pw), 202);
    assert_eq!(
        status(port, "POST", "/v2/team-a/tools/x/blobs/uploads/", "ann", pw),
        202
    );
    assert_eq!(status(port, "POST", "/v2/team-b/app/blobs/uploads/", "ann", pw), 403);
    assert_eq!(status(port, "POST", "/v2/team-ab/app/blobs/uploads/", "ann", pw), 403);
    // Without the mapping team-a/... is back in `/`, where ann has nothing.
    d.ok(&["registry", "collection", "rm", "team-a"]);
    assert_eq!(status(port, "POST", "/v2/team-a/app/blobs/uploads/", "ann", pw), 403);
    let (_, err) = d.fails(&["registry", "collection", "rm", "team-a"]);
    assert!(err.contains("no collection is set"), "{err}");

    // Containers: ann creates into her collection, not into another or `/`.
    d.load_busybox();
    let token = {
        let o = d.ok(&["token", "create", "--user", "ann"]);
        o.trim().to_string()
    };
    let as_ann = |args: &[&str]| -> Output {
        Command::new(common::bin())
            .arg("-H")
            .arg(format!("http://{listen}"))
            .args(args)
            .env("BERTH_TOKEN", &token)
            .output()
            .expect("berth")
    };
    let o = as_ann(&["create", "--collection", "/shared/team-a/web", "busybox", "true"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let inspect = d.ok(&["inspect", &id]);
    assert!(inspect.contains("/shared/team-a/web"), "{inspect}");
    for elsewhere in ["/shared/team-b", "/"] {
        let o = as_ann(&["create", "--collection", elsewhere, "busybox", "true"]);
        assert!(!o.status.success(), "created in {elsewhere}");
    }
    let o = as_ann(&["create", "busybox", "true"]);
    assert!(!o.status.success(), "created in / without a grant there");
    d.ok(&["rm", "-f", &id]);
}
