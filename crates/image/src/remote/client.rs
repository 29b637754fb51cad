//! HTTP to one registry: where it is (`docker.io` is `registry-1.docker.io`;
//! plain HTTP only for loopback registries), the challenge flow of docker and
//! skopeo (a 401 with `WWW-Authenticate: Bearer realm=..,service=..,scope=..`
//! is answered with a token from the realm, fetched with the stored basic
//! credentials if any; a `Basic` challenge with the credentials themselves),
//! and retries with backoff on connection errors and 5xx answers.
//!
//! Credentials and tokens go only into `Authorization` headers: never into an
//! error message or a log line.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use ureq::http::{self, Response};

use crate::error::{Error, Result};

/// Retries after the first attempt, on connection errors and 5xx answers.
const RETRIES: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Error bodies and token answers are read up to this size.
const SMALL_BODY: u64 = 64 * 1024;

pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

pub use berth_state::records::Credentials;

/// The `Authorization` header value of `credentials` (HTTP Basic).
fn basic(credentials: &Credentials) -> String {
    let raw = format!("{}:{}", credentials.username, credentials.password);
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
}

/// The key credentials are stored under: `docker.io` for Docker Hub under
/// any of its names, the lower-cased `host[:port]` otherwise.
pub fn registry_key(registry: &str) -> String {
    let registry = registry.trim().trim_end_matches('/').to_ascii_lowercase();
    let registry = registry
        .strip_prefix("https://")
        .or_else(|| registry.strip_prefix("http://"))
        .unwrap_or(&registry)
        .to_string();
    match registry.as_str() {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        _ => registry,
    }
}

/// `https://HOST` when the registry answers over TLS, else `http://HOST`.
fn speaks_tls(agent: &ureq::Agent, host: &str) -> String {
    let https = format!("https://{host}");
    match agent.get(format!("{https}/v2/")).call() {
        Ok(_) => https,
        Err(e) => {
            tracing::debug!(registry = %host, error = %e, "insecure registry: no TLS, plain HTTP");
            format!("http://{host}")
        }
    }
}

/// Whether `host[:port]` names this machine, by address: an IP literal in
/// `127.0.0.0/8` or `::1`, or a name every address of which is one of those
/// (`localhost`; never `localhost.example.com`, which resolves elsewhere or
/// not at all). The one loopback rule of every registry client in berth.
pub fn is_loopback(registry: &str) -> bool {
    use std::net::ToSocketAddrs;
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        match registry.rsplit_once(':') {
            Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
            _ => registry,
        }
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ip.is_loopback();
    }
    if host.is_empty() {
        return false;
    }
    match (host, 0).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

/// What a request sends.
pub(crate) enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// `len` bytes of a file from `offset`, reopened for every attempt;
    /// `progress` is told the bytes sent so far.
    File {
        path: &'a Path,
        offset: u64,
        len: u64,
        progress: Option<&'a (dyn Fn(u64) + Sync)>,
    },
}

pub(crate) struct Client {
    agent: ureq::Agent,
    /// As the reference names it (`127.0.0.1:5000`, `docker.io`).
    pub registry: String,
    /// Spoken to without verifying its certificate (or in plain HTTP).
    insecure: bool,
    base: String,
    credentials: Option<Credentials>,
    /// Token scopes asked for on a Bearer challenge, besides the challenge's own.
    scopes: Vec<String>,
    authorization: Mutex<Option<String>>,
}

impl Client {
    /// A client for `registry`; loopback registries are insecure (see
    /// [`Client::with_security`]).
    #[cfg(test)]
    pub fn new(registry: &str, credentials: Option<Credentials>, scopes: Vec<String>) -> Self {
        Self::with_security(registry, credentials, scopes, is_loopback(&registry_key(registry)))
    }

    /// A client for `registry`. A secure registry is spoken to over HTTPS
    /// with its certificate verified. An insecure one (loopback, or named by
    /// `berth daemon --insecure-registry`), as Docker does: HTTPS without
    /// verifying the certificate when it speaks TLS, else plain HTTP.
    pub fn with_security(
        registry: &str,
        credentials: Option<Credentials>,
        scopes: Vec<String>,
        insecure: bool,
    ) -> Self {
        let tls = ureq::tls::TlsConfig::builder().disable_verification(insecure).build();
        Self::with_tls(registry, credentials, scopes, insecure, tls)
    }

