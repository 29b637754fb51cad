//! `berth cluster info|ca|join-token|backup|restore|recover` and `berth node
//! ls|inspect|update|promote|demote|rm`.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use berth_client::Client;
use berth_model::assignment::AssignmentSpec;
use berth_model::node::{Availability, Node, NodeRole, NodeUpdate};

#[derive(clap::Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(clap::Subcommand)]
enum ClusterCommand {
    /// The cluster: CA, this node, the managers
    Info(FormatArgs),
    /// Print the command that joins a host to the cluster as a worker or a
    /// manager
    JoinToken(JoinTokenArgs),
    /// Show the cluster CA; with --rotate, replace it with no downtime: a
    /// new root, cross-signed by the current one, that every node renews
    /// under before the old root retires (join tokens change with it)
    Ca(CaArgs),
    /// Write cluster state and the managers' secrets to a file, encrypted
    /// with a passphrase ($BERTH_BACKUP_PASSPHRASE, --passphrase-stdin, or
    /// a prompt)
    Backup(BackupArgs),
    /// Make a new data root from a backup (run on the host, without a
    /// daemon): `berth daemon --data-root DIR` then starts a one-manager
    /// cluster with the backup's CA, users, grants, trust data and
    /// collections; nodes join it again
    Restore(RestoreArgs),
    /// Recover a manager whose cluster lost the majority of its managers
    /// for good (run on the host, daemon stopped): with
    /// --force-new-cluster, its next start is the only manager of a new
    /// Raft log on its copy of cluster state; the other managers join
    /// again with fresh data roots, workers carry on
    Recover(RecoverArgs),
}

#[derive(clap::Args)]
struct RecoverArgs {
    /// Required: say that the old cluster's other managers are gone
    #[arg(long = "force-new-cluster")]
    force_new_cluster: bool,
    /// The manager's data root
    #[arg(long = "data-root", default_value = "/var/lib/berth")]
    data_root: std::path::PathBuf,
}

#[derive(clap::Args)]
struct BackupArgs {
    /// The file to write (must not exist)
    #[arg(short, long)]
    output: std::path::PathBuf,
    /// Read the passphrase from stdin
    #[arg(long)]
    passphrase_stdin: bool,
}

#[derive(clap::Args)]
struct RestoreArgs {
    /// The backup file
    file: std::path::PathBuf,
    /// The new data root (must not exist, or be empty)
    #[arg(long = "data-root")]
    data_root: std::path::PathBuf,
    /// Read the passphrase from stdin
    #[arg(long)]
    passphrase_stdin: bool,
}

/// The backup passphrase: $BERTH_BACKUP_PASSPHRASE, stdin, or a prompt
/// (twice when writing).
fn backup_passphrase(from_stdin: bool, writing: bool) -> Result<String> {
    if let Ok(p) = std::env::var("BERTH_BACKUP_PASSPHRASE") {
        return Ok(p);
    }
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    if !crate::cli::trust::terminal::on_terminal() {
        bail!(
            "the backup needs a passphrase: set BERTH_BACKUP_PASSPHRASE, pass --passphrase-stdin, or run on a terminal"
        );
    }
    let ask =
        |prompt: &str| crate::cli::trust::terminal::prompt_secret(prompt).map_err(|e| anyhow::anyhow!(e.to_string()));
    let first = ask("Passphrase for the cluster backup: ")?;
    if writing && ask("Repeat the passphrase: ")? != first {
        bail!("the passphrases do not match");
    }
    Ok(first)
}

#[derive(clap::Args)]
struct FormatArgs {
    /// `json` for machine-readable output
    #[arg(long)]
    format: Option<String>,
}

impl FormatArgs {
    fn json(&self) -> bool {
        self.format.as_deref() == Some("json")
    }
}

#[derive(clap::Args)]
struct CaArgs {
    /// Start a rotation, and follow it until every node renewed
    #[arg(long)]
    rotate: bool,
    /// With --rotate: return once the rotation started
    #[arg(short, long, requires = "rotate")]
    detach: bool,
    /// `json` for machine-readable output
    #[arg(long)]
    format: Option<String>,
}

