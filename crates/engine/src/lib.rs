//! The node engine: the one place where containers and images of this node
//! change state. It validates requests, records state in the store before and
//! after acting, drives the image store and the runtime, watches every
//! container's exit, applies restart policies, publishes events, and on start
//! reconciles what a crash left half done. The API calls it; a cluster agent
//! will call it the same way.
//!
//! **Invariant:** every container record change goes through [`Engine`]'s
//! per-container lock, so that a monitor, a user request and the reconciler
//! never interleave on one container.

#![forbid(unsafe_code)]

pub mod builtin_plugins;
mod containers;
mod error;
mod images;
mod reconcile;
pub mod scan;
mod trust;
pub mod vulndb_update;
pub mod webhooks;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use berth_model::{Container, Event};
use tokio::sync::broadcast;

pub use error::Error;
pub use scan::{ScanConfig, ScanService};
pub use trust::{escape_gun, pattern_matches, validate_pattern, TrustPolicy, TRUST_POLICIES};

pub struct Config {
    pub data_root: PathBuf,
    /// The berth binary, re-executed as the shim.
    pub exe: PathBuf,
}

pub struct Engine {
    store: berth_store::Store,
    images: berth_image::ImageStore,
    runtime: Arc<dyn berth_runtime::Runtime>,
    events: broadcast::Sender<Event>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Disk clean-ups of `--rm` containers still running (see `on_exit`).
    reclaiming: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    data_root: PathBuf,
    trust: trust::NodeTrust,
    /// Exec sessions created and not started yet (see `containers::execs`).
    execs: Mutex<HashMap<String, containers::PendingExec>>,
}

impl Engine {
    /// Opens the store, image store and runtime under the data root and
    /// reconciles: re-attaches to live shims, finishes what a crash left.
    pub async fn open(config: Config) -> Result<Arc<Self>, Error> {
        let runtime = berth_runtime::NodeRuntime::new(
            &config.data_root,
            config.exe.clone(),
            berth_runtime::IdMap::from_system(),
        )?;
        Self::open_with_runtime(config, Arc::new(runtime)).await
    }

    /// [`Engine::open`] on a runtime of the caller's (a fake one, in tests).
    pub async fn open_with_runtime(
        config: Config,
        runtime: Arc<dyn berth_runtime::Runtime>,
    ) -> Result<Arc<Self>, Error> {
        std::fs::create_dir_all(&config.data_root).map_err(|e| Error::io(&config.data_root, e))?;
        let store = berth_store::Store::open(&config.data_root.join("berth.redb"))?;
        let state = berth_state::State::open(store.clone())?;
        let trust = trust::open_service(&config.data_root, &state);
        let images = berth_image::ImageStore::open(&config.data_root, state)?;
        let (events, _) = broadcast::channel(1024);
        let engine = Arc::new(Self {
            store,
            images,
            runtime,
            events,
            locks: Mutex::new(HashMap::new()),
            reclaiming: Mutex::new(Vec::new()),
            data_root: config.data_root,
            trust: trust::NodeTrust::new(trust),
            execs: Mutex::new(HashMap::new()),
        });
        engine.reconcile().await?;
        Ok(engine)
    }

    /// What a clean stop leaves tidy; containers keep running. Waits for
    /// the disk clean-ups of removed `--rm` containers still under way.
    pub async fn shutdown(&self) {
        self.reclaimed().await;
        self.runtime.remove_cgroup_parent_if_empty();
    }

    /// Waits for the disk clean-ups of removed `--rm` containers under way.
    pub(crate) async fn reclaimed(&self) {
        let pending = std::mem::take(&mut *self.reclaiming.lock().unwrap_or_else(|e| e.into_inner()));
        for task in pending {
            let _ = task.await;
        }
    }

    pub fn data_root(&self) -> &std::path::Path {
        &self.data_root
    }

    /// Cluster state as this node opened it: the one handle every service
    /// reads it through and proposes its changes to.
    pub fn state(&self) -> &berth_state::State {
        self.images.state()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Announces a manifest pushed to this node's registry: an `image push`
    /// event (id: the manifest digest; attributes `name`, `repository`,
    /// `reference`), which the scan service follows to scan on push.
    pub fn image_pushed(&self, repository: &str, reference: &str, digest: &str) {
        let name = if berth_model::validate_digest(reference).is_ok() {
            format!("{repository}@{reference}")
        } else {
            format!("{repository}:{reference}")
        };
        self.emit(
            "image",
            "push",
            digest,
            &[("name", &name), ("repository", repository), ("reference", reference)],
        );
    }

    fn emit(&self, kind: &str, action: &str, id: &str, attributes: &[(&str, &str)]) {
        let event = Event {
            kind: kind.into(),
            action: action.into(),
            id: id.into(),
            attributes: attributes.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            time: now(),
        };
        tracing::debug!(kind, action, id, "event");
        let _ = self.events.send(event);
    }

    /// A container's event carries its collection, so that the event stream
    /// shows it only to callers who may read containers there.
    fn emit_container(&self, c: &Container, action: &str, id: &str, attributes: &[(&str, &str)]) {
        let collection = c.spec.collection.as_deref().unwrap_or("/");
        let mut all = attributes.to_vec();
        all.push(("collection", collection));
        self.emit("container", action, id, &all);
    }

    fn lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(id.to_string()).or_default().clone()
    }
}

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
