//! Scan orchestration: one image's layers in, a [`ScanReport`] out.
//!
//! [`scan_image`] runs every part of a scan and reuses what earlier scans
//! learned through a [`ScanCache`] the caller provides:
//!
//! - **inventory** per layer ([`inventory::scan_layer`]), cached by the
//!   layer's diff_id (and this scanner's version), then [`inventory::merge`]d;
//! - **vulnerabilities** per layer: the layer's own components (finished with
//!   the image's os-release, so package URLs and the distro filter are the
//!   image's) matched against the database, cached under
//!   [`vuln::cache_key`] (diff_id, distro, database digest). The image's
//!   findings are the union over its layers, kept only for packages the merged
//!   inventory still shows, so a package an upper layer removed or replaced
//!   drops out. Ignore rules are applied after the cache;
//! - **licenses** against the deny list ([`licenses::check_policy`]);
//! - **optimization** ([`optimize::analyze`]), cached by the image's list of
//!   diff_ids;
//! - **checks** through a [`CheckRunner`] the caller provides (the scanner
//!   runs no plugin itself), over the merged view of the layers, built only
//!   when checks run;
//! - the **functional test** result, which the caller obtained (it needs a
//!   container) and passes in.
//!
//! [`reevaluate`] matches a stored report's components against a newer
//! database without touching the image; [`new_findings`] says what it added.
//!
//! **Architecture Invariant:** the scan reads only the layer directories it
//! is given and the cache; it never runs anything and never reads the clock
//! (the time comes in [`ScanRequest::created`]).

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::inventory::{self, LayerInventory};
use crate::layers::{self, MergedView};
use crate::licenses;
use crate::optimize::{self, Optimization};
use crate::report::{ImageRef, OsInfo, ScanReport, SCANNER_VERSION};
use crate::types::{CheckFailure, CheckFinding, Component, FunctionalTest, Layer, LicenseViolation, Vulnerability};
use crate::vuln::{self, IgnoreRules, VulnDb};

/// Largest `/etc/os-release` read for the report's OS names.
const OS_RELEASE_CAP: u64 = 64 * 1024;
/// How many warnings a report keeps.
const WARNINGS_KEPT: usize = 100;
/// How many inefficient paths, largest files and opaque directories a
/// report keeps.
const OPTIMIZATION_TOP: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("the image has no layers")]
    NoLayers,
    #[error(transparent)]
    Layers(#[from] layers::Error),
    #[error("inventory of layer {layer}: {source}")]
    Inventory {
        layer: String,
        #[source]
        source: inventory::Error,
    },
    #[error(transparent)]
    Optimize(#[from] optimize::OptimizeError),
    #[error(transparent)]
    LicensePolicy(#[from] licenses::Error),
}

/// Where results of earlier scans are kept between scans: values are JSON,
/// keys name what they hold (`inventory:...`, `vulns:...`, `optimize:...`).
/// A failed write only costs a later scan time, so `put` reports nothing.
pub trait ScanCache: Sync {
    fn get(&self, key: &str) -> Option<Value>;
    fn put(&self, key: &str, value: Value);
}

/// A cache in memory, for one process (tests, tools).
#[derive(Debug, Default)]
pub struct MemoryCache {
    entries: Mutex<BTreeMap<String, Value>>,
}

impl MemoryCache {
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys held, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }
}

impl ScanCache for MemoryCache {
    fn get(&self, key: &str) -> Option<Value> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    fn put(&self, key: &str, value: Value) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.to_string(), value);
    }
}

/// What checks found: findings, and the checks that could not finish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckResults {
    pub findings: Vec<CheckFinding>,
    pub failures: Vec<CheckFailure>,
}

/// Runs checks (WASM plugins, built-in ones) over the merged image. A check
/// that fails is a [`CheckFailure`], never an error of the scan.
pub trait CheckRunner: Sync {
    /// Runs every check over `view`; `progress` is told each check's name
    /// when it finishes.
    fn run_checks(&self, view: Arc<MergedView>, progress: &(dyn Fn(&str) + Sync)) -> CheckResults;
}

