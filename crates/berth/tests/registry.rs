//! The OCI Distribution server of a real daemon, over plain HTTP on
//! loopback: the protocol with a raw HTTP client (so that a dropped
//! connection is a real one), a real client (`skopeo`), and a `kill -9`
//! during an upload.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::{free_port, wait_for, Daemon};

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    /// The spec's error code of an error response.
    fn error_code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

fn raw_request(
    stream: &mut (impl Read + Write),
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).expect("send head");
    stream.write_all(body).expect("send body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut rest = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut i = 0;
        loop {
            let nl = rest[i..].windows(2).position(|w| w == b"\r\n").expect("chunk size") + i;
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[i..nl]).trim(), 16).expect("hex size");
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[nl + 2..nl + 2 + size]);
            i = nl + 2 + size + 2;
        }
        rest = out;
    }
    if method == "HEAD" {
        rest.clear();
    }
    Resp {
        status,
        headers,
        body: rest,
    }
}

struct Registry {
    daemon: Daemon,
    port: u16,
}

impl Registry {
    fn start() -> Self {
        Self::start_with_args(&[])
    }
    /// With `--registry-auth token`: TCP callers need bearer tokens.
    fn start_with_token_auth() -> Self {
        Self::start_with_args(&["--registry-auth", "token"])
    }
    fn start_with_args(extra: &[&str]) -> Self {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["--insecure-listen", listen.as_str()];
        args.extend_from_slice(extra);
        let daemon = Daemon::start_with_args(&args);
        let r = Self { daemon, port };
        wait_for("the registry listener", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        r
    }
    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    fn req(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
        raw_request(&mut s, method, path, headers, body)
    }
    /// A request on the unix socket: the admin.
    fn admin(&self, method: &str, path: &str) -> Resp {
        let mut s = std::os::unix::net::UnixStream::connect(&self.daemon.socket).expect("connect socket");
        raw_request(&mut s, method, path, &[], b"")
    }
    /// The digest the registry serves for `repo:reference` (asked as the admin).
    fn manifest_digest(&self, repo: &str, reference: &str) -> String {
        let r = self.admin("HEAD", &format!("/v2/{repo}/manifests/{reference}"));
        assert_eq!(r.status, 200, "{repo}:{reference} is not in the registry");
        r.header("docker-content-digest").expect("digest header").to_string()
    }
    fn upload(&self, repo: &str, content: &[u8]) -> String {
        let d = digest(content);
        let r = self.req("POST", &format!("/v2/{repo}/blobs/uploads/?digest={d}"), &[], content);
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
        d
    }
    fn start_upload(&self, repo: &str) -> String {
        let r = self.req("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"");
        assert_eq!(r.status, 202);
        assert_eq!(r.header("range"), Some("0-0"));
        assert!(r.header("docker-upload-uuid").is_some());
        r.header("location").expect("location").to_string()
    }
    fn push_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> Resp {
        self.req(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Content-Type", media_type)],
            body,
        )
    }
}

fn digest(b: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn image_manifest(config: &str, layer: &str, layer_size: usize, subject: Option<&str>) -> Vec<u8> {
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_size}],
    });
    if let Some(s) = subject {
        m["subject"] = serde_json::json!({"mediaType": OCI_MANIFEST, "digest": s, "size": 1});
        m["artifactType"] = serde_json::json!("application/vnd.example.sig");
    }
    serde_json::to_vec(&m).expect("json")
}

