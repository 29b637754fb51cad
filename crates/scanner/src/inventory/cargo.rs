//! Cargo: `Cargo.lock` files (`[[package]]` tables; every locked package,
//! path dependencies and the workspace's own crates included) and
//! cargo-auditable binaries, whose `.dep-v0` ELF section is zlib-compressed
//! JSON `{"packages": [{"name", "version", "source", "kind", ...}]}`;
//! build-time-only packages (`"kind": "build"`) are not in the binary and
//! are skipped.

use std::io::Read;

use serde::Deserialize;

use super::elf::Elf;
use super::{component, FileRef, DATABASE_CAP};
use crate::types::{Component, Ecosystem, Location};

/// Largest `.dep-v0` section read, and largest JSON it may inflate to.
const AUDITABLE_CAP: u64 = 8 << 20;
const AUDITABLE_JSON_CAP: u64 = 64 << 20;

fn cargo_component(name: &str, version: &str, location: &Location) -> Component {
    let purl = super::purl::purl("cargo", None, name, Some(version), &[]);
    component(Ecosystem::Cargo, name, version, purl, location)
}

/// Reads the `[[package]]` tables of a lock file: only `name = "..."` and
/// `version = "..."` lines matter, which cargo always writes on one line.
pub(crate) fn parse_lock(file: &FileRef) -> Result<Vec<Component>, String> {
    let data = file.read(DATABASE_CAP)?;
    let text = String::from_utf8_lossy(&data);
    let mut out = Vec::new();
    let mut in_package = false;
    let mut name: Option<String> = None;
    let mut version: Option<String> = None;
    let mut flush = |name: &mut Option<String>, version: &mut Option<String>| {
        if let (Some(n), Some(v)) = (name.take(), version.take()) {
            out.push(cargo_component(&n, &v, &file.location));
        }
    };
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            flush(&mut name, &mut version);
            in_package = line == "[[package]]";
            continue;
        }
        if !in_package {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let Some(value) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
            continue;
        };
        match key.trim() {
            "name" => name = Some(value.to_string()),
            "version" => version = Some(value.to_string()),
            _ => {}
        }
    }
    flush(&mut name, &mut version);
    Ok(out)
}

#[derive(Deserialize)]
struct AuditInfo {
    packages: Vec<AuditPackage>,
}

#[derive(Deserialize)]
struct AuditPackage {
    name: String,
    version: String,
    #[serde(default)]
    kind: Option<String>,
}

pub(crate) fn parse_auditable(elf: &Elf, location: &Location) -> Result<Vec<Component>, String> {
    let Some(compressed) = elf.section(".dep-v0", AUDITABLE_CAP)? else {
        return Ok(Vec::new());
    };
    let mut json = Vec::new();
    flate2::read::ZlibDecoder::new(compressed.as_slice())
        .take(AUDITABLE_JSON_CAP)
        .read_to_end(&mut json)
        .map_err(|e| format!(".dep-v0 section: inflating: {e}"))?;
    let info: AuditInfo = serde_json::from_slice(&json).map_err(|e| format!(".dep-v0 section: invalid JSON: {e}"))?;
    Ok(info
        .packages
        .iter()
        .filter(|p| p.kind.as_deref() != Some("build"))
        .map(|p| cargo_component(&p.name, &p.version, location))
        .collect())
}
