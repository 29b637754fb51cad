//! `berth scan` (run a scan, `ls`, `inspect`, `verify` records), `berth
//! vulndb` (import, update, status) and `berth plugin` (install, ls,
//! inspect, enable, disable, rm, push).
//!
//! The daemon scans and returns the signed certification record; the report
//! inside it is rendered here (table, JSON, SPDX, CycloneDX, SARIF), so every
//! format shows exactly what was recorded.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use berth_client::PluginAction;
use berth_engine::scan::{ScanRecord, ScanRecordSummary, SignedPayload, VulnDbImport, VulnDbStatus};
use berth_engine::vulndb_update::VulnDbUpdateSpec;
use berth_model::SignedScanRecord;
use berth_model::{PluginInstall, PluginView};
use berth_scanner::records::ScanSpec;
use berth_scanner::report::{self, ScanReport, SeverityFilter};
use berth_scanner::Severity;
use serde_json::Value;

use berth_client::{file_body, Client, ExitError};

/// Parses `30s`, `500ms`, `2m`, `1h`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: expected a number and a unit (500ms, 30s, 2m, 1h)"))?;
    let scaled = |per: u64| {
        n.checked_mul(per)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("invalid duration {text:?}: too long"))
    };
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => scaled(60),
        "h" => scaled(3600),
        "d" => scaled(86400),
        other => Err(format!(
            "invalid duration {text:?}: unknown unit {other:?} (use ms, s, m, h or d)"
        )),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
    #[value(name = "spdx-json")]
    SpdxJson,
    #[value(name = "cyclonedx-json")]
    CyclonedxJson,
    Sarif,
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ScanArgs {
    #[command(subcommand)]
    command: Option<ScanCommand>,
    #[command(flatten)]
    run: ScanRunArgs,
}

#[derive(clap::Subcommand)]
enum ScanCommand {
    /// List certification records
    Ls(ScanLsArgs),
    /// Show a certification record (the signed payload and the report)
    Inspect(ScanInspectArgs),
    /// Check a record's signature against the cluster CA certificate
    Verify(ScanVerifyArgs),
    /// The daemon's webhooks (`berth daemon --scan-webhook`) and their deliveries
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
}

#[derive(clap::Subcommand)]
enum WebhooksCommand {
    /// List the webhooks: host, secret file, delivery state and counts
    Ls {
        /// Output format: table or json
        #[arg(long, default_value = "table")]
        format: String,
    },
}

#[derive(clap::Args)]
struct ScanRunArgs {
    /// The image to scan
    #[arg(required = true)]
    image: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value = "table")]
    format: ReportFormat,
    /// Severities to list: critical,high,medium,low,unknown (the counts cover all)
    #[arg(long)]
    severity: Option<String>,
    /// Exit 1 when a vulnerability or check finding at least this severe (not ignored) is found
    #[arg(long = "fail-on")]
    fail_on: Option<String>,
    /// Checks to run: all (every enabled plugin, the default), none, or names
    #[arg(long, value_delimiter = ',')]
    checks: Vec<String>,
    /// Deny a license: an SPDX id or a class (permissive, weak-copyleft, strong-copyleft, unknown); exit 1 when found
    #[arg(long = "deny-license")]
    deny_license: Vec<String>,
    /// Vulnerabilities to ignore: YAML/JSON rules or an OpenVEX document
    #[arg(long = "ignore-file")]
    ignore_file: Option<PathBuf>,
    /// A functional test: a shell command run in the image without network; exit 1 when it fails
    #[arg(long, conflicts_with = "test_healthcheck")]
    test: Option<String>,
    /// Run the image and its HEALTHCHECK until the check passes
    #[arg(long = "test-healthcheck")]
    test_healthcheck: bool,
    /// Time the functional test may take
    #[arg(long = "test-timeout", default_value = "30s", value_parser = parse_duration)]
    test_timeout: Duration,
    /// Write the report to this file instead of standard output
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    /// No progress display
    #[arg(short, long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct ScanLsArgs {
    /// Only records of this image (a name, a manifest digest or an image id)
    #[arg(long)]
    image: Option<String>,
    /// Output format: table or json
    #[arg(long, default_value = "table")]
    format: String,
}

