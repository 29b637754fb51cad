//! LDAP and Active Directory: which directory serves a login, bind
//! authentication (service bind, user search, user bind), the user's groups,
//! group members for team sync, and the pure add/remove plan that sync
//! applies. The API is blocking; the daemon calls it from `spawn_blocking`.
//!
//! **Invariant:** the password given to [`authenticate`] and the configured
//! `bind_password` never appear in a log line, an error message or a `Debug`
//! string. Values from the login go into search filters only through RFC 4515
//! escaping.
//!
//! **Invariant:** a plaintext `ldap://` URL without StartTLS is accepted only
//! for a loopback host, so passwords cross the network only inside TLS.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ldap3::{LdapConn, LdapConnSettings, LdapResult, Scope, SearchEntry, SearchOptions};
use serde::{Deserialize, Serialize};

/// How long to wait for the TCP connection (and TLS handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for any one LDAP operation.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
/// The placeholder in `user_filter` replaced by the escaped username.
pub const USERNAME_PLACEHOLDER: &str = "{username}";

/// LDAP result code `invalidCredentials`.
const RC_INVALID_CREDENTIALS: u32 = 49;
/// LDAP result code `sizeLimitExceeded`.
const RC_SIZE_LIMIT_EXCEEDED: u32 = 4;
/// LDAP result code `noSuchObject`.
const RC_NO_SUCH_OBJECT: u32 = 32;

/// One directory server and how users and groups are found in it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryConfig {
    /// A name for logs and errors, e.g. `corp-ad`.
    pub name: String,
    /// `ldap://host[:port]` or `ldaps://host[:port]`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before binding.
    #[serde(default)]
    pub start_tls: bool,
    /// PEM certificates trusted for LDAPS and StartTLS; the system roots when
    /// absent.
    #[serde(default)]
    pub ca_pem: Option<String>,
    /// The service account; empty for an anonymous search.
    #[serde(default)]
    pub bind_dn: String,
    #[serde(default)]
    pub bind_password: String,
    pub user_base_dn: String,
    /// A filter containing `{username}`, e.g. `(&(objectClass=person)(uid={username}))`
    /// or `(sAMAccountName={username})`.
    pub user_filter: String,
    pub username_attr: String,
    pub email_attr: String,
    pub full_name_attr: String,
    pub team_sync: TeamSync,
    /// The login domains this server serves (`user@domain`, `DOMAIN\user`),
    /// compared without regard to case. A server with none serves logins
    /// that name no domain served by another.
    #[serde(default)]
    pub domains: Vec<String>,
}

/// Where group membership is recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TeamSync {
    /// Groups under `group_base_dn` matching `group_filter` list members in
    /// `member_attr`: `member` or `uniqueMember` hold user DNs, `memberUid`
    /// holds usernames.
    MemberAttr {
        group_base_dn: String,
        group_filter: String,
        member_attr: String,
    },
    /// The user entry lists its groups' DNs in `attr` (AD's `memberOf`).
    UserMemberOf { attr: String },
    /// Teams are synced by search only: a team's group is a `(filter)`
    /// over the users under `user_base_dn`; group DNs and names are refused.
    Search,
}

impl fmt::Debug for DirectoryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectoryConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("start_tls", &self.start_tls)
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<pem>"))
            .field("bind_dn", &self.bind_dn)
            .field("bind_password", &"<redacted>")
            .field("user_base_dn", &self.user_base_dn)
            .field("user_filter", &self.user_filter)
            .field("username_attr", &self.username_attr)
            .field("email_attr", &self.email_attr)
            .field("full_name_attr", &self.full_name_attr)
            .field("team_sync", &self.team_sync)
            .field("domains", &self.domains)
            .finish()
    }
}

/// A user the directory authenticated, with what just-in-time provisioning
/// and team sync need.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryUser {
    /// The `DirectoryConfig::name` that authenticated the user.
    pub directory: String,
    pub dn: String,
    /// The entry's `username_attr` value (the login's user part if absent).
    pub username: String,
    pub email: Option<String>,
    pub full_name: Option<String>,
    /// DNs of the user's groups, sorted.
    pub groups: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LdapError {
    #[error("no directory serves the login domain {domain:?}")]
    NoDirectory { domain: String },
    #[error("directory {directory}: invalid configuration: {reason}")]
    InvalidConfig { directory: String, reason: String },
    #[error("login {login:?}: empty username or password refused")]
    EmptyCredentials { login: String },
    #[error("directory {directory}: no user {login:?}")]
    UnknownUser { directory: String, login: String },
    #[error("directory {directory}: login {login:?} matches more than one entry")]
    AmbiguousUser { directory: String, login: String },
    #[error("directory {directory}: the account {login:?} is disabled")]
    Disabled { directory: String, login: String },
    #[error("directory {directory}: wrong password for {login:?}")]
    WrongPassword { directory: String, login: String },
    #[error("directory {directory}: {url} unreachable: {reason}")]
    Unreachable {
        directory: String,
        url: String,
        reason: String,
    },
    #[error("directory {directory}: TLS with {url} failed: {reason}")]
    Tls {
        directory: String,
        url: String,
        reason: String,
    },
    #[error("directory {directory}: service bind as {bind_dn:?} refused: {reason}")]
    ServiceBind {
        directory: String,
        bind_dn: String,
        reason: String,
    },
    #[error("directory {directory}: no entry {dn:?}")]
    NoSuchEntry { directory: String, dn: String },
    #[error("directory {directory}: {operation} failed: {reason}")]
    Operation {
        directory: String,
        operation: &'static str,
        reason: String,
    },
}

