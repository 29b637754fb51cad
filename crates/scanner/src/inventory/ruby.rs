//! RubyGems: `specifications/*.gemspec` (and `specifications/default/`), the
//! Ruby files rubygems writes for each installed gem. Only the literal
//! `name`, `version` and `license(s)` assignments are read, never executed.

use super::{component, FileRef, METADATA_CAP};
use crate::licenses;
use crate::types::{Component, Ecosystem};

/// The double- or single-quoted string literals on a line.
fn quoted(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '"' || c == '\'' {
            let mut s = String::new();
            for d in chars.by_ref() {
                if d == c {
                    break;
                }
                s.push(d);
            }
            out.push(s);
        }
    }
    out
}

pub(crate) fn parse(file: &FileRef) -> Result<Vec<Component>, String> {
    let data = file.read(METADATA_CAP)?;
    let text = String::from_utf8_lossy(&data);
    let mut name = None;
    let mut version = None;
    let mut license_names: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let Some((lhs, rhs)) = line.split_once('=') else {
            continue;
        };
        let attribute = lhs.trim().rsplit('.').next().unwrap_or("");
        match attribute {
            "name" if name.is_none() => name = quoted(rhs).into_iter().next(),
            "version" if version.is_none() => version = quoted(rhs).into_iter().next(),
            "license" | "licenses" if license_names.is_empty() => license_names = quoted(rhs),
            _ => {}
        }
    }
    // Fall back on the file name, `<name>-<version>.gemspec`.
    let stem = file.path.rsplit('/').next().unwrap_or("").trim_end_matches(".gemspec");
    let from_stem = stem.rsplit_once('-');
    let name = name.or_else(|| from_stem.map(|(n, _)| n.to_string()));
    let version = version.or_else(|| from_stem.map(|(_, v)| v.to_string()));
    let (Some(name), Some(version)) = (name, version) else {
        return Err("gemspec without name and version".to_string());
    };
    let purl = super::purl::purl("gem", None, &name, Some(&version), &[]);
    let mut c = component(Ecosystem::RubyGems, &name, &version, purl, &file.location);
    if !license_names.is_empty() {
        c.license_declared = Some(license_names.join(", "));
        c.license = licenses::normalize_any_of(&license_names);
    }
    Ok(vec![c])
}
