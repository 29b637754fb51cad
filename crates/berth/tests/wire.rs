//! The wire contract holds end to end: a real daemon answers a sample of
//! routes (one or more per area, reads and writes, success statuses), and
//! every JSON body it sends validates against the schema its route
//! declares in the daemon's own `/v1/openapi.json`, checked by PyPI's
//! `jsonschema` (JSON Schema 2020-12, as OpenAPI 3.1 uses) in the pinned
//! validator venv the OpenAPI test uses.

mod common;

#[path = "../../../tests/support/python_venv.rs"]
mod python_venv;

use std::process::Command;

use common::{http_unix, Daemon};
use serde_json::{json, Value};

/// Validates each `(method, route, status, body)` against the document: the
/// schema of that route's response for that status. Prints each failure.
const CHECK: &str = r#"
import json, sys
from jsonschema import Draft202012Validator
doc = json.load(open(sys.argv[1]))
samples = json.load(open(sys.argv[2]))
failed = 0
for method, route, status, body in samples:
    op = doc["paths"][route][method.lower()]
    answer = op["responses"].get(str(status))
    if answer is None:
        print(f"{method} {route}: status {status} is not in the document"); failed += 1; continue
    schema = answer.get("content", {}).get("application/json", {}).get("schema")
    if schema is None:
        print(f"{method} {route}: {status} declares no JSON schema"); failed += 1; continue
    root = dict(schema); root["components"] = doc["components"]
    errors = sorted(Draft202012Validator(root).iter_errors(body), key=lambda e: list(e.path))
    for e in errors[:5]:
        print(f"{method} {route}: at {list(e.path)}: {e.message[:300]}")
    failed += bool(errors)
print(f"checked {len(samples)} answers, {failed} failed")
sys.exit(1 if failed else 0)
"#;

struct Samples<'a> {
    daemon: &'a Daemon,
    taken: Vec<Value>,
}

impl Samples<'_> {
    /// Calls `path` (the route `route`) as the admin; keeps its JSON answer.
    fn call(&mut self, method: &str, route: &str, path: &str, body: Option<Value>) -> Value {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let headers = vec!["Content-Type: application/json".to_string()];
        let r = http_unix(&self.daemon.socket, method, path, &headers, &bytes);
        assert!(
            (200..300).contains(&r.status),
            "{method} {path}: {} {}",
            r.status,
            r.text()
        );
        let v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{method} {path}: not JSON: {e}"));
        self.taken.push(json!([method, route, r.status, v.clone()]));
        v
    }
}

