//! Ignore rules: a YAML or JSON file of `{id, package?, reason, expires?}`
//! entries, or an OpenVEX document whose `not_affected` / `fixed`
//! statements become rules. A matched finding keeps its place in the report
//! with `ignored: Some(reason)` and no longer counts toward `--fail-on`.
//!
//! `expires` is an RFC 3339 date (`2026-12-31`, meaning the start of that
//! day in UTC) or date-time; from that instant on the rule no longer applies
//! and is reported as expired. `package` is a package name or a package URL
//! (with `@version` it must match exactly, without it any version).

use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

use super::VulnError;
use crate::types::{Severity, Vulnerability};

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoreRule {
    /// The vulnerability id and any other ids it is known by.
    pub ids: Vec<String>,
    /// Package name or purl; `None` for every package.
    pub package: Option<String>,
    pub reason: String,
    pub expires: Option<DateTime<Utc>>,
    /// Where the rule came from (`file.yaml#3`, `vex.json#statement 2`).
    pub origin: String,
}

impl IgnoreRule {
    fn matches(&self, finding: &Vulnerability) -> bool {
        let id_matches = self.ids.iter().any(|id| {
            id.eq_ignore_ascii_case(&finding.id) || finding.aliases.iter().any(|a| a.eq_ignore_ascii_case(id))
        });
        id_matches && self.package.as_deref().is_none_or(|p| package_matches(p, finding))
    }

    fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires.is_some_and(|at| now >= at)
    }
}

/// `pkg:type/namespace/name@version?qualifiers#subpath` without the
/// qualifiers and subpath, and split at the version.
fn purl_parts(purl: &str) -> (&str, Option<&str>) {
    let end = purl.find(['?', '#']).unwrap_or(purl.len());
    let purl = &purl[..end];
    match purl.rfind('@') {
        // An `@` before the last `/` is part of an npm scope (`%40` in a
        // canonical purl, but accept the raw form too).
        Some(at) if purl[at..].find('/').is_none() => (&purl[..at], Some(&purl[at + 1..])),
        _ => (purl, None),
    }
}

fn package_matches(pattern: &str, finding: &Vulnerability) -> bool {
    if !pattern.starts_with("pkg:") {
        return pattern == finding.package;
    }
    let (want_base, want_version) = purl_parts(pattern);
    let (have_base, have_version) = purl_parts(&finding.purl);
    let want_base = want_base.replace("%40", "@");
    let have_base = have_base.replace("%40", "@");
    want_base.eq_ignore_ascii_case(&have_base) && want_version.is_none_or(|v| Some(v) == have_version)
}

/// A set of rules from one or more files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IgnoreRules {
    pub rules: Vec<IgnoreRule>,
}

/// What applying the rules did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IgnoreOutcome {
    /// Findings newly marked ignored.
    pub ignored: usize,
    /// Rules past their expiry (they were not applied).
    pub expired: Vec<IgnoreRule>,
    /// Unexpired rules that matched no finding.
    pub unused: Vec<IgnoreRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(alias = "vulnerability", alias = "alias")]
    id: String,
    #[serde(default)]
    package: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default, alias = "expires_at", alias = "expires-at")]
    expires: Option<String>,
}

fn parse_expiry(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
        .ok_or_else(|| format!("expires {text:?} is not an RFC 3339 date or date-time"))
}

impl IgnoreRules {
    /// Reads a rules file or an OpenVEX document (detected by its
    /// `@context`); JSON or YAML.
    pub fn from_file(path: &Path) -> Result<IgnoreRules, VulnError> {
        let text = std::fs::read_to_string(path).map_err(|e| VulnError::Io {
            path: path.to_owned(),
            source: e,
        })?;
        IgnoreRules::parse(&text, &path.display().to_string())
    }

