//! The OCI Distribution Spec v1.1 at `/v2/`: HTTP onto `berth-registry`.
//! Repository names hold slashes, so every `/v2/...` request comes through
//! one wildcard route and [`parse`] finds the endpoint from the right.
//! [`scopes`] tells the authorization layer which repository and action a
//! request needs, [`denied`] answers with the bearer challenge, and
//! `/v2/token` hands out tokens for what [`crate::authz::grantable`] allows;
//! registry errors become the spec's
//! `{"errors":[{"code","message","detail"}]}` in [`error_response`] only.

use std::io::{self, Read};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_registry::{token, Code, Error, Registry, UploadStatus};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::authz::{self, Action, Origin, Principal, Target};
use crate::blocking::blocking;
use crate::AppState;

/// What a `/v2/` path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Ping,
    /// `GET /v2/token?service=...&scope=...`: bearer tokens.
    Token,
    Catalog,
    Tags(String),
    Manifest(String, String),
    Blob(String, String),
    Uploads(String),
    Upload(String, String),
    Referrers(String, String),
    /// Notary's `/v2/{gun}/_trust/tuf/{rest}` (`rest` empty for the GUN itself).
    Trust(String, String),
    /// `/v2/{gun}/_trust/changefeed`, or `/v2/_trust/changefeed` for all.
    Changefeed(Option<String>),
}

impl Endpoint {
    fn repository(&self) -> Option<&str> {
        match self {
            Endpoint::Ping | Endpoint::Token | Endpoint::Catalog | Endpoint::Changefeed(None) => None,
            Endpoint::Trust(gun, _) | Endpoint::Changefeed(Some(gun)) => Some(crate::trust::repository_of(gun)),
            Endpoint::Tags(r)
            | Endpoint::Manifest(r, _)
            | Endpoint::Blob(r, _)
            | Endpoint::Uploads(r)
            | Endpoint::Upload(r, _)
            | Endpoint::Referrers(r, _) => Some(r),
        }
    }
}

/// Parses a request path (`/v2/...`). Names are not validated here: the
/// registry answers NAME_INVALID for them.
pub fn parse(path: &str) -> Option<Endpoint> {
    let rest = path.strip_prefix("/v2/")?;
    if rest.is_empty() {
        return Some(Endpoint::Ping);
    }
    if rest == "_catalog" {
        return Some(Endpoint::Catalog);
    }
    if rest == "token" {
        return Some(Endpoint::Token);
    }
    if rest == "_trust/changefeed" {
        return Some(Endpoint::Changefeed(None));
    }
    if let Some((gun, tail)) = rest.split_once("/_trust/") {
        if tail == "changefeed" {
            return Some(Endpoint::Changefeed(Some(gun.to_string())));
        }
        return tail
            .strip_prefix("tuf/")
            .map(|r| Endpoint::Trust(gun.to_string(), r.to_string()));
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Endpoint::Tags(name.to_string()));
    }
    if let Some(name) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Some(Endpoint::Uploads(name.to_string()));
    }
    if let Some((name, uuid)) = rest.rsplit_once("/blobs/uploads/") {
        return Some(Endpoint::Upload(name.to_string(), uuid.to_string()));
    }
    let (head, last) = rest.rsplit_once('/')?;
    let (name, kind) = head.rsplit_once('/')?;
    match kind {
        "manifests" => Some(Endpoint::Manifest(name.to_string(), last.to_string())),
        "blobs" => Some(Endpoint::Blob(name.to_string(), last.to_string())),
        "referrers" => Some(Endpoint::Referrers(name.to_string(), last.to_string())),
        _ => None,
    }
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn query_get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The (target, action) pairs a request needs. A mount also needs to pull
/// its source. The token endpoint needs nothing: it decides what to grant.
pub fn scopes(method: &Method, path: &str, query: Option<&str>) -> Vec<(Target, Action)> {
    let action = match *method {
        Method::GET | Method::HEAD => Action::Pull,
        Method::DELETE => Action::Delete,
        _ => Action::Push,
    };
    let endpoint = match parse(path) {
        Some(Endpoint::Token) => return Vec::new(),
        Some(Endpoint::Ping) => return vec![(Target::Base, Action::Pull)],
        Some(Endpoint::Catalog) => return vec![(Target::Catalog, Action::Pull)],
        Some(e) => e,
        // Answered with UNSUPPORTED, but only to callers who may use the registry.
        None => return vec![(Target::Base, Action::Pull)],
    };
    let mut out = Vec::new();
    // Notary's permissions: updates and key reads need push and pull; key
    // rotation and deletion all three ("*"); the changefeed of every GUN
    // is the catalog's.
    match &endpoint {
        Endpoint::Changefeed(None) => return vec![(Target::Catalog, Action::Pull)],
        Endpoint::Trust(gun, rest) => {
            let repo = Target::Repository(crate::trust::repository_of(gun).to_string());
            let actions: &[Action] = match (method, rest.is_empty(), rest.ends_with(".key")) {
                (&Method::POST, true, _) => &[Action::Push, Action::Pull],
                (&Method::DELETE, true, _) => &[Action::Push, Action::Pull, Action::Delete],
                (&Method::GET | &Method::HEAD, _, true) => &[Action::Push, Action::Pull],
                (&Method::POST, _, true) => &[Action::Push, Action::Pull, Action::Delete],
                _ => &[Action::Pull],
            };
            return actions.iter().map(|a| (repo.clone(), *a)).collect();
        }
        _ => {}
    }
    // Cancelling an upload is part of pushing (as in Distribution), not a delete.
    let action = match endpoint {
        Endpoint::Upload(..) if *method == Method::DELETE => Action::Push,
        _ => action,
    };
    if let Some(repo) = endpoint.repository() {
        out.push((Target::Repository(repo.to_string()), action));
    }
    if let Endpoint::Uploads(_) = endpoint {
        if let Some(from) = query_get(&query_pairs(query), "from") {
            out.push((Target::Repository(from.to_string()), Action::Pull));
        }
    }
    out
}

