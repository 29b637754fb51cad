//! End-to-end tests of the engine: a real daemon, real containers, driven
//! through the CLI. Run as root (CI does).
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{images_dir, wait_for, Daemon};

#[test]
fn images_load_list_tag_save_and_remove() {
    let d = Daemon::start();
    d.load_busybox();
    let docker = images_dir().join("busybox-docker.tar");
    let out = d.ok(&["image", "load", "-i", docker.to_str().unwrap()]);
    assert!(out.contains("busybox:docker"), "{out}");
    let list: serde_json::Value = serde_json::from_str(&d.ok(&["images", "--format", "json"])).unwrap();
    let tags: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| {
            i["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
        })
        .collect();
    assert!(
        tags.contains(&"busybox:latest".to_string()) && tags.contains(&"busybox:docker".to_string()),
        "{tags:?}"
    );
    d.ok(&["tag", "busybox", "mine/app:v1"]);
    let inspect: serde_json::Value = serde_json::from_str(&d.ok(&["image", "inspect", "mine/app:v1"])).unwrap();
    let id = inspect[0]["id"].as_str().unwrap().to_string();
    // Saved and loaded back into another daemon: the same image id.
    let saved = d.dir.path().join("saved.tar");
    d.ok(&["image", "save", "-o", saved.to_str().unwrap(), "mine/app:v1"]);
    let d2 = Daemon::start();
    d2.ok(&["image", "load", "-i", saved.to_str().unwrap()]);
    let again: serde_json::Value = serde_json::from_str(&d2.ok(&["image", "inspect", "mine/app:v1"])).unwrap();
    assert_eq!(again[0]["id"].as_str().unwrap(), id);
    assert!(d.ok(&["image", "rm", "mine/app:v1"]).contains("Untagged: mine/app:v1"));
    let (_, err) = d.fails(&["image", "inspect", "mine/app:v1"]);
    assert!(err.contains("no such image"), "{err}");
}

