//! apk: `/lib/apk/db/installed`, one blank-line separated record per
//! package with one-letter keys (`P` name, `V` version, `A` arch, `L`
//! license, `o` origin). A file with content but no package entry at all is
//! a warning.

use super::{component, set_license, FileRef, OsRelease, DATABASE_CAP};
use crate::types::{Component, Ecosystem};

pub(crate) fn parse(file: &FileRef, warnings: &mut Vec<String>) -> Result<Vec<Component>, String> {
    let data = file.read(DATABASE_CAP)?;
    let text = String::from_utf8_lossy(&data);
    if !text.trim().is_empty() && !text.lines().any(|l| l.starts_with("P:")) {
        warnings.push("apk database has content but no `P:` entry; no packages read from it".to_string());
    }
    let mut out = Vec::new();
    for record in text.split("\n\n") {
        let get = |key: char| {
            record.lines().find_map(|l| {
                let mut chars = l.chars();
                (chars.next() == Some(key) && chars.next() == Some(':')).then(|| l[2..].trim())
            })
        };
        let (Some(name), Some(version)) = (get('P'), get('V')) else {
            continue;
        };
        let mut c = component(Ecosystem::Alpine, name, version, String::new(), &file.location);
        c.arch = get('A').map(str::to_string);
        c.source = get('o').filter(|o| *o != name).map(str::to_string);
        set_license(&mut c, get('L'));
        if let Some(declared) = get('L') {
            // Older Alpine lists several licenses separated by spaces.
            let words: Vec<&str> = declared.split_whitespace().collect();
            let operators = words
                .iter()
                .any(|w| matches!(w.to_ascii_uppercase().as_str(), "AND" | "OR" | "WITH"));
            if words.len() > 1 && !operators {
                c.license = crate::licenses::normalize(&words.join(" AND "));
            }
        }
        c.purl = purl(&c, None);
        out.push(c);
    }
    Ok(out)
}

/// `pkg:apk/<distro id>/<name>@<version>?arch=<arch>&distro=<id>-<version id>`.
pub(crate) fn purl(c: &Component, os: Option<&OsRelease>) -> String {
    let namespace = os.map_or("alpine", |o| o.id.as_str());
    let distro = os
        .and_then(|o| o.version_id.as_ref().map(|v| format!("{}-{v}", o.id)))
        .unwrap_or_default();
    let arch = c.arch.clone().unwrap_or_default();
    super::purl::purl(
        "apk",
        Some(namespace),
        &c.name,
        Some(&c.version),
        &[("arch", &arch), ("distro", &distro)],
    )
}
