//! `cargo xtask bench NAME`: A/B benchmarks of berth against real peers run in
//! the same invocation, alternating round by round, medians reported. Each
//! figure is one JSON line, printed and appended to `<target>/bench/NAME.jsonl`:
//! `{"bench", "berth", "peer", "peer_value", "ratio", "unit"}` (`ratio` is
//! berth / peer; a peer that could not run has `peer_value: null` and a
//! `skipped` reason).
//!
//! `run-latency` times `run --rm busybox /bin/true` under berth, Docker and
//! bare runc, then compares the daemons' idle memory and reports the size of
//! the release binary. Every daemon, directory and mount it makes lives under
//! one temporary directory and is removed when it ends, also on error.
//!
//! `registry` times `skopeo copy` pushes and pulls of two generated OCI
//! images (100 small layers; one 200 MB layer of random bytes) into and out
//! of berth's registry and Distribution 2.8 (`docker-registry`), then 32
//! concurrent pulls; each round starts both servers on fresh storage, in
//! alternating order. It reports MB/s, errors under concurrency and the
//! servers' peak RSS (VmHWM).
//!
//! `access` loads `GET /v1/version` over the loopback listener of one daemon
//! with a view-only user's personal access token, alternating with the same
//! requests without credentials (the daemon has no "auth off" mode; the
//! anonymous path skips authentication and decides trivially, so it is the
//! closest peer), then runs `crates/auth/examples/access_bench.rs` for the
//! decision latency with 10,000 grants and audit append throughput.
//!
//! `trust` drives the real `notary` CLI (add+publish, list) against berth's
//! trust server and against notary-server 0.7 (memory storage, local
//! signer), then loads `GET .../timestamp.json` on each with `wrk`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use crate::image::{self, Images};
use crate::util::{self, step, Daemon, TempDir};

const DEFAULT_ROUNDS: usize = 20;
const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(30);
const DOCKERD_START_TIMEOUT: Duration = Duration::from_secs(60);
const IDLE_BEFORE_RSS: Duration = Duration::from_secs(2);

struct Options {
    build: bool,
}

type BenchFn = fn(&Options, &mut Report) -> Result<()>;

/// Every benchmark: name, what it measures, how to run it.
const BENCHES: &[(&str, &str, BenchFn)] = &[
    (
        "run-latency",
        "`run --rm busybox /bin/true` vs docker and runc; idle daemon RSS; binary size",
        run_latency,
    ),
    (
        "registry",
        "`skopeo copy` push/pull and 32 concurrent pulls vs Distribution 2.8; peak RSS",
        registry,
    ),
    (
        "access",
        "cheap-read req/s with a token vs without credentials; decision p50/p99 (10,000 grants); audit appends/s",
        access,
    ),
    (
        "scan",
        "berth scan of a Debian minbase image, cold and warm, with ~50k synthetic Debian OSV records; files/s; peak RSS",
        scan,
    ),
    (
        "cluster",
        "cluster writes/s and p50/p99 with 1 and 3 managers, leader failover (in process, and with 3, 5 and 7 manager daemons); join-to-ready of fresh hosts; `node ls` latency; API writes via leader and follower; manager RSS; docker swarm (one dockerd per host) side by side",
        cluster,
    ),
    (
        "trust",
        "notary CLI publish/list latency and wrk GET timestamp.json req/s vs notary-server 0.7 (memory, local signer)",
        trust,
    ),
];

/// `cargo xtask bench NAME [--no-build]`.
pub fn main(args: &[String]) -> Result<()> {
    let mut name = None;
    let mut options = Options { build: true };
    for arg in args {
        match arg.as_str() {
            "--no-build" => options.build = false,
            flag if flag.starts_with('-') => bail!("`cargo xtask bench` does not know `{flag}`"),
            other if name.is_none() => name = Some(other),
            other => bail!("`cargo xtask bench` takes one benchmark name, got `{other}` too"),
        }
    }
    let Some(name) = name else {
        eprintln!("usage: cargo xtask bench NAME [--no-build]\n\nbenchmarks:");
        for (name, about, _) in BENCHES {
            eprintln!("  {name:<14} {about}");
        }
        bail!("no benchmark named");
    };
    let Some((_, _, bench)) = BENCHES.iter().find(|(known, _, _)| *known == name) else {
        let known: Vec<&str> = BENCHES.iter().map(|(name, _, _)| *name).collect();
        bail!("no benchmark `{name}`; known: {}", known.join(", "));
    };
    let mut report = Report::create(name)?;
    bench(&options, &mut report)?;
    eprintln!("\nfigures written to {}", report.path.display());
    Ok(())
}

/// One figure: berth's median against a peer's.
struct Figure<'a> {
    bench: &'a str,
    berth: f64,
    peer: Option<&'a str>,
    /// `Err(reason)` when the peer could not be measured.
    peer_value: Result<f64, String>,
    unit: &'a str,
    rounds: Option<usize>,
}

impl Figure<'_> {
    fn to_json(&self) -> Value {
        let mut line = json!({
            "bench": self.bench,
            "berth": round3(self.berth),
            "peer": self.peer,
            "peer_value": self.peer_value.as_ref().ok().map(|v| round3(*v)),
            "ratio": self.peer_value.as_ref().ok().filter(|v| **v > 0.0).map(|v| round3(self.berth / v)),
            "unit": self.unit,
        });
        if let Some(rounds) = self.rounds {
            line["rounds"] = json!(rounds);
        }
        if let (Some(_), Err(reason)) = (self.peer, &self.peer_value) {
            line["skipped"] = json!(reason);
        }
        line
    }
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// Where figures go: stdout and `<target>/bench/NAME.jsonl`.
struct Report {
    path: PathBuf,
    file: fs::File,
}

impl Report {
    fn create(name: &str) -> Result<Self> {
        let dir = util::target_dir()?.join("bench");
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{name}.jsonl"));
        let file = fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Report { path, file })
    }

    fn emit(&mut self, figure: &Figure) -> Result<()> {
        let line = figure.to_json().to_string();
        println!("{line}");
        writeln!(self.file, "{line}").with_context(|| format!("writing {}", self.path.display()))
    }
}

pub(crate) fn median(samples: &[f64]) -> Option<f64> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[mid]),
        _ => Some((sorted[mid - 1] + sorted[mid]) / 2.0),
    }
}

