//! PEP 440 versions (PyPI): `[N!]N(.N)*[{a|b|rc}N][.postN][.devN][+local]`,
//! with the normalizations PEP 440 allows (case, `alpha`/`c`/`pre`/`preview`
//! spellings, `-`/`_` separators, implicit numbers, a leading `v`). Parsing
//! and ordering come from `pep440_rs`, which implements the specification's
//! order: `1.0.dev1 < 1.0a1.dev1 < 1.0a1 < 1.0a1.post1 < 1.0b1 < 1.0rc1 <
//! 1.0 < 1.0+local < 1.0.post1.dev1 < 1.0.post1`.

use std::cmp::Ordering;
use std::str::FromStr;

use pep440_rs::Version;

use super::VersionError;

/// Parses (and normalizes) a PEP 440 version.
pub fn parse(version: &str) -> Result<Version, VersionError> {
    Version::from_str(version.trim()).map_err(|e| VersionError::new("pep440", version, e.to_string()))
}

/// The normalized form of a version (`1.0-ALPHA.1` → `1.0a1`).
pub fn normalize(version: &str) -> Result<String, VersionError> {
    Ok(parse(version)?.to_string())
}

/// Compares two PEP 440 versions.
pub fn compare(a: &str, b: &str) -> Result<Ordering, VersionError> {
    Ok(parse(a)?.cmp(&parse(b)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specification_order() {
        let ordered = [
            "1.0.dev456",
            "1.0a1",
            "1.0a2.dev456",
            "1.0a12.dev456",
            "1.0a12",
            "1.0b1.dev456",
            "1.0b2",
            "1.0b2.post345.dev456",
            "1.0b2.post345",
            "1.0rc1.dev456",
            "1.0rc1",
            "1.0",
            "1.0+abc.5",
            "1.0+abc.7",
            "1.0+5",
            "1.0.post456.dev34",
            "1.0.post456",
            "1.0.15",
            "1.1.dev1",
            "1!0.1",
        ];
        for pair in ordered.windows(2) {
            assert_eq!(compare(pair[0], pair[1]).unwrap(), Ordering::Less, "{pair:?}");
        }
    }

    #[test]
    fn normalization() {
        assert_eq!(compare("1.0", "1.0.0").unwrap(), Ordering::Equal);
        assert_eq!(compare("1.0-ALPHA.1", "1.0a1").unwrap(), Ordering::Equal);
        assert_eq!(compare("1.0c1", "1.0rc1").unwrap(), Ordering::Equal);
        assert_eq!(compare("1.0-1", "1.0.post1").unwrap(), Ordering::Equal);
        assert_eq!(compare("v1.0", "1.0").unwrap(), Ordering::Equal);
        assert_eq!(compare("0!1.0", "1.0").unwrap(), Ordering::Equal);
        assert_eq!(normalize("1.0-ALPHA.1").unwrap(), "1.0a1");
        assert_eq!(normalize("1.0_post_2").unwrap(), "1.0.post2");
        let error = compare("not-a-version", "1.0").unwrap_err();
        assert_eq!((error.scheme, error.version.as_str()), ("pep440", "not-a-version"));
    }
}
