//! The node's scan service: `berth scan`, the vulnerability database, the
//! scanner-check plugins, certification records and scans on push.
//!
//! - **Scans** read an image's unpacked layers (the image store's snapshots,
//!   bottom first) through `berth_scanner::scan`, with a per-layer cache in
//!   `local/scan_layer_cache` (inventories by diff_id, findings by diff_id +
//!   distro + database digest, optimization by the list of diff_ids).
//! - **Functional tests** run the image in a throw-away container with no
//!   network (`--network none`), under a timeout, removed afterwards.
//! - **The vulnerability database** lives in `<data-root>/vulndb/vulndb.bin`;
//!   an import replaces it atomically, then every image's latest record is
//!   matched again (components are stored, the image is not read): an image
//!   with new findings gets a new record, an `image vulnerable` event and a
//!   JSON POST to every `--scan-webhook`.
//! - **`vulndb update`** downloads osv.dev's per-ecosystem exports (or a
//!   mirror's) and imports them all as one import; see [`crate::vulndb_update`].
//! - **Plugins** are installed under `<data-root>/plugins/` (compiled code in
//!   `plugins/cache/`); enabled `scanner-check` plugins run in a scan, each
//!   call with its memory and time limits: one that traps, loops or runs out
//!   of memory is a failed check and the scan goes on. The binary's built-in
//!   plugins are offered once per data root ([`crate::builtin_plugins`]).
//! - **Certification records** (`cluster/scan_records`, changed only through
//!   a cluster command) hold the report as JSON text (`payload`) and an ECDSA
//!   P-256 signature over exactly those bytes by the cluster key, so a copy
//!   can be checked offline against the cluster CA certificate.
//! - **Scans on push**: after a manifest PUT to this node's registry, the
//!   image is scanned in the background (the push is not slowed).
//!
//! **Architecture Invariant:** the scanner never runs a plugin or a
//! container itself; this service gives it a [`CheckRunner`] and the
//! functional test's result.
//!
//! Files: `mod.rs` (the service, its errors, configuration and shared
//! types), `run.rs` (running a scan), `functional.rs` (functional tests),
//! `records.rs` (signed certification records), `vulndb.rs` (the
//! vulnerability database), `plugins.rs` (the plugin lifecycle) and
//! `push.rs` (scans on push).
//!
//! [`CheckRunner`]: berth_scanner::scan::CheckRunner

mod functional;
mod plugins;
mod push;
mod records;
mod run;
mod vulndb;

pub use berth_scanner::records::{ScanProgress, ScanRecord};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use berth_model::{ApiError, ErrorCode};
use berth_plugin::{HostConfig, PluginHost, PluginRegistry};
pub use berth_plugin::{Limits as PluginLimits, PluginInfo};
use berth_scanner::vuln::VulnDb;
use berth_store::{Store, Table};

pub use self::records::{check_record, ScanRecordSummary, SignedPayload};
pub use self::run::{MergedImageFs, ScanSpec};
pub use self::vulndb::{NewlyVulnerable, VulnDbImport, VulnDbStatus};
use crate::builtin_plugins::BuiltinPlugin;
use crate::vulndb_update;
use crate::Engine;

/// Certification records by id.
pub use berth_state::tables::SCAN_RECORDS;
/// This node's scan cache (layer inventories, findings, optimization).
pub const SCAN_LAYER_CACHE: Table = Table("local/scan_layer_cache");

/// The signature algorithm of every record.
pub const SIGNATURE_ALGORITHM: &str = "ecdsa-p256-sha256";
/// Longest functional test allowed.
pub const MAX_TEST_TIMEOUT: Duration = Duration::from_secs(3600);
/// `vulndb update` downloads into `<data-root>/tmp/<this>-<id>/`.
const UPDATE_TEMP_PREFIX: &str = "vulndb-update";

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Image(Box<berth_image::Error>),
    #[error(transparent)]
    Store(Box<berth_store::Error>),
    #[error(transparent)]
    Scan(Box<berth_scanner::scan::ScanError>),
    #[error(transparent)]
    Plugin(Box<berth_plugin::PluginError>),
    #[error(transparent)]
    Vuln(Box<berth_scanner::vuln::VulnError>),
    #[error(transparent)]
    Engine(Box<crate::Error>),
}

