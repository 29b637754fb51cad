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
mod json;
mod limits;
mod metrics;
mod nodes;
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

/// The OpenAPI document of every route (what `GET /v1/openapi.json` serves).
pub fn openapi_document() -> serde_json::Value {
    openapi::build()
}
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
    /// This node's place in the cluster; `None` when it has none.
    pub cluster: Option<Arc<berth_cluster::membership::Cluster>>,
}

/// Marks a response whose handler left store writes unflushed
/// (`Engine::start_unflushed`), up to the node's commit number it holds:
/// the authorization layer makes them durable before the response leaves,
/// with `Engine::make_durable` (the node's group commit: free when a
/// durable commit since covered them, such as the request's audit entry,
/// which comes first unless the response is a stream's `101`: see
/// [`AuditGate`]).
#[derive(Clone, Copy)]
pub(crate) struct Unflushed(pub u64);

/// Set on each audited request: says when the outcome's audit entry is
/// written. A connection upgraded for a stream (`run`, `start --attach`,
/// `attach`, `exec`) does not wait for that entry before its `101`: the entry is written
/// while the container runs, and the stream's end waits for it, so a
/// client has its whole answer only once its outcome is recorded.
#[derive(Clone)]
pub(crate) struct AuditGate(pub tokio::sync::watch::Receiver<bool>);

impl AuditGate {
    /// Waits until the outcome is recorded (or its recording failed, which
    /// is logged where it fails).
    pub async fn passed(mut self) {
        let _ = self.0.wait_for(|done| *done).await;
    }
}

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
    /// This node's place in the cluster; `None` when it has none.
    pub cluster: Option<Arc<berth_cluster::membership::Cluster>>,
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
        cluster: services.cluster,
    })
}
