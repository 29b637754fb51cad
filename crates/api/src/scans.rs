//! Scan routes: run a scan (NDJSON progress, the signed certification record
//! last), list and read records, the vulnerability database (status,
//! import, update from OSV's exports with NDJSON progress), and scanner
//! plugins (install, pull, push, list, inspect, enable, disable, remove).
//!
//! An import by `?path=` reads the daemon's own filesystem, so only the
//! admin on the unix socket may name a path; TCP callers upload the file
//! (an OSV `.json` record or a `.zip` export) as the request body.

use berth_model::plugin::PluginInstall as InstallBody;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Extension;

use crate::json::Json;
use base64::Engine as _;
use berth_engine::scan::{ScanProgress, ScanRecordSummary, ScanService, ScanSpec, VulnDbImport, VulnDbStatus};
use berth_model::{ApiError, PluginView};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::authz::Principal;
use crate::blocking::blocking;
use crate::error::ApiResult;
use crate::AppState;

/// A line of the scan and database-update progress streams.
type Line<T> = berth_model::ProgressLine<ScanProgress, T>;

/// Largest upload accepted by `POST /v1/vulndb/import` (osv.dev's largest
/// per-ecosystem export is well below).
pub(crate) const MAX_IMPORT_UPLOAD: u64 = 4 << 30;

fn service(s: &AppState) -> Result<Arc<ScanService>, ApiError> {
    s.scans
        .clone()
        .ok_or_else(|| ApiError::internal("the scan service is not available on this node (see the daemon's log)"))
}

/// Runs a scan; NDJSON progress ([`berth_model::ProgressLine`]), then
/// `{"status":"done","record":...}` (or an `error` line).
pub async fn scan(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    Json(spec): Json<ScanSpec>,
) -> ApiResult<Response> {
    let scans = service(&s)?;
    if spec.image.is_empty() {
        return Err(ApiError::invalid("scan needs an image").into());
    }
    // A functional test runs the image as a container (in the root
    // collection): it needs what `berth run` of that image needs.
    if spec.test.is_some() || spec.test_healthcheck {
        let run = berth_model::ContainerCreate {
            image: spec.image.clone(),
            ..Default::default()
        };
        crate::authz::check_container_create(&s, &principal, &run)?;
    }
    // A missing image is a clean error rather than a stream.
    s.engine.images().resolve(&spec.image)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(256);
    tokio::spawn(async move {
        let progress_tx = tx.clone();
        let progress: Arc<dyn Fn(ScanProgress) + Send + Sync> = Arc::new(move |p: ScanProgress| {
            // A full channel drops a progress line rather than stall the scan.
            let _ = progress_tx.try_send(Ok(Line::<()>::step(p).to_ndjson()));
        });
        let last = match scans.scan(spec, progress).await {
            Ok(record) => Line::done(
                ScanProgress::status("done"),
                berth_model::SignedScanRecord::from(record),
            ),
            Err(e) => Line::failed(ScanProgress::status("error"), e.into()),
        };
        let _ = tx.send(Ok(last.to_ndjson())).await;
    });
    Ok(crate::system::ndjson(rx))
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    image: Option<String>,
}

pub async fn list(State(s): State<AppState>, Query(q): Query<ListQuery>) -> ApiResult<Json<Vec<ScanRecordSummary>>> {
    let scans = service(&s)?;
    Ok(Json(
        blocking(move || scans.list_records(q.image.as_deref().filter(|i| !i.is_empty()))).await??,
    ))
}

