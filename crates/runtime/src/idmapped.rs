//! Id-mapped mounts: one unpacked (unshifted) layer serves every container,
//! whatever its uid range. Each lower layer is cloned as a detached mount,
//! id-mapped through a user namespace that carries the daemon's range, and
//! attached under the container's dir; overlayfs stacks those. Files owned by
//! uid 0 in the layer appear owned by the range's base on the host, which the
//! container's user namespace shows as 0 again.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::IdMap;

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_EMPTY_PATH: libc::c_uint = 0x1000;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// The kernel's `struct mount_attr`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A user namespace holding the daemon's id mapping, kept open for the
/// daemon's lifetime (the fd keeps it alive after its process is gone).
pub struct Userns(OwnedFd);

impl Userns {
    /// Makes a user namespace with `map` (container 0 → host base).
    pub fn new(map: IdMap) -> std::io::Result<Self> {
        let (mut ready_r, ready_w) = pipe()?;
        // SAFETY: the child only makes raw system calls (unshare, write,
        // pause) before it is killed, which is safe after fork in a
        // multi-threaded process.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: raw system calls only, see above.
            unsafe {
                if libc::unshare(libc::CLONE_NEWUSER) == 0 {
                    libc::write(ready_w.as_raw_fd(), b"1".as_ptr().cast(), 1);
                }
                loop {
                    libc::pause();
                }
            }
        }
        drop(ready_w);
        let result = (|| {
            let mut byte = [0u8; 1];
            ready_r.read_exact(&mut byte)?;
            std::fs::write(
                format!("/proc/{pid}/uid_map"),
                format!("0 {} {}\n", map.uid_base, map.size),
            )?;
            std::fs::write(format!("/proc/{pid}/setgroups"), "deny")?;
            std::fs::write(
                format!("/proc/{pid}/gid_map"),
                format!("0 {} {}\n", map.gid_base, map.size),
            )?;
            Ok(Userns(File::open(format!("/proc/{pid}/ns/user"))?.into()))
        })();
        // SAFETY: kill and waitpid on the child we forked.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        result
    }

    /// Attaches an id-mapped copy of `source` at `target` (an empty dir).
    pub fn mount(&self, source: &Path, target: &Path) -> std::io::Result<()> {
        let src = cstr(source)?;
        let empty = c"";
        // SAFETY: open_tree with a valid path; returns a new fd or -1.
        let tree = unsafe {
            libc::syscall(
                libc::SYS_open_tree,
                libc::AT_FDCWD,
                src.as_ptr(),
                OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
            )
        };
        if tree < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the fd is new and ours.
        let tree = unsafe { OwnedFd::from_raw_fd(tree as i32) };
        let attr = MountAttr {
            attr_set: MOUNT_ATTR_IDMAP,
            attr_clr: 0,
            propagation: 0,
            userns_fd: self.0.as_raw_fd() as u64,
        };
        // SAFETY: mount_setattr on our detached tree with a fully initialised attr of the size we pass.
        let r = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                tree.as_raw_fd(),
                empty.as_ptr(),
                AT_EMPTY_PATH,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let dst = cstr(target)?;
        // SAFETY: move_mount of our detached tree onto a valid path.
        let r = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                tree.as_raw_fd(),
                empty.as_ptr(),
                libc::AT_FDCWD,
                dst.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

fn cstr(p: &Path) -> std::io::Result<std::ffi::CString> {
    std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has a NUL byte"))
}

fn pipe() -> std::io::Result<(File, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    Ok((File::from(r), w))
}

/// Whether this kernel id-maps overlayfs lower layers: tries it in `scratch`.
pub fn supported(userns: &Userns, scratch: &Path) -> bool {
    let (lower, mapped, upper, work, merged) = (
        scratch.join("l"),
        scratch.join("m"),
        scratch.join("u"),
        scratch.join("w"),
        scratch.join("o"),
    );
    let ok = (|| {
        for d in [&lower, &mapped, &upper, &work, &merged] {
            std::fs::create_dir_all(d)?;
        }
        userns.mount(&lower, &mapped)?;
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            mapped.display(),
            upper.display(),
            work.display()
        );
        let r = nix::mount::mount(
            Some("overlay"),
            &merged,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(data.as_str()),
        );
        if r.is_ok() {
            let _ = nix::mount::umount2(&merged, nix::mount::MntFlags::MNT_DETACH);
        }
        Ok::<bool, std::io::Error>(r.is_ok())
    })()
    .unwrap_or(false);
    let _ = nix::mount::umount2(&mapped, nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir_all(scratch);
    ok
}
