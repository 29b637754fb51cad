//! `berth user|team|org|role|grant|token|directory ...`: identities, roles,
//! grants, personal access tokens and LDAP/AD directories. Passwords come
//! from stdin or a file (or are generated and printed once); token secrets
//! are printed once, when created; a directory's bind password is never
//! printed.

use anyhow::{bail, Context, Result};

use berth_client::Client;
use berth_model::access::DirectoryGroup;
use berth_model::access::{DirectoryTest, NewGrant, NewRole, NewTeam, NewToken, NewUser};
use berth_model::directory::{Directory, SyncReport};
use berth_model::directory::{DirectoryConfig, TeamSync};

use crate::cli::table;

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

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Names joined with `,`.
fn strings<'a>(names: impl IntoIterator<Item = &'a String>) -> String {
    names.into_iter().map(String::as_str).collect::<Vec<_>>().join(",")
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
                .create_user(&NewUser {
                    name: name.clone(),
                    password: pw.clone(),
                })
                .await?;
            if generated {
                println!("{name}\t{pw}");
            } else {
                println!("{name}");
            }
        }
        UserCommand::Ls(f) => {
            let users = client.users().await?;
            if f.json() {
                return print_json(&users).map(|_| 0);
            }
            let mut rows = vec![vec!["NAME".into(), "TEAMS".into(), "CREATED".into()]];
            for u in users {
                rows.push(vec![
                    u.user.name,
                    strings(&u.user.teams),
                    crate::cli::ago(&u.user.created),
                ]);
            }
            table(&rows);
        }
        UserCommand::Rm { names } => {
            for n in names {
                client.remove_user(&n).await?;
                println!("{n}");
            }
        }
        UserCommand::Passwd { name, password_stdin } => {
            let (pw, generated) = password(password_stdin)?;
            client.set_password(&name, &pw).await?;
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
                .create_team(&NewTeam {
                    name: name.clone(),
                    directory: sync.directory,
                    group: sync.group,
                })
                .await?;
            println!("{name}");
            return Ok(0);
        }
        TeamCommand::Update {
            name,
            sync,
            no_directory,
        } => {
            match (sync.directory, sync.group) {
                (Some(directory), Some(group)) => {
                    client
                        .set_team_directory(&name, Some(&DirectoryGroup { directory, group }))
                        .await?;
                }
                _ if no_directory => {
                    client.set_team_directory(&name, None).await?;
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
    group(client, common, Kind::Team).await
}

pub async fn org(client: &Client, a: OrgArgs) -> Result<i32> {
    group(client, a.command, Kind::Org).await
}

/// What `group` manages: teams of users, or organizations of teams.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Team,
    Org,
}

async fn group(client: &Client, c: GroupCommand, kind: Kind) -> Result<i32> {
    match c {
        GroupCommand::Create { name } => {
            match kind {
                Kind::Team => {
                    client
                        .create_team(&NewTeam {
                            name: name.clone(),
                            directory: None,
                            group: None,
                        })
                        .await
                        .map(drop)?;
                }
                Kind::Org => client.create_org(&name).await.map(drop)?,
            }
            println!("{name}");
        }
        GroupCommand::Ls(f) => {
            let mut rows = match kind {
                Kind::Team => vec![vec![
                    "NAME".into(),
                    "MEMBERS".into(),
                    "CREATED".into(),
                    "SYNCED FROM".into(),
                ]],
                Kind::Org => vec![vec!["NAME".into(), "TEAMS".into(), "CREATED".into()]],
            };
            match kind {
                Kind::Team => {
                    let list = client.teams().await?;
                    if f.json() {
                        return print_json(&list).map(|_| 0);
                    }
                    for t in list {
                        rows.push(vec![
                            t.team.name,
                            strings(&t.team.members),
                            crate::cli::ago(&t.team.created),
                            t.directory_group
                                .map(|g| format!("{}: {}", g.directory, g.group))
                                .unwrap_or_default(),
                        ]);
                    }
                }
                Kind::Org => {
                    let list = client.orgs().await?;
                    if f.json() {
                        return print_json(&list).map(|_| 0);
                    }
                    for o in list {
                        rows.push(vec![o.name, strings(&o.teams), crate::cli::ago(&o.created)]);
                    }
                }
            }
            table(&rows);
        }
        GroupCommand::Rm { names } => {
            for n in names {
                match kind {
                    Kind::Team => client.remove_team(&n).await?,
                    Kind::Org => client.remove_org(&n).await?,
                }
                println!("{n}");
            }
        }
        GroupCommand::Add { name, members } => {
            for m in members {
                match kind {
                    Kind::Team => client.add_team_member(&name, &m).await.map(drop)?,
                    Kind::Org => client.add_org_team(&name, &m).await.map(drop)?,
                }
            }
        }
        GroupCommand::Remove { name, members } => {
            for m in members {
                match kind {
                    Kind::Team => client.remove_team_member(&name, &m).await.map(drop)?,
                    Kind::Org => client.remove_org_team(&name, &m).await.map(drop)?,
                }
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
                .create_role(&NewRole {
                    name: name.clone(),
                    permissions,
                })
                .await?;
            println!("{name}");
        }
        RoleCommand::Ls(f) => {
            let list = client.roles().await?;
            if f.json() {
                return print_json(&list).map(|_| 0);
            }
            let mut rows = vec![vec!["NAME".into(), "BUILT-IN".into(), "PERMISSIONS".into()]];
            for r in list {
                let perms: Vec<String> = r.permissions.iter().map(ToString::to_string).collect();
                rows.push(vec![r.name, r.builtin.to_string(), perms.join(" ")]);
            }
            table(&rows);
        }
        RoleCommand::Rm { names } => {
            for n in names {
                client.remove_role(&n).await?;
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
            let g = client
                .create_grant(&NewGrant {
                    subject,
                    role,
                    collection,
                })
                .await?;
            println!("{}", g.id);
        }
        GrantCommand::Ls(f) => {
            let list = client.grants().await?;
            if f.json() {
                return print_json(&list).map(|_| 0);
            }
            let mut rows = vec![vec!["ID".into(), "SUBJECT".into(), "ROLE".into(), "COLLECTION".into()]];
            for g in list {
                rows.push(vec![g.id, g.subject, g.role, g.collection]);
            }
            table(&rows);
        }
        GrantCommand::Rm { ids } => {
            for id in ids {
                client.remove_grant(&id).await?;
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
            let t = client
                .create_token(&NewToken {
                    expires_in,
                    scopes,
                    user,
                    description,
                })
                .await?;
            if format.as_deref() == Some("json") {
                print_json(&t)?;
            } else {
                println!("{}", t.token);
            }
        }
        TokenCommand::Ls(f) => {
            let list = client.tokens().await?;
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
            for t in list {
                rows.push(vec![
                    t.id,
                    t.user,
                    strings(&t.scopes),
                    crate::cli::ago(&t.created),
                    t.expires.unwrap_or_else(|| "never".into()),
                    t.description,
                ]);
            }
            table(&rows);
        }
        TokenCommand::Rm { ids } => {
            for id in ids {
                client.remove_token(&id).await?;
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

fn directory_body(d: &DirectoryAdd) -> Result<Directory> {
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
        TeamSyncKind::MemberAttr => TeamSync::MemberAttr {
            group_base_dn: d.group_base_dn.clone().unwrap_or_else(|| d.base_dn.clone()),
            group_filter: d.group_filter.clone(),
            member_attr: d.member_attr.clone(),
        },
        TeamSyncKind::MemberOf => TeamSync::UserMemberOf {
            attr: d.member_of_attr.clone(),
        },
        TeamSyncKind::Search => TeamSync::Search,
    };
    let interval_minutes = match d.sync_interval {
        Some(i) if i.is_zero() || i.as_secs() % 60 != 0 => {
            bail!("--sync-interval: whole minutes, at least 1 (0 and seconds are for the daemon's --directory-sync-interval)")
        }
        Some(i) => Some(i.as_secs() / 60),
        None => None,
    };
    Ok(Directory {
        config: DirectoryConfig {
            name: d.name.clone(),
            url: d.url.clone(),
            start_tls: d.starttls,
            ca_pem,
            bind_dn: d.bind_dn.clone().unwrap_or_default(),
            bind_password,
            user_base_dn: d.base_dn.clone(),
            user_filter: d.user_filter.clone(),
            username_attr,
            email_attr: d.email_attr.clone(),
            full_name_attr: d.full_name_attr.clone(),
            team_sync,
            domains: d.domains.clone(),
        },
        sync_interval_minutes: interval_minutes,
        created: String::new(),
    })
}

fn team_sync_text(t: &TeamSync) -> String {
    match t {
        TeamSync::MemberAttr {
            member_attr,
            group_base_dn,
            ..
        } => format!("{member_attr} of {group_base_dn}"),
        TeamSync::UserMemberOf { attr } => attr.clone(),
        TeamSync::Search => "search filters".into(),
    }
}

/// Prints what a sync did; true when every mapped group was read.
fn print_sync_reports(reports: &[SyncReport]) -> bool {
    let mut ok = true;
    for report in reports {
        let directory = &report.directory;
        let created = report.created_users.join(", ");
        if !created.is_empty() {
            println!("{directory}: created users {created}");
        }
        for cut in &report.disabled_users {
            println!(
                "{directory}: disabled user {} ({}): {} token(s), {} session(s) and {} client bundle(s) revoked",
                cut.user, cut.reason, cut.tokens, cut.sessions, cut.bundles
            );
        }
        let restored = report.restored_users.join(", ");
        if !restored.is_empty() {
            println!("{directory}: restored users {restored}");
        }
        if let Some(error) = &report.account_check_error {
            ok = false;
            println!("{directory}: users not checked (nobody was disabled): {error}");
        }
        if report.teams.is_empty() {
            println!("{directory}: no team is synced from this directory");
        }
        for team in &report.teams {
            let name = &team.team;
            if let Some(error) = &team.error {
                ok = false;
                println!("{directory}/{name}: not synced: {error}");
                continue;
            }
            let added = team.added.join(", ");
            let removed = team.removed.join(", ");
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
            for skipped in &team.skipped {
                println!("{directory}/{name}: skipped {} ({})", skipped.username, skipped.reason);
            }
        }
    }
    ok
}

pub async fn directory(client: &Client, a: DirectoryArgs) -> Result<i32> {
    match a.command {
        DirectoryCommand::Add(d) => {
            client.put_directory(&directory_body(&d)?).await?;
            println!("{}", d.name);
        }
        DirectoryCommand::Ls(f) => {
            let list = client.directories().await?;
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
            for d in list {
                let last = match &d.last_sync {
                    Some(last) if last.ok => crate::cli::ago(&last.time),
                    Some(last) => format!("{} (with errors)", crate::cli::ago(&last.time)),
                    None => "never".into(),
                };
                let domains = strings(&d.config.domains);
                rows.push(vec![
                    d.config.name.clone(),
                    d.config.url.clone(),
                    if domains.is_empty() {
                        "(default)".into()
                    } else {
                        domains
                    },
                    team_sync_text(&d.config.team_sync),
                    last,
                ]);
            }
            table(&rows);
        }
        DirectoryCommand::Rm { names } => {
            for n in names {
                client.remove_directory(&n).await?;
                println!("{n}");
            }
        }
        DirectoryCommand::Sync { name, format } => {
            let reports = client.sync_directories(name.as_deref()).await?;
            if format.as_deref() == Some("json") {
                print_json(&reports)?;
                let failed = reports.iter().flat_map(|r| &r.teams).any(|t| t.error.is_some());
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
            let found = client.test_directory(&name, &DirectoryTest { user, password }).await?;
            println!("user:      {}", found.user.username);
            println!("dn:        {}", found.user.dn);
            if let Some(email) = &found.user.email {
                println!("email:     {email}");
            }
            println!("groups:    {}", found.user.groups.join("; "));
            if found.authenticated {
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
