//! The scan report and its renderings: [`ScanReport`] is what `berth scan
//! --format json` prints and what a certification record carries; `table`,
//! `spdx` (SPDX 2.3 JSON), `cyclonedx` (CycloneDX 1.5 JSON) and `sarif`
//! (SARIF 2.1.0) render it.
//!
//! **Architecture Invariant:** every writer is a pure function of the report
//! and its explicit inputs (the SPDX namespace, the CycloneDX serial): the
//! same input renders to the same bytes. Lists are sorted before writing and
//! the time comes from [`ScanReport::created`], never from the clock.

pub use berth_model::scan::{SeverityCounts, Summary};

pub mod cyclonedx;
mod license;
pub mod sarif;
pub mod spdx;
pub mod table;

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::io::Read;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::optimize::Optimization;
use crate::types::{CheckFailure, CheckFinding, Component, FunctionalTest, LicenseViolation, Severity, Vulnerability};

/// This scanner's version, as reports name it.
pub const SCANNER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// How much of a functional test's output a report keeps (its end).
pub const FUNCTIONAL_TEST_OUTPUT_LIMIT: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("unknown severity {0:?} (expected critical, high, medium, low or unknown)")]
    UnknownSeverity(String),
    #[error("SPDX document namespace {0:?} is not an absolute URI without a fragment")]
    InvalidNamespace(String),
    #[error("CycloneDX serial number {0:?} is not urn:uuid:<RFC 4122 UUID>")]
    InvalidSerial(String),
    #[error("encoding the {format} document: {source}")]
    Encode {
        format: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("decoding a scan report: {0}")]
    Decode(#[source] serde_json::Error),
    #[error("reading random bytes for a UUID: {0}")]
    Random(#[source] std::io::Error),
}

pub type Result<T, E = ReportError> = std::result::Result<T, E>;

/// The image a report is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// As the user named it (`registry.example.com/team/app:1.2`).
    pub reference: String,
    /// The manifest digest (`sha256:...`).
    pub digest: String,
}

/// The image's operating system, from `/etc/os-release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsInfo {
    /// `ID` (`debian`, `alpine`).
    pub id: String,
    /// `NAME` (`Debian GNU/Linux`).
    pub name: String,
    /// `VERSION_ID` (`12`, `3.19.1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `PRETTY_NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretty_name: Option<String>,
}

impl OsInfo {
    /// Parses os-release(5) text; `None` without an `ID`.
    pub fn from_os_release(text: &str) -> Option<OsInfo> {
        let mut fields = HashMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') {
                continue;
            }
            if let Some((key, value)) = line.split_once('=') {
                fields.insert(key.trim(), unquote(value.trim()));
            }
        }
        let id = fields.remove("ID").filter(|id| !id.is_empty())?;
        Some(OsInfo {
            name: fields.remove("NAME").unwrap_or_else(|| id.clone()),
            id,
            version: fields.remove("VERSION_ID"),
            pretty_name: fields.remove("PRETTY_NAME"),
        })
    }
}

/// Removes shell quoting as os-release allows it.
fn unquote(value: &str) -> String {
    let inner = match value.as_bytes() {
        [b'"', .., b'"'] | [b'\'', .., b'\''] if value.len() >= 2 => &value[1..value.len() - 1],
        _ => value,
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(ch) = chars.next() {
        if ch == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(ch);
        }
    }
    out
}

/// Everything one scan found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanReport {
    pub image: ImageRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<OsInfo>,
    pub scanner_version: String,
    /// The vulnerability database's version, when one was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_version: Option<String>,
    /// When the scan ran; every writer takes its time from here.
    pub created: DateTime<Utc>,
    #[serde(default)]
    pub components: Vec<Component>,
    #[serde(default)]
    pub vulnerabilities: Vec<Vulnerability>,
    #[serde(default)]
    pub license_violations: Vec<LicenseViolation>,
    #[serde(default)]
    pub check_findings: Vec<CheckFinding>,
    /// Checks that could not finish.
    #[serde(default)]
    pub check_failures: Vec<CheckFailure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimization: Option<Optimization>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub functional_test: Option<FunctionalTest>,
    /// What the scan could not read, each naming the file in the image and
    /// why (`/var/lib/rpm/Packages: Berkeley DB rpm database could not be
    /// read: ...`): the components may be incomplete. Absent in reports
    /// from before it existed, and left out when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One more `severity` in `counts`.
fn count(counts: &mut SeverityCounts, severity: Severity) {
    match severity {
        Severity::Critical => counts.critical += 1,
        Severity::High => counts.high += 1,
        Severity::Medium => counts.medium += 1,
        Severity::Low => counts.low += 1,
        Severity::Unknown => counts.unknown += 1,
    }
}

