//! The vulnerability database: OSV records reduced to what matching needs,
//! indexed by ecosystem → package name, persisted as one zstd-compressed
//! postcard file (`vulndb.bin`).
//!
//! File layout: the magic `BERTHVDB`, a little-endian u32 format version, a
//! little-endian u32 header length, the postcard header ([`StoredHeader`]),
//! then the zstd stream (with checksum) of the postcard list of advisories
//! sorted by id. The content digest is the sha256 of that postcard list, so
//! two imports of the same records have the same digest whatever their order.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::osv::{OsvRecord, OsvSeverity};
use super::severity::{self, Scored};
use super::VulnError;
use crate::types::Severity;

const MAGIC: &[u8; 8] = b"BERTHVDB";
const FORMAT_VERSION: u32 = 1;

/// How a range's versions are ordered. `GIT` ranges are dropped at import:
/// berth matches packages by version, not commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RangeKind {
    /// SemVer precedence whatever the ecosystem.
    Semver,
    /// The ecosystem's own order.
    Ecosystem,
}

/// One event of a range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    Introduced(String),
    Fixed(String),
    LastAffected(String),
    Limit(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffectedRange {
    pub kind: RangeKind,
    pub events: Vec<Event>,
}

/// One `affected[]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AffectedPackage {
    /// The ecosystem without its release suffix (`Debian`, `PyPI`).
    pub ecosystem: String,
    /// The release suffix (`12` of `Debian:12`, `v3.19` of `Alpine:v3.19`).
    pub release: Option<String>,
    pub name: String,
    pub ranges: Vec<AffectedRange>,
    pub versions: Vec<String>,
    /// A severity given for this package only (`affected[].severity`, or a
    /// rating in its `ecosystem_specific`/`database_specific`).
    pub severity: Option<AdvisorySeverity>,
}

/// The severity of an advisory as computed at import.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdvisorySeverity {
    pub severity: Severity,
    pub cvss: Option<Scored>,
}

/// An OSV record reduced to what matching and reports need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advisory {
    pub id: String,
    pub aliases: Vec<String>,
    /// The summary, or the first line of the details when there is none.
    pub summary: String,
    pub modified: Option<String>,
    pub published: Option<String>,
    pub withdrawn: Option<String>,
    pub severity: AdvisorySeverity,
    pub affected: Vec<AffectedPackage>,
}

/// Splits `Debian:12` into `("Debian", Some("12"))`.
pub fn split_ecosystem(ecosystem: &str) -> (&str, Option<&str>) {
    match ecosystem.split_once(':') {
        Some((base, release)) if !release.is_empty() => (base, Some(release)),
        Some((base, _)) => (base, None),
        None => (ecosystem, None),
    }
}

/// The key a package name is indexed under: PyPI names are normalized per
/// PEP 503 (lowercase, runs of `-_.` as one `-`); other ecosystems compare
/// names exactly.
pub fn name_key<'a>(ecosystem: &str, name: &'a str) -> Cow<'a, str> {
    if ecosystem != "PyPI" {
        return Cow::Borrowed(name);
    }
    let mut key = String::with_capacity(name.len());
    let mut in_separator = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_separator {
                key.push('-');
            }
            in_separator = true;
        } else {
            key.extend(c.to_lowercase());
            in_separator = false;
        }
    }
    Cow::Owned(key)
}

fn labels_in(value: Option<&serde_json::Value>) -> Option<&str> {
    value?.get("severity")?.as_str()
}

fn severity_of(entries: &[OsvSeverity], labels: &[Option<&str>]) -> AdvisorySeverity {
    let (severity, cvss) = severity::pick(
        entries.iter().map(|e| (e.kind.as_str(), e.score.as_str())),
        labels.iter().copied().flatten(),
    );
    AdvisorySeverity { severity, cvss }
}

