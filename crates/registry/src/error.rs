//! The registry's one error type. Each variant is one of the OCI Distribution
//! Spec's error codes (plus the range and size cases that have their own
//! status); the API turns a [`Code`] into the spec's status and JSON body.

/// The spec's error codes, and the few cases that share a code but not a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unsupported,
    Denied,
    Unauthorized,
    TagInvalid,
    /// An out-of-order or overlapping chunk, or a blob range outside the blob (416).
    RangeNotSatisfiable,
    /// A manifest larger than the limit (413, SIZE_INVALID).
    ManifestTooLarge,
    /// A manifest of a media type the registry does not take (415, MANIFEST_INVALID).
    UnsupportedMediaType,
    /// Storage failed: not the caller's fault.
    Internal,
}

impl Code {
    /// The code string the spec names.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid | Code::RangeNotSatisfiable => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid | Code::UnsupportedMediaType => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::SizeInvalid | Code::ManifestTooLarge => "SIZE_INVALID",
            Code::Unsupported => "UNSUPPORTED",
            Code::Denied => "DENIED",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::TagInvalid => "TAG_INVALID",
            Code::Internal => "UNKNOWN",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A protocol error: the caller's request cannot be served as asked.
    #[error("{message}")]
    Protocol { code: Code, message: String },

    #[error(transparent)]
    Image(#[from] berth_image::Error),

    #[error(transparent)]
    Store(#[from] berth_store::Error),

    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Error::Protocol {
            code,
            message: message.into(),
        }
    }

    pub fn code(&self) -> Code {
        match self {
            Error::Protocol { code, .. } => *code,
            Error::Image(berth_image::Error::BlobNotFound(_)) => Code::BlobUnknown,
            Error::Image(berth_image::Error::InvalidDigest(_)) => Code::DigestInvalid,
            Error::Image(_) | Error::Store(_) | Error::Io { .. } => Code::Internal,
        }
    }
}

/// Wraps an io error with what was being done to which path.
pub(crate) fn io_err(
    action: &'static str,
    path: impl Into<std::path::PathBuf>,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { action, path, source }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
