//! The one authorization check. Every route declares (resource, action);
//! this layer authenticates TCP callers (a personal access token
//! `Authorization: Bearer berth_pat_...` or HTTP Basic user:password), asks
//! [`berth_auth::Index::decide`] whether the caller may before the handler
//! runs, and appends mutating requests, logins and denials to the audit
//! log. The unix socket's caller is the admin.
//!
//! Registry routes are checked per (repository, action) from the path
//! ([`crate::registry::scopes`]). A caller may present a bearer token from
//! `/v2/token`; it counts for exactly the scopes it names. Which scopes a
//! caller may get is [`grantable`], answered from the caller's grants.
//!
//! Handlers that need more than the route's permission (a create naming a
//! collection, host bind mounts, privileged containers) ask [`check`]: the
//! decision stays here and in `berth_auth`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub use berth_auth::{Action, Resource};
use berth_auth::{AuthFailure, Caller, Decision, Identity, Index, NewAuditEntry, Where};
use berth_model::{ApiError, ErrorCode};
use berth_registry::token::Claims;

use crate::error::ApiErrorResponse;
use crate::routes;
use crate::AppState;

/// Who is calling. Set by the listener (the socket: `Admin`); a TCP caller
/// with valid credentials becomes `User`; on registry routes an anonymous
/// caller that presents a valid registry token is `Bearer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Anonymous,
    /// Exactly the scopes its registry token grants.
    Bearer(Arc<Claims>),
    /// A user authenticated by password or personal access token.
    User(Arc<Identity>),
}

impl Principal {
    pub fn caller(&self) -> Caller<'_> {
        match self {
            Principal::Admin => Caller::Admin,
            Principal::User(identity) => Caller::User(identity),
            Principal::Anonymous | Principal::Bearer(_) => Caller::Anonymous,
        }
    }

    /// The name the audit log and tokens show.
    pub fn name(&self) -> String {
        match self {
            Principal::Admin => "admin".into(),
            Principal::User(identity) => identity.name.clone(),
            Principal::Bearer(claims) => claims.sub.clone(),
            Principal::Anonymous => "anonymous".into(),
        }
    }
}

/// How a listener treats registry callers without a token (`berth daemon
/// --registry-auth`). Set per listener, like the principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RegistryAuth {
    /// They may pull and push: the registry is open on loopback.
    #[default]
    Open,
    /// They get the `401 WWW-Authenticate: Bearer` challenge and come back
    /// with a token from `/v2/token`.
    Token,
}

/// Where a request came in: the listener's scheme and the address the
/// daemon advertises. Challenges name it, so a client is sent back to the
/// listener it used. Set per listener; absent means plain HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: &'static str,
    /// `--advertise-addr` when it names a port: the address clients use
    /// (through a proxy, for example), which the `Host` header may not be.
    pub advertised: Option<Arc<str>>,
}

impl Default for Origin {
    fn default() -> Self {
        Origin {
            scheme: "http",
            advertised: None,
        }
    }
}

/// What a registry request touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `GET /v2/`: any authenticated caller.
    Base,
    /// `/v2/_catalog`: scope `registry:catalog:*`.
    Catalog,
    /// A repository: scope `repository:NAME:ACTIONS`.
    Repository(String),
}

impl Target {
    /// The scope a token needs to do `action` here (`None` for the base).
    pub fn scope(&self, action: Action) -> Option<String> {
        match self {
            Target::Base => None,
            Target::Catalog => Some("registry:catalog:*".into()),
            // As Distribution does: push asks for pull too, clients need both.
            Target::Repository(name) if action == Action::Push => Some(format!("repository:{name}:pull,push")),
            Target::Repository(name) => Some(format!("repository:{name}:{}", action.scope_name())),
        }
    }
}

/// The index of the state's access service (empty without one).
pub fn index(state: &AppState) -> Arc<Index> {
    state.access.as_ref().map(|a| a.index()).unwrap_or_default()
}

/// The user's decision on a registry target.
fn user_registry_decision(index: &Index, caller: &Caller, target: &Target, action: Action) -> bool {
    match target {
        Target::Base => true,
        Target::Catalog => index
            .decide(caller, Resource::Repository, Action::Pull, Where::In("/"))
            .allowed(),
        Target::Repository(name) => index
            .decide(
                caller,
                Resource::Repository,
                action,
                Where::In(index.repository_collection(name)),
            )
            .allowed(),
    }
}

