//! The node-to-manager transport: gRPC (`proto/berth.proto`) over TLS with
//! ALPN `h2`, on the same listener as the HTTP API (which keeps
//! `http/1.1`). Managers verify callers' node certificates against the
//! cluster CA and the node records; nodes verify managers against the CA,
//! or, before they joined, against the CA digest of their join token.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tonic::transport::{Channel, Endpoint};

use crate::pki::{fingerprint, ServerIdentity};

/// The generated messages and services of `proto/berth.proto`.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    tonic::include_proto!("berth.v1");
}

/// The ALPN protocol of the node transport.
pub const ALPN_NODE: &[u8] = b"h2";

/// How long a node waits to connect to a manager (TCP and TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Who is calling, as the TLS listener saw it: put into every gRPC
/// request's extensions by the listener.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The node id of a verified node certificate.
    pub node: Option<String>,
}

/// The process's one crypto provider (ring): verifiers check handshake
/// signatures with it at every handshake.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: std::sync::LazyLock<Arc<rustls::crypto::CryptoProvider>> =
        std::sync::LazyLock::new(|| Arc::new(rustls::crypto::ring::default_provider()));
    PROVIDER.clone()
}

/// A client configuration that trusts `roots` and presents `identity`
/// (the node certificate and its chain), for calls to other nodes.
pub fn node_client_config(
    roots: Vec<CertificateDer<'static>>,
    identity: ServerIdentity,
) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(root_store(roots)?)
        .with_client_auth_cert(identity.chain, identity.key)?;
    config.alpn_protocols = vec![ALPN_NODE.to_vec()];
    Ok(Arc::new(config))
}

/// [`node_client_config`] that follows the node's `pki` directory: the
/// roots are the CA's as they are at each handshake (a CA rotation adds
/// and drops one), and the certificate is read again when `node.pem`
/// changed (a renewal).
pub fn renewing_client_config(pki: Arc<crate::Pki>) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let verifier = Arc::new(TrustedServers {
        roots: ByVersion::new(pki.clone()),
    });
    let resolver = Arc::new(Presenting::node(pki));
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(resolver);
    config.alpn_protocols = vec![ALPN_NODE.to_vec()];
    Ok(Arc::new(config))
}

/// The handshake signature methods of a verifier: checked as every berth
/// verifier checks them, with the ring provider's algorithms.
macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &provider().signature_verification_algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &provider().signature_verification_algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            provider().signature_verification_algorithms.supported_schemes()
        }
    };
}

/// A value made from the CA files, made again when they change.
struct ByVersion<T> {
    pki: Arc<crate::Pki>,
    cached: Mutex<Option<(u64, T)>>,
}

impl<T: Clone> ByVersion<T> {
    fn new(pki: Arc<crate::Pki>) -> Self {
        Self {
            pki,
            cached: Mutex::new(None),
        }
    }

    fn get(&self, make: impl FnOnce(&crate::Pki) -> Result<T, rustls::Error>) -> Result<T, rustls::Error> {
        let version = self.pki.version();
        let mut cached = self.cached.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((v, value)) = cached.as_ref() {
            if *v == version {
                return Ok(value.clone());
            }
        }
        let value = make(&self.pki)?;
        *cached = Some((version, value.clone()));
        Ok(value)
    }
}

fn root_store(roots: Vec<CertificateDer<'static>>) -> Result<Arc<rustls::RootCertStore>, rustls::Error> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root)?;
    }
    Ok(Arc::new(store))
}

/// Verifies servers against the cluster's roots as they are now.
struct TrustedServers {
    roots: ByVersion<Arc<rustls::client::WebPkiServerVerifier>>,
}

impl std::fmt::Debug for TrustedServers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedServers").finish()
    }
}

