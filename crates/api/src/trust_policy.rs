//! Trust policies: `GET /v1/trust/policies`, `PUT` and `DELETE
//! /v1/trust/policies/{pattern}` (the pattern percent-encoded). The engine
//! stores them in cluster state and enforces them where containers are
//! created; this file is HTTP only.

use crate::json::{views, Json};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use berth_engine::TrustPolicy;
use berth_model::image::TrustPolicySpec as PolicyBody;
use berth_model::ApiError;
use berth_model::TrustPolicy as PolicyView;

use crate::error::ApiResult;
use crate::AppState;

pub async fn list(State(s): State<AppState>) -> ApiResult<Json<Vec<PolicyView>>> {
    Ok(Json(views(s.engine.trust_policies()?)))
}

pub async fn put(
    State(s): State<AppState>,
    Path(pattern): Path<String>,
    Json(body): Json<PolicyBody>,
) -> ApiResult<Json<PolicyView>> {
    let policy = TrustPolicy {
        pattern,
        signers: body.signers,
        threshold: body.threshold.unwrap_or(1),
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    s.engine.set_trust_policy(&policy)?;
    Ok(Json(policy.into()))
}

pub async fn remove(State(s): State<AppState>, Path(pattern): Path<String>) -> ApiResult<StatusCode> {
    if s.engine.remove_trust_policy(&pattern)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no trust policy for {pattern:?}")).into())
    }
}