/// The registry decision: may `principal` do `action` on `target`?
pub fn registry_allowed(
    index: &Index,
    principal: &Principal,
    auth: RegistryAuth,
    target: &Target,
    action: Action,
) -> bool {
    let by_token = |claims: &Claims| match target {
        Target::Base => true,
        Target::Catalog => claims.grants("registry", "catalog", action.scope_name()),
        Target::Repository(name) => claims.grants("repository", name, action.scope_name()),
    };
    // An open registry lets anonymous callers pull and push (the layer
    // treats a DELETE request as on a token listener).
    let open = auth == RegistryAuth::Open;
    match principal {
        Principal::Admin => true,
        Principal::Anonymous => open,
        Principal::Bearer(claims) => open || by_token(claims),
        // A user keeps their roles on every listener: a view-only user or
        // token never pushes, even where anonymous callers may.
        Principal::User(_) => user_registry_decision(index, &principal.caller(), target, action),
    }
}

/// The token endpoint's decision: which of the `requested` actions on
/// `target` `principal` may have in a token.
pub fn grantable(
    index: &Index,
    principal: &Principal,
    on_loopback: bool,
    target: &Target,
    requested: &[Action],
) -> Vec<Action> {
    match principal {
        Principal::Admin => requested.to_vec(),
        Principal::User(_) => requested
            .iter()
            .copied()
            .filter(|a| *target != Target::Base && user_registry_decision(index, &principal.caller(), target, *a))
            .collect(),
        // Anonymous callers off loopback (the TLS listener) get nothing.
        Principal::Anonymous | Principal::Bearer(_) if !on_loopback => Vec::new(),
        // Anonymous callers on loopback may pull and push, and list the catalog.
        Principal::Anonymous | Principal::Bearer(_) => requested
            .iter()
            .copied()
            .filter(|a| match target {
                Target::Base => false,
                Target::Catalog => *a == Action::Pull,
                Target::Repository(_) => matches!(a, Action::Pull | Action::Push),
            })
            .collect(),
    }
}

/// A handler's extra check (the collection a create names, host mounts,
/// privileged containers): the error says who may not do what.
pub fn check(
    state: &AppState,
    principal: &Principal,
    resource: Resource,
    action: Action,
    at: Where,
) -> Result<(), ApiError> {
    match index(state).decide(&principal.caller(), resource, action, at) {
        Decision::Allow => Ok(()),
        Decision::Deny(reason) => Err(denial(principal, &reason)),
    }
}

/// A refusal: 401 with the challenges for a caller who presented no
/// credentials (RFC 9110: it may retry with some), 403 for an
/// authenticated caller who lacks the grant. Bad credentials are 401 too
/// (see [`layer`]).
fn denial(principal: &Principal, reason: &str) -> ApiError {
    match principal {
        Principal::Anonymous | Principal::Bearer(_) => {
            ApiError::new(ErrorCode::Unauthorized, crate::error::AUTHENTICATION_REQUIRED)
        }
        Principal::Admin | Principal::User(_) => ApiError::new(ErrorCode::Forbidden, reason.to_string()),
    }
}

/// `berth run` asks for more than container write when it mounts host
/// paths or runs privileged (or in the host user namespace).
pub fn check_container_create(
    state: &AppState,
    principal: &Principal,
    spec: &berth_model::ContainerCreate,
) -> Result<String, ApiError> {
    let collection = berth_auth::collection_path(spec.collection.as_deref().unwrap_or("/")).ok_or_else(|| {
        ApiError::invalid(format!(
            "invalid collection {:?}",
            spec.collection.as_deref().unwrap_or("")
        ))
    })?;
    let at = Where::In(&collection);
    check(state, principal, Resource::Container, Action::Write, at)?;
    if !spec.binds.is_empty() {
        check(state, principal, Resource::Container, Action::HostMount, at)?;
    }
    if spec.privileged || spec.userns.as_deref() == Some("host") {
        check(state, principal, Resource::Container, Action::Privileged, at)?;
    }
    Ok(collection)
}

