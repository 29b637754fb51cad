//! The scanner's shared vocabulary: what every module produces or consumes.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One image layer as the scanner sees it: its snapshot directory in
/// overlayfs lower-dir form (whiteouts are 0/0 character devices, opaque
/// directories carry `trusted.overlay.opaque=y`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The layer blob's digest (`sha256:...`) as the manifest names it.
    pub digest: String,
    /// The uncompressed layer's digest (`sha256:...`), the cache key.
    pub diff_id: String,
    /// The snapshot directory.
    pub dir: PathBuf,
    /// The compressed size from the manifest, when known.
    pub size: Option<u64>,
}

/// A package ecosystem, named as OSV names it where OSV has a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Ecosystem {
    /// dpkg packages (OSV: "Debian"; Ubuntu uses the same version order).
    Debian,
    /// apk packages (OSV: "Alpine").
    Alpine,
    /// rpm packages (OSV: "Red Hat", "Rocky Linux", ... all use rpm order).
    Rpm,
    #[serde(rename = "crates.io")]
    Cargo,
    PyPI,
    #[serde(rename = "npm")]
    Npm,
    Go,
    Maven,
    RubyGems,
}

impl Ecosystem {
    /// The name OSV records use in `affected[].package.ecosystem` (for the
    /// OS ecosystems, the prefix before any `:release` suffix).
    pub fn osv_name(self) -> &'static str {
        match self {
            Ecosystem::Debian => "Debian",
            Ecosystem::Alpine => "Alpine",
            Ecosystem::Rpm => "Red Hat",
            Ecosystem::Cargo => "crates.io",
            Ecosystem::PyPI => "PyPI",
            Ecosystem::Npm => "npm",
            Ecosystem::Go => "Go",
            Ecosystem::Maven => "Maven",
            Ecosystem::RubyGems => "RubyGems",
        }
    }

    /// The package-url type (`pkg:<type>/...`).
    pub fn purl_type(self) -> &'static str {
        match self {
            Ecosystem::Debian => "deb",
            Ecosystem::Alpine => "apk",
            Ecosystem::Rpm => "rpm",
            Ecosystem::Cargo => "cargo",
            Ecosystem::PyPI => "pypi",
            Ecosystem::Npm => "npm",
            Ecosystem::Go => "golang",
            Ecosystem::Maven => "maven",
            Ecosystem::RubyGems => "gem",
        }
    }
}

/// Where a component was found.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Location {
    /// Digest of the layer that holds the file.
    pub layer: String,
    /// Absolute path inside the image (`/var/lib/dpkg/status`).
    pub path: String,
}

/// How permissive a license is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LicenseClass {
    Permissive,
    WeakCopyleft,
    StrongCopyleft,
    Unknown,
}

/// One package found in an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    pub name: String,
    pub version: String,
    pub ecosystem: Ecosystem,
    /// Package URL (https://github.com/package-url/purl-spec).
    pub purl: String,
    /// CPU architecture when the package has one (dpkg/apk/rpm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// Source package when it differs from `name` (dpkg `Source:`, rpm
    /// SOURCERPM, apk origin): OSV's Debian records are keyed by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The license as a normalized SPDX expression, `None` when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// The license text as the package declared it, before normalization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_declared: Option<String>,
    pub license_class: LicenseClass,
    pub locations: Vec<Location>,
}

/// Severity, ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Unknown,
    Low,
    Medium,
    High,
    Critical,
}

/// A known vulnerability that affects a component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vulnerability {
    /// The OSV id (`DSA-5000-1`, `GHSA-...`, `CVE-...`).
    pub id: String,
    /// Other ids of the same vulnerability (OSV `aliases`).
    #[serde(default)]
    pub aliases: Vec<String>,
    pub summary: String,
    pub severity: Severity,
    /// The CVSS base score the severity came from, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cvss_score: Option<f32>,
    /// The CVSS vector string, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cvss_vector: Option<String>,
    /// Component name, version, ecosystem and purl of what is affected.
    pub package: String,
    pub installed_version: String,
    pub ecosystem: Ecosystem,
    pub purl: String,
    /// The first fixed version, when one exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_version: Option<String>,
    /// Set when an ignore rule matched: the finding is kept but not counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
}

/// A finding from a check (a WASM plugin or a built-in one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckFinding {
    /// The check that produced it (`secrets`, `file-permissions`, ...).
    pub check: String,
    /// A stable rule id within the check (`aws-access-key`, `setuid`, ...).
    pub rule: String,
    pub severity: Severity,
    pub message: String,
    /// The file concerned, when the finding is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// A component whose license a policy rule forbids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LicenseViolation {
    /// The component's name, version and purl.
    pub component: String,
    pub version: String,
    pub purl: String,
    /// The license (SPDX expression, or the text as declared) that matched.
    pub license: String,
    /// The policy rule that forbids it (`deny:GPL-3.0-only`, `class:strong-copyleft`, ...).
    pub rule: String,
}

/// A check (WASM plugin or built-in) that could not finish: it trapped,
/// ran out of fuel or time, or returned garbage.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CheckFailure {
    pub check: String,
    pub reason: String,
}

/// The outcome of running the image's functional test command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionalTest {
    pub command: Vec<String>,
    pub passed: bool,
    /// `None` when the process was killed by a signal or timed out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Combined output, truncated to its last bytes when long.
    pub output: String,
    /// `output` lost its beginning.
    #[serde(default)]
    pub output_truncated: bool,
    pub duration_ms: u64,
}
