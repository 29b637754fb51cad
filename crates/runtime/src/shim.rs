//! The per-container supervisor (`berth shim`), the same binary re-executed.
//! It creates the container with libcontainer, holds its stdio (pipes or a
//! pty), writes its log, waits for it as child subreaper and records the exit
//! status, so that containers outlive the daemon. The daemon talks to it over
//! `<state>/shim.sock`: one JSON request line, then a JSON reply line, then
//! (for `attach`) frames as in [`crate::frame`].
//!
//! **Invariant:** libcontainer's create/fork runs before this process starts
//! any thread (the tokio runtime here is current-thread and made afterwards).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use serde::{Deserialize, Serialize};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

use crate::frame;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Start,
    Attach {
        stdin: bool,
    },
    /// Attach, then start: one round trip for `run` (the reply carries the pid).
    AttachStart {
        stdin: bool,
    },
    Wait,
    Kill {
        signal: i32,
    },
    Resize {
        cols: u16,
        rows: u16,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Reply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
}

/// What the shim leaves behind when the container's init exits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExitRecord {
    pub exit_code: i32,
    pub finished_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimArgs {
    pub id: String,
    /// libcontainer's state root.
    pub root: PathBuf,
    pub bundle: PathBuf,
    /// Where exit.json and container.log live.
    pub state: PathBuf,
    /// The control socket (kept short: unix socket paths are limited to 108 bytes).
    pub socket: PathBuf,
    pub tty: bool,
    pub stdin: bool,
    /// Initial terminal size (columns, rows), set before the process starts.
    pub console_size: Option<(u16, u16)>,
}

pub const EXIT_FILE: &str = "exit.json";
pub const LOG_FILE: &str = "container.log";

/// One line of `container.log` (the json-file format Docker users know).
#[derive(Debug, Serialize, Deserialize)]
pub struct LogLine {
    pub time: String,
    pub stream: String,
    pub log: String,
}

fn fail(msg: String) -> ! {
    // The daemon reads our stdout for "ready"/"error" lines.
    let _ = writeln!(std::io::stdout(), "error {msg}");
    std::process::exit(1)
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap_or_else(|e| fail(format!("pipe: {e}")))
}

