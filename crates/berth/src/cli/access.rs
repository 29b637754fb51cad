//! `berth user|team|org|role|grant|token|directory ...`: identities, roles,
//! grants, personal access tokens and LDAP/AD directories. Passwords come
//! from stdin or a file (or are generated and printed once); token secrets
//! are printed once, when created; a directory's bind password is never
//! printed.

use anyhow::{bail, Context, Result};
use hyper::Method;
use serde_json::{json, Value};

use crate::cli::table;
use berth_client::{empty, json_body, query_value, Client};

#[derive(clap::Args)]
pub struct FormatArg {
    /// `json` for machine-readable output
    #[arg(long)]
    format: Option<String>,
}

impl FormatArg {
    fn json(&self) -> bool {
        self.format.as_deref() == Some("json")
    }
}

fn print_json(v: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn strings(v: &Value) -> String {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

/// The strings of a JSON array joined with `sep`.
fn joined(v: &Value, sep: &str) -> String {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(sep))
        .unwrap_or_default()
}

/// A JSON string field as text; empty when absent or not a string.
fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// A password from stdin (first line), or a generated one printed once.
fn password(from_stdin: bool) -> Result<(String, bool)> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        let p = line.trim_end_matches(['\r', '\n']).to_string();
        if p.is_empty() {
            bail!("no password on stdin");
        }
        return Ok((p, false));
    }
    use std::io::Read;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut bytes = [0u8; 64];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    // Rejection sampling keeps the characters uniform.
    let limit = (256 / ALPHABET.len() * ALPHABET.len()) as u8;
    let pw: String = bytes
        .iter()
        .filter(|b| **b < limit)
        .take(20)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    if pw.len() < 20 {
        bail!("could not generate a password; use --password-stdin");
    }
    Ok((pw, true))
}

// --- users ---

#[derive(clap::Args)]
pub struct UserArgs {
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(clap::Subcommand)]
enum UserCommand {
    /// Create a local user (password from --password-stdin, or generated and printed once)
    Create {
        name: String,
        #[arg(long = "password-stdin")]
        password_stdin: bool,
    },
    /// List users
    #[command(alias = "list")]
    Ls(FormatArg),
    /// Remove users (with their tokens, grants and memberships)
    Rm { names: Vec<String> },
    /// Set a user's password (from --password-stdin, or generated and printed once)
    Passwd {
        name: String,
        #[arg(long = "password-stdin")]
        password_stdin: bool,
    },
}

pub async fn user(client: &Client, a: UserArgs) -> Result<i32> {
    match a.command {
        UserCommand::Create { name, password_stdin } => {
            let (pw, generated) = password(password_stdin)?;
            client
                .call(
                    Method::POST,
                    "/v1/users",
                    json_body(&json!({"name": name, "password": pw}))?,
                )
                .await?;
            if generated {
                println!("{name}\t{pw}");
            } else {
                println!("{name}");
            }
        }
        UserCommand::Ls(f) => {
            let users: Value = client.get("/v1/users").await?;
            if f.json() {
                return print_json(&users).map(|_| 0);
            }
            let mut rows = vec![vec!["NAME".into(), "TEAMS".into(), "CREATED".into()]];
            for u in users.as_array().into_iter().flatten() {
                rows.push(vec![
                    text(&u["name"]),
                    strings(&u["teams"]),
                    crate::cli::ago(&text(&u["created"])),
                ]);
            }
            table(&rows);
        }
        UserCommand::Rm { names } => {
            for n in names {
                client
                    .call(Method::DELETE, &format!("/v1/users/{}", query_value(&n)), empty())
                    .await?;
                println!("{n}");
            }
        }
        UserCommand::Passwd { name, password_stdin } => {
            let (pw, generated) = password(password_stdin)?;
            client
                .call(
                    Method::POST,
                    &format!("/v1/users/{}/password", query_value(&name)),
                    json_body(&json!({"password": pw}))?,
                )
                .await?;
            if generated {
                println!("{name}\t{pw}");
            }
        }
    }
    Ok(0)
}

// --- teams and organizations ---

#[derive(clap::Args)]
pub struct TeamArgs {
    #[command(subcommand)]
    command: TeamCommand,
}

