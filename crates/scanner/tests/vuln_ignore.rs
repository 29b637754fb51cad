//! Ignore rules (YAML and JSON, with expiry) and OpenVEX documents applied to
//! findings.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use berth_scanner::vuln::{apply_ignores, failing, IgnoreRules};
use berth_scanner::{Ecosystem, Severity, Vulnerability};
use chrono::{DateTime, Utc};

fn finding(id: &str, aliases: &[&str], package: &str, version: &str) -> Vulnerability {
    Vulnerability {
        id: id.to_owned(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        summary: String::new(),
        severity: Severity::High,
        cvss_score: None,
        cvss_vector: None,
        package: package.to_owned(),
        installed_version: version.to_owned(),
        ecosystem: Ecosystem::Debian,
        purl: format!("pkg:deb/debian/{package}@{version}?arch=amd64"),
        fixed_version: None,
        ignored: None,
    }
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

fn findings() -> Vec<Vulnerability> {
    vec![
        finding("DEBIAN-CVE-2024-0001", &["CVE-2024-0001"], "libssl3", "3.0.11-1"),
        finding("DEBIAN-CVE-2024-0001", &["CVE-2024-0001"], "openssl", "3.0.11-1"),
        finding("DEBIAN-CVE-2024-0002", &[], "login", "1:4.13+dfsg1-1"),
        finding("DEBIAN-CVE-2024-0003", &[], "curl", "7.88.1-10"),
    ]
}

fn ignored(findings: &[Vulnerability]) -> Vec<Option<&str>> {
    findings.iter().map(|f| f.ignored.as_deref()).collect()
}

#[test]
fn yaml_rules_by_alias_package_and_expiry() {
    let rules = IgnoreRules::parse(
        r#"
rules:
  - id: CVE-2024-0001          # an alias of the finding's id
    package: libssl3
    reason: not reachable from our code
    expires: 2030-01-01
  - id: DEBIAN-CVE-2024-0002
    reason: accepted risk until the rebuild
    expires: 2024-06-01T12:00:00Z
  - id: DEBIAN-CVE-2024-0003
    package: pkg:deb/debian/curl
    reason: curl is only used at build time
  - id: CVE-1999-0001
    reason: never matches
"#,
        "ignore.yaml",
    )
    .unwrap();
    let mut list = findings();
    let outcome = apply_ignores(&mut list, &rules, at("2025-01-01T00:00:00Z"));
    assert_eq!(
        ignored(&list),
        [
            Some("not reachable from our code"),
            None,
            None,
            Some("curl is only used at build time")
        ]
    );
    assert_eq!(outcome.ignored, 2);
    assert_eq!(outcome.expired.len(), 1);
    assert_eq!(outcome.expired[0].ids, ["DEBIAN-CVE-2024-0002"]);
    assert_eq!(outcome.unused.len(), 1);
    assert_eq!(outcome.unused[0].ids, ["CVE-1999-0001"]);
    let counted: Vec<&str> = failing(&list, Severity::High).map(|f| f.package.as_str()).collect();
    assert_eq!(
        counted,
        ["openssl", "login"],
        "ignored findings do not count toward --fail-on"
    );
    assert_eq!(failing(&list, Severity::Critical).count(), 0);

    // Before its expiry the second rule applies; a date expires at its start (UTC).
    let mut list = findings();
    apply_ignores(&mut list, &rules, at("2024-06-01T11:59:59Z"));
    assert_eq!(list[2].ignored.as_deref(), Some("accepted risk until the rebuild"));
    let mut list = findings();
    let outcome = apply_ignores(&mut list, &rules, at("2030-01-01T00:00:00Z"));
    assert_eq!(list[0].ignored, None);
    assert_eq!(outcome.expired.len(), 2);
}

#[test]
fn json_rules_and_errors_that_name_the_problem() {
    let rules = IgnoreRules::parse(
        r#"[{"id": "DEBIAN-CVE-2024-0003", "package": "pkg:deb/debian/curl@7.88.1-10", "reason": "exact version"}]"#,
        "ignore.json",
    )
    .unwrap();
    let mut list = findings();
    apply_ignores(&mut list, &rules, Utc::now());
    assert_eq!(list[3].ignored.as_deref(), Some("exact version"));
    let other_version = IgnoreRules::parse(
        r#"{"ignore": [{"id": "DEBIAN-CVE-2024-0003", "package": "pkg:deb/debian/curl@9", "reason": "x"}]}"#,
        "ignore.json",
    )
    .unwrap();
    let mut list = findings();
    apply_ignores(&mut list, &other_version, Utc::now());
    assert_eq!(list[3].ignored, None, "a purl with a version matches that version only");

    let missing_reason = IgnoreRules::parse("- id: CVE-1\n", "ignore.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        missing_reason.contains("ignore.yaml") && missing_reason.contains("reason is required"),
        "{missing_reason}"
    );
    let bad_date = IgnoreRules::parse("- id: CVE-1\n  reason: r\n  expires: next week\n", "ignore.yaml").unwrap_err();
    assert!(bad_date.to_string().contains("next week"), "{bad_date}");
    let typo = IgnoreRules::parse("- id: CVE-1\n  reason: r\n  expiry: 2025-01-01\n", "ignore.yaml").unwrap_err();
    assert!(typo.to_string().contains("expiry"), "{typo}");
}

#[test]
fn openvex_statements_become_rules() {
    let vex = r#"{
      "@context": "https://openvex.dev/ns/v0.2.0",
      "@id": "https://example.invalid/vex/1",
      "author": "security team",
      "timestamp": "2024-03-01T00:00:00Z",
      "version": 1,
      "statements": [
        {
          "vulnerability": {"name": "CVE-2024-0001"},
          "products": [{"@id": "pkg:oci/app@sha256:abcd", "subcomponents": [{"@id": "pkg:deb/debian/libssl3"}]}],
          "status": "not_affected",
          "justification": "vulnerable_code_not_in_execute_path",
          "impact_statement": "the TLS client is never used"
        },
        {
          "vulnerability": {"name": "DEBIAN-CVE-2024-0003"},
          "products": [{"@id": "pkg:deb/debian/curl@7.88.1-10"}],
          "status": "fixed",
          "status_notes": "patched in our rebuild"
        },
        {
          "vulnerability": {"name": "DEBIAN-CVE-2024-0002"},
          "products": [{"@id": "pkg:oci/app@sha256:abcd"}],
          "status": "not_affected",
          "justification": "component_not_present",
          "timestamp": "2024-03-02T00:00:00Z"
        },
        {
          "vulnerability": {"name": "DEBIAN-CVE-2024-0002"},
          "products": [{"@id": "pkg:oci/app@sha256:abcd"}],
          "status": "affected",
          "timestamp": "2024-03-03T00:00:00Z"
        }
      ]
    }"#;
    let rules = IgnoreRules::parse(vex, "app.vex.json").unwrap();
    let mut list = findings();
    let outcome = apply_ignores(&mut list, &rules, Utc::now());
    assert_eq!(
        ignored(&list),
        [
            Some("VEX not_affected: vulnerable_code_not_in_execute_path (the TLS client is never used)"),
            None,
            // The later `affected` statement cancels the earlier `not_affected`.
            None,
            Some("VEX fixed: patched in our rebuild"),
        ]
    );
    assert_eq!(outcome.ignored, 2);

    let no_justification = r#"{"@context": "https://openvex.dev/ns/v0.2.0", "statements": [
        {"vulnerability": {"name": "CVE-1"}, "products": [], "status": "not_affected"}]}"#;
    let error = IgnoreRules::parse(no_justification, "bad.vex.json")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("statement 1") && error.contains("justification"),
        "{error}"
    );
}
