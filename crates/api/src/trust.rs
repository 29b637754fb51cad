//! Notary v1's trust API on the registry's `/v2/` routes: `POST` an update
//! (multipart, one part per role), `GET` metadata by role, version or
//! checksum, `GET|POST` the server-held timestamp/snapshot keys, `DELETE`
//! a GUN, and the changefeeds. The logic is `berth_notary::service`; this
//! file is HTTP only. Errors use Notary's body
//! (`{"errors":[{"code","message","detail"}]}`).

// The error side of these results is the finished HTTP response.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_notary::server::ServerError;
use berth_notary::service::TrustService;

use crate::blocking::{blocking, Panicked};
use crate::AppState;

/// An update's total size cap (every role's metadata together).
const MAX_UPDATE: usize = 16 << 20;

/// The registry repository a GUN names, for authorization: the GUN without
/// its registry host (`host:7443/team/app` → `team/app`).
pub fn repository_of(gun: &str) -> &str {
    match gun.split_once('/') {
        Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => rest,
        _ => gun,
    }
}

fn error(e: &ServerError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    if status.is_server_error() {
        tracing::error!(error = %e, "trust service error");
    }
    json_response(status, e.to_json_body())
}

fn notary_error(status: StatusCode, code: &str, message: &str, detail: serde_json::Value) -> Response {
    let body = serde_json::json!({"errors": [{"code": code, "message": message, "detail": detail}]});
    json_response(status, serde_json::to_vec(&body).unwrap_or_default())
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [("content-type", "application/json")], body).into_response()
}

fn service(s: &AppState) -> Result<Arc<TrustService>, Response> {
    s.trust.clone().ok_or_else(|| {
        notary_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "NO_STORAGE",
            "The server does not have a storage backend configured.",
            serde_json::Value::Null,
        )
    })
}

/// The outcome of trust work run through [`blocking`], as Notary answers it.
fn answered<T>(done: Result<Result<T, ServerError>, Panicked>) -> Result<T, Response> {
    match done {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(error(&e)),
        Err(p) => Err(error(&ServerError::Keys(p.to_string()))),
    }
}

/// `/v2/{gun}/_trust/tuf/{rest}`.
pub async fn handle(
    s: &AppState,
    method: &Method,
    gun: String,
    rest: String,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    match serve(s, method, gun, rest, headers, body).await {
        Ok(r) | Err(r) => r,
    }
}

async fn serve(
    s: &AppState,
    method: &Method,
    gun: String,
    rest: String,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Response> {
    let trust = service(s)?;
    let now = chrono::Utc::now();
    if rest.is_empty() {
        return match *method {
            Method::POST => {
                let files = multipart_files(headers, body).await?;
                answered(blocking(move || trust.update(&gun, files, now)).await)?;
                Ok(StatusCode::OK.into_response())
            }
            Method::DELETE => {
                answered(blocking(move || trust.delete(&gun)).await)?;
                Ok(StatusCode::OK.into_response())
            }
            _ => Err(not_found()),
        };
    }
    if let Some(role) = rest.strip_suffix(".key") {
        let role = role.to_string();
        let key = match *method {
            Method::GET => answered(blocking(move || trust.get_key(&gun, &role)).await)?,
            Method::POST => answered(blocking(move || trust.rotate_key(&gun, &role)).await)?,
            _ => return Err(not_found()),
        };
        return Ok(json_response(StatusCode::OK, key.to_json().to_string().into_bytes()));
    }
    let Some(name) = rest.strip_suffix(".json") else {
        return Err(not_found());
    };
    if *method != Method::GET && *method != Method::HEAD {
        return Err(not_found());
    }
    let name = name.to_string();
    let data = answered(blocking(move || trust.get(&gun, &name, now)).await)?;
    let mut response = (
        StatusCode::OK,
        [("content-type", "application/json")],
        Body::from(data.as_ref().clone()),
    )
        .into_response();
    if *method == Method::HEAD {
        *response.body_mut() = Body::empty();
    }
    Ok(response)
}

fn not_found() -> Response {
    notary_error(
        StatusCode::NOT_FOUND,
        "GENERIC_NOT_FOUND",
        "You have requested a resource that does not exist.",
        serde_json::Value::Null,
    )
}

/// The parts of a `multipart/form-data` update: `(file name, bytes)`; the
/// file name is the role.
async fn multipart_files(headers: &HeaderMap, body: Body) -> Result<Vec<(String, Vec<u8>)>, Response> {
    let malformed = |detail: String| {
        notary_error(
            StatusCode::BAD_REQUEST,
            "MALFORMED_UPLOAD",
            "The body of your request is malformed.",
            serde_json::Value::String(detail),
        )
    };
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let boundary = multer::parse_boundary(content_type).map_err(|e| malformed(format!("content-type: {e}")))?;
    let constraints = multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(MAX_UPDATE as u64));
    let mut parts = multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
    let mut files = Vec::new();
    while let Some(field) = parts.next_field().await.map_err(|e| malformed(e.to_string()))? {
        let Some(name) = field.file_name().map(str::to_string) else {
            return Err(error(&ServerError::NoFilename));
        };
        let bytes = field.bytes().await.map_err(|e| malformed(e.to_string()))?;
        files.push((name, bytes.to_vec()));
    }
    if files.is_empty() {
        return Err(malformed("the update holds no files".into()));
    }
    Ok(files)
}

/// `GET /v2/{gun}/_trust/changefeed` and `GET /v2/_trust/changefeed`
/// (`?change_id=N&records=M`, negative `records` for the newest).
pub async fn changefeed(s: &AppState, gun: Option<String>, query: &[(String, String)]) -> Response {
    let trust = match service(s) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let get = |k: &str| query.iter().find(|(q, _)| q == k).map(|(_, v)| v.as_str());
    let invalid = |what: &str| {
        notary_error(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETERS",
            "The parameters provided are not valid.",
            serde_json::Value::String(what.to_string()),
        )
    };
    let change_id = match get("change_id").filter(|v| !v.is_empty()) {
        None => 0,
        Some(v) => match v.parse::<i64>() {
            Ok(n) => n,
            Err(_) => return invalid(&format!("change_id expected to be an integer, got {v:?}")),
        },
    };
    let records = match get("records").filter(|v| !v.is_empty()) {
        None => 100,
        Some(v) => match v.parse::<i32>() {
            Ok(0) => 100,
            Ok(n) => i64::from(n),
            Err(_) => return invalid(&format!("invalid records parameter: {v:?}")),
        },
    };
    match answered(blocking(move || trust.changes(gun.as_deref(), change_id, records)).await) {
        Ok(changes) => {
            let body = serde_json::json!({"count": changes.len(), "records": changes});
            json_response(StatusCode::OK, serde_json::to_vec(&body).unwrap_or_default())
        }
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_of_guns() {
        assert_eq!(repository_of("127.0.0.1:7443/team/app"), "team/app");
        assert_eq!(repository_of("registry.example.com/app"), "app");
        assert_eq!(repository_of("localhost/app"), "app");
        assert_eq!(repository_of("team/app"), "team/app");
        assert_eq!(repository_of("app"), "app");
    }
}
