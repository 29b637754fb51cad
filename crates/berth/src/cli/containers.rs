//! Container verbs: run, create, start, ps, logs, stop, kill, rm, exec,
//! inspect, wait, stats.

use anyhow::{bail, Context, Result};

use berth_model::{
    units, Bind, Container, ContainerCreate, ContainerState, ContainerStats, ExecCreate, Resources, RestartPolicy,
};

use crate::cli::{ago, duration, stream, table};
use berth_client::{ndjson_lines, Client, ExitError};

#[derive(clap::Args)]
#[command(trailing_var_arg = true)]
pub struct RunArgs {
    /// Remove the container when it exits
    #[arg(long)]
    rm: bool,
    /// Run in the background and print the container id
    #[arg(short = 'd', long)]
    detach: bool,
    /// Keep stdin open and attached
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a pseudo-terminal
    #[arg(short = 't', long)]
    tty: bool,
    #[arg(long)]
    name: Option<String>,
    /// Set environment variables (K=V, or K to take it from here)
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Read environment variables from a file
    #[arg(long = "env-file")]
    env_file: Vec<String>,
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    /// USER[:GROUP], names or numbers
    #[arg(short = 'u', long)]
    user: Option<String>,
    #[arg(long)]
    hostname: Option<String>,
    /// Mount the root filesystem read-only
    #[arg(long = "read-only")]
    read_only: bool,
    /// Memory limit (e.g. 64m)
    #[arg(short = 'm', long)]
    memory: Option<String>,
    /// Number of cpus (e.g. 0.5)
    #[arg(long)]
    cpus: Option<String>,
    #[arg(long = "pids-limit")]
    pids_limit: Option<i64>,
    /// no, on-failure[:N], always, unless-stopped
    #[arg(long, default_value = "no")]
    restart: String,
    #[arg(long)]
    entrypoint: Option<String>,
    /// Bind mount HOSTDIR:CONTAINERDIR[:ro]
    #[arg(short = 'v', long = "volume")]
    volume: Vec<String>,
    /// Network mode (none)
    #[arg(long, default_value = "none")]
    network: String,
    /// Give the container every capability, no seccomp and no user namespace
    #[arg(long)]
    privileged: bool,
    /// host: run in the host's user namespace
    #[arg(long)]
    userns: Option<String>,
    /// The access-control collection the container belongs to (default `/`)
    #[arg(long)]
    collection: Option<String>,
    /// Set a label on the container (KEY=VALUE)
    #[arg(short = 'l', long = "label", value_parser = crate::cli::cluster::parse_label)]
    label: Vec<(String, String)>,
    image: String,
    command: Vec<String>,
}

/// A refusal of what the user asked before anything was sent: exit status
/// 125, as `docker run` answers its own errors.
fn usage_error(msg: String) -> anyhow::Error {
    ExitError(125, msg).into()
}

fn build_create(a: &RunArgs) -> Result<ContainerCreate> {
    let mut env = Vec::new();
    for f in &a.env_file {
        let text = std::fs::read_to_string(f).map_err(|e| usage_error(format!("reading env file {f}: {e}")))?;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            env.push(expand_env(line));
        }
    }
    env.extend(a.env.iter().map(|e| expand_env(e)));
    let memory_bytes = a
        .memory
        .as_deref()
        .map(units::parse_memory)
        .transpose()
        .map_err(usage_error)?;
    let nano_cpus = a
        .cpus
        .as_deref()
        .map(units::parse_cpus)
        .transpose()
        .map_err(usage_error)?;
    if let Some(p) = a.pids_limit {
        if p == 0 || p < -1 {
            return Err(usage_error(format!(
                "invalid --pids-limit {p}: use a positive number or -1 for unlimited"
            )));
        }
    }
    let restart = RestartPolicy::parse(&a.restart).map_err(usage_error)?;
    if a.rm && restart != RestartPolicy::No {
        return Err(usage_error("conflicting options: --restart and --rm".into()));
    }
    let binds = a
        .volume
        .iter()
        .map(|v| Bind::parse(v))
        .collect::<Result<Vec<_>, _>>()
        .map_err(usage_error)?;
    Ok(ContainerCreate {
        image: a.image.clone(),
        name: a.name.clone(),
        cmd: a.command.clone(),
        entrypoint: a
            .entrypoint
            .as_ref()
            .map(|e| if e.is_empty() { vec![] } else { vec![e.clone()] }),
        env,
        working_dir: a.workdir.clone(),
        user: a.user.clone(),
        hostname: a.hostname.clone(),
        tty: a.tty,
        console_size: if a.tty { stream::window_size() } else { None },
        open_stdin: a.interactive,
        read_only: a.read_only,
        auto_remove: a.rm,
        privileged: a.privileged,
        userns: a.userns.clone(),
        network: Some(a.network.clone().into()),
        restart,
        resources: Resources {
            memory_bytes,
            nano_cpus,
            pids_limit: a.pids_limit,
        },
        binds,
        collection: a.collection.clone(),
        labels: a.label.iter().cloned().collect(),
    })
}

