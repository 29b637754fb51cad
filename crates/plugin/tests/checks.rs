//! The shipped checks (`plugins/secrets`, `file-permissions`,
//! `config-risks`) run in the real host against fixture images: each finds
//! exactly what was planted in a dirty image and nothing in a clean one, and
//! never repeats a secret in what it reports.

#![allow(clippy::unwrap_used)] // the helpers outside #[test] fns unwrap too

mod support;

use std::path::Path;
use std::sync::Arc;

use berth_plugin::{DirImageFs, Finding, HostConfig, ImageInfo, PluginHost, ScannerCheck, Severity};
use support::*;

/// Secrets planted in the dirty image, and how many leading characters of
/// each a finding may show (the token type's well-known prefix).
struct Planted {
    aws_key_id: String,
    aws_secret: String,
    github: String,
    google: String,
    slack: String,
    password: String,
    rsa_pem: String,
    openssh_pem: String,
}

impl Planted {
    fn new() -> Self {
        Planted {
            aws_key_id: format!("AKIA{}", pseudo_random(16, UPPER_DIGITS, 1)),
            aws_secret: pseudo_random(40, BASE64, 2),
            github: format!("ghp_{}", pseudo_random(36, ALNUM, 5)),
            google: format!("AIza{}", pseudo_random(35, ALNUM, 6)),
            slack: format!(
                "xoxb-{}-{}",
                pseudo_random(12, b"0123456789", 8),
                pseudo_random(24, ALNUM, 9)
            ),
            password: pseudo_random(16, ALNUM, 7),
            rsa_pem: fake_pem("RSA PRIVATE KEY", 3),
            openssh_pem: fake_pem("OPENSSH PRIVATE KEY", 4),
        }
    }

    /// (secret, characters a report may show)
    fn all(&self) -> Vec<(&str, usize)> {
        vec![
            (&self.aws_key_id, 4),
            (&self.aws_secret, 0),
            (&self.github, 4),
            (&self.google, 4),
            (&self.slack, 5),
            (&self.password, 0),
            (&self.rsa_pem[32..], 0),
            (&self.openssh_pem[36..], 0),
        ]
    }
}

fn dirty_image(root: &Path, planted: &Planted) {
    // secrets
    let credentials = format!(
        "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        planted.aws_key_id, planted.aws_secret
    );
    write(root, "/root/.aws/credentials", credentials.as_bytes(), 0o600);
    write(root, "/etc/ssl/private/server.key", planted.rsa_pem.as_bytes(), 0o600);
    write(root, "/home/app/.ssh/id_ed25519", planted.openssh_pem.as_bytes(), 0o600);
    let config = format!(
        "db:\n  host: db\n  password: {}\ngithub_token: {}\n",
        planted.password, planted.github
    );
    write(root, "/app/config.yaml", config.as_bytes(), 0o644);
    let js = format!("const maps = loadMaps({{ key: \"{}\" }});\n", planted.google);
    write(root, "/app/static/main.js", js.as_bytes(), 0o644);
    let sh = format!(
        "#!/bin/sh\ncurl -H 'Authorization: Bearer {}' https://slack.com/api/chat.postMessage\n",
        planted.slack
    );
    write(root, "/app/notify.sh", sh.as_bytes(), 0o755);
    // Past the first 8 KiB read (the binary sniff) of a script, in capitals.
    let mut deploy = "# filler\n".repeat(1200);
    deploy.push_str(&format!("export AWS_SECRET_ACCESS_KEY={}\n", planted.aws_secret));
    write(root, "/app/deploy.sh", deploy.as_bytes(), 0o755);
    // Skipped: a binary (NUL early on) and a file over 1 MiB, both holding a key.
    let mut binary = b"\x7fELF\x02\x01\x01\0\0\0".to_vec();
    binary.extend_from_slice(planted.aws_key_id.as_bytes());
    write(root, "/usr/lib/libthing.so", &binary, 0o644);
    let mut big = vec![b'#'; (1 << 20) + 1];
    big[100..120].copy_from_slice(planted.aws_key_id.as_bytes());
    write(root, "/var/log/huge.log", &big, 0o644);

    // file permissions
    write(root, "/usr/local/bin/helper", b"\x7fELF helper", 0o4755);
    write(root, "/usr/bin/passwd", b"\x7fELF passwd", 0o4755);
    write(root, "/usr/local/bin/grouper", b"\x7fELF grouper", 0o2755);
    write(root, "/var/www/upload.txt", b"anyone may write this", 0o666);
    mkdir(root, "/srv/shared", 0o777);
    mkdir(root, "/tmp", 0o1777);
}

