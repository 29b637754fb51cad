//! The vulnerability database: its status, imports (`vulndb import`) and
//! downloads (`vulndb update`, by hand or on a schedule), the re-evaluation
//! of every image's latest record after an import, and the `image
//! vulnerable` event and webhooks for images that gained findings.

pub use berth_scanner::records::{NewlyVulnerable, VulnDbImport, VulnDbStatus};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, PoisonError};

use berth_scanner::scan as scanning;
use berth_scanner::vuln::VulnDb;

use super::run::bare_image;
use super::{
    ScanError, ScanProgress, ScanRecord, ScanService, SignedPayload, SignedScanRecord, SCAN_RECORDS, UPDATE_TEMP_PREFIX,
};
use crate::vulndb_update::{self, Downloaded, VulnDbUpdateSpec};

impl ScanService {
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
    pub(super) fn spawn_vulndb_schedule(self: &Arc<Self>) {
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