/// `-e K` takes K's value from the caller's environment.
fn expand_env(e: &str) -> String {
    if e.contains('=') {
        e.to_string()
    } else {
        format!("{e}={}", std::env::var(e).unwrap_or_default())
    }
}

pub async fn run(client: &Client, a: RunArgs, start: bool) -> Result<i32> {
    let mut req = build_create(&a)?;
    // BERTH_CONTENT_TRUST=1: run the digest the tag's signed trust data names.
    if crate::cli::trust::content_trust_enabled() {
        req.image = crate::cli::trust::trusted_local_image(client, &req.image).await?;
    }
    if start && !a.detach {
        // One request creates, starts and attaches (no output is missed).
        let (headers, conn) = client.run_attached(&req, a.interactive).await?;
        let id = headers
            .get(berth_model::CONTAINER_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .context("the daemon did not name the container it started")?
            .to_string();
        return attached(client, &a, &id, conn).await;
    }
    let c: Container = client.create_container(&req).await?;
    if start {
        client.start_container(&c.id).await?;
    }
    println!("{}", c.id);
    Ok(0)
}

/// Streams an attached, started container until it exits; its exit code.
async fn attached(
    client: &Client,
    a: &RunArgs,
    id: &str,
    conn: hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>,
) -> Result<i32> {
    if !a.tty {
        proxy_signals(client.clone(), id.to_string());
    }
    // Like Docker: return once the daemon has recorded the exit (and, for
    // --rm, removed the container), so the next command sees it. The wait is
    // asked while the container runs, so its answer is not a round trip
    // after the exit.
    let waiter = {
        let client = client.clone();
        let (id, removed) = (id.to_string(), a.rm);
        tokio::spawn(async move { client.wait_container(&id, removed).await.map(drop) })
    };
    let code = stream::pump(conn, a.tty, a.interactive).await?;
    let _ = waiter.await;
    Ok(code)
}

/// Without a terminal, ^C and SIGTERM go to the container (Docker's sig-proxy).
fn proxy_signals(client: Client, id: String) {
    use tokio::signal::unix::{signal, SignalKind};
    for (kind, name) in [(SignalKind::interrupt(), "INT"), (SignalKind::terminate(), "TERM")] {
        let client = client.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let Ok(mut s) = signal(kind) else { return };
            while s.recv().await.is_some() {
                let _ = client.kill_container(&id, name).await;
            }
        });
    }
}

