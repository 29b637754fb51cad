//! `berth audit ls|verify|export|level`: read and check the audit log, set
//! how much it records. `verify --file F --ca CA` checks an export offline
//! against the cluster CA's key alone.

use anyhow::{Context, Result};
use serde_json::Value;

use crate::cli::table;
use berth_client::{json_body, query_value, Client};

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

fn print_verification(v: &Value, format: Option<&str>) -> Result<i32> {
    let ok = v["ok"].as_bool().unwrap_or(false);
    if format == Some("json") {
        println!("{}", serde_json::to_string_pretty(v)?);
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

fn verify_file(file: &std::path::Path, ca: &std::path::Path) -> Result<Value> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let export: berth_auth::AuditExport =
        serde_json::from_str(&text).with_context(|| format!("{} is not an audit export", file.display()))?;
    let ca_pem = std::fs::read_to_string(ca).with_context(|| format!("reading {}", ca.display()))?;
    // A CA that does not parse is an error of its own, not "every signature invalid".
    berth_cluster::pki::verify_with_ca(&ca_pem, b"", b"").with_context(|| format!("--ca {}", ca.display()))?;
    let v = berth_auth::verify_export(&export, &|m, s| {
        berth_cluster::pki::verify_with_ca(&ca_pem, m, s).unwrap_or(false)
    });
    Ok(serde_json::to_value(v)?)
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
        AuditCommand::Verify { file, ca, format } => {
            let v: Value = match (file, ca) {
                (Some(file), Some(ca)) => verify_file(&file, &ca)?,
                _ => client.get("/v1/audit/verify").await?,
            };
            print_verification(&v, format.as_deref())
        }
        AuditCommand::Export { output } => {
            let export: Value = client.get("/v1/audit/export").await?;
            let text = serde_json::to_string_pretty(&export)?;
            std::fs::write(&output, text).with_context(|| format!("writing {}", output.display()))?;
            let n = export["entries"].as_array().map_or(0, Vec::len);
            eprintln!("wrote {n} entries and their signatures to {}", output.display());
            Ok(0)
        }
        AuditCommand::Level {
            command: LevelCommand::Ls { format },
        } => {
            let levels: Value = client.get("/v1/audit/levels").await?;
            if format.as_deref() == Some("json") {
                println!("{}", serde_json::to_string_pretty(&levels)?);
                return Ok(0);
            }
            let mut rows = vec![vec!["RESOURCE".into(), "LEVEL".into()]];
            for l in levels.as_array().into_iter().flatten() {
                rows.push(vec![
                    l["resource"].as_str().unwrap_or_default().to_string(),
                    l["level"].as_str().unwrap_or_default().to_string(),
                ]);
            }
            table(&rows);
            Ok(0)
        }
        AuditCommand::Level {
            command: LevelCommand::Set { resource, level },
        } => {
            let body = json_body(&serde_json::json!({ "level": level }))?;
            let set: Value = client
                .json(
                    hyper::Method::PUT,
                    &format!("/v1/audit/levels/{}", query_value(&resource)),
                    body,
                )
                .await?;
            println!(
                "{}: {}",
                set["resource"].as_str().unwrap_or_default(),
                set["level"].as_str().unwrap_or_default()
            );
            Ok(0)
        }
    }
}