fn clean_image(root: &Path) {
    write(root, "/etc/hostname", b"app\n", 0o644);
    write(
        root,
        "/etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\napp:x:10001:10001::/app:/bin/sh\n",
        0o644,
    );
    // AWS's documentation placeholder is not a key.
    write(
        root,
        "/usr/share/doc/awscli/README",
        b"export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n",
        0o644,
    );
    // References and placeholders are not literal secrets; comments are skipped.
    write(
        root,
        "/app/config.yaml",
        b"db:\n  password: ${DB_PASSWORD}\napi_key: <your key here>\n# password = hunter22hunter22\ntoken: \"\"\n",
        0o644,
    );
    // A certificate is not a private key; a BEGIN line quoted in code is not a key.
    write(
        root,
        "/etc/ssl/certs/ca.pem",
        fake_pem("CERTIFICATE", 11).as_bytes(),
        0o644,
    );
    let code = format!(
        "PEM_HEADER = \"-----BEGIN RSA PRIVATE KEY-----\"\n{}\n",
        "def parse(data):\n    return data.split(PEM_HEADER)[1].strip()\n".repeat(5)
    );
    write(root, "/usr/lib/python3/keys.py", code.as_bytes(), 0o644);
    write(root, "/usr/bin/tool", b"\x7fELF tool", 0o755);
    write(root, "/app/data.txt", b"data", 0o640);
    mkdir(root, "/tmp", 0o1777);
    mkdir(root, "/var/tmp", 0o1777);
}

fn host() -> PluginHost {
    PluginHost::new(HostConfig::default()).unwrap()
}

fn load(host: &PluginHost, name: &str) -> ScannerCheck {
    host.load_scanner_check(name, "0.1.0", &wasm(name)).unwrap()
}

fn run(check: &ScannerCheck, config: &ImageInfo, root: &Path) -> Vec<Finding> {
    let image = Arc::new(DirImageFs::new(root).unwrap());
    check.run(config, image).unwrap()
}

/// (rule, path) of each finding, sorted.
fn found(findings: &[Finding]) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = findings
        .iter()
        .map(|finding| (finding.rule.clone(), finding.path.clone().unwrap_or_default()))
        .collect();
    found.sort();
    found
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = expected
        .iter()
        .map(|(rule, path)| (rule.to_string(), path.to_string()))
        .collect();
    pairs.sort();
    pairs
}

#[test]
fn secrets_finds_what_was_planted_and_never_repeats_it() {
    let dir = tempfile::tempdir().unwrap();
    let planted = Planted::new();
    dirty_image(dir.path(), &planted);
    let host = host();
    let check = load(&host, "secrets");
    let findings = run(&check, &risky_config(), dir.path());
    assert_eq!(
        found(&findings),
        pairs(&[
            ("aws-access-key", "/root/.aws/credentials"),
            ("aws-secret-key", "/root/.aws/credentials"),
            ("private-key", "/etc/ssl/private/server.key"),
            ("private-key", "/home/app/.ssh/id_ed25519"),
            ("github-token", "/app/config.yaml"),
            ("secret-assignment", "/app/config.yaml"),
            ("google-api-key", "/app/static/main.js"),
            ("slack-token", "/app/notify.sh"),
            ("aws-secret-key", "/app/deploy.sh"),
        ]),
        "{findings:#?}"
    );
    let key = findings.iter().find(|f| f.rule == "aws-access-key").unwrap();
    assert_eq!(key.severity, Severity::High);
    assert_eq!(key.message, "AWS access key id AKIA… (20 characters) at line 2");
    let pem = findings
        .iter()
        .find(|f| f.path.as_deref() == Some("/etc/ssl/private/server.key"))
        .unwrap();
    assert_eq!(pem.message, "RSA private key (PEM) at line 1");
    let ssh = findings
        .iter()
        .find(|f| f.path.as_deref() == Some("/home/app/.ssh/id_ed25519"))
        .unwrap();
    assert_eq!(ssh.message, "OpenSSH private key at line 1");
    let assignments = findings.iter().find(|f| f.rule == "secret-assignment").unwrap();
    assert_eq!(assignments.severity, Severity::Low);
    assert_eq!(
        assignments.message,
        "literal value assigned to `password` at line 3 (and 1 more)"
    );

    for finding in &findings {
        for (secret, may_show) in planted.all() {
            let telling = &secret[..(may_show + 4).min(secret.len())];
            assert!(
                !finding.message.contains(telling),
                "finding {finding:?} reveals {telling:?} of a planted secret"
            );
        }
    }
}

