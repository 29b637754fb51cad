//! Which collection registry repositories belong to:
//! `GET /v1/registry/collections`, `PUT|DELETE /v1/registry/collections/{prefix}`
//! (the prefix percent-encoded when it holds slashes).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use berth_auth::repos::RepositoryCollection;
use berth_auth::Access;
use berth_model::ApiError;
use serde::Deserialize;

use crate::error::ApiResult;
use crate::AppState;

async fn blocking<T: Send + 'static>(
    s: &AppState,
    f: impl FnOnce(&Access) -> berth_auth::Result<T> + Send + 'static,
) -> ApiResult<T> {
    let a: Arc<Access> = s
        .access
        .clone()
        .ok_or_else(|| ApiError::internal("access control is not available on this daemon"))?;
    let r = tokio::task::spawn_blocking(move || f(&a))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(r?)
}

pub async fn list(State(s): State<AppState>) -> ApiResult<Json<Vec<RepositoryCollection>>> {
    Ok(Json(blocking(&s, |a| a.list_repository_collections()).await?))
}

#[derive(Deserialize)]
pub struct SetCollection {
    collection: String,
}

pub async fn set(
    State(s): State<AppState>,
    Path(prefix): Path<String>,
    Json(body): Json<SetCollection>,
) -> ApiResult<Json<RepositoryCollection>> {
    Ok(Json(
        blocking(&s, move |a| a.set_repository_collection(&prefix, &body.collection)).await?,
    ))
}

pub async fn remove(State(s): State<AppState>, Path(prefix): Path<String>) -> ApiResult<axum::http::StatusCode> {
    blocking(&s, move |a| a.remove_repository_collection(&prefix)).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
