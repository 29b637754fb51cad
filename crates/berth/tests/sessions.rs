//! Web UI sessions end to end: a password login becomes an HttpOnly,
//! Secure, SameSite=Strict cookie and a CSRF token; reads work with the
//! cookie alone, changes only with the CSRF token too (refused with 403 and
//! an audit entry otherwise); logout ends the session; a token cannot start
//! one; no session secret reaches the daemon's log.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{free_port, wait_for, Daemon};
use serde_json::Value;

struct Resp {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn base64(data: &[u8]) -> String {
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

fn req(port: u16, method: &str, path: &str, headers: &[String]) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("write");
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
    Resp { status, head, body }
}

#[test]
fn sessions_need_their_csrf_token_for_changes() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let d = Daemon::start_with_args(&["--insecure-listen", &listen]);
    wait_for("the TCP listener", || TcpStream::connect(("127.0.0.1", port)).is_ok());
    let out = d.ok(&["user", "create", "alice"]);
    let (_, password) = out.trim().split_once('\t').expect("name and password");
    let basic = format!(
        "Authorization: Basic {}",
        base64(format!("alice:{password}").as_bytes())
    );

    // Login: the cookie's attributes and the CSRF token.
    let r = req(port, "POST", "/v1/auth/session", std::slice::from_ref(&basic));
    assert_eq!(r.status, 201, "{}", r.text());
    let set_cookie = r
        .head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a Set-Cookie header")
        .to_string();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let token = set_cookie
        .split_once("berth_session=")
        .and_then(|(_, rest)| rest.split(';').next())
        .expect("cookie value")
        .to_string();
    let csrf = r.json()["csrf_token"].as_str().expect("csrf token").to_string();
    assert!(!r.text().contains(&token), "the session token is in the body");
    let cookie = format!("Cookie: theme=dark; berth_session={token}");

    // Reads with the cookie alone.
    let r = req(port, "GET", "/v1/whoami", std::slice::from_ref(&cookie));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("alice"), "{}", r.text());

    // A change without the CSRF token, or with a wrong one: 403, audited.
    let r = req(port, "POST", "/v1/auth/token", std::slice::from_ref(&cookie));
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("CSRF"), "{}", r.text());
    let r = req(
        port,
        "POST",
        "/v1/auth/token",
        &[cookie.clone(), "X-CSRF-Token: not-the-token".into()],
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let audit: Value = serde_json::from_str(&d.ok(&["audit", "ls", "--format", "json"])).expect("audit");
    let refused = audit
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["user"] == "alice" && e["result"] == "denied" && e["detail"] == "CSRF token missing or wrong")
        .count();
    assert_eq!(refused, 2, "{audit}");

    // With it, the change goes through.
    let with_csrf = [cookie.clone(), format!("X-CSRF-Token: {csrf}")];
    let r = req(port, "POST", "/v1/auth/token", &with_csrf);
    assert_eq!(r.status, 201, "{}", r.text());
    let pat = r.json()["token"].as_str().expect("token").to_string();

    // A token cannot start a session (it would shed the token's scopes).
    let r = req(
        port,
        "POST",
        "/v1/auth/session",
        &[format!("Authorization: Bearer {pat}")],
    );
    assert_eq!(r.status, 403, "{}", r.text());

    // Logout ends the session and clears the cookie.
    let r = req(port, "DELETE", "/v1/auth/session", &with_csrf);
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(
        r.head.contains("berth_session=;") && r.head.contains("Max-Age=0"),
        "{}",
        r.head
    );
    let r = req(port, "GET", "/v1/whoami", std::slice::from_ref(&cookie));
    assert_eq!(r.status, 401, "{}", r.text());

    // A removed user's sessions end with them.
    let r = req(port, "POST", "/v1/auth/session", std::slice::from_ref(&basic));
    let token2 = r
        .head
        .split_once("berth_session=")
        .and_then(|(_, rest)| rest.split(';').next())
        .expect("cookie")
        .to_string();
    d.ok(&["user", "rm", "alice"]);
    let r = req(port, "GET", "/v1/whoami", &[format!("Cookie: berth_session={token2}")]);
    assert_eq!(r.status, 401, "{}", r.text());

    let log = std::fs::read_to_string(d.dir.path().join("daemon.log")).unwrap_or_default();
    for secret in [&token, &token2, &csrf] {
        assert!(!log.contains(secret.as_str()), "a session secret is in the daemon log");
    }
}
