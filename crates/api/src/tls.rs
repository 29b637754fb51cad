//! The TLS listener: rustls (TLS 1.2 and 1.3 only) with the node's server
//! certificate, optional client certificates verified against the cluster
//! CA and refused once their bundle is revoked (or, for node certificates,
//! once the node left), and per connection the principal the client
//! certificate names (none: anonymous).
//!
//! One port carries two protocols, told apart by ALPN: `http/1.1` is the
//! API, registry and trust server; `h2` (which only berth nodes ask for
//! alone) is the cluster's gRPC transport, served with the cluster CA's
//! certificate even when `--tls-cert` replaced it for HTTP.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::ResolvesServerCert;
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DistinguishedName, ServerConfig};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::{Origin, Principal, RegistryAuth};

/// How long a client may take to finish the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server side: `http` is presented to HTTP clients (the node's own
/// certificate, `node`, when `None`); client certificates are optional,
/// must chain to a cluster root (current or retired: `pki` as it is at
/// the handshake) and belong to a bundle on record in `state` that is not
/// revoked, or to a node on record.
pub fn server_config(
    pki: Arc<berth_cluster::Pki>,
    http: Option<berth_cluster::ServerIdentity>,
    node: Arc<berth_cluster::rpc::Presenting>,
    state: berth_state::State,
    me: Option<berth_cluster::membership::NodeSelf>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner: Arc<dyn ClientCertVerifier> = Arc::new(berth_cluster::rpc::ClientRoots::new(pki));
    let verifier = Arc::new(BundleVerifier { inner, state, me });
    let http = match http {
        Some(id) => {
            let key = provider.key_provider.load_private_key(id.key)?;
            Some(Arc::new(CertifiedKey::new(id.chain, key)))
        }
        None => None,
    };
    // Fails now rather than at the first handshake.
    node.current().map_err(|e| rustls::Error::General(e.to_string()))?;
    let resolver = Arc::new(ByAlpn { http, node });
    let mut config = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver);
    // The server's order decides: a client that offers both gets HTTP/1.1.
    config.alpn_protocols = vec![b"http/1.1".to_vec(), berth_cluster::rpc::ALPN_NODE.to_vec()];
    Ok(Arc::new(config))
}

/// The cluster's certificate for node connections (ALPN `h2` alone), the
/// HTTP one (`--tls-cert`, else the cluster's too) for everyone else.
#[derive(Debug)]
struct ByAlpn {
    http: Option<Arc<CertifiedKey>>,
    node: Arc<berth_cluster::rpc::Presenting>,
}

impl ResolvesServerCert for ByAlpn {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let node_only = hello
            .alpn()
            .map(|mut offered| offered.all(|p| p == berth_cluster::rpc::ALPN_NODE))
            .unwrap_or(false);
        match (&self.http, node_only) {
            (Some(http), false) => Some(http.clone()),
            _ => self
                .node
                .current()
                .map_err(|e| tracing::error!(error = %e, "no certificate to present"))
                .ok(),
        }
    }
}

/// Serves `router` on `listener` over TLS until the task is dropped, and
/// `grpc` (a manager's cluster services) on `h2` connections.
/// `advertised` is the `HOST:PORT` clients reach it by, when not the one
/// they name (a proxy in front).
/// What the TLS listener serves, set as the daemon comes up: it listens
/// before the node's services are open, so that a manager that joins can
/// take Raft's calls and catch up first. Until the API is set, HTTP
/// requests are answered 503; node connections get the gRPC routes set
/// when they connect.
#[derive(Clone, Default)]
pub struct Serving {
    http: Arc<std::sync::RwLock<Option<Router>>>,
    grpc: Arc<std::sync::RwLock<Option<tonic::service::Routes>>>,
}

impl Serving {
    pub fn set_http(&self, router: Router) {
        *self.http.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(router);
    }

    pub fn set_grpc(&self, routes: Option<tonic::service::Routes>) {
        *self.grpc.write().unwrap_or_else(std::sync::PoisonError::into_inner) = routes;
    }