impl Advisory {
    /// Reduces a parsed OSV record.
    pub fn from_osv(record: &OsvRecord) -> Self {
        let summary = match record.summary.as_deref().map(str::trim) {
            Some(summary) if !summary.is_empty() => summary.to_owned(),
            _ => {
                let details = record.details.as_deref().unwrap_or("").trim();
                let first_line = details.lines().next().unwrap_or("");
                first_line.chars().take(200).collect()
            }
        };
        let affected = record
            .affected
            .iter()
            .filter_map(|affected| {
                let package = affected.package.as_ref()?;
                let (ecosystem, release) = split_ecosystem(&package.ecosystem);
                let ranges = affected
                    .ranges
                    .iter()
                    .filter_map(|range| {
                        let kind = match range.kind.as_str() {
                            "SEMVER" => RangeKind::Semver,
                            "ECOSYSTEM" => RangeKind::Ecosystem,
                            _ => return None,
                        };
                        let events = range
                            .events
                            .iter()
                            .filter_map(|e| {
                                if let Some(v) = &e.introduced {
                                    Some(Event::Introduced(v.clone()))
                                } else if let Some(v) = &e.fixed {
                                    Some(Event::Fixed(v.clone()))
                                } else if let Some(v) = &e.last_affected {
                                    Some(Event::LastAffected(v.clone()))
                                } else {
                                    e.limit.as_ref().map(|v| Event::Limit(v.clone()))
                                }
                            })
                            .collect();
                        Some(AffectedRange { kind, events })
                    })
                    .collect();
                let labels = [
                    labels_in(affected.ecosystem_specific.as_ref()),
                    labels_in(affected.database_specific.as_ref()),
                ];
                let own = severity_of(&affected.severity, &labels);
                let severity = (own.severity != Severity::Unknown).then_some(own);
                Some(AffectedPackage {
                    ecosystem: ecosystem.to_owned(),
                    release: release.map(str::to_owned),
                    name: package.name.clone(),
                    ranges,
                    versions: affected.versions.clone(),
                    severity,
                })
            })
            .collect();
        Advisory {
            id: record.id.clone(),
            aliases: record.aliases.clone(),
            summary,
            modified: record.modified.clone(),
            published: record.published.clone(),
            withdrawn: record.withdrawn.clone(),
            severity: severity_of(&record.severity, &[labels_in(record.database_specific.as_ref())]),
            affected,
        }
    }
}

/// Where one affected entry lives: advisory index, affected index.
type Slot = (u32, u32);

/// The in-memory database. Build it with [`super::import`] or
/// [`VulnDb::insert`], persist it with [`VulnDb::save`], read it back with
/// [`VulnDb::load`].
#[derive(Debug, Clone, Default)]
pub struct VulnDb {
    advisories: Vec<Advisory>,
    by_id: HashMap<String, u32>,
    /// ecosystem (no release) → package name key → affected entries.
    index: HashMap<String, HashMap<String, Vec<Slot>>>,
    imported_at: Option<DateTime<Utc>>,
    digest: OnceLock<String>,
}

/// The postcard header of a saved database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredHeader {
    /// RFC 3339, when the content was imported.
    pub imported_at: Option<String>,
    /// `sha256:<hex>` of the advisories' postcard encoding.
    pub digest: String,
    pub advisories: u64,
}

impl VulnDb {
    /// Adds or replaces a record (a record with the same id replaces the
    /// stored one unless the stored one was modified later). Returns whether
    /// the database changed.
    pub fn insert(&mut self, record: &OsvRecord) -> bool {
        self.insert_advisory(Advisory::from_osv(record))
    }

    /// Adds or replaces an already reduced advisory.
    pub fn insert_advisory(&mut self, advisory: Advisory) -> bool {
        if let Some(&slot) = self.by_id.get(&advisory.id) {
            let current = &self.advisories[slot as usize];
            if *current == advisory || strictly_newer(current.modified.as_deref(), advisory.modified.as_deref()) {
                return false;
            }
            self.unindex(slot);
            self.advisories[slot as usize] = advisory;
            self.index_advisory(slot);
        } else {
            let slot = self.advisories.len() as u32;
            self.by_id.insert(advisory.id.clone(), slot);
            self.advisories.push(advisory);
            self.index_advisory(slot);
        }
        self.digest = OnceLock::new();
        true
    }