macro_rules! boxed_from {
    ($($variant:ident: $source:ty),* $(,)?) => {
        $(impl From<$source> for ScanError {
            fn from(e: $source) -> Self {
                ScanError::$variant(Box::new(e))
            }
        })*
    };
}

boxed_from!(
    Image: berth_image::Error,
    Store: berth_store::Error,
    Scan: berth_scanner::scan::ScanError,
    Plugin: berth_plugin::PluginError,
    Vuln: berth_scanner::vuln::VulnError,
    Engine: crate::Error,
);

impl ScanError {
    pub fn code(&self) -> ErrorCode {
        use berth_plugin::PluginError as P;
        match self {
            ScanError::Invalid(_) => ErrorCode::InvalidArgument,
            ScanError::NotFound(_) => ErrorCode::NotFound,
            ScanError::Unavailable(_) | ScanError::Failed(_) | ScanError::Store(_) => ErrorCode::Internal,
            ScanError::Image(e) => e.code(),
            ScanError::Engine(e) => e.code(),
            ScanError::Scan(e) if matches!(**e, berth_scanner::scan::ScanError::LicensePolicy(_)) => {
                ErrorCode::InvalidArgument
            }
            ScanError::Scan(_) => ErrorCode::Internal,
            ScanError::Plugin(e) => match **e {
                P::NotInstalled { .. } => ErrorCode::NotFound,
                P::AlreadyInstalled { .. } => ErrorCode::Conflict,
                P::Engine { .. } | P::Io { .. } => ErrorCode::Internal,
                _ => ErrorCode::InvalidArgument,
            },
            ScanError::Vuln(e) => match **e {
                berth_scanner::vuln::VulnError::Io { .. }
                | berth_scanner::vuln::VulnError::UnknownInput { .. }
                | berth_scanner::vuln::VulnError::Zip { .. }
                | berth_scanner::vuln::VulnError::Record { .. }
                | berth_scanner::vuln::VulnError::IgnoreFile { .. } => ErrorCode::InvalidArgument,
                _ => ErrorCode::Internal,
            },
        }
    }
}

impl From<ScanError> for ApiError {
    fn from(e: ScanError) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}

/// Signs certification records (the cluster key).
pub trait RecordSigner: Send + Sync {
    /// Names the key (`sha256:<CA certificate fingerprint>`).
    fn key_id(&self) -> String;
    /// A DER-encoded ECDSA P-256 / SHA-256 signature over `message`.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String>;
}

/// How the service is set up (`berth daemon` flags).
#[derive(Debug, Clone)]
pub struct ScanConfig {
    /// URLs that get a JSON POST when an image becomes vulnerable.
    pub webhooks: Vec<String>,
    /// How long one webhook notification is retried before it is dropped.
    pub webhook_retry_for: Duration,
    /// Scan images pushed to this node's registry.
    pub scan_on_push: bool,
    /// Per-call limits of scanner-check plugins.
    pub plugin_limits: PluginLimits,
    /// The plugins built into the binary, offered once per data root.
    pub builtin_plugins: Vec<BuiltinPlugin>,
    /// The berth binary, which installs new built-in plugins in a helper
    /// process (`berth install-builtin-checks`); `None`: in this one.
    pub builtin_installer: Option<std::path::PathBuf>,
    /// Base URL of OSV exports for `vulndb update` (`{source}/{ecosystem}/all.zip`).
    pub vulndb_source: String,
    /// Ecosystems `vulndb update` fetches when not told; empty: every one
    /// the matcher uses.
    pub vulndb_ecosystems: Vec<String>,
    /// How often the daemon updates the database itself; zero: never.
    pub vulndb_update_interval: Duration,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            webhooks: Vec::new(),
            webhook_retry_for: Duration::from_secs(3600),
            scan_on_push: true,
            plugin_limits: PluginLimits::default(),
            builtin_plugins: Vec::new(),
            builtin_installer: None,
            vulndb_source: vulndb_update::DEFAULT_SOURCE.to_string(),
            vulndb_ecosystems: Vec::new(),
            vulndb_update_interval: Duration::ZERO,
        }
    }
}

