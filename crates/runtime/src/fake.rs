//! An in-memory [`Runtime`]: containers whose processes are only records,
//! started, signalled and ended by the test that drives them. It lets the
//! engine's state machine (create, start, exit, restart policy, stop,
//! remove, reconcile after a crash) be tested without root, mounts or
//! shims. Compiled with the `fake` feature only.
//!
//! What it keeps real: the container directories under the data root (a
//! plain directory stands in for the overlay root, holding copies of the
//! lower layers and the files given with [`FakeRuntime::with_file`]), the
//! bundle's `config.json` as [`spec::build`] makes it, and the rule that a
//! process ends when it gets SIGKILL, SIGTERM or SIGINT (as one that installs
//! no handler does), with exit code 128 + signal.
//!
//! One `FakeRuntime` outlives the engines opened on it, so a test can drop
//! an engine (a daemon stopping or crashing), change what the containers do
//! meanwhile, and open another on the same data root.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use tokio::io::BufReader;
use tokio::net::UnixStream;
use tokio::sync::watch;

use crate::shim::ExitRecord;
use crate::{cgroup, spec, Error, IdMap, Pending, Runtime, Stream};

/// Signals that end a fake process (no handler installed).
const ENDING: [i32; 3] = [libc::SIGKILL, libc::SIGTERM, libc::SIGINT];

pub struct FakeRuntime {
    containers: PathBuf,
    idmap: IdMap,
    files: Vec<(String, u32, Vec<u8>)>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    by_id: HashMap<String, Fake>,
    next_pid: i32,
    failing_creates: Vec<String>,
}

#[derive(Default)]
struct Fake {
    mounted: bool,
    bundle: bool,
    process: Option<Process>,
    exit: Option<ExitRecord>,
    starts: u32,
    signals: Vec<i32>,
}

struct Process {
    pid: i32,
    started: bool,
    exited: watch::Sender<Option<i32>>,
}

impl Process {
    fn running(&self) -> bool {
        self.started && self.exited.borrow().is_none()
    }
}

impl FakeRuntime {
    /// A runtime keeping its container directories under `data_root`.
    pub fn new(data_root: &Path) -> Self {
        Self {
            containers: data_root.join("containers"),
            idmap: IdMap {
                uid_base: 100_000,
                gid_base: 100_000,
                size: crate::idmap::DEFAULT_SIZE,
            },
            files: Vec::new(),
            state: Mutex::new(State {
                next_pid: 1000,
                ..State::default()
            }),
        }
    }

    /// A file every container root gets (`path` absolute inside the root).
    pub fn with_file(mut self, path: &str, mode: u32, contents: &[u8]) -> Self {
        self.files
            .push((path.trim_start_matches('/').to_string(), mode, contents.to_vec()));
        self
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.containers.join(id)
    }

    /// Ends the container's process with `code`, as if its program exited.
    /// Nothing happens to a container with no running process.
    pub fn exit(&self, id: &str, code: i32) {
        let mut state = self.state();
        if let Some(fake) = state.by_id.get_mut(id) {
            end(fake, code);
        }
    }

    /// Makes the container's process vanish without an exit record (a
    /// shim killed along with the node).
    pub fn lose(&self, id: &str) {
        if let Some(fake) = self.state().by_id.get_mut(id) {
            if let Some(p) = fake.process.take() {
                p.exited.send_replace(Some(137));
            }
            fake.exit = None;
        }
    }

    /// Whether the container's process is running.
    pub fn running(&self, id: &str) -> bool {
        let state = self.state();
        state
            .by_id
            .get(id)
            .and_then(|f| f.process.as_ref())
            .is_some_and(Process::running)
    }

    /// How many times the container's process was started.
    pub fn starts(&self, id: &str) -> u32 {
        self.state().by_id.get(id).map_or(0, |f| f.starts)
    }

    /// The signals sent to the container, in order.
    pub fn signals(&self, id: &str) -> Vec<i32> {
        self.state()
            .by_id
            .get(id)
            .map(|f| f.signals.clone())
            .unwrap_or_default()
    }

    /// Whether the container's root is mounted.
    pub fn mounted(&self, id: &str) -> bool {
        self.state().by_id.get(id).is_some_and(|f| f.mounted)
    }

