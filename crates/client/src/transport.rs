//! The transport: one connection per request to the daemon's unix
//! socket, loopback TCP or the TLS listener (trusting the cluster CA,
//! presenting a bundle's client certificate), JSON in and out,
//! `{"code","message"}` errors turned into messages, and upgraded
//! connections for framed streams.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::de::DeserializeOwned;

/// A connection to the daemon, over either transport.
trait Io: hyper::rt::Read + hyper::rt::Write + Send + Unpin {}
impl<T: hyper::rt::Read + hyper::rt::Write + Send + Unpin> Io for T {}

pub type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

#[derive(Clone)]
pub enum Endpoint {
    Unix(String),
    Tcp(String),
    /// `host:port`, the name the certificate must carry, the TLS settings.
    Tls(String, ServerName<'static>, Arc<rustls::ClientConfig>),
}

#[derive(Clone)]
pub struct Client {
    endpoint: Endpoint,
    /// `BERTH_TOKEN`: a personal access token sent over TCP (never over the
    /// socket, whose caller is the admin). Never printed.
    token: Option<String>,
}

/// PEM files for https:// hosts (`--tlscacert`, `--tlscert`, `--tlskey`).
#[derive(Clone, Default)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Trusts only the cluster CA (none given: nothing, and the handshake says
/// so); presents the client certificate when one is given.
fn tls_config(files: &TlsFiles) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = &files.ca {
        for cert in CertificateDer::pem_file_iter(ca).with_context(|| format!("reading the CA {}", ca.display()))? {
            roots
                .add(cert.with_context(|| format!("reading the CA {}", ca.display()))?)
                .with_context(|| format!("using the CA {}", ca.display()))?;
        }
    }
    tls_config_with(roots, files)
}

