//! Directory (LDAP/AD) records and what the directory commands do to the
//! access tables: configuration, team mappings, a login's provisioning and
//! memberships, and a team sync. What was read from the directory travels
//! in the command; applying it reads only the store.

use std::collections::BTreeMap;
use std::fmt;

use berth_store::Txn;
use serde::{Deserialize, Serialize};

use crate::command::{delete_where, ApplyError, Rejected};
use crate::records::{valid_name, Bundle, SessionRecord, Team, TokenRecord, User};
use crate::tables::*;

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

/// A configured directory as stored (and as `PUT /v1/directories/{name}`
/// takes it: the name may be left out, an absent or `***` bind password
/// keeps the stored one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Directory {
    #[serde(flatten)]
    pub config: DirectoryConfig,
    /// Minutes between scheduled syncs; none: the daemon's default.
    #[serde(default)]
    pub sync_interval_minutes: Option<u64>,
    #[serde(default)]
    pub created: String,
}

/// How the last sync of a directory went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncState {
    pub time: String,
    /// Every mapped group was read.
    pub ok: bool,
    pub errors: Vec<String>,
    pub added: usize,
    pub removed: usize,
    pub created_users: usize,
}

/// A berth user that a directory authenticates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectoryAccount {
    pub user: String,
    pub directory: String,
    pub dn: String,
    pub email: Option<String>,
    pub full_name: Option<String>,
    /// When the user was created (by a login or a sync).
    pub provisioned: String,
    pub last_login: Option<String>,
    /// Why the user lost access (gone from or disabled in the directory, as
    /// a sync found); cleared when the directory has them again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<String>,
}

/// The directory group a team is synced from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryGroup {
    pub directory: String,
    /// A group DN, a group name (its `cn`), or a filter `(...)` selecting
    /// users (team sync by search).
    pub group: String,
}

// --- what the API takes and shows of each record ---

impl From<DirectoryConfig> for berth_model::directory::DirectoryConfig {
    fn from(v: DirectoryConfig) -> Self {
        Self {
            name: v.name,
            url: v.url,
            start_tls: v.start_tls,
            ca_pem: v.ca_pem,
            bind_dn: v.bind_dn,
            bind_password: v.bind_password,
            user_base_dn: v.user_base_dn,
            user_filter: v.user_filter,
            username_attr: v.username_attr,
            email_attr: v.email_attr,
            full_name_attr: v.full_name_attr,
            team_sync: v.team_sync.into(),
            domains: v.domains,
        }
    }
}

impl From<berth_model::directory::DirectoryConfig> for DirectoryConfig {
    fn from(v: berth_model::directory::DirectoryConfig) -> Self {
        Self {
            name: v.name,
            url: v.url,
            start_tls: v.start_tls,
            ca_pem: v.ca_pem,
            bind_dn: v.bind_dn,
            bind_password: v.bind_password,
            user_base_dn: v.user_base_dn,
            user_filter: v.user_filter,
            username_attr: v.username_attr,
            email_attr: v.email_attr,
            full_name_attr: v.full_name_attr,
            team_sync: v.team_sync.into(),
            domains: v.domains,
        }
    }
}

impl From<Directory> for berth_model::directory::Directory {
    fn from(v: Directory) -> Self {
        Self {
            config: v.config.into(),
            sync_interval_minutes: v.sync_interval_minutes,
            created: v.created,
        }
    }
}

impl From<berth_model::directory::Directory> for Directory {
    fn from(v: berth_model::directory::Directory) -> Self {
        Self {
            config: v.config.into(),
            sync_interval_minutes: v.sync_interval_minutes,
            created: v.created,
        }
    }
}

impl From<SyncState> for berth_model::directory::SyncState {
    fn from(v: SyncState) -> Self {
        Self {
            time: v.time,
            ok: v.ok,
            errors: v.errors,
            added: v.added,
            removed: v.removed,
            created_users: v.created_users,
        }
    }
}

impl From<DisabledUser> for berth_model::directory::DisabledUser {
    fn from(v: DisabledUser) -> Self {
        Self {
            user: v.user,
            reason: v.reason,
            tokens: v.tokens,
            sessions: v.sessions,
            bundles: v.bundles,
        }
    }
}

