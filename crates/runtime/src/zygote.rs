//! The shim zygote: one `berth shim-zygote` process per daemon, started once,
//! that forks each container's shim. A fork of a process that is already
//! loaded, relocated and paged in costs a fraction of a millisecond; an
//! `execve` of the berth binary costs several (`berth run` waits for it).
//!
//! The daemon sends one datagram per shim on a `SOCK_SEQPACKET` pair: the
//! shim's arguments as JSON, with the shim's stdout (the pipe the daemon reads
//! "ready"/"error" from) and stderr (`shim.log`) attached as SCM_RIGHTS. The
//! zygote answers nothing: the shim speaks on the pipe as it would have after
//! an exec, and a lost shim is an EOF there.
//!
//! **Invariants:** the zygote is single-threaded and never starts a runtime,
//! so its forks may run libcontainer (the rule `shim.rs` states). It ends when
//! the daemon's end of the pair closes (the daemon exits or is killed), and
//! its shims, already in their own sessions, live on. It reaps its children
//! through `SIGCHLD = SIG_IGN`; each child restores the default first, since
//! a shim waits for its container.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};

use crate::shim::{run_container_shim, ShimArgs};

/// Largest request: the arguments are a few paths and flags.
const MAX_REQUEST: usize = 16 * 1024;

/// The daemon's handle on its zygote.
pub struct Zygote {
    /// Our end of the pair; `None` once the zygote is found gone.
    conn: Mutex<Option<(OwnedFd, std::process::Child)>>,
}

impl Zygote {
    /// Starts `<exe> shim-zygote` with its end of the pair as stdin.
    pub fn start(exe: &Path) -> std::io::Result<Zygote> {
        let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)?;
        let mut cmd = Command::new(exe);
        cmd.arg("shim-zygote")
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Not in the daemon's process group: a ^C to a foreground daemon
        // reaches the daemon, which then closes the pair.
        cmd.process_group(0);
        let child = cmd.spawn()?;
        Ok(Zygote {
            conn: Mutex::new(Some((ours, child))),
        })
    }

    /// Asks the zygote to fork a shim with `stdout` and `stderr`. An error
    /// means no shim was started (the caller spawns one itself).
    pub fn spawn(&self, args: &ShimArgs, stdout: &OwnedFd, stderr: &OwnedFd) -> std::io::Result<()> {
        let body = serde_json::to_vec(args).map_err(std::io::Error::other)?;
        if body.len() > MAX_REQUEST {
            return Err(std::io::Error::other("shim arguments too long for the zygote"));
        }
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let Some((sock, child)) = conn.as_mut() else {
            return Err(std::io::Error::other("the shim zygote is gone"));
        };
        let fds = [stdout.as_raw_fd(), stderr.as_raw_fd()];
        let sent = sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(&body)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        );
        match sent {
            Ok(n) if n == body.len() => Ok(()),
            Ok(n) => Err(std::io::Error::other(format!(
                "sent {n} of {} bytes to the zygote",
                body.len()
            ))),
            Err(e) => {
                // Gone (killed, or it failed): reap it and stop using it.
                let _ = child.kill();
                let _ = child.wait();
                *conn = None;
                Err(e.into())
            }
        }
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        let conn = self.conn.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some((sock, mut child)) = conn.take() {
            // Closing our end is the zygote's signal to exit.
            drop(sock);
            let _ = child.wait();
        }
    }
}

/// Entry point of `berth shim-zygote`: serves fork requests on stdin until
/// EOF. Never returns.
pub fn serve() -> ! {
    // SAFETY: setting a signal disposition; the process has no threads.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    let sock: RawFd = 0;
    let mut buf = vec![0u8; MAX_REQUEST];
    loop {
        let mut cmsg = nix::cmsg_space!([RawFd; 2]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let (len, fds) = match recvmsg::<()>(sock, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
            Ok(msg) => {
                let mut fds = Vec::new();
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::ScmRights(got) = c {
                            // SAFETY: the kernel installed these fds for us.
                            fds.extend(got.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
                        }
                    }
                }
                (msg.bytes, fds)
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => std::process::exit(1),
        };
        if len == 0 {
            // The daemon closed its end.
            std::process::exit(0);
        }
        let Ok(args) = serde_json::from_slice::<ShimArgs>(&buf[..len]) else {
            continue;
        };
        let [stdout, stderr] = <[OwnedFd; 2]>::try_from(fds).unwrap_or_else(|_| std::process::exit(1));
        // SAFETY: this process is single-threaded (module invariant).
        match unsafe { libc::fork() } {
            0 => {
                // SAFETY: plain fd and signal calls in the fresh child.
                unsafe {
                    libc::signal(libc::SIGCHLD, libc::SIG_DFL);
                    libc::dup2(stdout.as_raw_fd(), 1);
                    libc::dup2(stderr.as_raw_fd(), 2);
                }
                drop((stdout, stderr));
                // stdin was the pair: the shim must not keep the zygote alive.
                if let Ok(null) = std::fs::File::open("/dev/null") {
                    // SAFETY: as above.
                    unsafe { libc::dup2(null.as_raw_fd(), 0) };
                }
                run_container_shim(args)
            }
            // A failed fork: dropping the fds is EOF on the daemon's pipe.
            _ => drop((stdout, stderr)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_round_trip_through_json() {
        let args = ShimArgs {
            id: "abc".into(),
            root: "/r".into(),
            bundle: "/b".into(),
            state: "/s".into(),
            socket: "/run/x.sock".into(),
            tty: true,
            stdin: false,
            console_size: Some((80, 24)),
        };
        let back: ShimArgs = serde_json::from_slice(&serde_json::to_vec(&args).unwrap()).unwrap();
        assert_eq!(back.id, "abc");
        assert_eq!(back.console_size, Some((80, 24)));
        assert!(back.tty && !back.stdin);
    }
}