#[derive(clap::Subcommand)]
enum TeamCommand {
    /// Create a team, optionally synced from a directory group
    Create {
        name: String,
        #[command(flatten)]
        sync: TeamSyncArgs,
    },
    /// Change which directory group a team is synced from
    Update {
        name: String,
        #[command(flatten)]
        sync: TeamSyncArgs,
        /// Stop syncing the team (its members stay)
        #[arg(long = "no-directory", conflicts_with_all = ["directory", "group"])]
        no_directory: bool,
    },
    /// List teams with their members
    #[command(alias = "list")]
    Ls(FormatArg),
    /// Remove teams (and their grants)
    Rm { names: Vec<String> },
    /// Add users to a team
    Add { name: String, members: Vec<String> },
    /// Remove users from a team
    Remove { name: String, members: Vec<String> },
}

#[derive(clap::Args)]
struct TeamSyncArgs {
    /// Sync the team's members from this directory (with --group)
    #[arg(long, requires = "group")]
    directory: Option<String>,
    /// The directory group: a DN, a name (its cn) or a (filter) selecting users
    #[arg(long, requires = "directory")]
    group: Option<String>,
}

#[derive(clap::Args)]
pub struct OrgArgs {
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(clap::Subcommand)]
enum GroupCommand {
    /// Create one
    Create { name: String },
    /// List them with their members
    #[command(alias = "list")]
    Ls(FormatArg),
    /// Remove some (and their grants)
    Rm { names: Vec<String> },
    /// Add members (users to a team, teams to an organization)
    Add { name: String, members: Vec<String> },
    /// Remove members
    Remove { name: String, members: Vec<String> },
}

pub async fn team(client: &Client, a: TeamArgs) -> Result<i32> {
    let common = match a.command {
        TeamCommand::Create { name, sync } => {
            client
                .call(
                    Method::POST,
                    "/v1/teams",
                    json_body(&json!({"name": name, "directory": sync.directory, "group": sync.group}))?,
                )
                .await?;
            println!("{name}");
            return Ok(0);
        }
        TeamCommand::Update {
            name,
            sync,
            no_directory,
        } => {
            let path = format!("/v1/teams/{}/directory", query_value(&name));
            match (sync.directory, sync.group) {
                (Some(directory), Some(group)) => {
                    client
                        .call(
                            Method::PUT,
                            &path,
                            json_body(&json!({"directory": directory, "group": group}))?,
                        )
                        .await?;
                }
                _ if no_directory => {
                    client.call(Method::DELETE, &path, empty()).await?;
                }
                _ => bail!("team update: give --directory and --group, or --no-directory"),
            }
            println!("{name}");
            return Ok(0);
        }
        TeamCommand::Ls(f) => GroupCommand::Ls(f),
        TeamCommand::Rm { names } => GroupCommand::Rm { names },
        TeamCommand::Add { name, members } => GroupCommand::Add { name, members },
        TeamCommand::Remove { name, members } => GroupCommand::Remove { name, members },
    };
    group(client, common, "teams", "user", "members").await
}

pub async fn org(client: &Client, a: OrgArgs) -> Result<i32> {
    group(client, a.command, "orgs", "team", "teams").await
}

async fn group(client: &Client, c: GroupCommand, kind: &str, member: &str, members_path: &str) -> Result<i32> {
    match c {
        GroupCommand::Create { name } => {
            client
                .call(Method::POST, &format!("/v1/{kind}"), json_body(&json!({"name": name}))?)
                .await?;
            println!("{name}");
        }
        GroupCommand::Ls(f) => {
            let list: Value = client.get(&format!("/v1/{kind}")).await?;
            if f.json() {
                return print_json(&list).map(|_| 0);
            }
            let mut rows = vec![vec!["NAME".into(), members_path.to_uppercase(), "CREATED".into()]];
            if kind == "teams" {
                rows[0].push("SYNCED FROM".into());
            }
            for g in list.as_array().into_iter().flatten() {
                let mut row = vec![
                    text(&g["name"]),
                    strings(&g[members_path]),
                    crate::cli::ago(&text(&g["created"])),
                ];
                if kind == "teams" {
                    let synced = &g["directory_group"];
                    row.push(if synced.is_object() {
                        format!("{}: {}", text(&synced["directory"]), text(&synced["group"]))
                    } else {
                        String::new()
                    });
                }
                rows.push(row);
            }
            table(&rows);
        }
        GroupCommand::Rm { names } => {
            for n in names {
                client
                    .call(Method::DELETE, &format!("/v1/{kind}/{}", query_value(&n)), empty())
                    .await?;
                println!("{n}");
            }
        }
        GroupCommand::Add { name, members } => {
            for m in members {
                client
                    .call(
                        Method::POST,
                        &format!("/v1/{kind}/{}/{members_path}", query_value(&name)),
                        json_body(&json!({ member: m }))?,
                    )
                    .await?;
            }
        }
        GroupCommand::Remove { name, members } => {
            for m in members {
                client
                    .call(
                        Method::DELETE,
                        &format!("/v1/{kind}/{}/{members_path}/{}", query_value(&name), query_value(&m)),
                        empty(),
                    )
                    .await?;
            }
        }
    }
    Ok(0)
}