    /// A client for `registry` with TLS settings of the caller's (a CA of
    /// its own, a client certificate); `insecure` still picks plain HTTP
    /// for a registry that does not speak TLS.
    pub fn with_tls(
        registry: &str,
        credentials: Option<Credentials>,
        scopes: Vec<String>,
        insecure: bool,
        tls: ureq::tls::TlsConfig,
    ) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build()
            .into();
        let base = match registry_key(registry).as_str() {
            "docker.io" => "https://registry-1.docker.io".to_string(),
            host if insecure => speaks_tls(&agent, host),
            host => format!("https://{host}"),
        };
        Self {
            agent,
            registry: registry.to_string(),
            insecure,
            base,
            credentials,
            scopes,
            authorization: Mutex::new(None),
        }
    }

    /// Sends `authorization` from the next request on (a token the caller holds).
    pub fn authorize(&self, authorization: String) {
        *self.lock_authorization() = Some(authorization);
    }

    /// `https://host[:port]` or, for an insecure registry without TLS, `http://...`.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn error(&self, message: impl Into<String>) -> Error {
        Error::Registry {
            registry: self.registry.clone(),
            message: message.into(),
        }
    }

    /// The URL of `path` (which starts with `/v2/`) on this registry.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// An upload `Location`: absolute, or a path on this registry.
    pub fn location(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            format!("{}/{location}", self.base)
        }
    }

    /// Sends a request, answering an authentication challenge once and
    /// retrying connection errors and 5xx answers. Any other status is the
    /// caller's to judge, as is every status of a request whose `headers`
    /// carry their own `Authorization`.
    pub fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &Body<'_>,
    ) -> Result<Response<ureq::Body>> {
        // A caller that brings its own `Authorization` gets the answer as it is.
        if headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("authorization")) {
            return self.execute(method, url, headers, body, None);
        }
        let mut answered_challenge = false;
        loop {
            let authorization = self.lock_authorization().clone();
            let response = self.execute(method, url, headers, body, authorization.as_deref())?;
            if response.status() != http::StatusCode::UNAUTHORIZED || answered_challenge {
                if response.status() == http::StatusCode::UNAUTHORIZED {
                    return Err(self.unauthorized());
                }
                return Ok(response);
            }
            answered_challenge = true;
            let challenge = header(&response, "www-authenticate").unwrap_or_default();
            self.answer_challenge(&challenge)?;
        }
    }

    fn lock_authorization(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.authorization
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn unauthorized(&self) -> Error {
        let message = if self.credentials.is_some() {
            "the registry refused the stored credentials (berth login again)".to_string()
        } else {
            format!("authentication required: berth login {}", self.registry)
        };
        Error::Unauthorized {
            registry: self.registry.clone(),
            message,
        }
    }

    fn answer_challenge(&self, challenge: &str) -> Result<()> {
        let (scheme, params) = parse_challenge(challenge);
        let authorization = match scheme.to_ascii_lowercase().as_str() {
            "bearer" => self.token(&params)?,
            "basic" => match &self.credentials {
                Some(c) => basic(c),
                None => return Err(self.unauthorized()),
            },
            _ => return Err(self.unauthorized()),
        };
        *self.lock_authorization() = Some(authorization);
        Ok(())
    }

    /// A token from the challenge's realm for our scopes and the challenge's.
    fn token(&self, params: &[(String, String)]) -> Result<String> {
        let get = |key: &str| params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        let Some(realm) = get("realm") else {
            return Err(self.error("bearer challenge without a realm"));
        };
        if !(realm.starts_with("https://") || realm.starts_with("http://")) {
            return Err(self.error(format!("bearer challenge with an unusable realm {realm:?}")));
        }
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(service) = get("service") {
            query.append_pair("service", service);
        }
        let mut scopes = self.scopes.clone();
        if let Some(scope) = get("scope") {
            for s in scope.split(' ') {
                if !s.is_empty() && !scopes.iter().any(|have| have == s) {
                    scopes.push(s.to_string());
                }
            }
        }
        for scope in &scopes {
            query.append_pair("scope", scope);
        }
        if self.credentials.is_some() {
            query.append_pair(
                "account",
                self.credentials
                    .as_ref()
                    .map(|c| c.username.as_str())
                    .unwrap_or_default(),
            );
        }
        let query = query.finish();
        let url = if query.is_empty() {
            realm.to_string()
        } else if realm.contains('?') {
            format!("{realm}&{query}")
        } else {
            format!("{realm}?{query}")
        };
        let basic = self.credentials.as_ref().map(basic);
        let mut response = self.execute("GET", &url, &[], &Body::Empty, basic.as_deref())?;
        let status = response.status();
        if status == http::StatusCode::UNAUTHORIZED || status == http::StatusCode::FORBIDDEN {
            return Err(self.unauthorized());
        }
        if !status.is_success() {
            return Err(self.error(format!("token endpoint {} answered {status}", without_query(realm))));
        }
        #[derive(Deserialize)]
        struct TokenAnswer {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
        }
        let bytes = read_limited(&mut response, SMALL_BODY).map_err(|e| {
            self.error(format!(
                "reading the answer of token endpoint {}: {e}",
                without_query(realm)
            ))
        })?;
        let answer: TokenAnswer = serde_json::from_slice(&bytes)
            .map_err(|_| self.error(format!("token endpoint {} answered no token", without_query(realm))))?;
        match answer.token.or(answer.access_token).filter(|t| !t.is_empty()) {
            Some(token) => Ok(format!("Bearer {token}")),
            None => Err(self.error(format!("token endpoint {} answered no token", without_query(realm)))),
        }
    }

    /// One request with retries; no authentication logic.
    fn execute(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &Body<'_>,
        authorization: Option<&str>,
    ) -> Result<Response<ureq::Body>> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            let result = self.execute_once(method, url, headers, body, authorization);
            let retry = match &result {
                Ok(response) => response.status().is_server_error(),
                Err(e) => is_transient(e),
            };
            if !retry || attempt >= RETRIES {
                return result.map_err(|e| {
                    // A plain-HTTP registry answers a TLS handshake with garbage.
                    let hint = match self.base.starts_with("https://") && !self.insecure && self.registry != "docker.io"
                    {
                        true => format!(
                            " (if {} serves plain HTTP, start the daemon with --insecure-registry {})",
                            self.registry, self.registry
                        ),
                        false => String::new(),
                    };
                    self.error(format!("{method} {}: {e}{hint}", without_query(url)))
                });
            }
            attempt += 1;
            match &result {
                Ok(r) => {
                    tracing::info!(registry = %self.registry, url = %without_query(url), status = %r.status(), attempt, "retrying")
                }
                Err(e) => {
                    tracing::info!(registry = %self.registry, url = %without_query(url), error = %e, attempt, "retrying")
                }
            }
            std::thread::sleep(backoff);
            backoff *= 2;
        }
    }

    fn execute_once(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &Body<'_>,
        authorization: Option<&str>,
    ) -> Result<Response<ureq::Body>, ureq::Error> {
        let mut builder = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        if let Some(a) = authorization {
            builder = builder.header("authorization", a);
        }
        let with_body = matches!(method, "POST" | "PUT" | "PATCH");
        match body {
            Body::Empty if with_body => self.agent.run(builder.body(&[][..])?),
            Body::Empty => self.agent.run(builder.body(())?),
            Body::Bytes(bytes) => self.agent.run(builder.body(*bytes)?),
            Body::File {
                path,
                offset,
                len,
                progress,
            } => {
                let mut file = File::open(path)?;
                file.seek(SeekFrom::Start(*offset))?;
                let reader = Counting {
                    inner: file.take(*len),
                    done: 0,
                    reported: 0,
                    progress: *progress,
                };
                // A content length of our own keeps ureq from chunking the body.
                let builder = builder.header("content-length", len.to_string());
                let mut reader = reader;
                self.agent.run(builder.body(ureq::SendBody::from_reader(&mut reader))?)
            }
        }
    }
}

