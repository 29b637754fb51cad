//! Reading a container's resource use from its cgroup, on cgroup v1, v2 and
//! hybrid hosts (v1 controllers plus an empty unified mount).

use std::path::{Path, PathBuf};

/// Where the cgroup files of one controller live for `cgroups_path` (e.g. `/berth/<id>`).
fn v1_dir(controller: &str, cgroups_path: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup")
        .join(controller)
        .join(cgroups_path.trim_start_matches('/'))
}

fn v2_dir(cgroups_path: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup").join(cgroups_path.trim_start_matches('/'))
}

pub fn is_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

fn read_limit(p: &Path) -> Option<u64> {
    let s = std::fs::read_to_string(p).ok()?;
    let s = s.trim();
    if s == "max" {
        return None;
    }
    let v: u64 = s.parse().ok()?;
    // v1 reports "unlimited" as a huge page-aligned number.
    (v < (1u64 << 62)).then_some(v)
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Usage {
    pub cpu_ns: u64,
    pub memory: u64,
    pub memory_limit: Option<u64>,
    pub pids: u64,
    pub pids_limit: Option<u64>,
}

pub fn usage(cgroups_path: &str) -> Option<Usage> {
    if is_v2() {
        let d = v2_dir(cgroups_path);
        if !d.exists() {
            return None;
        }
        let cpu_us = std::fs::read_to_string(d.join("cpu.stat"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("usage_usec ")?.trim().parse::<u64>().ok())
            })
            .unwrap_or(0);
        Some(Usage {
            cpu_ns: cpu_us * 1000,
            memory: read_u64(&d.join("memory.current")).unwrap_or(0),
            memory_limit: read_limit(&d.join("memory.max")),
            pids: read_u64(&d.join("pids.current")).unwrap_or(0),
            pids_limit: read_limit(&d.join("pids.max")),
        })
    } else {
        let mem = v1_dir("memory", cgroups_path);
        if !mem.exists() && !v1_dir("pids", cgroups_path).exists() {
            return None;
        }
        Some(Usage {
            cpu_ns: read_u64(&v1_dir("cpuacct", cgroups_path).join("cpuacct.usage")).unwrap_or(0),
            memory: read_u64(&mem.join("memory.usage_in_bytes")).unwrap_or(0),
            memory_limit: read_limit(&mem.join("memory.limit_in_bytes")),
            pids: read_u64(&v1_dir("pids", cgroups_path).join("pids.current")).unwrap_or(0),
            pids_limit: read_limit(&v1_dir("pids", cgroups_path).join("pids.max")),
        })
    }
}

/// Every cgroup directory berth made under `parent` (e.g. `/berth`), by container id,
/// for the leak sweep at start-up.
pub fn list_children(parent: &str) -> Vec<String> {
    let dirs: Vec<PathBuf> = if is_v2() {
        vec![v2_dir(parent)]
    } else {
        [
            "memory", "pids", "cpu", "cpuacct", "devices", "freezer", "blkio", "cpuset",
        ]
        .iter()
        .map(|c| v1_dir(c, parent))
        .collect()
    };
    let mut ids: Vec<String> = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Removes an (empty) container cgroup everywhere; processes must be gone.
pub fn remove(cgroups_path: &str) {
    if is_v2() {
        let _ = std::fs::remove_dir(v2_dir(cgroups_path));
        return;
    }
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in entries.flatten() {
            let d = e.path().join(cgroups_path.trim_start_matches('/'));
            if d.exists() {
                let _ = std::fs::remove_dir(&d);
            }
        }
    }
}

/// The `cgroup.procs` files of a container's cgroup, one per hierarchy it has.
pub fn procs_files(cgroups_path: &str) -> Vec<PathBuf> {
    let rel = cgroups_path.trim_start_matches('/');
    if is_v2() {
        return vec![v2_dir(cgroups_path).join("cgroup.procs")];
    }
    std::fs::read_dir("/sys/fs/cgroup")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path().join(rel).join("cgroup.procs"))
                .filter(|p| p.exists())
                .collect()
        })
        .unwrap_or_default()
}