/// The signed record as stored and served; its payload is a [`ScanRecord`].
pub use berth_state::records::SignedScanRecord;

/// The scan service of one node.
pub struct ScanService {
    engine: Arc<Engine>,
    store: Store,
    db: RwLock<Arc<VulnDb>>,
    db_path: PathBuf,
    /// `Err` holds why the plugin host could not start.
    plugins: Result<PluginRegistry, String>,
    signer: Option<Arc<dyn RecordSigner>>,
    config: ScanConfig,
    webhooks: crate::webhooks::Webhooks,
    import_lock: Mutex<()>,
    /// One `vulndb update` at a time (downloads happen outside `import_lock`).
    update_lock: Mutex<()>,
    /// The built-in plugins' manifests and packages.
    builtins: Vec<(berth_plugin::PluginManifest, BuiltinPlugin)>,
}

impl ScanService {
    /// Opens the database and the plugin registry under the data root. A
    /// plugin host that cannot start is logged: scans then run no checks.
    pub fn open(
        engine: Arc<Engine>,
        signer: Option<Arc<dyn RecordSigner>>,
        config: ScanConfig,
    ) -> Result<Arc<ScanService>, ScanError> {
        let store = engine.images().store().clone();
        // Creates the node's tables (cluster state has its own).
        store.write(|t| t.list::<serde::de::IgnoredAny>(SCAN_LAYER_CACHE).map(drop))?;
        store.write(|t| {
            t.list::<serde::de::IgnoredAny>(crate::builtin_plugins::BUILTIN_PLUGINS)
                .map(drop)
        })?;
        vulndb_update::normalize_source(&config.vulndb_source).map_err(ScanError::Invalid)?;
        vulndb_update::remove_leftovers(&engine.data_root().join("tmp"), UPDATE_TEMP_PREFIX);
        let dir = engine.data_root().join("vulndb");
        std::fs::create_dir_all(&dir).map_err(|e| ScanError::Failed(format!("creating {}: {e}", dir.display())))?;
        let db_path = dir.join("vulndb.bin");
        let db = if db_path.exists() {
            VulnDb::load(&db_path)?
        } else {
            VulnDb::default()
        };
        let webhooks = crate::webhooks::Webhooks::start(
            &config.webhooks,
            &engine.data_root().join("scan/webhooks"),
            config.webhook_retry_for,
            &store,
        )
        .map_err(ScanError::Failed)?;
        let plugins_root = engine.data_root().join("plugins");
        let host_config = HostConfig {
            limits: config.plugin_limits.clone(),
            ..HostConfig::with_data_root(engine.data_root())
        };
        let plugins = PluginHost::new(host_config)
            .and_then(|host| PluginRegistry::open(&plugins_root, host))
            .map_err(|e| {
                tracing::error!(error = %e, "cannot start the plugin host: scans run no checks");
                e.to_string()
            });
        let builtins = crate::builtin_plugins::manifests(&config.builtin_plugins);
        if let Ok(registry) = &plugins {
            let installer = config.builtin_installer.as_deref().map(|exe| (exe, engine.data_root()));
            crate::builtin_plugins::seed(registry, &store, &builtins, installer);
        }
        let service = Arc::new(ScanService {
            engine,
            store,
            db: RwLock::new(Arc::new(db)),
            db_path,
            plugins,
            signer,
            webhooks,
            config,
            import_lock: Mutex::new(()),
            update_lock: Mutex::new(()),
            builtins,
        });
        if !service.config.vulndb_update_interval.is_zero() {
            service.spawn_vulndb_schedule();
        }
        Ok(service)
    }

    pub fn config(&self) -> &ScanConfig {
        &self.config
    }

    fn db(&self) -> Arc<VulnDb> {
        self.db.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn plugins(&self) -> Result<&PluginRegistry, ScanError> {
        self.plugins
            .as_ref()
            .map_err(|e| ScanError::Unavailable(format!("plugins are not available on this node: {e}")))
    }
}