fn set_subreaper() {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes one integer argument.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// Stdio of the container's process as the shim holds it.
struct Stdio {
    /// stdout, or the pty master for a tty.
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
    /// Where stdin goes: a pipe, or the pty master (same fd as `out`, duplicated).
    input: Option<OwnedFd>,
    tty_master: Option<RawFd>,
}

/// libcontainer's own executor, after installing a precompiled seccomp filter.
/// `validate` runs in the container's init right where libcontainer loads a
/// spec's profile (after `no_new_privs`, capabilities and the user switch,
/// before it reports ready and waits for start), so the confinement and its
/// order are the same; only libseccomp's per-start compilation is gone.
#[derive(Clone)]
struct FilteredExecutor {
    filter: crate::seccomp::Filter,
    inner: Box<dyn libcontainer::workload::Executor>,
}

impl libcontainer::workload::Executor for FilteredExecutor {
    fn exec(&self, spec: &oci_spec::runtime::Spec) -> Result<(), libcontainer::workload::ExecutorError> {
        self.inner.exec(spec)
    }

    fn validate(&self, spec: &oci_spec::runtime::Spec) -> Result<(), libcontainer::workload::ExecutorValidationError> {
        self.inner.validate(spec)?;
        self.filter
            .install()
            .map_err(libcontainer::workload::ExecutorValidationError::ArgValidationError)
    }

    fn setup_envs(&self, envs: HashMap<String, String>) -> Result<(), libcontainer::workload::ExecutorSetEnvsError> {
        self.inner.setup_envs(envs)
    }
}

/// Entry point of `berth shim`. Never returns.
pub fn run_container_shim(args: ShimArgs) -> ! {
    let _ = nix::unistd::setsid();
    set_subreaper();
    let console_path = args.socket.with_extension("console");
    let _ = std::fs::remove_file(&console_path);
    let _ = std::fs::remove_file(args.state.join(EXIT_FILE));

    let mut builder = ContainerBuilder::new(args.id.clone(), SyscallType::default())
        .with_root_path(&args.root)
        .unwrap_or_else(|e| fail(format!("runtime root: {e}")));
    let mut console_listener = None;
    let mut keep = Vec::new();
    let mut stdio = Stdio {
        out: None,
        err: None,
        input: None,
        tty_master: None,
    };
    if args.tty {
        let l = std::os::unix::net::UnixListener::bind(&console_path)
            .unwrap_or_else(|e| fail(format!("console socket: {e}")));
        console_listener = Some(l);
        builder = builder.with_console_socket(Some(&console_path));
    } else {
        let (out_r, out_w) = pipe();
        let (err_r, err_w) = pipe();
        builder = builder.with_stdout(out_w).with_stderr(err_w);
        stdio.out = Some(out_r);
        stdio.err = Some(err_r);
        if args.stdin {
            let (in_r, in_w) = pipe();
            builder = builder.with_stdin(in_r);
            stdio.input = Some(in_w);
        } else {
            let null = std::fs::File::open("/dev/null").unwrap_or_else(|e| fail(format!("/dev/null: {e}")));
            keep.push(OwnedFd::from(null.try_clone().unwrap_or_else(|e| fail(e.to_string()))));
            builder = builder.with_stdin(OwnedFd::from(null));
        }
    }
    // The daemon's precompiled filter (see `seccomp::BPF_FILE`), loaded where
    // libcontainer would load a profile: last before the start signal.
    let filter = args.bundle.join(crate::seccomp::BPF_FILE);
    match std::fs::read(&filter) {
        Ok(bpf) => {
            let filter =
                crate::seccomp::Filter::from_bytes(&bpf).unwrap_or_else(|e| fail(format!("{}: {e}", filter.display())));
            builder = builder.with_executor(FilteredExecutor {
                filter,
                inner: libcontainer::workload::default::get_executor(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => fail(format!("{}: {e}", filter.display())),
    }
    let container = builder
        .as_init(&args.bundle)
        .with_systemd(false)
        .with_detach(true)
        .build();
    let mut container = match container {
        Ok(c) => c,
        Err(e) => {
            cleanup_failed(&args);
            fail(format!("creating container: {e}"))
        }
    };
    let pid = match container.pid() {
        Some(p) => p.as_raw(),
        None => {
            cleanup_failed(&args);
            fail("container has no init pid".into())
        }
    };
    if let Some(l) = console_listener {
        match take_pty(&l, &mut stdio) {
            Ok(()) => {
                if let (Some(master), Some((cols, rows))) = (stdio.tty_master, args.console_size) {
                    resize(master, cols, rows);
                }
            }
            Err(e) => {
                let _ = container.delete(true);
                cleanup_failed(&args);
                fail(format!("receiving the pty: {e}"))
            }
        }
        let _ = std::fs::remove_file(&console_path);
    }
    drop(keep);
    let sock_path = args.socket.clone();
    let _ = std::fs::remove_file(&sock_path);
    let listener = match std::os::unix::net::UnixListener::bind(&sock_path) {
        Ok(l) => l,
        Err(e) => {
            let _ = container.delete(true);
            cleanup_failed(&args);
            fail(format!("binding {}: {e}", sock_path.display()))
        }
    };
    let _ = std::fs::set_permissions(&sock_path, std::os::unix::fs::PermissionsExt::from_mode(0o600));
    // From here on the daemon may talk to us; tell it, then detach our stdout.
    let _ = writeln!(std::io::stdout(), "ready {pid}");
    let _ = std::io::stdout().flush();
    // While the daemon reads that and connects (the container waits for
    // start): a container never starts without its loopback.
    let refused = loopback_up(pid).err().map(|e| format!("bringing up loopback: {e}"));
    redirect_stdio_to_null();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(format!("runtime: {e}")));
    let code = rt.block_on(serve(ShimSetup {
        socket: Some(args.socket),
        state: Some(args.state),
        container: Some(container),
        pid,
        stdio,
        listener: Some(listener),
        client: None,
        refused,
    }));
    std::process::exit(code)
}

fn cleanup_failed(args: &ShimArgs) {
    if let Ok(mut c) = Container::load(args.root.join(&args.id)) {
        let _ = c.delete(true);
    }
    let _ = std::fs::remove_dir_all(args.root.join(&args.id));
}

fn redirect_stdio_to_null() {
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 0);
        let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
    }
}

/// Receives the pty master from the console socket and makes it the
/// process's output and input.
fn take_pty(l: &std::os::unix::net::UnixListener, stdio: &mut Stdio) -> std::io::Result<()> {
    let master = receive_pty_master(l)?;
    let input = master.try_clone()?;
    stdio.tty_master = Some(master.as_raw_fd());
    stdio.out = Some(master);
    stdio.input = Some(input);
    Ok(())
}

fn receive_pty_master(l: &std::os::unix::net::UnixListener) -> std::io::Result<OwnedFd> {
    l.set_nonblocking(true)?;
    // The container's init has already connected and sent the fd during create.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let (conn, _) = loop {
        match l.accept() {
            Ok(c) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Err(e) => return Err(e),
        }
    };
    conn.set_nonblocking(false)?;
    receive_fd(&conn)
}

/// Receives one fd sent with SCM_RIGHTS.
fn receive_fd(conn: &std::os::unix::net::UnixStream) -> std::io::Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(conn.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())?;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel installed this fd for us with SCM_RIGHTS.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(std::io::Error::other("no fd received"))
}

