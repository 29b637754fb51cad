//! Access control end to end: a real daemon with its loopback TCP listener,
//! real users logging in with passwords and personal access tokens, roles
//! refusing what they must refuse (401/403) with audit entries, tokens
//! expiring and revoked, the audit chain verifying, and no secret in the
//! daemon's log.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{base64, free_port, http, wait_for, Daemon, HttpResponse as Resp};
use serde_json::{json, Value};

enum Auth<'a> {
    None,
    Basic(&'a str, &'a str),
    Token(&'a str),
}

struct Server {
    daemon: Daemon,
    port: u16,
}

impl Server {
    fn start() -> Self {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let daemon = Daemon::start_with_args(&["--insecure-listen", &listen]);
        wait_for("the TCP listener", || TcpStream::connect(("127.0.0.1", port)).is_ok());
        Self { daemon, port }
    }

    fn req(&self, method: &str, path: &str, auth: Auth, body: Option<&Value>) -> Resp {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut headers = vec!["Content-Type: application/json".to_string()];
        match auth {
            Auth::None => {}
            Auth::Basic(u, p) => headers.push(format!(
                "Authorization: Basic {}",
                base64(format!("{u}:{p}").as_bytes())
            )),
            Auth::Token(t) => headers.push(format!("Authorization: Bearer {t}")),
        }
        http(self.port, method, path, &headers, body.as_bytes())
    }

    /// `berth` over the socket (the admin); stdout.
    fn admin(&self, args: &[&str]) -> String {
        self.daemon.ok(args)
    }

    fn audit(&self) -> Vec<Value> {
        let out = self.admin(&["audit", "ls", "--format", "json"]);
        serde_json::from_str::<Value>(&out)
            .expect("audit json")
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// A token for `user` from `POST /v1/auth/token` with HTTP Basic.
    fn login(&self, user: &str, password: &str) -> String {
        let r = self.req("POST", "/v1/auth/token", Auth::Basic(user, password), None);
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["token"].as_str().expect("token").to_string()
    }
}

/// Creates a user with a generated password (printed once by the CLI).
fn create_user(s: &Server, name: &str) -> String {
    let out = s.admin(&["user", "create", name]);
    let (n, pw) = out.trim().split_once('\t').expect("name and password");
    assert_eq!(n, name);
    pw.to_string()
}

fn has_entry(entries: &[Value], user: &str, result: &str, status: u64, action_part: &str) -> bool {
    entries.iter().any(|e| {
        e["user"] == user
            && e["result"] == result
            && e["status"] == status
            && e["action"].as_str().unwrap_or_default().contains(action_part)
    })
}

#[test]
fn users_roles_tokens_and_audit_over_tcp() {
    let s = Server::start();
    let mut secrets = Vec::new();

    // Bootstrap: the admin's one-time password is in a root-only file.
    let pw_file = s.daemon.data_root().join("admin-password");
    let admin_pw = std::fs::read_to_string(&pw_file)
        .expect("admin-password")
        .trim()
        .to_string();
    secrets.push(admin_pw.clone());
    let admin_token = s.login("admin", &admin_pw);
    secrets.push(admin_token.clone());
    assert_eq!(s.req("GET", "/v1/users", Auth::Token(&admin_token), None).status, 200);
    let users = s.req("GET", "/v1/users", Auth::Token(&admin_token), None).text();
    assert!(!users.contains("argon2") && !users.contains(&admin_pw), "{users}");

    // No credentials: only the version and the CA certificate; anything
    // else is 401 with the schemes to use.
    assert_eq!(s.req("GET", "/v1/version", Auth::None, None).status, 200);
    assert_eq!(s.req("GET", "/v1/ca.pem", Auth::None, None).status, 200);
    for path in [
        "/v1/users",
        "/v1/info",
        "/metrics",
        "/v1/events",
        "/v1/plugins",
        "/v1/vulndb",
    ] {
        let r = s.req("GET", path, Auth::None, None);
        assert_eq!(r.status, 401, "{path}: {}", r.text());
        let head = r.head.to_ascii_lowercase();
        assert!(
            head.contains("www-authenticate: bearer realm=\"berth\"")
                && head.contains("www-authenticate: basic realm=\"berth\""),
            "{path}: {}",
            r.head
        );
        assert_eq!(r.json()["code"], "UNAUTHORIZED", "{path}");
    }

    // Bodies have limits: 1 MiB of JSON unless the route says otherwise,
    // 413 naming it, nothing created.
    let big = json!({"name": "huge", "password": "x".repeat(2 << 20)});
    let r = s.req("POST", "/v1/users", Auth::Token(&admin_token), Some(&big));
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["code"], "PAYLOAD_TOO_LARGE");
    assert!(
        r.text().contains("1 MiB") && r.text().contains("POST /v1/users"),
        "{}",
        r.text()
    );
    assert!(!s.admin(&["user", "ls"]).contains("huge"));

