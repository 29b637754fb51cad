//! A registry reached request by request, for callers that speak their own
//! protocol over the Distribution routes: the CLI's content trust (manifests,
//! blobs and referrers it signs or checks, and the trust server's
//! `/v2/<gun>/_trust/` routes on the same host). It is the client pulls,
//! pushes and artifacts use: the one loopback rule, the one challenge flow
//! (a stored or given credential, a token from the realm) and the one retry
//! policy (connection errors and 5xx answers, with backoff).
//!
//! Blocking, like the rest of `remote`; async callers run it on their
//! blocking pool.

use std::sync::Arc;

use super::client::{header, read_limited, without_query, Body, Client};
use super::{is_loopback, registry_key, Credentials};
use crate::error::{Error, Result};

/// How to reach a registry beyond its name.
#[derive(Default)]
pub struct ConnectOptions {
    /// For Basic challenges and token realms.
    pub credentials: Option<Credentials>,
    /// Token scopes asked for on a Bearer challenge, besides the challenge's own.
    pub scopes: Vec<String>,
    /// CA certificates (PEM) that verify the registry instead of the
    /// public roots: a berth daemon's cluster CA. A loopback registry is
    /// then verified too (HTTPS when it speaks TLS, else plain HTTP).
    pub ca_pem: Option<Vec<u8>>,
    /// A client certificate chain and its key (PEM) to present.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// An `Authorization` value sent from the first request on (a token
    /// the caller already holds).
    pub authorization: Option<String>,
}

/// One answer, whatever its status; the body read up to the request's limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A connection to one registry (see the module's documentation).
#[derive(Clone)]
pub struct Connection {
    client: Arc<Client>,
}

impl Connection {
    /// Reaches `registry` (`host[:port]`): HTTPS verified with the public
    /// roots or `options.ca_pem`; a loopback registry without a CA, as
    /// Docker does, over TLS without verification when it speaks TLS, else
    /// plain HTTP.
    pub fn open(registry: &str, options: ConnectOptions) -> Result<Self> {
        let loopback = is_loopback(&registry_key(registry));
        let invalid = |what: &str, e: &dyn std::fmt::Display| Error::Registry {
            registry: registry.to_string(),
            message: format!("{what}: {e}"),
        };
        let mut tls = ureq::tls::TlsConfig::builder();
        match &options.ca_pem {
            Some(pem) => {
                let certs = certificates(pem).map_err(|e| invalid("the CA certificates", &e))?;
                if certs.is_empty() {
                    return Err(invalid("the CA certificates", &"no PEM certificate in them"));
                }
                tls = tls.root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)));
            }
            None => tls = tls.disable_verification(loopback),
        }
        if let Some((chain, key)) = &options.identity {
            let chain = certificates(chain).map_err(|e| invalid("the client certificate", &e))?;
            // Not the parse error: it could quote the key.
            let key =
                ureq::tls::PrivateKey::from_pem(key).map_err(|_| invalid("the client key", &"no PEM private key"))?;
            tls = tls.client_cert(Some(ureq::tls::ClientCert::new_with_certs(&chain, key)));
        }
        let client = Client::with_tls(registry, options.credentials, options.scopes, loopback, tls.build());
        if let Some(authorization) = options.authorization {
            client.authorize(authorization);
        }
        Ok(Self {
            client: Arc::new(client),
        })
    }

    /// The registry as named.
    pub fn registry(&self) -> &str {
        &self.client.registry
    }

    /// Whether it is spoken to over TLS.
    pub fn tls(&self) -> bool {
        self.client.base().starts_with("https://")
    }

    /// One request to `path` (`/v2/...`, with its query), answering an
    /// authentication challenge once and retrying as every registry
    /// request does. The answer whatever its status, but a challenge that
    /// still fails is [`Error::Unauthorized`]; a body over `limit` bytes is
    /// an error.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        limit: u64,
    ) -> Result<Answer> {
        let body = if body.is_empty() {
            Body::Empty
        } else {
            Body::Bytes(body)
        };
        let mut response = self.client.send(method, &self.client.url(path), headers, &body)?;
        let status = response.status().as_u16();
        let content_type = header(&response, "content-type");
        let body = read_limited(&mut response, limit)
            .map_err(|e| self.client.error(format!("{method} {}: {e}", without_query(path))))?;
        Ok(Answer {
            status,
            content_type,
            body,
        })
    }
}