// --- roles and grants ---

#[derive(clap::Args)]
pub struct RoleArgs {
    #[command(subcommand)]
    command: RoleCommand,
}

#[derive(clap::Subcommand)]
enum RoleCommand {
    /// Create a custom role from resource:action pairs (e.g. container:read image:write)
    Create { name: String, permissions: Vec<String> },
    /// List roles
    #[command(alias = "list")]
    Ls(FormatArg),
    /// Remove a custom role
    Rm { names: Vec<String> },
}

pub async fn role(client: &Client, a: RoleArgs) -> Result<i32> {
    match a.command {
        RoleCommand::Create { name, permissions } => {
            client
                .call(
                    Method::POST,
                    "/v1/roles",
                    json_body(&json!({"name": name, "permissions": permissions}))?,
                )
                .await?;
            println!("{name}");
        }
        RoleCommand::Ls(f) => {
            let list: Value = client.get("/v1/roles").await?;
            if f.json() {
                return print_json(&list).map(|_| 0);
            }
            let mut rows = vec![vec!["NAME".into(), "BUILT-IN".into(), "PERMISSIONS".into()]];
            for r in list.as_array().into_iter().flatten() {
                let perms: Vec<String> = r["permissions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| format!("{}:{}", text(&p["resource"]), text(&p["action"])))
                    .collect();
                rows.push(vec![
                    text(&r["name"]),
                    r["builtin"].as_bool().unwrap_or(false).to_string(),
                    perms.join(" "),
                ]);
            }
            table(&rows);
        }
        RoleCommand::Rm { names } => {
            for n in names {
                client
                    .call(Method::DELETE, &format!("/v1/roles/{}", query_value(&n)), empty())
                    .await?;
                println!("{n}");
            }
        }
    }
    Ok(0)
}

#[derive(clap::Args)]
pub struct GrantArgs {
    #[command(subcommand)]
    command: GrantCommand,
}

#[derive(clap::Subcommand)]
enum GrantCommand {
    /// Grant ROLE on a collection to SUBJECT (user:NAME, team:NAME or org:NAME)
    Create {
        subject: String,
        role: String,
        /// The collection (and its descendants)
        #[arg(long, default_value = "/")]
        collection: String,
    },
    /// List grants
    #[command(alias = "list")]
    Ls(FormatArg),
    /// Remove grants by id
    Rm { ids: Vec<String> },
}

pub async fn grant(client: &Client, a: GrantArgs) -> Result<i32> {
    match a.command {
        GrantCommand::Create {
            subject,
            role,
            collection,
        } => {
            let g: Value = client
                .json(
                    Method::POST,
                    "/v1/grants",
                    json_body(&json!({"subject": subject, "role": role, "collection": collection}))?,
                )
                .await?;
            println!("{}", text(&g["id"]));
        }
        GrantCommand::Ls(f) => {
            let list: Value = client.get("/v1/grants").await?;
            if f.json() {
                return print_json(&list).map(|_| 0);
            }
            let mut rows = vec![vec!["ID".into(), "SUBJECT".into(), "ROLE".into(), "COLLECTION".into()]];
            for g in list.as_array().into_iter().flatten() {
                rows.push(vec![
                    text(&g["id"]),
                    text(&g["subject"]),
                    text(&g["role"]),
                    text(&g["collection"]),
                ]);
            }
            table(&rows);
        }
        GrantCommand::Rm { ids } => {
            for id in ids {
                client
                    .call(Method::DELETE, &format!("/v1/grants/{}", query_value(&id)), empty())
                    .await?;
                println!("{id}");
            }
        }
    }
    Ok(0)
}

// --- tokens ---

#[derive(clap::Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(clap::Subcommand)]
enum TokenCommand {
    /// Create a personal access token; its secret is printed once
    Create {
        /// Lifetime, e.g. 90s, 30m, 24h, 7d (default: no expiry)
        #[arg(long)]
        expires: Option<String>,
        /// What it may do: *, read, RESOURCE:ACTION, RESOURCE:* (repeatable)
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// For another user (needs user administration)
        #[arg(long)]
        user: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long)]
        format: Option<String>,
    },
    /// List tokens (never their secrets)
    #[command(alias = "list")]
    Ls(FormatArg),
    /// Revoke tokens by id
    Rm { ids: Vec<String> },
}

