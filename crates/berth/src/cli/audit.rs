//! `berth audit ls|verify|export|level`: read and check the audit log, set
//! how much it records. `verify --file F --ca CA` checks an export offline
//! against the cluster CA's key alone.

use anyhow::{Context, Result};

use crate::cli::table;
use berth_auth::Verification;
use berth_client::{query_value, Client};

#[derive(clap::Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(clap::Subcommand)]
enum AuditCommand {
    /// List entries
    #[command(alias = "list")]
    Ls {
        /// Entries at or after this time (RFC 3339, or a duration like 10m)
        #[arg(long)]
        since: Option<String>,
        /// Only this user's entries
        #[arg(long)]
        user: Option<String>,
        /// Only the newest N
        #[arg(long = "tail")]
        tail: Option<usize>,
        #[arg(long)]
        format: Option<String>,
    },
    /// Check the hash chain and the signed checkpoints; fails on any edited,
    /// removed or reordered entry
    Verify {
        /// Check an export (`berth audit export`) offline instead of the daemon's log
        #[arg(long, requires = "ca")]
        file: Option<std::path::PathBuf>,
        /// The cluster CA certificate whose key signed the export
        #[arg(long)]
        ca: Option<std::path::PathBuf>,
        #[arg(long)]
        format: Option<String>,
    },
    /// Write every entry and signature to a file (JSON) for offline checks
    Export {
        #[arg(short = 'o', long = "output")]
        output: std::path::PathBuf,
    },
    /// How much the log records per resource
    Level {
        #[command(subcommand)]
        command: LevelCommand,
    },
}

#[derive(clap::Subcommand)]
enum LevelCommand {
    /// Each resource's level
    #[command(alias = "list")]
    Ls {
        #[arg(long)]
        format: Option<String>,
    },
    /// Set a resource's level: none (denials and logins only), metadata
    /// (every change), request (every request, reads too, with the query)
    Set { resource: String, level: String },
}

fn print_verification(v: &Verification, format: Option<&str>) -> Result<i32> {
    if format == Some("json") {
        println!("{}", serde_json::to_string_pretty(v)?);
    } else if v.ok {
        println!(
            "audit log intact: {} entries, {} signed checkpoints",
            v.entries, v.checkpoints
        );
    } else {
        for p in &v.problems {
            eprintln!("{p}");
        }
        eprintln!("audit log verification failed");
    }
    Ok(if v.ok { 0 } else { 1 })
}

fn verify_file(file: &std::path::Path, ca: &std::path::Path) -> Result<Verification> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let export: berth_auth::AuditExport =
        serde_json::from_str(&text).with_context(|| format!("{} is not an audit export", file.display()))?;
    let ca_pem = std::fs::read_to_string(ca).with_context(|| format!("reading {}", ca.display()))?;
    // A CA that does not parse is an error of its own, not "every signature invalid".
    berth_cluster::pki::verify_with_ca(&ca_pem, b"", b"").with_context(|| format!("--ca {}", ca.display()))?;
    Ok(berth_auth::verify_export(&export, &|m, s| {
        berth_cluster::pki::verify_with_ca(&ca_pem, m, s).unwrap_or(false)
    }))
}

fn since(s: &str) -> Result<String> {
    if chrono::DateTime::parse_from_rfc3339(s).is_ok() {
        return Ok(s.to_string());
    }
    let secs = crate::cli::access::parse_lifetime(s).context("--since: use RFC 3339 or a duration")?;
    let t = chrono::Utc::now() - chrono::TimeDelta::seconds(i64::try_from(secs)?);
    Ok(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

pub async fn audit(client: &Client, a: AuditArgs) -> Result<i32> {
    match a.command {
        AuditCommand::Ls {
            since: s,
            user,
            tail,
            format,
        } => {
            let mut q = Vec::new();
            if let Some(s) = s {
                q.push(format!("since={}", query_value(&since(&s)?)));
            }
            if let Some(u) = user {
                q.push(format!("user={}", query_value(&u)));
            }
            if let Some(n) = tail {
                q.push(format!("limit={n}"));
            }
            let list = client.audit(&q.join("&")).await?;
            if format.as_deref() == Some("json") {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(0);
            }
            let mut rows = vec![vec![
                "SEQ".into(),
                "TIME".into(),
                "USER".into(),
                "SOURCE".into(),
                "ACTION".into(),
                "OBJECT".into(),
                "RESULT".into(),
            ]];
            for e in list {
                rows.push(vec![
                    e.seq.to_string(),
                    e.time,
                    e.user,
                    e.source,
                    e.action,
                    e.object,
                    format!("{} {}", e.result, e.status),
                ]);
            }
            table(&rows);
            Ok(0)
        }
        AuditCommand::Verify { file, ca, format } => {
            let v = match (file, ca) {
                (Some(file), Some(ca)) => verify_file(&file, &ca)?,
                _ => client.audit_verify().await?,
            };
            print_verification(&v, format.as_deref())
        }
        AuditCommand::Export { output } => {
            let export = client.audit_export().await?;
            let text = serde_json::to_string_pretty(&export)?;
            std::fs::write(&output, text).with_context(|| format!("writing {}", output.display()))?;
            let n = export.entries.len();
            eprintln!("wrote {n} entries and their signatures to {}", output.display());
            Ok(0)
        }
        AuditCommand::Level {
            command: LevelCommand::Ls { format },
        } => {
            let levels = client.audit_levels().await?;
            if format.as_deref() == Some("json") {
                println!("{}", serde_json::to_string_pretty(&levels)?);
                return Ok(0);
            }
            let mut rows = vec![vec!["RESOURCE".into(), "LEVEL".into()]];
            for l in levels {
                rows.push(vec![l.resource, l.level.name().to_string()]);
            }
            table(&rows);
            Ok(0)
        }
        AuditCommand::Level {
            command: LevelCommand::Set { resource, level },
        } => {
            let set = client.set_audit_level(&resource, &level).await?;
            println!("{}: {}", set.resource, set.level.name());
            Ok(0)
        }
    }
}
