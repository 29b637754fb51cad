//! Alpine's apk version order (apk-tools 2.12 and later):
//! `digit{.digit}...{letter}{_suffix{#}}...{~hash}{-r#}`. Suffixes `_alpha
//! _beta _pre _rc` sort before the bare version, `_cvs _svn _git _hg _p`
//! after it; a single lowercase letter may follow the digits; `-rN` is the
//! package revision. A dotted component with a leading zero is compared as a
//! string (`1.01 < 1.1`, `1.001 < 1.01`); two `~hash` commit parts compare
//! equal whatever their hashes.

use std::cmp::Ordering;

use super::VersionError;

const SCHEME: &str = "apk";
const PRE_SUFFIXES: [&str; 4] = ["alpha", "beta", "pre", "rc"];
const POST_SUFFIXES: [&str; 5] = ["cvs", "svn", "git", "hg", "p"];

/// Token kinds in the order apk-tools ranks them: when two versions agree up
/// to the point where their next tokens differ in kind, the one whose next
/// token ranks lower is the greater version (more components), except before
/// a pre-release suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    InitialDigits,
    Digits,
    Letter,
    Suffix,
    SuffixNumber,
    CommitHash,
    RevisionNumber,
    End,
}

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    kind: Kind,
    text: &'a str,
}

fn suffix_value(name: &str) -> i32 {
    if let Some(i) = PRE_SUFFIXES.iter().position(|p| *p == name) {
        i as i32 - PRE_SUFFIXES.len() as i32
    } else {
        POST_SUFFIXES
            .iter()
            .position(|p| *p == name)
            .map_or(i32::MAX, |i| i as i32 + 1)
    }
}

fn tokenize(version: &str) -> Result<Vec<Token<'_>>, VersionError> {
    let err = |reason: String| VersionError::new(SCHEME, version, reason);
    let s = version.as_bytes();
    let run = |from: usize, pred: fn(&u8) -> bool| {
        let mut end = from;
        while s.get(end).is_some_and(pred) {
            end += 1;
        }
        end
    };
    let mut tokens = Vec::new();
    let mut end = run(0, u8::is_ascii_digit);
    if end == 0 {
        return Err(err("does not start with a digit".into()));
    }
    tokens.push(Token {
        kind: Kind::InitialDigits,
        text: &version[..end],
    });
    let mut kind = Kind::InitialDigits;
    let mut i = end;
    while i < s.len() {
        let c = s[i];
        let (next, start) = match c {
            b'a'..=b'z' if kind <= Kind::Digits => (Kind::Letter, i),
            b'.' if kind <= Kind::Digits => (Kind::Digits, i + 1),
            b'_' if kind <= Kind::SuffixNumber => (Kind::Suffix, i + 1),
            b'~' if kind < Kind::CommitHash => (Kind::CommitHash, i + 1),
            b'-' if kind < Kind::RevisionNumber && s.get(i + 1) == Some(&b'r') => (Kind::RevisionNumber, i + 2),
            b'0'..=b'9' if kind == Kind::Suffix => (Kind::SuffixNumber, i),
            _ => return Err(err(format!("unexpected {:?} at byte {i}", char::from(c)))),
        };
        end = match next {
            Kind::Letter => start + 1,
            Kind::Suffix => run(start, u8::is_ascii_lowercase),
            Kind::CommitHash => run(start, |c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
            _ => run(start, u8::is_ascii_digit),
        };
        if end == start {
            return Err(err(format!("empty {next:?} at byte {start}")));
        }
        let text = &version[start..end];
        if next == Kind::Suffix && suffix_value(text) == i32::MAX {
            return Err(err(format!("unknown suffix _{text}")));
        }
        tokens.push(Token { kind: next, text });
        kind = next;
        i = end;
    }
    Ok(tokens)
}