/// `90s`, `30m`, `24h`, `7d` (a bare number is seconds).
pub fn parse_lifetime(s: &str) -> Result<u64> {
    let (n, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: u64 = n
        .parse()
        .with_context(|| format!("invalid duration {s:?}: use e.g. 90s, 30m, 24h, 7d"))?;
    let unit = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86400,
        _ => bail!("invalid duration {s:?}: use s, m, h or d"),
    };
    n.checked_mul(unit).context("duration too long")
}

pub async fn token(client: &Client, a: TokenArgs) -> Result<i32> {
    match a.command {
        TokenCommand::Create {
            expires,
            scopes,
            user,
            description,
            format,
        } => {
            let expires_in = expires.as_deref().map(parse_lifetime).transpose()?;
            let t: Value = client
                .json(
                    Method::POST,
                    "/v1/tokens",
                    json_body(&json!({
                        "expires_in": expires_in,
                        "scopes": scopes,
                        "user": user,
                        "description": description,
                    }))?,
                )
                .await?;
            if format.as_deref() == Some("json") {
                print_json(&t)?;
            } else {
                println!("{}", text(&t["token"]));
            }
        }
        TokenCommand::Ls(f) => {
            let list: Value = client.get("/v1/tokens").await?;
            if f.json() {
                return print_json(&list).map(|_| 0);
            }
            let mut rows = vec![vec![
                "ID".into(),
                "USER".into(),
                "SCOPES".into(),
                "CREATED".into(),
                "EXPIRES".into(),
                "DESCRIPTION".into(),
            ]];
            for t in list.as_array().into_iter().flatten() {
                rows.push(vec![
                    text(&t["id"]),
                    text(&t["user"]),
                    strings(&t["scopes"]),
                    crate::cli::ago(&text(&t["created"])),
                    t["expires"].as_str().unwrap_or("never").to_string(),
                    text(&t["description"]),
                ]);
            }
            table(&rows);
        }
        TokenCommand::Rm { ids } => {
            for id in ids {
                client
                    .call(Method::DELETE, &format!("/v1/tokens/{}", query_value(&id)), empty())
                    .await?;
                println!("{id}");
            }
        }
    }
    Ok(0)
}

// --- directories ---

#[derive(clap::Args)]
pub struct DirectoryArgs {
    #[command(subcommand)]
    command: DirectoryCommand,
}

#[derive(clap::Subcommand)]
enum DirectoryCommand {
    /// Add (or replace) an LDAP or Active Directory server
    Add(Box<DirectoryAdd>),
    /// List directories (bind passwords never shown)
    #[command(alias = "list")]
    Ls(FormatArg),
    /// Remove directories and their team mappings (their users stay)
    Rm { names: Vec<String> },
    /// Sync teams mapped to directory groups now (all directories, or NAME)
    Sync {
        name: Option<String>,
        #[arg(long)]
        format: Option<String>,
    },
    /// Check a directory: connection, service bind, the user's entry and
    /// groups (and the user's password with --password-stdin)
    Test {
        name: String,
        #[arg(long)]
        user: String,
        /// Also bind as the user with the password on stdin
        #[arg(long = "password-stdin")]
        password_stdin: bool,
    },
}

