//! `berth scan` end to end against a real daemon: every report format,
//! `--fail-on` exit codes, the vulnerability database (OSV fixtures written
//! here), the `image vulnerable` event and webhook after a newer import,
//! `berth vulndb update` from a loopback server of OSV exports (and on a
//! schedule), scanner plugins (the built-in checks, the shipped `secrets`
//! check and the misbehaving test plugins), functional tests, certification
//! records and their signatures, and scans on push.
//!
//! Besides busybox (no package database), the tests build a small OCI image
//! with a dpkg `status`, a Python dist-info, an os-release, a planted secret
//! and a HEALTHCHECK. Plugins come from `BERTH_TEST_PLUGINS` (set by `cargo
//! xtask test`; default `target/plugins`): `dist/<name>/` for shipped ones,
//! `wasm32-wasip2/release/<crate>.wasm` for test plugins. The berth binary
//! must embed the shipped ones (built after them, as `cargo xtask test` does).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use common::{free_port, images_dir, wait_for, Daemon};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const AWS_KEY: &str = "AKIAZ7Q3VX5P2LMNB4RT";

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn plugins_dir() -> PathBuf {
    let dir = std::env::var_os("BERTH_TEST_PLUGINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/plugins"));
    assert!(
        dir.join("dist/secrets/plugin.wasm").is_file() && dir.join("wasm32-wasip2/release/test_loop.wasm").is_file(),
        "the built plugins are missing under {} (BERTH_TEST_PLUGINS): run `cargo xtask plugins` \
         (needs the Rust target wasm32-wasip2)",
        dir.display()
    );
    dir
}

/// A plugin directory for a test plugin crate, with its manifest written here.
fn test_plugin(work: &Path, name: &str) -> PathBuf {
    let wasm = std::fs::read(
        plugins_dir()
            .join("wasm32-wasip2/release")
            .join(format!("{}.wasm", name.replace('-', "_"))),
    )
    .unwrap();
    let dir = work.join(format!("plugin-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("plugin.wasm"), &wasm).unwrap();
    let manifest = json!({
        "schemaVersion": 1, "name": name, "version": "0.1.0", "world": "scanner-check",
        "worldVersion": "0.1.0", "digest": digest(&wasm), "description": format!("test plugin {name}"),
    });
    std::fs::write(dir.join("plugin.json"), manifest.to_string()).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Writes `content` into an OCI layout's blobs; its digest and size.
fn oci_blob(layout: &Path, content: &[u8]) -> (String, usize) {
    let d = digest(content);
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(d.trim_start_matches("sha256:")), content).unwrap();
    (d, content.len())
}

/// The test application image: busybox as its shell, a dpkg database with
/// zlib1g (source zlib), Python `requests` 2.25.0 (Apache-2.0), Debian 12's
/// os-release, an AWS key in `/app/config.env`, a HEALTHCHECK. Returns the
/// OCI layout tarball, tagged `app:1`.
fn app_image(work: &Path) -> PathBuf {
    let root = work.join("app-rootfs");
    let w = |path: &str, content: &str| {
        let p = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    };
    w(
        "/var/lib/dpkg/status",
        "Package: zlib1g\nStatus: install ok installed\nPriority: optional\nSection: libs\n\
         Installed-Size: 160\nMaintainer: Mark Brown <broonie@debian.org>\nArchitecture: amd64\n\
         Multi-Arch: same\nSource: zlib\nVersion: 1:1.2.13.dfsg-1\nDescription: compression library - runtime\n\n",
    );
    w(
        "/usr/lib/os-release",
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n",
    );
    w(
        "/usr/lib/python3/dist-packages/requests-2.25.0.dist-info/METADATA",
        "Metadata-Version: 2.1\nName: requests\nVersion: 2.25.0\nLicense: Apache 2.0\n\nPython HTTP for Humans.\n",
    );
    w(
        "/app/config.env",
        &format!("REGION=eu-west-1\nACCESS_KEY_ID={AWS_KEY}\n"),
    );
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::os::unix::fs::symlink("../usr/lib/os-release", root.join("etc/os-release")).unwrap();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy(
        images_dir().join("busybox-bundle/rootfs/bin/busybox"),
        root.join("bin/busybox"),
    )
    .expect("busybox from the test image (cargo xtask image)");
    for applet in ["sh", "sleep", "test", "true", "false", "cat"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    let tar = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .args(["--owner=0", "--group=0", "--mtime=@0", "--sort=name", "-cf", "-", "."])
        .output()
        .unwrap();
    assert!(tar.status.success(), "tar: {}", String::from_utf8_lossy(&tar.stderr));
    let layout = work.join("app-layout");
    let (layer_digest, layer_size) = oci_blob(&layout, &tar.stdout);
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "config": {
            "Env": ["PATH=/bin"], "Cmd": ["/bin/sh", "-c", "sleep 60"],
            "Healthcheck": {"Test": ["CMD-SHELL", "test -f /usr/lib/os-release"]},
        },
        "rootfs": {"type": "layers", "diff_ids": [digest(&tar.stdout)]},
    });
    let (config_digest, config_size) = oci_blob(&layout, &serde_json::to_vec(&config).unwrap());
    let manifest = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
    });
    let (manifest_digest, manifest_size) = oci_blob(&layout, &serde_json::to_vec(&manifest).unwrap());
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest_size,
        "annotations": {"org.opencontainers.image.ref.name": "app:1"},
    }]});
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    std::fs::write(layout.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let out = work.join("app-oci.tar");
    let packed = Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&out)
        .arg(".")
        .output()
        .unwrap();
    assert!(packed.status.success());
    out
}

