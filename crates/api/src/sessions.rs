//! Web UI sessions: `POST /v1/auth/session` (with a password login) sets
//! the session cookie and returns the CSRF token the page must send back in
//! `X-CSRF-Token`; `DELETE /v1/auth/session` ends it. Authentication by the
//! cookie, and the CSRF check, are in [`crate::authz`].

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use crate::json::Json;
use berth_auth::session::{SESSION_COOKIE, SESSION_LIFETIME};
use berth_model::{ApiError, ErrorCode};

use crate::access::with_access;
use crate::authz::Principal;
use crate::error::ApiResult;
use crate::AppState;

/// `POST /v1/auth/session`: the caller's password login becomes a session.
pub async fn create(State(s): State<AppState>, Extension(p): Extension<Principal>) -> ApiResult<Response> {
    let user = match &p {
        Principal::Admin => "admin".to_string(),
        Principal::User(identity) if identity.scopes.is_none() => identity.name.clone(),
        Principal::User(_) => {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "a session starts from a password login, not from a token",
            )
            .into())
        }
        _ => return Err(ApiError::new(ErrorCode::Unauthorized, "log in with a user name and password").into()),
    };
    let u = user.clone();
    let session = with_access(&s, move |a| a.create_session(&u, None)).await?;
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; Max-Age={SESSION_LIFETIME}; HttpOnly; Secure; SameSite=Strict",
        session.token
    );
    let expires = chrono::DateTime::<chrono::Utc>::from_timestamp(session.expires, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut response = (
        StatusCode::CREATED,
        Json(berth_model::access::SessionStarted {
            user,
            csrf_token: session.csrf,
            expires,
        }),
    )
        .into_response();
    let value = HeaderValue::from_str(&cookie).map_err(|e| ApiError::internal(e.to_string()))?;
    response.headers_mut().insert(header::SET_COOKIE, value);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `DELETE /v1/auth/session`: ends the cookie's session and clears it.
pub async fn remove(State(s): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let Some(token) = crate::authz::session_cookie(&headers) else {
        return Err(ApiError::new(ErrorCode::NotFound, "no session cookie in the request").into());
    };
    let ended = with_access(&s, move |a| a.end_session(&token)).await?;
    if !ended {
        return Err(ApiError::new(ErrorCode::NotFound, "the session had already ended").into());
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("berth_session=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict"),
    );
    Ok(response)
}