impl TrustedServers {
    fn inner(&self) -> Result<Arc<rustls::client::WebPkiServerVerifier>, rustls::Error> {
        self.roots.get(|pki| {
            rustls::client::WebPkiServerVerifier::builder_with_provider(root_store(pki.trust_roots())?, provider())
                .build()
                .map_err(|e| rustls::Error::General(format!("server verifier: {e}")))
        })
    }
}

impl ServerCertVerifier for TrustedServers {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner()?
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    handshake_signatures!();
}

/// Verifies client certificates (optional) against the cluster's roots as
/// they are now, retired ones included ([`crate::Pki::client_roots`]):
/// the caller then checks each against its record.
pub struct ClientRoots {
    roots: ByVersion<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
}

impl ClientRoots {
    pub fn new(pki: Arc<crate::Pki>) -> Self {
        Self {
            roots: ByVersion::new(pki),
        }
    }

    fn inner(&self) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, rustls::Error> {
        self.roots.get(|pki| {
            rustls::server::WebPkiClientVerifier::builder_with_provider(root_store(pki.client_roots())?, provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| rustls::Error::General(format!("client verifier: {e}")))
        })
    }
}

impl std::fmt::Debug for ClientRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRoots").finish()
    }
}

impl rustls::server::danger::ClientCertVerifier for ClientRoots {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        self.inner()?.verify_client_cert(end_entity, intermediates, now)
    }

    handshake_signatures!();
}

/// The certificate this node presents, with [`crate::Pki::chain_tail`]
/// after it: a manager's server certificate for its names (issued again
/// when the issuing CA changes), or the node certificate on disk (read
/// again after a renewal).
pub struct Presenting {
    pki: Arc<crate::Pki>,
    names: Option<Vec<String>>,
    cached: Mutex<Option<Made>>,
}

/// What [`Presenting`] made, and from what: the CA files' version and
/// `node.pem`'s modification time.
type Made = (u64, Option<std::time::SystemTime>, Arc<rustls::sign::CertifiedKey>);

impl std::fmt::Debug for Presenting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presenting").field("dir", &self.pki.dir()).finish()
    }
}

impl Presenting {
    /// The node certificate (`node.pem`).
    pub fn node(pki: Arc<crate::Pki>) -> Self {
        Self {
            pki,
            names: None,
            cached: Mutex::new(None),
        }
    }

    /// A manager's server certificate for `names`.
    pub fn server(pki: Arc<crate::Pki>, names: Vec<String>) -> Self {
        Self {
            pki,
            names: Some(names),
            cached: Mutex::new(None),
        }
    }

    /// The certificate to present now; the one before when reading it
    /// again fails (said in the log).
    pub fn current(&self) -> crate::Result<Arc<rustls::sign::CertifiedKey>> {
        let version = self.pki.version();
        let modified = match self.names {
            Some(_) => None,
            None => std::fs::metadata(self.pki.dir().join("node.pem"))
                .and_then(|m| m.modified())
                .ok(),
        };
        let mut cached = self.cached.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((v, m, key)) = cached.as_ref() {
            if *v == version && *m == modified {
                return Ok(key.clone());
            }
        }
        let made = match &self.names {
            Some(names) => self.pki.server(names),
            None => self
                .pki
                .node_identity()
                .unwrap_or_else(|| Err(crate::Error::Invalid("this node has no node certificate".into()))),
        }
        .and_then(|identity| {
            let key = provider()
                .key_provider
                .load_private_key(identity.key)
                .map_err(|e| crate::Error::Invalid(format!("the node's key: {e}")))?;
            Ok(Arc::new(rustls::sign::CertifiedKey::new(identity.chain, key)))
        });
        match made {
            Ok(key) => {
                *cached = Some((version, modified, key.clone()));
                Ok(key)
            }
            Err(e) => match cached.as_ref() {
                Some((_, _, key)) => {
                    tracing::error!(error = %e, "reading this node's certificate again: presenting the one before");
                    Ok(key.clone())
                }
                None => Err(e),
            },
        }
    }
}