#[test]
fn answers_match_the_schemas_their_routes_declare() {
    let python = python_venv::openapi_validator().unwrap_or_else(|e| panic!("{e}"));
    let d = Daemon::start();
    d.load_busybox();
    let id = d.ok(&["run", "-d", "--name", "wire", "busybox", "true"]);
    let id = id.trim();
    d.ok(&["wait", id]);
    let mut s = Samples {
        daemon: &d,
        taken: Vec::new(),
    };

    // System.
    s.call("GET", "/v1/version", "/v1/version", None);
    s.call("GET", "/v1/info", "/v1/info", None);
    s.call("GET", "/v1/whoami", "/v1/whoami", None);
    // Containers and images.
    s.call("GET", "/v1/containers", "/v1/containers?all=true", None);
    s.call("GET", "/v1/containers/{id}", &format!("/v1/containers/{id}"), None);
    s.call(
        "POST",
        "/v1/containers/{id}/wait",
        &format!("/v1/containers/{id}/wait"),
        None,
    );
    s.call("GET", "/v1/images", "/v1/images", None);
    s.call("GET", "/v1/images/inspect", "/v1/images/inspect?ref=busybox", None);
    s.call(
        "POST",
        "/v1/images/tag",
        "/v1/images/tag?source=busybox&target=wire:1",
        None,
    );
    s.call("DELETE", "/v1/images", "/v1/images?ref=wire:1", None);
    // Access control.
    s.call(
        "POST",
        "/v1/users",
        "/v1/users",
        Some(json!({"name": "wanda", "password": "correct horse battery"})),
    );
    s.call("GET", "/v1/users", "/v1/users", None);
    s.call("POST", "/v1/teams", "/v1/teams", Some(json!({"name": "ops"})));
    s.call(
        "POST",
        "/v1/teams/{name}/members",
        "/v1/teams/ops/members",
        Some(json!({"user": "wanda"})),
    );
    s.call("GET", "/v1/teams", "/v1/teams", None);
    s.call("POST", "/v1/orgs", "/v1/orgs", Some(json!({"name": "acme"})));
    s.call(
        "POST",
        "/v1/orgs/{name}/teams",
        "/v1/orgs/acme/teams",
        Some(json!({"team": "ops"})),
    );
    s.call("GET", "/v1/orgs", "/v1/orgs", None);
    s.call(
        "POST",
        "/v1/roles",
        "/v1/roles",
        Some(json!({"name": "peek", "permissions": ["container:read"]})),
    );
    s.call("GET", "/v1/roles", "/v1/roles", None);
    s.call(
        "POST",
        "/v1/grants",
        "/v1/grants",
        Some(json!({"subject": "team:ops", "role": "peek", "collection": "/"})),
    );
    s.call("GET", "/v1/grants", "/v1/grants", None);
    s.call(
        "POST",
        "/v1/tokens",
        "/v1/tokens",
        Some(json!({"user": "wanda", "scopes": ["read"], "expires_in": 3600})),
    );
    s.call("GET", "/v1/tokens", "/v1/tokens", None);
    s.call("GET", "/v1/directories", "/v1/directories", None);
    // Audit.
    s.call("GET", "/v1/audit", "/v1/audit?limit=20", None);
    s.call("GET", "/v1/audit/verify", "/v1/audit/verify", None);
    s.call("GET", "/v1/audit/export", "/v1/audit/export", None);
    s.call("GET", "/v1/audit/levels", "/v1/audit/levels", None);
    s.call(
        "PUT",
        "/v1/audit/levels/{resource}",
        "/v1/audit/levels/image",
        Some(json!({"level": "request"})),
    );
    // Client bundles.
    let issued = s.call("POST", "/v1/bundles", "/v1/bundles?user=wanda", None);
    s.call("GET", "/v1/bundles", "/v1/bundles", None);
    let bundle = issued["bundle"]["id"].as_str().expect("a bundle id").to_string();
    s.call("DELETE", "/v1/bundles/{id}", &format!("/v1/bundles/{bundle}"), None);
    // Registry, trust, scans, plugins.
    s.call(
        "PUT",
        "/v1/registry/collections/{prefix}",
        "/v1/registry/collections/team",
        Some(json!({"collection": "/ops"})),
    );
    s.call("GET", "/v1/registry/collections", "/v1/registry/collections", None);
    s.call("POST", "/v1/registry/gc", "/v1/registry/gc?grace=0", None);
    s.call(
        "PUT",
        "/v1/trust/policies/{pattern}",
        "/v1/trust/policies/prod%2F**",
        Some(json!({"signers": ["alice"], "threshold": 1})),
    );
    s.call("GET", "/v1/trust/policies", "/v1/trust/policies", None);
    s.call("GET", "/v1/scans", "/v1/scans", None);
    s.call("GET", "/v1/scans/webhooks", "/v1/scans/webhooks", None);
    s.call("GET", "/v1/vulndb", "/v1/vulndb", None);
    s.call("GET", "/v1/plugins", "/v1/plugins", None);

    let taken = s.taken.len();
    let dir = tempfile::tempdir().expect("tempdir");
    let doc = http_unix(&d.socket, "GET", "/v1/openapi.json", &[], b"");
    assert_eq!(doc.status, 200, "{}", doc.text());
    let doc_path = dir.path().join("openapi.json");
    let samples_path = dir.path().join("samples.json");
    std::fs::write(&doc_path, &doc.body).expect("write");
    std::fs::write(&samples_path, serde_json::to_vec(&s.taken).expect("json")).expect("write");
    let said = python_venv::run(
        Command::new(python)
            .args(["-c", CHECK])
            .arg(&doc_path)
            .arg(&samples_path),
        "jsonschema",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(said.contains(&format!("checked {taken} answers, 0 failed")), "{said}");
}

#[test]
fn the_validator_rejects_an_answer_that_breaks_its_schema() {
    // The check above must be able to fail: a version answer missing a
    // field and carrying a number where a string belongs is refused.
    let python = python_venv::openapi_validator().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let doc_path = dir.path().join("openapi.json");
    let samples_path = dir.path().join("samples.json");
    std::fs::write(
        &doc_path,
        serde_json::to_vec(&berth_api::openapi_document()).expect("json"),
    )
    .expect("write");
    let bad = json!([["GET", "/v1/version", 200, {"version": 7, "os": "linux", "arch": "x86_64"}]]);
    std::fs::write(&samples_path, bad.to_string()).expect("write");
    let out = Command::new(python)
        .args(["-c", CHECK])
        .arg(&doc_path)
        .arg(&samples_path)
        .output()
        .expect("python");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("'api' is a required property"), "{text}");
    assert!(text.contains("7 is not of type 'string'"), "{text}");
}

#[test]
fn malformed_bodies_get_the_error_document() {
    // A body the route's type cannot read is a 400 with `{"code","message"}`
    // naming what was wrong, like every other error, and creates nothing.
    let d = Daemon::start();
    let json_type = vec!["Content-Type: application/json".to_string()];
    let cases: [(&[String], &[u8], &str); 4] = [
        (&json_type, b"{", "invalid request body: "),
        (&json_type, br#"{"password":"a-long-password"}"#, "name"),
        (
            &json_type,
            br#"{"name":7,"password":"a-long-password"}"#,
            "invalid type",
        ),
        (
            &[],
            br#"{"name":"eve","password":"a-long-password"}"#,
            "Content-Type: application/json",
        ),
    ];
    for (headers, body, says) in cases {
        let r = http_unix(&d.socket, "POST", "/v1/users", headers, body);
        assert_eq!(r.status, 400, "{}: {}", String::from_utf8_lossy(body), r.text());
        let v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.text()));
        assert_eq!(v["code"], "INVALID_ARGUMENT", "{v}");
        let message = v["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("invalid request body: "), "{message}");
        assert!(message.contains(says), "{message} should say {says}");
    }
    let users = http_unix(&d.socket, "GET", "/v1/users", &[], b"");
    assert!(!users.text().contains("\"eve\""), "{}", users.text());
}
