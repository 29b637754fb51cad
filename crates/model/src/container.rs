//! Containers: what a user asks for (`ContainerCreate`) and what the node reports.

use serde::{Deserialize, Serialize};

/// The body of `POST /v1/containers`: everything `berth run` can say.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct ContainerCreate {
    pub image: String,
    pub name: Option<String>,
    /// Replaces the image's Cmd when not empty.
    pub cmd: Vec<String>,
    /// Replaces the image's Entrypoint when set (an empty list clears it).
    pub entrypoint: Option<Vec<String>>,
    /// `K=V` entries added to (and overriding) the image's Env.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// `user[:group]`, names or numbers, resolved inside the image.
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub tty: bool,
    /// The client's terminal size (columns, rows) when `tty`, applied before the process runs.
    pub console_size: Option<(u16, u16)>,
    pub open_stdin: bool,
    pub read_only: bool,
    pub auto_remove: bool,
    pub privileged: bool,
    /// `host` disables the user namespace; anything else is the default (private).
    pub userns: Option<String>,
    /// `none` (the default and, until the networking issue, the only mode).
    #[schema(value_type = Option<String>)]
    pub network: Option<crate::NetworkMode>,
    pub restart: RestartPolicy,
    pub resources: Resources,
    pub binds: Vec<Bind>,
    /// The access-control collection the container belongs to (`/` when
    /// unset): grants on it or an ancestor decide who may touch it.
    pub collection: Option<String>,
    /// Labels, as Docker's: set by the client (and by an agent on the
    /// containers it runs for an assignment).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Resources {
    pub memory_bytes: Option<u64>,
    pub nano_cpus: Option<u64>,
    pub pids_limit: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Bind {
    pub source: String,
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
}

impl Bind {
    /// Parses `-v HOSTDIR:CDIR[:ro|rw]`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let parts: Vec<&str> = spec.split(':').collect();
        let (source, target, read_only) = match parts.as_slice() {
            [s, t] => (*s, *t, false),
            [s, t, "ro"] => (*s, *t, true),
            [s, t, "rw"] => (*s, *t, false),
            [_, _, m] => return Err(format!("invalid volume {spec:?}: unknown mode {m:?} (use ro or rw)")),
            _ => return Err(format!("invalid volume {spec:?}: expected HOSTDIR:CONTAINERDIR[:ro]")),
        };
        if !source.starts_with('/') {
            return Err(format!(
                "invalid volume {spec:?}: host path {source:?} must be absolute"
            ));
        }
        if !target.starts_with('/') {
            return Err(format!(
                "invalid volume {spec:?}: container path {target:?} must be absolute"
            ));
        }
        if target == "/" {
            return Err(format!("invalid volume {spec:?}: cannot mount over /"));
        }
        Ok(Self {
            source: source.into(),
            target: target.into(),
            read_only,
        })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case", tag = "name")]
pub enum RestartPolicy {
    #[default]
    No,
    OnFailure {
        #[serde(default)]
        max_retries: u32,
    },
    Always,
    UnlessStopped,
}

impl RestartPolicy {
    /// Parses `no`, `on-failure[:N]`, `always`, `unless-stopped`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            None => match s {
                "no" => Ok(Self::No),
                "on-failure" => Ok(Self::OnFailure { max_retries: 0 }),
                "always" => Ok(Self::Always),
                "unless-stopped" => Ok(Self::UnlessStopped),
                _ => Err(format!(
                    "invalid restart policy {s:?} (use no, on-failure[:N], always or unless-stopped)"
                )),
            },
            Some(("on-failure", n)) => n
                .parse()
                .map(|max_retries| Self::OnFailure { max_retries })
                .map_err(|_| format!("invalid restart policy {s:?}: {n:?} is not a retry count")),
            Some(_) => Err(format!("invalid restart policy {s:?}: only on-failure takes a count")),
        }
    }

    /// Whether a container that exited with `code` should be started again,
    /// given how often it was restarted and whether a user stopped it.
    pub fn should_restart(&self, code: i32, restarts: u32, stopped_by_user: bool) -> bool {
        if stopped_by_user {
            return false;
        }
        match self {
            Self::No => false,
            Self::OnFailure { max_retries } => code != 0 && (*max_retries == 0 || restarts < *max_retries),
            Self::Always | Self::UnlessStopped => true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    Created,
    Running,
    Restarting,
    Exited,
    Removing,
    Dead,
}

impl ContainerState {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Restarting => "restarting",
            Self::Exited => "exited",
            Self::Removing => "removing",
            Self::Dead => "dead",
        }
    }
}

