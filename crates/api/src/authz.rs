//! The one authorization check. Every route declares (resource, action);
//! this layer asks whether the caller may, before the handler runs. Today the
//! unix socket's caller is the admin; users, teams and grants will answer
//! here without any handler changing.
//!
//! Registry routes are checked per (repository, action) from the path
//! ([`crate::registry::scopes`]). A caller may present a bearer token from
//! `/v2/token`; it counts for exactly the scopes it names. Which scopes a
//! caller may get is [`grantable`]: the one function users and roles replace.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use berth_registry::token::Claims;

use crate::error::ApiErrorResponse;
use crate::routes;
use crate::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    System,
    Image,
    Container,
    /// Registry administration (garbage collection).
    Registry,
    /// A registry repository; which one comes from the request path
    /// ([`crate::registry::scopes`]).
    Repository,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Write,
    Exec,
    /// Registry actions, as in a token scope `repository:NAME:pull,push,delete`.
    Pull,
    Push,
    Delete,
}

impl Action {
    /// The action's name in a registry token scope.
    pub fn scope_name(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
            Action::Read => "read",
            Action::Write => "write",
            Action::Exec => "exec",
        }
    }
}

/// Who is calling. Set by the listener (the socket: `Admin`); on registry
/// routes an anonymous caller that presents a valid bearer token is `Bearer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Anonymous,
    /// Exactly the scopes its registry token grants.
    Bearer(Arc<Claims>),
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

/// The API decision (not the registry's: see [`registry_allowed`]).
pub fn allowed(principal: &Principal, resource: Resource, action: Action) -> bool {
    match principal {
        Principal::Admin => true,
        // Until users and roles exist, anonymous callers may read the system
        // info: the only anonymous listener is the loopback one
        // (`--insecure-listen` refuses other addresses).
        Principal::Anonymous | Principal::Bearer(_) => resource == Resource::System && action == Action::Read,
    }
}

/// The registry decision: may `principal` do `action` on `target`?
pub fn registry_allowed(principal: &Principal, auth: RegistryAuth, target: &Target, action: Action) -> bool {
    let by_token = |claims: &Claims| match target {
        Target::Base => true,
        Target::Catalog => claims.grants("registry", "catalog", action.scope_name()),
        Target::Repository(name) => claims.grants("repository", name, action.scope_name()),
    };
    match principal {
        Principal::Admin => true,
        Principal::Anonymous => auth == RegistryAuth::Open,
        Principal::Bearer(claims) => auth == RegistryAuth::Open || by_token(claims),
    }
}

/// The token endpoint's decision: which of the `requested` actions on
/// `target` `principal` may have in a token. Users and roles (issue 4) will
/// answer here from per-repository grants; everything else stays.
pub fn grantable(principal: &Principal, target: &Target, requested: &[Action]) -> Vec<Action> {
    match principal {
        Principal::Admin => requested.to_vec(),
        // Anyone who reaches the token endpoint is on loopback (the socket's
        // admin aside): they may pull and push, and list the catalog.
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

pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(path) = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()) else {
        return next.run(req).await;
    };
    let principal = req
        .extensions()
        .get::<Principal>()
        .cloned()
        .unwrap_or(Principal::Anonymous);
    let Some(route) = routes::lookup(req.method(), &path) else {
        // A route without a declared permission is a bug: refuse rather than guess.
        return ApiErrorResponse(berth_model::ApiError::new(
            berth_model::ErrorCode::Forbidden,
            format!("{} {path} declares no permission", req.method()),
        ))
        .into_response();
    };
    if route.resource == Resource::Repository {
        let auth = req.extensions().get::<RegistryAuth>().copied().unwrap_or_default();
        // A token that does not verify counts for nothing: the caller is
        // anonymous and, when that is not enough, gets the challenge again.
        let principal = match principal {
            Principal::Anonymous => {
                bearer(&req, state.registry.as_ref()).map_or(Principal::Anonymous, Principal::Bearer)
            }
            other => other,
        };
        for (target, action) in crate::registry::scopes(req.method(), req.uri().path(), req.uri().query()) {
            if !registry_allowed(&principal, auth, &target, action) {
                return crate::registry::denied(&principal, req.headers(), &target, action);
            }
        }
        let mut req = req;
        req.extensions_mut().insert(principal);
        return next.run(req).await;
    }
    if !allowed(&principal, route.resource, route.action) {
        return ApiErrorResponse(berth_model::ApiError::new(
            berth_model::ErrorCode::Forbidden,
            format!("{:?} may not {:?} {:?}", principal, route.action, route.resource),
        ))
        .into_response();
    }
    next.run(req).await
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
                registry_allowed(principal, auth, &target, action),
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
            grantable(&Principal::Admin, &repo, &[Pull, Push, Delete]),
            vec![Pull, Push, Delete]
        );
        assert_eq!(
            grantable(&Principal::Anonymous, &repo, &[Pull, Push, Delete]),
            vec![Pull, Push]
        );
        assert_eq!(grantable(&Principal::Anonymous, &Target::Catalog, &[Pull]), vec![Pull]);
        assert_eq!(grantable(&Principal::Anonymous, &Target::Base, &[Pull]), vec![]);
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