#[derive(clap::Args)]
struct JoinTokenArgs {
    /// worker or manager
    #[arg(value_parser = parse_role)]
    role: NodeRole,
    /// Replace the token first: the old one stops working
    #[arg(long)]
    rotate: bool,
    /// Print the token alone
    #[arg(short, long)]
    quiet: bool,
}

/// The first 12 digits of a node id, as `node ls` shows them.
fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

fn parse_role(s: &str) -> Result<NodeRole, String> {
    s.parse()
}

pub async fn cluster(client: &Client, a: ClusterArgs) -> Result<i32> {
    match a.command {
        ClusterCommand::Info(f) => {
            let info = client.cluster_info().await?;
            if f.json() {
                println!("{}", serde_json::to_string_pretty(&info)?);
                return Ok(0);
            }
            println!("CA:        sha256:{} (expires {})", info.ca_digest, info.ca_expires);
            println!("Node:      {} ({})", info.node_id, info.role);
            println!("Cert:      expires {}", info.certificate_expires);
            println!("Managers:  {}", info.managers.join(", "));
            if info.role == NodeRole::Manager {
                println!("Nodes:     {}", info.nodes);
            }
            if let Some(r) = &info.raft {
                let leader = match (&r.leader, &r.leader_addr) {
                    (Some(id), Some(addr)) => format!("{} at {addr}", short_id(id)),
                    _ => "none (an election is under way, or no majority)".into(),
                };
                println!(
                    "Raft:      {} in term {}, log {} (applied {})",
                    r.state, r.term, r.last_log_index, r.applied_index
                );
                println!("Leader:    {leader}");
                println!(
                    "Voters:    {}{}",
                    r.voters,
                    match r.learners {
                        0 => String::new(),
                        n => format!(" ({n} catching up)"),
                    }
                );
            }
            Ok(0)
        }
        ClusterCommand::Backup(b) => {
            if b.output.exists() {
                bail!("{} exists: a backup is written to a new file", b.output.display());
            }
            let passphrase = backup_passphrase(b.passphrase_stdin, true)?;
            if passphrase.chars().count() < berth_cluster::backup::MIN_PASSPHRASE {
                bail!(
                    "the backup passphrase is too short: at least {} characters",
                    berth_cluster::backup::MIN_PASSPHRASE
                );
            }
            let bytes = client.cluster_backup(&passphrase).await?;
            write_new_private(&b.output, &bytes)?;
            /// The backup file's readable header (the rest is encrypted).
            #[derive(serde::Deserialize)]
            struct Header {
                ca_digest: String,
                applied_index: u64,
            }
            let header: Header = serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("the daemon sent a backup that does not parse: {e}"))?;
            println!(
                "wrote {} ({} bytes): cluster CA sha256:{}, log index {}",
                b.output.display(),
                bytes.len(),
                header.ca_digest,
                header.applied_index
            );
            Ok(0)
        }
        ClusterCommand::Restore(r) => {
            let bytes = std::fs::read(&r.file).map_err(|e| anyhow::anyhow!("reading {}: {e}", r.file.display()))?;
            let passphrase = backup_passphrase(r.passphrase_stdin, false)?;
            let data_root = r.data_root.clone();
            let summary = tokio::task::spawn_blocking(move || -> Result<berth_cluster::backup::Summary> {
                let opened = berth_cluster::backup::open(&bytes, &passphrase)?;
                let summary = opened.summary.clone();
                berth_cluster::backup::restore(&data_root, opened)?;
                Ok(summary)
            })
            .await??;
            println!(
                "restored {} records of cluster CA sha256:{} (backed up {}) into {}",
                summary.records,
                summary.ca_digest,
                summary.created,
                r.data_root.display()
            );
            println!(
                "start it with: berth daemon --data-root {}   (a one-manager cluster; nodes join it again)",
                r.data_root.display()
            );
            Ok(0)
        }
        ClusterCommand::Recover(r) => {
            if !r.force_new_cluster {
                bail!("recover only with --force-new-cluster: it starts a new cluster of one manager on this data root's state");
            }
            let data_root = r.data_root.clone();
            let me =
                tokio::task::spawn_blocking(move || berth_cluster::recover::force_new_cluster(&data_root)).await??;
            println!(
                "{} ({}) will start as the only manager of a new Raft log: start it with berth daemon --data-root {}",
                short_id(&me.id),
                me.addr,
                r.data_root.display()
            );
            Ok(0)
        }
        ClusterCommand::Ca(c) => cluster_ca(client, c).await,
        ClusterCommand::JoinToken(j) => {
            let t = client.join_token(j.role, j.rotate).await?;
            if j.quiet {
                println!("{}", t.token);
            } else {
                if j.rotate {
                    println!("The {} join token was rotated: the old one no longer works.", t.role);
                }
                println!(
                    "To add a {} to this cluster, run on the new host:\n\n    {}\n",
                    t.role, t.command
                );
            }
            Ok(0)
        }
    }
}

