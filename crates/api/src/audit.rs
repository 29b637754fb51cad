//! The audit log's routes: levels per resource and the export that `berth
//! audit verify --file` checks offline.

use crate::json::Json;
use axum::extract::{Path, State};
use berth_model::audit::AuditExport;

use crate::access::with_access;
use crate::error::ApiResult;
use crate::AppState;

pub use berth_auth::LevelView;

/// `GET /v1/audit/levels`.
pub async fn levels(State(s): State<AppState>) -> ApiResult<Json<Vec<LevelView>>> {
    let levels = with_access(&s, |a| Ok(a.audit_levels())).await?;
    Ok(Json(
        levels
            .into_iter()
            .map(|(r, l)| LevelView {
                resource: r.name().to_string(),
                level: l,
            })
            .collect(),
    ))
}

use berth_model::access::SetLevel;

/// `PUT /v1/audit/levels/{resource}` with `{"level": "none|metadata|request"}`.
pub async fn set_level(
    State(s): State<AppState>,
    Path(resource): Path<String>,
    Json(body): Json<SetLevel>,
) -> ApiResult<Json<LevelView>> {
    let (resource, level) = with_access(&s, move |a| a.set_audit_level(&resource, &body.level)).await?;
    Ok(Json(LevelView {
        resource: resource.name().to_string(),
        level,
    }))
}

/// `GET /v1/audit/export`: every entry and signature, for offline checks.
pub async fn export(State(s): State<AppState>) -> ApiResult<Json<AuditExport>> {
    Ok(Json(with_access(&s, |a| a.audit_export()).await?.into()))
}