#[test]
fn run_streams_output_and_returns_the_exit_code() {
    let d = Daemon::start();
    d.load_busybox();
    let o = d.berth(&["run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    // stdin streams through with -i.
    let mut child = d
        .cmd(&["run", "-i", "--rm", "busybox", "tr", "a-z", "A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "HELLO\n");
    // Image config honoured, -e, -w, -u, --hostname, --entrypoint.
    let out = d.ok(&[
        "run",
        "--rm",
        "-e",
        "FOO=bar",
        "-w",
        "/tmp",
        "-u",
        "app",
        "--hostname",
        "h1",
        "busybox",
        "sh",
        "-c",
        "echo $FOO $(pwd) $(id -u) $(hostname)",
    ]);
    assert_eq!(out, "bar /tmp 1000 h1\n");
    assert_eq!(d.ok(&["run", "--rm", "--entrypoint", "echo", "busybox", "x"]), "x\n");
    // `start -a` and `run` return once the exit is recorded: an rm right
    // after them finds the container stopped, every time.
    for _ in 0..5 {
        d.ok(&["create", "--name", "seq", "busybox", "true"]);
        d.ok(&["start", "-a", "seq"]);
        d.ok(&["rm", "seq"]);
        d.ok(&["run", "--name", "seq", "busybox", "true"]);
        d.ok(&["rm", "seq"]);
    }
    // --rm left nothing behind: the record is gone when `run` returns, the
    // disk (mounts, cgroups, directory) is reclaimed right after.
    assert_eq!(d.container_count(), 0);
    wait_for("the --rm containers' mounts and directories to go", || {
        d.mounts().is_empty()
            && std::fs::read_dir(d.data_root().join("containers"))
                .unwrap()
                .next()
                .is_none()
    });
    // Loopback works.
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "ping -c1 -W1 127.0.0.1 >/dev/null && echo up"
        ]),
        "up\n"
    );
    // --read-only.
    let o = d.berth(&["run", "--rm", "--read-only", "busybox", "touch", "/x"]);
    assert_ne!(o.status.code(), Some(0));
    // -v binds, and :ro.
    let host = d.dir.path().join("shared");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("f"), "data").unwrap();
    let v = format!("{}:/mnt:ro", host.display());
    assert_eq!(d.ok(&["run", "--rm", "-v", &v, "busybox", "cat", "/mnt/f"]), "data");
    assert_ne!(
        d.berth(&["run", "--rm", "-v", &v, "busybox", "touch", "/mnt/g"])
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn detached_containers_ps_logs_exec_stop_rm() {
    let d = Daemon::start();
    d.load_busybox();
    let id = d.ok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "busybox",
        "sh",
        "-c",
        "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done",
    ]);
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64);
    let ps: serde_json::Value = serde_json::from_str(&d.ok(&["ps", "--format", "json"])).unwrap();
    assert_eq!(ps[0]["status"]["state"], "running");
    wait_for("logs", || d.ok(&["logs", "ticker"]).lines().count() >= 3);
    assert_eq!(d.ok(&["logs", "--tail", "1", &id[..8]]).lines().count(), 1);
    assert!(d.ok(&["logs", "-t", "ticker"]).lines().next().unwrap().contains('T'));
    // exec by id prefix, exit code, user, env, stdin.
    let o = d.berth(&["exec", "-e", "X=1", &id[..10], "sh", "-c", "echo $X $(id -u); exit 4"]);
    assert_eq!(o.status.code(), Some(4));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "1 0\n");
    assert_eq!(d.ok(&["exec", "-u", "app", "ticker", "id", "-u"]), "1000\n");
    let mut child = d
        .cmd(&["exec", "-i", "ticker", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"via exec\n").unwrap();
    assert_eq!(
        String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout),
        "via exec\n"
    );
    let stats: serde_json::Value =
        serde_json::from_str(&d.ok(&["stats", "--no-stream", "--format", "json", "ticker"])).unwrap();
    assert!(stats[0]["pids_current"].as_u64().unwrap() >= 1, "{stats}");
    assert!(stats[0]["memory_usage_bytes"].as_u64().unwrap() > 0, "{stats}");
    // rm of a running container needs -f.
    let (_, err) = d.fails(&["rm", "ticker"]);
    assert!(err.contains("is running"), "{err}");
    d.ok(&["stop", "-t", "1", "ticker"]);
    let inspect: serde_json::Value = serde_json::from_str(&d.ok(&["inspect", "ticker"])).unwrap();
    assert_eq!(inspect[0]["status"]["state"], "exited");
    assert_eq!(
        d.ok(&["wait", "ticker"]).trim(),
        inspect[0]["status"]["exit_code"].to_string()
    );
    // Logs survive the stop.
    assert!(d.ok(&["logs", "ticker"]).contains("tick 0"));
    d.ok(&["rm", "ticker"]);
    assert_eq!(d.container_count(), 0);
    assert!(d.mounts().is_empty());
}