#[test]
fn file_permissions_finds_setuid_setgid_and_world_writable() {
    let dir = tempfile::tempdir().unwrap();
    dirty_image(dir.path(), &Planted::new());
    let host = host();
    let findings = run(&load(&host, "file-permissions"), &risky_config(), dir.path());
    assert_eq!(
        found(&findings),
        pairs(&[
            ("setuid", "/usr/local/bin/helper"),
            ("setuid", "/usr/bin/passwd"),
            ("setgid", "/usr/local/bin/grouper"),
            ("world-writable-file", "/var/www/upload.txt"),
            ("world-writable-dir", "/srv/shared"),
        ]),
        "{findings:#?}"
    );
    let severity_of = |path: &str| {
        findings
            .iter()
            .find(|f| f.path.as_deref() == Some(path))
            .unwrap()
            .severity
    };
    let helper_uid = owner_uid(&dir.path().join("usr/local/bin/helper"));
    let expected = if helper_uid == 0 {
        Severity::High
    } else {
        Severity::Medium
    };
    assert_eq!(severity_of("/usr/local/bin/helper"), expected, "owner uid {helper_uid}");
    if helper_uid == 0 {
        // passwd is a usual setuid-root program: reported, but low.
        assert_eq!(severity_of("/usr/bin/passwd"), Severity::Low);
    }
    let helper = findings
        .iter()
        .find(|f| f.path.as_deref() == Some("/usr/local/bin/helper"))
        .unwrap();
    assert!(
        helper.message.starts_with("setuid file (mode 4755) runs as"),
        "{}",
        helper.message
    );
}

#[test]
fn config_risks_flags_root_sensitive_ports_missing_healthcheck_and_secret_env() {
    let dir = tempfile::tempdir().unwrap();
    clean_image(dir.path());
    let host = host();
    let findings = run(&load(&host, "config-risks"), &risky_config(), dir.path());
    let mut rules: Vec<&str> = findings.iter().map(|f| f.rule.as_str()).collect();
    rules.sort();
    assert_eq!(
        rules,
        ["no-healthcheck", "runs-as-root", "secret-in-env", "sensitive-port"],
        "{findings:#?}"
    );
    let port = findings.iter().find(|f| f.rule == "sensitive-port").unwrap();
    assert!(
        port.message.contains("22/tcp") && port.message.contains("SSH"),
        "{}",
        port.message
    );
    assert_eq!(port.severity, Severity::High);
    let env = findings.iter().find(|f| f.rule == "secret-in-env").unwrap();
    assert!(env.message.contains("MYSQL_ROOT_PASSWORD"), "{}", env.message);
    assert!(!env.message.contains("hunter2"), "{}", env.message);

    let as_root = ImageInfo {
        user: Some("0:0".to_string()),
        ..careful_config()
    };
    let findings = run(&load(&host, "config-risks"), &as_root, dir.path());
    assert_eq!(found(&findings), pairs(&[("runs-as-root", "")]), "{findings:#?}");
}

#[test]
fn nothing_is_found_in_a_clean_image() {
    let dir = tempfile::tempdir().unwrap();
    clean_image(dir.path());
    let host = host();
    for name in ["secrets", "file-permissions", "config-risks"] {
        let findings = run(&load(&host, name), &careful_config(), dir.path());
        assert_eq!(findings, Vec::new(), "{name} found something in the clean image");
    }
}

#[test]
fn checks_describe_their_rules() {
    let host = host();
    for (name, some_rule) in [
        ("secrets", "aws-access-key"),
        ("file-permissions", "setuid"),
        ("config-risks", "sensitive-port"),
    ] {
        let info = load(&host, name).describe().unwrap();
        assert_eq!(info.name, name);
        assert_eq!(info.version, "0.1.0");
        assert!(!info.description.is_empty());
        assert!(info.rules.iter().any(|rule| rule.id == some_rule), "{info:#?}");
    }
}

#[test]
fn a_check_that_cannot_list_the_image_root_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("image");
    std::fs::create_dir(&root).unwrap();
    let image = Arc::new(DirImageFs::new(&root).unwrap());
    std::fs::remove_dir(&root).unwrap();
    let host = host();
    let err = load(&host, "secrets")
        .run(&careful_config(), image)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "plugin secrets reported an error: could not list the image root: not found"
    );
}