#[derive(clap::Args)]
struct DirectoryAdd {
    name: String,
    /// ldaps://host[:port], or ldap://host[:port] with --starttls (plain ldap:// on loopback only)
    #[arg(long)]
    url: String,
    /// The service account that searches the directory (none: anonymous search)
    #[arg(long = "bind-dn", requires = "bind_password_file")]
    bind_dn: Option<String>,
    /// A file whose first line is the service account's password
    #[arg(long = "bind-password-file")]
    bind_password_file: Option<std::path::PathBuf>,
    /// Where users are searched
    #[arg(long = "base-dn")]
    base_dn: String,
    /// The user search filter, with {username} for the login's user part
    #[arg(long = "user-filter", default_value = "(uid={username})")]
    user_filter: String,
    /// The attribute holding the berth user name [default: the one in --user-filter]
    #[arg(long = "username-attr")]
    username_attr: Option<String>,
    #[arg(long = "email-attr", default_value = "mail")]
    email_attr: String,
    #[arg(long = "full-name-attr", default_value = "cn")]
    full_name_attr: String,
    /// A login domain this server serves (user@DOMAIN, DOMAIN\user); repeatable.
    /// A directory without domains serves every other login
    #[arg(long = "domain")]
    domains: Vec<String>,
    /// Where group membership is kept: member-attr (groups list their
    /// members), member-of (users list their groups, as in AD) or search
    /// (no groups: every team's group is a (filter) over users). A (filter)
    /// works as a team's group in every mode
    #[arg(long = "team-sync", value_enum, default_value = "member-attr")]
    team_sync: TeamSyncKind,
    /// member-attr: where groups are [default: --base-dn]
    #[arg(long = "group-base-dn")]
    group_base_dn: Option<String>,
    /// member-attr: which entries are groups
    #[arg(
        long = "group-filter",
        default_value = "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=group))"
    )]
    group_filter: String,
    /// member-attr: member, uniqueMember (DNs) or memberUid (user names)
    #[arg(long = "member-attr", default_value = "member")]
    member_attr: String,
    /// member-of: the user attribute listing group DNs
    #[arg(long = "member-of-attr", default_value = "memberOf")]
    member_of_attr: String,
    /// Upgrade ldap:// with StartTLS
    #[arg(long)]
    starttls: bool,
    /// PEM CA certificates to trust for LDAPS/StartTLS [default: the system's]
    #[arg(long = "ca-file")]
    ca_file: Option<std::path::PathBuf>,
    /// How often to sync this directory's teams, e.g. 30m, 2h [default: the daemon's]
    #[arg(long = "sync-interval", value_parser = parse_sync_interval)]
    sync_interval: Option<std::time::Duration>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum TeamSyncKind {
    MemberAttr,
    MemberOf,
    Search,
}

/// A sync interval: `90s`, `30m`, `2h`, `1d`; a bare number is minutes;
/// `0` turns scheduled sync off.
pub fn parse_sync_interval(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 'm'),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("invalid interval {s:?}: use e.g. 90s, 30m, 2h (a bare number is minutes)"))?;
    let unit = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86400,
        _ => return Err(format!("invalid interval {s:?}: use s, m, h or d")),
    };
    n.checked_mul(unit)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("interval {s:?} is too long"))
}

/// The attribute `{username}` is compared with in a user filter:
/// `sAMAccountName` in `(&(objectClass=user)(sAMAccountName={username}))`.
fn filter_username_attr(filter: &str) -> Option<String> {
    let before = &filter[..filter.find("={username}")?];
    let attr = before.rsplit('(').next()?.trim();
    (!attr.is_empty()
        && attr
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b';'))
    .then(|| attr.to_string())
}

/// The first line of `path`, for a password.
fn first_line(path: &std::path::Path, what: &str) -> Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {what} from {}", path.display()))?;
    let line = text.lines().next().unwrap_or_default().to_string();
    if line.is_empty() {
        bail!("{} holds no {what}", path.display());
    }
    Ok(line)
}