#[test]
fn isolation_seen_from_inside() {
    let d = Daemon::start();
    d.load_busybox();
    let out = d.ok(&[
        "run",
        "--rm",
        "--memory",
        "64m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "20",
        "busybox",
        "/usr/local/bin/berth-probe",
    ]);
    let p: serde_json::Value = serde_json::from_str(&out).unwrap();
    let uid_map: Vec<u64> = p["uid_map"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(uid_map[0], 0);
    assert_ne!(uid_map[1], 0, "container root must not be host root");
    assert_eq!(
        p["cap_eff"]
            .as_str()
            .unwrap()
            .trim_start_matches("0x")
            .trim_start_matches('0'),
        "a80425fb",
        "docker's default capability set"
    );
    assert_eq!(p["seccomp"].to_string().trim_matches('"'), "2");
    assert_eq!(p["no_new_privs"].to_string().trim_matches('"'), "1");
    assert_eq!(p["memory_limit"].to_string().trim_matches('"'), "67108864");
    assert_eq!(p["pids_limit"].to_string().trim_matches('"'), "20");
    assert!(p["cpu_quota"].to_string().contains("50000"), "{}", p["cpu_quota"]);
    assert_eq!(p["sys_read_only"], true);
    assert_eq!(p["masked"]["/proc/keys"], true);
    assert_eq!(p["net_interfaces"], serde_json::json!(["lo"]));
    // Layers are unpacked once, unshifted, and id-mapped into the container's
    // range: image files are root's inside, and so are files root creates.
    let info: serde_json::Value = serde_json::from_str(&d.ok(&["info"])).unwrap();
    assert_eq!(info["idmapped_mounts"], true, "this kernel id-maps overlay layers");
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "stat -c %u:%g /bin/busybox; touch /new; stat -c %u /new"
        ]),
        "0:0\n0\n"
    );
    let snapshots: Vec<String> = std::fs::read_dir(d.data_root().join("image/snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "tmp")
        .collect();
    assert!(
        snapshots.iter().all(|n| !n.contains('-')),
        "shifted unpacks: {snapshots:?}"
    );
    let host_owner = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(
            d.data_root()
                .join("image/snapshots")
                .join(&snapshots[0])
                .join("bin/busybox"),
        )
        .unwrap(),
    );
    assert_eq!(host_owner, 0, "the snapshot on disk is unshifted");
    // A process started by exec is confined like the container's own.
    d.ok(&["run", "-d", "--name", "confined", "busybox", "sleep", "60"]);
    let p: serde_json::Value =
        serde_json::from_str(&d.ok(&["exec", "confined", "/usr/local/bin/berth-probe"])).unwrap();
    assert_eq!(
        p["seccomp"].to_string().trim_matches('"'),
        "2",
        "exec'd process must be under seccomp"
    );
    assert_eq!(p["no_new_privs"].to_string().trim_matches('"'), "1");
    assert_eq!(
        p["cap_eff"]
            .as_str()
            .unwrap()
            .trim_start_matches("0x")
            .trim_start_matches('0'),
        "a80425fb"
    );
    assert_ne!(p["uid_map"].as_str().unwrap().split_whitespace().nth(1), Some("0"));
    d.ok(&["rm", "-f", "confined"]);
    // The opt-outs: --privileged (all caps, no seccomp, host user namespace) and --userns host.
    let out = d.ok(&["run", "--rm", "--privileged", "busybox", "/usr/local/bin/berth-probe"]);
    let p: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(p["seccomp"].to_string().trim_matches('"'), "0");
    assert!(p["uid_map"].as_str().unwrap().split_whitespace().nth(1) == Some("0"));
    let out = d.ok(&[
        "run",
        "--rm",
        "--userns",
        "host",
        "busybox",
        "/usr/local/bin/berth-probe",
    ]);
    let p: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(p["uid_map"].as_str().unwrap().split_whitespace().nth(1) == Some("0"));
    assert_eq!(p["seccomp"].to_string().trim_matches('"'), "2");
}

