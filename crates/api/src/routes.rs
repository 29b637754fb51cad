//! The route table: every route once, with its handler, the permission it
//! needs and a summary for the OpenAPI document. The router, the
//! authorization layer and the OpenAPI document are all built from it.

use axum::http::Method;
use axum::routing::{delete, get, head, patch, post, put, MethodRouter};
use axum::Router;

use crate::authz::{Action, Resource};
use crate::{
    access, audit, authz, bundles, collections, containers, images, metrics, nodes, openapi, registry, scans, sessions,
    system, trust_policy, AppState,
};

pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub resource: Resource,
    pub action: Action,
    pub summary: &'static str,
    /// Anyone may call it, without credentials: only what a client needs
    /// before it logs in (the version, the CA certificate).
    pub public: bool,
    /// What it answers on success, for the OpenAPI document.
    pub answer: Answer,
    /// The JSON body it reads, when it reads one the table declares, and
    /// whether the body may be left out.
    pub request: Option<(SchemaFn, Required)>,
    handler: fn() -> MethodRouter<AppState>,
}

/// Registers a schema (and those it refers to) in the document's
/// components; returns its name.
pub type SchemaFn = fn(&mut serde_json::Map<String, serde_json::Value>) -> String;

/// The schema function of `T`.
pub fn schema_of<T: utoipa::ToSchema>(components: &mut serde_json::Map<String, serde_json::Value>) -> String {
    crate::openapi::add::<T>(components)
}

/// Whether a route's JSON body must be sent.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Required {
    Yes,
    /// An empty body means the type's defaults.
    No,
}

/// What a route answers on success.
#[derive(Clone, Copy)]
pub enum Answer {
    /// No body (204, or an empty 200).
    Empty,
    /// One JSON value of a named schema.
    Json(SchemaFn),
    /// `201 Created` with one JSON value of a named schema.
    Created(SchemaFn),
    /// A JSON list of a named schema.
    List(SchemaFn),
    /// Another media type or a stream: (media type, what it carries).
    Other(&'static str, &'static str),
}

/// One row of the route table: `route!([public] METHOD, axum-method-fn, PATH,
/// RESOURCE, ACTION, handler, SUMMARY, ANSWER[, body = SCHEMA | optional_body = SCHEMA])`; `public`
/// marks a route anonymous callers may use, ANSWER says what it answers
/// ([`Answer`]), `body` the JSON body it reads (`optional_body`: one it
/// may go without).
macro_rules! route {
    ($m:ident, $f:ident, $p:literal, $res:ident, $act:ident, $h:path, $s:literal, $a:expr $(,)?) => {
        route!(@ $m, $f, $p, $res, $act, $h, $s, false, $a, None)
    };
    ($m:ident, $f:ident, $p:literal, $res:ident, $act:ident, $h:path, $s:literal, $a:expr, body = $b:expr $(,)?) => {
        route!(@ $m, $f, $p, $res, $act, $h, $s, false, $a, Some(($b, Required::Yes)))
    };
    ($m:ident, $f:ident, $p:literal, $res:ident, $act:ident, $h:path, $s:literal, $a:expr, optional_body = $b:expr $(,)?) => {
        route!(@ $m, $f, $p, $res, $act, $h, $s, false, $a, Some(($b, Required::No)))
    };
    (public $m:ident, $f:ident, $p:literal, $res:ident, $act:ident, $h:path, $s:literal, $a:expr $(,)?) => {
        route!(@ $m, $f, $p, $res, $act, $h, $s, true, $a, None)
    };
    (@ $m:ident, $f:ident, $p:literal, $res:ident, $act:ident, $h:path, $s:literal, $public:literal, $a:expr, $b:expr) => {
        Route {
            method: Method::$m,
            path: $p,
            resource: Resource::$res,
            action: Action::$act,
            summary: $s,
            public: $public,
            answer: $a,
            request: $b,
            handler: || $f($h),
        }
    };
}

/// How much of a request body a route reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLimit {
    /// A JSON (or empty) body, read whole: at most this many bytes.
    Json(u64),
    /// A body the handler streams (uploads, imports): at most this many bytes.
    Stream(u64),
}

impl BodyLimit {
    pub fn bytes(self) -> u64 {
        match self {
            BodyLimit::Json(n) | BodyLimit::Stream(n) => n,
        }
    }
}

/// The default: a JSON body of at most 1 MiB.
pub const JSON_BODY_LIMIT: u64 = 1 << 20;
/// An image archive (`berth image load`).
pub const IMAGE_LOAD_LIMIT: u64 = 64 << 30;
/// A registry blob or chunk upload (and Notary metadata, which its handler caps lower).
pub const REGISTRY_UPLOAD_LIMIT: u64 = 64 << 30;
/// A plugin install: the manifest and the component, base64.
pub const PLUGIN_INSTALL_LIMIT: u64 = 256 << 20;

