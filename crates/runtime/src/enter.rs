//! Exec: starting one more process inside a running container. The process
//! joins the container's cgroup and every namespace of its init (the user
//! namespace first, the pid namespace through a second fork), then takes the
//! container's user, capability set, `no_new_privs` and seccomp filter before
//! its execve — confined exactly like the container's own process.
//!
//! (libcontainer 0.7's tenant builder neither joins the user namespace nor
//! keeps the seccomp filter, so berth does this part itself.)
//!
//! **Invariant:** [`spawn`] is called from a single-threaded process (the exec
//! shim), because the children it forks run ordinary Rust code.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::unistd::{ForkResult, Gid, Pid, Uid};
use serde::{Deserialize, Serialize};

/// Everything the exec'd process needs, written by the daemon for the exec shim.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecSpec {
    /// The container's init, whose namespaces are joined.
    pub init_pid: i32,
    /// `cgroup.procs` files of the container's cgroup.
    pub cgroup_procs: Vec<PathBuf>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// Capability names (`CAP_CHOWN`...), the container's set.
    pub capabilities: Vec<String>,
    pub no_new_privs: bool,
    pub seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
    /// The container's compiled filter (`seccomp.bpf`), used instead of `seccomp`.
    #[serde(default)]
    pub seccomp_bpf: Option<PathBuf>,
    pub nofile: Option<(u64, u64)>,
    /// Initial terminal size (columns, rows) for a tty.
    pub console_size: Option<(u16, u16)>,
}

/// What the process gets as fds 0, 1, 2.
pub enum ChildStdio {
    Pipes {
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    /// A pty opened inside the container (its own devpts, so `tty` and job
    /// control work); the master is sent back over this socket.
    Pty { master_to: OwnedFd },
}

/// Namespaces in the order they are joined: user first (it grants the
/// capabilities to join the rest), pid last (it applies to children only).
const NAMESPACES: [(&str, CloneFlags); 7] = [
    ("user", CloneFlags::CLONE_NEWUSER),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("mnt", CloneFlags::CLONE_NEWNS),
    ("pid", CloneFlags::CLONE_NEWPID),
];

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))
}

/// Starts the process; its host pid. Errors before its execve (a missing
/// command, a bad user or directory) come back as the message.
pub fn spawn(spec: &ExecSpec, stdio: ChildStdio) -> Result<Pid, String> {
    let filter = match &spec.seccomp_bpf {
        Some(path) => Some(std::fs::read(path).map_err(|e| format!("exec: {}: {e}", path.display()))?),
        None => None,
    };
    // The namespaces that differ from ours, opened while we are still on the host.
    let mut namespaces = Vec::new();
    for (name, flag) in NAMESPACES {
        let target = format!("/proc/{}/ns/{name}", spec.init_pid);
        let theirs = std::fs::metadata(&target).map_err(|e| format!("container init {}: {e}", spec.init_pid))?;
        let ours = std::fs::metadata(format!("/proc/self/ns/{name}")).map_err(|e| format!("{name} namespace: {e}"))?;
        if theirs.ino() != ours.ino() {
            namespaces.push((File::open(&target).map_err(|e| format!("{target}: {e}"))?, flag));
        }
    }
    let (go_r, go_w) = pipe()?;
    let (pid_r, pid_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    // SAFETY: the caller is single-threaded (module invariant).
    let middle = match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop((go_w, pid_r, err_r));
            let mut go = File::from(go_r);
            let mut byte = [0u8; 1];
            if go.read_exact(&mut byte).is_err() {
                // SAFETY: leaving the forked child without running destructors.
                unsafe { libc::_exit(1) };
            }
            let code = middle_child(spec, filter.as_deref(), &namespaces, stdio, pid_w, &err_w);
            // SAFETY: as above.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => child,
    };
    drop((go_r, pid_w, stdio));
    drop(namespaces);
    let mut err_w = Some(err_w);
    let mut go = File::from(go_w);
    let _ = go.write_all(&[1]);
    drop(go);
    err_w.take();
    let mut pid_bytes = [0u8; 4];
    let got_pid = File::from(pid_r).read_exact(&mut pid_bytes).is_ok();
    let _ = nix::sys::wait::waitpid(middle, None);
    // EOF on the error pipe: the process reached its execve (the pipe is close-on-exec).
    let mut message = String::new();
    let _ = File::from(err_r).read_to_string(&mut message);
    if !message.is_empty() {
        return Err(message);
    }
    if !got_pid {
        return Err("exec: the process could not be started".into());
    }
    Ok(Pid::from_raw(i32::from_le_bytes(pid_bytes)))
}