/// The one place registry errors become responses.
pub fn error_response(e: &Error) -> Response {
    let code = e.code();
    let status = match code {
        Code::BlobUnknown | Code::BlobUploadUnknown | Code::ManifestUnknown | Code::NameUnknown => {
            StatusCode::NOT_FOUND
        }
        Code::BlobUploadInvalid
        | Code::DigestInvalid
        | Code::ManifestBlobUnknown
        | Code::ManifestInvalid
        | Code::NameInvalid
        | Code::SizeInvalid
        | Code::TagInvalid => StatusCode::BAD_REQUEST,
        Code::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
        Code::ManifestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Code::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Code::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
        Code::Denied => StatusCode::FORBIDDEN,
        Code::Unauthorized => StatusCode::UNAUTHORIZED,
        Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let message = if code == Code::Internal {
        tracing::error!(error = %e, "registry internal error");
        "internal error".to_string()
    } else {
        e.to_string()
    };
    let body = serde_json::json!({"errors": [{"code": code.as_str(), "message": message, "detail": null}]});
    (status, axum::Json(body)).into_response()
}

/// `SCHEME://HOST/v2/token`: the scheme of the listener the request came in
/// on (a TLS client told `http://` would speak plain HTTP to a TLS socket),
/// and the host the daemon advertises (`--advertise-addr HOST:PORT`, for a
/// proxy in front of it) or else the one the caller named.
fn realm(origin: &Origin, headers: &HeaderMap) -> String {
    let named = header_str(headers, "host")
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)));
    let host = origin.advertised.as_deref().or(named).unwrap_or("127.0.0.1");
    format!("{}://{host}/v2/token", origin.scheme)
}

/// Refusal by the authorization layer, in the registry's error format: a
/// caller without a (sufficient) token gets 401 and the bearer challenge
/// that tells docker and skopeo where to get one.
pub fn denied(
    principal: &Principal,
    origin: &Origin,
    headers: &HeaderMap,
    target: &Target,
    action: Action,
) -> Response {
    let what = match target {
        Target::Base => "use the registry".to_string(),
        Target::Catalog => "list the catalog".to_string(),
        Target::Repository(name) => format!("{} {name}", action.scope_name()),
    };
    if matches!(principal, Principal::Admin | Principal::User(_)) {
        return error_response(&Error::new(Code::Denied, format!("not allowed to {what}")));
    }
    let mut challenge = format!(
        "Bearer realm=\"{}\",service=\"{}\"",
        realm(origin, headers),
        token::SERVICE
    );
    if let Some(scope) = target.scope(action) {
        challenge.push_str(&format!(",scope=\"{scope}\""));
    }
    if let Principal::Bearer(_) = principal {
        challenge.push_str(",error=\"insufficient_scope\"");
    }
    let message = match principal {
        Principal::Bearer(_) => format!("the token does not allow to {what}"),
        _ => format!("authentication required to {what}"),
    };
    let mut response = error_response(&Error::new(Code::Unauthorized, message));
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    response
}

