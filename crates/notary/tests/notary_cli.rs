//! The real notary CLI (Debian package `notary`, `/usr/bin/notary`) as a
//! client of berth's trust server logic: init, publish, delegations,
//! server-managed snapshot, key rotations, and berth's own client reading
//! what the notary CLI published.
//!
//! The HTTP here is a minimal loopback adapter for the test only (one
//! request per connection, routes of notary-server's `/v2/<gun>/_trust/tuf/`
//! API); the daemon's real routes live in the api crate.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use berth_notary::client::{self, FetchError};
use berth_notary::keys::Signer as _;
use berth_notary::keystore::{self, Passphrase};
use berth_notary::metadata::{FileMeta, RoleName};
use berth_notary::repo::TrustPinning;
use berth_notary::server::{self, MemoryServerKeys, RepoState, ServerError};
use chrono::Utc;
use tempfile::TempDir;

const NOTARY: &str = "/usr/bin/notary";
const GUN: &str = "registry.example/acme/web";
const PASS: &str = "berth-cli-pass";

struct Server {
    state: Mutex<RepoState>,
    keys: MemoryServerKeys,
}

struct Response {
    status: u16,
    body: Vec<u8>,
}

impl Server {
    fn error(e: &ServerError) -> Response {
        Response {
            status: e.http_status(),
            body: e.to_json_body(),
        }
    }

    fn handle(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> Response {
        if path == "/v2/" || path == "/v2" {
            return Response {
                status: 200,
                body: b"{}".to_vec(),
            };
        }
        let Some((gun, rest)) = path.strip_prefix("/v2/").and_then(|p| p.split_once("/_trust/tuf/")) else {
            return Response {
                status: 404,
                body: b"{}".to_vec(),
            };
        };
        assert_eq!(gun, GUN, "the CLI only talks about one repository here");
        let now = Utc::now();
        let mut state = self.state.lock().unwrap();
        match (method, rest) {
            ("POST", "") => {
                let files = parse_multipart(content_type, body);
                match server::apply_update(&state, files, now, &self.keys) {
                    Ok(updates) => {
                        state.commit(&updates);
                        Response {
                            status: 200,
                            body: b"{}".to_vec(),
                        }
                    }
                    Err(e) => Server::error(&e),
                }
            }
            ("GET", "timestamp.key") | ("GET", "snapshot.key") => {
                let role = RoleName::parse(rest.trim_end_matches(".key")).unwrap();
                match server::get_or_create_key(&state, &role, &self.keys) {
                    Ok(key) => Response {
                        status: 200,
                        body: serde_json::to_vec(&key).unwrap(),
                    },
                    Err(e) => Server::error(&e),
                }
            }
            ("POST", "timestamp.key") | ("POST", "snapshot.key") => {
                let role = RoleName::parse(rest.trim_end_matches(".key")).unwrap();
                match server::rotate_key(&state, &role, &self.keys) {
                    Ok(key) => Response {
                        status: 200,
                        body: serde_json::to_vec(&key).unwrap(),
                    },
                    Err(e) => Server::error(&e),
                }
            }
            ("GET", "timestamp.json") => match server::current_timestamp(&state, now, &self.keys) {
                Ok((bytes, updates)) => {
                    state.commit(&updates);
                    Response {
                        status: 200,
                        body: bytes,
                    }
                }
                Err(e) => Server::error(&e),
            },
            ("GET", name) => match server::get_metadata(&state, name) {
                Ok(bytes) => Response {
                    status: 200,
                    body: bytes.to_vec(),
                },
                Err(e) => Server::error(&e),
            },
            _ => Response {
                status: 405,
                body: b"{}".to_vec(),
            },
        }
    }

    fn serve(self: Arc<Self>, listener: TcpListener, stop: Arc<AtomicBool>) {
        for stream in listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let Ok(stream) = stream else { continue };
            // A malformed request only drops its connection.
            let _ = self.connection(stream);
        }
    }

