//! Cluster nodes and the cluster: `node ls|inspect|update|rm`, `cluster
//! info|ca|join-token` and `assignment create|ls|inspect|rm`. The rules live in
//! `berth_cluster::membership::Cluster`; this maps them to HTTP.

use axum::extract::{Path, Query, State};
use berth_model::assignment::{Assignment, AssignmentSpec};
use berth_model::node::{CaStatus, ClusterInfo, JoinTokenView, Node, NodeRole, NodeUpdate};
use berth_model::{ApiError, ErrorCode};
use serde::Deserialize;

use crate::error::ApiResult;
use crate::json::Json;
use crate::AppState;

fn cluster(s: &AppState) -> ApiResult<std::sync::Arc<berth_cluster::membership::Cluster>> {
    s.cluster.clone().ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            "this node has no cluster identity (see the daemon log)",
        )
        .into()
    })
}

fn cluster_error(e: berth_cluster::Error) -> ApiError {
    use berth_cluster::Error as E;
    match e {
        E::NotFound(m) => ApiError::not_found(m),
        E::Invalid(m) => ApiError::invalid(m),
        E::Conflict(m) => ApiError::new(ErrorCode::Conflict, m),
        E::NotManager(m) => ApiError::new(ErrorCode::Unavailable, m),
        E::State(berth_state::Error::Rejected(r)) => ApiError::new(ErrorCode::Conflict, r.to_string()),
        E::State(berth_state::Error::Unavailable(m)) => ApiError::new(ErrorCode::Unavailable, m),
        other => ApiError::internal(other.to_string()),
    }
}

/// Runs a cluster call that reads or writes the store.
async fn call<T: Send + 'static>(
    s: &AppState,
    f: impl FnOnce(&berth_cluster::membership::Cluster) -> berth_cluster::Result<T> + Send + 'static,
) -> ApiResult<T> {
    let c = cluster(s)?;
    Ok(crate::blocking::blocking(move || f(&c)).await?.map_err(cluster_error)?)
}

pub async fn list(State(s): State<AppState>) -> ApiResult<Json<Vec<Node>>> {
    Ok(Json(call(&s, |c| c.nodes()).await?))
}

pub async fn inspect(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Node>> {
    Ok(Json(call(&s, move |c| c.node(&id)).await?))
}

pub async fn update(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Json(u): Json<NodeUpdate>,
) -> ApiResult<Json<Node>> {
    Ok(Json(call(&s, move |c| c.update(&id, u)).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveQuery {
    #[serde(default)]
    force: bool,
}

pub async fn remove(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> ApiResult<Json<Node>> {
    Ok(Json(call(&s, move |c| c.remove(&id, q.force)).await?))
}

pub async fn promote(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Node>> {
    Ok(Json(call(&s, move |c| c.set_role(&id, NodeRole::Manager)).await?))
}

pub async fn demote(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Node>> {
    Ok(Json(call(&s, move |c| c.set_role(&id, NodeRole::Worker)).await?))
}

pub async fn info(State(s): State<AppState>) -> ApiResult<Json<ClusterInfo>> {
    Ok(Json(call(&s, |c| c.info()).await?))
}

fn role(text: &str) -> ApiResult<NodeRole> {
    text.parse::<NodeRole>().map_err(|m| ApiError::invalid(m).into())
}

pub async fn join_token(State(s): State<AppState>, Path(r): Path<String>) -> ApiResult<Json<JoinTokenView>> {
    let r = role(&r)?;
    Ok(Json(call(&s, move |c| c.join_token(r, false)).await?))
}

pub async fn rotate_join_token(State(s): State<AppState>, Path(r): Path<String>) -> ApiResult<Json<JoinTokenView>> {
    let r = role(&r)?;
    Ok(Json(call(&s, move |c| c.join_token(r, true)).await?))
}

pub async fn ca_status(State(s): State<AppState>) -> ApiResult<Json<CaStatus>> {
    Ok(Json(call(&s, |c| c.ca_status()).await?))
}

pub async fn rotate_ca(State(s): State<AppState>) -> ApiResult<Json<CaStatus>> {
    Ok(Json(call(&s, |c| c.rotate_ca()).await?))
}

pub async fn backup(
    State(s): State<AppState>,
    Json(r): Json<berth_model::node::BackupRequest>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let (bytes, summary) = call(&s, move |c| c.backup(&r.passphrase)).await?;
    tracing::info!(
        records = summary.records,
        applied_index = summary.applied_index,
        "wrote a cluster backup"
    );
    let headers = [
        (axum::http::header::CONTENT_TYPE, "application/json"),
        (axum::http::header::CACHE_CONTROL, "no-store"),
    ];
    Ok((headers, bytes).into_response())
}

pub async fn assignments(State(s): State<AppState>) -> ApiResult<Json<Vec<Assignment>>> {
    Ok(Json(call(&s, |c| c.assignments()).await?))
}

pub async fn assignment(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Assignment>> {
    Ok(Json(call(&s, move |c| c.assignment(&name)).await?))
}

pub async fn assignment_create(
    State(s): State<AppState>,
    Json(spec): Json<AssignmentSpec>,
) -> ApiResult<(axum::http::StatusCode, Json<Assignment>)> {
    let made = call(&s, move |c| c.create_assignment(spec)).await?;
    Ok((axum::http::StatusCode::CREATED, Json(made)))
}

pub async fn assignment_remove(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Assignment>> {
    Ok(Json(call(&s, move |c| c.remove_assignment(&name)).await?))
}
