//! Which collection registry repositories belong to:
//! `GET /v1/registry/collections`, `PUT|DELETE /v1/registry/collections/{prefix}`
//! (the prefix percent-encoded when it holds slashes).

use crate::json::{views, Json};
use axum::extract::{Path, State};
use berth_model::access::RepositoryCollection;

use crate::access::with_access;
use crate::error::ApiResult;
use crate::AppState;

pub async fn list(State(s): State<AppState>) -> ApiResult<Json<Vec<RepositoryCollection>>> {
    let records = with_access(&s, |a| a.list_repository_collections()).await?;
    Ok(Json(views(records)))
}

use berth_model::access::SetCollection;

pub async fn set(
    State(s): State<AppState>,
    Path(prefix): Path<String>,
    Json(body): Json<SetCollection>,
) -> ApiResult<Json<RepositoryCollection>> {
    let record = with_access(&s, move |a| a.set_repository_collection(&prefix, &body.collection)).await?;
    Ok(Json(record.into()))
}

pub async fn remove(State(s): State<AppState>, Path(prefix): Path<String>) -> ApiResult<axum::http::StatusCode> {
    with_access(&s, move |a| a.remove_repository_collection(&prefix)).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
