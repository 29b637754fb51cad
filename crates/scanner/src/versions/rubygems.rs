//! RubyGems' version order (`Gem::Version`): the version is split into
//! numeric and alphabetic segments (`1.0.a.2` → `1, 0, "a", 2`; `-` means
//! `.pre.`); any letter makes a prerelease, which sorts before the release;
//! trailing zeros of the release and prerelease parts are insignificant;
//! a string segment sorts before a number, strings compare bytewise.

use std::cmp::Ordering;

use super::VersionError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Number(u128),
    Text(String),
}

fn parse(version: &str) -> Result<Vec<Segment>, VersionError> {
    let err = |reason: &str| VersionError::new("rubygems", version, reason);
    let trimmed = version.trim();
    if trimmed.is_empty() {
        // Gem::Version treats a blank version as "0".
        return Ok(Vec::new());
    }
    // ^[0-9]+(\.[0-9a-zA-Z]+)*(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$
    let (release, prerelease) = match trimmed.split_once('-') {
        Some((release, prerelease)) => (release, Some(prerelease)),
        None => (trimmed, None),
    };
    let mut parts = release.split('.');
    if !parts
        .next()
        .is_some_and(|first| !first.is_empty() && first.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(err("must start with a number"));
    }
    if !parts.all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric())) {
        return Err(err("malformed segment"));
    }
    if let Some(pre) = prerelease {
        if !pre
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        {
            return Err(err("malformed prerelease"));
        }
    }
    let canonical = match prerelease {
        Some(pre) => format!("{release}.pre.{}", pre.replace('-', ".pre.")),
        None => release.to_owned(),
    };
    // Scan runs of digits and runs of letters, ignoring everything else.
    let mut segments = Vec::new();
    let bytes = canonical.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        if bytes[i].is_ascii_digit() {
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let number = canonical[start..i].parse().map_err(|_| err("number too large"))?;
            segments.push(Segment::Number(number));
        } else if bytes[i].is_ascii_alphabetic() {
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            segments.push(Segment::Text(canonical[start..i].to_owned()));
        } else {
            i += 1;
        }
    }
    Ok(canonical_segments(segments))
}

/// Drops trailing zeros from the numeric part and from the part starting at
/// the first string segment, separately.
fn canonical_segments(segments: Vec<Segment>) -> Vec<Segment> {
    let split = segments
        .iter()
        .position(|s| matches!(s, Segment::Text(_)))
        .unwrap_or(segments.len());
    let mut numeric = segments[..split].to_vec();
    let mut rest = segments[split..].to_vec();
    for part in [&mut numeric, &mut rest] {
        while part.last() == Some(&Segment::Number(0)) {
            part.pop();
        }
    }
    numeric.extend(rest);
    numeric
}

/// Compares two RubyGems versions.
pub fn compare(a: &str, b: &str) -> Result<Ordering, VersionError> {
    let (a, b) = (parse(a)?, parse(b)?);
    let zero = Segment::Number(0);
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (a.get(i).unwrap_or(&zero), b.get(i).unwrap_or(&zero));
        let order = match (x, y) {
            (Segment::Number(x), Segment::Number(y)) => x.cmp(y),
            (Segment::Text(x), Segment::Text(y)) => x.as_bytes().cmp(y.as_bytes()),
            (Segment::Text(_), Segment::Number(_)) => Ordering::Less,
            (Segment::Number(_), Segment::Text(_)) => Ordering::Greater,
        };
        if order != Ordering::Equal {
            return Ok(order);
        }
    }
    Ok(Ordering::Equal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gem_version_order() {
        let ordered = [
            "0.9",
            "1.0.0.a",
            "1.0.0.a1",
            "1.0.0.a2",
            "1.0.0.a10",
            "1.0.0.b1",
            "1.0.0.pre",
            "1.0.0.rc1",
            "1.0.0",
            "1.0.1",
            "1.1.a",
            "1.1",
            "1.10",
            "2",
        ];
        for pair in ordered.windows(2) {
            assert_eq!(compare(pair[0], pair[1]).unwrap(), Ordering::Less, "{pair:?}");
            assert_eq!(compare(pair[1], pair[0]).unwrap(), Ordering::Greater, "{pair:?}");
        }
        assert_eq!(compare("1.0", "1").unwrap(), Ordering::Equal);
        assert_eq!(compare("1.0.a", "1.a").unwrap(), Ordering::Equal);
        assert_eq!(compare("1.0-beta", "1.0.pre.beta").unwrap(), Ordering::Equal);
        assert_eq!(compare("1.0.b1", "1.0.b.1").unwrap(), Ordering::Equal);
        assert_eq!(compare("1.0-rc1", "1.0").unwrap(), Ordering::Less);
        assert!(compare("junk", "1").is_err());
        assert!(compare("1..2", "1").is_err());
    }
}
