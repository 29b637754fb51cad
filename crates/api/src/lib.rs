//! The HTTP API: JSON under `/v1/`, its OpenAPI document, `/metrics`, and
//! the streams (NDJSON progress, logs, events; upgraded framed streams for
//! attach and exec). Every route is declared once in [`routes::table`] with
//! the resource and action it needs; one layer ([`authz`]) checks that before
//! any handler runs, and errors become `{"code","message"}` in one place.
//!
//! **Invariant:** this is the only crate that knows HTTP.

#![forbid(unsafe_code)]

mod access;
mod audit;
mod authz;
mod blocking;
mod bundles;
mod collections;
mod containers;
mod error;
mod images;
mod limits;
mod metrics;
mod openapi;
mod registry;
mod routes;
mod scans;
mod sessions;
mod system;
pub mod tls;
mod trust;
mod trust_policy;

use std::sync::Arc;

pub use authz::{Action, Origin, Principal, RegistryAuth, Resource};
use berth_engine::Engine;

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub metrics: Arc<metrics::Metrics>,
    /// The OCI registry at `/v2/`; `None` when it could not be opened.
    pub registry: Option<berth_registry::Registry>,
    /// The cluster CA (bundles, `/v1/ca.pem`); `None` when it could not be opened.
    pub pki: Option<Arc<berth_cluster::Pki>>,
    /// Users, grants, tokens and the audit log; `None` when they could not
    /// be opened (then only the unix socket's admin gets anything done).
    pub access: Option<Arc<berth_auth::Access>>,
    /// The Notary-compatible trust service; `None` when it could not be opened.
    pub trust: Option<Arc<berth_notary::service::TrustService>>,
    /// Scans, the vulnerability database, plugins; `None` when it could not be opened.
    pub scans: Option<Arc<berth_engine::ScanService>>,
}

/// Marks a response whose handler left store writes unflushed
/// (`Engine::start_unflushed`): the authorization layer makes them durable
/// before the response leaves, with the request's audit entry (a durable
/// write to the same store: the access service proposes to the engine's
/// cluster state) or, when none is written, with `Engine::flush`.
#[derive(Clone, Copy)]
pub(crate) struct Unflushed;

/// The services a node opened (see `berth_node::open`): the API serves
/// them and opens nothing itself.
pub struct Services {
    pub engine: Arc<Engine>,
    /// The OCI registry at `/v2/`; `None` when it could not be opened.
    pub registry: Option<berth_registry::Registry>,
    /// The cluster CA (bundles, `/v1/ca.pem`); `None` when it could not be opened.
    pub pki: Option<Arc<berth_cluster::Pki>>,
    /// Users, grants, tokens and the audit log.
    pub access: Option<Arc<berth_auth::Access>>,
    /// The Notary-compatible trust service; `None` when it could not be opened.
    pub trust: Option<Arc<berth_notary::service::TrustService>>,
    /// Scans, the vulnerability database, plugins; `None` when it could not be opened.
    pub scans: Option<Arc<berth_engine::ScanService>>,
    /// Audit messages that did not reach `--audit-syslog` (for `/metrics`).
    pub syslog_drops: Arc<berth_auth::syslog::SyslogDrops>,
}

/// The whole API as one router over `services`; the caller binds it to
/// listeners.
pub fn router(services: Services) -> axum::Router {
    let metrics = Arc::new(metrics::Metrics::new(services.syslog_drops));
    routes::build(AppState {
        engine: services.engine,
        metrics,
        registry: services.registry,
        pki: services.pki,
        access: services.access,
        trust: services.trust,
        scans: services.scans,
    })
}
