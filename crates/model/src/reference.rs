//! Image references: `[registry[:port]/]repository[:tag][@sha256:digest]`,
//! normalised the way Docker does (`busybox` is `docker.io/library/busybox:latest`).

use std::fmt;

pub const DEFAULT_REGISTRY: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    /// Parses and normalises a reference; errors name what was wrong.
    pub fn parse(input: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("invalid image reference {input:?}: {why}");
        if input.is_empty() {
            return Err(bad("empty"));
        }
        if input.len() > 255 * 2 {
            return Err(bad("too long"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => {
                validate_digest(d).map_err(|e| bad(&e))?;
                (r, Some(d.to_string()))
            }
            None => (input, None),
        };
        // A tag is after the last ':' that comes after the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(bad(&format!("invalid tag {t:?}")));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => {
                (first.to_string(), rest.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        if registry.chars().any(|c| c.is_ascii_uppercase()) {
            // Registry hosts are case-insensitive; keep them as typed but lower.
        }
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        validate_repository(&repository).map_err(|e| bad(&e))?;
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (None, Some(_)) => None,
        };
        Ok(Self {
            registry: registry.to_ascii_lowercase(),
            repository,
            tag,
            digest,
        })
    }

    /// `registry/repository` as Docker shows it (`busybox` for the library namespace).
    pub fn familiar_name(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            self.repository
                .strip_prefix("library/")
                .unwrap_or(&self.repository)
                .to_string()
        } else {
            format!("{}/{}", self.registry, self.repository)
        }
    }

    /// The name under which a tag is stored: `familiar_name:tag`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.familiar())
    }
}

pub fn valid_tag(t: &str) -> bool {
    let mut chars = t.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && t.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Repository path components: lower-case alphanumerics separated by `.`, `_`, `__` or `-`.
pub fn validate_repository(repo: &str) -> Result<(), String> {
    if repo.is_empty() {
        return Err("empty repository name".into());
    }
    if repo.len() > 255 {
        return Err("repository name longer than 255 characters".into());
    }
    for component in repo.split('/') {
        let ok = !component.is_empty()
            && component.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && component.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && component
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
        if !ok {
            return Err(format!(
                "invalid repository name component {component:?} (use lower-case letters, digits, '.', '_' and '-')"
            ));
        }
    }
    Ok(())
}

/// Checks `sha256:<64 hex>` (the only algorithm berth stores).
pub fn validate_digest(d: &str) -> Result<(), String> {
    match d.split_once(':') {
        Some(("sha256", hex)) if hex.len() == 64 && hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) => Ok(()),
        Some(("sha256", _)) => Err(format!("invalid digest {d:?}: expected 64 lower-case hex digits")),
        Some((alg, _)) => Err(format!("unsupported digest algorithm {alg:?}")),
        None => Err(format!("invalid digest {d:?}: expected sha256:<hex>")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, want: &str) {
        let got = match Reference::parse(input) {
            Ok(r) => format!("{} {} {:?} {:?}", r.registry, r.repository, r.tag, r.digest),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, want, "{input}");
    }

    #[test]
    fn references() {
        let d = format!("sha256:{}", "a".repeat(64));
        check("busybox", "docker.io library/busybox Some(\"latest\") None");
        check("busybox:1.36", "docker.io library/busybox Some(\"1.36\") None");
        check("user/app:v1", "docker.io user/app Some(\"v1\") None");
        check("localhost:5000/app", "localhost:5000 app Some(\"latest\") None");
        check("127.0.0.1:5000/a/b:t", "127.0.0.1:5000 a/b Some(\"t\") None");
        check(
            &format!("app@{d}"),
            &format!("docker.io library/app None Some(\"{d}\")"),
        );
        check("Busybox", "error: invalid image reference \"Busybox\": invalid repository name component \"Busybox\" (use lower-case letters, digits, '.', '_' and '-')");
        check(
            "app:bad tag",
            "error: invalid image reference \"app:bad tag\": invalid tag \"bad tag\"",
        );
        check("", "error: invalid image reference \"\": empty");
        check("app@sha256:zz", "error: invalid image reference \"app@sha256:zz\": invalid digest \"sha256:zz\": expected 64 lower-case hex digits");
        check("a//b", "error: invalid image reference \"a//b\": invalid repository name component \"\" (use lower-case letters, digits, '.', '_' and '-')");
    }

    #[test]
    fn familiar_names() {
        assert_eq!(Reference::parse("busybox").unwrap().familiar(), "busybox:latest");
        assert_eq!(Reference::parse("localhost/x:1").unwrap().familiar(), "localhost/x:1");
    }
}
