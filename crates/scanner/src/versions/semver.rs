//! SemVer 2.0 precedence (crates.io, npm, and OSV `SEMVER` ranges): major,
//! minor, patch numerically, a pre-release sorts before its release and its
//! identifiers compare numerically or in ASCII order, build metadata is
//! ignored. npm tolerates a leading `v` or `=` and surrounding whitespace.

use std::cmp::Ordering;

use super::VersionError;

/// Parses a strict SemVer 2.0 version.
pub fn parse(scheme: &'static str, version: &str) -> Result<::semver::Version, VersionError> {
    ::semver::Version::parse(version).map_err(|e| VersionError::new(scheme, version, e.to_string()))
}

/// Compares two strict SemVer versions by precedence (crates.io).
pub fn compare(a: &str, b: &str) -> Result<Ordering, VersionError> {
    Ok(parse("semver", a)?.cmp_precedence(&parse("semver", b)?))
}

/// npm's loose form: whitespace, then an optional `=` or `v`.
fn parse_npm(version: &str) -> Result<::semver::Version, VersionError> {
    let trimmed = version.trim();
    let trimmed = trimmed.strip_prefix('=').unwrap_or(trimmed).trim_start();
    let trimmed = trimmed.strip_prefix(['v', 'V']).unwrap_or(trimmed);
    ::semver::Version::parse(trimmed).map_err(|e| VersionError::new("npm", version, e.to_string()))
}

/// Compares two npm versions.
pub fn compare_npm(a: &str, b: &str) -> Result<Ordering, VersionError> {
    Ok(parse_npm(a)?.cmp_precedence(&parse_npm(b)?))
}

/// The order OSV `SEMVER` ranges use, whatever the ecosystem: SemVer
/// precedence, tolerating a leading `v` (Go writes one) and the shortened
/// `1` / `1.2` forms some records carry (read as `1.0.0` / `1.2.0`).
pub fn compare_osv(a: &str, b: &str) -> Result<Ordering, VersionError> {
    Ok(parse_lenient(a)?.cmp_precedence(&parse_lenient(b)?))
}

fn parse_lenient(version: &str) -> Result<::semver::Version, VersionError> {
    let trimmed = version.strip_prefix('v').unwrap_or(version);
    let strict_error = match ::semver::Version::parse(trimmed) {
        Ok(parsed) => return Ok(parsed),
        Err(e) => VersionError::new("semver", version, e.to_string()),
    };
    // Complete a `MAJOR` or `MAJOR.MINOR` core before any `-` or `+`.
    let core_end = trimmed.find(['-', '+']).unwrap_or(trimmed.len());
    let (core, tail) = trimmed.split_at(core_end);
    let padded = match core.split('.').count() {
        1 => format!("{core}.0.0{tail}"),
        2 => format!("{core}.0{tail}"),
        _ => return Err(strict_error),
    };
    ::semver::Version::parse(&padded).map_err(|_| strict_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence() {
        let ordered = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.1.0",
            "2.0.0",
        ];
        for pair in ordered.windows(2) {
            assert_eq!(compare(pair[0], pair[1]).unwrap(), Ordering::Less, "{pair:?}");
        }
        assert_eq!(compare("1.0.0+build.1", "1.0.0+build.2").unwrap(), Ordering::Equal);
        assert!(compare("1.0", "1.0.0").is_err());
        assert!(compare("01.0.0", "1.0.0").is_err());
    }

    #[test]
    fn npm_is_loose_about_prefixes() {
        assert_eq!(compare_npm("v1.2.3", "1.2.3").unwrap(), Ordering::Equal);
        assert_eq!(compare_npm("=1.2.3", " 1.2.4 ").unwrap(), Ordering::Less);
        let error = compare_npm("1.2", "1.2.3").unwrap_err();
        assert_eq!((error.scheme, error.version.as_str()), ("npm", "1.2"));
    }

    #[test]
    fn osv_semver_pads_short_versions() {
        assert_eq!(compare_osv("1", "1.0.0").unwrap(), Ordering::Equal);
        assert_eq!(compare_osv("1.2-rc.1", "1.2.0").unwrap(), Ordering::Less);
        assert_eq!(compare_osv("v1.2.3", "1.2.3").unwrap(), Ordering::Equal);
        assert!(compare_osv("1.2.3.4", "1.0.0").is_err());
    }
}