/// Brings `lo` up inside the container's network namespace (libcontainer
/// leaves it down), so loopback works in every container.
fn loopback_up(pid: i32) -> std::io::Result<()> {
    use nix::sched::{setns, CloneFlags};
    let own = std::fs::File::open("/proc/self/ns/net")?;
    let target = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
    setns(&target, CloneFlags::CLONE_NEWNET)?;
    let result = (|| {
        // SAFETY: plain socket(2) call.
        let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if sock < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: sock is a new fd we own.
        let sock = unsafe { OwnedFd::from_raw_fd(sock) };
        // SAFETY: ifreq is plain old data; zeroed is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (i, b) in b"lo".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we pass.
        unsafe {
            if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    })();
    setns(&own, CloneFlags::CLONE_NEWNET)?;
    result
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// LoopState state of the shim's event loop (single-threaded).
struct LoopState {
    clients: HashMap<u64, mpsc::UnboundedSender<(u8, Vec<u8>)>>,
    next_client: u64,
    exit: Option<i32>,
    waiters: Vec<tokio::sync::oneshot::Sender<i32>>,
    input: Option<Rc<AsyncFd<OwnedFd>>>,
    tty_master: Option<RawFd>,
    started: bool,
    refused: Option<String>,
}

/// The event loop shared by container and exec shims.
struct ShimSetup {
    socket: Option<PathBuf>,
    /// The container's state dir (log, exit record, socket); `None` for exec.
    state: Option<PathBuf>,
    container: Option<Container>,
    pid: i32,
    stdio: Stdio,
    listener: Option<std::os::unix::net::UnixListener>,
    /// The daemon's end for an exec, attached with stdin from the start.
    client: Option<std::os::unix::net::UnixStream>,
    /// Why the container may not start (it is then refused).
    refused: Option<String>,
}

async fn serve(opts: ShimSetup) -> i32 {
    let ShimSetup {
        socket,
        state,
        container,
        pid,
        stdio,
        listener,
        client,
        refused,
    } = opts;
    let log = Rc::new(RefCell::new(state.as_ref().and_then(|s| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(s.join(LOG_FILE))
            .ok()
    })));
    let input = stdio.input.and_then(|fd| nonblocking(fd).ok()).map(Rc::new);
    let shared = Rc::new(RefCell::new(LoopState {
        clients: HashMap::new(),
        next_client: 0,
        exit: None,
        waiters: Vec::new(),
        input,
        tty_master: stdio.tty_master,
        started: container.is_none(),
        refused,
    }));
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async move {
            let mut pumps = Vec::new();
            for (fd, kind) in [(stdio.out, frame::STDOUT), (stdio.err, frame::STDERR)] {
                if let Some(fd) = fd {
                    pumps.push(tokio::task::spawn_local(pump_output(
                        fd,
                        kind,
                        shared.clone(),
                        log.clone(),
                    )));
                }
            }
            if let (Some(listener), Some(container)) = (listener, container) {
                if let Ok(l) = listener
                    .set_nonblocking(true)
                    .and_then(|_| UnixListener::from_std(listener))
                {
                    tokio::task::spawn_local(accept_loop(l, shared.clone(), Rc::new(RefCell::new(container)), pid));
                }
            }
            let mut client_task = None;
            if let Some(c) = client {
                if let Ok(c) = c.set_nonblocking(true).and_then(|_| UnixStream::from_std(c)) {
                    let (r, w) = c.into_split();
                    client_task = Some(tokio::task::spawn_local(attach_client(
                        BufReader::new(r),
                        w,
                        shared.clone(),
                        true,
                        None,
                    )));
                }
            }
            let code = reap_until_exit(pid).await;
            // Output still buffered in the pipes is drained before the exit is told.
            let drain = async {
                for p in pumps {
                    let _ = p.await;
                }
            };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), drain).await;
            if let Some(state) = &state {
                let record = ExitRecord {
                    exit_code: code,
                    finished_at: now(),
                };
                if let Ok(bytes) = serde_json::to_vec(&record) {
                    let tmp = state.join("exit.json.tmp");
                    if std::fs::write(&tmp, bytes).is_ok() {
                        let _ = std::fs::rename(&tmp, state.join(EXIT_FILE));
                    }
                }
            }
            {
                let mut s = shared.borrow_mut();
                s.exit = Some(code);
                for (_, c) in s.clients.drain() {
                    let _ = c.send((frame::EXIT, code.to_string().into_bytes()));
                }
                for w in s.waiters.drain(..) {
                    let _ = w.send(code);
                }
            }
            // Let client writers flush their last frames.
            if let Some(t) = client_task {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(2), t).await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            if let Some(socket) = &socket {
                let _ = std::fs::remove_file(socket);
            }
            code
        })
        .await
}

