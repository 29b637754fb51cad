//! Identities and access: users, teams and organizations, passwords and
//! tokens, roles, grants on collections, the authorization decision, LDAP/AD
//! directories and the hash-chained audit log. Cluster-wide state lives in
//! `berth_state`'s tables; this crate changes it by proposing commands
//! (the audit log and directory sync still write their tables directly).
//!
//! **Invariant:** this crate does not know HTTP; `api` asks it for decisions.
#![forbid(unsafe_code)]

pub mod access;
pub mod audit;
pub mod directory;
pub mod ldap;
pub mod policy;
mod records;
pub mod repos;
pub mod session;
pub mod syslog;

pub use access::{Access, AuthFailure, Clock};
pub use audit::{
    verify_export, AuditEntry, AuditExport, AuditLevel, AuditQuery, AuditSink, ChainSigner, NewAuditEntry,
    Verification, AUDIT_LEVELS,
};
pub use policy::{
    builtin_role, collection_path, covers, Action, Caller, Decision, Identity, Index, PermSet, Permission, Resource,
    Where, ACTIONS, BUILTIN_ROLES, RESOURCES,
};
pub use records::*;

pub use berth_state::tables::{AUDIT, AUDIT_SIGNATURES, GRANTS, ORGS, ROLES, TEAMS, TOKENS, USERS};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] berth_store::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("hashing a password: {0}")]
    Hash(String),
    #[error(transparent)]
    Directory(#[from] ldap::LdapError),
    /// Cluster state could not take a change (other than a refusal).
    #[error(transparent)]
    State(berth_state::Error),
}

impl From<berth_state::Error> for Error {
    fn from(e: berth_state::Error) -> Self {
        use berth_state::Rejected;
        match e {
            berth_state::Error::Rejected(Rejected::NotFound(m)) => Error::NotFound(m),
            berth_state::Error::Rejected(Rejected::Conflict(m)) => Error::Conflict(m),
            berth_state::Error::Rejected(Rejected::Invalid(m)) => Error::Invalid(m),
            berth_state::Error::Store(e) => Error::Store(e),
            other => Error::State(other),
        }
    }
}

impl Error {
    pub fn code(&self) -> berth_model::ErrorCode {
        use berth_model::ErrorCode;
        match self {
            Error::Invalid(_) => ErrorCode::InvalidArgument,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::Conflict(_) => ErrorCode::Conflict,
            Error::State(berth_state::Error::Unavailable(_)) => ErrorCode::Unavailable,
            Error::Store(_) | Error::Io { .. } | Error::Hash(_) | Error::State(_) => ErrorCode::Internal,
            Error::Directory(e) => e.code(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