/// How long `cluster ca --rotate` follows a rotation before it leaves it
/// to finish by itself.
const ROTATION_FOLLOW: std::time::Duration = std::time::Duration::from_secs(120);

async fn cluster_ca(client: &Client, c: CaArgs) -> Result<i32> {
    let json = c.format.as_deref() == Some("json");
    let mut status = client.cluster_ca(c.rotate).await?;
    if c.rotate && !c.detach {
        let started = std::time::Instant::now();
        let mut shown = usize::MAX;
        while let Some(r) = &status.rotation {
            if r.rotated != shown && !json {
                eprintln!("rotating the CA: {}/{} nodes renewed", r.rotated, r.nodes);
                shown = r.rotated;
            }
            if started.elapsed() > ROTATION_FOLLOW {
                eprintln!(
                    "the rotation waits for: {} (a node that is down holds it until it is back or removed); it finishes by itself",
                    r.pending.join(", ")
                );
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            status = client.cluster_ca(false).await?;
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(0);
    }
    let line =
        |c: &berth_model::node::CaCertificate| format!("sha256:{} {} (expires {})", c.digest, c.subject, c.expires);
    println!("Root:      {}", line(&status.root));
    match &status.rotation {
        Some(r) => {
            println!("Rotation:  to {}", line(&r.next));
            println!(
                "           started {}, {}/{} nodes renewed",
                r.started_at, r.rotated, r.nodes
            );
            if !r.pending.is_empty() {
                println!("           waiting for {}", r.pending.join(", "));
            }
        }
        None if c.rotate => {
            println!("Rotation:  complete: every node holds a certificate of the new root; join tokens changed with it")
        }
        None => {}
    }
    for retired in &status.retired {
        println!("Retired:   {}", line(retired));
    }
    Ok(0)
}

#[derive(clap::Args)]
pub struct NodeArgs {
    #[command(subcommand)]
    command: NodeCommand,
}

#[derive(clap::Subcommand)]
enum NodeCommand {
    /// List the cluster's nodes
    Ls(FormatArgs),
    /// Show nodes in detail (JSON)
    Inspect(InspectArgs),
    /// Change a node's availability and labels
    Update(UpdateArgs),
    /// Remove nodes from the cluster
    Rm(RmArgs),
    /// Make workers managers: each restarts as a manager, catches up and
    /// votes
    Promote(NodesArgs),
    /// Make managers workers: each stops voting and restarts as a worker
    /// (refused for the last manager, and when the managers left would
    /// not have a majority up)
    Demote(NodesArgs),
}

#[derive(clap::Args)]
struct NodesArgs {
    /// Node ids, id prefixes or host names
    #[arg(required = true)]
    nodes: Vec<String>,
}

#[derive(clap::Args)]
struct InspectArgs {
    /// Node ids, id prefixes or host names; `self` for this node
    #[arg(required = true)]
    nodes: Vec<String>,
}

#[derive(clap::Args)]
struct UpdateArgs {
    /// active, pause or drain
    #[arg(long, value_parser = parse_availability)]
    availability: Option<Availability>,
    /// Add or replace a label: KEY=VALUE (repeatable)
    #[arg(long = "label-add", value_parser = parse_label)]
    label_add: Vec<(String, String)>,
    /// Remove a label (repeatable)
    #[arg(long = "label-rm")]
    label_rm: Vec<String>,
    node: String,
}

#[derive(clap::Args)]
struct RmArgs {
    /// Remove a node that is not down (it is refused from then on)
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    nodes: Vec<String>,
}

fn parse_availability(s: &str) -> Result<Availability, String> {
    s.parse()
}

pub(crate) fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => match s.is_empty() || s.starts_with('=') {
            true => Err("a label is KEY=VALUE with a key".into()),
            false => Ok((s.to_string(), String::new())),
        },
    }
}