    // A wrong password: 401 and an audit entry.
    let r = s.req("GET", "/v1/users", Auth::Basic("admin", "not-the-password"), None);
    assert_eq!(r.status, 401);
    assert!(!r.text().contains("not-the-password"));
    assert!(
        has_entry(&s.audit(), "admin", "failed", 401, "login"),
        "{:#?}",
        s.audit()
    );

    // A restricted-control user and a view-only user.
    let rita_pw = create_user(&s, "rita");
    let vera_pw = create_user(&s, "vera");
    secrets.extend([rita_pw.clone(), vera_pw.clone()]);
    s.admin(&[
        "grant",
        "create",
        "user:rita",
        "restricted-control",
        "--collection",
        "/",
    ]);
    s.admin(&["grant", "create", "user:vera", "view-only"]);
    let listed: Value = serde_json::from_str(&s.admin(&["grant", "ls", "--format", "json"])).expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");
    let rita = s.login("rita", &rita_pw);
    let vera = s.login("vera", &vera_pw);
    secrets.extend([rita.clone(), vera.clone()]);

    s.daemon.load_busybox();
    let id = s.admin(&["create", "busybox", "sleep", "100"]).trim().to_string();

    // The CLI over TCP carries BERTH_TOKEN: view-only may list, not remove;
    // without a token the same list is refused.
    let tcp_cli = |token: Option<&str>, args: &[&str]| {
        let mut c = std::process::Command::new(common::bin());
        c.arg("-H")
            .arg(format!("http://127.0.0.1:{}", s.port))
            .args(args)
            .env_remove("BERTH_TOKEN");
        if let Some(t) = token {
            c.env("BERTH_TOKEN", t);
        }
        c.output().expect("berth")
    };
    let listed = tcp_cli(Some(&vera), &["ps", "-aq"]);
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&id[..12]));
    assert!(!tcp_cli(Some(&vera), &["rm", "-f", &id]).status.success());
    assert!(!tcp_cli(None, &["ps", "-aq"]).status.success());

    // Restricted control may create plain containers...
    let plain = json!({"image": "busybox", "cmd": ["true"]});
    let r = s.req("POST", "/v1/containers", Auth::Token(&rita), Some(&plain));
    assert_eq!(r.status, 201, "{}", r.text());
    // ...but not mount the host, run privileged, exec, or grant itself admin.
    let host_mount = json!({"image": "busybox", "binds": [{"source": "/", "target": "/host"}]});
    let privileged = json!({"image": "busybox", "privileged": true});
    let exec = json!({"cmd": ["sh"]});
    let escalate = json!({"subject": "user:rita", "role": "admin", "collection": "/"});
    let refusals = [
        ("POST", "/v1/containers".to_string(), host_mount),
        ("POST", "/v1/containers".to_string(), privileged),
        ("POST", format!("/v1/containers/{id}/exec"), exec),
        ("POST", "/v1/grants".to_string(), escalate),
    ];
    for (method, path, body) in &refusals {
        let r = s.req(method, path, Auth::Token(&rita), Some(body));
        assert_eq!(r.status, 403, "{method} {path} {body}: {}", r.text());
    }
    let entries = s.audit();
    assert!(
        has_entry(&entries, "rita", "denied", 403, "POST /v1/containers"),
        "{entries:#?}"
    );
    assert!(has_entry(&entries, "rita", "denied", 403, "/exec"), "{entries:#?}");
    assert!(
        has_entry(&entries, "rita", "denied", 403, "POST /v1/grants"),
        "{entries:#?}"
    );
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["user"] == "rita" && e["result"] == "denied")
            .count(),
        4
    );

    // View-only sees, does not change.
    let r = s.req("GET", "/v1/containers?all=true", Auth::Token(&vera), None);
    assert_eq!(r.status, 200);
    assert!(r.json().as_array().is_some_and(|a| a.len() == 2), "{}", r.text());
    assert_eq!(
        s.req("POST", "/v1/containers", Auth::Token(&vera), Some(&plain)).status,
        403
    );
    assert_eq!(s.req("GET", "/v1/audit", Auth::Token(&vera), None).status, 403);

    // A token scoped to reading cannot write even for a user who may.
    let read_only = s.req(
        "POST",
        "/v1/tokens",
        Auth::Token(&rita),
        Some(&json!({"scopes": ["read"]})),
    );
    assert_eq!(read_only.status, 201);
    let read_only = read_only.json()["token"].as_str().expect("token").to_string();
    secrets.push(read_only.clone());
    assert_eq!(
        s.req("GET", "/v1/containers", Auth::Token(&read_only), None).status,
        200
    );
    assert_eq!(
        s.req("POST", "/v1/containers", Auth::Token(&read_only), Some(&plain))
            .status,
        403
    );

    // Revoked: 401 from then on.
    let mine: Value = s.req("GET", "/v1/tokens", Auth::Token(&rita), None).json();
    assert!(mine.as_array().is_some_and(|t| t.iter().all(|t| t["user"] == "rita")));
    let rita_id = rita
        .trim_start_matches("berth_pat_")
        .split('_')
        .next()
        .expect("id")
        .to_string();
    assert_eq!(
        s.req("DELETE", &format!("/v1/tokens/{rita_id}"), Auth::Token(&rita), None)
            .status,
        204
    );
    assert_eq!(s.req("GET", "/v1/containers", Auth::Token(&rita), None).status, 401);

    // Expired: 401 once its second is over.
    let short = s
        .admin(&["token", "create", "--user", "vera", "--expires", "1s"])
        .trim()
        .to_string();
    secrets.push(short.clone());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = s.req("GET", "/v1/containers", Auth::Token(&short), None).status;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(Instant::now() < deadline, "the token did not expire");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Password from stdin, then change it.
    let mut child = s
        .daemon
        .cmd(&["user", "create", "piped", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"piped-password-1\n")
        .expect("write");
    assert!(child.wait().expect("wait").success());
    secrets.push("piped-password-1".into());
    assert_eq!(
        s.req("GET", "/v1/tokens", Auth::Basic("piped", "piped-password-1"), None)
            .status,
        200
    );

    // The chain verifies.
    let v = s.admin(&["audit", "verify"]);
    assert!(v.contains("intact"), "{v}");
    let path = s.daemon.dir.path().join("audit.ndjson");
    s.admin(&["audit", "export", "-o", path.to_str().expect("utf8")]);
    let exported = std::fs::read_to_string(&path).expect("export");
    assert!(exported.lines().count() >= 10);
    assert!(s.admin(&["audit", "ls", "--user", "rita"]).contains("rita"));

    // No secret reaches the daemon's log, nor the audit log.
    let log = std::fs::read_to_string(s.daemon.dir.path().join("daemon.log")).expect("log");
    assert!(log.contains("admin-password"), "the log names the password file");
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "a secret is in the daemon log");
        assert!(!exported.contains(secret.as_str()), "a secret is in the audit log");
    }
}

