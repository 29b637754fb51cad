//! Image routes: list, inspect, load (streamed body in, NDJSON progress out),
//! save (OCI layout tarball out), tag, remove, and the registry client:
//! pull and push (NDJSON progress out), login and logout.

use crate::json::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::Response;
use berth_model::image::{LoginAnswer, LoginRequest};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use berth_model::{Image, Progress};

use crate::error::ApiResult;
use crate::AppState;

pub async fn list(State(s): State<AppState>) -> ApiResult<Json<Vec<Image>>> {
    Ok(Json(s.engine.images().list()?))
}

#[derive(Deserialize)]
pub struct RefQuery {
    #[serde(rename = "ref")]
    reference: String,
    #[serde(default)]
    force: bool,
}

pub async fn inspect(State(s): State<AppState>, Query(q): Query<RefQuery>) -> ApiResult<Json<Image>> {
    Ok(Json(s.engine.images().resolve(&q.reference)?))
}

#[derive(Deserialize)]
pub struct TagQuery {
    source: String,
    target: String,
}

pub async fn tag(State(s): State<AppState>, Query(q): Query<TagQuery>) -> ApiResult<Json<Image>> {
    Ok(Json(s.engine.tag_image(&q.source, &q.target)?))
}

pub async fn remove(State(s): State<AppState>, Query(q): Query<RefQuery>) -> ApiResult<Json<Vec<String>>> {
    let engine = s.engine.clone();
    Ok(Json(
        crate::blocking::blocking(move || engine.remove_image(&q.reference, q.force)).await??,
    ))
}

/// The archive is spooled to a temp file under the data root (it must be
/// read more than once to detect its format), then loaded; progress streams back.
/// `?name=` is how errors call the archive (the CLI sends the file name the
/// user gave); without it, "the uploaded archive". Never the spool file.
#[derive(serde::Deserialize)]
pub struct LoadQuery {
    #[serde(default)]
    name: Option<String>,
}

pub async fn load(
    State(s): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<LoadQuery>,
    body: Body,
) -> ApiResult<Response> {
    let shown = std::path::PathBuf::from(
        q.name
            .filter(|n| !n.is_empty() && n.len() <= 4096 && !n.chars().any(char::is_control))
            .unwrap_or_else(|| "the uploaded archive".into()),
    );
    let tmp_dir = s.engine.data_root().join("tmp");
    tokio::fs::create_dir_all(&tmp_dir)
        .await
        .map_err(|e| berth_model::ApiError::internal(format!("{}: {e}", tmp_dir.display())))?;
    let path = tmp_dir.join(format!("load-{}.tar", berth_model::new_id()));
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| berth_model::ApiError::internal(format!("{}: {e}", path.display())))?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                let _ = tokio::fs::remove_file(&path).await;
                return Err(
                    berth_model::ApiError::invalid(format!("reading the archive from the request: {e}")).into(),
                );
            }
        };
        if let Err(e) = file.write_all(&chunk).await {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(berth_model::ApiError::internal(format!("{}: {e}", path.display())).into());
        }
    }
    let _ = file.flush().await;
    drop(file);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(64);
    let engine = s.engine.clone();
    tokio::task::spawn_blocking(move || {
        let send = |p: Progress| {
            let mut line = serde_json::to_vec(&p).unwrap_or_default();
            line.push(b'\n');
            let _ = tx.blocking_send(Ok(line));
        };
        let mut progress = |p: Progress| send(p);
        let result = engine.load_image(&path, &shown, &mut progress);
        let _ = std::fs::remove_file(&path);
        if let Err(e) = result {
            let err: berth_model::ApiError = e.into();
            send(Progress {
                status: "error".into(),
                id: None,
                error: Some(err),
                ..Progress::default()
            });
        }
    });
    Ok(crate::system::ndjson(rx))
}

