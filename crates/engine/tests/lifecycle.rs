//! The engine's container state machine on the fake runtime: create, start,
//! exit, restart policies, stop, kill, remove, `--rm`, a start that fails,
//! and reconcile after the daemon stops or crashes. No root, no shim, no
//! mount: the fake runtime plays the processes (see `berth_runtime::fake`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_engine::{Config, Engine, Error};
use berth_model::{Container, ContainerCreate, ContainerState, RestartPolicy};
use berth_runtime::fake::FakeRuntime;
use berth_runtime::Runtime as _;

/// A daemon's life: its own tokio runtime, so that dropping it ends every
/// task it started (monitors, restarts) as a stopped daemon's would end.
struct Daemon {
    rt: tokio::runtime::Runtime,
    engine: Option<Arc<Engine>>,
}

impl Daemon {
    fn open(root: &Path, fake: &Arc<FakeRuntime>) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let config = Config {
            data_root: root.to_path_buf(),
            exe: PathBuf::from("/nonexistent/berth"),
        };
        let engine = rt
            .block_on(Engine::open_with_runtime(config, fake.clone()))
            .expect("opening the engine");
        Self {
            rt,
            engine: Some(engine),
        }
    }

    fn engine(&self) -> &Arc<Engine> {
        self.engine.as_ref().unwrap()
    }

    fn run<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.rt.block_on(f)
    }

    /// The daemon goes away (a stop or a `kill -9`: the containers live on
    /// in the fake runtime either way).
    fn stop(mut self) {
        drop(self.engine.take());
        self.rt.shutdown_timeout(Duration::from_secs(5));
    }

    fn state(&self, id: &str) -> Option<Container> {
        match self.engine().get(id) {
            Ok(c) => Some(c),
            Err(Error::NoSuchContainer(_)) => None,
            Err(e) => panic!("reading {id}: {e}"),
        }
    }

    /// Waits (up to 5 s) until the container's record satisfies `ok`.
    fn until(&self, id: &str, what: &str, ok: impl Fn(Option<&Container>) -> bool) -> Option<Container> {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let c = self.state(id);
            if ok(c.as_ref()) {
                return c;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{id}: never {what}; last seen {c:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A data root holding one image, `app:1`, with no layers: its command is
/// `/bin/app`, which the fake runtime puts in every root.
fn data_root() -> (tempfile::TempDir, Arc<FakeRuntime>) {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeRuntime::new(dir.path()).with_file("/bin/app", 0o755, b"#!/bin/sh\n"));
    let daemon = Daemon::open(dir.path(), &fake);
    let archive = image_archive(dir.path());
    daemon
        .engine()
        .images()
        .load(&archive, &mut |_| {})
        .expect("loading the test image");
    daemon.stop();
    (dir, fake)
}

/// A `docker save` archive of an image with no layers.
fn image_archive(dir: &Path) -> PathBuf {
    use sha2::Digest as _;
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/app"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": []},
    })
    .to_string();
    let hex = hex::encode(sha2::Sha256::digest(config.as_bytes()));
    let manifest =
        serde_json::json!([{"Config": format!("{hex}.json"), "RepoTags": ["app:1"], "Layers": []}]).to_string();
    let path = dir.join("app.tar");
    let mut tar = tar::Builder::new(std::fs::File::create(&path).unwrap());
    for (name, bytes) in [(format!("{hex}.json"), config), ("manifest.json".to_string(), manifest)] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, bytes.as_bytes()).unwrap();
    }
    tar.into_inner().unwrap().flush().unwrap();
    path
}

fn create(daemon: &Daemon, name: &str, restart: RestartPolicy, auto_remove: bool) -> String {
    daemon
        .engine()
        .create(ContainerCreate {
            image: "app:1".into(),
            name: Some(name.into()),
            restart,
            auto_remove,
            ..ContainerCreate::default()
        })
        .expect("creating the container")
        .id
        .into_string()
}

fn start(daemon: &Daemon, id: &str) {
    let engine = daemon.engine().clone();
    daemon.run(engine.start(id, None)).expect("starting the container");
}

