//! Go binaries' build information: the blob that starts with
//! `\xff Go buildinf:` (the `.go.buildinfo` section, or for binaries without
//! section headers the start of the first writable data segment, searched
//! at 16-byte alignment as the Go toolchain does).
//!
//! Blob layout: 14 magic bytes, pointer size (byte 14), flags (byte 15).
//! Go ≥ 1.18 sets flag bit 2 ("inline"): the Go version and then the module
//! information follow at offset 32, each as a uvarint length and bytes.
//! Older binaries keep at offset 16 two pointers (pointer-size wide, byte
//! order from flag bit 1) to Go string headers `{data pointer, length}`
//! for the same two strings, resolved through the loaded segments.
//!
//! The module information (between 16-byte sentinels) is lines of tab
//! separated fields: `path`, `mod <path> <version> <sum>`, `dep <path>
//! <version> <sum>`, `=> <path> <version> <sum>` (replaces the line before)
//! and `build key=value`. Components: the main module, each dependency
//! (as replaced, when the replacement has a version) and the standard
//! library as `stdlib` with the toolchain version without its `go` prefix.
//! Module versions stay as written (`v1.2.3`).

use super::component;
use super::elf::{Elf, PF_W, PF_X};
use crate::types::{Component, Ecosystem, Location};

pub const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
const SECTION_CAP: u64 = 16 << 20;
const SEARCH_WINDOW: u64 = 64 << 10;
const STRING_CAP: u64 = 4 << 20;

/// The two strings of the build information.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    pub go_version: String,
    pub modinfo: String,
}

fn uvarint(data: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, byte) in data.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

fn find_blob(elf: &Elf) -> Result<Option<Vec<u8>>, String> {
    if let Some(section) = elf.section(".go.buildinfo", SECTION_CAP)? {
        return Ok(Some(section));
    }
    if elf.has_sections() {
        return Ok(None);
    }
    let Some(segment) = elf.segments.iter().find(|s| s.flags & (PF_X | PF_W) == PF_W) else {
        return Ok(None);
    };
    let Some(window) = elf.read(segment.offset, segment.filesz.min(SEARCH_WINDOW) as usize) else {
        return Ok(None);
    };
    let found = (0..window.len()).step_by(16).find(|i| window[*i..].starts_with(MAGIC));
    let Some(start) = found else { return Ok(None) };
    let len = (segment.filesz - start as u64).min(STRING_CAP);
    Ok(elf.read(segment.offset + start as u64, len as usize))
}

/// Decodes a build information blob (starting at the magic).
pub fn decode(blob: &[u8], elf: Option<&Elf>) -> Result<BuildInfo, String> {
    if blob.len() < 32 || !blob.starts_with(MAGIC) {
        return Err("Go build information: no header".to_string());
    }
    let pointer_size = blob[14] as usize;
    let flags = blob[15];
    let (go_version, modinfo) = if flags & 2 != 0 {
        let mut at = 32;
        let mut next = || -> Result<Vec<u8>, String> {
            let (len, used) = uvarint(blob.get(at..).unwrap_or(&[])).ok_or("Go build information: bad length")?;
            let start = at + used;
            let end = start
                .checked_add(len as usize)
                .filter(|e| *e <= blob.len())
                .ok_or("Go build information: string past the end")?;
            at = end;
            Ok(blob[start..end].to_vec())
        };
        (next()?, next()?)
    } else {
        let elf = elf.ok_or("Go build information: pointer format needs the binary")?;
        if pointer_size != 4 && pointer_size != 8 {
            return Err(format!("Go build information: pointer size {pointer_size}"));
        }
        let big_endian = flags & 1 != 0;
        let word = |b: &[u8], at: usize| -> Option<u64> {
            let bytes = b.get(at..at + pointer_size)?;
            let mut value = 0u64;
            for i in 0..pointer_size {
                let byte = if big_endian {
                    bytes[i]
                } else {
                    bytes[pointer_size - 1 - i]
                };
                value = (value << 8) | u64::from(byte);
            }
            Some(value)
        };
        let string_at = |pointer: u64| -> Result<Vec<u8>, String> {
            let header = elf
                .read_vaddr(pointer, 2 * pointer_size as u64)
                .ok_or("Go build information: bad string header")?;
            let data = word(&header, 0).ok_or("Go build information: bad string header")?;
            let len = word(&header, pointer_size).ok_or("Go build information: bad string header")?;
            if len > STRING_CAP {
                return Err(format!("Go build information: string of {len} bytes"));
            }
            let bytes = elf
                .read_vaddr(data, len)
                .ok_or("Go build information: string outside the binary")?;
            if bytes.len() as u64 != len {
                return Err("Go build information: string outside the binary".to_string());
            }
            Ok(bytes)
        };
        let version_ptr = word(blob, 16).ok_or("Go build information: truncated")?;
        let modinfo_ptr = word(blob, 16 + pointer_size).ok_or("Go build information: truncated")?;
        (string_at(version_ptr)?, string_at(modinfo_ptr)?)
    };
    let mut modinfo = modinfo.as_slice();
    if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        modinfo = &modinfo[16..modinfo.len() - 16];
    }
    Ok(BuildInfo {
        go_version: String::from_utf8_lossy(&go_version).into_owned(),
        modinfo: String::from_utf8_lossy(modinfo).into_owned(),
    })
}

pub(crate) fn parse(elf: &Elf, location: &Location) -> Result<Vec<Component>, String> {
    let Some(blob) = find_blob(elf)? else {
        return Ok(Vec::new());
    };
    let info = decode(&blob, Some(elf))?;
    Ok(components(&info, location))
}

fn go_component(path: &str, version: &str, location: &Location) -> Component {
    let (namespace, name) = match path.rsplit_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, path),
    };
    let purl = super::purl::purl("golang", namespace, name, Some(version), &[]);
    component(Ecosystem::Go, path, version, purl, location)
}

/// The components a decoded build information names.
pub fn components(info: &BuildInfo, location: &Location) -> Vec<Component> {
    let mut modules: Vec<(String, String)> = Vec::new();
    for line in info.modinfo.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["mod", path, version, ..] | ["dep", path, version, ..] => {
                modules.push((path.to_string(), version.to_string()));
            }
            ["=>", path, version, ..] if !version.is_empty() => {
                if let Some(last) = modules.last_mut() {
                    *last = (path.to_string(), version.to_string());
                }
            }
            _ => {}
        }
    }
    let mut out: Vec<Component> = modules
        .iter()
        .filter(|(p, _)| !p.is_empty())
        .map(|(p, v)| go_component(p, v, location))
        .collect();
    let toolchain = info.go_version.split_whitespace().next().unwrap_or("");
    if let Some(version) = toolchain
        .strip_prefix("go")
        .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
    {
        let purl = super::purl::purl("golang", None, "stdlib", Some(version), &[]);
        out.push(component(Ecosystem::Go, "stdlib", version, purl, location));
    }
    out
}