impl LdapError {
    /// The API error code: what the caller got wrong, or what is missing,
    /// or a directory that failed (internal: the server is not berth's).
    pub fn code(&self) -> berth_model::ErrorCode {
        use berth_model::ErrorCode;
        match self {
            LdapError::NoDirectory { .. } | LdapError::InvalidConfig { .. } | LdapError::EmptyCredentials { .. } => {
                ErrorCode::InvalidArgument
            }
            LdapError::UnknownUser { .. } | LdapError::NoSuchEntry { .. } => ErrorCode::NotFound,
            LdapError::AmbiguousUser { .. } => ErrorCode::Conflict,
            LdapError::WrongPassword { .. } | LdapError::Disabled { .. } => ErrorCode::Unauthorized,
            LdapError::Unreachable { .. }
            | LdapError::Tls { .. }
            | LdapError::ServiceBind { .. }
            | LdapError::Operation { .. } => ErrorCode::Internal,
        }
    }
}

/// Picks the directory for `login` and returns it with the username to
/// search for. `user@domain` and `DOMAIN\user` go to the server listing that
/// domain (the user part is searched); any other login, or a domain no server
/// lists, goes whole to the first server with no domains.
pub fn select_directory<'a>(
    cfgs: &'a [DirectoryConfig],
    login: &str,
) -> Result<(&'a DirectoryConfig, String), LdapError> {
    let split = login
        .split_once('\\')
        .or_else(|| login.rsplit_once('@').map(|(user, domain)| (domain, user)));
    if let Some((domain, user)) = split {
        let served = cfgs
            .iter()
            .find(|cfg| cfg.domains.iter().any(|served| served.eq_ignore_ascii_case(domain)));
        if let Some(cfg) = served {
            return Ok((cfg, user.to_owned()));
        }
    }
    match cfgs.iter().find(|cfg| cfg.domains.is_empty()) {
        Some(cfg) => Ok((cfg, login.to_owned())),
        None => Err(LdapError::NoDirectory {
            domain: split.map(|(domain, _)| domain).unwrap_or("").to_owned(),
        }),
    }
}

/// Authenticates `login` with `password` against the directory chosen by
/// domain: service bind, search for exactly one user entry, bind as that
/// entry, then read the user's groups as the service account.
pub fn authenticate(cfgs: &[DirectoryConfig], login: &str, password: &str) -> Result<DirectoryUser, LdapError> {
    let (cfg, username) = select_directory(cfgs, login)?;
    // An empty password makes a simple bind "unauthenticated", which many
    // servers answer with success: never send one.
    if username.is_empty() || password.is_empty() {
        return Err(LdapError::EmptyCredentials {
            login: login.to_owned(),
        });
    }
    let span = tracing::info_span!("ldap_authenticate", directory = %cfg.name, login = %login);
    let _enter = span.enter();
    find_user_and_groups(cfg, login, &username, Some(password))
}

/// Finds `username` in `cfg` as the service account, without the user's
/// password: the entry and its groups, as [`authenticate`] would return
/// them. What `berth directory test` shows.
pub fn lookup_user(cfg: &DirectoryConfig, username: &str) -> Result<DirectoryUser, LdapError> {
    if username.is_empty() {
        return Err(LdapError::EmptyCredentials {
            login: username.to_owned(),
        });
    }
    let span = tracing::info_span!("ldap_lookup_user", directory = %cfg.name, login = %username);
    let _enter = span.enter();
    find_user_and_groups(cfg, username, username, None)
}

fn find_user_and_groups(
    cfg: &DirectoryConfig,
    login: &str,
    username: &str,
    password: Option<&str>,
) -> Result<DirectoryUser, LdapError> {
    let mut conn = Connection::open(cfg)?;
    conn.service_bind()?;
    let filter = user_search_filter(&cfg.user_filter, username);
    let entry = conn.find_user(&filter, login)?.ok_or_else(|| LdapError::UnknownUser {
        directory: cfg.name.clone(),
        login: login.to_owned(),
    })?;

    if let Some(password) = password {
        conn.user_bind(&entry.dn, password, login)?;
    }
    // After the password: a disabled account is not told apart from a
    // wrong password to someone who does not know it.
    if account_disabled(&entry) {
        return Err(LdapError::Disabled {
            directory: cfg.name.clone(),
            login: login.to_owned(),
        });
    }
    if password.is_some() {
        tracing::info!(dn = %entry.dn, "directory user authenticated");
    }

    let username = username.to_owned();
    let username_value = attr_first(&entry, &cfg.username_attr).unwrap_or(username);
    let groups = match &cfg.team_sync {
        TeamSync::Search => Vec::new(),
        TeamSync::UserMemberOf { attr } => sorted_unique(attr_values(&entry, attr)),
        TeamSync::MemberAttr {
            group_base_dn,
            group_filter,
            member_attr,
        } => {
            // The user bind replaced the connection's identity.
            conn.service_bind()?;
            let value = if member_attr.eq_ignore_ascii_case("memberUid") {
                &username_value
            } else {
                &entry.dn
            };
            let filter = format!(
                "(&{}({}={}))",
                parenthesized(group_filter),
                member_attr,
                ldap3::ldap_escape(value.as_str())
            );
            conn.search_dns(group_base_dn, &filter)?
        }
    };
    conn.close();
    Ok(DirectoryUser {
        directory: cfg.name.clone(),
        email: attr_first(&entry, &cfg.email_attr),
        full_name: attr_first(&entry, &cfg.full_name_attr),
        dn: entry.dn,
        username: username_value,
        groups,
    })
}

/// Whether a provisioned directory user still counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountState {
    Active,
    /// No entry matches the user filter any more: deleted, moved out of the
    /// user base, or excluded by the filter (the usual way to leave out
    /// disabled accounts, as `(!(userAccountControl:1.2.840.113556.1.4.803:=2))`).
    Gone,
    /// Active Directory's ACCOUNTDISABLE flag (`userAccountControl` bit 2).
    Disabled,
}