#[test]
fn bad_input_is_refused_and_leaves_nothing() {
    let d = Daemon::start();
    d.load_busybox();
    d.ok(&["run", "-d", "--name", "taken", "busybox", "sleep", "60"]);
    let before = d.container_count();
    let missing = d.dir.path().join("missing").display().to_string() + ":/x";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["run", "--rm", "nosuchimage"], "no such image"),
        (vec!["run", "--rm", "Bad:Ref"], "invalid"),
        (vec!["run", "--rm", "busybox", "nosuchcmd"], "executable file not found"),
        (
            vec!["run", "--rm", "--memory", "lots", "busybox", "true"],
            "invalid memory size",
        ),
        (vec!["run", "--rm", "--cpus", "0", "busybox", "true"], "greater than 0"),
        (vec!["run", "--name", "taken", "busybox", "true"], "already in use"),
        (vec!["run", "--rm", "-v", &missing, "busybox", "true"], "does not exist"),
        (vec!["rm", "taken"], "is running"),
        (
            vec!["run", "--rm", "-u", "ghost", "busybox", "true"],
            "unable to find user ghost",
        ),
        // Named for what the user gave, not as the kernel's bare EINVAL or
        // the runtime's broken channel at start.
        (
            vec!["run", "--rm", "-e", "=x", "busybox", "true"],
            "invalid environment variable \"=x\": the name before '=' is empty",
        ),
        (
            vec!["run", "--rm", "-v", "/etc/hostname:/bin", "busybox", "true"],
            "invalid volume /etc/hostname:/bin: /etc/hostname is a file on the host but a directory in the image",
        ),
        (
            vec!["run", "--rm", "-v", "/etc:/bin/sh", "busybox", "true"],
            "/etc is a directory on the host but a file in the image",
        ),
    ];
    for (args, want) in cases {
        let (code, err) = d.fails(&args);
        assert!(err.contains(want), "{args:?}: {err}");
        assert_ne!(code, 0);
    }
    assert_eq!(
        d.berth(&["run", "--rm", "busybox", "nosuchcmd"]).status.code(),
        Some(127)
    );
    assert_eq!(d.container_count(), before);
    // Corrupt and truncated archives.
    let good = std::fs::read(images_dir().join("busybox-docker.tar")).unwrap();
    let truncated = d.dir.path().join("trunc.tar");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    d.fails(&["image", "load", "-i", truncated.to_str().unwrap()]);
    let garbage = d.dir.path().join("garbage.tar");
    std::fs::write(&garbage, b"not an archive at all").unwrap();
    d.fails(&["image", "load", "-i", garbage.to_str().unwrap()]);
    let images = d.ok(&["images", "-q"]).lines().count();
    assert_eq!(images, 1, "a failed load must not leave an image");
    d.ok(&["rm", "-f", "taken"]);
    assert!(d.mounts().is_empty(), "{:?}", d.mounts());
}

#[test]
fn containers_survive_a_daemon_restart_and_restart_policies_apply() {
    let mut d = Daemon::start();
    d.load_busybox();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "long",
        "busybox",
        "sh",
        "-c",
        "echo started; sleep 300",
    ]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo run; exit 1",
    ]);
    wait_for("flaky to give up", || {
        let v: serde_json::Value = serde_json::from_str(&d.ok(&["inspect", "flaky"])).unwrap();
        v[0]["status"]["state"] == "exited" && v[0]["status"]["restart_count"] == 2
    });
    assert_eq!(d.ok(&["logs", "flaky"]).lines().count(), 3);
    d.stop();
    d.spawn();
    let ps: serde_json::Value = serde_json::from_str(&d.ok(&["ps", "--format", "json"])).unwrap();
    assert_eq!(ps.as_array().unwrap().len(), 1);
    assert_eq!(ps[0]["name"], "long");
    assert_eq!(d.ok(&["logs", "long"]), "started\n");
    assert_eq!(d.ok(&["exec", "long", "echo", "still here"]), "still here\n");
    d.ok(&["kill", "-s", "KILL", "long"]);
    assert_eq!(d.ok(&["wait", "long"]).trim(), "137");
}

