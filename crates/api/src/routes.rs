//! The route table: every route once, with its handler, the permission it
//! needs and a summary for the OpenAPI document. The router, the
//! authorization layer and the OpenAPI document are all built from it.

use axum::http::Method;
use axum::routing::{delete, get, head, patch, post, put, MethodRouter};
use axum::Router;

use crate::authz::{Action, Resource};
use crate::{authz, containers, images, metrics, openapi, registry, system, AppState};

pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub resource: Resource,
    pub action: Action,
    pub summary: &'static str,
    handler: fn() -> MethodRouter<AppState>,
}

macro_rules! r {
    ($m:ident, $f:ident, $p:literal, $res:ident, $act:ident, $h:path, $s:literal) => {
        Route {
            method: Method::$m,
            path: $p,
            resource: Resource::$res,
            action: Action::$act,
            summary: $s,
            handler: || $f($h),
        }
    };
}

pub static TABLE: &[Route] = &[
    r!(
        GET,
        get,
        "/v1/version",
        System,
        Read,
        system::version,
        "Version of the daemon"
    ),
    r!(
        GET,
        get,
        "/v1/info",
        System,
        Read,
        system::info,
        "Node information: data root, counts, id mapping, cgroup mode"
    ),
    r!(
        GET,
        get,
        "/v1/openapi.json",
        System,
        Read,
        openapi::document,
        "This document"
    ),
    r!(
        GET,
        get,
        "/metrics",
        System,
        Read,
        metrics::render,
        "Prometheus metrics"
    ),
    r!(
        GET,
        get,
        "/v1/events",
        System,
        Read,
        system::events,
        "Stream of events (NDJSON)"
    ),
    r!(GET, get, "/v1/images", Image, Read, images::list, "List images"),
    r!(
        GET,
        get,
        "/v1/images/inspect",
        Image,
        Read,
        images::inspect,
        "Inspect an image (?ref=)"
    ),
    r!(
        POST,
        post,
        "/v1/images/load",
        Image,
        Write,
        images::load,
        "Load an OCI layout or docker-save archive (body); NDJSON progress"
    ),
    r!(
        POST,
        post,
        "/v1/images/pull",
        Image,
        Write,
        images::pull,
        "Pull an image from a registry (?ref=&platform=os/arch&all_platforms=); NDJSON progress"
    ),
    r!(
        POST,
        post,
        "/v1/images/push",
        Image,
        Write,
        images::push,
        "Push an image to a registry (?ref=); NDJSON progress"
    ),
    r!(
        POST,
        post,
        "/v1/auth/login",
        Image,
        Write,
        images::login,
        "Check registry credentials ({registry, username, password}) and store them for pulls and pushes"
    ),
    r!(
        POST,
        post,
        "/v1/auth/logout",
        Image,
        Write,
        images::logout,
        "Forget a registry's credentials (?registry=)"
    ),
    r!(
        GET,
        get,
        "/v1/images/save",
        Image,
        Read,
        images::save,
        "Save images as an OCI layout tarball (?ref=...)"
    ),
    r!(
        POST,
        post,
        "/v1/images/tag",
        Image,
        Write,
        images::tag,
        "Tag an image (?source=&target=)"
    ),
    r!(
        DELETE,
        delete,
        "/v1/images",
        Image,
        Write,
        images::remove,
        "Remove an image (?ref=&force=)"
    ),
    r!(
        GET,
        get,
        "/v1/containers",
        Container,
        Read,
        containers::list,
        "List containers (?all=)"
    ),
    r!(
        POST,
        post,
        "/v1/containers",
        Container,
        Write,
        containers::create,
        "Create a container"
    ),
    r!(
        GET,
        get,
        "/v1/containers/{id}",
        Container,
        Read,
        containers::inspect,
        "Inspect a container"
    ),
    r!(
        DELETE,
        delete,
        "/v1/containers/{id}",
        Container,
        Write,
        containers::remove,
        "Remove a container (?force=)"
    ),
    r!(
        POST,
        post,
        "/v1/containers/{id}/start",
        Container,
        Write,
        containers::start,
        "Start a container; with ?attach= the connection is upgraded to a framed stream"
    ),
    r!(
        POST,
        post,
        "/v1/containers/{id}/attach",
        Container,
        Exec,
        containers::attach,
        "Attach to a running container (upgrade)"
    ),
    r!(
        POST,
        post,
        "/v1/containers/{id}/stop",
        Container,
        Write,
        containers::stop,
        "Stop a container (?t=seconds)"
    ),
    r!(
        POST,
        post,
        "/v1/containers/{id}/kill",
        Container,
        Write,
        containers::kill,
        "Send a signal (?signal=)"
    ),
    r!(
        POST,
        post,
        "/v1/containers/{id}/wait",
        Container,
        Read,
        containers::wait,
        "Wait for the container to stop; its exit code"
    ),
    r!(
        POST,
        post,
        "/v1/containers/{id}/resize",
        Container,
        Write,
        containers::resize,
        "Resize the container's terminal (?cols=&rows=)"
    ),
    r!(
        GET,
        get,
        "/v1/containers/{id}/logs",
        Container,
        Read,
        containers::logs,
        "Logs as NDJSON (?follow=&tail=)"
    ),
    r!(
        GET,
        get,
        "/v1/containers/{id}/stats",
        Container,
        Read,
        containers::stats,
        "Resource use from the cgroup (?stream=)"
    ),
    r!(
        POST,
        post,
        "/v1/containers/{id}/exec",
        Container,
        Exec,
        containers::exec_create,
        "Create an exec; returns its id"
    ),
    r!(
        POST,
        post,
        "/v1/exec/{id}/start",
        Container,
        Exec,
        containers::exec_start,
        "Start an exec (upgrade to a framed stream)"
    ),
    r!(
        POST,
        post,
        "/v1/registry/gc",
        Registry,
        Write,
        registry::gc,
        "Collect registry blobs no manifest references (?grace=seconds, default 3600)"
    ),
    r!(
        GET,
        get,
        "/v2/",
        Repository,
        Pull,
        registry::ping,
        "OCI Distribution: API version check"
    ),
    r!(
        GET,
        get,
        "/v2/{*path}",
        Repository,
        Pull,
        registry::dispatch,
        "OCI Distribution: pull (blobs, manifests, tags, catalog, referrers, upload status)"
    ),
    r!(
        HEAD,
        head,
        "/v2/{*path}",
        Repository,
        Pull,
        registry::dispatch,
        "OCI Distribution: blob and manifest existence"
    ),
    r!(
        POST,
        post,
        "/v2/{*path}",
        Repository,
        Push,
        registry::dispatch,
        "OCI Distribution: start an upload, monolithic upload, cross-repository mount"
    ),
    r!(
        PATCH,
        patch,
        "/v2/{*path}",
        Repository,
        Push,
        registry::dispatch,
        "OCI Distribution: upload a chunk"
    ),
    r!(
        PUT,
        put,
        "/v2/{*path}",
        Repository,
        Push,
        registry::dispatch,
        "OCI Distribution: finish an upload, push a manifest"
    ),
    r!(
        DELETE,
        delete,
        "/v2/{*path}",
        Repository,
        Delete,
        registry::dispatch,
        "OCI Distribution: delete a manifest, tag, blob or upload"
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