#[derive(clap::Args)]
pub struct StartArgs {
    /// Attach stdout/stderr and forward signals
    #[arg(short = 'a', long)]
    attach: bool,
    #[arg(short = 'i', long)]
    interactive: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub async fn start(client: &Client, a: StartArgs) -> Result<i32> {
    if a.attach || a.interactive {
        let [id] = a.containers.as_slice() else {
            bail!("you cannot attach to more than one container")
        };
        let c: Container = client.container(id).await?;
        let conn = client.start_attached(&c.id, a.interactive).await?;
        let code = stream::pump(conn, c.spec.tty, a.interactive).await?;
        let _ = client.wait_container(&c.id, false).await;
        return Ok(code);
    }
    each(&a.containers, |id| async move { client.start_container(&id).await }).await
}

/// Runs `f` for each name, printing the name on success and the error on
/// failure (like Docker); fails if any failed.
async fn each<F, Fut>(names: &[String], f: F) -> Result<i32>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut failed = false;
    for n in names {
        match f(n.clone()).await {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("berth: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

#[derive(clap::Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    all: bool,
    /// Only display ids
    #[arg(short = 'q', long)]
    quiet: bool,
    /// table (default) or json
    #[arg(long)]
    format: Option<String>,
}

pub fn status_text(c: &Container) -> String {
    let since = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| duration(chrono::Utc::now().signed_duration_since(t)))
            .unwrap_or_default()
    };
    match c.status.state {
        ContainerState::Running => format!("Up {}", since(&c.status.started_at)),
        ContainerState::Exited => format!(
            "Exited ({}) {} ago",
            c.status.exit_code.unwrap_or(0),
            since(&c.status.finished_at)
        ),
        ContainerState::Created => "Created".into(),
        ContainerState::Restarting => format!(
            "Restarting ({}) {} ago",
            c.status.exit_code.unwrap_or(0),
            since(&c.status.finished_at)
        ),
        ContainerState::Removing => "Removal In Progress".into(),
        ContainerState::Dead => "Dead".into(),
    }
}

pub async fn ps(client: &Client, a: PsArgs) -> Result<i32> {
    let list: Vec<Container> = client.containers(a.all).await?;
    if a.quiet {
        for c in &list {
            println!("{}", berth_model::short_id(&c.id));
        }
        return Ok(0);
    }
    match a.format.as_deref() {
        Some("json") => {
            println!("{}", serde_json::to_string_pretty(&list)?);
            return Ok(0);
        }
        Some("table") | None => {}
        Some(f) => bail!(ExitError(125, format!("unknown --format {f:?} (use table or json)"))),
    }
    let mut rows = vec![["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"]
        .map(String::from)
        .to_vec()];
    for c in &list {
        let mut cmd = c.process.args.join(" ");
        if cmd.chars().count() > 20 {
            cmd = cmd.chars().take(19).collect::<String>() + "…";
        }
        rows.push(vec![
            berth_model::short_id(&c.id).into(),
            c.image.clone(),
            format!("\"{cmd}\""),
            ago(&c.created),
            status_text(c),
            c.name.clone(),
        ]);
    }
    table(&rows);
    Ok(0)
}

#[derive(clap::Args)]
pub struct LogsArgs {
    #[arg(short = 'f', long)]
    follow: bool,
    /// Number of lines to show from the end
    #[arg(short = 'n', long)]
    tail: Option<String>,
    /// Show timestamps
    #[arg(short = 't', long)]
    timestamps: bool,
    container: String,
}

pub async fn logs(client: &Client, a: LogsArgs) -> Result<i32> {
    let tail = match a.tail.as_deref() {
        None | Some("all") => None,
        Some(n) => Some(
            n.parse::<usize>()
                .map_err(|_| usage_error(format!("invalid --tail {n:?}: use a number or all")))?,
        ),
    };
    let resp = client.logs(&a.container, a.follow, tail).await?;
    use std::io::Write;
    ndjson_lines(resp, |line| {
        let l: berth_runtime::shim::LogLine = serde_json::from_slice(line).context("bad log line")?;
        let text = if a.timestamps {
            format!("{} {}", l.time, l.log)
        } else {
            l.log
        };
        if l.stream == "stderr" {
            let _ = std::io::stderr().write_all(text.as_bytes());
        } else {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
        Ok(())
    })
    .await?;
    Ok(0)
}

#[derive(clap::Args)]
pub struct StopArgs {
    /// Seconds to wait before killing
    #[arg(short = 't', long = "time")]
    time: Option<u64>,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub async fn stop(client: &Client, a: StopArgs) -> Result<i32> {
    each(
        &a.containers,
        |id| async move { client.stop_container(&id, a.time).await },
    )
    .await
}

#[derive(clap::Args)]
pub struct KillArgs {
    #[arg(short = 's', long, default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub async fn kill(client: &Client, a: KillArgs) -> Result<i32> {
    let signal = a.signal.as_str();
    each(
        &a.containers,
        |id| async move { client.kill_container(&id, signal).await },
    )
    .await
}

#[derive(clap::Args)]
pub struct RmArgs {
    /// Kill and remove a running container
    #[arg(short = 'f', long)]
    force: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub async fn rm(client: &Client, a: RmArgs) -> Result<i32> {
    each(&a.containers, |id| async move {
        client.remove_container(&id, a.force).await
    })
    .await
}

#[derive(clap::Args)]
#[command(trailing_var_arg = true)]
pub struct ExecArgs {
    #[arg(short = 'i', long)]
    interactive: bool,
    #[arg(short = 't', long)]
    tty: bool,
    #[arg(short = 'u', long)]
    user: Option<String>,
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    container: String,
    #[arg(required = true)]
    command: Vec<String>,
}

pub async fn exec(client: &Client, a: ExecArgs) -> Result<i32> {
    let req = ExecCreate {
        cmd: a.command.clone(),
        env: a.env.iter().map(|e| expand_env(e)).collect(),
        user: a.user.clone(),
        working_dir: a.workdir.clone(),
        tty: a.tty,
        console_size: if a.tty { stream::window_size() } else { None },
        open_stdin: a.interactive,
    };
    let exec = client.create_exec(&a.container, &req).await?;
    let conn = client.start_exec(&exec.id).await?;
    stream::pump(conn, a.tty, a.interactive).await
}

#[derive(clap::Args)]
pub struct InspectArgs {
    #[arg(required = true)]
    names: Vec<String>,
}

/// Containers first, then images, like Docker's `inspect`.
pub async fn inspect(client: &Client, a: InspectArgs) -> Result<i32> {
    let mut out = Vec::new();
    let mut failed = false;
    for n in &a.names {
        match client.container(n).await {
            Ok(c) => out.push(serde_json::to_value(c)?),
            Err(_) => match client.image(n).await {
                Ok(i) => out.push(serde_json::to_value(i)?),
                Err(_) => {
                    eprintln!("berth: no such object: {n}");
                    failed = true;
                }
            },
        }
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(if failed { 1 } else { 0 })
}

#[derive(clap::Args)]
pub struct WaitArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

pub async fn wait(client: &Client, a: WaitArgs) -> Result<i32> {
    let mut failed = false;
    for n in &a.containers {
        match client.wait_container(n, false).await {
            Ok(w) => println!("{}", w.exit_code),
            Err(e) => {
                eprintln!("berth: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

#[derive(clap::Args)]
pub struct StatsArgs {
    /// Print one sample and exit
    #[arg(long = "no-stream")]
    no_stream: bool,
    #[arg(long)]
    format: Option<String>,
    /// Containers (default: all running)
    containers: Vec<String>,
}

fn stats_row(s: &ContainerStats) -> Vec<String> {
    let limit = s
        .memory_limit_bytes
        .map(units::human_size)
        .unwrap_or_else(|| "unlimited".into());
    let pids = match s.pids_limit {
        Some(l) => format!("{} / {l}", s.pids_current),
        None => s.pids_current.to_string(),
    };
    vec![
        berth_model::short_id(&s.id).into(),
        s.name.clone(),
        format!("{:.2}%", s.cpu_percent),
        format!("{} / {limit}", units::human_size(s.memory_usage_bytes)),
        pids,
    ]
}

pub async fn stats(client: &Client, a: StatsArgs) -> Result<i32> {
    let names: Vec<String> = if a.containers.is_empty() {
        let list: Vec<Container> = client.containers(false).await?;
        list.into_iter().map(|c| c.id.into_string()).collect()
    } else {
        a.containers.clone()
    };
    let json = a.format.as_deref() == Some("json");
    loop {
        let mut samples = Vec::new();
        for n in &names {
            samples.push(client.stats(n).await?);
        }
        if json {
            println!("{}", serde_json::to_string_pretty(&samples)?);
        } else {
            if !a.no_stream {
                print!("\x1b[2J\x1b[H");
            }
            let mut rows = vec![["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "PIDS"]
                .map(String::from)
                .to_vec()];
            rows.extend(samples.iter().map(stats_row));
            table(&rows);
        }
        if a.no_stream {
            return Ok(0);
        }
        tokio::time::sleep(std::time::Duration::from_millis(750)).await;
    }
}
