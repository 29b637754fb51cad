//! The crate's one error type. Messages name the plugin, path or digest
//! involved, in lower case without a final period.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong loading, running or managing a plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The plugin trapped (a panic, `unreachable`, an out-of-bounds access,
    /// a stack overflow, a host call it made failing fatally).
    #[error("plugin {plugin} crashed: {reason}")]
    Trap { plugin: String, reason: String },

    /// The plugin ran past its CPU deadline and was stopped.
    #[error("plugin {plugin} ran longer than its limit of {limit:?} and was stopped")]
    Timeout { plugin: String, limit: Duration },

    /// The plugin tried to grow its memory past the cap and then failed.
    #[error("plugin {plugin} ran out of memory: it asked for more than its limit of {limit} bytes")]
    OutOfMemory { plugin: String, limit: u64 },

    /// The check ran to completion and reported that it could not do its job.
    #[error("plugin {plugin} reported an error: {message}")]
    CheckFailed { plugin: String, message: String },

    /// The component could not be instantiated (for instance, every instance
    /// slot of the pool is in use).
    #[error("could not instantiate plugin {plugin}: {reason}")]
    Instantiate { plugin: String, reason: String },

    /// The bytes are not a WebAssembly component wasmtime can compile.
    #[error("plugin {plugin} is not a usable WebAssembly component: {reason}")]
    NotAComponent { plugin: String, reason: String },

    /// The component does not fit the world it claims to target: it imports
    /// something the world does not give, or lacks an export the world needs.
    #[error("plugin {plugin} does not implement world {world}@{version}: {reason}")]
    WrongWorld {
        plugin: String,
        world: String,
        version: String,
        reason: String,
    },

    /// The manifest names a world or version this host does not have.
    #[error("world {world}@{version} is not supported by this berth (supported: {supported})")]
    UnsupportedWorld {
        world: String,
        version: String,
        supported: String,
    },

    /// The wasm's digest differs from the one its manifest records.
    #[error("plugin {plugin}: the wasm's digest {actual} does not match the manifest's {expected}")]
    DigestMismatch {
        plugin: String,
        expected: String,
        actual: String,
    },

    /// A manifest (`plugin.json`) that cannot be used.
    #[error("invalid plugin manifest {source_name}: {reason}")]
    InvalidManifest { source_name: String, reason: String },

    /// An OCI artifact that is not a berth plugin, or whose blobs do not
    /// match their descriptors.
    #[error("invalid plugin artifact: {reason}")]
    InvalidArtifact { reason: String },

    #[error("plugin {name} {version} is already installed")]
    AlreadyInstalled { name: String, version: String },

    #[error("plugin {name}{} is not installed", version.as_ref().map(|v| format!(" {v}")).unwrap_or_default())]
    NotInstalled { name: String, version: Option<String> },

    #[error("plugin {name} has several versions installed ({versions}); name one")]
    AmbiguousVersion { name: String, versions: String },

    #[error("plugin {name} {version} is disabled")]
    Disabled { name: String, version: String },

    /// The wasmtime engine could not be set up with the requested limits.
    #[error("could not set up the plugin engine: {reason}")]
    Engine { reason: String },

    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl PluginError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> PluginError {
        let path = path.into();
        move |source| PluginError::Io { action, path, source }
    }
}
