//! SPDX 2.3 JSON: one package for the image, one for its operating system
//! and one per component, tied together with `DESCRIBES` and `CONTAINS`.
//!
//! Licenses are written as valid SPDX expressions; ids that are not on the
//! SPDX license list become `LicenseRef-` ids declared in
//! `hasExtractedLicensingInfos` with the text the package declared.

use serde_json::{json, Value};

use super::license::{self, Converted, LicenseRefs};
use super::{identify, image_purl, timestamp, ReportError, Result, ScanReport};

const IMAGE_ID: &str = "SPDXRef-Image";
const OS_ID: &str = "SPDXRef-OperatingSystem";

/// A document namespace, `urn:uuid:<uuid>`; the uuid must be fresh per
/// document ([`super::random_uuid`]).
pub fn document_namespace(uuid: &str) -> String {
    format!("urn:uuid:{uuid}")
}

/// Renders `report` as an SPDX 2.3 JSON document with the given
/// `documentNamespace` (an absolute URI without `#`, unique per document).
pub fn write_spdx(report: &ScanReport, namespace: &str) -> Result<String> {
    if !is_absolute_uri(namespace) || namespace.contains('#') {
        return Err(ReportError::InvalidNamespace(namespace.to_string()));
    }
    let mut refs = LicenseRefs::default();
    let mut packages = vec![image_package(report)];
    let mut relationships = vec![relationship("SPDXRef-DOCUMENT", "DESCRIBES", IMAGE_ID)];

    if let Some(os) = &report.os {
        let mut package = base_package(OS_ID, &os.id);
        if let Some(version) = &os.version {
            package["versionInfo"] = json!(version);
        }
        if let Some(pretty) = &os.pretty_name {
            package["description"] = json!(pretty);
        }
        package["primaryPackagePurpose"] = json!("OPERATING-SYSTEM");
        packages.push(package);
        relationships.push(relationship(IMAGE_ID, "CONTAINS", OS_ID));
    }

    for identified in identify(&report.components) {
        let component = identified.component;
        let mut package = base_package(&identified.spdx_id, &component.name);
        if !component.version.is_empty() {
            package["versionInfo"] = json!(component.version);
        }
        let license = match &component.license {
            Some(expression) => license::convert(expression, component.license_declared.as_deref(), &mut refs),
            None => match &component.license_declared {
                Some(declared) => license::convert(declared, Some(declared), &mut refs),
                None => Converted::Special("NOASSERTION"),
            },
        };
        package["licenseConcluded"] = json!(license.as_str());
        package["licenseDeclared"] = json!(license.as_str());
        if let Some(declared) = &component.license_declared {
            if Some(declared) != component.license.as_ref() {
                package["licenseComments"] = json!(format!("declared by the package as: {declared}"));
            }
        }
        if component.purl.starts_with("pkg:") {
            package["externalRefs"] = json!([{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": component.purl,
            }]);
        }
        if !component.locations.is_empty() {
            let places: Vec<String> = component
                .locations
                .iter()
                .map(|location| format!("{} (layer {})", location.path, location.layer))
                .collect();
            package["sourceInfo"] = json!(format!("found in {}", places.join(", ")));
        }
        package["primaryPackagePurpose"] = json!("LIBRARY");
        packages.push(package);
        relationships.push(relationship(IMAGE_ID, "CONTAINS", &identified.spdx_id));
    }

    let extracted: Vec<Value> = refs
        .into_extracted()
        .into_iter()
        .map(|license| {
            json!({
                "licenseId": license.id,
                "name": license.name,
                "extractedText": license.text,
            })
        })
        .collect();

    let mut document = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": report.image.reference,
        "documentNamespace": namespace,
        "creationInfo": {
            "created": timestamp(&report.created),
            "creators": [format!("Tool: berth-scanner-{}", report.scanner_version)],
            "licenseListVersion": license_list_version(),
        },
        "packages": packages,
        "relationships": relationships,
    });
    if !extracted.is_empty() {
        document["hasExtractedLicensingInfos"] = Value::Array(extracted);
    }
    let mut out =
        serde_json::to_string_pretty(&document).map_err(|source| ReportError::Encode { format: "SPDX", source })?;
    out.push('\n');
    Ok(out)
}

fn image_package(report: &ScanReport) -> Value {
    let mut package = base_package(IMAGE_ID, &report.image.reference);
    package["versionInfo"] = json!(report.image.digest);
    package["primaryPackagePurpose"] = json!("CONTAINER");
    if let Some(hex) = report.image.digest.strip_prefix("sha256:") {
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            package["checksums"] = json!([{ "algorithm": "SHA256", "checksumValue": hex.to_ascii_lowercase() }]);
        }
    }
    if let Some(purl) = image_purl(&report.image) {
        package["externalRefs"] = json!([{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": purl,
        }]);
    }
    package
}

/// The fields every package carries; what berth does not know is
/// `NOASSERTION`.
fn base_package(id: &str, name: &str) -> Value {
    json!({
        "SPDXID": id,
        "name": name,
        "supplier": "NOASSERTION",
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
    })
}

fn relationship(from: &str, kind: &str, to: &str) -> Value {
    json!({
        "spdxElementId": from,
        "relationshipType": kind,
        "relatedSpdxElement": to,
    })
}

/// `major.minor` of the SPDX license list the ids come from.
fn license_list_version() -> String {
    let version = spdx::license_version();
    version.split('.').take(2).collect::<Vec<_>>().join(".")
}

/// `scheme:rest` with an RFC 3986 scheme and no spaces.
fn is_absolute_uri(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|first| first.is_ascii_alphabetic())
        && chars.all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '+' | '-' | '.'))
        && !rest.is_empty()
        && !uri.chars().any(|ch| ch.is_whitespace() || ch.is_control())
}
