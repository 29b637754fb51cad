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

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use berth_model::{ApiError, ContainerCreate, ErrorCode, Image};
use berth_plugin::{
    DirEntry, FileKind, FileStat, FsError, HostConfig, ImageFs, ImageInfo, PluginHost, PluginRegistry, ScannerCheck,
};
pub use berth_plugin::{Limits as PluginLimits, PluginInfo};
use berth_scanner::layers::{EntryKind, MergedView};
use berth_scanner::report::{ImageRef, ScanReport, Summary};
use berth_scanner::scan::{self as scanning, CheckResults, CheckRunner, ScanCache, ScanRequest, ScanStep};
use berth_scanner::vuln::{IgnoreRules, VulnDb};
use berth_scanner::{CheckFailure, CheckFinding, FunctionalTest, Layer, Severity};
use berth_store::{Store, Table};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::builtin_plugins::BuiltinPlugin;
use crate::vulndb_update::{self, Downloaded, VulnDbUpdateSpec};
use crate::Engine;

/// Certification records by id.
pub use berth_state::tables::SCAN_RECORDS;
/// This node's scan cache (layer inventories, findings, optimization).
pub const SCAN_LAYER_CACHE: Table = Table("local/scan_layer_cache");

/// The signature algorithm of every record.
pub const SIGNATURE_ALGORITHM: &str = "ecdsa-p256-sha256";
/// Longest functional test allowed.
pub const MAX_TEST_TIMEOUT: Duration = Duration::from_secs(3600);
/// How much of a test's output is kept (its end).
const TEST_OUTPUT_LIMIT: usize = 64 * 1024;
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
            vulndb_source: vulndb_update::DEFAULT_SOURCE.to_string(),
            vulndb_ecosystems: Vec::new(),
            vulndb_update_interval: Duration::ZERO,
        }
    }
}

/// The signed record as stored and served; its payload is a [`ScanRecord`].
pub use berth_state::records::SignedScanRecord;

/// The [`ScanRecord`] a signed record carries.
pub trait SignedPayload {
    fn record(&self) -> Result<ScanRecord, String>;
}

impl SignedPayload for SignedScanRecord {
    fn record(&self) -> Result<ScanRecord, String> {
        serde_json::from_str(&self.payload).map_err(|e| format!("scan record {}: unreadable payload: {e}", self.id))
    }
}

/// What a certification record says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanRecord {
    pub id: String,
    /// The reference as scanned.
    pub image: String,
    /// The manifest digest.
    pub image_digest: String,
    /// The image id (config digest).
    pub image_id: String,
    pub scanner_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_version: Option<String>,
    /// RFC 3339.
    pub created: String,
    /// `scan` (a user), `push` (scan on push), `vulndb` (re-evaluated after an import).
    pub trigger: String,
    /// The record this one re-evaluated, for `vulndb` records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    pub summary: Summary,
    pub report: ScanReport,
}

/// A record's headline, for listings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanRecordSummary {
    pub id: String,
    pub image: String,
    pub image_digest: String,
    pub created: String,
    pub trigger: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_version: Option<String>,
    pub summary: Summary,
    pub signed: bool,
}

/// One line of a scan's progress stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScanProgress {
    /// `inventory`, `vulnerabilities`, `licenses`, `optimization`, `checks`,
    /// `test`, `warning`, `done`, `error`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<usize>,
    /// What the line is about (a layer, a check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `POST /v1/scans`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScanSpec {
    pub image: String,
    /// `None` or `["all"]`: every enabled check; `["none"]` or empty: none.
    pub checks: Option<Vec<String>>,
    pub deny_licenses: Vec<String>,
    /// An ignore file's text (YAML, JSON or OpenVEX) and its name.
    pub ignore: Option<String>,
    pub ignore_name: Option<String>,
    /// A shell command run in the image (`/bin/sh -c`).
    pub test: Option<String>,
    /// Run the image and its HEALTHCHECK until it passes.
    pub test_healthcheck: bool,
    /// Seconds; 30 when unset.
    pub test_timeout_secs: Option<u64>,
}

/// What `berth vulndb status` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VulnDbStatus {
    pub version: Option<String>,
    pub digest: Option<String>,
    pub imported_at: Option<String>,
    pub advisories: usize,
    pub packages: usize,
    pub ecosystems: BTreeMap<String, usize>,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VulnDbImport {
    pub records: usize,
    pub changed: usize,
    pub skipped: usize,
    pub errors: Vec<String>,
    pub status: VulnDbStatus,
    /// Images whose latest record gained findings, by id of the new record.
    pub newly_vulnerable: Vec<NewlyVulnerable>,
    /// The exports a `vulndb update` downloaded, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub downloaded: Vec<Downloaded>,
}

