//! Client bundles: a client certificate and key for a user, signed by the
//! cluster CA (the key is made here, returned once and never stored), their
//! records, revocation; the CA certificate itself; and `whoami`.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;

use crate::json::Json;
use berth_cluster::Bundle;
use berth_model::{ApiError, ErrorCode};
use serde::Deserialize;

use crate::error::ApiResult;
use crate::{Action, AppState, Principal, Resource};
use berth_auth::Where;

fn pki(s: &AppState) -> ApiResult<&berth_cluster::Pki> {
    s.pki
        .as_deref()
        .ok_or_else(|| ApiError::internal("the cluster CA could not be opened (see the daemon log)").into())
}

fn cluster_error(e: berth_cluster::Error) -> ApiError {
    match e {
        berth_cluster::Error::NotFound(_) => ApiError::not_found(e.to_string()),
        berth_cluster::Error::Invalid(_) => ApiError::invalid(e.to_string()),
        _ => ApiError::internal(e.to_string()),
    }
}

pub async fn whoami(principal: Option<Extension<Principal>>) -> Json<berth_model::Whoami> {
    let p = principal.map_or(Principal::Anonymous, |Extension(p)| p);
    let kind = match &p {
        Principal::Admin => "admin",
        Principal::Anonymous => "anonymous",
        Principal::Bearer(_) => "token",
        Principal::User(_) => "user",
    };
    Json(berth_model::Whoami {
        name: p.name(),
        kind: kind.into(),
    })
}

pub async fn ca_pem(State(s): State<AppState>) -> ApiResult<Response> {
    let pem = pki(&s)?.trust_pem();
    Ok(([(header::CONTENT_TYPE, "application/x-pem-file")], pem).into_response())
}

#[derive(Deserialize)]
pub struct CreateQuery {
    user: Option<String>,
}

/// Whom the caller may issue a bundle for: themselves (the socket's admin
/// by default `admin`), or anyone when they may administer users.
fn bundle_user(s: &AppState, p: &Principal, asked: Option<String>) -> Result<String, ApiError> {
    let own = match p {
        Principal::Admin | Principal::User(_) => p.name(),
        _ => {
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                "a bundle is issued to an authenticated user",
            ))
        }
    };
    match asked {
        None => Ok(own),
        Some(u) if u == own => Ok(u),
        Some(u) => {
            crate::authz::check(s, p, Resource::User, Action::Write, Where::Anywhere)?;
            // A certificate for a name no user holds would identify nobody
            // today and whoever takes the name tomorrow.
            let exists = s
                .access
                .as_ref()
                .ok_or_else(|| ApiError::internal("access control is not available on this daemon"))?
                .user_exists(&u)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            if !exists {
                return Err(ApiError::new(ErrorCode::NotFound, format!("no such user: {u}")));
            }
            Ok(u)
        }
    }
}

/// Bundles a caller may see and revoke: their own, or all when they may
/// administer users.
fn visible(s: &AppState, p: &Principal, b: &Bundle) -> bool {
    b.user == p.name() && matches!(p, Principal::Admin | Principal::User(_))
        || crate::authz::check(s, p, Resource::User, Action::Write, Where::Anywhere).is_ok()
}

pub async fn create(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<CreateQuery>,
) -> ApiResult<Json<berth_auth::BundleIssued>> {
    let user = bundle_user(&s, &principal, q.user)?;
    let pki = pki(&s)?;
    let issued = pki.issue_client(&user).map_err(cluster_error)?;
    let bundle = Bundle {
        id: berth_model::short_id(&berth_model::new_id()).to_string(),
        user,
        serial: issued.serial,
        fingerprint: issued.fingerprint,
        created: chrono::Utc::now().to_rfc3339(),
        not_after: issued.not_after,
        revoked: None,
    };
    berth_cluster::bundles::record(s.engine.state(), &bundle).map_err(cluster_error)?;
    tracing::info!(bundle = %bundle.id, user = %bundle.user, by = %principal.name(), "issued a client bundle");
    Ok(Json(berth_auth::BundleIssued {
        bundle: bundle.into(),
        ca_pem: pki.trust_pem(),
        cert_pem: issued.cert_pem,
        key_pem: issued.key_pem,
    }))
}

pub async fn list(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Json<Vec<berth_model::access::Bundle>>> {
    let all = berth_cluster::bundles::list(s.engine.state()).map_err(cluster_error)?;
    Ok(Json(
        all.into_iter()
            .filter(|b| visible(&s, &principal, b))
            .map(Into::into)
            .collect(),
    ))
}

pub async fn revoke(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Json<berth_model::access::Bundle>> {
    let state = s.engine.state();
    let all = berth_cluster::bundles::list(state).map_err(cluster_error)?;
    match all.iter().find(|b| b.id == id) {
        Some(b) if visible(&s, &principal, b) => {}
        _ => return Err(ApiError::not_found(format!("no such bundle: {id}")).into()),
    }
    let b = berth_cluster::bundles::revoke(state, &id).map_err(cluster_error)?;
    tracing::info!(bundle = %b.id, user = %b.user, by = %principal.name(), "revoked a client bundle");
    Ok(Json(b.into()))
}
