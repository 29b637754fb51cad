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
/// write to the same store: `open_access` opens the access service on the
/// engine's store) or, when none is written, with `Engine::flush`.
#[derive(Clone, Copy)]
pub(crate) struct Unflushed;

/// Daemon settings the API needs.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Forward every audit entry to syslog: `udp://HOST:PORT` or `unix:///dev/log`.
    pub audit_syslog: Option<String>,
    /// How often directories without their own interval sync their teams;
    /// `None`: every 60 minutes; zero: only on demand.
    pub directory_sync_interval: Option<std::time::Duration>,
    /// The scan service's settings (webhooks, scans on push, plugin limits,
    /// built-in plugins, vulnerability database updates).
    pub scan: berth_engine::ScanConfig,
}

/// The whole API as one router, with `options`; the caller binds it to
/// listeners. An invalid option is an error naming it, and so is access
/// control that cannot open: the daemon never serves without its audit log.
pub fn router_with(engine: Arc<Engine>, options: Options) -> Result<axum::Router, String> {
    let pki = bundles::open_pki(&engine);
    let access = Some(open_access(&engine)?);
    let metrics = Arc::new(metrics::Metrics::default());
    if let Some(a) = &access {
        if let Err(e) = a.load_audit_levels() {
            tracing::error!(error = %e, "cannot load the audit levels; every resource is at metadata");
        }
        if let Some(p) = &pki {
            a.set_chain_signer(Arc::new(audit::ClusterKey(p.clone())));
        }
        a.prepare_audit_log()
            .map_err(|e| format!("cannot prepare the audit log, so the daemon will not serve: {e}"))?;
        if let Some(target) = &options.audit_syslog {
            a.set_audit_sink(audit::syslog_sink(target, metrics.syslog_drops.clone())?);
        }
    }
    let scans = open_scans(&engine, pki.clone(), options.scan.clone());
    let state = AppState {
        engine: engine.clone(),
        metrics,
        registry: registry::open(&engine),
        pki,
        access,
        trust: trust::open(&engine),
        scans,
    };
    if let Some(t) = &state.trust {
        engine.set_trust_service(t.clone());
    }
    if let (Some(a), Ok(_)) = (&state.access, tokio::runtime::Handle::try_current()) {
        let interval = options
            .directory_sync_interval
            .unwrap_or(access::DEFAULT_DIRECTORY_SYNC_INTERVAL);
        access::spawn_directory_sync(a.clone(), interval);
    }
    Ok(routes::build(state))
}

/// Opens the scan service; records are signed with the cluster key when
/// the CA could be opened.
fn open_scans(
    engine: &Arc<Engine>,
    pki: Option<Arc<berth_cluster::Pki>>,
    config: berth_engine::ScanConfig,
) -> Option<Arc<berth_engine::ScanService>> {
    let signer = pki.map(|p| Arc::new(scans::ClusterSigner(p)) as Arc<dyn berth_engine::scan::RecordSigner>);
    match berth_engine::ScanService::open(engine.clone(), signer, config) {
        Ok(service) => Some(service),
        Err(e) => {
            tracing::error!(error = %e, "cannot open the scan service: scans are not available");
            None
        }
    }
}

/// Opens the access service on the engine's store; on a fresh cluster this
/// creates the `admin` user, whose password goes to a root-only file: the
/// log names the file, never the password.
fn open_access(engine: &Engine) -> Result<Arc<berth_auth::Access>, String> {
    match berth_auth::Access::open(engine.state().clone(), engine.data_root()) {
        Ok((access, written)) => {
            if let Some(path) = written {
                tracing::info!(file = %path.display(), "created user admin; its one-time password is in the file");
            }
            Ok(Arc::new(access))
        }
        Err(e) => Err(format!(
            "cannot open access control (users, grants and the audit log), so the daemon will not serve: {e}"
        )),
    }
}
