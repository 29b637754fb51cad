//! `berth registry ...`: operations on the registry this daemon serves.

use anyhow::Result;
use hyper::Method;
use serde_json::Value;

use crate::client::{empty, Client};

#[derive(clap::Args)]
pub struct RegistryArgs {
    #[command(subcommand)]
    command: RegistryCommand,
}

#[derive(clap::Subcommand)]
enum RegistryCommand {
    /// Delete blobs no manifest, tag, image or upload refers to (safe while serving)
    Gc(GcArgs),
}

#[derive(clap::Args)]
struct GcArgs {
    /// Keep unreferenced blobs younger than this many seconds (uploads in flight)
    #[arg(long, default_value_t = 3600)]
    grace: u64,
    #[arg(long)]
    format: Option<String>,
}

pub async fn registry(client: &Client, a: RegistryArgs) -> Result<i32> {
    match a.command {
        RegistryCommand::Gc(g) => {
            let report: Value = client
                .json(Method::POST, &format!("/v1/registry/gc?grace={}", g.grace), empty())
                .await?;
            if g.format.as_deref() == Some("json") {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                let count = |k: &str| report[k].as_array().map(|a| a.len()).unwrap_or(0);
                for d in report["blobs_removed"].as_array().into_iter().flatten() {
                    println!("Deleted: {}", d.as_str().unwrap_or_default());
                }
                println!(
                    "{} blobs deleted, {} repository links removed, {} expired uploads removed",
                    count("blobs_removed"),
                    count("links_removed"),
                    report["uploads_removed"].as_u64().unwrap_or(0)
                );
            }
            Ok(0)
        }
    }
}
