//! The daemon's handle on this node's containers: directories under the
//! data root, the overlayfs root, the bundle, spawning and talking to shims,
//! exec, stats and clean-up.
//!
//! Layout: `<data-root>/containers/<id>/{rootfs,upper,work,config.json,hosts,
//! hostname,shim.sock,exit.json,container.log}` and libcontainer's state in
//! `<data-root>/runtime/<id>`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::shim::{Reply, Request};
use crate::{cgroup, seccomp, shim, spec, Error, IdMap, Runtime as _};

/// Root of berth's cgroups; each daemon has its own child, named from its data root.
pub const CGROUP_ROOT: &str = "/berth";

/// Where shims put their control sockets (root only).
pub const SHIM_SOCKET_DIR: &str = "/run/berth/shim";

#[derive(Clone)]
pub struct NodeRuntime {
    containers: PathBuf,
    root: PathBuf,
    exe: PathBuf,
    cgroup_parent: String,
    pub idmap: IdMap,
    /// Set when this kernel id-maps overlayfs lower layers (probed at start).
    userns: Option<std::sync::Arc<crate::idmapped::Userns>>,
    /// Forks the shims (see `zygote.rs`); without it each shim is exec'd.
    zygote: Option<std::sync::Arc<crate::zygote::Zygote>>,
}

impl NodeRuntime {
    /// `exe` is the berth binary re-executed as `berth shim` / `berth shim-exec`.
    pub fn new(data_root: &Path, exe: PathBuf, idmap: IdMap) -> Result<Self, Error> {
        let containers = data_root.join("containers");
        let root = data_root.join("runtime");
        let sockets = PathBuf::from(SHIM_SOCKET_DIR);
        std::fs::create_dir_all(&sockets).map_err(|e| Error::io(&sockets, e))?;
        std::fs::set_permissions(&sockets, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(&sockets, e))?;
        for d in [&containers, &root] {
            std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o711)).map_err(|e| Error::io(d, e))?;
        }
        // Daemons side by side must never see each other's cgroups.
        let hash = data_root
            .display()
            .to_string()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
            });
        let cgroup_parent = format!("{CGROUP_ROOT}/{:08x}", hash as u32);
        let userns = match crate::idmapped::Userns::new(idmap) {
            Ok(u) if crate::idmapped::supported(&u, &data_root.join("tmp").join("idmap-probe")) => {
                Some(std::sync::Arc::new(u))
            }
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, "no user namespace for id-mapped mounts; layers will be unpacked shifted");
                None
            }
        };
        let zygote = match crate::zygote::Zygote::start(&exe) {
            Ok(z) => Some(std::sync::Arc::new(z)),
            Err(e) => {
                tracing::warn!(error = %e, "no shim zygote; every shim will be exec'd");
                None
            }
        };
        // The default seccomp profile is compiled once per daemon (about 9 ms
        // in libseccomp): now, in the background, rather than in the first
        // container's start. A start that comes first compiles it too.
        let warm = std::thread::Builder::new().name("seccomp-compile".into()).spawn(|| {
            if let Err(e) = seccomp::compiled(&seccomp::default_profile()) {
                tracing::warn!(error = %e, "compiling the default seccomp profile");
            }
        });
        if let Err(e) = warm {
            tracing::debug!(error = %e, "no thread to compile the seccomp profile ahead");
        }
        Ok(Self {
            containers,
            root,
            exe,
            cgroup_parent,
            idmap,
            userns,
            zygote,
        })
    }

    /// The shim's control socket. Under /run (not the data root) because unix
    /// socket paths are limited to 108 bytes; ids are random, so daemons side
    /// by side never collide.
    pub fn shim_socket(&self, id: &str) -> PathBuf {
        Path::new(SHIM_SOCKET_DIR).join(format!("{id}.sock"))
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.containers.join(id)
    }

    /// Sends one request to the container's shim; returns the open stream after the reply.
    pub async fn request(&self, id: &str, req: &Request) -> Result<(Reply, BufReader<UnixStream>), Error> {
        let path = self.shim_socket(id);
        let conn = UnixStream::connect(&path)
            .await
            .map_err(|_| Error::NotRunning(id.to_string()))?;
        let mut conn = BufReader::new(conn);
        let mut bytes = serde_json::to_vec(req).map_err(|e| Error::container(id, e))?;
        bytes.push(b'\n');
        conn.get_mut()
            .write_all(&bytes)
            .await
            .map_err(|e| Error::container(id, format!("talking to shim: {e}")))?;
        let mut line = String::new();
        conn.read_line(&mut line)
            .await
            .map_err(|e| Error::container(id, format!("reading shim: {e}")))?;
        if line.is_empty() {
            return Err(Error::NotRunning(id.to_string()));
        }
        let reply: Reply = serde_json::from_str(&line).map_err(|e| Error::container(id, format!("shim reply: {e}")))?;
        if let Some(e) = &reply.error {
            return Err(Error::container(id, e));
        }
        Ok((reply, conn))
    }

    /// The exec's confinement, taken from the container's own config.json.
    fn exec_spec(
        &self,
        id: &str,
        init_pid: i32,
        p: &berth_model::ProcessConfig,
    ) -> Result<crate::enter::ExecSpec, Error> {
        let path = self.dir(id).join("config.json");
        let spec = oci_spec::runtime::Spec::load(&path)
            .map_err(|e| Error::container(id, format!("{}: {e}", path.display())))?;
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| Error::container(id, "config.json has no process"))?;
        let capabilities = process
            .capabilities()
            .as_ref()
            .and_then(|c| c.bounding().as_ref())
            .map(|set| set.iter().map(|c| format!("CAP_{c}")).collect())
            .unwrap_or_default();
        let nofile = process.rlimits().as_ref().and_then(|rl| {
            rl.iter()
                .find(|r| r.typ() == oci_spec::runtime::PosixRlimitType::RlimitNofile)
                .map(|r| (r.soft(), r.hard()))
        });
        Ok(crate::enter::ExecSpec {
            init_pid,
            cgroup_procs: cgroup::procs_files(&self.cgroups_path(id)),
            args: p.args.clone(),
            env: p.env.clone(),
            cwd: p.cwd.clone(),
            uid: p.uid,
            gid: p.gid,
            additional_gids: p.additional_gids.clone(),
            capabilities,
            no_new_privs: process.no_new_privileges().unwrap_or(false),
            seccomp: spec.linux().as_ref().and_then(|l| l.seccomp().clone()),
            seccomp_bpf: Some(self.dir(id).join(seccomp::BPF_FILE)).filter(|p| p.exists()),
            nofile,
            console_size: None,
        })
    }

    /// Every mount under the container's dir (the root, then the id-mapped
    /// layers below it), deepest first.
    fn unmount_all(&self, id: &str) -> Result<(), Error> {
        let mut mounts = mounts_under(&self.dir(id));
        mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
        // The root stacks on the layers: it goes first.
        mounts.sort_by_key(|m| !m.ends_with("rootfs"));
        for m in mounts {
            nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH)
                .map_err(|e| Error::container(id, format!("unmounting {}: {e}", m.display())))?;
        }
        Ok(())
    }
}

