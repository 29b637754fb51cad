//! `cargo xtask up`: from a fresh clone to a running berth in one command.
//! Installs the Debian packages berth needs, builds the plugins and then the
//! release binary (which embeds them as its built-in checks) and the busybox
//! image, starts `berth daemon` with its default data root and socket
//! (unless one already answers), loads the image and says what to type next.
//!
//! `--no-build` skips `cargo build` and uses the binary already in the target
//! directory.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::image;
use crate::plugins;
use crate::util::{self, step};

const LOG_FILE: &str = "/var/log/berth.log";
const DEFAULT_SOCKET: &str = "/run/berth/berth.sock";
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// `cargo xtask up [--no-build]`.
pub fn main(args: &[String]) -> Result<()> {
    let mut build = true;
    for arg in args {
        match arg.as_str() {
            "--no-build" => build = false,
            other => bail!("`cargo xtask up` does not know `{other}` (try `--no-build`)"),
        }
    }

    util::ensure_debian_packages(util::BASE_PACKAGES)?;
    if build {
        let plugins_dir = plugins::build().context("building the plugins")?;
        let plugins_dir = plugins_dir.parent().context("the plugins' dist dir has a parent")?;
        step("building berth (release, with the built-in plugins)");
        util::run(
            util::cargo()
                .args(["build", "--release", "-p", "berth"])
                .env("BERTH_EMBED_PLUGINS", plugins_dir),
        )?;
    }
    let berth = util::target_dir()?.join("release/berth");
    if !berth.exists() {
        bail!(
            "{} does not exist; run `cargo xtask up` without --no-build",
            berth.display()
        );
    }
    let images = image::build()?;

    step("starting the berth daemon");
    if daemon_answers(&berth) {
        eprintln!(
            "a berth daemon already answers on {DEFAULT_SOCKET}; leaving it running \
             (stop it and rerun `cargo xtask up` to run the new build)"
        );
    } else {
        start_daemon(&berth)?;
    }

    step("loading the busybox image");
    util::run(Command::new(&berth).args(["image", "load", "-i"]).arg(&images.oci_tar))?;

    print_next_steps(&berth);
    Ok(())
}

/// Whether `berth version` reaches a daemon on the default socket.
fn daemon_answers(berth: &Path) -> bool {
    util::succeeds(Command::new(berth).arg("version"))
}

/// Starts `berth daemon` detached from this process, logging to [`LOG_FILE`],
/// and waits until it answers.
fn start_daemon(berth: &Path) -> Result<()> {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(LOG_FILE)
        .with_context(|| format!("opening {LOG_FILE}"))?;
    let log_err = log.try_clone()?;
    let mut command = Command::new(berth);
    command
        .arg("daemon")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // Its own process group: Ctrl-C in this terminal must not reach it.
        .process_group(0);
    let shown = util::display(&command);
    eprintln!("$ {shown} >>{LOG_FILE} 2>&1 &");
    let mut child = command.spawn().with_context(|| format!("could not start `{shown}`"))?;

    util::wait_for("the berth daemon to answer `berth version`", START_TIMEOUT, || {
        if let Some(status) = child.try_wait()? {
            bail!(
                "`{shown}` exited ({status}) before answering; end of {LOG_FILE}:\n{}",
                util::tail(Path::new(LOG_FILE), 4000)
            );
        }
        Ok(daemon_answers(berth).then_some(()))
    })
    .with_context(|| format!("see {LOG_FILE}"))?;
    eprintln!("berth daemon running (pid {}), log in {LOG_FILE}", child.id());
    Ok(())
}

fn print_next_steps(berth: &Path) {
    let dir = berth.parent().map_or_else(String::new, |d| d.display().to_string());
    println!(
        "\nberth is up: daemon on unix://{DEFAULT_SOCKET}, log in {LOG_FILE}.

Put the CLI on your PATH:
    export PATH={dir}:$PATH

Then try:
    berth run --rm busybox echo hello
    berth run -it busybox sh
    berth ps -a
    berth images
    berth scan busybox                  # the built-in checks (berth plugin ls)
    berth vulndb update --ecosystem Debian --ecosystem Alpine
                                        # vulnerability data from osv.dev

The CLI talks to the daemon given by -H/--host or BERTH_HOST
(default unix://{DEFAULT_SOCKET}). Over the network: https://<this host>:7443
with --tlscacert /var/lib/berth/pki/ca.pem; the admin user's one-time
password is in /var/lib/berth/admin-password (root only).
The web UI is not part of berth yet; it comes in a later issue."
    );
}
