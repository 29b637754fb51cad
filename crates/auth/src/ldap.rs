//! LDAP and Active Directory: which directory serves a login, bind
//! authentication (service bind, user search, user bind), the user's groups,
//! group members for team sync, and the pure add/remove plan that sync
//! applies. The API is blocking; the daemon calls it from `spawn_blocking`.
//!
//! How a group is read, by [`TeamSync`] mode:
//! - `MemberAttr` with `member` or `uniqueMember`: the group entry's values,
//!   with AD's ranged retrieval (`member;range=0-1499`, then `1500-*`, ...)
//!   when the server answers in ranges. A member that matches the user
//!   filter is a user; one under `group_base_dn` that matches `group_filter`
//!   is a nested group, read the same way, at most [`MAX_GROUP_DEPTH`] levels
//!   down (cycles are read once). This works on OpenLDAP and AD alike. A
//!   login counts the same nesting: the groups listing the user, and the
//!   groups listing those, up to the same depth.
//! - `MemberAttr` with `memberUid`: usernames, no nesting.
//! - `UserMemberOf`: a search for users whose attribute names the group.
//!   With `memberOf` on a server whose root DSE announces Active Directory,
//!   the filter uses AD's `LDAP_MATCHING_RULE_IN_CHAIN`
//!   ([`MATCHING_RULE_IN_CHAIN`]), so nested members count; the server
//!   bounds that walk itself. Other servers (slapd answers an unknown
//!   matching rule with no entries and success) get the plain equality
//!   filter: direct members only.
//! - Team groups given as a `(filter)`: a search over users.
//!
//! **Invariant:** a group is read completely or not at all. Searches that
//! may return many entries use the paged-results control (RFC 2696), and a
//! size, time or administrative limit on any page, a missing range, or
//! nesting deeper than [`MAX_GROUP_DEPTH`] is [`LdapError::Incomplete`]:
//! sync then leaves the team as it was. Only the user and group lookups
//! that ask for two entries on purpose (to detect ambiguity) take a size
//! limit answer as "more than one".
//!
//! **Invariant:** the password given to [`authenticate`] and the configured
//! `bind_password` never appear in a log line, an error message or a `Debug`
//! string. Values from the login go into search filters only through RFC 4515
//! escaping.
//!
//! **Invariant:** a plaintext `ldap://` URL without StartTLS is accepted only
//! for a loopback host, so passwords cross the network only inside TLS.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ldap3::controls::{Control, ControlType, PagedResults, RawControl};
use ldap3::{LdapConn, LdapConnSettings, LdapResult, Scope, SearchEntry, SearchOptions};

/// How long to wait for the TCP connection (and TLS handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for any one LDAP operation.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
/// The placeholder in `user_filter` replaced by the escaped username.
pub const USERNAME_PLACEHOLDER: &str = "{username}";

/// Entries per page of a paged search; AD's default MaxPageSize is 1000.
const PAGE_SIZE: i32 = 500;
/// Pages of one search before it counts as runaway.
const MAX_PAGES: usize = 100_000;
/// Ranges of one attribute before its read counts as runaway.
const MAX_RANGES: usize = 100_000;
/// How many levels of nested groups team sync and logins follow.
pub const MAX_GROUP_DEPTH: usize = 8;
/// Group DNs per `(|(member=...)...)` filter when a login looks for the
/// groups that contain its groups.
const GROUPS_PER_FILTER: usize = 50;
/// AD's `LDAP_MATCHING_RULE_IN_CHAIN`: a DN-valued attribute matched through
/// every level of nesting.
pub const MATCHING_RULE_IN_CHAIN: &str = "1.2.840.113556.1.4.1941";
/// `LDAP_CAP_ACTIVE_DIRECTORY_OID`, in an AD root DSE's `supportedCapabilities`.
const CAP_ACTIVE_DIRECTORY: &str = "1.2.840.113556.1.4.800";

