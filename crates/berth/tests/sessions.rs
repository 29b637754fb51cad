//! Web UI sessions end to end: a password login becomes an HttpOnly,
//! Secure, SameSite=Strict cookie and a CSRF token; reads work with the
//! cookie alone, changes only with the CSRF token too (refused with 403 and
//! an audit entry otherwise); logout ends the session; a token cannot start
//! one; no session secret reaches the daemon's log.

mod common;

use std::net::TcpStream;

use common::{base64, free_port, http, wait_for, Daemon, HttpResponse};
use serde_json::Value;

fn req(port: u16, method: &str, path: &str, headers: &[String]) -> HttpResponse {
    http(port, method, path, headers, b"")
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