#[test]
fn blobs_uploads_and_errors_over_http() {
    let reg = Registry::start();
    let ping = reg.req("GET", "/v2/", &[], b"");
    assert_eq!(ping.status, 200);
    assert_eq!(ping.header("docker-distribution-api-version"), Some("registry/2.0"));

    // Monolithic upload; HEAD and GET, whole and ranged.
    let d = reg.upload("a/b/c", b"0123456789");
    let head = reg.req("HEAD", &format!("/v2/a/b/c/blobs/{d}"), &[], b"");
    assert_eq!((head.status, head.header("content-length")), (200, Some("10")));
    let get = reg.req("GET", &format!("/v2/a/b/c/blobs/{d}"), &[], b"");
    assert_eq!((get.status, get.body.as_slice()), (200, &b"0123456789"[..]));
    let part = reg.req("GET", &format!("/v2/a/b/c/blobs/{d}"), &[("Range", "bytes=2-5")], b"");
    assert_eq!((part.status, part.body.as_slice()), (206, &b"2345"[..]));
    assert_eq!(part.header("content-range"), Some("bytes 2-5/10"));
    let outside = reg.req("GET", &format!("/v2/a/b/c/blobs/{d}"), &[("Range", "bytes=20-")], b"");
    assert_eq!(outside.status, 416);

    // Errors, in the spec's format.
    let wrong = reg.req(
        "POST",
        &format!("/v2/r/blobs/uploads/?digest={}", digest(b"x")),
        &[],
        b"y",
    );
    assert_eq!((wrong.status, wrong.error_code()), (400, "DIGEST_INVALID".to_string()));
    let unknown = reg.req("GET", &format!("/v2/r/blobs/{}", digest(b"y")), &[], b"");
    assert_eq!(
        (unknown.status, unknown.error_code()),
        (404, "BLOB_UNKNOWN".to_string())
    );
    let bad_name = reg.req("GET", "/v2/Bad_Name/tags/list", &[], b"");
    assert_eq!(
        (bad_name.status, bad_name.error_code()),
        (400, "NAME_INVALID".to_string())
    );
    let no_repo = reg.req("GET", "/v2/nothing/here/tags/list", &[], b"");
    assert_eq!(
        (no_repo.status, no_repo.error_code()),
        (404, "NAME_UNKNOWN".to_string())
    );
    let no_upload = reg.req("GET", "/v2/r/blobs/uploads/0123456789abcdef0123456789abcdef", &[], b"");
    assert_eq!(
        (no_upload.status, no_upload.error_code()),
        (404, "BLOB_UPLOAD_UNKNOWN".to_string())
    );

    // Chunked upload: in order, then an overlapping chunk (416), then a
    // chunk whose connection drops half way; the status tells where to resume.
    let loc = reg.start_upload("r");
    let r = reg.req("PATCH", &loc, &[("Content-Range", "0-3")], b"abcd");
    assert_eq!((r.status, r.header("range")), (202, Some("0-3")));
    let loc = r.header("location").expect("location").to_string();
    let overlap = reg.req("PATCH", &loc, &[("Content-Range", "2-5")], b"cdef");
    assert_eq!(
        (overlap.status, overlap.error_code()),
        (416, "BLOB_UPLOAD_INVALID".to_string())
    );
    // The 416 says where the upload stands and where to send the next chunk.
    assert_eq!(overlap.header("range"), Some("0-3"));
    assert_eq!(overlap.header("location"), Some(loc.as_str()));
    {
        let mut s = TcpStream::connect(("127.0.0.1", reg.port)).expect("connect");
        let head = format!("PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nefgh");
        s.write_all(head.as_bytes()).expect("send");
        std::thread::sleep(Duration::from_millis(200));
        // Dropped with 996 bytes still owed.
    }
    let mut offset = String::new();
    wait_for("the dropped chunk to be recorded", || {
        let st = reg.req("GET", &loc, &[], b"");
        offset = st.header("range").unwrap_or_default().to_string();
        st.status == 204 && offset == "0-7"
    });
    let r = reg.req("PATCH", &loc, &[("Content-Range", "8-9")], b"ij");
    assert_eq!(r.status, 202);
    let not_yet = reg.req("HEAD", &format!("/v2/r/blobs/{}", digest(b"abcdefghij")), &[], b"");
    assert_eq!(not_yet.status, 404, "a blob is visible before its upload finished");
    let done = reg.req("PUT", &format!("{loc}?digest={}", digest(b"abcdefghijk")), &[], b"k");
    assert_eq!(done.status, 201);
    let got = reg.req("GET", &format!("/v2/r/blobs/{}", digest(b"abcdefghijk")), &[], b"");
    assert_eq!(got.body, b"abcdefghijk");

    // Cancel an upload.
    let loc = reg.start_upload("r");
    assert_eq!(reg.req("DELETE", &loc, &[], b"").status, 204);
    assert_eq!(reg.req("GET", &loc, &[], b"").status, 404);

    // Cross-repository mount: 201 when the source has it, else an upload session.
    let m = reg.req(
        "POST",
        &format!("/v2/other/blobs/uploads/?mount={d}&from=a/b/c"),
        &[],
        b"",
    );
    assert_eq!(
        (m.status, m.header("location")),
        (201, Some(format!("/v2/other/blobs/{d}").as_str()))
    );
    assert_eq!(reg.req("HEAD", &format!("/v2/other/blobs/{d}"), &[], b"").status, 200);
    let m = reg.req(
        "POST",
        &format!("/v2/third/blobs/uploads/?mount={d}&from=nowhere"),
        &[],
        b"",
    );
    assert_eq!(m.status, 202);
}