/// How long a token lasts. Clients fetch a new one when it runs out.
const TOKEN_LIFETIME: u64 = 300;

/// `GET /v2/token?service=berth&scope=repository:NAME:pull,push[&scope=...]`:
/// a token for the requested actions the caller may have (possibly none,
/// as Distribution's token servers do; the registry then refuses).
fn issue_token(
    reg: &Registry,
    index: &berth_auth::Index,
    principal: &Principal,
    on_loopback: bool,
    hosts: &[&str],
    query: &[(String, String)],
) -> Result<Response, Error> {
    if let Some(service) = query_get(query, "service") {
        if service != token::SERVICE {
            return Err(Error::new(
                Code::Denied,
                format!("this token service is {:?}, not {service:?}", token::SERVICE),
            ));
        }
    }
    let mut access = Vec::new();
    for (_, scope) in query.iter().filter(|(k, _)| k == "scope") {
        // Clients may join several scopes with spaces in one parameter.
        for one in scope.split(' ').filter(|s| !s.is_empty()) {
            let mut requested = token::Access::parse(one)
                .ok_or_else(|| Error::new(Code::Unsupported, format!("invalid scope {one:?}")))?;
            // A trust client (docker's) names the GUN, this registry's host
            // included: the repository is the rest.
            if let Some((host, rest)) = requested.name.split_once('/') {
                if hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
                    requested.name = rest.to_string();
                }
            }
            let target = match (requested.kind.as_str(), requested.name.as_str()) {
                ("repository", name) => Target::Repository(name.to_string()),
                ("registry", "catalog") => Target::Catalog,
                _ => continue,
            };
            let actions: Vec<Action> = requested
                .actions
                .iter()
                .flat_map(|a| match a.as_str() {
                    "pull" => vec![Action::Pull],
                    "push" => vec![Action::Push],
                    "delete" => vec![Action::Delete],
                    "*" if target == Target::Catalog => vec![Action::Pull],
                    "*" => vec![Action::Pull, Action::Push, Action::Delete],
                    _ => vec![],
                })
                .collect();
            let granted = authz::grantable(index, principal, on_loopback, &target, &actions);
            if granted.is_empty() {
                continue;
            }
            let names = if target == Target::Catalog {
                vec!["*".to_string()]
            } else {
                granted.iter().map(|a| a.scope_name().to_string()).collect()
            };
            access.push(token::Access {
                kind: requested.kind,
                name: requested.name,
                actions: names,
            });
        }
    }
    let now = reg.now_secs();
    let claims = token::Claims {
        iss: token::SERVICE.into(),
        sub: match principal {
            Principal::Admin => "admin".into(),
            Principal::User(identity) => identity.name.clone(),
            Principal::Anonymous | Principal::Bearer(_) => "anonymous".into(),
        },
        aud: token::SERVICE.into(),
        iat: now,
        exp: now + TOKEN_LIFETIME,
        access,
    };
    let signed = reg.token_key().issue(&claims);
    let issued_at = chrono::DateTime::<chrono::Utc>::from_timestamp(now as i64, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    tracing::debug!(subject = %claims.sub, scopes = ?claims.access.iter().map(token::Access::scope).collect::<Vec<_>>(), "registry token issued");
    Ok(axum::Json(serde_json::json!({
        "token": signed,
        "access_token": signed,
        "expires_in": TOKEN_LIFETIME,
        "issued_at": issued_at,
    }))
    .into_response())
}

fn internal(message: impl Into<String>) -> Error {
    Error::new(Code::Internal, message)
}