fn load_app(d: &Daemon) {
    let tar = app_image(d.dir.path());
    let out = d.ok(&["image", "load", "-i", s(&tar)]);
    assert!(out.contains("app:1"), "{out}");
}

/// An OSV record for a Debian 12 source package or a PyPI package.
fn osv(id: &str, ecosystem: &str, package: &str, fixed: &str, vector: &str, modified: &str) -> Value {
    json!({
        "schema_version": "1.6.0", "id": id, "modified": modified,
        "summary": format!("{package} is vulnerable ({id})"),
        "severity": [{"type": "CVSS_V3", "score": vector}],
        "affected": [{
            "package": {"ecosystem": ecosystem, "name": package},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}],
        }],
    })
}

const CRITICAL: &str = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H";
const HIGH: &str = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N";

fn scan_json(d: &Daemon, args: &[&str]) -> Value {
    let mut all = vec!["scan", "--format", "json", "-q"];
    all.extend_from_slice(args);
    serde_json::from_str(&d.ok(&all)).unwrap()
}

fn ids(report: &Value) -> Vec<String> {
    report["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect()
}

fn records(d: &Daemon, image: &str) -> Vec<Value> {
    serde_json::from_str::<Vec<Value>>(&d.ok(&["scan", "ls", "--image", image, "--format", "json"])).unwrap()
}

#[test]
fn busybox_in_every_format_with_signed_records() {
    let d = Daemon::start();
    d.load_busybox();
    let table = d.ok(&["scan", "busybox"]);
    assert!(
        table.contains("Image:    busybox") && table.contains("Components: 0"),
        "{table}"
    );

    let report = scan_json(&d, &["busybox"]);
    assert_eq!(report["image"]["reference"], "busybox");
    assert!(report["image"]["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(report["optimization"]["layer_count"], 1);
    let files = report["optimization"]["layers"][0]["files"].as_u64().unwrap();
    assert!(files >= 2, "busybox has its binary and the probe: {report}");

    let spdx: Value = serde_json::from_str(&d.ok(&["scan", "busybox", "--format", "spdx-json", "-q"])).unwrap();
    assert_eq!(spdx["spdxVersion"], "SPDX-2.3");
    assert!(spdx["documentNamespace"].as_str().unwrap().starts_with("urn:uuid:"));
    let bom: Value = serde_json::from_str(&d.ok(&["scan", "busybox", "--format", "cyclonedx-json", "-q"])).unwrap();
    assert_eq!(bom["bomFormat"], "CycloneDX");
    assert_eq!(bom["specVersion"], "1.5");
    let out = d.dir.path().join("busybox.sarif");
    d.ok(&["scan", "busybox", "--format", "sarif", "-q", "-o", s(&out)]);
    let sarif: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    assert_eq!(sarif["runs"][0]["tool"]["driver"]["name"], "berth");

    // Clear errors.
    let (code, err) = d.fails(&["scan", "nosuch:image"]);
    assert_ne!(code, 0);
    assert!(err.contains("no such image"), "{err}");
    let (_, err) = d.fails(&["scan", "busybox", "--format", "xml"]);
    assert!(err.contains("invalid value 'xml'"), "{err}");
    let (_, err) = d.fails(&["scan", "busybox", "--severity", "huge"]);
    assert!(err.contains("unknown severity \"huge\""), "{err}");
    let (_, err) = d.fails(&["scan", "busybox", "--fail-on", "bad"]);
    assert!(err.contains("--fail-on") && err.contains("unknown severity"), "{err}");
    let (_, err) = d.fails(&["scan", "busybox", "--checks", "nosuchcheck"]);
    assert!(err.contains("unknown check \"nosuchcheck\""), "{err}");
    let (_, err) = d.fails(&["scan", "busybox", "--deny-license", "@@@"]);
    assert!(
        err.contains("--deny-license") && err.contains("neither an SPDX license id nor a class"),
        "{err}"
    );

    // Every scan left a signed record, verified offline with the CA.
    let listed = records(&d, "busybox");
    assert_eq!(listed.len(), 5, "{listed:?}");
    assert!(listed.iter().all(|r| r["signed"] == true && r["trigger"] == "scan"));
    let id = listed[0]["id"].as_str().unwrap();
    let ca = d.data_root().join("pki/ca.pem");
    let verified = d.ok(&["scan", "verify", id, "--ca", s(&ca)]);
    assert!(
        verified.contains("Verified: scan record") && verified.contains(id),
        "{verified}"
    );
    let saved = d.dir.path().join("record.json");
    std::fs::write(&saved, d.ok(&["scan", "inspect", &id[..10]])).unwrap();
    d.ok(&["scan", "verify", "--file", s(&saved), "--ca", s(&ca)]);
    let tampered =
        std::fs::read_to_string(&saved)
            .unwrap()
            .replacen(r#"\"trigger\":\"scan\""#, r#"\"trigger\":\"push\""#, 1);
    std::fs::write(&saved, tampered).unwrap();
    let (code, err) = d.fails(&["scan", "verify", "--file", s(&saved), "--ca", s(&ca)]);
    assert_eq!(code, 1);
    assert!(err.contains("does not match"), "{err}");
    // Another cluster's CA does not verify this cluster's records.
    let other = Daemon::start();
    let (_, err) = d.fails(&["scan", "verify", id, "--ca", s(&other.data_root().join("pki/ca.pem"))]);
    assert!(err.contains("does not match"), "{err}");
}

/// `berth events --format json`, known to be subscribed: a tag of `image`
/// made after it started came through. Killed when dropped.
struct Events {
    child: std::process::Child,
    rx: mpsc::Receiver<Value>,
}

impl Events {
    fn start(d: &Daemon, image: &str) -> Events {
        let mut child = d
            .cmd(&["events", "--format", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        let events = Events { child, rx };
        // Tag until a tag shows on the stream: it is subscribed from then on.
        for n in 0..100 {
            let marker = format!("subscribed/marker:{n}");
            d.ok(&["tag", image, &marker]);
            let seen = events.next_within(Duration::from_millis(200), |e| {
                e["action"] == "tag" && e["attributes"]["name"].as_str().is_some_and(|n| n.ends_with(&marker))
            });
            d.ok(&["rmi", &marker]);
            if seen.is_some() {
                return events;
            }
        }
        panic!("the event stream never showed a tag");
    }

    /// The next event `wanted` accepts, the others skipped, within `limit`.
    fn next_within(&self, limit: Duration, wanted: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(e) if wanted(&e) => return Some(e),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    fn next(&self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        self.next_within(Duration::from_secs(30), wanted)
            .unwrap_or_else(|| panic!("no {what} event"))
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `image scan` event that ends the handling of a push of `name`.
fn push_outcome(events: &Events, name: &str) -> String {
    let e = events.next("image scan", |e| {
        e["action"] == "scan" && e["attributes"]["trigger"] == "push" && e["attributes"]["name"] == name
    });
    e["attributes"]["outcome"].as_str().unwrap_or_default().to_string()
}

/// A webhook request as a loopback listener saw it.
struct Hooked {
    /// What the listener answered.
    status: u16,
    signature: String,
    body: String,
}

/// A loopback webhook receiver that answers 500 to the first request (so
/// the daemon must retry) and 200 after.
fn webhook_listener() -> (String, mpsc::Receiver<Hooked>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            let mut signature = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if let Some(v) = lower.strip_prefix("x-berth-signature-256:") {
                    signature = v.trim().to_string();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            let status = if n == 0 { 500 } else { 200 };
            let _ = stream
                .write_all(format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes());
            let hooked = Hooked {
                status,
                signature,
                body: String::from_utf8_lossy(&body).into_owned(),
            };
            if tx.send(hooked).is_err() {
                return;
            }
        }
    });
    (url, rx)
}

/// The next delivery the receiver accepted, its signature checked against
/// the webhook's secret (as `berth scan webhooks ls` names its file).
fn accepted_webhook(d: &Daemon, bodies: &mpsc::Receiver<Hooked>) -> Value {
    let hooked = bodies.recv_timeout(Duration::from_secs(30)).expect("a webhook");
    assert_eq!(hooked.status, 200, "the receiver refused it: {}", hooked.body);
    let hooks: Value = serde_json::from_str(&d.ok(&["scan", "webhooks", "ls", "--format", "json"])).unwrap();
    let file = hooks[0]["secretFile"].as_str().expect("secret file");
    let secret = hex::decode(std::fs::read_to_string(file).unwrap().trim()).unwrap();
    assert_eq!(
        hooked.signature,
        berth_engine::webhooks::signature(&secret, hooked.body.as_bytes()),
        "the payload's signature"
    );
    serde_json::from_str(&hooked.body).unwrap()
}

#[test]
fn vulndb_import_finds_vulnerabilities_and_a_newer_import_notifies() {
    let (hook, bodies) = webhook_listener();
    let hook_host = hook.trim_end_matches("/hook").to_string();
    let d = Daemon::start_with_args(&["--scan-webhook", &hook]);
    load_app(&d);
    let work = d.dir.path();

    // Before any import: components, no vulnerabilities, no database version.
    let report = scan_json(&d, &["app:1", "--checks", "none"]);
    let names: Vec<&str> = report["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"zlib1g") && names.contains(&"requests"), "{report}");
    assert_eq!(report["os"]["id"], "debian");
    assert_eq!(report["os"]["pretty_name"], "Debian GNU/Linux 12 (bookworm)");
    assert!(ids(&report).is_empty());
    d.ok(&["scan", "app:1", "--checks", "none", "--fail-on", "low", "-q"]);

    // A directory of OSV records: zlib (Debian 12) is vulnerable; a Debian 11
    // record and a fixed-before-installed one do not apply.
    let v1 = work.join("osv-v1");
    std::fs::create_dir_all(v1.join("Debian")).unwrap();
    let advisories = [
        osv(
            "DSA-9001-1",
            "Debian:12",
            "zlib",
            "1:1.2.13.dfsg-2",
            CRITICAL,
            "2024-01-01T00:00:00Z",
        ),
        osv(
            "DSA-9002-1",
            "Debian:11",
            "zlib",
            "1:1.2.13.dfsg-3",
            CRITICAL,
            "2024-01-01T00:00:00Z",
        ),
        osv(
            "DSA-9003-1",
            "Debian:12",
            "zlib",
            "1:1.2.12-1",
            HIGH,
            "2024-01-01T00:00:00Z",
        ),
    ];
    for r in &advisories {
        std::fs::write(
            v1.join("Debian").join(format!("{}.json", r["id"].as_str().unwrap())),
            r.to_string(),
        )
        .unwrap();
    }
    let imported = d.ok(&["vulndb", "import", s(&v1)]);
    assert!(imported.contains("Imported 3 records"), "{imported}");
    // app:1 was scanned before: the import alone makes it vulnerable.
    assert!(
        imported.contains("Newly vulnerable: app:1 (1 new findings"),
        "{imported}"
    );
    // The receiver's first answer is 500: the daemon tries again, the same
    // payload with the same signature, and the second is accepted.
    let refused = bodies.recv_timeout(Duration::from_secs(20)).expect("a webhook");
    assert_eq!(refused.status, 500);
    let body = accepted_webhook(&d, &bodies);
    assert_eq!(
        body.to_string(),
        serde_json::from_str::<Value>(&refused.body).unwrap().to_string()
    );
    assert_eq!(body["newFindings"], json!(["DSA-9001-1 zlib1g@1:1.2.13.dfsg-1"]));
    let hooks: Value = serde_json::from_str(&d.ok(&["scan", "webhooks", "ls", "--format", "json"])).unwrap();
    let hook = &hooks[0];
    assert_eq!(hook["target"], hook_host, "{hooks}");
    assert!(!hooks.to_string().contains("/hook"), "the URL's path is shown: {hooks}");
    assert_eq!(
        (
            &hook["state"],
            &hook["delivered"],
            &hook["failed"],
            &hook["attempts"],
            &hook["lastResult"]
        ),
        (&json!("delivered"), &json!(1), &json!(0), &json!(2), &json!("200")),
        "{hooks}"
    );
    let status: Value = serde_json::from_str(&d.ok(&["vulndb", "status", "--format", "json"])).unwrap();
    assert_eq!(status["advisories"], 3);
    assert_eq!(status["ecosystems"]["Debian"], 3, "{status}");

    let report = scan_json(&d, &["app:1", "--checks", "none"]);
    assert_eq!(ids(&report), vec!["DSA-9001-1"], "{report}");
    let finding = &report["vulnerabilities"][0];
    assert_eq!(finding["severity"], "critical");
    assert_eq!(finding["package"], "zlib1g");
    assert_eq!(finding["fixed_version"], "1:1.2.13.dfsg-2");
    assert!(report["database_version"].as_str().unwrap().contains("sha256:"));
    let table = d.ok(&["scan", "app:1", "--checks", "none"]);
    assert!(table.contains("DSA-9001-1"), "{table}");

    // --fail-on: exit 1 at or below the finding's severity, 0 above none; an
    // ignore rule takes the finding out of the count, the report still shows it.
    let (code, err) = d.fails(&["scan", "app:1", "--checks", "none", "--fail-on", "high", "-q"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("1 vulnerabilities"), "{err}");
    let ignore = work.join("ignore.yaml");
    std::fs::write(&ignore, "- id: DSA-9001-1\n  reason: not reachable in this image\n").unwrap();
    let out = d.ok(&[
        "scan",
        "app:1",
        "--checks",
        "none",
        "--fail-on",
        "low",
        "--ignore-file",
        s(&ignore),
        "--format",
        "json",
        "-q",
    ]);
    let ignored: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(ignored["vulnerabilities"][0]["ignored"], "not reachable in this image");
    // A denied license fails the scan: requests is Apache-2.0.
    let (code, err) = d.fails(&[
        "scan",
        "app:1",
        "--checks",
        "none",
        "--deny-license",
        "Apache-2.0",
        "-q",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("denied license"), "{err}");

    // A newer export (an all.zip) makes requests vulnerable: the event and
    // the webhook say so, with a new record re-evaluated from the stored one.
    let events = Events::start(&d, "app:1");
    let zip_dir = work.join("osv-v2");
    std::fs::create_dir_all(zip_dir.join("PyPI")).unwrap();
    let py = osv(
        "GHSA-test-0001",
        "PyPI",
        "requests",
        "2.31.0",
        HIGH,
        "2024-02-01T00:00:00Z",
    );
    let status = Command::new("python3")
        .arg("-c")
        .arg("import sys,zipfile; z=zipfile.ZipFile(sys.argv[1],'w'); z.writestr('GHSA-test-0001.json', sys.argv[2]); z.close()")
        .arg(zip_dir.join("PyPI/all.zip"))
        .arg(py.to_string())
        .status()
        .expect("python3 (Debian package python3) writes the test zip");
    assert!(status.success());
    let imported = d.ok(&["vulndb", "import", s(&zip_dir)]);
    assert!(imported.contains("Newly vulnerable: app:1"), "{imported}");
    let event = events.next("image vulnerable", |e| e["action"] == "vulnerable");
    drop(events);
    assert_eq!(event["type"], "image");
    assert_eq!(event["action"], "vulnerable");
    assert_eq!(event["attributes"]["name"], "app:1");
    assert_eq!(event["attributes"]["newFindings"], "1");
    let body = accepted_webhook(&d, &bodies);
    assert_eq!(body["event"], "image.vulnerable");
    assert_eq!(body["image"], "app:1");
    assert_eq!(body["newFindings"], json!(["GHSA-test-0001 requests@2.25.0"]));
    let latest = &records(&d, "app:1")[0];
    assert_eq!(latest["trigger"], "vulndb");
    assert_eq!(latest["id"], body["record"]);
    let record: Value = serde_json::from_str(&d.ok(&["scan", "inspect", latest["id"].as_str().unwrap()])).unwrap();
    let mut found = ids(&record["record"]["report"]);
    found.sort();
    assert_eq!(found, vec!["DSA-9001-1", "GHSA-test-0001"]);

    // The same data again changes nothing and notifies nobody: an import
    // queues its notifications before it answers, so none is pending or
    // sent after it (both earlier ones counted as delivered first).
    let hooks = || -> Value { serde_json::from_str(&d.ok(&["scan", "webhooks", "ls", "--format", "json"])).unwrap() };
    wait_for("both notifications counted", || hooks()[0]["delivered"] == 2);
    let again = d.ok(&["vulndb", "import", s(&zip_dir)]);
    assert!(!again.contains("Newly vulnerable"), "{again}");
    let after = hooks();
    assert_eq!(
        (&after[0]["pending"], &after[0]["delivered"]),
        (&json!(0), &json!(2)),
        "{after}"
    );
    assert!(bodies.try_recv().is_err(), "a notification was sent");
}

#[test]
fn plugins_find_the_planted_secret_and_misbehaving_ones_fail_alone() {
    let d = Daemon::start_with_args(&["--plugin-timeout", "2s"]);
    load_app(&d);
    let work = d.dir.path().to_path_buf();
    let dist = plugins_dir().join("dist");

    let (_, err) = {
        let o = d
            .cmd(&["plugin", "install", s(&dist.join("secrets"))])
            .env("BERTH_CONTENT_TRUST", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!o.status.success());
        (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    assert!(err.contains("content trust is on"), "{err}");

    // The shipped checks are built in: one removed installs again from its package.
    assert_eq!(builtin_checks(&d).len(), 3);
    let (_, err) = d.fails(&["plugin", "install", s(&dist.join("secrets"))]);
    assert!(err.contains("plugin secrets 0.1.0 is already installed"), "{err}");
    d.ok(&["plugin", "rm", "secrets"]);
    let out = d.ok(&["plugin", "install", s(&dist.join("secrets"))]);
    assert!(
        out.contains("Installed secrets 0.1.0") && out.contains("enabled"),
        "{out}"
    );
    for name in ["test-loop", "test-alloc", "test-trap"] {
        d.ok(&["plugin", "install", s(&test_plugin(&work, name))]);
    }
    let listed: Vec<Value> = serde_json::from_str(&d.ok(&["plugin", "ls", "--format", "json"])).unwrap();
    assert_eq!(listed.len(), 6, "{listed:?}");
    let builtin: Vec<&str> = listed
        .iter()
        .filter(|p| p["builtin"] == true)
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(builtin, ["config-risks", "file-permissions", "secrets"], "{listed:?}");
    let inspected: Value = serde_json::from_str(&d.ok(&["plugin", "inspect", "secrets"])).unwrap();
    assert_eq!(inspected["world"], "scanner-check");

    let report = scan_json(&d, &["app:1"]);
    let findings = report["check_findings"].as_array().unwrap();
    let secret = findings
        .iter()
        .find(|f| f["check"] == "secrets" && f["rule"] == "aws-access-key")
        .unwrap_or_else(|| panic!("no aws-access-key finding: {report}"));
    assert_eq!(secret["path"], "/app/config.env");
    assert!(
        !report.to_string().contains(AWS_KEY),
        "the report must not quote the secret"
    );
    let mut failed: Vec<(String, String)> = report["check_failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["check"].as_str().unwrap().to_string(),
                f["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    failed.sort();
    assert_eq!(failed.len(), 3, "{failed:?}");
    assert_eq!(failed[0].0, "test-alloc");
    assert!(failed[0].1.contains("out of memory"), "{failed:?}");
    assert_eq!(failed[1].0, "test-loop");
    assert!(failed[1].1.contains("ran longer than its limit"), "{failed:?}");
    assert_eq!(failed[2].0, "test-trap");
    assert!(failed[2].1.contains("crashed"), "{failed:?}");
    // The secret is a high finding: --fail-on high fails, critical does not.
    d.fails(&["scan", "app:1", "--checks", "secrets", "--fail-on", "high", "-q"]);
    d.ok(&["scan", "app:1", "--checks", "secrets", "--fail-on", "critical", "-q"]);
    let none = scan_json(&d, &["app:1", "--checks", "none"]);
    assert!(none["check_findings"].as_array().unwrap().is_empty());

    // Disabled: not run, and not selectable.
    d.ok(&["plugin", "disable", "secrets"]);
    let (_, err) = d.fails(&["scan", "app:1", "--checks", "secrets"]);
    assert!(err.contains("unknown check \"secrets\""), "{err}");
    d.ok(&["plugin", "enable", "secrets"]);
    for name in ["test-loop", "test-alloc", "test-trap"] {
        d.ok(&["plugin", "rm", name]);
    }
    let (_, err) = d.fails(&["plugin", "inspect", "test-loop"]);
    assert!(err.contains("not installed"), "{err}");
    assert!(
        !d.ok(&["plugin", "ls"]).contains("test-loop"),
        "removed plugins are not listed"
    );
}

#[test]
fn plugins_travel_through_a_registry_as_oci_artifacts() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let d = Daemon::start_with_args(&["--insecure-listen", &listen]);
    d.load_busybox();
    let events = Events::start(&d, "busybox");
    // file-permissions is built in.
    assert_eq!(builtin_checks(&d).len(), 3);
    let reference = format!("{listen}/plugins/file-permissions:0.1.0");
    let out = d.ok(&["plugin", "push", "file-permissions", &reference]);
    assert!(out.contains("digest: sha256:"), "{out}");
    d.ok(&["plugin", "rm", "file-permissions"]);
    let out = d.ok(&["plugin", "install", &reference]);
    assert!(out.contains("Installed file-permissions 0.1.0"), "{out}");
    let (_, err) = d.fails(&["plugin", "install", &format!("{listen}/plugins/nothing:1")]);
    assert!(err.contains("answered 404"), "{err}");
    // A plugin artifact pushed to the registry is not an image: no scan on push.
    assert_eq!(push_outcome(&events, "plugins/file-permissions:0.1.0"), "skipped");
    assert!(records(&d, "plugins/file-permissions:0.1.0").is_empty());
}

/// The built-in plugins a daemon lists: (name, enabled). Panics, saying
/// how to build one that has them, when the binary embeds none.
fn builtin_checks(d: &Daemon) -> Vec<(String, bool)> {
    let listed: Vec<Value> = serde_json::from_str(&d.ok(&["plugin", "ls", "--format", "json"])).unwrap();
    let builtin: Vec<(String, bool)> = listed
        .iter()
        .filter(|p| p["builtin"] == true)
        .map(|p| (p["name"].as_str().unwrap().to_string(), p["enabled"] == true))
        .collect();
    if builtin.is_empty() {
        let log = std::fs::read_to_string(d.dir.path().join("daemon.log")).unwrap();
        assert!(
            !log.contains("has no built-in checks"),
            "{} embeds no plugins: build them first, then berth (`cargo xtask test` does; or `cargo xtask plugins` \
             and `BERTH_EMBED_PLUGINS=<target>/plugins cargo build -p berth`)",
            common::bin().display()
        );
    }
    builtin
}

#[test]
fn a_fresh_daemon_runs_the_built_in_checks_and_keeps_a_users_choice() {
    let mut d = Daemon::start();
    assert_eq!(
        builtin_checks(&d),
        [
            ("config-risks".to_string(), true),
            ("file-permissions".to_string(), true),
            ("secrets".to_string(), true),
        ]
    );
    let table = d.ok(&["plugin", "ls"]);
    assert!(table.contains("BUILT-IN"), "{table}");

    // A first scan, with no --checks, runs them.
    load_app(&d);
    let report = scan_json(&d, &["app:1"]);
    let found: Vec<(&str, &str)> = report["check_findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["check"].as_str().unwrap(), f["rule"].as_str().unwrap()))
        .collect();
    assert!(found.contains(&("secrets", "aws-access-key")), "{report}");
    assert!(found.contains(&("config-risks", "runs-as-root")), "{report}");
    assert!(report["check_failures"].as_array().unwrap().is_empty(), "{report}");

    // Disabled and removed ones stay so across restarts.
    d.ok(&["plugin", "disable", "secrets"]);
    d.ok(&["plugin", "rm", "file-permissions"]);
    d.stop();
    d.spawn();
    assert_eq!(
        builtin_checks(&d),
        [("config-risks".to_string(), true), ("secrets".to_string(), false)]
    );
    let report = scan_json(&d, &["app:1"]);
    let checks: Vec<&str> = report["check_findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    assert!(
        checks.contains(&"config-risks") && !checks.contains(&"secrets"),
        "{report}"
    );
    // Re-enabled by the user, it runs again.
    d.ok(&["plugin", "enable", "secrets"]);
    d.stop();
    d.spawn();
    assert!(builtin_checks(&d).contains(&("secrets".to_string(), true)));
}

/// A zip in osv.dev's export format: one `<id>.json` per record, deflated.
fn osv_zip(records: &[Value]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for record in records {
        zip.start_file(format!("{}.json", record["id"].as_str().unwrap()), options)
            .unwrap();
        zip.write_all(record.to_string().as_bytes()).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// What [`ExportServer`] answers: path → status and body.
type Served = Arc<Mutex<HashMap<String, (u16, Vec<u8>)>>>;

/// A loopback HTTP server of files (changed while it runs), standing in for
/// osv.dev's bucket or a mirror.
struct ExportServer {
    base: String,
    files: Served,
}

impl ExportServer {
    fn start() -> ExportServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let files: Served = Arc::default();
        let served = files.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                let _ = reader.read_line(&mut request);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                let path = request.split(' ').nth(1).unwrap_or_default().to_string();
                let (status, body) = served
                    .lock()
                    .unwrap()
                    .get(&path)
                    .cloned()
                    .unwrap_or((404, b"no such file".to_vec()));
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/zip\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        ExportServer { base, files }
    }

    fn serve(&self, path: &str, status: u16, body: Vec<u8>) {
        self.files.lock().unwrap().insert(path.to_string(), (status, body));
    }
}

#[test]
fn vulndb_update_imports_osv_exports_and_a_failed_one_changes_nothing() {
    let server = ExportServer::start();
    let source = format!("{}/osv", server.base);
    let debian_v1 = osv_zip(&[osv(
        "DSA-9001-1",
        "Debian:12",
        "zlib",
        "1:1.2.13.dfsg-2",
        CRITICAL,
        "2024-01-01T00:00:00Z",
    )]);
    server.serve("/osv/Debian/all.zip", 200, debian_v1);
    server.serve(
        "/osv/PyPI/all.zip",
        200,
        osv_zip(&[osv(
            "GHSA-test-0001",
            "PyPI",
            "requests",
            "2.31.0",
            HIGH,
            "2024-02-01T00:00:00Z",
        )]),
    );
    let d = Daemon::start();
    load_app(&d);
    // Scanned before any data: the update alone makes it vulnerable.
    assert!(ids(&scan_json(&d, &["app:1", "--checks", "none"])).is_empty());
    let status = || -> Value { serde_json::from_str(&d.ok(&["vulndb", "status", "--format", "json"])).unwrap() };
    assert_eq!(status()["version"], Value::Null);

    let out = d.ok(&[
        "vulndb",
        "update",
        "--source",
        &source,
        "--ecosystem",
        "Debian",
        "--ecosystem",
        "PyPI",
    ]);
    assert!(
        out.contains(&format!(
            "Downloaded Debian (0.0 MB, 1 records) from {source}/Debian/all.zip"
        )),
        "{out}"
    );
    assert!(out.contains("Downloaded PyPI"), "{out}");
    assert!(out.contains("Newly vulnerable: app:1 (2 new findings"), "{out}");
    let before = status();
    assert_eq!(before["advisories"], 2, "{before}");
    assert_eq!(
        (&before["ecosystems"]["Debian"], &before["ecosystems"]["PyPI"]),
        (&json!(1), &json!(1))
    );
    let latest = &records(&d, "app:1")[0];
    assert_eq!(latest["trigger"], "vulndb");
    let report = scan_json(&d, &["app:1", "--checks", "none"]);
    let mut found = ids(&report);
    found.sort();
    assert_eq!(found, ["DSA-9001-1", "GHSA-test-0001"]);
    let newest = records(&d, "app:1")[0]["id"].clone();

    // A newer Debian export is served, but the update also asks for one the
    // source does not have: nothing is imported, the error names it.
    server.serve(
        "/osv/Debian/all.zip",
        200,
        osv_zip(&[osv(
            "DSA-9004-1",
            "Debian:12",
            "zlib",
            "1:1.2.13.dfsg-9",
            HIGH,
            "2024-03-01T00:00:00Z",
        )]),
    );
    let (code, err) = d.fails(&[
        "vulndb",
        "update",
        "--source",
        &source,
        "--ecosystem",
        "Debian",
        "--ecosystem",
        "Alpine",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "ecosystem Alpine from {source}/Alpine/all.zip: the server answered 404"
        )),
        "{err}"
    );
    assert!(err.contains("the vulnerability database is unchanged"), "{err}");
    assert_eq!(status(), before);
    // A corrupt archive (a truncated one) and one without OSV records: the same.
    let whole = osv_zip(&[osv(
        "GHSA-test-0002",
        "PyPI",
        "requests",
        "2.32.0",
        HIGH,
        "2024-03-01T00:00:00Z",
    )]);
    server.serve("/osv/PyPI/all.zip", 200, whole[..whole.len() / 2].to_vec());
    let (_, err) = d.fails(&[
        "vulndb",
        "update",
        "--source",
        &source,
        "--ecosystem",
        "Debian",
        "--ecosystem",
        "PyPI",
    ]);
    assert!(
        err.contains(&format!(
            "ecosystem PyPI from {source}/PyPI/all.zip: the download: unreadable zip archive"
        )),
        "{err}"
    );
    assert_eq!(status(), before);
    server.serve("/osv/PyPI/all.zip", 200, osv_zip(&[json!({"id": "", "hello": 1})]));
    let (_, err) = d.fails(&["vulndb", "update", "--source", &source, "--ecosystem", "PyPI"]);
    assert!(
        err.contains("ecosystem PyPI from") && err.contains("holds no OSV records"),
        "{err}"
    );
    assert_eq!(status(), before);
    let (_, err) = d.fails(&[
        "vulndb",
        "update",
        "--source",
        "ftp://mirror/osv",
        "--ecosystem",
        "PyPI",
    ]);
    assert!(err.contains("is not an http:// or https:// URL"), "{err}");
    assert_eq!(
        records(&d, "app:1")[0]["id"],
        newest,
        "no re-evaluation after a failed update"
    );

    // The newer Debian export alone imports.
    let out = d.ok(&["vulndb", "update", "--source", &source, "--ecosystem", "Debian"]);
    assert!(out.contains("Newly vulnerable: app:1 (1 new findings"), "{out}");
    assert_eq!(status()["advisories"], 3);

    // On a schedule: a daemon with no database updates from its source at once.
    let scheduled = Daemon::start_with_args(&[
        "--vulndb-update-interval",
        "24h",
        "--vulndb-source",
        &source,
        "--vulndb-ecosystem",
        "Debian",
    ]);
    wait_for("the scheduled update", || {
        let status: Value = serde_json::from_str(&scheduled.ok(&["vulndb", "status", "--format", "json"])).unwrap();
        status["ecosystems"]["Debian"] == 1
    });
}

#[test]
fn functional_tests_run_in_a_throwaway_container() {
    let d = Daemon::start();
    d.load_busybox();
    load_app(&d);
    let passed = scan_json(
        &d,
        &[
            "busybox",
            "--checks",
            "none",
            "--test",
            "echo hello from the test; true",
        ],
    );
    assert_eq!(passed["functional_test"]["passed"], true);
    assert_eq!(passed["functional_test"]["exit_code"], 0);
    assert!(passed["functional_test"]["output"]
        .as_str()
        .unwrap()
        .contains("hello from the test"));

    let (code, err) = d.fails(&["scan", "busybox", "--checks", "none", "--test", "false", "-q"]);
    assert_eq!(code, 1);
    assert!(err.contains("the functional test failed with exit code 1"), "{err}");
    let (code, err) = d.fails(&[
        "scan",
        "busybox",
        "--checks",
        "none",
        "--test",
        "sleep 30",
        "--test-timeout",
        "1s",
        "-q",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("did not finish"), "{err}");
    // Networking is off inside the test.
    let net = scan_json(&d, &["busybox", "--checks", "none", "--test", "cat /proc/net/dev"]);
    let output = net["functional_test"]["output"].as_str().unwrap();
    assert!(output.contains("lo:") && !output.contains("eth0"), "{output}");

    let health = scan_json(
        &d,
        &[
            "app:1",
            "--checks",
            "none",
            "--test-healthcheck",
            "--test-timeout",
            "20s",
        ],
    );
    assert_eq!(health["functional_test"]["passed"], true, "{health}");
    let (_, err) = d.fails(&["scan", "busybox", "--test-healthcheck"]);
    assert!(err.contains("has no HEALTHCHECK"), "{err}");
    assert_eq!(d.container_count(), 0, "test containers are removed");
}

#[test]
fn images_pushed_to_the_registry_are_scanned_in_the_background() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let d = Daemon::start_with_args(&["--insecure-listen", &listen]);
    load_app(&d);
    let name = format!("{listen}/scan/app:1");
    d.ok(&["tag", "app:1", &name]);
    d.ok(&["push", &name]);
    wait_for("a record of the pushed image", || !records(&d, "scan/app:1").is_empty());
    let record = &records(&d, "scan/app:1")[0];
    assert_eq!(record["trigger"], "push");
    let full: Value = serde_json::from_str(&d.ok(&["scan", "inspect", record["id"].as_str().unwrap()])).unwrap();
    let components = full["record"]["report"]["components"].as_array().unwrap();
    assert!(components.iter().any(|c| c["name"] == "zlib1g"), "{full}");

    // With scans on push off, a push leaves no record.
    let quiet_listen = format!("127.0.0.1:{}", free_port());
    let quiet = Daemon::start_with_args(&["--insecure-listen", &quiet_listen, "--scan-on-push", "false"]);
    load_app(&quiet);
    let events = Events::start(&quiet, "app:1");
    let quiet_name = format!("{quiet_listen}/scan/app:1");
    quiet.ok(&["tag", "app:1", &quiet_name]);
    quiet.ok(&["push", &quiet_name]);
    assert_eq!(push_outcome(&events, "scan/app:1"), "off");
    assert!(records(&quiet, "scan/app:1").is_empty());
}