impl ScanReport {
    /// A report with nothing found yet, created at `created`.
    pub fn new(image: ImageRef, created: DateTime<Utc>) -> ScanReport {
        ScanReport {
            image,
            os: None,
            scanner_version: SCANNER_VERSION.to_string(),
            database_version: None,
            created,
            components: Vec::new(),
            vulnerabilities: Vec::new(),
            license_violations: Vec::new(),
            check_findings: Vec::new(),
            check_failures: Vec::new(),
            optimization: None,
            functional_test: None,
            warnings: Vec::new(),
        }
    }

    /// Sorts every list into the order all writers use: components by
    /// ecosystem, name, version; vulnerabilities and findings by severity,
    /// most severe first.
    pub fn sort(&mut self) {
        self.components.sort_by(component_order);
        for component in &mut self.components {
            component.locations.sort();
        }
        for vulnerability in &mut self.vulnerabilities {
            vulnerability.aliases.sort();
            vulnerability.aliases.dedup();
        }
        self.vulnerabilities.sort_by(vulnerability_order);
        self.license_violations.sort();
        self.check_findings.sort_by(|a, b| {
            (Reverse(a.severity), &a.check, &a.rule, &a.path, &a.message).cmp(&(
                Reverse(b.severity),
                &b.check,
                &b.rule,
                &b.path,
                &b.message,
            ))
        });
        self.check_failures.sort();
        self.warnings.sort();
        self.warnings.dedup();
    }

    /// The headline counts.
    pub fn summary(&self) -> Summary {
        let mut summary = Summary {
            license_violations: self.license_violations.len(),
            check_failures: self.check_failures.len(),
            functional_test_passed: self.functional_test.as_ref().map(|test| test.passed),
            ..Summary::default()
        };
        for vulnerability in &self.vulnerabilities {
            if vulnerability.ignored.is_some() {
                summary.ignored += 1;
                continue;
            }
            count(&mut summary.vulnerabilities, vulnerability.severity);
            if vulnerability.fixed_version.is_some() {
                summary.fixable += 1;
            }
        }
        for finding in &self.check_findings {
            count(&mut summary.check_findings, finding.severity);
        }
        summary
    }

    /// The report as pretty JSON, lists sorted.
    pub fn to_json(&self) -> Result<String> {
        let mut sorted = self.clone();
        sorted.sort();
        let mut out = serde_json::to_string_pretty(&sorted).map_err(|source| ReportError::Encode {
            format: "report",
            source,
        })?;
        out.push('\n');
        Ok(out)
    }

    pub fn from_json(text: &str) -> Result<ScanReport> {
        serde_json::from_str(text).map_err(ReportError::Decode)
    }
}

impl FunctionalTest {
    /// A result whose output keeps at most [`FUNCTIONAL_TEST_OUTPUT_LIMIT`]
    /// bytes, the end of it (where failures are reported).
    pub fn new(command: Vec<String>, passed: bool, exit_code: Option<i32>, output: &str, duration_ms: u64) -> Self {
        let (output, output_truncated) = truncate_output(output, FUNCTIONAL_TEST_OUTPUT_LIMIT);
        FunctionalTest {
            command,
            passed,
            exit_code,
            output,
            output_truncated,
            duration_ms,
        }
    }
}

/// The last `limit` bytes of `output` (cut at a character boundary), and
/// whether anything was dropped.
pub fn truncate_output(output: &str, limit: usize) -> (String, bool) {
    if output.len() <= limit {
        return (output.to_string(), false);
    }
    let mut start = output.len() - limit;
    while !output.is_char_boundary(start) {
        start += 1;
    }
    (output[start..].to_string(), true)
}

/// Which severities a listing shows (`--severity critical,high`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeverityFilter {
    allowed: BTreeSet<Severity>,
}

impl Default for SeverityFilter {
    /// Every severity.
    fn default() -> Self {
        SeverityFilter {
            allowed: [
                Severity::Unknown,
                Severity::Low,
                Severity::Medium,
                Severity::High,
                Severity::Critical,
            ]
            .into_iter()
            .collect(),
        }
    }
}

impl SeverityFilter {
    /// Parses a comma-separated list of severity names (any case); an empty
    /// list means every severity.
    pub fn parse(list: &str) -> Result<SeverityFilter> {
        let mut allowed = BTreeSet::new();
        for name in list.split(',').map(str::trim).filter(|name| !name.is_empty()) {
            allowed.insert(parse_severity(name)?);
        }
        if allowed.is_empty() {
            return Ok(SeverityFilter::default());
        }
        Ok(SeverityFilter { allowed })
    }

    pub fn allows(&self, severity: Severity) -> bool {
        self.allowed.contains(&severity)
    }

    /// Whether some severity is left out.
    pub fn is_restrictive(&self) -> bool {
        self.allowed.len() < 5
    }
}

