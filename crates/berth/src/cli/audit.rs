//! `berth audit ls|verify|export`: read and check the audit log.

use anyhow::{Context, Result};
use serde_json::Value;

use crate::cli::table;
use crate::client::{enc, Client};

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
        #[arg(long)]
        format: Option<String>,
    },
    /// Write every entry to a file, one JSON object a line
    Export {
        #[arg(short = 'o', long = "output")]
        output: std::path::PathBuf,
    },
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
                q.push(format!("since={}", enc(&since(&s)?)));
            }
            if let Some(u) = user {
                q.push(format!("user={}", enc(&u)));
            }
            if let Some(n) = tail {
                q.push(format!("limit={n}"));
            }
            let list: Value = client.get(&format!("/v1/audit?{}", q.join("&"))).await?;
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
            let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
            for e in list.as_array().into_iter().flatten() {
                rows.push(vec![
                    e["seq"].to_string(),
                    text(&e["time"]),
                    text(&e["user"]),
                    text(&e["source"]),
                    text(&e["action"]),
                    text(&e["object"]),
                    format!("{} {}", text(&e["result"]), e["status"]),
                ]);
            }
            table(&rows);
            Ok(0)
        }
        AuditCommand::Verify { format } => {
            let v: Value = client.get("/v1/audit/verify").await?;
            let ok = v["ok"].as_bool().unwrap_or(false);
            if format.as_deref() == Some("json") {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if ok {
                println!(
                    "audit log intact: {} entries, {} signed checkpoints",
                    v["entries"], v["checkpoints"]
                );
            } else {
                for p in v["problems"].as_array().into_iter().flatten() {
                    eprintln!("{}", p.as_str().unwrap_or_default());
                }
                eprintln!("audit log verification failed");
            }
            Ok(if ok { 0 } else { 1 })
        }
        AuditCommand::Export { output } => {
            let list: Value = client.get("/v1/audit").await?;
            let mut out = String::new();
            for e in list.as_array().into_iter().flatten() {
                out.push_str(&serde_json::to_string(e)?);
                out.push('\n');
            }
            std::fs::write(&output, out).with_context(|| format!("writing {}", output.display()))?;
            Ok(0)
        }
    }
}