impl crate::Runtime for NodeRuntime {
    fn idmap(&self) -> IdMap {
        self.idmap
    }

    fn rootfs(&self, id: &str) -> PathBuf {
        self.dir(id).join("rootfs")
    }

    fn cgroups_path(&self, id: &str) -> String {
        format!("{}/{id}", self.cgroup_parent)
    }

    /// Removes this daemon's cgroup parent when no container cgroup is left
    /// under it (at a clean stop; running containers keep it).
    fn remove_cgroup_parent_if_empty(&self) {
        if self.cgroup_children().is_empty() {
            cgroup::remove(&self.cgroup_parent);
            // Fails (and stays) while another daemon has a parent under it.
            cgroup::remove(CGROUP_ROOT);
        }
    }

    fn cgroup_parent(&self) -> &str {
        &self.cgroup_parent
    }

    /// Container ids that have a cgroup under this daemon's parent.
    fn cgroup_children(&self) -> Vec<String> {
        cgroup::list_children(&self.cgroup_parent)
    }

    /// Ids that have a container directory on disk.
    fn ids_on_disk(&self) -> Vec<String> {
        dir_names(&self.containers)
    }

    /// Ids that have libcontainer state on disk.
    fn runtime_ids_on_disk(&self) -> Vec<String> {
        dir_names(&self.root)
    }

    /// Whether lower layers are id-mapped (else they must be unpacked shifted).
    fn idmapped_mounts(&self) -> bool {
        self.userns.is_some()
    }

