//! dpkg's version order (Debian Policy §5.6.12): `[epoch:]upstream[-revision]`;
//! epochs compare numerically, then upstream and revision by alternating
//! non-digit and digit runs, where `~` sorts before everything (even the end
//! of the string), letters before non-letters, and digit runs numerically.

use std::cmp::Ordering;

use super::VersionError;

const SCHEME: &str = "dpkg";

/// A parsed dpkg version borrowing from its string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DpkgVersion<'a> {
    pub epoch: u64,
    pub upstream: &'a str,
    /// Empty when the version has no Debian revision (compares like `0`).
    pub revision: &'a str,
}

/// Parses a dpkg version, rejecting what `dpkg` rejects: an empty string,
/// whitespace, a bad epoch, an empty upstream part, and characters outside
/// the allowed sets.
pub fn parse(version: &str) -> Result<DpkgVersion<'_>, VersionError> {
    let err = |reason: &str| VersionError::new(SCHEME, version, reason);
    if version.is_empty() {
        return Err(err("empty version"));
    }
    if version.chars().any(char::is_whitespace) {
        return Err(err("embedded whitespace"));
    }
    let (epoch, rest) = match version.split_once(':') {
        Some((epoch, rest)) => {
            if epoch.is_empty() || !epoch.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("epoch is not a number"));
            }
            let epoch: u64 = epoch.parse().map_err(|_| err("epoch is too large"))?;
            if epoch > i32::MAX as u64 {
                return Err(err("epoch is too large"));
            }
            (epoch, rest)
        }
        None => (0, version),
    };
    let (upstream, revision) = match rest.rsplit_once('-') {
        Some((upstream, revision)) => {
            if revision.is_empty() {
                return Err(err("revision number is empty"));
            }
            (upstream, revision)
        }
        None => (rest, ""),
    };
    if upstream.is_empty() {
        return Err(err("version number is empty"));
    }
    if let Some(c) = upstream
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || ".-+~:".contains(c)))
    {
        return Err(err(&format!("invalid character {c:?} in upstream version")));
    }
    if let Some(c) = revision
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || ".+~".contains(c)))
    {
        return Err(err(&format!("invalid character {c:?} in revision")));
    }
    Ok(DpkgVersion {
        epoch,
        upstream,
        revision,
    })
}

/// Compares two dpkg versions.
pub fn compare(a: &str, b: &str) -> Result<Ordering, VersionError> {
    let a = parse(a)?;
    let b = parse(b)?;
    Ok(compare_parsed(&a, &b))
}

/// Compares two parsed dpkg versions.
pub fn compare_parsed(a: &DpkgVersion<'_>, b: &DpkgVersion<'_>) -> Ordering {
    a.epoch
        .cmp(&b.epoch)
        .then_with(|| compare_part(a.upstream, b.upstream))
        .then_with(|| compare_part(a.revision, b.revision))
}

/// The weight of one character in a non-digit run; `None` is the end of the
/// run (a digit or the end of the string), which sorts after `~` only.
fn weight(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

/// Compares an upstream version or a revision (dpkg's `verrevcmp`).
fn compare_part(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // The non-digit run, character by character.
        while a.get(i).is_some_and(|c| !c.is_ascii_digit()) || b.get(j).is_some_and(|c| !c.is_ascii_digit()) {
            let (wa, wb) = (weight(a.get(i).copied()), weight(b.get(j).copied()));
            if wa != wb {
                return wa.cmp(&wb);
            }
            i += 1;
            j += 1;
        }
        // The digit run, numerically: skip leading zeros, then the longer run
        // is larger, else the first differing digit decides.
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_difference = Ordering::Equal;
        while a.get(i).is_some_and(u8::is_ascii_digit) && b.get(j).is_some_and(u8::is_ascii_digit) {
            if first_difference == Ordering::Equal {
                first_difference = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if a.get(i).is_some_and(u8::is_ascii_digit) {
            return Ordering::Greater;
        }
        if b.get(j).is_some_and(u8::is_ascii_digit) {
            return Ordering::Less;
        }
        if first_difference != Ordering::Equal {
            return first_difference;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(a: &str, b: &str, expected: Ordering) {
        assert_eq!(compare(a, b).unwrap(), expected, "{a} vs {b}");
        assert_eq!(compare(b, a).unwrap(), expected.reverse(), "{b} vs {a}");
    }

    #[test]
    fn policy_examples() {
        check("1.0~rc1", "1.0", Ordering::Less);
        check("1.0~~", "1.0~~a", Ordering::Less);
        check("1.0~~a", "1.0~", Ordering::Less);
        check("1.0~", "1.0", Ordering::Less);
        check("1.0", "1.0a", Ordering::Less);
        check("1.0a", "1.0+", Ordering::Less);
        check("1:0.1", "2.0", Ordering::Greater);
        check("1.0", "1.0-0", Ordering::Equal);
        check("1.00", "1.0", Ordering::Equal);
        check("1.2.10", "1.2.9", Ordering::Greater);
        check("2.36-9+deb12u3", "2.36-9+deb12u10", Ordering::Less);
        check("1.2-3-4", "1.2-3", Ordering::Greater);
        check("0:1.0", "1.0", Ordering::Equal);
    }

    #[test]
    fn invalid_versions_are_named() {
        for bad in ["", "a b", "x:1.0", "1.0-", ":1.0", "1.0_1", "1:"] {
            let error = compare(bad, "1.0").unwrap_err();
            assert_eq!(error.scheme, "dpkg");
            assert_eq!(error.version, bad);
        }
    }
}
