//! Container lifecycle on this node: create, start (attached or not),
//! monitor and restart, stop, kill, remove, exec, logs and stats.

use std::sync::Arc;

use berth_model::{
    Container, ContainerCreate, ContainerState, ContainerStats, ContainerStatus, ExecCreate, NetworkMode, ProcessConfig,
};
use berth_runtime::{inroot, spec, Runtime};

use berth_store::{CONTAINERS, CONTAINER_NAMES};
use tokio::io::BufReader;
use tokio::net::UnixStream;

use crate::{now, Engine, Error};

/// Names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, like Docker's.
fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(x) if x.is_ascii_alphanumeric())
        && n.len() <= 128
        && c.all(|x| x.is_ascii_alphanumeric() || matches!(x, '_' | '.' | '-'))
}

/// How long an exec session waits for its start (as a client creates one
/// and starts it at once); older ones are dropped.
pub const EXEC_START_WITHIN: std::time::Duration = std::time::Duration::from_secs(600);

/// An exec session created and not started yet.
pub(crate) struct PendingExec {
    container: String,
    spec: ExecCreate,
    created: std::time::Instant,
}

const ADJECTIVES: [&str; 12] = [
    "brave", "calm", "eager", "fond", "keen", "lucid", "merry", "noble", "quiet", "swift", "tidy", "vivid",
];
const NOUNS: [&str; 12] = [
    "anchor", "buoy", "cove", "dock", "ferry", "harbor", "jetty", "keel", "mast", "pier", "quay", "wharf",
];

fn random_name(id: &str) -> String {
    let b = id.as_bytes();
    format!(
        "{}_{}_{}",
        ADJECTIVES[b[0] as usize % 12],
        NOUNS[b[1] as usize % 12],
        &id[2..6]
    )
}

