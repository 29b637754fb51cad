//! The CLI's HTTP client: one connection per request to the daemon's unix
//! socket (or loopback TCP), JSON in and out, `{"code","message"}` errors
//! turned into messages, and upgraded connections for framed streams.

use anyhow::{anyhow, bail, Context, Result};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

/// A connection to the daemon, over either transport.
trait Io: hyper::rt::Read + hyper::rt::Write + Send + Unpin {}
impl<T: hyper::rt::Read + hyper::rt::Write + Send + Unpin> Io for T {}

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

#[derive(Clone)]
pub enum Endpoint {
    Unix(String),
    Tcp(String),
}

#[derive(Clone)]
pub struct Client {
    endpoint: Endpoint,
}

pub fn empty() -> Body {
    Full::new(Bytes::new()).map_err(|never| match never {}).boxed()
}

pub fn json_body(v: &impl serde::Serialize) -> Result<Body> {
    Ok(Full::new(Bytes::from(serde_json::to_vec(v)?))
        .map_err(|never| match never {})
        .boxed())
}

pub fn file_body(file: tokio::fs::File) -> Body {
    use futures_util::StreamExt;
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).map(|r| r.map(Frame::data));
    BodyExt::boxed(StreamBody::new(stream))
}

/// Carries an error's exit status (125 for daemon errors, 127 for a missing command).
#[derive(Debug)]
pub struct ExitError(pub i32, pub String);

impl std::fmt::Display for ExitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for ExitError {}

impl Client {
    pub fn new(host: &str) -> Result<Self> {
        let endpoint = if let Some(p) = host.strip_prefix("unix://") {
            Endpoint::Unix(p.to_string())
        } else if let Some(a) = host.strip_prefix("http://").or_else(|| host.strip_prefix("tcp://")) {
            Endpoint::Tcp(a.trim_end_matches('/').to_string())
        } else if host.starts_with("https://") {
            bail!("https:// hosts need the TLS listener, which comes with access control; use unix:// for now")
        } else if host.starts_with('/') {
            Endpoint::Unix(host.to_string())
        } else {
            bail!("invalid host {host:?}: use unix:///path/to/berth.sock")
        };
        Ok(Self { endpoint })
    }

    async fn send(&self, req: Request<Body>) -> Result<Response<Incoming>> {
        let what = match &self.endpoint {
            Endpoint::Unix(p) => p.clone(),
            Endpoint::Tcp(a) => a.clone(),
        };
        let io: Box<dyn Io> = match &self.endpoint {
            Endpoint::Unix(p) => Box::new(TokioIo::new(tokio::net::UnixStream::connect(p).await.map_err(|e| {
                anyhow!("cannot connect to the berth daemon at unix://{what}: {e} (is `berth daemon` running? set -H or BERTH_HOST)")
            })?)),
            Endpoint::Tcp(a) => Box::new(TokioIo::new(
                tokio::net::TcpStream::connect(a).await.with_context(|| format!("cannot connect to the berth daemon at {a}"))?,
            )),
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .context("talking to the daemon")?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        sender.send_request(req).await.context("talking to the daemon")
    }

    fn request(&self, method: Method, path: &str, body: Body) -> Result<Request<Body>> {
        Ok(Request::builder()
            .method(method)
            .uri(path)
            .header("host", "berth")
            .body(body)?)
    }

    /// Sends a request; a non-success status becomes the daemon's message.
    pub async fn call(&self, method: Method, path: &str, body: Body) -> Result<Response<Incoming>> {
        let mut req = self.request(method, path, body)?;
        req.headers_mut().insert("content-type", "application/json".parse()?);
        let resp = self.send(req).await?;
        if resp.status().is_success() || resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            return Ok(resp);
        }
        Err(error_of(resp).await)
    }

    pub async fn json<T: DeserializeOwned>(&self, method: Method, path: &str, body: Body) -> Result<T> {
        let resp = self.call(method, path, body).await?;
        let bytes = resp.into_body().collect().await?.to_bytes();
        serde_json::from_slice(&bytes).with_context(|| format!("daemon answered {path} with unexpected JSON"))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.json(Method::GET, path, empty()).await
    }

    /// Upgrades the connection to a framed stream.
    pub async fn upgrade(&self, method: Method, path: &str) -> Result<TokioIo<hyper::upgrade::Upgraded>> {
        let mut req = self.request(method, path, empty())?;
        req.headers_mut().insert("connection", "Upgrade".parse()?);
        req.headers_mut().insert("upgrade", "berth-stream".parse()?);
        let resp = self.send(req).await?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(error_of(resp).await);
        }
        let upgraded = hyper::upgrade::on(resp).await.context("upgrading the connection")?;
        Ok(TokioIo::new(upgraded))
    }
}

async fn error_of(resp: Response<Incoming>) -> anyhow::Error {
    let status = resp.status();
    let bytes = match resp.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return anyhow!("daemon answered {status}: {e}"),
    };
    match serde_json::from_slice::<berth_model::ApiError>(&bytes) {
        Ok(e) => {
            let code = if e.message.contains("executable file not found")
                || e.message.contains("no such file or directory in the image")
            {
                127
            } else {
                125
            };
            ExitError(code, e.message).into()
        }
        Err(_) => ExitError(
            125,
            format!("daemon answered {status}: {}", String::from_utf8_lossy(&bytes)),
        )
        .into(),
    }
}

/// Reads an NDJSON body line by line.
pub async fn ndjson_lines(resp: Response<Incoming>, mut f: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading the daemon's stream")?;
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                if line.len() > 1 {
                    f(&line[..line.len() - 1])?;
                }
            }
        }
    }
    if !buf.is_empty() {
        f(&buf)?;
    }
    Ok(())
}

pub fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
