//! CycloneDX 1.5 JSON: the image as the BOM's subject, its operating
//! system and components, and the vulnerabilities that affect them with
//! their ratings, fixes and ignore decisions.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::license::{self, Converted, LicenseRefs};
use super::{
    cvss_version, identify, image_purl, osv_url, score_value, severity_name, timestamp, vulnerability_order,
    ReportError, Result, ScanReport,
};
use crate::types::{Component, Severity, Vulnerability};

const IMAGE_REF: &str = "image";
const OS_REF: &str = "operating-system";

/// The serial number for a BOM: `urn:uuid:<uuid>`.
pub fn serial_number(uuid: &str) -> String {
    format!("urn:uuid:{uuid}")
}

/// Renders `report` as a CycloneDX 1.5 JSON BOM with the given
/// `serialNumber` (`urn:uuid:...`, fresh per BOM).
pub fn write_cyclonedx(report: &ScanReport, serial: &str) -> Result<String> {
    if !is_uuid_urn(serial) {
        return Err(ReportError::InvalidSerial(serial.to_string()));
    }
    let mut image = json!({
        "type": "container",
        "bom-ref": IMAGE_REF,
        "name": report.image.reference,
        "version": report.image.digest,
    });
    if let Some(purl) = image_purl(&report.image) {
        image["purl"] = json!(purl);
    }
    let mut metadata = json!({
        "timestamp": timestamp(&report.created),
        "tools": {
            "components": [{
                "type": "application",
                "name": "berth-scanner",
                "version": report.scanner_version,
            }],
        },
        "component": image,
    });
    if let Some(version) = &report.database_version {
        metadata["properties"] = json!([{ "name": "berth:vulnerability-database-version", "value": version }]);
    }

    let mut components = Vec::new();
    if let Some(os) = &report.os {
        let mut component = json!({ "type": "operating-system", "bom-ref": OS_REF, "name": os.id });
        if let Some(version) = &os.version {
            component["version"] = json!(version);
        }
        if let Some(pretty) = &os.pretty_name {
            component["description"] = json!(pretty);
        }
        components.push(component);
    }

    let identified = identify(&report.components);
    let mut refs = LicenseRefs::default();
    let mut refs_by_purl: HashMap<&str, Vec<&str>> = HashMap::new();
    for entry in &identified {
        refs_by_purl
            .entry(entry.component.purl.as_str())
            .or_default()
            .push(&entry.bom_ref);
        components.push(component_json(entry.component, &entry.bom_ref, &mut refs));
    }

    let mut vulnerabilities: Vec<&Vulnerability> = report.vulnerabilities.iter().collect();
    vulnerabilities.sort_by(|a, b| vulnerability_order(a, b));
    let vulnerabilities: Vec<Value> = vulnerabilities
        .into_iter()
        .map(|vulnerability| {
            let affected = refs_by_purl
                .get(vulnerability.purl.as_str())
                .cloned()
                .unwrap_or_default();
            vulnerability_json(vulnerability, &affected)
        })
        .collect();

    let mut bom = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": serial,
        "version": 1,
        "metadata": metadata,
        "components": components,
    });
    if !vulnerabilities.is_empty() {
        bom["vulnerabilities"] = Value::Array(vulnerabilities);
    }
    let mut out = serde_json::to_string_pretty(&bom).map_err(|source| ReportError::Encode {
        format: "CycloneDX",
        source,
    })?;
    out.push('\n');
    Ok(out)
}

fn component_json(component: &Component, bom_ref: &str, refs: &mut LicenseRefs) -> Value {
    let mut value = json!({
        "type": "library",
        "bom-ref": bom_ref,
        "name": component.name,
    });
    if !component.version.is_empty() {
        value["version"] = json!(component.version);
    }
    if component.purl.starts_with("pkg:") {
        value["purl"] = json!(component.purl);
    }
    if let Some(licenses) = licenses_json(component, refs) {
        value["licenses"] = licenses;
    }
    let mut properties = vec![property("berth:ecosystem", component.ecosystem.osv_name())];
    if let Some(arch) = &component.arch {
        properties.push(property("berth:arch", arch));
    }
    if let Some(source) = &component.source {
        properties.push(property("berth:source-package", source));
    }
    for location in &component.locations {
        properties.push(property("berth:location:path", &location.path));
        properties.push(property("berth:location:layer", &location.layer));
    }
    value["properties"] = Value::Array(properties);
    value
}

