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

use chrono::{DateTime, Utc};

use crate::access::{check_name, unexpected};
use crate::ldap::{self, DirectoryConfig, DirectoryMember, DirectoryUser, LdapError};
use crate::records::User;
use crate::{Access, AuthFailure, Error, Identity, NewAuditEntry, Result, USERS};

/// Directories by name ([`Directory`]); directory users by berth user name
/// ([`DirectoryAccount`]); team → directory group mappings by team name
/// ([`DirectoryGroup`]); the last sync of each directory by name
/// ([`SyncState`]).
pub use berth_state::tables::{DIRECTORIES, DIRECTORY_ACCOUNTS, DIRECTORY_SYNC, TEAM_GROUPS};

/// What views show instead of a bind password.
pub const REDACTED: &str = "***";

/// The name `POST /v1/directories/sync` takes: no directory may have it.
const RESERVED_NAMES: [&str; 1] = ["sync"];

/// Sync runs one at a time in a process (scheduled and on demand).
static SYNC_LOCK: Mutex<()> = Mutex::new(());

use berth_state::directory::{managed_by, GroupRead};
pub use berth_state::directory::{
    AccountState, Directory, DirectoryAccount, DirectoryGroup, DisabledUser, MembershipChange, SkippedMember,
    SyncState, TeamSyncReport,
};
use berth_state::{ClusterCommand, Outcome};

pub use berth_model::directory::{DirectoryView, SyncReport};

/// Who caused a change, for the audit log.
struct Actor<'a> {
    user: &'a str,
    source: &'a str,
}

/// A directory as the API shows it.
fn view(directory: &Directory, last_sync: Option<SyncState>) -> DirectoryView {
    let mut config: berth_model::directory::DirectoryConfig = directory.config.clone().into();
    if !config.bind_password.is_empty() {
        config.bind_password = REDACTED.to_owned();
    }
    DirectoryView {
        config,
        sync_interval_minutes: directory.sync_interval_minutes,
        created: directory.created.clone(),
        last_sync: last_sync.map(Into::into),
    }
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
        directory.created = self.now_secs_text();
        let created = match self.state.propose(ClusterCommand::PutDirectory { directory })? {
            Outcome::Created(created) => created,
            other => return Err(unexpected(other)),
        };
        let stored = (self.get_directory(&name)?, created);
        tracing::info!(directory = %name, url = %stored.0.config.url, "directory configured");
        Ok(stored)
    }

    pub fn list_directories(&self) -> Result<Vec<DirectoryView>> {
        let states: BTreeMap<String, SyncState> = self.store.list(DIRECTORY_SYNC)?.into_iter().collect();
        Ok(self
            .store
            .list::<Directory>(DIRECTORIES)?
            .into_iter()
            .map(|(name, d)| view(&d, states.get(&name).cloned()))
            .collect())
    }

    pub fn get_directory(&self, name: &str) -> Result<DirectoryView> {
        let directory = self.stored_directory(name)?;
        Ok(view(&directory, self.store.get(DIRECTORY_SYNC, name)?))
    }

    fn stored_directory(&self, name: &str) -> Result<Directory> {
        self.store
            .get::<Directory>(DIRECTORIES, name)?
            .ok_or_else(|| Error::NotFound(format!("no such directory: {name}")))
    }

    /// Removes a directory and the team mappings to it. Its users stay (with
    /// their memberships); they cannot log in until it is configured again.
    pub fn remove_directory(&self, name: &str) -> Result<()> {
        self.state
            .propose(ClusterCommand::RemoveDirectory { name: name.to_owned() })?;
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
        self.state.propose(ClusterCommand::SetTeamGroup {
            team: team.to_owned(),
            group,
        })?;
        Ok(())
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
        self.state.propose(ClusterCommand::ForgetDirectoryRecords {
            user: user.map(str::to_owned),
            team: team.map(str::to_owned),
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
        // Each team synced from this directory: is the user in its group?
        // (A filter the login could not decide waits for the next sync.)
        let mappings = match self.store.list::<DirectoryGroup>(TEAM_GROUPS) {
            Ok(m) => m,
            Err(err) => {
                tracing::error!(error = %err, user = %name, "reading team mappings at login");
                return Err(refuse("provisioning the directory user failed"));
            }
        };
        let decisions: BTreeMap<String, bool> = mappings
            .into_iter()
            .filter(|(_, m)| m.directory == found.directory)
            .filter_map(|(team, m)| {
                let decided = ldap::in_group(&found.groups, &m.group).or_else(|| by_search.get(&m.group).copied());
                decided.map(|member| (team, member))
            })
            .collect();
        let member = ldap::DirectoryMember {
            dn: found.dn.clone(),
            username: name.clone(),
            email: found.email.clone(),
            full_name: found.full_name.clone(),
        };
        let applied = self.state.propose(ClusterCommand::DirectoryLogin {
            directory: found.directory.clone(),
            member,
            decisions,
            now: self.now_secs_text(),
        });
        let (created, changes) = match applied {
            Ok(Outcome::Login(done)) => (done.created, done.changes),
            Ok(other) => {
                tracing::error!(outcome = ?other, user = %name, "provisioning a directory user");
                return Err(refuse("provisioning the directory user failed"));
            }
            Err(berth_state::Error::Rejected(berth_state::Rejected::Conflict(_))) => {
                tracing::warn!(user = %name, directory = %found.directory, "directory login refused: the name belongs to a local user or another directory");
                return Err(refuse("the name belongs to a local user or another directory"));
            }
            Err(err) => {
                tracing::error!(error = %err, user = %name, "provisioning a directory user");
                return Err(refuse("provisioning the directory user failed"));
            }
        };
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
        let command = ClusterCommand::DirectorySync {
            directory: cfg.name.clone(),
            reads: reads
                .iter()
                .map(|(team, group, read)| GroupRead {
                    team: team.clone(),
                    group: group.clone(),
                    members: read.clone(),
                })
                .collect(),
            accounts: accounts.clone(),
            states: states.clone(),
            now: now.clone(),
        };
        let applied = match self.state.propose(command)? {
            Outcome::Sync(applied) => applied,
            other => return Err(unexpected(other)),
        };
        let (created_users, teams, changes, disabled_users, restored_users) = (
            applied.created_users,
            applied.teams,
            applied.changes,
            applied.disabled_users,
            applied.restored_users,
        );
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
            teams: teams.into_iter().map(Into::into).collect(),
            disabled_users: disabled_users.into_iter().map(Into::into).collect(),
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
        let view = serde_json::to_string(&view(&directory, None)).expect("json");
        assert!(!view.contains("bind-Secret-42"), "{view}");
        assert!(view.contains(r#""bind_password":"***""#), "{view}");
        assert!(!format!("{directory:?}").contains("bind-Secret-42"));
        // Stored form round-trips (flattened config).
        let stored = serde_json::to_string(&directory).expect("json");
        let back: Directory = serde_json::from_str(&stored).expect("parse");
        assert_eq!(back, directory);
    }
}
