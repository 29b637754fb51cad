//! The cluster's identity: its certificate authority, the node's server
//! certificate, the client certificates of bundles, and join tokens
//! ([`join`]). Later also the Raft transport, gossip and the agent.
//!
//! **Invariant:** this crate does not know HTTP; private keys it issues for
//! clients are returned once and never stored or logged.
#![forbid(unsafe_code)]

pub mod bundles;
pub mod join;
pub mod names;
pub mod pki;

pub use bundles::{Bundle, BUNDLES};
pub use pki::{fingerprint, identity_of, IssuedClient, Pki, ServerIdentity};

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
    #[error("no such bundle: {0}")]
    NotFound(String),
    #[error(transparent)]
    State(#[from] berth_state::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