fn certificates(pem: &[u8]) -> Result<Vec<ureq::tls::Certificate<'static>>, ureq::Error> {
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        if let ureq::tls::PemItem::Certificate(c) = item? {
            out.push(c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::Mutex;

    /// A plain-HTTP registry on loopback: `/v2/x` wants `Bearer good`
    /// (challenging with a realm that hands it out), `/v2/big` answers
    /// more than a caller's limit. Every request's `Authorization` lines
    /// are kept.
    fn registry() -> (String, Arc<Mutex<Vec<Vec<String>>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (kept, realm) = (seen.clone(), format!("http://{addr}/token"));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut head = Vec::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push(line.trim_end().to_string());
                }
                // A TLS probe or garbage: no HTTP request line.
                let request_line = head.first().filter(|l| l.ends_with(" HTTP/1.1"));
                let Some(path) = request_line.and_then(|l| l.split(' ').nth(1)).map(str::to_string) else {
                    continue;
                };
                let auth: Vec<String> = head
                    .iter()
                    .filter(|l| l.to_ascii_lowercase().starts_with("authorization:"))
                    .map(|l| l["authorization:".len()..].trim().to_string())
                    .collect();
                let (status, extra, body) = match path.as_str() {
                    p if p.starts_with("/token") => ("200 OK", String::new(), r#"{"token":"good"}"#.to_string()),
                    "/v2/big" => ("200 OK", String::new(), "x".repeat(4096)),
                    _ if auth == ["Bearer good"] => ("200 OK", String::new(), "fine".to_string()),
                    _ => (
                        "401 Unauthorized",
                        format!("WWW-Authenticate: Bearer realm=\"{realm}\",service=\"test\"\r\n"),
                        String::new(),
                    ),
                };
                if !path.starts_with("/token") {
                    kept.lock().expect("lock").push(auth);
                }
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\n{extra}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (addr, seen)
    }

    #[test]
    fn challenges_are_answered_and_a_callers_own_authorization_goes_alone() {
        let (addr, seen) = registry();
        let conn = Connection::open(&addr, ConnectOptions::default()).expect("open");
        assert!(!conn.tls(), "a plain-HTTP loopback registry is spoken to in plain HTTP");
        let answer = conn.request("GET", "/v2/x", &[], b"", 1024).expect("request");
        assert_eq!((answer.status, answer.body.as_slice()), (200, &b"fine"[..]));
        assert_eq!(answer.content_type.as_deref(), Some("text/plain"));
        // The token is kept for the next request: no second challenge.
        conn.request("GET", "/v2/x", &[], b"", 1024).expect("request");
        // A caller's own Authorization replaces the kept one, and its 401
        // comes back as an answer, not as a challenge to answer.
        let refused = conn
            .request("GET", "/v2/x", &[("authorization", "Bearer mine")], b"", 1024)
            .expect("request");
        assert_eq!(refused.status, 401);
        let seen = seen.lock().expect("lock").clone();
        let want: Vec<Vec<String>> = vec![
            vec![],
            vec!["Bearer good".into()],
            vec!["Bearer good".into()],
            vec!["Bearer mine".into()],
        ];
        assert_eq!(seen, want);
    }

    #[test]
    fn a_preset_token_is_sent_and_bodies_are_capped() {
        let (addr, seen) = registry();
        let options = ConnectOptions {
            authorization: Some("Bearer good".into()),
            ..ConnectOptions::default()
        };
        let conn = Connection::open(&addr, options).expect("open");
        assert_eq!(
            conn.request("GET", "/v2/x", &[], b"", 1024).expect("request").status,
            200
        );
        assert_eq!(
            seen.lock().expect("lock").clone(),
            vec![vec!["Bearer good".to_string()]]
        );
        let err = conn.request("GET", "/v2/big", &[], b"", 100).unwrap_err();
        assert!(err.to_string().contains("/v2/big"), "{err}");
    }

    #[test]
    fn bad_tls_material_is_named() {
        let options = ConnectOptions {
            ca_pem: Some(b"not a certificate".to_vec()),
            ..ConnectOptions::default()
        };
        let Err(err) = Connection::open("registry.invalid:5000", options) else {
            panic!("a CA without certificates was taken");
        };
        assert!(err.to_string().contains("the CA certificates"), "{err}");
        let options = ConnectOptions {
            identity: Some((Vec::new(), b"-----BEGIN NOTHING-----".to_vec())),
            ..ConnectOptions::default()
        };
        let Err(err) = Connection::open("registry.invalid:5000", options) else {
            panic!("a client key that is no key was taken");
        };
        assert!(err.to_string().contains("the client key: no PEM private key"), "{err}");
    }
}
