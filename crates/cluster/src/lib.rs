//! The cluster's identity and membership: its certificate authority, the
//! node's server certificate, node certificates, the client certificates
//! of bundles, join tokens ([`join`]), the join handshake and the agent's
//! session with the managers ([`agent`], [`membership`]) over gRPC
//! ([`rpc`]). Later also the Raft transport and gossip.
//!
//! **Invariant:** this crate does not know HTTP; private keys it issues for
//! clients are returned once and never stored or logged.
#![forbid(unsafe_code)]

pub mod agent;
pub mod backup;
pub mod bundles;
pub mod ca;
pub mod dispatch;
pub mod gossip;
pub mod join;
pub mod membership;
pub mod names;
pub mod pki;
pub mod raft;
pub mod recover;
pub mod rpc;
pub mod services;

pub use bundles::{Bundle, BUNDLES};
pub use pki::{fingerprint, identity_of, node_of, IssuedClient, Pki, ServerIdentity};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] berth_store::Error),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("{path}: {message}")]
    Pem { path: std::path::PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// Refused on the cluster's state (the last manager, a node still up).
    #[error("{0}")]
    Conflict(String),
    /// Asked of a worker what only managers answer.
    #[error("{0}")]
    NotManager(String),
    #[error(transparent)]
    State(#[from] berth_state::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
