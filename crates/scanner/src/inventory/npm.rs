//! npm: every `package.json` that is a package directory inside a
//! `node_modules` (nested ones too, scoped `@scope/name` ones too) — the
//! same set `npm ls --all` walks; a project's own `package.json` is not a
//! dependency and is not listed. `package-lock.json` outside `node_modules`
//! (lockfile v2/v3 `packages` map, v1 `dependencies` tree) adds what the
//! lock pins; npm's hidden `node_modules/.package-lock.json` is skipped as
//! it only repeats the installed tree.

use serde_json::Value;

use super::{component, set_license, FileRef, DATABASE_CAP, METADATA_CAP};
use crate::types::{Component, Ecosystem, Location};

pub(crate) fn parse_package_json(file: &FileRef) -> Result<Vec<Component>, String> {
    let data = file.read(METADATA_CAP)?;
    let json: Value = serde_json::from_slice(&data).map_err(|e| format!("invalid JSON: {e}"))?;
    let (Some(name), Some(version)) = (json["name"].as_str(), json["version"].as_str()) else {
        return Ok(Vec::new());
    };
    let mut c = npm_component(name, version, &file.location);
    set_license(&mut c, license_of(&json).as_deref());
    Ok(vec![c])
}

fn npm_component(name: &str, version: &str, location: &Location) -> Component {
    let (namespace, short) = match name.split_once('/') {
        Some((scope, short)) if scope.starts_with('@') => (Some(scope), short),
        _ => (None, name),
    };
    let purl = super::purl::purl("npm", namespace, short, Some(version), &[]);
    component(Ecosystem::Npm, name, version, purl, location)
}

/// `license` as a string or `{ "type": ... }`, or the legacy `licenses` list
/// (alternatives).
fn license_of(json: &Value) -> Option<String> {
    match &json["license"] {
        Value::String(s) => return Some(s.clone()),
        Value::Object(o) => return o.get("type").and_then(Value::as_str).map(str::to_string),
        _ => {}
    }
    let list = json["licenses"].as_array()?;
    let names: Vec<String> = list
        .iter()
        .filter_map(|l| l.as_str().or_else(|| l["type"].as_str()).map(str::to_string))
        .collect();
    match names.len() {
        0 => None,
        1 => Some(names[0].clone()),
        _ => Some(format!("({})", names.join(" OR "))),
    }
}

pub(crate) fn parse_lock(file: &FileRef) -> Result<Vec<Component>, String> {
    let data = file.read(DATABASE_CAP)?;
    let json: Value = serde_json::from_slice(&data).map_err(|e| format!("invalid JSON: {e}"))?;
    let mut out = Vec::new();
    if let Some(packages) = json["packages"].as_object() {
        for (key, entry) in packages {
            // "" is the project itself; other keys without node_modules are
            // workspace members.
            let Some(i) = key.rfind("node_modules/") else { continue };
            if entry["link"].as_bool() == Some(true) {
                continue;
            }
            let name = entry["name"].as_str().unwrap_or(&key[i + "node_modules/".len()..]);
            let Some(version) = entry["version"].as_str() else {
                continue;
            };
            let mut c = npm_component(name, version, &file.location);
            set_license(&mut c, license_of(entry).as_deref());
            out.push(c);
        }
    } else if let Some(dependencies) = json["dependencies"].as_object() {
        let mut stack: Vec<&serde_json::Map<String, Value>> = vec![dependencies];
        while let Some(map) = stack.pop() {
            for (name, entry) in map {
                if let Some(version) = entry["version"].as_str().filter(|v| !v.starts_with("file:")) {
                    out.push(npm_component(name, version, &file.location));
                }
                if let Some(nested) = entry["dependencies"].as_object() {
                    stack.push(nested);
                }
            }
        }
    }
    Ok(out)
}