impl fmt::Display for SeverityFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
            .allowed
            .iter()
            .rev()
            .map(|severity| severity_name(*severity))
            .collect();
        f.write_str(&names.join(","))
    }
}

pub fn parse_severity(name: &str) -> Result<Severity> {
    match name.to_ascii_lowercase().as_str() {
        "critical" => Ok(Severity::Critical),
        "high" => Ok(Severity::High),
        "medium" | "moderate" => Ok(Severity::Medium),
        "low" => Ok(Severity::Low),
        "unknown" => Ok(Severity::Unknown),
        _ => Err(ReportError::UnknownSeverity(name.to_string())),
    }
}

pub fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "critical",
        Severity::High => "high",
        Severity::Medium => "medium",
        Severity::Low => "low",
        Severity::Unknown => "unknown",
    }
}

/// A random (version 4) UUID, for SPDX namespaces and CycloneDX serials.
pub fn random_uuid() -> Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .map_err(ReportError::Random)?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    Ok(format_uuid(&bytes))
}

fn format_uuid(bytes: &[u8; 16]) -> String {
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The time as both SBOM formats write it (UTC, whole seconds).
fn timestamp(time: &DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn component_order(a: &Component, b: &Component) -> std::cmp::Ordering {
    (a.ecosystem, &a.name, &a.version, &a.purl, &a.arch, &a.locations).cmp(&(
        b.ecosystem,
        &b.name,
        &b.version,
        &b.purl,
        &b.arch,
        &b.locations,
    ))
}

fn vulnerability_order(a: &Vulnerability, b: &Vulnerability) -> std::cmp::Ordering {
    (Reverse(a.severity), &a.id, &a.package, &a.installed_version, &a.purl).cmp(&(
        Reverse(b.severity),
        &b.id,
        &b.package,
        &b.installed_version,
        &b.purl,
    ))
}

/// A component with the ids the SBOM writers give it.
struct IdentifiedComponent<'a> {
    component: &'a Component,
    /// `SPDXRef-Package-...`, unique in the document.
    spdx_id: String,
    /// The CycloneDX `bom-ref`: the purl when no other component shares it.
    bom_ref: String,
}

/// Sorts the components and gives each stable, unique ids derived from
/// what it is and where it was found.
fn identify(components: &[Component]) -> Vec<IdentifiedComponent<'_>> {
    let mut sorted: Vec<&Component> = components.iter().collect();
    sorted.sort_by(|a, b| component_order(a, b));
    let mut purl_uses: HashMap<&str, usize> = HashMap::new();
    for component in &sorted {
        *purl_uses.entry(component.purl.as_str()).or_default() += 1;
    }
    let mut taken = BTreeSet::new();
    sorted
        .into_iter()
        .map(|component| {
            let mut hasher = Sha256::new();
            for part in [&component.purl, &component.name, &component.version] {
                hasher.update(part.as_bytes());
                hasher.update(b"\n");
            }
            for location in &component.locations {
                hasher.update(location.layer.as_bytes());
                hasher.update(b"\n");
                hasher.update(location.path.as_bytes());
                hasher.update(b"\n");
            }
            let mut hash = hex::encode(&hasher.finalize()[..6]);
            // Identical components (same purl, name, version and locations)
            // are still two entries: keep their ids apart.
            let mut serial = 1;
            while !taken.insert(hash.clone()) {
                serial += 1;
                hash = format!("{}-{serial}", &hash[..12]);
            }
            let spdx_id = format!(
                "SPDXRef-Package-{}-{}-{hash}",
                component.ecosystem.purl_type(),
                spdx_id_chars(&component.name)
            );
            let bom_ref = if !component.purl.is_empty() && purl_uses.get(component.purl.as_str()) == Some(&1) {
                component.purl.clone()
            } else {
                format!("component-{hash}")
            };
            IdentifiedComponent {
                component,
                spdx_id,
                bom_ref,
            }
        })
        .collect()
}

/// `[A-Za-z0-9.-]` only (SPDX ids); anything else becomes `-`.
fn spdx_id_chars(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() || ch == '.' || ch == '-' {
                ch
            } else {
                '-'
            }
        })
        .collect();
    let cleaned = cleaned.trim_matches('-');
    if cleaned.is_empty() {
        "unnamed".to_string()
    } else {
        cleaned.chars().take(64).collect()
    }
}