#[test]
fn manifests_tags_referrers_deletion_and_gc_over_http() {
    let reg = Registry::start();
    let config = reg.upload("x/y", b"{}");
    let mut tags = Vec::new();
    let mut last_digest = String::new();
    for (i, tag) in ["t3", "t1", "t2"].iter().enumerate() {
        let layer = format!("layer {i}");
        let l = reg.upload("x/y", layer.as_bytes());
        let m = image_manifest(&config, &l, layer.len(), None);
        let r = reg.push_manifest("x/y", tag, OCI_MANIFEST, &m);
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("docker-content-digest"), Some(digest(&m).as_str()));
        tags.push(tag.to_string());
        last_digest = digest(&m);
    }
    let get = reg.req("GET", "/v2/x/y/manifests/t2", &[("Accept", OCI_MANIFEST)], b"");
    assert_eq!((get.status, get.header("content-type")), (200, Some(OCI_MANIFEST)));
    assert_eq!(digest(&get.body), last_digest);
    let head = reg.req("HEAD", &format!("/v2/x/y/manifests/{last_digest}"), &[], b"");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("docker-content-digest"), Some(last_digest.as_str()));

    // Bad manifests.
    let missing = image_manifest(&config, &digest(b"absent"), 6, None);
    let r = reg.push_manifest("x/y", "bad", OCI_MANIFEST, &missing);
    assert_eq!((r.status, r.error_code()), (400, "MANIFEST_BLOB_UNKNOWN".to_string()));
    let r = reg.push_manifest("x/y", "bad", "application/x-unknown", b"{}");
    assert_eq!((r.status, r.error_code()), (415, "MANIFEST_INVALID".to_string()));
    let r = reg.push_manifest("x/y", "bad", OCI_MANIFEST, &vec![b' '; 4 * 1024 * 1024 + 1]);
    assert_eq!((r.status, r.error_code()), (413, "SIZE_INVALID".to_string()));
    let r = reg.push_manifest("x/y", "-bad", OCI_MANIFEST, &get.body);
    assert_eq!((r.status, r.error_code()), (400, "TAG_INVALID".to_string()));
    let r = reg.req("GET", "/v2/x/y/manifests/bad", &[], b"");
    assert_eq!((r.status, r.error_code()), (404, "MANIFEST_UNKNOWN".to_string()));

    // Tags and catalog with pagination.
    let page = reg.req("GET", "/v2/x/y/tags/list?n=2", &[], b"");
    assert_eq!(page.json()["tags"], serde_json::json!(["t1", "t2"]));
    assert_eq!(
        page.header("link"),
        Some("</v2/x/y/tags/list?n=2&last=t2>; rel=\"next\"")
    );
    let page = reg.req("GET", "/v2/x/y/tags/list?n=2&last=t2", &[], b"");
    assert_eq!(page.json()["tags"], serde_json::json!(["t3"]));
    assert!(page.header("link").is_none());
    reg.upload("a", b"a");
    let cat = reg.req("GET", "/v2/_catalog?n=1", &[], b"");
    assert_eq!(cat.json()["repositories"], serde_json::json!(["a"]));
    assert!(cat.header("link").is_some());
    let cat = reg.req("GET", "/v2/_catalog?n=1&last=a", &[], b"");
    assert_eq!(cat.json()["repositories"], serde_json::json!(["x/y"]));

    // Referrers: a signature with a subject; the filter; the tag fallback.
    let sig_layer = reg.upload("x/y", b"signature");
    let sig = image_manifest(&config, &sig_layer, 9, Some(&last_digest));
    let r = reg.push_manifest("x/y", &digest(&sig), OCI_MANIFEST, &sig);
    assert_eq!(r.status, 201);
    assert_eq!(r.header("oci-subject"), Some(last_digest.as_str()));
    let refs = reg.req("GET", &format!("/v2/x/y/referrers/{last_digest}"), &[], b"");
    assert_eq!((refs.status, refs.header("content-type")), (200, Some(OCI_INDEX)));
    assert_eq!(refs.json()["manifests"][0]["digest"], digest(&sig));
    let filtered = reg.req(
        "GET",
        &format!("/v2/x/y/referrers/{last_digest}?artifactType=application/vnd.other"),
        &[],
        b"",
    );
    assert_eq!(filtered.header("oci-filters-applied"), Some("artifactType"));
    assert_eq!(filtered.json()["manifests"], serde_json::json!([]));
    let fallback = serde_json::to_vec(&refs.json()).expect("json");
    let r = reg.push_manifest("x/y", &last_digest.replace(':', "-"), OCI_INDEX, &fallback);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));

    // Deletion, then GC (admin only, on the socket) removes the content.
    let t1 = reg.req("GET", "/v2/x/y/manifests/t1", &[], b"");
    let t1_layer = t1.json()["layers"][0]["digest"].as_str().expect("layer").to_string();
    let t1_digest = digest(&t1.body);
    // Open means anonymous pulls and pushes: deleting takes a user.
    let anonymous = reg.req("DELETE", &format!("/v2/x/y/manifests/{t1_digest}"), &[], b"");
    assert_eq!(anonymous.status, 401, "{}", String::from_utf8_lossy(&anonymous.body));
    assert_eq!(reg.req("GET", "/v2/x/y/manifests/t1", &[], b"").status, 200);
    assert_eq!(
        reg.admin("DELETE", &format!("/v2/x/y/manifests/{t1_digest}")).status,
        202
    );
    assert_eq!(reg.req("GET", "/v2/x/y/manifests/t1", &[], b"").status, 404);
    let anonymous_gc = reg.req("POST", "/v1/registry/gc?grace=0", &[], b"");
    assert_eq!(anonymous_gc.status, 401);
    let gc = reg.admin("POST", "/v1/registry/gc?grace=0");
    assert_eq!(gc.status, 200, "{}", String::from_utf8_lossy(&gc.body));
    let removed = gc.json()["blobs_removed"].clone();
    assert!(
        removed.as_array().expect("list").contains(&serde_json::json!(t1_layer)),
        "{removed}"
    );
    let blob_file = reg
        .daemon
        .data_root()
        .join("image/blobs/sha256")
        .join(t1_layer.trim_start_matches("sha256:"));
    assert!(!blob_file.exists(), "collected blob still on disk");
    assert_eq!(
        reg.req("GET", &format!("/v2/x/y/blobs/{t1_layer}"), &[], b"").status,
        404
    );
    // What is still referenced is still served.
    let t2 = reg.req("GET", "/v2/x/y/manifests/t2", &[], b"");
    let t2_layer = t2.json()["layers"][0]["digest"].as_str().expect("layer").to_string();
    assert_eq!(
        reg.req("GET", &format!("/v2/x/y/blobs/{t2_layer}"), &[], b"").status,
        200
    );
    assert_eq!(reg.req("GET", &format!("/v2/x/y/blobs/{config}"), &[], b"").status, 200);
}

