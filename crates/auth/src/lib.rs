//! Identities and access: users, teams and organizations, passwords and
//! tokens, roles, grants on collections, the authorization decision, LDAP/AD
//! directories and the hash-chained audit log. Cluster-wide state lives in
//! the store's `cluster/*` keyspace and changes only through `Store::apply`.
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

use berth_store::Table;

pub const USERS: Table = Table("cluster/users");
pub const TEAMS: Table = Table("cluster/teams");
pub const ORGS: Table = Table("cluster/orgs");
pub const ROLES: Table = Table("cluster/roles");
pub const GRANTS: Table = Table("cluster/grants");
pub const TOKENS: Table = Table("cluster/tokens");
/// Audit entries by zero-padded sequence number.
pub const AUDIT: Table = Table("cluster/audit");
/// The signed head of the audit chain (key `head`) and the signed
/// checkpoints (key: zero-padded sequence number).
pub const AUDIT_SIGNATURES: Table = Table("cluster/audit_signatures");

pub const ALL_TABLES: [Table; 14] = [
    USERS,
    TEAMS,
    ORGS,
    ROLES,
    GRANTS,
    TOKENS,
    AUDIT,
    AUDIT_SIGNATURES,
    directory::DIRECTORIES,
    directory::DIRECTORY_ACCOUNTS,
    directory::TEAM_GROUPS,
    directory::DIRECTORY_SYNC,
    session::SESSIONS,
    repos::REPOSITORY_COLLECTIONS,
];

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
}

impl Error {
    pub fn code(&self) -> berth_model::ErrorCode {
        use berth_model::ErrorCode;
        match self {
            Error::Invalid(_) => ErrorCode::InvalidArgument,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::Conflict(_) => ErrorCode::Conflict,
            Error::Store(_) | Error::Io { .. } | Error::Hash(_) => ErrorCode::Internal,
            Error::Directory(e) => e.code(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