/// LDAP result code `timeLimitExceeded`.
const RC_TIME_LIMIT_EXCEEDED: u32 = 3;
/// LDAP result code `sizeLimitExceeded`.
const RC_SIZE_LIMIT_EXCEEDED: u32 = 4;
/// LDAP result code `adminLimitExceeded`.
const RC_ADMIN_LIMIT_EXCEEDED: u32 = 11;
/// LDAP result code `noSuchObject`.
const RC_NO_SUCH_OBJECT: u32 = 32;
/// LDAP result code `invalidCredentials`.
const RC_INVALID_CREDENTIALS: u32 = 49;
/// LDAP result code `insufficientAccessRights`.
const RC_INSUFFICIENT_ACCESS: u32 = 50;

/// One directory server and how users and groups are found in it; where
/// group membership is recorded; a user entry team sync found in a group;
/// whether a provisioned directory user still counts.
pub use berth_state::directory::{AccountState, DirectoryConfig, DirectoryMember, TeamSync};

pub use berth_model::access::DirectoryUser;

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
    /// The server answered only part of what was asked: using it would
    /// drop the members it left out.
    #[error("directory {directory}: {what} could not be read completely: {reason}")]
    Incomplete {
        directory: String,
        what: String,
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
            | LdapError::Operation { .. }
            | LdapError::Incomplete { .. } => ErrorCode::Internal,
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
    // The user bind replaced the connection's identity.
    if password.is_some() && !matches!(cfg.team_sync, TeamSync::Search) {
        conn.service_bind()?;
    }
    let groups = match &cfg.team_sync {
        TeamSync::Search => Vec::new(),
        TeamSync::UserMemberOf { attr } => {
            let mut groups = conn.ranged_values(&entry, attr)?;
            if attr.eq_ignore_ascii_case("memberOf") && conn.is_active_directory()? {
                // memberOf lists direct groups only; the groups those are in
                // count for team sync too.
                let filter = format!(
                    "(member:{MATCHING_RULE_IN_CHAIN}:={})",
                    ldap3::ldap_escape(entry.dn.as_str())
                );
                groups.extend(conn.search_dns(&domain_suffix(&cfg.user_base_dn), &filter)?);
            }
            sorted_unique(groups)
        }
        TeamSync::MemberAttr {
            group_base_dn,
            group_filter,
            member_attr,
        } => {
            if member_attr.eq_ignore_ascii_case("memberUid") {
                let filter = format!(
                    "(&{}({}={}))",
                    parenthesized(group_filter),
                    member_attr,
                    ldap3::ldap_escape(username_value.as_str())
                );
                conn.search_dns(group_base_dn, &filter)?
            } else {
                conn.groups_containing(group_base_dn, group_filter, member_attr, &entry.dn)?
            }
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

/// The usernames a team synced from `group` should have, sorted: those of
/// [`group_member_entries`].
pub fn group_members(cfg: &DirectoryConfig, group: &str) -> Result<Vec<String>, LdapError> {
    let members = group_member_entries(cfg, group)?;
    Ok(sorted_unique(members.into_iter().map(|m| m.username).collect()))
}

/// The user entries a team synced from `group` should have, sorted by
/// username. `group` is a filter (starts with `(`) selecting users under
/// `user_base_dn`, a group DN (contains `=`), or a bare group name (its
/// `cn`), which is looked up first: under `group_base_dn` with
/// `group_filter` for [`TeamSync::MemberAttr`], under the domain part of
/// `user_base_dn` for [`TeamSync::UserMemberOf`]. Nested groups count as the
/// module docs say. Listed members whose entries are gone, or that are
/// neither users (by the user filter) nor nested groups, are skipped; a
/// group that cannot be read completely is an error.
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

    // A bare `*` makes the username clause a presence test: any user.
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
            TeamSync::UserMemberOf { attr } => {
                let in_chain = attr.eq_ignore_ascii_case("memberOf") && conn.is_active_directory()?;
                conn.search_members(&member_of_filter(&any_user, attr, &group_dn, in_chain))?
            }
            TeamSync::MemberAttr {
                group_base_dn,
                group_filter,
                member_attr,
            } => {
                if member_attr.eq_ignore_ascii_case("memberUid") {
                    let values = conn.read_attr(&group_dn, member_attr)?;
                    conn.members_by_username(&values)?
                } else {
                    let groups = NestedGroups {
                        base: group_base_dn,
                        filter: &parenthesized(group_filter),
                    };
                    conn.nested_members(&group_dn, member_attr, &any_user, &groups)?
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

/// The filter for the users whose `attr` names `group_dn`; `in_chain` (AD)
/// also matches users of groups nested in it.
fn member_of_filter(any_user: &str, attr: &str, group_dn: &str, in_chain: bool) -> String {
    let rule = if in_chain {
        format!(":{MATCHING_RULE_IN_CHAIN}:")
    } else {
        String::new()
    };
    format!("(&{any_user}({attr}{rule}={}))", ldap3::ldap_escape(group_dn))
}

/// Which member entries are nested groups: under `base`, matching `filter`.
struct NestedGroups<'a> {
    base: &'a str,
    filter: &'a str,
}

/// What a group's member DN turned out to be.
enum MemberEntry {
    User(DirectoryMember),
    Group,
    /// Gone, or neither a user nor a group.
    Other,
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
        matches.push(conn.read_matching(dn, &filter, &["1.1"])?.is_some());
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

/// Whether the entry `dn` is `base` or below it (DNs compared as
/// [`normalize_dn`] does); an empty base holds everything.
fn is_under(dn: &str, base: &str) -> bool {
    let (dn, base) = (normalize_dn(dn), normalize_dn(base));
    base.is_empty() || dn == base || dn.ends_with(&format!(",{base}"))
}

/// The limit a result code reports, if it reports one: the server stopped
/// before it had answered everything.
fn exceeded_limit(rc: u32) -> Option<&'static str> {
    match rc {
        RC_SIZE_LIMIT_EXCEEDED => Some("size limit exceeded"),
        RC_TIME_LIMIT_EXCEEDED => Some("time limit exceeded"),
        RC_ADMIN_LIMIT_EXCEEDED => Some("administrative limit exceeded"),
        _ => None,
    }
}

/// Which values of a multi-valued attribute one answer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueRange {
    /// The plain attribute: every value.
    All,
    /// AD's ranged retrieval, `attr;range=low-high`: values `low` to `high`
    /// (counted from 0); `high` is `None` for `*`, the last range.
    Part { low: u64, high: Option<u64> },
}

/// The values of `attr` in one answer's attributes (names compared without
/// case) and the range they cover. Names with other options are not `attr`.
fn attr_range(attrs: &HashMap<String, Vec<String>>, attr: &str) -> Result<(Vec<String>, ValueRange), String> {
    let mut plain: Option<Vec<String>> = None;
    let mut ranged: Option<(Vec<String>, ValueRange)> = None;
    for (name, values) in attrs {
        let mut parts = name.split(';');
        if !parts.next().is_some_and(|base| base.eq_ignore_ascii_case(attr)) {
            continue;
        }
        let options: Vec<&str> = parts.collect();
        if options.is_empty() {
            plain.get_or_insert_with(Vec::new).extend(values.iter().cloned());
            continue;
        }
        let range = options.iter().find_map(|option| {
            option
                .get(..6)
                .filter(|p| p.eq_ignore_ascii_case("range="))
                .map(|_| &option[6..])
        });
        let Some(spec) = range else { continue };
        let range = parse_range(spec).ok_or_else(|| format!("unreadable range in {name:?}"))?;
        if ranged.replace((values.clone(), range)).is_some() {
            return Err(format!("more than one range of {attr} in one answer"));
        }
    }
    match (plain, ranged) {
        (Some(_), Some(_)) => Err(format!("{attr} answered both whole and in a range")),
        (None, Some(ranged)) => Ok(ranged),
        (plain, None) => Ok((plain.unwrap_or_default(), ValueRange::All)),
    }
}

/// `low-high` or `low-*`, with `low <= high`.
fn parse_range(spec: &str) -> Option<ValueRange> {
    let (low, high) = spec.split_once('-')?;
    let low: u64 = low.parse().ok()?;
    let high = match high {
        "*" => None,
        high => Some(high.parse::<u64>().ok().filter(|high| *high >= low)?),
    };
    Some(ValueRange::Part { low, high })
}

/// Every value of `attr` on one entry: those in `first` (an answer asking
/// for `attr`), and when that is one range of AD's ranged retrieval, the
/// following ranges, each asked for with `fetch("attr;range=next-*")`, up
/// to the one ending in `*`. A range that does not start where the last
/// one ended, or is missing, is an error made by `incomplete`.
fn collect_ranges<E>(
    attr: &str,
    first: &HashMap<String, Vec<String>>,
    mut fetch: impl FnMut(&str) -> Result<HashMap<String, Vec<String>>, E>,
    incomplete: impl Fn(String) -> E,
) -> Result<Vec<String>, E> {
    let (mut values, mut range) = attr_range(first, attr).map_err(&incomplete)?;
    let mut expected_low = 0u64;
    for _ in 0..MAX_RANGES {
        match range {
            ValueRange::All if expected_low == 0 => return Ok(values),
            ValueRange::All => {
                return Err(incomplete(format!(
                    "asked for {attr};range={expected_low}-*, the answer has no such range"
                )))
            }
            ValueRange::Part { low, .. } if low != expected_low => {
                return Err(incomplete(format!(
                    "asked for {attr} from value {expected_low}, the answer starts at {low}"
                )))
            }
            ValueRange::Part { high: None, .. } => return Ok(values),
            ValueRange::Part { high: Some(high), .. } => {
                expected_low = high
                    .checked_add(1)
                    .ok_or_else(|| incomplete(format!("{attr}: range end {high} out of bounds")))?;
                let next = fetch(&format!("{attr};range={expected_low}-*"))?;
                let (more, next_range) = attr_range(&next, attr).map_err(&incomplete)?;
                values.extend(more);
                range = next_range;
            }
        }
    }
    Err(incomplete(format!("{attr}: more than {MAX_RANGES} ranges")))
}

/// What team sync changes: the usernames to add (in the directory, not in
/// the team) and to remove (in the team, no longer in the directory).
/// Usernames compare without regard to ASCII case, as directories match
/// them; both lists come back sorted and without duplicates.
pub use berth_state::directory::sync_plan;

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
    /// What the root DSE said, once asked.
    active_directory: Option<bool>,
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
        Ok(Connection {
            cfg,
            ldap,
            active_directory: None,
        })
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
        let (mut entries, more) = self.search_at_most(&self.cfg.user_base_dn, filter, &attrs, 2)?;
        if entries.len() > 1 || more {
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
        let (entries, more) = self.search_at_most(&base, &filter, &["1.1"], 2)?;
        match entries.as_slice() {
            [one] if !more => Ok(one.dn.clone()),
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

    /// Whether the server is Active Directory, by its root DSE's
    /// `supportedCapabilities`. A root DSE the service account may not read
    /// is not AD's (AD shows it to anyone); any other failure is an error,
    /// so that a flaky server never loses the nested members.
    fn is_active_directory(&mut self) -> Result<bool, LdapError> {
        if let Some(known) = self.active_directory {
            return Ok(known);
        }
        let (entries, result) =
            self.search_once("", Scope::Base, "(objectClass=*)", &["supportedCapabilities"], 0, None)?;
        let known = match result.rc {
            0 => entries
                .iter()
                .flat_map(|entry| attr_values(entry, "supportedCapabilities"))
                .any(|oid| oid.trim() == CAP_ACTIVE_DIRECTORY),
            RC_NO_SUCH_OBJECT | RC_INSUFFICIENT_ACCESS => false,
            _ => return Err(self.result_error(&result, "the root DSE")),
        };
        tracing::debug!(active_directory = known, "directory root DSE read");
        self.active_directory = Some(known);
        Ok(known)
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

    /// Users under the user base matching `filter`, every page of them.
    fn search_members(&mut self, filter: &str) -> Result<Vec<DirectoryMember>, LdapError> {
        let attrs = self.member_attrs();
        let attrs: Vec<&str> = attrs.iter().map(String::as_str).collect();
        let base = self.cfg.user_base_dn.clone();
        let entries = self.search_all(&base, filter, &attrs)?;
        Ok(entries.iter().filter_map(|entry| self.member_of(entry)).collect())
    }

    /// The users of the group `root` (a DN) and of the groups nested in it,
    /// breadth first, each group read once, at most [`MAX_GROUP_DEPTH`]
    /// levels down; deeper nesting is an error, not a silent cut.
    fn nested_members(
        &mut self,
        root: &str,
        member_attr: &str,
        any_user: &str,
        groups: &NestedGroups,
    ) -> Result<Vec<DirectoryMember>, LdapError> {
        let mut seen: HashSet<String> = HashSet::from([normalize_dn(root)]);
        let mut level = vec![root.to_owned()];
        let mut members = Vec::new();
        for depth in 0..=MAX_GROUP_DEPTH {
            let mut next = Vec::new();
            for group in &level {
                let values = match self.read_attr(group, member_attr) {
                    Ok(values) => values,
                    // A nested group deleted since its parent was read.
                    Err(LdapError::NoSuchEntry { .. }) if depth > 0 => {
                        tracing::debug!(group = %group, "nested group entry missing");
                        continue;
                    }
                    Err(err) => return Err(err),
                };
                for dn in values {
                    match self.member_entry(&dn, any_user, groups)? {
                        MemberEntry::User(member) => members.push(member),
                        MemberEntry::Group => {
                            if seen.insert(normalize_dn(&dn)) {
                                next.push(dn);
                            }
                        }
                        MemberEntry::Other => tracing::debug!(member = %dn, "group member neither a user nor a group"),
                    }
                }
            }
            if next.is_empty() {
                return Ok(members);
            }
            level = next;
        }
        Err(LdapError::Incomplete {
            directory: self.cfg.name.clone(),
            what: format!("group {root:?}"),
            reason: format!("groups nested deeper than {MAX_GROUP_DEPTH} levels"),
        })
    }

    /// A user if the entry matches the user filter, else a nested group if
    /// it is one.
    fn member_entry(&mut self, dn: &str, any_user: &str, groups: &NestedGroups) -> Result<MemberEntry, LdapError> {
        let attrs = self.member_attrs();
        let attrs: Vec<&str> = attrs.iter().map(String::as_str).collect();
        if let Some(entry) = self.read_matching(dn, any_user, &attrs)? {
            return Ok(self.member_of(&entry).map_or(MemberEntry::Other, MemberEntry::User));
        }
        if is_under(dn, groups.base) && self.read_matching(dn, groups.filter, &["1.1"])?.is_some() {
            return Ok(MemberEntry::Group);
        }
        Ok(MemberEntry::Other)
    }

    /// The groups under `base` matching `group_filter` whose `member_attr`
    /// lists `dn`, and the groups listing those, [`MAX_GROUP_DEPTH`] levels
    /// up: the nesting [`Connection::nested_members`] follows down.
    fn groups_containing(
        &mut self,
        base: &str,
        group_filter: &str,
        member_attr: &str,
        dn: &str,
    ) -> Result<Vec<String>, LdapError> {
        let group_filter = parenthesized(group_filter);
        let listing = |dns: &[String]| {
            let any: String = dns
                .iter()
                .map(|dn| format!("({member_attr}={})", ldap3::ldap_escape(dn.as_str())))
                .collect();
            format!("(&{group_filter}(|{any}))")
        };
        let mut found = self.search_dns(base, &listing(&[dn.to_owned()]))?;
        let mut seen: HashSet<String> = found.iter().map(|dn| normalize_dn(dn)).collect();
        let mut level = found.clone();
        for _ in 0..MAX_GROUP_DEPTH {
            let mut next = Vec::new();
            for chunk in level.chunks(GROUPS_PER_FILTER) {
                for parent in self.search_dns(base, &listing(chunk))? {
                    if seen.insert(normalize_dn(&parent)) {
                        next.push(parent);
                    }
                }
            }
            if next.is_empty() {
                break;
            }
            found.extend(next.iter().cloned());
            level = next;
        }
        Ok(sorted_unique(found))
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
            let (entries, more) = self.search_at_most(&base, &filter, &attrs, 2)?;
            match entries.as_slice() {
                [one] if !more => members.extend(self.member_of(one)),
                _ => tracing::debug!(member = %username, found = entries.len(), "memberUid without exactly one entry"),
            }
        }
        Ok(members)
    }

    /// The DNs of every entry under `base` matching `filter`.
    fn search_dns(&mut self, base: &str, filter: &str) -> Result<Vec<String>, LdapError> {
        let entries = self.search_all(base, filter, &["1.1"])?;
        Ok(sorted_unique(entries.into_iter().map(|e| e.dn).collect()))
    }

    /// Every value of `attr` on the entry `dn`, in ranges if the server
    /// answers in ranges.
    fn read_attr(&mut self, dn: &str, attr: &str) -> Result<Vec<String>, LdapError> {
        let entry = self.read(dn, &[attr])?;
        self.ranged_values(&entry, attr)
    }

    /// Every value of `attr` of `entry` (read with `attr` asked for),
    /// fetching the further ranges of AD's ranged retrieval.
    fn ranged_values(&mut self, entry: &SearchEntry, attr: &str) -> Result<Vec<String>, LdapError> {
        let directory = self.cfg.name.clone();
        let dn = entry.dn.clone();
        collect_ranges(
            attr,
            &entry.attrs,
            |ranged| Ok(self.read(&dn, &[ranged])?.attrs),
            |reason| LdapError::Incomplete {
                directory: directory.clone(),
                what: format!("{attr} of {dn:?}"),
                reason,
            },
        )
    }

    /// The entry `dn`; missing (or hidden from the service account) is
    /// [`LdapError::NoSuchEntry`].
    fn read(&mut self, dn: &str, attrs: &[&str]) -> Result<SearchEntry, LdapError> {
        self.read_matching(dn, "(objectClass=*)", attrs)?
            .ok_or_else(|| LdapError::NoSuchEntry {
                directory: self.cfg.name.clone(),
                dn: dn.to_owned(),
            })
    }

    /// The entry `dn` if it exists and matches `filter`.
    fn read_matching(&mut self, dn: &str, filter: &str, attrs: &[&str]) -> Result<Option<SearchEntry>, LdapError> {
        let (mut entries, result) = self.search_once(dn, Scope::Base, filter, attrs, 0, None)?;
        match result.rc {
            0 => Ok(entries.pop()),
            RC_NO_SUCH_OBJECT => Ok(None),
            _ => Err(self.result_error(&result, dn)),
        }
    }

    /// At most `limit` entries, and whether there were more: the size
    /// limit answer to our own limit, for lookups that want exactly one.
    fn search_at_most(
        &mut self,
        base: &str,
        filter: &str,
        attrs: &[&str],
        limit: i32,
    ) -> Result<(Vec<SearchEntry>, bool), LdapError> {
        let (entries, result) = self.search_once(base, Scope::Subtree, filter, attrs, limit, None)?;
        match result.rc {
            0 => Ok((entries, false)),
            RC_SIZE_LIMIT_EXCEEDED => Ok((entries, true)),
            _ => Err(self.result_error(&result, base)),
        }
    }

    /// Every entry under `base` matching `filter`, in pages (RFC 2696) so
    /// that a server's size limit on plain searches does not cut the
    /// answer. Each page's result code is checked (ldap3's `PagedResults`
    /// adapter goes on to the next page after a limit): anything but
    /// success, on any page, is an error and no entry is returned.
    fn search_all(&mut self, base: &str, filter: &str, attrs: &[&str]) -> Result<Vec<SearchEntry>, LdapError> {
        let mut entries = Vec::new();
        let mut cookie = Vec::new();
        for _ in 0..MAX_PAGES {
            let control = RawControl::from(PagedResults {
                size: PAGE_SIZE,
                cookie,
            });
            let (page, result) = self.search_once(base, Scope::Subtree, filter, attrs, 0, Some(control))?;
            if result.rc != 0 {
                return Err(self.result_error(&result, base));
            }
            entries.extend(page);
            cookie = self.next_page_cookie(&result)?;
            if cookie.is_empty() {
                return Ok(entries);
            }
        }
        Err(LdapError::Incomplete {
            directory: self.cfg.name.clone(),
            what: format!("the search under {base:?}"),
            reason: format!("more than {MAX_PAGES} pages"),
        })
    }

    /// The paged-results cookie of a page's result; empty after the last
    /// page, or when the server ignored the (non-critical) control and
    /// answered everything at once.
    fn next_page_cookie(&self, result: &LdapResult) -> Result<Vec<u8>, LdapError> {
        let Some(raw) = result.ctrls.iter().find_map(|ctrl| match ctrl {
            Control(Some(ControlType::PagedResults), raw) => Some(raw),
            _ => None,
        }) else {
            return Ok(Vec::new());
        };
        // The parser panics on malformed BER from the server.
        std::panic::catch_unwind(|| raw.parse::<PagedResults>().cookie).map_err(|_| LdapError::Operation {
            directory: self.cfg.name.clone(),
            operation: "search",
            reason: "malformed paged-results control in the response".to_owned(),
        })
    }

    /// One search request: its entries (search references and intermediate
    /// messages skipped) and its result, whatever the result code.
    fn search_once(
        &mut self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
        size_limit: i32,
        control: Option<RawControl>,
    ) -> Result<(Vec<SearchEntry>, LdapResult), LdapError> {
        let ldap = self
            .ldap
            .with_timeout(OPERATION_TIMEOUT)
            .with_search_options(SearchOptions::new().sizelimit(size_limit));
        let ldap = match control {
            Some(control) => ldap.with_controls(control),
            None => ldap,
        };
        let result = ldap
            .search(base, scope, filter, attrs.to_vec())
            .map_err(|err| self.operation_error("search", err))?;
        let ldap3::SearchResult(raw, result) = result;
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
        Ok((entries, result))
    }

    /// The error for a search under `base` that did not succeed: a limit
    /// makes the answer [`LdapError::Incomplete`].
    fn result_error(&self, result: &LdapResult, base: &str) -> LdapError {
        match exceeded_limit(result.rc) {
            Some(limit) => LdapError::Incomplete {
                directory: self.cfg.name.clone(),
                what: format!("the search under {base:?}"),
                reason: format!("{limit} ({})", describe_result(result)),
            },
            None => LdapError::Operation {
                directory: self.cfg.name.clone(),
                operation: "search",
                reason: format!("{} under {base:?}", describe_result(result)),
            },
        }
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

    /// A fake directory entry answering ranged reads from `chunks`:
    /// (requested attribute, answered attribute name, values).
    fn ranged(first: (&str, &[&str]), chunks: &[(&str, &str, &[&str])]) -> (Result<Vec<String>, String>, Vec<String>) {
        let answer = |name: &str, values: &[&str]| {
            HashMap::from([(name.to_owned(), values.iter().map(|v| v.to_string()).collect())])
        };
        let mut asked = Vec::new();
        let mut chunks = chunks.iter();
        let result = collect_ranges(
            "member",
            &answer(first.0, first.1),
            |requested| {
                asked.push(requested.to_owned());
                match chunks.next() {
                    Some((expected, name, values)) if *expected == requested => Ok(answer(name, values)),
                    Some((expected, ..)) => Err(format!("asked {requested}, test expected {expected}")),
                    None => Err(format!("asked {requested} past the test's chunks")),
                }
            },
            |reason| format!("incomplete: {reason}"),
        );
        (result, asked)
    }

    #[test]
    fn ranged_retrieval_reads_every_range_or_fails() {
        let s = |values: &[&str]| values.iter().map(|v| v.to_string()).collect::<Vec<_>>();
        // The plain attribute: no further reads.
        let (got, asked) = ranged(("member", &["a", "b"]), &[]);
        assert_eq!((got, asked), (Ok(s(&["a", "b"])), s(&[])));
        let (got, _) = ranged(("Member", &["a"]), &[]);
        assert_eq!(got, Ok(s(&["a"])), "names compare without case");
        // No such attribute: an empty group.
        let (got, _) = ranged(("cn", &["x"]), &[]);
        assert_eq!(got, Ok(s(&[])));
        // AD's ranges, until the one ending in `*`.
        let (got, asked) = ranged(
            ("member;range=0-1", &["a", "b"]),
            &[
                ("member;range=2-*", "member;range=2-3", &["c", "d"]),
                ("member;range=4-*", "member;Range=4-*", &["e"]),
            ],
        );
        assert_eq!(got, Ok(s(&["a", "b", "c", "d", "e"])));
        assert_eq!(asked, s(&["member;range=2-*", "member;range=4-*"]));
        let (got, asked) = ranged(("member;range=0-*", &["a"]), &[]);
        assert_eq!((got, asked), (Ok(s(&["a"])), s(&[])));

        // Anything short of the last range fails: no partial member list.
        // (first answer, further answers, error text)
        type Chunks<'a> = &'a [(&'a str, &'a str, &'a [&'a str])];
        type Failure<'a> = ((&'a str, &'a [&'a str]), Chunks<'a>, &'a str);
        let failures: [Failure; 7] = [
            (
                ("member;range=0-1", &["a", "b"]),
                &[("member;range=2-*", "cn", &["x"])],
                "has no such range",
            ),
            (
                ("member;range=0-1", &["a", "b"]),
                &[("member;range=2-*", "member", &["c"])],
                "has no such range",
            ),
            (
                ("member;range=0-1", &["a", "b"]),
                &[("member;range=2-*", "member;range=3-*", &["d"])],
                "starts at 3",
            ),
            (("member;range=5-*", &["f"]), &[], "starts at 5"),
            (("member;range=3-1", &["a"]), &[], "unreadable range"),
            (("member;range=x-*", &["a"]), &[], "unreadable range"),
            (("member;range=0-1", &["a", "b"]), &[], "past the test's chunks"),
        ];
        for (first, chunks, expected) in failures {
            let (got, _) = ranged(first, chunks);
            let err = got.expect_err(first.0);
            assert!(err.contains(expected), "{first:?} {chunks:?}: {err}");
        }
        // Whole and ranged at once, or two ranges: not a consistent answer.
        let both = HashMap::from([
            ("member".to_owned(), s(&["a"])),
            ("member;range=0-0".to_owned(), s(&["a"])),
        ]);
        assert!(attr_range(&both, "member").is_err());
        // Other options are not the attribute.
        let binary = HashMap::from([("member;binary".to_owned(), s(&["a"]))]);
        assert_eq!(attr_range(&binary, "member"), Ok((s(&[]), ValueRange::All)));
    }

    #[test]
    fn member_of_filter_follows_nesting_on_active_directory_only() {
        let any_user = "(&(objectClass=user)(sAMAccountName=*))";
        let group = "CN=Dev (EU)*,OU=Groups,DC=corp,DC=example,DC=com";
        assert_eq!(
            member_of_filter(any_user, "memberOf", group, true),
            "(&(&(objectClass=user)(sAMAccountName=*))\
             (memberOf:1.2.840.113556.1.4.1941:=CN=Dev \\28EU\\29\\2a,OU=Groups,DC=corp,DC=example,DC=com))"
        );
        assert_eq!(
            member_of_filter(any_user, "memberOf", group, false),
            "(&(&(objectClass=user)(sAMAccountName=*))\
             (memberOf=CN=Dev \\28EU\\29\\2a,OU=Groups,DC=corp,DC=example,DC=com))"
        );
        // The rule's filter parses as an extensible match.
        let filter = member_of_filter(any_user, "memberOf", group, true);
        assert!(ldap3::parse_filter(&filter).is_ok(), "{filter}");
    }

    #[test]
    fn limits_make_a_read_incomplete() {
        // (result code, limit reported)
        let cases = [
            (0, None),
            (RC_TIME_LIMIT_EXCEEDED, Some("time limit exceeded")),
            (RC_SIZE_LIMIT_EXCEEDED, Some("size limit exceeded")),
            (RC_ADMIN_LIMIT_EXCEEDED, Some("administrative limit exceeded")),
            (RC_NO_SUCH_OBJECT, None),
            (RC_INSUFFICIENT_ACCESS, None),
        ];
        for (rc, expected) in cases {
            assert_eq!(exceeded_limit(rc), expected, "{rc}");
        }
    }

    #[test]
    fn nested_groups_are_followed_under_the_group_base_only() {
        // (dn, base, under)
        let cases = [
            ("cn=a,ou=groups,dc=x", "ou=groups,dc=x", true),
            ("CN=A, OU=Groups, DC=x", "ou=groups,dc=x", true),
            ("ou=groups,dc=x", "ou=groups,dc=x", true),
            ("cn=a,ou=people,dc=x", "ou=groups,dc=x", false),
            ("cn=a,xou=groups,dc=x", "ou=groups,dc=x", false),
            ("cn=a,dc=y", "", true),
        ];
        for (dn, base, under) in cases {
            assert_eq!(is_under(dn, base), under, "{dn} under {base}");
        }
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