    fn connection(&self, stream: TcpStream) -> std::io::Result<()> {
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let mut parts = line.split_whitespace();
        let (method, target) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let (mut length, mut content_type) = (0usize, String::new());
        loop {
            let mut header = String::new();
            reader.read_line(&mut header)?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "content-type" => content_type = value.trim().to_string(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        let path = target.split('?').next().unwrap_or("");
        let response = self.handle(&method, path, &content_type, &body);
        let mut stream = stream;
        write!(
            stream,
            "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            response.status,
            response.body.len()
        )?;
        stream.write_all(&response.body)?;
        stream.flush()
    }
}

/// `(role, file)` of each part, the role from the part's file name.
fn parse_multipart(content_type: &str, body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let boundary = content_type.split("boundary=").nth(1).unwrap().trim_matches('"');
    let delimiter = format!("--{boundary}");
    let text = body;
    let mut files = Vec::new();
    let positions: Vec<usize> = text
        .windows(delimiter.len())
        .enumerate()
        .filter(|(_, w)| *w == delimiter.as_bytes())
        .map(|(i, _)| i)
        .collect();
    for pair in positions.windows(2) {
        let part = &text[pair[0] + delimiter.len()..pair[1]];
        let Some(split) = part.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let headers = String::from_utf8_lossy(&part[..split]);
        let content = &part[split + 4..part.len() - 2];
        let filename = headers
            .split("filename=\"")
            .nth(1)
            .and_then(|f| f.split('"').next())
            .unwrap_or("")
            .to_string();
        files.push((filename, content.to_vec()));
    }
    files
}

struct Running {
    url: String,
    server: Arc<Server>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so the thread ends.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn start() -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = Arc::new(Server {
        state: Mutex::new(RepoState::new(GUN)),
        keys: MemoryServerKeys::new(),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let (server, stop) = (server.clone(), stop.clone());
        std::thread::spawn(move || server.serve(listener, stop))
    };
    Running {
        url,
        server,
        stop,
        thread: Some(thread),
    }
}

fn notary(url: &str, trust: &Path, args: &[&str]) -> String {
    assert!(
        Path::new(NOTARY).exists(),
        "{NOTARY} is missing: install the Debian package `notary` (apt-get install notary)"
    );
    let out = Command::new(NOTARY)
        .arg("-s")
        .arg(url)
        .arg("-d")
        .arg(trust)
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

fn berth_update(running: &Running, cache: &Path) -> client::TrustedRepo {
    let fetch = |name: &str, _max: u64| -> Result<Vec<u8>, FetchError> {
        let response = running
            .server
            .handle("GET", &format!("/v2/{GUN}/_trust/tuf/{name}"), "", b"");
        match response.status {
            200 => Ok(response.body),
            404 => Err(FetchError::NotFound),
            s => Err(FetchError::Other(format!("status {s}"))),
        }
    };
    client::update(GUN, cache, &TrustPinning::default(), Utc::now(), &fetch).unwrap()
}

#[test]
fn notary_cli_publishes_to_berth_and_berth_verifies_it() {
    let running = start();
    let url = running.url.clone();
    let tmp = TempDir::new().unwrap();
    let trust = tmp.path().join("trust");
    let file = |name: &str, content: &[u8]| {
        let path = tmp.path().join(name);
        std::fs::write(&path, content).unwrap();
        path.to_str().unwrap().to_string()
    };

    // init + first target, client-managed snapshot.
    notary(&url, &trust, &["init", GUN]);
    notary(&url, &trust, &["add", GUN, "v1", &file("m1", b"manifest one")]);
    notary(&url, &trust, &["publish", GUN]);
    let listing = notary(&url, &trust, &["list", GUN]);
    assert!(listing.contains("v1"), "{listing}");

    // A delegation with its own key, and a target in it.
    // notary keeps the new key in its store; berth reads it back to get the
    // public key `delegation add` wants.
    let generated = notary(
        &url,
        &trust,
        &["key", "generate", "ecdsa", "--role", "targets/releases"],
    );
    let key_id = generated.trim().rsplit(' ').next().unwrap().to_string();
    let key_pem = std::fs::read(trust.join("private").join(format!("{key_id}.key"))).unwrap();
    let parsed = keystore::parse_private_key_pem(&key_pem, Some(&Passphrase::from(PASS))).unwrap();
    assert_eq!(parsed.signer.key_id(), key_id);
    let public = file(
        "releases.pem",
        pem::encode(&pem::Pem::new("PUBLIC KEY", parsed.signer.public_key().public.clone())).as_bytes(),
    );
    notary(
        &url,
        &trust,
        &["delegation", "add", GUN, "targets/releases", &public, "--all-paths"],
    );
    notary(&url, &trust, &["publish", GUN]);
    notary(
        &url,
        &trust,
        &[
            "add",
            GUN,
            "v2",
            &file("m2", b"manifest two"),
            "--roles",
            "targets/releases",
        ],
    );
    notary(&url, &trust, &["publish", GUN]);

    // The server takes over the snapshot, then timestamp and root keys rotate.
    notary(&url, &trust, &["key", "rotate", GUN, "snapshot", "-r"]);
    notary(&url, &trust, &["add", GUN, "v3", &file("m3", b"manifest three")]);
    notary(&url, &trust, &["publish", GUN]);
    notary(&url, &trust, &["key", "rotate", GUN, "timestamp", "-r"]);
    notary(&url, &trust, &["key", "rotate", GUN, "root"]);
    notary(&url, &trust, &["add", GUN, "v4", &file("m4", b"manifest four")]);
    notary(&url, &trust, &["publish", GUN]);

    // A fresh notary client trusts the result.
    let fresh = tmp.path().join("fresh");
    let listing = notary(&url, &fresh, &["list", GUN]);
    for tag in ["v1", "v3", "v4"] {
        assert!(listing.contains(tag), "{tag} missing: {listing}");
    }
    assert!(notary(&url, &fresh, &["list", GUN, "--roles", "targets/releases"]).contains("v2"));

    // And so does berth's client, from scratch.
    let cache = TempDir::new().unwrap();
    let repo = berth_update(&running, cache.path());
    assert!(repo.root().signed().version >= 2, "root was rotated");
    for (tag, content) in [
        ("v1", &b"manifest one"[..]),
        ("v3", b"manifest three"),
        ("v4", b"manifest four"),
    ] {
        let target = repo.resolve_target(tag, None).unwrap();
        client::check_target_bytes(tag, content, &target.meta).unwrap();
    }
    let v2 = repo.resolve_target("v2", None).unwrap();
    assert_eq!(v2.roles, vec![RoleName::parse("targets/releases").unwrap()]);
    assert_eq!(v2.meta.hashes, FileMeta::from_bytes(b"manifest two").hashes);
    let snapshot_signer = &repo.snapshot().signatures()[0].keyid;
    let state = running.server.state.lock().unwrap();
    let held = server::get_or_create_key(&state, &RoleName::Snapshot, &running.server.keys).unwrap();
    assert_eq!(snapshot_signer, &held.id(), "the server signs the snapshot now");
}
