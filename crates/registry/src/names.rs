//! The spec's grammar for repository names, tags and digests.

use crate::error::{Code, Error, Result};

/// Longest repository name accepted (Docker's limit).
const NAME_MAX: usize = 255;

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`
pub fn validate_name(name: &str) -> Result<()> {
    let bad = || Error::new(Code::NameInvalid, format!("invalid repository name {name:?}"));
    if name.is_empty() || name.len() > NAME_MAX {
        return Err(bad());
    }
    for component in name.split('/') {
        if !valid_component(component) {
            return Err(bad());
        }
    }
    Ok(())
}

fn valid_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
pub fn validate_tag(tag: &str) -> Result<()> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = match tag.as_bytes() {
        [first, rest @ ..] => {
            word(*first) && rest.len() <= 127 && rest.iter().all(|&b| word(b) || b == b'.' || b == b'-')
        }
        [] => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::new(Code::TagInvalid, format!("invalid tag {tag:?}")))
    }
}

/// Only `sha256:<64 lower-case hex>` is taken.
pub fn validate_digest(digest: &str) -> Result<()> {
    berth_model::validate_digest(digest).map_err(|e| Error::new(Code::DigestInvalid, e))
}

/// Whether a manifest reference is a digest (else it is a tag).
pub fn is_digest(reference: &str) -> bool {
    reference.contains(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in [
            "a",
            "a/b/c",
            "library/busybox",
            "a.b",
            "a_b",
            "a__b",
            "a---b",
            "0",
            "x/y-z.w_v",
        ] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "", "A", "a/", "/a", "a//b", "-a", "a-", "a..b", "a___b", "a._b", "a:b", "a@b", "a b",
        ] {
            assert_eq!(validate_name(bad).unwrap_err().code(), Code::NameInvalid, "{bad}");
        }
        assert!(validate_name(&"a".repeat(256)).is_err());
    }

    #[test]
    fn tags() {
        for good in ["latest", "v1.0", "_x", "A-b", "sha256-abc"] {
            assert!(validate_tag(good).is_ok(), "{good}");
        }
        for bad in ["", ".x", "-x", "a:b", "a/b", &"a".repeat(129)] {
            assert_eq!(validate_tag(bad).unwrap_err().code(), Code::TagInvalid, "{bad}");
        }
        assert!(validate_tag(&"a".repeat(128)).is_ok());
    }
}
