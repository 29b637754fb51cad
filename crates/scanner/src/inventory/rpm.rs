//! rpm: the package database in its three formats, told apart by their
//! first bytes whatever the file's name, and the rpm header format they all
//! store, parsed here:
//!
//! - sqlite, `rpmdb.sqlite` (Fedora 33+, RHEL 9): table `Packages`, one
//!   header blob per row;
//! - Berkeley DB hash, `Packages` (CentOS 7, RHEL 8, Amazon Linux 2, older
//!   SUSE), in [`bdb`];
//! - NDB, `Packages.db` (SUSE), in [`ndb`].
//!
//! A header blob (as stored in the database, without the 8-byte magic of an
//! on-disk header) is, all integers big-endian:
//!
//! ```text
//! u32 il            number of index entries
//! u32 dl            size of the data store
//! il × { u32 tag, u32 type, i32 offset, u32 count }   (16 bytes each)
//! dl bytes          data store; offsets are relative to its start
//! ```
//!
//! Types used here: 4 INT32 (big-endian), 6 STRING and 9 I18NSTRING (first
//! NUL-terminated string), 8 STRING_ARRAY. Tags: 1000 NAME, 1001 VERSION,
//! 1002 RELEASE, 1003 EPOCH, 1014 LICENSE, 1022 ARCH, 1044 SOURCERPM. The
//! version is `[epoch:]version-release`.

mod bdb;
mod ndb;

use std::borrow::Cow;
use std::io::Read;

use rusqlite::{Connection, OpenFlags, MAIN_DB};

use super::{component, set_license, FileRef, OsRelease, DATABASE_CAP};
use crate::types::{Component, Ecosystem, Location};

use super::rpm_tags::{
    ARCH as TAG_ARCH, EPOCH as TAG_EPOCH, LICENSE as TAG_LICENSE, NAME as TAG_NAME, RELEASE as TAG_RELEASE,
    SOURCERPM as TAG_SOURCERPM, VERSION as TAG_VERSION,
};

const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";
const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

/// The fields of one rpm header this scanner uses.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: Option<String>,
    pub version: Option<String>,
    pub release: Option<String>,
    pub epoch: Option<u32>,
    pub license: Option<String>,
    pub arch: Option<String>,
    pub source_rpm: Option<String>,
}

fn be32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(data.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

/// Parses a header blob; errors name what is malformed.
pub fn parse_header(blob: &[u8]) -> Result<Header, String> {
    let il = be32(blob, 0).ok_or("header shorter than 8 bytes")? as usize;
    let dl = be32(blob, 4).ok_or("header shorter than 8 bytes")? as usize;
    if il > 0x10000 || dl > 0x1000_0000 {
        return Err(format!("header claims {il} entries and {dl} data bytes"));
    }
    let store_start = 8 + il * 16;
    let store = blob.get(store_start..store_start + dl).ok_or_else(|| {
        format!(
            "header of {} bytes is shorter than its {il} entries and {dl} data bytes",
            blob.len()
        )
    })?;
    let mut header = Header::default();
    for i in 0..il {
        let at = 8 + i * 16;
        let (Some(tag), Some(ty), Some(offset), Some(count)) = (
            be32(blob, at),
            be32(blob, at + 4),
            be32(blob, at + 8),
            be32(blob, at + 12),
        ) else {
            return Err(format!("index entry {i} is truncated"));
        };
        let offset = offset as usize;
        let string = || -> Result<String, String> {
            if !matches!(ty, TYPE_STRING | TYPE_I18NSTRING | TYPE_STRING_ARRAY) {
                return Err(format!("tag {tag} has type {ty}, not a string"));
            }
            let rest = store
                .get(offset..)
                .ok_or_else(|| format!("tag {tag} offset {offset} is past the data"))?;
            let end = rest
                .iter()
                .position(|b| *b == 0)
                .ok_or_else(|| format!("tag {tag} string is not terminated"))?;
            Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
        };
        match tag {
            TAG_NAME => header.name = Some(string()?),
            TAG_VERSION => header.version = Some(string()?),
            TAG_RELEASE => header.release = Some(string()?),
            TAG_LICENSE => header.license = Some(string()?),
            TAG_ARCH => header.arch = Some(string()?),
            TAG_SOURCERPM => header.source_rpm = Some(string()?),
            TAG_EPOCH => {
                if ty != TYPE_INT32 || count < 1 {
                    return Err(format!("EPOCH has type {ty} and count {count}"));
                }
                header.epoch = Some(be32(store, offset).ok_or("EPOCH offset is past the data")?);
            }
            _ => {}
        }
    }
    Ok(header)
}

/// Warnings kept per database; the rest are counted.
const MAX_WARNINGS: usize = 20;

/// One header blob as a database stores it, with the number the database
/// knows it by (sqlite `hnum`, Berkeley DB key, NDB package index).
pub(super) struct StoredHeader<'a> {
    pub number: u32,
    pub blob: Cow<'a, [u8]>,
}

