//! SARIF 2.1.0: one run of the `berth` tool with a rule per vulnerability
//! id, per check rule and per license rule, and a result per finding located
//! at the file in the image that the finding is about. Ignored
//! vulnerabilities are kept as suppressed results; checks that could not
//! finish (errors) and the report's warnings are tool execution
//! notifications.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use super::{
    identify, osv_url, percent_encode, score_value, severity_name, vulnerability_order, ReportError, Result, ScanReport,
};
use crate::types::{Location, Severity, Vulnerability};

/// The `uriBaseId` of paths inside the image's root filesystem.
const ROOTFS: &str = "ROOTFS";

/// Renders `report` as a SARIF 2.1.0 log.
pub fn write_sarif(report: &ScanReport) -> Result<String> {
    let mut locations_by_purl: HashMap<&str, Vec<&Location>> = HashMap::new();
    for identified in identify(&report.components) {
        locations_by_purl
            .entry(identified.component.purl.as_str())
            .or_default()
            .extend(identified.component.locations.iter());
    }

    let mut rules = Rules::default();
    let mut results = Vec::new();

    let mut vulnerabilities: Vec<&Vulnerability> = report.vulnerabilities.iter().collect();
    vulnerabilities.sort_by(|a, b| vulnerability_order(a, b));
    for vulnerability in &vulnerabilities {
        rules.add_vulnerability(vulnerability);
    }
    let mut findings: Vec<_> = report.check_findings.iter().collect();
    findings.sort_by(|a, b| {
        (std::cmp::Reverse(a.severity), &a.check, &a.rule, &a.path, &a.message).cmp(&(
            std::cmp::Reverse(b.severity),
            &b.check,
            &b.rule,
            &b.path,
            &b.message,
        ))
    });
    for finding in &findings {
        rules.add(
            &format!("{}/{}", finding.check, finding.rule),
            &format!("{} check: {}", finding.check, finding.rule),
            finding.severity,
            None,
            &["check", &finding.check],
        );
    }
    let mut violations: Vec<_> = report.license_violations.iter().collect();
    violations.sort();
    for violation in &violations {
        rules.add(
            &format!("license/{}", violation.rule),
            &format!("license policy: {}", violation.rule),
            Severity::High,
            None,
            &["license"],
        );
    }
    let index = rules.index();

    for vulnerability in &vulnerabilities {
        let rule_id = vulnerability.id.as_str();
        let mut text = format!(
            "{} {} is affected by {}",
            vulnerability.package, vulnerability.installed_version, rule_id
        );
        match &vulnerability.fixed_version {
            Some(fixed) => text.push_str(&format!("; fixed in {fixed}")),
            None => text.push_str("; no fix is available"),
        }
        if !vulnerability.summary.is_empty() {
            text.push_str(&format!(": {}", vulnerability.summary));
        }
        let paths: Vec<&Location> = locations_by_purl
            .get(vulnerability.purl.as_str())
            .cloned()
            .unwrap_or_default();
        let mut result = result(rule_id, index[rule_id], vulnerability.severity, &text, &paths);
        result["locations"] = with_logical(result["locations"].take(), &vulnerability.package, &vulnerability.purl);
        let mut properties = json!({
            "package": vulnerability.package,
            "installedVersion": vulnerability.installed_version,
            "purl": vulnerability.purl,
            "severity": severity_name(vulnerability.severity),
        });
        if let Some(fixed) = &vulnerability.fixed_version {
            properties["fixedVersion"] = json!(fixed);
        }
        if let Some(score) = vulnerability.cvss_score {
            properties["cvssScore"] = score_value(score);
        }
        result["properties"] = properties;
        if let Some(reason) = &vulnerability.ignored {
            result["suppressions"] = json!([{ "kind": "external", "status": "accepted", "justification": reason }]);
        }
        results.push(result);
    }
    for finding in &findings {
        let rule_id = format!("{}/{}", finding.check, finding.rule);
        let location = finding.path.as_ref().map(|path| Location {
            layer: String::new(),
            path: path.clone(),
        });
        let paths: Vec<&Location> = location.iter().collect();
        let mut result = result(
            &rule_id,
            index[rule_id.as_str()],
            finding.severity,
            &finding.message,
            &paths,
        );
        result["properties"] = json!({ "check": finding.check, "severity": severity_name(finding.severity) });
        results.push(result);
    }
    for violation in &violations {
        let rule_id = format!("license/{}", violation.rule);
        let text = format!(
            "{} {} is licensed under {}, which rule {} forbids",
            violation.component, violation.version, violation.license, violation.rule
        );
        let paths: Vec<&Location> = locations_by_purl
            .get(violation.purl.as_str())
            .cloned()
            .unwrap_or_default();
        let mut result = result(&rule_id, index[rule_id.as_str()], Severity::High, &text, &paths);
        result["locations"] = with_logical(result["locations"].take(), &violation.component, &violation.purl);
        result["properties"] = json!({ "license": violation.license, "purl": violation.purl });
        results.push(result);
    }

    let mut failures: Vec<_> = report.check_failures.iter().collect();
    failures.sort();
    let mut notifications: Vec<Value> = failures
        .iter()
        .map(|failure| {
            json!({
                "level": "error",
                "message": { "text": format!("check {} could not finish: {}", failure.check, failure.reason) },
                "descriptor": { "id": failure.check },
            })
        })
        .collect();
    let mut warnings: Vec<&String> = report.warnings.iter().collect();
    warnings.sort();
    notifications.extend(warnings.iter().map(|warning| {
        json!({
            "level": "warning",
            "message": { "text": warning },
            "descriptor": { "id": "inventory" },
        })
    }));
    let mut invocation = json!({ "executionSuccessful": failures.is_empty() });
    if !notifications.is_empty() {
        invocation["toolExecutionNotifications"] = Value::Array(notifications);
    }

    let log = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "berth",
                    "fullName": "berth image scanner",
                    "version": report.scanner_version,
                    "rules": rules.into_json(),
                },
            },
            "invocations": [invocation],
            "originalUriBaseIds": {
                ROOTFS: {
                    "uri": "file:///",
                    "description": { "text": "the root filesystem of the scanned image" },
                },
            },
            "results": results,
            "properties": {
                "image": report.image.reference,
                "digest": report.image.digest,
                "created": super::timestamp(&report.created),
            },
        }],
    });
    let mut out = serde_json::to_string_pretty(&log).map_err(|source| ReportError::Encode {
        format: "SARIF",
        source,
    })?;
    out.push('\n');
    Ok(out)
}

