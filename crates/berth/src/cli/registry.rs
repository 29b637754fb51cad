//! `berth registry ...`: operations on the registry this daemon serves.

use anyhow::Result;
use hyper::Method;
use serde_json::Value;

use berth_client::{empty, json_body, query_value, Client};

#[derive(clap::Args)]
pub struct RegistryArgs {
    #[command(subcommand)]
    command: RegistryCommand,
}

#[derive(clap::Subcommand)]
enum RegistryCommand {
    /// Delete blobs no manifest, tag, image or upload refers to (safe while serving)
    Gc(GcArgs),
    /// Which collection repositories belong to (grants on it decide push and pull)
    Collection {
        #[command(subcommand)]
        command: CollectionCommand,
    },
}

#[derive(clap::Subcommand)]
enum CollectionCommand {
    /// Put repositories named PREFIX or PREFIX/... in COLLECTION
    Set { prefix: String, collection: String },
    /// Every prefix and its collection
    #[command(alias = "list")]
    Ls {
        #[arg(long)]
        format: Option<String>,
    },
    /// Return repositories under PREFIX to the collections above
    Rm { prefix: String },
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
        RegistryCommand::Collection { command } => collection(client, command).await,
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

async fn collection(client: &Client, command: CollectionCommand) -> Result<i32> {
    match command {
        CollectionCommand::Set { prefix, collection } => {
            let body = json_body(&serde_json::json!({ "collection": collection }))?;
            let set: Value = client
                .json(
                    Method::PUT,
                    &format!("/v1/registry/collections/{}", query_value(&prefix)),
                    body,
                )
                .await?;
            println!(
                "{}\t{}",
                set["prefix"].as_str().unwrap_or_default(),
                set["collection"].as_str().unwrap_or_default()
            );
        }
        CollectionCommand::Ls { format } => {
            let list: Value = client.get("/v1/registry/collections").await?;
            if format.as_deref() == Some("json") {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let mut rows = vec![vec!["PREFIX".to_string(), "COLLECTION".to_string()]];
                for m in list.as_array().into_iter().flatten() {
                    rows.push(vec![
                        m["prefix"].as_str().unwrap_or_default().to_string(),
                        m["collection"].as_str().unwrap_or_default().to_string(),
                    ]);
                }
                crate::cli::table(&rows);
            }
        }
        CollectionCommand::Rm { prefix } => {
            client
                .call(
                    Method::DELETE,
                    &format!("/v1/registry/collections/{}", query_value(&prefix)),
                    empty(),
                )
                .await?;
        }
    }
    Ok(0)
}