/// The state of each of `usernames` in `cfg`, read over one connection as
/// the service account. Any failure of the server fails the whole check, so
/// that an unreachable directory never disables anyone.
pub fn account_states(cfg: &DirectoryConfig, usernames: &[String]) -> Result<Vec<AccountState>, LdapError> {
    let span = tracing::info_span!("ldap_account_states", directory = %cfg.name, users = usernames.len());
    let _enter = span.enter();
    let mut conn = Connection::open(cfg)?;
    conn.service_bind()?;
    let mut states = Vec::with_capacity(usernames.len());
    for username in usernames {
        let filter = user_search_filter(&cfg.user_filter, username);
        let state = match conn.find_user(&filter, username) {
            Ok(None) => AccountState::Gone,
            Ok(Some(entry)) if account_disabled(&entry) => AccountState::Disabled,
            Ok(Some(_)) => AccountState::Active,
            // Several entries match: not proof that the user left.
            Err(LdapError::AmbiguousUser { .. }) => AccountState::Active,
            Err(e) => return Err(e),
        };
        states.push(state);
    }
    conn.close();
    Ok(states)
}

/// Active Directory's ACCOUNTDISABLE flag on an entry.
fn account_disabled(entry: &SearchEntry) -> bool {
    attr_first(entry, "userAccountControl")
        .and_then(|v| v.trim().parse::<u32>().ok())
        .is_some_and(|flags| flags & 0x2 != 0)
}

/// The usernames a team synced from `group` should have, sorted. `group` is
/// either a group DN or, when it starts with `(`, a filter selecting users
/// under `user_base_dn` (team sync "by search filter").
pub fn group_members(cfg: &DirectoryConfig, group: &str) -> Result<Vec<String>, LdapError> {
    let group = group.trim();
    if group.is_empty() {
        return Err(LdapError::InvalidConfig {
            directory: cfg.name.clone(),
            reason: "empty group DN or filter".to_owned(),
        });
    }
    refuse_group_under_search(cfg, group)?;
    let span = tracing::info_span!("ldap_group_members", directory = %cfg.name, group = %group);
    let _enter = span.enter();

    // A bare `*` makes the username clause a presence test: any user.
    let any_user = cfg.user_filter.replace(USERNAME_PLACEHOLDER, "*");
    let mut conn = Connection::open(cfg)?;
    conn.service_bind()?;
    let members = if group.starts_with('(') {
        let filter = format!("(&{any_user}{group})");
        conn.search_usernames(&filter)?
    } else {
        match &cfg.team_sync {
            TeamSync::Search => Vec::new(),
            TeamSync::UserMemberOf { attr } => {
                let filter = format!("(&{any_user}({attr}={}))", ldap3::ldap_escape(group));
                conn.search_usernames(&filter)?
            }
            TeamSync::MemberAttr { member_attr, .. } => {
                let values = conn.read_attr(group, member_attr)?;
                if member_attr.eq_ignore_ascii_case("memberUid") {
                    values
                } else {
                    conn.usernames_of_dns(&values)?
                }
            }
        }
    };
    conn.close();
    tracing::info!(members = members.len(), "directory group read");
    Ok(sorted_unique(members))
}

/// A user entry that team sync found in a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryMember {
    pub dn: String,
    /// The entry's `username_attr` value.
    pub username: String,
    pub email: Option<String>,
    pub full_name: Option<String>,
}

/// The user entries a team synced from `group` should have, sorted by
/// username. `group` is a filter (starts with `(`) selecting users under
/// `user_base_dn`, a group DN (contains `=`), or a bare group name (its
/// `cn`), which is looked up first: under `group_base_dn` with
/// `group_filter` for [`TeamSync::MemberAttr`], under the domain part of
/// `user_base_dn` for [`TeamSync::UserMemberOf`]. Listed members whose
/// entries are gone, or lack the username attribute, are skipped; nested
/// groups are not followed.
pub fn group_member_entries(cfg: &DirectoryConfig, group: &str) -> Result<Vec<DirectoryMember>, LdapError> {
    let group = group.trim();
    if group.is_empty() {
        return Err(LdapError::InvalidConfig {
            directory: cfg.name.clone(),
            reason: "empty group DN, name or filter".to_owned(),
        });
    }
    refuse_group_under_search(cfg, group)?;
    let span = tracing::info_span!("ldap_group_member_entries", directory = %cfg.name, group = %group);
    let _enter = span.enter();

    let any_user = cfg.user_filter.replace(USERNAME_PLACEHOLDER, "*");
    let mut conn = Connection::open(cfg)?;
    conn.service_bind()?;
    let group_dn = if group.starts_with('(') || group.contains('=') {
        group.to_owned()
    } else {
        conn.resolve_group(group)?
    };
    let mut members = if group_dn.starts_with('(') {
        conn.search_members(&format!("(&{any_user}{group_dn})"))?
    } else {
        match &cfg.team_sync {
            TeamSync::Search => Vec::new(),
            TeamSync::UserMemberOf { attr } => conn.search_members(&format!(
                "(&{any_user}({attr}={}))",
                ldap3::ldap_escape(group_dn.as_str())
            ))?,
            TeamSync::MemberAttr { member_attr, .. } => {
                let values = conn.read_attr(&group_dn, member_attr)?;
                if member_attr.eq_ignore_ascii_case("memberUid") {
                    conn.members_by_username(&values)?
                } else {
                    conn.members_by_dn(&values)?
                }
            }
        }
    };
    conn.close();
    members.sort_by(|a, b| a.username.cmp(&b.username));
    members.dedup_by(|a, b| a.username == b.username);
    tracing::info!(members = members.len(), "directory group entries read");
    Ok(members)
}