#[test]
fn create_start_exit_and_remove() {
    let (dir, fake) = data_root();
    let d = Daemon::open(dir.path(), &fake);
    let id = create(&d, "web", RestartPolicy::No, false);
    let c = d.state("web").unwrap();
    assert_eq!(c.status.state, ContainerState::Created);
    assert_eq!(c.process.args, ["/bin/app"]);
    // Created: root mounted and bundle written, no process yet.
    assert!(fake.mounted(&id));
    assert!(dir.path().join("containers").join(&id).join("config.json").exists());
    assert_eq!(fake.starts(&id), 0);

    start(&d, "web");
    let c = d.state(&id).unwrap();
    assert_eq!(c.status.state, ContainerState::Running);
    assert!(c.status.pid.is_some());
    assert!(c.status.started_at.is_some());
    assert!(fake.running(&id));
    // Starting a running container again changes nothing.
    start(&d, &id);
    assert_eq!(fake.starts(&id), 1);

    fake.exit(&id, 3);
    let c = d
        .until(&id, "exited", |c| {
            c.is_some_and(|c| c.status.state == ContainerState::Exited)
        })
        .unwrap();
    assert_eq!(c.status.exit_code, Some(3));
    assert_eq!(c.status.pid, None);
    assert!(c.status.finished_at.is_some());
    assert!(!fake.mounted(&id), "an exited container's root stays mounted");
    assert_eq!(d.run(d.engine().wait(&id, false)).unwrap(), 3);

    // A stopped container starts again, its root mounted afresh.
    start(&d, &id);
    assert_eq!(fake.starts(&id), 2);
    assert!(fake.mounted(&id));
    let engine = d.engine().clone();
    match d.run(engine.remove(&id, false)) {
        Err(Error::Conflict(m)) => assert!(m.contains("it is running"), "{m}"),
        other => panic!("removing a running container without force: {other:?}"),
    }
    d.run(engine.remove(&id, true)).unwrap();
    assert!(!fake.running(&id));
    assert!(d.state(&id).is_none());
    assert!(d.state("web").is_none(), "the name is free again");
    assert!(!dir.path().join("containers").join(&id).exists());
    assert!(fake.runtime_ids_on_disk().is_empty());
    d.stop();
}