fn nonblocking(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    let flags = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags))?;
    #[allow(deprecated)] // tokio 1.54 has no replacement yet; the fd is owned by the AsyncFd
    AsyncFd::new(fd)
}

async fn read_fd(fd: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        let mut guard = fd.readable().await?;
        match guard.try_io(|inner| nix::unistd::read(inner.get_ref().as_raw_fd(), buf).map_err(std::io::Error::from)) {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

async fn write_fd(fd: &AsyncFd<OwnedFd>, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        let mut guard = fd.writable().await?;
        match guard.try_io(|inner| nix::unistd::write(inner.get_ref(), buf).map_err(std::io::Error::from)) {
            Ok(Ok(n)) => buf = &buf[n..],
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
    Ok(())
}

async fn pump_output(fd: OwnedFd, kind: u8, shared: Rc<RefCell<LoopState>>, log: Rc<RefCell<Option<std::fs::File>>>) {
    let Ok(fd) = nonblocking(fd) else { return };
    let stream = if kind == frame::STDOUT { "stdout" } else { "stderr" };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        // A pty master reports EIO once every slave is closed: that is its EOF.
        let n = match read_fd(&fd, &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        if let Some(f) = log.borrow_mut().as_mut() {
            let line = LogLine {
                time: now(),
                stream: stream.into(),
                log: String::from_utf8_lossy(chunk).into_owned(),
            };
            if let Ok(mut bytes) = serde_json::to_vec(&line) {
                bytes.push(b'\n');
                let _ = f.write_all(&bytes);
            }
        }
        let s = shared.borrow();
        for c in s.clients.values() {
            let _ = c.send((kind, chunk.to_vec()));
        }
    }
}

/// Waits for the container's init, reaping every other orphan on the way.
async fn reap_until_exit(pid: i32) -> i32 {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let mut sigchld = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()) {
        Ok(s) => s,
        Err(_) => return 255,
    };
    loop {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => return code,
                Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == pid => return 128 + sig as i32,
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
        sigchld.recv().await;
    }
}

async fn accept_loop(l: UnixListener, shared: Rc<RefCell<LoopState>>, container: Rc<RefCell<Container>>, pid: i32) {
    while let Ok((conn, _)) = l.accept().await {
        tokio::task::spawn_local(handle(conn, shared.clone(), container.clone(), pid));
    }
}

async fn reply(w: &mut (impl tokio::io::AsyncWrite + Unpin), r: &Reply) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(r).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    w.write_all(&bytes).await
}

async fn handle(conn: UnixStream, shared: Rc<RefCell<LoopState>>, container: Rc<RefCell<Container>>, pid: i32) {
    let (r, mut w) = conn.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
        return;
    }
    let req: Request = match serde_json::from_str(&line) {
        Ok(q) => q,
        Err(e) => {
            let _ = reply(
                &mut w,
                &Reply {
                    error: Some(format!("bad request: {e}")),
                    ..Default::default()
                },
            )
            .await;
            return;
        }
    };
    match req {
        Request::Start => {
            let r = start_once(&shared, &container, pid);
            let _ = reply(&mut w, &r).await;
        }
        Request::Wait => {
            let exited = shared.borrow().exit;
            if let Some(code) = exited {
                let _ = reply(
                    &mut w,
                    &Reply {
                        exit_code: Some(code),
                        ..Default::default()
                    },
                )
                .await;
                return;
            }
            let rx = {
                let mut s = shared.borrow_mut();
                let (tx, rx) = tokio::sync::oneshot::channel();
                s.waiters.push(tx);
                rx
            };
            if let Ok(code) = rx.await {
                let _ = reply(
                    &mut w,
                    &Reply {
                        exit_code: Some(code),
                        ..Default::default()
                    },
                )
                .await;
            }
        }
        Request::Kill { signal } => {
            let r = if shared.borrow().exit.is_some() {
                Reply {
                    error: Some("container is not running".into()),
                    ..Default::default()
                }
            } else {
                // The init is our child (subreaper) and not yet reaped, so its pid cannot be reused.
                // SAFETY: kill(2) with a pid and signal number.
                match unsafe { libc::kill(pid, signal) } {
                    0 => Reply::default(),
                    _ => Reply {
                        error: Some(format!("kill: {}", std::io::Error::last_os_error())),
                        ..Default::default()
                    },
                }
            };
            let _ = reply(&mut w, &r).await;
        }
        Request::Resize { cols, rows } => {
            if let Some(m) = shared.borrow().tty_master {
                resize(m, cols, rows);
            }
            let _ = reply(&mut w, &Reply::default()).await;
        }
        Request::Attach { stdin } => attach_client(r, w, shared, stdin, None).await,
        Request::AttachStart { stdin } => attach_client(r, w, shared, stdin, Some((container, pid))).await,
    }
}

