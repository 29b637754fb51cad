//! A real `berth daemon` on a temporary data root, driven through the CLI.
//! Cleans up on drop (containers, daemon, mounts, data root), also when a test fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> PathBuf {
    std::env::var_os("BERTH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_berth")))
}

pub fn images_dir() -> PathBuf {
    std::env::var_os("BERTH_TEST_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/images"))
}

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    child: Option<Child>,
    /// Extra `berth daemon` arguments, kept for restarts.
    args: Vec<String>,
}

impl Daemon {
    pub fn start() -> Self {
        Self::start_with_args(&[])
    }

    /// A daemon started with extra `berth daemon` arguments.
    pub fn start_with_args(args: &[&str]) -> Self {
        Self::start_prepared(args, |_| {})
    }

    /// A daemon whose data root `prepare` made (or changed) before it starts.
    pub fn start_prepared(args: &[&str], prepare: impl FnOnce(&Path)) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-e2e-")
            .tempdir()
            .expect("tempdir");
        let socket = dir.path().join("berth.sock");
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        // Tests never listen off loopback (the daemon's default is 0.0.0.0:7443).
        if !args.iter().any(|a| a == "--listen") {
            args.extend(["--listen".to_string(), format!("127.0.0.1:{}", free_port())]);
        }
        let mut d = Self {
            dir,
            socket,
            child: None,
            args,
        };
        prepare(&d.data_root());
        d.spawn();
        d
    }

    pub fn data_root(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .expect("log");
        let child = Command::new(bin())
            .arg("daemon")
            .arg("--data-root")
            .arg(self.data_root())
            .arg("--socket")
            .arg(&self.socket)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn daemon");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.berth(&["version"]).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "daemon did not answer: {}",
            std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
        );
    }

    /// SIGTERM, a clean stop.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    /// SIGKILL, a crash.
    pub fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("-H").arg(format!("unix://{}", self.socket.display())).args(args);
        c
    }

    pub fn berth(&self, args: &[&str]) -> Output {
        self.cmd(args).stdin(Stdio::null()).output().expect("run berth")
    }

    /// Runs and asserts success; stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.berth(args);
        assert!(
            o.status.success(),
            "berth {args:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs and asserts failure; stderr.
    pub fn fails(&self, args: &[&str]) -> (i32, String) {
        let o = self.berth(args);
        assert!(
            !o.status.success(),
            "berth {args:?} should fail but printed {}",
            String::from_utf8_lossy(&o.stdout)
        );
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    pub fn load_busybox(&self) {
        let tar = images_dir().join("busybox-oci.tar");
        self.ok(&["image", "load", "-i", tar.to_str().expect("utf8")]);
    }

    pub fn container_count(&self) -> usize {
        self.ok(&["ps", "-aq"]).lines().count()
    }

    /// Mount points under the data root (overlay roots, binds).
    pub fn mounts(&self) -> Vec<String> {
        let root = self.data_root().display().to_string();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&root))
            .map(String::from)
            .collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_none() && self.socket.exists() {
            self.child = None;
        }
        if self.child.is_some() {
            let ids = self.berth(&["ps", "-aq"]);
            for id in String::from_utf8_lossy(&ids.stdout).lines() {
                let _ = self.berth(&["rm", "-f", id]);
            }
            self.stop();
        }
        for m in self.mounts() {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Standard base64, for HTTP Basic credentials in tests.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One HTTP/1.1 response read to the end: status, head, body (de-chunked).
pub struct HttpResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on loopback with `Connection: close` and extra header lines.
pub fn http(port: u16, method: &str, path: &str, headers: &[String], body: &[u8]) -> HttpResponse {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    exchange(&mut s, &format!("127.0.0.1:{port}"), method, path, headers, body)
}

/// One request on a daemon's unix socket (the admin).
pub fn http_unix(socket: &Path, method: &str, path: &str, headers: &[String], body: &[u8]) -> HttpResponse {
    let mut s = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    exchange(&mut s, "berth", method, path, headers, body)
}

/// Writes one request with `Connection: close` and reads its response to the end.
pub fn exchange(
    s: &mut (impl std::io::Read + std::io::Write),
    host: &str,
    method: &str,
    path: &str,
    headers: &[String],
    body: &[u8],
) -> HttpResponse {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("write");
    s.write_all(body).expect("write body");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("head end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
    let mut body = raw[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut b = &body[..];
        while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
            b = &b[eol + 4 + size..];
        }
        body = out;
    }
    HttpResponse { status, head, body }
}