pub async fn node(client: &Client, a: NodeArgs) -> Result<i32> {
    match a.command {
        NodeCommand::Ls(f) => {
            let nodes = client.nodes().await?;
            if f.json() {
                println!("{}", serde_json::to_string_pretty(&nodes)?);
            } else {
                ls(&nodes);
            }
            Ok(0)
        }
        NodeCommand::Inspect(i) => {
            let mut shown = Vec::new();
            for key in &i.nodes {
                shown.push(resolve(client, key).await?);
            }
            println!("{}", serde_json::to_string_pretty(&shown)?);
            Ok(0)
        }
        NodeCommand::Update(u) => {
            if u.availability.is_none() && u.label_add.is_empty() && u.label_rm.is_empty() {
                bail!("nothing to change: give --availability, --label-add or --label-rm");
            }
            let update = NodeUpdate {
                availability: u.availability,
                label_add: u.label_add.into_iter().collect::<BTreeMap<_, _>>(),
                label_rm: u.label_rm,
            };
            let node = client.update_node(&u.node, &update).await?;
            println!("{}", node.id);
            Ok(0)
        }
        NodeCommand::Promote(n) => each(&n.nodes, |key| client.set_node_role(key, NodeRole::Manager)).await,
        NodeCommand::Demote(n) => each(&n.nodes, |key| client.set_node_role(key, NodeRole::Worker)).await,
        NodeCommand::Rm(r) => {
            let mut failed = 0;
            for key in &r.nodes {
                match client.remove_node(key, r.force).await {
                    Ok(n) => println!("{}", n.id),
                    Err(e) => {
                        eprintln!("berth: {key}: {e:#}");
                        failed += 1;
                    }
                }
            }
            Ok(if failed == 0 { 0 } else { 1 })
        }
    }
}

