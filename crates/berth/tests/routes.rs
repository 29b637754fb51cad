//! Every route of the API through the HTTP layer: each built-in role
//! (granted on the root collection), a user granted full-control on a child
//! collection only, an anonymous caller and the unix socket's admin, on each
//! listener kind (the unix socket, the TLS listener, the loopback listener
//! with its open registry). Who may call what is `crates/api/src/route_roles.txt`,
//! shared with the route table's unit test; the routes come from the
//! daemon's own OpenAPI document, so a route added without a line fails here.
//!
//! Allowed means the authorization layer let the request through: any
//! status but 401 and 403 (placeholders make most handlers answer 404 or
//! 400). Refused means 401 with a `WWW-Authenticate` challenge for a caller
//! without credentials, 403 for a user without the grant.

mod common;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::process::Command;

use common::{base64, free_port, wait_for, Daemon};
use serde_json::Value;

use berth_auth::BUILTIN_ROLES as ROLES;

/// `route_roles.txt`: (method, path) → the roles that may call it
/// (`anonymous` among them for public routes).
fn route_roles() -> BTreeMap<(String, String), Vec<&'static str>> {
    let class = |c: &str| -> Vec<&'static str> {
        match c {
            "PUBLIC" => std::iter::once("anonymous").chain(ROLES).collect(),
            "SELF" => ROLES.to_vec(),
            "VIEW" => vec!["view-only", "restricted-control", "full-control", "admin"],
            "WRITE" => vec!["restricted-control", "full-control", "admin"],
            "EXEC" => vec!["full-control", "admin"],
            "ADMIN" => vec!["admin"],
            other => panic!("route_roles.txt: unknown class {other}"),
        }
    };
    include_str!("../../api/src/route_roles.txt")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 3, "route_roles.txt: bad line {l:?}");
            ((f[0].to_string(), f[1].to_string()), class(f[2]))
        })
        .collect()
}

/// Who calls, and how.
#[derive(Clone)]
struct Caller {
    name: String,
    /// `None`: anonymous.
    token: Option<String>,
    password: Option<String>,
    /// The role it holds on `/`; `None` for the child-collection user and anonymous.
    role: Option<&'static str>,
}

