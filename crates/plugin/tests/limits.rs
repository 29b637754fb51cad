//! A plugin that spins, hoards memory or crashes is stopped and reported
//! with the reason, and the host carries on: the next call (to it or to a
//! well-behaved plugin) works. Plugins get no ambient authority.

#![allow(clippy::unwrap_used)] // the helpers outside #[test] fns unwrap too

mod support;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use berth_plugin::{DirImageFs, EmptyImageFs, HostConfig, ImageInfo, Limits, PluginError, PluginHost, ScannerCheck};
use support::*;

const TIMEOUT: Duration = Duration::from_millis(1500);
const MEMORY: u64 = 64 << 20;

fn host() -> PluginHost {
    PluginHost::new(HostConfig {
        limits: Limits {
            memory_bytes: MEMORY,
            timeout: TIMEOUT,
            ..Limits::default()
        },
        ..HostConfig::default()
    })
    .unwrap()
}

fn load(host: &PluginHost, name: &str) -> ScannerCheck {
    host.load_scanner_check(name, "0.1.0", &wasm(name)).unwrap()
}

/// The well-behaved plugin still works: it finds the planted setuid file.
fn assert_host_still_works(host: &PluginHost) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "/usr/bin/su", b"su", 0o4755);
    let image = Arc::new(DirImageFs::new(dir.path()).unwrap());
    let findings = load(host, "file-permissions")
        .run(&ImageInfo::default(), image)
        .unwrap();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0].path.as_deref(), Some("/usr/bin/su"));
}

#[test]
fn a_plugin_that_loops_forever_is_stopped_at_its_deadline() {
    let host = host();
    let spinner = load(&host, "test-loop");
    // describe works; only run spins.
    assert_eq!(spinner.describe().unwrap().name, "test-loop");
    for _ in 0..2 {
        let started = Instant::now();
        let err = spinner.run(&ImageInfo::default(), Arc::new(EmptyImageFs)).unwrap_err();
        let elapsed = started.elapsed();
        assert!(
            matches!(&err, PluginError::Timeout { plugin, limit } if plugin == "test-loop" && *limit == TIMEOUT),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "plugin test-loop ran longer than its limit of 1.5s and was stopped"
        );
        assert!(
            elapsed >= TIMEOUT - Duration::from_millis(50),
            "stopped early, after {elapsed:?}"
        );
        assert!(
            elapsed < TIMEOUT + Duration::from_secs(1),
            "stopped late, after {elapsed:?}"
        );
    }
    assert_host_still_works(&host);
}

#[test]
fn a_spinning_plugin_does_not_hold_up_others() {
    let host = host();
    let spinner = load(&host, "test-loop");
    let spinning = thread::spawn(move || spinner.run(&ImageInfo::default(), Arc::new(EmptyImageFs)));
    let started = Instant::now();
    assert_host_still_works(&host);
    assert!(
        started.elapsed() < TIMEOUT,
        "the good plugin waited for the spinning one"
    );
    assert!(matches!(spinning.join().unwrap(), Err(PluginError::Timeout { .. })));
}

#[test]
fn a_plugin_that_allocates_without_bound_runs_out_of_memory() {
    let host = host();
    let hog = load(&host, "test-alloc");
    for _ in 0..2 {
        let err = hog.run(&ImageInfo::default(), Arc::new(EmptyImageFs)).unwrap_err();
        assert!(
            matches!(&err, PluginError::OutOfMemory { plugin, limit } if plugin == "test-alloc" && *limit == MEMORY),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("plugin test-alloc ran out of memory: it asked for more than its limit of {MEMORY} bytes")
        );
    }
    assert_host_still_works(&host);
}

#[test]
fn a_plugin_that_panics_is_reported_as_a_trap_with_its_panic_message() {
    let host = host();
    let crasher = load(&host, "test-trap");
    for _ in 0..2 {
        let err = crasher.run(&ImageInfo::default(), Arc::new(EmptyImageFs)).unwrap_err();
        let PluginError::Trap { plugin, reason } = &err else {
            panic!("expected a trap, got {err:?}");
        };
        assert_eq!(plugin, "test-trap");
        assert!(reason.contains("unreachable"), "{reason}");
        assert!(reason.contains("test-trap: deliberate panic with 0 labels"), "{reason}");
    }
    assert_host_still_works(&host);
}

#[test]
fn a_plugin_has_no_ambient_authority() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("image");
    write(&root, "/etc/hostname", b"inside\n", 0o644);
    write(&root, "/big", &vec![b'x'; 3 << 20], 0o644);
    std::fs::write(dir.path().join("outside"), "outside the image").unwrap();
    let host = host();
    let probe = load(&host, "test-probe");
    let image = Arc::new(DirImageFs::new(&root).unwrap());
    let config = ImageInfo {
        user: Some("app".to_string()),
        ..ImageInfo::default()
    };
    let findings = probe.run(&config, image).unwrap();
    let said = |rule: &str| {
        findings
            .iter()
            .find(|finding| finding.rule == rule)
            .unwrap_or_else(|| panic!("no {rule} in {findings:#?}"))
            .message
            .clone()
    };
    assert_eq!(said("env"), "0");
    assert_eq!(said("args"), "0");
    assert_eq!(said("stdin"), "0");
    assert!(said("host-root").starts_with("refused"), "{}", said("host-root"));
    assert!(said("host-file").starts_with("refused"), "{}", said("host-file"));
    assert_eq!(said("user"), "app");
    assert_eq!(said("image-hostname"), "inside");
    assert_eq!(said("image-escape"), "refused: not found");
    // One read returns at most the host's cap (1 MiB by default), whatever is asked.
    assert_eq!(said("image-big-read"), (1 << 20).to_string());
}

#[test]
fn limits_are_configurable_per_host() {
    let host = PluginHost::new(HostConfig {
        limits: Limits {
            memory_bytes: 32 << 20,
            timeout: Duration::from_millis(300),
            ..Limits::default()
        },
        epoch_tick: Duration::from_millis(5),
        ..HostConfig::default()
    })
    .unwrap();
    let started = Instant::now();
    let err = load(&host, "test-loop")
        .run(&ImageInfo::default(), Arc::new(EmptyImageFs))
        .unwrap_err();
    assert!(matches!(err, PluginError::Timeout { limit, .. } if limit == Duration::from_millis(300)));
    assert!(started.elapsed() < Duration::from_millis(300) + Duration::from_secs(1));
    let err = load(&host, "test-alloc")
        .run(&ImageInfo::default(), Arc::new(EmptyImageFs))
        .unwrap_err();
    assert!(
        matches!(err, PluginError::OutOfMemory { limit, .. } if limit == 32 << 20),
        "{err:?}"
    );
}
