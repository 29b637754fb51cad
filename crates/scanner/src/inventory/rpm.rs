//! rpm: the sqlite rpmdb (`/var/lib/rpm/rpmdb.sqlite`, table `Packages`,
//! one header blob per row) and the rpm header format, parsed here.
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

use rusqlite::{Connection, OpenFlags, MAIN_DB};

use super::{component, set_license, FileRef, OsRelease, DATABASE_CAP};
use crate::types::{Component, Ecosystem};

use super::rpm_tags::{
    ARCH as TAG_ARCH, EPOCH as TAG_EPOCH, LICENSE as TAG_LICENSE, NAME as TAG_NAME, RELEASE as TAG_RELEASE,
    SOURCERPM as TAG_SOURCERPM, VERSION as TAG_VERSION,
};

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

pub(crate) fn parse(file: &FileRef) -> Result<Vec<Component>, String> {
    let mut data = file.read(DATABASE_CAP)?;
    if data.len() < 100 || !data.starts_with(b"SQLite format 3\0") {
        return Err("not an sqlite database".to_string());
    }
    // Bytes 18 and 19 are 2 in WAL mode; an in-memory copy cannot use a WAL,
    // and rpm checkpoints it on close, so read it as a rollback database.
    if data[18] == 2 && data[19] == 2 {
        data[18] = 1;
        data[19] = 1;
    }
    let mut db =
        Connection::open_in_memory_with_flags(OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(|e| format!("opening sqlite: {e}"))?;
    let len = data.len();
    db.deserialize_read_exact(MAIN_DB, data.as_slice(), len, true)
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
        let header = parse_header(&blob).map_err(|e| format!("package header {hnum}: {e}"))?;
        let (Some(name), Some(version)) = (header.name.as_deref(), header.version.as_deref()) else {
            continue;
        };
        // The pseudo-packages that hold imported signing keys.
        if name == "gpg-pubkey" {
            continue;
        }
        let mut full = match header.epoch {
            Some(epoch) => format!("{epoch}:{version}"),
            None => version.to_string(),
        };
        if let Some(release) = header.release.as_deref() {
            full = format!("{full}-{release}");
        }
        let mut c = component(Ecosystem::Rpm, name, &full, String::new(), &file.location);
        c.arch = header.arch.clone();
        c.source = header.source_rpm.clone();
        set_license(&mut c, header.license.as_deref());
        c.purl = purl(&c, None);
        out.push(c);
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
