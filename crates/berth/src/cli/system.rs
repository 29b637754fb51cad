//! `version`, `info` and `events`.

use anyhow::{Context, Result};

use berth_client::{ndjson_lines, Client};

#[derive(clap::Args)]
pub struct VersionArgs {
    #[arg(long)]
    format: Option<String>,
}

pub async fn version(client: &Client, a: VersionArgs) -> Result<i32> {
    let v = client.version().await?;
    if a.format.as_deref() == Some("json") {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"client": env!("CARGO_PKG_VERSION"), "server": v}))?
        );
    } else {
        println!("Client: {}", env!("CARGO_PKG_VERSION"));
        println!("Server: {} (API {})", v.version, v.api);
    }
    Ok(0)
}

pub async fn info(client: &Client, _a: VersionArgs) -> Result<i32> {
    let v = client.info().await?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(0)
}

#[derive(clap::Args)]
pub struct EventsArgs {
    #[arg(long)]
    format: Option<String>,
    /// key=value: type, event, container or image (repeatable)
    #[arg(short = 'f', long = "filter")]
    filter: Vec<String>,
}

pub async fn events(client: &Client, a: EventsArgs) -> Result<i32> {
    let resp = client.events(&a.filter).await?;
    ndjson_lines(resp, |line| {
        if a.format.as_deref() == Some("json") {
            println!("{}", String::from_utf8_lossy(line));
        } else {
            let e: berth_model::Event = serde_json::from_slice(line).context("bad event")?;
            let attrs: Vec<String> = e.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!("{} {} {} {} ({})", e.time, e.kind, e.action, e.id, attrs.join(", "));
        }
        Ok(())
    })
    .await?;
    Ok(0)
}