#[test]
fn upload_survives_kill_9_as_resumable_or_unknown() {
    let mut reg = Registry::start();
    let content: Vec<u8> = (0..20_000_000u32).map(|i| (i % 251) as u8).collect();
    let loc = reg.start_upload("crash/test");
    let uuid = loc.rsplit('/').next().expect("uuid").to_string();
    let data = reg.daemon.data_root().join("registry/uploads").join(&uuid).join("data");
    let mut s = TcpStream::connect(("127.0.0.1", reg.port)).expect("connect");
    let head = format!(
        "PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        content.len()
    );
    s.write_all(head.as_bytes()).expect("send");
    s.write_all(&content[..12_000_000]).expect("send part");
    // Past the registry's 8 MiB progress record.
    wait_for("part of the chunk on disk", || {
        std::fs::metadata(&data).is_ok_and(|m| m.len() > 9_000_000)
    });
    reg.daemon.crash();
    drop(s);
    reg.daemon.spawn();
    wait_for("the registry listener", || {
        TcpStream::connect(("127.0.0.1", reg.port)).is_ok()
    });
    // Nothing incomplete is visible.
    let full = digest(&content);
    assert_eq!(
        reg.req("HEAD", &format!("/v2/crash/test/blobs/{full}"), &[], b"")
            .status,
        404
    );
    let status = reg.req("GET", &loc, &[], b"");
    match status.status {
        204 => {
            let range = status.header("range").expect("range");
            let end: usize = range.trim_start_matches("0-").parse().expect("end");
            let offset = end + 1;
            assert!(
                (8 << 20..=12_000_000).contains(&offset),
                "offset {offset}: not the recorded progress"
            );
            let rest = &content[offset..];
            let r = reg.req(
                "PATCH",
                &loc,
                &[("Content-Range", &format!("{}-{}", offset, content.len() - 1))],
                rest,
            );
            assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
            let r = reg.req("PUT", &format!("{loc}?digest={full}"), &[], b"");
            assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
            let got = reg.req("GET", &format!("/v2/crash/test/blobs/{full}"), &[], b"");
            assert_eq!(digest(&got.body), full);
        }
        404 => assert_eq!(status.error_code(), "BLOB_UPLOAD_UNKNOWN"),
        other => panic!("upload status after a crash: {other}"),
    }
}

fn skopeo(args: &[&str]) -> String {
    let o = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo (apt-get install skopeo)");
    assert!(
        o.status.success(),
        "skopeo {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn skopeo_copies_into_berth_and_back_with_equal_digests() {
    let layout = common::images_dir().join("busybox-oci");
    assert!(
        layout.is_dir(),
        "{} is missing: run `cargo xtask image`",
        layout.display()
    );
    let reg = Registry::start();
    let src = format!("oci:{}:latest", layout.display());
    let dst = format!("docker://{}/library/busy-box:v1", reg.host());
    skopeo(&["copy", "--dest-tls-verify=false", &src, &dst]);
    let out_dir = reg.daemon.dir.path().join("copied");
    let back = format!("oci:{}:latest", out_dir.display());
    skopeo(&["copy", "--src-tls-verify=false", &dst, &back]);
    let original = skopeo(&["inspect", "--raw", &src]);
    let served = skopeo(&["inspect", "--raw", "--tls-verify=false", &dst]);
    let copied = skopeo(&["inspect", "--raw", &back]);
    assert_eq!(digest(original.as_bytes()), digest(served.as_bytes()));
    assert_eq!(digest(original.as_bytes()), digest(copied.as_bytes()));
    let tags = skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}/library/busy-box", reg.host()),
    ]);
    assert!(tags.contains("\"v1\""), "{tags}");
}

/// A private `dockerd` (Debian's docker.io) whose every directory is in a
/// temp dir; stopped, and its mounts removed, when dropped.
struct Dockerd {
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
    host: String,
    cli: std::path::PathBuf,
}