/// SARIF's level for a severity.
pub fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium | Severity::Unknown => "warning",
        Severity::Low => "note",
    }
}

fn result(rule_id: &str, rule_index: usize, severity: Severity, text: &str, paths: &[&Location]) -> Value {
    let mut paths: Vec<&str> = paths.iter().map(|location| location.path.as_str()).collect();
    paths.sort_unstable();
    paths.dedup();
    let locations: Vec<Value> = paths
        .iter()
        .map(|path| {
            json!({
                "physicalLocation": {
                    "artifactLocation": {
                        "uri": percent_encode(path.trim_start_matches('/')),
                        "uriBaseId": ROOTFS,
                    },
                },
            })
        })
        .collect();
    json!({
        "ruleId": rule_id,
        "ruleIndex": rule_index,
        "level": level(severity),
        "kind": "fail",
        "message": { "text": text },
        "locations": locations,
    })
}

/// Adds the package as a logical location to the first location (or as the
/// only one).
fn with_logical(locations: Value, package: &str, purl: &str) -> Value {
    let logical = json!([{ "name": package, "fullyQualifiedName": purl, "kind": "package" }]);
    let mut locations = match locations {
        Value::Array(locations) => locations,
        _ => Vec::new(),
    };
    match locations.first_mut() {
        Some(first) => first["logicalLocations"] = logical,
        None => locations.push(json!({ "logicalLocations": logical })),
    }
    Value::Array(locations)
}

/// Rules in id order; a rule seen twice keeps its most severe level.
#[derive(Default)]
struct Rules {
    by_id: BTreeMap<String, Rule>,
}

struct Rule {
    description: String,
    severity: Severity,
    help_uri: Option<String>,
    score: Option<f32>,
    tags: Vec<String>,
}

impl Rules {
    fn add_vulnerability(&mut self, vulnerability: &Vulnerability) {
        let description = if vulnerability.summary.is_empty() {
            vulnerability.id.clone()
        } else {
            vulnerability.summary.clone()
        };
        self.add(
            &vulnerability.id,
            &description,
            vulnerability.severity,
            Some(osv_url(&vulnerability.id)),
            &["vulnerability", "security"],
        );
        if let (Some(score), Some(rule)) = (vulnerability.cvss_score, self.by_id.get_mut(&vulnerability.id)) {
            rule.score = Some(rule.score.map_or(score, |known: f32| known.max(score)));
        }
    }

    fn add(&mut self, id: &str, description: &str, severity: Severity, help_uri: Option<String>, tags: &[&str]) {
        let rule = self.by_id.entry(id.to_string()).or_insert_with(|| Rule {
            description: description.to_string(),
            severity,
            help_uri,
            score: None,
            tags: tags.iter().map(|tag| tag.to_string()).collect(),
        });
        rule.severity = rule.severity.max(severity);
    }

    fn index(&self) -> HashMap<&str, usize> {
        self.by_id
            .keys()
            .enumerate()
            .map(|(index, id)| (id.as_str(), index))
            .collect()
    }

    fn into_json(self) -> Vec<Value> {
        self.by_id
            .into_iter()
            .map(|(id, rule)| {
                let mut properties = json!({ "tags": rule.tags });
                if let Some(score) = rule.score {
                    // GitHub code scanning ranks security results by this.
                    properties["security-severity"] = json!(format!("{score:.1}"));
                }
                let mut value = json!({
                    "id": id,
                    "shortDescription": { "text": rule.description },
                    "defaultConfiguration": { "level": level(rule.severity) },
                    "properties": properties,
                });
                if let Some(uri) = rule.help_uri {
                    value["helpUri"] = json!(uri);
                }
                value
            })
            .collect()
    }
}
