//! Containers on this node: the OCI spec berth generates, the per-container
//! shim that holds each container (created with youki's libcontainer), the
//! overlayfs root, stats from the cgroup, and the daemon's handle on all of it.
//!
//! **Invariant:** this crate knows nothing of clusters, HTTP or the store; the
//! daemon records state, this crate acts on the kernel.

pub mod cgroup;
pub mod enter;
pub mod frame;
pub mod idmap;
pub mod idmapped;
pub mod inroot;
pub mod node;
pub mod seccomp;
pub mod shim;
pub mod spec;
pub mod zygote;

pub use idmap::IdMap;
pub use node::Runtime;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    User(String),
    #[error("{0}")]
    CommandNotFound(String),
    /// A request that cannot work with this image (a bind of a file onto a
    /// directory, say), found before the container is made.
    #[error("{0}")]
    Invalid(String),
    #[error("container {id}: {message}")]
    Container { id: String, message: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("container {0} is not running")]
    NotRunning(String),
}

impl Error {
    pub fn container(id: &str, message: impl std::fmt::Display) -> Self {
        Self::Container {
            id: id.to_string(),
            message: message.to_string(),
        }
    }
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}