/// The claims of an `Authorization: Bearer` token that `registry` signed, if valid.
fn bearer(req: &Request, registry: Option<&berth_registry::Registry>) -> Option<Arc<Claims>> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let registry = registry?;
    match registry.token_key().verify(token.trim(), registry.now_secs()) {
        Ok(claims) => Some(Arc::new(claims)),
        Err(e) => {
            tracing::debug!(error = %e, "bearer token refused");
            None
        }
    }
}

/// Credentials a request carries.
enum Credentials {
    None,
    Token(String),
    Basic(String, String),
    /// The web UI's session cookie.
    Session(String),
}

/// The session cookie's value, when the request carries one.
pub fn session_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == berth_auth::session::SESSION_COOKIE)
        .map(|(_, value)| value.to_string())
}

fn credentials(req: &Request) -> Credentials {
    let Some(value) = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return match session_cookie(req.headers()) {
            Some(token) => Credentials::Session(token),
            None => Credentials::None,
        };
    };
    let Some((scheme, rest)) = value.split_once(' ') else {
        return Credentials::None;
    };
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") && rest.starts_with(berth_auth::access::TOKEN_PREFIX) {
        return Credentials::Token(rest.to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        if let Some((user, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
            // A personal access token works as a Basic password too (docker login).
            if password.starts_with(berth_auth::access::TOKEN_PREFIX) {
                return Credentials::Token(password.to_string());
            }
            return Credentials::Basic(user.to_string(), password.to_string());
        }
        return Credentials::Basic(String::new(), String::new());
    }
    Credentials::None
}

/// The peer's address, when the listener records it.
fn source(req: &Request, principal: &Principal) -> Option<String> {
    if *principal == Principal::Admin {
        return Some("local".into());
    }
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
}

/// The audit level set for `resource` (metadata without access control).
fn audit_level(state: &AppState, resource: Resource) -> berth_auth::AuditLevel {
    match &state.access {
        Some(a) => a.audit_level(resource),
        None => berth_auth::audit::level(resource),
    }
}

/// Appends to the audit log (blocking work, see `crate::blocking`); a failure
/// is logged (without the entry's content) and does not fail the request.
/// Whether the entry was written (durably).
/// With `begun`, the entry is the outcome of a change recorded as started.
async fn audit(state: &AppState, entry: NewAuditEntry, begun: Option<berth_auth::audit::Begun>) -> bool {
    let Some(access) = state.access.clone() else {
        return false;
    };
    let appended = crate::blocking::blocking(move || match begun {
        Some(b) => access.audit_finish(b, entry),
        None => access.audit_append(entry),
    });
    match appended.await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot append to the audit log");
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "audit append task failed");
            false
        }
    }
}

struct RequestFacts {
    action: String,
    resource: Resource,
    /// The route declares a read (`POST .../wait` is one): audited as a read.
    reads: bool,
    object: String,
    source: String,
}

impl RequestFacts {
    fn entry(&self, user: String, result: &str, status: StatusCode, detail: String) -> NewAuditEntry {
        NewAuditEntry {
            user,
            source: self.source.clone(),
            action: self.action.clone(),
            resource: self.resource.name().to_string(),
            object: self.object.clone(),
            result: result.to_string(),
            status: status.as_u16(),
            detail,
        }
    }
}

fn unauthorized(message: &str) -> Response {
    ApiErrorResponse(ApiError::new(ErrorCode::Unauthorized, message.to_string())).into_response()
}

/// The container a container or exec route touches, to find its collection.
fn object_collection(state: &AppState, req: &Request, resource: Resource) -> Option<String> {
    if resource != Resource::Container {
        return None;
    }
    let mut segments = req.uri().path().split('/').skip(2);
    let id = match (segments.next(), segments.next()) {
        (Some("containers"), Some(id)) if !id.is_empty() => id.to_string(),
        (Some("exec"), Some(exec_id)) => state.engine.exec_container(exec_id)?,
        _ => return None,
    };
    let container = state.engine.get(&id).ok()?;
    Some(container.spec.collection.unwrap_or_else(|| "/".into()))
}

pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(path) = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()) else {
        return next.run(req).await;
    };
    let mut principal = req
        .extensions()
        .get::<Principal>()
        .cloned()
        .unwrap_or(Principal::Anonymous);
    let Some(route) = routes::lookup(req.method(), &path) else {
        // A route without a declared permission is a bug: refuse rather than guess.
        return ApiErrorResponse(ApiError::new(
            ErrorCode::Forbidden,
            format!("{} {path} declares no permission", req.method()),
        ))
        .into_response();
    };
    let level = audit_level(&state, route.resource);
    let facts = RequestFacts {
        action: format!("{} {path}", req.method()),
        resource: route.resource,
        reads: route.action == Action::Read,
        object: match (level, req.uri().query()) {
            (berth_auth::AuditLevel::Request, Some(q)) => format!("{}?{q}", req.uri().path()),
            _ => req.uri().path().to_string(),
        },
        source: source(&req, &principal).unwrap_or_else(|| "unknown".into()),
    };
    let peer = source(&req, &principal);

    // Authentication: only callers the listener left anonymous.
    if principal == Principal::Anonymous {
        let outcome = match (credentials(&req), state.access.clone()) {
            (Credentials::None, _) => None,
            (_, None) => Some(Err(AuthFailure {
                user: None,
                reason: "access control is not available",
            })),
            (Credentials::Token(token), Some(access)) => Some(access.authenticate_token(&token, peer.as_deref())),
            (Credentials::Session(token), Some(access)) => {
                let csrf = req
                    .headers()
                    .get(berth_auth::session::CSRF_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let changing = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
                Some(
                    crate::blocking::blocking(move || access.authenticate_session(&token, csrf.as_deref(), changing))
                        .await
                        .unwrap_or(Err(AuthFailure {
                            user: None,
                            reason: "session task failed",
                        })),
                )
            }
            (Credentials::Basic(user, password), Some(access)) => {
                // argon2 takes tens of milliseconds: never on an async worker
                // that other tasks wait for.
                let peer = peer.clone();
                Some(
                    crate::blocking::blocking(move || access.authenticate_login(&user, &password, peer.as_deref()))
                        .await
                        .unwrap_or(Err(AuthFailure {
                            user: None,
                            reason: "login task failed",
                        })),
                )
            }
        };
        match outcome {
            None => {}
            Some(Ok(identity)) => principal = Principal::User(Arc::new(identity)),
            Some(Err(failure)) => {
                let user = failure.user.clone().unwrap_or_else(|| "unknown".into());
                let mut entry = facts.entry(user, "failed", StatusCode::UNAUTHORIZED, failure.reason.to_string());
                entry.action = format!("login ({})", entry.action);
                if failure.reason == "CSRF token missing or wrong" {
                    entry.status = StatusCode::FORBIDDEN.as_u16();
                    entry.result = "denied".into();
                    audit(&state, entry, None).await;
                    return ApiErrorResponse(ApiError::new(
                        ErrorCode::Forbidden,
                        format!(
                            "a change through a session needs its CSRF token in the {} header",
                            berth_auth::session::CSRF_HEADER
                        ),
                    ))
                    .into_response();
                }
                audit(&state, entry, None).await;
                return unauthorized("invalid credentials");
            }
        }
    }

    let index = index(&state);
    if route.resource == Resource::Repository {
        let scopes = crate::registry::scopes(req.method(), req.uri().path(), req.uri().query());
        let deletes = req.method() == Method::DELETE && scopes.iter().any(|(_, a)| *a == Action::Delete);
        let auth = match req.extensions().get::<RegistryAuth>().copied().unwrap_or_default() {
            // Open means anonymous pulls and pushes, nothing more: a delete
            // (not an upload's cancel, part of a push) takes a user allowed
            // to delete, or their token (berth's trust client gets one from
            // its daemon for the signatures it removes).
            RegistryAuth::Open if deletes => RegistryAuth::Token,
            auth => auth,
        };
        // A token that does not verify counts for nothing: the caller is
        // anonymous and, when that is not enough, gets the challenge again.
        let principal = match principal {
            Principal::Anonymous => {
                bearer(&req, state.registry.as_ref()).map_or(Principal::Anonymous, Principal::Bearer)
            }
            other => other,
        };
        for (target, action) in scopes {
            if !registry_allowed(&index, &principal, auth, &target, action) {
                let origin = req.extensions().get::<Origin>().cloned().unwrap_or_default();
                let response = crate::registry::denied(&principal, &origin, req.headers(), &target, action);
                let detail = format!("{} may not {} {:?}", principal.name(), action.scope_name(), target);
                audit(
                    &state,
                    facts.entry(principal.name(), "denied", response.status(), detail),
                    None,
                )
                .await;
                return response;
            }
        }
        return run_audited(&state, principal, facts, req, next).await;
    }
    if route.public {
        return run_audited(&state, principal, facts, req, next).await;
    }
    let collection = match principal {
        Principal::Admin => None,
        _ => object_collection(&state, &req, route.resource),
    };
    let at = collection.as_deref().map_or(Where::Anywhere, Where::In);
    if let Decision::Deny(reason) = index.decide(&principal.caller(), route.resource, route.action, at) {
        let response = ApiErrorResponse(denial(&principal, &reason)).into_response();
        audit(
            &state,
            facts.entry(principal.name(), "denied", response.status(), reason),
            None,
        )
        .await;
        return response;
    }
    run_audited(&state, principal, facts, req, next).await
}