fn tls_config_with(roots: rustls::RootCertStore, files: &TlsFiles) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots);
    let mut config = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("reading the client certificate {}", cert.display()))?;
            // Not the parse error: it could quote the key.
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|_| anyhow!("reading the client key {}: no PEM private key", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .context("using the client certificate")?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => bail!("--tlscert and --tlskey (BERTH_TLS_CERT, BERTH_TLS_KEY) go together"),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
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
    pub fn new(host: &str, tls: &TlsFiles) -> Result<Self> {
        let endpoint = if let Some(p) = host.strip_prefix("unix://") {
            Endpoint::Unix(p.to_string())
        } else if let Some(a) = host.strip_prefix("http://").or_else(|| host.strip_prefix("tcp://")) {
            Endpoint::Tcp(a.trim_end_matches('/').to_string())
        } else if let Some(a) = host.strip_prefix("https://") {
            let a = a.trim_end_matches('/');
            let name = match a.rsplit_once(':') {
                Some((h, p)) if p.parse::<u16>().is_ok() => h,
                _ => a,
            };
            let name = name.trim_start_matches('[').trim_end_matches(']');
            let server_name =
                ServerName::try_from(name.to_string()).map_err(|_| anyhow!("invalid host name in {host:?}"))?;
            let addr = if a.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) && !a.ends_with(']') {
                a.to_string()
            } else {
                format!("{a}:7443")
            };
            Endpoint::Tls(addr, server_name, tls_config(tls)?)
        } else if host.starts_with('/') {
            Endpoint::Unix(host.to_string())
        } else {
            bail!("invalid host {host:?}: use unix:///path/to/berth.sock")
        };
        let token = std::env::var("BERTH_TOKEN").ok().filter(|t| !t.is_empty());
        Ok(Self { endpoint, token })
    }

    /// An `https://HOST:PORT` client that trusts the CA certificates in
    /// `ca_pem` (the daemon's, as `/v1/ca.pem` serves it).
    pub fn with_ca_pem(host: &str, ca_pem: &[u8]) -> Result<Self> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            roots
                .add(cert.context("reading the daemon's CA")?)
                .context("using the daemon's CA")?;
        }
        let mut client = Self::new(host, &TlsFiles::default())?;
        if let Endpoint::Tls(addr, name, _) = client.endpoint {
            client.endpoint = Endpoint::Tls(addr, name, tls_config_with(roots, &TlsFiles::default())?);
        }
        Ok(client)
    }

    async fn send(&self, req: Request<Body>) -> Result<Response<Incoming>> {
        let what = match &self.endpoint {
            Endpoint::Unix(p) => p.clone(),
            Endpoint::Tcp(a) | Endpoint::Tls(a, ..) => a.clone(),
        };
        let io: Box<dyn Io> = match &self.endpoint {
            Endpoint::Unix(p) => Box::new(TokioIo::new(tokio::net::UnixStream::connect(p).await.map_err(|e| {
                anyhow!("cannot connect to the berth daemon at unix://{what}: {e} (is `berth daemon` running? set -H or BERTH_HOST)")
            })?)),
            Endpoint::Tcp(a) => Box::new(TokioIo::new(
                tokio::net::TcpStream::connect(a).await.with_context(|| format!("cannot connect to the berth daemon at {a}"))?,
            )),
            Endpoint::Tls(a, name, config) => {
                let tcp = tokio::net::TcpStream::connect(a)
                    .await
                    .with_context(|| format!("cannot connect to the berth daemon at {a}"))?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| tls_error(a, e))?;
                Box::new(TokioIo::new(tls))
            }
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .context("talking to the daemon")?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        sender.send_request(req).await.map_err(|e| {
            // TLS 1.3 refuses a client certificate after the handshake: the
            // reason arrives as an alert on the first read.
            match std::error::Error::source(&e).and_then(|s| s.downcast_ref::<std::io::Error>()) {
                Some(io) => tls_error(&what, std::io::Error::new(io.kind(), io.to_string())),
                None => anyhow::Error::new(e).context("talking to the daemon"),
            }
        })
    }

    fn request(&self, method: Method, path: &str, body: Body) -> Result<Request<Body>> {
        let mut builder = Request::builder().method(method).uri(path).header("host", "berth");
        if let (Some(token), false) = (&self.token, matches!(self.endpoint, Endpoint::Unix(_))) {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        Ok(builder.body(body)?)
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

    /// Sends a request with `headers` and returns the response whatever its
    /// status: for peers with their own error format (the registry, the
    /// trust server).
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Result<Response<Incoming>> {
        let mut req = self.request(method, path, body)?;
        for (name, value) in headers {
            req.headers_mut().insert(
                hyper::header::HeaderName::from_bytes(name.as_bytes())?,
                hyper::header::HeaderValue::from_str(value)?,
            );
        }
        self.send(req).await
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
        Ok(self.upgrade_with(method, path, empty()).await?.1)
    }

    /// Sends `body` (JSON) and upgrades the connection to a framed stream;
    /// also returns the 101's headers.
    pub async fn upgrade_with(
        &self,
        method: Method,
        path: &str,
        body: Body,
    ) -> Result<(hyper::HeaderMap, TokioIo<hyper::upgrade::Upgraded>)> {
        let mut req = self.request(method, path, body)?;
        req.headers_mut().insert("content-type", "application/json".parse()?);
        req.headers_mut().insert("connection", "Upgrade".parse()?);
        req.headers_mut().insert("upgrade", "berth-stream".parse()?);
        let resp = self.send(req).await?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(error_of(resp).await);
        }
        let headers = resp.headers().clone();
        let upgraded = hyper::upgrade::on(resp).await.context("upgrading the connection")?;
        Ok((headers, TokioIo::new(upgraded)))
    }
}

/// A TLS failure, with what to do about the usual ones.
fn tls_error(addr: &str, e: std::io::Error) -> anyhow::Error {
    let msg = e.to_string();
    let hint = if msg.contains("UnknownIssuer") || msg.contains("invalid peer certificate") {
        " (the daemon's certificate is not signed by a CA you trust: pass the cluster CA with --tlscacert or BERTH_TLS_CA; a bundle's ca.pem, or GET /v1/ca.pem on the socket)"
    } else if msg.contains("CertificateRevoked") {
        " (the client certificate was revoked: create a new bundle)"
    } else if msg.contains("alert") && msg.contains("Certificate") {
        " (the daemon refused the client certificate)"
    } else {
        ""
    };
    anyhow!("TLS with the berth daemon at {addr} failed: {msg}{hint}")
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

/// A response body, at most `limit` bytes (more is an error naming `what`).
pub async fn body_capped(resp: Response<Incoming>, limit: u64, what: &str) -> Result<Vec<u8>> {
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.with_context(|| format!("reading {what}"))?;
        if let Ok(data) = frame.into_data() {
            out.extend_from_slice(&data);
            if out.len() as u64 > limit {
                bail!("{what} is larger than {limit} bytes");
            }
        }
    }
    Ok(out)
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

/// `s` encoded for a URL query value (`application/x-www-form-urlencoded`).
pub fn query_value(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