/// An image that an import made vulnerable; also the webhook's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewlyVulnerable {
    pub image: String,
    pub image_digest: String,
    pub record: String,
    pub db_version: String,
    /// `id package@version` of each new finding.
    pub new_findings: Vec<String>,
}

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
            crate::builtin_plugins::seed(registry, &store, &builtins);
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

    // -----------------------------------------------------------------
    // Scans

    /// Scans a local image (`spec.image`): runs the functional test when
    /// asked, then the scan, and stores a signed record. `progress` gets
    /// each step.
    pub async fn scan(
        self: &Arc<Self>,
        spec: ScanSpec,
        progress: Arc<dyn Fn(ScanProgress) + Send + Sync>,
    ) -> Result<SignedScanRecord, ScanError> {
        let image = self.engine.images().resolve(&spec.image)?;
        let ignore = match &spec.ignore {
            Some(text) => Some(IgnoreRules::parse(
                text,
                spec.ignore_name.as_deref().unwrap_or("ignore file"),
            )?),
            None => None,
        };
        berth_scanner::licenses::validate_deny(&spec.deny_licenses).map_err(|e| ScanError::Invalid(e.to_string()))?;
        let checks = self.select_checks(spec.checks.as_deref())?;
        let functional_test = if spec.test.is_some() || spec.test_healthcheck {
            let timeout = Duration::from_secs(spec.test_timeout_secs.unwrap_or(30));
            if timeout.is_zero() || timeout > MAX_TEST_TIMEOUT {
                return Err(ScanError::Invalid(format!(
                    "test timeout must be between 1s and {}s",
                    MAX_TEST_TIMEOUT.as_secs()
                )));
            }
            progress(ScanProgress {
                status: "test".into(),
                message: Some("running the functional test".into()),
                ..ScanProgress::default()
            });
            let result = self
                .functional_test(&image, spec.test.as_deref(), spec.test_healthcheck, timeout)
                .await?;
            progress(ScanProgress {
                status: "test".into(),
                message: Some(format!(
                    "functional test {}",
                    if result.passed { "passed" } else { "failed" }
                )),
                ..ScanProgress::default()
            });
            Some(result)
        } else {
            None
        };
        let this = self.clone();
        let reference = spec.image.clone();
        tokio::task::spawn_blocking(move || {
            this.scan_blocking(
                &reference,
                &image,
                checks,
                &spec.deny_licenses,
                ignore.as_ref(),
                functional_test,
                "scan",
                &*progress,
            )
        })
        .await
        .map_err(|e| ScanError::Failed(format!("the scan task failed: {e}")))?
    }

    /// The checks `wanted` names among the enabled ones.
    fn select_checks(&self, wanted: Option<&[String]>) -> Result<Vec<(PluginInfo, ScannerCheck)>, ScanError> {
        let wanted: Option<Vec<&str>> = wanted.map(|w| w.iter().map(String::as_str).collect());
        match wanted.as_deref() {
            Some([]) | Some(["none"]) => return Ok(Vec::new()),
            None | Some(["all"]) => {
                return match &self.plugins {
                    Ok(registry) => Ok(registry.enabled_scanner_checks()?),
                    Err(_) => Ok(Vec::new()),
                }
            }
            Some(_) => {}
        }
        let registry = self.plugins()?;
        let enabled = registry.enabled_scanner_checks()?;
        let mut chosen = Vec::new();
        for name in wanted.unwrap_or_default() {
            if name == "all" || name == "none" {
                return Err(ScanError::Invalid(format!(
                    "--checks {name} cannot be combined with check names"
                )));
            }
            match enabled.iter().find(|(info, _)| info.manifest.name == name) {
                Some(found) => chosen.push(found.clone()),
                None => {
                    let names: Vec<&str> = enabled.iter().map(|(info, _)| info.manifest.name.as_str()).collect();
                    return Err(ScanError::Invalid(format!(
                        "unknown check {name:?}: enabled checks are {}",
                        if names.is_empty() {
                            "none (install one with `berth plugin install`)".to_string()
                        } else {
                            names.join(", ")
                        }
                    )));
                }
            }
        }
        Ok(chosen)
    }

    /// The blocking part of a scan: layers, the scan, the record.
    #[allow(clippy::too_many_arguments)]
    fn scan_blocking(
        &self,
        reference: &str,
        image: &Image,
        checks: Vec<(PluginInfo, ScannerCheck)>,
        deny_licenses: &[String],
        ignore: Option<&IgnoreRules>,
        functional_test: Option<FunctionalTest>,
        trigger: &str,
        progress: &(dyn Fn(ScanProgress) + Sync),
    ) -> Result<SignedScanRecord, ScanError> {
        let mut dirs = self.engine.images().layer_dirs(image, None)?;
        dirs.reverse();
        let layers: Vec<Layer> = image
            .layers
            .iter()
            .zip(&image.diff_ids)
            .zip(dirs)
            .map(|((digest, diff_id), dir)| Layer {
                digest: digest.clone(),
                diff_id: diff_id.clone(),
                dir,
                size: None,
            })
            .collect();
        let db = self.db();
        let runner = PluginChecks {
            checks,
            info: image_info(self.engine.images(), image),
        };
        let cache = StoreCache { store: &self.store };
        let request = ScanRequest {
            image: ImageRef {
                reference: reference.to_string(),
                digest: image.manifest_digest.clone(),
            },
            layers: &layers,
            db: (!db.is_empty()).then_some(&*db),
            deny_licenses,
            ignore,
            checks: (!runner.checks.is_empty()).then_some(&runner as &dyn CheckRunner),
            functional_test,
            created: chrono::Utc::now(),
        };
        let outcome = scanning::scan_image(&request, &cache, &|step: ScanStep| {
            progress(ScanProgress {
                status: step.phase,
                current: (step.total > 0).then_some(step.current),
                total: (step.total > 0).then_some(step.total),
                id: step.subject,
                cached: step.cached,
                message: None,
            })
        })?;
        // A package database that could not be read (whole or in part) is
        // said, not passed over: the inventory may be incomplete.
        for problem in &outcome.problems {
            progress(ScanProgress {
                status: "warning".into(),
                message: Some(problem.clone()),
                ..Default::default()
            });
        }
        for expired in &outcome.expired_ignores {
            progress(ScanProgress {
                status: "warning".into(),
                message: Some(format!("ignore rule {expired} has expired and was not applied")),
                ..ScanProgress::default()
            });
        }
        tracing::info!(
            image = %reference,
            layers = outcome.stats.layers,
            inventory_cached = outcome.stats.inventory_cached,
            files = outcome.stats.files,
            duration_ms = outcome.stats.duration_ms,
            "scanned image"
        );
        self.record(reference, image, outcome.report, trigger, None)
    }

    /// Signs and stores a record of `report`.
    fn record(
        &self,
        reference: &str,
        image: &Image,
        report: ScanReport,
        trigger: &str,
        previous: Option<String>,
    ) -> Result<SignedScanRecord, ScanError> {
        let id = berth_model::new_id();
        let record = ScanRecord {
            id: id.clone(),
            image: reference.to_string(),
            image_digest: image.manifest_digest.clone(),
            image_id: image.id.clone(),
            scanner_version: report.scanner_version.clone(),
            db_version: report.database_version.clone(),
            created: report.created.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            trigger: trigger.to_string(),
            previous,
            summary: report.summary(),
            report,
        };
        let payload =
            serde_json::to_string(&record).map_err(|e| ScanError::Failed(format!("encoding scan record {id}: {e}")))?;
        let signed = sign_record(self.signer.as_deref(), &id, payload)?;
        self.engine
            .state()
            .propose(berth_state::ClusterCommand::RecordScan { record: signed.clone() })
            .map_err(|e| ScanError::Failed(format!("storing scan record {id}: {e}")))?;
        Ok(signed)
    }

    /// The records, newest first; only those of `image` (a reference as
    /// scanned, a manifest digest or an image id) when given.
    pub fn list_records(&self, image: Option<&str>) -> Result<Vec<ScanRecordSummary>, ScanError> {
        let wanted = image.map(|i| self.image_keys(i));
        let mut out = Vec::new();
        for (_, signed) in self.store.list::<SignedScanRecord>(SCAN_RECORDS)? {
            let record = match signed.record() {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "skipping an unreadable scan record");
                    continue;
                }
            };
            if let Some(keys) = &wanted {
                if !keys
                    .iter()
                    .any(|k| *k == record.image || *k == record.image_digest || *k == record.image_id)
                {
                    continue;
                }
            }
            out.push(ScanRecordSummary {
                id: record.id,
                image: record.image,
                image_digest: record.image_digest,
                created: record.created,
                trigger: record.trigger,
                db_version: record.db_version,
                summary: record.summary,
                signed: !signed.signature.is_empty(),
            });
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    /// What a user may call an image by: the name itself, and when it names
    /// a local image, its manifest digest and id.
    fn image_keys(&self, image: &str) -> Vec<String> {
        let mut keys = vec![image.to_string()];
        if let Ok(found) = self.engine.images().resolve(image) {
            keys.push(found.manifest_digest);
            keys.push(found.id);
        }
        keys
    }

    /// One record by id (or a unique prefix of at least 4 characters).
    pub fn get_record(&self, id: &str) -> Result<SignedScanRecord, ScanError> {
        if let Some(found) = self.store.get::<SignedScanRecord>(SCAN_RECORDS, id)? {
            return Ok(found);
        }
        let not_found = || ScanError::NotFound(format!("no such scan record: {id}"));
        if id.len() < 4 {
            return Err(not_found());
        }
        let matches: Vec<SignedScanRecord> = self
            .store
            .list::<SignedScanRecord>(SCAN_RECORDS)?
            .into_iter()
            .filter(|(key, _)| key.starts_with(id))
            .map(|(_, r)| r)
            .collect();
        match matches.len() {
            1 => Ok(matches.into_iter().next().ok_or_else(not_found)?),
            0 => Err(not_found()),
            _ => Err(ScanError::Invalid(format!("scan record id prefix {id:?} is ambiguous"))),
        }
    }

    // -----------------------------------------------------------------
    // Functional tests

    async fn functional_test(
        &self,
        image: &Image,
        command: Option<&str>,
        healthcheck: bool,
        timeout: Duration,
    ) -> Result<FunctionalTest, ScanError> {
        let health = if healthcheck {
            let config = raw_config(self.engine.images(), image);
            Some(healthcheck_of(&config).ok_or_else(|| {
                ScanError::Invalid(format!(
                    "image {} has no HEALTHCHECK: use --test CMD instead",
                    image.tags.first().unwrap_or(&image.id)
                ))
            })?)
        } else {
            None
        };
        let (cmd, entrypoint) = match (&health, command) {
            (Some(_), _) => (Vec::new(), None),
            (None, Some(command)) => (
                vec!["/bin/sh".to_string(), "-c".to_string(), command.to_string()],
                Some(Vec::new()),
            ),
            (None, None) => return Err(ScanError::Invalid("no functional test command".into())),
        };
        let name = format!("berth-scan-test-{}", &berth_model::new_id()[..12]);
        let create = ContainerCreate {
            image: image.id.clone(),
            name: Some(name.clone()),
            cmd,
            entrypoint,
            network: Some("none".to_string()),
            ..ContainerCreate::default()
        };
        let container = self.engine.create(create)?;
        let started = Instant::now();
        let outcome = match &health {
            None => self.run_to_exit(&container.id, timeout).await,
            Some(test) => self.run_healthcheck(&container.id, test, timeout).await,
        };
        if let Err(e) = self.engine.remove(&container.id, true).await {
            tracing::warn!(container = %container.id, error = %e, "cannot remove the functional test container");
        }
        let (passed, exit_code, output) = outcome?;
        let shown = match (&health, command) {
            (Some(test), _) => test.clone(),
            (None, Some(command)) => vec!["/bin/sh".to_string(), "-c".to_string(), command.to_string()],
            (None, None) => Vec::new(),
        };
        Ok(FunctionalTest::new(
            shown,
            passed,
            exit_code,
            &output,
            started.elapsed().as_millis() as u64,
        ))
    }

    /// Starts the container and waits for it to exit or the timeout.
    async fn run_to_exit(&self, id: &str, timeout: Duration) -> Result<(bool, Option<i32>, String), ScanError> {
        self.engine.start(id, None).await?;
        let waited = tokio::time::timeout(timeout, self.engine.wait(id, false)).await;
        let (passed, code, note) = match waited {
            Ok(Ok(code)) => (code == 0, Some(code), String::new()),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => (
                false,
                None,
                format!(
                    "\n[berth: the test ran longer than {}s and was killed]\n",
                    timeout.as_secs()
                ),
            ),
        };
        let output = self.container_output(id) + &note;
        Ok((passed, code, output))
    }

    /// Starts the container with its own command and runs the health check
    /// in it until the check passes, the container exits or time runs out.
    async fn run_healthcheck(
        &self,
        id: &str,
        test: &[String],
        timeout: Duration,
    ) -> Result<(bool, Option<i32>, String), ScanError> {
        self.engine.start(id, None).await?;
        let deadline = Instant::now() + timeout;
        let mut output = String::new();
        let mut last_code = None;
        loop {
            let running = matches!(
                self.engine.get(id).map(|c| c.status.state),
                Ok(berth_model::ContainerState::Running)
            );
            if !running {
                output.push_str(&self.container_output(id));
                output.push_str("\n[berth: the container exited before its health check passed]\n");
                return Ok((false, last_code, output));
            }
            let exec = berth_model::ExecCreate {
                cmd: test.to_vec(),
                ..berth_model::ExecCreate::default()
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, self.exec_collect(id, exec)).await {
                Ok(Ok((code, out))) => {
                    output = out;
                    last_code = Some(code);
                    if code == 0 {
                        return Ok((true, Some(0), output));
                    }
                }
                Ok(Err(e)) => {
                    output = e.to_string();
                }
                Err(_) => {}
            }
            if Instant::now() + Duration::from_millis(500) >= deadline {
                output.push_str(&format!(
                    "\n[berth: the health check did not pass within {}s]\n",
                    timeout.as_secs()
                ));
                return Ok((false, last_code, output));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Runs an exec to its end: exit code and output.
    async fn exec_collect(&self, id: &str, exec: berth_model::ExecCreate) -> Result<(i32, String), ScanError> {
        use berth_runtime::frame;
        let (mut stream, mut child) = self.engine.exec(id, exec).await?;
        let mut output = Vec::new();
        let mut code = None;
        while let Some((kind, payload)) = frame::read_frame(&mut stream)
            .await
            .map_err(|e| ScanError::Failed(format!("reading the health check's output: {e}")))?
        {
            match kind {
                frame::STDOUT | frame::STDERR => output.extend_from_slice(&payload),
                frame::EXIT => {
                    code = String::from_utf8_lossy(&payload).trim().parse::<i32>().ok();
                    break;
                }
                frame::ERROR => {
                    output.extend_from_slice(&payload);
                    break;
                }
                _ => {}
            }
        }
        let _ = child.wait().await;
        Ok((code.unwrap_or(-1), String::from_utf8_lossy(&output).into_owned()))
    }

    /// The end of a container's log.
    fn container_output(&self, id: &str) -> String {
        let Ok((_, path)) = self.engine.log_path(id) else {
            return String::new();
        };
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut out = String::new();
        for line in text.lines() {
            if let Ok(entry) = serde_json::from_str::<berth_runtime::shim::LogLine>(line) {
                out.push_str(&entry.log);
            }
        }
        berth_scanner::report::truncate_output(&out, TEST_OUTPUT_LIMIT).0
    }

    // -----------------------------------------------------------------
    // Vulnerability database

    pub fn vulndb_status(&self) -> VulnDbStatus {
        status_of(&self.db())
    }

    /// Imports OSV data from `path` (on this node), saves the database,
    /// re-evaluates every image's latest record and notifies about images
    /// that became vulnerable.
    pub fn import_vulndb(&self, path: &Path) -> Result<VulnDbImport, ScanError> {
        self.import_with(&path.display().to_string(), |db| {
            Ok(berth_scanner::vuln::import(path, db)?)
        })
    }

    /// One import: `fill` adds records to a copy of the database, which
    /// replaces it only when `fill` succeeds; then the re-evaluation.
    fn import_with(
        &self,
        from: &str,
        fill: impl FnOnce(&mut VulnDb) -> Result<berth_scanner::vuln::ImportStats, ScanError>,
    ) -> Result<VulnDbImport, ScanError> {
        let _one_at_a_time = self.import_lock.lock().unwrap_or_else(PoisonError::into_inner);
        let mut db = (*self.db()).clone();
        let stats = fill(&mut db)?;
        db.save(&self.db_path)?;
        let db = Arc::new(db);
        *self.db.write().unwrap_or_else(PoisonError::into_inner) = db.clone();
        tracing::info!(
            from,
            records = stats.records,
            changed = stats.changed,
            skipped = stats.skipped,
            version = %db.version(),
            "imported vulnerability data"
        );
        let newly_vulnerable = match stats.changed {
            0 => Vec::new(),
            _ => self.reevaluate_all(&db)?,
        };
        for image in &newly_vulnerable {
            self.notify(image);
        }
        Ok(VulnDbImport {
            records: stats.records,
            changed: stats.changed,
            skipped: stats.skipped,
            errors: stats.errors,
            status: status_of(&db),
            newly_vulnerable,
            downloaded: Vec::new(),
        })
    }

    /// The exports `spec` asks for, with the daemon's settings filling in
    /// what it leaves out; a bad source or ecosystem name is refused here.
    pub fn plan_vulndb_update(&self, spec: &VulnDbUpdateSpec) -> Result<Vec<vulndb_update::Export>, ScanError> {
        vulndb_update::plan(spec, &self.config.vulndb_source, &self.config.vulndb_ecosystems)
            .map_err(ScanError::Invalid)
    }

    /// `vulndb update`: downloads every export of the plan to
    /// `<data-root>/tmp/`, then imports them all as one import (see
    /// [`Self::import_vulndb`]). A failed download, an unreadable archive
    /// or one without OSV records fails the update and leaves the database
    /// as it was; the error names the ecosystem and the URL. `progress` gets
    /// `download` and `import` steps (`id`: the ecosystem).
    pub fn update_vulndb(
        &self,
        spec: &VulnDbUpdateSpec,
        progress: &(dyn Fn(ScanProgress) + Sync),
    ) -> Result<VulnDbImport, ScanError> {
        let exports = self.plan_vulndb_update(spec)?;
        let _one_at_a_time = self.update_lock.lock().unwrap_or_else(PoisonError::into_inner);
        let temp = vulndb_update::TempDir::create(&self.engine.data_root().join("tmp"), UPDATE_TEMP_PREFIX)
            .map_err(ScanError::Failed)?;
        let agent = vulndb_update::agent();
        let mut files = Vec::new();
        for (n, export) in exports.iter().enumerate() {
            let path = temp.0.join(format!("{n}.zip"));
            let report = |written: u64, total: Option<u64>| {
                progress(ScanProgress {
                    status: "download".into(),
                    current: Some(written as usize),
                    total: total.map(|t| t as usize),
                    id: Some(export.ecosystem.clone()),
                    message: Some(export.url.clone()),
                    ..ScanProgress::default()
                })
            };
            let bytes = vulndb_update::download(&agent, export, &path, &report).map_err(ScanError::Failed)?;
            tracing::info!(ecosystem = %export.ecosystem, url = %export.url, bytes, "downloaded vulnerability data");
            files.push((export, path, bytes));
        }
        let from = exports.iter().map(|e| e.url.as_str()).collect::<Vec<_>>().join(", ");
        let mut downloaded = Vec::new();
        let mut result = self.import_with(&from, |db| {
            let mut total = berth_scanner::vuln::ImportStats::default();
            for (export, path, bytes) in &files {
                progress(ScanProgress {
                    status: "import".into(),
                    id: Some(export.ecosystem.clone()),
                    ..ScanProgress::default()
                });
                let stats = berth_scanner::vuln::import(path, db).map_err(|e| {
                    ScanError::Failed(format!(
                        "ecosystem {} from {}: {}",
                        export.ecosystem,
                        export.url,
                        // The temporary file's name says nothing to the user.
                        e.to_string().replace(&path.display().to_string(), "the download")
                    ))
                })?;
                if stats.records == 0 {
                    let why = stats
                        .errors
                        .first()
                        .map(|e| format!(": {}", e.replace(&path.display().to_string(), "the download")))
                        .unwrap_or_default();
                    return Err(ScanError::Failed(format!(
                        "ecosystem {} from {}: the archive holds no OSV records{why}",
                        export.ecosystem, export.url
                    )));
                }
                downloaded.push(Downloaded {
                    ecosystem: export.ecosystem.clone(),
                    url: export.url.clone(),
                    bytes: *bytes,
                    records: stats.records,
                });
                total.records += stats.records;
                total.changed += stats.changed;
                total.skipped += stats.skipped;
                total.files += stats.files;
                total.archives += stats.archives;
                let room = 20usize.saturating_sub(total.errors.len());
                total.errors.extend(stats.errors.into_iter().take(room));
            }
            Ok(total)
        })?;
        result.downloaded = downloaded;
        Ok(result)
    }

    /// Updates the database every `--vulndb-update-interval`, on a thread of
    /// its own (downloads block); see [`vulndb_update::next_update_in`].
    fn spawn_vulndb_schedule(self: &Arc<Self>) {
        let interval = self.config.vulndb_update_interval;
        let service = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("vulndb-update".into())
            .spawn(move || {
                let mut last_failure = None;
                loop {
                    let wait = match service.upgrade() {
                        Some(this) => vulndb_update::next_update_in(
                            chrono::Utc::now(),
                            this.db().imported_at(),
                            last_failure,
                            interval,
                        ),
                        None => return,
                    };
                    std::thread::sleep(wait);
                    let Some(this) = service.upgrade() else { return };
                    match this.update_vulndb(&VulnDbUpdateSpec::default(), &|_| {}) {
                        Ok(done) => {
                            last_failure = None;
                            tracing::info!(
                                records = done.records,
                                changed = done.changed,
                                newly_vulnerable = done.newly_vulnerable.len(),
                                "scheduled vulnerability database update done"
                            );
                        }
                        Err(e) => {
                            last_failure = Some(chrono::Utc::now());
                            tracing::error!(error = %e, "scheduled vulnerability database update failed; the database is unchanged");
                        }
                    }
                }
            });
        match spawned {
            Ok(_) => tracing::info!(
                interval_secs = interval.as_secs(),
                source = %self.config.vulndb_source,
                "vulnerability database updates scheduled"
            ),
            Err(e) => tracing::error!(error = %e, "cannot start the vulnerability database schedule"),
        }
    }

    /// Matches the latest record of each image digest against `db`.
    fn reevaluate_all(&self, db: &VulnDb) -> Result<Vec<NewlyVulnerable>, ScanError> {
        let mut latest: BTreeMap<String, ScanRecord> = BTreeMap::new();
        for (_, signed) in self.store.list::<SignedScanRecord>(SCAN_RECORDS)? {
            let Ok(record) = signed.record() else { continue };
            let newer = latest
                .get(&record.image_digest)
                .is_none_or(|current| record.created > current.created);
            if newer {
                latest.insert(record.image_digest.clone(), record);
            }
        }
        let mut out = Vec::new();
        for (_, previous) in latest {
            let report = scanning::reevaluate(&previous.report, db, chrono::Utc::now());
            let added: Vec<String> = scanning::new_findings(&previous.report, &report)
                .iter()
                .map(|v| format!("{} {}@{}", v.id, v.package, v.installed_version))
                .collect();
            if added.is_empty() {
                continue;
            }
            let image = bare_image(&previous.image_id, &previous.image_digest, Vec::new(), Vec::new());
            let signed = self.record(&previous.image, &image, report, "vulndb", Some(previous.id.clone()))?;
            out.push(NewlyVulnerable {
                image: previous.image.clone(),
                image_digest: previous.image_digest.clone(),
                record: signed.id,
                db_version: db.version(),
                new_findings: added,
            });
        }
        Ok(out)
    }

    /// The `image vulnerable` event and the webhooks (in the background; a
    /// failed webhook is logged).
    fn notify(&self, found: &NewlyVulnerable) {
        let count = found.new_findings.len().to_string();
        self.engine.emit(
            "image",
            "vulnerable",
            &found.image_digest,
            &[
                ("name", &found.image),
                ("record", &found.record),
                ("newFindings", &count),
                ("dbVersion", &found.db_version),
            ],
        );
        if self.webhooks.is_empty() {
            return;
        }
        let body = serde_json::json!({
            "event": "image.vulnerable",
            "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "image": found.image,
            "imageDigest": found.image_digest,
            "record": found.record,
            "dbVersion": found.db_version,
            "newFindings": found.new_findings,
        })
        .to_string();
        self.webhooks.send(&body);
    }

    /// Every webhook and the state of its deliveries.
    pub fn webhooks(&self) -> Vec<crate::webhooks::WebhookState> {
        self.webhooks.list()
    }

    // -----------------------------------------------------------------
    // Plugins

    pub fn list_plugins(&self) -> Result<Vec<PluginInfo>, ScanError> {
        Ok(self.plugins()?.list()?)
    }

    /// Whether `info` is one of the plugins built into this binary.
    pub fn is_builtin_plugin(&self, info: &PluginInfo) -> bool {
        crate::builtin_plugins::is_builtin(&self.builtins, &info.manifest)
    }

    pub fn inspect_plugin(&self, name: &str, version: Option<&str>) -> Result<PluginInfo, ScanError> {
        Ok(self.plugins()?.inspect(name, version)?)
    }

    pub fn install_plugin(&self, manifest_json: &[u8], wasm: &[u8]) -> Result<PluginInfo, ScanError> {
        let info = self.plugins()?.install_bytes(manifest_json, wasm)?;
        tracing::info!(plugin = %info.manifest.name, version = %info.manifest.version, "installed plugin");
        Ok(info)
    }

    pub fn enable_plugin(&self, name: &str, version: Option<&str>) -> Result<PluginInfo, ScanError> {
        Ok(self.plugins()?.enable(name, version)?)
    }

    pub fn disable_plugin(&self, name: &str, version: Option<&str>) -> Result<PluginInfo, ScanError> {
        Ok(self.plugins()?.disable(name, version)?)
    }

    pub fn remove_plugin(&self, name: &str, version: Option<&str>) -> Result<PluginInfo, ScanError> {
        Ok(self.plugins()?.remove(name, version)?)
    }

    /// Pushes an installed plugin to `reference` as an OCI artifact;
    /// returns the manifest digest.
    pub fn push_plugin(&self, name: &str, version: Option<&str>, reference: &str) -> Result<String, ScanError> {
        let (info, wasm) = self.plugins()?.wasm(name, version)?;
        let artifact = berth_plugin::to_oci_artifact(&info.manifest, &wasm)?;
        let target = berth_model::Reference::parse(reference).map_err(ScanError::Invalid)?;
        let tag = target
            .tag
            .clone()
            .or(target.digest.clone())
            .unwrap_or_else(|| info.manifest.version.clone());
        let registry = OciClient::new(&target.registry);
        for blob in [&artifact.config, &artifact.layer] {
            registry.push_blob(&target.repository, &blob.digest, &blob.data)?;
        }
        registry.put_manifest(
            &target.repository,
            &tag,
            berth_plugin::oci::MANIFEST_MEDIA_TYPE,
            &artifact.manifest,
        )?;
        tracing::info!(plugin = %name, reference, digest = %artifact.manifest_digest, "pushed plugin");
        Ok(artifact.manifest_digest)
    }

    /// Pulls a plugin artifact from `reference` and installs it. With
    /// `expect_digest`, the manifest must have that digest (content trust).
    pub fn pull_plugin(&self, reference: &str, expect_digest: Option<&str>) -> Result<PluginInfo, ScanError> {
        let source = berth_model::Reference::parse(reference).map_err(ScanError::Invalid)?;
        let wanted = source
            .digest
            .clone()
            .or(source.tag.clone())
            .unwrap_or_else(|| "latest".to_string());
        let registry = OciClient::new(&source.registry);
        let manifest = registry.get(
            &format!("/v2/{}/manifests/{wanted}", source.repository),
            Some(berth_plugin::oci::MANIFEST_MEDIA_TYPE),
            4 << 20,
        )?;
        let digest = berth_plugin::manifest::sha256_digest(&manifest);
        for expected in [source.digest.as_deref(), expect_digest].into_iter().flatten() {
            if expected != digest {
                return Err(ScanError::Invalid(format!(
                    "{reference}: the registry sent a manifest with digest {digest}, not {expected}"
                )));
            }
        }
        let blobs = berth_plugin::read_oci_manifest(&manifest)?;
        let blob = |digest: &str, size: u64| {
            registry.get(&format!("/v2/{}/blobs/{digest}", source.repository), None, size.max(1))
        };
        let config = blob(&blobs.config.digest, blobs.config.size)?;
        let wasm = blob(&blobs.layer.digest, blobs.layer.size)?;
        let plugin_manifest = berth_plugin::plugin_from_blobs(&blobs, &config, &wasm)?;
        let json = serde_json::to_vec(&plugin_manifest)
            .map_err(|e| ScanError::Failed(format!("encoding the plugin manifest: {e}")))?;
        self.install_plugin(&json, &wasm)
    }

    // -----------------------------------------------------------------
    // Scans on push

    /// Called after a manifest was pushed to this node's registry: scans it
    /// in the background when scans on push are on and it is an image.
    /// Every push ends in an `image scan` event (`trigger=push`) saying what
    /// became of it: `outcome` is `scanned`, `skipped` (not an image),
    /// `failed` or `off` (`--scan-on-push false`).
    pub fn pushed(self: &Arc<Self>, repository: &str, reference: &str, digest: &str) {
        let name = if berth_model::validate_digest(reference).is_ok() {
            format!("{repository}@{reference}")
        } else {
            format!("{repository}:{reference}")
        };
        let outcome = |this: &ScanService, name: &str, digest: &str, outcome: &str| {
            this.engine.emit(
                "image",
                "scan",
                digest,
                &[("name", name), ("trigger", "push"), ("outcome", outcome)],
            );
        };
        if !self.config.scan_on_push {
            outcome(self, &name, digest, "off");
            return;
        }
        let this = self.clone();
        let digest = digest.to_string();
        let spawned = tokio::runtime::Handle::try_current().map(|rt| {
            rt.spawn_blocking(move || match this.scan_pushed(&name, &digest) {
                Ok(true) => outcome(&this, &name, &digest, "scanned"),
                Ok(false) => outcome(&this, &name, &digest, "skipped"),
                Err(e) => {
                    tracing::warn!(image = %name, digest = %digest, error = %e, "scan on push failed");
                    outcome(&this, &name, &digest, "failed");
                }
            })
        });
        if spawned.is_err() {
            tracing::warn!("scan on push skipped: no async runtime");
        }
    }

    /// Whether there was an image to scan.
    fn scan_pushed(&self, name: &str, digest: &str) -> Result<bool, ScanError> {
        let Some(image) = registry_image(self.engine.images(), digest)? else {
            return Ok(false);
        };
        let checks = self.select_checks(None)?;
        let record = self.scan_blocking(name, &image, checks, &[], None, None, "push", &|_| {})?;
        tracing::info!(image = %name, record = %record.id, "scanned pushed image");
        Ok(true)
    }
}

fn status_of(db: &VulnDb) -> VulnDbStatus {
    if db.is_empty() {
        return VulnDbStatus::default();
    }
    VulnDbStatus {
        version: Some(db.version()),
        digest: Some(db.digest().to_string()),
        imported_at: db
            .imported_at()
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        advisories: db.len(),
        packages: db.package_count(),
        ecosystems: db.counts_by_ecosystem(),
    }
}

/// An image record for a manifest stored in the content store (pushed to
/// the registry); `None` when it is not a single-platform image (an index,
/// a signature, a plugin or another artifact).
fn registry_image(images: &berth_image::ImageStore, digest: &str) -> Result<Option<Image>, ScanError> {
    const IMAGE_CONFIGS: [&str; 2] = [
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
    ];
    let read = |digest: &str| -> Result<Value, ScanError> {
        let path = images.blob_path(digest)?;
        let bytes = std::fs::read(&path).map_err(|e| ScanError::Failed(format!("reading {}: {e}", path.display())))?;
        serde_json::from_slice(&bytes).map_err(|e| ScanError::Failed(format!("blob {digest} is not JSON: {e}")))
    };
    let manifest = read(digest)?;
    let config_type = manifest["config"]["mediaType"].as_str().unwrap_or_default();
    if !IMAGE_CONFIGS.contains(&config_type) {
        return Ok(None);
    }
    let config_digest = manifest["config"]["digest"].as_str().unwrap_or_default().to_string();
    let config = read(&config_digest)?;
    let layers: Vec<String> = manifest["layers"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|d| d["digest"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
        .as_array()
        .map(|l| l.iter().filter_map(|d| d.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if layers.is_empty() || layers.len() != diff_ids.len() {
        return Ok(None);
    }
    Ok(Some(bare_image(&config_digest, digest, layers, diff_ids)))
}

/// An image record with ids and layers only (not stored).
fn bare_image(id: &str, manifest_digest: &str, layers: Vec<String>, diff_ids: Vec<String>) -> Image {
    Image {
        id: id.to_string(),
        manifest_digest: manifest_digest.to_string(),
        tags: Vec::new(),
        repo_digests: Vec::new(),
        index_digest: None,
        layers,
        diff_ids,
        size: 0,
        created: None,
        architecture: String::new(),
        os: String::new(),
        config: Default::default(),
    }
}

/// The image's config blob as JSON (`Null` when it cannot be read).
fn raw_config(images: &berth_image::ImageStore, image: &Image) -> Value {
    images
        .blob_path(&image.id)
        .ok()
        .and_then(|path| std::fs::read(path).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(Value::Null)
}

/// The HEALTHCHECK test as an exec command (`CMD-SHELL x` → `/bin/sh -c x`).
fn healthcheck_of(config: &Value) -> Option<Vec<String>> {
    let test: Vec<String> = config["config"]["Healthcheck"]["Test"]
        .as_array()?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    match test.split_first() {
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => Some(rest.to_vec()),
        Some((kind, [command])) if kind == "CMD-SHELL" => {
            Some(vec!["/bin/sh".to_string(), "-c".to_string(), command.clone()])
        }
        _ => None,
    }
}

/// What a check plugin is told about the image.
fn image_info(images: &berth_image::ImageStore, image: &Image) -> ImageInfo {
    let raw = raw_config(images, image);
    let config = &raw["config"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let mut labels: Vec<(String, String)> = config["Labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    labels.sort();
    let env = strings(&config["Env"]);
    ImageInfo {
        user: config["User"].as_str().filter(|u| !u.is_empty()).map(str::to_string),
        exposed_ports: config["ExposedPorts"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default(),
        env: ImageInfo::split_env(env.iter().map(String::as_str)),
        entrypoint: strings(&config["Entrypoint"]),
        cmd: strings(&config["Cmd"]),
        has_healthcheck: healthcheck_of(&raw).is_some(),
        labels,
        working_dir: config["WorkingDir"]
            .as_str()
            .filter(|w| !w.is_empty())
            .map(str::to_string),
    }
}

/// The scan cache in the store's `local/scan_layer_cache` table.
struct StoreCache<'a> {
    store: &'a Store,
}

impl ScanCache for StoreCache<'_> {
    fn get(&self, key: &str) -> Option<Value> {
        self.store.get::<Value>(SCAN_LAYER_CACHE, key).ok().flatten()
    }

    fn put(&self, key: &str, value: Value) {
        if let Err(e) = self.store.write(|t| t.put(SCAN_LAYER_CACHE, key, &value)) {
            tracing::warn!(key, error = %e, "cannot write the scan cache");
        }
    }
}

/// Enabled scanner-check plugins as the scanner's [`CheckRunner`]: each
/// on its own thread, each call under the host's limits.
struct PluginChecks {
    checks: Vec<(PluginInfo, ScannerCheck)>,
    info: ImageInfo,
}

impl CheckRunner for PluginChecks {
    fn run_checks(&self, view: Arc<MergedView>, progress: &(dyn Fn(&str) + Sync)) -> CheckResults {
        let fs: Arc<dyn ImageFs> = Arc::new(MergedImageFs { view });
        let results: Mutex<CheckResults> = Mutex::new(CheckResults::default());
        std::thread::scope(|scope| {
            for (info, check) in &self.checks {
                let fs = fs.clone();
                let results = &results;
                let name = info.manifest.name.clone();
                scope.spawn(move || {
                    let outcome = check.run(&self.info, fs);
                    let mut results = results.lock().unwrap_or_else(PoisonError::into_inner);
                    match outcome {
                        Ok(findings) => results.findings.extend(findings.into_iter().map(|f| CheckFinding {
                            check: name.clone(),
                            rule: f.rule,
                            severity: severity_of(f.severity),
                            message: f.message,
                            path: f.path,
                        })),
                        Err(e) => {
                            tracing::warn!(check = %name, error = %e, "check failed");
                            results.failures.push(CheckFailure {
                                check: name.clone(),
                                reason: e.to_string(),
                            });
                        }
                    }
                    drop(results);
                    progress(&name);
                });
            }
        });
        results.into_inner().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A plugin's severity in the report's terms (the report has no "info":
/// it is the least severe, `unknown`).
fn severity_of(severity: berth_plugin::Severity) -> Severity {
    match severity {
        berth_plugin::Severity::Info => Severity::Unknown,
        berth_plugin::Severity::Low => Severity::Low,
        berth_plugin::Severity::Medium => Severity::Medium,
        berth_plugin::Severity::High => Severity::High,
        berth_plugin::Severity::Critical => Severity::Critical,
    }
}

/// The image's merged layers as a plugin's read-only filesystem.
pub struct MergedImageFs {
    pub view: Arc<MergedView>,
}

fn is_root(path: &str) -> bool {
    path.split('/').all(|p| p.is_empty() || p == ".")
}

fn fs_error(e: berth_scanner::layers::Error) -> FsError {
    use berth_scanner::layers::Error as E;
    match e {
        E::NotFound { .. } => FsError::NotFound,
        E::NotAFile { .. } => FsError::NotAFile,
        E::SymlinkLoop { .. } => FsError::TooManyLinks,
        other => FsError::Io(other.to_string()),
    }
}

fn stat_of(entry: &berth_scanner::layers::Entry) -> FileStat {
    FileStat {
        kind: match entry.kind {
            EntryKind::File => FileKind::File,
            EntryKind::Dir => FileKind::Dir,
            EntryKind::Symlink => FileKind::Symlink,
            EntryKind::Other | EntryKind::Whiteout => FileKind::Other,
        },
        size: entry.size,
        mode: entry.mode & 0o7777,
        uid: entry.uid,
        gid: entry.gid,
    }
}

const ROOT_STAT: FileStat = FileStat {
    kind: FileKind::Dir,
    size: 0,
    mode: 0o755,
    uid: 0,
    gid: 0,
};

impl ImageFs for MergedImageFs {
    fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>, FsError> {
        let dir = if is_root(path) {
            String::new()
        } else {
            let (resolved, entry) = self.view.resolve(path).map_err(fs_error)?;
            if entry.kind != EntryKind::Dir {
                return Err(FsError::NotADirectory);
            }
            resolved
        };
        let mut entries: Vec<DirEntry> = self
            .view
            .children(if dir.is_empty() { "/" } else { &dir })
            .map(|(name, entry)| DirEntry {
                name: name.to_string(),
                stat: stat_of(entry),
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    fn read(&self, path: &str, offset: u64, max_len: u32) -> Result<Vec<u8>, FsError> {
        if is_root(path) {
            return Err(FsError::NotAFile);
        }
        let (resolved, entry) = self.view.resolve(path).map_err(fs_error)?;
        if entry.kind != EntryKind::File {
            return Err(FsError::NotAFile);
        }
        let mut file = self.view.open_entry(&resolved, entry).map_err(fs_error)?;
        if offset >= entry.size {
            return Ok(Vec::new());
        }
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| FsError::Io(e.to_string()))?;
        let mut data = Vec::with_capacity((max_len as u64).min(entry.size - offset) as usize);
        file.take(max_len as u64)
            .read_to_end(&mut data)
            .map_err(|e| FsError::Io(e.to_string()))?;
        Ok(data)
    }

    fn stat(&self, path: &str) -> Result<FileStat, FsError> {
        if is_root(path) {
            return Ok(ROOT_STAT);
        }
        let (_, entry) = self.view.resolve_nofollow(path).map_err(fs_error)?;
        Ok(stat_of(entry))
    }

    fn read_link(&self, path: &str) -> Result<String, FsError> {
        if is_root(path) {
            return Err(FsError::NotASymlink);
        }
        let (resolved, entry) = self.view.resolve_nofollow(path).map_err(fs_error)?;
        if entry.kind != EntryKind::Symlink {
            return Err(FsError::NotASymlink);
        }
        self.view.read_link(&resolved, entry).map_err(fs_error)
    }
}

/// `scheme://host[:port]` of a URL, without its path, query or user info.
fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Just enough of the OCI Distribution protocol to move a plugin artifact:
/// anonymous access (a loopback registry speaks plain HTTP, others HTTPS).
struct OciClient {
    agent: ureq::Agent,
    base: String,
    registry: String,
}

impl OciClient {
    fn new(registry: &str) -> OciClient {
        let host = berth_image::registry_key(registry);
        let loopback = berth_image::is_loopback(&host);
        OciClient {
            agent: http_agent(),
            base: format!("{}://{host}", if loopback { "http" } else { "https" }),
            registry: host,
        }
    }

    fn error(&self, message: impl std::fmt::Display) -> ScanError {
        ScanError::Failed(format!("registry {}: {message}", self.registry))
    }

    fn get(&self, path: &str, accept: Option<&str>, limit: u64) -> Result<Vec<u8>, ScanError> {
        let mut request = self.agent.get(format!("{}{path}", self.base));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let mut response = request.call().map_err(|e| self.error(format!("GET {path}: {e}")))?;
        if !response.status().is_success() {
            return Err(self.error(format!("GET {path} answered {}", response.status())));
        }
        response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| self.error(format!("GET {path}: {e}")))
    }

    fn push_blob(&self, repository: &str, digest: &str, data: &[u8]) -> Result<(), ScanError> {
        let head = format!("{}/v2/{repository}/blobs/{digest}", self.base);
        if let Ok(response) = self.agent.head(&head).call() {
            if response.status().is_success() {
                return Ok(());
            }
        }
        let start = format!("/v2/{repository}/blobs/uploads/");
        let response = self
            .agent
            .post(format!("{}{start}", self.base))
            .send(&[][..])
            .map_err(|e| self.error(format!("POST {start}: {e}")))?;
        if response.status().as_u16() != 202 {
            return Err(self.error(format!("POST {start} answered {}", response.status())));
        }
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| self.error(format!("POST {start} gave no upload location")))?;
        let mut url = if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!("{}{location}", self.base)
        };
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("digest={digest}"));
        let response = self
            .agent
            .put(&url)
            .header("content-type", "application/octet-stream")
            .send(data)
            .map_err(|e| self.error(format!("PUT blob {digest}: {e}")))?;
        if response.status().as_u16() != 201 {
            return Err(self.error(format!("PUT blob {digest} answered {}", response.status())));
        }
        Ok(())
    }

    fn put_manifest(&self, repository: &str, reference: &str, media_type: &str, bytes: &[u8]) -> Result<(), ScanError> {
        let path = format!("/v2/{repository}/manifests/{reference}");
        let response = self
            .agent
            .put(format!("{}{path}", self.base))
            .header("content-type", media_type)
            .send(bytes)
            .map_err(|e| self.error(format!("PUT {path}: {e}")))?;
        if response.status().as_u16() != 201 {
            return Err(self.error(format!("PUT {path} answered {}", response.status())));
        }
        Ok(())
    }
}

/// A record signed by `signer`. A record is stored signed or not at all:
/// without a signer, or when signing fails, the scan fails with the reason.
fn sign_record(signer: Option<&dyn RecordSigner>, id: &str, payload: String) -> Result<SignedScanRecord, ScanError> {
    let signer = signer.ok_or_else(|| {
        ScanError::Unavailable(
            "the scan cannot be recorded: this node has no cluster key to sign it \
             (the cluster CA could not be opened; see the daemon's log)"
                .into(),
        )
    })?;
    let signature = signer
        .sign(payload.as_bytes())
        .map_err(|e| ScanError::Failed(format!("the scan cannot be recorded: signing record {id}: {e}")))?;
    Ok(SignedScanRecord {
        id: id.to_string(),
        payload,
        signature: hex::encode(signature),
        key_id: signer.key_id(),
        algorithm: SIGNATURE_ALGORITHM.to_string(),
    })
}

/// Whether `signature` (hex of DER) is the cluster key's over `payload`,
/// checked with `verify` (the CA's public key).
pub fn check_record(
    record: &SignedScanRecord,
    verify: impl FnOnce(&[u8], &[u8]) -> bool,
) -> Result<ScanRecord, String> {
    if record.signature.is_empty() {
        return Err(format!("scan record {} is not signed", record.id));
    }
    if record.algorithm != SIGNATURE_ALGORITHM {
        return Err(format!(
            "scan record {}: unknown signature algorithm {:?}",
            record.id, record.algorithm
        ));
    }
    let signature =
        hex::decode(&record.signature).map_err(|_| format!("scan record {}: the signature is not hex", record.id))?;
    if !verify(record.payload.as_bytes(), &signature) {
        return Err(format!(
            "scan record {}: the signature does not match the cluster CA's key",
            record.id
        ));
    }
    let inner = record.record()?;
    if inner.id != record.id {
        return Err(format!(
            "scan record {}: the signed payload names record {}",
            record.id, inner.id
        ));
    }
    Ok(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthcheck_forms() {
        let config = |test: Value| serde_json::json!({"config": {"Healthcheck": {"Test": test}}});
        assert_eq!(
            healthcheck_of(&config(serde_json::json!(["CMD", "/bin/check", "-q"]))),
            Some(vec!["/bin/check".to_string(), "-q".to_string()])
        );
        assert_eq!(
            healthcheck_of(&config(serde_json::json!(["CMD-SHELL", "test -f /ok"]))),
            Some(vec!["/bin/sh".to_string(), "-c".to_string(), "test -f /ok".to_string()])
        );
        assert_eq!(healthcheck_of(&config(serde_json::json!(["NONE"]))), None);
        assert_eq!(healthcheck_of(&Value::Null), None);
    }

    #[test]
    fn a_record_verifies_only_with_its_own_payload() {
        let record = ScanRecord {
            id: "abc".into(),
            image: "x:1".into(),
            image_digest: "sha256:00".into(),
            image_id: "sha256:11".into(),
            scanner_version: "0".into(),
            db_version: None,
            created: "2024-01-01T00:00:00Z".into(),
            trigger: "scan".into(),
            previous: None,
            summary: Summary::default(),
            report: ScanReport::new(
                ImageRef {
                    reference: "x:1".into(),
                    digest: "sha256:00".into(),
                },
                chrono::DateTime::UNIX_EPOCH,
            ),
        };
        let payload = serde_json::to_string(&record).unwrap();
        // A stand-in "signature": the payload's length, so only the exact bytes verify.
        let verify = |message: &[u8], sig: &[u8]| sig == message.len().to_be_bytes();
        let mut signed = SignedScanRecord {
            id: "abc".into(),
            signature: hex::encode(payload.len().to_be_bytes()),
            payload,
            key_id: "k".into(),
            algorithm: SIGNATURE_ALGORITHM.into(),
        };
        assert_eq!(check_record(&signed, verify).unwrap().image, "x:1");
        signed.payload = signed.payload.replace("x:1", "y:22");
        assert!(check_record(&signed, verify).unwrap_err().contains("does not match"));
        signed.signature.clear();
        assert!(check_record(&signed, verify).unwrap_err().contains("not signed"));
    }

    struct Signer(Result<Vec<u8>, String>);

    impl RecordSigner for Signer {
        fn key_id(&self) -> String {
            "sha256:k".into()
        }
        fn sign(&self, _: &[u8]) -> Result<Vec<u8>, String> {
            self.0.clone()
        }
    }

    #[test]
    fn a_record_is_signed_or_not_made() {
        let signed = sign_record(Some(&Signer(Ok(vec![1, 2]))), "r1", "{}".into()).unwrap();
        assert_eq!(
            (signed.signature.as_str(), signed.key_id.as_str()),
            ("0102", "sha256:k")
        );
        let err = sign_record(Some(&Signer(Err("token removed".into()))), "r2", "{}".into()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the scan cannot be recorded: signing record r2: token removed"
        );
        let err = sign_record(None, "r3", "{}".into()).unwrap_err();
        assert!(err.to_string().contains("no cluster key to sign it"), "{err}");
    }
}