impl From<SkippedMember> for berth_model::directory::SkippedMember {
    fn from(v: SkippedMember) -> Self {
        Self {
            username: v.username,
            reason: v.reason,
        }
    }
}

impl From<TeamSyncReport> for berth_model::directory::TeamSyncReport {
    fn from(v: TeamSyncReport) -> Self {
        Self {
            team: v.team,
            group: v.group,
            added: v.added,
            removed: v.removed,
            skipped: v.skipped.into_iter().map(Into::into).collect(),
            error: v.error,
        }
    }
}

impl From<TeamSync> for berth_model::directory::TeamSync {
    fn from(v: TeamSync) -> Self {
        match v {
            TeamSync::MemberAttr {
                group_base_dn,
                group_filter,
                member_attr,
            } => Self::MemberAttr {
                group_base_dn,
                group_filter,
                member_attr,
            },
            TeamSync::UserMemberOf { attr } => Self::UserMemberOf { attr },
            TeamSync::Search => Self::Search,
        }
    }
}

impl From<berth_model::directory::TeamSync> for TeamSync {
    fn from(v: berth_model::directory::TeamSync) -> Self {
        use berth_model::directory::TeamSync as Wire;
        match v {
            Wire::MemberAttr {
                group_base_dn,
                group_filter,
                member_attr,
            } => Self::MemberAttr {
                group_base_dn,
                group_filter,
                member_attr,
            },
            Wire::UserMemberOf { attr } => Self::UserMemberOf { attr },
            Wire::Search => Self::Search,
        }
    }
}

impl From<DirectoryGroup> for berth_model::access::DirectoryGroup {
    fn from(g: DirectoryGroup) -> Self {
        Self {
            directory: g.directory,
            group: g.group,
        }
    }
}

impl From<berth_model::access::DirectoryGroup> for DirectoryGroup {
    fn from(g: berth_model::access::DirectoryGroup) -> Self {
        Self {
            directory: g.directory,
            group: g.group,
        }
    }
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

/// Whether a provisioned directory user still counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountState {
    Active,
    /// No entry matches the user filter any more: deleted, moved out of the
    /// user base, or excluded by the filter (the usual way to leave out
    /// disabled accounts, as `(!(userAccountControl:1.2.840.113556.1.4.803:=2))`).
    Gone,
    /// Active Directory's ACCOUNTDISABLE flag (`userAccountControl` bit 2).
    Disabled,
}

/// A directory user a sync cut off, and what was revoked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DisabledUser {
    pub user: String,
    pub reason: String,
    pub tokens: usize,
    pub sessions: usize,
    pub bundles: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TeamSyncReport {
    pub team: String,
    pub group: String,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Group members that could not be made team members, and why.
    pub skipped: Vec<SkippedMember>,
    /// Why the group could not be read completely (the team was left as
    /// it was).
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkippedMember {
    pub username: String,
    pub reason: String,
}

/// One membership a login or a sync changed, for the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MembershipChange {
    pub team: String,
    pub group: String,
    pub user: String,
    pub added: bool,
}

/// What a sync read of one mapped team's group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupRead {
    pub team: String,
    pub group: DirectoryGroup,
    /// The group's user entries, or why they could not all be read.
    pub members: Result<Vec<DirectoryMember>, String>,
}

/// What a login's command changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginApplied {
    /// The user was created now.
    pub created: bool,
    /// The user had been cut off by a sync and is back.
    pub restored: bool,
    pub changes: Vec<MembershipChange>,
}

/// What a sync's command changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncApplied {
    pub created_users: Vec<String>,
    pub teams: Vec<TeamSyncReport>,
    pub changes: Vec<MembershipChange>,
    pub disabled_users: Vec<DisabledUser>,
    pub restored_users: Vec<String>,
}

