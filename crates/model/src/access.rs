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

// --- request and answer bodies of the access routes ---

/// `POST /v1/users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewUser {
    pub name: String,
    pub password: String,
}

/// `POST /v1/users/{name}/password`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewPassword {
    pub password: String,
}

/// `POST /v1/teams`: a team, synced from a directory group when both
/// `directory` and `group` are given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewTeam {
    pub name: String,
    #[serde(default)]
    pub directory: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
}

/// `POST /v1/orgs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewOrg {
    pub name: String,
}

/// `POST /v1/teams/{name}/members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewMember {
    pub user: String,
}

/// `POST /v1/orgs/{name}/teams`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewOrgTeam {
    pub team: String,
}

/// `POST /v1/roles`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewRole {
    pub name: String,
    /// `resource:action` each.
    pub permissions: Vec<String>,
}

/// `POST /v1/grants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewGrant {
    /// `user:NAME`, `team:NAME` or `org:NAME`.
    pub subject: String,
    pub role: String,
    /// `/` when left out.
    #[serde(default = "root_collection")]
    pub collection: String,
}

fn root_collection() -> String {
    "/".into()
}

/// `POST /v1/tokens` and `POST /v1/auth/token`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct NewToken {
    /// Seconds until it expires; none = never.
    pub expires_in: Option<u64>,
    pub scopes: Vec<String>,
    pub description: String,
    /// Whose token: the caller's unless it may manage users.
    pub user: Option<String>,
}

/// A personal access token just made: the secret (`token`) is shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenCreated {
    pub token: String,
    pub id: String,
    pub user: String,
    pub scopes: Vec<String>,
    pub created: String,
    pub expires: Option<String>,
}

/// `POST /v1/auth/session`: the session cookie is set; the CSRF token goes
/// in `X-CSRF-Token` of every write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionStarted {
    pub user: String,
    pub csrf_token: String,
    pub expires: String,
}

/// `POST /v1/directories/{name}/test`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DirectoryTest {
    pub user: String,
    /// With it, the user's own bind is tried too.
    #[serde(default)]
    pub password: Option<String>,
}

/// A user a directory authenticated (or a directory test found), with
/// what just-in-time provisioning and team sync need.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DirectoryUser {
    /// The `DirectoryConfig::name` that authenticated the user.
    pub directory: String,
    pub dn: String,
    /// The entry's `username_attr` value (the login's user part if absent).
    pub username: String,
    pub email: Option<String>,
    pub full_name: Option<String>,
    /// DNs of the user's groups, sorted.
    pub groups: Vec<String>,
}

/// What a directory test found of the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DirectoryTestResult {
    #[serde(flatten)]
    pub user: DirectoryUser,
    /// Whether the user's own bind was tried (and passed).
    pub authenticated: bool,
}

/// `PUT /v1/audit/levels/{resource}`: `none`, `metadata` or `request`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SetLevel {
    pub level: String,
}

/// `PUT /v1/registry/collections/{prefix}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SetCollection {
    pub collection: String,
}

// --- What the API shows of the access tables. The stored records are the
// state crate's; each converts into its view there, and a view never
// carries a password hash, a token's hash or a key.

/// How much the audit log records for a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AuditLevel {
    /// Nothing but denials and logins.
    None,
    /// Who, action, object, result of every mutating request.
    Metadata,
    /// Every request, reads too, with its query.
    Request,
}

impl AuditLevel {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "metadata" => Some(Self::Metadata),
            "request" => Some(Self::Request),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Metadata => "metadata",
            Self::Request => "request",
        }
    }
}

/// A team.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Team {
    pub name: String,
    pub members: std::collections::BTreeSet<String>,
    /// RFC 3339.
    pub created: String,
}

/// An organization: a set of teams.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Org {
    pub name: String,
    pub teams: std::collections::BTreeSet<String>,
    /// RFC 3339.
    pub created: String,
}

/// A named set of (resource, action).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Role {
    pub name: String,
    pub permissions: Vec<Permission>,
    #[serde(default)]
    pub builtin: bool,
}

/// Subject (`user:NAME`, `team:NAME`, `org:NAME`) + role + collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Grant {
    pub id: String,
    pub subject: String,
    pub role: String,
    pub collection: String,
    /// RFC 3339.
    pub created: String,
}

/// A client bundle: a certificate issued to a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Bundle {
    pub id: String,
    pub user: String,
    /// Hex of the certificate's serial number.
    pub serial: String,
    /// SHA-256 of the certificate's DER, hex.
    pub fingerprint: String,
    /// RFC 3339.
    pub created: String,
    pub not_after: String,
    /// RFC 3339; set once revoked.
    #[serde(default)]
    pub revoked: Option<String>,
}

/// A registry repository-name prefix and the collection its repositories
/// belong to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RepositoryCollection {
    pub prefix: String,
    pub collection: String,
}

/// The directory group a team is synced from (`PUT /v1/teams/{name}/directory`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DirectoryGroup {
    pub directory: String,
    /// A group DN, a group name (its `cn`), or a filter `(...)` selecting
    /// users (team sync by search).
    pub group: String,
}

/// A user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserView {
    pub name: String,
    pub created: String,
    pub teams: Vec<String>,
}

/// A personal access token (never its secret or hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: String,
    pub user: String,
    pub scopes: Vec<String>,
    pub created: String,
    pub expires: Option<String>,
    pub description: String,
}

/// A user as listed: directory users also name their directory and DN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserListing {
    #[serde(flatten)]
    pub user: UserView,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dn: Option<String>,
}

/// A team as listed: a synced team names its directory group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TeamListing {
    #[serde(flatten)]
    pub team: Team,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory_group: Option<DirectoryGroup>,
}

/// `POST /v1/bundles`: a client bundle just issued. The key is in this
/// answer only; the daemon keeps none of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BundleIssued {
    pub bundle: Bundle,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// A resource's audit level, as `GET /v1/audit/levels` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LevelView {
    pub resource: String,
    pub level: AuditLevel,
}
