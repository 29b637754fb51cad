//! berth's default seccomp profile: an allowlist. Unknown and new system
//! calls fail with EPERM; the calls that reach kernel-wide state (modules,
//! keyrings, mounts, namespaces, clocks, bpf, perf, reboot...) are left out,
//! as are the new mount API calls. `clone` may not create namespaces and
//! `clone3` reports ENOSYS so that libc falls back to `clone`.

use serde_json::{json, Value};

/// System calls every ordinary program may use.
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "arch_prctl",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchownat",
    "fcntl",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstatfs",
    "fsync",
    "ftruncate",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "geteuid",
    "getgid",
    "getgroups",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresuid",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getxattr",
    "getxattrat",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "listxattrat",
    "llistxattr",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedsend",
    "mq_unlink",
    "mremap",
    "mseal",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_getfd",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "removexattrat",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsuid",
    "setgid",
    "setgroups",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setresgid",
    "setresuid",
    "setreuid",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setxattr",
    "setxattrat",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "socket",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "statfs",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
    "chroot",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
];

/// Namespace flags `clone` may not carry: CLONE_NEWNS | NEWCGROUP | NEWUTS |
/// NEWIPC | NEWUSER | NEWPID | NEWNET (as one mask, like other runtimes use).
const CLONE_NAMESPACE_MASK: u64 = 0x7E02_0000;

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

pub fn default_profile() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ALLOWED, "action": "SCMP_ACT_ALLOW"},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": CLONE_NAMESPACE_MASK, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
            // Only the default personality and its read-back; no exec-domain tricks.
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0xffff_ffffu64, "op": "SCMP_CMP_EQ"}]},
        ],
    })
}

/// The compiled filter next to `config.json`. When it is there the spec
/// carries no `linux.seccomp`: the shim loads these bytes itself (see
/// `shim.rs`), so the profile is compiled once per daemon, not once per
/// container start — libseccomp takes about 9 ms for this profile.
pub const BPF_FILE: &str = "seccomp.bpf";
/// The profile the filter was compiled from, kept for people reading the bundle.
pub const PROFILE_FILE: &str = "seccomp.json";

/// Size of one classic BPF instruction (`struct sock_filter`).
const INSN: usize = 8;

/// The profile compiled to classic BPF, from a per-process cache keyed by the
/// profile's JSON. Profiles this compiler does not handle (flags, notify)
/// are an error; the caller then leaves them to libcontainer.
pub fn compiled(profile: &Value) -> Result<std::sync::Arc<Vec<u8>>, String> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Vec<u8>>>>> = OnceLock::new();
    let key = profile.to_string();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(hit) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(hit.clone());
    }
    let parsed: oci_spec::runtime::LinuxSeccomp =
        serde_json::from_value(profile.clone()).map_err(|e| format!("seccomp profile: {e}"))?;
    let bpf = Arc::new(compile(&parsed)?);
    cache.lock().unwrap_or_else(|e| e.into_inner()).insert(key, bpf.clone());
    Ok(bpf)
}