    fn index_advisory(&mut self, slot: u32) {
        let advisory = &self.advisories[slot as usize];
        for (i, affected) in advisory.affected.iter().enumerate() {
            let key = name_key(&affected.ecosystem, &affected.name).into_owned();
            let names = self.index.entry(affected.ecosystem.clone()).or_default();
            let slots = names.entry(key).or_default();
            if !slots.contains(&(slot, i as u32)) {
                slots.push((slot, i as u32));
            }
        }
    }

    fn unindex(&mut self, slot: u32) {
        let advisory = &self.advisories[slot as usize];
        for affected in &advisory.affected {
            let key = name_key(&affected.ecosystem, &affected.name);
            if let Some(slots) = self
                .index
                .get_mut(&affected.ecosystem)
                .and_then(|names| names.get_mut(key.as_ref()))
            {
                slots.retain(|(s, _)| *s != slot);
            }
        }
    }

    /// The advisory with this id.
    pub fn get(&self, id: &str) -> Option<&Advisory> {
        self.by_id.get(id).map(|&slot| &self.advisories[slot as usize])
    }

    /// All advisories, in insertion order.
    pub fn advisories(&self) -> &[Advisory] {
        &self.advisories
    }

    /// The affected entries for a package: `(advisory, affected entry)`.
    pub fn lookup<'a>(
        &'a self,
        ecosystem: &str,
        name: &str,
    ) -> impl Iterator<Item = (&'a Advisory, &'a AffectedPackage)> + 'a {
        let slots = self
            .index
            .get(ecosystem)
            .and_then(|names| names.get(name_key(ecosystem, name).as_ref()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        slots.iter().map(move |&(a, i)| {
            let advisory = &self.advisories[a as usize];
            (advisory, &advisory.affected[i as usize])
        })
    }

    /// Number of advisories.
    pub fn len(&self) -> usize {
        self.advisories.len()
    }

    pub fn is_empty(&self) -> bool {
        self.advisories.is_empty()
    }

    /// Advisories per ecosystem (an advisory that affects packages of two
    /// ecosystems counts in both).
    pub fn counts_by_ecosystem(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for advisory in &self.advisories {
            let mut seen: Vec<&str> = advisory.affected.iter().map(|a| a.ecosystem.as_str()).collect();
            seen.sort_unstable();
            seen.dedup();
            for ecosystem in seen {
                *counts.entry(ecosystem.to_owned()).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Number of distinct (ecosystem, package) pairs.
    pub fn package_count(&self) -> usize {
        self.index.values().map(HashMap::len).sum()
    }

    /// When the content was imported.
    pub fn imported_at(&self) -> Option<DateTime<Utc>> {
        self.imported_at
    }

    /// Records the import time (done by [`super::import`]).
    pub fn set_imported_at(&mut self, at: DateTime<Utc>) {
        self.imported_at = Some(at);
    }

    fn sorted_advisories(&self) -> Vec<&Advisory> {
        let mut sorted: Vec<&Advisory> = self.advisories.iter().collect();
        sorted.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        sorted
    }

    fn encode_advisories(&self) -> Result<Vec<u8>, VulnError> {
        postcard::to_stdvec(&self.sorted_advisories()).map_err(|e| VulnError::Encode {
            what: "advisories".into(),
            reason: e.to_string(),
        })
    }

    /// `sha256:<hex>` of the content (independent of insertion order and of
    /// the import time): the cache key part for "which database".
    pub fn digest(&self) -> &str {
        self.digest.get_or_init(|| match self.encode_advisories() {
            Ok(bytes) => format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
            // Encoding owned strings into a Vec cannot fail in practice;
            // an empty digest still keys caches apart from any real one.
            Err(_) => "sha256:".to_owned(),
        })
    }

    /// The database version recorded with each scan:
    /// `<import time RFC 3339>/<digest>` (`unknown` when never imported).
    pub fn version(&self) -> String {
        let at = self.imported_at.map_or_else(
            || "unknown".to_owned(),
            |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
        );
        format!("{at}/{}", self.digest())
    }

    /// Writes the database to `path` atomically (a temporary file in the
    /// same directory, then a rename).
    pub fn save(&self, path: &Path) -> Result<(), VulnError> {
        let io = |e: std::io::Error| VulnError::Io {
            path: path.to_owned(),
            source: e,
        };
        let bytes = self.encode_advisories()?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        let _ = self.digest.set(digest.clone());
        let header = StoredHeader {
            imported_at: self.imported_at.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
            digest,
            advisories: self.advisories.len() as u64,
        };
        let header = postcard::to_stdvec(&header).map_err(|e| VulnError::Encode {
            what: "header".into(),
            reason: e.to_string(),
        })?;
        let mut out = Vec::with_capacity(bytes.len() / 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        let mut encoder = zstd::stream::Encoder::new(out, 9).map_err(io)?;
        encoder.include_checksum(true).map_err(io)?;
        encoder.write_all(&bytes).map_err(io)?;
        let out = encoder.finish().map_err(io)?;

        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("vulndb.bin");
        let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&out)?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })
    }

    /// Reads only the header of a saved database (cheap: no decompression).
    pub fn read_header(path: &Path) -> Result<StoredHeader, VulnError> {
        let bytes = std::fs::read(path).map_err(|e| VulnError::Io {
            path: path.to_owned(),
            source: e,
        })?;
        Ok(split_file(path, &bytes)?.0)
    }

    /// Loads a database written by [`VulnDb::save`].
    pub fn load(path: &Path) -> Result<VulnDb, VulnError> {
        let bytes = std::fs::read(path).map_err(|e| VulnError::Io {
            path: path.to_owned(),
            source: e,
        })?;
        let (header, compressed) = split_file(path, &bytes)?;
        let corrupt = |reason: String| VulnError::CorruptDb {
            path: path.to_owned(),
            reason,
        };
        let raw = zstd::stream::decode_all(compressed).map_err(|e| corrupt(format!("decompression failed: {e}")))?;
        let advisories: Vec<Advisory> =
            postcard::from_bytes(&raw).map_err(|e| corrupt(format!("undecodable advisories: {e}")))?;
        if advisories.len() as u64 != header.advisories {
            return Err(corrupt(format!(
                "header says {} advisories, found {}",
                header.advisories,
                advisories.len()
            )));
        }
        let mut db = VulnDb {
            imported_at: header
                .imported_at
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc)),
            ..VulnDb::default()
        };
        db.advisories = advisories;
        db.by_id.reserve(db.advisories.len());
        for slot in 0..db.advisories.len() as u32 {
            db.by_id.insert(db.advisories[slot as usize].id.clone(), slot);
            db.index_advisory(slot);
        }
        let _ = db.digest.set(header.digest);
        Ok(db)
    }
}

/// Whether `current` was modified after `candidate`; a missing or
/// unparseable date is the oldest.
fn strictly_newer(current: Option<&str>, candidate: Option<&str>) -> bool {
    let parse = |t: Option<&str>| t.and_then(|t| DateTime::parse_from_rfc3339(t).ok());
    match (parse(current), parse(candidate)) {
        (Some(c), Some(n)) => c > n,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

fn split_file<'a>(path: &Path, bytes: &'a [u8]) -> Result<(StoredHeader, &'a [u8]), VulnError> {
    let corrupt = |reason: String| VulnError::CorruptDb {
        path: path.to_owned(),
        reason,
    };
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return Err(corrupt("not a berth vulnerability database (bad magic)".into()));
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "format version {version}, this berth reads {FORMAT_VERSION}"
        )));
    }
    let header_len = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
    let header_bytes = bytes
        .get(16..16 + header_len)
        .ok_or_else(|| corrupt("truncated header".into()))?;
    let header: StoredHeader = postcard::from_bytes(header_bytes).map_err(|e| corrupt(format!("bad header: {e}")))?;
    Ok((header, &bytes[16 + header_len..]))
}