/// Starts the container unless it already was; the reply to send.
fn start_once(shared: &Rc<RefCell<LoopState>>, container: &Rc<RefCell<Container>>, pid: i32) -> Reply {
    if let Some(why) = shared.borrow().refused.clone() {
        return Reply {
            error: Some(why),
            ..Default::default()
        };
    }
    let already = std::mem::replace(&mut shared.borrow_mut().started, true);
    let result = if already {
        Ok(())
    } else {
        container.borrow_mut().start()
    };
    match result {
        Ok(()) => Reply {
            pid: Some(pid),
            ..Default::default()
        },
        Err(e) => Reply {
            error: Some(format!("starting container: {e}")),
            ..Default::default()
        },
    }
}

/// Streams output frames to one client (and its input to the process) until
/// the exit frame. With `start`, starts the container once the client is
/// registered (so no output is missed) and replies with its pid.
async fn attach_client(
    r: BufReader<tokio::net::unix::OwnedReadHalf>,
    mut w: tokio::net::unix::OwnedWriteHalf,
    shared: Rc<RefCell<LoopState>>,
    stdin: bool,
    start: Option<(Rc<RefCell<Container>>, i32)>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(u8, Vec<u8>)>();
    let id = {
        let mut s = shared.borrow_mut();
        s.next_client += 1;
        let id = s.next_client;
        match s.exit {
            Some(code) => {
                let _ = tx.send((frame::EXIT, code.to_string().into_bytes()));
            }
            None => {
                s.clients.insert(id, tx);
            }
        }
        id
    };
    let first = match start {
        Some((container, pid)) => start_once(&shared, &container, pid),
        None => Reply::default(),
    };
    let failed = first.error.is_some();
    // An empty first frame: clients learn the stream is live before any output.
    if reply(&mut w, &first).await.is_err() || failed || frame::write_frame(&mut w, frame::STDOUT, &[]).await.is_err() {
        shared.borrow_mut().clients.remove(&id);
        return;
    }
    let input_task = stdin.then(|| tokio::task::spawn_local(client_input(r, shared.clone())));
    while let Some((kind, data)) = rx.recv().await {
        if frame::write_frame(&mut w, kind, &data).await.is_err() || kind == frame::EXIT {
            break;
        }
    }
    shared.borrow_mut().clients.remove(&id);
    if let Some(t) = input_task {
        t.abort();
    }
}

