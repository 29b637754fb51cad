//! Go module versions (`golang.org/x/mod/semver`): SemVer with a `v` prefix,
//! `vMAJOR` and `vMAJOR.MINOR` as shorthands, build metadata ignored (so
//! `+incompatible` does not change the order). Pseudo-versions
//! (`v0.0.0-20191109021931-daa7c04131f5`, `v1.2.4-0.2019...-hash`) are
//! pre-releases and order correctly by their timestamp. OSV's Go records
//! write versions without the `v`; both forms are accepted.

use std::cmp::Ordering;

use super::VersionError;

const SCHEME: &str = "go";

fn parse(version: &str) -> Result<::semver::Version, VersionError> {
    let err = |reason: String| VersionError::new(SCHEME, version, reason);
    let bare = version.strip_prefix('v').unwrap_or(version);
    let core_end = bare.find(['-', '+']).unwrap_or(bare.len());
    let (core, tail) = bare.split_at(core_end);
    // Go accepts `v1` and `v1.2` only without a pre-release or build suffix.
    let full = match core.split('.').count() {
        1 | 2 if !tail.is_empty() => return Err(err("shortened version with a suffix".into())),
        1 => format!("{core}.0.0"),
        2 => format!("{core}.0"),
        _ => bare.to_owned(),
    };
    ::semver::Version::parse(&full).map_err(|e| err(e.to_string()))
}

/// Compares two Go module versions.
pub fn compare(a: &str, b: &str) -> Result<Ordering, VersionError> {
    Ok(parse(a)?.cmp_precedence(&parse(b)?))
}

/// Whether `version` is a pseudo-version (a commit without a tag).
pub fn is_pseudo_version(version: &str) -> bool {
    let Ok(parsed) = parse(version) else { return false };
    let pre = parsed.pre.as_str();
    // The last dot- or dash-separated part of the pre-release is
    // `yyyymmddhhmmss-abcdefabcdef`.
    let Some((stamp_part, hash)) = pre.rsplit_once('-') else {
        return false;
    };
    let stamp = stamp_part.rsplit('.').next().unwrap_or(stamp_part);
    stamp.len() == 14
        && stamp.bytes().all(|b| b.is_ascii_digit())
        && hash.len() == 12
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_order() {
        let ordered = [
            "v0.0.0-20191109021931-daa7c04131f5",
            "v0.0.0-20200101000000-aaaaaaaaaaaa",
            "v0.1.0",
            "v1.2.3",
            "v1.2.4-0.20200101000000-bbbbbbbbbbbb",
            "v1.2.4-pre",
            "v1.2.4",
            "v2.0.0+incompatible",
            "v2.1.0",
        ];
        for pair in ordered.windows(2) {
            assert_eq!(compare(pair[0], pair[1]).unwrap(), Ordering::Less, "{pair:?}");
        }
        assert_eq!(compare("v2.0.0+incompatible", "v2.0.0").unwrap(), Ordering::Equal);
        assert_eq!(compare("v1", "v1.0.0").unwrap(), Ordering::Equal);
        assert_eq!(compare("v1.2", "1.2.0").unwrap(), Ordering::Equal);
        assert!(compare("(devel)", "v1.0.0").is_err());
        assert!(compare("v1.2-pre", "v1.0.0").is_err());
        assert!(is_pseudo_version("v0.0.0-20191109021931-daa7c04131f5"));
        assert!(is_pseudo_version("v1.2.4-0.20200101000000-bbbbbbbbbbbb"));
        assert!(!is_pseudo_version("v1.2.4-pre"));
    }
}
