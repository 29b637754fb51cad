//! `cargo xtask test`: everything CI checks, in the order that fails fastest.
//! Formatting, the plugins (linted and built first: the `berth` binary
//! embeds them, with `BERTH_EMBED_PLUGINS` set on every cargo run of the
//! workspace so that no run rebuilds it without them), clippy, the test image
//! (with a check that the probe in it works), then `cargo test --workspace`
//! with `BERTH_TEST_IMAGES` and `BERTH_BIN` set so integration and end-to-end
//! tests find the images and the `berth` binary, and `BERTH_TEST_PLUGINS`
//! (`<target>/plugins`: `dist/<name>/` installable plugins,
//! `wasm32-wasip2/release/*.wasm` every built one, test plugins included).
//! Tests that need root expect to run as root, as CI does.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use crate::image;
use crate::plugins;
use crate::util::{self, step};

/// `cargo xtask test`; the time each step took is printed at the end,
/// also when one fails.
pub fn main(args: &[String]) -> Result<()> {
    if let Some(arg) = args.first() {
        bail!("`cargo xtask test` takes no arguments, got `{arg}`");
    }
    let result = run_all();
    util::print_step_times();
    result
}

fn run_all() -> Result<()> {
    if !util::is_root() {
        eprintln!("warning: not root; tests that start containers will fail (CI runs as root)");
    }
    util::ensure_debian_packages(util::BASE_PACKAGES)?;
    let target = util::target_dir()?;
    let probe_manifest = image::probe_manifest();
    let probe_target = target.join("probe");

    step("formatting (cargo fmt --check)");
    util::run(util::cargo().args(["fmt", "--all", "--", "--check"]))
        .context("formatting differs: run `cargo fmt --all`")?;
    util::run(
        util::cargo()
            .args(["fmt", "--manifest-path"])
            .arg(&probe_manifest)
            .args(["--", "--check"]),
    )
    .context("formatting differs: run `cargo fmt --manifest-path tests/image/probe/Cargo.toml`")?;

    plugins::check()?;
    let plugin_dist = plugins::build().context("building the plugins")?;
    let plugins_dir = plugin_dist.parent().context("the plugins' dist dir has a parent")?;
    // The berth binary embeds the plugins built above (crates/berth/build.rs).
    let workspace_cargo = || {
        let mut cargo = util::cargo();
        cargo.env("BERTH_EMBED_PLUGINS", plugins_dir);
        cargo
    };

    step("lints (cargo clippy -D warnings)");
    util::run(workspace_cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))
        .context("clippy found problems")?;
    util::run(
        util::cargo()
            .args(["clippy", "--all-targets", "--manifest-path"])
            .arg(&probe_manifest)
            .arg("--target-dir")
            .arg(&probe_target)
            .args(["--", "-D", "warnings"]),
    )
    .context("clippy found problems in berth-probe")?;

    step("test image");
    let images = image::build().context("building the test image")?;
    check_probe_on_host(&images.bundle.join("rootfs/usr/local/bin/berth-probe"))?;
    util::run(
        util::cargo()
            .args(["test", "--manifest-path"])
            .arg(&probe_manifest)
            .arg("--target-dir")
            .arg(&probe_target),
    )
    .context("berth-probe's unit tests failed")?;

    step("building berth (debug, with the built-in plugins)");
    util::run(workspace_cargo().args(["build", "-p", "berth"]))?;
    let berth_bin = target.join("debug/berth");
    ensure!(berth_bin.exists(), "{} was not built", berth_bin.display());

    step("tests (cargo test --workspace)");
    util::run(
        workspace_cargo()
            .args(["test", "--workspace"])
            .env("BERTH_TEST_PLUGINS", plugins_dir)
            .env("BERTH_TEST_IMAGES", &images.dir)
            .env("BERTH_BIN", &berth_bin),
    )
    .context("tests failed")?;

    eprintln!("\nxtask test: all checks passed");
    Ok(())
}

/// Runs the probe on the host and checks that its report matches what this
/// process can see for itself, so a broken probe fails here and not as a
/// puzzling end-to-end failure.
fn check_probe_on_host(probe: &Path) -> Result<()> {
    let stdout = util::output(&mut Command::new(probe))?;
    let report: Value = serde_json::from_str(&stdout)
        .with_context(|| format!("berth-probe printed something that is not JSON: {stdout}"))?;
    let own_status = std::fs::read_to_string("/proc/self/status")?;
    let own_uid = own_status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1)?.parse::<u64>().ok());
    ensure!(
        report["uid"].as_u64() == own_uid,
        "berth-probe reports uid {} but this process has {own_uid:?}",
        report["uid"]
    );
    let has_root_mount = report["mounts"]
        .as_array()
        .is_some_and(|mounts| mounts.iter().any(|m| m["mount_point"] == "/"));
    ensure!(has_root_mount, "berth-probe lists no mount at /");
    let has_lo = report["net_interfaces"]
        .as_array()
        .is_some_and(|names| names.iter().any(|name| name == "lo"));
    ensure!(has_lo, "berth-probe lists no `lo` interface");
    for key in ["uid_map", "gid_map", "cap_eff", "seccomp", "no_new_privs", "cgroup"] {
        ensure!(
            !report[key].is_null(),
            "berth-probe reports no {key} on the host: {stdout}"
        );
    }
    eprintln!("berth-probe works on the host");
    Ok(())
}
