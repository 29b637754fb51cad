//! Image verbs: `images`, `image load/save/inspect/rm/ls`, `tag`, `rmi`.

use anyhow::{bail, Context, Result};
use http_body_util::BodyExt;
use hyper::Method;
use tokio::io::AsyncWriteExt;

use berth_model::{units, Image, Progress};

use crate::cli::{ago, table};
use crate::client::{empty, enc, file_body, ndjson_lines, Client, ExitError};

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
                out.push(
                    client
                        .get::<serde_json::Value>(&format!("/v1/images/inspect?ref={}", enc(i)))
                        .await?,
                );
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(0)
        }
        ImageCommand::Rm(a) => rm(client, a).await,
        ImageCommand::Ls(a) => list(client, a).await,
    }
}

async fn load(client: &Client, a: LoadArgs) -> Result<i32> {
    let file = tokio::fs::File::open(&a.input)
        .await
        .map_err(|e| ExitError(1, format!("opening {}: {e}", a.input)))?;
    let resp = client.call(Method::POST, "/v1/images/load", file_body(file)).await?;
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
    let query: Vec<String> = a.images.iter().map(|i| format!("ref={}", enc(i))).collect();
    let resp = client
        .call(Method::GET, &format!("/v1/images/save?{}", query.join("&")), empty())
        .await?;
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
        match client
            .json::<Vec<String>>(
                Method::DELETE,
                &format!("/v1/images?ref={}&force={}", enc(i), a.force),
                empty(),
            )
            .await
        {
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
    let images: Vec<Image> = client.get("/v1/images").await?;
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
    client
        .call(
            Method::POST,
            &format!("/v1/images/tag?source={}&target={}", enc(&a.source), enc(&a.target)),
            empty(),
        )
        .await?;
    Ok(0)
}

pub async fn rmi(client: &Client, a: RmArgs) -> Result<i32> {
    rm(client, a).await
}