/// After a restart, every mount, container dir, runtime state and cgroup
/// belongs to a recorded container (mounts, state and cgroups to a running one).
/// Returns the ids of all recorded containers.
fn assert_nothing_leaked(d: &Daemon) -> Vec<String> {
    let list: serde_json::Value = serde_json::from_str(&d.ok(&["ps", "-a", "--format", "json"])).unwrap();
    let ids = |running_only: bool| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .filter(|c| !running_only || c["status"]["state"] == "running")
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (live, all) = (ids(true), ids(false));
    for m in d.mounts() {
        assert!(
            live.iter().any(|id| m.contains(id)),
            "mount {m} belongs to no running container"
        );
    }
    let names = |dir: &str| -> Vec<String> {
        std::fs::read_dir(d.data_root().join(dir))
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    for name in names("containers") {
        assert!(all.contains(&name), "container dir {name} has no record");
    }
    for name in names("runtime") {
        assert!(
            live.contains(&name),
            "runtime state {name} belongs to no running container"
        );
    }
    let info: serde_json::Value = serde_json::from_str(&d.ok(&["info"])).unwrap();
    let parent = info["cgroup_parent"]
        .as_str()
        .unwrap()
        .trim_start_matches('/')
        .to_string();
    for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/memory"] {
        let dir = std::path::Path::new(root).join(&parent);
        for e in std::fs::read_dir(&dir).into_iter().flatten() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                let name = e.file_name().to_string_lossy().into_owned();
                assert!(
                    live.contains(&name),
                    "cgroup {} belongs to no running container",
                    e.path().display()
                );
            }
        }
    }
    all
}

#[test]
fn kill_9_of_the_daemon_leaks_nothing() {
    let mut d = Daemon::start();
    d.load_busybox();
    // Random crash points, reproducible from the printed seed (BERTH_CRASH_SEED).
    let mut seed: u64 = std::env::var("BERTH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash seed {seed}");
    let mut random = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for round in 0..12 {
        let name = format!("c{round}");
        // run -d, exec and rm in the background while the daemon is killed.
        let steps: Vec<Vec<String>> = vec![
            vec!["run", "-d", "--name", &name, "busybox", "sleep", "300"],
            vec!["exec", &name, "true"],
            vec!["rm", "-f", &name],
        ]
        .into_iter()
        .map(|v| v.into_iter().map(String::from).collect())
        .collect();
        let mut cmds: Vec<std::process::Command> = steps
            .iter()
            .map(|args| {
                let mut c = d.cmd(&args.iter().map(String::as_str).collect::<Vec<_>>());
                c.stdout(Stdio::null()).stderr(Stdio::null());
                c
            })
            .collect();
        let keep = random(2) == 0;
        if keep {
            cmds.pop();
        }
        let driver = std::thread::spawn(move || {
            for mut c in cmds {
                let _ = c.status();
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(random(120)));
        d.crash();
        let _ = driver.join();
        d.spawn();
        assert_nothing_leaked(&d);
    }
    let all = assert_nothing_leaked(&d);
    for id in &all {
        d.ok(&["rm", "-f", id]);
    }
    assert!(d.mounts().is_empty());
    // A clean stop with no containers leaves no cgroup behind.
    let info: serde_json::Value = serde_json::from_str(&d.ok(&["info"])).unwrap();
    let parent = info["cgroup_parent"]
        .as_str()
        .unwrap()
        .trim_start_matches('/')
        .to_string();
    d.stop();
    for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/memory"] {
        let p = std::path::Path::new(root).join(&parent);
        assert!(!p.exists(), "{} left behind", p.display());
    }
}

/// A data root made by `mktemp -d` (0700): containers, whose root is an
/// unprivileged uid on the host, could not reach their root filesystems
/// (`EACCES` at every run). The daemon makes it searchable (0711) at start.
#[test]
fn a_private_data_root_is_made_searchable_and_containers_run() {
    use std::os::unix::fs::PermissionsExt;
    let d = Daemon::start_prepared(&[], |root| {
        std::fs::create_dir_all(root).expect("data root");
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    });
    let mode = std::fs::metadata(d.data_root()).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o711);
    d.load_busybox();
    assert_eq!(d.ok(&["run", "--rm", "busybox", "echo", "reached"]).trim(), "reached");
}

