//! The `file-permissions` check: setuid and setgid files (rated by who owns
//! them and whether they are the usual suspects) and world-writable files and
//! directories (directories are fine when the sticky bit is set, as on /tmp).

use berth_plugin_sdk::{
    describe_fs_error, walk, CheckInfo, DirEntry, FileKind, Finding, Guest, ImageInfo, RuleInfo, Severity,
};

struct FilePermissions;

const SETUID: &str = "setuid";
const SETGID: &str = "setgid";
const WORLD_WRITABLE_FILE: &str = "world-writable-file";
const WORLD_WRITABLE_DIR: &str = "world-writable-dir";

const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;
const S_ISVTX: u32 = 0o1000;
const S_IWOTH: u32 = 0o0002;

/// Setuid/setgid programs that distributions ship on purpose; still reported,
/// at low severity, since each is attack surface a container rarely needs.
const EXPECTED_PRIVILEGED: &[&str] = &[
    "chage",
    "chfn",
    "chsh",
    "dbus-daemon-launch-helper",
    "expiry",
    "gpasswd",
    "mount",
    "newgrp",
    "passwd",
    "ping",
    "ping6",
    "pkexec",
    "ssh-agent",
    "ssh-keysign",
    "su",
    "sudo",
    "umount",
    "unix_chkpwd",
    "wall",
    "write",
    "crontab",
    "fusermount",
    "fusermount3",
];

/// Kernel-provided trees that images may carry as empty mount points.
const SKIPPED_TREES: &[&str] = &["/proc", "/sys", "/dev"];

impl Guest for FilePermissions {
    fn describe() -> CheckInfo {
        CheckInfo {
            name: "file-permissions".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: env!("CARGO_PKG_DESCRIPTION").to_string(),
            rules: vec![
                RuleInfo::new(
                    SETUID,
                    Severity::High,
                    "a setuid file: high when owned by root and not a usual setuid program, medium when owned by another user, low for the usual ones",
                ),
                RuleInfo::new(
                    SETGID,
                    Severity::Medium,
                    "a setgid file: medium when its group is root, low otherwise or for the usual ones",
                ),
                RuleInfo::new(WORLD_WRITABLE_FILE, Severity::Medium, "a regular file anyone may write"),
                RuleInfo::new(
                    WORLD_WRITABLE_DIR,
                    Severity::Medium,
                    "a directory anyone may write without the sticky bit, so anyone may delete or replace others' files",
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
                if !SKIPPED_TREES.iter().any(|tree| within(path, tree)) {
                    check_entry(path, entry, &mut findings);
                }
            },
            // A subdirectory that cannot be listed is skipped; the root must be listable.
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

fn check_entry(path: &str, entry: &DirEntry, findings: &mut Vec<Finding>) {
    let mode = entry.mode;
    match entry.kind {
        FileKind::File => {
            let expected = EXPECTED_PRIVILEGED.contains(&entry.name.as_str());
            if mode & S_ISUID != 0 {
                let (severity, whose) = match (entry.uid, expected) {
                    (0, false) => (Severity::High, "root".to_string()),
                    (0, true) => (Severity::Low, "root (a usual setuid program)".to_string()),
                    (uid, _) => (Severity::Medium, format!("uid {uid}")),
                };
                findings.push(Finding::new(
                    SETUID,
                    severity,
                    format!("setuid file (mode {:04o}) runs as {whose}", mode & 0o7777),
                    Some(path),
                ));
            }
            if mode & S_ISGID != 0 {
                let severity = if entry.gid == 0 && !expected {
                    Severity::Medium
                } else {
                    Severity::Low
                };
                findings.push(Finding::new(
                    SETGID,
                    severity,
                    format!("setgid file (mode {:04o}) runs with gid {}", mode & 0o7777, entry.gid),
                    Some(path),
                ));
            }
            if mode & S_IWOTH != 0 {
                findings.push(Finding::new(
                    WORLD_WRITABLE_FILE,
                    Severity::Medium,
                    format!("world-writable file (mode {:04o})", mode & 0o7777),
                    Some(path),
                ));
            }
        }
        FileKind::Dir => {
            if mode & S_IWOTH != 0 && mode & S_ISVTX == 0 {
                findings.push(Finding::new(
                    WORLD_WRITABLE_DIR,
                    Severity::Medium,
                    format!(
                        "world-writable directory without the sticky bit (mode {:04o})",
                        mode & 0o7777
                    ),
                    Some(path),
                ));
            }
        }
        // Symlinks are always 0777 and devices live under /dev: neither is a finding.
        FileKind::Symlink | FileKind::Other => {}
    }
}

berth_plugin_sdk::export_check!(FilePermissions);