/// A blocking reader over the request body, fed by an async pump.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<axum::body::Bytes>>,
    current: axum::body::Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = self.current.len().min(buf.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// Runs `f` on a blocking thread, reading the request body as it arrives.
async fn with_body<T: Send + 'static>(
    body: Body,
    f: impl FnOnce(&mut dyn Read) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let job = tokio::task::spawn_blocking(move || {
        let mut reader = ChannelReader {
            rx,
            current: Default::default(),
        };
        f(&mut reader)
    });
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(io::Error::other);
        let failed = chunk.is_err();
        if tx.send(chunk).await.is_err() || failed {
            break;
        }
    }
    drop(tx);
    job.await.map_err(|e| internal(format!("registry task failed: {e}")))?
}

async fn read_limited(body: Body, limit: u64) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::new(Code::ManifestInvalid, format!("reading the manifest: {e}")))?;
        out.extend_from_slice(&chunk);
        if out.len() as u64 > limit {
            return Err(Error::new(
                Code::ManifestTooLarge,
                format!("manifest larger than the limit of {limit} bytes"),
            ));
        }
    }
    Ok(out)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `Content-Range: <start>-<end>` of a chunk.
fn content_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>, Error> {
    let Some(v) = header_str(headers, "content-range") else {
        return Ok(None);
    };
    let v = v.trim().trim_start_matches("bytes").trim_start_matches([' ', '=']);
    let parsed = v
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().split('/').next()?.parse().ok()?)));
    match parsed {
        Some((a, b)) if b >= a => Ok(Some((a, b))),
        _ => Err(Error::new(
            Code::RangeNotSatisfiable,
            format!("invalid Content-Range {v:?}"),
        )),
    }
}

fn with_headers(status: StatusCode, headers: &[(&str, String)], body: Body) -> Response {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    b.body(body).unwrap_or_default()
}

fn upload_response(status: StatusCode, repo: &str, s: &UploadStatus) -> Response {
    let end = s.offset.saturating_sub(1);
    with_headers(
        status,
        &[
            ("location", format!("/v2/{repo}/blobs/uploads/{}", s.uuid)),
            ("range", format!("0-{end}")),
            ("docker-upload-uuid", s.uuid.clone()),
            ("content-length", "0".into()),
        ],
        Body::empty(),
    )
}

fn blob_created(repo: &str, digest: &str) -> Response {
    with_headers(
        StatusCode::CREATED,
        &[
            ("location", format!("/v2/{repo}/blobs/{digest}")),
            ("docker-content-digest", digest.to_string()),
            ("content-length", "0".into()),
        ],
        Body::empty(),
    )
}

fn registry(s: &AppState) -> Result<Registry, Error> {
    s.registry
        .clone()
        .ok_or_else(|| internal("the registry is not available on this daemon (see the daemon log)"))
}

