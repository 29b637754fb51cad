//! Helpers shared by the subcommands: where the workspace and its target
//! directory are, running commands with errors that name the command, Debian
//! package installs, and guards that stop daemons and remove temporary
//! directories (unmounting whatever is left mounted under them) when dropped.

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// What building and running berth needs on a Debian machine.
pub const BASE_PACKAGES: &[&str] = &[
    "libseccomp-dev",
    "pkg-config",
    "busybox-static",
    "runc",
    "skopeo",
    "docker.io",
    "docker-registry",
    "slapd",
    "ldap-utils",
    "openssl",
    "unzip",
    // content trust: the notary CLI and notary-server (interop, bench), SoftHSM2 (PKCS#11)
    "notary",
    "softhsm2",
    // scanner ground truth: a real Debian root filesystem
    "debootstrap",
    // scanner ground truth for version orders: rpm, Python's packaging, Ruby's Gem::Version
    "rpm",
    "python3-packaging",
    "ruby",
    // the cluster harness (tests/): hosts as network namespaces, packet loss
    "iproute2",
    "iptables",
];

/// The workspace root: the parent of this crate's directory.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
}

/// Cargo's target directory, as cargo itself resolves it (`CARGO_TARGET_DIR`,
/// `build.target-dir` in a config file, or `<workspace>/target`).
pub fn target_dir() -> Result<&'static Path> {
    static TARGET_DIR: OnceLock<PathBuf> = OnceLock::new();
    if let Some(dir) = TARGET_DIR.get() {
        return Ok(dir);
    }
    let stdout = output(
        cargo()
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .current_dir(workspace_root()),
    )?;
    let metadata: serde_json::Value =
        serde_json::from_str(&stdout).context("parsing the output of `cargo metadata`")?;
    let dir = metadata["target_directory"]
        .as_str()
        .context("`cargo metadata` printed no target_directory")?;
    Ok(TARGET_DIR.get_or_init(|| PathBuf::from(dir)))
}

/// `cargo`, the same one that runs xtask.
pub fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(workspace_root());
    command
}

/// Prints a step heading, so a failure is easy to place in a long log.
pub fn step(title: &str) {
    eprintln!("\n==> {title}");
    STEPS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push((title.to_string(), std::time::Instant::now()));
}

/// Every step so far and when it began.
static STEPS: std::sync::Mutex<Vec<(String, std::time::Instant)>> = std::sync::Mutex::new(Vec::new());

/// How long each step took (until the next began, the last until now).
pub fn print_step_times() {
    let steps = STEPS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if steps.is_empty() {
        return;
    }
    eprintln!("\ntime per step:");
    let now = std::time::Instant::now();
    for (i, (title, began)) in steps.iter().enumerate() {
        let ended = steps.get(i + 1).map_or(now, |(_, next)| *next);
        eprintln!("  {:>7.1} s  {title}", ended.duration_since(*began).as_secs_f64());
    }
    if let Some((_, first)) = steps.first() {
        eprintln!("  {:>7.1} s  in all", now.duration_since(*first).as_secs_f64());
    }
}

/// The command line as a person would type it.
pub fn display(command: &Command) -> String {
    let mut words = vec![command.get_program().to_string_lossy().into_owned()];
    words.extend(command.get_args().map(shell_word));
    words.join(" ")
}