impl Dockerd {
    fn start() -> Self {
        assert!(
            Command::new("dockerd").arg("--version").output().is_ok(),
            "dockerd is missing: apt-get install docker.io"
        );
        let dir = tempfile::Builder::new()
            .prefix("berth-e2e-dockerd-")
            .tempdir()
            .expect("tempdir");
        let host = format!("unix://{}", dir.path().join("docker.sock").display());
        let log = std::fs::File::create(dir.path().join("dockerd.log")).expect("log");
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("docker.pid"))
            .args(["-H", &host, "--bridge=none", "--iptables=false", "--ip6tables=false"])
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn dockerd");
        // Debian's CLI matches its dockerd; any docker CLI works.
        let cli = ["/usr/bin/docker", "/usr/local/bin/docker"]
            .iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.exists())
            .expect("a docker CLI (apt-get install docker.io)");
        let mut d = Self {
            dir,
            child: Some(child),
            host,
            cli,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !d.cmd(&["version"]).output().is_ok_and(|o| o.status.success()) {
            let exited = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || std::time::Instant::now() > deadline {
                panic!("dockerd did not answer ({exited:?}): {}", d.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.cli);
        // Its own client config: no credentials of this machine's user.
        c.env("DOCKER_CONFIG", self.dir.path().join("client"))
            .args(["-H", &self.host])
            .args(args);
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.cmd(args).output().expect("run docker");
        assert!(
            o.status.success(),
            "docker {args:?}: {}{}\ndockerd log:\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            self.log()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while child.try_wait().ok().flatten().is_none() {
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // The containerd it started, if it outlived a killed dockerd.
        let root = self.dir.path().display().to_string();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&root) {
                // SAFETY: kill(2) on a process started under our temp dir.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&root))
            .map(String::from)
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// The real Docker engine pushes to and pulls from berth, with the
/// registry open on loopback and with token auth (the engine follows the
/// 401 challenge to `/v2/token`), including a cross-repository mount.
#[test]
fn docker_engine_pushes_to_and_pulls_from_berth() {
    let tar = common::images_dir().join("busybox-docker.tar");
    assert!(tar.is_file(), "{} is missing: run `cargo xtask image`", tar.display());
    let docker = Dockerd::start();
    docker.ok(&["load", "-i", tar.to_str().expect("utf8")]);
    let image_id = docker.ok(&["image", "inspect", "--format", "{{.Id}}", "busybox:docker"]);

    for reg in [Registry::start(), Registry::start_with_token_auth()] {
        let name = format!("{}/x/busybox:1", reg.host());
        docker.ok(&["tag", "busybox:docker", &name]);
        let pushed = docker.ok(&["push", &name]);
        let served = reg.manifest_digest("x/busybox", "1");
        assert!(
            pushed.contains(&served),
            "docker pushed {pushed}, berth serves {served}"
        );

        // The same layers under another name: docker mounts them from x/busybox.
        let other = format!("{}/y/bb:2", reg.host());
        docker.ok(&["tag", "busybox:docker", &other]);
        let mounted = docker.ok(&["push", &other]);
        assert!(mounted.contains("Mounted from x/busybox"), "{mounted}");
        assert_eq!(reg.manifest_digest("y/bb", "2"), served);

        docker.ok(&["rmi", &name, &other]);
        docker.ok(&["pull", &name]);
        let repo_digest = docker.ok(&["image", "inspect", "--format", "{{index .RepoDigests 0}}", &name]);
        assert_eq!(
            repo_digest.trim(),
            format!("{}/x/busybox@{served}", reg.host()),
            "the pulled image's digest"
        );
        let pulled_id = docker.ok(&["image", "inspect", "--format", "{{.Id}}", &name]);
        assert_eq!(pulled_id, image_id, "the pulled image is not the pushed one");
        docker.ok(&["rmi", &name]);
    }
}

/// Docker Content Trust against berth's TLS listener, with the real docker
/// CLI and dockerd: the registry's and the trust server's challenges name
/// `https://` (a client told `http://` spoke plain HTTP to the TLS port),
/// and a token for the GUN (`HOST:PORT/dave/bb`) covers the repository.
/// Signed push, `docker trust inspect`, signed pull, refused unsigned pull.
#[test]
fn docker_content_trust_through_the_tls_listener() {
    let tar = common::images_dir().join("busybox-docker.tar");
    assert!(tar.is_file(), "{} is missing: run `cargo xtask image`", tar.display());
    let port = free_port();
    let d = Daemon::start_with_args(&["--listen", &format!("127.0.0.1:{port}")]);
    wait_for("the TLS listener", || TcpStream::connect(("127.0.0.1", port)).is_ok());
    let out = d.ok(&["user", "create", "dave"]);
    let (_, password) = out.trim().split_once('\t').expect("name and password");
    d.ok(&["grant", "create", "user:dave", "full-control"]);

    let docker = Dockerd::start();
    docker.ok(&["load", "-i", tar.to_str().expect("utf8")]);
    let host = format!("127.0.0.1:{port}");
    // The trust client checks the server against berth's CA.
    let tls = docker.dir.path().join("client/tls").join(&host);
    std::fs::create_dir_all(&tls).expect("tls dir");
    std::fs::copy(d.data_root().join("pki/ca.pem"), tls.join("ca.crt")).expect("ca");
    let mut login = docker
        .cmd(&["login", "-u", "dave", "--password-stdin", &host])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("docker login");
    std::io::Write::write_all(&mut login.stdin.take().expect("stdin"), password.as_bytes()).expect("password");
    let out = login.wait_with_output().expect("docker login");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let server = format!("https://{host}");
    let trusted = |args: &[&str]| {
        docker
            .cmd(args)
            .env("DOCKER_CONTENT_TRUST", "1")
            .env("DOCKER_CONTENT_TRUST_SERVER", &server)
            .env("DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE", "root passphrase 1")
            .env("DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE", "repository passphrase 1")
            .output()
            .expect("docker")
    };
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let signed = format!("{host}/dave/bb:signed");
    docker.ok(&["tag", "busybox:docker", &signed]);
    let pushed = trusted(&["push", &signed]);
    assert!(
        pushed.status.success() && text(&pushed).contains(&format!("Successfully signed {signed}")),
        "{}\ndockerd log:\n{}",
        text(&pushed),
        docker.log()
    );
    // "signed: digest: sha256:... size: N"
    let pushed = text(&pushed);
    let digest = pushed
        .split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .expect("the pushed digest")
        .to_string();

    let inspected = trusted(&["trust", "inspect", &format!("{host}/dave/bb")]);
    assert!(inspected.status.success(), "{}", text(&inspected));
    let inspected: serde_json::Value = serde_json::from_slice(&inspected.stdout).expect("trust inspect json");
    let tags = &inspected[0]["SignedTags"];
    assert_eq!(tags[0]["SignedTag"], "signed", "{inspected}");
    assert!(
        digest.ends_with(tags[0]["Digest"].as_str().unwrap_or("none")),
        "signed {} but berth has {digest}",
        tags[0]["Digest"]
    );

    docker.ok(&["rmi", &signed]);
    let pulled = trusted(&["pull", &signed]);
    assert!(pulled.status.success(), "{}", text(&pulled));
    assert!(
        text(&pulled).contains(&format!("Tagging {host}/dave/bb@{digest} as {signed}")),
        "{}",
        text(&pulled)
    );

    let unsigned = format!("{host}/dave/bb:unsigned");
    docker.ok(&["tag", "busybox:docker", &unsigned]);
    docker.ok(&["push", &unsigned]);
    docker.ok(&["rmi", &unsigned]);
    let refused = trusted(&["pull", &unsigned]);
    assert!(
        !refused.status.success(),
        "an unsigned tag was pulled with content trust on"
    );
    assert!(
        text(&refused).contains("No valid trust data for unsigned"),
        "{}",
        text(&refused)
    );

    // What docker signed, berth pulls with content trust on, through the
    // same TLS listener: the trust data with the daemon's CA and token, the
    // image with dave's login (a loopback registry that speaks TLS).
    let mut login = d
        .cmd(&["login", "-u", "dave", "--password-stdin", &host])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("berth login");
    std::io::Write::write_all(&mut login.stdin.take().expect("stdin"), password.as_bytes()).expect("password");
    let out = login.wait_with_output().expect("berth login");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let berth_pull = |reference: &str| {
        d.cmd(&["pull", reference])
            .env("BERTH_CONTENT_TRUST", "1")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("berth pull")
    };
    let pulled = berth_pull(&signed);
    assert!(pulled.status.success(), "{}", text(&pulled));
    assert!(
        text(&pulled).contains(&format!("Tagging {host}/dave/bb@{digest} as {signed}")),
        "{}",
        text(&pulled)
    );
    let refused = berth_pull(&unsigned);
    assert!(
        !refused.status.success(),
        "berth pulled an unsigned tag with content trust on"
    );
    assert!(
        text(&refused).contains("no signed tag \"unsigned\""),
        "{}",
        text(&refused)
    );
}

/// Writes `content` into an OCI layout's blobs; its descriptor fields.
fn oci_blob(layout: &std::path::Path, content: &[u8]) -> (String, usize) {
    let d = digest(content);
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).expect("blobs dir");
    std::fs::write(dir.join(d.trim_start_matches("sha256:")), content).expect("write blob");
    (d, content.len())
}

/// A tar with one file, made by GNU tar.
fn tar_of(dir: &std::path::Path, file: &str, content: &[u8]) -> Vec<u8> {
    let src = dir.join(format!("src-{file}"));
    std::fs::create_dir_all(&src).expect("src dir");
    std::fs::write(src.join(file), content).expect("write file");
    let o = Command::new("tar")
        .arg("-C")
        .arg(&src)
        .args(["--owner=0", "--group=0", "--mtime=@0", "-cf", "-", file])
        .output()
        .expect("tar");
    assert!(o.status.success(), "tar: {}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

/// An OCI layout with an index of two images (linux/amd64, linux/arm64),
/// tagged `multi`.
fn multi_arch_layout(layout: &std::path::Path) {
    let mut manifests = Vec::new();
    for arch in ["amd64", "arm64"] {
        let tar = tar_of(
            layout.parent().expect("parent"),
            arch,
            format!("built for {arch}\n").as_bytes(),
        );
        // Gzipped: skopeo would compress a plain tar on the way and change its digest.
        let mut gzip = Command::new("gzip")
            .args(["-n", "-c"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("gzip");
        gzip.stdin.take().expect("stdin").write_all(&tar).expect("to gzip");
        let layer = gzip.wait_with_output().expect("gzip").stdout;
        let (layer_digest, layer_size) = oci_blob(layout, &layer);
        let config = serde_json::json!({
            "architecture": arch, "os": "linux", "config": {},
            "rootfs": {"type": "layers", "diff_ids": [digest(&tar)]},
        });
        let (config_digest, config_size) = oci_blob(layout, &serde_json::to_vec(&config).expect("json"));
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer_size}],
        });
        let (digest, size) = oci_blob(layout, &serde_json::to_vec(&manifest).expect("json"));
        manifests.push(serde_json::json!({
            "mediaType": OCI_MANIFEST, "digest": digest, "size": size,
            "platform": {"architecture": arch, "os": "linux"},
        }));
    }
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    let (index_digest, index_size) = oci_blob(layout, &serde_json::to_vec(&index).expect("json"));
    let top = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": OCI_INDEX, "digest": index_digest, "size": index_size,
        "annotations": {"org.opencontainers.image.ref.name": "multi"},
    }]});
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&top).expect("json")).expect("index.json");
    std::fs::write(layout.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).expect("oci-layout");
}

