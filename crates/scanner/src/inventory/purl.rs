//! Package URLs (<https://github.com/package-url/purl-spec>): every
//! namespace segment, the name, the version and each qualifier value are
//! percent-encoded except for ASCII letters, digits, `.`, `-`, `_`, `~` and
//! `:` (which the spec says must not be encoded); qualifiers are sorted by
//! key and empty ones dropped.

use std::fmt::Write;

/// Builds `pkg:<ty>/<namespace>/<name>@<version>?<qualifiers>`.
pub fn purl(
    ty: &str,
    namespace: Option<&str>,
    name: &str,
    version: Option<&str>,
    qualifiers: &[(&str, &str)],
) -> String {
    let mut out = format!("pkg:{ty}/");
    if let Some(ns) = namespace.filter(|ns| !ns.is_empty()) {
        for segment in ns.split('/').filter(|s| !s.is_empty()) {
            out.push_str(&encode(segment));
            out.push('/');
        }
    }
    out.push_str(&encode(name.trim_matches('/')));
    if let Some(version) = version.filter(|v| !v.is_empty()) {
        out.push('@');
        out.push_str(&encode(version));
    }
    let mut qualifiers: Vec<(String, &str)> = qualifiers
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_ascii_lowercase(), *v))
        .collect();
    qualifiers.sort();
    for (i, (key, value)) in qualifiers.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(key);
        out.push('=');
        out.push_str(&encode(value));
    }
    out
}

fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b".-_~:".contains(&byte) {
            out.push(byte as char);
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// PEP 503 normalization: lower case, runs of `-`, `_`, `.` become `-`.
pub fn pep503(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.chars() {
        if c == '-' || c == '_' || c == '.' {
            if !in_run {
                out.push('-');
            }
            in_run = true;
        } else {
            out.push(c.to_ascii_lowercase());
            in_run = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_per_spec() {
        let cases = [
            (
                purl(
                    "deb",
                    Some("debian"),
                    "libc6",
                    Some("2.36-9+deb12u4"),
                    &[("distro", "debian-12"), ("arch", "amd64")],
                ),
                "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12",
            ),
            (
                purl("deb", Some("debian"), "libpam0g", Some("1:1.5.2-6"), &[]),
                "pkg:deb/debian/libpam0g@1:1.5.2-6",
            ),
            (
                purl("npm", Some("@babel"), "core", Some("7.0.0"), &[]),
                "pkg:npm/%40babel/core@7.0.0",
            ),
            (
                purl("golang", Some("github.com/a b"), "c", Some("v1.0.0"), &[]),
                "pkg:golang/github.com/a%20b/c@v1.0.0",
            ),
            (
                purl("maven", Some("org.x"), "y", Some("1.0"), &[("type", "")]),
                "pkg:maven/org.x/y@1.0",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
        assert_eq!(pep503("Foo__Bar.baz"), "foo-bar-baz");
    }
}