    /// Whether the container's root is mounted and its bundle written (as
    /// create leaves them).
    fn is_prepared(&self, id: &str) -> bool {
        let dir = self.dir(id);
        dir.join("config.json").exists() && is_mountpoint(&dir.join("rootfs"))
    }

    /// Mounts the overlayfs root (idempotent). `owner` is the host uid/gid of
    /// container root, which must own the writable layer's top directory.
    /// With `idmap`, every lower layer is first mounted id-mapped to the
    /// daemon's range under `<dir>/lower/<n>`.
    fn mount_rootfs(&self, id: &str, lower_dirs: &[PathBuf], owner: (u32, u32), idmap: bool) -> Result<PathBuf, Error> {
        let dir = self.dir(id);
        let (rootfs, upper, work) = (dir.join("rootfs"), dir.join("upper"), dir.join("work"));
        for d in [&dir, &rootfs, &upper, &work] {
            std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
        }
        if is_mountpoint(&rootfs) {
            return Ok(rootfs);
        }
        nix::unistd::chown(&upper, Some(owner.0.into()), Some(owner.1.into()))
            .map_err(|e| Error::io(&upper, e.into()))?;
        let lower_dirs: Vec<PathBuf> = match (&self.userns, idmap) {
            (Some(userns), true) => {
                let mut mapped = Vec::with_capacity(lower_dirs.len());
                for (n, layer) in lower_dirs.iter().enumerate() {
                    let target = dir.join("lower").join(n.to_string());
                    std::fs::create_dir_all(&target).map_err(|e| Error::io(&target, e))?;
                    if !is_mountpoint(&target) {
                        userns
                            .mount(layer, &target)
                            .map_err(|e| Error::container(id, format!("id-mapping layer {}: {e}", layer.display())))?;
                    }
                    mapped.push(target);
                }
                mapped
            }
            (None, true) => {
                return Err(Error::container(
                    id,
                    "id-mapped mounts are not available on this kernel",
                ))
            }
            (_, false) => lower_dirs.to_vec(),
        };
        let lower = lower_dirs
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        let data = format!(
            "lowerdir={lower},upperdir={},workdir={}",
            upper.display(),
            work.display()
        );
        if data.len() >= 4096 {
            return Err(Error::container(
                id,
                format!("image has too many layers ({}) for one overlay mount", lower_dirs.len()),
            ));
        }
        nix::mount::mount(
            Some("overlay"),
            &rootfs,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(data.as_str()),
        )
        .map_err(|e| Error::container(id, format!("mounting overlay root: {e}")))?;
        Ok(rootfs)
    }

    /// Writes /etc/hosts, /etc/hostname and config.json for the container.
    fn write_bundle(&self, input: &spec::SpecInput) -> Result<(), Error> {
        let dir = self.dir(input.id);
        let hosts = dir.join("hosts");
        let hostname = dir.join("hostname");
        write(
            &hosts,
            format!(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{}\n",
                input.hostname
            ),
        )?;
        write(&hostname, format!("{}\n", input.hostname))?;
        let etc = [
            (hosts.display().to_string(), "/etc/hosts".to_string()),
            (hostname.display().to_string(), "/etc/hostname".to_string()),
        ];
        let input = spec::SpecInput {
            etc_files: &etc,
            ..*input
        };
        let mut spec = spec::build(&input);
        let bpf = dir.join(seccomp::BPF_FILE);
        let profile = dir.join(seccomp::PROFILE_FILE);
        let _ = std::fs::remove_file(&bpf);
        let _ = std::fs::remove_file(&profile);
        // The filter is compiled once per daemon and handed to the shim as
        // BPF; a profile the compiler cannot take stays for libcontainer.
        if let Some(linux) = spec.get_mut("linux").and_then(|l| l.as_object_mut()) {
            if let Some(p) = linux.get("seccomp").filter(|p| !p.is_null()).cloned() {
                match seccomp::compiled(&p) {
                    Ok(filter) => {
                        write(&bpf, filter.as_slice())?;
                        write(
                            &profile,
                            serde_json::to_vec_pretty(&p).map_err(|e| Error::container(input.id, e))?,
                        )?;
                        linux.remove("seccomp");
                    }
                    Err(e) => {
                        tracing::debug!(container_id = %input.id, reason = %e, "seccomp profile left to libcontainer")
                    }
                }
            }
        }
        let json = serde_json::to_vec_pretty(&spec).map_err(|e| Error::container(input.id, e))?;
        write(&dir.join("config.json"), json)
    }