/// A directory that syncs by search takes only filters as team groups.
fn refuse_group_under_search(cfg: &DirectoryConfig, group: &str) -> Result<(), LdapError> {
    if matches!(cfg.team_sync, TeamSync::Search) && !group.starts_with('(') {
        return Err(LdapError::InvalidConfig {
            directory: cfg.name.clone(),
            reason: format!("teams sync by search here: {group:?} is not a (filter)"),
        });
    }
    Ok(())
}

/// For each of `filters`, whether the user entry `dn` matches it (and the
/// user filter): how a login decides the teams synced by search.
pub fn entry_matches(cfg: &DirectoryConfig, dn: &str, filters: &[String]) -> Result<Vec<bool>, LdapError> {
    let span = tracing::info_span!("ldap_entry_matches", directory = %cfg.name, dn = %dn);
    let _enter = span.enter();
    let any_user = cfg.user_filter.replace(USERNAME_PLACEHOLDER, "*");
    let mut conn = Connection::open(cfg)?;
    conn.service_bind()?;
    let mut matches = Vec::with_capacity(filters.len());
    for filter in filters {
        let filter = format!("(&{any_user}{})", parenthesized(filter));
        let (entries, _) = conn.search_scope(dn, Scope::Base, &filter, &["1.1"], 1)?;
        matches.push(!entries.is_empty());
    }
    conn.close();
    Ok(matches)
}

/// Whether a user whose groups are `group_dns` belongs to the team group
/// `group`: a DN compares with each DN (case and spaces after separators
/// ignored), a bare name with the value of each DN's first RDN. A filter
/// cannot be decided from the group list: `None`.
pub fn in_group(group_dns: &[String], group: &str) -> Option<bool> {
    let group = group.trim();
    if group.starts_with('(') {
        return None;
    }
    if group.contains('=') {
        let wanted = normalize_dn(group);
        return Some(group_dns.iter().any(|dn| normalize_dn(dn) == wanted));
    }
    Some(
        group_dns
            .iter()
            .filter_map(|dn| first_rdn_value(dn))
            .any(|name| name.eq_ignore_ascii_case(group)),
    )
}

/// A DN for comparison: lower case, no spaces around `,` `=` and `+`.
pub fn normalize_dn(dn: &str) -> String {
    let mut out = String::with_capacity(dn.len());
    let mut pending_space = false;
    for c in dn.trim().chars() {
        if c == ' ' {
            pending_space = true;
            continue;
        }
        if matches!(c, ',' | '=' | '+') {
            pending_space = false;
            while out.ends_with(' ') {
                out.pop();
            }
            out.push(c);
            continue;
        }
        if pending_space && !out.is_empty() && !out.ends_with([',', '=', '+']) {
            out.push(' ');
        }
        pending_space = false;
        out.extend(c.to_lowercase());
    }
    out
}

/// `developers` from `cn=developers,ou=groups,...` (escapes not decoded).
fn first_rdn_value(dn: &str) -> Option<&str> {
    let first = dn.split(',').next()?;
    let (_, value) = first.split_once('=')?;
    Some(value.trim())
}

/// The `dc=` components at the end of `dn`: the naming context, where a
/// directory keeps its groups when no group base is configured.
fn domain_suffix(dn: &str) -> String {
    let parts: Vec<&str> = dn.split(',').map(str::trim).collect();
    let start = parts
        .iter()
        .rposition(|rdn| !rdn.to_ascii_lowercase().starts_with("dc="))
        .map_or(0, |i| i + 1);
    if start >= parts.len() {
        dn.to_owned()
    } else {
        parts[start..].join(",")
    }
}

/// What team sync changes: the usernames to add (in the directory, not in
/// the team) and to remove (in the team, no longer in the directory).
/// Usernames compare without regard to ASCII case, as directories match
/// them; both lists come back sorted and without duplicates.
pub fn sync_plan(current_members: &[String], directory_members: &[String]) -> (Vec<String>, Vec<String>) {
    let contains = |list: &[String], name: &str| list.iter().any(|n| n.eq_ignore_ascii_case(name));
    let add = directory_members
        .iter()
        .filter(|name| !contains(current_members, name))
        .cloned()
        .collect();
    let remove = current_members
        .iter()
        .filter(|name| !contains(directory_members, name))
        .cloned()
        .collect();
    (sorted_unique(add), sorted_unique(remove))
}

/// `user_filter` with its placeholder replaced by `username`, escaped per
/// RFC 4515 so that `*`, `(`, `)`, `\` and NUL match only themselves.
pub fn user_search_filter(user_filter: &str, username: &str) -> String {
    user_filter.replace(USERNAME_PLACEHOLDER, &ldap3::ldap_escape(username))
}

/// Checks what can be checked without contacting the server.
pub fn validate(cfg: &DirectoryConfig) -> Result<(), LdapError> {
    let invalid = |reason: String| LdapError::InvalidConfig {
        directory: cfg.name.clone(),
        reason,
    };
    let (scheme, host) = url_scheme_and_host(&cfg.url)
        .ok_or_else(|| invalid(format!("{:?} is not an ldap:// or ldaps:// URL", cfg.url)))?;
    if scheme == "ldaps" && cfg.start_tls {
        return Err(invalid("StartTLS on an ldaps:// URL".to_owned()));
    }
    if scheme == "ldap" && !cfg.start_tls && !is_loopback(host) {
        return Err(invalid(format!(
            "{} is plaintext off loopback: use ldaps:// or StartTLS",
            cfg.url
        )));
    }
    if !cfg.user_filter.contains(USERNAME_PLACEHOLDER) {
        return Err(invalid(format!(
            "user filter {:?} lacks {USERNAME_PLACEHOLDER}",
            cfg.user_filter
        )));
    }
    if cfg.user_base_dn.is_empty() || cfg.username_attr.is_empty() {
        return Err(invalid("empty user base DN or username attribute".to_owned()));
    }
    if cfg.ca_pem.is_some() {
        tls_config(cfg)?;
    }
    Ok(())
}