pub async fn save(
    State(s): State<AppState>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> ApiResult<Response> {
    let refs: Vec<String> = form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "ref")
        .map(|(_, v)| v.into_owned())
        .collect();
    if refs.is_empty() {
        return Err(berth_model::ApiError::invalid("save needs at least one image (?ref=)").into());
    }
    // Resolve first, so a bad reference is a clean error rather than a cut stream.
    for r in &refs {
        s.engine.images().resolve(r)?;
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(16);
    let engine = s.engine.clone();
    tokio::task::spawn_blocking(move || {
        struct ChannelWriter(tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>);
        impl std::io::Write for ChannelWriter {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0
                    .blocking_send(Ok(buf.to_vec()))
                    .map_err(|_| std::io::Error::other("client went away"))?;
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut w = std::io::BufWriter::with_capacity(256 * 1024, ChannelWriter(tx.clone()));
        if let Err(e) = engine.images().save(&refs, &mut w) {
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
        let _ = std::io::Write::flush(&mut w);
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    Ok(Response::builder()
        .header("content-type", "application/x-tar")
        .body(Body::from_stream(stream))
        .unwrap_or_default())
}

#[derive(Deserialize)]
pub struct PullQuery {
    #[serde(rename = "ref")]
    reference: String,
    #[serde(default)]
    platform: Option<String>,
    #[serde(default)]
    all_platforms: bool,
}

/// Runs a blocking transfer and streams its progress as NDJSON; an error
/// becomes the last line.
fn progress_stream(
    work: impl FnOnce(&(dyn Fn(Progress) + Sync)) -> Result<(), berth_engine::Error> + Send + 'static,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(256);
    tokio::task::spawn_blocking(move || {
        let send = |p: Progress| {
            let mut line = serde_json::to_vec(&p).unwrap_or_default();
            line.push(b'\n');
            let _ = tx.blocking_send(Ok(line));
        };
        if let Err(e) = work(&send) {
            let err: berth_model::ApiError = e.into();
            send(Progress {
                status: "error".into(),
                error: Some(err),
                ..Progress::default()
            });
        }
    });
    crate::system::ndjson(rx)
}

/// Pulls from a registry; NDJSON progress, the last line says how many blob
/// bytes were transferred (`current`) or carries the error.
pub async fn pull(State(s): State<AppState>, Query(q): Query<PullQuery>) -> ApiResult<Response> {
    berth_model::Reference::parse(&q.reference).map_err(berth_model::ApiError::invalid)?;
    let engine = s.engine.clone();
    Ok(progress_stream(move |progress| {
        let options = berth_image::PullOptions {
            platform: q.platform.filter(|p| !p.is_empty()),
            all_platforms: q.all_platforms,
        };
        engine.pull_image(&q.reference, &options, progress).map(drop)
    }))
}

/// Pushes to a registry; NDJSON progress.
pub async fn push(State(s): State<AppState>, Query(q): Query<RefQuery>) -> ApiResult<Response> {
    berth_model::Reference::parse(&q.reference).map_err(berth_model::ApiError::invalid)?;
    // A missing image is a clean error rather than a stream.
    s.engine.images().resolve(&q.reference)?;
    let engine = s.engine.clone();
    Ok(progress_stream(move |progress| {
        engine.push_image(&q.reference, progress).map(drop)
    }))
}

/// Checks credentials against the registry and stores them for the daemon's
/// pulls and pushes. The password goes nowhere else.
pub async fn login(State(s): State<AppState>, Json(req): Json<LoginRequest>) -> ApiResult<Json<LoginAnswer>> {
    if req.username.is_empty() || req.password.is_empty() {
        return Err(berth_model::ApiError::invalid("login needs a username and a password").into());
    }
    let registry = if req.registry.is_empty() {
        berth_model::DEFAULT_REGISTRY.to_string()
    } else {
        req.registry
    };
    let engine = s.engine.clone();
    let credentials = berth_image::Credentials {
        username: req.username,
        password: req.password,
    };
    let key = crate::blocking::blocking(move || engine.registry_login(&registry, credentials)).await??;
    Ok(Json(LoginAnswer {
        registry: key,
        status: "Login Succeeded".into(),
    }))
}

#[derive(Deserialize)]
pub struct LogoutQuery {
    #[serde(default)]
    registry: String,
}

pub async fn logout(State(s): State<AppState>, Query(q): Query<LogoutQuery>) -> ApiResult<Json<LoginAnswer>> {
    let registry = if q.registry.is_empty() {
        berth_model::DEFAULT_REGISTRY.to_string()
    } else {
        q.registry
    };
    let removed = s.engine.registry_logout(&registry)?;
    let key = berth_image::registry_key(&registry);
    Ok(Json(LoginAnswer {
        status: if removed {
            format!("Removing login credentials for {key}")
        } else {
            format!("Not logged in to {key}")
        },
        registry: key,
    }))
}