impl rustls::client::ResolvesClientCert for Presenting {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.current()
            .map_err(|e| tracing::error!(error = %e, "no certificate to present"))
            .ok()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// What a joining node learned of the CA a manager presented.
#[derive(Debug, Default)]
pub struct Presented {
    /// The digest of the last certificate of the chain (the CA, when the
    /// manager is a berth manager).
    pub ca_digest: Option<String>,
}

/// A client configuration for the join: the manager must present a chain
/// that holds a CA certificate whose SHA-256 is `ca_digest` (from the
/// token) and a server certificate that CA issued for the address. What it
/// presented is written to `presented`, for the error message.
pub fn join_client_config(
    ca_digest: &str,
    presented: Arc<Mutex<Presented>>,
) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let verifier = Arc::new(PinnedCa {
        digest: ca_digest.to_string(),
        presented,
        provider: provider(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_NODE.to_vec()];
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct PinnedCa {
    digest: String,
    presented: Arc<Mutex<Presented>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut p) = self.presented.lock() {
            p.ca_digest = intermediates.last().map(|c| fingerprint(c));
        }
        let Some(ca) = intermediates.iter().find(|c| fingerprint(c) == self.digest) else {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ));
        };
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    handshake_signatures!();
}

/// A gRPC channel to the node at `addr` (`IP:PORT`) over TLS with `config`;
/// connects lazily on first use and again after a failure.
pub fn channel(addr: &str, config: Arc<rustls::ClientConfig>) -> Result<Channel, String> {
    let sock: SocketAddr = addr.parse().map_err(|_| format!("{addr:?} is not IP:PORT"))?;
    let server_name = ServerName::IpAddress(sock.ip().into());
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("{addr}: {e}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let config = config.clone();
        let server_name = server_name.clone();
        async move {
            let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(sock))
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connecting timed out"))??;
            tcp.set_nodelay(true)?;
            let tls = tokio::time::timeout(
                CONNECT_TIMEOUT,
                tokio_rustls::TlsConnector::from(config).connect(server_name, tcp),
            )
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "the TLS handshake timed out"))??;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(connector))
}

/// A server configuration for node connections alone: `identity` (with
/// the CA in its chain), client certificates required and checked
/// against the CA, ALPN `h2`. (The daemon's listener, which also serves
/// HTTP, has its own: `berth_api::tls`.)
pub fn node_server_config(
    ca: &CertificateDer<'static>,
    identity: ServerIdentity,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone())?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain, identity.key)?;
    config.alpn_protocols = vec![ALPN_NODE.to_vec()];
    Ok(Arc::new(config))
}

/// Serves `routes` to nodes on `listener` with `config` until dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    routes: tonic::service::Routes,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let Ok((tcp, addr)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let acceptor = acceptor.clone();
        let routes = routes.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => serve_connection(tls, addr, routes).await,
                Ok(Err(e)) => tracing::debug!(%addr, error = %e, "node TLS handshake failed"),
                Err(_) => tracing::debug!(%addr, "node TLS handshake timed out"),
            }
        });
    }
}

/// One node connection: HTTP/2 carrying `routes`, each request told who
/// called ([`Peer`]: the node its verified certificate names).
pub async fn serve_connection(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    addr: SocketAddr,
    routes: tonic::service::Routes,
) {
    use tower::ServiceExt as _;
    // Small Raft and session messages must not wait for delayed ACKs.
    if let Err(e) = tls.get_ref().0.set_nodelay(true) {
        tracing::debug!(%addr, error = %e, "setting TCP_NODELAY");
    }
    let node = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| crate::pki::node_of(c));
    let peer = Peer { addr, node };
    let routes = routes.prepare();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(peer.clone());
        routes.clone().oneshot(req)
    });
    let conn = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
    if let Err(e) = conn.await {
        tracing::debug!(%addr, error = %e, "node connection ended");
    }
}
