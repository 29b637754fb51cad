//! berth against the real Notary: metadata berth builds is accepted by
//! notary-server, berth's client verifies what notary-server serves
//! (including the snapshot and timestamp it generates over berth's bytes),
//! and the notary CLI reads and extends a repository berth created.
//!
//! Needs the Debian package `notary` (`/usr/bin/notary-server`,
//! `/usr/bin/notary`). Everything listens on and talks to 127.0.0.1 only.

#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_notary::builder::RepoEditor;
use berth_notary::client::{self, FetchError};
use berth_notary::crypto::{create_root_certificate, SoftwareSigner};
use berth_notary::keys::{PublicKey, Signer};
use berth_notary::keystore::{self, Passphrase};
use berth_notary::metadata::{FileMeta, RoleName};
use berth_notary::repo::TrustPinning;
use chrono::Utc;
use tempfile::TempDir;

const NOTARY_SERVER: &str = "/usr/bin/notary-server";
const NOTARY: &str = "/usr/bin/notary";
const GUN: &str = "registry.example/berth/interop";
const PASS: &str = "berth-interop-pass";

/// A notary-server with in-memory storage; killed (by pid) on drop.
struct NotaryServer {
    child: Child,
    url: String,
    _dir: TempDir,
}

impl NotaryServer {
    fn start() -> NotaryServer {
        assert!(
            Path::new(NOTARY_SERVER).exists(),
            "{NOTARY_SERVER} is missing: install the Debian package `notary` (apt-get install notary)"
        );
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = TempDir::new().unwrap();
        let config = dir.path().join("server.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"server": {{"http_addr": "127.0.0.1:{port}"}}, "trust_service": {{"type": "local"}},
                    "storage": {{"backend": "memory"}}, "logging": {{"level": "error"}}}}"#
            ),
        )
        .unwrap();
        let child = Command::new(NOTARY_SERVER)
            .arg("-config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = NotaryServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while ureq::get(format!("{}/v2/", server.url)).call().is_err() {
            assert!(
                Instant::now() < deadline,
                "notary-server did not come up on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn tuf_url(&self, name: &str) -> String {
        format!("{}/v2/{GUN}/_trust/tuf/{name}", self.url)
    }

    fn get(&self, name: &str, max: u64) -> Result<Vec<u8>, FetchError> {
        match ureq::get(self.tuf_url(name)).call() {
            Ok(mut response) => response
                .body_mut()
                .with_config()
                .limit(max + 1)
                .read_to_vec()
                .map_err(|e| FetchError::Other(e.to_string())),
            Err(ureq::Error::StatusCode(404)) => Err(FetchError::NotFound),
            Err(e) => Err(FetchError::Other(e.to_string())),
        }
    }

    fn key(&self, role: &str) -> PublicKey {
        serde_json::from_slice(&self.get(&format!("{role}.key"), 1 << 16).unwrap()).unwrap()
    }

    /// `POST .../_trust/tuf/` with one multipart part per file, as the notary
    /// client sends them.
    fn publish(&self, files: &[(RoleName, Vec<u8>)]) {
        let boundary = "berth-interop-boundary-7c1f";
        let mut body = Vec::new();
        for (role, bytes) in files {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{role}.json\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let response = ureq::post(format!("{}/v2/{GUN}/_trust/tuf/", self.url))
            .config()
            .http_status_as_error(false)
            .build()
            .header("Content-Type", format!("multipart/form-data; boundary={boundary}"))
            .send(&body[..])
            .unwrap();
        let status = response.status();
        let text = response.into_body().read_to_string().unwrap_or_default();
        assert_eq!(status, 200, "notary-server refused the update: {text}");
    }
}

impl Drop for NotaryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn notary(server: &NotaryServer, trust_dir: &Path, args: &[&str]) -> String {
    assert!(
        Path::new(NOTARY).exists(),
        "{NOTARY} is missing: install the Debian package `notary` (apt-get install notary)"
    );
    let out = Command::new(NOTARY)
        .arg("-s")
        .arg(&server.url)
        .arg("-d")
        .arg(trust_dir)
        .args(args)
        .env("NOTARY_ROOT_PASSPHRASE", PASS)
        .env("NOTARY_TARGETS_PASSPHRASE", PASS)
        .env("NOTARY_SNAPSHOT_PASSPHRASE", PASS)
        .env("NOTARY_DELEGATION_PASSPHRASE", PASS)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "notary {args:?} failed: {text}");
    text
}