fn shell_word(arg: &OsStr) -> String {
    let arg = arg.to_string_lossy();
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c));
    if plain {
        arg.into_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Runs `command` with inherited stdio; fails if it does not exit 0.
pub fn run(command: &mut Command) -> Result<()> {
    let shown = display(command);
    eprintln!("$ {shown}");
    let status = command.status().with_context(|| format!("could not start `{shown}`"))?;
    check_status(&shown, status)
}

fn check_status(shown: &str, status: ExitStatus) -> Result<()> {
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Runs `command` and returns its stdout; on failure the error carries stderr.
pub fn output(command: &mut Command) -> Result<String> {
    let shown = display(command);
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{shown}`"))?;
    check_output(&shown, &output)?;
    String::from_utf8(output.stdout).with_context(|| format!("`{shown}` printed non-UTF-8"))
}

/// Turns a failed [`Output`] into an error quoting the command's stderr.
pub fn check_output(shown: &str, output: &Output) -> Result<()> {
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let said = [stderr.trim(), stdout.trim()]
            .into_iter()
            .filter(|text| !text.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        bail!("`{shown}` failed ({}):\n{said}", output.status);
    }
    Ok(())
}

/// Whether `command` can be started and exits 0; its output is discarded.
pub fn succeeds(command: &mut Command) -> bool {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the effective user of the process reading it.
    fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// Installs those of `packages` that dpkg does not list as installed; runs
/// `apt-get update` only when something is missing.
/// Tools the tests call that a machine may have from elsewhere (a Node.js
/// with npm, a Python with venv): `(check command, Debian package)`. The
/// package is installed only when the command fails, so a tool that came
/// another way is never replaced.
pub const TOOLS: &[(&str, &str)] = &[
    ("command -v npm", "npm"),
    ("python3 -c 'import venv, ensurepip'", "python3-venv"),
];

fn tool_missing(check: &str) -> bool {
    !Command::new("sh")
        .args(["-c", check])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn ensure_debian_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|package| !debian_package_installed(package))
        .chain(
            TOOLS
                .iter()
                .filter(|(check, _)| tool_missing(check))
                .map(|(_, package)| *package),
        )
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    step(&format!("installing {}", missing.join(" ")));
    if !is_root() {
        bail!(
            "missing Debian packages: {}; run as root or `apt-get install {0}`",
            missing.join(" ")
        );
    }
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn debian_package_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout == b"install ok installed")
}

/// Polls `ready` every 100 ms until it returns `Some`, or fails once `timeout`
/// has passed with `what` in the message.
pub fn wait_for<T>(what: &str, timeout: Duration, mut ready: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = ready()? {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The last `max_bytes` of a log file, for error messages.
pub fn tail(path: &Path, max_bytes: u64) -> String {
    let mut text = Vec::new();
    let Ok(mut file) = fs::File::open(path) else {
        return format!("({} could not be read)", path.display());
    };
    let len = file.metadata().map(|meta| meta.len()).unwrap_or(0);
    let _ = std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(len.saturating_sub(max_bytes)));
    let _ = file.read_to_end(&mut text);
    String::from_utf8_lossy(&text).into_owned()
}

/// `VmRSS` of a process in KiB, from `/proc/PID/status`.
pub fn rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmRSS")
}

/// Peak resident memory of `pid` so far (VmHWM), in KiB.
pub fn peak_rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmHWM")
}

fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in {path}"))
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// The pids whose parent is `parent` and whose command name is `comm`.
pub fn children_named(parent: u32, comm: &str) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces.
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some((head, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let name = head.split_once('(').map_or("", |(_, name)| name);
            let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
            name == comm && ppid == Some(parent)
        })
        .collect()
}

/// Sends `signal` (a name such as `TERM`) to `pid` with kill(1).
pub fn send_signal(pid: u32, signal: &str) -> Result<()> {
    output(Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string())).map(drop)
}

/// A daemon this process started; stopped with SIGTERM (then SIGKILL after
/// 20 s) when [`Daemon::stop`] is called or the guard is dropped.
pub struct Daemon {
    name: String,
    child: Option<Child>,
}

impl Daemon {
    pub fn new(name: &str, child: Child) -> Self {
        Daemon {
            name: name.to_string(),
            child: Some(child),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Some(status)` if the daemon has already exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        eprintln!("stopping {} (pid {})", self.name, child.id());
        if let Err(err) = send_signal(child.id(), "TERM") {
            eprintln!("warning: {err:#}");
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        eprintln!("warning: {} did not stop within 20 s of SIGTERM; killing it", self.name);
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A temporary directory `/tmp/<prefix>-<pid>-<n>`, removed on drop after
/// lazily unmounting anything still mounted beneath it.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a fresh directory, first sweeping away directories with the same
    /// prefix left behind by earlier runs whose process is gone.
    pub fn new(prefix: &str) -> Result<Self> {
        sweep_stale_temp_dirs(prefix);
        let pid = std::process::id();
        for n in 0..1000 {
            let path = std::env::temp_dir().join(format!("{prefix}-{pid}-{n}"));
            match fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir { path }),
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(err) => return Err(err).with_context(|| format!("creating {}", path.display())),
            }
        }
        bail!("could not create a temporary directory for {prefix}")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        remove_tree_with_mounts(&self.path);
    }
}

fn sweep_stale_temp_dirs(prefix: &str) {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|name| name.strip_prefix(prefix)?.strip_prefix('-'))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|pid| pid.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("removing {} left by an earlier run", entry.path().display());
            remove_tree_with_mounts(&entry.path());
        }
    }
}

/// Unmounts (lazily, deepest first) every mount at or below `dir`, then
/// removes it. Best effort: problems are printed, not returned, since this
/// runs while unwinding from other errors.
pub fn remove_tree_with_mounts(dir: &Path) {
    for mount_point in mounts_under(dir) {
        let status = Command::new("umount")
            .arg("--lazy")
            .arg(&mount_point)
            .stderr(Stdio::null())
            .status();
        if !status.is_ok_and(|status| status.success()) {
            eprintln!("warning: could not unmount {mount_point}");
        }
    }
    if let Err(err) = fs::remove_dir_all(dir) {
        if err.kind() != std::io::ErrorKind::NotFound {
            eprintln!("warning: could not remove {}: {err}", dir.display());
        }
    }
}

/// Mount points at or below `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<String> {
    let Ok(mountinfo) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let dir = dir.to_string_lossy();
    let dir = dir.trim_end_matches('/');
    let mut found: Vec<String> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| point.replace("\\040", " "))
        .filter(|point| point == dir || point.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/')))
        .collect();
    found.sort_by_key(|point| std::cmp::Reverse(point.matches('/').count()));
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_only_what_needs_it() {
        let mut command = Command::new("berth");
        command.args(["run", "--rm", "busybox", "sh", "-c", "echo it's"]);
        assert_eq!(display(&command), r"berth run --rm busybox sh -c 'echo it'\''s'");
    }

    #[test]
    fn temp_dir_is_removed_on_drop() -> Result<()> {
        let dir = TempDir::new("berth-xtask-selftest")?;
        let path = dir.path().to_path_buf();
        fs::create_dir_all(path.join("a/b"))?;
        fs::write(path.join("a/b/file"), "x")?;
        drop(dir);
        assert!(!path.exists());
        Ok(())
    }
}