fn url_scheme_and_host(url: &str) -> Option<(&'static str, &str)> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("ldaps://") {
        ("ldaps", rest)
    } else {
        ("ldap", url.strip_prefix("ldap://")?)
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    Some((scheme, host))
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn parenthesized(filter: &str) -> String {
    let filter = filter.trim();
    if filter.is_empty() {
        "(objectClass=*)".to_owned()
    } else if filter.starts_with('(') {
        filter.to_owned()
    } else {
        format!("({filter})")
    }
}

fn sorted_unique(mut values: Vec<String>) -> Vec<String> {
    values.sort();
    values.dedup();
    values
}

/// Attribute names match without regard to case; servers answer with the
/// schema's spelling.
fn attr_values(entry: &SearchEntry, attr: &str) -> Vec<String> {
    entry
        .attrs
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(attr))
        .flat_map(|(_, values)| values.iter().cloned())
        .collect()
}

fn attr_first(entry: &SearchEntry, attr: &str) -> Option<String> {
    attr_values(entry, attr).into_iter().find(|value| !value.is_empty())
}

/// One connection to one directory, with errors mapped to [`LdapError`].
struct Connection<'a> {
    cfg: &'a DirectoryConfig,
    ldap: LdapConn,
}

impl<'a> Connection<'a> {
    fn open(cfg: &'a DirectoryConfig) -> Result<Self, LdapError> {
        validate(cfg)?;
        let settings = LdapConnSettings::new()
            .set_conn_timeout(CONNECT_TIMEOUT)
            .set_starttls(cfg.start_tls)
            .set_config(tls_config(cfg)?);
        let ldap = LdapConn::with_settings(settings, &cfg.url).map_err(|err| {
            let error = connect_error(cfg, err);
            tracing::warn!(error = %error, "directory connection failed");
            error
        })?;
        Ok(Connection { cfg, ldap })
    }

    fn service_bind(&mut self) -> Result<(), LdapError> {
        if self.cfg.bind_dn.is_empty() {
            return Ok(());
        }
        let result = self
            .ldap
            .with_timeout(OPERATION_TIMEOUT)
            .simple_bind(&self.cfg.bind_dn, &self.cfg.bind_password)
            .map_err(|err| self.operation_error("service bind", err))?;
        if result.rc != 0 {
            return Err(LdapError::ServiceBind {
                directory: self.cfg.name.clone(),
                bind_dn: self.cfg.bind_dn.clone(),
                reason: describe_result(&result),
            });
        }
        Ok(())
    }

    fn user_bind(&mut self, dn: &str, password: &str, login: &str) -> Result<(), LdapError> {
        let result = self
            .ldap
            .with_timeout(OPERATION_TIMEOUT)
            .simple_bind(dn, password)
            .map_err(|err| self.operation_error("user bind", err))?;
        match result.rc {
            0 => Ok(()),
            RC_INVALID_CREDENTIALS => {
                tracing::info!(dn = %dn, "directory refused the password");
                Err(LdapError::WrongPassword {
                    directory: self.cfg.name.clone(),
                    login: login.to_owned(),
                })
            }
            _ => Err(LdapError::Operation {
                directory: self.cfg.name.clone(),
                operation: "user bind",
                reason: describe_result(&result),
            }),
        }
    }

    /// The one entry `filter` matches under the user base, or `None`.
    fn find_user(&mut self, filter: &str, login: &str) -> Result<Option<SearchEntry>, LdapError> {
        let mut attrs = vec![
            self.cfg.username_attr.as_str(),
            self.cfg.email_attr.as_str(),
            self.cfg.full_name_attr.as_str(),
            "userAccountControl",
        ];
        if let TeamSync::UserMemberOf { attr } = &self.cfg.team_sync {
            attrs.push(attr);
        }
        attrs.retain(|attr| !attr.is_empty());
        let (mut entries, rc) = self.search(&self.cfg.user_base_dn, filter, &attrs, 2)?;
        if entries.len() > 1 || rc == RC_SIZE_LIMIT_EXCEEDED {
            return Err(LdapError::AmbiguousUser {
                directory: self.cfg.name.clone(),
                login: login.to_owned(),
            });
        }
        Ok(entries.pop())
    }

    /// The DN of the one group named `name` (its `cn`).
    fn resolve_group(&mut self, name: &str) -> Result<String, LdapError> {
        let escaped = ldap3::ldap_escape(name);
        let (base, filter) = match &self.cfg.team_sync {
            TeamSync::MemberAttr {
                group_base_dn,
                group_filter,
                ..
            } => (
                group_base_dn.clone(),
                format!("(&{}(cn={escaped}))", parenthesized(group_filter)),
            ),
            TeamSync::UserMemberOf { .. } | TeamSync::Search => (
                domain_suffix(&self.cfg.user_base_dn),
                format!(
                    "(&(|(objectClass=group)(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)\
                     (objectClass=posixGroup))(cn={escaped}))"
                ),
            ),
        };
        let (entries, rc) = self.search(&base, &filter, &["1.1"], 2)?;
        match entries.as_slice() {
            [one] if rc != RC_SIZE_LIMIT_EXCEEDED => Ok(one.dn.clone()),
            [] => Err(LdapError::NoSuchEntry {
                directory: self.cfg.name.clone(),
                dn: format!("group {name:?} under {base:?}"),
            }),
            _ => Err(LdapError::Operation {
                directory: self.cfg.name.clone(),
                operation: "group lookup",
                reason: format!("more than one group named {name:?} under {base:?}: use its DN"),
            }),
        }
    }

    fn member_attrs(&self) -> Vec<String> {
        [&self.cfg.username_attr, &self.cfg.email_attr, &self.cfg.full_name_attr]
            .into_iter()
            .filter(|attr| !attr.is_empty())
            .cloned()
            .collect()
    }

