//! `berth-probe` prints one JSON object describing the process it runs as:
//! its user and group mappings, capabilities, seccomp and no_new_privs state,
//! cgroup limits, mounts, masked paths and network interfaces. End-to-end tests
//! run it inside a container (it ships in the test image as
//! `/usr/local/bin/berth-probe`) and assert on what it saw from the inside.
//!
//! It is built statically and uses only `std`, so it runs in any root
//! filesystem. A file it cannot read becomes `null`; it never panics on what
//! the kernel gives it.

#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// Paths a runtime is expected to mask (OCI `maskedPaths` defaults of runc and docker).
const MASKED_PATHS: &[&str] = &[
    "/proc/kcore",
    "/proc/keys",
    "/proc/timer_list",
    "/proc/sched_debug",
    "/sys/firmware",
];

/// `makedev(1, 3)`: the device number of `/dev/null`.
const DEV_NULL_RDEV: u64 = (1 << 8) | 3;

fn main() {
    let report = probe();
    println!("{}", report.to_json());
}

fn probe() -> Json {
    let status = read_text("/proc/self/status");
    let status = status.as_deref();
    let mountinfo = read_text("/proc/self/mountinfo");
    let mounts = mountinfo.as_deref().map(parse_mountinfo);

    Json::object([
        ("pid", Json::Number(u64::from(std::process::id()))),
        ("uid", status_id(status, "Uid:")),
        ("gid", status_id(status, "Gid:")),
        ("uid_map", Json::opt_string(read_text("/proc/self/uid_map"))),
        ("gid_map", Json::opt_string(read_text("/proc/self/gid_map"))),
        (
            "cap_eff",
            Json::opt_string(status.and_then(|s| status_field(s, "CapEff:"))),
        ),
        ("seccomp", status_number(status, "Seccomp:")),
        ("no_new_privs", status_number(status, "NoNewPrivs:")),
        ("hostname", Json::opt_string(read_trimmed("/proc/sys/kernel/hostname"))),
        ("cgroup", Json::opt_string(read_text("/proc/self/cgroup"))),
        (
            "memory_limit",
            Json::opt_string(first_readable(&[
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "/sys/fs/cgroup/memory.max",
            ])),
        ),
        (
            "pids_limit",
            Json::opt_string(first_readable(&[
                "/sys/fs/cgroup/pids/pids.max",
                "/sys/fs/cgroup/pids.max",
            ])),
        ),
        ("cpu_quota", Json::opt_string(cpu_quota())),
        (
            "mounts",
            match &mounts {
                Some(mounts) => Json::Array(mounts.iter().map(Mount::to_json).collect()),
                None => Json::Null,
            },
        ),
        ("sys_read_only", Json::opt_bool(sys_read_only())),
        (
            "masked",
            Json::Object(
                MASKED_PATHS
                    .iter()
                    .map(|path| (path.to_string(), Json::opt_bool(is_masked(Path::new(path)))))
                    .collect(),
            ),
        ),
        (
            "net_interfaces",
            match read_text("/proc/net/dev") {
                Some(text) => Json::Array(parse_net_dev(&text).into_iter().map(Json::String).collect()),
                None => Json::Null,
            },
        ),
    ])
}

fn read_text(path: &str) -> Option<String> {
    fs::read_to_string(path).ok()
}

fn read_trimmed(path: &str) -> Option<String> {
    read_text(path).map(|text| text.trim().to_string())
}

fn first_readable(paths: &[&str]) -> Option<String> {
    paths.iter().find_map(|path| read_trimmed(path))
}

/// The CFS quota as `"<quota> <period>"`, the format of cgroup v2 `cpu.max`;
/// v1 keeps the two numbers in separate files (quota `-1` means no limit).
fn cpu_quota() -> Option<String> {
    let v1 =
        read_trimmed("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").zip(read_trimmed("/sys/fs/cgroup/cpu/cpu.cfs_period_us"));
    match v1 {
        Some((quota, period)) => Some(format!("{quota} {period}")),
        None => read_trimmed("/sys/fs/cgroup/cpu.max"),
    }
}

/// The value of a `Name:\tvalue` line of `/proc/self/status`.
fn status_field(status: &str, name: &str) -> Option<String> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .map(|value| value.trim().to_string())
}