/// skopeo copies a two-platform OCI index into berth (through the token
/// challenge) and back; index and per-platform manifests keep their digests.
#[test]
fn skopeo_copies_a_multi_arch_index_through_token_auth() {
    let reg = Registry::start_with_token_auth();
    let work = reg.daemon.dir.path().join("multi");
    let layout = work.join("layout");
    std::fs::create_dir_all(&layout).expect("layout dir");
    multi_arch_layout(&layout);

    let src = format!("oci:{}:multi", layout.display());
    let dst = format!("docker://{}/multi/arch:v1", reg.host());
    skopeo(&["copy", "--all", "--dest-tls-verify=false", &src, &dst]);
    let back = format!("oci:{}:multi", work.join("back").display());
    skopeo(&["copy", "--all", "--src-tls-verify=false", &dst, &back]);

    let original = skopeo(&["inspect", "--raw", &src]);
    let served = skopeo(&["inspect", "--raw", "--tls-verify=false", &dst]);
    let copied = skopeo(&["inspect", "--raw", &back]);
    assert_eq!(digest(served.as_bytes()), digest(original.as_bytes()));
    assert_eq!(digest(copied.as_bytes()), digest(original.as_bytes()));
    assert_eq!(reg.manifest_digest("multi/arch", "v1"), digest(original.as_bytes()));
    let index: serde_json::Value = serde_json::from_str(&original).expect("index json");
    let platforms = index["manifests"].as_array().expect("manifests");
    assert_eq!(platforms.len(), 2);
    for m in platforms {
        let d = m["digest"].as_str().expect("digest");
        let one = skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/multi/arch@{d}", reg.host()),
        ]);
        assert_eq!(digest(one.as_bytes()), d, "platform {}", m["platform"]);
    }
}