    /// Parses rules from text; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<IgnoreRules, VulnError> {
        let invalid = |reason: String| VulnError::IgnoreFile {
            path: origin.to_owned(),
            reason,
        };
        let trimmed = text.trim_start();
        if trimmed.starts_with('{') {
            let value: serde_json::Value = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
            if value.get("@context").is_some() || value.get("statements").is_some() {
                return IgnoreRules::from_openvex(&value, origin);
            }
        }
        let document: serde_json::Value = if trimmed.starts_with('{') || trimmed.starts_with('[') {
            serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| invalid(e.to_string()))?
        };
        let list = match &document {
            serde_json::Value::Array(list) => list,
            serde_json::Value::Object(map) => ["rules", "ignore", "ignores"]
                .iter()
                .find_map(|key| map.get(*key))
                .and_then(|v| v.as_array())
                .ok_or_else(|| invalid("expected a list of rules or a `rules:` list".into()))?,
            serde_json::Value::Null => return Ok(IgnoreRules::default()),
            _ => return Err(invalid("expected a list of rules or a `rules:` list".into())),
        };
        let raw = list
            .iter()
            .enumerate()
            .map(|(n, rule)| {
                serde_json::from_value::<RawRule>(rule.clone()).map_err(|e| invalid(format!("rule {}: {e}", n + 1)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut rules = Vec::with_capacity(raw.len());
        for (n, rule) in raw.into_iter().enumerate() {
            let at = format!("rule {} ({})", n + 1, rule.id);
            let reason = rule
                .reason
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty())
                .ok_or_else(|| invalid(format!("{at}: a reason is required")))?;
            let expires = rule
                .expires
                .as_deref()
                .map(parse_expiry)
                .transpose()
                .map_err(|e| invalid(format!("{at}: {e}")))?;
            if rule.id.trim().is_empty() {
                return Err(invalid(format!("rule {}: empty id", n + 1)));
            }
            rules.push(IgnoreRule {
                ids: vec![rule.id.trim().to_owned()],
                package: rule.package.filter(|p| !p.trim().is_empty()),
                reason,
                expires,
                origin: format!("{origin}#{}", n + 1),
            });
        }
        Ok(IgnoreRules { rules })
    }

    /// Rules from an OpenVEX document (v0.0.1 or v0.2.0). Statements are
    /// applied in timestamp order; the last statement for a vulnerability and
    /// product wins, so a later `affected` cancels an earlier `not_affected`.
    pub fn from_openvex(doc: &serde_json::Value, origin: &str) -> Result<IgnoreRules, VulnError> {
        let invalid = |reason: String| VulnError::IgnoreFile {
            path: origin.to_owned(),
            reason,
        };
        let statements = doc
            .get("statements")
            .and_then(|s| s.as_array())
            .ok_or_else(|| invalid("no statements array".into()))?;
        let document_time = doc.get("timestamp").and_then(|t| t.as_str());
        let mut ordered: Vec<(usize, Option<DateTime<Utc>>, &serde_json::Value)> = statements
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let time = s
                    .get("timestamp")
                    .and_then(|t| t.as_str())
                    .or(document_time)
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc));
                (i, time, s)
            })
            .collect();
        ordered.sort_by_key(|(i, time, _)| (*time, *i));
        // (vulnerability id, product) → rule, or None when the latest
        // statement says the product is affected.
        let mut latest: Vec<(VexKey, Option<IgnoreRule>)> = Vec::new();
        for (i, _, statement) in ordered {
            let at = format!("statement {}", i + 1);
            let (name, aliases) = match statement.get("vulnerability") {
                Some(serde_json::Value::String(name)) => (name.clone(), Vec::new()),
                Some(v) => {
                    let name = v
                        .get("name")
                        .or_else(|| v.get("@id"))
                        .and_then(|n| n.as_str())
                        .ok_or_else(|| invalid(format!("{at}: vulnerability without a name")))?;
                    let aliases = v
                        .get("aliases")
                        .and_then(|a| a.as_array())
                        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
                        .unwrap_or_default();
                    (name.to_owned(), aliases)
                }
                None => return Err(invalid(format!("{at}: no vulnerability"))),
            };
            let status = statement
                .get("status")
                .and_then(|s| s.as_str())
                .ok_or_else(|| invalid(format!("{at}: no status")))?;
            let reason = match status {
                "not_affected" => {
                    let detail = statement
                        .get("justification")
                        .or_else(|| statement.get("impact_statement"))
                        .and_then(|j| j.as_str())
                        .ok_or_else(|| {
                            invalid(format!("{at}: not_affected needs a justification or impact_statement"))
                        })?;
                    let mut reason = format!("VEX not_affected: {detail}");
                    if let Some(impact) = statement.get("impact_statement").and_then(|s| s.as_str()) {
                        if impact != detail {
                            reason.push_str(&format!(" ({impact})"));
                        }
                    }
                    Some(reason)
                }
                "fixed" => Some(match statement.get("status_notes").and_then(|s| s.as_str()) {
                    Some(notes) => format!("VEX fixed: {notes}"),
                    None => "VEX fixed".to_owned(),
                }),
                "affected" | "under_investigation" => None,
                other => return Err(invalid(format!("{at}: unknown status {other:?}"))),
            };
            for product in vex_products(statement) {
                let rule = reason.as_ref().map(|reason| IgnoreRule {
                    ids: std::iter::once(name.clone()).chain(aliases.iter().cloned()).collect(),
                    package: product.clone(),
                    reason: reason.clone(),
                    expires: None,
                    origin: format!("{origin}#{at}"),
                });
                let key = (name.clone(), product);
                match latest.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, slot)) => *slot = rule,
                    None => latest.push((key, rule)),
                }
            }
        }
        Ok(IgnoreRules {
            rules: latest.into_iter().filter_map(|(_, rule)| rule).collect(),
        })
    }

    /// Adds the rules of another file.
    pub fn extend(&mut self, other: IgnoreRules) {
        self.rules.extend(other.rules);
    }
}