/// Calls `f` on each node key; prints each node's id, or the error.
async fn each<'a, F, Fut>(keys: &'a [String], f: F) -> Result<i32>
where
    F: Fn(&'a str) -> Fut,
    Fut: std::future::Future<Output = Result<Node>>,
{
    let mut failed = 0;
    for key in keys {
        match f(key).await {
            Ok(n) => println!("{}", n.id),
            Err(e) => {
                eprintln!("berth: {key}: {e:#}");
                failed += 1;
            }
        }
    }
    Ok(if failed == 0 { 0 } else { 1 })
}

/// `self` is the node answering; anything else the daemon resolves.
async fn resolve(client: &Client, key: &str) -> Result<Node> {
    if key == "self" {
        let id = client.cluster_info().await?.node_id;
        return client.node(&id).await;
    }
    client.node(key).await
}

fn ls(nodes: &[Node]) {
    let mut rows = vec![vec![
        "ID".to_string(),
        "HOSTNAME".into(),
        "ADDRESS".into(),
        "STATUS".into(),
        "AVAILABILITY".into(),
        "ROLE".into(),
    ]];
    for n in nodes {
        let id = format!("{}{}", berth_model::short_id(&n.id), if n.current { " *" } else { "" });
        rows.push(vec![
            id,
            n.hostname.clone(),
            n.addr.clone(),
            n.status.state.as_str().into(),
            n.availability.as_str().into(),
            n.role.as_str().into(),
        ]);
    }
    super::table(&rows);
}

/// Writes `bytes` to a new file, mode 0600 (it holds the cluster's keys,
/// encrypted): refused when the file exists.
fn write_new_private(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", path.display()))?;
    if let Err(e) = f.write_all(bytes).and_then(|()| f.sync_all()) {
        let _ = std::fs::remove_file(path);
        bail!("writing {}: {e}", path.display());
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct AssignmentArgs {
    #[command(subcommand)]
    command: AssignmentCommand,
}

#[derive(clap::Subcommand)]
enum AssignmentCommand {
    /// Run one container of IMAGE on every node that meets the constraints
    /// (and on nodes that meet them later); the nodes keep it running
    Create(AssignmentCreateArgs),
    /// List assignments and where they run
    Ls(FormatArgs),
    /// Show assignments in detail (JSON)
    Inspect(AssignmentNames),
    /// Remove assignments: the nodes remove their containers
    Rm(AssignmentNames),
}

#[derive(clap::Args)]
struct AssignmentCreateArgs {
    /// The assignment's name (unique in the cluster)
    #[arg(long)]
    name: String,
    /// A placement constraint, all of which a node must meet:
    /// node.id|node.hostname|node.role|node.labels.KEY, then == or !=, then
    /// a value (repeatable)
    #[arg(long = "constraint")]
    constraint: Vec<String>,
    /// Set an environment variable: KEY=VALUE (repeatable)
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    image: String,
    command: Vec<String>,
}

#[derive(clap::Args)]
struct AssignmentNames {
    #[arg(required = true)]
    names: Vec<String>,
}

pub async fn assignment(client: &Client, a: AssignmentArgs) -> Result<i32> {
    match a.command {
        AssignmentCommand::Create(c) => {
            let spec = AssignmentSpec {
                name: c.name,
                image: c.image,
                cmd: c.command,
                env: c.env,
                constraints: c.constraint,
            };
            // Refused here with the same words the manager would use.
            spec.check().map_err(|e| anyhow::anyhow!(e))?;
            let made = client.create_assignment(&spec).await?;
            println!("{}", made.spec.name);
            Ok(0)
        }
        AssignmentCommand::Ls(f) => {
            let all = client.assignments().await?;
            if f.json() {
                println!("{}", serde_json::to_string_pretty(&all)?);
                return Ok(0);
            }
            let mut rows = vec![["NAME", "IMAGE", "NODE", "STATE", "CONTAINER", "CONSTRAINTS"]
                .map(String::from)
                .to_vec()];
            for a in &all {
                let row = |node: &str, state: &str, container: &str| {
                    vec![
                        a.spec.name.clone(),
                        a.spec.image.clone(),
                        node.to_string(),
                        state.to_string(),
                        container.to_string(),
                        a.spec.constraints.join(","),
                    ]
                };
                if a.tasks.is_empty() {
                    rows.push(row("-", "-", "-"));
                }
                for t in &a.tasks {
                    let node = if t.hostname.is_empty() {
                        berth_model::short_id(&t.node)
                    } else {
                        &t.hostname
                    };
                    rows.push(row(node, &t.state, berth_model::short_id(&t.container)));
                }
            }
            super::table(&rows);
            Ok(0)
        }
        AssignmentCommand::Inspect(n) => {
            let mut shown = Vec::new();
            for name in &n.names {
                shown.push(client.assignment(name).await?);
            }
            println!("{}", serde_json::to_string_pretty(&shown)?);
            Ok(0)
        }
        AssignmentCommand::Rm(n) => {
            let mut failed = 0;
            for name in &n.names {
                match client.remove_assignment(name).await {
                    Ok(a) => println!("{}", a.spec.name),
                    Err(e) => {
                        eprintln!("berth: {name}: {e:#}");
                        failed += 1;
                    }
                }
            }
            Ok(if failed == 0 { 0 } else { 1 })
        }
    }
}