#[derive(clap::Args)]
struct ScanInspectArgs {
    /// Record id (or a unique prefix)
    id: String,
}

#[derive(clap::Args)]
struct ScanVerifyArgs {
    /// Record id (or a unique prefix), fetched from the daemon
    #[arg(required_unless_present = "file")]
    id: Option<String>,
    /// A record saved with `berth scan inspect ID > FILE`, checked without the daemon
    #[arg(long, conflicts_with = "id")]
    file: Option<PathBuf>,
    /// The cluster CA certificate (PEM) the record must be signed with
    #[arg(long)]
    ca: PathBuf,
}

pub async fn scan(client: &Client, a: ScanArgs) -> Result<i32> {
    match a.command {
        Some(ScanCommand::Ls(l)) => scan_ls(client, l).await,
        Some(ScanCommand::Inspect(i)) => scan_inspect(client, i).await,
        Some(ScanCommand::Verify(v)) => scan_verify(client, v).await,
        Some(ScanCommand::Webhooks(WebhooksCommand::Ls { format })) => webhooks_ls(client, &format).await,
        None => scan_run(client, a.run).await,
    }
}

async fn scan_run(client: &Client, a: ScanRunArgs) -> Result<i32> {
    let image = a.image.clone().context("scan needs an image")?;
    let filter = match &a.severity {
        Some(list) => SeverityFilter::parse(list).map_err(|e| anyhow!("--severity: {e}"))?,
        None => SeverityFilter::default(),
    };
    let fail_on = a
        .fail_on
        .as_deref()
        .map(report::parse_severity)
        .transpose()
        .map_err(|e| anyhow!("--fail-on: {e}"))?;
    berth_scanner::licenses::validate_deny(&a.deny_license).map_err(|e| anyhow!("--deny-license: {e}"))?;
    let (ignore, ignore_name) = match &a.ignore_file {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading --ignore-file {}", path.display()))?;
            // Checked here too, so a bad file fails before the daemon works.
            berth_scanner::vuln::IgnoreRules::parse(&text, &path.display().to_string())?;
            (Some(text), Some(path.display().to_string()))
        }
        None => (None, None),
    };
    let checks: Option<Vec<String>> = match a.checks.as_slice() {
        [] => None,
        list => Some(
            list.iter()
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect(),
        ),
    };
    let spec = ScanSpec {
        image,
        checks,
        deny_licenses: a.deny_license.clone(),
        ignore,
        ignore_name,
        test: a.test.clone(),
        test_healthcheck: a.test_healthcheck,
        test_timeout_secs: Some(a.test_timeout.as_secs().max(1)),
    };
    let bar = indicatif::ProgressBar::new_spinner();
    if a.quiet || !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar.enable_steady_tick(Duration::from_millis(120));
    }
    let mut warnings = Vec::new();
    let scanned = client
        .scan(&spec, |step| match step.status.as_str() {
            "warning" => warnings.push(step.message.clone().unwrap_or_default()),
            phase => {
                let counts = match (step.current, step.total) {
                    (Some(c), Some(t)) => format!(" {c}/{t}"),
                    _ => String::new(),
                };
                let what = step
                    .id
                    .as_deref()
                    .or(step.message.as_deref())
                    .map(|s| format!(" {}", short(s)))
                    .unwrap_or_default();
                let cached = if step.cached { " (cached)" } else { "" };
                bar.set_message(format!("{phase}{counts}{what}{cached}"));
            }
        })
        .await;
    bar.finish_and_clear();
    for warning in &warnings {
        eprintln!("warning: {warning}");
    }
    let signed = scanned?;
    let record = signed.record().map_err(|e| anyhow!(e))?;
    let rendered = render(&record.report, a.format, &filter)?;
    match &a.output {
        Some(path) => std::fs::write(path, &rendered).with_context(|| format!("writing {}", path.display()))?,
        None => std::io::stdout().write_all(rendered.as_bytes())?,
    }
    eprintln!("Scan record: {}", record.id);
    let reasons = failures(&record.report, fail_on);
    if reasons.is_empty() {
        return Ok(0);
    }
    for reason in &reasons {
        eprintln!("berth: {reason}");
    }
    Ok(1)
}

