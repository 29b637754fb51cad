//! The host id range that container root maps to: the `berth` entry of
//! /etc/subuid and /etc/subgid when present, else a built-in default.

use std::path::Path;

/// First host uid/gid of the default range, far above ordinary users and
/// the ranges `useradd` hands out from /etc/subuid (100000 upwards).
pub const DEFAULT_BASE: u32 = 1_000_000_000;
pub const DEFAULT_SIZE: u32 = 65536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub uid_base: u32,
    pub gid_base: u32,
    pub size: u32,
}

impl IdMap {
    pub fn from_system() -> Self {
        Self::from_files(Path::new("/etc/subuid"), Path::new("/etc/subgid"))
    }

    pub fn from_files(subuid: &Path, subgid: &Path) -> Self {
        let uid = std::fs::read_to_string(subuid)
            .ok()
            .and_then(|s| find_range(&s, "berth"));
        let gid = std::fs::read_to_string(subgid)
            .ok()
            .and_then(|s| find_range(&s, "berth"));
        match (uid, gid) {
            (Some((u, us)), Some((g, gs))) => Self {
                uid_base: u,
                gid_base: g,
                size: us.min(gs),
            },
            _ => Self {
                uid_base: DEFAULT_BASE,
                gid_base: DEFAULT_BASE,
                size: DEFAULT_SIZE,
            },
        }
    }
}

/// Finds `name:start:count` in a subuid/subgid file.
fn find_range(contents: &str, name: &str) -> Option<(u32, u32)> {
    contents.lines().find_map(|line| {
        let mut parts = line.trim().split(':');
        if parts.next()? != name {
            return None;
        }
        let start = parts.next()?.parse().ok()?;
        let count: u32 = parts.next()?.parse().ok()?;
        (count > 0).then_some((start, count))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subuid_entry_or_default() {
        let dir = tempfile::tempdir().unwrap();
        let (u, g) = (dir.path().join("subuid"), dir.path().join("subgid"));
        assert_eq!(IdMap::from_files(&u, &g).uid_base, DEFAULT_BASE);
        std::fs::write(&u, "alice:100000:65536\nberth:200000:65536\n").unwrap();
        std::fs::write(&g, "berth:300000:1000\n").unwrap();
        assert_eq!(
            IdMap::from_files(&u, &g),
            IdMap {
                uid_base: 200000,
                gid_base: 300000,
                size: 1000
            }
        );
        std::fs::write(&g, "berth:garbage\n").unwrap();
        assert_eq!(IdMap::from_files(&u, &g).uid_base, DEFAULT_BASE);
    }
}
