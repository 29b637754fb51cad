//! The one authorization check. Every route declares (resource, action);
//! this layer asks whether the caller may, before the handler runs. Today the
//! unix socket's caller is the admin; users, teams and grants will answer
//! here without any handler changing.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

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

/// Who is calling. Set by the listener (the socket: `Admin`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Anonymous,
}

/// The one decision. `repository` names the registry repository for
/// [`Resource::Repository`] (`None`: the registry as a whole, e.g. the catalog).
pub fn allowed(principal: &Principal, resource: Resource, action: Action, repository: Option<&str>) -> bool {
    let _ = repository; // per-repository grants come with users and roles
    match principal {
        Principal::Admin => true,
        // Until users and roles exist, anonymous callers may read the system
        // info, and use the registry: the only anonymous listener is the
        // loopback one (`--insecure-listen` refuses other addresses).
        Principal::Anonymous => {
            (resource == Resource::System && action == Action::Read) || resource == Resource::Repository
        }
    }
}

pub async fn layer(State(_state): State<AppState>, req: Request, next: Next) -> Response {
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
        for (repository, action) in crate::registry::scopes(req.method(), req.uri().path(), req.uri().query()) {
            if !allowed(&principal, Resource::Repository, action, repository.as_deref()) {
                return crate::registry::denied(principal == Principal::Anonymous, repository.as_deref(), action);
            }
        }
        return next.run(req).await;
    }
    if !allowed(&principal, route.resource, route.action, None) {
        return ApiErrorResponse(berth_model::ApiError::new(
            berth_model::ErrorCode::Forbidden,
            format!("{:?} may not {:?} {:?}", principal, route.action, route.resource),
        ))
        .into_response();
    }
    next.run(req).await
}
