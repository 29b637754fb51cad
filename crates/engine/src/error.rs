//! The engine's error: what went wrong, naming the container, image or path,
//! and which wire code it maps to.

use berth_model::{ApiError, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    #[error("no such exec: {0}")]
    NoSuchExec(String),
    #[error("container id prefix {0:?} is ambiguous")]
    Ambiguous(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    /// A policy refuses it (content trust): HTTP 403.
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Image(#[from] berth_image::Error),
    #[error(transparent)]
    Runtime(#[from] berth_runtime::Error),
    #[error(transparent)]
    Store(#[from] berth_store::Error),
    #[error(transparent)]
    State(#[from] berth_state::Error),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

impl Error {
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Error::NoSuchContainer(_) | Error::NoSuchExec(_) => ErrorCode::NotFound,
            Error::Ambiguous(_) | Error::Invalid(_) => ErrorCode::InvalidArgument,
            Error::Conflict(_) => ErrorCode::Conflict,
            Error::Forbidden(_) => ErrorCode::Forbidden,
            Error::Image(e) => e.code(),
            Error::Runtime(
                berth_runtime::Error::User(_)
                | berth_runtime::Error::CommandNotFound(_)
                | berth_runtime::Error::Invalid(_),
            ) => ErrorCode::InvalidArgument,
            Error::Runtime(berth_runtime::Error::NotRunning(_)) => ErrorCode::Conflict,
            Error::State(berth_state::Error::Unavailable(_)) => ErrorCode::Unavailable,
            Error::Runtime(_) | Error::Store(_) | Error::State(_) | Error::Io { .. } => ErrorCode::Internal,
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}