/// One step of a scan, for progress displays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanStep {
    /// `inventory`, `vulnerabilities`, `licenses`, `optimization`, `checks`.
    pub phase: String,
    /// Units done in this phase (layers, checks) and how many there are.
    pub current: usize,
    pub total: usize,
    /// What the step was about (a layer's diff_id, a check's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The result came from the cache.
    #[serde(default)]
    pub cached: bool,
}

impl ScanStep {
    fn new(phase: &str, current: usize, total: usize, subject: Option<&str>, cached: bool) -> Self {
        ScanStep {
            phase: phase.to_string(),
            current,
            total,
            subject: subject.map(str::to_string),
            cached,
        }
    }
}

/// Everything a scan needs besides the cache.
pub struct ScanRequest<'a> {
    pub image: ImageRef,
    /// The image's layers, bottom first.
    pub layers: &'a [Layer],
    /// The vulnerability database; `None` skips matching.
    pub db: Option<&'a VulnDb>,
    /// License deny entries: SPDX ids or classes.
    pub deny_licenses: &'a [String],
    pub ignore: Option<&'a IgnoreRules>,
    /// `None`: no checks, and no merged view is built.
    pub checks: Option<&'a dyn CheckRunner>,
    pub functional_test: Option<FunctionalTest>,
    pub created: DateTime<Utc>,
}

/// Counters of one scan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanStats {
    pub layers: usize,
    /// Layers whose inventory came from the cache.
    pub inventory_cached: usize,
    /// Layers whose vulnerability findings came from the cache.
    pub vulnerabilities_cached: usize,
    pub optimization_cached: bool,
    /// Regular files in all layers.
    pub files: u64,
    pub duration_ms: u64,
}

/// A scan's report and how it went.
#[derive(Debug, Clone)]
pub struct ScanOutcome {
    pub report: ScanReport,
    pub stats: ScanStats,
    /// Ignore rules past their expiry, by id: not applied.
    pub expired_ignores: Vec<String>,
    /// Package files that could not be read (the scan went on without them);
    /// the same as the report's `warnings`.
    pub problems: Vec<String>,
}

/// Scans an image; see the module docs.
pub fn scan_image(
    request: &ScanRequest<'_>,
    cache: &dyn ScanCache,
    progress: &(dyn Fn(ScanStep) + Sync),
) -> Result<ScanOutcome, ScanError> {
    let started = Instant::now();
    let layers = request.layers;
    if layers.is_empty() {
        return Err(ScanError::NoLayers);
    }
    licenses::validate_deny(request.deny_licenses)?;
    let mut stats = ScanStats {
        layers: layers.len(),
        ..ScanStats::default()
    };

    let (layer_inventories, cached) = layer_inventories(layers, cache, progress)?;
    stats.inventory_cached = cached;
    let merged = inventory::merge(&layer_inventories);
    let mut report = ScanReport::new(request.image.clone(), request.created);
    report.os = merged.os_release.as_ref().map(|os| os_info(os, layers));
    report.components = merged.components.clone();
    report.warnings = warnings(&merged.problems);

    if let Some(db) = request.db {
        report.database_version = Some(db.version());
        let (findings, cached) = match_layers(&layer_inventories, &merged, db, cache, progress);
        stats.vulnerabilities_cached = cached;
        report.vulnerabilities = findings;
    }
    let mut expired_ignores = Vec::new();
    if let Some(rules) = request.ignore {
        let outcome = vuln::apply_ignores(&mut report.vulnerabilities, rules, request.created);
        expired_ignores = outcome
            .expired
            .iter()
            .map(|rule| format!("{} ({})", rule.ids.join("/"), rule.origin))
            .collect();
    }

    report.license_violations = license_violations(&report.components, request.deny_licenses);
    progress(ScanStep::new("licenses", 1, 1, None, false));

    let (optimization, optimization_cached) = optimization(layers, cache)?;
    stats.optimization_cached = optimization_cached;
    stats.files = optimization.layers.iter().map(|layer| layer.files).sum();
    report.optimization = Some(optimization);
    progress(ScanStep::new("optimization", 1, 1, None, optimization_cached));

    if let Some(checks) = request.checks {
        let view = Arc::new(MergedView::open(layers)?);
        let results = checks.run_checks(view, &|name| {
            progress(ScanStep::new("checks", 0, 0, Some(name), false));
        });
        report.check_findings = results.findings;
        report.check_failures = results.failures;
    }
    report.functional_test = request.functional_test.clone();
    report.sort();
    stats.duration_ms = started.elapsed().as_millis() as u64;
    let problems = report.warnings.clone();
    Ok(ScanOutcome {
        report,
        stats,
        expired_ignores,
        problems,
    })
}

