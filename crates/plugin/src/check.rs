//! What a `scanner-check` plugin is asked and answers, in types that do not
//! depend on a world version: each `worlds::vX_Y_Z` module converts between
//! these and its generated bindings.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How serious a finding is, least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// One rule a check can report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleInfo {
    pub id: String,
    pub severity: Severity,
    pub description: String,
}

/// What a check says about itself (`describe`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub rules: Vec<RuleInfo>,
}

/// The image configuration a check is given. Its `Debug` form leaves out
/// environment values, which often are secrets.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// `User`, when set.
    pub user: Option<String>,
    /// `ExposedPorts` keys (`22/tcp`).
    pub exposed_ports: Vec<String>,
    /// `Env`, split at the first `=`.
    pub env: Vec<(String, String)>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// Whether a health check other than `NONE` is configured.
    pub has_healthcheck: bool,
    pub labels: Vec<(String, String)>,
    pub working_dir: Option<String>,
}

impl fmt::Debug for ImageInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env: Vec<String> = self
            .env
            .iter()
            .map(|(name, value)| format!("{name}=<{} bytes>", value.len()))
            .collect();
        f.debug_struct("ImageInfo")
            .field("user", &self.user)
            .field("exposed_ports", &self.exposed_ports)
            .field("env", &env)
            .field("entrypoint", &self.entrypoint)
            .field("cmd", &self.cmd)
            .field("has_healthcheck", &self.has_healthcheck)
            .field("labels", &self.labels)
            .field("working_dir", &self.working_dir)
            .finish()
    }
}

impl ImageInfo {
    /// Splits Docker/OCI `Env` entries (`KEY=value`; a bare `KEY` has an
    /// empty value) into pairs.
    pub fn split_env<'a>(entries: impl IntoIterator<Item = &'a str>) -> Vec<(String, String)> {
        entries
            .into_iter()
            .map(|entry| match entry.split_once('=') {
                Some((name, value)) => (name.to_string(), value.to_string()),
                None => (entry.to_string(), String::new()),
            })
            .collect()
    }
}

/// One problem a check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// A rule id from the check's [`CheckInfo::rules`].
    pub rule: String,
    pub severity: Severity,
    pub message: String,
    /// The image path concerned, when there is one.
    pub path: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_leaves_out_environment_values() {
        let image = ImageInfo {
            env: ImageInfo::split_env(["DB_PASSWORD=hunter2hunter2", "PATH=/bin"]),
            ..ImageInfo::default()
        };
        let shown = format!("{image:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("DB_PASSWORD=<14 bytes>"), "{shown}");
    }

    #[test]
    fn split_env_keeps_everything_after_the_first_equals_sign() {
        let env = ImageInfo::split_env(["PATH=/usr/bin:/bin", "OPTS=a=b", "EMPTY=", "BARE"]);
        let expected = [("PATH", "/usr/bin:/bin"), ("OPTS", "a=b"), ("EMPTY", ""), ("BARE", "")];
        let expected: Vec<(String, String)> = expected.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(env, expected);
    }
}
