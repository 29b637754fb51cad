//! Looking at files inside a container's root filesystem from the host
//! without following symlinks out of it (openat2 with RESOLVE_IN_ROOT), to
//! resolve `--user` names and to check that the command exists.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::Error;

/// Opens `path` (absolute, as seen inside the container) relative to `root`,
/// resolving every symlink as if `root` were `/`.
pub fn open_in_root(root: &Path, path: &str, flags: i32) -> std::io::Result<File> {
    let root_dir = File::open(root)?;
    let c_path = std::ffi::CString::new(path.trim_start_matches('/'))
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has a NUL byte"))?;
    // SAFETY: open_how is plain old data; all-zero is valid.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: root_dir is a valid open directory fd, c_path a valid C string, and
    // `how` a fully initialised open_how whose size we pass.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root_dir.as_raw_fd(),
            c_path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a new fd that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
}

fn read_in_root(root: &Path, path: &str) -> Option<String> {
    let mut f = open_in_root(root, path, libc::O_RDONLY).ok()?;
    let mut s = String::new();
    f.by_ref().take(4 << 20).read_to_string(&mut s).ok()?;
    Some(s)
}

/// The uid, gid and supplementary gids for a `--user` value (`name`, `uid`,
/// `name:group`, `uid:gid`), looked up in the image's /etc/passwd and /etc/group.
pub fn resolve_user(root: &Path, user: &str) -> Result<(u32, u32, Vec<u32>), Error> {
    let passwd = read_in_root(root, "/etc/passwd").unwrap_or_default();
    let group = read_in_root(root, "/etc/group").unwrap_or_default();
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (if user.is_empty() { "0" } else { user }, None),
    };
    let passwd_entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && (f[0] == u || (u.parse::<u32>().is_ok() && f[2] == u)));
    let (uid, primary_gid, user_name) = match (&passwd_entry, u.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse()
                .map_err(|_| Error::User(format!("bad uid in /etc/passwd for {u:?}")))?,
            f[3].parse()
                .map_err(|_| Error::User(format!("bad gid in /etc/passwd for {u:?}")))?,
            Some(f[0].to_string()),
        ),
        (None, Ok(uid)) => (uid, 0, None),
        (None, Err(_)) => {
            return Err(Error::User(format!(
                "unable to find user {u}: no matching entries in passwd file"
            )))
        }
    };
    let groups: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect())
        .filter(|f: &Vec<&str>| f.len() >= 3)
        .collect();
    let gid = match g {
        None => primary_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| Error::User(format!("unable to find group {g}: no matching entries in group file")))?,
        },
    };
    let mut extra = Vec::new();
    if let (Some(name), None) = (&user_name, g) {
        for f in &groups {
            if f.len() >= 4 && f[3].split(',').any(|m| m == name) {
                if let Ok(n) = f[2].parse::<u32>() {
                    if n != gid && !extra.contains(&n) {
                        extra.push(n);
                    }
                }
            }
        }
    }
    Ok((uid, gid, extra))
}

/// Checks that `cmd` names an executable file inside `root`, searching `PATH`
/// from `env` when it has no slash; returns the error Docker users know.
pub fn check_executable(root: &Path, cmd: &str, env: &[String], cwd: &str) -> Result<(), Error> {
    let is_exec = |p: &str| {
        open_in_root(root, p, libc::O_PATH)
            .and_then(|f| f.metadata())
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if cmd.contains('/') {
        let full = if cmd.starts_with('/') {
            cmd.to_string()
        } else {
            format!("{}/{cmd}", cwd.trim_end_matches('/'))
        };
        if is_exec(&full) {
            return Ok(());
        }
        return Err(Error::CommandNotFound(format!(
            "exec: {cmd:?}: no such file or directory in the image"
        )));
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    if path
        .split(':')
        .any(|dir| !dir.is_empty() && is_exec(&format!("{dir}/{cmd}")))
    {
        return Ok(());
    }
    Err(Error::CommandNotFound(format!(
        "exec: {cmd:?}: executable file not found in $PATH"
    )))
}

/// Checks that each bind mount's source and its destination in the image
/// are both directories or both not (the kernel refuses the mix with a bare
/// `EINVAL` when the container starts). A destination the image lacks is
/// made at start.
pub fn check_bind_targets(root: &Path, binds: &[berth_model::Bind]) -> Result<(), Error> {
    for b in binds {
        let Ok(source) = std::fs::metadata(&b.source) else {
            continue;
        };
        let Ok(target) = open_in_root(root, &b.target, libc::O_PATH).and_then(|f| f.metadata()) else {
            continue;
        };
        let what = |dir: bool| if dir { "a directory" } else { "a file" };
        if source.is_dir() != target.is_dir() {
            return Err(Error::Invalid(format!(
                "invalid volume {}:{}: {} is {} on the host but {} in the image",
                b.source,
                b.target,
                b.source,
                what(source.is_dir()),
                what(target.is_dir())
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::create_dir_all(d.path().join("bin")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(d.path().join("etc/group"), "root:x:0:\napp:x:1000:\nwheel:x:10:app\n").unwrap();
        std::fs::write(d.path().join("bin/tool"), "").unwrap();
        std::fs::set_permissions(d.path().join("bin/tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(d.path().join("bin/data"), "").unwrap();
        // A symlink that would leave the root if followed on the host.
        std::os::unix::fs::symlink("/etc/shadow", d.path().join("bin/escape")).unwrap();
        d
    }

    #[test]
    fn users() {
        let r = rootfs();
        assert_eq!(resolve_user(r.path(), "app").unwrap(), (1000, 1000, vec![10]));
        assert_eq!(resolve_user(r.path(), "app:wheel").unwrap(), (1000, 10, vec![]));
        assert_eq!(resolve_user(r.path(), "1000").unwrap(), (1000, 1000, vec![10]));
        assert_eq!(resolve_user(r.path(), "4242:7").unwrap(), (4242, 7, vec![]));
        assert!(resolve_user(r.path(), "ghost")
            .unwrap_err()
            .to_string()
            .contains("unable to find user ghost"));
        assert!(resolve_user(r.path(), "app:ghosts")
            .unwrap_err()
            .to_string()
            .contains("unable to find group ghosts"));
    }

    #[test]
    fn executables() {
        let r = rootfs();
        let env = vec!["PATH=/bin".to_string()];
        assert!(check_executable(r.path(), "tool", &env, "/").is_ok());
        assert!(check_executable(r.path(), "/bin/tool", &env, "/").is_ok());
        assert!(check_executable(r.path(), "data", &env, "/")
            .unwrap_err()
            .to_string()
            .contains("not found in $PATH"));
        assert!(check_executable(r.path(), "/bin/escape", &env, "/").is_err());
        assert!(check_executable(r.path(), "nope", &env, "/").is_err());
    }
}