/// Who to add to and remove from a team synced from a group, each list
/// sorted: names compare without regard to case, as directories do.
pub fn sync_plan(current_members: &[String], directory_members: &[String]) -> (Vec<String>, Vec<String>) {
    let contains = |list: &[String], name: &str| list.iter().any(|n| n.eq_ignore_ascii_case(name));
    let sorted_unique = |mut values: Vec<String>| {
        values.sort();
        values.dedup();
        values
    };
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

/// A berth user managed by `directory` (an account, and no local password).
pub fn managed_by(user: Option<&User>, account: Option<&DirectoryAccount>, directory: &str) -> bool {
    matches!((user, account), (Some(u), Some(a)) if u.password_hash.is_empty() && a.directory == directory)
}

pub(crate) fn put_directory(t: &mut Txn, directory: &Directory) -> Result<bool, ApplyError> {
    let name = &directory.config.name;
    let mut directory = directory.clone();
    let existing = t.get::<Directory>(DIRECTORIES, name)?;
    if directory.config.bind_password.is_empty() {
        if let Some(old) = &existing {
            directory.config.bind_password = old.config.bind_password.clone();
        }
    }
    if !directory.config.bind_dn.is_empty() && directory.config.bind_password.is_empty() {
        return Err(Rejected::Invalid(format!(
            "directory {name}: bind DN {:?} without a bind password",
            directory.config.bind_dn
        ))
        .into());
    }
    for (other, d) in t.list::<Directory>(DIRECTORIES)? {
        if &other == name {
            continue;
        }
        if d.config.domains.is_empty() && directory.config.domains.is_empty() {
            return Err(Rejected::Conflict(format!(
                "directory {other} already serves logins without a listed domain: give {name} --domain"
            ))
            .into());
        }
        let shared = directory
            .config
            .domains
            .iter()
            .find(|mine| d.config.domains.iter().any(|theirs| theirs.eq_ignore_ascii_case(mine)));
        if let Some(domain) = shared {
            return Err(Rejected::Conflict(format!("directory {other} already serves the domain {domain}")).into());
        }
    }
    if let Some(old) = &existing {
        directory.created = old.created.clone();
    }
    t.put(DIRECTORIES, name, &directory)?;
    Ok(existing.is_none())
}

pub(crate) fn remove_directory(t: &mut Txn, name: &str) -> Result<(), ApplyError> {
    if !t.delete(DIRECTORIES, name)? {
        return Err(Rejected::NotFound(format!("no such directory: {name}")).into());
    }
    t.delete(DIRECTORY_SYNC, name)?;
    for (team, mapping) in t.list::<DirectoryGroup>(TEAM_GROUPS)? {
        if mapping.directory == name {
            t.delete(TEAM_GROUPS, &team)?;
        }
    }
    Ok(())
}

pub(crate) fn set_team_group(t: &mut Txn, team: &str, group: Option<&DirectoryGroup>) -> Result<(), ApplyError> {
    if t.get::<Team>(TEAMS, team)?.is_none() {
        return Err(Rejected::NotFound(format!("no such team: {team}")).into());
    }
    match group {
        Some(g) => {
            if t.get::<Directory>(DIRECTORIES, &g.directory)?.is_none() {
                return Err(Rejected::NotFound(format!("no such directory: {}", g.directory)).into());
            }
            t.put(TEAM_GROUPS, team, g)?;
        }
        None => {
            if !t.delete(TEAM_GROUPS, team)? {
                return Err(Rejected::NotFound(format!("team {team} is not synced from a directory")).into());
            }
        }
    }
    Ok(())
}

/// A login of `member` through `directory`: the user is created if new,
/// its account updated, and its memberships in teams synced from the
/// directory set as `decisions` (team → member or not) say. Refused when
/// the name belongs to a local user or another directory.
pub(crate) fn login(
    t: &mut Txn,
    directory: &str,
    member: &DirectoryMember,
    decisions: &BTreeMap<String, bool>,
    now: &str,
) -> Result<LoginApplied, ApplyError> {
    let name = &member.username;
    let user = t.get::<User>(USERS, name)?;
    let account = t.get::<DirectoryAccount>(DIRECTORY_ACCOUNTS, name)?;
    let created = match &user {
        None => true,
        Some(_) if managed_by(user.as_ref(), account.as_ref(), directory) => false,
        Some(_) => {
            return Err(Rejected::Conflict("the name belongs to a local user or another directory".into()).into());
        }
    };
    if created {
        put_directory_user(t, name, now)?;
    }
    let restored = account.as_ref().is_some_and(|a| a.disabled.is_some());
    let record = DirectoryAccount {
        user: name.clone(),
        directory: directory.to_owned(),
        dn: member.dn.clone(),
        email: member.email.clone(),
        full_name: member.full_name.clone(),
        provisioned: account
            .filter(|_| !created)
            .map_or_else(|| now.to_owned(), |a| a.provisioned),
        last_login: Some(now.to_owned()),
        disabled: None,
    };
    t.put(DIRECTORY_ACCOUNTS, name, &record)?;
    let mut changes = Vec::new();
    for (team_name, mapping) in t.list::<DirectoryGroup>(TEAM_GROUPS)? {
        if mapping.directory != directory {
            continue;
        }
        let Some(&is_member) = decisions.get(&team_name) else {
            continue;
        };
        let Some(mut team) = t.get::<Team>(TEAMS, &team_name)? else {
            continue;
        };
        let changed = if is_member {
            team.members.insert(name.clone())
        } else {
            team.members.remove(name)
        };
        if changed {
            t.put(TEAMS, &team_name, &team)?;
            changes.push(MembershipChange {
                team: team_name,
                group: mapping.group,
                user: name.clone(),
                added: is_member,
            });
        }
    }
    Ok(LoginApplied {
        created,
        restored,
        changes,
    })
}

/// One sync of `directory`: accounts checked (`states`, in the order of
/// `accounts`), then each mapped team set to the members its group read.
pub(crate) fn sync(
    t: &mut Txn,
    directory: &str,
    reads: &[GroupRead],
    accounts: &[String],
    states: &Result<Vec<AccountState>, String>,
    now: &str,
) -> Result<SyncApplied, ApplyError> {
    let (disabled_users, restored_users) = match states {
        Ok(states) => apply_account_states(t, directory, accounts, states, now)?,
        Err(_) => (Vec::new(), Vec::new()),
    };
    let mut created_users = Vec::new();
    let mut teams = Vec::new();
    let mut changes = Vec::new();
    for read in reads {
        let mut report = TeamSyncReport {
            team: read.team.clone(),
            group: read.group.group.clone(),
            ..TeamSyncReport::default()
        };
        let members = match &read.members {
            Ok(members) => members,
            Err(err) => {
                report.error = Some(err.clone());
                teams.push(report);
                continue;
            }
        };
        let Some(mut team) = t.get::<Team>(TEAMS, &read.team)? else {
            // The team went away behind the mapping's back.
            t.delete(TEAM_GROUPS, &read.team)?;
            continue;
        };
        let mut current = Vec::new();
        for member in &team.members {
            let user = t.get::<User>(USERS, member)?;
            let account = t.get::<DirectoryAccount>(DIRECTORY_ACCOUNTS, member)?;
            if managed_by(user.as_ref(), account.as_ref(), directory) {
                current.push(member.clone());
            }
        }
        let wanted: Vec<String> = members.iter().map(|m| m.username.clone()).collect();
        let (add, remove) = sync_plan(&current, &wanted);
        for username in add {
            let Some(member) = members.iter().find(|m| m.username == username) else {
                continue;
            };
            match ensure_directory_user(t, member, directory, now)? {
                Ensured::Created => created_users.push(username.clone()),
                Ensured::Existing => {}
                Ensured::Refused(reason) => {
                    report.skipped.push(SkippedMember {
                        username,
                        reason: reason.to_owned(),
                    });
                    continue;
                }
            }
            team.members.insert(username.clone());
            report.added.push(username);
        }
        for username in remove {
            team.members.remove(&username);
            report.removed.push(username);
        }
        if !report.added.is_empty() || !report.removed.is_empty() {
            t.put(TEAMS, &read.team, &team)?;
        }
        for (list, added) in [(&report.added, true), (&report.removed, false)] {
            changes.extend(list.iter().map(|user| MembershipChange {
                team: read.team.clone(),
                group: read.group.group.clone(),
                user: user.clone(),
                added,
            }));
        }
        teams.push(report);
    }
    created_users.sort();
    created_users.dedup();
    let errors: Vec<String> = teams
        .iter()
        .filter_map(|r| r.error.as_ref().map(|e| format!("team {}: {e}", r.team)))
        .collect();
    let state = SyncState {
        time: now.to_owned(),
        ok: errors.is_empty(),
        errors,
        added: changes.iter().filter(|c| c.added).count(),
        removed: changes.iter().filter(|c| !c.added).count(),
        created_users: created_users.len(),
    };
    t.put(DIRECTORY_SYNC, directory, &state)?;
    Ok(SyncApplied {
        created_users,
        teams,
        changes,
        disabled_users,
        restored_users,
    })
}

/// Cuts off the accounts the directory no longer has (or has disabled):
/// their tokens and sessions are deleted and their client bundles revoked;
/// accounts it has again are restored.
fn apply_account_states(
    t: &mut Txn,
    directory: &str,
    accounts: &[String],
    states: &[AccountState],
    now: &str,
) -> Result<(Vec<DisabledUser>, Vec<String>), ApplyError> {
    let mut disabled = Vec::new();
    let mut restored = Vec::new();
    for (user, state) in accounts.iter().zip(states) {
        let Some(mut account) = t.get::<DirectoryAccount>(DIRECTORY_ACCOUNTS, user)? else {
            continue;
        };
        if account.directory != directory {
            continue;
        }
        let reason = match state {
            AccountState::Active => {
                if account.disabled.take().is_some() {
                    t.put(DIRECTORY_ACCOUNTS, user, &account)?;
                    restored.push(user.clone());
                }
                continue;
            }
            AccountState::Gone => format!("no longer in directory {directory}"),
            AccountState::Disabled => format!("disabled in directory {directory}"),
        };
        let (tokens, sessions, bundles) = revoke_credentials(t, user, now)?;
        if account.disabled.is_none() || tokens + sessions + bundles > 0 {
            account.disabled = Some(reason.clone());
            t.put(DIRECTORY_ACCOUNTS, user, &account)?;
            disabled.push(DisabledUser {
                user: user.clone(),
                reason,
                tokens,
                sessions,
                bundles,
            });
        }
    }
    Ok((disabled, restored))
}

/// Deletes `user`'s tokens and sessions and revokes their client bundles;
/// how many of each.
fn revoke_credentials(t: &mut Txn, user: &str, now: &str) -> Result<(usize, usize, usize), ApplyError> {
    let tokens = delete_where::<TokenRecord>(t, TOKENS, |token| token.user == user)?;
    let sessions = delete_where::<SessionRecord>(t, SESSIONS, |session| session.user == user)?;
    let mut bundles = 0;
    for (key, mut bundle) in t.list::<Bundle>(BUNDLES)? {
        if bundle.user == user && bundle.revoked.is_none() {
            bundle.revoked = Some(now.to_owned());
            t.put(BUNDLES, &key, &bundle)?;
            bundles += 1;
        }
    }
    Ok((tokens, sessions, bundles))
}

/// A berth user without a local password.
fn put_directory_user(t: &mut Txn, name: &str, now: &str) -> Result<(), ApplyError> {
    let user = User {
        name: name.to_owned(),
        password_hash: String::new(),
        created: now.to_owned(),
    };
    t.put(USERS, name, &user)?;
    Ok(())
}

enum Ensured {
    Created,
    Existing,
    Refused(&'static str),
}

/// Makes sure the group member `member` is a berth user of `directory`.
fn ensure_directory_user(
    t: &mut Txn,
    member: &DirectoryMember,
    directory: &str,
    now: &str,
) -> Result<Ensured, ApplyError> {
    let user = t.get::<User>(USERS, &member.username)?;
    let account = t.get::<DirectoryAccount>(DIRECTORY_ACCOUNTS, &member.username)?;
    if user.is_some() {
        return Ok(if managed_by(user.as_ref(), account.as_ref(), directory) {
            Ensured::Existing
        } else {
            Ensured::Refused("the name belongs to a local user or another directory")
        });
    }
    if !valid_name(&member.username) {
        return Ok(Ensured::Refused("not a valid berth user name"));
    }
    put_directory_user(t, &member.username, now)?;
    let account = DirectoryAccount {
        user: member.username.clone(),
        directory: directory.to_owned(),
        dn: member.dn.clone(),
        email: member.email.clone(),
        full_name: member.full_name.clone(),
        provisioned: now.to_owned(),
        last_login: None,
        disabled: None,
    };
    t.put(DIRECTORY_ACCOUNTS, &member.username, &account)?;
    Ok(Ensured::Created)
}