/// The report's warnings: each problem as `path: message`, sorted, at
/// most [`WARNINGS_KEPT`] and a count of the rest.
fn warnings(problems: &[inventory::Problem]) -> Vec<String> {
    let mut warnings: Vec<String> = problems
        .iter()
        .map(|p| format!("{}: {}", p.location.path, p.message))
        .collect();
    warnings.sort();
    warnings.dedup();
    if warnings.len() > WARNINGS_KEPT {
        let more = warnings.len() - WARNINGS_KEPT;
        warnings.truncate(WARNINGS_KEPT);
        // Paths start with `/`, so this sorts last.
        warnings.push(format!("and {more} more warnings"));
    }
    warnings
}

fn inventory_key(diff_id: &str) -> String {
    format!("inventory:{SCANNER_VERSION}+{}:{diff_id}", inventory::CACHE_REVISION)
}

/// Each layer's inventory, from the cache or scanned (layers missing from
/// the cache are scanned in parallel). Returns them bottom first and how
/// many came from the cache.
fn layer_inventories(
    layers: &[Layer],
    cache: &dyn ScanCache,
    progress: &(dyn Fn(ScanStep) + Sync),
) -> Result<(Vec<LayerInventory>, usize), ScanError> {
    let total = layers.len();
    let mut found: Vec<Option<LayerInventory>> = layers
        .iter()
        .map(|layer| {
            cache
                .get(&inventory_key(&layer.diff_id))
                .and_then(|value| serde_json::from_value::<LayerInventory>(value).ok())
                .filter(|inv| inv.diff_id == layer.diff_id)
        })
        .collect();
    let cached = found.iter().filter(|f| f.is_some()).count();
    let done = std::sync::atomic::AtomicUsize::new(0);
    for (layer, inv) in layers.iter().zip(&found) {
        if inv.is_some() {
            let current = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            progress(ScanStep::new("inventory", current, total, Some(&layer.diff_id), true));
        }
    }
    let missing: Vec<usize> = (0..layers.len()).filter(|&i| found[i].is_none()).collect();
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(missing.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Result<LayerInventory, ScanError>)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let slot = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&index) = missing.get(slot) else {
                    break;
                };
                let layer = &layers[index];
                let result = inventory::scan_layer(layer).map_err(|source| ScanError::Inventory {
                    layer: layer.diff_id.clone(),
                    source,
                });
                if let Ok(inv) = &result {
                    if let Ok(value) = serde_json::to_value(inv) {
                        cache.put(&inventory_key(&layer.diff_id), value);
                    }
                }
                let current = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                progress(ScanStep::new("inventory", current, total, Some(&layer.diff_id), false));
                results
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((index, result));
            });
        }
    });
    for (index, result) in results.into_inner().unwrap_or_else(PoisonError::into_inner) {
        found[index] = Some(result?);
    }
    let inventories = found.into_iter().flatten().collect::<Vec<_>>();
    Ok((inventories, cached))
}

/// `ID-VERSION_ID` (`debian-12`), or the bare id.
pub fn distro_of(os: Option<&inventory::OsRelease>) -> Option<String> {
    os.map(|os| match &os.version_id {
        Some(version) => format!("{}-{version}", os.id),
        None => os.id.clone(),
    })
}

/// The distro string of a report's OS.
pub fn report_distro(report: &ScanReport) -> Option<String> {
    report.os.as_ref().map(|os| match &os.version {
        Some(version) => format!("{}-{version}", os.id),
        None => os.id.clone(),
    })
}