enum Listener<'a> {
    Unix(&'a std::path::Path),
    Tls(u16, &'a std::path::Path),
    Loopback(u16),
}

/// One request with curl; (status, response head).
fn call(listener: &Listener, method: &str, path: &str, headers: &[String], body: &str) -> (u16, String) {
    let mut c = Command::new("curl");
    // An event stream answers its head at once and then waits: cut it short.
    let limit = if path.starts_with("/v1/events") { "1" } else { "10" };
    c.args(["-s", "-S", "-o", "/dev/null", "-D", "-", "-m", limit]);
    if method == "HEAD" {
        c.arg("-I");
    } else {
        c.args(["-X", method]);
    }
    let url = match listener {
        Listener::Unix(socket) => {
            c.arg("--unix-socket").arg(socket);
            format!("http://berth{path}")
        }
        Listener::Tls(port, ca) => {
            c.arg("--cacert").arg(ca);
            format!("https://127.0.0.1:{port}{path}")
        }
        Listener::Loopback(port) => format!("http://127.0.0.1:{port}{path}"),
    };
    for h in headers {
        c.arg("-H").arg(h);
    }
    if !body.is_empty() {
        c.args(["-H", "Content-Type: application/json", "--data-binary", body]);
    }
    let out = c.arg(url).output().expect("curl (Debian package curl)");
    let head = String::from_utf8_lossy(&out.stdout).into_owned();
    // A stream (events) is cut by the time limit after its head arrived.
    let status = head
        .lines()
        .rfind(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: no response: {}", String::from_utf8_lossy(&out.stderr)));
    (status, head)
}

/// The path with its parameters filled: the test container for container
/// routes, names that exist nowhere for the rest.
fn concrete(path: &str, container: &str) -> String {
    let filled = path
        .replace("/v1/containers/{id}", &format!("/v1/containers/{container}"))
        .replace("{path}", "library/nosuch/manifests/latest")
        .replace("{pattern}", "nosuch")
        .replace("{resource}", "nosuch")
        .replace("{prefix}", "nosuch")
        .replace("{name}", "nosuch")
        .replace("{team}", "nosuch")
        .replace("{user}", "nosuch")
        .replace("{id}", "nosuch");
    // A stop that does not wait out a grace period.
    if filled.ends_with("/stop") {
        return filled + "?t=0";
    }
    filled
}

/// The body a route gets: a real create for container creates (so that the
/// collection check runs), else nothing.
fn body_of(method: &str, path: &str) -> &'static str {
    match (method, path) {
        ("POST", "/v1/containers") => r#"{"image":"busybox","cmd":["true"]}"#,
        _ => "",
    }
}

/// Whether a route acts on the test container (in `/`) or creates one there.
fn touches_container_in_root(method: &str, path: &str) -> bool {
    path.starts_with("/v1/containers/{id}") || (method == "POST" && path == "/v1/containers")
}

fn expected_allowed(caller: &Caller, listener: &Listener, method: &str, path: &str, roles: &[&'static str]) -> bool {
    if matches!(listener, Listener::Unix(_)) {
        return true;
    }
    let registry = path.starts_with("/v2/");
    match (&caller.role, &caller.token) {
        (_, None) => {
            // Anonymous: public routes, and the loopback listener's open
            // registry, for pulls and pushes (never deletes).
            roles.contains(&"anonymous")
                || (registry && method != "DELETE" && matches!(listener, Listener::Loopback(_)))
        }
        // Any user may ping the registry, as Distribution's clients expect.
        _ if method == "GET" && path == "/v2/" => true,
        (Some(role), Some(_)) => roles.contains(role),
        // full-control on /child only: nothing in `/` (the test container,
        // a create there, registry repositories there), and what the role
        // allows elsewhere.
        (None, Some(_)) => !registry && !touches_container_in_root(method, path) && roles.contains(&"full-control"),
    }
}

fn create_user(d: &Daemon, name: &str) -> String {
    let out = d.ok(&["user", "create", name]);
    let (n, pw) = out.trim().split_once('\t').expect("name and password");
    assert_eq!(n, name);
    pw.to_string()
}

fn token_for(port: u16, user: &str, password: &str) -> String {
    let r = common::http(
        port,
        "POST",
        "/v1/auth/token",
        &[format!(
            "Authorization: Basic {}",
            base64(format!("{user}:{password}").as_bytes())
        )],
        b"",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["token"].as_str().expect("token").to_string()
}

#[test]
fn every_route_for_every_caller_on_every_listener() {
    let (port, tls_port) = (free_port(), free_port());
    let loopback = format!("127.0.0.1:{port}");
    let tls = format!("127.0.0.1:{tls_port}");
    let d = Daemon::start_with_args(&["--insecure-listen", &loopback, "--listen", &tls]);
    wait_for("the loopback listener", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    wait_for("the TLS listener", || {
        TcpStream::connect(("127.0.0.1", tls_port)).is_ok()
    });
    d.load_busybox();
    let ca = d.data_root().join("pki/ca.pem");

    let mut callers = Vec::new();
    let child_pw = create_user(&d, "child");
    d.ok(&[
        "grant",
        "create",
        "user:child",
        "full-control",
        "--collection",
        "/child",
    ]);
    callers.push(Caller {
        name: "child".into(),
        token: Some(token_for(port, "child", &child_pw)),
        password: Some(child_pw),
        role: None,
    });
    callers.push(Caller {
        name: "anonymous".into(),
        token: None,
        password: None,
        role: None,
    });
    for role in ROLES {
        let name = format!("u-{role}");
        let pw = create_user(&d, &name);
        if role != "none" {
            d.ok(&["grant", "create", &format!("user:{name}"), role, "--collection", "/"]);
        }
        callers.push(Caller {
            token: Some(token_for(port, &name, &pw)),
            password: Some(pw),
            name,
            role: Some(role),
        });
    }

    let roles = route_roles();
    let doc: Value = common::http_unix(&d.socket, "GET", "/v1/openapi.json", &[], b"").json();
    let mut routes: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("operations").keys() {
            routes.push((method.to_uppercase(), path.clone()));
        }
    }
    let mut problems = Vec::new();
    for r in &routes {
        if !roles.contains_key(r) {
            problems.push(format!("{} {} has no line in route_roles.txt", r.0, r.1));
        }
    }
    for r in roles.keys() {
        if !routes.contains(r) {
            problems.push(format!(
                "{} {} is in route_roles.txt but the daemon does not serve it",
                r.0, r.1
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let listeners = [
        ("unix", Listener::Unix(&d.socket)),
        ("tls", Listener::Tls(tls_port, &ca)),
        ("loopback", Listener::Loopback(port)),
    ];
    let mut calls = 0;
    for (listener_name, listener) in &listeners {
        // A container in `/` that has run and exited, made afresh per
        // listener (the callers before may have removed it).
        let container = d
            .ok(&["create", "--name", &format!("probe-{listener_name}"), "busybox", "true"])
            .trim()
            .to_string();
        d.ok(&["start", &container]);
        d.ok(&["wait", &container]);
        let unix_admin = [Caller {
            name: "admin (socket)".into(),
            token: Some(String::new()),
            password: None,
            role: Some("admin"),
        }];
        let who: &[Caller] = if matches!(listener, Listener::Unix(_)) {
            &unix_admin
        } else {
            &callers
        };
        for caller in who {
            for ((method, path), allowed_roles) in &roles {
                let mut headers = Vec::new();
                let password_route = path == "/v1/auth/session" || path == "/v1/auth/token";
                match (&caller.token, &caller.password) {
                    (Some(_), Some(pw)) if password_route => headers.push(format!(
                        "Authorization: Basic {}",
                        base64(format!("{}:{pw}", caller.name).as_bytes())
                    )),
                    (Some(t), _) if !t.is_empty() => headers.push(format!("Authorization: Bearer {t}")),
                    _ => {}
                }
                let url = concrete(path, &container);
                let (status, head) = call(listener, method, &url, &headers, body_of(method, path));
                calls += 1;
                let allowed = expected_allowed(caller, listener, method, path, allowed_roles);
                let refused = status == 401 || status == 403;
                let ok = if allowed {
                    !refused
                } else if caller.token.is_none() {
                    status == 401 && head.to_ascii_lowercase().contains("www-authenticate:")
                } else {
                    status == 403
                };
                if !ok {
                    problems.push(format!(
                        "{listener_name}: {method} {url} as {}: {status}, expected {}",
                        caller.name,
                        if allowed {
                            "allowed"
                        } else if caller.token.is_none() {
                            "401 with a challenge"
                        } else {
                            "403"
                        }
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {calls} calls:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