/// Compiles an OCI seccomp profile to classic BPF with libseccomp, with the
/// OCI meaning of every field (runc's): `SCMP_CMP_MASKED_EQ` keeps the
/// argument bits in `value` and compares them with `valueTwo`; rules whose
/// action is the default are dropped; system calls this libseccomp does not
/// know are skipped.
pub fn compile(profile: &oci_spec::runtime::LinuxSeccomp) -> Result<Vec<u8>, String> {
    use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
    use std::io::{Read, Seek};
    use std::str::FromStr;

    fn name<T: serde::Serialize>(v: &T) -> String {
        serde_json::to_value(v)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
    fn action(a: oci_spec::runtime::LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction, String> {
        let n = name(&a);
        if n == "SCMP_ACT_NOTIFY" {
            return Err("SCMP_ACT_NOTIFY needs a listener; not precompiled".into());
        }
        let val = match n.as_str() {
            "SCMP_ACT_ERRNO" => Some(errno.unwrap_or(libc::EPERM as u32) as i32),
            "SCMP_ACT_TRACE" => Some(errno.unwrap_or(libc::EPERM as u32) as i32),
            _ => None,
        };
        ScmpAction::from_str(&n, val).map_err(|e| format!("seccomp action {n}: {e}"))
    }

    if profile.flags().as_ref().is_some_and(|f| !f.is_empty()) {
        return Err("seccomp filter flags are not precompiled".into());
    }
    if profile.listener_path().is_some() {
        return Err("a seccomp listener is not precompiled".into());
    }
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| format!("seccomp filter: {e}"))?;
    ctx.set_ctl_nnp(false).map_err(|e| format!("seccomp filter: {e}"))?;
    for arch in profile.architectures().iter().flatten() {
        let n = name(arch);
        let arch = ScmpArch::from_str(&n).map_err(|e| format!("seccomp architecture {n}: {e}"))?;
        ctx.add_arch(arch)
            .map_err(|e| format!("seccomp architecture {n}: {e}"))?;
    }
    for rule in profile.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret())?;
        if act == default {
            continue;
        }
        let mut comparisons = Vec::new();
        for arg in rule.args().iter().flatten() {
            let op_name = name(&arg.op());
            let op = ScmpCompareOp::from_str(&op_name).map_err(|e| format!("seccomp operator {op_name}: {e}"))?;
            let index = arg.index() as u32;
            comparisons.push(match op {
                ScmpCompareOp::MaskedEqual(_) => ScmpArgCompare::new(
                    index,
                    ScmpCompareOp::MaskedEqual(arg.value()),
                    arg.value_two().unwrap_or(0),
                ),
                op => ScmpArgCompare::new(index, op, arg.value()),
            });
        }
        // One comparison per argument per rule (libseccomp's rule); several on
        // the same argument become separate rules, each enough on its own.
        let mut seen = std::collections::HashSet::new();
        let split = !rule.args().iter().flatten().all(|a| seen.insert(a.index()));
        for call in rule.names() {
            let Ok(sc) = ScmpSyscall::from_name(call) else {
                continue;
            };
            let added = if comparisons.is_empty() {
                ctx.add_rule(act, sc).map(drop)
            } else if split {
                comparisons
                    .iter()
                    .try_for_each(|c| ctx.add_rule_conditional(act, sc, std::slice::from_ref(c)).map(drop))
            } else {
                ctx.add_rule_conditional(act, sc, &comparisons).map(drop)
            };
            added.map_err(|e| format!("seccomp rule for {call}: {e}"))?;
        }
    }
    // libseccomp 2.5 exports to a file descriptor only.
    let name = std::ffi::CString::new("berth-seccomp").unwrap_or_default();
    // SAFETY: memfd_create with a valid C string; the fd is owned below.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: fd was just returned by memfd_create and is ours alone.
    let mut file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    ctx.export_bpf(&file)
        .map_err(|e| format!("exporting the seccomp filter: {e}"))?;
    let mut bpf = Vec::new();
    file.rewind()
        .and_then(|_| file.read_to_end(&mut bpf))
        .map_err(|e| format!("reading the seccomp filter: {e}"))?;
    check(&bpf)?;
    Ok(bpf)
}

fn check(bpf: &[u8]) -> Result<usize, String> {
    let n = bpf.len() / INSN;
    if bpf.is_empty() || !bpf.len().is_multiple_of(INSN) || n > u16::MAX as usize {
        return Err(format!("a seccomp filter of {} bytes is not a BPF program", bpf.len()));
    }
    Ok(n)
}

/// A filter made by [`compile`], decoded and ready to install.
#[derive(Clone)]
pub struct Filter(Vec<libc::sock_filter>);

impl Filter {
    pub fn from_bytes(bpf: &[u8]) -> Result<Self, String> {
        check(bpf)?;
        Ok(Self(
            bpf.chunks_exact(INSN)
                .map(|i| libc::sock_filter {
                    code: u16::from_ne_bytes([i[0], i[1]]),
                    jt: i[2],
                    jf: i[3],
                    k: u32::from_ne_bytes([i[4], i[5], i[6], i[7]]),
                })
                .collect(),
        ))
    }