/// A single SPDX id as `license.id`, a single unknown license as
/// `license.name` (the declared text), anything compound as `expression`;
/// `None` when nothing is known.
fn licenses_json(component: &Component, refs: &mut LicenseRefs) -> Option<Value> {
    let raw = component.license.as_deref().or(component.license_declared.as_deref())?;
    let converted = license::convert(raw, component.license_declared.as_deref(), refs);
    let Converted::Expression(expression) = converted else {
        return None;
    };
    let single = !expression.contains(' ') && !expression.contains('(');
    if single && !expression.ends_with('+') && license::list_license(&expression).as_deref() == Some(&expression) {
        return Some(json!([{ "license": { "id": expression } }]));
    }
    if single && expression.starts_with("LicenseRef-") {
        // Not an SPDX id: the license's name is what the package declared.
        let name = component.license_declared.as_deref().unwrap_or(raw);
        return Some(json!([{ "license": { "name": name } }]));
    }
    Some(json!([{ "expression": expression }]))
}

fn vulnerability_json(vulnerability: &Vulnerability, affected: &[&str]) -> Value {
    let mut value = json!({
        "id": vulnerability.id,
        "source": { "name": "OSV", "url": osv_url(&vulnerability.id) },
        "ratings": [rating(vulnerability)],
    });
    if !vulnerability.summary.is_empty() {
        value["description"] = json!(vulnerability.summary);
    }
    if !vulnerability.aliases.is_empty() {
        let mut aliases = vulnerability.aliases.clone();
        aliases.sort();
        aliases.dedup();
        value["references"] = Value::Array(
            aliases
                .iter()
                .map(|alias| json!({ "id": alias, "source": { "name": "OSV", "url": osv_url(alias) } }))
                .collect(),
        );
    }
    if let Some(fixed) = &vulnerability.fixed_version {
        value["recommendation"] = json!(format!(
            "upgrade {} from {} to {fixed}",
            vulnerability.package, vulnerability.installed_version
        ));
    }
    let version = json!([{ "version": vulnerability.installed_version, "status": "affected" }]);
    let affects: Vec<Value> = if affected.is_empty() {
        // Not among the listed components: refer to it by its purl.
        vec![json!({ "ref": vulnerability.purl, "versions": version })]
    } else {
        affected
            .iter()
            .map(|bom_ref| json!({ "ref": bom_ref, "versions": version }))
            .collect()
    };
    value["affects"] = Value::Array(affects);
    if let Some(reason) = &vulnerability.ignored {
        value["analysis"] = json!({ "detail": format!("ignored by policy: {reason}") });
    }
    let mut properties = Vec::new();
    if let Some(fixed) = &vulnerability.fixed_version {
        properties.push(property("berth:fixed-version", fixed));
    }
    if vulnerability.ignored.is_some() {
        properties.push(property("berth:ignored", "true"));
    }
    if !properties.is_empty() {
        value["properties"] = Value::Array(properties);
    }
    value
}

fn rating(vulnerability: &Vulnerability) -> Value {
    let mut rating = json!({ "severity": cyclonedx_severity(vulnerability.severity) });
    if let Some(score) = vulnerability.cvss_score {
        rating["score"] = score_value(score);
    }
    if let Some(vector) = &vulnerability.cvss_vector {
        rating["vector"] = json!(vector);
        rating["method"] = json!(match cvss_version(vector) {
            Some("4.0") => "CVSSv4",
            Some("3.1") => "CVSSv31",
            Some("3.0") => "CVSSv3",
            Some("2.0") => "CVSSv2",
            _ => "other",
        });
    }
    rating
}

fn cyclonedx_severity(severity: Severity) -> &'static str {
    severity_name(severity)
}

fn property(name: &str, value: &str) -> Value {
    json!({ "name": name, "value": value })
}

/// `urn:uuid:` and the 8-4-4-4-12 hex form.
fn is_uuid_urn(serial: &str) -> bool {
    let Some(uuid) = serial.strip_prefix("urn:uuid:") else {
        return false;
    };
    let groups: Vec<&str> = uuid.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.bytes().all(|b| b.is_ascii_hexdigit()))
}
