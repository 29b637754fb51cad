//! The `secrets` check: private keys, cloud and SaaS tokens and hard-coded
//! passwords in an image's files.
//!
//! Every regular file up to 1 MiB that is not binary (no NUL in its first
//! 8 KiB) is scanned in one pass for token prefixes, then line by line for
//! `key = value` assignments. A finding names the file, the rule and the line,
//! and shows at most a token's well-known prefix (`AKIA…`): never the secret.
//! One finding per rule and file, with a count when there are more.

use berth_plugin_sdk::{
    describe_fs_error, read_more, read_prefix, walk, CheckInfo, FileKind, Finding, Guest, ImageInfo, RuleInfo, Severity,
};

struct Secrets;

const PRIVATE_KEY: &str = "private-key";
const AWS_ACCESS_KEY: &str = "aws-access-key";
const AWS_SECRET_KEY: &str = "aws-secret-key";
const GITHUB_TOKEN: &str = "github-token";
const SLACK_TOKEN: &str = "slack-token";
const SLACK_WEBHOOK: &str = "slack-webhook";
const GOOGLE_API_KEY: &str = "google-api-key";
const SECRET_ASSIGNMENT: &str = "secret-assignment";

/// Files larger than this are not read.
const MAX_FILE_SIZE: u64 = 1 << 20;
/// A NUL byte in this many leading bytes marks a file as binary.
const BINARY_SNIFF_LEN: usize = 8192;
/// Kernel-provided trees that images may carry as empty mount points.
const SKIPPED_TREES: &[&str] = &["/proc", "/sys", "/dev"];

impl Guest for Secrets {
    fn describe() -> CheckInfo {
        CheckInfo {
            name: "secrets".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: env!("CARGO_PKG_DESCRIPTION").to_string(),
            rules: vec![
                RuleInfo::new(PRIVATE_KEY, Severity::High, "a PEM, OpenSSH or PGP private key"),
                RuleInfo::new(
                    AWS_ACCESS_KEY,
                    Severity::High,
                    "an AWS access key id (AKIA..., ASIA...)",
                ),
                RuleInfo::new(
                    AWS_SECRET_KEY,
                    Severity::Critical,
                    "an AWS secret access key assignment",
                ),
                RuleInfo::new(
                    GITHUB_TOKEN,
                    Severity::High,
                    "a GitHub token (ghp_, gho_, ghu_, ghs_, ghr_, github_pat_)",
                ),
                RuleInfo::new(SLACK_TOKEN, Severity::High, "a Slack token (xoxb-, xoxp-, ...)"),
                RuleInfo::new(SLACK_WEBHOOK, Severity::Medium, "a Slack incoming webhook URL"),
                RuleInfo::new(GOOGLE_API_KEY, Severity::High, "a Google API key (AIza...)"),
                RuleInfo::new(
                    SECRET_ASSIGNMENT,
                    Severity::Low,
                    "a literal password, secret, token or API key assigned in a configuration file",
                ),
            ],
        }
    }

    fn run(_image: ImageInfo) -> Result<Vec<Finding>, String> {
        let mut findings = Vec::new();
        let mut root_error = None;
        walk(
            "/",
            &mut |path, entry| {
                if entry.kind != FileKind::File
                    || entry.size == 0
                    || entry.size > MAX_FILE_SIZE
                    || SKIPPED_TREES.iter().any(|tree| within(path, tree))
                {
                    return;
                }
                // A file that vanished or cannot be read has nothing to
                // report; a binary one is told by its first bytes alone.
                let Ok(head) = read_prefix(path, BINARY_SNIFF_LEN as u64) else {
                    return;
                };
                if is_binary(&head) {
                    return;
                }
                let data = match head.len() as u64 >= entry.size {
                    true => Ok(head),
                    false => read_more(path, head, MAX_FILE_SIZE),
                };
                if let Ok(data) = data {
                    findings.extend(scan_file(path, &entry.name, &data));
                }
            },
            &mut |path, err| {
                if path == "/" {
                    root_error = Some(describe_fs_error(err));
                }
            },
        );
        match root_error {
            Some(err) => Err(format!("could not list the image root: {err}")),
            None => Ok(findings),
        }
    }
}

