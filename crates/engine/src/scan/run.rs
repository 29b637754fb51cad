//! Running a scan: choosing the checks, reading the image's layers through
//! `berth_scanner::scan` with the store's per-layer cache, running the
//! enabled scanner-check plugins over the merged layers ([`MergedImageFs`])
//! and recording the result; also what a plugin is told about the image.

pub use berth_scanner::records::ScanSpec;
use std::io::{Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use berth_model::Image;
use berth_plugin::{DirEntry, FileKind, FileStat, FsError, ImageFs, ImageInfo, ScannerCheck};
use berth_scanner::layers::{EntryKind, MergedView};
use berth_scanner::report::ImageRef;
use berth_scanner::scan::{self as scanning, CheckResults, CheckRunner, ScanCache, ScanRequest, ScanStep};
use berth_scanner::vuln::IgnoreRules;
use berth_scanner::{CheckFailure, CheckFinding, FunctionalTest, Layer, Severity};
use berth_store::Store;
use serde_json::Value;

use super::functional::healthcheck_of;
use super::{PluginInfo, ScanError, ScanProgress, ScanService, SignedScanRecord, MAX_TEST_TIMEOUT, SCAN_LAYER_CACHE};

impl ScanService {
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
    pub(super) fn select_checks(
        &self,
        wanted: Option<&[String]>,
    ) -> Result<Vec<(PluginInfo, ScannerCheck)>, ScanError> {
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
    pub(super) fn scan_blocking(
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
                digest: digest.to_string(),
                diff_id: diff_id.to_string(),
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
                digest: image.manifest_digest.to_string(),
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
}

/// An image record with ids and layers only (not stored).
pub(super) fn bare_image(id: &str, manifest_digest: &str, layers: Vec<String>, diff_ids: Vec<String>) -> Image {
    Image {
        id: id.to_string().into(),
        manifest_digest: manifest_digest.to_string().into(),
        tags: Vec::new(),
        repo_digests: Vec::new(),
        index_digest: None,
        layers: layers.into_iter().map(Into::into).collect(),
        diff_ids: diff_ids.into_iter().map(Into::into).collect(),
        size: 0,
        created: None,
        architecture: String::new(),
        os: String::new(),
        config: Default::default(),
    }
}

/// The image's config blob as JSON (`Null` when it cannot be read).
pub(super) fn raw_config(images: &berth_image::ImageStore, image: &Image) -> Value {
    images
        .blob_path(&image.id)
        .ok()
        .and_then(|path| std::fs::read(path).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(Value::Null)
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
