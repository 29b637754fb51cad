//! Container routes. Attach, `start?attach=` and exec upgrade the HTTP
//! connection to the framed stream of `berth_runtime::frame` and splice it
//! onto the shim's stream, so the daemon never parses container output.

use std::time::Duration;

use crate::json::Json;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};

use berth_model::{ApiError, Container, ContainerCreate, ContainerStats, ExecCreate};

use crate::authz::{self, Action, Principal, Resource};
use crate::error::ApiResult;
use crate::AppState;
use axum::Extension;
use berth_auth::Where;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ListQuery {
    all: bool,
}

/// Only the containers in collections the caller may read.
pub async fn list(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<Container>>> {
    let mut list = s.engine.list(q.all)?;
    if p != Principal::Admin {
        let index = authz::index(&s);
        list.retain(|c| {
            let collection = c.spec.collection.as_deref().unwrap_or("/");
            index
                .decide(&p.caller(), Resource::Container, Action::Read, Where::In(collection))
                .allowed()
        });
    }
    Ok(Json(list))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CreateQuery {
    /// Start at once, attached: the connection (upgraded) becomes the
    /// container's framed stream, and the 101 carries the id in
    /// `Berth-Container-Id`. What `run` uses: one request instead of two.
    start: bool,
    stdin: bool,
}

pub async fn create(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<CreateQuery>,
    req: Request,
) -> ApiResult<Response> {
    if q.start && !is_upgrade(&req) {
        return Err(ApiError::invalid("create with start needs an upgraded connection (Upgrade: berth-stream)").into());
    }
    let (parts, body) = req.into_parts();
    // The limits layer has capped the body (413 past the route's limit).
    let bytes = axum::body::to_bytes(body, crate::routes::JSON_BODY_LIMIT as usize)
        .await
        .map_err(|e| ApiError::invalid(format!("reading the request body: {e}")))?;
    let mut create: ContainerCreate =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::invalid(format!("invalid container request: {e}")))?;
    let collection = authz::check_container_create(&s, &p, &create)?;
    create.collection = (collection != "/").then_some(collection);
    let engine = s.engine.clone();
    let start = q.start;
    let c = crate::blocking::blocking(move || {
        if start {
            engine.create_to_start(create)
        } else {
            engine.create(create)
        }
    })
    .await??;
    if !q.start {
        return Ok((StatusCode::CREATED, Json(c)).into_response());
    }
    // Starting needs the same permission as creating (container write).
    // The records of the create and the start are flushed to disk once,
    // before the 101 leaves (see `Unflushed`).
    let Some(stream) = s.engine.start_unflushed(&c.id, q.stdin).await? else {
        return Err(ApiError::internal(format!("container {} started without a stream", c.id)).into());
    };
    splice(Request::from_parts(parts, Body::empty()), stream, None);
    let mut response = switching();
    if let Ok(id) = c.id.parse() {
        response.headers_mut().insert(berth_model::CONTAINER_ID_HEADER, id);
    }
    response
        .extensions_mut()
        .insert(crate::Unflushed(s.engine.last_commit()));
    Ok(response)
}

pub async fn inspect(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Container>> {
    Ok(Json(s.engine.get(&id)?))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ForceQuery {
    force: bool,
}

pub async fn remove(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ForceQuery>,
) -> ApiResult<StatusCode> {
    s.engine.remove(&id, q.force).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct StartQuery {
    attach: bool,
    stdin: bool,
}

fn is_upgrade(req: &Request) -> bool {
    req.headers().get(header::UPGRADE).is_some()
}

fn switching() -> Response {
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "berth-stream")
        .body(Body::empty())
        .unwrap_or_default()
}

/// A shim stream whose end (EOF to the client) waits for the request's
/// audit entry ([`crate::AuditGate`]).
struct Gated<S> {
    inner: S,
    gate: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
}

impl<S> Gated<S> {
    fn new(inner: S, gate: Option<crate::AuditGate>) -> Self {
        Gated {
            inner,
            gate: gate.map(|g| Box::pin(g.passed()) as _),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Gated<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match std::pin::Pin::new(&mut self.inner).poll_read(cx, buf) {
            // The shim's stream ended: the client sees the end once the
            // outcome is recorded.
            std::task::Poll::Ready(Ok(())) if buf.filled().len() == before => match self.gate.as_mut() {
                Some(gate) => match gate.as_mut().poll(cx) {
                    std::task::Poll::Ready(()) => {
                        self.gate = None;
                        std::task::Poll::Ready(Ok(()))
                    }
                    std::task::Poll::Pending => std::task::Poll::Pending,
                },
                None => std::task::Poll::Ready(Ok(())),
            },
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Gated<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Splices the upgraded client connection onto a shim stream until either
/// ends; the client sees the end once the request's outcome is in the
/// audit log ([`crate::AuditGate`]).
fn splice<S>(req: Request, shim: S, after: Option<tokio::process::Child>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let gate = req.extensions().get::<crate::AuditGate>().cloned();
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let mut client = TokioIo::new(upgraded);
                let mut shim = Gated::new(shim, gate);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut shim).await;
            }
            Err(e) => tracing::warn!(error = %e, "upgrade failed"),
        }
        if let Some(mut child) = after {
            let _ = child.wait().await;
        }
    });
}

pub async fn start(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<StartQuery>,
    req: Request,
) -> ApiResult<Response> {
    if q.attach && !is_upgrade(&req) {
        return Err(ApiError::invalid("start with attach needs an upgraded connection (Upgrade: berth-stream)").into());
    }
    let stream = s.engine.start(&id, q.attach.then_some(q.stdin)).await?;
    match stream {
        Some(stream) => {
            splice(req, stream, None);
            Ok(switching())
        }
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

pub async fn attach(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<StartQuery>,
    req: Request,
) -> ApiResult<Response> {
    if !is_upgrade(&req) {
        return Err(ApiError::invalid("attach needs an upgraded connection (Upgrade: berth-stream)").into());
    }
    let stream = s.engine.attach(&id, q.stdin).await?;
    splice(req, stream, None);
    Ok(switching())
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct StopQuery {
    t: Option<u64>,
}

pub async fn stop(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<StopQuery>,
) -> ApiResult<StatusCode> {
    s.engine.stop(&id, q.t).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct KillQuery {
    #[serde(default = "default_signal")]
    signal: String,
}

fn default_signal() -> String {
    "KILL".into()
}

pub async fn kill(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<KillQuery>,
) -> ApiResult<StatusCode> {
    s.engine.kill(&id, &q.signal).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct WaitQuery {
    /// `not-running` (the default) or `removed`.
    condition: Option<String>,
}

pub async fn wait(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> ApiResult<Json<berth_model::ContainerWaited>> {
    let removed = match q.condition.as_deref() {
        None | Some("not-running") => false,
        Some("removed") => true,
        Some(other) => {
            return Err(
                ApiError::invalid(format!("invalid wait condition {other:?} (use not-running or removed)")).into(),
            )
        }
    };
    let code = s.engine.wait(&id, removed).await?;
    Ok(Json(berth_model::ContainerWaited { exit_code: code }))
}

#[derive(Deserialize)]
pub struct ResizeQuery {
    cols: u16,
    rows: u16,
}

pub async fn resize(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ResizeQuery>,
) -> ApiResult<StatusCode> {
    s.engine.resize(&id, q.cols, q.rows).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct LogsQuery {
    follow: bool,
    tail: Option<usize>,
}

/// NDJSON log lines (`{"time","stream","log"}`); with `follow`, new lines as
/// they are written until the container stops.
pub async fn logs(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> ApiResult<Response> {
    let (id, path) = s.engine.log_path(&id)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(64);
    let engine = s.engine.clone();
    tokio::spawn(async move {
        let mut offset = 0u64;
        let mut first = true;
        loop {
            let running = matches!(
                engine.get(&id).map(|c| c.status.state),
                Ok(berth_model::ContainerState::Running | berth_model::ContainerState::Restarting)
            );
            let data = tokio::fs::read(&path).await.unwrap_or_default();
            if (data.len() as u64) > offset {
                let new = &data[offset as usize..];
                // Only whole lines; a partial last line waits for its newline.
                let end = new.iter().rposition(|b| *b == b'\n').map(|i| i + 1).unwrap_or(0);
                let mut lines: Vec<&[u8]> = new[..end].split_inclusive(|b| *b == b'\n').collect();
                if first {
                    if let Some(n) = q.tail {
                        let skip = lines.len().saturating_sub(n);
                        lines.drain(..skip);
                    }
                }
                for l in lines {
                    if tx.send(Ok(l.to_vec())).await.is_err() {
                        return;
                    }
                }
                offset += end as u64;
            }
            first = false;
            if !q.follow || !running {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    Ok(crate::system::ndjson(rx))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct StatsQuery {
    stream: bool,
}

pub async fn stats(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<StatsQuery>,
) -> ApiResult<Response> {
    let first: ContainerStats = s.engine.stats(&id, Duration::from_millis(250)).await?;
    if !q.stream {
        return Ok(Json(first).into_response());
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let engine = s.engine.clone();
    tokio::spawn(async move {
        let mut sample = Ok(first);
        while let Ok(st) = sample {
            let mut line = serde_json::to_vec(&st).unwrap_or_default();
            line.push(b'\n');
            if tx.send(Ok(line)).await.is_err() {
                return;
            }
            sample = engine.stats(&id, Duration::from_secs(1)).await;
        }
    });
    Ok(crate::system::ndjson(rx))
}

pub async fn exec_create(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Json(req): Json<ExecCreate>,
) -> ApiResult<(StatusCode, Json<berth_model::ExecCreated>)> {
    let exec_id = s.engine.create_exec(&id, req)?;
    Ok((StatusCode::CREATED, Json(berth_model::ExecCreated { id: exec_id })))
}

pub async fn exec_start(State(s): State<AppState>, Path(exec_id): Path<String>, req: Request) -> ApiResult<Response> {
    if !is_upgrade(&req) {
        return Err(ApiError::invalid("exec start needs an upgraded connection (Upgrade: berth-stream)").into());
    }
    // An exec that fails to start writes an ERROR frame, which reaches the client like output.
    let (stream, child) = s.engine.start_exec(&exec_id).await?;
    splice(req, stream, Some(child));
    Ok(switching())
}