#[test]
fn restart_policies_follow_the_exit_code_and_the_user() {
    let (dir, fake) = data_root();
    let d = Daemon::open(dir.path(), &fake);

    // on-failure:2 — restarted after failures, twice, then left exited.
    let flaky = create(&d, "flaky", RestartPolicy::OnFailure { max_retries: 2 }, false);
    start(&d, &flaky);
    for starts in 2..=3 {
        fake.exit(&flaky, 1);
        d.until(&flaky, "restarted", |_| {
            fake.starts(&flaky) == starts && fake.running(&flaky)
        });
    }
    fake.exit(&flaky, 1);
    let c = d
        .until(&flaky, "left exited", |c| {
            c.is_some_and(|c| c.status.state == ContainerState::Exited)
        })
        .unwrap();
    assert_eq!(c.status.restart_count, 2);
    assert_eq!(c.status.exit_code, Some(1));
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(fake.starts(&flaky), 3, "restarted past max_retries");

    // on-failure does not restart after a clean exit.
    let clean = create(&d, "clean", RestartPolicy::OnFailure { max_retries: 5 }, false);
    start(&d, &clean);
    fake.exit(&clean, 0);
    d.until(&clean, "exited", |c| {
        c.is_some_and(|c| c.status.state == ContainerState::Exited)
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(fake.starts(&clean), 1);

    // always: restarted after a clean exit, but not after the user stops it.
    let always = create(&d, "always", RestartPolicy::Always, false);
    start(&d, &always);
    fake.exit(&always, 0);
    d.until(&always, "restarted", |_| {
        fake.starts(&always) == 2 && fake.running(&always)
    });
    let engine = d.engine().clone();
    d.run(engine.stop(&always, Some(5))).unwrap();
    let c = d.state(&always).unwrap();
    assert_eq!(c.status.state, ContainerState::Exited);
    assert_eq!(c.status.exit_code, Some(128 + libc::SIGTERM));
    assert!(c.status.stopped_by_user);
    assert_eq!(fake.signals(&always), [libc::SIGTERM]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(fake.starts(&always), 2, "a stopped container came back");

    // kill: the signal goes through; SIGKILL counts as the user stopping it.
    let killed = create(&d, "killed", RestartPolicy::UnlessStopped, false);
    start(&d, &killed);
    d.run(engine.kill(&killed, "USR1")).unwrap();
    assert!(fake.running(&killed));
    d.run(engine.kill(&killed, "KILL")).unwrap();
    let c = d
        .until(&killed, "exited", |c| {
            c.is_some_and(|c| c.status.state == ContainerState::Exited)
        })
        .unwrap();
    assert_eq!(c.status.exit_code, Some(128 + libc::SIGKILL));
    assert_eq!(fake.signals(&killed), [libc::SIGUSR1, libc::SIGKILL]);
    match d.run(engine.kill(&killed, "KILL")) {
        Err(Error::Conflict(m)) => assert!(m.contains("is not running"), "{m}"),
        other => panic!("killing an exited container: {other:?}"),
    }
    match d.run(engine.kill(&killed, "NOPE")) {
        Err(Error::Invalid(m)) => assert!(m.contains("invalid signal"), "{m}"),
        other => panic!("a bad signal: {other:?}"),
    }
    d.stop();
}

#[test]
fn auto_remove_and_failed_starts_leave_nothing_behind() {
    let (dir, fake) = data_root();
    let d = Daemon::open(dir.path(), &fake);

    // --rm: gone, record, name and directory, once the process exits.
    let rm = create(&d, "once", RestartPolicy::No, true);
    start(&d, &rm);
    fake.exit(&rm, 0);
    d.until(&rm, "removed", |c| c.is_none());
    let rm_dir = dir.path().join("containers").join(&rm);
    d.until(&rm, "reclaimed", |_| !rm_dir.exists());

    // A start that fails: recorded as exited with the runtime's error...
    let broken = create(&d, "broken", RestartPolicy::Always, false);
    fake.fail_next_create("no cgroup for you");
    let engine = d.engine().clone();
    let err = d.run(engine.start(&broken, None)).unwrap_err();
    assert!(err.to_string().contains("no cgroup for you"), "{err}");
    let c = d.state(&broken).unwrap();
    assert_eq!(c.status.state, ContainerState::Exited);
    assert_eq!(c.status.exit_code, Some(128));
    assert!(c.status.error.as_deref().unwrap_or("").contains("no cgroup for you"));
    assert!(!fake.mounted(&broken), "a failed start left the root mounted");

    // ...and with --rm, removed, the error naming it.
    let broken_rm = create(&d, "broken-rm", RestartPolicy::No, true);
    fake.fail_next_create("no pids for you");
    let err = d.run(engine.start(&broken_rm, None)).unwrap_err();
    assert!(err.to_string().contains("no pids for you"), "{err}");
    assert!(d.state(&broken_rm).is_none());
    assert!(!dir.path().join("containers").join(&broken_rm).exists());

    // A create that fails (bad command) leaves no record and no directory.
    let before = std::fs::read_dir(dir.path().join("containers")).unwrap().count();
    let err = d
        .engine()
        .create(ContainerCreate {
            image: "app:1".into(),
            name: Some("nothing".into()),
            cmd: vec!["/bin/missing".into()],
            ..ContainerCreate::default()
        })
        .unwrap_err();
    assert!(err.to_string().contains("/bin/missing"), "{err}");
    assert!(d.state("nothing").is_none());
    assert_eq!(
        std::fs::read_dir(dir.path().join("containers")).unwrap().count(),
        before
    );
    d.stop();
}

#[test]
fn reconcile_after_the_daemon_was_down() {
    let (dir, fake) = data_root();
    let d = Daemon::open(dir.path(), &fake);
    let lives = create(&d, "lives", RestartPolicy::No, false);
    let dies = create(&d, "dies", RestartPolicy::No, false);
    let lost = create(&d, "lost", RestartPolicy::No, false);
    let comes_back = create(&d, "comes-back", RestartPolicy::Always, false);
    let rm = create(&d, "rm", RestartPolicy::No, true);
    let never_started = create(&d, "never-started", RestartPolicy::No, false);
    for id in [&lives, &dies, &lost, &comes_back, &rm] {
        start(&d, id);
    }
    d.stop();

    // While the daemon is down: two exit, one's shim vanishes with no
    // exit record, and a directory appears that no record owns.
    fake.exit(&dies, 7);
    fake.exit(&comes_back, 0);
    fake.exit(&rm, 0);
    fake.lose(&lost);
    let stray = dir.path().join("containers").join("f".repeat(64));
    std::fs::create_dir_all(stray.join("rootfs")).unwrap();

    let d = Daemon::open(dir.path(), &fake);
    // Still running: re-attached, so its exit is seen by this daemon.
    assert_eq!(d.state(&lives).unwrap().status.state, ContainerState::Running);
    fake.exit(&lives, 4);
    let c = d
        .until(&lives, "exited", |c| {
            c.is_some_and(|c| c.status.state == ContainerState::Exited)
        })
        .unwrap();
    assert_eq!(c.status.exit_code, Some(4));
    // Exited meanwhile: the exit code the runtime kept.
    let c = d.state(&dies).unwrap();
    assert_eq!(c.status.state, ContainerState::Exited);
    assert_eq!(c.status.exit_code, Some(7));
    // Gone without a word: 137, as Docker reports a killed process.
    assert_eq!(d.state(&lost).unwrap().status.exit_code, Some(137));
    // restart=always: started again by the new daemon.
    d.until(&comes_back, "restarted", |c| {
        c.is_some_and(|c| c.status.state == ContainerState::Running) && fake.starts(&comes_back) == 2
    });
    // --rm: removed with its directory.
    assert!(d.state(&rm).is_none());
    assert!(!dir.path().join("containers").join(&rm).exists());
    // Created and never started: left as it was, root unmounted.
    assert_eq!(d.state(&never_started).unwrap().status.state, ContainerState::Created);
    assert!(!fake.mounted(&never_started));
    // The stray directory is gone.
    assert!(!stray.exists());
    // And the created one still starts.
    start(&d, &never_started);
    assert!(fake.running(&never_started));
    d.stop();
}