/// The three ways rpm has stored its database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Sqlite,
    BerkeleyDb,
    Ndb,
}

impl Format {
    /// By the file's first bytes, whatever its name.
    fn detect(data: &[u8]) -> Option<Format> {
        if data.starts_with(SQLITE_MAGIC) {
            Some(Format::Sqlite)
        } else if ndb::is_ndb(data) {
            Some(Format::Ndb)
        } else if bdb::is_berkeley_db(data) {
            Some(Format::BerkeleyDb)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Sqlite => "sqlite",
            Format::BerkeleyDb => "Berkeley DB",
            Format::Ndb => "NDB",
        }
    }
}

/// The packages of an rpm database in any of its formats. A database that
/// cannot be read at all is an error; packages that cannot be read in a
/// database that can are left out with a line in `warnings`.
pub(crate) fn parse(file: &FileRef, warnings: &mut Vec<String>) -> Result<Vec<Component>, String> {
    let data = file.read(DATABASE_CAP)?;
    read_database(&data, &file.location, warnings)
}

/// [`parse`] on the bytes of the database file.
fn read_database(data: &[u8], location: &Location, warnings: &mut Vec<String>) -> Result<Vec<Component>, String> {
    let format = Format::detect(data).ok_or_else(|| match data.len() {
        0 => "rpm database could not be read: the file is empty".to_string(),
        _ => "rpm database could not be read: not sqlite, Berkeley DB or NDB".to_string(),
    })?;
    let mut problems = Vec::new();
    let headers = match format {
        Format::Sqlite => sqlite_headers(data),
        Format::BerkeleyDb => bdb::headers(data, &mut problems),
        Format::Ndb => ndb::headers(data, &mut problems),
    }
    .map_err(|e| format!("{} rpm database could not be read: {e}", format.name()))?;
    let mut out = Vec::new();
    for stored in headers {
        match parse_header(&stored.blob) {
            Ok(header) => match header_component(&header, location) {
                Ok(component) => out.extend(component),
                Err(e) => problems.push(format!("package {}: {e}; left out", stored.number)),
            },
            Err(e) => problems.push(format!("package {}: {e}; left out", stored.number)),
        }
    }
    let dropped = problems.len().saturating_sub(MAX_WARNINGS);
    warnings.extend(
        problems
            .into_iter()
            .take(MAX_WARNINGS)
            .map(|p| format!("{} rpm database: {p}", format.name())),
    );
    if dropped > 0 {
        warnings.push(format!("{} rpm database: {dropped} more problems", format.name()));
    }
    Ok(out)
}

/// The component a package header describes; `None` for the
/// pseudo-packages of imported signing keys.
fn header_component(header: &Header, location: &Location) -> Result<Option<Component>, String> {
    let (Some(name), Some(version)) = (header.name.as_deref(), header.version.as_deref()) else {
        return Err("the header has no name or no version".to_string());
    };
    if name == "gpg-pubkey" {
        return Ok(None);
    }
    let mut full = match header.epoch {
        Some(epoch) => format!("{epoch}:{version}"),
        None => version.to_string(),
    };
    if let Some(release) = header.release.as_deref() {
        full = format!("{full}-{release}");
    }
    let mut c = component(Ecosystem::Rpm, name, &full, String::new(), location);
    c.arch = header.arch.clone();
    c.source = header.source_rpm.clone();
    set_license(&mut c, header.license.as_deref());
    c.purl = purl(&c, None);
    Ok(Some(c))
}