/// Why the scan fails the build: findings at or above `fail_on`, denied
/// licenses, a failed functional test.
fn failures(report: &ScanReport, fail_on: Option<Severity>) -> Vec<String> {
    let mut reasons = Vec::new();
    if let Some(threshold) = fail_on {
        let vulns = report
            .vulnerabilities
            .iter()
            .filter(|v| v.ignored.is_none() && v.severity >= threshold)
            .count();
        let findings = report.check_findings.iter().filter(|f| f.severity >= threshold).count();
        if vulns + findings > 0 {
            reasons.push(format!(
                "{vulns} vulnerabilities and {findings} check findings at or above {}",
                report::severity_name(threshold)
            ));
        }
    }
    if !report.license_violations.is_empty() {
        reasons.push(format!(
            "{} components have a denied license",
            report.license_violations.len()
        ));
    }
    if let Some(test) = &report.functional_test {
        if !test.passed {
            reasons.push(match test.exit_code {
                Some(code) => format!("the functional test failed with exit code {code}"),
                None => "the functional test did not finish".to_string(),
            });
        }
    }
    reasons
}

fn render(report: &ScanReport, format: ReportFormat, filter: &SeverityFilter) -> Result<String> {
    Ok(match format {
        ReportFormat::Table => report::table::write_table(report, filter),
        ReportFormat::Json => report.to_json()?,
        ReportFormat::SpdxJson => {
            report::spdx::write_spdx(report, &report::spdx::document_namespace(&report::random_uuid()?))?
        }
        ReportFormat::CyclonedxJson => {
            report::cyclonedx::write_cyclonedx(report, &report::cyclonedx::serial_number(&report::random_uuid()?))?
        }
        ReportFormat::Sarif => report::sarif::write_sarif(report)?,
    })
}

fn short(s: &str) -> &str {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        &hex[..12]
    } else {
        s
    }
}

async fn webhooks_ls(client: &Client, format: &str) -> Result<i32> {
    let hooks = client.scan_webhooks().await?;
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    match format {
        "json" => println!("{}", serde_json::to_string_pretty(&hooks)?),
        "table" => {
            let mut rows = vec![[
                "ID",
                "TARGET",
                "STATE",
                "PENDING",
                "DELIVERED",
                "FAILED",
                "ATTEMPTS",
                "LAST ATTEMPT",
                "LAST RESULT",
                "SECRET FILE",
            ]
            .map(String::from)
            .to_vec()];
            for h in &hooks {
                rows.push(vec![
                    h.id.clone(),
                    h.target.clone(),
                    h.state.clone(),
                    h.pending.to_string(),
                    h.delivered.to_string(),
                    h.failed.to_string(),
                    h.attempts.to_string(),
                    or_dash(&h.last_attempt),
                    or_dash(&h.last_result),
                    h.secret_file.clone(),
                ]);
            }
            super::table(&rows);
        }
        other => bail!("unknown --format {other:?} (use table or json)"),
    }
    Ok(0)
}

async fn scan_ls(client: &Client, a: ScanLsArgs) -> Result<i32> {
    let records: Vec<ScanRecordSummary> = client.scan_records(a.image.as_deref()).await?;
    match a.format.as_str() {
        "json" => println!("{}", serde_json::to_string_pretty(&records)?),
        "table" => {
            let mut rows = vec![vec![
                "ID".to_string(),
                "IMAGE".to_string(),
                "DIGEST".to_string(),
                "CREATED".to_string(),
                "CRITICAL/HIGH/MEDIUM/LOW".to_string(),
                "CHECKS".to_string(),
                "TRIGGER".to_string(),
                "SIGNED".to_string(),
            ]];
            for r in &records {
                let v = &r.summary.vulnerabilities;
                rows.push(vec![
                    r.id[..r.id.len().min(12)].to_string(),
                    r.image.clone(),
                    short(&r.image_digest).to_string(),
                    super::ago(&r.created),
                    format!("{}/{}/{}/{}", v.critical, v.high, v.medium, v.low),
                    format!("{}", r.summary.check_findings.total()),
                    r.trigger.clone(),
                    if r.signed { "yes" } else { "no" }.to_string(),
                ]);
            }
            super::table(&rows);
        }
        other => bail!("unknown --format {other:?} (use table or json)"),
    }
    Ok(0)
}