    fn member_of(&self, entry: &SearchEntry) -> Option<DirectoryMember> {
        Some(DirectoryMember {
            dn: entry.dn.clone(),
            username: attr_first(entry, &self.cfg.username_attr)?,
            email: attr_first(entry, &self.cfg.email_attr),
            full_name: attr_first(entry, &self.cfg.full_name_attr),
        })
    }

    /// Users under the user base matching `filter`.
    fn search_members(&mut self, filter: &str) -> Result<Vec<DirectoryMember>, LdapError> {
        let attrs = self.member_attrs();
        let attrs: Vec<&str> = attrs.iter().map(String::as_str).collect();
        let base = self.cfg.user_base_dn.clone();
        let (entries, _) = self.search(&base, filter, &attrs, 0)?;
        Ok(entries.iter().filter_map(|entry| self.member_of(entry)).collect())
    }

    /// The entries `dns` that exist and carry a username.
    fn members_by_dn(&mut self, dns: &[String]) -> Result<Vec<DirectoryMember>, LdapError> {
        let attrs = self.member_attrs();
        let attrs: Vec<&str> = attrs.iter().map(String::as_str).collect();
        let mut members = Vec::with_capacity(dns.len());
        for dn in dns {
            match self.read(dn, &attrs) {
                Ok(entries) => members.extend(entries.iter().filter_map(|entry| self.member_of(entry))),
                Err(LdapError::NoSuchEntry { .. }) => tracing::debug!(member = %dn, "group member entry missing"),
                Err(err) => return Err(err),
            }
        }
        Ok(members)
    }

    /// The one user entry of each username (`memberUid` values); names
    /// with no entry, or more than one, are skipped.
    fn members_by_username(&mut self, usernames: &[String]) -> Result<Vec<DirectoryMember>, LdapError> {
        let attrs = self.member_attrs();
        let attrs: Vec<&str> = attrs.iter().map(String::as_str).collect();
        let base = self.cfg.user_base_dn.clone();
        let mut members = Vec::with_capacity(usernames.len());
        for username in usernames {
            let filter = user_search_filter(&self.cfg.user_filter, username);
            let (entries, rc) = self.search(&base, &filter, &attrs, 2)?;
            match entries.as_slice() {
                [one] if rc != RC_SIZE_LIMIT_EXCEEDED => members.extend(self.member_of(one)),
                _ => tracing::debug!(member = %username, found = entries.len(), "memberUid without exactly one entry"),
            }
        }
        Ok(members)
    }

    fn search_dns(&mut self, base: &str, filter: &str) -> Result<Vec<String>, LdapError> {
        let (entries, _) = self.search(base, filter, &["1.1"], 0)?;
        Ok(sorted_unique(entries.into_iter().map(|e| e.dn).collect()))
    }

    fn search_usernames(&mut self, filter: &str) -> Result<Vec<String>, LdapError> {
        let attr = self.cfg.username_attr.clone();
        let base = self.cfg.user_base_dn.clone();
        let (entries, _) = self.search(&base, filter, &[attr.as_str()], 0)?;
        Ok(entries.iter().filter_map(|entry| attr_first(entry, &attr)).collect())
    }

    /// The values of `attr` on the entry `dn`.
    fn read_attr(&mut self, dn: &str, attr: &str) -> Result<Vec<String>, LdapError> {
        let entries = self.read(dn, &[attr])?;
        match entries.first() {
            Some(entry) => Ok(attr_values(entry, attr)),
            None => Err(LdapError::NoSuchEntry {
                directory: self.cfg.name.clone(),
                dn: dn.to_owned(),
            }),
        }
    }

    /// The usernames of the entries `dns` that exist; members that were
    /// deleted but are still listed are skipped.
    fn usernames_of_dns(&mut self, dns: &[String]) -> Result<Vec<String>, LdapError> {
        let attr = self.cfg.username_attr.clone();
        let mut usernames = Vec::with_capacity(dns.len());
        for dn in dns {
            match self.read(dn, &[attr.as_str()]) {
                Ok(entries) => usernames.extend(entries.iter().filter_map(|e| attr_first(e, &attr))),
                Err(LdapError::NoSuchEntry { .. }) => {
                    tracing::debug!(member = %dn, "group member entry missing")
                }
                Err(err) => return Err(err),
            }
        }
        Ok(usernames)
    }

    fn read(&mut self, dn: &str, attrs: &[&str]) -> Result<Vec<SearchEntry>, LdapError> {
        match self.search_scope(dn, Scope::Base, "(objectClass=*)", attrs, 1)? {
            (_, RC_NO_SUCH_OBJECT) => Err(LdapError::NoSuchEntry {
                directory: self.cfg.name.clone(),
                dn: dn.to_owned(),
            }),
            (entries, _) => Ok(entries),
        }
    }

    fn search(
        &mut self,
        base: &str,
        filter: &str,
        attrs: &[&str],
        size_limit: i32,
    ) -> Result<(Vec<SearchEntry>, u32), LdapError> {
        self.search_scope(base, Scope::Subtree, filter, attrs, size_limit)
    }

