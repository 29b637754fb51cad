//! Vulnerabilities from OSV records: the OSV model ([`osv`]), import from
//! record directories and osv.dev's `all.zip` exports ([`import()`]), the
//! persisted index ([`VulnDb`]), matching components against it
//! ([`match_components`]), severities from CVSS ([`severity`]) and ignore
//! rules / OpenVEX ([`ignore`]).
//!
//! **Architecture Invariant**: matching is a pure function of the
//! components, the distro and the database content. Callers cache results
//! per layer under [`cache_key`] (layer diff_id, distro, database digest);
//! ignore rules are applied after the cache, since they change without the
//! database changing.

pub mod db;
pub mod ignore;
pub mod import;
pub mod matching;
pub mod osv;
pub mod severity;

use std::path::PathBuf;

pub use db::{Advisory, VulnDb};
pub use ignore::{apply_ignores, failing, IgnoreOutcome, IgnoreRule, IgnoreRules};
pub use import::{import, ImportStats};
pub use matching::{cache_key, match_components, source_package, Distro, SUPPORTED_ECOSYSTEMS};
pub use osv::OsvRecord;

/// Errors of importing, storing and reading vulnerability data.
#[derive(Debug, thiserror::Error)]
pub enum VulnError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not an OSV record: {reason}")]
    Record { path: String, reason: String },
    #[error("{path}: unreadable zip archive: {reason}")]
    Zip { path: PathBuf, reason: String },
    #[error("{path}: corrupt vulnerability database: {reason}")]
    CorruptDb { path: PathBuf, reason: String },
    #[error("cannot encode {what}: {reason}")]
    Encode { what: String, reason: String },
    #[error("{path}: invalid ignore file: {reason}")]
    IgnoreFile { path: String, reason: String },
    #[error("{path}: neither a directory nor a .json or .zip file")]
    UnknownInput { path: PathBuf },
}