/// The signed record with its payload also shown parsed.
#[derive(serde::Serialize)]
struct RecordDocument<'a> {
    #[serde(flatten)]
    signed: &'a SignedScanRecord,
    record: ScanRecord,
}

fn record_document(signed: &SignedScanRecord) -> Result<RecordDocument<'_>> {
    let record: ScanRecord = signed.record().map_err(|e| anyhow!(e))?;
    Ok(RecordDocument { signed, record })
}

async fn scan_inspect(client: &Client, a: ScanInspectArgs) -> Result<i32> {
    let signed: SignedScanRecord = client.scan_record(&a.id).await?;
    println!("{}", serde_json::to_string_pretty(&record_document(&signed)?)?);
    Ok(0)
}

async fn scan_verify(client: &Client, a: ScanVerifyArgs) -> Result<i32> {
    let ca = std::fs::read_to_string(&a.ca).with_context(|| format!("reading --ca {}", a.ca.display()))?;
    let signed: SignedScanRecord = match (&a.id, &a.file) {
        (_, Some(file)) => {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{} is not a scan record", file.display()))?
        }
        (Some(id), None) => client.scan_record(id).await?,
        (None, None) => bail!("verify needs a record id or --file"),
    };
    let mut ca_error = None;
    let checked = berth_engine::scan::check_record(&signed, |message, signature| {
        match berth_cluster::pki::verify_with_ca(&ca, message, signature) {
            Ok(ok) => ok,
            Err(e) => {
                ca_error = Some(e.to_string());
                false
            }
        }
    });
    if let Some(e) = ca_error {
        bail!("--ca {}: {e}", a.ca.display());
    }
    match checked {
        Ok(record) => {
            println!(
                "Verified: scan record {} of {} ({}) created {}, signed by {}",
                record.id, record.image, record.image_digest, record.created, signed.key_id
            );
            Ok(0)
        }
        Err(e) => Err(ExitError(1, format!("verification failed: {e}")).into()),
    }
}

// ---------------------------------------------------------------------------
// berth vulndb

#[derive(clap::Args)]
pub struct VulndbArgs {
    #[command(subcommand)]
    command: VulndbCommand,
}

#[derive(clap::Subcommand)]
enum VulndbCommand {
    /// Import OSV data: a directory of OSV JSON records, an all.zip export,
    /// or a directory of <Ecosystem>/all.zip exports
    Import(VulndbImportArgs),
    /// Download OSV's per-ecosystem exports ({source}/{ecosystem}/all.zip)
    /// and import them; a failed download leaves the database as it was
    Update(VulndbUpdateArgs),
    /// Records per ecosystem, database version, import time
    Status(VulndbStatusArgs),
}

#[derive(clap::Args)]
struct VulndbUpdateArgs {
    /// An OSV ecosystem to fetch, as osv.dev spells it: Debian, Alpine,
    /// PyPI, npm, crates.io, "Red Hat"... (repeatable) [default: the
    /// daemon's --vulndb-ecosystem list, else every ecosystem berth matches]
    #[arg(long = "ecosystem", value_name = "ECOSYSTEM")]
    ecosystems: Vec<String>,
    /// Base URL of the exports, e.g. a mirror [default: the daemon's --vulndb-source]
    #[arg(long, value_name = "URL")]
    source: Option<String>,
    /// Output format: table or json
    #[arg(long, default_value = "table")]
    format: String,
    /// No progress display
    #[arg(short, long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct VulndbImportArgs {
    path: PathBuf,
    /// Output format: table or json
    #[arg(long, default_value = "table")]
    format: String,
}

