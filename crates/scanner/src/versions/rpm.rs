//! rpm's version order: `[epoch:]version[-release]`, each part compared with
//! `rpmvercmp`: alphanumeric runs separated by anything else, digit runs
//! numerically and greater than letter runs, `~` before everything (even the
//! end), `^` after the end but before anything else.

use std::cmp::Ordering;

use super::VersionError;

const SCHEME: &str = "rpm";

/// A parsed `[epoch:]version[-release]` borrowing from its string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evr<'a> {
    pub epoch: u64,
    pub version: &'a str,
    pub release: Option<&'a str>,
}

/// Parses an EVR string.
pub fn parse(evr: &str) -> Result<Evr<'_>, VersionError> {
    let err = |reason: &str| VersionError::new(SCHEME, evr, reason);
    if evr.is_empty() {
        return Err(err("empty version"));
    }
    if evr.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(err("whitespace or control character"));
    }
    let (epoch, rest) = match evr.split_once(':') {
        Some((epoch, rest)) if !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_digit()) => {
            (epoch.parse().map_err(|_| err("epoch is too large"))?, rest)
        }
        Some(_) => return Err(err("epoch is not a number")),
        None => (0, evr),
    };
    let (version, release) = match rest.rsplit_once('-') {
        Some((version, release)) => (version, Some(release)),
        None => (rest, None),
    };
    if version.is_empty() {
        return Err(err("empty version part"));
    }
    if release == Some("") {
        return Err(err("empty release part"));
    }
    Ok(Evr {
        epoch,
        version,
        release,
    })
}

/// Compares two EVR strings as `rpm.vercmp` does: a missing epoch is 0, a
/// missing release compares as an empty one (lower than any release).
pub fn compare(a: &str, b: &str) -> Result<Ordering, VersionError> {
    let a = parse(a)?;
    let b = parse(b)?;
    Ok(a.epoch
        .cmp(&b.epoch)
        .then_with(|| rpmvercmp(a.version, b.version))
        .then_with(|| rpmvercmp(a.release.unwrap_or(""), b.release.unwrap_or(""))))
}

/// rpm's segment comparison of one version or release string.
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let is_separator = |c: &u8| !c.is_ascii_alphanumeric() && *c != b'~' && *c != b'^';
    loop {
        while a.get(i).is_some_and(is_separator) {
            i += 1;
        }
        while b.get(j).is_some_and(is_separator) {
            j += 1;
        }
        let (ca, cb) = (a.get(i).copied(), b.get(j).copied());
        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        if ca == Some(b'^') || cb == Some(b'^') {
            if ca.is_none() {
                return Ordering::Less;
            }
            if cb.is_none() {
                return Ordering::Greater;
            }
            if ca != Some(b'^') {
                return Ordering::Greater;
            }
            if cb != Some(b'^') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        let (Some(first_a), Some(_)) = (ca, cb) else { break };
        let numeric = first_a.is_ascii_digit();
        let in_run = |c: &u8| {
            if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        let start_a = i;
        while a.get(i).is_some_and(in_run) {
            i += 1;
        }
        let start_b = j;
        while b.get(j).is_some_and(in_run) {
            j += 1;
        }
        if start_b == j {
            // Different kinds of run: a number is newer than letters.
            return if numeric { Ordering::Greater } else { Ordering::Less };
        }
        let (mut run_a, mut run_b) = (&a[start_a..i], &b[start_b..j]);
        if numeric {
            while run_a.first() == Some(&b'0') {
                run_a = &run_a[1..];
            }
            while run_b.first() == Some(&b'0') {
                run_b = &run_b[1..];
            }
            let by_length = run_a.len().cmp(&run_b.len());
            if by_length != Ordering::Equal {
                return by_length;
            }
        }
        let by_bytes = run_a.cmp(run_b);
        if by_bytes != Ordering::Equal {
            return by_bytes;
        }
    }
    match (i < a.len(), j < b.len()) {
        (false, false) => Ordering::Equal,
        (true, _) => Ordering::Greater,
        (false, true) => Ordering::Less,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(a: &str, b: &str, expected: Ordering) {
        assert_eq!(compare(a, b).unwrap(), expected, "{a} vs {b}");
        assert_eq!(compare(b, a).unwrap(), expected.reverse(), "{b} vs {a}");
    }

    #[test]
    fn rpmvercmp_cases() {
        check("1.0", "1.0", Ordering::Equal);
        check("1.0", "2.0", Ordering::Less);
        check("2.0.1", "2.0", Ordering::Greater);
        check("2.0.1a", "2.0.1", Ordering::Greater);
        check("5.5p1", "5.5p2", Ordering::Less);
        check("5.5p10", "5.5p1", Ordering::Greater);
        check("10xyz", "10.1xyz", Ordering::Less);
        check("xyz10", "xyz10.1", Ordering::Less);
        check("1.0aa", "1.0a", Ordering::Greater);
        check("a", "1", Ordering::Less);
        check("1.0010", "1.9", Ordering::Greater);
        check("1.05", "1.5", Ordering::Equal);
        check("2_0", "2.0", Ordering::Equal);
        check("2.0", "2_0", Ordering::Equal);
        check("1.0~rc1", "1.0", Ordering::Less);
        check("1.0~rc1", "1.0~rc2", Ordering::Less);
        check("1.0~rc1~git123", "1.0~rc1", Ordering::Less);
        check("1.0^", "1.0", Ordering::Greater);
        check("1.0^git1", "1.0", Ordering::Greater);
        check("1.0^git1", "1.01", Ordering::Less);
        check("1.0^git1", "1.0^git2", Ordering::Less);
        check("1.0^git1~pre", "1.0^git1", Ordering::Less);
        check("1.0^20160101^git1", "1.0^20160101", Ordering::Greater);
        check("1.0~rc1^git1", "1.0~rc1", Ordering::Greater);
        check("1.0~rc1^git1", "1.0", Ordering::Less);
    }

    #[test]
    fn epoch_version_release() {
        check("1:1.0-1", "2.0-1", Ordering::Greater);
        check("0:1.0-1.el9", "1.0-1.el9", Ordering::Equal);
        check("1.0-2.el9", "1.0-10.el9", Ordering::Less);
        check("3.0.7-27.el9", "3.0.7-24.el9_3.4", Ordering::Greater);
        check("1.0", "1.0-1", Ordering::Less);
        assert!(compare("x:1.0", "1.0").is_err());
        assert!(compare("1.0-", "1.0").is_err());
    }
}