fn directory_body(d: &DirectoryAdd) -> Result<Value> {
    let bind_password = match &d.bind_password_file {
        Some(path) => first_line(path, "the bind password")?,
        None => String::new(),
    };
    let ca_pem = match &d.ca_file {
        Some(path) => {
            Some(std::fs::read_to_string(path).with_context(|| format!("reading the CA file {}", path.display()))?)
        }
        None => None,
    };
    let username_attr = match &d.username_attr {
        Some(attr) => attr.clone(),
        None => filter_username_attr(&d.user_filter).with_context(|| {
            format!(
                "cannot tell the username attribute from {:?}: give --username-attr",
                d.user_filter
            )
        })?,
    };
    let team_sync = match d.team_sync {
        TeamSyncKind::MemberAttr => json!({
            "kind": "member_attr",
            "group_base_dn": d.group_base_dn.clone().unwrap_or_else(|| d.base_dn.clone()),
            "group_filter": d.group_filter,
            "member_attr": d.member_attr,
        }),
        TeamSyncKind::MemberOf => json!({"kind": "user_member_of", "attr": d.member_of_attr}),
        TeamSyncKind::Search => json!({"kind": "search"}),
    };
    let interval_minutes = match d.sync_interval {
        Some(i) if i.is_zero() || i.as_secs() % 60 != 0 => {
            bail!("--sync-interval: whole minutes, at least 1 (0 and seconds are for the daemon's --directory-sync-interval)")
        }
        Some(i) => Some(i.as_secs() / 60),
        None => None,
    };
    Ok(json!({
        "name": d.name,
        "url": d.url,
        "start_tls": d.starttls,
        "ca_pem": ca_pem,
        "bind_dn": d.bind_dn.clone().unwrap_or_default(),
        "bind_password": bind_password,
        "user_base_dn": d.base_dn,
        "user_filter": d.user_filter,
        "username_attr": username_attr,
        "email_attr": d.email_attr,
        "full_name_attr": d.full_name_attr,
        "team_sync": team_sync,
        "domains": d.domains,
        "sync_interval_minutes": interval_minutes,
    }))
}

fn team_sync_text(v: &Value) -> String {
    match v["kind"].as_str() {
        Some("member_attr") => format!("{} of {}", text(&v["member_attr"]), text(&v["group_base_dn"])),
        Some("user_member_of") => text(&v["attr"]),
        Some("search") => "search filters".into(),
        _ => String::new(),
    }
}

/// Prints what a sync did; true when every mapped group was read.
fn print_sync_reports(reports: &Value) -> bool {
    let mut ok = true;
    for report in reports.as_array().into_iter().flatten() {
        let directory = text(&report["directory"]);
        let created = joined(&report["created_users"], ", ");
        if !created.is_empty() {
            println!("{directory}: created users {created}");
        }
        for cut in report["disabled_users"].as_array().into_iter().flatten() {
            println!(
                "{directory}: disabled user {} ({}): {} token(s), {} session(s) and {} client bundle(s) revoked",
                text(&cut["user"]),
                text(&cut["reason"]),
                cut["tokens"],
                cut["sessions"],
                cut["bundles"]
            );
        }
        let restored = joined(&report["restored_users"], ", ");
        if !restored.is_empty() {
            println!("{directory}: restored users {restored}");
        }
        if let Some(error) = report["account_check_error"].as_str() {
            ok = false;
            println!("{directory}: users not checked (nobody was disabled): {error}");
        }
        let teams = report["teams"].as_array().cloned().unwrap_or_default();
        if teams.is_empty() {
            println!("{directory}: no team is synced from this directory");
        }
        for team in teams {
            let name = text(&team["team"]);
            if let Some(error) = team["error"].as_str() {
                ok = false;
                println!("{directory}/{name}: not synced: {error}");
                continue;
            }
            let added = joined(&team["added"], ", ");
            let removed = joined(&team["removed"], ", ");
            let mut parts = Vec::new();
            if !added.is_empty() {
                parts.push(format!("added {added}"));
            }
            if !removed.is_empty() {
                parts.push(format!("removed {removed}"));
            }
            if parts.is_empty() {
                parts.push("unchanged".into());
            }
            println!("{directory}/{name}: {}", parts.join("; "));
            for skipped in team["skipped"].as_array().into_iter().flatten() {
                println!(
                    "{directory}/{name}: skipped {} ({})",
                    text(&skipped["username"]),
                    text(&skipped["reason"])
                );
            }
        }
    }
    ok
}