pub async fn get(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<berth_model::SignedScanRecord>> {
    let scans = service(&s)?;
    Ok(Json(blocking(move || scans.get_record(&id)).await??.into()))
}

pub async fn webhooks(State(s): State<AppState>) -> ApiResult<Json<Vec<berth_engine::webhooks::WebhookState>>> {
    Ok(Json(service(&s)?.webhooks()))
}

pub async fn vulndb_status(State(s): State<AppState>) -> ApiResult<Json<VulnDbStatus>> {
    Ok(Json(service(&s)?.vulndb_status()))
}

#[derive(Deserialize)]
pub struct ImportQuery {
    #[serde(default)]
    path: Option<String>,
    /// The uploaded file's name (its extension says `.zip` or `.json`).
    #[serde(default)]
    name: Option<String>,
}

/// Imports OSV data: `?path=` on the daemon's filesystem (admin only), or
/// the request body.
pub async fn vulndb_import(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<ImportQuery>,
    body: Body,
) -> ApiResult<Json<VulnDbImport>> {
    let scans = service(&s)?;
    if let Some(path) = q.path.filter(|p| !p.is_empty()) {
        if !matches!(principal, Principal::Admin) {
            return Err(ApiError::new(
                berth_model::ErrorCode::Forbidden,
                "importing by path reads the daemon's filesystem: only the admin on the unix socket may; upload the file instead",
            )
            .into());
        }
        let path = std::path::PathBuf::from(path);
        if !path.is_absolute() {
            return Err(ApiError::invalid(format!("{}: the path must be absolute", path.display())).into());
        }
        return Ok(Json(blocking(move || scans.import_vulndb(&path)).await??));
    }
    let extension = match q.name.as_deref().unwrap_or("upload.zip") {
        n if n.to_ascii_lowercase().ends_with(".json") => "json",
        _ => "zip",
    };
    let dir = s.engine.data_root().join("tmp");
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| ApiError::internal(format!("{}: {e}", dir.display())))?;
    let path = dir.join(format!("vulndb-{}.{extension}", berth_model::new_id()));
    let written = spool(body, &path).await;
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&path).await;
        return Err(e.into());
    }
    let p = path.clone();
    let result = blocking(move || scans.import_vulndb(&p)).await;
    let _ = tokio::fs::remove_file(&path).await;
    Ok(Json(result??))
}

/// Downloads OSV exports and imports them as one import: NDJSON progress
/// (`download`, `import`), then `{"status":"done","record":<import>}` or an
/// `error` line naming the ecosystem and URL that failed (the database is
/// then unchanged). A bad source or ecosystem name is a plain 400.
pub async fn vulndb_update(
    State(s): State<AppState>,
    Json(spec): Json<berth_engine::vulndb_update::VulnDbUpdateSpec>,
) -> ApiResult<Response> {
    let scans = service(&s)?;
    scans.plan_vulndb_update(&spec).map_err(ApiError::from)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(256);
    let progress_tx = tx.clone();
    let task = tokio::task::spawn_blocking(move || {
        let progress = move |p: ScanProgress| {
            // A full channel drops a progress line rather than stall the download.
            let _ = progress_tx.try_send(Ok(Line::<()>::step(p).to_ndjson()));
        };
        scans.update_vulndb(&spec, &progress)
    });
    tokio::spawn(async move {
        let last = match task.await {
            Ok(Ok(result)) => Line::done(ScanProgress::status("done"), result),
            Ok(Err(e)) => Line::failed(ScanProgress::status("error"), e.into()),
            Err(e) => Line::failed(
                ScanProgress::status("error"),
                ApiError::internal(format!("the update task failed: {e}")),
            ),
        };
        let _ = tx.send(Ok(last.to_ndjson())).await;
    });
    Ok(crate::system::ndjson(rx))
}

/// Writes a request body to `path`, at most [`MAX_IMPORT_UPLOAD`] bytes.
async fn spool(body: Body, path: &std::path::Path) -> Result<(), ApiError> {
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
    let mut stream = body.into_data_stream();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::invalid(format!("reading the upload: {e}")))?;
        total += chunk.len() as u64;
        if total > MAX_IMPORT_UPLOAD {
            return Err(ApiError::invalid(format!(
                "the upload is larger than {MAX_IMPORT_UPLOAD} bytes"
            )));
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
    }
    file.flush()
        .await
        .map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
    Ok(())
}