#[derive(clap::Args)]
struct VulndbStatusArgs {
    /// Output format: table or json
    #[arg(long, default_value = "table")]
    format: String,
}

pub async fn vulndb(client: &Client, host: &str, a: VulndbArgs) -> Result<i32> {
    match a.command {
        VulndbCommand::Import(i) => vulndb_import(client, host, i).await,
        VulndbCommand::Update(u) => vulndb_update(client, u).await,
        VulndbCommand::Status(s) => {
            let status: VulnDbStatus = client.vulndb_status().await?;
            match s.format.as_str() {
                "json" => println!("{}", serde_json::to_string_pretty(&status)?),
                "table" => print_status(&status),
                other => bail!("unknown --format {other:?} (use table or json)"),
            }
            Ok(0)
        }
    }
}

fn print_status(status: &VulnDbStatus) {
    match &status.version {
        None => println!("No vulnerability data imported (berth vulndb update, or berth vulndb import PATH)"),
        Some(version) => {
            println!("Version:     {version}");
            println!("Imported at: {}", status.imported_at.as_deref().unwrap_or("-"));
            println!("Advisories:  {}", status.advisories);
            println!("Packages:    {}", status.packages);
            let mut rows = vec![vec!["ECOSYSTEM".to_string(), "RECORDS".to_string()]];
            for (ecosystem, count) in &status.ecosystems {
                rows.push(vec![ecosystem.clone(), count.to_string()]);
            }
            super::table(&rows);
        }
    }
}