/// Moves the calling (single-threaded) process into the container's cgroups.
/// On v1 hierarchies it moves its thread through `tasks` with pid 0, which
/// the kernel does without the global threadgroup lock whose first writer
/// waits for an RCU grace period (see `third_party/README.md`); on v2, its
/// pid goes to `cgroup.procs`.
fn join_cgroup(procs: &[PathBuf]) -> Result<(), String> {
    for p in procs {
        let tasks = p.with_file_name("tasks");
        let (path, value) = if tasks.exists() {
            (tasks, "0".to_string())
        } else {
            (p.clone(), std::process::id().to_string())
        };
        std::fs::write(&path, value).map_err(|e| format!("joining cgroup {}: {e}", path.display()))?;
    }
    Ok(())
}

fn report(err: &OwnedFd, msg: &str) {
    let _ = nix::unistd::write(err, msg.as_bytes());
}

/// Joins the namespaces, forks the process into the pid namespace, tells the
/// shim its pid.
fn middle_child(
    spec: &ExecSpec,
    filter: Option<&[u8]>,
    namespaces: &[(File, CloneFlags)],
    stdio: ChildStdio,
    pid_w: OwnedFd,
    err: &OwnedFd,
) -> i32 {
    // On the host still: the cgroups first, so the process and its child
    // are confined from their first instruction in the container.
    if let Err(e) = join_cgroup(&spec.cgroup_procs) {
        report(err, &format!("exec: {e}"));
        return 1;
    }
    for (f, flag) in namespaces {
        if let Err(e) = nix::sched::setns(f, *flag) {
            report(err, &format!("exec: joining the container's {flag:?} namespace: {e}"));
            return 1;
        }
    }
    // SAFETY: still single-threaded: this is a fork of a single-threaded process.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => {
            drop(pid_w);
            let msg = exec_child(spec, filter, stdio);
            report(err, &msg);
            let code = if msg.contains("not found") { 127 } else { 126 };
            // SAFETY: leaving the forked child after a failed exec.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => {
            let _ = nix::unistd::write(&pid_w, &child.as_raw().to_le_bytes());
            0
        }
        Err(e) => {
            report(err, &format!("exec: fork into the container: {e}"));
            1
        }
    }
}