impl Route {
    /// The largest body this route accepts.
    pub fn body_limit(&self) -> BodyLimit {
        match (self.method.as_str(), self.path) {
            ("POST", "/v1/images/load") => BodyLimit::Stream(IMAGE_LOAD_LIMIT),
            ("POST", "/v1/vulndb/import") => BodyLimit::Stream(crate::scans::MAX_IMPORT_UPLOAD),
            ("POST", "/v1/plugins") => BodyLimit::Json(PLUGIN_INSTALL_LIMIT),
            ("POST" | "PATCH" | "PUT", "/v2/{*path}") => BodyLimit::Stream(REGISTRY_UPLOAD_LIMIT),
            _ => BodyLimit::Json(JSON_BODY_LIMIT),
        }
    }
}

pub static TABLE: &[Route] = &[
    route!(
        public GET,
        get,
        "/v1/version",
        System,
        Read,
        system::version,
        "Version of the daemon",
        Answer::Json(schema_of::<berth_model::VersionInfo>)
    ),
    route!(
        GET,
        get,
        "/v1/info",
        System,
        Read,
        system::info,
        "Node information: data root, counts, id mapping, cgroup mode",
        Answer::Json(schema_of::<berth_model::SystemInfo>)
    ),
    route!(
        GET,
        get,
        "/v1/openapi.json",
        System,
        Read,
        openapi::document,
        "This document",
        Answer::Other("application/json", "this OpenAPI 3.1 document")
    ),
    route!(
        GET,
        get,
        "/metrics",
        System,
        Read,
        metrics::render,
        "Prometheus metrics",
        Answer::Other("text/plain", "Prometheus text exposition")
    ),
    route!(
        GET,
        get,
        "/v1/events",
        System,
        Read,
        system::events,
        "Stream of events (NDJSON)",
        Answer::Other("application/x-ndjson", "NDJSON stream of Event, filtered by the caller's grants")
    ),
    route!(
        GET,
        get,
        "/v1/whoami",
        Profile,
        Read,
        bundles::whoami,
        "Who the caller is: {name, kind}",
        Answer::Json(schema_of::<berth_model::Whoami>)
    ),
    route!(
        public GET,
        get,
        "/v1/ca.pem",
        System,
        Read,
        bundles::ca_pem,
        "The cluster CA certificate (PEM)",
        Answer::Other("application/x-pem-file", "the cluster CA certificate")
    ),
    route!(
        POST,
        post,
        "/v1/bundles",
        Profile,
        Write,
        bundles::create,
        "Issue a client bundle (?user=, default the caller): certificate, key (returned once) and CA",
        Answer::Json(schema_of::<berth_model::access::BundleIssued>)
    ),
    route!(
        GET,
        get,
        "/v1/bundles",
        Profile,
        Read,
        bundles::list,
        "List client bundles (the caller's own; all for user administrators)",
        Answer::List(schema_of::<berth_model::access::Bundle>)
    ),
    route!(
        DELETE,
        delete,
        "/v1/bundles/{id}",
        Profile,
        Write,
        bundles::revoke,
        "Revoke a client bundle: its certificate is refused from now on",
        Answer::Json(schema_of::<berth_model::access::Bundle>)
    ),
    route!(
        GET,
        get,
        "/v1/nodes",
        Node,
        Read,
        nodes::list,
        "The cluster's nodes with their status (managers only)",
        Answer::List(schema_of::<berth_model::node::Node>)
    ),
    route!(
        GET,
        get,
        "/v1/nodes/{id}",
        Node,
        Read,
        nodes::inspect,
        "One node, by id, unique id prefix or host name",
        Answer::Json(schema_of::<berth_model::node::Node>)
    ),
    route!(
        PATCH,
        patch,
        "/v1/nodes/{id}",
        Node,
        Write,
        nodes::update,
        "Change a node's availability (active, pause, drain) and labels",
        Answer::Json(schema_of::<berth_model::node::Node>),
        body = schema_of::<berth_model::node::NodeUpdate>
    ),
    route!(
        DELETE,
        delete,
        "/v1/nodes/{id}",
        Node,
        Write,
        nodes::remove,
        "Remove a node from the cluster (?force=true: even when it is not down)",
        Answer::Json(schema_of::<berth_model::node::Node>)
    ),
    route!(
        POST,
        post,
        "/v1/nodes/{id}/promote",
        Node,
        Write,
        nodes::promote,
        "Make a worker a manager: it restarts as one, catches up and votes",
        Answer::Json(schema_of::<berth_model::node::Node>)
    ),
    route!(
        POST,
        post,
        "/v1/nodes/{id}/demote",
        Node,
        Write,
        nodes::demote,
        "Make a manager a worker (refused for the last manager, and when the managers left would have no majority up)",
        Answer::Json(schema_of::<berth_model::node::Node>)
    ),
    route!(
        GET,
        get,
        "/v1/cluster",
        Node,
        Read,
        nodes::info,
        "The cluster: CA digest and expiry, this node, the managers",
        Answer::Json(schema_of::<berth_model::node::ClusterInfo>)
    ),
    route!(
        GET,
        get,
        "/v1/cluster/join-token/{role}",
        Node,
        Write,
        nodes::join_token,
        "The join token of a role (worker, manager) and the command that uses it",
        Answer::Json(schema_of::<berth_model::node::JoinTokenView>)
    ),
    route!(
        POST,
        post,
        "/v1/cluster/join-token/{role}/rotate",
        Node,
        Write,
        nodes::rotate_join_token,
        "Replace a role's join token: the old one stops working",
        Answer::Json(schema_of::<berth_model::node::JoinTokenView>)
    ),
    route!(
        GET,
        get,
        "/v1/cluster/ca",
        Node,
        Read,
        nodes::ca_status,
        "The cluster CA: its root, a rotation under way and the nodes it waits for, the retired roots",
        Answer::Json(schema_of::<berth_model::node::CaStatus>)
    ),
    route!(
        POST,
        post,
        "/v1/cluster/ca/rotate",
        Node,
        Write,
        nodes::rotate_ca,
        "Start replacing the cluster CA with a new root, cross-signed by the current one: every node renews under it, then the old root retires (refused while a rotation is under way)",
        Answer::Json(schema_of::<berth_model::node::CaStatus>)
    ),
    route!(
        POST,
        post,
        "/v1/cluster/backup",
        Node,
        Write,
        nodes::backup,
        "A backup of cluster state and the managers' secrets, encrypted with the passphrase (managers only)",
        Answer::Other("application/json", "the encrypted backup file (berth-cluster-backup-v1)"),
        body = schema_of::<berth_model::node::BackupRequest>
    ),
    route!(
        GET,
        get,
        "/v1/assignments",
        Node,
        Read,
        nodes::assignments,
        "Every assignment, with the state of its container on each node that runs it (managers only)",
        Answer::List(schema_of::<berth_model::assignment::Assignment>)
    ),
    route!(
        POST,
        post,
        "/v1/assignments",
        Node,
        Write,
        nodes::assignment_create,
        "Create an assignment: every node that meets its constraints runs one container of it",
        Answer::Created(schema_of::<berth_model::assignment::Assignment>),
        body = schema_of::<berth_model::assignment::AssignmentSpec>
    ),
    route!(
        GET,
        get,
        "/v1/assignments/{name}",
        Node,
        Read,
        nodes::assignment,
        "One assignment, by name",
        Answer::Json(schema_of::<berth_model::assignment::Assignment>)
    ),
    route!(
        DELETE,
        delete,
        "/v1/assignments/{name}",
        Node,
        Write,
        nodes::assignment_remove,
        "Remove an assignment: the nodes that run it remove its containers",
        Answer::Json(schema_of::<berth_model::assignment::Assignment>)
    ),
    route!(
        GET,
        get,
        "/v1/users",
        User,
        Read,
        access::users,
        "List users (never their passwords)",
        Answer::List(schema_of::<berth_model::access::UserListing>)
    ),
    route!(
        POST,
        post,
        "/v1/users",
        User,
        Write,
        access::user_create,
        "Create a local user ({name, password})",
        Answer::Created(schema_of::<berth_model::access::UserView>),
        body = schema_of::<berth_model::access::NewUser>
    ),
    route!(
        DELETE,
        delete,
        "/v1/users/{name}",
        User,
        Write,
        access::user_remove,
        "Remove a user with its tokens, grants and memberships",
        Answer::Empty
    ),
    route!(
        POST,
        post,
        "/v1/users/{name}/password",
        User,
        Write,
        access::user_password,
        "Set a user's password ({password})",
        Answer::Empty,
        body = schema_of::<berth_model::access::NewPassword>
    ),
    route!(
        GET,
        get,
        "/v1/teams",
        User,
        Read,
        access::teams,
        "List teams and their members",
        Answer::List(schema_of::<berth_model::access::TeamListing>)
    ),
    route!(
        POST,
        post,
        "/v1/teams",
        User,
        Write,
        access::team_create,
        "Create a team ({name})",
        Answer::Created(schema_of::<berth_model::access::TeamListing>),
        body = schema_of::<berth_model::access::NewTeam>
    ),
    route!(
        DELETE,
        delete,
        "/v1/teams/{name}",
        User,
        Write,
        access::team_remove,
        "Remove a team and its grants",
        Answer::Empty
    ),
    route!(
        POST,
        post,
        "/v1/teams/{name}/members",
        User,
        Write,
        access::team_add,
        "Add a user to a team ({user})",
        Answer::Json(schema_of::<berth_model::access::Team>),
        body = schema_of::<berth_model::access::NewMember>
    ),
    route!(
        DELETE,
        delete,
        "/v1/teams/{name}/members/{user}",
        User,
        Write,
        access::team_del,
        "Remove a user from a team",
        Answer::Json(schema_of::<berth_model::access::Team>)
    ),
    route!(
        GET,
        get,
        "/v1/orgs",
        User,
        Read,
        access::orgs,
        "List organizations and their teams",
        Answer::List(schema_of::<berth_model::access::Org>)
    ),
    route!(
        POST,
        post,
        "/v1/orgs",
        User,
        Write,
        access::org_create,
        "Create an organization ({name})",
        Answer::Created(schema_of::<berth_model::access::Org>),
        body = schema_of::<berth_model::access::NewOrg>
    ),
    route!(
        DELETE,
        delete,
        "/v1/orgs/{name}",
        User,
        Write,
        access::org_remove,
        "Remove an organization and its grants",
        Answer::Empty
    ),
    route!(
        POST,
        post,
        "/v1/orgs/{name}/teams",
        User,
        Write,
        access::org_add,
        "Add a team to an organization ({team})",
        Answer::Json(schema_of::<berth_model::access::Org>),
        body = schema_of::<berth_model::access::NewOrgTeam>
    ),
    route!(
        DELETE,
        delete,
        "/v1/orgs/{name}/teams/{team}",
        User,
        Write,
        access::org_del,
        "Remove a team from an organization",
        Answer::Json(schema_of::<berth_model::access::Org>)
    ),
    route!(
        GET,
        get,
        "/v1/roles",
        Grant,
        Read,
        access::roles,
        "List roles: built-in and custom, as (resource, action) sets",
        Answer::List(schema_of::<berth_model::access::Role>)
    ),
    route!(
        POST,
        post,
        "/v1/roles",
        Grant,
        Write,
        access::role_create,
        "Create a custom role ({name, permissions: [\"resource:action\"]})",
        Answer::Created(schema_of::<berth_model::access::Role>),
        body = schema_of::<berth_model::access::NewRole>
    ),
    route!(
        DELETE,
        delete,
        "/v1/roles/{name}",
        Grant,
        Write,
        access::role_remove,
        "Remove a custom role no grant uses",
        Answer::Empty
    ),
    route!(
        GET,
        get,
        "/v1/grants",
        Grant,
        Read,
        access::grants,
        "List grants",
        Answer::List(schema_of::<berth_model::access::Grant>)
    ),
    route!(
        POST,
        post,
        "/v1/grants",
        Grant,
        Write,
        access::grant_create,
        "Grant a role on a collection to a user, team or organization ({subject, role, collection}); no more than the caller holds there",
        Answer::Created(schema_of::<berth_model::access::Grant>),
        body = schema_of::<berth_model::access::NewGrant>
    ),
    route!(
        DELETE,
        delete,
        "/v1/grants/{id}",
        Grant,
        Write,
        access::grant_remove,
        "Remove a grant",
        Answer::Empty
    ),
    route!(
        GET,
        get,
        "/v1/tokens",
        Profile,
        Read,
        access::tokens,
        "List personal access tokens (the caller's; all for user administrators)",
        Answer::List(schema_of::<berth_model::access::TokenView>)
    ),
    route!(
        POST,
        post,
        "/v1/tokens",
        Profile,
        Write,
        access::token_create,
        "Create a personal access token ({expires_in, scopes, description, user}); the secret is returned once",
        Answer::Created(schema_of::<berth_model::access::TokenCreated>),
        body = schema_of::<berth_model::access::NewToken>
    ),
    route!(
        POST,
        post,
        "/v1/auth/token",
        Profile,
        Write,
        access::token_create,
        "Log in (HTTP Basic) and get a personal access token; the secret is returned once",
        Answer::Created(schema_of::<berth_model::access::TokenCreated>),
        optional_body = schema_of::<berth_model::access::NewToken>
    ),
    route!(
        POST,
        post,
        "/v1/auth/session",
        Profile,
        Write,
        sessions::create,
        "Start a web UI session from a password login: sets the session cookie, returns the CSRF token",
        Answer::Created(schema_of::<berth_model::access::SessionStarted>)
    ),
    route!(
        DELETE,
        delete,
        "/v1/auth/session",
        Profile,
        Write,
        sessions::remove,
        "End the cookie's session",
        Answer::Empty
    ),
    route!(
        DELETE,
        delete,
        "/v1/tokens/{id}",
        Profile,
        Write,
        access::token_remove,
        "Revoke a personal access token",
        Answer::Empty
    ),
    route!(
        GET,
        get,
        "/v1/audit",
        Audit,
        Read,
        access::audit,
        "Audit log entries (?since=RFC3339&user=&limit=)",
        Answer::List(schema_of::<berth_model::audit::AuditEntry>)
    ),
    route!(
        GET,
        get,
        "/v1/audit/verify",
        Audit,
        Read,
        access::audit_verify,
        "Check the audit log's hash chain and signatures",
        Answer::Json(schema_of::<berth_model::audit::Verification>)
    ),
    route!(
        GET,
        get,
        "/v1/directories",
        User,
        Read,
        access::directories,
        "List LDAP/AD directories (bind passwords shown as ***) with their last sync",
        Answer::List(schema_of::<berth_model::directory::DirectoryView>)
    ),
    route!(
        GET,
        get,
        "/v1/directories/{name}",
        User,
        Read,
        access::directory,
        "Show one directory (bind password shown as ***)",
        Answer::Json(schema_of::<berth_model::directory::DirectoryView>)
    ),
    route!(
        PUT,
        put,
        "/v1/directories/{name}",
        User,
        Write,
        access::directory_put,
        "Create or replace a directory (an absent or *** bind_password keeps the stored one)",
        Answer::Json(schema_of::<berth_model::directory::DirectoryView>),
        body = schema_of::<berth_model::directory::Directory>
    ),
    route!(
        DELETE,
        delete,
        "/v1/directories/{name}",
        User,
        Write,
        access::directory_remove,
        "Remove a directory and its team mappings (its users stay)",
        Answer::Empty
    ),
    route!(
        POST,
        post,
        "/v1/directories/sync",
        User,
        Write,
        access::directories_sync,
        "Sync every directory's mapped teams now: users created, members added and removed",
        Answer::List(schema_of::<berth_model::directory::SyncReport>)
    ),
    route!(
        POST,
        post,
        "/v1/directories/{name}/sync",
        User,
        Write,
        access::directory_sync,
        "Sync one directory's mapped teams now",
        Answer::List(schema_of::<berth_model::directory::SyncReport>)
    ),
    route!(
        POST,
        post,
        "/v1/directories/{name}/test",
        User,
        Write,
        access::directory_test,
        "Check a directory: service bind and user search ({user}), and the user's bind with {password}",
        Answer::Json(schema_of::<berth_model::access::DirectoryTestResult>),
        body = schema_of::<berth_model::access::DirectoryTest>
    ),
    route!(
        PUT,
        put,
        "/v1/teams/{name}/directory",
        User,
        Write,
        access::team_directory_set,
        "Sync a team from a directory group ({directory, group: DN, name or (filter)})",
        Answer::Json(schema_of::<berth_model::access::DirectoryGroup>),
        body = schema_of::<berth_model::access::DirectoryGroup>
    ),
    route!(
        DELETE,
        delete,
        "/v1/teams/{name}/directory",
        User,
        Write,
        access::team_directory_unset,
        "Stop syncing a team from a directory (its members stay)",
        Answer::Empty
    ),
    route!(
        GET,
        get,
        "/v1/registry/collections",
        Grant,
        Read,
        collections::list,
        "Which collection registry repositories belong to, by name prefix",
        Answer::List(schema_of::<berth_model::access::RepositoryCollection>)
    ),
    route!(
        PUT,
        put,
        "/v1/registry/collections/{prefix}",
        Grant,
        Write,
        collections::set,
        "Put repositories named PREFIX or PREFIX/... in a collection",
        Answer::Json(schema_of::<berth_model::access::RepositoryCollection>),
        body = schema_of::<berth_model::access::SetCollection>
    ),
    route!(
        DELETE,
        delete,
        "/v1/registry/collections/{prefix}",
        Grant,
        Write,
        collections::remove,
        "Return repositories under PREFIX to the collections above",
        Answer::Empty
    ),
    route!(
        GET,
        get,
        "/v1/audit/export",
        Audit,
        Read,
        audit::export,
        "Every audit entry and signature, for offline verification",
        Answer::Json(schema_of::<berth_model::audit::AuditExport>)
    ),
    route!(
        GET,
        get,
        "/v1/audit/levels",
        Audit,
        Read,
        audit::levels,
        "The audit level of each resource",
        Answer::List(schema_of::<crate::audit::LevelView>)
    ),
    route!(
        PUT,
        put,
        "/v1/audit/levels/{resource}",
        Audit,
        Write,
        audit::set_level,
        "Set a resource's audit level: none, metadata or request",
        Answer::Json(schema_of::<crate::audit::LevelView>),
        body = schema_of::<berth_model::access::SetLevel>
    ),
    route!(GET, get, "/v1/images", Image, Read, images::list, "List images",
        Answer::List(schema_of::<berth_model::Image>)
    ),
    route!(
        GET,
        get,
        "/v1/images/inspect",
        Image,
        Read,
        images::inspect,
        "Inspect an image (?ref=)",
        Answer::Json(schema_of::<berth_model::Image>)
    ),
    route!(
        POST,
        post,
        "/v1/images/load",
        Image,
        Write,
        images::load,
        "Load an OCI layout or docker-save archive (body); NDJSON progress",
        Answer::Other("application/x-ndjson", "NDJSON progress lines (Progress), the result last")
    ),
    route!(
        POST,
        post,
        "/v1/images/pull",
        Image,
        Write,
        images::pull,
        "Pull an image from a registry (?ref=&platform=os/arch&all_platforms=); NDJSON progress",
        Answer::Other("application/x-ndjson", "NDJSON progress lines (Progress), the result last")
    ),
    route!(
        POST,
        post,
        "/v1/images/push",
        Image,
        Write,
        images::push,
        "Push an image to a registry (?ref=); NDJSON progress",
        Answer::Other("application/x-ndjson", "NDJSON progress lines (Progress), the result last")
    ),
    route!(
        POST,
        post,
        "/v1/auth/login",
        Image,
        Write,
        images::login,
        "Check registry credentials ({registry, username, password}) and store them for pulls and pushes",
        Answer::Json(schema_of::<berth_model::LoginAnswer>),
        body = schema_of::<berth_model::LoginRequest>
    ),
    route!(
        POST,
        post,
        "/v1/auth/logout",
        Image,
        Write,
        images::logout,
        "Forget a registry's credentials (?registry=)",
        Answer::Json(schema_of::<berth_model::LoginAnswer>)
    ),
    route!(
        GET,
        get,
        "/v1/images/save",
        Image,
        Read,
        images::save,
        "Save images as an OCI layout tarball (?ref=...)",
        Answer::Other("application/x-tar", "the images as a docker-save archive")
    ),
    route!(
        POST,
        post,
        "/v1/images/tag",
        Image,
        Write,
        images::tag,
        "Tag an image (?source=&target=)",
        Answer::Json(schema_of::<berth_model::Image>)
    ),
    route!(
        DELETE,
        delete,
        "/v1/images",
        Image,
        Write,
        images::remove,
        "Remove an image (?ref=&force=)",
        Answer::List(schema_of::<String>)
    ),
    route!(
        GET,
        get,
        "/v1/containers",
        Container,
        Read,
        containers::list,
        "List containers (?all=)",
        Answer::List(schema_of::<berth_model::Container>)
    ),
    route!(
        POST,
        post,
        "/v1/containers",
        Container,
        Write,
        containers::create,
        "Create a container; with ?start=true (upgraded connection) also start it attached, the 101 naming it in Berth-Container-Id",
        Answer::Other("application/json", "201 with the Container; with ?start=true, 101 and berth's framed stream"),
        body = schema_of::<berth_model::ContainerCreate>
    ),
    route!(
        GET,
        get,
        "/v1/containers/{id}",
        Container,
        Read,
        containers::inspect,
        "Inspect a container",
        Answer::Json(schema_of::<berth_model::Container>)
    ),
    route!(
        DELETE,
        delete,
        "/v1/containers/{id}",
        Container,
        Write,
        containers::remove,
        "Remove a container (?force=)",
        Answer::Empty
    ),
    route!(
        POST,
        post,
        "/v1/containers/{id}/start",
        Container,
        Write,
        containers::start,
        "Start a container; with ?attach= the connection is upgraded to a framed stream",
        Answer::Other("application/vnd.berth.stream", "204 when detached; 101 and berth's framed stream when attached")
    ),
    route!(
        POST,
        post,
        "/v1/containers/{id}/attach",
        Container,
        Exec,
        containers::attach,
        "Attach to a running container (upgrade)",
        Answer::Other("application/vnd.berth.stream", "101 Switching Protocols: the connection carries berth's framed stream (stdin, stdout, stderr, exit)")
    ),
    route!(
        POST,
        post,
        "/v1/containers/{id}/stop",
        Container,
        Write,
        containers::stop,
        "Stop a container (?t=seconds)",
        Answer::Empty
    ),
    route!(
        POST,
        post,
        "/v1/containers/{id}/kill",
        Container,
        Write,
        containers::kill,
        "Send a signal (?signal=)",
        Answer::Empty
    ),
    route!(
        POST,
        post,
        "/v1/containers/{id}/wait",
        Container,
        Read,
        containers::wait,
        "Wait for the container to stop; its exit code",
        Answer::Json(schema_of::<berth_model::ContainerWaited>)
    ),
    route!(
        POST,
        post,
        "/v1/containers/{id}/resize",
        Container,
        Write,
        containers::resize,
        "Resize the container's terminal (?cols=&rows=)",
        Answer::Empty
    ),
    route!(
        GET,
        get,
        "/v1/containers/{id}/logs",
        Container,
        Read,
        containers::logs,
        "Logs as NDJSON (?follow=&tail=)",
        Answer::Other("application/octet-stream", "the log, followed while ?follow=true")
    ),
    route!(
        GET,
        get,
        "/v1/containers/{id}/stats",
        Container,
        Read,
        containers::stats,
        "Resource use from the cgroup (?stream=)",
        Answer::Other("application/x-ndjson", "NDJSON of ContainerStats (one line unless ?stream=true)")
    ),
    route!(
        POST,
        post,
        "/v1/containers/{id}/exec",
        Container,
        Exec,
        containers::exec_create,
        "Create an exec; returns its id",
        Answer::Created(schema_of::<berth_model::ExecCreated>),
        body = schema_of::<berth_model::ExecCreate>
    ),
    route!(
        POST,
        post,
        "/v1/exec/{id}/start",
        Container,
        Exec,
        containers::exec_start,
        "Start an exec (upgrade to a framed stream)",
        Answer::Other("application/vnd.berth.stream", "101 Switching Protocols: the connection carries berth's framed stream (stdin, stdout, stderr, exit)")
    ),
    route!(
        POST,
        post,
        "/v1/registry/gc",
        Registry,
        Write,
        registry::gc,
        "Collect registry blobs no manifest references (?grace=seconds, default 3600)",
        Answer::Json(schema_of::<berth_model::GcReport>)
    ),
    route!(
        GET,
        get,
        "/v1/trust/policies",
        Image,
        Read,
        trust_policy::list,
        "List trust policies: repository patterns and the signers their images need",
        Answer::List(schema_of::<berth_model::TrustPolicy>)
    ),
    route!(
        PUT,
        put,
        "/v1/trust/policies/{pattern}",
        System,
        Write,
        trust_policy::put,
        "Set the trust policy of a repository pattern: {signers, threshold}",
        Answer::Json(schema_of::<berth_model::TrustPolicy>),
        body = schema_of::<berth_model::TrustPolicySpec>
    ),
    route!(
        DELETE,
        delete,
        "/v1/trust/policies/{pattern}",
        System,
        Write,
        trust_policy::remove,
        "Remove the trust policy of a repository pattern",
        Answer::Empty
    ),
    route!(
        POST,
        post,
        "/v1/scans",
        Image,
        Write,
        scans::scan,
        "Scan a local image ({image, checks, deny_licenses, ignore, test, test_healthcheck, test_timeout_secs}); NDJSON progress, the signed record last",
        Answer::Other("application/x-ndjson", "NDJSON scan progress, the signed record last"),
        body = schema_of::<berth_engine::scan::ScanSpec>
    ),
    route!(
        GET,
        get,
        "/v1/scans",
        Image,
        Read,
        scans::list,
        "List certification records, newest first (?image=)",
        Answer::List(schema_of::<berth_engine::scan::ScanRecordSummary>)
    ),
    route!(
        GET,
        get,
        "/v1/scans/webhooks",
        System,
        Read,
        scans::webhooks,
        "The scan webhooks (host only) and their deliveries: state, pending, delivered, failed, last attempt and answer",
        Answer::List(schema_of::<berth_engine::webhooks::WebhookState>)
    ),
    route!(
        GET,
        get,
        "/v1/scans/{id}",
        Image,
        Read,
        scans::get,
        "A certification record: the report as signed JSON and its signature by the cluster key",
        Answer::Json(schema_of::<berth_model::SignedScanRecord>)
    ),
    route!(
        GET,
        get,
        "/v1/vulndb",
        System,
        Read,
        scans::vulndb_status,
        "Vulnerability database: version, import time, advisories per ecosystem",
        Answer::Json(schema_of::<berth_engine::scan::VulnDbStatus>)
    ),
    route!(
        POST,
        post,
        "/v1/vulndb/import",
        System,
        Write,
        scans::vulndb_import,
        "Import OSV data: ?path= on the daemon (unix socket only) or the body (?name=x.zip|x.json); re-evaluates scanned images",
        Answer::Json(schema_of::<berth_engine::scan::VulnDbImport>)
    ),
    route!(
        POST,
        post,
        "/v1/vulndb/update",
        System,
        Write,
        scans::vulndb_update,
        "Download OSV exports ({ecosystems, source}: {source}/{ecosystem}/all.zip) and import them as one import; NDJSON progress, the import's result last; a failed download changes nothing",
        Answer::Other("application/x-ndjson", "NDJSON download and import progress, the import's result last"),
        body = schema_of::<berth_engine::vulndb_update::VulnDbUpdateSpec>
    ),
    route!(
        GET,
        get,
        "/v1/plugins",
        System,
        Read,
        scans::plugins,
        "List installed plugins",
        Answer::List(schema_of::<berth_model::PluginView>)
    ),
    route!(
        POST,
        post,
        "/v1/plugins",
        System,
        Write,
        scans::install_plugin,
        "Install a plugin ({manifest, wasm: base64})",
        Answer::Json(schema_of::<berth_model::PluginView>),
        body = schema_of::<berth_model::PluginInstall>
    ),
    route!(
        POST,
        post,
        "/v1/plugins/pull",
        System,
        Write,
        scans::pull_plugin,
        "Install a plugin from a registry's OCI artifact (?ref=&digest=)",
        Answer::Json(schema_of::<berth_model::PluginView>)
    ),
    route!(
        GET,
        get,
        "/v1/plugins/{name}",
        System,
        Read,
        scans::plugin,
        "Inspect a plugin (?version=)",
        Answer::Json(schema_of::<berth_model::PluginView>)
    ),
    route!(
        DELETE,
        delete,
        "/v1/plugins/{name}",
        System,
        Write,
        scans::remove_plugin,
        "Remove a plugin (?version=)",
        Answer::Json(schema_of::<berth_model::PluginView>)
    ),
    route!(
        POST,
        post,
        "/v1/plugins/{name}/enable",
        System,
        Write,
        scans::enable_plugin,
        "Enable a plugin version (?version=)",
        Answer::Json(schema_of::<berth_model::PluginView>)
    ),
    route!(
        POST,
        post,
        "/v1/plugins/{name}/disable",
        System,
        Write,
        scans::disable_plugin,
        "Disable a plugin (?version=)",
        Answer::Json(schema_of::<berth_model::PluginView>)
    ),
    route!(
        POST,
        post,
        "/v1/plugins/{name}/push",
        System,
        Write,
        scans::push_plugin,
        "Push a plugin to a registry as an OCI artifact (?ref=&version=)",
        Answer::Json(schema_of::<berth_model::PluginPushed>)
    ),
    route!(
        GET,
        get,
        "/v2/",
        Repository,
        Pull,
        registry::ping,
        "OCI Distribution: API version check",
        Answer::Other("application/json", "the OCI Distribution protocol: manifests, blobs, tags and errors as the Distribution spec gives them")
    ),
    route!(
        GET,
        get,
        "/v2/{*path}",
        Repository,
        Pull,
        registry::dispatch,
        "OCI Distribution: pull (blobs, manifests, tags, catalog, referrers, upload status)",
        Answer::Other("application/json", "the OCI Distribution protocol: manifests, blobs, tags and errors as the Distribution spec gives them")
    ),
    route!(
        HEAD,
        head,
        "/v2/{*path}",
        Repository,
        Pull,
        registry::dispatch,
        "OCI Distribution: blob and manifest existence",
        Answer::Other("application/json", "the headers of a manifest or blob (Docker-Content-Digest, Content-Length)")
    ),
    route!(
        POST,
        post,
        "/v2/{*path}",
        Repository,
        Push,
        registry::dispatch,
        "OCI Distribution: start an upload, monolithic upload, cross-repository mount",
        Answer::Other("application/json", "the OCI Distribution protocol: manifests, blobs, tags and errors as the Distribution spec gives them")
    ),
    route!(
        PATCH,
        patch,
        "/v2/{*path}",
        Repository,
        Push,
        registry::dispatch,
        "OCI Distribution: upload a chunk",
        Answer::Other("application/json", "the OCI Distribution protocol: manifests, blobs, tags and errors as the Distribution spec gives them")
    ),
    route!(
        PUT,
        put,
        "/v2/{*path}",
        Repository,
        Push,
        registry::dispatch,
        "OCI Distribution: finish an upload, push a manifest",
        Answer::Other("application/json", "the OCI Distribution protocol: manifests, blobs, tags and errors as the Distribution spec gives them")
    ),
    route!(
        DELETE,
        delete,
        "/v2/{*path}",
        Repository,
        Delete,
        registry::dispatch,
        "OCI Distribution: delete a manifest, tag, blob or upload",
        Answer::Other("application/json", "the OCI Distribution protocol: manifests, blobs, tags and errors as the Distribution spec gives them")
    ),
];

pub fn lookup(method: &Method, path: &str) -> Option<&'static Route> {
    TABLE.iter().find(|r| r.method == *method && r.path == path)
}

pub fn build(state: AppState) -> Router {
    let mut by_path: std::collections::BTreeMap<&str, MethodRouter<AppState>> = Default::default();
    for route in TABLE {
        let h = (route.handler)();
        let merged = match by_path.remove(route.path) {
            Some(existing) => existing.merge(h),
            None => h,
        };
        by_path.insert(route.path, merged);
    }
    let mut router: Router<AppState> = Router::new();
    for (path, mr) in by_path {
        router = router.route(path, mr);
    }
    router
        .layer(axum::middleware::from_fn(crate::limits::layer))
        .layer(axum::middleware::from_fn_with_state(state.clone(), authz::layer))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::layer))
        .fallback(|| async { crate::error::ApiErrorResponse(berth_model::ApiError::not_found("no such API route")) })
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_unique() {
        for r in TABLE {
            assert_eq!(
                TABLE
                    .iter()
                    .filter(|o| o.path == r.path && o.method == r.method)
                    .count(),
                1,
                "{}",
                r.path
            );
        }
    }
}
