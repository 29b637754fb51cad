//! Image verbs: `images`, `image load/save/inspect/rm/ls/pull/push`, `tag`,
//! `rmi`, `pull`, `push`, `login`, `logout`.

use anyhow::{bail, Context, Result};
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;

use berth_model::{units, Image, Progress};

use crate::cli::{ago, table};
use berth_client::{file_body, ndjson_lines, Client, ExitError};

#[derive(clap::Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(clap::Subcommand)]
enum ImageCommand {
    /// Load images from an OCI layout or docker-save archive
    Load(LoadArgs),
    /// Save images to an OCI layout tarball
    Save(SaveArgs),
    /// Show an image's record
    Inspect(InspectArgs),
    /// Remove images
    Rm(RmArgs),
    /// List images
    Ls(ListArgs),
    /// Download an image from a registry
    Pull(PullArgs),
    /// Upload an image to a registry
    Push(PushArgs),
}

#[derive(clap::Args)]
pub struct LoadArgs {
    /// Archive to read (tar, optionally gzip-compressed)
    #[arg(short = 'i', long = "input", required = true)]
    input: String,
    #[arg(short = 'q', long)]
    quiet: bool,
}

#[derive(clap::Args)]
pub struct SaveArgs {
    #[arg(short = 'o', long = "output", required = true)]
    output: String,
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(clap::Args)]
pub struct InspectArgs {
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(clap::Args)]
pub struct RmArgs {
    #[arg(short = 'f', long)]
    force: bool,
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(clap::Args)]
pub struct ListArgs {
    #[arg(short = 'q', long)]
    quiet: bool,
    /// table (default) or json
    #[arg(long)]
    format: Option<String>,
}

#[derive(clap::Args)]
pub struct TagArgs {
    source: String,
    target: String,
}

pub async fn image(client: &Client, a: ImageArgs) -> Result<i32> {
    match a.command {
        ImageCommand::Load(a) => load(client, a).await,
        ImageCommand::Save(a) => save(client, a).await,
        ImageCommand::Inspect(a) => {
            let mut out = Vec::new();
            for i in &a.images {
                out.push(client.image(i).await?);
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(0)
        }
        ImageCommand::Rm(a) => rm(client, a).await,
        ImageCommand::Ls(a) => list(client, a).await,
        ImageCommand::Pull(a) => pull(client, a).await,
        ImageCommand::Push(a) => push(client, a).await,
    }
}

async fn load(client: &Client, a: LoadArgs) -> Result<i32> {
    let file = tokio::fs::File::open(&a.input)
        .await
        .map_err(|e| ExitError(1, format!("opening {}: {e}", a.input)))?;
    let resp = client.load(&a.input, file_body(file)).await?;
    let mut error = None;
    ndjson_lines(resp, |line| {
        let p: Progress = serde_json::from_slice(line).context("bad progress line")?;
        if let Some(e) = p.error {
            error = Some(e.message);
        } else if !a.quiet || p.status.starts_with("Loaded") {
            println!("{}", p.status);
        }
        Ok(())
    })
    .await?;
    match error {
        Some(e) => Err(ExitError(1, e).into()),
        None => Ok(0),
    }
}

async fn save(client: &Client, a: SaveArgs) -> Result<i32> {
    let resp = client.save(&a.images).await?;
    let tmp = format!("{}.partial", a.output);
    let mut out = tokio::fs::File::create(&tmp)
        .await
        .with_context(|| format!("creating {tmp}"))?;
    let mut body = resp.into_body();
    let result: Result<()> = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.context("the daemon failed while writing the archive")?;
            if let Ok(data) = frame.into_data() {
                out.write_all(&data).await?;
            }
        }
        out.flush().await?;
        out.sync_all().await?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    tokio::fs::rename(&tmp, &a.output)
        .await
        .with_context(|| format!("writing {}", a.output))?;
    Ok(0)
}

