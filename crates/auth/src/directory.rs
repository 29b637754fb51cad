//! Directory-backed identities: the LDAP/AD servers configured in the
//! cluster state, logins that go to them, just-in-time provisioning of the
//! users they authenticate, and team sync from directory groups.
//!
//! A directory user is a berth user with no local password (an empty hash
//! matches nothing) and a [`DirectoryAccount`] naming its directory and DN.
//! A team is synced from a group when a [`DirectoryGroup`] maps it.
//!
//! Choices, as enterprise directories are usually wired:
//! - A login naming a local user is checked locally; any other login goes
//!   to a directory (chosen by its domain part, or the user's own directory
//!   once provisioned). A directory user whose name is already a local user,
//!   or another directory's user, is refused, never merged.
//! - Sync creates the users it finds in mapped groups, so that their team
//!   grants hold before their first login, and only ever adds or removes
//!   users of the same directory: local members of a synced team stay.
//! - A group that cannot be read, or not completely (a size or time limit,
//!   a missing range, nesting too deep: [`LdapError::Incomplete`]), changes
//!   nothing in its team and the sync report says why: an unreachable or
//!   limited directory never empties teams. Nested groups count as
//!   [`crate::ldap`] describes.
//! - Directory users are not deleted when they leave the directory: they
//!   lose the synced memberships, and their logins fail.
//!
//! **Invariant:** the login password and the bind passwords never appear in
//! a log line, an error, an audit entry or a view (the API shows `***`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use berth_store::{Table, Txn};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::access::check_name;
use crate::ldap::{self, DirectoryConfig, DirectoryMember, DirectoryUser, LdapError};
use crate::records::{Team, User};
use crate::{Access, AuthFailure, Error, Identity, NewAuditEntry, Result, TEAMS, USERS};

/// Directories by name ([`Directory`]).
pub const DIRECTORIES: Table = Table("cluster/directories");
/// Directory users by berth user name ([`DirectoryAccount`]).
pub const DIRECTORY_ACCOUNTS: Table = Table("cluster/directory_accounts");
/// Team → directory group mappings by team name ([`DirectoryGroup`]).
pub const TEAM_GROUPS: Table = Table("cluster/team_directory_groups");
/// The last sync of each directory by name ([`SyncState`]).
pub const DIRECTORY_SYNC: Table = Table("cluster/directory_sync");

/// What views show instead of a bind password.
pub const REDACTED: &str = "***";

/// The name `POST /v1/directories/sync` takes: no directory may have it.
const RESERVED_NAMES: [&str; 1] = ["sync"];

/// Sync runs one at a time in a process (scheduled and on demand).
static SYNC_LOCK: Mutex<()> = Mutex::new(());

/// A configured directory as stored.
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

/// A directory as the API shows it: the bind password is `***` (or empty
/// when none is set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectoryView {
    #[serde(flatten)]
    pub config: DirectoryConfig,
    pub sync_interval_minutes: Option<u64>,
    pub created: String,
    pub last_sync: Option<SyncState>,
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

/// What one sync of one directory did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncReport {
    pub directory: String,
    pub time: String,
    /// Users created because a mapped group lists them.
    pub created_users: Vec<String>,
    pub teams: Vec<TeamSyncReport>,
    /// Users the directory no longer has or has disabled: their tokens and
    /// sessions are gone, their client bundles revoked.
    #[serde(default)]
    pub disabled_users: Vec<DisabledUser>,
    /// Disabled users the directory has again (they may log in).
    #[serde(default)]
    pub restored_users: Vec<String>,
    /// Why the accounts could not be checked (nobody was disabled).
    #[serde(default)]
    pub account_check_error: Option<String>,
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
struct MembershipChange {
    team: String,
    group: String,
    user: String,
    added: bool,
}

/// Who caused a change, for the audit log.
struct Actor<'a> {
    user: &'a str,
    source: &'a str,
}

impl Directory {
    fn view(&self, last_sync: Option<SyncState>) -> DirectoryView {
        let mut config = self.config.clone();
        if !config.bind_password.is_empty() {
            config.bind_password = REDACTED.to_owned();
        }
        DirectoryView {
            config,
            sync_interval_minutes: self.sync_interval_minutes,
            created: self.created.clone(),
            last_sync,
        }
    }
}

/// A berth user managed by `directory` (an account, and no local password).
fn managed_by(user: Option<&User>, account: Option<&DirectoryAccount>, directory: &str) -> bool {
    matches!((user, account), (Some(u), Some(a)) if u.password_hash.is_empty() && a.directory == directory)
}

