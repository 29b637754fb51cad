//! Import of OSV records into a [`VulnDb`]: a single `.json` record, a
//! directory of records (searched recursively), an osv.dev export
//! (`<Ecosystem>/all.zip`, one JSON record per entry), or a directory that
//! holds several exports. A malformed record is skipped and counted (the
//! first few messages are kept); an unreadable file or archive is an error.

use std::io::Read;
use std::path::Path;

use chrono::Utc;

use super::osv::OsvRecord;
use super::{VulnDb, VulnError};

/// Largest record accepted (a zip entry claiming more is refused, so a
/// crafted archive cannot exhaust memory).
const MAX_RECORD_BYTES: u64 = 64 << 20;
const KEPT_ERRORS: usize = 20;

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportStats {
    /// Records read and parsed.
    pub records: usize,
    /// Records that added or replaced an advisory.
    pub changed: usize,
    /// Records that could not be parsed.
    pub skipped: usize,
    /// The first messages about skipped records.
    pub errors: Vec<String>,
    pub files: usize,
    pub archives: usize,
}

impl ImportStats {
    fn skip(&mut self, error: VulnError) {
        self.skipped += 1;
        if self.errors.len() < KEPT_ERRORS {
            self.errors.push(error.to_string());
        }
    }
}

/// Imports OSV records from `path` into `db` and stamps the import time.
pub fn import(path: &Path, db: &mut VulnDb) -> Result<ImportStats, VulnError> {
    let mut stats = ImportStats::default();
    import_path(path, db, &mut stats)?;
    db.set_imported_at(Utc::now());
    Ok(stats)
}

fn extension_is(path: &Path, ext: &str) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

fn import_path(path: &Path, db: &mut VulnDb, stats: &mut ImportStats) -> Result<(), VulnError> {
    let io = |e: std::io::Error| VulnError::Io {
        path: path.to_owned(),
        source: e,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .map_err(io)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        entries.sort();
        for entry in entries {
            let is_dir = std::fs::metadata(&entry).map(|m| m.is_dir()).unwrap_or(false);
            if is_dir || extension_is(&entry, "json") || extension_is(&entry, "zip") {
                import_path(&entry, db, stats)?;
            }
        }
        Ok(())
    } else if extension_is(path, "zip") {
        import_zip(path, db, stats)
    } else if extension_is(path, "json") {
        stats.files += 1;
        let bytes = std::fs::read(path).map_err(io)?;
        add_record(&path.display().to_string(), &bytes, db, stats);
        Ok(())
    } else {
        Err(VulnError::UnknownInput { path: path.to_owned() })
    }
}

fn add_record(origin: &str, bytes: &[u8], db: &mut VulnDb, stats: &mut ImportStats) {
    match serde_json::from_slice::<OsvRecord>(bytes) {
        Ok(record) if record.id.trim().is_empty() => stats.skip(VulnError::Record {
            path: origin.to_owned(),
            reason: "empty id".into(),
        }),
        Ok(record) => {
            stats.records += 1;
            if db.insert(&record) {
                stats.changed += 1;
            }
        }
        Err(e) => stats.skip(VulnError::Record {
            path: origin.to_owned(),
            reason: e.to_string(),
        }),
    }
}

fn import_zip(path: &Path, db: &mut VulnDb, stats: &mut ImportStats) -> Result<(), VulnError> {
    let zip_error = |e: zip::result::ZipError| VulnError::Zip {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(|e| VulnError::Io {
        path: path.to_owned(),
        source: e,
    })?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(zip_error)?;
    stats.archives += 1;
    let mut buffer = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(zip_error)?;
        let name = entry.name().map_err(zip_error)?.into_owned();
        if entry.is_dir() || !name.to_ascii_lowercase().ends_with(".json") {
            continue;
        }
        let origin = format!("{}!{name}", path.display());
        if entry.size() > MAX_RECORD_BYTES {
            stats.skip(VulnError::Record {
                path: origin,
                reason: format!("larger than {MAX_RECORD_BYTES} bytes"),
            });
            continue;
        }
        buffer.clear();
        (&mut entry)
            .take(MAX_RECORD_BYTES + 1)
            .read_to_end(&mut buffer)
            .map_err(|e| VulnError::Zip {
                path: path.to_owned(),
                reason: format!("{name}: {e}"),
            })?;
        add_record(&origin, &buffer, db, stats);
    }
    Ok(())
}