    /// Starts `berth shim`, which creates the container and waits for `start`.
    /// Returns the container's init pid once it is created. `restart`: the
    /// container ran before, so its old runtime state is cleared first.
    fn create<'a>(
        &'a self,
        id: &'a str,
        tty: bool,
        stdin: bool,
        console_size: Option<(u16, u16)>,
        restart: bool,
    ) -> crate::Pending<'a, i32> {
        Box::pin(async move {
            // Left over from a previous run of the same container (a container
            // never started has none).
            if restart {
                self.delete_runtime_state(id);
            }
            let dir = self.dir(id);
            let shim_log =
                std::fs::File::create(dir.join("shim.log")).map_err(|e| Error::io(dir.join("shim.log"), e))?;
            let args = shim::ShimArgs {
                id: id.to_string(),
                root: self.root.clone(),
                bundle: dir.clone(),
                state: dir.clone(),
                socket: self.shim_socket(id),
                tty,
                stdin,
                console_size: if tty { console_size } else { None },
            };
            let (ready_r, ready_w) =
                nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::io("pipe", e.into()))?;
            let log_fd = std::os::fd::OwnedFd::from(shim_log);
            let forked = match &self.zygote {
                Some(z) => match z.spawn(&args, &ready_w, &log_fd) {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(container_id = %id, error = %e, "the shim zygote failed; exec'ing the shim");
                        false
                    }
                },
                None => false,
            };
            let mut child = None;
            if !forked {
                let mut cmd = tokio::process::Command::new(&self.exe);
                cmd.arg("shim")
                    .arg("--id")
                    .arg(id)
                    .arg("--root")
                    .arg(&args.root)
                    .arg("--bundle")
                    .arg(&args.bundle)
                    .arg("--state")
                    .arg(&args.state)
                    .arg("--socket")
                    .arg(&args.socket);
                if let Some((cols, rows)) = args.console_size {
                    cmd.arg("--console-size").arg(format!("{cols}x{rows}"));
                }
                if tty {
                    cmd.arg("--tty");
                }
                if stdin {
                    cmd.arg("--stdin");
                }
                let out = ready_w.try_clone().map_err(|e| Error::io("pipe", e))?;
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::from(out))
                    .stderr(Stdio::from(log_fd.try_clone().map_err(|e| Error::io("shim.log", e))?))
                    .kill_on_drop(false);
                child = Some(
                    cmd.spawn()
                        .map_err(|e| Error::container(id, format!("spawning shim: {e}")))?,
                );
            }
            // Only the shim holds the write end now: its exit is EOF here.
            drop((ready_w, log_fd));
            let stdout = tokio::net::unix::pipe::Receiver::from_owned_fd(ready_r)
                .map_err(|e| Error::container(id, format!("reading shim: {e}")))?;
            let mut line = String::new();
            BufReader::new(stdout)
                .read_line(&mut line)
                .await
                .map_err(|e| Error::container(id, format!("reading shim: {e}")))?;
            // An exec'd shim lives on after us; reap it in the background while we run.
            if let Some(mut child) = child {
                tokio::spawn(async move {
                    let _ = child.wait().await;
                });
            }
            let line = line.trim();
            if let Some(pid) = line.strip_prefix("ready ") {
                return pid
                    .parse()
                    .map_err(|_| Error::container(id, format!("shim said {line:?}")));
            }
            let msg = line.strip_prefix("error ").map(str::to_string).unwrap_or_else(|| {
                let log = std::fs::read_to_string(dir.join("shim.log")).unwrap_or_default();
                format!("shim exited without a word; its log: {}", log.trim())
            });
            self.delete_runtime_state(id);
            Err(Error::container(id, msg))
        })
    }

    fn start<'a>(&'a self, id: &'a str) -> crate::Pending<'a, i32> {
        Box::pin(async move {
            let (r, _) = self.request(id, &Request::Start).await?;
            Ok(r.pid.unwrap_or(0))
        })
    }

    /// Waits until the container's process exits; its exit code.
    fn wait<'a>(&'a self, id: &'a str) -> crate::Pending<'a, i32> {
        Box::pin(async move {
            match self.request(id, &Request::Wait).await {
                Ok((r, _)) => r
                    .exit_code
                    .ok_or_else(|| Error::container(id, "shim gave no exit code")),
                Err(Error::NotRunning(_)) => shim::read_exit(&self.dir(id))
                    .map(|e| e.exit_code)
                    .ok_or_else(|| Error::NotRunning(id.to_string())),
                Err(e) => Err(e),
            }
        })
    }

    fn kill<'a>(&'a self, id: &'a str, signal: i32) -> crate::Pending<'a, ()> {
        Box::pin(async move { self.request(id, &Request::Kill { signal }).await.map(|_| ()) })
    }

    fn resize<'a>(&'a self, id: &'a str, cols: u16, rows: u16) -> crate::Pending<'a, ()> {
        Box::pin(async move { self.request(id, &Request::Resize { cols, rows }).await.map(|_| ()) })
    }

    /// A framed stream of the container's output (and input when `stdin`).
    fn attach<'a>(&'a self, id: &'a str, stdin: bool) -> crate::Pending<'a, crate::Stream> {
        Box::pin(async move { self.request(id, &Request::Attach { stdin }).await.map(|(_, s)| s) })
    }

    /// Attaches and starts in one request; the init pid and the stream.
    fn attach_start<'a>(&'a self, id: &'a str, stdin: bool) -> crate::Pending<'a, (i32, crate::Stream)> {
        Box::pin(async move {
            let (r, s) = self.request(id, &Request::AttachStart { stdin }).await?;
            Ok((r.pid.unwrap_or(0), s))
        })
    }

    /// Whether a shim is answering for this container.
    fn shim_alive<'a>(&'a self, id: &'a str) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>> {
        Box::pin(async move { UnixStream::connect(self.shim_socket(id)).await.is_ok() })
    }

    fn exit_record(&self, id: &str) -> Option<shim::ExitRecord> {
        shim::read_exit(&self.dir(id))
    }

    fn log_path(&self, id: &str) -> PathBuf {
        self.dir(id).join(shim::LOG_FILE)
    }

    /// Runs a process in the running container (init `init_pid`) through
    /// `berth shim-exec`, confined like the container's own process (same
    /// namespaces, cgroup, capabilities, no_new_privs and seccomp filter).
    /// Returns the framed stream (reply line already read) and the shim child.
    fn exec<'a>(
        &'a self,
        id: &'a str,
        init_pid: i32,
        p: &'a berth_model::ProcessConfig,
        tty: bool,
        console_size: Option<(u16, u16)>,
    ) -> crate::Pending<'a, (crate::Stream, tokio::process::Child)> {
        Box::pin(async move {
            let mut spec = self.exec_spec(id, init_pid, p)?;
            spec.console_size = console_size;
            let dir = self.dir(id);
            let path = dir.join(format!("exec-{}.json", berth_model::new_id()));
            write(&path, serde_json::to_vec(&spec).map_err(|e| Error::container(id, e))?)?;
            let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(|e| Error::io("socketpair", e))?;
            let mut cmd = tokio::process::Command::new(&self.exe);
            cmd.arg("shim-exec").arg("--spec").arg(&path);
            if tty {
                cmd.arg("--tty");
            }
            let theirs_fd: std::os::fd::OwnedFd = theirs.into();
            cmd.stdin(Stdio::from(theirs_fd))
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => {
                    let _ = std::fs::remove_file(&path);
                    return Err(Error::container(id, format!("spawning exec shim: {e}")));
                }
            };
            ours.set_nonblocking(true).map_err(|e| Error::io("socketpair", e))?;
            let mut stream = BufReader::new(UnixStream::from_std(ours).map_err(|e| Error::io("socketpair", e))?);
            let mut line = String::new();
            let r = stream.read_line(&mut line).await;
            let _ = std::fs::remove_file(&path);
            r.map_err(|e| Error::container(id, format!("exec shim: {e}")))?;
            Ok((stream, child))
        })
    }

    fn stats(&self, id: &str) -> Option<cgroup::Usage> {
        cgroup::usage(&self.cgroups_path(id))
    }

    /// Removes libcontainer's record of a stopped container (and its cgroup),
    /// killing whatever is left of it.
    fn delete_runtime_state(&self, id: &str) {
        let state = self.root.join(id);
        if state.exists() {
            if let Ok(mut c) = libcontainer::container::Container::load(state.clone()) {
                if let Err(e) = c.delete(true) {
                    tracing::warn!(container_id = %id, error = %e, "libcontainer delete");
                }
            }
            let _ = std::fs::remove_dir_all(&state);
        }
        cgroup::remove(&self.cgroups_path(id));
        let _ = std::fs::remove_file(self.dir(id).join(shim::EXIT_FILE));
    }

    /// Unmounts the root and removes everything of the container on disk.
    fn remove(&self, id: &str) -> Result<(), Error> {
        self.delete_runtime_state(id);
        let _ = std::fs::remove_file(self.shim_socket(id));
        let dir = self.dir(id);
        self.unmount_all(id)?;
        // Never recurse into a mount: an id-mapped lower dir is a shared layer.
        let left = mounts_under(&dir);
        if !left.is_empty() {
            return Err(Error::container(id, format!("still mounted: {}", left[0].display())));
        }
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        Ok(())
    }

    /// Unmounts the root but keeps logs and the writable layer (a stopped container).
    fn unmount_rootfs(&self, id: &str) {
        if let Err(e) = self.unmount_all(id) {
            tracing::warn!(container_id = %id, error = %e, "unmounting");
        }
    }
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) -> Result<(), Error> {
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

pub(crate) fn dir_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `path` is a mount point: one `statx` asking for the mount-root
/// attribute (Linux 5.8), else a read of /proc/self/mountinfo, which costs
/// more the more containers run.
pub fn is_mountpoint(path: &Path) -> bool {
    match statx_mount_root(path) {
        Some(root) => root,
        None => {
            let target = path.display().to_string();
            std::fs::read_to_string("/proc/self/mountinfo")
                .map(|info| mount_points(&info).any(|m| m == target))
                .unwrap_or(false)
        }
    }
}

/// The mount point of each line of a mountinfo text (its fifth field).
fn mount_points(info: &str) -> impl Iterator<Item = &str> {
    info.lines().filter_map(|l| l.split(' ').nth(4))
}

/// `Some(is the root of a mount)` when the kernel reports it, `Some(false)`
/// when `path` does not exist, `None` when the kernel cannot say.
fn statx_mount_root(path: &Path) -> Option<bool> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: `c` is a NUL-terminated path and `st` a buffer of the size statx writes.
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT,
            libc::STATX_BASIC_STATS,
            st.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => Some(false),
            _ => None,
        };
    }
    // SAFETY: statx succeeded and filled `st`.
    let st = unsafe { st.assume_init() };
    let bit = libc::STATX_ATTR_MOUNT_ROOT as u64;
    (st.stx_attributes_mask & bit != 0).then_some(st.stx_attributes & bit != 0)
}