pub async fn plugins(State(s): State<AppState>) -> ApiResult<Json<Vec<PluginView>>> {
    let scans = service(&s)?;
    let listed = scans.clone();
    let list = blocking(move || listed.list_plugins()).await??;
    Ok(Json(list.into_iter().map(|info| plugin_view(info, &scans)).collect()))
}

#[derive(Deserialize)]
pub struct VersionQuery {
    #[serde(default)]
    version: Option<String>,
}

pub async fn plugin(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<VersionQuery>,
) -> ApiResult<Json<PluginView>> {
    let scans = service(&s)?;
    let inspected = scans.clone();
    let info = blocking(move || inspected.inspect_plugin(&name, q.version.as_deref())).await??;
    Ok(Json(plugin_view(info, &scans)))
}

pub async fn install_plugin(State(s): State<AppState>, Json(body): Json<InstallBody>) -> ApiResult<Json<PluginView>> {
    let scans = service(&s)?;
    let wasm = base64::engine::general_purpose::STANDARD
        .decode(body.wasm.as_bytes())
        .map_err(|e| ApiError::invalid(format!("the plugin's wasm is not base64: {e}")))?;
    let manifest =
        serde_json::to_vec(&body.manifest).map_err(|e| ApiError::invalid(format!("the plugin manifest: {e}")))?;
    let installing = scans.clone();
    let info = blocking(move || installing.install_plugin(&manifest, &wasm)).await??;
    Ok(Json(plugin_view(info, &scans)))
}

#[derive(Deserialize)]
pub struct PullQuery {
    #[serde(rename = "ref")]
    reference: String,
    /// The manifest digest content trust resolved the tag to.
    #[serde(default)]
    digest: Option<String>,
}

pub async fn pull_plugin(State(s): State<AppState>, Query(q): Query<PullQuery>) -> ApiResult<Json<PluginView>> {
    let scans = service(&s)?;
    let pulling = scans.clone();
    let info = blocking(move || pulling.pull_plugin(&q.reference, q.digest.as_deref())).await??;
    Ok(Json(plugin_view(info, &scans)))
}

#[derive(Deserialize)]
pub struct PushQuery {
    #[serde(rename = "ref")]
    reference: String,
    #[serde(default)]
    version: Option<String>,
}

pub async fn push_plugin(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<PushQuery>,
) -> ApiResult<Json<berth_model::PluginPushed>> {
    let scans = service(&s)?;
    let digest = blocking(move || scans.push_plugin(&name, q.version.as_deref(), &q.reference)).await??;
    Ok(Json(berth_model::PluginPushed { digest }))
}

pub async fn enable_plugin(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<VersionQuery>,
) -> ApiResult<Json<PluginView>> {
    let scans = service(&s)?;
    let changing = scans.clone();
    let info = blocking(move || changing.enable_plugin(&name, q.version.as_deref())).await??;
    Ok(Json(plugin_view(info, &scans)))
}

pub async fn disable_plugin(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<VersionQuery>,
) -> ApiResult<Json<PluginView>> {
    let scans = service(&s)?;
    let changing = scans.clone();
    let info = blocking(move || changing.disable_plugin(&name, q.version.as_deref())).await??;
    Ok(Json(plugin_view(info, &scans)))
}

pub async fn remove_plugin(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<VersionQuery>,
) -> ApiResult<Json<PluginView>> {
    let scans = service(&s)?;
    let changing = scans.clone();
    let info = blocking(move || changing.remove_plugin(&name, q.version.as_deref())).await??;
    Ok(Json(plugin_view(info, &scans)))
}

/// A plugin as the API shows it (no host paths).
fn plugin_view(info: berth_engine::scan::PluginInfo, scans: &ScanService) -> PluginView {
    PluginView {
        builtin: scans.is_builtin_plugin(&info),
        name: info.manifest.name,
        version: info.manifest.version,
        world: info.manifest.world,
        world_version: info.manifest.world_version,
        digest: info.manifest.digest,
        description: info.manifest.description,
        enabled: info.enabled,
        check: info.check.and_then(|c| serde_json::to_value(c).ok()),
    }
}