fn compare_numbers(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn compare_tokens(kind: Kind, a: &str, b: &str) -> Ordering {
    match kind {
        Kind::Digits if a.starts_with('0') || b.starts_with('0') => a.cmp(b),
        Kind::InitialDigits | Kind::Digits | Kind::SuffixNumber | Kind::RevisionNumber => compare_numbers(a, b),
        Kind::Letter => a.cmp(b),
        Kind::Suffix => suffix_value(a).cmp(&suffix_value(b)),
        Kind::CommitHash | Kind::End => Ordering::Equal,
    }
}

/// Checks that `version` is a valid apk version.
pub fn validate(version: &str) -> Result<(), VersionError> {
    tokenize(version).map(|_| ())
}

/// Compares two apk versions.
pub fn compare(a: &str, b: &str) -> Result<Ordering, VersionError> {
    let ta = tokenize(a)?;
    let tb = tokenize(b)?;
    let kind_at = |tokens: &[Token<'_>], i: usize| tokens.get(i).map_or(Kind::End, |t| t.kind);
    let mut i = 0;
    while kind_at(&ta, i) == kind_at(&tb, i) && kind_at(&ta, i) != Kind::End {
        let order = compare_tokens(ta[i].kind, ta[i].text, tb[i].text);
        if order != Ordering::Equal {
            return Ok(order);
        }
        i += 1;
    }
    let (ka, kb) = (kind_at(&ta, i), kind_at(&tb, i));
    if ka == kb {
        return Ok(Ordering::Equal);
    }
    // Equal so far: the longer version is greater unless what follows is a
    // pre-release suffix.
    if ka == Kind::Suffix && suffix_value(ta[i].text) < 0 {
        return Ok(Ordering::Less);
    }
    if kb == Kind::Suffix && suffix_value(tb[i].text) < 0 {
        return Ok(Ordering::Greater);
    }
    Ok(kb.cmp(&ka))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(a: &str, b: &str, expected: Ordering) {
        assert_eq!(compare(a, b).unwrap(), expected, "{a} vs {b}");
        assert_eq!(compare(b, a).unwrap(), expected.reverse(), "{b} vs {a}");
    }

    #[test]
    fn suffixes_letters_revisions() {
        check("1.0_alpha", "1.0_beta", Ordering::Less);
        check("1.0_beta", "1.0_pre", Ordering::Less);
        check("1.0_pre", "1.0_rc", Ordering::Less);
        check("1.0_rc1", "1.0", Ordering::Less);
        check("1.0", "1.0_cvs", Ordering::Less);
        check("1.0_cvs", "1.0_svn", Ordering::Less);
        check("1.0_svn", "1.0_git", Ordering::Less);
        check("1.0_git", "1.0_hg", Ordering::Less);
        check("1.0_hg", "1.0_p1", Ordering::Less);
        check("1.0_rc1", "1.0_rc2", Ordering::Less);
        check("1.0", "1.0a", Ordering::Less);
        check("1.0a", "1.0b", Ordering::Less);
        check("1.0z", "1.0.1", Ordering::Less);
        check("1.0", "1.0-r1", Ordering::Less);
        check("1.0-r1", "1.0-r10", Ordering::Less);
        check("1.0_p1", "1.0_p1-r1", Ordering::Less);
        check("1.0-r9", "1.0.1", Ordering::Less);
        check("1.2.3-r0", "1.2.3", Ordering::Greater);
        check("1.01", "1.1", Ordering::Less);
        check("1.001", "1.01", Ordering::Less);
        check("1.10", "1.9", Ordering::Greater);
        check("3.0.11-r0", "3.0.11-r0", Ordering::Equal);
        check("1.2_alpha1_p2", "1.2_alpha1", Ordering::Greater);
        check("1.2_alpha_beta", "1.2_alpha", Ordering::Less);
        check("1.0~abc123-r1", "1.0~def456-r1", Ordering::Equal);
        check("20230101.0", "3.0", Ordering::Greater);
    }

    #[test]
    fn invalid_versions() {
        for bad in [
            "", "a1", "1.0_foo", "1.0-x1", "1.0.", "1.0A", "1.0 ", "1.0ab", "1.0-r1.1", "1.0_",
        ] {
            let error = compare(bad, "1.0").unwrap_err();
            assert_eq!(error.scheme, "apk", "{bad}");
        }
    }
}