/// Mount points at or under `prefix`. An unreadable mountinfo reports
/// `prefix` itself, never "nothing": callers delete trees after asking.
pub fn mounts_under(prefix: &Path) -> Vec<PathBuf> {
    let p = prefix.display().to_string();
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return vec![prefix.to_path_buf()];
    };
    mount_points(&info)
        .filter(|m| *m == p || m.strip_prefix(p.as_str()).is_some_and(|rest| rest.starts_with('/')))
        .map(PathBuf::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_mountinfo(path: &Path) -> bool {
        let target = path.display().to_string();
        mount_points(&std::fs::read_to_string("/proc/self/mountinfo").unwrap()).any(|m| m == target)
    }

    #[test]
    fn mount_points_are_seen_as_mountinfo_lists_them() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::create_dir(&plain).unwrap();
        for path in [Path::new("/proc"), Path::new("/"), &plain, &dir.path().join("missing")] {
            assert_eq!(is_mountpoint(path), in_mountinfo(path), "{}", path.display());
        }
        assert!(is_mountpoint(Path::new("/proc")));
        assert!(!is_mountpoint(&plain));
        // A bind mount of the directory onto itself makes it a mount point
        // (the tests run as root, as the daemon does).
        if nix::unistd::geteuid().is_root() {
            nix::mount::mount(
                Some(&plain),
                &plain,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .unwrap();
            let mounted = is_mountpoint(&plain);
            nix::mount::umount2(&plain, nix::mount::MntFlags::MNT_DETACH).unwrap();
            assert!(mounted);
            assert!(!is_mountpoint(&plain));
        }
    }
}
