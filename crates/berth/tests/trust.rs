//! berth's trust server against the real `notary` CLI (Debian package
//! `notary`, 0.7): every operation a Notary user runs — init, add, publish,
//! list, verify, remove, key rotate (snapshot and timestamp to the server),
//! delegation add/list/remove with a delegated signer, witness, delete —
//! with the results read back through `notary list`/`verify`, the
//! changefeeds, and updates the server must refuse without changing
//! anything.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{free_port, http, Daemon};
use serde_json::Value;

const NOTARY: &str = "/usr/bin/notary";

struct Notary {
    server: String,
    dir: PathBuf,
}

impl Notary {
    fn run(&self, args: &[&str]) -> Output {
        assert!(
            Path::new(NOTARY).exists(),
            "{NOTARY} is missing: install the Debian package `notary`"
        );
        Command::new(NOTARY)
            .arg("-s")
            .arg(&self.server)
            .arg("-d")
            .arg(&self.dir)
            .args(args)
            .env("NOTARY_ROOT_PASSPHRASE", "root-passphrase")
            .env("NOTARY_TARGETS_PASSPHRASE", "targets-passphrase")
            .env("NOTARY_SNAPSHOT_PASSPHRASE", "snapshot-passphrase")
            .env("NOTARY_DELEGATION_PASSPHRASE", "delegation-passphrase")
            .output()
            .expect("run notary")
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "notary {args:?} failed:\n{text}");
        text
    }

    fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!o.status.success(), "notary {args:?} should fail:\n{text}");
        text
    }

    /// `notary list`: (name, role) rows.
    fn list(&self, gun: &str) -> Vec<(String, String)> {
        let out = self.ok(&["list", gun]);
        out.lines()
            .filter(|l| !l.starts_with("NAME") && !l.starts_with("----") && !l.trim().is_empty())
            .filter_map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                (cols.len() == 4).then(|| (cols[0].to_string(), cols[3].to_string()))
            })
            .collect()
    }
}

