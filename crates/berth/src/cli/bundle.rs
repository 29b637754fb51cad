//! `berth bundle create|ls|rm`: client bundles. A bundle is a zip with the
//! cluster CA (`ca.pem`), a client certificate and key naming the user
//! (`cert.pem`, `key.pem`, mode 0600) and `env.sh`, which points the berth
//! CLI (and the docker CLI) at the daemon's TLS listener with them.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::{Context, Result};

use berth_auth::BundleIssued;
use berth_client::Client;

#[derive(clap::Args)]
pub struct BundleArgs {
    #[command(subcommand)]
    command: BundleCommand,
}

#[derive(clap::Subcommand)]
enum BundleCommand {
    /// Issue a bundle and write it as a zip
    Create(CreateArgs),
    /// List bundles
    Ls(LsArgs),
    /// Revoke bundles: their certificates are refused from now on
    Rm(RmArgs),
}

#[derive(clap::Args)]
struct CreateArgs {
    /// The zip to write [default: bundle-USER.zip]
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    /// The user the bundle identifies [default: you]
    #[arg(long)]
    user: Option<String>,
    /// The daemon's TLS address for env.sh [default: -H when https://,
    /// else https://HOSTNAME:7443]
    #[arg(long)]
    url: Option<String>,
}

#[derive(clap::Args)]
struct LsArgs {
    /// `json` for machine-readable output
    #[arg(long)]
    format: Option<String>,
}

#[derive(clap::Args)]
struct RmArgs {
    #[arg(required = true)]
    ids: Vec<String>,
}

pub async fn bundle(client: &Client, host: &str, a: BundleArgs) -> Result<i32> {
    match a.command {
        BundleCommand::Create(c) => create(client, host, c).await,
        BundleCommand::Ls(l) => ls(client, l).await,
        BundleCommand::Rm(r) => {
            for id in r.ids {
                client.revoke_bundle(&id).await?;
                println!("{id}");
            }
            Ok(0)
        }
    }
}

async fn create(client: &Client, host: &str, c: CreateArgs) -> Result<i32> {
    let issued = client.issue_bundle(c.user.as_deref()).await?;
    let url = c.url.clone().unwrap_or_else(|| default_url(host));
    let output = c
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("bundle-{}.zip", issued.bundle.user)));
    write_zip(&output, &issued, &url).with_context(|| format!("writing {}", output.display()))?;
    eprintln!(
        "bundle {} for user {} written to {}",
        issued.bundle.id,
        issued.bundle.user,
        output.display()
    );
    println!("{}", issued.bundle.id);
    Ok(0)
}

fn default_url(host: &str) -> String {
    if host.starts_with("https://") {
        return host.trim_end_matches('/').to_string();
    }
    let name = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    format!("https://{name}:7443")
}

fn write_zip(path: &std::path::Path, issued: &BundleIssued, url: &str) -> Result<()> {
    use zip::write::SimpleFileOptions;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    let mut zip = zip::ZipWriter::new(file);
    let public = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .unix_permissions(0o644);
    let private = public.unix_permissions(0o600);
    let tcp = url.strip_prefix("https://").unwrap_or(url);
    let env = format!(
        r#"# Source this file: `. env.sh` (bash, zsh, sh).
BERTH_BUNDLE_DIR="$(cd "$(dirname "${{BASH_SOURCE[0]:-$0}}")" && pwd)"
export BERTH_HOST={url}
export BERTH_TLS_CA="$BERTH_BUNDLE_DIR/ca.pem"
export BERTH_TLS_CERT="$BERTH_BUNDLE_DIR/cert.pem"
export BERTH_TLS_KEY="$BERTH_BUNDLE_DIR/key.pem"
export DOCKER_HOST=tcp://{tcp}
export DOCKER_TLS_VERIFY=1
export DOCKER_CERT_PATH="$BERTH_BUNDLE_DIR"
"#
    );
    for (name, data, options) in [
        ("ca.pem", issued.ca_pem.as_str(), public),
        ("cert.pem", issued.cert_pem.as_str(), public),
        ("key.pem", issued.key_pem.as_str(), private),
        ("env.sh", env.as_str(), public.unix_permissions(0o755)),
    ] {
        zip.start_file(name, options)?;
        zip.write_all(data.as_bytes())?;
    }
    zip.finish()?.sync_all()?;
    Ok(())
}

async fn ls(client: &Client, l: LsArgs) -> Result<i32> {
    let bundles = client.bundles().await?;
    if l.format.as_deref() == Some("json") {
        println!("{}", serde_json::to_string_pretty(&bundles)?);
        return Ok(0);
    }
    let mut rows = vec![vec![
        "ID".to_string(),
        "USER".into(),
        "CREATED".into(),
        "EXPIRES".into(),
        "STATUS".into(),
    ]];
    for b in bundles {
        rows.push(vec![
            b.id,
            b.user,
            super::ago(&b.created),
            b.not_after.get(..10).unwrap_or(&b.not_after).to_string(),
            if b.revoked.is_some() { "revoked" } else { "active" }.into(),
        ]);
    }
    super::table(&rows);
    Ok(0)
}
