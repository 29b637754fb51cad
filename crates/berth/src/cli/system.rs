//! `version`, `info` and `events`.

use anyhow::{Context, Result};
use hyper::Method;
use serde_json::Value;

use berth_client::{empty, ndjson_lines, Client};

#[derive(clap::Args)]
pub struct VersionArgs {
    #[arg(long)]
    format: Option<String>,
}

pub async fn version(client: &Client, a: VersionArgs) -> Result<i32> {
    let v: Value = client.get("/v1/version").await?;
    if a.format.as_deref() == Some("json") {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"client": env!("CARGO_PKG_VERSION"), "server": v}))?
        );
    } else {
        println!("Client: {}", env!("CARGO_PKG_VERSION"));
        println!(
            "Server: {} (API {})",
            v["version"].as_str().unwrap_or("?"),
            v["api"].as_str().unwrap_or("?")
        );
    }
    Ok(0)
}

pub async fn info(client: &Client, _a: VersionArgs) -> Result<i32> {
    let v: Value = client.get("/v1/info").await?;
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
    let query: Vec<String> = a
        .filter
        .iter()
        .map(|f| format!("filter={}", berth_client::query_value(f)))
        .collect();
    let resp = client
        .call(Method::GET, &format!("/v1/events?{}", query.join("&")), empty())
        .await?;
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