fn merge_env(base: &[String], overrides: &[String]) -> Vec<String> {
    let mut env: Vec<String> = base.to_vec();
    for kv in overrides {
        let key = kv.split('=').next().unwrap_or(kv);
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    env
}

impl Engine {
    /// Resolves a name, full id or unique id prefix to a container id.
    pub fn resolve(&self, name_or_id: &str) -> Result<String, Error> {
        let key = name_or_id.trim_start_matches('/');
        if let Some(id) = self.store.get::<String>(CONTAINER_NAMES, key)? {
            return Ok(id);
        }
        if self.store.get::<Container>(CONTAINERS, key)?.is_some() {
            return Ok(key.to_string());
        }
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::NoSuchContainer(name_or_id.to_string()));
        }
        let ids: Vec<String> = self
            .store
            .list::<Container>(CONTAINERS)?
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| id.starts_with(key))
            .collect();
        match ids.len() {
            0 => Err(Error::NoSuchContainer(name_or_id.to_string())),
            1 => Ok(ids.into_iter().next().unwrap_or_default()),
            _ => Err(Error::Ambiguous(name_or_id.to_string())),
        }
    }

    pub fn get(&self, name_or_id: &str) -> Result<Container, Error> {
        let id = self.resolve(name_or_id)?;
        self.store
            .get(CONTAINERS, &id)?
            .ok_or(Error::NoSuchContainer(name_or_id.to_string()))
    }

    pub fn list(&self, all: bool) -> Result<Vec<Container>, Error> {
        let mut v: Vec<Container> = self
            .store
            .list::<Container>(CONTAINERS)?
            .into_iter()
            .map(|(_, c)| c)
            .filter(|c| all || matches!(c.status.state, ContainerState::Running | ContainerState::Restarting))
            .collect();
        v.sort_by(|a, b| b.created.cmp(&a.created));
        Ok(v)
    }

    fn save(&self, c: &Container) -> Result<(), Error> {
        self.store.write(|t| t.put(CONTAINERS, &c.id, c))?;
        Ok(())
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut ContainerStatus)) -> Result<Container, Error> {
        self.update_with(id, true, f)
    }

    /// `update`, flushed to disk or not (`durable`).
    fn update_with(&self, id: &str, durable: bool, f: impl FnOnce(&mut ContainerStatus)) -> Result<Container, Error> {
        let c = self.store.write_or_defer(durable, |t| {
            let mut c: Container = t.get(CONTAINERS, id)?.ok_or(berth_store::Error::Storage {
                table: "local/containers",
                message: format!("container {id} vanished"),
            })?;
            f(&mut c.status);
            t.put(CONTAINERS, id, &c)?;
            Ok(c)
        })?;
        Ok(c)
    }

    /// The number of the node's last store commit (see [`Engine::make_durable`]).
    pub fn last_commit(&self) -> u64 {
        self.store.last_commit()
    }

    /// Makes the node's commits up to `commit` durable: the node's group
    /// commit, free when a durable commit since covered them.
    pub fn make_durable(&self, commit: u64) -> Result<(), Error> {
        Ok(self.store.make_durable(commit)?)
    }

    /// Validates the request and records a new container (state `created`).
    /// Nothing is left behind when it fails.
    pub fn create(&self, req: ContainerCreate) -> Result<Container, Error> {
        self.create_inner(req, true)
    }

    /// Creates a container that the caller starts at once (`run`): the
    /// record's write is not flushed on its own, the start's write makes it
    /// durable (see `Store::write_deferred`). Saves one disk flush per run.
    pub fn create_to_start(&self, req: ContainerCreate) -> Result<Container, Error> {
        self.create_inner(req, false)
    }

    fn create_inner(&self, req: ContainerCreate, durable: bool) -> Result<Container, Error> {
        let image = self.images.resolve(&req.image)?;
        self.check_trust_policies(&req.image, &image)?;
        if let Some(n) = &req.name {
            if !valid_name(n) {
                return Err(Error::Invalid(format!(
                    "invalid container name {n:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                )));
            }
        }
        match &req.network {
            None | Some(NetworkMode::None) => {}
            Some(NetworkMode::Named(default)) if default == "default" => {}
            Some(other) => {
                return Err(Error::Invalid(format!(
                    "network {:?} is not available: this node supports --network none (bridge networks come later)",
                    other.as_str()
                )))
            }
        }
        if req.labels.len() > 256 {
            return Err(Error::Invalid(format!("at most 256 labels (got {})", req.labels.len())));
        }
        if let Some((k, _)) = req.labels.iter().find(|(k, v)| {
            k.is_empty() || k.len() > 256 || v.len() > 4096 || k.chars().chain(v.chars()).any(char::is_control)
        }) {
            return Err(Error::Invalid(format!(
                "invalid label {k:?}: a key of 1 to 256 characters and a value of at most 4096, without control characters"
            )));
        }
        match req.userns.as_deref() {
            None | Some("") | Some("private") | Some("host") => {}
            Some(other) => return Err(Error::Invalid(format!("invalid --userns {other:?} (use host)"))),
        }
        if let Some(m) = req.resources.memory_bytes {
            if m < 6 << 20 {
                return Err(Error::Invalid(format!("memory limit {m} is below the minimum of 6MiB")));
            }
        }
        if req.resources.nano_cpus == Some(0) {
            return Err(Error::Invalid("--cpus must be greater than 0".into()));
        }
        for b in &req.binds {
            let p = std::path::Path::new(&b.source);
            if !p.exists() {
                return Err(Error::Invalid(format!(
                    "invalid volume: host path {} does not exist",
                    b.source
                )));
            }
        }
        let mut args: Vec<String> = match &req.entrypoint {
            Some(e) => e.clone(),
            None => image.config.entrypoint.clone(),
        };
        if !req.cmd.is_empty() {
            args.extend(req.cmd.iter().cloned());
        } else if req.entrypoint.is_none() || req.entrypoint.as_ref().is_some_and(|e| e.is_empty()) {
            args.extend(image.config.cmd.iter().cloned());
        }
        if args.is_empty() {
            return Err(Error::Invalid(format!(
                "no command specified and image {} has no Cmd or Entrypoint",
                req.image
            )));
        }
        let cwd = req.working_dir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| {
            if image.config.working_dir.is_empty() {
                "/".into()
            } else {
                image.config.working_dir.clone()
            }
        });
        if !cwd.starts_with('/') {
            return Err(Error::Invalid(format!("working directory {cwd:?} must be absolute")));
        }
        for e in &req.env {
            if e.split('=').next().is_none_or(str::is_empty) {
                return Err(Error::Invalid(format!(
                    "invalid environment variable {e:?}: the name before '=' is empty"
                )));
            }
        }
        if let Some(bad) = req.env.iter().chain(&req.cmd).find(|s| s.contains('\0')) {
            return Err(Error::Invalid(format!("{bad:?} has a NUL byte")));
        }
        let mut env = merge_env(&image.config.env, &req.env);
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(
                0,
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            );
        }
        let id = berth_model::new_id();
        let name = req.name.clone().unwrap_or_else(|| random_name(&id));
        let hostname = req.hostname.clone().unwrap_or_else(|| id[..12].to_string());
        env.retain(|e| !e.starts_with("HOSTNAME="));
        env.push(format!("HOSTNAME={hostname}"));
        if req.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        let container = Container {
            id: id.clone().into(),
            name: name.clone(),
            image: req.image.clone(),
            image_id: image.id.clone(),
            created: now(),
            process: ProcessConfig {
                args,
                env,
                cwd,
                uid: 0,
                gid: 0,
                additional_gids: vec![],
            },
            spec: req,
            status: ContainerStatus::default(),
        };
        // Check the command and user against the image now, so that a bad
        // request fails at create with nothing left behind.
        let container = self.prepare_rootfs(container, true)?;
        let r = self.store.write_or_defer(durable, |t| {
            if t.get::<String>(CONTAINER_NAMES, &name)?.is_some() {
                return Ok(false);
            }
            t.put(CONTAINER_NAMES, &name, &id)?;
            t.put(CONTAINERS, &id, &container)?;
            Ok(true)
        });
        let created = match r {
            Ok(c) => c,
            Err(e) => {
                let _ = self.runtime.remove(&id);
                return Err(e.into());
            }
        };
        if !created {
            let _ = self.runtime.remove(&id);
            let holder = self
                .store
                .get::<String>(CONTAINER_NAMES, &name)
                .ok()
                .flatten()
                .unwrap_or_default();
            return Err(Error::Conflict(format!(
                "container name {name:?} is already in use by container {}: remove or rename it first",
                &holder[..holder.len().min(12)]
            )));
        }
        self.emit_container(
            &container,
            "create",
            &id,
            &[("name", &name), ("image", &container.image)],
        );
        Ok(container)
    }

    /// Mounts the container's root, resolves its user and command inside the
    /// image (on `first`, at create), and writes the bundle. A failure on
    /// `first` removes everything the container had on disk.
    fn prepare_rootfs(&self, mut c: Container, first: bool) -> Result<Container, Error> {
        let image = self.images.resolve(&c.image_id)?;
        let userns = !(c.spec.privileged || c.spec.userns.as_deref() == Some("host"));
        let map = self.runtime.idmap();
        // Id-mapped lower layers share one unshifted unpack across every uid
        // range; kernels without them get layers unpacked shifted instead.
        let idmapped = userns && self.runtime.idmapped_mounts();
        let shift = (userns && !idmapped).then_some(berth_image::IdShift {
            uid_base: map.uid_base,
            gid_base: map.gid_base,
            size: map.size,
        });
        let result = (|| {
            let lowers = self.images.layer_dirs(&image, shift)?;
            let owner = if userns { (map.uid_base, map.gid_base) } else { (0, 0) };
            let rootfs = self.runtime.mount_rootfs(&c.id, &lowers, owner, idmapped)?;
            if first {
                let user = c
                    .spec
                    .user
                    .clone()
                    .filter(|u| !u.is_empty())
                    .unwrap_or_else(|| image.config.user.clone());
                let (uid, gid, extra) = inroot::resolve_user(&rootfs, &user)?;
                c.process.uid = uid;
                c.process.gid = gid;
                c.process.additional_gids = extra;
                inroot::check_executable(&rootfs, &c.process.args[0], &c.process.env, &c.process.cwd)?;
                inroot::check_bind_targets(&rootfs, &c.spec.binds)?;
            }
            let hostname = c.spec.hostname.clone().unwrap_or_else(|| c.id[..12].to_string());
            let rootfs_str = rootfs.display().to_string();
            let cgroups = self.runtime.cgroups_path(&c.id);
            self.runtime.write_bundle(&spec::SpecInput {
                id: &c.id,
                rootfs: &rootfs_str,
                process: &c.process,
                hostname: &hostname,
                tty: c.spec.tty,
                read_only: c.spec.read_only,
                privileged: c.spec.privileged,
                userns: userns.then_some(map),
                resources: &c.spec.resources,
                binds: &c.spec.binds,
                etc_files: &[],
                cgroups_path: &cgroups,
            })?;
            Ok::<_, Error>(())
        })();
        match result {
            Ok(()) => Ok(c),
            Err(e) => {
                if first {
                    let _ = self.runtime.remove(&c.id);
                } else {
                    self.runtime.unmount_rootfs(&c.id);
                }
                Err(e)
            }
        }
    }

    /// Starts a created or exited container. With `attach`, returns the
    /// output stream, attached before the process runs so nothing is missed.
    pub async fn start(
        self: &Arc<Self>,
        name_or_id: &str,
        attach: Option<bool>,
    ) -> Result<Option<BufReader<UnixStream>>, Error> {
        let id = self.resolve(name_or_id)?;
        let lock = self.lock(&id);
        let _guard = lock.lock().await;
        let c: Container = self.get(&id)?;
        if matches!(c.status.state, ContainerState::Running) {
            if attach.is_some() {
                return Err(Error::Conflict(format!("container {} is already running", c.name)));
            }
            return Ok(None);
        }
        self.start_locked(c, attach, true).await
    }

    /// Starts a container just created with `create_to_start`, attached,
    /// leaving the write that records it running unflushed: the caller
    /// makes it durable ([`Engine::make_durable`] up to [`Engine::last_commit`],
    /// free when a durable write since covered it, such as the request's
    /// audit entry) before it tells anyone
    /// the container started. One disk flush fewer per `berth run`.
    pub async fn start_unflushed(
        self: &Arc<Self>,
        id: &str,
        stdin: bool,
    ) -> Result<Option<BufReader<UnixStream>>, Error> {
        let lock = self.lock(id);
        let _guard = lock.lock().await;
        let c: Container = self.get(id)?;
        if c.status.state != ContainerState::Created {
            return Err(Error::Conflict(format!("container {} is not newly created", c.name)));
        }
        self.start_locked(c, Some(stdin), false).await
    }

    async fn start_locked(
        self: &Arc<Self>,
        c: Container,
        attach: Option<bool>,
        durable: bool,
    ) -> Result<Option<BufReader<UnixStream>>, Error> {
        let id = c.id.to_string();
        // A container started right after create still has its root mounted
        // and its bundle written; a restarted one gets them again.
        let first = c.status.state == ContainerState::Created && self.runtime.is_prepared(&id);
        let c = if first { c } else { self.prepare_rootfs(c, false)? };
        let result = async {
            self.runtime
                .create(&id, c.spec.tty, c.spec.open_stdin, c.spec.console_size, !first)
                .await?;
            let (stream, pid) = match attach {
                Some(stdin) => {
                    let (pid, stream) = self.runtime.attach_start(&id, stdin).await?;
                    (Some(stream), pid)
                }
                None => (None, self.runtime.start(&id).await?),
            };
            Ok::<_, Error>((stream, pid))
        }
        .await;
        let (stream, pid) = match result {
            Ok(v) => v,
            Err(e) => {
                self.runtime.delete_runtime_state(&id);
                self.runtime.unmount_rootfs(&id);
                if c.spec.auto_remove {
                    // `--rm`: a container that cannot start is removed, as
                    // Docker does; the error names it. The caller holds its lock.
                    match self.forget(&id, &c.name) {
                        Ok(()) => {
                            self.locks.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                            self.emit_container(&c, "destroy", &id, &[("name", &c.name)]);
                            return Err(e);
                        }
                        Err(fe) => tracing::warn!(container_id = %id, error = %fe, "auto-remove after a failed start"),
                    }
                }
                let msg = e.to_string();
                let _ = self.update(&id, |s| {
                    s.state = ContainerState::Exited;
                    s.exit_code = Some(128);
                    s.error = Some(msg);
                });
                return Err(e);
            }
        };
        // Watch for the exit while the state is written: the exit is handled
        // under this container's lock, which the caller holds until then.
        self.monitor(id.clone());
        self.update_with(&id, durable, |s| {
            s.state = ContainerState::Running;
            s.pid = Some(pid);
            s.started_at = Some(now());
            s.finished_at = None;
            s.exit_code = None;
            s.error = None;
            s.stopped_by_user = false;
        })?;
        self.emit_container(&c, "start", &id, &[("name", &c.name)]);
        Ok(stream)
    }

    /// Watches one running container until it exits, then records the exit
    /// and applies its restart policy (or removes it for `--rm`).
    pub(crate) fn monitor(self: &Arc<Self>, id: String) {
        let engine = self.clone();
        tokio::spawn(async move {
            let code = match engine.runtime.wait(&id).await {
                Ok(code) => code,
                Err(e) => {
                    tracing::warn!(container_id = %id, error = %e, "lost the container's shim");
                    137
                }
            };
            engine.on_exit(&id, code).await;
        });
    }

    pub(crate) async fn on_exit(self: &Arc<Self>, id: &str, code: i32) {
        let lock = self.lock(id);
        let guard = lock.lock().await;
        let Ok(Some(c)) = self.store.get::<Container>(CONTAINERS, id) else {
            return;
        };
        if !matches!(c.status.state, ContainerState::Running | ContainerState::Restarting) {
            return;
        }
        if c.spec.auto_remove {
            // `--rm`: the record and name go in one write, so `run --rm`
            // returns at once; the cgroups, mounts and directory are reclaimed
            // right after, off the caller's path. A crash in between leaves a
            // directory without a record, which the next start's reconcile
            // removes like any other. The write need not be flushed on its
            // own: if a crash loses it, the record comes back as a running
            // `--rm` container without a shim, which reconcile marks exited
            // and removes.
            let forgotten = self.store.write_deferred(|t| {
                t.delete(CONTAINERS, id)?;
                t.delete(CONTAINER_NAMES, &c.name)?;
                Ok(())
            });
            if let Err(e) = forgotten {
                tracing::warn!(container_id = %id, error = %e, "auto-remove: forgetting the container");
                drop(guard);
                let _ = self.update(id, |s| {
                    s.state = ContainerState::Exited;
                    s.exit_code = Some(code);
                    s.pid = None;
                });
                return;
            }
            self.locks.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
            drop(guard);
            let code_s = code.to_string();
            self.emit_container(&c, "die", id, &[("name", &c.name), ("exitCode", &code_s)]);
            self.emit_container(&c, "destroy", id, &[("name", &c.name)]);
            let runtime = self.runtime.clone();
            let id = id.to_string();
            let reclaim = tokio::task::spawn_blocking(move || {
                if let Err(e) = runtime.remove(&id) {
                    tracing::warn!(container_id = %id, error = %e, "auto-remove: reclaiming the container's disk");
                }
            });
            let mut reclaiming = self.reclaiming.lock().unwrap_or_else(|e| e.into_inner());
            reclaiming.retain(|t| !t.is_finished());
            reclaiming.push(reclaim);
            return;
        }
        let finished = self.runtime.exit_record(id).map(|r| r.finished_at).unwrap_or_else(now);
        self.runtime.delete_runtime_state(id);
        self.runtime.unmount_rootfs(id);
        let restart = c
            .spec
            .restart
            .should_restart(code, c.status.restart_count, c.status.stopped_by_user)
            && !c.spec.auto_remove;
        let updated = self.update(id, |s| {
            s.state = if restart {
                ContainerState::Restarting
            } else {
                ContainerState::Exited
            };
            s.exit_code = Some(code);
            s.pid = None;
            s.finished_at = Some(finished);
        });
        let code_s = code.to_string();
        self.emit_container(&c, "die", id, &[("name", &c.name), ("exitCode", &code_s)]);
        if c.spec.auto_remove {
            drop(guard);
            if let Err(e) = self.remove(id, true).await {
                tracing::warn!(container_id = %id, error = %e, "auto-remove");
            }
            return;
        }
        if restart {
            if let Ok(c) = updated {
                let delay = restart_delay(c.status.restart_count);
                drop(guard);
                let engine = self.clone();
                let id = id.to_string();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let lock = engine.lock(&id);
                    let _g = lock.lock().await;
                    let Ok(Some(mut c)) = engine.store.get::<Container>(CONTAINERS, &id) else {
                        return;
                    };
                    if c.status.state != ContainerState::Restarting {
                        return;
                    }
                    c.status.restart_count += 1;
                    if engine.save(&c).is_err() {
                        return;
                    }
                    engine.emit_container(&c, "restart", &id, &[("name", &c.name)]);
                    if let Err(e) = engine.start_locked(c, None, true).await {
                        tracing::warn!(container_id = %id, error = %e, "restart failed");
                    }
                });
            }
        }
    }

    /// Sends the stop signal, waits up to `timeout` seconds, then SIGKILL.
    pub async fn stop(self: &Arc<Self>, name_or_id: &str, timeout: Option<u64>) -> Result<(), Error> {
        let id = self.resolve(name_or_id)?;
        let c = self.mark_stopped(&id)?;
        if c.status.state == ContainerState::Restarting {
            self.update(&id, |s| s.state = ContainerState::Exited)?;
            return Ok(());
        }
        if c.status.state != ContainerState::Running {
            return Ok(());
        }
        let image_signal = self.images.resolve(&c.image_id).ok().and_then(|i| i.config.stop_signal);
        let signal = image_signal
            .as_deref()
            .map(parse_signal)
            .transpose()?
            .unwrap_or(libc::SIGTERM);
        self.emit_container(&c, "stop", &id, &[("name", &c.name)]);
        let _ = self.runtime.kill(&id, signal).await;
        let t = std::time::Duration::from_secs(timeout.unwrap_or(10));
        if tokio::time::timeout(t, self.wait(&id, false)).await.is_err() {
            let _ = self.runtime.kill(&id, libc::SIGKILL).await;
            let _ = self.wait(&id, false).await;
        }
        Ok(())
    }

    fn mark_stopped(&self, id: &str) -> Result<Container, Error> {
        self.update(id, |s| s.stopped_by_user = true)
    }

    pub async fn kill(&self, name_or_id: &str, signal: &str) -> Result<(), Error> {
        let id = self.resolve(name_or_id)?;
        let sig = parse_signal(signal)?;
        let c = self.get(&id)?;
        if c.status.state != ContainerState::Running {
            return Err(Error::Conflict(format!("container {} is not running", c.name)));
        }
        if sig == libc::SIGKILL || sig == libc::SIGTERM {
            self.mark_stopped(&id)?;
        }
        self.runtime.kill(&id, sig).await?;
        self.emit_container(&c, "kill", &id, &[("name", &c.name), ("signal", signal)]);
        Ok(())
    }

    /// Removes a container; a running one only with `force` (killed first).
    pub async fn remove(self: &Arc<Self>, name_or_id: &str, force: bool) -> Result<(), Error> {
        let id = self.resolve(name_or_id)?;
        let c = self.get(&id)?;
        if c.status.state == ContainerState::Running {
            if !force {
                return Err(Error::Conflict(format!(
                    "cannot remove container {}: it is running (stop it first or use rm -f)",
                    c.name
                )));
            }
            self.mark_stopped(&id)?;
            let _ = self.runtime.kill(&id, libc::SIGKILL).await;
            let _ = self.runtime.wait(&id).await;
        }
        let lock = self.lock(&id);
        let _guard = lock.lock().await;
        self.update(&id, |s| s.state = ContainerState::Removing)?;
        self.forget(&id, &c.name)?;
        self.locks.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        self.emit_container(&c, "destroy", &id, &[("name", &c.name)]);
        Ok(())
    }

    /// Removes the container from disk, then its record and name.
    pub(crate) fn forget(&self, id: &str, name: &str) -> Result<(), Error> {
        self.runtime.remove(id)?;
        self.store.write(|t| {
            t.delete(CONTAINERS, id)?;
            t.delete(CONTAINER_NAMES, name)?;
            Ok(())
        })?;
        Ok(())
    }

    /// Waits for the container to stop (or, with `removed`, to be gone); its
    /// exit code. Driven by the engine's own events, so nothing polls.
    pub async fn wait(&self, name_or_id: &str, removed: bool) -> Result<i32, Error> {
        let id = self.resolve(name_or_id)?;
        // Subscribe before looking, so no event falls between the two.
        let mut events = self.subscribe();
        let mut last_code = 0;
        loop {
            match self.store.get::<Container>(CONTAINERS, &id)? {
                None => return Ok(last_code),
                Some(c) => {
                    last_code = c.status.exit_code.unwrap_or(last_code);
                    let stopped = !matches!(
                        c.status.state,
                        ContainerState::Running | ContainerState::Restarting | ContainerState::Created
                    );
                    if stopped && !removed {
                        return Ok(last_code);
                    }
                }
            }
            loop {
                match events.recv().await {
                    Ok(e) if e.id == id && matches!(e.action.as_str(), "die" | "destroy" | "start") => {
                        if let Some(code) = e.attributes.get("exitCode").and_then(|c| c.parse().ok()) {
                            last_code = code;
                        }
                        break;
                    }
                    Ok(_) => {}
                    // Missed events: look at the record again.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        return Err(Error::Conflict("the engine is shutting down".into()))
                    }
                }
            }
        }
    }

    pub async fn attach(&self, name_or_id: &str, stdin: bool) -> Result<BufReader<UnixStream>, Error> {
        let id = self.resolve(name_or_id)?;
        Ok(self.runtime.attach(&id, stdin).await?)
    }

    pub async fn resize(&self, name_or_id: &str, cols: u16, rows: u16) -> Result<(), Error> {
        let id = self.resolve(name_or_id)?;
        Ok(self.runtime.resize(&id, cols, rows).await?)
    }

    /// Creates an exec session: `spec` to run in the running container
    /// `name_or_id` once [`Engine::start_exec`] is called. Returns its id.
    /// Sessions not started within [`EXEC_START_WITHIN`] are dropped.
    pub fn create_exec(&self, name_or_id: &str, spec: ExecCreate) -> Result<String, Error> {
        let c = self.get(name_or_id)?;
        if c.status.state != ContainerState::Running {
            return Err(Error::Conflict(format!("container {} is not running", c.name)));
        }
        if spec.cmd.is_empty() {
            return Err(Error::Invalid("exec needs a command".into()));
        }
        let id = berth_model::new_id();
        let mut execs = self.execs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        execs.retain(|_, e| e.created.elapsed() < EXEC_START_WITHIN);
        execs.insert(
            id.clone(),
            PendingExec {
                container: c.id.into_string(),
                spec,
                created: std::time::Instant::now(),
            },
        );
        Ok(id)
    }

    /// The container of a pending exec session, if there is one.
    pub fn exec_container(&self, exec_id: &str) -> Option<String> {
        self.execs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(exec_id)
            .map(|e| e.container.clone())
    }

    /// Starts (and ends the session of) the exec `exec_id`: the framed
    /// stream and the exec shim, as [`Engine::exec`].
    pub async fn start_exec(&self, exec_id: &str) -> Result<(BufReader<UnixStream>, tokio::process::Child), Error> {
        let pending = self
            .execs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(exec_id)
            .filter(|e| e.created.elapsed() < EXEC_START_WITHIN);
        let Some(pending) = pending else {
            return Err(Error::NoSuchExec(exec_id.to_string()));
        };
        self.exec(&pending.container, pending.spec).await
    }

    /// Runs a process in a running container: the framed stream and the exec shim.
    pub async fn exec(
        &self,
        name_or_id: &str,
        req: ExecCreate,
    ) -> Result<(BufReader<UnixStream>, tokio::process::Child), Error> {
        let id = self.resolve(name_or_id)?;
        let c = self.get(&id)?;
        if c.status.state != ContainerState::Running {
            return Err(Error::Conflict(format!("container {} is not running", c.name)));
        }
        if req.cmd.is_empty() {
            return Err(Error::Invalid("exec needs a command".into()));
        }
        let rootfs = self.runtime.rootfs(&id);
        let (uid, gid, extra) = match req.user.as_deref().filter(|u| !u.is_empty()) {
            Some(u) => inroot::resolve_user(&rootfs, u)?,
            None => (c.process.uid, c.process.gid, c.process.additional_gids.clone()),
        };
        let env = merge_env(&c.process.env, &req.env);
        let cwd = req.working_dir.clone().unwrap_or_else(|| c.process.cwd.clone());
        inroot::check_executable(&rootfs, &req.cmd[0], &env, &cwd)?;
        let p = ProcessConfig {
            args: req.cmd.clone(),
            env,
            cwd,
            uid,
            gid,
            additional_gids: extra,
        };
        let pid = c
            .status
            .pid
            .ok_or_else(|| Error::Conflict(format!("container {} has no running process", c.name)))?;
        let out = self.runtime.exec(&id, pid, &p, req.tty, req.console_size).await?;
        self.emit_container(
            &c,
            "exec_start",
            &id,
            &[("name", &c.name), ("execID", &req.cmd.join(" "))],
        );
        Ok(out)
    }

    pub fn log_path(&self, name_or_id: &str) -> Result<(String, std::path::PathBuf), Error> {
        let id = self.resolve(name_or_id)?;
        let path = self.runtime.log_path(&id);
        Ok((id, path))
    }

    /// One stats sample; cpu percent over `interval`.
    pub async fn stats(&self, name_or_id: &str, interval: std::time::Duration) -> Result<ContainerStats, Error> {
        let c = self.get(name_or_id)?;
        if c.status.state != ContainerState::Running {
            return Ok(ContainerStats {
                id: c.id.into_string(),
                name: c.name,
                read_at: now(),
                ..Default::default()
            });
        }
        let a = self.runtime.stats(&c.id).unwrap_or_default();
        tokio::time::sleep(interval).await;
        let b = self.runtime.stats(&c.id).unwrap_or_default();
        let cpu_percent = b.cpu_ns.saturating_sub(a.cpu_ns) as f64 / interval.as_nanos().max(1) as f64 * 100.0;
        Ok(ContainerStats {
            id: c.id.into_string(),
            name: c.name,
            cpu_usage_ns: b.cpu_ns,
            cpu_percent,
            memory_usage_bytes: b.memory,
            memory_limit_bytes: b.memory_limit,
            pids_current: b.pids,
            pids_limit: b.pids_limit,
            read_at: now(),
        })
    }

    pub fn runtime(&self) -> &dyn Runtime {
        &*self.runtime
    }
}