/// In the container: stdio, terminal, limits, directory, user, capabilities,
/// no_new_privs, seccomp, execve. Returns only on failure, with the reason.
fn exec_child(spec: &ExecSpec, filter: Option<&[u8]>, stdio: ChildStdio) -> String {
    let _ = nix::unistd::setsid();
    let (stdin, stdout, stderr) = match stdio {
        ChildStdio::Pipes { stdin, stdout, stderr } => (stdin, stdout, stderr),
        ChildStdio::Pty { master_to } => match container_pty(&master_to, spec.console_size) {
            Ok(slave) => match (slave.try_clone(), slave.try_clone()) {
                (Ok(a), Ok(b)) => (slave, a, b),
                _ => return "exec: duplicating the pty".into(),
            },
            Err(e) => return format!("exec: opening a terminal in the container: {e}"),
        },
    };
    for (fd, target) in [(&stdin, 0), (&stdout, 1), (&stderr, 2)] {
        if let Err(e) = dup2(fd.as_raw_fd(), target) {
            return format!("exec: stdio: {e}");
        }
    }
    if let Some((soft, hard)) = spec.nofile {
        let rl = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads the struct we pass.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) };
    }
    let cwd = if spec.cwd.is_empty() { "/" } else { &spec.cwd };
    if let Err(e) = nix::unistd::chdir(Path::new(cwd)) {
        return format!("exec: working directory {cwd:?}: {e}");
    }
    let wanted: caps::CapsHashSet = spec.capabilities.iter().filter_map(|c| c.parse().ok()).collect();
    for cap in caps::all() {
        if !wanted.contains(&cap) {
            let _ = caps::drop(None, caps::CapSet::Bounding, cap);
        }
    }
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, if spec.uid == 0 { 1 } else { 0 }, 0, 0, 0) };
    let groups: Vec<Gid> = spec.additional_gids.iter().map(|g| Gid::from_raw(*g)).collect();
    if let Err(e) = nix::unistd::setgroups(&groups) {
        return format!("exec: setgroups: {e}");
    }
    let (uid, gid) = (Uid::from_raw(spec.uid), Gid::from_raw(spec.gid));
    if let Err(e) = nix::unistd::setresgid(gid, gid, gid) {
        return format!("exec: setting gid {}: {e}", spec.gid);
    }
    if let Err(e) = nix::unistd::setresuid(uid, uid, uid) {
        return format!("exec: setting uid {}: {e}", spec.uid);
    }
    // Root in the container keeps the container's set; other users get none,
    // as they would after a setuid (Docker's behaviour).
    let effective = if spec.uid == 0 {
        wanted.clone()
    } else {
        caps::CapsHashSet::new()
    };
    for set in [caps::CapSet::Effective, caps::CapSet::Permitted] {
        if let Err(e) = caps::set(None, set, &effective) {
            return format!("exec: capabilities: {e}");
        }
    }
    let _ = caps::clear(None, caps::CapSet::Inheritable);
    let _ = caps::clear(None, caps::CapSet::Ambient);
    if spec.no_new_privs {
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    }
    let path = match resolve(&spec.args[0], &spec.env) {
        Some(p) => p,
        None => return format!("exec: {:?}: executable file not found in $PATH", spec.args[0]),
    };
    let to_c = |s: &str| CString::new(s).unwrap_or_default();
    let argv: Vec<CString> = spec.args.iter().map(|a| to_c(a)).collect();
    let envp: Vec<CString> = spec.env.iter().map(|e| to_c(e)).collect();
    // Last: from here on every system call is filtered.
    if let Some(bpf) = filter {
        if let Err(e) = crate::seccomp::load(bpf) {
            return format!("exec: {e}");
        }
    } else if let Some(profile) = &spec.seccomp {
        if let Err(e) = libcontainer::seccomp::initialize_seccomp(profile) {
            return format!("exec: installing seccomp: {e}");
        }
    }
    let e = nix::unistd::execve(&to_c(&path), &argv, &envp).err();
    format!(
        "exec: {:?}: {}",
        spec.args[0],
        e.map(|e| e.to_string()).unwrap_or_default()
    )
}

/// Opens a pty in the container's /dev/pts, makes its slave our controlling
/// terminal and sends the master to the shim.
fn container_pty(master_to: &OwnedFd, size: Option<(u16, u16)>) -> std::io::Result<OwnedFd> {
    use nix::fcntl::OFlag;
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
    nix::pty::grantpt(&master)?;
    nix::pty::unlockpt(&master)?;
    if let Some((cols, rows)) = size {
        crate::shim::resize(master.as_raw_fd(), cols, rows);
    }
    let name = nix::pty::ptsname_r(&master)?;
    let slave: OwnedFd = std::fs::OpenOptions::new().read(true).write(true).open(&name)?.into();
    // SAFETY: TIOCSCTTY on the slave we just opened, after setsid.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fds = [master.as_raw_fd()];
    let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
    let iov = [std::io::IoSlice::new(b"pty")];
    nix::sys::socket::sendmsg::<()>(
        master_to.as_raw_fd(),
        &iov,
        &cmsg,
        nix::sys::socket::MsgFlags::empty(),
        None,
    )?;
    Ok(slave)
}

fn dup2(from: RawFd, to: RawFd) -> std::io::Result<()> {
    if from == to {
        return Ok(());
    }
    // SAFETY: dup2 on fds we own; the target is replaced.
    if unsafe { libc::dup2(from, to) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The command as a path, searching `PATH` from the process's environment.
fn resolve(cmd: &str, env: &[String]) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    if cmd.contains('/') {
        return Some(cmd.to_string());
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| format!("{d}/{cmd}"))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}