fn within(path: &str, tree: &str) -> bool {
    path == tree || path.strip_prefix(tree).is_some_and(|rest| rest.starts_with('/'))
}

fn is_binary(data: &[u8]) -> bool {
    data[..data.len().min(BINARY_SNIFF_LEN)].contains(&0)
}

/// One match: the rule, its severity, a description that holds no secret,
/// and the byte offset it was found at.
struct Hit {
    rule: &'static str,
    severity: Severity,
    what: String,
    offset: usize,
}

/// All findings for one file: one per rule, the first hit described.
fn scan_file(path: &str, name: &str, data: &[u8]) -> Vec<Finding> {
    let mut hits = Vec::new();
    scan_tokens(data, &mut hits);
    scan_lines(data, is_config_file(name), &mut hits);

    let mut findings: Vec<Finding> = Vec::new();
    let mut seen: Vec<(&'static str, usize)> = Vec::new();
    for hit in &hits {
        if let Some(entry) = seen.iter_mut().find(|(rule, _)| *rule == hit.rule) {
            entry.1 += 1;
        } else {
            seen.push((hit.rule, 1));
        }
    }
    for (rule, count) in seen {
        let Some(first) = hits.iter().find(|hit| hit.rule == rule) else {
            continue;
        };
        let line = 1 + data[..first.offset].iter().filter(|&&b| b == b'\n').count();
        let more = match count {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        findings.push(Finding::new(
            rule,
            first.severity,
            format!("{} at line {line}{more}", first.what),
            Some(path),
        ));
    }
    findings
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// The length of the run of bytes from `start` that satisfy `accept`.
fn run_len(data: &[u8], start: usize, accept: impl Fn(u8) -> bool) -> usize {
    data.get(start..)
        .map_or(0, |rest| rest.iter().take_while(|&&b| accept(b)).count())
}

/// Whether the byte before `at` ends a word (or there is none).
fn starts_word(data: &[u8], at: usize) -> bool {
    at == 0 || !is_token_byte(data[at - 1])
}

/// One pass over the file looking for token prefixes.
fn scan_tokens(data: &[u8], hits: &mut Vec<Hit>) {
    let mut at = 0;
    while at < data.len() {
        let skip = match data[at] {
            b'-' => pem_private_key(data, at, hits),
            b'A' => aws_access_key(data, at, hits).max(google_api_key(data, at, hits)),
            b'g' => github_token(data, at, hits),
            b'x' => slack_token(data, at, hits),
            b'h' => slack_webhook(data, at, hits),
            _ => 0,
        };
        at += skip.max(1);
    }
}

/// `-----BEGIN <label>-----` with a private-key label, followed by a body:
/// after optional `Key: value` headers and a blank line, a line of at least
/// 40 base64 characters. (A BEGIN line quoted in source code is not a key.)
/// Returns how many bytes were consumed.
fn pem_private_key(data: &[u8], at: usize, hits: &mut Vec<Hit>) -> usize {
    const BEGIN: &[u8] = b"-----BEGIN ";
    if !data[at..].starts_with(BEGIN) {
        return 0;
    }
    let label_start = at + BEGIN.len();
    let label_len = run_len(data, label_start, |b| {
        b.is_ascii_uppercase() || b == b' ' || b.is_ascii_digit()
    });
    let label_end = label_start + label_len;
    if label_len > 48 || !data[label_end..].starts_with(b"-----") {
        return BEGIN.len();
    }
    let label = String::from_utf8_lossy(&data[label_start..label_end]).into_owned();
    let kind = if label == "OPENSSH PRIVATE KEY" {
        "OpenSSH private key".to_string()
    } else if label == "PGP PRIVATE KEY BLOCK" {
        "PGP private key block".to_string()
    } else if label == "PRIVATE KEY" {
        "PKCS#8 private key (PEM)".to_string()
    } else if let Some(algorithm) = label.strip_suffix(" PRIVATE KEY") {
        format!("{algorithm} private key (PEM)")
    } else {
        return label_end - at;
    };
    let body_start = label_end + 5;
    if !has_base64_body(&data[body_start..]) {
        return body_start - at;
    }
    hits.push(Hit {
        rule: PRIVATE_KEY,
        severity: Severity::High,
        what: kind,
        offset: at,
    });
    body_start - at
}

/// Whether what follows a BEGIN marker (the rest of its line, then lines)
/// looks like an armored body.
fn has_base64_body(after_marker: &[u8]) -> bool {
    let mut lines = after_marker
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    // The rest of the marker's own line must be empty.
    if lines
        .next()
        .is_some_and(|rest| !rest.iter().all(u8::is_ascii_whitespace))
    {
        return false;
    }
    for line in lines.take(6) {
        if line.is_empty() || line.contains(&b':') {
            continue;
        }
        return line.len() >= 40
            && line
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=');
    }
    false
}

/// `AKIA`/`ASIA` + 16 of `[0-9A-Z]`, as a whole word. AWS's documentation
/// placeholder (`...EXAMPLE`) is not a finding.
fn aws_access_key(data: &[u8], at: usize, hits: &mut Vec<Hit>) -> usize {
    let rest = &data[at..];
    if !(rest.starts_with(b"AKIA") || rest.starts_with(b"ASIA")) || !starts_word(data, at) {
        return 0;
    }
    let len = run_len(data, at, |b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if len != 20 || data.get(at + len).is_some_and(|&b| is_token_byte(b)) {
        return 0;
    }
    if rest[..20].ends_with(b"EXAMPLE") {
        return 20;
    }
    let prefix = String::from_utf8_lossy(&rest[..4]);
    hits.push(Hit {
        rule: AWS_ACCESS_KEY,
        severity: Severity::High,
        what: format!("AWS access key id {prefix}… (20 characters)"),
        offset: at,
    });
    20
}

/// `AIza` + 35 of `[0-9A-Za-z_-]`.
fn google_api_key(data: &[u8], at: usize, hits: &mut Vec<Hit>) -> usize {
    if !data[at..].starts_with(b"AIza") || !starts_word(data, at) {
        return 0;
    }
    let len = run_len(data, at + 4, |b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if len != 35 {
        return 0;
    }
    hits.push(Hit {
        rule: GOOGLE_API_KEY,
        severity: Severity::High,
        what: "Google API key AIza… (39 characters)".to_string(),
        offset: at,
    });
    39
}

/// `gh[pousr]_` + at least 36 alphanumerics, or `github_pat_` + at least 70
/// of `[0-9A-Za-z_]`.
fn github_token(data: &[u8], at: usize, hits: &mut Vec<Hit>) -> usize {
    if !starts_word(data, at) {
        return 0;
    }
    let rest = &data[at..];
    let (prefix_len, body_len) = if rest.starts_with(b"github_pat_") {
        (11, run_len(data, at + 11, |b| b.is_ascii_alphanumeric() || b == b'_'))
    } else if rest.len() > 4 && rest.starts_with(b"gh") && b"pousr".contains(&rest[2]) && rest[3] == b'_' {
        (4, run_len(data, at + 4, |b| b.is_ascii_alphanumeric()))
    } else {
        return 0;
    };
    let enough = if prefix_len == 11 {
        body_len >= 70
    } else {
        body_len >= 36
    };
    if !enough {
        return 0;
    }
    let prefix = String::from_utf8_lossy(&rest[..prefix_len]);
    hits.push(Hit {
        rule: GITHUB_TOKEN,
        severity: Severity::High,
        what: format!("GitHub token {prefix}… ({} characters)", prefix_len + body_len),
        offset: at,
    });
    prefix_len + body_len
}

/// `xox[abeoprs]-` + at least 10 of `[0-9A-Za-z-]`.
fn slack_token(data: &[u8], at: usize, hits: &mut Vec<Hit>) -> usize {
    let rest = &data[at..];
    if rest.len() < 5 || !rest.starts_with(b"xox") || !b"abeoprs".contains(&rest[3]) || rest[4] != b'-' {
        return 0;
    }
    if !starts_word(data, at) {
        return 0;
    }
    let body_len = run_len(data, at + 5, |b| b.is_ascii_alphanumeric() || b == b'-');
    if body_len < 10 {
        return 0;
    }
    let prefix = String::from_utf8_lossy(&rest[..5]);
    hits.push(Hit {
        rule: SLACK_TOKEN,
        severity: Severity::High,
        what: format!("Slack token {prefix}… ({} characters)", 5 + body_len),
        offset: at,
    });
    5 + body_len
}

/// `https://hooks.slack.com/services/T.../B.../...`.
fn slack_webhook(data: &[u8], at: usize, hits: &mut Vec<Hit>) -> usize {
    const PREFIX: &[u8] = b"https://hooks.slack.com/services/T";
    if !data[at..].starts_with(PREFIX) {
        return 0;
    }
    let path_len = run_len(data, at + PREFIX.len(), |b| b.is_ascii_alphanumeric() || b == b'/');
    // Workspace id / channel id / secret: two slashes and a real secret.
    let path = &data[at + PREFIX.len()..at + PREFIX.len() + path_len];
    if path.iter().filter(|&&b| b == b'/').count() < 2 || path_len < 30 {
        return PREFIX.len();
    }
    hits.push(Hit {
        rule: SLACK_WEBHOOK,
        severity: Severity::Medium,
        what: "Slack webhook URL https://hooks.slack.com/services/T…".to_string(),
        offset: at,
    });
    PREFIX.len() + path_len
}

/// Key names whose literal values are secrets. Matched case-insensitively,
/// as a whole key or as its `_`/`-`/`.`-separated suffix (`db_password`).
const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "client_secret",
    "api_key",
    "apikey",
    "api-key",
    "access_token",
    "auth_token",
    "token",
];

/// Values that stand for "no value here" rather than a secret.
const PLACEHOLDERS: &[&str] = &[
    "null",
    "none",
    "nil",
    "true",
    "false",
    "yes",
    "no",
    "changeme",
    "change_me",
    "example",
    "required",
    "optional",
    "empty",
    "secret",
    "password",
];

/// Line-oriented rules: AWS secret key assignments everywhere, generic
/// secret assignments in configuration files.
fn scan_lines(data: &[u8], config_file: bool, hits: &mut Vec<Hit>) {
    // Every AWS key name holds "secret": a file without it (most) needs no
    // line-by-line look unless it is a configuration file.
    if !config_file && !contains_ignoring_case(data, b"secret") {
        return;
    }
    let mut offset = 0;
    for line in data.split(|&b| b == b'\n') {
        let lower = line.to_ascii_lowercase();
        if let Some(at) = aws_secret_assignment(&lower, line) {
            hits.push(Hit {
                rule: AWS_SECRET_KEY,
                severity: Severity::Critical,
                what: "AWS secret access key assigned".to_string(),
                offset: offset + at,
            });
        } else if config_file {
            if let Some((at, key)) = secret_assignment(&lower, line) {
                hits.push(Hit {
                    rule: SECRET_ASSIGNMENT,
                    severity: Severity::Low,
                    what: format!("literal value assigned to `{key}`"),
                    offset: offset + at,
                });
            }
        }
        offset += line.len() + 1;
    }
}

/// Skips spaces, tabs and quotes from `at`.
fn skip_blanks(line: &[u8], mut at: usize) -> usize {
    while at < line.len() && matches!(line[at], b' ' | b'\t' | b'"' | b'\'') {
        at += 1;
    }
    at
}

/// After a key ending at `key_end`: optional quotes and blanks, `=` or `:`,
/// blanks and quotes. Returns where the value starts.
fn value_start(line: &[u8], key_end: usize) -> Option<usize> {
    let at = skip_blanks(line, key_end);
    match line.get(at) {
        Some(b'=') | Some(b':') => Some(skip_blanks(line, at + 1)),
        _ => None,
    }
}

/// `aws_secret_access_key = <40 chars of [A-Za-z0-9/+=]>` (also with `-`,
/// or `secretaccesskey`). Returns the offset of the key in the line.
fn aws_secret_assignment(lower: &[u8], line: &[u8]) -> Option<usize> {
    for key in [
        &b"aws_secret_access_key"[..],
        b"aws-secret-access-key",
        b"secretaccesskey",
    ] {
        let Some(at) = find(lower, key) else {
            continue;
        };
        let start = value_start(line, at + key.len())?;
        let len = run_len(line, start, |b| {
            b.is_ascii_alphanumeric() || b == b'/' || b == b'+' || b == b'='
        });
        if len == 40 && !line.get(start + len).is_some_and(|&b| is_token_byte(b)) {
            return Some(at);
        }
    }
    None
}

/// `<key> = <literal>` for a key in [`SECRET_KEYS`]. Returns the offset and
/// the key as written (a name, never the value).
fn secret_assignment(lower: &[u8], line: &[u8]) -> Option<(usize, String)> {
    let trimmed = skip_blanks(lower, 0);
    if matches!(lower.get(trimmed), Some(b'#') | Some(b';')) || lower[trimmed..].starts_with(b"//") {
        return None;
    }
    for key in SECRET_KEYS {
        let mut from = 0;
        while let Some(found) = find(&lower[from..], key.as_bytes()) {
            let at = from + found;
            from = at + key.len();
            // The key must be a whole name or its last `_`/`-`/`.` part.
            if at > 0 && lower[at - 1].is_ascii_alphanumeric() {
                continue;
            }
            let key_start = run_back(lower, at);
            if lower.get(from).is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_') {
                continue;
            }
            let Some(start) = value_start(line, from) else {
                continue;
            };
            let value_len = run_len(line, start, |b| {
                !matches!(b, b'"' | b'\'' | b',' | b'\r' | b' ' | b'\t')
            });
            let value = &line[start..start + value_len];
            if is_literal_secret(value) {
                let name = String::from_utf8_lossy(&line[key_start..from]).into_owned();
                return Some((key_start, name));
            }
        }
    }
    None
}

/// Where the name around `at` starts (back over `[A-Za-z0-9_.-]`).
fn run_back(lower: &[u8], at: usize) -> usize {
    let mut start = at;
    while start > 0 && (lower[start - 1].is_ascii_alphanumeric() || matches!(lower[start - 1], b'_' | b'-' | b'.')) {
        start -= 1;
    }
    start
}

/// Whether `value` looks like a real secret rather than a reference
/// (`${VAR}`, `%(x)s`, `<password>`, `{{ .x }}`), a placeholder or a mask.
fn is_literal_secret(value: &[u8]) -> bool {
    if value.len() < 4 {
        return false;
    }
    if matches!(value[0], b'$' | b'%' | b'<' | b'{' | b'[' | b'/' | b'(') {
        return false;
    }
    if value.iter().all(|&b| b == value[0]) {
        return false;
    }
    let lower = value.to_ascii_lowercase();
    !PLACEHOLDERS.iter().any(|placeholder| lower == placeholder.as_bytes())
}

/// Whether a file name is a configuration file that may hold assignments.
fn is_config_file(name: &str) -> bool {
    const NAMES: &[&str] = &[
        ".env",
        ".npmrc",
        ".pypirc",
        ".netrc",
        ".git-credentials",
        "credentials",
        "config",
    ];
    const EXTENSIONS: &[&str] = &[
        "conf",
        "cfg",
        "cnf",
        "ini",
        "env",
        "properties",
        "yaml",
        "yml",
        "json",
        "toml",
        "xml",
        "config",
    ];
    let lower = name.to_ascii_lowercase();
    NAMES.contains(&lower.as_str())
        || lower.starts_with(".env.")
        || lower
            .rsplit_once('.')
            .is_some_and(|(stem, extension)| !stem.is_empty() && EXTENSIONS.contains(&extension))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// Whether `haystack` holds `needle` (lower case) in any case.
fn contains_ignoring_case(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    let upper = first.to_ascii_uppercase();
    haystack.iter().enumerate().any(|(at, &b)| {
        (b == first || b == upper)
            && haystack
                .get(at + 1..at + needle.len())
                .is_some_and(|tail| tail.eq_ignore_ascii_case(rest))
    })
}

berth_plugin_sdk::export_check!(Secrets);