/// A file that is no image archive is named as the user gave it, with what
/// it is not; the daemon's spool file never shows.
#[test]
fn loading_a_file_that_is_no_image_archive_names_that_file() {
    let d = Daemon::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "hello\n").expect("write");
    let shown = text.to_str().expect("utf8");
    let (code, err) = d.fails(&["image", "load", "-i", shown]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "archive {shown}: is neither an OCI image layout nor a `docker save` archive"
        )),
        "{err}"
    );
    let data_root = d.data_root();
    assert!(
        !err.contains("load-") && !err.contains(data_root.to_str().expect("utf8")),
        "{err}"
    );
    // A tar archive that holds no image says so too.
    let tar = dir.path().join("files.tar");
    let made = Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(dir.path())
        .arg("notes.txt")
        .status()
        .expect("tar");
    assert!(made.success());
    let (_, err) = d.fails(&["image", "load", "-i", tar.to_str().expect("utf8")]);
    assert!(
        err.contains("is neither an OCI image layout nor a `docker save` archive (it has neither"),
        "{err}"
    );
    assert!(d.ok(&["images", "-q"]).trim().is_empty());
}

#[test]
fn api_openapi_metrics_and_errors() {
    let d = Daemon::start();
    let get = |path: &str| -> String {
        use std::io::Read;
        let mut s = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let doc = get("/v1/openapi.json");
    assert!(doc.starts_with("HTTP/1.1 200"), "{doc}");
    assert!(doc.contains("\"/v1/containers/{id}/exec\"") && doc.contains("x-berth-permission"));
    let m = get("/metrics");
    assert!(
        m.contains("berth_containers{state=\"running\"} 0") && m.contains("berth_api_requests_total"),
        "{m}"
    );
    let e = get("/v1/containers/nope");
    assert!(
        e.starts_with("HTTP/1.1 404") && e.contains("\"code\":\"NOT_FOUND\"") && e.contains("no such container: nope"),
        "{e}"
    );
    let post = |path: &str, body: &str| -> String {
        use std::io::Read;
        let mut s = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: berth\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    // Create-and-start needs the upgraded connection it streams on; a
    // malformed body is named; neither leaves a container.
    let e = post("/v1/containers?start=true", r#"{"image":"busybox"}"#);
    assert!(
        e.starts_with("HTTP/1.1 400") && e.contains("Upgrade: berth-stream"),
        "{e}"
    );
    let e = post("/v1/containers", r#"{"image": 7}"#);
    assert!(
        e.starts_with("HTTP/1.1 400") && e.contains("INVALID_ARGUMENT") && e.contains("invalid container request"),
        "{e}"
    );
    assert_eq!(d.container_count(), 0);
    let mode = std::fs::metadata(&d.socket).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
}

#[test]
fn tty_is_a_real_terminal_that_follows_the_window_size() {
    use std::os::fd::AsRawFd;
    use std::sync::{Arc, Mutex};
    let d = Daemon::start();
    d.load_busybox();
    d.ok(&["run", "-d", "--name", "t", "busybox", "sleep", "60"]);
    let script = r#"tty; stty size; while [ "$(stty size)" != "40 100" ]; do sleep 0.05; done; echo resized"#;
    for prefix in [vec!["run", "--rm", "-it", "busybox"], vec!["exec", "-it", "t"]] {
        let ws = nix::pty::Winsize {
            ws_row: 33,
            ws_col: 91,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&ws), None).unwrap();
        let mut args = prefix.clone();
        args.extend(["sh", "-c", script]);
        let mut child = d
            .cmd(&args)
            .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
            .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
            .stderr(Stdio::from(pty.slave))
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let reader = {
            let output = output.clone();
            let mut master = std::fs::File::from(pty.master.try_clone().unwrap());
            std::thread::spawn(move || {
                use std::io::Read;
                let mut buf = [0u8; 1024];
                while let Ok(n) = master.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    output.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            })
        };
        let seen = |want: &str| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                if output.lock().unwrap().contains(want) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            panic!("{prefix:?}: never saw {want:?} in {:?}", output.lock().unwrap());
        };
        seen("33 91");
        let text = output.lock().unwrap().clone();
        assert!(text.contains("/dev/pts/"), "{prefix:?}: not a terminal: {text}");
        let ws = libc::winsize {
            ws_row: 40,
            ws_col: 100,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads the winsize we pass; the master is ours.
        unsafe { libc::ioctl(pty.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGWINCH) };
        seen("resized");
        assert!(child.wait().unwrap().success(), "{prefix:?}");
        drop(pty.master);
        let _ = reader.join();
    }
}

#[test]
fn events_stream_the_lifecycle_with_filters() {
    use std::io::BufRead;
    use std::time::Duration;
    let d = Daemon::start();
    d.load_busybox();
    let mut events = d
        .cmd(&[
            "events",
            "--format",
            "json",
            "--filter",
            "container=evt",
            "--filter",
            "type=container",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    let stdout = events.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                return;
            }
        }
    });
    // The stream is live once a create of "evt" shows up on it.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(std::time::Instant::now() < deadline, "the event stream never started");
        d.ok(&["create", "--name", "evt", "busybox", "true"]);
        let seen = rx.recv_timeout(Duration::from_millis(500));
        d.ok(&["rm", "evt"]);
        if let Ok(e) = seen {
            assert_eq!(e["action"], "create");
            assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap()["action"], "destroy");
            break;
        }
    }
    d.ok(&["run", "--rm", "--name", "other", "busybox", "true"]);
    d.ok(&["run", "--rm", "--name", "evt", "busybox", "true"]);
    let mut actions = Vec::new();
    while actions.last().map(String::as_str) != Some("destroy") {
        let e = rx.recv_timeout(Duration::from_secs(10)).expect("an event");
        assert_eq!(e["attributes"]["name"], "evt", "{e}");
        actions.push(e["action"].as_str().unwrap().to_string());
    }
    let _ = events.kill();
    let _ = events.wait();
    assert_eq!(actions, ["create", "start", "die", "destroy"]);
    let (_, err) = d.fails(&["events", "--filter", "color=red"]);
    assert!(err.contains("invalid filter key"), "{err}");
}

