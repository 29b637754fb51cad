//! Java archives (`.jar`, `.war`, `.ear`, all zip files): each
//! `META-INF/maven/<group>/<artifact>/pom.properties` is a component
//! `pkg:maven/<groupId>/<artifactId>@<version>` named `groupId:artifactId`
//! (license from the `<licenses>` of the `pom.xml` beside it); an archive
//! without one is named from `META-INF/MANIFEST.MF` (`Bundle-SymbolicName`
//! or `Implementation-Title`, `Implementation-Version` or `Bundle-Version`,
//! group `Implementation-Vendor-Id` or else the name itself, license
//! `Bundle-License`) or, failing that, from a `<name>-<version>.jar` file
//! name. Archives inside the archive are read one level deep; their location
//! is `<outer path>!/<entry name>`.

use std::io::{Cursor, Read, Seek};

use zip::ZipArchive;

use super::{component, paragraphs, set_license, FileRef, ARCHIVE_CAP};
use crate::licenses;
use crate::types::{Component, Ecosystem, Location};

const NESTED_CAP: u64 = 256 << 20;
const META_CAP: u64 = 4 << 20;

pub(crate) fn parse(file: &FileRef) -> Result<Vec<Component>, String> {
    if file.entry.size > ARCHIVE_CAP {
        return Err(format!(
            "{} bytes is over the {ARCHIVE_CAP}-byte archive limit",
            file.entry.size
        ));
    }
    let handle = file.view.open_entry(file.path, file.entry).map_err(|e| e.to_string())?;
    let mut magic = [0u8; 4];
    if (&handle).read_exact(&mut magic).is_err() || &magic != b"PK\x03\x04" {
        return Err("not a zip archive".to_string());
    }
    let archive = ZipArchive::new(handle).map_err(|e| format!("reading the archive: {e}"))?;
    read_archive(archive, &file.location, file.path, true)
}

fn read_entry<R: Read + Seek>(archive: &mut ZipArchive<R>, name: &str, cap: u64) -> Result<Vec<u8>, String> {
    let entry = archive.by_name(name).map_err(|e| format!("{name}: {e}"))?;
    if entry.size() > cap {
        return Err(format!("{name}: {} bytes is over the {cap}-byte limit", entry.size()));
    }
    let mut data = Vec::new();
    entry
        .take(cap)
        .read_to_end(&mut data)
        .map_err(|e| format!("{name}: {e}"))?;
    Ok(data)
}

fn read_archive<R: Read + Seek>(
    mut archive: ZipArchive<R>,
    location: &Location,
    archive_path: &str,
    descend: bool,
) -> Result<Vec<Component>, String> {
    let names: Vec<String> = archive
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .collect();
    let mut out = Vec::new();
    for name in names
        .iter()
        .filter(|n| n.starts_with("META-INF/maven/") && n.ends_with("/pom.properties"))
    {
        let text = String::from_utf8_lossy(&read_entry(&mut archive, name, META_CAP)?).into_owned();
        let property = |key: &str| {
            text.lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim().to_string())
            })
        };
        let (Some(group), Some(artifact), Some(version)) =
            (property("groupId"), property("artifactId"), property("version"))
        else {
            continue;
        };
        let purl = super::purl::purl("maven", Some(&group), &artifact, Some(&version), &[]);
        let mut c = component(
            Ecosystem::Maven,
            &format!("{group}:{artifact}"),
            &version,
            purl,
            location,
        );
        let pom = name.trim_end_matches("pom.properties").to_string() + "pom.xml";
        if names.contains(&pom) {
            let xml = String::from_utf8_lossy(&read_entry(&mut archive, &pom, META_CAP)?).into_owned();
            let declared = pom_licenses(&xml);
            if !declared.is_empty() {
                c.license_declared = Some(declared.join(", "));
                c.license = licenses::normalize_any_of(&declared);
            }
        }
        out.push(c);
    }
    if out.is_empty() {
        if let Some(c) = from_manifest(&mut archive, &names, location, archive_path)? {
            out.push(c);
        }
    }
    if descend {
        for name in names.iter().filter(|n| is_archive_name(n)) {
            let data = read_entry(&mut archive, name, NESTED_CAP)?;
            let nested_location = Location {
                layer: location.layer.clone(),
                path: format!("{}!/{name}", location.path),
            };
            match ZipArchive::new(Cursor::new(data)) {
                Ok(nested) => out.extend(read_archive(nested, &nested_location, name, false)?),
                Err(e) => return Err(format!("{name}: reading the nested archive: {e}")),
            }
        }
    }
    Ok(out)
}

fn is_archive_name(name: &str) -> bool {
    name.ends_with(".jar") || name.ends_with(".war") || name.ends_with(".ear")
}

fn from_manifest<R: Read + Seek>(
    archive: &mut ZipArchive<R>,
    names: &[String],
    location: &Location,
    archive_path: &str,
) -> Result<Option<Component>, String> {
    let manifest_name = "META-INF/MANIFEST.MF";
    let main: Vec<(String, String)> = if names.iter().any(|n| n == manifest_name) {
        let text = String::from_utf8_lossy(&read_entry(archive, manifest_name, META_CAP)?).into_owned();
        // Manifest continuation lines start with one space and continue the
        // value without a separator.
        let joined = text.replace("\r\n", "\n").replace("\n ", "");
        paragraphs(&joined).into_iter().next().unwrap_or_default()
    } else {
        Vec::new()
    };
    let get = |key: &str| super::field(&main, key).map(str::trim).filter(|v| !v.is_empty());
    let file_stem = archive_path.rsplit('/').next().unwrap_or(archive_path);
    let file_stem = file_stem.rsplit_once('.').map_or(file_stem, |(s, _)| s);
    let from_file = file_stem
        .match_indices('-')
        .find(|(i, _)| file_stem[i + 1..].starts_with(|c: char| c.is_ascii_digit()))
        .map(|(i, _)| (&file_stem[..i], &file_stem[i + 1..]));
    let symbolic = get("Bundle-SymbolicName").map(|s| s.split(';').next().unwrap_or(s).trim());
    let Some(artifact) = symbolic.or(get("Implementation-Title")).or(from_file.map(|(n, _)| n)) else {
        return Ok(None);
    };
    let Some(version) = get("Implementation-Version")
        .or(get("Bundle-Version"))
        .or(from_file.map(|(_, v)| v))
    else {
        return Ok(None);
    };
    let group = get("Implementation-Vendor-Id").unwrap_or(artifact);
    let purl = super::purl::purl("maven", Some(group), artifact, Some(version), &[]);
    let mut c = component(
        Ecosystem::Maven,
        &format!("{group}:{artifact}"),
        version,
        purl,
        location,
    );
    set_license(&mut c, get("Bundle-License"));
    Ok(Some(c))
}

/// The `<name>` of each `<license>` in a pom.
fn pom_licenses(xml: &str) -> Vec<String> {
    let Some(start) = xml.find("<licenses>") else {
        return Vec::new();
    };
    let end = xml[start..].find("</licenses>").map_or(xml.len(), |e| start + e);
    let mut out = Vec::new();
    let mut rest = &xml[start..end];
    while let Some(i) = rest.find("<name>") {
        rest = &rest[i + "<name>".len()..];
        let Some(close) = rest.find("</name>") else { break };
        let name = rest[..close].trim();
        if !name.is_empty() {
            out.push(name.to_string());
        }
        rest = &rest[close..];
    }
    out
}
