//! The registry client of a real daemon (`berth pull/push/login`) against
//! real registries: Distribution registry 2.8 (`docker-registry`) and
//! berth's own registry on another daemon; a multi-platform index pushed
//! with skopeo; and, for what no real registry does on request (serve bytes
//! that do not match their digest, answer a token challenge), a small HTTP
//! server in the test.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, images_dir, wait_for, Daemon};
use sha2::{Digest as _, Sha256};

/// A Distribution registry 2.8 on a free loopback port, with its storage
/// and log in a temp dir; killed on drop.
struct Distribution {
    dir: tempfile::TempDir,
    child: Child,
    addr: String,
}

impl Distribution {
    fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-distribution-")
            .tempdir()
            .expect("tempdir");
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).expect("config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("docker-registry (apt-get install docker-registry)");
        let d = Self { dir, child, addr };
        wait_for("the distribution registry", || TcpStream::connect(&d.addr).is_ok());
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Blob GETs the registry has answered so far (its access log).
    fn blob_gets(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/sha256:"))
            .count()
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn image_id(d: &Daemon, reference: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&d.ok(&["image", "inspect", reference])).expect("inspect json");
    v[0]["id"].as_str().expect("id").to_string()
}

fn images(d: &Daemon) -> Vec<serde_json::Value> {
    serde_json::from_str(&d.ok(&["images", "--format", "json"])).expect("images json")
}

fn blob_files(d: &Daemon) -> usize {
    std::fs::read_dir(d.data_root().join("image/blobs/sha256"))
        .map(|r| r.count())
        .unwrap_or(0)
}

fn transferred(output: &str) -> u64 {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("Transferred: "))
        .filter_map(|l| l.strip_suffix(" bytes"))
        .filter_map(|n| n.parse().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no Transferred line in {output}"))
}

#[test]
fn push_to_and_pull_from_distribution_registry() {
    let registry = Distribution::start();
    let a = Daemon::start();
    a.load_busybox();
    let name = format!("{}/test/busybox:1", registry.addr);
    a.ok(&["tag", "busybox:latest", &name]);
    let out = a.ok(&["push", &name]);
    assert!(out.contains(": digest: sha256:"), "{out}");
    assert!(transferred(&out) > 1_000_000, "{out}");
    // Again: the registry has every blob, only the manifest goes.
    let out = a.ok(&["push", &name]);
    assert_eq!(transferred(&out), 0, "{out}");

    let b = Daemon::start();
    let out = b.ok(&["pull", &name]);
    assert!(out.contains("Downloaded newer image"), "{out}");
    assert!(transferred(&out) > 1_000_000, "{out}");
    assert_eq!(image_id(&a, "busybox:latest"), image_id(&b, &name));
    let a_manifest: serde_json::Value = serde_json::from_str(&a.ok(&["image", "inspect", "busybox"])).expect("json");
    let b_manifest: serde_json::Value = serde_json::from_str(&b.ok(&["image", "inspect", &name])).expect("json");
    assert_eq!(a_manifest[0]["manifest_digest"], b_manifest[0]["manifest_digest"]);
    let out = b.ok(&["run", "--rm", &name, "echo", "hello from a pulled image"]);
    assert_eq!(out.trim(), "hello from a pulled image");

    // Pulling what is there transfers nothing but the manifest.
    let gets = registry.blob_gets();
    let out = b.ok(&["pull", &name]);
    assert!(out.contains("Image is up to date"), "{out}");
    assert_eq!(transferred(&out), 0, "{out}");
    assert_eq!(registry.blob_gets(), gets, "a second pull fetched blobs");
    assert!(
        registry
            .log()
            .contains("\"GET /v2/test/busybox/manifests/1 HTTP/1.1\" 200"),
        "{}",
        registry.log()
    );
}

#[test]
fn push_to_and_pull_from_berth_registry() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _server = Daemon::start_with_args(&["--insecure-listen", &listen]);
    let b = Daemon::start();
    b.load_busybox();
    let id = image_id(&b, "busybox");
    let name = format!("{listen}/team/busybox:1");
    b.ok(&["tag", "busybox", &name]);
    b.ok(&["push", &name]);
    // Another repository of the same registry: the blobs are mounted, not sent.
    let other = format!("{listen}/other/busybox:2");
    b.ok(&["tag", "busybox", &other]);
    let out = b.ok(&["push", &other]);
    assert!(out.contains("Mounted from team/busybox"), "{out}");
    assert_eq!(transferred(&out), 0, "{out}");

    b.ok(&["rmi", "-f", &id]);
    assert!(images(&b).is_empty());
    let out = b.ok(&["pull", &other]);
    assert!(transferred(&out) > 1_000_000, "{out}");
    assert_eq!(image_id(&b, &other), id);
    let out = b.ok(&["run", "--rm", &other, "echo", "ok"]);
    assert_eq!(out.trim(), "ok");
    let (_, err) = b.fails(&["pull", "--platform", "linux/arm64", &other]);
    assert!(err.contains("the image is linux/amd64, not linux/arm64"), "{err}");
}

