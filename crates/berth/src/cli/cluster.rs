//! `berth cluster info|join-token` and `berth node ls|inspect|update|rm`.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use berth_client::Client;
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

fn parse_label(s: &str) -> Result<(String, String), String> {
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
