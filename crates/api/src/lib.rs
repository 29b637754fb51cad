//! The HTTP API: JSON under `/v1/`, its OpenAPI document, `/metrics`, and
//! the streams (NDJSON progress, logs, events; upgraded framed streams for
//! attach and exec). Every route is declared once in [`routes::table`] with
//! the resource and action it needs; one layer ([`authz`]) checks that before
//! any handler runs, and errors become `{"code","message"}` in one place.
//!
//! **Invariant:** this is the only crate that knows HTTP.

mod authz;
mod containers;
mod error;
mod images;
mod metrics;
mod openapi;
mod registry;
mod routes;
mod system;

use std::sync::Arc;

pub use authz::{Action, Principal, RegistryAuth, Resource};
use berth_engine::Engine;

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub metrics: Arc<metrics::Metrics>,
    pub execs: Arc<std::sync::Mutex<std::collections::HashMap<String, (String, berth_model::ExecCreate)>>>,
    /// The OCI registry at `/v2/`; `None` when it could not be opened.
    pub registry: Option<berth_registry::Registry>,
}

/// The whole API as one router; the caller binds it to listeners.
pub fn router(engine: Arc<Engine>) -> axum::Router {
    let state = AppState {
        engine: engine.clone(),
        metrics: Arc::new(metrics::Metrics::default()),
        execs: Default::default(),
        registry: registry::open(&engine),
    };
    routes::build(state)
}