fn status_number(status: Option<&str>, name: &str) -> Json {
    status
        .and_then(|s| status_field(s, name))
        .and_then(|value| value.parse().ok())
        .map_or(Json::Null, Json::Number)
}

/// The effective id from a `Uid:`/`Gid:` line (real, effective, saved, fs).
fn status_id(status: Option<&str>, name: &str) -> Json {
    status
        .and_then(|s| status_field(s, name))
        .and_then(|value| value.split_whitespace().nth(1)?.parse().ok())
        .map_or(Json::Null, Json::Number)
}

#[derive(Debug, PartialEq)]
struct Mount {
    mount_point: String,
    fs_type: String,
    source: String,
    options: String,
    super_options: String,
}

impl Mount {
    fn to_json(&self) -> Json {
        Json::object([
            ("mount_point", Json::String(self.mount_point.clone())),
            ("fs_type", Json::String(self.fs_type.clone())),
            ("source", Json::String(self.source.clone())),
            ("options", Json::String(self.options.clone())),
            ("super_options", Json::String(self.super_options.clone())),
        ])
    }
}

/// Parses `/proc/self/mountinfo` (proc(5)): `id parent maj:min root mount_point
/// options [optional fields...] - fs_type source super_options`. Lines that do
/// not have that shape are skipped.
fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_mountinfo_line).collect()
}

fn parse_mountinfo_line(line: &str) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    let before: Vec<&str> = before.split(' ').collect();
    let mut after = after.split(' ');
    Some(Mount {
        mount_point: unescape_octal(before.get(4)?),
        options: before.get(5)?.to_string(),
        fs_type: after.next()?.to_string(),
        source: unescape_octal(after.next()?),
        super_options: after.next().unwrap_or_default().to_string(),
    })
}

/// Undoes the kernel's `\ooo` escaping of space, tab, newline and backslash.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        match escaped {
            Some(digits) => {
                let value = digits.iter().fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Interface names from `/proc/net/dev` (two header lines, then `name: counters`).
fn parse_net_dev(text: &str) -> Vec<String> {
    text.lines()
        .skip(2)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, _)| name.trim().to_string())
        .collect()
}

/// Whether `/sys` refuses writes because it is mounted read-only. A directory
/// cannot be created in a sysfs root even when it is writable, so only
/// `EROFS` (checked by the kernel before anything else) means read-only.
/// `None` when there is no `/sys` at all.
fn sys_read_only() -> Option<bool> {
    let probe_dir = Path::new("/sys/.berth-probe");
    match fs::create_dir(probe_dir) {
        Ok(()) => {
            // Not sysfs (a plain directory?): writable; leave no trace.
            let _ = fs::remove_dir(probe_dir);
            Some(false)
        }
        Err(err) if err.kind() == io::ErrorKind::ReadOnlyFilesystem => Some(true),
        Err(err) if err.kind() == io::ErrorKind::NotFound => None,
        Err(_) => Some(false),
    }
}

/// Whether `path` is hidden from the process: `/dev/null` bound over a file,
/// an empty directory (an empty tmpfs over it), or a file that reads as empty.
/// `None` when the path does not exist at all.
fn is_masked(path: &Path) -> Option<bool> {
    let meta = fs::metadata(path).ok()?;
    let file_type = meta.file_type();
    if file_type.is_char_device() {
        return Some(meta.rdev() == DEV_NULL_RDEV);
    }
    if file_type.is_dir() {
        return Some(match fs::read_dir(path) {
            Ok(mut entries) => entries.next().is_none(),
            Err(_) => true,
        });
    }
    let mut first_byte = [0u8; 1];
    Some(match fs::File::open(path).and_then(|mut f| f.read(&mut first_byte)) {
        Ok(read) => read == 0,
        // Unreadable is hidden too, as far as this process is concerned.
        Err(_) => true,
    })
}

/// Just enough JSON to print the report, so the probe needs no dependencies.
#[derive(Debug)]
enum Json {
    Null,
    Bool(bool),
    Number(u64),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn object<const N: usize>(fields: [(&str, Json); N]) -> Json {
        Json::Object(
            fields
                .into_iter()
                .map(|(key, value)| (key.to_string(), value))
                .collect(),
        )
    }

