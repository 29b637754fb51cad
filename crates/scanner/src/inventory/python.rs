//! Python distributions: `<name>.dist-info/METADATA`, `<name>.egg-info/PKG-INFO`
//! and single-file `<name>.egg-info`, directly inside a `site-packages` or
//! `dist-packages` directory (what `pip list` counts; copies vendored inside
//! another package are not listed). The license is `License-Expression`
//! when present, else the `License ::` classifiers, else a one-line
//! `License:` field.

use super::purl::pep503;
use super::{component, paragraphs, set_license, FileRef, METADATA_CAP};
use crate::licenses;
use crate::types::{Component, Ecosystem};

pub(crate) fn parse(file: &FileRef) -> Result<Vec<Component>, String> {
    let data = file.read(METADATA_CAP)?;
    let text = String::from_utf8_lossy(&data);
    // Only the header block: the description follows the first blank line.
    let header_end = text.find("\n\n").unwrap_or(text.len());
    let Some(headers) = paragraphs(&text[..header_end]).into_iter().next() else {
        return Err("no metadata headers".to_string());
    };
    let get = |key: &str| super::field(&headers, key);
    let (Some(name), Some(version)) = (get("Name"), get("Version")) else {
        return Err("metadata without Name or Version".to_string());
    };
    let purl = super::purl::purl("pypi", None, &pep503(name), Some(version), &[]);
    let mut c = component(Ecosystem::PyPI, name, version, purl, &file.location);
    let classifiers: Vec<&str> = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("Classifier"))
        .map(|(_, v)| v.as_str())
        .collect();
    if let Some(expression) = get("License-Expression").filter(|e| !e.is_empty()) {
        set_license(&mut c, Some(expression));
    } else if let Some(license) = licenses::from_pypi_classifiers(&classifiers) {
        c.license_declared = Some(
            classifiers
                .iter()
                .filter(|k| k.starts_with("License ::"))
                .copied()
                .collect::<Vec<_>>()
                .join("; "),
        );
        c.license = Some(license);
    } else if let Some(license) = get("License").filter(|l| !l.contains('\n')) {
        set_license(&mut c, Some(license));
    }
    Ok(vec![c])
}