/// A container as the node keeps it (`local/containers`) and the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Container {
    pub id: crate::ContainerId,
    pub name: String,
    /// The reference the user gave.
    pub image: String,
    /// The image id (config digest) it was created from.
    pub image_id: crate::Digest,
    pub created: String,
    pub spec: ContainerCreate,
    /// The resolved process: argv, env, cwd, uid/gid.
    pub process: ProcessConfig,
    pub status: ContainerStatus,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProcessConfig {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ContainerStatus {
    pub state: ContainerState,
    pub pid: Option<i32>,
    pub exit_code: Option<i32>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub restart_count: u32,
    /// Set by `stop`/`kill` so that restart policies leave the container down.
    pub stopped_by_user: bool,
    pub error: Option<String>,
}

impl Default for ContainerStatus {
    fn default() -> Self {
        Self {
            state: ContainerState::Created,
            pid: None,
            exit_code: None,
            started_at: None,
            finished_at: None,
            restart_count: 0,
            stopped_by_user: false,
            error: None,
        }
    }
}

/// `POST /v1/containers/{id}/wait`: how the container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ContainerWaited {
    pub exit_code: i32,
}

/// `POST /v1/containers/{id}/exec`: the session to start with `POST /v1/exec/{id}/start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExecCreated {
    pub id: String,
}

/// The body of `POST /v1/containers/{id}/exec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct ExecCreate {
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub tty: bool,
    /// The client's terminal size (columns, rows) when `tty`.
    pub console_size: Option<(u16, u16)>,
    pub open_stdin: bool,
}

/// One sample of a container's resource use, read from its cgroup.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ContainerStats {
    pub id: String,
    pub name: String,
    /// Total cpu time used, in nanoseconds.
    pub cpu_usage_ns: u64,
    /// cpu use since the previous sample, in percent of one cpu.
    pub cpu_percent: f64,
    pub memory_usage_bytes: u64,
    pub memory_limit_bytes: Option<u64>,
    pub pids_current: u64,
    pub pids_limit: Option<u64>,
    pub read_at: String,
}

/// The header naming the container a `POST /v1/containers?start=true` made,
/// on its 101 response.
pub const CONTAINER_ID_HEADER: &str = "berth-container-id";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies() {
        assert_eq!(RestartPolicy::parse("no"), Ok(RestartPolicy::No));
        assert_eq!(
            RestartPolicy::parse("on-failure:3"),
            Ok(RestartPolicy::OnFailure { max_retries: 3 })
        );
        assert!(RestartPolicy::parse("sometimes")
            .unwrap_err()
            .contains("invalid restart policy"));
        assert!(RestartPolicy::parse("always:2").is_err());
        let p = RestartPolicy::OnFailure { max_retries: 2 };
        assert!(p.should_restart(1, 0, false));
        assert!(p.should_restart(1, 1, false));
        assert!(!p.should_restart(1, 2, false));
        assert!(!p.should_restart(0, 0, false));
        assert!(!RestartPolicy::Always.should_restart(0, 9, true));
        assert!(RestartPolicy::Always.should_restart(0, 9, false));
    }

    #[test]
    fn binds() {
        assert_eq!(
            Bind::parse("/a:/b:ro"),
            Ok(Bind {
                source: "/a".into(),
                target: "/b".into(),
                read_only: true
            })
        );
        assert!(Bind::parse("a:/b").unwrap_err().contains("must be absolute"));
        assert!(Bind::parse("/a").unwrap_err().contains("expected HOSTDIR"));
        assert!(Bind::parse("/a:/b:zz").unwrap_err().contains("unknown mode"));
    }
}