    fn opt_string(value: Option<String>) -> Json {
        value.map_or(Json::Null, Json::String)
    }

    fn opt_bool(value: Option<bool>) -> Json {
        value.map_or(Json::Null, Json::Bool)
    }

    fn to_json(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(value) => out.push_str(if *value { "true" } else { "false" }),
            Json::Number(value) => {
                let _ = write!(out, "{value}");
            }
            Json::String(value) => write_json_string(value, out),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Object(fields) => {
                out.push('{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_json_string(key, out);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }
}

fn write_json_string(value: &str, out: &mut String) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_with_and_without_optional_fields() {
        let text = "\
22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw
600 599 0:50 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
601 599 0:51 / /my\\040dir rw master:1 shared:2 - tmpfs tm\\134p rw,size=65536k
garbage line without separator
";
        let mounts = parse_mountinfo(text);
        assert_eq!(mounts.len(), 3);
        assert_eq!(
            mounts[0],
            Mount {
                mount_point: "/proc".into(),
                fs_type: "proc".into(),
                source: "proc".into(),
                options: "rw,nosuid,nodev,noexec,relatime".into(),
                super_options: "rw".into(),
            }
        );
        assert_eq!(mounts[1].fs_type, "sysfs");
        assert!(mounts[1].options.starts_with("ro,"));
        assert_eq!(mounts[2].mount_point, "/my dir");
        assert_eq!(mounts[2].source, "tm\\p");
        assert_eq!(mounts[2].super_options, "rw,size=65536k");
    }

    #[test]
    fn unescape_leaves_incomplete_escapes_alone() {
        assert_eq!(unescape_octal("a\\04"), "a\\04");
        assert_eq!(unescape_octal("a\\011b"), "a\tb");
        assert_eq!(unescape_octal("plain"), "plain");
    }

    #[test]
    fn net_dev_names() {
        let text = "\
Inter-|   Receive                            |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes
    lo:  123 4 0 0 0 0 0 0 123 4 0 0 0 0 0 0
  eth0: 999 9 0 0 0 0 0 0 999 9 0 0 0 0 0 0
";
        assert_eq!(parse_net_dev(text), ["lo", "eth0"]);
    }

    #[test]
    fn status_fields() {
        let status = "Name:\tprobe\nUid:\t1000\t0\t0\t0\nGid:\t5\t6\t6\t6\nCapEff:\t00000000a80425fb\nNoNewPrivs:\t1\nSeccomp:\t2\n";
        assert_eq!(status_field(status, "CapEff:").as_deref(), Some("00000000a80425fb"));
        assert!(matches!(status_id(Some(status), "Uid:"), Json::Number(0)));
        assert!(matches!(status_id(Some(status), "Gid:"), Json::Number(6)));
        assert!(matches!(status_number(Some(status), "Seccomp:"), Json::Number(2)));
        assert!(matches!(status_number(Some(status), "NoNewPrivs:"), Json::Number(1)));
        assert!(matches!(status_number(None, "Seccomp:"), Json::Null));
        assert!(matches!(status_number(Some(status), "Missing:"), Json::Null));
    }

    #[test]
    fn json_escaping() {
        let value = Json::object([
            ("s", Json::String("a\"b\\c\nd\u{1}".into())),
            ("n", Json::Null),
            ("list", Json::Array(vec![Json::Bool(true), Json::Number(7)])),
        ]);
        assert_eq!(value.to_json(), r#"{"s":"a\"b\\c\nd\u0001","n":null,"list":[true,7]}"#);
    }

    #[test]
    fn masked_detects_dev_null_and_empty_dirs() {
        assert_eq!(is_masked(Path::new("/dev/null")), Some(true));
        assert_eq!(is_masked(Path::new("/nonexistent/berth-probe")), None);
        let dir = std::env::temp_dir().join(format!("berth-probe-test-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("create temp dir");
        assert_eq!(is_masked(&dir), Some(true));
        fs::write(dir.join("file"), "x").expect("write temp file");
        assert_eq!(is_masked(&dir), Some(false));
        assert_eq!(is_masked(&dir.join("file")), Some(false));
        fs::remove_dir_all(&dir).expect("remove temp dir");
    }
}