    /// Installs the filter on the calling thread (what libseccomp's load does,
    /// without compiling): `seccomp(SECCOMP_SET_MODE_FILTER)`. Needs
    /// `no_new_privs` or CAP_SYS_ADMIN in the user namespace. Allocates
    /// nothing unless it fails, so it is safe after a fork.
    pub fn install(&self) -> Result<(), String> {
        let prog = libc::sock_fprog {
            len: self.0.len() as u16,
            filter: self.0.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: prog points at our instructions, which outlive the call;
        // the kernel copies the program and does not write to it.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            return Err(format!("installing seccomp: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// Decodes and installs a filter made by [`compile`].
pub fn load(bpf: &[u8]) -> Result<(), String> {
    Filter::from_bytes(bpf)?.install()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_wide_calls_are_not_allowed() {
        for denied in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "keyctl",
            "add_key",
            "bpf",
            "reboot",
            "init_module",
            "kexec_load",
            "perf_event_open",
            "open_by_handle_at",
            "pivot_root",
            "swapon",
            "settimeofday",
            "fsopen",
            "move_mount",
            "open_tree",
            "userfaultfd",
        ] {
            assert!(!ALLOWED.contains(&denied), "{denied} must not be allowed");
        }
        let p: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(default_profile()).expect("valid");
        assert_eq!(p.syscalls().as_ref().unwrap().len(), 6);
    }

    #[test]
    fn the_default_profile_compiles_once_and_is_cached() {
        let first = compiled(&default_profile()).expect("compiles");
        assert_eq!(first.len() % INSN, 0);
        assert!(first.len() / INSN > 100, "{} instructions", first.len() / INSN);
        let second = compiled(&default_profile()).expect("compiles");
        assert!(
            std::sync::Arc::ptr_eq(&first, &second),
            "the second call is the cached filter"
        );
    }

    #[test]
    fn filters_flags_and_garbage_are_refused() {
        let mut p = default_profile();
        p["flags"] = json!(["SECCOMP_FILTER_FLAG_LOG"]);
        let err = compiled(&p).expect_err("flags are left to libcontainer");
        assert!(err.contains("flags"), "{err}");
        assert!(load(&[1, 2, 3])
            .expect_err("not whole instructions")
            .contains("3 bytes"));
        assert!(load(&[]).is_err());
    }

    /// The filter is installed in a forked child (it cannot be removed): an
    /// allowed call works, a refused one gets EPERM, `clone` without
    /// namespace flags is allowed and with CLONE_NEWUSER refused.
    #[test]
    fn a_loaded_filter_confines_the_process() {
        let filter = Filter::from_bytes(&compiled(&default_profile()).expect("compiles")).expect("decodes");
        // SAFETY: the child only makes raw system calls and exits (the test
        // harness is multi-threaded: nothing in the child allocates).
        match unsafe { libc::fork() } {
            0 => {
                let code = (|| {
                    // SAFETY: integer prctl.
                    unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
                    if filter.install().is_err() {
                        return 10;
                    }
                    // SAFETY: getpid has no arguments.
                    if unsafe { libc::getpid() } <= 0 {
                        return 11;
                    }
                    // SAFETY: unshare with a flag; refused by the filter.
                    let r = unsafe { libc::unshare(libc::CLONE_NEWUTS) };
                    if r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EPERM) {
                        return 12;
                    }
                    // SAFETY: a raw clone with only SIGCHLD is a fork; the child exits at once.
                    let pid = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0, 0, 0, 0) };
                    if pid == 0 {
                        // SAFETY: leave the grandchild without running destructors.
                        unsafe { libc::_exit(0) };
                    }
                    if pid < 0 {
                        return 13;
                    }
                    // SAFETY: a clone asking for a new user namespace; refused.
                    let r = unsafe {
                        libc::syscall(
                            libc::SYS_clone,
                            (libc::SIGCHLD | libc::CLONE_NEWUSER) as libc::c_ulong,
                            0,
                            0,
                            0,
                            0,
                        )
                    };
                    if r == 0 {
                        // SAFETY: as above.
                        unsafe { libc::_exit(0) };
                    }
                    if r > 0 {
                        return 14;
                    }
                    0
                })();
                // SAFETY: leave the forked test child without unwinding into the harness.
                unsafe { libc::_exit(code) }
            }
            pid if pid > 0 => {
                let mut status = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                assert!(libc::WIFEXITED(status), "child status {status}");
                assert_eq!(libc::WEXITSTATUS(status), 0, "see the codes in the child");
            }
            _ => panic!("fork failed"),
        }
    }
}