/// An OCI layout holding an index of two images (linux/amd64: the busybox
/// test image; linux/arm64: the same layer with another config).
fn multi_platform_layout(dir: &Path) -> (String, String) {
    let src = images_dir().join("busybox-oci");
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir");
    for entry in std::fs::read_dir(src.join("blobs/sha256")).expect("busybox-oci") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), blobs.join(entry.file_name())).expect("copy");
    }
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).expect("layout");
    let put = |bytes: &[u8]| {
        let hex = hex::encode(Sha256::digest(bytes));
        std::fs::write(blobs.join(&hex), bytes).expect("blob");
        (format!("sha256:{hex}"), bytes.len())
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join("index.json")).expect("index")).expect("json");
    let amd64_manifest_digest = index["manifests"][0]["digest"].as_str().expect("digest").to_string();
    let amd64_manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blobs.join(amd64_manifest_digest.trim_start_matches("sha256:"))).expect("manifest"),
    )
    .expect("json");
    let amd64_config_digest = amd64_manifest["config"]["digest"].as_str().expect("config").to_string();
    let mut config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blobs.join(amd64_config_digest.trim_start_matches("sha256:"))).expect("config"),
    )
    .expect("json");
    config["architecture"] = "arm64".into();
    let (arm_config, arm_config_size) = put(&serde_json::to_vec(&config).expect("json"));
    let mut arm_manifest = amd64_manifest.clone();
    arm_manifest["config"]["digest"] = arm_config.clone().into();
    arm_manifest["config"]["size"] = arm_config_size.into();
    let (arm_manifest_digest, arm_manifest_size) = put(&serde_json::to_vec(&arm_manifest).expect("json"));
    let nested = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd64_manifest_digest,
             "size": index["manifests"][0]["size"], "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm_manifest_digest,
             "size": arm_manifest_size, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        ],
    });
    let (nested_digest, nested_size) = put(&serde_json::to_vec(&nested).expect("json"));
    let top = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": nested_digest,
                       "size": nested_size, "annotations": {"org.opencontainers.image.ref.name": "multi"}}],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&top).expect("json")).expect("index");
    (amd64_config_digest, arm_config)
}