/// An attached `run` creates and starts in one request whose store writes
/// are flushed once, before the 101: a container whose output the client
/// has seen is on disk, and survives a kill -9 of the daemon right after.
/// The flush is the request's audit entry (containers audited, the
/// default) or, with nothing audited, an explicit one.
#[test]
fn an_attached_run_is_on_disk_before_its_output_flows() {
    use std::io::BufRead;
    let mut d = Daemon::start();
    d.load_busybox();
    for (level, name) in [("metadata", "audited"), ("none", "unaudited")] {
        d.ok(&["audit", "level", "set", "container", level]);
        let mut run = d
            .cmd(&["run", "--name", name, "busybox", "sh", "-c", "echo up; exec sleep 300"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(run.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "up\n", "{name}");
        d.crash();
        let _ = run.wait();
        d.spawn();
        let v: serde_json::Value = serde_json::from_str(&d.ok(&["inspect", name])).unwrap();
        assert_eq!(v[0]["name"], name);
        assert_eq!(v[0]["status"]["state"], "running", "{name}");
        d.ok(&["rm", "-f", name]);
    }
    assert_nothing_leaked(&d);
}

/// The busybox image with one more layer holding the directory `target`
/// (an absolute path, made inside the image), the symlink `/data -> target`
/// and the dangling symlink `/dangling -> target/missing`, built here as an
/// OCI layout tarball and loaded as `planted:1`.
fn load_busybox_with_symlink(d: &Daemon, target: &std::path::Path) {
    use sha2::{Digest, Sha256};
    let dir = d.dir.path().join("planted");
    let layout = dir.join("layout");
    std::fs::create_dir_all(&layout).unwrap();
    let tar = |args: &[&std::ffi::OsStr]| {
        assert!(std::process::Command::new("tar").args(args).status().unwrap().success());
    };
    let busybox = images_dir().join("busybox-oci.tar");
    tar(&["-xf".as_ref(), busybox.as_os_str(), "-C".as_ref(), layout.as_os_str()]);
    let blobs = layout.join("blobs/sha256");
    let read_json = |digest: &str| -> serde_json::Value {
        let hex = digest.strip_prefix("sha256:").unwrap();
        serde_json::from_slice(&std::fs::read(blobs.join(hex)).unwrap()).unwrap()
    };
    let put = |bytes: &[u8]| {
        let hex = hex::encode(Sha256::digest(bytes));
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mut manifest = read_json(index["manifests"][0]["digest"].as_str().unwrap());
    let mut config = read_json(manifest["config"]["digest"].as_str().unwrap());
    let tree = dir.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let inside = target.strip_prefix("/").unwrap();
    std::fs::create_dir_all(tree.join(inside)).unwrap();
    std::os::unix::fs::symlink(target, tree.join("data")).unwrap();
    std::os::unix::fs::symlink(target.join("missing"), tree.join("dangling")).unwrap();
    let layer_tar = dir.join("layer.tar");
    tar(&[
        "-cf".as_ref(),
        layer_tar.as_os_str(),
        "-C".as_ref(),
        tree.as_os_str(),
        "data".as_ref(),
        "dangling".as_ref(),
        inside.as_os_str(),
    ]);
    let (layer, layer_size) = put(&std::fs::read(&layer_tar).unwrap());
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .unwrap()
        .push(layer.clone().into());
    let (config, config_size) = put(&serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = config.into();
    manifest["config"]["size"] = config_size.into();
    manifest["layers"].as_array_mut().unwrap().push(serde_json::json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_size,
    }));
    let (manifest, manifest_size) = put(&serde_json::to_vec(&manifest).unwrap());
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest,
                       "size": manifest_size, "annotations": {"io.containerd.image.name": "planted:1"}}],
    });
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    let archive = dir.join("planted.tar");
    tar(&[
        "-cf".as_ref(),
        archive.as_os_str(),
        "-C".as_ref(),
        layout.as_os_str(),
        ".".as_ref(),
    ]);
    d.ok(&["image", "load", "-i", archive.to_str().unwrap()]);
}

