//! dpkg: `/var/lib/dpkg/status` and distroless `/var/lib/dpkg/status.d/*`.
//! Only `Status: install ok installed` entries count (a `status.d` entry has
//! no `Status:` and is installed by being there). The version is kept as
//! written, epoch included; `source` is the `Source:` field as written
//! (`glibc` or `glibc (2.36-9)`), set only when it differs from the name.
//! A file with content but no package entry at all is a warning.

use super::{component, field, paragraphs, FileRef, OsRelease, DATABASE_CAP};
use crate::types::{Component, Ecosystem};

pub(crate) fn parse(file: &FileRef, status_d: bool, warnings: &mut Vec<String>) -> Result<Vec<Component>, String> {
    let data = file.read(DATABASE_CAP)?;
    let text = String::from_utf8_lossy(&data);
    let paragraphs = paragraphs(&text);
    if !text.trim().is_empty() && !paragraphs.iter().any(|p| field(p, "Package").is_some()) {
        warnings.push("dpkg database has content but no `Package:` entry; no packages read from it".to_string());
    }
    let mut out = Vec::new();
    for paragraph in paragraphs {
        let installed = match field(&paragraph, "Status") {
            Some(status) => status.split_whitespace().collect::<Vec<_>>() == ["install", "ok", "installed"],
            None => status_d,
        };
        let (Some(name), Some(version)) = (field(&paragraph, "Package"), field(&paragraph, "Version")) else {
            continue;
        };
        if !installed {
            continue;
        }
        let mut c = component(Ecosystem::Debian, name, version, String::new(), &file.location);
        c.arch = field(&paragraph, "Architecture").map(str::to_string);
        c.source = field(&paragraph, "Source").filter(|s| *s != name).map(str::to_string);
        c.purl = purl(&c, None);
        out.push(c);
    }
    Ok(out)
}

/// `pkg:deb/<distro id>/<name>@<version>?arch=<arch>&distro=<id>-<version id>`.
pub(crate) fn purl(c: &Component, os: Option<&OsRelease>) -> String {
    let namespace = os.map_or("debian", |o| o.id.as_str());
    let distro = os
        .and_then(|o| o.version_id.as_ref().map(|v| format!("{}-{v}", o.id)))
        .unwrap_or_default();
    let arch = c.arch.clone().unwrap_or_default();
    super::purl::purl(
        "deb",
        Some(namespace),
        &c.name,
        Some(&c.version),
        &[("arch", &arch), ("distro", &distro)],
    )
}