    /// Entries (search references skipped) and the result code; an error for
    /// result codes other than success and size limit exceeded.
    fn search_scope(
        &mut self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
        size_limit: i32,
    ) -> Result<(Vec<SearchEntry>, u32), LdapError> {
        let result = self
            .ldap
            .with_timeout(OPERATION_TIMEOUT)
            .with_search_options(SearchOptions::new().sizelimit(size_limit))
            .search(base, scope, filter, attrs.to_vec())
            .map_err(|err| self.operation_error("search", err))?;
        let ldap3::SearchResult(raw, result) = result;
        match result.rc {
            0 | RC_SIZE_LIMIT_EXCEEDED => {}
            RC_NO_SUCH_OBJECT if matches!(scope, Scope::Base) => return Ok((Vec::new(), result.rc)),
            _ => {
                return Err(LdapError::Operation {
                    directory: self.cfg.name.clone(),
                    operation: "search",
                    reason: format!("{} under {base:?}", describe_result(&result)),
                })
            }
        }
        let mut entries = Vec::with_capacity(raw.len());
        for entry in raw.into_iter().filter(|e| !e.is_ref() && !e.is_intermediate()) {
            // `construct` panics on malformed BER from the server.
            let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| SearchEntry::construct(entry)));
            entries.push(parsed.map_err(|_| LdapError::Operation {
                directory: self.cfg.name.clone(),
                operation: "search",
                reason: "malformed entry in the response".to_owned(),
            })?);
        }
        Ok((entries, result.rc))
    }

    fn operation_error(&self, operation: &'static str, err: ldap3::LdapError) -> LdapError {
        match err {
            ldap3::LdapError::LdapResult { result } => LdapError::Operation {
                directory: self.cfg.name.clone(),
                operation,
                reason: describe_result(&result),
            },
            ldap3::LdapError::Timeout { .. } | ldap3::LdapError::Io { .. } => LdapError::Unreachable {
                directory: self.cfg.name.clone(),
                url: self.cfg.url.clone(),
                reason: format!("{operation}: {err}"),
            },
            other => LdapError::Operation {
                directory: self.cfg.name.clone(),
                operation,
                reason: other.to_string(),
            },
        }
    }

    fn close(mut self) {
        if let Err(err) = self.ldap.unbind() {
            tracing::debug!(error = %err, "directory unbind failed");
        }
    }
}

/// The server's result code and diagnostic text; servers never echo the
/// bind password.
fn describe_result(result: &LdapResult) -> String {
    if result.text.is_empty() {
        format!("result code {}", result.rc)
    } else {
        format!("result code {}: {}", result.rc, result.text)
    }
}

fn connect_error(cfg: &DirectoryConfig, err: ldap3::LdapError) -> LdapError {
    let tls = |reason: String| LdapError::Tls {
        directory: cfg.name.clone(),
        url: cfg.url.clone(),
        reason,
    };
    match err {
        ldap3::LdapError::Io { source } => {
            let is_tls = source
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
            if is_tls {
                tls(source.to_string())
            } else {
                LdapError::Unreachable {
                    directory: cfg.name.clone(),
                    url: cfg.url.clone(),
                    reason: source.to_string(),
                }
            }
        }
        ldap3::LdapError::Timeout { .. } => LdapError::Unreachable {
            directory: cfg.name.clone(),
            url: cfg.url.clone(),
            reason: "connection timed out".to_owned(),
        },
        // Before any bind the only LDAP operation is the StartTLS request.
        ldap3::LdapError::LdapResult { result } => tls(format!("StartTLS refused: {}", describe_result(&result))),
        ldap3::LdapError::Rustls { source } => tls(source.to_string()),
        ldap3::LdapError::DNSName { source } => tls(source.to_string()),
        ldap3::LdapError::UrlParsing { .. } | ldap3::LdapError::UnknownScheme(_) => LdapError::InvalidConfig {
            directory: cfg.name.clone(),
            reason: err.to_string(),
        },
        other => LdapError::Unreachable {
            directory: cfg.name.clone(),
            url: cfg.url.clone(),
            reason: other.to_string(),
        },
    }
}

