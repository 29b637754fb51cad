//! The audit fails closed: a change whose audit entry cannot be written is
//! refused with 503 and not made; once the log can be written again the
//! change goes through, recorded as started and then as done, and the chain
//! verifies. In its own test binary: the injected failure is process-wide.

use std::sync::atomic::Ordering;

use axum::body::Body;
use berth_api::Principal;
use http_body_util::BodyExt;
use hyper::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

async fn call(router: &axum::Router, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    req.extensions_mut().insert(Principal::Admin);
    let resp = router.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn names(users: &Value) -> Vec<String> {
    users
        .as_array()
        .expect("a list of users")
        .iter()
        .filter_map(|u| u["name"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_the_audit_log_cannot_record_is_not_made() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = berth_engine::Engine::open(berth_engine::Config {
        data_root: dir.path().join("root"),
        exe: std::env::current_exe().expect("exe"),
    })
    .await
    .expect("engine");
    let router = berth_api::router(berth_node::open(engine, berth_node::Options::default()).expect("services"));
    let create = r#"{"name":"ada","password":"a long enough password"}"#;

    berth_auth::audit::INJECTED_APPEND_FAILURE.store(true, Ordering::Relaxed);
    let (status, body) = call(&router, "POST", "/v1/users", create).await;
    berth_auth::audit::INJECTED_APPEND_FAILURE.store(false, Ordering::Relaxed);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "UNAVAILABLE", "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("nothing was changed") && message.contains("audit log cannot be written"),
        "{body}"
    );
    let (status, users) = call(&router, "GET", "/v1/users", "").await;
    assert_eq!(status, StatusCode::OK, "{users}");
    assert!(
        !names(&users).contains(&"ada".to_string()),
        "the refused change was made: {users}"
    );

    let (status, body) = call(&router, "POST", "/v1/users", create).await;
    assert!(status.is_success(), "{status}: {body}");
    let (_, users) = call(&router, "GET", "/v1/users", "").await;
    assert!(names(&users).contains(&"ada".to_string()), "{users}");

    // Recorded twice: started before the change, allowed after it.
    let (status, entries) = call(&router, "GET", "/v1/audit", "").await;
    assert_eq!(status, StatusCode::OK, "{entries}");
    let results: Vec<(&str, u64)> = entries
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] == "POST /v1/users")
        .map(|e| {
            (
                e["result"].as_str().unwrap_or_default(),
                e["status"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(results, [("started", 100), ("allowed", 201)], "{entries}");
    let (status, verified) = call(&router, "GET", "/v1/audit/verify", "").await;
    assert_eq!(status, StatusCode::OK, "{verified}");
}