    /// The next `create` fails with `message` (as a shim that cannot make
    /// the container does).
    pub fn fail_next_create(&self, message: &str) {
        self.state().failing_creates.push(message.to_string());
    }

    fn with_process<T>(&self, id: &str, f: impl FnOnce(&mut Fake) -> Result<T, Error>) -> Result<T, Error> {
        let mut state = self.state();
        match state.by_id.get_mut(id) {
            Some(fake) if fake.process.as_ref().is_some_and(|p| p.exited.borrow().is_none()) => f(fake),
            _ => Err(Error::NotRunning(id.to_string())),
        }
    }

    fn start_now(&self, id: &str) -> Result<i32, Error> {
        self.with_process(id, |fake| {
            let Some(p) = fake.process.as_mut() else {
                return Err(Error::NotRunning(id.to_string()));
            };
            if p.started {
                return Err(Error::container(id, "already started"));
            }
            p.started = true;
            fake.starts += 1;
            Ok(p.pid)
        })
    }
}

fn end(fake: &mut Fake, code: i32) {
    if let Some(p) = &fake.process {
        if p.exited.borrow().is_none() {
            p.exited.send_replace(Some(code));
            fake.exit = Some(ExitRecord {
                exit_code: code,
                finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            });
        }
    }
}

/// A stream whose far end is already closed: output that has ended.
fn ended_stream() -> Result<Stream, Error> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(|e| Error::io("socketpair", e))?;
    drop(theirs);
    ours.set_nonblocking(true).map_err(|e| Error::io("socketpair", e))?;
    Ok(BufReader::new(
        UnixStream::from_std(ours).map_err(|e| Error::io("socketpair", e))?,
    ))
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_symlink() {
            let _ = std::fs::remove_file(&target);
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

impl Runtime for FakeRuntime {
    fn idmap(&self) -> IdMap {
        self.idmap
    }

    fn idmapped_mounts(&self) -> bool {
        true
    }

    fn cgroup_parent(&self) -> &str {
        "/berth/fake"
    }

    fn cgroups_path(&self, id: &str) -> String {
        format!("/berth/fake/{id}")
    }

    fn rootfs(&self, id: &str) -> PathBuf {
        self.dir(id).join("rootfs")
    }

    fn log_path(&self, id: &str) -> PathBuf {
        self.dir(id).join(crate::shim::LOG_FILE)
    }

    fn mount_rootfs(
        &self,
        id: &str,
        lower_dirs: &[PathBuf],
        _owner: (u32, u32),
        _idmap: bool,
    ) -> Result<PathBuf, Error> {
        let rootfs = self.rootfs(id);
        // Lowest layer first, as overlayfs stacks them (the first is the top).
        for lower in lower_dirs.iter().rev() {
            copy_tree(lower, &rootfs).map_err(|e| Error::io(lower, e))?;
        }
        std::fs::create_dir_all(&rootfs).map_err(|e| Error::io(&rootfs, e))?;
        for (path, mode, contents) in &self.files {
            let target = rootfs.join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            std::fs::write(&target, contents).map_err(|e| Error::io(&target, e))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(*mode))
                .map_err(|e| Error::io(&target, e))?;
        }
        self.state().by_id.entry(id.to_string()).or_default().mounted = true;
        Ok(rootfs)
    }

    fn write_bundle(&self, input: &spec::SpecInput) -> Result<(), Error> {
        let path = self.dir(input.id).join("config.json");
        let json = serde_json::to_vec_pretty(&spec::build(input)).map_err(|e| Error::container(input.id, e))?;
        std::fs::write(&path, json).map_err(|e| Error::io(&path, e))?;
        self.state().by_id.entry(input.id.to_string()).or_default().bundle = true;
        Ok(())
    }

    fn is_prepared(&self, id: &str) -> bool {
        self.state().by_id.get(id).is_some_and(|f| f.mounted && f.bundle)
    }

    fn create<'a>(
        &'a self,
        id: &'a str,
        _tty: bool,
        _stdin: bool,
        _console_size: Option<(u16, u16)>,
        _restart: bool,
    ) -> Pending<'a, i32> {
        Box::pin(async move {
            let mut state = self.state();
            if !state.failing_creates.is_empty() {
                let message = state.failing_creates.remove(0);
                return Err(Error::container(id, message));
            }
            state.next_pid += 1;
            let pid = state.next_pid;
            let fake = state.by_id.entry(id.to_string()).or_default();
            if !(fake.mounted && fake.bundle) {
                return Err(Error::container(id, "no root mounted or no bundle written"));
            }
            let (exited, _) = watch::channel(None);
            fake.process = Some(Process {
                pid,
                started: false,
                exited,
            });
            fake.exit = None;
            Ok(pid)
        })
    }

    fn start<'a>(&'a self, id: &'a str) -> Pending<'a, i32> {
        Box::pin(async move { self.start_now(id) })
    }

    fn attach_start<'a>(&'a self, id: &'a str, _stdin: bool) -> Pending<'a, (i32, Stream)> {
        Box::pin(async move {
            let pid = self.start_now(id)?;
            Ok((pid, ended_stream()?))
        })
    }

    fn attach<'a>(&'a self, id: &'a str, _stdin: bool) -> Pending<'a, Stream> {
        Box::pin(async move {
            self.with_process(id, |_| Ok(()))?;
            ended_stream()
        })
    }

    fn wait<'a>(&'a self, id: &'a str) -> Pending<'a, i32> {
        Box::pin(async move {
            let mut exited = {
                let state = self.state();
                let fake = state.by_id.get(id);
                match fake.and_then(|f| f.process.as_ref()) {
                    Some(p) => p.exited.subscribe(),
                    None => {
                        return fake
                            .and_then(|f| f.exit.as_ref())
                            .map(|e| e.exit_code)
                            .ok_or_else(|| Error::NotRunning(id.to_string()))
                    }
                }
            };
            let code = exited
                .wait_for(Option::is_some)
                .await
                .map_err(|_| Error::NotRunning(id.to_string()))?;
            Ok(code.unwrap_or(137))
        })
    }

    fn kill<'a>(&'a self, id: &'a str, signal: i32) -> Pending<'a, ()> {
        Box::pin(async move {
            self.with_process(id, |fake| {
                fake.signals.push(signal);
                if ENDING.contains(&signal) {
                    end(fake, 128 + signal);
                }
                Ok(())
            })
        })
    }

    fn resize<'a>(&'a self, id: &'a str, _cols: u16, _rows: u16) -> Pending<'a, ()> {
        Box::pin(async move { self.with_process(id, |_| Ok(())) })
    }

    fn exec<'a>(
        &'a self,
        id: &'a str,
        _init_pid: i32,
        _p: &'a berth_model::ProcessConfig,
        _tty: bool,
        _console_size: Option<(u16, u16)>,
    ) -> Pending<'a, (Stream, tokio::process::Child)> {
        Box::pin(async move { Err(Error::container(id, "the fake runtime runs no exec")) })
    }

    fn shim_alive<'a>(&'a self, id: &'a str) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>> {
        Box::pin(async move {
            let state = self.state();
            state
                .by_id
                .get(id)
                .and_then(|f| f.process.as_ref())
                .is_some_and(|p| p.exited.borrow().is_none())
        })
    }

    fn exit_record(&self, id: &str) -> Option<ExitRecord> {
        self.state().by_id.get(id).and_then(|f| f.exit.clone())
    }

    fn stats(&self, id: &str) -> Option<cgroup::Usage> {
        self.running(id).then(cgroup::Usage::default)
    }

    fn delete_runtime_state(&self, id: &str) {
        if let Some(fake) = self.state().by_id.get_mut(id) {
            end(fake, 137);
            fake.process = None;
            fake.exit = None;
        }
    }

    fn unmount_rootfs(&self, id: &str) {
        if let Some(fake) = self.state().by_id.get_mut(id) {
            fake.mounted = false;
        }
    }

    fn remove(&self, id: &str) -> Result<(), Error> {
        self.delete_runtime_state(id);
        self.state().by_id.remove(id);
        let dir = self.dir(id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        Ok(())
    }

    fn ids_on_disk(&self) -> Vec<String> {
        crate::node::dir_names(&self.containers)
    }

    fn runtime_ids_on_disk(&self) -> Vec<String> {
        let state = self.state();
        state
            .by_id
            .iter()
            .filter(|(_, f)| f.process.is_some())
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn cgroup_children(&self) -> Vec<String> {
        self.runtime_ids_on_disk()
    }

    fn remove_cgroup_parent_if_empty(&self) {}
}
