//! The OCI runtime spec (config.json) for a container: namespaces, user
//! namespace mappings, capabilities, seccomp, masked paths, mounts, limits.

use serde_json::{json, Value};

use berth_model::{Bind, ProcessConfig, Resources};

use crate::idmap::IdMap;
use crate::seccomp;

/// Docker's default capability set.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Kernel interfaces hidden from containers (bind-mounted over with /dev/null or an empty tmpfs).
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

pub const READONLY_PATHS: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Every capability, for `--privileged`.
const ALL_CAPS: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

const CPU_PERIOD_US: u64 = 100_000;

/// Every capability the daemon itself may hold (its bounding set): asking
/// for more makes the kernel refuse the container's capset.
fn privileged_caps() -> Vec<&'static str> {
    let bounding = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:").map(|v| v.trim().to_string()))
        })
        .and_then(|hex| u64::from_str_radix(&hex, 16).ok())
        .unwrap_or(u64::MAX);
    ALL_CAPS
        .iter()
        .enumerate()
        .filter(|(bit, _)| bounding & (1u64 << bit) != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// What the spec needs to know about one container.
pub struct SpecInput<'a> {
    pub id: &'a str,
    pub rootfs: &'a str,
    pub process: &'a ProcessConfig,
    pub hostname: &'a str,
    pub tty: bool,
    pub read_only: bool,
    pub privileged: bool,
    /// `None` runs in the host user namespace (`--userns host` or `--privileged`).
    pub userns: Option<IdMap>,
    pub resources: &'a Resources,
    pub binds: &'a [Bind],
    /// Files berth writes for the container (hosts, hostname), bind-mounted read-only.
    pub etc_files: &'a [(String, String)],
    pub cgroups_path: &'a str,
}

pub fn build(input: &SpecInput) -> Value {
    let caps: Vec<&str> = if input.privileged {
        privileged_caps()
    } else {
        DEFAULT_CAPS.to_vec()
    };
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "network"}),
    ];
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", if input.privileged { "rw" } else { "ro" }]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    ];
    if !input.privileged {
        // gid 5 is "tty" in the image; only meaningful when mapped.
        mounts[2]["options"].as_array_mut().expect("array").push(json!("gid=5"));
    }
    for (source, target) in input.etc_files {
        mounts.push(
            json!({"destination": target, "type": "bind", "source": source, "options": ["rbind", "rprivate", "ro"]}),
        );
    }
    for b in input.binds {
        let mut options = vec!["rbind", "rprivate"];
        if b.read_only {
            options.push("ro");
        }
        mounts.push(json!({"destination": b.target, "type": "bind", "source": b.source, "options": options}));
    }
    let mut linux = json!({
        "cgroupsPath": input.cgroups_path,
        "resources": resources(input.resources),
        "namespaces": [],
    });
    if let Some(map) = input.userns {
        namespaces.push(json!({"type": "user"}));
        linux["uidMappings"] = json!([{"containerID": 0, "hostID": map.uid_base, "size": map.size}]);
        linux["gidMappings"] = json!([{"containerID": 0, "hostID": map.gid_base, "size": map.size}]);
    }
    if !input.privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
        linux["seccomp"] = seccomp::default_profile();
    }
    linux["namespaces"] = Value::Array(namespaces);
    let p = input.process;
    let mut user = json!({"uid": p.uid, "gid": p.gid});
    if !p.additional_gids.is_empty() {
        user["additionalGids"] = json!(p.additional_gids);
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": input.tty,
            "user": user,
            "args": p.args,
            "env": p.env,
            "cwd": if p.cwd.is_empty() { "/" } else { &p.cwd },
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1048576u64.min(hard_nofile()), "soft": 1024u64.min(hard_nofile())}],
            "noNewPrivileges": !input.privileged,
        },
        "root": {"path": input.rootfs, "readonly": input.read_only},
        "hostname": input.hostname,
        "mounts": mounts,
        "linux": linux,
    })
}

/// Never ask for more open files than this host allows (the hard limit here is 20000).
fn hard_nofile() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0 {
        rl.rlim_max
    } else {
        1024
    }
}

fn resources(r: &Resources) -> Value {
    let mut v = json!({
        "devices": [{"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
            {"allow": true, "type": "c", "major": 136, "access": "rwm"}],
    });
    if let Some(m) = r.memory_bytes {
        // swap = limit: no swap beyond the memory limit.
        v["memory"] = json!({"limit": m, "swap": m});
    }
    if let Some(n) = r.nano_cpus {
        v["cpu"] = json!({"quota": (n * CPU_PERIOD_US / 1_000_000_000).max(1000), "period": CPU_PERIOD_US});
    }
    if let Some(p) = r.pids_limit {
        v["pids"] = json!({"limit": p});
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(p: &'a ProcessConfig, r: &'a Resources, privileged: bool) -> SpecInput<'a> {
        SpecInput {
            id: "abc",
            rootfs: "/r",
            process: p,
            hostname: "h",
            tty: false,
            read_only: false,
            privileged,
            userns: if privileged {
                None
            } else {
                Some(IdMap {
                    uid_base: 7,
                    gid_base: 8,
                    size: 9,
                })
            },
            resources: r,
            binds: &[],
            etc_files: &[],
            cgroups_path: "/berth/abc",
        }
    }

    #[test]
    fn default_spec_is_confined_and_loads_as_oci() {
        let p = ProcessConfig {
            args: vec!["sh".into()],
            ..Default::default()
        };
        let r = Resources {
            memory_bytes: Some(64 << 20),
            nano_cpus: Some(500_000_000),
            pids_limit: Some(10),
        };
        let v = build(&input(&p, &r, false));
        let spec: oci_spec::runtime::Spec = serde_json::from_value(v.clone()).expect("valid OCI spec");
        let linux = spec.linux().as_ref().unwrap();
        assert_eq!(linux.uid_mappings().as_ref().unwrap()[0].host_id(), 7);
        assert!(linux.seccomp().is_some());
        assert_eq!(v["process"]["noNewPrivileges"], true);
        assert_eq!(v["process"]["capabilities"]["bounding"].as_array().unwrap().len(), 14);
        assert_eq!(v["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(v["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert!(v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "user"));
    }

    #[test]
    fn privileged_opts_out() {
        let p = ProcessConfig::default();
        let v = build(&input(&p, &Resources::default(), true));
        assert!(v["linux"]["seccomp"].is_null());
        assert!(v["linux"]["maskedPaths"].is_null());
        assert_eq!(v["process"]["noNewPrivileges"], false);
        assert!(!v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "user"));
    }
}