pub async fn directory(client: &Client, a: DirectoryArgs) -> Result<i32> {
    match a.command {
        DirectoryCommand::Add(d) => {
            let body = directory_body(&d)?;
            client
                .call(
                    Method::PUT,
                    &format!("/v1/directories/{}", query_value(&d.name)),
                    json_body(&body)?,
                )
                .await?;
            println!("{}", d.name);
        }
        DirectoryCommand::Ls(f) => {
            let list: Value = client.get("/v1/directories").await?;
            if f.json() {
                return print_json(&list).map(|_| 0);
            }
            let mut rows = vec![vec![
                "NAME".into(),
                "URL".into(),
                "DOMAINS".into(),
                "GROUPS FROM".into(),
                "LAST SYNC".into(),
            ]];
            for d in list.as_array().into_iter().flatten() {
                let last = &d["last_sync"];
                let last = if last.is_object() {
                    let when = crate::cli::ago(&text(&last["time"]));
                    if last["ok"].as_bool() == Some(true) {
                        when
                    } else {
                        format!("{when} (with errors)")
                    }
                } else {
                    "never".into()
                };
                let domains = strings(&d["domains"]);
                rows.push(vec![
                    text(&d["name"]),
                    text(&d["url"]),
                    if domains.is_empty() {
                        "(default)".into()
                    } else {
                        domains
                    },
                    team_sync_text(&d["team_sync"]),
                    last,
                ]);
            }
            table(&rows);
        }
        DirectoryCommand::Rm { names } => {
            for n in names {
                client
                    .call(Method::DELETE, &format!("/v1/directories/{}", query_value(&n)), empty())
                    .await?;
                println!("{n}");
            }
        }
        DirectoryCommand::Sync { name, format } => {
            let path = match &name {
                Some(n) => format!("/v1/directories/{}/sync", query_value(n)),
                None => "/v1/directories/sync".into(),
            };
            let reports: Value = client.json(Method::POST, &path, empty()).await?;
            if format.as_deref() == Some("json") {
                print_json(&reports)?;
                let failed = reports
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|r| r["teams"].as_array().cloned().unwrap_or_default())
                    .any(|t| t["error"].is_string());
                return Ok(i32::from(failed));
            }
            if !print_sync_reports(&reports) {
                return Ok(1);
            }
        }
        DirectoryCommand::Test {
            name,
            user,
            password_stdin,
        } => {
            let password = if password_stdin { Some(password(true)?.0) } else { None };
            let found: Value = client
                .json(
                    Method::POST,
                    &format!("/v1/directories/{}/test", query_value(&name)),
                    json_body(&json!({"user": user, "password": password}))?,
                )
                .await?;
            println!("user:      {}", text(&found["username"]));
            println!("dn:        {}", text(&found["dn"]));
            if let Some(email) = found["email"].as_str() {
                println!("email:     {email}");
            }
            println!("groups:    {}", joined(&found["groups"], "; "));
            if found["authenticated"].as_bool() == Some(true) {
                println!("password:  accepted");
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sync_intervals() {
        let secs = |s: &str| super::parse_sync_interval(s).map(|d| d.as_secs());
        assert_eq!(secs("60"), Ok(3600));
        assert_eq!(secs("30m"), Ok(1800));
        assert_eq!(secs("2h"), Ok(7200));
        assert_eq!(secs("90s"), Ok(90));
        assert_eq!(secs("0"), Ok(0));
        assert!(secs("5w").is_err());
        assert!(secs("m").is_err());
        assert!(secs("-1").is_err());
    }

    #[test]
    fn username_attribute_from_the_filter() {
        let cases = [
            ("(uid={username})", Some("uid")),
            (
                "(&(objectClass=user)(sAMAccountName={username}))",
                Some("sAMAccountName"),
            ),
            ("(&(objectClass=person)( cn={username}))", Some("cn")),
            ("(|(uid={username})(mail={username}))", Some("uid")),
            ("(uid=x)", None),
        ];
        for (filter, attr) in cases {
            assert_eq!(super::filter_username_attr(filter).as_deref(), attr, "{filter}");
        }
    }

    #[test]
    fn lifetimes() {
        assert_eq!(super::parse_lifetime("90s").unwrap(), 90);
        assert_eq!(super::parse_lifetime("24h").unwrap(), 86400);
        assert_eq!(super::parse_lifetime("7d").unwrap(), 604800);
        assert_eq!(super::parse_lifetime("5").unwrap(), 5);
        assert!(super::parse_lifetime("5w").is_err());
        assert!(super::parse_lifetime("h").is_err());
    }
}