impl Access {
    fn now_secs_text(&self) -> String {
        self.now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    // --- configuration ---

    /// Creates or replaces a directory. An empty or `***` bind password
    /// keeps the stored one, so a view can be edited and put back. Returns
    /// the view and whether the directory is new.
    pub fn put_directory(&self, mut directory: Directory) -> Result<(DirectoryView, bool)> {
        let name = directory.config.name.clone();
        check_name("directory", &name)?;
        if RESERVED_NAMES.contains(&name.as_str()) {
            return Err(Error::Invalid(format!(
                "{name:?} is reserved: choose another directory name"
            )));
        }
        ldap::validate(&directory.config)?;
        if directory.sync_interval_minutes == Some(0) {
            return Err(Error::Invalid(format!(
                "directory {name}: a sync interval of 0 minutes; omit it for the daemon's default"
            )));
        }
        directory.config.domains.retain(|d| !d.trim().is_empty());
        if directory.config.bind_password == REDACTED {
            directory.config.bind_password.clear();
        }
        let now = self.now_secs_text();
        let stored = self.store.apply(|t| {
            let existing = t.get::<Directory>(DIRECTORIES, &name)?;
            if directory.config.bind_password.is_empty() {
                if let Some(old) = &existing {
                    directory.config.bind_password = old.config.bind_password.clone();
                }
            }
            if !directory.config.bind_dn.is_empty() && directory.config.bind_password.is_empty() {
                return Ok(Err(Error::Invalid(format!(
                    "directory {name}: bind DN {:?} without a bind password",
                    directory.config.bind_dn
                ))));
            }
            for (other, d) in t.list::<Directory>(DIRECTORIES)? {
                if other == name {
                    continue;
                }
                if d.config.domains.is_empty() && directory.config.domains.is_empty() {
                    return Ok(Err(Error::Conflict(format!(
                        "directory {other} already serves logins without a listed domain: give {name} --domain"
                    ))));
                }
                let shared = directory
                    .config
                    .domains
                    .iter()
                    .find(|mine| d.config.domains.iter().any(|theirs| theirs.eq_ignore_ascii_case(mine)));
                if let Some(domain) = shared {
                    return Ok(Err(Error::Conflict(format!(
                        "directory {other} already serves the domain {domain}"
                    ))));
                }
            }
            directory.created = existing.as_ref().map_or(now, |old| old.created.clone());
            t.put(DIRECTORIES, &name, &directory)?;
            let last = t.get::<SyncState>(DIRECTORY_SYNC, &name)?;
            Ok(Ok((directory.view(last), existing.is_none())))
        })??;
        tracing::info!(directory = %name, url = %stored.0.config.url, "directory configured");
        Ok(stored)
    }

    pub fn list_directories(&self) -> Result<Vec<DirectoryView>> {
        let states: BTreeMap<String, SyncState> = self.store.list(DIRECTORY_SYNC)?.into_iter().collect();
        Ok(self
            .store
            .list::<Directory>(DIRECTORIES)?
            .into_iter()
            .map(|(name, d)| d.view(states.get(&name).cloned()))
            .collect())
    }

    pub fn get_directory(&self, name: &str) -> Result<DirectoryView> {
        let directory = self.stored_directory(name)?;
        Ok(directory.view(self.store.get(DIRECTORY_SYNC, name)?))
    }

    fn stored_directory(&self, name: &str) -> Result<Directory> {
        self.store
            .get::<Directory>(DIRECTORIES, name)?
            .ok_or_else(|| Error::NotFound(format!("no such directory: {name}")))
    }

    /// Removes a directory and the team mappings to it. Its users stay (with
    /// their memberships); they cannot log in until it is configured again.
    pub fn remove_directory(&self, name: &str) -> Result<()> {
        self.store.apply(|t| {
            if !t.delete(DIRECTORIES, name)? {
                return Ok(Err(Error::NotFound(format!("no such directory: {name}"))));
            }
            t.delete(DIRECTORY_SYNC, name)?;
            for (team, mapping) in t.list::<DirectoryGroup>(TEAM_GROUPS)? {
                if mapping.directory == name {
                    t.delete(TEAM_GROUPS, &team)?;
                }
            }
            Ok(Ok(()))
        })??;
        tracing::info!(directory = %name, "directory removed");
        Ok(())
    }

    /// The configurations of every directory, in name order.
    fn directory_configs(&self) -> Result<Vec<DirectoryConfig>> {
        Ok(self
            .store
            .list::<Directory>(DIRECTORIES)?
            .into_iter()
            .map(|(_, d)| d.config)
            .collect())
    }

    /// Checks a directory without changing anything: the service bind and
    /// the search for `username`, and with `password` the user's bind too.
    pub fn test_directory(&self, name: &str, username: &str, password: Option<&str>) -> Result<DirectoryUser> {
        let mut cfg = self.stored_directory(name)?.config;
        let found = match password {
            Some(password) => {
                // This directory, whatever the login's domain.
                cfg.domains.clear();
                ldap::authenticate(std::slice::from_ref(&cfg), username, password)
            }
            None => ldap::lookup_user(&cfg, username),
        };
        Ok(found?)
    }

    // --- teams and accounts ---

    /// Maps `team` to a directory group (`Some`) or removes its mapping.
    pub fn set_team_group(&self, team: &str, group: Option<DirectoryGroup>) -> Result<()> {
        let group = group.map(|g| DirectoryGroup {
            directory: g.directory,
            group: g.group.trim().to_owned(),
        });
        if group.as_ref().is_some_and(|g| g.group.is_empty()) {
            return Err(Error::Invalid(format!(
                "team {team}: empty directory group; give a group DN, name or (filter)"
            )));
        }
        self.store.apply(|t| {
            if t.get::<Team>(TEAMS, team)?.is_none() {
                return Ok(Err(Error::NotFound(format!("no such team: {team}"))));
            }
            match &group {
                Some(g) => {
                    if t.get::<Directory>(DIRECTORIES, &g.directory)?.is_none() {
                        return Ok(Err(Error::NotFound(format!("no such directory: {}", g.directory))));
                    }
                    t.put(TEAM_GROUPS, team, g)?;
                }
                None => {
                    if !t.delete(TEAM_GROUPS, team)? {
                        return Ok(Err(Error::NotFound(format!(
                            "team {team} is not synced from a directory"
                        ))));
                    }
                }
            }
            Ok(Ok(()))
        })?
    }

    /// Team → directory group, for every synced team.
    pub fn team_groups(&self) -> Result<BTreeMap<String, DirectoryGroup>> {
        Ok(self.store.list(TEAM_GROUPS)?.into_iter().collect())
    }

    /// Directory users by name.
    pub fn directory_accounts(&self) -> Result<BTreeMap<String, DirectoryAccount>> {
        let users: BTreeMap<String, User> = self.store.list(USERS)?.into_iter().collect();
        Ok(self
            .store
            .list::<DirectoryAccount>(DIRECTORY_ACCOUNTS)?
            .into_iter()
            .filter(|(name, a)| managed_by(users.get(name), Some(a), &a.directory))
            .collect())
    }

    /// Whether `user` is managed by a directory (and which).
    pub fn directory_of(&self, user: &str) -> Result<Option<String>> {
        let record = self.store.get::<User>(USERS, user)?;
        let account = self.store.get::<DirectoryAccount>(DIRECTORY_ACCOUNTS, user)?;
        Ok(account
            .filter(|a| managed_by(record.as_ref(), Some(a), &a.directory))
            .map(|a| a.directory))
    }

    /// Drops what this module keeps about a removed user or team.
    pub fn forget_directory_records(&self, user: Option<&str>, team: Option<&str>) -> Result<()> {
        self.store.apply(|t| {
            if let Some(user) = user {
                t.delete(DIRECTORY_ACCOUNTS, user)?;
            }
            if let Some(team) = team {
                t.delete(TEAM_GROUPS, team)?;
            }
            Ok(())
        })?;
        Ok(())
    }

    // --- login ---

    /// Checks a login: a local user's password, or a directory's. A
    /// directory user is created on first login and its synced teams follow
    /// its groups. Failures count toward the same per-user and per-source
    /// lockout as local ones; the reason is for the audit log only.
    pub fn authenticate_login(
        &self,
        login: &str,
        password: &str,
        source: Option<&str>,
    ) -> Result<Identity, AuthFailure> {
        let unreadable = |err: &dyn std::fmt::Display| {
            tracing::error!(error = %err, "reading directory users");
            AuthFailure {
                user: Some(login.to_owned()),
                reason: "directory state unreadable",
            }
        };
        let user = self.store.get::<User>(USERS, login).map_err(|e| unreadable(&e))?;
        let account = self
            .store
            .get::<DirectoryAccount>(DIRECTORY_ACCOUNTS, login)
            .map_err(|e| unreadable(&e))?;
        let managed = account.filter(|a| managed_by(user.as_ref(), Some(a), &a.directory));
        if user.is_some() && managed.is_none() {
            return self.authenticate_password(login, password, source);
        }
        let configs = self.directory_configs().map_err(|e| unreadable(&e))?;
        if configs.is_empty() && managed.is_none() {
            return self.authenticate_password(login, password, source);
        }
        // One failure count per directory user, whichever form the login
        // takes (`alice`, `ALICE`, `CORP\alice`, `alice@corp.example.com`).
        let limit_key = match &managed {
            Some(_) => login.to_lowercase(),
            None => ldap::select_directory(&configs, login)
                .map_or_else(|_| login.to_lowercase(), |(_, username)| username.to_lowercase()),
        };
        self.login_allowed(&limit_key, source)?;
        let found = match &managed {
            Some(account) => match configs.iter().find(|c| c.name == account.directory) {
                Some(cfg) => {
                    // The user's own directory, whatever domains it lists.
                    let mut cfg = cfg.clone();
                    cfg.domains.clear();
                    ldap::authenticate(&[cfg], login, password)
                }
                None => {
                    return Err(AuthFailure {
                        user: Some(login.to_owned()),
                        reason: "the user's directory is not configured",
                    })
                }
            },
            None => ldap::authenticate(&configs, login, password),
        };
        match found {
            Ok(found) => {
                let cfg = configs.iter().find(|c| c.name == found.directory);
                let by_search = cfg
                    .map(|cfg| self.search_memberships(cfg, &found.dn))
                    .unwrap_or_default();
                let name = self.provision(&found, &by_search, source)?;
                self.login_succeeded(&limit_key);
                Ok(Identity {
                    name,
                    scopes: None,
                    token_id: None,
                })
            }
            Err(err) => {
                let (reason, counted) = match &err {
                    LdapError::WrongPassword { .. } => ("directory: wrong password", true),
                    LdapError::Disabled { .. } => ("directory: account disabled", true),
                    LdapError::UnknownUser { .. } => ("directory: no such user", true),
                    LdapError::NoDirectory { .. } => ("no such user, and no directory serves the login", true),
                    LdapError::EmptyCredentials { .. } => ("directory: empty password", true),
                    LdapError::AmbiguousUser { .. } => ("directory: the login matches several entries", true),
                    // Not the caller's guess: the directory or its configuration failed.
                    _ => ("directory unavailable or misconfigured", false),
                };
                if counted {
                    tracing::info!(error = %err, "directory login refused");
                    self.login_failed(&limit_key, source);
                } else {
                    tracing::error!(error = %err, "directory login could not be checked");
                }
                Err(AuthFailure {
                    user: Some(login.to_owned()),
                    reason,
                })
            }
        }
    }

    /// Whether the user entry `dn` matches each team filter mapped to `cfg`
    /// (teams synced by search); empty when the directory cannot say, and
    /// those teams then wait for the next sync.
    fn search_memberships(&self, cfg: &DirectoryConfig, dn: &str) -> BTreeMap<String, bool> {
        let filters: Vec<String> = match self.store.list::<DirectoryGroup>(TEAM_GROUPS) {
            Ok(groups) => groups
                .into_iter()
                .filter(|(_, g)| g.directory == cfg.name && g.group.starts_with('('))
                .map(|(_, g)| g.group)
                .collect(),
            Err(err) => {
                tracing::error!(error = %err, "reading team mappings");
                return BTreeMap::new();
            }
        };
        if filters.is_empty() {
            return BTreeMap::new();
        }
        match ldap::entry_matches(cfg, dn, &filters) {
            Ok(matches) => filters.into_iter().zip(matches).collect(),
            Err(err) => {
                tracing::warn!(error = %err, "deciding teams synced by search at login");
                BTreeMap::new()
            }
        }
    }

    /// Creates (first login) or refreshes the directory user `found` and
    /// sets its synced team memberships from its groups (and `by_search`,
    /// the filters it matches); returns its name.
    fn provision(
        &self,
        found: &DirectoryUser,
        by_search: &BTreeMap<String, bool>,
        source: Option<&str>,
    ) -> Result<String, AuthFailure> {
        let name = found.username.clone();
        let refuse = |reason| AuthFailure {
            user: Some(name.clone()),
            reason,
        };
        if check_name("user", &name).is_err() {
            return Err(refuse("the directory username is not a valid berth user name"));
        }
        let now = self.now_secs_text();
        let applied = self.store.apply(|t| {
            let user = t.get::<User>(USERS, &name)?;
            let account = t.get::<DirectoryAccount>(DIRECTORY_ACCOUNTS, &name)?;
            let created = match &user {
                None => true,
                Some(_) if managed_by(user.as_ref(), account.as_ref(), &found.directory) => false,
                Some(_) => return Ok(None),
            };
            if created {
                put_directory_user(t, &name, &now)?;
            }
            let restored = account.as_ref().is_some_and(|a| a.disabled.is_some());
            let record = DirectoryAccount {
                user: name.clone(),
                directory: found.directory.clone(),
                dn: found.dn.clone(),
                email: found.email.clone(),
                full_name: found.full_name.clone(),
                provisioned: account
                    .filter(|_| !created)
                    .map_or_else(|| now.clone(), |a| a.provisioned),
                last_login: Some(now.clone()),
                disabled: None,
            };
            t.put(DIRECTORY_ACCOUNTS, &name, &record)?;
            let changes = login_memberships(t, &name, &found.directory, &found.groups, by_search)?;
            Ok(Some((created, restored, changes)))
        });
        let (created, restored, changes) = match applied {
            Ok(Some(done)) => done,
            Ok(None) => {
                tracing::warn!(user = %name, directory = %found.directory, "directory login refused: the name belongs to a local user or another directory");
                return Err(refuse("the name belongs to a local user or another directory"));
            }
            Err(err) => {
                tracing::error!(error = %err, user = %name, "provisioning a directory user");
                return Err(refuse("provisioning the directory user failed"));
            }
        };
        if created || restored || !changes.is_empty() {
            if let Err(err) = self.reload() {
                tracing::error!(error = %err, "reloading the access index");
            }
        }
        let actor = Actor {
            user: &name,
            source: source.unwrap_or("unknown"),
        };
        if created {
            tracing::info!(user = %name, directory = %found.directory, dn = %found.dn, "directory user provisioned at login");
            self.audit_provisioned(&actor, &name, &found.directory, &found.dn);
        }
        self.audit_memberships(&actor, &found.directory, &changes);
        Ok(name)
    }

    // --- team sync ---

    /// Syncs every directory, or only `only`: each mapped team gets exactly
    /// the directory users its group lists (users created as needed). Every
    /// change is audited as done by `actor` from `source`.
    pub fn sync_directories(&self, only: Option<&str>, actor: &str, source: &str) -> Result<Vec<SyncReport>> {
        let _serial = SYNC_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let directories: Vec<Directory> = match only {
            Some(name) => vec![self.stored_directory(name)?],
            None => self.store.list(DIRECTORIES)?.into_iter().map(|(_, d)| d).collect(),
        };
        let actor = Actor { user: actor, source };
        directories
            .iter()
            .map(|d| self.sync_directory(&d.config, &actor))
            .collect()
    }

    fn sync_directory(&self, cfg: &DirectoryConfig, actor: &Actor) -> Result<SyncReport> {
        let span = tracing::info_span!("directory_sync", directory = %cfg.name);
        let _enter = span.enter();
        let mappings: Vec<(String, DirectoryGroup)> = self
            .store
            .list::<DirectoryGroup>(TEAM_GROUPS)?
            .into_iter()
            .filter(|(_, g)| g.directory == cfg.name)
            .collect();
        // Read the directory first, outside any transaction. Once the server
        // itself fails, the other groups are not tried.
        let mut server_error: Option<String> = None;
        let reads: Vec<(String, DirectoryGroup, Result<Vec<DirectoryMember>, String>)> = mappings
            .into_iter()
            .map(|(team, group)| {
                let read = match &server_error {
                    Some(err) => Err(err.clone()),
                    None => ldap::group_member_entries(cfg, &group.group).map_err(|err| {
                        tracing::warn!(error = %err, team = %team, "reading a directory group");
                        if matches!(
                            err,
                            LdapError::Unreachable { .. } | LdapError::Tls { .. } | LdapError::ServiceBind { .. }
                        ) {
                            server_error = Some(err.to_string());
                        }
                        err.to_string()
                    }),
                };
                (team, group, read)
            })
            .collect();

        // Every user this directory provisioned: still there, and enabled?
        let accounts: Vec<String> = self
            .store
            .list::<DirectoryAccount>(DIRECTORY_ACCOUNTS)?
            .into_iter()
            .filter(|(_, a)| a.directory == cfg.name)
            .map(|(name, _)| name)
            .collect();
        let states = match &server_error {
            Some(err) => Err(err.clone()),
            None if accounts.is_empty() => Ok(Vec::new()),
            None => ldap::account_states(cfg, &accounts).map_err(|err| {
                tracing::warn!(error = %err, "checking the directory's users");
                err.to_string()
            }),
        };

        let now = self.now_secs_text();
        let (created_users, teams, changes, disabled_users, restored_users) = self.store.apply(|t| {
            let (disabled_users, restored_users) = match &states {
                Ok(states) => apply_account_states(t, cfg, &accounts, states, &now)?,
                Err(_) => (Vec::new(), Vec::new()),
            };
            let mut created_users = Vec::new();
            let mut teams = Vec::new();
            let mut changes = Vec::new();
            for (team_name, group, read) in &reads {
                let mut report = TeamSyncReport {
                    team: team_name.clone(),
                    group: group.group.clone(),
                    ..TeamSyncReport::default()
                };
                let members = match read {
                    Ok(members) => members,
                    Err(err) => {
                        report.error = Some(err.clone());
                        teams.push(report);
                        continue;
                    }
                };
                let Some(mut team) = t.get::<Team>(TEAMS, team_name)? else {
                    // The team went away behind the mapping's back.
                    t.delete(TEAM_GROUPS, team_name)?;
                    continue;
                };
                let mut current = Vec::new();
                for member in &team.members {
                    let user = t.get::<User>(USERS, member)?;
                    let account = t.get::<DirectoryAccount>(DIRECTORY_ACCOUNTS, member)?;
                    if managed_by(user.as_ref(), account.as_ref(), &cfg.name) {
                        current.push(member.clone());
                    }
                }
                let wanted: Vec<String> = members.iter().map(|m| m.username.clone()).collect();
                let (add, remove) = ldap::sync_plan(&current, &wanted);
                for username in add {
                    let Some(member) = members.iter().find(|m| m.username == username) else {
                        continue;
                    };
                    match ensure_directory_user(t, member, &cfg.name, &now)? {
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
                    t.put(TEAMS, team_name, &team)?;
                }
                for (list, added) in [(&report.added, true), (&report.removed, false)] {
                    changes.extend(list.iter().map(|user| MembershipChange {
                        team: team_name.clone(),
                        group: group.group.clone(),
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
                .filter_map(|r: &TeamSyncReport| r.error.as_ref().map(|e| format!("team {}: {e}", r.team)))
                .collect();
            let state = SyncState {
                time: now.clone(),
                ok: errors.is_empty(),
                errors,
                added: changes.iter().filter(|c| c.added).count(),
                removed: changes.iter().filter(|c| !c.added).count(),
                created_users: created_users.len(),
            };
            t.put(DIRECTORY_SYNC, &cfg.name, &state)?;
            Ok((created_users, teams, changes, disabled_users, restored_users))
        })?;
        if !created_users.is_empty() || !changes.is_empty() || !disabled_users.is_empty() || !restored_users.is_empty()
        {
            self.reload()?;
        }
        for cut in &disabled_users {
            tracing::warn!(user = %cut.user, reason = %cut.reason, "directory user disabled");
            self.audit_entry(NewAuditEntry {
                user: actor.user.to_owned(),
                source: actor.source.to_owned(),
                action: "directory user disable".to_owned(),
                resource: "user".to_owned(),
                object: format!("user:{}", cut.user),
                result: "allowed".to_owned(),
                status: 200,
                detail: format!(
                    "{}: {} token(s) and {} session(s) removed, {} client bundle(s) revoked",
                    cut.reason, cut.tokens, cut.sessions, cut.bundles
                ),
            });
        }
        for user in &restored_users {
            self.audit_entry(NewAuditEntry {
                user: actor.user.to_owned(),
                source: actor.source.to_owned(),
                action: "directory user restore".to_owned(),
                resource: "user".to_owned(),
                object: format!("user:{user}"),
                result: "allowed".to_owned(),
                status: 200,
                detail: format!("directory {} has the user again", cfg.name),
            });
        }
        if let Err(err) = &states {
            self.audit_entry(NewAuditEntry {
                user: actor.user.to_owned(),
                source: actor.source.to_owned(),
                action: "directory sync".to_owned(),
                resource: "user".to_owned(),
                object: format!("directory:{}", cfg.name),
                result: "failed".to_owned(),
                status: 502,
                detail: format!("the directory's users could not be checked: {err}"),
            });
        }
        for user in &created_users {
            let dn = reads
                .iter()
                .filter_map(|(_, _, read)| read.as_ref().ok())
                .flatten()
                .find(|m| &m.username == user)
                .map(|m| m.dn.as_str())
                .unwrap_or_default();
            self.audit_provisioned(actor, user, &cfg.name, dn);
        }
        self.audit_memberships(actor, &cfg.name, &changes);
        for report in teams.iter().filter(|r| r.error.is_some()) {
            self.audit_entry(NewAuditEntry {
                user: actor.user.to_owned(),
                source: actor.source.to_owned(),
                action: "directory sync".to_owned(),
                resource: "user".to_owned(),
                object: format!("team:{}", report.team),
                result: "failed".to_owned(),
                status: 502,
                detail: format!(
                    "directory {}: group {}: {}",
                    cfg.name,
                    report.group,
                    report.error.as_deref().unwrap_or_default()
                ),
            });
        }
        tracing::info!(
            created = created_users.len(),
            added = changes.iter().filter(|c| c.added).count(),
            removed = changes.iter().filter(|c| !c.added).count(),
            "directory synced"
        );
        Ok(SyncReport {
            directory: cfg.name.clone(),
            time: now,
            created_users,
            teams,
            disabled_users,
            restored_users,
            account_check_error: states.err(),
        })
    }

    /// The directories due for a scheduled sync now, and how long until the
    /// next one is due. `default_interval` applies to directories without
    /// their own; zero turns their scheduled sync off.
    pub fn sync_schedule(&self, default_interval: Duration) -> Result<(Vec<String>, Option<Duration>)> {
        let states: BTreeMap<String, SyncState> = self.store.list(DIRECTORY_SYNC)?.into_iter().collect();
        let entries: Vec<ScheduleEntry> = self
            .store
            .list::<Directory>(DIRECTORIES)?
            .into_iter()
            .map(|(name, d)| {
                let interval = d
                    .sync_interval_minutes
                    .map(|m| Duration::from_secs(m.saturating_mul(60)));
                let last = states
                    .get(&name)
                    .and_then(|s| DateTime::parse_from_rfc3339(&s.time).ok())
                    .map(|t| t.with_timezone(&Utc));
                ScheduleEntry { name, interval, last }
            })
            .collect();
        Ok(schedule(&entries, default_interval, self.now()))
    }

    // --- audit ---

    fn audit_entry(&self, entry: NewAuditEntry) {
        if let Err(err) = self.audit_append(entry) {
            tracing::error!(error = %err, "cannot append a directory change to the audit log");
        }
    }

    fn audit_provisioned(&self, actor: &Actor, user: &str, directory: &str, dn: &str) {
        self.audit_entry(NewAuditEntry {
            user: actor.user.to_owned(),
            source: actor.source.to_owned(),
            action: "directory provision".to_owned(),
            resource: "user".to_owned(),
            object: format!("user:{user}"),
            result: "allowed".to_owned(),
            status: 201,
            detail: format!("created from directory {directory} ({dn})"),
        });
    }

    fn audit_memberships(&self, actor: &Actor, directory: &str, changes: &[MembershipChange]) {
        for change in changes {
            let (action, verb) = if change.added {
                ("directory team add", "in")
            } else {
                ("directory team remove", "no longer in")
            };
            self.audit_entry(NewAuditEntry {
                user: actor.user.to_owned(),
                source: actor.source.to_owned(),
                action: action.to_owned(),
                resource: "user".to_owned(),
                object: format!("team:{}/{}", change.team, change.user),
                result: "allowed".to_owned(),
                status: 200,
                detail: format!(
                    "{} is {verb} group {} of directory {directory}",
                    change.user, change.group
                ),
            });
        }
    }
}

/// Cuts off the accounts the directory no longer has (or has disabled):
/// their tokens and sessions are deleted and their client bundles revoked,
/// in the sync's transaction; accounts it has again are restored.
fn apply_account_states(
    t: &mut Txn,
    cfg: &DirectoryConfig,
    accounts: &[String],
    states: &[ldap::AccountState],
    now: &str,
) -> berth_store::Result<(Vec<DisabledUser>, Vec<String>)> {
    let mut disabled = Vec::new();
    let mut restored = Vec::new();
    for (user, state) in accounts.iter().zip(states) {
        let Some(mut account) = t.get::<DirectoryAccount>(DIRECTORY_ACCOUNTS, user)? else {
            continue;
        };
        if account.directory != cfg.name {
            continue;
        }
        let reason = match state {
            ldap::AccountState::Active => {
                if account.disabled.take().is_some() {
                    t.put(DIRECTORY_ACCOUNTS, user, &account)?;
                    restored.push(user.clone());
                }
                continue;
            }
            ldap::AccountState::Gone => format!("no longer in directory {}", cfg.name),
            ldap::AccountState::Disabled => format!("disabled in directory {}", cfg.name),
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
fn revoke_credentials(t: &mut Txn, user: &str, now: &str) -> berth_store::Result<(usize, usize, usize)> {
    let mut tokens = 0;
    for (key, token) in t.list::<crate::records::TokenRecord>(crate::TOKENS)? {
        if token.user == user {
            t.delete(crate::TOKENS, &key)?;
            tokens += 1;
        }
    }
    let sessions = crate::session::delete_user_sessions(t, user)?;
    let mut bundles = 0;
    for (key, mut bundle) in t.list::<berth_cluster::Bundle>(berth_cluster::BUNDLES)? {
        if bundle.user == user && bundle.revoked.is_none() {
            bundle.revoked = Some(now.to_owned());
            t.put(berth_cluster::BUNDLES, &key, &bundle)?;
            bundles += 1;
        }
    }
    Ok((tokens, sessions, bundles))
}

/// A berth user without a local password.
fn put_directory_user(t: &mut Txn, name: &str, now: &str) -> berth_store::Result<()> {
    t.put(
        USERS,
        name,
        &User {
            name: name.to_owned(),
            password_hash: String::new(),
            created: now.to_owned(),
        },
    )
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
) -> berth_store::Result<Ensured> {
    let user = t.get::<User>(USERS, &member.username)?;
    let account = t.get::<DirectoryAccount>(DIRECTORY_ACCOUNTS, &member.username)?;
    if user.is_some() {
        return Ok(if managed_by(user.as_ref(), account.as_ref(), directory) {
            Ensured::Existing
        } else {
            Ensured::Refused("the name belongs to a local user or another directory")
        });
    }
    if check_name("user", &member.username).is_err() {
        return Ok(Ensured::Refused("not a valid berth user name"));
    }
    put_directory_user(t, &member.username, now)?;
    t.put(
        DIRECTORY_ACCOUNTS,
        &member.username,
        &DirectoryAccount {
            user: member.username.clone(),
            directory: directory.to_owned(),
            dn: member.dn.clone(),
            email: member.email.clone(),
            full_name: member.full_name.clone(),
            provisioned: now.to_owned(),
            last_login: None,
            disabled: None,
        },
    )?;
    Ok(Ensured::Created)
}

/// At login: `user` joins or leaves each team synced from `directory`, as
/// its `groups` say, or for teams synced by search, as `by_search` says
/// (a filter missing there waits for the next sync).
fn login_memberships(
    t: &mut Txn,
    user: &str,
    directory: &str,
    groups: &[String],
    by_search: &BTreeMap<String, bool>,
) -> berth_store::Result<Vec<MembershipChange>> {
    let mut changes = Vec::new();
    for (team_name, mapping) in t.list::<DirectoryGroup>(TEAM_GROUPS)? {
        if mapping.directory != directory {
            continue;
        }
        let decided = ldap::in_group(groups, &mapping.group).or_else(|| by_search.get(&mapping.group).copied());
        let Some(member) = decided else {
            continue;
        };
        let Some(mut team) = t.get::<Team>(TEAMS, &team_name)? else {
            continue;
        };
        let changed = if member {
            team.members.insert(user.to_owned())
        } else {
            team.members.remove(user)
        };
        if changed {
            t.put(TEAMS, &team_name, &team)?;
            changes.push(MembershipChange {
                team: team_name,
                group: mapping.group,
                user: user.to_owned(),
                added: member,
            });
        }
    }
    Ok(changes)
}

/// A directory as the scheduler sees it.
#[derive(Debug)]
struct ScheduleEntry {
    name: String,
    /// Its own interval, if it has one.
    interval: Option<Duration>,
    last: Option<DateTime<Utc>>,
}

/// Which directories are due at `now` and how long until the next one is.
/// A directory never synced is due at once; one with a zero interval never is.
fn schedule(
    entries: &[ScheduleEntry],
    default_interval: Duration,
    now: DateTime<Utc>,
) -> (Vec<String>, Option<Duration>) {
    let mut due = Vec::new();
    let mut next: Option<Duration> = None;
    for ScheduleEntry { name, interval, last } in entries {
        let interval = interval.unwrap_or(default_interval);
        if interval.is_zero() {
            continue;
        }
        let wait = match last {
            None => Duration::ZERO,
            Some(last) => {
                let elapsed = (now - *last).to_std().unwrap_or(Duration::ZERO);
                interval.saturating_sub(elapsed)
            }
        };
        if wait.is_zero() {
            due.push(name.clone());
            // Due again one interval from now.
            next = Some(next.map_or(interval, |n| n.min(interval)));
        } else {
            next = Some(next.map_or(wait, |n| n.min(wait)));
        }
    }
    (due, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_picks_due_directories_and_the_next_wake() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("time");
        let ago = |secs: i64| Some(now - chrono::TimeDelta::seconds(secs));
        let min = |m: u64| Some(Duration::from_secs(m * 60));
        let hour = Duration::from_secs(3600);
        let e = |name: &str, interval, last| ScheduleEntry {
            name: name.to_owned(),
            interval,
            last,
        };
        // (entries, default interval, due, next wake)
        type Case = (Vec<ScheduleEntry>, Duration, Vec<&'static str>, Option<Duration>);
        let cases: Vec<Case> = vec![
            (vec![], hour, vec![], None),
            (vec![e("new", None, None)], hour, vec!["new"], Some(hour)),
            (
                vec![e("recent", None, ago(600))],
                hour,
                vec![],
                Some(Duration::from_secs(3000)),
            ),
            (vec![e("old", None, ago(7200))], hour, vec!["old"], Some(hour)),
            (
                vec![e("own", min(5), ago(600)), e("default", None, ago(60))],
                hour,
                vec!["own"],
                Some(Duration::from_secs(300)),
            ),
            (vec![e("off", None, None)], Duration::ZERO, vec![], None),
            (
                vec![e("own-on", min(1), ago(30))],
                Duration::ZERO,
                vec![],
                Some(Duration::from_secs(30)),
            ),
            // A clock that went backwards: not due before the interval.
            (vec![e("future", None, ago(-60))], hour, vec![], Some(hour)),
        ];
        for (entries, default, due, next) in cases {
            let got = schedule(&entries, default, now);
            assert_eq!(got, (due.iter().map(|s| s.to_string()).collect(), next), "{entries:?}");
        }
    }

    #[test]
    fn views_redact_the_bind_password() {
        let directory = Directory {
            config: DirectoryConfig {
                name: "corp".to_owned(),
                url: "ldaps://dc1.corp.example.com".to_owned(),
                start_tls: false,
                ca_pem: None,
                bind_dn: "cn=svc".to_owned(),
                bind_password: "bind-Secret-42".to_owned(),
                user_base_dn: "dc=corp".to_owned(),
                user_filter: "(uid={username})".to_owned(),
                username_attr: "uid".to_owned(),
                email_attr: "mail".to_owned(),
                full_name_attr: "cn".to_owned(),
                team_sync: ldap::TeamSync::UserMemberOf {
                    attr: "memberOf".to_owned(),
                },
                domains: vec![],
            },
            sync_interval_minutes: None,
            created: String::new(),
        };
        let view = serde_json::to_string(&directory.view(None)).expect("json");
        assert!(!view.contains("bind-Secret-42"), "{view}");
        assert!(view.contains(r#""bind_password":"***""#), "{view}");
        assert!(!format!("{directory:?}").contains("bind-Secret-42"));
        // Stored form round-trips (flattened config).
        let stored = serde_json::to_string(&directory).expect("json");
        let back: Directory = serde_json::from_str(&stored).expect("parse");
        assert_eq!(back, directory);
    }
}