async fn rm(client: &Client, a: RmArgs) -> Result<i32> {
    let mut failed = false;
    for i in &a.images {
        match client.remove_image(i, a.force).await {
            Ok(lines) => lines.iter().for_each(|l| println!("{l}")),
            Err(e) => {
                eprintln!("berth: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

pub async fn list(client: &Client, a: ListArgs) -> Result<i32> {
    let images: Vec<Image> = client.images().await?;
    match a.format.as_deref() {
        Some("json") => {
            println!("{}", serde_json::to_string_pretty(&images)?);
            return Ok(0);
        }
        Some("table") | None => {}
        Some(f) => bail!(ExitError(125, format!("unknown --format {f:?} (use table or json)"))),
    }
    if a.quiet {
        for i in &images {
            println!("{}", berth_model::short_id(&i.id));
        }
        return Ok(0);
    }
    let mut rows = vec![["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
        .map(String::from)
        .to_vec()];
    for i in &images {
        let created = i.created.as_deref().map(ago).unwrap_or_else(|| "N/A".into());
        let id = berth_model::short_id(&i.id).to_string();
        if i.tags.is_empty() {
            rows.push(vec![
                "<none>".into(),
                "<none>".into(),
                id.clone(),
                created.clone(),
                units::human_size(i.size),
            ]);
        }
        for t in &i.tags {
            let (repo, tag) = t.rsplit_once(':').unwrap_or((t, "<none>"));
            rows.push(vec![
                repo.into(),
                tag.into(),
                id.clone(),
                created.clone(),
                units::human_size(i.size),
            ]);
        }
    }
    table(&rows);
    Ok(0)
}

pub async fn tag(client: &Client, a: TagArgs) -> Result<i32> {
    client.tag_image(&a.source, &a.target).await?;
    Ok(0)
}

pub async fn rmi(client: &Client, a: RmArgs) -> Result<i32> {
    rm(client, a).await
}

#[derive(clap::Args)]
pub struct PullArgs {
    /// Pull this platform from a multi-platform image (os/arch[/variant]); default linux/amd64
    #[arg(long)]
    platform: Option<String>,
    /// Pull every platform of a multi-platform image
    #[arg(short = 'a', long = "all-platforms")]
    all_platforms: bool,
    /// Print only the image id
    #[arg(short = 'q', long)]
    quiet: bool,
    image: String,
}

#[derive(clap::Args)]
pub struct PushArgs {
    /// Print only the manifest digest line
    #[arg(short = 'q', long)]
    quiet: bool,
    image: String,
}

#[derive(clap::Args)]
pub struct LoginArgs {
    #[arg(short = 'u', long)]
    username: Option<String>,
    /// Password (insecure: it shows in the process list; prefer --password-stdin)
    #[arg(short = 'p', long)]
    password: Option<String>,
    /// Read the password from stdin
    #[arg(long = "password-stdin")]
    password_stdin: bool,
    /// Registry host[:port]; Docker Hub when not given
    registry: Option<String>,
}

#[derive(clap::Args)]
pub struct LogoutArgs {
    /// Registry host[:port]; Docker Hub when not given
    registry: Option<String>,
}

/// Shows NDJSON progress: a bar per layer on a terminal, status lines
/// otherwise. Returns the error of the stream, if any.
async fn show_progress(resp: hyper::Response<hyper::body::Incoming>, quiet: bool) -> Result<Option<String>> {
    use std::io::IsTerminal;
    let multi = indicatif::MultiProgress::new();
    let tty = std::io::stdout().is_terminal();
    if !tty || quiet {
        multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let style = indicatif::ProgressStyle::with_template("{prefix}: {msg:<12} [{bar:30}] {bytes}/{total_bytes}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
    let mut bars: std::collections::HashMap<String, indicatif::ProgressBar> = Default::default();
    let mut error = None;
    ndjson_lines(resp, |line| {
        let p: Progress = serde_json::from_slice(line).context("bad progress line")?;
        if let Some(e) = p.error {
            error = Some(e.message);
            return Ok(());
        }
        match (&p.id, p.total) {
            (Some(id), Some(total)) if tty && !quiet => {
                let bar = bars.entry(id.clone()).or_insert_with(|| {
                    let bar = multi.add(indicatif::ProgressBar::new(total));
                    bar.set_style(style.clone());
                    bar.set_prefix(id.clone());
                    bar
                });
                bar.set_message(p.status.clone());
                bar.set_position(p.current.unwrap_or(0));
            }
            (Some(_), Some(_)) => {}
            (Some(id), None) if tty && !quiet => match bars.get(id) {
                Some(bar) => bar.finish_with_message(p.status.clone()),
                None => {
                    let _ = multi.println(format!("{id}: {}", p.status));
                }
            },
            (Some(id), None) if !quiet && !p.status.starts_with("Status:") => println!("{id}: {}", p.status),
            _ if quiet => {}
            _ => {
                let _ = multi.println(&p.status);
                if !tty {
                    println!("{}", p.status);
                }
                if p.status.starts_with("Status:") || p.status.contains(": digest: ") {
                    if let Some(bytes) = p.current {
                        println!("Transferred: {bytes} bytes");
                    }
                }
            }
        }
        Ok(())
    })
    .await?;
    for bar in bars.values() {
        if !bar.is_finished() {
            bar.abandon();
        }
    }
    Ok(error)
}

pub async fn pull(client: &Client, mut a: PullArgs) -> Result<i32> {
    // BERTH_CONTENT_TRUST=1: pull the digest the tag's signed trust data names.
    let trusted_tag = match crate::cli::trust::content_trust_enabled() {
        true => {
            let (by_digest, tag) = crate::cli::trust::trusted_reference(client, &a.image).await?;
            if tag.is_some() {
                println!("Pull (1 of 1): {by_digest}");
            }
            a.image = by_digest;
            tag
        }
        false => None,
    };
    let resp = client.pull(&a.image, a.platform.as_deref(), a.all_platforms).await?;
    if let Some(e) = show_progress(resp, a.quiet).await? {
        return Err(ExitError(1, e).into());
    }
    if let Some(tag) = &trusted_tag {
        crate::cli::trust::tag_locally(client, &a.image, tag).await?;
        println!("Tagging {} as {tag}", a.image);
    }
    if a.quiet {
        let image = client.image(&a.image).await?;
        println!("{}", image.id);
    }
    Ok(0)
}

pub async fn push(client: &Client, a: PushArgs) -> Result<i32> {
    let resp = client.push(&a.image).await?;
    match show_progress(resp, a.quiet).await? {
        Some(e) => Err(ExitError(1, e).into()),
        None => Ok(0),
    }
}

/// Reads a line from the terminal with echo off.
fn read_password_from_tty(prompt: &str) -> Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    use std::io::Write;
    let stdin = std::io::stdin();
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let original = tcgetattr(&stdin).context("reading the terminal's mode")?;
    let mut silent = original.clone();
    silent.local_flags.remove(LocalFlags::ECHO);
    silent.local_flags.insert(LocalFlags::ECHONL);
    tcsetattr(&stdin, SetArg::TCSANOW, &silent).context("turning echo off")?;
    let mut line = String::new();
    let read = stdin.read_line(&mut line);
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &original);
    read.context("reading the password")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

pub async fn login(client: &Client, a: LoginArgs) -> Result<i32> {
    use std::io::{IsTerminal, Read};
    let registry = a.registry.unwrap_or_default();
    let interactive = std::io::stdin().is_terminal();
    let username = match a.username {
        Some(u) => u,
        None if interactive && !a.password_stdin => {
            eprint!("Username: ");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).context("reading the username")?;
            line.trim().to_string()
        }
        None => bail!(ExitError(1, "login needs --username (-u)".into())),
    };
    let password = match (a.password, a.password_stdin) {
        (Some(_), true) => bail!(ExitError(
            1,
            "--password and --password-stdin are mutually exclusive".into()
        )),
        (Some(p), false) => {
            eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
            p
        }
        (None, true) => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the password from stdin")?;
            s.trim_end_matches(['\r', '\n']).to_string()
        }
        (None, false) if interactive => read_password_from_tty("Password: ")?,
        (None, false) => bail!(ExitError(
            1,
            "cannot read a password: stdin is not a terminal (use --password-stdin)".into()
        )),
    };
    if username.is_empty() || password.is_empty() {
        bail!(ExitError(1, "login needs a username and a password".into()));
    }
    let answer = client
        .login(&berth_model::LoginRequest {
            registry,
            username,
            password,
        })
        .await?;
    println!("{}", answer.status);
    Ok(0)
}

pub async fn logout(client: &Client, a: LogoutArgs) -> Result<i32> {
    let registry = a.registry.unwrap_or_default();
    let answer = client.logout(&registry).await?;
    println!("{}", answer.status);
    Ok(0)
}
