//! Version orders, one per packaging scheme. Vulnerability matching asks
//! "is the installed version inside this range", which is only as good as the
//! order it uses: each ecosystem's order lives in its own file and follows
//! that ecosystem's reference implementation (dpkg, apk-tools, rpm, the SemVer
//! specification, PEP 440, Maven's `ComparableVersion`, Go's `x/mod/semver`,
//! RubyGems' `Gem::Version`).
//!
//! **Architecture Invariant**: these functions are pure and total over valid
//! versions; a string that the scheme rejects gives a [`VersionError`] naming
//! the version and the scheme, never a guessed order.

use std::cmp::Ordering;

use crate::types::Ecosystem;

pub mod apk;
pub mod dpkg;
pub mod golang;
pub mod maven;
pub mod pep440;
pub mod rpm;
pub mod rubygems;
pub mod semver;

/// A version string that a scheme does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {scheme} version {version:?}: {reason}")]
pub struct VersionError {
    /// The scheme's name (`dpkg`, `apk`, `rpm`, `semver`, `npm`, `pep440`, `maven`, `go`, `rubygems`).
    pub scheme: &'static str,
    pub version: String,
    pub reason: String,
}

impl VersionError {
    pub(crate) fn new(scheme: &'static str, version: &str, reason: impl Into<String>) -> Self {
        VersionError {
            scheme,
            version: version.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Compares two versions by the order of `ecosystem`'s packaging scheme.
pub fn compare(ecosystem: Ecosystem, a: &str, b: &str) -> Result<Ordering, VersionError> {
    match ecosystem {
        Ecosystem::Debian => dpkg::compare(a, b),
        Ecosystem::Alpine => apk::compare(a, b),
        Ecosystem::Rpm => rpm::compare(a, b),
        Ecosystem::Cargo => semver::compare(a, b),
        Ecosystem::Npm => semver::compare_npm(a, b),
        Ecosystem::PyPI => pep440::compare(a, b),
        Ecosystem::Maven => maven::compare(a, b),
        Ecosystem::Go => golang::compare(a, b),
        Ecosystem::RubyGems => rubygems::compare(a, b),
    }
}

/// Checks that `version` is valid in `ecosystem`'s scheme.
pub fn validate(ecosystem: Ecosystem, version: &str) -> Result<(), VersionError> {
    compare(ecosystem, version, version).map(|_| ())
}