async fn client_input(mut r: BufReader<tokio::net::unix::OwnedReadHalf>, shared: Rc<RefCell<LoopState>>) {
    while let Ok(Some((kind, data))) = frame::read_frame(&mut r).await {
        match kind {
            frame::STDIN if data.is_empty() => {
                let tty_input = {
                    let mut s = shared.borrow_mut();
                    if s.tty_master.is_some() {
                        s.input.clone()
                    } else {
                        s.input = None;
                        None
                    }
                };
                // A terminal has no EOF of its own: send ^D.
                if let Some(i) = tty_input {
                    let _ = write_fd(&i, &[4]).await;
                }
                return;
            }
            frame::STDIN => {
                let input = shared.borrow().input.clone();
                if let Some(i) = input {
                    if write_fd(&i, &data).await.is_err() {
                        return;
                    }
                }
            }
            frame::RESIZE => {
                if let (Some(m), Some((c, rows))) = (shared.borrow().tty_master, frame::parse_resize(&data)) {
                    resize(m, c, rows);
                }
            }
            _ => {}
        }
    }
}

pub(crate) fn resize(fd: RawFd, cols: u16, rows: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads the winsize we pass; fd is our pty master.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
}

/// Reads the exit record a shim left, if any.
pub fn read_exit(state: &Path) -> Option<ExitRecord> {
    let bytes = std::fs::read(state.join(EXIT_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Reads the lines of a container log.
pub fn read_log_lines(state: &Path) -> Vec<LogLine> {
    let Ok(f) = std::fs::File::open(state.join(LOG_FILE)) else {
        return Vec::new();
    };
    std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect()
}

pub struct ExecShimArgs {
    /// An [`crate::enter::ExecSpec`] as JSON, written by the daemon.
    pub spec: PathBuf,
    pub tty: bool,
}

/// Entry point of `berth shim-exec`: runs one process in a running container.
/// fd 0 is the daemon's framed stream; the process's exit code ends it.
pub fn run_exec_shim(args: ExecShimArgs) -> ! {
    set_subreaper();
    // Keep the stream off fds 0-2 so nothing the process inherits can reach it.
    let stream_fd = nix::fcntl::fcntl(0, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))
        .unwrap_or_else(|e| fail(format!("dup stream: {e}")));
    // SAFETY: F_DUPFD_CLOEXEC returned a new fd we own.
    let stream = unsafe { std::os::unix::net::UnixStream::from_raw_fd(stream_fd) };
    redirect_stdio_to_null();
    let spec: crate::enter::ExecSpec = match std::fs::read(&args.spec)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => exec_fail(&stream, format!("exec spec {}: {e}", args.spec.display())),
    };
    let mut stdio = Stdio {
        out: None,
        err: None,
        input: None,
        tty_master: None,
    };
    let mut pty_from = None;
    let child = if args.tty {
        let (ours, theirs) =
            std::os::unix::net::UnixStream::pair().unwrap_or_else(|e| exec_fail(&stream, format!("socketpair: {e}")));
        pty_from = Some(ours);
        crate::enter::ChildStdio::Pty {
            master_to: theirs.into(),
        }
    } else {
        let (out_r, out_w) = pipe();
        let (err_r, err_w) = pipe();
        let (in_r, in_w) = pipe();
        stdio.out = Some(out_r);
        stdio.err = Some(err_r);
        stdio.input = Some(in_w);
        crate::enter::ChildStdio::Pipes {
            stdin: in_r,
            stdout: out_w,
            stderr: err_w,
        }
    };
    let pid = crate::enter::spawn(&spec, child).unwrap_or_else(|e| exec_fail(&stream, e));
    if let Some(conn) = pty_from {
        // Sent before the process's execve, which spawn has waited for.
        let master = receive_fd(&conn).unwrap_or_else(|e| exec_fail(&stream, format!("receiving the pty: {e}")));
        let input = master
            .try_clone()
            .unwrap_or_else(|e| exec_fail(&stream, format!("pty: {e}")));
        stdio.tty_master = Some(master.as_raw_fd());
        stdio.out = Some(master);
        stdio.input = Some(input);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(format!("runtime: {e}")));
    let code = rt.block_on(serve(ShimSetup {
        socket: None,
        state: None,
        container: None,
        pid: pid.as_raw(),
        stdio,
        listener: None,
        client: Some(stream),
        refused: None,
    }));
    std::process::exit(code)
}

/// Tells the daemon why the exec failed (an ERROR frame), then exits.
fn exec_fail(stream: &std::os::unix::net::UnixStream, msg: String) -> ! {
    let mut w = stream;
    let mut header = [frame::ERROR, 0, 0, 0, 0];
    header[1..].copy_from_slice(&(msg.len() as u32).to_be_bytes());
    let _ = w.write_all(b"{}\n");
    let _ = w.write_all(&header);
    let _ = w.write_all(msg.as_bytes());
    std::process::exit(126)
}