#[test]
fn berth_repository_on_notary_server_read_by_berth_and_the_notary_cli() {
    let server = NotaryServer::start();
    let now = Utc::now();

    // berth creates the repository; notary-server holds timestamp and snapshot keys.
    let root_key = SoftwareSigner::generate_ecdsa();
    let root_cert = create_root_certificate(&root_key, GUN, now).unwrap();
    let targets_key = SoftwareSigner::generate_ecdsa();
    let releases_key = SoftwareSigner::generate_ed25519();
    let mut editor = RepoEditor::create(
        GUN,
        &[root_cert],
        &[targets_key.public_key().clone()],
        &[server.key("snapshot")],
        &[server.key("timestamp")],
        now,
    )
    .unwrap();
    let manifest = br#"{"schemaVersion":2}"#;
    editor
        .add_target(&RoleName::Targets, "latest", FileMeta::from_bytes(manifest), now)
        .unwrap();
    // Go escapes <, > and & when it writes metadata; notary-server hashes
    // its own re-encoding of targets.json, so berth must write the same bytes.
    editor
        .add_target(&RoleName::Targets, "odd<name>&co", FileMeta::from_bytes(b"odd"), now)
        .unwrap();
    let releases = RoleName::parse("targets/releases").unwrap();
    editor
        .add_delegation(&releases, &[releases_key.public_key().clone()], 1, &["".into()], now)
        .unwrap();
    editor
        .add_target(&releases, "v1.0", FileMeta::from_bytes(b"release manifest"), now)
        .unwrap();
    let signers: [&dyn Signer; 3] = [&root_key, &targets_key, &releases_key];
    let uploads = editor.publish(&signers, now).unwrap();
    assert!(
        uploads.iter().all(|(r, _)| *r != RoleName::Snapshot),
        "the server makes the snapshot"
    );
    server.publish(&uploads);

    // berth's client verifies notary-server's snapshot and timestamp over berth's files.
    let cache = TempDir::new().unwrap();
    let fetch = |name: &str, max: u64| server.get(name, max);
    let repo = client::update(GUN, cache.path(), &TrustPinning::default(), Utc::now(), &fetch).unwrap();
    assert_eq!(
        repo.resolve_target("latest", None).unwrap().meta,
        FileMeta::from_bytes(manifest)
    );
    assert_eq!(repo.resolve_target("v1.0", None).unwrap().roles, vec![releases.clone()]);
    assert!(repo.resolve_target("odd<name>&co", None).is_ok());
    let targets_file = String::from_utf8(repo.files()[&RoleName::Targets].clone()).unwrap();
    assert!(targets_file.contains(r"odd\u003cname\u003e\u0026co"), "{targets_file}");

    // The notary CLI trusts the root on first use and lists the targets.
    let trust = TempDir::new().unwrap();
    let listing = notary(&server, trust.path(), &["list", GUN]);
    assert!(listing.contains("latest"), "{listing}");
    assert!(
        listing.contains(&hex::encode(&FileMeta::from_bytes(manifest).hashes["sha256"])),
        "{listing}"
    );
    let listing = notary(&server, trust.path(), &["list", GUN, "--roles", "targets/releases"]);
    assert!(listing.contains("v1.0"), "{listing}");

    // The notary CLI publishes with berth's exported targets key...
    let exported = keystore::private_key_to_pem(&targets_key, "targets", GUN, Some(&Passphrase::from(PASS))).unwrap();
    let key_file = trust.path().join("targets-key.pem");
    std::fs::write(&key_file, exported.as_bytes()).unwrap();
    notary(&server, trust.path(), &["key", "import", key_file.to_str().unwrap()]);
    let content = trust.path().join("v2-manifest");
    std::fs::write(&content, b"manifest v2").unwrap();
    notary(
        &server,
        trust.path(),
        &["add", GUN, "v2", content.to_str().unwrap(), "--roles", "targets"],
    );
    notary(&server, trust.path(), &["publish", GUN]);

    // ...and berth's client verifies what the notary CLI published.
    let repo = client::update(GUN, cache.path(), &TrustPinning::default(), Utc::now(), &fetch).unwrap();
    let v2 = repo.resolve_target("v2", None).unwrap();
    client::check_target_bytes("v2", b"manifest v2", &v2.meta).unwrap();
    assert_eq!(repo.targets(&RoleName::Targets).unwrap().signed().version, 2);
    assert!(repo.resolve_target("latest", None).is_ok());
}
