//! The route table: every route once, with the permission it needs and a
//! summary for the OpenAPI document. The router, the authorization layer and
//! the OpenAPI document are all built from it.

use axum::http::Method;
use axum::routing::{delete, get, post, MethodRouter};
use axum::Router;

use crate::authz::{Action, Resource};
use crate::{authz, containers, images, metrics, openapi, system, AppState};

pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub resource: Resource,
    pub action: Action,
    pub summary: &'static str,
}

macro_rules! r {
    ($m:ident, $p:literal, $res:ident, $act:ident, $s:literal) => {
        Route {
            method: Method::$m,
            path: $p,
            resource: Resource::$res,
            action: Action::$act,
            summary: $s,
        }
    };
}

pub fn table() -> Vec<Route> {
    vec![
        r!(GET, "/v1/version", System, Read, "Version of the daemon"),
        r!(
            GET,
            "/v1/info",
            System,
            Read,
            "Node information: data root, counts, id mapping, cgroup mode"
        ),
        r!(GET, "/v1/openapi.json", System, Read, "This document"),
        r!(GET, "/metrics", System, Read, "Prometheus metrics"),
        r!(GET, "/v1/events", System, Read, "Stream of events (NDJSON)"),
        r!(GET, "/v1/images", Image, Read, "List images"),
        r!(GET, "/v1/images/inspect", Image, Read, "Inspect an image (?ref=)"),
        r!(
            POST,
            "/v1/images/load",
            Image,
            Write,
            "Load an OCI layout or docker-save archive (body); NDJSON progress"
        ),
        r!(
            GET,
            "/v1/images/save",
            Image,
            Read,
            "Save images as an OCI layout tarball (?ref=...)"
        ),
        r!(POST, "/v1/images/tag", Image, Write, "Tag an image (?source=&target=)"),
        r!(DELETE, "/v1/images", Image, Write, "Remove an image (?ref=&force=)"),
        r!(GET, "/v1/containers", Container, Read, "List containers (?all=)"),
        r!(POST, "/v1/containers", Container, Write, "Create a container"),
        r!(GET, "/v1/containers/{id}", Container, Read, "Inspect a container"),
        r!(
            DELETE,
            "/v1/containers/{id}",
            Container,
            Write,
            "Remove a container (?force=)"
        ),
        r!(
            POST,
            "/v1/containers/{id}/start",
            Container,
            Write,
            "Start a container; with ?attach= the connection is upgraded to a framed stream"
        ),
        r!(
            POST,
            "/v1/containers/{id}/attach",
            Container,
            Exec,
            "Attach to a running container (upgrade)"
        ),
        r!(
            POST,
            "/v1/containers/{id}/stop",
            Container,
            Write,
            "Stop a container (?t=seconds)"
        ),
        r!(
            POST,
            "/v1/containers/{id}/kill",
            Container,
            Write,
            "Send a signal (?signal=)"
        ),
        r!(
            POST,
            "/v1/containers/{id}/wait",
            Container,
            Read,
            "Wait for the container to stop; its exit code"
        ),
        r!(
            POST,
            "/v1/containers/{id}/resize",
            Container,
            Write,
            "Resize the container's terminal (?cols=&rows=)"
        ),
        r!(
            GET,
            "/v1/containers/{id}/logs",
            Container,
            Read,
            "Logs as NDJSON (?follow=&tail=)"
        ),
        r!(
            GET,
            "/v1/containers/{id}/stats",
            Container,
            Read,
            "Resource use from the cgroup (?stream=)"
        ),
        r!(
            POST,
            "/v1/containers/{id}/exec",
            Container,
            Exec,
            "Create an exec; returns its id"
        ),
        r!(
            POST,
            "/v1/exec/{id}/start",
            Container,
            Exec,
            "Start an exec (upgrade to a framed stream)"
        ),
    ]
}

pub fn lookup(method: &Method, path: &str) -> Option<Route> {
    table().into_iter().find(|r| r.method == *method && r.path == path)
}

fn handler(path: &str, method: &Method) -> MethodRouter<AppState> {
    match (method.as_str(), path) {
        ("GET", "/v1/version") => get(system::version),
        ("GET", "/v1/info") => get(system::info),
        ("GET", "/v1/openapi.json") => get(openapi::document),
        ("GET", "/metrics") => get(metrics::render),
        ("GET", "/v1/events") => get(system::events),
        ("GET", "/v1/images") => get(images::list),
        ("GET", "/v1/images/inspect") => get(images::inspect),
        ("POST", "/v1/images/load") => post(images::load),
        ("GET", "/v1/images/save") => get(images::save),
        ("POST", "/v1/images/tag") => post(images::tag),
        ("DELETE", "/v1/images") => delete(images::remove),
        ("GET", "/v1/containers") => get(containers::list),
        ("POST", "/v1/containers") => post(containers::create),
        ("GET", "/v1/containers/{id}") => get(containers::inspect),
        ("DELETE", "/v1/containers/{id}") => delete(containers::remove),
        ("POST", "/v1/containers/{id}/start") => post(containers::start),
        ("POST", "/v1/containers/{id}/attach") => post(containers::attach),
        ("POST", "/v1/containers/{id}/stop") => post(containers::stop),
        ("POST", "/v1/containers/{id}/kill") => post(containers::kill),
        ("POST", "/v1/containers/{id}/wait") => post(containers::wait),
        ("POST", "/v1/containers/{id}/resize") => post(containers::resize),
        ("GET", "/v1/containers/{id}/logs") => get(containers::logs),
        ("GET", "/v1/containers/{id}/stats") => get(containers::stats),
        ("POST", "/v1/containers/{id}/exec") => post(containers::exec_create),
        ("POST", "/v1/exec/{id}/start") => post(containers::exec_start),
        (m, p) => unreachable!("route {m} {p} in the table has no handler"),
    }
}

pub fn build(state: AppState) -> Router {
    let mut router: Router<AppState> = Router::new();
    let mut by_path: std::collections::BTreeMap<&str, MethodRouter<AppState>> = Default::default();
    for route in table() {
        let h = handler(route.path, &route.method);
        let entry = by_path.remove(route.path);
        by_path.insert(
            route.path,
            match entry {
                Some(existing) => existing.merge(h),
                None => h,
            },
        );
    }
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
    fn every_route_has_a_handler_and_is_unique() {
        let t = table();
        for r in &t {
            let _ = handler(r.path, &r.method);
            assert_eq!(
                t.iter().filter(|o| o.path == r.path && o.method == r.method).count(),
                1,
                "{}",
                r.path
            );
        }
    }
}