/// Matches each layer's own components, with the cache; returns the
/// image's findings and how many layers came from the cache.
fn match_layers(
    layer_inventories: &[LayerInventory],
    merged: &inventory::Inventory,
    db: &VulnDb,
    cache: &dyn ScanCache,
    progress: &(dyn Fn(ScanStep) + Sync),
) -> (Vec<Vulnerability>, usize) {
    let distro = distro_of(merged.os_release.as_ref());
    let present: HashSet<&str> = merged.components.iter().map(|c| c.purl.as_str()).collect();
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let mut findings = Vec::new();
    let mut cached = 0;
    let total = layer_inventories.len();
    for (index, layer) in layer_inventories.iter().enumerate() {
        let key = format!(
            "vulns:{SCANNER_VERSION}+{}:{}",
            inventory::CACHE_REVISION,
            vuln::cache_key(&layer.diff_id, distro.as_deref(), db)
        );
        let from_cache = cache
            .get(&key)
            .and_then(|value| serde_json::from_value::<Vec<Vulnerability>>(value).ok());
        let is_cached = from_cache.is_some();
        let layer_findings = match from_cache {
            Some(found) => {
                cached += 1;
                found
            }
            None => {
                let components = layer_components(layer, merged.os_release.as_ref());
                let found = vuln::match_components(db, &components, distro.as_deref());
                if let Ok(value) = serde_json::to_value(&found) {
                    cache.put(&key, value);
                }
                found
            }
        };
        progress(ScanStep::new(
            "vulnerabilities",
            index + 1,
            total,
            Some(&layer.diff_id),
            is_cached,
        ));
        for finding in layer_findings {
            if present.contains(finding.purl.as_str()) && seen.insert((finding.id.clone(), finding.purl.clone())) {
                findings.push(finding);
            }
        }
    }
    (findings, cached)
}

/// The components one layer holds on its own, finished with the image's
/// os-release so their package URLs are the image's.
fn layer_components(layer: &LayerInventory, os_release: Option<&inventory::OsRelease>) -> Vec<Component> {
    let mut alone = layer.clone();
    if alone.facts.os_release.is_none() {
        alone.facts.os_release = os_release.cloned();
    }
    // Deletions only apply to lower layers; alone, there are none.
    alone.whiteouts.clear();
    alone.opaque_dirs.clear();
    inventory::merge(std::slice::from_ref(&alone)).components
}

/// The components whose license the deny list rules out, as report entries.
pub fn license_violations(components: &[Component], deny: &[String]) -> Vec<LicenseViolation> {
    if deny.is_empty() {
        return Vec::new();
    }
    licenses::check_policy(components, deny)
        .into_iter()
        .map(|violation| LicenseViolation {
            component: violation.name,
            version: violation.version,
            purl: violation.purl,
            license: violation.license.unwrap_or_else(|| "unknown".to_string()),
            rule: violation
                .denied
                .iter()
                .map(|entry| match is_class(entry) {
                    true => format!("class:{}", entry.trim().to_ascii_lowercase()),
                    false => format!("deny:{}", entry.trim()),
                })
                .collect::<Vec<_>>()
                .join(","),
        })
        .collect()
}

fn is_class(entry: &str) -> bool {
    matches!(
        entry.trim().to_ascii_lowercase().as_str(),
        "permissive" | "weak-copyleft" | "strong-copyleft" | "unknown"
    )
}

/// The optimization analysis, cached by the image's diff_ids.
fn optimization(layers: &[Layer], cache: &dyn ScanCache) -> Result<(Optimization, bool), ScanError> {
    let mut hasher = Sha256::new();
    for layer in layers {
        hasher.update(layer.diff_id.as_bytes());
        hasher.update(b"\n");
    }
    let key = format!("optimize:{SCANNER_VERSION}:sha256:{}", hex::encode(hasher.finalize()));
    if let Some(found) = cache
        .get(&key)
        .and_then(|value| serde_json::from_value::<Optimization>(value).ok())
    {
        return Ok((found, true));
    }
    let mut analysis = optimize::analyze(layers)?;
    analysis.keep_top(OPTIMIZATION_TOP);
    if let Ok(value) = serde_json::to_value(&analysis) {
        cache.put(&key, value);
    }
    Ok((analysis, false))
}