    fn http(&self) -> Option<Router> {
        self.http
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn grpc(&self) -> Option<tonic::service::Routes> {
        self.grpc
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The answer to an HTTP request before the API is served.
fn starting() -> axum::response::Response {
    use axum::response::IntoResponse;
    let e = berth_model::ApiError::new(
        berth_model::ErrorCode::Unavailable,
        "the daemon is starting (a manager that joined is catching up with the cluster): try again shortly",
    );
    (axum::http::StatusCode::SERVICE_UNAVAILABLE, axum::Json(e)).into_response()
}

pub async fn serve(listener: TcpListener, config: Arc<ServerConfig>, serving: Serving, advertised: Option<String>) {
    let origin = Origin {
        scheme: "https",
        advertised: advertised.map(Arc::from),
    };
    let acceptor = TlsAcceptor::from(config);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a TLS connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let serving = serving.clone();
        let origin = origin.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            if tls.get_ref().1.alpn_protocol() == Some(berth_cluster::rpc::ALPN_NODE) {
                match serving.grpc() {
                    Some(routes) => berth_cluster::rpc::serve_connection(tls, peer, routes).await,
                    None => tracing::debug!(%peer, "a node connection to a node that is not a manager: closed"),
                }
                return;
            }
            let principal = principal_of(tls.get_ref().1.peer_certificates());
            tracing::debug!(%peer, principal = %principal.name(), "TLS connection");
            let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(principal.clone());
                req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                // Off loopback the registry is never open: tokens only.
                req.extensions_mut().insert(RegistryAuth::Token);
                req.extensions_mut().insert(origin.clone());
                let router = serving.http();
                async move {
                    match router {
                        Some(router) => router.oneshot(req).await,
                        None => Ok(starting()),
                    }
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "TLS connection ended");
            }
        });
    }
}

/// The caller a verified client certificate names; none: anonymous.
fn principal_of(certs: Option<&[CertificateDer<'static>]>) -> Principal {
    match certs
        .and_then(|c| c.first())
        .and_then(|c| berth_cluster::identity_of(c))
    {
        Some(name) => Principal::User(Arc::new(berth_auth::Identity {
            name,
            scopes: None,
            token_id: None,
        })),
        None => Principal::Anonymous,
    }
}

/// WebPKI verification against the cluster CA, then the bundle record:
/// a certificate the cluster did not issue as a bundle, or whose bundle
/// was revoked, is refused in the handshake.
struct BundleVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    state: berth_state::State,
    /// This node's identity: a manager that joined takes the managers it
    /// joined while it catches up.
    me: Option<berth_cluster::membership::NodeSelf>,
}

impl std::fmt::Debug for BundleVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundleVerifier").field("inner", &self.inner).finish()
    }
}

impl ClientCertVerifier for BundleVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        let fingerprint = berth_cluster::fingerprint(end_entity);
        if let Some(node) = berth_cluster::node_of(end_entity) {
            let admitted = match &self.me {
                Some(me) => berth_cluster::membership::admits(&self.state, me, &node, &fingerprint),
                None => berth_cluster::membership::is_member(&self.state, &node, &fingerprint),
            };
            return match admitted {
                Ok(true) => Ok(verified),
                Ok(false) => {
                    tracing::info!(%node, "refused the certificate of a node that is not a member (left, or renewed)");
                    Err(rustls::Error::InvalidCertificate(CertificateError::Revoked))
                }
                Err(e) => {
                    tracing::error!(error = %e, "reading nodes to check a node certificate");
                    Err(rustls::Error::General("cannot check the client certificate".into()))
                }
            };
        }
        let bundles = berth_cluster::bundles::list(&self.state).map_err(|e| {
            tracing::error!(error = %e, "reading bundles to check a client certificate");
            rustls::Error::General("cannot check the client certificate".into())
        })?;
        match bundles.iter().find(|b| b.fingerprint == fingerprint) {
            Some(b) if b.revoked.is_none() => Ok(verified),
            Some(b) => {
                tracing::info!(bundle = %b.id, user = %b.user, "refused a revoked client certificate");
                Err(rustls::Error::InvalidCertificate(CertificateError::Revoked))
            }
            None => {
                tracing::info!(%fingerprint, "refused a client certificate that is no bundle on record");
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                ))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