/// Verifies servers against `ca_pem`, or the system roots without it. The
/// provider is named explicitly so no process-wide default is needed.
fn tls_config(cfg: &DirectoryConfig) -> Result<Arc<rustls::ClientConfig>, LdapError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    let invalid = |reason: String| LdapError::InvalidConfig {
        directory: cfg.name.clone(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|err| invalid(format!("CA PEM: {err}")))?;
                roots
                    .add(cert)
                    .map_err(|err| invalid(format!("CA certificate: {err}")))?;
            }
            if roots.is_empty() {
                return Err(invalid("CA PEM holds no certificate".to_owned()));
            }
        }
        // Plaintext loopback: the config is never used, skip reading roots.
        None if !cfg.start_tls && !cfg.url.starts_with("ldaps://") => {}
        None => {
            let native = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                return Err(invalid(
                    "no CA PEM configured and no system root certificates found".to_owned(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| invalid(format!("TLS versions: {err}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(name: &str, domains: &[&str]) -> DirectoryConfig {
        DirectoryConfig {
            name: name.to_owned(),
            url: "ldap://127.0.0.1:389".to_owned(),
            start_tls: false,
            ca_pem: None,
            bind_dn: "cn=reader,dc=example,dc=org".to_owned(),
            bind_password: "service-secret".to_owned(),
            user_base_dn: "ou=people,dc=example,dc=org".to_owned(),
            user_filter: "(&(objectClass=person)(uid={username}))".to_owned(),
            username_attr: "uid".to_owned(),
            email_attr: "mail".to_owned(),
            full_name_attr: "cn".to_owned(),
            team_sync: TeamSync::UserMemberOf {
                attr: "memberOf".to_owned(),
            },
            domains: domains.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn select_directory_by_domain() {
        let cfgs = [
            cfg("default", &[]),
            cfg("corp", &["CORP", "corp.example.com"]),
            cfg("lab", &["lab.example.org"]),
        ];
        // (login, directory, username searched)
        let cases = [
            ("alice", "default", "alice"),
            ("alice@corp.example.com", "corp", "alice"),
            ("alice@CORP.example.com", "corp", "alice"),
            ("CORP\\alice", "corp", "alice"),
            ("corp\\alice", "corp", "alice"),
            ("bob@lab.example.org", "lab", "bob"),
            ("bob@elsewhere.net", "default", "bob@elsewhere.net"),
            ("a@b@lab.example.org", "lab", "a@b"),
            ("OTHER\\bob", "default", "OTHER\\bob"),
        ];
        for (login, directory, username) in cases {
            let (chosen, searched) = select_directory(&cfgs, login).expect(login);
            assert_eq!(
                (chosen.name.as_str(), searched.as_str()),
                (directory, username),
                "{login}"
            );
        }
        let no_default = [cfg("corp", &["CORP"])];
        for login in ["alice", "LAB\\alice", "alice@lab"] {
            assert!(
                matches!(select_directory(&no_default, login), Err(LdapError::NoDirectory { .. })),
                "{login}"
            );
        }
    }

    #[test]
    fn user_filter_escapes_rfc4515_metacharacters() {
        let filter = "(&(objectClass=person)(uid={username}))";
        let cases = [
            ("alice", "(&(objectClass=person)(uid=alice))"),
            ("*", "(&(objectClass=person)(uid=\\2a))"),
            ("a*)(uid=*", "(&(objectClass=person)(uid=a\\2a\\29\\28uid=\\2a))"),
            ("x)(|(uid=*)", "(&(objectClass=person)(uid=x\\29\\28|\\28uid=\\2a\\29))"),
            ("back\\slash", "(&(objectClass=person)(uid=back\\5cslash))"),
            ("nul\0", "(&(objectClass=person)(uid=nul\\00))"),
        ];
        for (username, expected) in cases {
            assert_eq!(user_search_filter(filter, username), expected, "{username:?}");
        }
    }

    #[test]
    fn sync_plan_adds_and_removes() {
        let s = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        // (team now, directory, add, remove)
        type Names<'a> = &'a [&'a str];
        let cases: [(Names, Names, Names, Names); 6] = [
            (&[], &[], &[], &[]),
            (&[], &["bob", "alice"], &["alice", "bob"], &[]),
            (&["alice", "bob"], &["alice"], &[], &["bob"]),
            (&["alice", "bob"], &["bob", "carol"], &["carol"], &["alice"]),
            (&["Alice"], &["alice"], &[], &[]),
            (&["alice", "alice"], &[], &[], &["alice"]),
        ];
        for (current, directory, add, remove) in cases {
            let plan = sync_plan(&s(current), &s(directory));
            assert_eq!(plan, (s(add), s(remove)), "{current:?} vs {directory:?}");
        }
    }

    #[test]
    fn validate_refuses_unsafe_or_broken_configs() {
        let ok = |url: &str, start_tls: bool| {
            let mut c = cfg("d", &[]);
            c.url = url.to_owned();
            c.start_tls = start_tls;
            validate(&c).is_ok()
        };
        assert!(ok("ldap://127.0.0.1:3890", false));
        assert!(ok("ldap://localhost", false));
        assert!(ok("ldap://[::1]:389/", false));
        assert!(ok("ldap://dc1.corp.example.com", true));
        assert!(ok("ldaps://dc1.corp.example.com:636", false));
        assert!(!ok("ldap://dc1.corp.example.com", false), "plaintext off loopback");
        assert!(!ok("ldap://10.0.0.1:389", false), "plaintext off loopback");
        assert!(!ok("ldaps://dc1.corp.example.com", true), "StartTLS inside LDAPS");
        assert!(!ok("http://dc1.corp.example.com", false));
        let mut c = cfg("d", &[]);
        c.user_filter = "(uid=alice)".to_owned();
        assert!(validate(&c).is_err(), "filter without placeholder");
    }

    #[test]
    fn team_group_membership_from_the_group_list() {
        let groups = [
            "CN=Developers,OU=Groups,DC=corp,DC=example,DC=com".to_owned(),
            "cn=ops, ou=groups, dc=example, dc=org".to_owned(),
        ];
        // (team group, in it)
        let cases = [
            ("cn=developers,ou=groups,dc=corp,dc=example,dc=com", Some(true)),
            ("CN=Developers, OU=Groups, DC=corp, DC=example, DC=com", Some(true)),
            ("cn=ops,ou=groups,dc=example,dc=org", Some(true)),
            ("cn=developers,ou=groups,dc=example,dc=org", Some(false)),
            ("developers", Some(true)),
            ("OPS", Some(true)),
            ("admins", Some(false)),
            ("(department=eng)", None),
        ];
        for (group, expected) in cases {
            assert_eq!(in_group(&groups, group), expected, "{group}");
        }
        assert_eq!(in_group(&[], "developers"), Some(false));
        assert_eq!(normalize_dn(" CN=Domain  Users , DC=x "), "cn=domain users,dc=x");
    }

    #[test]
    fn groups_are_looked_up_under_the_domain() {
        assert_eq!(
            domain_suffix("OU=Users,DC=corp,DC=example,DC=com"),
            "DC=corp,DC=example,DC=com"
        );
        assert_eq!(domain_suffix("ou=people, dc=example, dc=org"), "dc=example,dc=org");
        assert_eq!(domain_suffix("ou=people,o=acme"), "ou=people,o=acme");
        assert_eq!(domain_suffix("dc=example,dc=org"), "dc=example,dc=org");
    }

    #[test]
    fn debug_redacts_bind_password() {
        let c = cfg("d", &[]);
        let debug = format!("{c:?}");
        assert!(!debug.contains("service-secret"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn empty_password_is_refused_before_connecting() {
        // Port 9 on loopback: reaching the network would give Unreachable.
        let mut c = cfg("d", &[]);
        c.url = "ldap://127.0.0.1:9".to_owned();
        for (login, password) in [("alice", ""), ("", "pw")] {
            assert!(
                matches!(
                    authenticate(std::slice::from_ref(&c), login, password),
                    Err(LdapError::EmptyCredentials { .. })
                ),
                "{login:?}"
            );
        }
    }
}
