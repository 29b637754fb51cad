//! What the daemon says about itself: its version, the node it runs on,
//! and who the caller is.

use serde::{Deserialize, Serialize};

/// `GET /v1/version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VersionInfo {
    pub version: String,
    /// The API's version: `v1`.
    pub api: String,
    pub os: String,
    pub arch: String,
}

/// A host id range container root maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IdRange {
    pub uid_base: u32,
    pub gid_base: u32,
    pub size: u32,
}

/// `GET /v1/info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SystemInfo {
    pub version: String,
    pub data_root: String,
    /// Containers recorded, and of them running.
    pub containers: usize,
    pub running: usize,
    pub images: usize,
    pub userns: IdRange,
    pub cgroup_parent: String,
    /// Whether image layers are shared across id ranges by id-mapped mounts.
    pub idmapped_mounts: bool,
    /// `2`, or `1 (or hybrid)`.
    pub cgroup_version: String,
}

/// `GET /v1/whoami`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Whoami {
    pub name: String,
    /// `admin` (the socket), `user`, `token` (a registry token) or `anonymous`.
    pub kind: String,
}
