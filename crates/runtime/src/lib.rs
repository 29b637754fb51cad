//! Containers on this node: the OCI spec berth generates, the per-container
//! shim that holds each container (created with youki's libcontainer), the
//! overlayfs root, stats from the cgroup, and the daemon's handle on all of it.
//!
//! **Invariant:** this crate knows nothing of clusters, HTTP or the store; the
//! daemon records state, this crate acts on the kernel.

pub mod cgroup;
pub mod enter;
#[cfg(feature = "fake")]
pub mod fake;
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
pub use node::NodeRuntime;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use tokio::io::BufReader;
use tokio::net::UnixStream;

/// A runtime call still under way.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;

/// A container's framed stream (see [`frame`]): output, and input when attached with stdin.
pub type Stream = BufReader<UnixStream>;

/// What the engine asks of the containers on its node. [`NodeRuntime`] does
/// it with shims, overlayfs and cgroups; `fake::FakeRuntime` (feature
/// `fake`) does it in memory, so the engine's state machine is tested
/// without root.
///
/// Every method takes a container id the engine made; none of them touches
/// the store.
pub trait Runtime: Send + Sync {
    /// The host id range container root maps to.
    fn idmap(&self) -> IdMap;
    /// Whether lower layers are id-mapped (else they must be unpacked shifted).
    fn idmapped_mounts(&self) -> bool;
    /// This daemon's cgroup, under which every container's sits.
    fn cgroup_parent(&self) -> &str;
    fn cgroups_path(&self, id: &str) -> String;
    /// Where the container's root is (mounted or not).
    fn rootfs(&self, id: &str) -> PathBuf;
    fn log_path(&self, id: &str) -> PathBuf;
    /// Mounts the container's root over `lower_dirs` (idempotent); `owner`
    /// owns the writable layer's top; `idmap` id-maps the lower layers.
    fn mount_rootfs(&self, id: &str, lower_dirs: &[PathBuf], owner: (u32, u32), idmap: bool) -> Result<PathBuf, Error>;
    /// Writes the OCI bundle (config.json and the /etc files).
    fn write_bundle(&self, input: &spec::SpecInput) -> Result<(), Error>;
    /// Whether the root is mounted and the bundle written (as create leaves them).
    fn is_prepared(&self, id: &str) -> bool;
    /// Creates the container's process, stopped before its program; its
    /// pid. `restart`: it ran before, so old runtime state goes first.
    fn create<'a>(
        &'a self,
        id: &'a str,
        tty: bool,
        stdin: bool,
        console_size: Option<(u16, u16)>,
        restart: bool,
    ) -> Pending<'a, i32>;
    /// Lets a created container run; its pid.
    fn start<'a>(&'a self, id: &'a str) -> Pending<'a, i32>;
    /// Attaches and starts in one step, so no output is missed.
    fn attach_start<'a>(&'a self, id: &'a str, stdin: bool) -> Pending<'a, (i32, Stream)>;
    fn attach<'a>(&'a self, id: &'a str, stdin: bool) -> Pending<'a, Stream>;
    /// Waits until the container's process exits; its exit code.
    fn wait<'a>(&'a self, id: &'a str) -> Pending<'a, i32>;
    fn kill<'a>(&'a self, id: &'a str, signal: i32) -> Pending<'a, ()>;
    fn resize<'a>(&'a self, id: &'a str, cols: u16, rows: u16) -> Pending<'a, ()>;
    /// Runs a process in the running container (init `init_pid`); the
    /// framed stream and the exec shim.
    fn exec<'a>(
        &'a self,
        id: &'a str,
        init_pid: i32,
        p: &'a berth_model::ProcessConfig,
        tty: bool,
        console_size: Option<(u16, u16)>,
    ) -> Pending<'a, (Stream, tokio::process::Child)>;
    /// Whether something still holds the container (its shim answers).
    fn shim_alive<'a>(&'a self, id: &'a str) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>>;
    /// How the container's process ended, if it did while nobody waited.
    fn exit_record(&self, id: &str) -> Option<shim::ExitRecord>;
    fn stats(&self, id: &str) -> Option<cgroup::Usage>;
    /// Forgets a stopped container's process (and its cgroup), killing what is left.
    fn delete_runtime_state(&self, id: &str);
    /// Unmounts the root, keeping logs and the writable layer (a stopped container).
    fn unmount_rootfs(&self, id: &str);
    /// Unmounts and removes everything of the container.
    fn remove(&self, id: &str) -> Result<(), Error>;
    /// Ids with a container directory, with process state, with a cgroup:
    /// what reconcile compares with the records.
    fn ids_on_disk(&self) -> Vec<String>;
    fn runtime_ids_on_disk(&self) -> Vec<String>;
    fn cgroup_children(&self) -> Vec<String>;
    /// At a clean stop: drops this daemon's cgroup when no container is left in it.
    fn remove_cgroup_parent_if_empty(&self);
}

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