/// Runs the handler with the principal attached; mutating requests are
/// audited with their status.
async fn run_audited(
    state: &AppState,
    principal: Principal,
    facts: RequestFacts,
    mut req: Request,
    next: Next,
) -> Response {
    // A change is what the route declares, not its method: waiting (POST) reads.
    let mutating = !matches!(*req.method(), Method::GET | Method::HEAD) && !facts.reads;
    let name = principal.name();
    let level = audit_level(state, facts.resource);
    let recorded = match level {
        berth_auth::AuditLevel::None => false,
        berth_auth::AuditLevel::Metadata => mutating,
        berth_auth::AuditLevel::Request => true,
    };
    // The audit fails closed: a change is recorded as started before it is
    // made, and not made when that record cannot be written.
    let mut begun = None;
    if recorded && mutating {
        if let Some(access) = state.access.clone() {
            let entry = facts.entry(name.clone(), "started", StatusCode::CONTINUE, String::new());
            let answer = crate::blocking::blocking(move || access.audit_begin(entry)).await;
            if let Some(e) = match answer {
                Ok(Ok(b)) => {
                    begun = Some(b);
                    None
                }
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(e.to_string()),
            } {
                tracing::error!(error = %e, action = %facts.action, "refusing a change the audit log cannot record");
                return ApiErrorResponse(ApiError::new(
                    ErrorCode::Unavailable,
                    format!("nothing was changed: the audit log cannot be written ({e})"),
                ))
                .into_response();
            }
        }
    }
    req.extensions_mut().insert(principal);
    let (gate, gate_rx) = tokio::sync::watch::channel(false);
    req.extensions_mut().insert(crate::AuditGate(gate_rx));
    let mut response = next.run(req).await;
    let unflushed = response.extensions_mut().remove::<crate::Unflushed>();
    let status = response.status();
    let denied = status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED;
    if denied || recorded {
        let detail = response
            .extensions()
            .get::<crate::error::Denied>()
            .map(|d| d.0.clone())
            .unwrap_or_default();
        let result = if denied {
            "denied"
        } else if status.is_success() || status.is_informational() || status.is_redirection() {
            "allowed"
        } else {
            "failed"
        };
        let entry = facts.entry(name, result, status, detail);
        if status == StatusCode::SWITCHING_PROTOCOLS {
            // The stream waits for the entry at its end (`AuditGate`).
            let state = state.clone();
            tokio::spawn(async move {
                audit(&state, entry, begun).await;
                let _ = gate.send(true);
            });
        } else {
            audit(state, entry, begun).await;
        }
    }
    if let Some(crate::Unflushed(commit)) = unflushed {
        let engine = state.engine.clone();
        let flushed = crate::blocking::blocking(move || engine.make_durable(commit)).await;
        if let Some(e) = match flushed {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        } {
            tracing::error!(error = %e, "cannot flush the store after a start");
            return ApiErrorResponse(ApiError::internal(format!(
                "the container started, but its record could not be written to disk: {e}"
            )))
            .into_response();
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(scopes: &[&str]) -> Principal {
        Principal::Bearer(Arc::new(Claims {
            iss: "berth".into(),
            sub: "anonymous".into(),
            aud: "berth".into(),
            iat: 0,
            exp: u64::MAX,
            access: scopes
                .iter()
                .map(|s| berth_registry::token::Access::parse(s).expect("scope"))
                .collect(),
        }))
    }

    /// `route_roles.txt`: (method, path, class) per line.
    fn route_roles() -> Vec<(&'static str, &'static str, &'static str)> {
        include_str!("route_roles.txt")
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| {
                let mut f = l.split_whitespace();
                match (f.next(), f.next(), f.next(), f.next()) {
                    (Some(m), Some(p), Some(c), None) => (m, p, c),
                    _ => panic!("route_roles.txt: bad line {l:?}"),
                }
            })
            .collect()
    }

    /// Every route in the table against every built-in role (and an
    /// anonymous caller): a route added without a line in
    /// `route_roles.txt` fails.
    #[test]
    fn every_route_against_every_role() {
        const VIEW: &str = "view-only restricted-control full-control admin";
        const PUBLIC: &str = "anonymous none view-only restricted-control scheduler full-control admin";
        const SELF: &str = "none view-only restricted-control scheduler full-control admin";
        const WRITE: &str = "restricted-control full-control admin";
        const EXEC: &str = "full-control admin";
        const ADMIN: &str = "admin";
        let expected: Vec<(&str, &str, &str)> = route_roles()
            .into_iter()
            .map(|(m, p, who)| {
                let roles = match who {
                    "PUBLIC" => PUBLIC,
                    "SELF" => SELF,
                    "VIEW" => VIEW,
                    "WRITE" => WRITE,
                    "EXEC" => EXEC,
                    "ADMIN" => ADMIN,
                    other => panic!("route_roles.txt: {m} {p}: unknown class {other}"),
                };
                (m, p, roles)
            })
            .collect();
        let users: Vec<String> = berth_auth::BUILTIN_ROLES.iter().map(|r| format!("u-{r}")).collect();
        let grants: Vec<berth_auth::Grant> = berth_auth::BUILTIN_ROLES
            .iter()
            .map(|r| berth_auth::Grant {
                id: format!("g-{r}"),
                subject: format!("user:u-{r}"),
                role: r.to_string(),
                collection: "/".into(),
                created: String::new(),
            })
            .collect();
        let index = Index::build(&users, &[], &[], &[], &grants, &[]);
        let mut problems = Vec::new();
        for route in crate::routes::TABLE {
            let method = route.method.as_str();
            let Some((_, _, allowed)) = expected
                .iter()
                .find(|(m, p, _)| *m == method && *p == crate::openapi::openapi_path(route.path))
            else {
                problems.push(format!(
                    "{method} {} has no line in this test: say which roles may call it",
                    route.path
                ));
                continue;
            };
            let allowed: Vec<&str> = allowed.split(' ').collect();
            for role in berth_auth::BUILTIN_ROLES.iter().copied().chain(["anonymous"]) {
                let identity = Identity {
                    name: format!("u-{role}"),
                    scopes: None,
                    token_id: None,
                };
                let caller = if role == "anonymous" {
                    Caller::Anonymous
                } else {
                    Caller::User(&identity)
                };
                // The registry's ping answers any authenticated caller.
                let ping = route.path == "/v2/" && role != "anonymous";
                let got = route.public
                    || ping
                    || index
                        .decide(&caller, route.resource, route.action, Where::In("/"))
                        .allowed();
                if got != allowed.contains(&role) {
                    problems.push(format!("{method} {} as {role}: allowed={got}", route.path));
                }
            }
        }
        for (m, p, _) in &expected {
            if !crate::routes::TABLE
                .iter()
                .any(|r| r.method.as_str() == *m && crate::openapi::openapi_path(r.path) == *p)
            {
                problems.push(format!("{m} {p} is in this test but not in the route table"));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn a_grant_on_a_collection_covers_its_descendants_only() {
        let users = vec!["alice".to_string(), "bob".to_string()];
        let teams = vec![berth_auth::Team {
            name: "team-a".into(),
            members: ["bob".to_string()].into(),
            created: String::new(),
        }];
        let grants = vec![
            berth_auth::Grant {
                id: "1".into(),
                subject: "user:alice".into(),
                role: "full-control".into(),
                collection: "/shared/team-a".into(),
                created: String::new(),
            },
            berth_auth::Grant {
                id: "2".into(),
                subject: "team:team-a".into(),
                role: "view-only".into(),
                collection: "/shared".into(),
                created: String::new(),
            },
        ];
        let index = Index::build(&users, &teams, &[], &[], &grants, &[]);
        let id = |n: &str| Identity {
            name: n.into(),
            scopes: None,
            token_id: None,
        };
        let (alice, bob) = (id("alice"), id("bob"));
        let may = |who: &Identity, a: Action, at: Where| {
            index.decide(&Caller::User(who), Resource::Container, a, at).allowed()
        };
        assert!(may(&alice, Action::Exec, Where::In("/shared/team-a/x")));
        assert!(!may(&alice, Action::Read, Where::In("/shared/team-b")));
        assert!(!may(&alice, Action::Read, Where::In("/")));
        assert!(may(&alice, Action::Write, Where::Anywhere));
        assert!(may(&bob, Action::Read, Where::In("/shared/team-b")));
        assert!(!may(&bob, Action::Write, Where::In("/shared/team-a")));
        let read_only = Identity {
            scopes: Some(Arc::new(vec!["read".into()])),
            ..id("alice")
        };
        assert!(!may(&read_only, Action::Exec, Where::In("/shared/team-a")));
        assert!(may(&read_only, Action::Read, Where::In("/shared/team-a")));
    }

    #[test]
    fn registry_decisions() {
        use Action::*;
        use RegistryAuth::*;
        let repo = |n: &str| Target::Repository(n.into());
        let ab = bearer(&["repository:a/b:pull,push"]);
        let catalog = bearer(&["registry:catalog:*"]);
        // (principal, listener, target, action, allowed)
        let cases = [
            (&Principal::Admin, Token, repo("a/b"), Delete, true),
            (&Principal::Anonymous, Open, repo("a/b"), Push, true),
            (&Principal::Anonymous, Open, Target::Catalog, Pull, true),
            (&Principal::Anonymous, Open, repo("a/b"), Delete, true),
            (&ab, Open, repo("a/b"), Delete, true),
            (&Principal::Anonymous, Token, Target::Base, Pull, false),
            (&Principal::Anonymous, Token, repo("a/b"), Pull, false),
            (&ab, Token, Target::Base, Pull, true),
            (&ab, Token, repo("a/b"), Push, true),
            (&ab, Token, repo("a/b"), Delete, false),
            (&ab, Token, repo("a/c"), Pull, false),
            (&ab, Token, Target::Catalog, Pull, false),
            (&catalog, Token, Target::Catalog, Pull, true),
            (&ab, Open, repo("a/c"), Push, true),
        ];
        for (principal, auth, target, action, expected) in cases {
            assert_eq!(
                registry_allowed(&Index::default(), principal, auth, &target, action),
                expected,
                "{principal:?} on a {auth:?} listener: {action:?} {target:?}"
            );
        }
    }

    #[test]
    fn what_the_token_endpoint_grants() {
        use Action::*;
        let repo = Target::Repository("a/b".into());
        assert_eq!(
            grantable(&Index::default(), &Principal::Admin, true, &repo, &[Pull, Push, Delete]),
            vec![Pull, Push, Delete]
        );
        assert_eq!(
            grantable(
                &Index::default(),
                &Principal::Anonymous,
                true,
                &repo,
                &[Pull, Push, Delete]
            ),
            vec![Pull, Push]
        );
        // Off loopback (the TLS listener), an anonymous caller gets no token scope at all.
        assert_eq!(
            grantable(&Index::default(), &Principal::Anonymous, false, &repo, &[Pull, Push]),
            vec![]
        );
        assert_eq!(
            grantable(
                &Index::default(),
                &Principal::Anonymous,
                true,
                &Target::Catalog,
                &[Pull]
            ),
            vec![Pull]
        );
        assert_eq!(
            grantable(&Index::default(), &Principal::Anonymous, true, &Target::Base, &[Pull]),
            vec![]
        );
    }

    #[test]
    fn challenge_scopes() {
        let repo = Target::Repository("a/b".into());
        assert_eq!(repo.scope(Action::Pull).as_deref(), Some("repository:a/b:pull"));
        assert_eq!(repo.scope(Action::Push).as_deref(), Some("repository:a/b:pull,push"));
        assert_eq!(repo.scope(Action::Delete).as_deref(), Some("repository:a/b:delete"));
        assert_eq!(
            Target::Catalog.scope(Action::Pull).as_deref(),
            Some("registry:catalog:*")
        );
        assert_eq!(Target::Base.scope(Action::Pull), None);
    }
}
