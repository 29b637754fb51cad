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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Write,
    Exec,
}

/// Who is calling. Set by the listener (the socket: `Admin`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Anonymous,
}

pub fn allowed(principal: &Principal, _resource: Resource, action: Action) -> bool {
    match principal {
        Principal::Admin => true,
        // Until users and roles exist, anonymous callers may only read the system info.
        Principal::Anonymous => _resource == Resource::System && action == Action::Read,
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
    if !allowed(&principal, route.resource, route.action) {
        return ApiErrorResponse(berth_model::ApiError::new(
            berth_model::ErrorCode::Forbidden,
            format!("{:?} may not {:?} {:?}", principal, route.action, route.resource),
        ))
        .into_response();
    }
    next.run(req).await
}