/// `pull --all-platforms` keeps the image index: pushing the image under
/// another name sends every platform and the index, digests unchanged. A
/// manifest GET honours `Accept` as Distribution does.
#[test]
fn a_multi_platform_pull_pushes_whole_and_manifests_follow_accept() {
    let reg = Registry::start();
    let work = reg.daemon.dir.path().join("multi");
    let layout = work.join("layout");
    std::fs::create_dir_all(&layout).expect("layout dir");
    multi_arch_layout(&layout);
    let src = format!("oci:{}:multi", layout.display());
    let host = reg.host();
    skopeo(&[
        "copy",
        "--all",
        "--dest-tls-verify=false",
        &src,
        &format!("docker://{host}/multi/arch:v1"),
    ]);
    let index_digest = reg.manifest_digest("multi/arch", "v1");
    let index: serde_json::Value =
        serde_json::from_slice(&reg.req("GET", "/v2/multi/arch/manifests/v1", &[], b"").body).expect("index");
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| m["digest"].as_str().expect("digest").to_string())
        .collect();

    reg.daemon
        .ok(&["pull", "--all-platforms", &format!("{host}/multi/arch:v1")]);
    reg.daemon
        .ok(&["tag", &format!("{host}/multi/arch:v1"), &format!("{host}/copy/arch:v1")]);
    let pushed = reg.daemon.ok(&["push", &format!("{host}/copy/arch:v1")]);
    assert!(pushed.contains(&index_digest), "{pushed}");
    assert_eq!(reg.manifest_digest("copy/arch", "v1"), index_digest);
    for d in &platforms {
        assert_eq!(reg.manifest_digest("copy/arch", d), *d);
    }
    // One platform pulled: the push sends that image alone, and says so.
    reg.daemon
        .ok(&["rmi", &format!("{host}/multi/arch:v1"), &format!("{host}/copy/arch:v1")]);
    reg.daemon.ok(&["pull", &format!("{host}/multi/arch:v1")]);
    reg.daemon
        .ok(&["tag", &format!("{host}/multi/arch:v1"), &format!("{host}/one/arch:v1")]);
    let pushed = reg.daemon.ok(&["push", &format!("{host}/one/arch:v1")]);
    assert_eq!(reg.manifest_digest("one/arch", "v1"), platforms[0], "{pushed}");

    // Accept: what the client takes, as Distribution serves it.
    let get = |reference: &str, accept: Option<&str>| {
        let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
        reg.req("GET", &format!("/v2/multi/arch/manifests/{reference}"), &headers, b"")
    };
    let r = get("v1", Some(OCI_INDEX));
    assert_eq!((r.status, r.header("content-type")), (200, Some(OCI_INDEX)));
    assert_eq!(get("v1", None).status, 200, "no Accept header: served as stored");
    assert_eq!(get("v1", Some("*/*")).status, 200);
    let r = get("v1", Some(&format!("{OCI_MANIFEST}, application/json")));
    assert_eq!(r.status, 404, "an index to a client that takes manifests only");
    assert!(
        String::from_utf8_lossy(&r.body).contains("MANIFEST_UNKNOWN"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let r = get(
        &platforms[0],
        Some("application/vnd.docker.distribution.manifest.v2+json"),
    );
    assert_eq!(r.status, 404, "an OCI manifest to a Docker-schema-2-only client");
    let r = get(
        &platforms[0],
        Some(&format!(
            "application/vnd.docker.distribution.manifest.v2+json;q=0.5, {OCI_MANIFEST}"
        )),
    );
    assert_eq!(r.status, 200);
}

/// A registry off loopback that serves plain HTTP is refused with a hint
/// until the daemon names it with `--insecure-registry`. (Its address is
/// `[::ffff:127.0.0.1]`: loopback traffic, but not a loopback name.)
#[test]
fn a_plain_http_registry_off_loopback_needs_insecure_registry() {
    let reg = Registry::start();
    reg.daemon.load_busybox();
    let on_loopback = format!("{}/plain/bb:1", reg.host());
    reg.daemon.ok(&["tag", "busybox", &on_loopback]);
    reg.daemon.ok(&["push", &on_loopback]);
    let host = format!("[::ffff:127.0.0.1]:{}", reg.port);
    let image = format!("{host}/plain/bb:1");

    let strict = Daemon::start();
    let (code, err) = strict.fails(&["pull", &image]);
    assert_ne!(code, 0);
    assert!(
        err.contains(&format!("start the daemon with --insecure-registry {host}")),
        "{err}"
    );
    assert!(
        strict.ok(&["images", "-q"]).trim().is_empty(),
        "a refused pull left an image"
    );

    let lenient = Daemon::start_with_args(&["--insecure-registry", &host]);
    let pulled = lenient.ok(&["pull", &image]);
    assert!(pulled.contains("Downloaded newer image"), "{pulled}");
    lenient.ok(&["tag", &image, &format!("{host}/plain/copy:1")]);
    lenient.ok(&["push", &format!("{host}/plain/copy:1")]);
    assert_eq!(
        reg.manifest_digest("plain/copy", "1"),
        reg.manifest_digest("plain/bb", "1")
    );

    let (code, err) = lenient.fails(&["daemon", "--insecure-registry", "http://x/y"]);
    assert_ne!(code, 0);
    assert!(err.contains("is not HOST[:PORT]"), "{err}");
}

/// Under `--registry-auth token` an anonymous TCP caller gets the bearer
/// challenge; a token from `/v2/token` counts for the scopes it names only;
/// a forged or foreign token counts for nothing; the socket's admin needs none.
#[test]
fn token_auth_challenges_and_accepts_only_granted_scopes() {
    let mut reg = Registry::start_with_token_auth();
    let ping = reg.req("GET", "/v2/", &[], b"");
    assert_eq!(ping.status, 401);
    assert_eq!(
        ping.header("www-authenticate"),
        Some("Bearer realm=\"http://localhost/v2/token\",service=\"berth\"")
    );
    let d = digest(b"content");
    let push = reg.req("POST", &format!("/v2/a/b/blobs/uploads/?digest={d}"), &[], b"content");
    assert_eq!((push.status, push.error_code()), (401, "UNAUTHORIZED".to_string()));
    assert!(
        push.header("www-authenticate")
            .is_some_and(|h| h.ends_with(",scope=\"repository:a/b:pull,push\"")),
        "{:?}",
        push.header("www-authenticate")
    );
    assert!(!reg
        .daemon
        .data_root()
        .join("image/blobs")
        .join(d.replace(':', "/"))
        .exists());

    let token = |scope: &str| {
        let r = reg.req("GET", &format!("/v2/token?service=berth&scope={scope}"), &[], b"");
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let j = r.json();
        assert_eq!(j["token"], j["access_token"]);
        assert!(j["expires_in"].as_u64().is_some_and(|s| s >= 60), "{j}");
        assert!(j["issued_at"].is_string(), "{j}");
        format!("Bearer {}", j["token"].as_str().expect("token"))
    };
    let push_ab = token("repository:a/b:pull,push");
    let pull_only = token("repository:a/b:pull");
    let r = reg.req(
        "POST",
        &format!("/v2/a/b/blobs/uploads/?digest={d}"),
        &[("Authorization", &push_ab)],
        b"content",
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = reg.req(
        "GET",
        &format!("/v2/a/b/blobs/{d}"),
        &[("Authorization", &pull_only)],
        b"",
    );
    assert_eq!((r.status, r.body.as_slice()), (200, &b"content"[..]));
    assert_eq!(
        reg.req("GET", "/v2/", &[("Authorization", &pull_only)], b"").status,
        200
    );

    // Not what the token names: another action, another repository.
    let r = reg.req(
        "POST",
        &format!("/v2/a/b/blobs/uploads/?digest={d}"),
        &[("Authorization", &pull_only)],
        b"content",
    );
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .is_some_and(|h| h.contains("error=\"insufficient_scope\"")),
        "{:?}",
        r.header("www-authenticate")
    );
    let r = reg.req(
        "GET",
        &format!("/v2/a/c/blobs/{d}"),
        &[("Authorization", &push_ab)],
        b"",
    );
    assert_eq!(r.status, 401);
    // Anonymous callers are not handed delete.
    let del = token("repository:a/b:delete");
    let r = reg.req("DELETE", &format!("/v2/a/b/blobs/{d}"), &[("Authorization", &del)], b"");
    assert_eq!(r.status, 401);
    // A token changed by hand, or signed by another daemon, is nobody's.
    let raw = push_ab.trim_start_matches("Bearer ");
    let (claims, sig) = raw.split_once('.').expect("two parts");
    let mut forged_claims: serde_json::Value =
        serde_json::from_slice(&hex::decode(claims).expect("hex")).expect("claims");
    forged_claims["access"][0]["name"] = serde_json::json!("a/c");
    let forged = format!(
        "Bearer {}.{sig}",
        hex::encode(serde_json::to_vec(&forged_claims).expect("json"))
    );
    let r = reg.req("GET", &format!("/v2/a/c/blobs/{d}"), &[("Authorization", &forged)], b"");
    assert_eq!(r.status, 401);
    let other = Registry::start_with_token_auth();
    let foreign = other.req("GET", "/v2/token?scope=repository:a/b:pull", &[], b"").json()["token"]
        .as_str()
        .expect("token")
        .to_string();
    let r = reg.req(
        "GET",
        &format!("/v2/a/b/blobs/{d}"),
        &[("Authorization", &format!("Bearer {foreign}"))],
        b"",
    );
    assert_eq!(r.status, 401);

    // The key: made at first start, private, kept across restarts.
    let key = reg.daemon.data_root().join("registry/token.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).expect("key").permissions().mode() & 0o777,
        0o600
    );
    reg.daemon.stop();
    reg.daemon.spawn();
    wait_for("the registry listener", || {
        TcpStream::connect(("127.0.0.1", reg.port)).is_ok()
    });
    let r = reg.req(
        "GET",
        &format!("/v2/a/b/blobs/{d}"),
        &[("Authorization", &pull_only)],
        b"",
    );
    assert_eq!(r.status, 200, "a token from before the restart");
    // The admin on the socket needs no token.
    assert_eq!(reg.admin("GET", &format!("/v2/a/b/blobs/{d}")).status, 200);
}