/// The report's OS from the os-release file the inventory found; its
/// names when the file can be read again, else the id and version alone.
fn os_info(os: &inventory::OsRelease, layers: &[Layer]) -> OsInfo {
    let fallback = || OsInfo {
        id: os.id.clone(),
        name: os.id.clone(),
        version: os.version_id.clone(),
        pretty_name: None,
    };
    let Some(layer) = layers.iter().find(|layer| layer.digest == os.location.layer) else {
        return fallback();
    };
    match read_in_layer(&layer.dir, &os.location.path, OS_RELEASE_CAP) {
        Some(bytes) => OsInfo::from_os_release(&String::from_utf8_lossy(&bytes)).unwrap_or_else(fallback),
        None => fallback(),
    }
}

/// Reads `path` (an image path the merged view resolved, so with no
/// symlink in it) from one layer directory: every ancestor must be a real
/// directory and the file is opened without following a link.
fn read_in_layer(dir: &Path, path: &str, cap: u64) -> Option<Vec<u8>> {
    let mut host = PathBuf::from(dir);
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let (file, ancestors) = parts.split_last()?;
    for part in ancestors {
        if *part == ".." || *part == "." {
            return None;
        }
        host.push(part);
        if !std::fs::symlink_metadata(&host).ok()?.is_dir() {
            return None;
        }
    }
    host.push(file);
    let handle = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&host)
        .ok()?;
    let mut bytes = Vec::new();
    handle.take(cap).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// The report `previous` would be with `db`: its components matched again
/// (by the distro its OS names), the ignore decisions of findings it already
/// had kept. Checks, licenses, optimization and the functional test are the
/// stored ones: they do not depend on the database.
pub fn reevaluate(previous: &ScanReport, db: &VulnDb, created: DateTime<Utc>) -> ScanReport {
    let distro = report_distro(previous);
    let mut findings = vuln::match_components(db, &previous.components, distro.as_deref());
    let ignored: BTreeMap<(&str, &str), &str> = previous
        .vulnerabilities
        .iter()
        .filter_map(|v| {
            v.ignored
                .as_deref()
                .map(|reason| ((v.id.as_str(), v.purl.as_str()), reason))
        })
        .collect();
    for finding in &mut findings {
        if let Some(reason) = ignored.get(&(finding.id.as_str(), finding.purl.as_str())) {
            finding.ignored = Some((*reason).to_string());
        }
    }
    let mut report = previous.clone();
    report.vulnerabilities = findings;
    report.database_version = Some(db.version());
    report.created = created;
    report.sort();
    report
}