/// A multipart update as the notary CLI sends it: one part per role.
fn post_update(port: u16, gun: &str, parts: &[(&str, &[u8])]) -> (u16, Value) {
    let boundary = "berth-test-boundary";
    let mut body = Vec::new();
    for (role, data) in parts {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{role}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let ct = format!("Content-Type: multipart/form-data; boundary={boundary}");
    let r = http(port, "POST", &format!("/v2/{gun}/_trust/tuf/"), &[ct], &body);
    (r.status, r.json())
}

fn get(port: u16, path: &str) -> (u16, Vec<u8>) {
    let r = http(port, "GET", path, &[], b"");
    (r.status, r.body)
}

fn openssl(args: &[&str]) {
    let o = Command::new("openssl").args(args).output().expect("run openssl");
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn the_notary_cli_works_against_berth() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let d = Daemon::start_with_args(&["--insecure-listen", &listen]);
    let n = Notary {
        server: format!("http://{listen}"),
        dir: d.dir.path().join("notary"),
    };
    let gun = format!("{listen}/library/app");
    let gun = gun.as_str();
    let file = d.dir.path().join("artifact");
    std::fs::write(&file, b"hello trust\n").expect("write");
    let file = file.to_str().expect("utf-8");

    // init + publish, add + publish, list, verify.
    n.ok(&["init", gun, "-p"]);
    n.ok(&["add", gun, "v1", file, "-p"]);
    assert_eq!(n.list(gun), vec![("v1".into(), "targets".into())]);
    let o = Command::new(NOTARY)
        .args(["-s", &n.server, "-d"])
        .arg(&n.dir)
        .args(["verify", gun, "v1"])
        .stdin(std::fs::File::open(file).expect("open"))
        .output()
        .expect("verify");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.stdout, b"hello trust\n");
    let o = Command::new(NOTARY)
        .args(["-s", &n.server, "-d"])
        .arg(&n.dir)
        .args(["verify", gun, "v1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().expect("stdin").write_all(b"tampered\n")?;
            c.wait_with_output()
        })
        .expect("verify tampered");
    assert!(!o.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(said.contains("did not match"), "{said}");

    // The snapshot key moves to the server (-r), then the timestamp key is
    // rotated on the server; publishing and listing keep working.
    n.ok(&["key", "rotate", gun, "snapshot", "-r"]);
    n.ok(&["add", gun, "v2", file, "-p"]);
    n.ok(&["key", "rotate", gun, "timestamp", "-r"]);
    let names: Vec<String> = n.list(gun).into_iter().map(|(name, _)| name).collect();
    assert_eq!(names, ["v1", "v2"]);

    // A delegated signer with its own key (made by openssl).
    let key = d.dir.path().join("releases-key.pem");
    let cert = d.dir.path().join("releases-cert.pem");
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        key.to_str().expect("utf-8"),
    ]);
    openssl(&[
        "req",
        "-new",
        "-x509",
        "-key",
        key.to_str().expect("utf-8"),
        "-out",
        cert.to_str().expect("utf-8"),
        "-days",
        "30",
        "-subj",
        "/CN=releases",
    ]);
    n.ok(&[
        "delegation",
        "add",
        gun,
        "targets/releases",
        cert.to_str().expect("utf-8"),
        "--all-paths",
        "-p",
    ]);
    n.ok(&[
        "key",
        "import",
        key.to_str().expect("utf-8"),
        "--role",
        "targets/releases",
    ]);
    n.ok(&["add", gun, "v3", file, "--roles", "targets/releases", "-p"]);
    let rows = n.list(gun);
    assert!(rows.contains(&("v3".into(), "targets/releases".into())), "{rows:?}");
    let delegations = n.ok(&["delegation", "list", gun]);
    assert!(delegations.contains("targets/releases"), "{delegations}");
    n.ok(&["witness", gun, "targets/releases", "-p"]);

    // remove + publish.
    n.ok(&["remove", gun, "v1", "-p"]);
    let names: Vec<String> = n.list(gun).into_iter().map(|(name, _)| name).collect();
    assert_eq!(names, ["v2", "v3"]);

    // The server refuses a tampered update and keeps what it had.
    let (status, before) = get(port, &format!("/v2/{gun}/_trust/tuf/targets.json"));
    assert_eq!(status, 200);
    let mut doc: Value = serde_json::from_slice(&before).expect("targets.json");
    let version = doc["signed"]["version"].as_u64().expect("version");
    doc["signed"]["version"] = Value::from(version + 1);
    let (status, err) = post_update(port, gun, &[("targets", doc.to_string().as_bytes())]);
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["errors"][0]["code"], "INVALID_UPDATE", "{err}");
    // An older version than stored, correctly signed (the stored one itself).
    let (status, err) = post_update(port, gun, &[("targets", &before)]);
    assert_eq!(status, 400, "{err}");
    assert!(
        matches!(err["errors"][0]["code"].as_str(), Some("VERSION" | "INVALID_UPDATE")),
        "{err}"
    );
    // Not a role at all.
    let (status, err) = post_update(port, gun, &[("nonsense", b"{}")]);
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["errors"][0]["code"], "INVALID_ROLE", "{err}");
    let (_, after) = get(port, &format!("/v2/{gun}/_trust/tuf/targets.json"));
    assert_eq!(before, after, "a refused update changed the stored targets");
    let names: Vec<String> = n.list(gun).into_iter().map(|(name, _)| name).collect();
    assert_eq!(names, ["v2", "v3"]);

    // Metadata by version and by checksum, keys, 404s in Notary's format.
    let (status, root1) = get(port, &format!("/v2/{gun}/_trust/tuf/1.root.json"));
    assert_eq!(status, 200);
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&root1))
    };
    let (status, by_sum) = get(port, &format!("/v2/{gun}/_trust/tuf/root.{sha}.json"));
    assert_eq!((status, by_sum), (200, root1));
    let (status, key) = get(port, &format!("/v2/{gun}/_trust/tuf/timestamp.key"));
    assert_eq!(status, 200);
    let key: Value = serde_json::from_slice(&key).expect("key json");
    assert_eq!(key["keytype"], "ecdsa");
    let (status, body) = get(port, &format!("/v2/{listen}/library/none/_trust/tuf/root.json"));
    assert_eq!(status, 404);
    let body: Value = serde_json::from_slice(&body).expect("error json");
    assert_eq!(body["errors"][0]["code"], "METADATA_NOT_FOUND");

    // Changefeeds: one update per published timestamp, for this GUN and all.
    let (status, feed) = get(port, &format!("/v2/{gun}/_trust/changefeed?change_id=0&records=100"));
    assert_eq!(status, 200);
    let feed: Value = serde_json::from_slice(&feed).expect("feed");
    let count = feed["count"].as_u64().expect("count");
    assert!(count >= 8, "{feed}");
    assert_eq!(feed["records"][0]["GUN"], gun);
    assert_eq!(feed["records"][0]["Category"], "update");
    let (_, newest) = get(port, "/v2/_trust/changefeed?change_id=-1&records=-2");
    let newest: Value = serde_json::from_slice(&newest).expect("feed");
    assert_eq!(newest["count"], 2);
    let (status, _) = get(port, "/v2/_trust/changefeed?records=x");
    assert_eq!(status, 400);

    // delegation remove, then delete everything on the server.
    n.ok(&["delegation", "remove", gun, "targets/releases", "-y", "-p"]);
    assert!(!n.ok(&["delegation", "list", gun]).contains("targets/releases"));
    // The open loopback registry takes anonymous pushes, not deletes: the
    // notary CLI (credentials only from a terminal) is told to log in; the
    // admin deletes on the socket.
    let refused = n.fails(&["delete", gun, "--remote"]);
    assert!(refused.contains("not authorized"), "{refused}");
    let deleted = common::http_unix(&d.socket, "DELETE", &format!("/v2/{gun}/_trust/tuf/"), &[], b"");
    assert!(deleted.status < 300, "{}: {}", deleted.status, deleted.text());
    let out = n.fails(&["list", gun]);
    assert!(out.contains("does not have trust data"), "{out}");
    let (_, feed) = get(port, &format!("/v2/{gun}/_trust/changefeed?change_id=-1&records=-1"));
    let feed: Value = serde_json::from_slice(&feed).expect("feed");
    assert_eq!(feed["records"][0]["Category"], "deletion");

    // Trust data survives a daemon restart (it is in the store).
    let gun2 = format!("{listen}/library/kept");
    n.ok(&["init", &gun2, "-p"]);
    n.ok(&["add", &gun2, "kept", file, "-p"]);
    let mut d = d;
    d.stop();
    d.spawn();
    assert_eq!(n.list(&gun2), vec![("kept".into(), "targets".into())]);
    n.ok(&["add", &gun2, "after-restart", file, "-p"]);
    assert_eq!(n.list(&gun2).len(), 2);
}
