//! The one error type of the image store. Every message is lower case and
//! names the reference, digest, archive or path involved, so that the API can
//! pass it through to the user as it is.

use std::path::PathBuf;

use berth_model::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(transparent)]
    Store(#[from] berth_store::Error),

    /// Cluster state refused or could not take a change.
    #[error(transparent)]
    State(#[from] berth_state::Error),

    #[error("no such image: {0}")]
    NotFound(String),

    /// The reference does not parse; the message is `Reference::parse`'s.
    #[error("{0}")]
    InvalidReference(String),

    #[error("image id prefix {prefix:?} is ambiguous: it matches {count} images")]
    AmbiguousReference { prefix: String, count: usize },

    #[error(
        "image {reference} ({id}) is used by a container: remove the container first (force only untags the image)"
    )]
    InUse { reference: String, id: String },

    #[error("unable to delete image {id} (must be forced): it is tagged as {tags}")]
    MultipleTags { id: String, tags: String },

    #[error("no such blob: {0}")]
    BlobNotFound(String),

    /// A digest that is not `sha256:<64 hex>`; the message is `validate_digest`'s.
    #[error("{0}")]
    InvalidDigest(String),

    /// The archive is not a loadable image archive (bad structure, missing or malformed files).
    #[error("archive {archive}: {message}")]
    Archive { archive: PathBuf, message: String },

    #[error("archive {archive}: blob {digest} ({entry}) has content with digest {actual}")]
    DigestMismatch {
        archive: PathBuf,
        digest: String,
        entry: String,
        actual: String,
    },

    #[error("archive {archive}: layer {digest} ({entry}): uncompressed content has digest {actual} but the image config lists diff id {expected}")]
    DiffIdMismatch {
        archive: PathBuf,
        digest: String,
        entry: String,
        expected: String,
        actual: String,
    },

    /// A stored image whose content is missing or does not match its record.
    #[error("image {id}: {message}")]
    Corrupt { id: String, message: String },

    /// A registry could not be reached or answered something unusable.
    #[error("registry {registry}: {message}")]
    Registry { registry: String, message: String },

    /// A registry wants credentials, or refused the ones given.
    #[error("registry {registry}: {message}")]
    Unauthorized { registry: String, message: String },

    /// The registry has no such image (or no image for the platform asked for).
    #[error("{reference}: {message}")]
    RemoteNotFound { reference: String, message: String },

    /// A registry served content that does not have the digest that names it.
    #[error("{reference}: {what} {digest} from the registry has content with digest {actual}")]
    RemoteDigestMismatch {
        reference: String,
        what: &'static str,
        digest: String,
        actual: String,
    },

    #[error("unpacking layer {layer}: entry {entry:?}: {message}")]
    Unpack {
        layer: String,
        entry: String,
        message: String,
    },
}

impl Error {
    /// The wire error code the API answers with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::NotFound(_) | Error::BlobNotFound(_) | Error::RemoteNotFound { .. } => ErrorCode::NotFound,
            Error::Unauthorized { .. } => ErrorCode::Unauthorized,
            Error::RemoteDigestMismatch { .. } => ErrorCode::InvalidArgument,
            Error::Registry { .. } => ErrorCode::Internal,
            Error::InvalidReference(_)
            | Error::AmbiguousReference { .. }
            | Error::InvalidDigest(_)
            | Error::Archive { .. }
            | Error::DigestMismatch { .. }
            | Error::DiffIdMismatch { .. }
            | Error::Unpack { .. } => ErrorCode::InvalidArgument,
            Error::InUse { .. } | Error::MultipleTags { .. } => ErrorCode::Conflict,
            Error::State(berth_state::Error::Unavailable(_)) => ErrorCode::Unavailable,
            Error::Io { .. } | Error::Store(_) | Error::State(_) | Error::Corrupt { .. } => ErrorCode::Internal,
        }
    }
}

/// Wraps an io error with what was being done to which path.
pub(crate) fn io_err(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { action, path, source }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