/// Restart back-off: 100 ms doubling, capped at 10 s (Docker's shape, shorter).
fn restart_delay(restarts: u32) -> std::time::Duration {
    std::time::Duration::from_millis((100u64 << restarts.min(7)).min(10_000))
}

/// `9`, `KILL`, `SIGKILL`, `sigterm`...
pub fn parse_signal(s: &str) -> Result<i32, Error> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let name = s.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    let n = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "TERM" => libc::SIGTERM,
        "STOP" => libc::SIGSTOP,
        "CONT" => libc::SIGCONT,
        "ALRM" => libc::SIGALRM,
        "WINCH" => libc::SIGWINCH,
        "PIPE" => libc::SIGPIPE,
        _ => return Err(Error::Invalid(format!("invalid signal {s:?}"))),
    };
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_names_and_env() {
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("sigterm").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("HUP").unwrap(), libc::SIGHUP);
        assert!(parse_signal("NOPE").unwrap_err().to_string().contains("invalid signal"));
        assert!(parse_signal("99").is_err());
        assert!(valid_name("web-1.a_b"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a b"));
        assert_eq!(
            merge_env(&["A=1".into(), "B=2".into()], &["A=3".into()]),
            vec!["B=2".to_string(), "A=3".to_string()]
        );
        assert_eq!(restart_delay(0).as_millis(), 100);
        assert_eq!(restart_delay(30).as_millis(), 10_000);
    }
}
