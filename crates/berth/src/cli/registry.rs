//! `berth registry ...`: operations on the registry this daemon serves.

use anyhow::Result;

use berth_client::Client;

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
            let report = client.registry_gc(g.grace).await?;
            if g.format.as_deref() == Some("json") {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for d in &report.blobs_removed {
                    println!("Deleted: {d}");
                }
                println!(
                    "{} blobs deleted, {} repository links removed, {} expired uploads removed",
                    report.blobs_removed.len(),
                    report.links_removed.len(),
                    report.uploads_removed
                );
            }
            Ok(0)
        }
    }
}

async fn collection(client: &Client, command: CollectionCommand) -> Result<i32> {
    match command {
        CollectionCommand::Set { prefix, collection } => {
            let set = client.set_repository_collection(&prefix, &collection).await?;
            println!("{}\t{}", set.prefix, set.collection);
        }
        CollectionCommand::Ls { format } => {
            let list = client.repository_collections().await?;
            if format.as_deref() == Some("json") {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let mut rows = vec![vec!["PREFIX".to_string(), "COLLECTION".to_string()]];
                for m in list {
                    rows.push(vec![m.prefix, m.collection]);
                }
                crate::cli::table(&rows);
            }
        }
        CollectionCommand::Rm { prefix } => {
            client.unset_repository_collection(&prefix).await?;
        }
    }
    Ok(0)
}