/// The package URL of the image itself (`pkg:oci/<name>@<digest>?...`).
fn image_purl(image: &ImageRef) -> Option<String> {
    if !image.digest.contains(':') {
        return None;
    }
    let reference = image.reference.split('@').next().unwrap_or_default();
    let last_slash = reference.rfind('/').map_or(0, |index| index + 1);
    let (repository, tag) = match reference[last_slash..].rfind(':') {
        Some(colon) => (
            &reference[..last_slash + colon],
            Some(&reference[last_slash + colon + 1..]),
        ),
        None => (reference, None),
    };
    let name = repository.rsplit('/').next().unwrap_or_default().to_ascii_lowercase();
    if name.is_empty() {
        return None;
    }
    let mut purl = format!("pkg:oci/{}@{}", percent_encode(&name), percent_encode(&image.digest));
    let mut qualifiers = Vec::new();
    if repository.contains('/') {
        qualifiers.push(format!(
            "repository_url={}",
            percent_encode(&repository.to_ascii_lowercase())
        ));
    }
    if let Some(tag) = tag.filter(|tag| !tag.is_empty()) {
        qualifiers.push(format!("tag={}", percent_encode(tag)));
    }
    if !qualifiers.is_empty() {
        purl.push('?');
        purl.push_str(&qualifiers.join("&"));
    }
    Some(purl)
}

/// Percent-encodes everything but RFC 3986 unreserved characters and `/`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The OSV page of a vulnerability id.
fn osv_url(id: &str) -> String {
    format!("https://osv.dev/vulnerability/{}", percent_encode(id))
}

/// A CVSS version name from a vector string.
fn cvss_version(vector: &str) -> Option<&'static str> {
    if vector.starts_with("CVSS:4.0/") {
        Some("4.0")
    } else if vector.starts_with("CVSS:3.1/") {
        Some("3.1")
    } else if vector.starts_with("CVSS:3.0/") {
        Some("3.0")
    } else if vector.starts_with("AV:") || vector.starts_with("(AV:") {
        Some("2.0")
    } else {
        None
    }
}

/// An `f32` score as the decimal it was written as (`9.8`, not `9.80000019`).
fn score_value(score: f32) -> serde_json::Value {
    format!("{score}")
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(serde_json::Value::Null, serde_json::Value::Number)
}

/// Human byte counts, decimal units.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_is_parsed() {
        let text = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\n\
                    # comment\nID=debian\n";
        let os = OsInfo::from_os_release(text).expect("has an ID");
        assert_eq!(os.id, "debian");
        assert_eq!(os.name, "Debian GNU/Linux");
        assert_eq!(os.version.as_deref(), Some("12"));
        assert_eq!(os.pretty_name.as_deref(), Some("Debian GNU/Linux 12 (bookworm)"));
        assert_eq!(OsInfo::from_os_release("NAME=x\n"), None);
    }

    #[test]
    fn image_purls_carry_repository_and_tag() {
        let image = |reference: &str| ImageRef {
            reference: reference.into(),
            digest: "sha256:abc".into(),
        };
        assert_eq!(
            image_purl(&image("registry.example.com:5000/Team/App:1.2")).as_deref(),
            Some("pkg:oci/app@sha256%3Aabc?repository_url=registry.example.com%3A5000/team/app&tag=1.2")
        );
        assert_eq!(
            image_purl(&image("alpine")).as_deref(),
            Some("pkg:oci/alpine@sha256%3Aabc")
        );
        assert_eq!(
            image_purl(&image("localhost/x@sha256:abc")).as_deref(),
            Some("pkg:oci/x@sha256%3Aabc?repository_url=localhost/x")
        );
    }

    #[test]
    fn output_keeps_its_end_on_a_char_boundary() {
        assert_eq!(truncate_output("short", 10), ("short".to_string(), false));
        assert_eq!(truncate_output("abcdef", 3), ("def".to_string(), true));
        // 'é' is two bytes: a cut inside it moves forward.
        assert_eq!(truncate_output("aébc", 4), ("ébc".to_string(), true));
        assert_eq!(truncate_output("aébc", 3), ("bc".to_string(), true));
    }

    #[test]
    fn severity_lists_parse() {
        let filter = SeverityFilter::parse("Critical, high").expect("valid list");
        assert!(filter.allows(Severity::Critical) && filter.allows(Severity::High));
        assert!(!filter.allows(Severity::Medium));
        assert_eq!(filter.to_string(), "critical,high");
        assert!(SeverityFilter::parse("").expect("empty is all").allows(Severity::Low));
        assert!(
            matches!(SeverityFilter::parse("high,urgent"), Err(ReportError::UnknownSeverity(name)) if name == "urgent")
        );
    }

    #[test]
    fn uuids_are_version_4() {
        let uuid = random_uuid().expect("urandom readable");
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
        assert!(matches!(&uuid[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(uuid, random_uuid().expect("urandom readable"));
    }

    #[test]
    fn bytes_are_humanized() {
        assert_eq!(format_bytes(999), "999 B");
        assert_eq!(format_bytes(1_500), "1.5 kB");
        assert_eq!(format_bytes(12_345_678), "12.3 MB");
    }
}