/// A scan's functional test starts a container, so it needs the grant that
/// `berth run` of the image needs, not only image write; and the event
/// stream shows a user only the events of what they may read.
#[test]
fn scan_tests_need_run_rights_and_events_follow_grants() {
    use std::io::{Read, Write};
    let s = Server::start();
    s.daemon.load_busybox();
    s.admin(&[
        "role",
        "create",
        "image-writer",
        "image:read",
        "image:write",
        "system:read",
    ]);
    let password = create_user(&s, "ivy");
    s.admin(&["grant", "create", "user:ivy", "image-writer"]);
    let ivy = s.login("ivy", &password);

    let spec = |test: Option<&str>| json!({"image": "busybox", "checks": ["none"], "deny_licenses": [], "test": test, "test_healthcheck": false});
    let r = s.req("POST", "/v1/scans", Auth::Token(&ivy), Some(&spec(Some("true"))));
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("container"), "{}", r.text());
    assert_eq!(
        s.admin(&["ps", "-a", "-q"]).trim(),
        "",
        "the refused test left a container"
    );
    let r = s.req("POST", "/v1/scans", Auth::Token(&ivy), Some(&spec(None)));
    assert_eq!(r.status, 200, "a scan without a test is ivy's to run: {}", r.text());
    assert!(r.text().contains("\"done\""), "{}", r.text());

    // ivy's event stream: image events, never container events.
    let mut stream = TcpStream::connect(("127.0.0.1", s.port)).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .expect("timeout");
    write!(
        stream,
        "GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {ivy}\r\n\r\n"
    )
    .expect("request");
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    // The stream is subscribed once its headers arrive.
    while !seen.contains("\r\n\r\n") {
        let n = stream.read(&mut buf).expect("the stream's headers");
        assert!(n > 0, "the stream ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    s.admin(&["run", "--rm", "busybox", "true"]);
    s.admin(&["tag", "busybox", "seen-by-ivy:1"]);
    while !seen.contains("seen-by-ivy:1") {
        let n = stream.read(&mut buf).expect("the tag event");
        assert!(n > 0, "the stream ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // Events arrive in order: the run's came before the tag's.
    assert!(seen.contains("\"type\":\"image\""), "{seen}");
    assert!(
        !seen.contains("\"type\":\"container\""),
        "ivy saw container events: {seen}"
    );
}
