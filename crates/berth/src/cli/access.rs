//! `berth user|team|org|role|grant|token ...`: identities, roles, grants
//! and personal access tokens. Passwords come from stdin (or are generated
//! and printed once); token secrets are printed once, when created.

use anyhow::{bail, Context, Result};
use hyper::Method;
use serde_json::{json, Value};

use crate::cli::table;
use crate::client::{empty, enc, json_body, Client};

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

fn s(v: &Value) -> String {
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
                    s(&u["name"]),
                    strings(&u["teams"]),
                    crate::cli::ago(&s(&u["created"])),
                ]);
            }
            table(&rows);
        }
        UserCommand::Rm { names } => {
            for n in names {
                client
                    .call(Method::DELETE, &format!("/v1/users/{}", enc(&n)), empty())
                    .await?;
                println!("{n}");
            }
        }
        UserCommand::Passwd { name, password_stdin } => {
            let (pw, generated) = password(password_stdin)?;
            client
                .call(
                    Method::POST,
                    &format!("/v1/users/{}/password", enc(&name)),
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
    command: GroupCommand,
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
    group(client, a.command, "teams", "user", "members").await
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
            for g in list.as_array().into_iter().flatten() {
                rows.push(vec![
                    s(&g["name"]),
                    strings(&g[members_path]),
                    crate::cli::ago(&s(&g["created"])),
                ]);
            }
            table(&rows);
        }
        GroupCommand::Rm { names } => {
            for n in names {
                client
                    .call(Method::DELETE, &format!("/v1/{kind}/{}", enc(&n)), empty())
                    .await?;
                println!("{n}");
            }
        }
        GroupCommand::Add { name, members } => {
            for m in members {
                client
                    .call(
                        Method::POST,
                        &format!("/v1/{kind}/{}/{members_path}", enc(&name)),
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
                        &format!("/v1/{kind}/{}/{members_path}/{}", enc(&name), enc(&m)),
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
                    .map(|p| format!("{}:{}", s(&p["resource"]), s(&p["action"])))
                    .collect();
                rows.push(vec![
                    s(&r["name"]),
                    r["builtin"].as_bool().unwrap_or(false).to_string(),
                    perms.join(" "),
                ]);
            }
            table(&rows);
        }
        RoleCommand::Rm { names } => {
            for n in names {
                client
                    .call(Method::DELETE, &format!("/v1/roles/{}", enc(&n)), empty())
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
            println!("{}", s(&g["id"]));
        }
        GrantCommand::Ls(f) => {
            let list: Value = client.get("/v1/grants").await?;
            if f.json() {
                return print_json(&list).map(|_| 0);
            }
            let mut rows = vec![vec!["ID".into(), "SUBJECT".into(), "ROLE".into(), "COLLECTION".into()]];
            for g in list.as_array().into_iter().flatten() {
                rows.push(vec![s(&g["id"]), s(&g["subject"]), s(&g["role"]), s(&g["collection"])]);
            }
            table(&rows);
        }
        GrantCommand::Rm { ids } => {
            for id in ids {
                client
                    .call(Method::DELETE, &format!("/v1/grants/{}", enc(&id)), empty())
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
                println!("{}", s(&t["token"]));
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
                    s(&t["id"]),
                    s(&t["user"]),
                    strings(&t["scopes"]),
                    crate::cli::ago(&s(&t["created"])),
                    t["expires"].as_str().unwrap_or("never").to_string(),
                    s(&t["description"]),
                ]);
            }
            table(&rows);
        }
        TokenCommand::Rm { ids } => {
            for id in ids {
                client
                    .call(Method::DELETE, &format!("/v1/tokens/{}", enc(&id)), empty())
                    .await?;
                println!("{id}");
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
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