/// `GET /v2/`: the API version check.
pub async fn ping() -> Response {
    let mut r = axum::Json(serde_json::json!({})).into_response();
    r.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    r
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The manifest media types a client's `Accept` headers allow. Without an
/// `Accept` header (or with `*/*`) any is served as stored.
struct Accepted(Option<Vec<String>>);

impl Accepted {
    fn of(headers: &HeaderMap) -> Accepted {
        let mut types = Vec::new();
        for value in headers.get_all(header::ACCEPT) {
            for item in value.to_str().unwrap_or_default().split(',') {
                let media_type = item.split(';').next().unwrap_or_default().trim();
                if !media_type.is_empty() {
                    types.push(media_type.to_ascii_lowercase());
                }
            }
        }
        match types.is_empty() || types.iter().any(|t| t == "*/*") {
            true => Accepted(None),
            false => Accepted(Some(types)),
        }
    }

    fn allows(&self, media_type: &str) -> bool {
        self.0
            .as_ref()
            .is_none_or(|types| types.iter().any(|t| t == media_type))
    }
}

/// As Distribution does: a Docker manifest list goes to a client that does
/// not accept lists as its linux/amd64 manifest; an OCI index, OCI manifest
/// or Docker manifest the client does not accept is unknown to it.
fn negotiate(
    reg: &Registry,
    repo: &str,
    m: berth_registry::Manifest,
    accepted: &Accepted,
) -> Result<berth_registry::Manifest, Error> {
    if accepted.allows(&m.media_type) {
        return Ok(m);
    }
    let refuse = |what: &str| {
        Err(Error::new(
            Code::ManifestUnknown,
            format!("{what} found, but the Accept header does not allow {}", m.media_type),
        ))
    };
    match m.media_type.as_str() {
        DOCKER_LIST => {
            let list: serde_json::Value =
                serde_json::from_slice(&m.bytes).map_err(|e| Error::new(Code::Internal, e.to_string()))?;
            let amd64 = list["manifests"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|d| d["platform"]["os"] == "linux" && d["platform"]["architecture"] == "amd64");
            let Some(digest) = amd64.and_then(|d| d["digest"].as_str()) else {
                return refuse("a manifest list without a linux/amd64 image");
            };
            let one = reg.manifest(repo, digest)?;
            match accepted.allows(&one.media_type) {
                true => Ok(one),
                false => refuse("a manifest list"),
            }
        }
        OCI_INDEX => refuse("an OCI index"),
        OCI_MANIFEST => refuse("an OCI manifest"),
        DOCKER_MANIFEST => refuse("a Docker image manifest (schema 2)"),
        _ => refuse("a manifest"),
    }
}

/// Every `/v2/...` request.
pub async fn dispatch(State(s): State<AppState>, req: Request) -> Response {
    let mut response = match handle(s, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    response.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    response
}

async fn handle(s: AppState, req: Request) -> Result<Response, Error> {
    let (parts, body) = req.into_parts();
    let principal = parts
        .extensions
        .get::<Principal>()
        .cloned()
        .unwrap_or(Principal::Anonymous);
    // Callers without a TCP peer (the unix socket) or with a loopback one.
    let on_loopback = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .is_none_or(|c| c.0.ip().is_loopback());
    let method = parts.method;
    let headers = parts.headers;
    let query = query_pairs(parts.uri.query());
    let endpoint = parse(parts.uri.path()).ok_or_else(|| Error::new(Code::Unsupported, "no such registry endpoint"))?;
    match endpoint {
        Endpoint::Trust(gun, rest) => return Ok(crate::trust::handle(&s, &method, gun, rest, &headers, body).await),
        Endpoint::Changefeed(gun) if method == Method::GET => {
            return Ok(crate::trust::changefeed(&s, gun, &query).await)
        }
        _ => {}
    }
    let reg = registry(&s)?;
    let unsupported = || Err(Error::new(Code::Unsupported, format!("{method} is not supported here")));
    match endpoint {
        Endpoint::Ping => Ok(ping().await),
        Endpoint::Token if method == Method::GET => {
            let origin = parts.extensions.get::<Origin>().cloned().unwrap_or_default();
            let hosts: Vec<&str> = [header_str(&headers, "host"), origin.advertised.as_deref()]
                .into_iter()
                .flatten()
                .collect();
            issue_token(&reg, &authz::index(&s), &principal, on_loopback, &hosts, &query)
        }
        Endpoint::Catalog if method == Method::GET => {
            let (n, last) = paging(&query)?;
            let l = last.clone();
            let (repos, more) = blocking(move || reg.catalog(n, l.as_deref())).await??;
            let mut r = axum::Json(serde_json::json!({"repositories": repos})).into_response();
            if more {
                link_next(&mut r, "/v2/_catalog", n, repos.last());
            }
            Ok(r)
        }
        Endpoint::Tags(repo) if method == Method::GET => {
            let (n, last) = paging(&query)?;
            let (r2, l) = (repo.clone(), last.clone());
            let (tags, more) = blocking(move || reg.tags(&r2, n, l.as_deref())).await??;
            let mut r = axum::Json(serde_json::json!({"name": repo, "tags": tags})).into_response();
            if more {
                link_next(&mut r, &format!("/v2/{repo}/tags/list"), n, tags.last());
            }
            Ok(r)
        }
        Endpoint::Manifest(repo, reference) => match method {
            Method::GET | Method::HEAD => {
                let accepted = Accepted::of(&headers);
                let m = blocking(move || {
                    let m = reg.manifest(&repo, &reference)?;
                    negotiate(&reg, &repo, m, &accepted)
                })
                .await??;
                let len = m.bytes.len().to_string();
                let body = if method == Method::HEAD {
                    Body::empty()
                } else {
                    Body::from(m.bytes)
                };
                Ok(with_headers(
                    StatusCode::OK,
                    &[
                        ("content-type", m.media_type),
                        ("docker-content-digest", m.digest.clone()),
                        ("etag", format!("\"{}\"", m.digest)),
                        ("content-length", len),
                    ],
                    body,
                ))
            }
            Method::PUT => {
                let bytes = read_limited(body, reg.config().max_manifest_size).await?;
                let content_type = header_str(&headers, "content-type").map(str::to_string);
                let (r2, ref2) = (repo.clone(), reference.clone());
                let put = blocking(move || reg.put_manifest(&r2, &ref2, content_type.as_deref(), &bytes)).await??;
                // The scan service follows this event (scans run in the
                // background: the push is not slowed).
                s.engine.image_pushed(&repo, &reference, &put.digest);
                let mut h = vec![
                    ("location", format!("/v2/{repo}/manifests/{}", put.digest)),
                    ("docker-content-digest", put.digest.clone()),
                    ("content-length", "0".into()),
                ];
                if let Some(subject) = put.subject {
                    h.push(("oci-subject", subject));
                }
                Ok(with_headers(StatusCode::CREATED, &h, Body::empty()))
            }
            Method::DELETE => {
                blocking(move || reg.delete_manifest(&repo, &reference)).await??;
                Ok(StatusCode::ACCEPTED.into_response())
            }
            _ => unsupported(),
        },
        Endpoint::Blob(repo, digest) => match method {
            Method::GET | Method::HEAD => serve_blob(reg, repo, digest, &headers, method == Method::HEAD).await,
            Method::DELETE => {
                blocking(move || reg.delete_blob(&repo, &digest)).await??;
                Ok(StatusCode::ACCEPTED.into_response())
            }
            _ => unsupported(),
        },
        Endpoint::Uploads(repo) if method == Method::POST => {
            if let Some(digest) = query_get(&query, "digest").map(str::to_string) {
                let (r2, d2) = (repo.clone(), digest.clone());
                with_body(body, move |b| reg.put_blob(&r2, &d2, b)).await?;
                return Ok(blob_created(&repo, &digest));
            }
            if let Some(digest) = query_get(&query, "mount").map(str::to_string) {
                let from = query_get(&query, "from").map(str::to_string);
                let (r2, d2, reg2) = (repo.clone(), digest.clone(), reg.clone());
                let mounted = match from {
                    Some(from) => blocking(move || reg2.mount_blob(&r2, &from, &d2)).await??,
                    None => false,
                };
                if mounted {
                    return Ok(blob_created(&repo, &digest));
                }
            }
            let r2 = repo.clone();
            let status = blocking(move || reg.start_upload(&r2)).await??;
            Ok(upload_response(StatusCode::ACCEPTED, &repo, &status))
        }
        Endpoint::Upload(repo, uuid) => match method {
            Method::GET => {
                let r2 = repo.clone();
                let status = blocking(move || reg.upload_status(&r2, &uuid)).await??;
                Ok(upload_response(StatusCode::NO_CONTENT, &repo, &status))
            }
            Method::PATCH => {
                let range = content_range(&headers)?;
                let (r2, u2, reg2) = (repo.clone(), uuid.clone(), reg.clone());
                match with_body(body, move |b| reg2.upload_chunk(&r2, &u2, range, b)).await {
                    Ok(status) => Ok(upload_response(StatusCode::ACCEPTED, &repo, &status)),
                    // A chunk out of order: tell the client where the upload stands.
                    Err(e) if e.code() == Code::RangeNotSatisfiable => {
                        let r2 = repo.clone();
                        let mut response = error_response(&e);
                        if let Ok(Ok(status)) = blocking(move || reg.upload_status(&r2, &uuid)).await {
                            let at = upload_response(StatusCode::ACCEPTED, &repo, &status);
                            for name in [header::LOCATION, header::RANGE] {
                                if let Some(v) = at.headers().get(&name) {
                                    response.headers_mut().insert(name, v.clone());
                                }
                            }
                        }
                        Ok(response)
                    }
                    Err(e) => Err(e),
                }
            }
            Method::PUT => {
                let digest = query_get(&query, "digest")
                    .ok_or_else(|| Error::new(Code::DigestInvalid, "finishing an upload needs ?digest="))?
                    .to_string();
                let range = content_range(&headers)?;
                let (r2, d2) = (repo.clone(), digest.clone());
                with_body(body, move |b| reg.finish_upload(&r2, &uuid, &d2, range, b)).await?;
                Ok(blob_created(&repo, &digest))
            }
            Method::DELETE => {
                blocking(move || reg.cancel_upload(&repo, &uuid)).await??;
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            _ => unsupported(),
        },
        Endpoint::Referrers(repo, digest) if method == Method::GET => {
            let filter = query_get(&query, "artifactType").map(str::to_string);
            let f2 = filter.clone();
            let index = blocking(move || reg.referrers(&repo, &digest, f2.as_deref())).await??;
            let mut h = vec![("content-type", "application/vnd.oci.image.index.v1+json".to_string())];
            if filter.is_some() {
                h.push(("oci-filters-applied", "artifactType".into()));
            }
            Ok(with_headers(StatusCode::OK, &h, Body::from(index)))
        }
        _ => unsupported(),
    }
}

fn paging(query: &[(String, String)]) -> Result<(Option<usize>, Option<String>), Error> {
    let n = match query_get(query, "n") {
        Some(n) => Some(
            n.parse::<usize>()
                .map_err(|_| Error::new(Code::Unsupported, format!("invalid page size n={n:?}")))?,
        ),
        None => None,
    };
    Ok((n, query_get(query, "last").map(str::to_string)))
}

fn link_next(response: &mut Response, path: &str, n: Option<usize>, last: Option<&String>) {
    let (Some(n), Some(last)) = (n, last) else {
        return;
    };
    let last: String = form_urlencoded::byte_serialize(last.as_bytes()).collect();
    if let Ok(v) = HeaderValue::from_str(&format!("<{path}?n={n}&last={last}>; rel=\"next\"")) {
        response.headers_mut().insert(header::LINK, v);
    }
}

/// `Range: bytes=<start>-[<end>]` against a blob of `size` bytes.
fn byte_range(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, Error> {
    let Some(v) = header_str(headers, "range") else {
        return Ok(None);
    };
    let unsatisfiable = || {
        Error::new(
            Code::RangeNotSatisfiable,
            format!("range {v:?} outside a blob of {size} bytes"),
        )
    };
    let spec = v.trim().strip_prefix("bytes=").ok_or_else(unsatisfiable)?;
    let (a, b) = spec.split_once('-').ok_or_else(unsatisfiable)?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(|_| unsatisfiable())?;
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        (a, "") => (a.parse().map_err(|_| unsatisfiable())?, size.saturating_sub(1)),
        (a, b) => (
            a.parse().map_err(|_| unsatisfiable())?,
            b.parse::<u64>()
                .map_err(|_| unsatisfiable())?
                .min(size.saturating_sub(1)),
        ),
    };
    if start > end || start >= size {
        return Err(unsatisfiable());
    }
    Ok(Some((start, end)))
}

async fn serve_blob(
    reg: Registry,
    repo: String,
    digest: String,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, Error> {
    let d2 = digest.clone();
    let info = blocking(move || reg.blob(&repo, &d2)).await??;
    let range = match byte_range(headers, info.size) {
        Ok(r) => r,
        Err(e) => {
            let mut r = error_response(&e);
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", info.size)) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(r);
        }
    };
    let (status, start, len) = match range {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        None => (StatusCode::OK, 0, info.size),
    };
    let mut h = vec![
        ("content-type", "application/octet-stream".to_string()),
        ("docker-content-digest", digest.clone()),
        ("etag", format!("\"{digest}\"")),
        ("accept-ranges", "bytes".into()),
        ("content-length", len.to_string()),
    ];
    if let Some((a, b)) = range {
        h.push(("content-range", format!("bytes {a}-{b}/{}", info.size)));
    }
    if head {
        return Ok(with_headers(status, &h, Body::empty()));
    }
    let mut file = tokio::fs::File::open(&info.path)
        .await
        .map_err(|e| internal(format!("opening {}: {e}", info.path.display())))?;
    if start > 0 {
        file.seek(io::SeekFrom::Start(start))
            .await
            .map_err(|e| internal(format!("seeking {}: {e}", info.path.display())))?;
    }
    let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), 256 * 1024);
    Ok(with_headers(status, &h, Body::from_stream(stream)))
}

#[derive(Deserialize)]
pub struct GcQuery {
    /// Seconds: links younger than this are kept (default one hour).
    #[serde(default)]
    grace: Option<u64>,
}

/// `POST /v1/registry/gc`: collects unreferenced blobs.
pub async fn gc(
    State(s): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<GcQuery>,
) -> crate::error::ApiResult<crate::json::Json<berth_registry::GcReport>> {
    let to_api = |e: Error| berth_model::ApiError::internal(e.to_string());
    let reg = registry(&s).map_err(to_api)?;
    let grace = std::time::Duration::from_secs(q.grace.unwrap_or(3600));
    let report = blocking(move || reg.gc(grace)).await?.map_err(to_api)?;
    Ok(crate::json::Json(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let e = |p: &str| parse(p);
        assert_eq!(e("/v2/"), Some(Endpoint::Ping));
        assert_eq!(e("/v2/_catalog"), Some(Endpoint::Catalog));
        assert_eq!(e("/v2/a/b/c/tags/list"), Some(Endpoint::Tags("a/b/c".into())));
        assert_eq!(
            e("/v2/a/b/manifests/v1"),
            Some(Endpoint::Manifest("a/b".into(), "v1".into()))
        );
        assert_eq!(
            e("/v2/blobs/blobs/sha256:x"),
            Some(Endpoint::Blob("blobs".into(), "sha256:x".into()))
        );
        assert_eq!(e("/v2/a/b/blobs/uploads/"), Some(Endpoint::Uploads("a/b".into())));
        assert_eq!(
            e("/v2/a/blobs/uploads/u1"),
            Some(Endpoint::Upload("a".into(), "u1".into()))
        );
        assert_eq!(
            e("/v2/x/referrers/sha256:y"),
            Some(Endpoint::Referrers("x".into(), "sha256:y".into()))
        );
        assert_eq!(e("/v2/token"), Some(Endpoint::Token));
        assert_eq!(e("/v2/x/other/y"), None);
        assert_eq!(e("/v2/x"), None);
    }

    #[test]
    fn what_requests_need() {
        let repo = |n: &str| Target::Repository(n.into());
        let cases = [
            (Method::GET, "/v2/", None, vec![(Target::Base, Action::Pull)]),
            (Method::GET, "/v2/token", Some("scope=repository:a:push"), vec![]),
            (Method::GET, "/v2/_catalog", None, vec![(Target::Catalog, Action::Pull)]),
            (
                Method::HEAD,
                "/v2/a/b/blobs/sha256:x",
                None,
                vec![(repo("a/b"), Action::Pull)],
            ),
            (Method::PUT, "/v2/a/manifests/v1", None, vec![(repo("a"), Action::Push)]),
            (
                Method::DELETE,
                "/v2/a/manifests/v1",
                None,
                vec![(repo("a"), Action::Delete)],
            ),
            (
                Method::POST,
                "/v2/a/blobs/uploads/",
                Some("mount=sha256:x&from=b/c"),
                vec![(repo("a"), Action::Push), (repo("b/c"), Action::Pull)],
            ),
        ];
        for (method, path, query, expected) in cases {
            assert_eq!(scopes(&method, path, query), expected, "{method} {path}");
        }
    }

    #[test]
    fn ranges() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert("range", HeaderValue::from_str(v).expect("header"));
            m
        };
        assert_eq!(byte_range(&h("bytes=0-9"), 100).expect("ok"), Some((0, 9)));
        assert_eq!(byte_range(&h("bytes=90-"), 100).expect("ok"), Some((90, 99)));
        assert_eq!(byte_range(&h("bytes=-10"), 100).expect("ok"), Some((90, 99)));
        assert_eq!(byte_range(&h("bytes=50-500"), 100).expect("ok"), Some((50, 99)));
        assert!(byte_range(&h("bytes=100-"), 100).is_err());
        assert!(byte_range(&h("bytes=5-2"), 100).is_err());
        assert_eq!(byte_range(&HeaderMap::new(), 100).expect("ok"), None);
    }
}