/// Counts bytes read and reports them every 256 KiB.
struct Counting<'a, R> {
    inner: R,
    done: u64,
    reported: u64,
    progress: Option<&'a (dyn Fn(u64) + Sync)>,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if let Some(p) = self.progress {
            if n == 0 || self.done - self.reported >= 256 * 1024 {
                self.reported = self.done;
                p(self.done);
            }
        }
        Ok(n)
    }
}

fn is_transient(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Io(_) | ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed | ureq::Error::Protocol(_)
    )
}

/// A URL without its query, for messages (a query may carry an upload state).
pub(crate) fn without_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

pub(crate) fn header(response: &Response<ureq::Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(String::from)
}

/// Reads at most `limit` bytes of a body; more is an error.
pub(crate) fn read_limited(response: &mut Response<ureq::Body>, limit: u64) -> Result<Vec<u8>, ureq::Error> {
    response.body_mut().with_config().limit(limit).read_to_vec()
}

/// The Distribution spec's errors of an answer, as `CODE: message; ...`,
/// or the status alone.
pub(crate) fn describe_error(response: &mut Response<ureq::Body>) -> String {
    #[derive(Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<ErrorEntry>,
    }
    #[derive(Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let status = response.status();
    let described = read_limited(response, SMALL_BODY)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Errors>(&bytes).ok())
        .map(|e| {
            e.errors
                .iter()
                .map(|e| format!("{}: {}", e.code, e.message))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .filter(|s| !s.is_empty());
    match described {
        Some(d) => format!("{status} ({d})"),
        None => status.to_string(),
    }
}

/// `Bearer realm="x",service="y",scope="a:b:pull,push"` into the scheme and
/// its parameters (quoted values may hold commas).
pub(crate) fn parse_challenge(challenge: &str) -> (String, Vec<(String, String)>) {
    let challenge = challenge.trim();
    let (scheme, rest) = challenge.split_once(' ').unwrap_or((challenge, ""));
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_string();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                value.push(*c);
                chars.next();
            }
            value = value.trim().to_string();
        }
        params.push((key.to_ascii_lowercase(), value));
    }
    (scheme.to_string(), params)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let (scheme, params) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        );
        assert_eq!(scheme, "Bearer");
        assert_eq!(
            params,
            vec![
                ("realm".into(), "https://auth.docker.io/token".into()),
                ("service".into(), "registry.docker.io".into()),
                ("scope".into(), "repository:library/busybox:pull,push".into()),
            ]
        );
        let (scheme, params) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(
            (scheme.as_str(), params),
            ("Basic", vec![("realm".into(), "Registry Realm".into())])
        );
        assert_eq!(parse_challenge("Basic"), ("Basic".into(), vec![]));
    }

    #[test]
    fn where_registries_are() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("127.1.2.3"));
        assert!(is_loopback("localhost:80"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("example.com:5000"));
        assert!(!is_loopback("10.0.0.1:5000"));
        // By address: a name that merely starts like one is not loopback.
        assert!(!is_loopback("localhost.example.com:5000"));
        assert!(!is_loopback("127.0.0.1.example.com"));
        assert!(!is_loopback("[::ffff:127.0.0.1]:5000"));
        assert_eq!(registry_key("Index.Docker.io"), "docker.io");
        assert_eq!(registry_key("https://127.0.0.1:5000/"), "127.0.0.1:5000");
        assert_eq!(
            Client::new("docker.io", None, vec![]).url("/v2/"),
            "https://registry-1.docker.io/v2/"
        );
        assert_eq!(
            Client::new("127.0.0.1:5000", None, vec![]).url("/v2/"),
            "http://127.0.0.1:5000/v2/"
        );
        assert_eq!(Client::new("ghcr.io", None, vec![]).url("/v2/"), "https://ghcr.io/v2/");
    }

    #[test]
    fn credentials_stay_out_of_debug_output() {
        let c = Credentials {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
