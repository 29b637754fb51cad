//! What access control speaks of: resources, actions and permissions (a
//! resource with an action), as roles, grants, token scopes and the route
//! table name them. Pure data; the decision itself is `berth_auth`'s.

use serde::{Deserialize, Serialize};

/// What a route touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Resource {
    System,
    Image,
    Container,
    /// Registry administration (garbage collection).
    Registry,
    /// A registry repository; which one comes from the request path.
    Repository,
    /// Cluster nodes (placement of workloads).
    Node,
    /// Users, teams and organizations.
    User,
    /// Roles and grants.
    Grant,
    /// The audit log.
    Audit,
    /// The caller's own identity and tokens: any authenticated user.
    Profile,
}

pub const RESOURCES: [Resource; 10] = [
    Resource::System,
    Resource::Image,
    Resource::Container,
    Resource::Registry,
    Resource::Repository,
    Resource::Node,
    Resource::User,
    Resource::Grant,
    Resource::Audit,
    Resource::Profile,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Read,
    Write,
    /// Exec into or attach to a container.
    Exec,
    /// Registry actions, as in a token scope `repository:NAME:pull,push,delete`.
    Pull,
    Push,
    Delete,
    /// Bind-mount a host path into a container (`-v /host:/ctr`).
    HostMount,
    /// `--privileged`, the host user namespace, extra capabilities.
    Privileged,
    /// Place workloads on nodes.
    Schedule,
}

pub const ACTIONS: [Action; 9] = [
    Action::Read,
    Action::Write,
    Action::Exec,
    Action::Pull,
    Action::Push,
    Action::Delete,
    Action::HostMount,
    Action::Privileged,
    Action::Schedule,
];

impl Action {
    /// The action's name in a registry token scope and in role definitions.
    pub fn scope_name(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
            Action::Read => "read",
            Action::Write => "write",
            Action::Exec => "exec",
            Action::HostMount => "host-mount",
            Action::Privileged => "privileged",
            Action::Schedule => "schedule",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        ACTIONS.into_iter().find(|a| a.scope_name() == s)
    }
}

impl Resource {
    pub fn name(self) -> &'static str {
        match self {
            Resource::System => "system",
            Resource::Image => "image",
            Resource::Container => "container",
            Resource::Registry => "registry",
            Resource::Repository => "repository",
            Resource::Node => "node",
            Resource::User => "user",
            Resource::Grant => "grant",
            Resource::Audit => "audit",
            Resource::Profile => "profile",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        RESOURCES.into_iter().find(|r| r.name() == s)
    }
}

/// One (resource, action) pair, as roles list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Permission {
    pub resource: Resource,
    pub action: Action,
}

impl Permission {
    /// `resource:action`, e.g. `container:exec`.
    pub fn parse(s: &str) -> Option<Self> {
        let (r, a) = s.split_once(':')?;
        Some(Self {
            resource: Resource::parse(r)?,
            action: Action::parse(a)?,
        })
    }
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.resource.name(), self.action.scope_name())
    }
}