#[test]
fn platform_selection_from_an_index() {
    let registry = Distribution::start();
    let layout = tempfile::tempdir().expect("tempdir");
    let (amd64, arm64) = multi_platform_layout(layout.path());
    let name = format!("{}/test/multi:1", registry.addr);
    let out = Command::new("skopeo")
        .args(["copy", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:multi", layout.path().display()))
        .arg(format!("docker://{name}"))
        .output()
        .expect("skopeo");
    assert!(out.status.success(), "skopeo: {}", String::from_utf8_lossy(&out.stderr));

    let d = Daemon::start();
    d.ok(&["pull", &name]);
    assert_eq!(image_id(&d, &name), amd64);
    let gets = registry.blob_gets();
    let out = d.ok(&["pull", "--platform", "linux/arm64", &name]);
    assert_eq!(image_id(&d, &name), arm64);
    // The arm64 image shares its layer: only its config was fetched.
    assert_eq!(registry.blob_gets(), gets + 1, "{out}");
    let all = images(&d);
    assert_eq!(all.len(), 2, "{all:?}");

    let e = Daemon::start();
    let (_, err) = e.fails(&["pull", "--platform", "linux/s390x", &name]);
    assert!(
        err.contains("no linux/s390x image") && err.contains("linux/arm64/v8"),
        "{err}"
    );
    e.ok(&["pull", "--all-platforms", &name]);
    let mut archs: Vec<String> = images(&e)
        .iter()
        .map(|i| i["architecture"].as_str().unwrap_or_default().to_string())
        .collect();
    archs.sort();
    assert_eq!(archs, ["amd64", "arm64"]);
    assert_eq!(image_id(&e, &name), amd64, "the tag goes to the default platform");
}

#[test]
fn unknown_image_and_unreachable_registry() {
    let registry = Distribution::start();
    let d = Daemon::start();
    let name = format!("{}/test/nothing:1", registry.addr);
    let (code, err) = d.fails(&["pull", &name]);
    assert_ne!(code, 0);
    assert!(err.contains(&name) && err.contains("not found"), "{err}");
    assert!(images(&d).is_empty());

    let nowhere = format!("127.0.0.1:{}/test/x:1", free_port());
    let started = Instant::now();
    let (_, err) = d.fails(&["pull", &nowhere]);
    assert!(err.contains(nowhere.split('/').next().unwrap_or_default()), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(images(&d).is_empty());
    let (_, err) = d.fails(&["push", &format!("{}/test/none:1", registry.addr)]);
    assert!(err.contains("no such image"), "{err}");
}

/// A registry in a thread that wants a bearer token (from its own realm,
/// for `user`/`right`) and serves one image whose layer bytes do not match
/// the layer's digest. Requests are logged by path.
struct FakeRegistry {
    addr: String,
    stop: Arc<AtomicBool>,
    requests: Arc<std::sync::Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeRegistry {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr").to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let layer_claimed = b"the layer the manifest names".to_vec();
        let layer_served = b"other bytes entirely".to_vec();
        let layer_digest = format!("sha256:{}", hex::encode(Sha256::digest(&layer_claimed)));
        let diff_id = layer_digest.clone();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }))
        .expect("json");
        let config_digest = format!("sha256:{}", hex::encode(Sha256::digest(&config)));
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_claimed.len()}],
        }))
        .expect("json");
        let realm = format!("http://{addr}/token");
        let (stop2, requests2) = (stop.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            let right = format!("Basic {}", base64_encode(b"user:right"));
            while !stop2.load(Ordering::SeqCst) {
                let mut stream = match listener.accept() {
                    Ok((s, _)) => s,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                let _ = stream.set_nonblocking(false);
                let Some((path, headers)) = read_request(&mut stream) else {
                    continue;
                };
                requests2.lock().expect("lock").push(path.clone());
                let auth = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                let reply = if path.starts_with("/token") {
                    if auth == right {
                        (200, vec![], br#"{"token":"t0ken"}"#.to_vec())
                    } else {
                        (401, vec![], b"{}".to_vec())
                    }
                } else if auth != "Bearer t0ken" {
                    let challenge =
                        format!("Bearer realm=\"{realm}\",service=\"fake\",scope=\"repository:bad/image:pull\"");
                    (401, vec![("WWW-Authenticate".to_string(), challenge)], b"{}".to_vec())
                } else if path == "/v2/" {
                    (200, vec![], b"{}".to_vec())
                } else if path == "/v2/bad/image/manifests/1" {
                    let ct = (
                        "Content-Type".to_string(),
                        "application/vnd.oci.image.manifest.v1+json".to_string(),
                    );
                    (200, vec![ct], manifest.clone())
                } else if path == format!("/v2/bad/image/blobs/{config_digest}") {
                    (200, vec![], config.clone())
                } else if path == format!("/v2/bad/image/blobs/{layer_digest}") {
                    (200, vec![], layer_served.clone())
                } else {
                    (
                        404,
                        vec![],
                        br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}"#.to_vec(),
                    )
                };
                let (status, headers, body) = reply;
                let mut head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        Self {
            addr,
            stop,
            requests,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<(String, String)>)> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split(' ').nth(1)?.to_string();
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((path, headers))
}

fn base64_encode(bytes: &[u8]) -> String {
    const TABLE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn login(d: &Daemon, registry: &str, password: &str) -> std::process::Output {
    let mut child = d
        .cmd(&["login", registry, "-u", "user", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("login");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write password");
    child.wait_with_output().expect("login output")
}

#[test]
fn token_login_and_digest_mismatch() {
    let fake = FakeRegistry::start();
    let d = Daemon::start();
    let name = format!("{}/bad/image:1", fake.addr);

    // Without credentials the token endpoint refuses: a clear message.
    let (_, err) = d.fails(&["pull", &name]);
    assert!(err.contains("berth login"), "{err}");

    let out = login(&d, &fake.addr, "wrong-password-123");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a wrong password logged in");
    assert!(err.contains("refused"), "{err}");
    assert!(!err.contains("wrong-password-123"), "the password was echoed: {err}");
    let log = std::fs::read_to_string(d.dir.path().join("daemon.log")).unwrap_or_default();
    assert!(!log.contains("wrong-password-123"), "the password is in the daemon log");

    let out = login(&d, &fake.addr, "right");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Login Succeeded"));

    // With the stored credentials the pull gets a token, then the layer's
    // bytes do not match its digest: an error naming it, nothing recorded.
    let blobs_before = blob_files(&d);
    let (_, err) = d.fails(&["pull", &name]);
    let manifest_layer = fake
        .requests
        .lock()
        .expect("lock")
        .iter()
        .find(|p| p.contains("/blobs/") && !p.is_empty())
        .cloned();
    assert!(manifest_layer.is_some(), "no blob was requested");
    assert!(
        err.contains("layer sha256:") && err.contains("has content with digest"),
        "{err}"
    );
    assert!(images(&d).is_empty());
    assert_eq!(blob_files(&d), blobs_before, "a blob of the failed pull stayed");
    assert!(fake
        .requests
        .lock()
        .expect("lock")
        .iter()
        .any(|p| p.starts_with("/token")));

    let out = d.ok(&["logout", &fake.addr]);
    assert!(out.contains("Removing login credentials"), "{out}");
    let (_, err) = d.fails(&["pull", &name]);
    assert!(err.contains("berth login"), "{err}");
}

/// An OCI layout tarball of one image whose only layer is an uncompressed
/// tar holding `size` random bytes; returns its path.
fn big_image_archive(dir: &Path, size: usize) -> PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(&root).expect("mkdir");
    let mut data = vec![0u8; size];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut data))
        .expect("random bytes");
    std::fs::write(root.join("big.bin"), &data).expect("write");
    let layer_tar = dir.join("layer.tar");
    let status = Command::new("tar")
        .arg("-cf")
        .arg(&layer_tar)
        .arg("-C")
        .arg(&root)
        .arg("big.bin")
        .status()
        .expect("tar");
    assert!(status.success());
    let layout = dir.join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir");
    let put = |bytes: &[u8]| {
        let hex = hex::encode(Sha256::digest(bytes));
        std::fs::write(blobs.join(&hex), bytes).expect("blob");
        (format!("sha256:{hex}"), bytes.len())
    };
    let (layer, layer_size) = put(&std::fs::read(&layer_tar).expect("layer"));
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer]},
    });
    let (config, config_size) = put(&serde_json::to_vec(&config).expect("json"));
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_size}],
    });
    let (manifest, manifest_size) = put(&serde_json::to_vec(&manifest).expect("json"));
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest,
                       "size": manifest_size, "annotations": {"io.containerd.image.name": "big:1"}}],
    });
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&index).expect("json")).expect("index");
    std::fs::write(layout.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).expect("layout");
    let archive = dir.join("big.tar");
    let status = Command::new("tar")
        .arg("-cf")
        .arg(&archive)
        .arg("-C")
        .arg(&layout)
        .arg(".")
        .status()
        .expect("tar");
    assert!(status.success());
    archive
}

#[test]
fn chunked_push_of_a_large_layer() {
    let registry = Distribution::start();
    let dir = tempfile::tempdir().expect("tempdir");
    // Larger than one upload chunk (32 MiB): the push goes in PATCH chunks.
    let archive = big_image_archive(dir.path(), 40 << 20);
    let a = Daemon::start();
    a.ok(&["image", "load", "-i", archive.to_str().expect("utf8")]);
    let name = format!("{}/test/big:1", registry.addr);
    a.ok(&["tag", "big:1", &name]);
    let out = a.ok(&["push", &name]);
    assert!(transferred(&out) > 40 << 20, "{out}");
    assert!(
        registry.log().matches("\"PATCH /v2/test/big/blobs/uploads/").count() >= 2,
        "not chunked: {}",
        registry.log()
    );
    let b = Daemon::start();
    b.ok(&["pull", &name]);
    assert_eq!(image_id(&a, "big:1"), image_id(&b, &name));
}