/// A VEX statement's subject: vulnerability id and product (`None`: the image).
type VexKey = (String, Option<String>);

fn id_of(product: &serde_json::Value) -> Option<String> {
    match product {
        serde_json::Value::String(s) => Some(s.clone()),
        other => other.get("@id").and_then(|i| i.as_str()).map(str::to_owned),
    }
}

/// The package matchers a statement names: the subcomponents' purls when a
/// product lists them, else the product's purl; a product that is the image
/// itself (`pkg:oci/...`, or not a package URL) applies to every package.
fn vex_products(statement: &serde_json::Value) -> Vec<Option<String>> {
    let mut out = Vec::new();
    let products = statement
        .get("products")
        .and_then(|p| p.as_array())
        .cloned()
        .unwrap_or_default();
    for product in &products {
        let subcomponents: Vec<String> = product
            .get("subcomponents")
            .and_then(|s| s.as_array())
            .map(|s| s.iter().filter_map(id_of).collect())
            .unwrap_or_default();
        if !subcomponents.is_empty() {
            out.extend(subcomponents.into_iter().map(Some));
            continue;
        }
        match id_of(product) {
            Some(id) if id.starts_with("pkg:") && !id.starts_with("pkg:oci/") => out.push(Some(id)),
            _ => out.push(None),
        }
    }
    if products.is_empty() {
        out.push(None);
    }
    out
}

/// Marks the findings that an unexpired rule matches as ignored (with the
/// rule's reason). `now` decides expiry.
pub fn apply_ignores(findings: &mut [Vulnerability], rules: &IgnoreRules, now: DateTime<Utc>) -> IgnoreOutcome {
    let mut outcome = IgnoreOutcome::default();
    let mut used = vec![false; rules.rules.len()];
    for (i, rule) in rules.rules.iter().enumerate() {
        if rule.expired(now) {
            outcome.expired.push(rule.clone());
            continue;
        }
        for finding in findings.iter_mut() {
            if rule.matches(finding) {
                used[i] = true;
                if finding.ignored.is_none() {
                    finding.ignored = Some(rule.reason.clone());
                    outcome.ignored += 1;
                }
            }
        }
    }
    outcome.unused = rules
        .rules
        .iter()
        .zip(&used)
        .filter(|(rule, used)| !**used && !rule.expired(now))
        .map(|(rule, _)| rule.clone())
        .collect();
    outcome
}

/// The findings that count toward `--fail-on <threshold>`: not ignored and
/// at least that severe.
pub fn failing(findings: &[Vulnerability], threshold: Severity) -> impl Iterator<Item = &Vulnerability> {
    findings
        .iter()
        .filter(move |f| f.ignored.is_none() && f.severity >= threshold)
}
