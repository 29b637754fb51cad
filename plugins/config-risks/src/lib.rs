//! The `config-risks` check: what an image's configuration says about how it
//! will run. It looks only at the config (`run`'s argument), never at files:
//! running as root, no health check, ports of services that should not face
//! a network, and environment variables that look like they carry secrets.

use berth_plugin_sdk::{CheckInfo, Finding, Guest, ImageInfo, RuleInfo, Severity};

struct ConfigRisks;

const RUNS_AS_ROOT: &str = "runs-as-root";
const NO_HEALTHCHECK: &str = "no-healthcheck";
const SENSITIVE_PORT: &str = "sensitive-port";
const SECRET_IN_ENV: &str = "secret-in-env";

/// Ports whose services are dangerous to expose, with the severity of doing so.
const SENSITIVE_PORTS: &[(u16, &str, Severity)] = &[
    (21, "FTP (clear-text logins)", Severity::High),
    (22, "SSH (remote shell into the container)", Severity::High),
    (23, "Telnet (clear-text remote shell)", Severity::Critical),
    (445, "SMB", Severity::High),
    (1433, "Microsoft SQL Server", Severity::Medium),
    (1521, "Oracle database", Severity::Medium),
    (2375, "Docker API without TLS (root on the host)", Severity::Critical),
    (2376, "Docker API", Severity::High),
    (2379, "etcd client API", Severity::High),
    (2380, "etcd peer API", Severity::High),
    (3306, "MySQL", Severity::Medium),
    (3389, "RDP", Severity::High),
    (5432, "PostgreSQL", Severity::Medium),
    (5900, "VNC", Severity::High),
    (5984, "CouchDB", Severity::Medium),
    (6379, "Redis (no authentication by default)", Severity::High),
    (9200, "Elasticsearch HTTP API", Severity::Medium),
    (9300, "Elasticsearch transport", Severity::Medium),
    (10250, "kubelet API", Severity::High),
    (11211, "memcached (no authentication)", Severity::High),
    (27017, "MongoDB", Severity::Medium),
];

/// Name parts that mark an environment variable as holding a secret.
const SECRET_NAME_PARTS: &[&str] = &[
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "SECRET",
    "TOKEN",
    "API_KEY",
    "APIKEY",
    "PRIVATE_KEY",
    "ACCESS_KEY",
    "CREDENTIALS",
];

impl Guest for ConfigRisks {
    fn describe() -> CheckInfo {
        CheckInfo {
            name: "config-risks".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: env!("CARGO_PKG_DESCRIPTION").to_string(),
            rules: vec![
                RuleInfo::new(RUNS_AS_ROOT, Severity::High, "the image runs as root (no USER, or USER root/0)"),
                RuleInfo::new(NO_HEALTHCHECK, Severity::Low, "the image has no HEALTHCHECK"),
                RuleInfo::new(
                    SENSITIVE_PORT,
                    Severity::High,
                    "the image exposes a port of a service that should not face a network (SSH, Telnet, Docker API, databases, ...)",
                ),
                RuleInfo::new(
                    SECRET_IN_ENV,
                    Severity::High,
                    "an environment variable named like a secret (*_PASSWORD, *_TOKEN, *_SECRET, ...) has a value baked into the image",
                ),
            ],
        }
    }

    fn run(image: ImageInfo) -> Result<Vec<Finding>, String> {
        let mut findings = Vec::new();
        if let Some(reason) = root_user(image.user.as_deref()) {
            findings.push(Finding::new(RUNS_AS_ROOT, Severity::High, reason, None));
        }
        if !image.has_healthcheck {
            findings.push(Finding::new(
                NO_HEALTHCHECK,
                Severity::Low,
                "no HEALTHCHECK is configured, so a hung process goes unnoticed".to_string(),
                None,
            ));
        }
        for exposed in &image.exposed_ports {
            if let Some((port, service, severity)) = sensitive_port(exposed) {
                findings.push(Finding::new(
                    SENSITIVE_PORT,
                    severity,
                    format!("exposes port {exposed}: {service} (port {port})"),
                    None,
                ));
            }
        }
        for (name, value) in &image.env {
            if looks_secret(name) && !value.trim().is_empty() {
                findings.push(Finding::new(
                    SECRET_IN_ENV,
                    Severity::High,
                    format!(
                        "environment variable {name} has a {}-character value baked into the image; pass it at run time or use {name}_FILE",
                        value.chars().count()
                    ),
                    None,
                ));
            }
        }
        Ok(findings)
    }
}

/// Why `user` means root, or `None` if it does not.
fn root_user(user: Option<&str>) -> Option<String> {
    let user = user.map(str::trim).unwrap_or("");
    if user.is_empty() {
        return Some("no USER is set, so the container runs as root".to_string());
    }
    let name = user.split(':').next().unwrap_or(user);
    if name == "root" || name == "0" {
        return Some(format!("USER is {user:?}, so the container runs as root"));
    }
    None
}

/// The entry of [`SENSITIVE_PORTS`] an `ExposedPorts` key (`22/tcp`, `6379`) names.
fn sensitive_port(exposed: &str) -> Option<(u16, &'static str, Severity)> {
    let (number, protocol) = exposed.split_once('/').unwrap_or((exposed, "tcp"));
    if !protocol.eq_ignore_ascii_case("tcp") {
        return None;
    }
    let port: u16 = number.trim().parse().ok()?;
    SENSITIVE_PORTS
        .iter()
        .find(|(known, _, _)| *known == port)
        .map(|&(port, service, severity)| (port, service, severity))
}

/// Whether an environment variable's name says it holds a secret. Names
/// ending in `_FILE` point at a file that holds it, which is the safe way.
fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    if upper.ends_with("_FILE") || upper.ends_with("_PATH") {
        return false;
    }
    SECRET_NAME_PARTS.iter().any(|part| upper.contains(part))
}

berth_plugin_sdk::export_check!(ConfigRisks);