/// Findings of `current` that `previous` did not have (by id and package
/// URL), ignored ones left out.
pub fn new_findings<'a>(previous: &ScanReport, current: &'a ScanReport) -> Vec<&'a Vulnerability> {
    let known: HashSet<(&str, &str)> = previous
        .vulnerabilities
        .iter()
        .map(|v| (v.id.as_str(), v.purl.as_str()))
        .collect();
    current
        .vulnerabilities
        .iter()
        .filter(|v| v.ignored.is_none() && !known.contains(&(v.id.as_str(), v.purl.as_str())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(dir: &Path, name: &str, status: &str) -> Layer {
        let root = dir.join(name);
        std::fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("var/lib/dpkg/status"), status).unwrap();
        std::fs::write(
            root.join("etc/os-release"),
            "ID=debian\nVERSION_ID=\"12\"\nNAME=\"Debian GNU/Linux\"\n",
        )
        .unwrap();
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(name.as_bytes())));
        Layer {
            digest: digest.clone(),
            diff_id: digest,
            dir: root,
            size: None,
        }
    }

    fn zlib(version: &str) -> String {
        format!(
            "Package: zlib1g\nStatus: install ok installed\nArchitecture: amd64\nSource: zlib\nVersion: {version}\n\n"
        )
    }

    fn db() -> VulnDb {
        let record: vuln::OsvRecord = serde_json::from_value(serde_json::json!({
            "id": "DSA-1-1", "modified": "2024-01-01T00:00:00Z",
            "affected": [{"package": {"ecosystem": "Debian:12", "name": "zlib"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.3-1"}]}]}],
        }))
        .unwrap();
        let mut db = VulnDb::default();
        db.insert(&record);
        db
    }

    fn request<'a>(layers: &'a [Layer], db: &'a VulnDb) -> ScanRequest<'a> {
        ScanRequest {
            image: ImageRef {
                reference: "t".into(),
                digest: "sha256:00".into(),
            },
            layers,
            db: Some(db),
            deny_licenses: &[],
            ignore: None,
            checks: None,
            functional_test: None,
            created: DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_second_scan_reuses_every_cached_part_and_reports_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let layers = [layer(dir.path(), "base", &zlib("1.2-1"))];
        let db = db();
        let cache = MemoryCache::default();
        let first = scan_image(&request(&layers, &db), &cache, &|_| {}).unwrap();
        assert_eq!(first.stats.inventory_cached, 0);
        assert_eq!(first.report.vulnerabilities.len(), 1);
        assert_eq!(first.report.os.as_ref().unwrap().name, "Debian GNU/Linux");
        let second = scan_image(&request(&layers, &db), &cache, &|_| {}).unwrap();
        assert_eq!(second.stats.inventory_cached, 1);
        assert_eq!(second.stats.vulnerabilities_cached, 1);
        assert!(second.stats.optimization_cached);
        assert_eq!(second.report, first.report);
    }

    #[test]
    fn an_upper_layer_that_upgrades_a_package_drops_the_lower_finding() {
        let dir = tempfile::tempdir().unwrap();
        let layers = [
            layer(dir.path(), "base", &zlib("1.2-1")),
            layer(dir.path(), "upgrade", &zlib("1.3-1")),
        ];
        let outcome = scan_image(&request(&layers, &db()), &MemoryCache::default(), &|_| {}).unwrap();
        assert_eq!(outcome.report.components.len(), 1);
        assert_eq!(outcome.report.components[0].version, "1.3-1");
        assert!(
            outcome.report.vulnerabilities.is_empty(),
            "{:?}",
            outcome.report.vulnerabilities
        );
    }

    #[test]
    fn reevaluation_reports_only_new_findings() {
        let dir = tempfile::tempdir().unwrap();
        let layers = [layer(dir.path(), "base", &zlib("1.2-1"))];
        let empty = VulnDb::default();
        let before = scan_image(&request(&layers, &empty), &MemoryCache::default(), &|_| {}).unwrap();
        assert!(before.report.vulnerabilities.is_empty());
        let after = reevaluate(&before.report, &db(), DateTime::UNIX_EPOCH);
        let added = new_findings(&before.report, &after);
        assert_eq!(added.len(), 1);
        assert_eq!(added[0].id, "DSA-1-1");
        assert!(new_findings(&after, &after).is_empty());
    }

    #[test]
    fn warnings_are_sorted_without_repeats_and_capped() {
        let problem = |path: &str| inventory::Problem {
            location: crate::types::Location {
                layer: "sha256:00".into(),
                path: path.into(),
            },
            message: "unreadable".into(),
        };
        assert_eq!(
            warnings(&[problem("/b"), problem("/a"), problem("/b")]),
            ["/a: unreadable", "/b: unreadable"]
        );
        let many: Vec<_> = (0..WARNINGS_KEPT + 5).map(|i| problem(&format!("/f{i:04}"))).collect();
        let kept = warnings(&many);
        assert_eq!(kept.len(), WARNINGS_KEPT + 1);
        assert_eq!(
            kept[WARNINGS_KEPT - 1],
            format!("/f{:04}: unreadable", WARNINGS_KEPT - 1)
        );
        assert_eq!(kept[WARNINGS_KEPT], "and 5 more warnings");
        let mut sorted = kept.clone();
        sorted.sort();
        assert_eq!(sorted, kept, "a report's sort keeps the count last");
    }
}