/// The rows of the sqlite database's `Packages` table.
fn sqlite_headers(data: &[u8]) -> Result<Vec<StoredHeader<'static>>, String> {
    if data.len() < 100 {
        return Err("shorter than an sqlite header".to_string());
    }
    // Bytes 18 and 19 are 2 in WAL mode; an in-memory copy cannot use a WAL,
    // and rpm checkpoints it on close, so read it as a rollback database.
    let mut first = [0u8; 100];
    first.copy_from_slice(&data[..100]);
    if first[18] == 2 && first[19] == 2 {
        first[18] = 1;
        first[19] = 1;
    }
    let mut db =
        Connection::open_in_memory_with_flags(OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(|e| format!("opening sqlite: {e}"))?;
    db.deserialize_read_exact(MAIN_DB, (&first[..]).chain(&data[100..]), data.len(), true)
        .map_err(|e| format!("loading the database: {e}"))?;
    let mut statement = db
        .prepare("SELECT hnum, blob FROM Packages")
        .map_err(|e| format!("reading Packages: {e}"))?;
    let rows = statement
        .query_map([], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?)))
        .map_err(|e| format!("reading Packages: {e}"))?;
    let mut out = Vec::new();
    for row in rows {
        let (hnum, blob) = row.map_err(|e| format!("reading Packages: {e}"))?;
        out.push(StoredHeader {
            number: u32::try_from(hnum).unwrap_or(u32::MAX),
            blob: Cow::Owned(blob),
        });
    }
    Ok(out)
}

/// `pkg:rpm/<distro id>/<name>@<version>-<release>?arch=..&epoch=..&distro=<id>-<version id>`.
pub(crate) fn purl(c: &Component, os: Option<&OsRelease>) -> String {
    let (epoch, version) = match c.version.split_once(':') {
        Some((e, v)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => (e, v),
        _ => ("", c.version.as_str()),
    };
    let namespace = os.map(|o| o.id.as_str());
    let distro = os
        .and_then(|o| o.version_id.as_ref().map(|v| format!("{}-{v}", o.id)))
        .unwrap_or_default();
    let arch = c.arch.clone().unwrap_or_default();
    super::purl::purl(
        "rpm",
        namespace,
        &c.name,
        Some(version),
        &[("arch", &arch), ("epoch", epoch), ("distro", &distro)],
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/rpm")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    /// Every fixture cut short at many lengths and with many single bytes
    /// changed: the readers never panic, never list more than the fixture
    /// holds, and never give an empty list without a word.
    #[test]
    fn damaged_databases_never_panic_nor_go_quiet() {
        let location = Location {
            layer: "sha256:0".to_string(),
            path: "/var/lib/rpm/Packages".to_string(),
        };
        for name in ["bdb-le/Packages", "bdb-be/Packages", "ndb/Packages.db"] {
            let good = fixture(name);
            let mut variants: Vec<Vec<u8>> = (0..good.len()).step_by(97).map(|len| good[..len].to_vec()).collect();
            for at in (0..good.len()).step_by(17) {
                for flip in [0x01, 0x80, 0xff] {
                    let mut data = good.clone();
                    data[at] ^= flip;
                    variants.push(data);
                }
            }
            let (mut errors, mut with_warnings, mut whole) = (0, 0, 0);
            for data in &variants {
                let mut warnings = Vec::new();
                match read_database(data, &location, &mut warnings) {
                    Err(_) => errors += 1,
                    Ok(components) => {
                        assert!(
                            !components.is_empty() || !warnings.is_empty(),
                            "{name}: nothing and no warning"
                        );
                        // A changed byte may turn the signing key into a
                        // package, never make more than that.
                        assert!(components.len() <= 4, "{name}: {components:#?}");
                        if warnings.is_empty() {
                            whole += 1;
                        } else {
                            with_warnings += 1;
                        }
                    }
                }
            }
            // The sweep reaches every outcome.
            assert!(
                errors > 0 && with_warnings > 0 && whole > 0,
                "{name}: {errors} {with_warnings} {whole}"
            );
        }
    }
}