/// On the unix socket the daemon reads `PATH` itself (same host); over TCP
/// a file is uploaded (a directory cannot be: give its all.zip).
async fn vulndb_import(client: &Client, host: &str, a: VulndbImportArgs) -> Result<i32> {
    let path = std::path::absolute(&a.path).with_context(|| format!("resolving {}", a.path.display()))?;
    let meta = std::fs::metadata(&path).with_context(|| format!("{}", path.display()))?;
    let local = host.starts_with("unix://") || host.starts_with('/');
    let done = if local {
        client.vulndb_import_path(&path.to_string_lossy()).await?
    } else {
        if meta.is_dir() {
            bail!(
                "{}: over TCP only a file can be uploaded (an OSV all.zip or a .json record); a directory is read by the daemon only over its unix socket",
                path.display()
            );
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = tokio::fs::File::open(&path)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        client.vulndb_import(&name, file_body(file)).await?
    };
    print_import(&done, &a.format)
}

/// `berth vulndb update`: the daemon downloads and imports; its progress
/// lines drive a spinner.
async fn vulndb_update(client: &Client, a: VulndbUpdateArgs) -> Result<i32> {
    if !matches!(a.format.as_str(), "table" | "json") {
        bail!("unknown --format {:?} (use table or json)", a.format);
    }
    let spec = VulnDbUpdateSpec {
        ecosystems: a.ecosystems.clone(),
        source: a.source.clone(),
    };
    let bar = indicatif::ProgressBar::new_spinner();
    if a.quiet || !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar.enable_steady_tick(Duration::from_millis(120));
    }
    let updated = client
        .vulndb_update(&spec, |step| {
            let what = step.id.as_deref().unwrap_or_default();
            let size = match (step.current, step.total) {
                (Some(c), Some(t)) => format!(" {}/{}", megabytes(c as u64), megabytes(t as u64)),
                (Some(c), None) => format!(" {}", megabytes(c as u64)),
                _ => String::new(),
            };
            bar.set_message(format!("{} {what}{size}", step.status));
        })
        .await;
    bar.finish_and_clear();
    let done = match updated {
        Err(e) => match e.downcast::<ExitError>() {
            Ok(ExitError(code, message)) => {
                return Err(ExitError(code, format!("{message} (the vulnerability database is unchanged)")).into())
            }
            Err(e) => return Err(e),
        },
        Ok(done) => done,
    };
    print_import(&done, &a.format)
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// What an import or update did, as a table or JSON.
fn print_import(done: &VulnDbImport, format: &str) -> Result<i32> {
    if format == "json" {
        println!("{}", serde_json::to_string_pretty(done)?);
        return Ok(0);
    }
    for d in &done.downloaded {
        println!(
            "Downloaded {} ({}, {} records) from {}",
            d.ecosystem,
            megabytes(d.bytes),
            d.records,
            d.url
        );
    }
    println!(
        "Imported {} records ({} new or changed, {} skipped)",
        done.records, done.changed, done.skipped
    );
    for e in &done.errors {
        eprintln!("skipped: {e}");
    }
    print_status(&done.status);
    for image in &done.newly_vulnerable {
        println!(
            "Newly vulnerable: {} ({} new findings, record {})",
            image.image,
            image.new_findings.len(),
            image.record
        );
    }
    Ok(0)
}

// ---------------------------------------------------------------------------
// berth plugin

#[derive(clap::Args)]
pub struct PluginArgs {
    #[command(subcommand)]
    command: PluginCommand,
}

#[derive(clap::Subcommand)]
enum PluginCommand {
    /// Install a plugin: a directory with plugin.json and plugin.wasm, one of
    /// those files, or a registry reference to a plugin artifact
    Install(PluginInstallArgs),
    /// List installed plugins (BUILT-IN: one of the checks shipped in this
    /// berth, installed on first start; disable or remove it like any other)
    Ls(PluginLsArgs),
    /// Show a plugin
    Inspect(PluginNameArgs),
    /// Enable a plugin (disables its other versions)
    Enable(PluginNameArgs),
    /// Disable a plugin
    Disable(PluginNameArgs),
    /// Remove a plugin
    Rm(PluginNameArgs),
    /// Push an installed plugin to a registry as an OCI artifact
    Push(PluginPushArgs),
}

#[derive(clap::Args)]
struct PluginInstallArgs {
    source: String,
}

#[derive(clap::Args)]
struct PluginLsArgs {
    /// Output format: table or json
    #[arg(long, default_value = "table")]
    format: String,
}

#[derive(clap::Args)]
struct PluginNameArgs {
    name: String,
    /// Which version, when several are installed
    #[arg(long)]
    version: Option<String>,
}

#[derive(clap::Args)]
struct PluginPushArgs {
    name: String,
    /// Where to: registry/repository[:tag]
    reference: String,
    #[arg(long)]
    version: Option<String>,
}

pub async fn plugin(client: &Client, a: PluginArgs) -> Result<i32> {
    match a.command {
        PluginCommand::Install(i) => plugin_install(client, i).await,
        PluginCommand::Ls(l) => {
            let plugins = client.plugins().await?;
            match l.format.as_str() {
                "json" => println!("{}", serde_json::to_string_pretty(&plugins)?),
                "table" => {
                    let mut rows = vec![vec![
                        "NAME".to_string(),
                        "VERSION".to_string(),
                        "WORLD".to_string(),
                        "ENABLED".to_string(),
                        "BUILT-IN".to_string(),
                        "DIGEST".to_string(),
                        "DESCRIPTION".to_string(),
                    ]];
                    for p in &plugins {
                        rows.push(vec![
                            p.name.clone(),
                            p.version.clone(),
                            format!("{}@{}", p.world, p.world_version),
                            p.enabled.to_string(),
                            p.builtin.to_string(),
                            short(&p.digest).to_string(),
                            p.description.clone(),
                        ]);
                    }
                    super::table(&rows);
                }
                other => bail!("unknown --format {other:?} (use table or json)"),
            }
            Ok(0)
        }
        PluginCommand::Inspect(n) => {
            let info = client.plugin(&n.name, n.version.as_deref()).await?;
            println!("{}", serde_json::to_string_pretty(&info)?);
            Ok(0)
        }
        PluginCommand::Enable(n) => plugin_change(client, &n, PluginAction::Enable, "Enabled").await,
        PluginCommand::Disable(n) => plugin_change(client, &n, PluginAction::Disable, "Disabled").await,
        PluginCommand::Rm(n) => plugin_change(client, &n, PluginAction::Remove, "Removed").await,
        PluginCommand::Push(p) => {
            let pushed = client.push_plugin(&p.name, p.version.as_deref(), &p.reference).await?;
            println!("{}: digest: {}", p.reference, pushed.digest);
            Ok(0)
        }
    }
}

async fn plugin_change(client: &Client, n: &PluginNameArgs, action: PluginAction, done: &str) -> Result<i32> {
    let info = client.plugin_action(&n.name, n.version.as_deref(), action).await?;
    println!("{done} {} {}", info.name, info.version);
    Ok(0)
}

/// `plugin.json` and `plugin.wasm` of a directory, or of the directory
/// holding one of them.
fn read_plugin_files(source: &Path) -> Result<(Value, Vec<u8>)> {
    let dir = if source.is_dir() {
        source.to_path_buf()
    } else {
        source
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    };
    let manifest_path = if source.is_file() && source.extension().is_some_and(|e| e == "json") {
        source.to_path_buf()
    } else {
        dir.join("plugin.json")
    };
    let wasm_path = if source.is_file() && source.extension().is_some_and(|e| e == "wasm") {
        source.to_path_buf()
    } else {
        dir.join("plugin.wasm")
    };
    let manifest = std::fs::read(&manifest_path).with_context(|| format!("reading {}", manifest_path.display()))?;
    let manifest: Value =
        serde_json::from_slice(&manifest).with_context(|| format!("{} is not JSON", manifest_path.display()))?;
    let wasm = std::fs::read(&wasm_path).with_context(|| format!("reading {}", wasm_path.display()))?;
    Ok((manifest, wasm))
}

async fn plugin_install(client: &Client, a: PluginInstallArgs) -> Result<i32> {
    let trust = crate::cli::trust::content_trust_enabled();
    let local = Path::new(&a.source);
    let info: PluginView = if local.exists() {
        if trust {
            bail!(
                "content trust is on (BERTH_CONTENT_TRUST=1): {} is a local file with no signature; install a signed plugin from a registry reference instead",
                a.source
            );
        }
        let (manifest, wasm) = read_plugin_files(local)?;
        client
            .install_plugin(&PluginInstall {
                manifest,
                wasm: base64::engine::general_purpose::STANDARD.encode(&wasm),
            })
            .await?
    } else if trust {
        // Only the digest the signed trust data names is installed.
        let (by_digest, _) = crate::cli::trust::trusted_reference(client, &a.source).await?;
        let digest = by_digest
            .rsplit_once('@')
            .map(|(_, d)| d.to_string())
            .unwrap_or_default();
        client.pull_plugin(&by_digest, Some(&digest)).await?
    } else {
        if berth_model::Reference::parse(&a.source).is_err() {
            bail!("{}: no such file or directory, and not a registry reference", a.source);
        }
        client.pull_plugin(&a.source, None).await?
    };
    println!(
        "Installed {} {} ({}{})",
        info.name,
        info.version,
        short(&info.digest),
        if info.enabled { ", enabled" } else { "" }
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("ten").unwrap_err().contains("invalid duration"));
        assert_eq!(parse_duration("3d"), Ok(Duration::from_secs(3 * 86400)));
        assert!(parse_duration("3w").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("99999999999999999d").unwrap_err().contains("too long"));
    }

    #[test]
    fn failures_name_each_reason() {
        let mut report = ScanReport::new(
            report::ImageRef {
                reference: "x".into(),
                digest: "sha256:00".into(),
            },
            chrono::DateTime::UNIX_EPOCH,
        );
        assert!(failures(&report, Some(Severity::Low)).is_empty());
        report.check_findings.push(berth_scanner::CheckFinding {
            check: "secrets".into(),
            rule: "aws-access-key".into(),
            severity: Severity::High,
            message: "m".into(),
            path: None,
        });
        assert!(failures(&report, Some(Severity::Critical)).is_empty());
        assert_eq!(failures(&report, Some(Severity::High)).len(), 1);
        report.functional_test = Some(berth_scanner::FunctionalTest::new(
            vec!["false".into()],
            false,
            Some(1),
            "",
            1,
        ));
        let reasons = failures(&report, None);
        assert_eq!(reasons, vec!["the functional test failed with exit code 1".to_string()]);
    }
}