/// Mount destinations are found and made inside the container's root: an
/// image whose `/data` is a symlink to an absolute path gets its `-v` mounts
/// (and the directories made for them) at that path in its own root, never
/// on the host, where the path does not exist.
#[test]
fn mount_destinations_stay_inside_the_root() {
    let d = Daemon::start();
    d.load_busybox();
    let escape = d.dir.path().join("escape");
    load_busybox_with_symlink(&d, &escape);
    let volume = d.dir.path().join("volume");
    std::fs::create_dir_all(&volume).unwrap();
    std::fs::write(volume.join("f"), "in the volume").unwrap();
    // `/data/sub`: made in the symlink's target; `/data`: the target itself.
    for (dest, seen_at) in [("/data/sub", "sub/f"), ("/data", "f")] {
        let v = format!("{}:{dest}", volume.display());
        let out = d.ok(&["run", "--rm", "-v", &v, "planted:1", "cat", &format!("{dest}/f")]);
        assert_eq!(out, "in the volume", "{dest}");
        let at = format!("{}/{seen_at}", escape.display());
        assert_eq!(
            d.ok(&["run", "--rm", "-v", &v, "planted:1", "cat", &at]),
            "in the volume",
            "{dest}"
        );
        assert!(!escape.exists(), "{dest}: a directory was made on the host");
    }
    // Through a dangling symlink the mount cannot be made: the error says
    // why and, with --rm, nothing stays behind, on the host or in the store.
    let v = format!("{}:/dangling/sub", volume.display());
    let (code, err) = d.fails(&["run", "--rm", "-v", &v, "planted:1", "true"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("failed to prepare rootfs: "), "{err}");
    assert!(
        !escape.exists(),
        "a directory was made on the host through a dangling symlink"
    );
    assert_eq!(d.ok(&["ps", "-a", "-q"]), "");
    assert_nothing_leaked(&d);
}