/// Runs `command` to completion and returns its wall-clock time in ms; the
/// error of a failed run quotes its stderr.
pub(crate) fn time_ms(command: &mut Command) -> Result<f64> {
    let shown = util::display(command);
    let start = Instant::now();
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{shown}`"))?;
    let elapsed = start.elapsed();
    util::check_output(&shown, &output)?;
    Ok(elapsed.as_secs_f64() * 1000.0)
}

fn rounds_from_env() -> Result<usize> {
    match std::env::var("BENCH_ROUNDS") {
        Ok(value) => {
            let rounds: usize = value
                .parse()
                .with_context(|| format!("BENCH_ROUNDS={value} is not a number"))?;
            if rounds == 0 {
                bail!("BENCH_ROUNDS must be at least 1");
            }
            Ok(rounds)
        }
        Err(_) => Ok(DEFAULT_ROUNDS),
    }
}

/// A peer being measured: its samples, or why it dropped out.
struct Peer {
    name: &'static str,
    samples: Vec<f64>,
    skipped: Option<String>,
}

impl Peer {
    fn new(name: &'static str, skipped: Option<String>) -> Self {
        Peer {
            name,
            samples: Vec::new(),
            skipped,
        }
    }

    /// Times one run unless the peer already dropped out; a failure drops it.
    fn measure(&mut self, round: usize, command: &mut Command) {
        if self.skipped.is_some() {
            return;
        }
        match time_ms(command) {
            Ok(ms) if round > 0 => self.samples.push(ms),
            Ok(_) => {} // round 0 warms caches and is not counted
            Err(err) => {
                eprintln!("{} skipped from round {round} on: {err:#}", self.name);
                self.skipped = Some(format!("{err:#}"));
            }
        }
    }

    fn result(&self) -> Result<f64, String> {
        if let Some(reason) = &self.skipped {
            return Err(reason.clone());
        }
        median(&self.samples).ok_or_else(|| "no samples".to_string())
    }
}

fn run_latency(options: &Options, report: &mut Report) -> Result<()> {
    let rounds = rounds_from_env()?;
    util::ensure_debian_packages(util::BASE_PACKAGES)?;
    if options.build {
        step("building berth (release)");
        util::run(util::cargo().args(["build", "--release", "-p", "berth"]))?;
    }
    let berth = util::target_dir()?.join("release/berth");
    if !berth.exists() {
        bail!("{} does not exist; run without --no-build", berth.display());
    }
    let images = image::build()?;

    // Dropped last: the daemons below stop before their directories go.
    let temp = TempDir::new("berth-xtask-bench")?;
    eprintln!("working in {}", temp.path().display());

    step("starting a berth daemon");
    let (mut berth_daemon, berth_host) = start_berth_daemon(&berth, temp.path(), &[])?;
    util::output(
        Command::new(&berth)
            .args(["-H", &berth_host, "image", "load", "-i"])
            .arg(&images.oci_tar),
    )
    .context("loading the busybox image into berth")?;

    step("starting dockerd");
    let docker = match start_docker(temp.path(), &images) {
        Ok(docker) => Ok(docker),
        Err(err) => {
            eprintln!("docker skipped: {err:#}");
            Err(format!("{err:#}"))
        }
    };

    let runc_root = temp.path().join("runc");
    let mut docker_peer = Peer::new("docker", docker.as_ref().err().cloned());
    let mut runc_peer = Peer::new("runc", None);
    let mut berth_samples = Vec::new();

    step(&format!("{rounds} rounds (+1 warm-up) of run --rm busybox /bin/true"));
    for round in 0..=rounds {
        let ms = time_ms(Command::new(&berth).args(["-H", &berth_host, "run", "--rm", "busybox", "/bin/true"]))
            .context("berth could not run a container")?;
        if round > 0 {
            berth_samples.push(ms);
        }

        if let Ok(docker) = &docker {
            docker_peer.measure(
                round,
                Command::new(&docker.cli).args([
                    "-H",
                    &docker.host,
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    "busybox:docker",
                    "/bin/true",
                ]),
            );
        }

        let container = format!("bench-{round}");
        runc_peer.measure(
            round,
            Command::new("runc")
                .arg("--root")
                .arg(&runc_root)
                .arg("run")
                .arg("--bundle")
                .arg(&images.bundle)
                .arg(&container),
        );
        if runc_peer.skipped.is_some() {
            // A failed `runc run` can leave its container behind.
            let _ = Command::new("runc")
                .arg("--root")
                .arg(&runc_root)
                .args(["delete", "--force", &container])
                .stderr(Stdio::null())
                .status();
        }
        eprint!(".");
    }
    eprintln!();

    let berth_median = median(&berth_samples).context("no berth samples")?;
    for peer in [&docker_peer, &runc_peer] {
        report.emit(&Figure {
            bench: "run-latency",
            berth: berth_median,
            peer: Some(peer.name),
            peer_value: peer.result(),
            unit: "ms",
            rounds: Some(rounds),
        })?;
    }

    step(&format!("idle RSS after {IDLE_BEFORE_RSS:?}"));
    thread::sleep(IDLE_BEFORE_RSS);
    let berth_pid = berth_daemon.pid().context("the berth daemon is gone")?;
    let daemon_rss = util::rss_kib(berth_pid).context("reading the berth daemon's RSS")?;
    // The daemon's own children when idle: the shim zygote. Counted with the
    // daemon, as containerd is counted with dockerd.
    let mut zygote_rss = 0;
    for pid in util::children_named(berth_pid, "berth") {
        zygote_rss += util::rss_kib(pid).context("reading the shim zygote's RSS")?;
    }
    let berth_rss = daemon_rss + zygote_rss;
    let docker_rss = match &docker {
        Ok(docker) => docker_rss_kib(docker).map_err(|err| format!("{err:#}")),
        Err(reason) => Err(reason.clone()),
    };
    report.emit(&Figure {
        bench: "idle-rss",
        berth: kib_to_mib(berth_rss),
        peer: Some("dockerd+containerd"),
        peer_value: docker_rss.map(kib_to_mib),
        unit: "MiB",
        rounds: None,
    })?;

    for (part, kib) in [("idle-rss-daemon", daemon_rss), ("idle-rss-shim-zygote", zygote_rss)] {
        report.emit(&Figure {
            bench: part,
            berth: kib_to_mib(kib),
            peer: None,
            peer_value: Err("a part of idle-rss".into()),
            unit: "MiB",
            rounds: None,
        })?;
    }

    let size = fs::metadata(&berth)?.len();
    report.emit(&Figure {
        bench: "binary-size",
        berth: size as f64 / (1024.0 * 1024.0),
        peer: None,
        peer_value: Err("no peer".into()),
        unit: "MiB",
        rounds: None,
    })?;

    if let Some(status) = berth_daemon.exited() {
        bail!("the berth daemon exited ({status}) during the benchmark");
    }
    drop(docker);
    berth_daemon.stop();
    drop(temp);
    Ok(())
}

fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Starts `berth daemon` on a data root and socket inside `dir`; returns the
/// guard and the `-H` address once `berth version` answers through it.
fn start_berth_daemon(berth: &Path, dir: &Path, extra_args: &[&str]) -> Result<(Daemon, String)> {
    let data_root = dir.join("berth-data");
    let socket = dir.join("berth.sock");
    let log_path = dir.join("berth-daemon.log");
    let host = format!("unix://{}", socket.display());
    let log = fs::File::create(&log_path)?;
    // The benchmark's daemon never listens off loopback (the default is 0.0.0.0:7443).
    let tls_listen = format!("127.0.0.1:{}", util::free_port()?);
    let mut command = Command::new(berth);
    command
        .arg("daemon")
        .arg("--data-root")
        .arg(&data_root)
        .arg("--socket")
        .arg(&socket)
        .args(["--listen", &tls_listen])
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let shown = util::display(&command);
    eprintln!("$ {shown}");
    let child = command.spawn().with_context(|| format!("could not start `{shown}`"))?;
    let mut daemon = Daemon::new("berth daemon", child);
    let answered = util::wait_for("the berth daemon to answer", DAEMON_START_TIMEOUT, || {
        if let Some(status) = daemon.exited() {
            bail!(
                "`{shown}` exited ({status}); its output:\n{}",
                util::tail(&log_path, 4000)
            );
        }
        Ok(util::succeeds(Command::new(berth).args(["-H", &host, "version"])).then_some(()))
    });
    if let Err(err) = answered {
        if daemon.exited().is_some() {
            return Err(err);
        }
        // Still running but not answering: say why, in berth's own words.
        let version = util::output(Command::new(berth).args(["-H", &host, "version"]));
        let said = version.err().map(|e| format!("{e:#}")).unwrap_or_default();
        return Err(err.context(format!(
            "{said}\nberth daemon output so far:\n{}",
            util::tail(&log_path, 4000)
        )));
    }
    Ok((daemon, host))
}

/// A private dockerd, its socket and the CLI to talk to it.
struct Docker {
    daemon: Daemon,
    host: String,
    cli: PathBuf,
}

/// Installs docker.io if missing, starts a dockerd whose every directory is
/// under `dir` (no bridge, no iptables) and loads `busybox:docker` into it.
fn start_docker(dir: &Path, images: &Images) -> Result<Docker> {
    util::ensure_debian_packages(&["docker.io"]).context("installing docker.io")?;
    let cli = docker_cli();
    let host = format!("unix://{}", dir.join("docker.sock").display());
    let daemon = spawn_dockerd(dir, &host, None, &cli)?;
    util::output(
        Command::new(&cli)
            .args(["-H", &host, "load", "-i"])
            .arg(&images.docker_tar),
    )?;
    Ok(Docker { daemon, host, cli })
}

/// The docker CLI: Debian's, which matches its dockerd, else any.
pub(crate) fn docker_cli() -> PathBuf {
    ["/usr/bin/docker", "/usr/local/bin/docker"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from("docker"))
}

/// Starts a dockerd whose every directory is under `dir` (no bridge, no
/// iptables), answering on `host`, in the network namespace `netns` when
/// given, and waits until `cli` reaches it. Its log is appended to
/// `dir/dockerd.log`.
pub(crate) fn spawn_dockerd(dir: &Path, host: &str, netns: Option<&str>, cli: &Path) -> Result<Daemon> {
    fs::create_dir_all(dir)?;
    let log_path = dir.join("dockerd.log");
    let log = fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
    let mut command = match netns {
        Some(netns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{netns}")).arg("dockerd");
            c
        }
        None => Command::new("dockerd"),
    };
    command
        .arg("--data-root")
        .arg(dir.join("docker-data"))
        .arg("--exec-root")
        .arg(dir.join("docker-exec"))
        .arg("--pidfile")
        .arg(dir.join("docker.pid"))
        .args(["-H", host, "--bridge=none", "--iptables=false", "--ip6tables=false"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let shown = util::display(&command);
    eprintln!("$ {shown}");
    let child = command.spawn().with_context(|| format!("could not start `{shown}`"))?;
    let mut daemon = Daemon::new("dockerd", child);
    util::wait_for("dockerd to answer", DOCKERD_START_TIMEOUT, || {
        if let Some(status) = daemon.exited() {
            bail!(
                "dockerd exited ({status}); end of its log:\n{}",
                util::tail(&log_path, 3000)
            );
        }
        let answers =
            util::succeeds(Command::new(cli).args(["-H", host, "version", "--format", "{{.Server.Version}}"]));
        Ok(answers.then_some(()))
    })
    .map_err(|err| err.context(format!("end of dockerd's log:\n{}", util::tail(&log_path, 3000))))?;
    Ok(daemon)
}

/// RSS of dockerd plus the containerd it started (if it uses a system-wide
/// containerd instead, that one is not counted and the figure says so).
fn docker_rss_kib(docker: &Docker) -> Result<u64> {
    let dockerd = docker.daemon.pid().context("dockerd is gone")?;
    let containerd = util::children_named(dockerd, "containerd");
    if containerd.is_empty() {
        bail!("dockerd (pid {dockerd}) has no containerd child to measure");
    }
    let mut total = util::rss_kib(dockerd)?;
    for pid in containerd {
        total += util::rss_kib(pid)?;
    }
    Ok(total)
}

const REGISTRY_DEFAULT_ROUNDS: usize = 3;
const SMALL_LAYERS: usize = 100;
const SMALL_LAYER_BYTES: usize = 16 * 1024;
const BIG_LAYER_BYTES: usize = 200 * 1000 * 1000;
const CONCURRENT_PULLS: usize = 32;
const REGISTRY_START_TIMEOUT: Duration = Duration::from_secs(30);

/// The two servers of the registry bench.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RegistryKind {
    Berth,
    Distribution,
}

/// What one server did over the rounds.
#[derive(Default)]
struct RegistrySamples {
    push_small: Vec<f64>,
    pull_small: Vec<f64>,
    push_big: Vec<f64>,
    pull_big: Vec<f64>,
    concurrent: Vec<f64>,
    concurrent_errors: usize,
    peak_rss_kib: u64,
}

fn registry(options: &Options, report: &mut Report) -> Result<()> {
    let rounds = match std::env::var("BENCH_ROUNDS") {
        Ok(_) => rounds_from_env()?,
        Err(_) => REGISTRY_DEFAULT_ROUNDS,
    };
    util::ensure_debian_packages(&["skopeo", "docker-registry"])?;
    if options.build {
        step("building berth (release)");
        util::run(util::cargo().args(["build", "--release", "-p", "berth"]))?;
    }
    let berth = util::target_dir()?.join("release/berth");
    if !berth.exists() {
        bail!("{} does not exist; run without --no-build", berth.display());
    }
    let temp = TempDir::new("berth-xtask-bench-registry")?;
    eprintln!("working in {}", temp.path().display());

    step("generating the images (OCI layouts)");
    let small = temp.path().join("small");
    let small_bytes = write_random_layout(&small, SMALL_LAYERS, SMALL_LAYER_BYTES)?;
    let big = temp.path().join("big");
    let big_bytes = write_random_layout(&big, 1, BIG_LAYER_BYTES)?;

    let mut berth_samples = RegistrySamples::default();
    let mut peer_samples = RegistrySamples::default();
    step(&format!("{rounds} rounds, berth and Distribution 2.8 alternating"));
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [RegistryKind::Berth, RegistryKind::Distribution]
        } else {
            [RegistryKind::Distribution, RegistryKind::Berth]
        };
        for kind in order {
            let dir = temp.path().join(format!("round-{round}-{}", registry_name(kind)));
            fs::create_dir_all(&dir)?;
            let (mut server, port) = match kind {
                RegistryKind::Berth => start_berth_registry(&berth, &dir)?,
                RegistryKind::Distribution => start_distribution(&dir)?,
            };
            let samples = match kind {
                RegistryKind::Berth => &mut berth_samples,
                RegistryKind::Distribution => &mut peer_samples,
            };
            let host = format!("127.0.0.1:{port}");
            let mb = |bytes: u64, ms: f64| bytes as f64 / 1e6 / (ms / 1000.0);
            let ms = time_ms(&mut skopeo_push(&small, &host, "bench/small"))?;
            samples.push_small.push(mb(small_bytes, ms));
            let ms = time_ms(&mut skopeo_pull(&host, "bench/small", &dir.join("pulled-small")))?;
            samples.pull_small.push(mb(small_bytes, ms));
            let ms = time_ms(&mut skopeo_push(&big, &host, "bench/big"))?;
            samples.push_big.push(mb(big_bytes, ms));
            let pulled_big = dir.join("pulled-big");
            let ms = time_ms(&mut skopeo_pull(&host, "bench/big", &pulled_big))?;
            samples.pull_big.push(mb(big_bytes, ms));
            fs::remove_dir_all(&pulled_big)?;

            let (ms, errors) = concurrent_pulls(&host, "bench/small", &dir)?;
            samples.concurrent.push(mb(small_bytes * CONCURRENT_PULLS as u64, ms));
            samples.concurrent_errors += errors;

            let pid = server.pid().context("the registry server is gone")?;
            if let Some(status) = server.exited() {
                bail!("{} exited ({status}) during the benchmark", registry_name(kind));
            }
            samples.peak_rss_kib = samples.peak_rss_kib.max(util::peak_rss_kib(pid)?);
            server.stop();
            let _ = fs::remove_dir_all(&dir);
            eprint!(".");
        }
    }
    eprintln!();

    let peer = Some("distribution-2.8");
    let figures: [(&str, &Vec<f64>, &Vec<f64>); 5] = [
        (
            "registry-push-100-layers",
            &berth_samples.push_small,
            &peer_samples.push_small,
        ),
        (
            "registry-pull-100-layers",
            &berth_samples.pull_small,
            &peer_samples.pull_small,
        ),
        (
            "registry-push-200MB-layer",
            &berth_samples.push_big,
            &peer_samples.push_big,
        ),
        (
            "registry-pull-200MB-layer",
            &berth_samples.pull_big,
            &peer_samples.pull_big,
        ),
        (
            "registry-32-concurrent-pulls",
            &berth_samples.concurrent,
            &peer_samples.concurrent,
        ),
    ];
    for (bench, berth_values, peer_values) in figures {
        report.emit(&Figure {
            bench,
            berth: median(berth_values).context("no berth samples")?,
            peer,
            peer_value: median(peer_values).ok_or_else(|| "no samples".to_string()),
            unit: "MB/s",
            rounds: Some(rounds),
        })?;
    }
    report.emit(&Figure {
        bench: "registry-concurrent-pull-errors",
        berth: berth_samples.concurrent_errors as f64,
        peer,
        peer_value: Ok(peer_samples.concurrent_errors as f64),
        unit: "errors",
        rounds: Some(rounds),
    })?;
    report.emit(&Figure {
        bench: "registry-peak-rss",
        berth: kib_to_mib(berth_samples.peak_rss_kib),
        peer,
        peer_value: Ok(kib_to_mib(peer_samples.peak_rss_kib)),
        unit: "MiB",
        rounds: Some(rounds),
    })?;
    if berth_samples.concurrent_errors > 0 {
        bail!(
            "berth failed {} of the concurrent pulls (see the output above)",
            berth_samples.concurrent_errors
        );
    }
    drop(temp);
    Ok(())
}

fn registry_name(kind: RegistryKind) -> &'static str {
    match kind {
        RegistryKind::Berth => "berth",
        RegistryKind::Distribution => "distribution",
    }
}

fn skopeo_push(layout: &Path, host: &str, repo: &str) -> Command {
    let mut c = Command::new("skopeo");
    c.args(["copy", "-q", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:bench", layout.display()))
        .arg(format!("docker://{host}/{repo}:1"));
    c
}

fn skopeo_pull(host: &str, repo: &str, out: &Path) -> Command {
    let mut c = Command::new("skopeo");
    c.args(["copy", "-q", "--src-tls-verify=false"])
        .arg(format!("docker://{host}/{repo}:1"))
        .arg(format!("oci:{}:bench", out.display()));
    c
}

/// Starts [`CONCURRENT_PULLS`] pulls at once; the wall time (ms) until the
/// last ends, and how many failed.
fn concurrent_pulls(host: &str, repo: &str, dir: &Path) -> Result<(f64, usize)> {
    let start = Instant::now();
    let mut children = Vec::new();
    for i in 0..CONCURRENT_PULLS {
        let mut command = skopeo_pull(host, repo, &dir.join(format!("concurrent-{i}")));
        let shown = util::display(&command);
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("could not start `{shown}`"))?;
        children.push(child);
    }
    let mut errors = 0;
    for child in children {
        let output = child.wait_with_output()?;
        if !output.status.success() {
            errors += 1;
            eprintln!(
                "concurrent pull failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
    }
    Ok((start.elapsed().as_secs_f64() * 1000.0, errors))
}

fn wait_for_port(what: &str, port: u16, server: &mut Daemon, log: &Path) -> Result<()> {
    util::wait_for(what, REGISTRY_START_TIMEOUT, || {
        if let Some(status) = server.exited() {
            bail!("{what}: exited ({status}); its output:\n{}", util::tail(log, 4000));
        }
        Ok(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok().then_some(()))
    })
}

fn start_berth_registry(berth: &Path, dir: &Path) -> Result<(Daemon, u16)> {
    let port = util::free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let (mut daemon, _) = start_berth_daemon(berth, dir, &["--insecure-listen", &listen])?;
    wait_for_port(
        "berth's registry listener",
        port,
        &mut daemon,
        &dir.join("berth-daemon.log"),
    )?;
    Ok((daemon, port))
}

/// `docker-registry serve` with filesystem storage under `dir`.
fn start_distribution(dir: &Path) -> Result<(Daemon, u16)> {
    let port = util::free_port()?;
    let config = dir.join("config.yml");
    fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  cache:\n    blobdescriptor: inmemory\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("storage").display()
        ),
    )?;
    let log_path = dir.join("docker-registry.log");
    let log = fs::File::create(&log_path)?;
    let mut command = Command::new("docker-registry");
    command
        .arg("serve")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let shown = util::display(&command);
    let child = command.spawn().with_context(|| format!("could not start `{shown}`"))?;
    let mut daemon = Daemon::new("docker-registry", child);
    wait_for_port("docker-registry", port, &mut daemon, &log_path)?;
    Ok((daemon, port))
}

/// Writes an OCI layout tagged `bench` at `dir`: `layers` gzip layers of
/// `layer_bytes` random bytes each (stored, not compressed: incompressible
/// data, written fast). Returns the bytes a copy moves (blobs and manifest).
fn write_random_layout(dir: &Path, layers: usize, layer_bytes: usize) -> Result<u64> {
    use sha2::Digest as _;
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs)?;
    let mut random = fs::File::open("/dev/urandom").context("opening /dev/urandom")?;
    let mut total = 0u64;
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    let mut chunk = vec![0u8; 1 << 20];
    for i in 0..layers {
        let tmp = dir.join(format!("layer-{i}.tmp"));
        let file = HashingWriter {
            inner: std::io::BufWriter::new(fs::File::create(&tmp)?),
            hasher: sha2::Sha256::new(),
            written: 0,
        };
        let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::none());
        let mut uncompressed = sha2::Sha256::new();
        let mut left = layer_bytes;
        while left > 0 {
            let n = left.min(chunk.len());
            std::io::Read::read_exact(&mut random, &mut chunk[..n])?;
            uncompressed.update(&chunk[..n]);
            gz.write_all(&chunk[..n])?;
            left -= n;
        }
        let mut file = gz.finish()?;
        file.inner.flush()?;
        let digest = hex::encode(file.hasher.finalize());
        fs::rename(&tmp, blobs.join(&digest))?;
        total += file.written;
        descriptors.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": format!("sha256:{digest}"),
            "size": file.written,
        }));
        diff_ids.push(format!("sha256:{}", hex::encode(uncompressed.finalize())));
    }
    let mut put = |bytes: Vec<u8>| -> Result<Value> {
        let digest = hex::encode(sha2::Sha256::digest(&bytes));
        fs::write(blobs.join(&digest), &bytes)?;
        total += bytes.len() as u64;
        Ok(json!({"digest": format!("sha256:{digest}"), "size": bytes.len()}))
    };
    let config = json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let mut config_descriptor = put(serde_json::to_vec(&config)?)?;
    config_descriptor["mediaType"] = json!("application/vnd.oci.image.config.v1+json");
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_descriptor,
        "layers": descriptors,
    });
    let mut manifest_descriptor = put(serde_json::to_vec(&manifest)?)?;
    manifest_descriptor["mediaType"] = json!("application/vnd.oci.image.manifest.v1+json");
    manifest_descriptor["annotations"] = json!({"org.opencontainers.image.ref.name": "bench"});
    let index = json!({"schemaVersion": 2, "manifests": [manifest_descriptor]});
    fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(total)
}

/// Counts and hashes what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: sha2::Sha256,
    written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest as _;
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

const ACCESS_DEFAULT_ROUNDS: usize = 21;
const ACCESS_ROUND: Duration = Duration::from_secs(1);
const ACCESS_CONNECTIONS: usize = 2;

fn access(options: &Options, report: &mut Report) -> Result<()> {
    let rounds = match std::env::var("BENCH_ROUNDS") {
        Ok(_) => rounds_from_env()?,
        Err(_) => ACCESS_DEFAULT_ROUNDS,
    };
    if options.build {
        step("building berth (release)");
        util::run(util::cargo().args(["build", "--release", "-p", "berth"]))?;
    }
    let berth = util::target_dir()?.join("release/berth");
    if !berth.exists() {
        bail!("{} does not exist; run without --no-build", berth.display());
    }
    let temp = TempDir::new("berth-xtask-bench-access")?;
    let port = util::free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let (mut daemon, host) = start_berth_daemon(&berth, temp.path(), &["--insecure-listen", &listen])?;
    wait_for_port(
        "berth's TCP listener",
        port,
        &mut daemon,
        &temp.path().join("berth-daemon.log"),
    )?;
    let cli = |args: &[&str]| util::output(Command::new(&berth).arg("-H").arg(&host).args(args));
    cli(&["user", "create", "viewer"])?;
    cli(&["grant", "create", "user:viewer", "view-only"])?;
    let token = cli(&["token", "create", "--user", "viewer"])?.trim().to_string();
    let auth = format!("Authorization: Bearer {token}\r\n");

    step(&format!(
        "{rounds} rounds of {}s, {ACCESS_CONNECTIONS} keep-alive connections, token and anonymous alternating",
        ACCESS_ROUND.as_secs()
    ));
    let mut with_token = Vec::new();
    let mut anonymous = Vec::new();
    // Per round token/anonymous: pairs taken close in time cancel most of
    // the machine's drift.
    let mut paired = Vec::new();
    for round in 0..=rounds {
        let order = if round % 2 == 0 { [true, false] } else { [false, true] };
        for use_token in order {
            let header = if use_token { auth.as_str() } else { "" };
            let rate = load_get(port, "/v1/version", header, ACCESS_ROUND)?;
            // Round 0 warms up and is not counted.
            if round > 0 {
                if use_token {
                    with_token.push(rate);
                } else {
                    anonymous.push(rate);
                }
            }
        }
        if round > 0 {
            if let (Some(t), Some(a)) = (with_token.last(), anonymous.last()) {
                paired.push(t / a);
            }
        }
    }
    // The token path must really have been authorized as the user.
    let who = http_get(port, "/v1/whoami", &auth)?;
    if !who.contains("viewer") {
        bail!("the token did not authenticate as viewer: {who}");
    }
    drop(daemon);
    report.emit(&Figure {
        bench: "access_token_read_rps",
        berth: median(&with_token).unwrap_or(0.0),
        peer: Some("berth-anonymous"),
        peer_value: median(&anonymous).ok_or_else(|| "no samples".to_string()),
        unit: "req/s",
        rounds: Some(rounds),
    })?;
    report.emit(&Figure {
        bench: "access_token_read_paired_ratio",
        berth: median(&paired).unwrap_or(0.0),
        peer: None,
        peer_value: Err("no peer".into()),
        unit: "token/anonymous, median of per-round ratios",
        rounds: Some(rounds),
    })?;

    step("decision latency and audit appends (in process, release)");
    let out = util::output(util::cargo().args([
        "run",
        "--quiet",
        "--release",
        "-p",
        "berth-auth",
        "--example",
        "access_bench",
    ]))?;
    for line in out.lines() {
        let v: Value = serde_json::from_str(line).with_context(|| format!("access_bench printed {line:?}"))?;
        let (Some(name), Some(value)) = (v["figure"].as_str(), v["value"].as_f64()) else {
            continue;
        };
        let (bench, unit) = match name {
            "decision_p50_us" => ("access_decision_p50_10k_grants", "us"),
            "decision_p99_us" => ("access_decision_p99_10k_grants", "us"),
            "index_rebuild_ms" => ("access_index_rebuild_10k_grants", "ms"),
            "token_auth_p50_us" => ("access_token_check_p50", "us"),
            "audit_appends_per_s" => ("access_audit_appends", "entries/s"),
            _ => continue,
        };
        report.emit(&Figure {
            bench,
            berth: value,
            peer: None,
            peer_value: Err("no peer".into()),
            unit,
            rounds: None,
        })?;
    }
    Ok(())
}

/// Rounds of `notary add -p` (publish) and `notary list` per server.
const TRUST_DEFAULT_ROUNDS: usize = 15;
/// How long each `wrk` run of `GET timestamp.json` lasts, and how many.
const TRUST_WRK_SECONDS: u64 = 8;
const TRUST_WRK_RUNS: usize = 3;

/// The notary CLI against berth's trust server and against notary-server
/// 0.7 (memory storage, local signer), one after the other, same client,
/// same operations; then `wrk` on the hot read, `GET .../timestamp.json`.
fn trust(options: &Options, report: &mut Report) -> Result<()> {
    let rounds = match std::env::var("BENCH_ROUNDS") {
        Ok(_) => rounds_from_env()?,
        Err(_) => TRUST_DEFAULT_ROUNDS,
    };
    util::ensure_debian_packages(&["notary", "wrk"])?;
    if options.build {
        step("building berth (release)");
        util::run(util::cargo().args(["build", "--release", "-p", "berth"]))?;
    }
    let berth = util::target_dir()?.join("release/berth");
    if !berth.exists() {
        bail!("{} does not exist; run without --no-build", berth.display());
    }
    let temp = TempDir::new("berth-xtask-bench-trust")?;
    let file = temp.path().join("artifact");
    fs::write(&file, b"berth trust bench\n")?;

    let berth_port = util::free_port()?;
    let listen = format!("127.0.0.1:{berth_port}");
    let berth_dir = temp.path().join("berth");
    fs::create_dir_all(&berth_dir)?;
    let (mut daemon, _) = start_berth_daemon(&berth, &berth_dir, &["--insecure-listen", &listen])?;
    wait_for_port(
        "berth's TCP listener",
        berth_port,
        &mut daemon,
        &berth_dir.join("berth-daemon.log"),
    )?;
    let notary_dir = temp.path().join("notary-server");
    fs::create_dir_all(&notary_dir)?;
    let (mut server, notary_port) = start_notary_server(&notary_dir)?;
    let _ = &mut server;

    // Rounds alternate between the servers (and which goes first), so the
    // machine's drift falls on both alike.
    let servers = [
        ("berth", berth_port, &berth_dir),
        ("notary-server", notary_port, &notary_dir),
    ];
    let cli = |port: u16, dir: &Path, args: &[&str]| -> Command {
        let mut c = Command::new("notary");
        c.arg("-s")
            .arg(format!("http://127.0.0.1:{port}"))
            .arg("-d")
            .arg(dir.join("client"))
            .args(args)
            .env("NOTARY_ROOT_PASSPHRASE", "bench-root")
            .env("NOTARY_TARGETS_PASSPHRASE", "bench-targets")
            .env("NOTARY_SNAPSHOT_PASSPHRASE", "bench-snapshot")
            .stdout(Stdio::null());
        c
    };
    let gun = |port: u16| format!("127.0.0.1:{port}/bench/app");
    for (_, port, dir) in servers {
        util::run(&mut cli(port, dir, &["init", &gun(port), "-p"]))?;
    }
    step(&format!(
        "{rounds} rounds of notary add+publish and list, alternating servers"
    ));
    let mut samples = [(Vec::new(), Vec::new()), (Vec::new(), Vec::new())];
    let file_arg = file.display().to_string();
    for i in 0..=rounds {
        let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let (_, port, dir) = servers[which];
            let tag = format!("t{i}");
            let p = time_ms(&mut cli(port, dir, &["add", &gun(port), &tag, &file_arg, "-p"]))?;
            let l = time_ms(&mut cli(port, dir, &["list", &gun(port)]))?;
            if i > 0 {
                samples[which].0.push(p);
                samples[which].1.push(l);
            }
        }
    }
    let mut rps = [Vec::new(), Vec::new()];
    for run in 0..TRUST_WRK_RUNS {
        for which in if run % 2 == 0 { [0, 1] } else { [1, 0] } {
            let (name, port, _) = servers[which];
            let path = format!("/v2/{}/_trust/tuf/timestamp.json", gun(port));
            step(&format!("{name}: wrk GET {path}, {TRUST_WRK_SECONDS}s"));
            rps[which].push(wrk(port, &path)?);
        }
    }
    let results: Vec<(Option<f64>, Option<f64>, Option<f64>)> = (0..2)
        .map(|i| (median(&samples[i].0), median(&samples[i].1), median(&rps[i])))
        .collect();
    drop(daemon);
    drop(server);
    let (b, n) = (&results[0], &results[1]);
    let peer = |v: Option<f64>| v.ok_or_else(|| "no samples".to_string());
    for (bench, berth_value, peer_value, unit, r) in [
        ("trust_notary_publish_latency", b.0, n.0, "ms", Some(rounds)),
        ("trust_notary_list_latency", b.1, n.1, "ms", Some(rounds)),
        ("trust_timestamp_get_rps", b.2, n.2, "req/s", Some(TRUST_WRK_RUNS)),
    ] {
        report.emit(&Figure {
            bench,
            berth: berth_value.unwrap_or(0.0),
            peer: Some("notary-server-0.7"),
            peer_value: peer(peer_value),
            unit,
            rounds: r,
        })?;
    }
    Ok(())
}

/// `notary-server` with memory storage and a local signer on loopback.
fn start_notary_server(dir: &Path) -> Result<(Daemon, u16)> {
    let port = util::free_port()?;
    let config = dir.join("server.json");
    fs::write(
        &config,
        serde_json::to_vec_pretty(&json!({
            "server": {"http_addr": format!("127.0.0.1:{port}")},
            "trust_service": {"type": "local", "hostname": "", "port": "", "key_algorithm": "ecdsa"},
            "storage": {"backend": "memory"},
            "logging": {"level": "error"},
        }))?,
    )?;
    let log_path = dir.join("notary-server.log");
    let log = fs::File::create(&log_path)?;
    let mut command = Command::new("notary-server");
    command
        .arg("-config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let shown = util::display(&command);
    let child = command.spawn().with_context(|| format!("could not start `{shown}`"))?;
    let mut daemon = Daemon::new("notary-server", child);
    wait_for_port("notary-server", port, &mut daemon, &log_path)?;
    Ok((daemon, port))
}

/// `wrk` on one path: requests per second.
fn wrk(port: u16, path: &str) -> Result<f64> {
    let out = util::output(Command::new("wrk").args([
        "-t2",
        "-c32",
        &format!("-d{TRUST_WRK_SECONDS}s"),
        &format!("http://127.0.0.1:{port}{path}"),
    ]))?;
    if out.contains("Non-2xx") {
        bail!("wrk saw errors on {path}:\n{out}");
    }
    out.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("wrk printed no Requests/sec:\n{out}"))
}

/// Requests/s of `GET path` over `ACCESS_CONNECTIONS` keep-alive connections.
fn load_get(port: u16, path: &str, header: &str, duration: Duration) -> Result<f64> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{header}\r\n");
    let deadline = Instant::now() + duration;
    let workers: Vec<_> = (0..ACCESS_CONNECTIONS)
        .map(|_| {
            let request = request.clone();
            let path = path.to_string();
            thread::spawn(move || -> Result<u64> {
                use std::io::{BufRead, BufReader, Read};
                let stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
                stream.set_nodelay(true)?;
                let mut writer = stream.try_clone()?;
                let mut reader = BufReader::new(stream);
                let mut done = 0u64;
                let mut line = String::new();
                while Instant::now() < deadline {
                    writer.write_all(request.as_bytes())?;
                    let mut length = 0usize;
                    let mut status = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line)? == 0 {
                            bail!("the daemon closed the connection");
                        }
                        if status.is_empty() {
                            status = line.clone();
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse()?;
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0u8; length];
                    reader.read_exact(&mut body)?;
                    if !status.contains(" 200 ") {
                        bail!("GET {path}: {}", status.trim());
                    }
                    done += 1;
                }
                Ok(done)
            })
        })
        .collect();
    let mut total = 0;
    for w in workers {
        total += w.join().map_err(|_| anyhow::anyhow!("load thread panicked"))??;
    }
    Ok(total as f64 / duration.as_secs_f64())
}

/// One `GET` with `Connection: close`; the whole response as text.
fn http_get(port: u16, path: &str, header: &str) -> Result<String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{header}\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

// ---------------------------------------------------------------------------
// scan

const SCAN_DEFAULT_ROUNDS: usize = 3;
const SCAN_DEBIAN_ROOT: &str = "/var/cache/berth/debootstrap-bookworm-minbase";
const SCAN_SYNTHETIC_RECORDS: usize = 50_000;

/// `berth scan` of the debootstrap minbase root imported as a one-layer
/// image, with ~50k synthetic Debian OSV records imported (the network only
/// reaches package registries, so osv.dev's export cannot be fetched: the
/// records are generated from the root's real source packages plus random
/// names, with realistic version ranges). Cold: a fresh daemon (no layer
/// cache) per round; warm: a second scan on it. No peer scanner is
/// installable here, so figures have no peer.
fn scan(options: &Options, report: &mut Report) -> Result<()> {
    let rounds = match std::env::var("BENCH_ROUNDS") {
        Ok(_) => rounds_from_env()?,
        Err(_) => SCAN_DEFAULT_ROUNDS,
    };
    let plugins = crate::plugins::build().context("building the plugins")?;
    if options.build {
        step("building berth (release, with the built-in plugins)");
        let plugins_dir = plugins.parent().context("the plugins' dist dir has a parent")?;
        util::run(
            util::cargo()
                .args(["build", "--release", "-p", "berth"])
                .env("BERTH_EMBED_PLUGINS", plugins_dir),
        )?;
    }
    let berth = util::target_dir()?.join("release/berth");
    if !berth.exists() {
        bail!("{} does not exist; run without --no-build", berth.display());
    }
    let root = debian_root()?;
    let temp = TempDir::new("berth-xtask-bench-scan")?;
    eprintln!("working in {}", temp.path().display());

    step("the minbase root as a one-layer OCI image");
    let archive = temp.path().join("debian-oci.tar");
    write_rootfs_layout(&root, &temp.path().join("layout"), &archive)?;
    step(&format!("{SCAN_SYNTHETIC_RECORDS} synthetic Debian OSV records"));
    let osv = temp.path().join("osv");
    write_synthetic_osv(&root, &osv, SCAN_SYNTHETIC_RECORDS)?;

    // One daemon imports; every round starts from a copy of its database.
    let prep_dir = temp.path().join("prep");
    fs::create_dir_all(&prep_dir)?;
    let (mut prep, host) = start_berth_daemon(&berth, &prep_dir, &[])?;
    let import_ms = time_ms(Command::new(&berth).args(["-H", &host, "vulndb", "import"]).arg(&osv))?;
    prep.stop();
    let vulndb = prep_dir.join("berth-data/vulndb/vulndb.bin");

    let mut cold = Vec::new();
    let mut warm = Vec::new();
    let mut files_per_s = Vec::new();
    let mut checks_added = Vec::new();
    let mut peak_rss = 0u64;
    let mut findings = 0u64;
    step(&format!("{rounds} rounds: fresh daemon, load, cold scan, warm scan"));
    for round in 0..rounds {
        let dir = temp.path().join(format!("round-{round}"));
        fs::create_dir_all(dir.join("berth-data/vulndb"))?;
        fs::copy(&vulndb, dir.join("berth-data/vulndb/vulndb.bin"))?;
        let (mut daemon, host) = start_berth_daemon(&berth, &dir, &[])?;
        let berth_cmd = || {
            let mut c = Command::new(&berth);
            c.args(["-H", &host]);
            c
        };
        util::run(berth_cmd().args(["image", "load", "-i"]).arg(&archive))?;
        // Built in; installed here only into a binary built without them.
        for plugin in ["secrets", "file-permissions", "config-risks"] {
            if !util::succeeds(berth_cmd().args(["plugin", "inspect", plugin])) {
                util::run(berth_cmd().args(["plugin", "install"]).arg(plugins.join(plugin)))?;
            }
        }
        // The full scan: inventory, licenses, vulnerabilities and every plugin check.
        let scan_args = ["scan", "debian:minbase", "--checks", "all", "--format", "json", "-q"];
        let started = Instant::now();
        let output = util::output(berth_cmd().args(scan_args))?;
        let cold_ms = started.elapsed().as_secs_f64() * 1000.0;
        let report_json: Value = serde_json::from_str(&output).context("the scan's JSON report")?;
        let files: u64 = report_json["optimization"]["layers"]
            .as_array()
            .map(|layers| layers.iter().filter_map(|l| l["files"].as_u64()).sum())
            .unwrap_or(0);
        findings = report_json["vulnerabilities"].as_array().map_or(0, |v| v.len() as u64);
        let warm_ms = time_ms(berth_cmd().args(scan_args))?;
        let without_checks =
            time_ms(berth_cmd().args(["scan", "debian:minbase", "--checks", "none", "--format", "json", "-q"]))?;
        let warm_again = time_ms(berth_cmd().args(scan_args))?;
        let mut each = Vec::new();
        for check in ["secrets", "file-permissions", "config-risks"] {
            let ms =
                time_ms(berth_cmd().args(["scan", "debian:minbase", "--checks", check, "--format", "json", "-q"]))?;
            each.push(format!("{check} {:.0} ms", ms - without_checks));
        }
        eprintln!("round {round}: each check alone adds: {}", each.join(", "));
        if let Some(pid) = daemon.pid() {
            peak_rss = peak_rss.max(util::peak_rss_kib(pid)?);
        }
        daemon.stop();
        eprintln!(
            "round {round}: cold {cold_ms:.0} ms, warm {warm_ms:.0} ms, {files} files, {findings} findings, \
             without checks {without_checks:.0} ms"
        );
        cold.push(cold_ms);
        warm.push(warm_ms);
        files_per_s.push(files as f64 / (cold_ms / 1000.0));
        checks_added.push(warm_again.min(warm_ms) - without_checks);
    }
    let figure = |bench: &'static str, samples: &[f64], unit: &'static str| Figure {
        bench,
        berth: median(samples).unwrap_or(0.0),
        peer: None,
        peer_value: Err("no peer scanner is installable on this machine".into()),
        unit,
        rounds: Some(samples.len()),
    };
    report.emit(&figure(
        "scan-cold",
        &cold,
        "ms, fresh daemon, debootstrap bookworm minbase, 50k synthetic Debian OSV records, all plugin checks",
    ))?;
    report.emit(&figure(
        "scan-warm",
        &warm,
        "ms, second scan with all plugin checks (layer cache warm); target < 1000",
    ))?;
    report.emit(&figure(
        "scan-cold-files-per-second",
        &files_per_s,
        "files/s (regular files in the layer / cold scan time)",
    ))?;
    report.emit(&figure(
        "scan-plugin-checks",
        &checks_added,
        "ms the three plugin checks add to a warm scan (merged view + secrets, file-permissions, config-risks)",
    ))?;
    report.emit(&figure(
        "vulndb-import",
        &[import_ms],
        "ms to import 50k synthetic Debian OSV records (one directory)",
    ))?;
    report.emit(&figure(
        "scan-findings",
        &[findings as f64],
        "vulnerabilities found in the minbase image (synthetic data)",
    ))?;
    report.emit(&figure(
        "scan-daemon-peak-rss",
        &[kib_to_mib(peak_rss)],
        "MiB, daemon VmHWM over a round",
    ))?;
    Ok(())
}

/// The cached debootstrap minbase root (made with `debootstrap` if absent,
/// in a temporary directory renamed into place).
fn debian_root() -> Result<PathBuf> {
    let root = PathBuf::from(SCAN_DEBIAN_ROOT);
    if root.join("var/lib/dpkg/status").is_file() {
        return Ok(root);
    }
    util::ensure_debian_packages(&["debootstrap"])?;
    let cache = root.parent().context("the cache dir")?;
    fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let build = cache.join(format!(".debootstrap-bench-{}", std::process::id()));
    let target = build.join("root");
    let mirror = std::env::var("DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".into());
    util::run(
        Command::new("debootstrap")
            .args(["--variant=minbase", "bookworm"])
            .arg(&target)
            .arg(&mirror),
    )
    .context("debootstrap (needs the Debian mirror, a package registry)")?;
    if let Err(e) = fs::rename(&target, &root) {
        if !root.join("var/lib/dpkg/status").is_file() {
            bail!("moving the debootstrap root into {}: {e}", root.display());
        }
    }
    let _ = fs::remove_dir_all(&build);
    Ok(root)
}

fn sha256_file(path: &Path) -> Result<(String, u64)> {
    use sha2::Digest as _;
    let mut file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = sha2::Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher).with_context(|| format!("reading {}", path.display()))?;
    Ok((format!("sha256:{}", hex::encode(hasher.finalize())), size))
}

/// `root` as an OCI layout with one uncompressed layer, tagged
/// `debian:minbase`, packed into `archive`.
fn write_rootfs_layout(root: &Path, layout: &Path, archive: &Path) -> Result<()> {
    use sha2::Digest as _;
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs)?;
    let layer = layout.join("layer.tar");
    util::run(
        Command::new("tar")
            .arg("-C")
            .arg(root)
            .args(["--numeric-owner", "--xattrs", "--sort=name", "-cf"])
            .arg(&layer)
            .arg("."),
    )?;
    let (layer_digest, layer_size) = sha256_file(&layer)?;
    fs::rename(&layer, blobs.join(layer_digest.trim_start_matches("sha256:")))?;
    let blob = |bytes: Vec<u8>| -> Result<(String, usize)> {
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
        fs::write(blobs.join(digest.trim_start_matches("sha256:")), &bytes)?;
        Ok((digest, bytes.len()))
    };
    let config = json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/bash"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    });
    let (config_digest, config_size) = blob(serde_json::to_vec(&config)?)?;
    let manifest = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
    });
    let (manifest_digest, manifest_size) = blob(serde_json::to_vec(&manifest)?)?;
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest_size,
        "annotations": {"org.opencontainers.image.ref.name": "debian:minbase"},
    }]});
    fs::write(layout.join("index.json"), serde_json::to_vec(&index)?)?;
    fs::write(layout.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    util::run(
        Command::new("tar")
            .arg("-C")
            .arg(layout)
            .arg("-cf")
            .arg(archive)
            .arg("."),
    )
}

/// `count` OSV records for `Debian:12` in `dir/Debian/`: one in eight about
/// a source package the root really has (half of those fixed after its
/// installed version, so they match), the rest about made-up packages;
/// every record has one to three ranges and a CVSS v3.1 vector.
fn write_synthetic_osv(root: &Path, dir: &Path, count: usize) -> Result<()> {
    let status = fs::read_to_string(root.join("var/lib/dpkg/status"))?;
    let mut real: Vec<(String, String)> = Vec::new();
    for paragraph in status.split("\n\n") {
        let field = |key: &str| {
            paragraph
                .lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':').map(|v| v.trim().to_string()))
        };
        if let (Some(package), Some(version)) = (field("Package"), field("Version")) {
            let source = field("Source")
                .map(|s| s.split_whitespace().next().unwrap_or_default().to_string())
                .unwrap_or(package);
            real.push((source, version));
        }
    }
    real.sort();
    real.dedup_by(|a, b| a.0 == b.0);
    if real.is_empty() {
        bail!("no packages in {}/var/lib/dpkg/status", root.display());
    }
    let out = dir.join("Debian");
    fs::create_dir_all(&out)?;
    const VECTORS: [&str; 4] = [
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N",
        "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:L/I:L/A:N",
        "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:N/A:N",
    ];
    // A fixed-seed linear congruential generator: the same set every run.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize
    };
    for n in 0..count {
        let (package, fixed) = if n % 8 == 0 {
            let (source, installed) = &real[next() % real.len()];
            let fixed = if n % 16 == 0 {
                format!("{installed}+deb12u{}", 1 + next() % 3)
            } else {
                "0.1-1".to_string()
            };
            (source.clone(), fixed)
        } else {
            (
                format!("synth{}-lib{}", next() % 9000, next() % 7),
                format!("{}.{}.{}-{}", next() % 5, next() % 20, next() % 30, 1 + next() % 4),
            )
        };
        let ranges: Vec<Value> = (0..1 + next() % 3)
            .map(|i| {
                let introduced = if i == 0 { "0".to_string() } else { format!("{i}.0-1") };
                json!({"type": "ECOSYSTEM", "events": [{"introduced": introduced}, {"fixed": fixed}]})
            })
            .collect();
        let id = format!("DEBIAN-CVE-2099-{n:06}");
        let record = json!({
            "schema_version": "1.6.0", "id": id, "modified": "2025-01-01T00:00:00Z",
            "aliases": [format!("CVE-2099-{n:06}")],
            "summary": format!("synthetic vulnerability {n} in {package}"),
            "severity": [{"type": "CVSS_V3", "score": VECTORS[next() % VECTORS.len()]}],
            "affected": [{"package": {"ecosystem": "Debian:12", "name": package}, "ranges": ranges}],
        });
        fs::write(out.join(format!("{id}.json")), serde_json::to_vec(&record)?)?;
    }
    Ok(())
}

/// Raft among managers in one process over the real transport (gRPC on
/// TLS, loopback): the `BENCH` lines of the raft tests' benchmark, built
/// in release.
fn raft_writes(report: &mut Report) -> Result<()> {
    step("cluster writes: 64 writers, 10,000 grants, 1 and 3 managers (release)");
    let out = util::output(util::cargo().args([
        "test",
        "--release",
        "-p",
        "berth-cluster",
        "--test",
        "raft",
        "bench_cluster_writes",
        "--",
        "--ignored",
        "--nocapture",
    ]))?;
    for line in out.lines().filter_map(|l| l.strip_prefix("BENCH ")) {
        let v: Value = serde_json::from_str(line).with_context(|| format!("a BENCH line: {line}"))?;
        let managers = v["managers"].as_u64().unwrap_or(0);
        let figures: [(&str, &str, &str); 5] = [
            ("one_writer_p50_ms", "ms", "cluster-one-writer-p50"),
            ("writes_per_s", "writes/s", "cluster-writes"),
            ("p50_ms", "ms", "cluster-write-p50"),
            ("p99_ms", "ms", "cluster-write-p99"),
            ("failover_ms", "ms", "failover"),
        ];
        for (key, unit, name) in figures {
            if let Some(value) = v[key].as_f64() {
                let bench = format!("{name}-{managers}-managers");
                report.emit(&Figure {
                    bench: &bench,
                    berth: value,
                    peer: None,
                    peer_value: Err(String::new()),
                    unit,
                    rounds: None,
                })?;
            }
        }
    }
    Ok(())
}

/// `cargo xtask bench cluster`: hosts as network namespaces (the harness
/// of `tests/`), the release binary in each. h1 starts the cluster; then
/// `JOINS` fresh hosts run `berth daemon --join TOKEN@h1` one after the
/// other, each timed from the start of its daemon to the first `node ls`
/// on h1 that shows it `ready`; then `node ls` on h1 (CLI, whole process)
/// and h1's RSS with every worker in.
fn cluster(options: &Options, report: &mut Report) -> Result<()> {
    const JOINS: usize = 5;
    const LS_ROUNDS: usize = 50;
    ensure!(
        util::is_root(),
        "the cluster bench makes network namespaces: run as root"
    );
    util::ensure_debian_packages(util::BASE_PACKAGES)?;
    if options.build {
        step("building berth (release)");
        util::run(util::cargo().args(["build", "--release", "-p", "berth"]))?;
    }
    let berth = util::target_dir()?.join("release/berth");
    ensure!(
        berth.exists(),
        "{} does not exist; run without --no-build",
        berth.display()
    );
    raft_writes(report)?;
    let swarm = crate::swarm::measure(JOINS, LS_ROUNDS, WRITES, FAILOVERS);
    std::env::set_var("BERTH_BIN", &berth);
    step("starting h1, the cluster's manager");
    let mut c = berth_tests::Cluster::start_joined(1);
    let join = c.join_arg(0, "worker");
    let ready = |c: &berth_tests::Cluster, addr: &str| -> bool {
        let out = c.berth(0, &["node", "ls", "--format", "json"]);
        let nodes: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        nodes
            .as_array()
            .is_some_and(|all| all.iter().any(|n| n["addr"] == addr && n["status"]["state"] == "ready"))
    };
    step(&format!("{JOINS} hosts join one after the other"));
    let mut joins = Vec::new();
    for _ in 0..JOINS {
        let start = Instant::now();
        let i = c.grow(&["--join".to_string(), join.clone()]);
        let addr = c.host(i).endpoint();
        let deadline = start + Duration::from_secs(60);
        while !ready(&c, &addr) {
            ensure!(
                Instant::now() < deadline,
                "{addr} did not become ready: {}",
                c.host(i).log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        eprintln!("  {addr}: ready after {ms:.0} ms");
        joins.push(ms);
        c.wait_ready(i);
    }
    report.emit(&Figure {
        bench: "join-to-ready",
        berth: median(&joins).unwrap_or_default(),
        peer: Some("docker swarm"),
        peer_value: swarm.join_to_ready.clone(),
        unit: "ms",
        rounds: Some(joins.len()),
    })?;
    // The same berth figure against swarm's with its daemon's start (as
    // berth's always is: `berth daemon --join` starts the daemon).
    report.emit(&Figure {
        bench: "join-to-ready-with-daemon-start",
        berth: median(&joins).unwrap_or_default(),
        peer: Some("docker swarm"),
        peer_value: swarm.start_and_join_to_ready.clone(),
        unit: "ms",
        rounds: Some(joins.len()),
    })?;
    step(&format!("{LS_ROUNDS} rounds of node ls on h1 ({} nodes)", JOINS + 1));
    let mut ls = Vec::new();
    for _ in 0..LS_ROUNDS {
        ls.push(time_ms(&mut c.cmd(0, &["node", "ls"]))?);
    }
    ls.sort_by(f64::total_cmp);
    report.emit(&Figure {
        bench: "node-ls-p50",
        berth: median(&ls).unwrap_or_default(),
        peer: Some("docker swarm"),
        peer_value: swarm.node_ls_p50.clone(),
        unit: "ms",
        rounds: Some(ls.len()),
    })?;
    let p99 = ls[((ls.len() * 99).div_ceil(100)).saturating_sub(1)];
    report.emit(&Figure {
        bench: "node-ls-p99",
        berth: p99,
        peer: None,
        peer_value: Err(String::new()),
        unit: "ms",
        rounds: Some(ls.len()),
    })?;
    let pid = c.host(0).pid().context("h1's daemon is not running")?;
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("reading the manager's VmRSS")?;
    report.emit(&Figure {
        bench: "manager-rss",
        berth: rss_kib / 1024.0,
        peer: None,
        peer_value: Err(String::new()),
        unit: "MiB",
        rounds: None,
    })?;
    drop(c);
    managers(report, &swarm)
}

/// Label writes through one manager, and leader kills, on both sides.
const WRITES: usize = 50;
const FAILOVERS: usize = 3;

/// Three manager daemons: a cluster write through the API (`node update
/// --label-add`, the CLI's round trip included) on the leader and on a
/// follower (forwarded), and failover: the leader killed, time to the
/// first write that succeeds through a follower; then failover again with
/// five and seven managers.
fn managers(report: &mut Report, swarm: &crate::swarm::Figures) -> Result<()> {
    step("three managers join");
    let mut c = berth_tests::Cluster::start_managers(3, 0);
    c.wait_voters(0, 3);
    let leader = c.leader(0).context("no leader")?;
    let follower = (0..3).find(|i| *i != leader).context("no follower")?;
    for (name, via, peer) in [
        ("api-write-leader-p50", leader, &swarm.write_leader_p50),
        ("api-write-follower-p50", follower, &swarm.write_follower_p50),
    ] {
        step(&format!("{WRITES} writes through h{}", via + 1));
        let id = manager_node_id(&c, via)?;
        let mut times = Vec::new();
        for n in 0..WRITES {
            let label = format!("bench={n}");
            times.push(time_ms(
                &mut c.cmd(via, &["node", "update", "--label-add", &label, &id]),
            )?);
        }
        report.emit(&Figure {
            bench: name,
            berth: median(&times).unwrap_or_default(),
            peer: Some("docker swarm"),
            peer_value: peer.clone(),
            unit: "ms",
            rounds: Some(times.len()),
        })?;
    }
    let samples = failovers(&mut c, 3)?;
    report.emit(&Figure {
        bench: "daemon-failover",
        berth: median(&samples).unwrap_or_default(),
        peer: Some("docker swarm"),
        peer_value: swarm.failover.clone(),
        unit: "ms",
        rounds: Some(samples.len()),
    })?;
    drop(c);
    for (bench, n) in [("daemon-failover-5-managers", 5), ("daemon-failover-7-managers", 7)] {
        step(&format!("{n} managers join"));
        let mut c = berth_tests::Cluster::start_managers(n, 0);
        c.wait_voters(0, n);
        let samples = failovers(&mut c, n)?;
        report.emit(&Figure {
            bench,
            berth: median(&samples).unwrap_or_default(),
            peer: None,
            peer_value: Err(String::new()),
            unit: "ms",
            rounds: Some(samples.len()),
        })?;
    }
    Ok(())
}

fn manager_node_id(c: &berth_tests::Cluster, i: usize) -> Result<String> {
    let info: Value = serde_json::from_str(&c.ok(i, &["cluster", "info", "--format", "json"]))?;
    info["node_id"].as_str().map(str::to_string).context("a node id")
}

/// [`FAILOVERS`] rounds on `n` managers: the leader killed with SIGKILL,
/// the time to the first label write that succeeds through a follower;
/// the killed manager restarted and voting again before the next round.
fn failovers(c: &mut berth_tests::Cluster, n: usize) -> Result<Vec<f64>> {
    let mut samples = Vec::new();
    for round in 0..FAILOVERS {
        let leader = (0..n).find_map(|i| c.leader(i)).context("no leader")?;
        let via = (0..n).find(|i| *i != leader).context("no follower")?;
        let id = manager_node_id(c, via)?;
        step(&format!("{n} managers, failover {}: h{} killed", round + 1, leader + 1));
        let start = Instant::now();
        c.kill(leader);
        loop {
            let out = c.berth(via, &["node", "update", "--label-add", "failover=1", &id]);
            if out.status.success() {
                break;
            }
            ensure!(
                start.elapsed() < Duration::from_secs(30),
                "no write succeeded 30s after the leader was killed"
            );
        }
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        eprintln!("  first write after {ms:.0} ms");
        samples.push(ms);
        c.restart(leader);
        c.wait_voters(via, n);
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn figure_lines() {
        let measured = Figure {
            bench: "run-latency",
            berth: 50.0,
            peer: Some("docker"),
            peer_value: Ok(200.0),
            unit: "ms",
            rounds: Some(20),
        };
        assert_eq!(
            measured.to_json(),
            json!({"bench": "run-latency", "berth": 50.0, "peer": "docker",
                   "peer_value": 200.0, "ratio": 0.25, "rounds": 20, "unit": "ms"})
        );
        let skipped = Figure {
            bench: "idle-rss",
            berth: 9.5,
            peer: Some("dockerd+containerd"),
            peer_value: Err("dockerd did not start".into()),
            unit: "MiB",
            rounds: None,
        };
        assert_eq!(
            skipped.to_json(),
            json!({"bench": "idle-rss", "berth": 9.5, "peer": "dockerd+containerd",
                   "peer_value": null, "ratio": null, "skipped": "dockerd did not start",
                   "unit": "MiB"})
        );
        let no_peer = Figure {
            bench: "binary-size",
            berth: 9.5,
            peer: None,
            peer_value: Err("no peer".into()),
            unit: "MiB",
            rounds: None,
        };
        assert_eq!(
            no_peer.to_json(),
            json!({"bench": "binary-size", "berth": 9.5, "peer": null,
                   "peer_value": null, "ratio": null, "unit": "MiB"})
        );
    }
}
