//! The access service: identities (users, teams, organizations), roles,
//! grants and personal access tokens in the cluster tables, the bootstrap
//! admin, password and token authentication with failed-login limits, and
//! the in-memory [`Index`] every decision reads, rebuilt after each change.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use berth_state::records::RepositoryCollection;
use berth_state::tables::REPOSITORY_COLLECTIONS;
use berth_state::{ClusterCommand, Outcome, State};
use berth_store::Store;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::policy::{builtin_role, collection_path, PermSet, BUILTIN_ROLES};
use crate::records::{Grant, Org, Role, Team, TokenRecord, TokenView, User, UserView};
use crate::{Error, Identity, Index, Permission, Result, GRANTS, ORGS, ROLES, TEAMS, TOKENS, USERS};

/// The time source; tests pass a fixed or stepping one.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The prefix of every personal access token.
pub const TOKEN_PREFIX: &str = "berth_pat_";

/// Failed logins counted over this many seconds...
const FAILURE_WINDOW: i64 = 900;
/// ...lock the user after this many...
const USER_FAILURE_LIMIT: usize = 5;
/// ...and the source address after this many...
const SOURCE_FAILURE_LIMIT: usize = 20;
/// ...for this many seconds.
const LOCKOUT: i64 = 900;

/// Why a login or token was refused. The API says only "invalid
/// credentials"; the reason goes to the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    pub user: Option<String>,
    pub reason: &'static str,
}

pub struct Access {
    /// Cluster state: changed only through commands.
    pub(crate) state: State,
    /// `state`'s store, for reads.
    pub(crate) store: Store,
    /// Follows cluster state (see [`Access::open`]).
    index: Arc<RwLock<Arc<Index>>>,
    limiter: Mutex<Limiter>,
    pub(crate) audit_key: [u8; 32],
    pub(crate) audit_extras: crate::audit::AuditExtras,
    pub(crate) audit_lock: Mutex<()>,
    pub(crate) checkpoint_every: u64,
    pub(crate) clock: Clock,
}

impl Access {
    /// Opens access control on cluster state, with the audit key
    /// (`<data_root>/auth/audit.key`, 0600) and, on a fresh cluster, the
    /// `admin` user whose one-time password goes to
    /// `<data_root>/admin-password` (0600). Returns that file's path when
    /// it was written now.
    ///
    /// The access index and the audit levels follow `state`: they are
    /// rebuilt after every command that changes them, whoever proposed it.
    pub fn open(state: State, data_root: &Path) -> Result<(Self, Option<PathBuf>)> {
        Self::open_with_clock(state, data_root, Arc::new(Utc::now))
    }

    pub fn open_with_clock(state: State, data_root: &Path, clock: Clock) -> Result<(Self, Option<PathBuf>)> {
        let audit_key = load_or_create_key(&data_root.join("auth").join("audit.key"))?;
        let store = state.store().clone();
        let index = Arc::new(RwLock::new(Arc::new(Index::default())));
        let audit_extras = crate::audit::AuditExtras::default();
        {
            let (store, index, levels) = (store.clone(), index.clone(), audit_extras.levels.clone());
            state.subscribe(move |command| {
                if command.changes_access() {
                    let built =
                        build_index(&store).map_err(|e| format!("the access index could not be rebuilt: {e}"))?;
                    set_index(&index, built);
                }
                if let ClusterCommand::SetAuditLevel { resource, level } = command {
                    crate::audit::follow_level(&levels, resource, *level);
                }
                Ok(())
            });
        }
        let access = Self {
            state,
            store,
            index,
            limiter: Mutex::new(Limiter::default()),
            audit_key,
            audit_extras,
            audit_lock: Mutex::new(()),
            checkpoint_every: 64,
            clock,
        };
        let mut written = None;
        if access.store.list::<serde::de::IgnoredAny>(USERS)?.is_empty() {
            let password = random_secret(18);
            let path = data_root.join("admin-password");
            write_private(&path, format!("{password}\n").as_bytes())?;
            access.create_user("admin", &password)?;
            access.create_grant("user:admin", "admin", "/")?;
            written = Some(path);
        }
        access.reload()?;
        Ok((access, written))
    }

    /// Checkpoint the audit chain every `n` entries (tests use small ones).
    pub fn set_checkpoint_interval(&mut self, n: u64) {
        self.checkpoint_every = n.max(1);
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    fn now_text(&self) -> String {
        self.now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    /// The current index; cheap (one `Arc` clone).
    pub fn index(&self) -> Arc<Index> {
        match self.index.read() {
            Ok(i) => i.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Rebuilds the index from the store.
    pub fn reload(&self) -> Result<()> {
        set_index(&self.index, build_index(&self.store)?);
        Ok(())
    }

    /// Cluster state, as this service changes it.
    pub fn state(&self) -> &State {
        &self.state
    }
}

/// The access index as cluster state has it now.
fn build_index(store: &Store) -> Result<Index> {
    let users: Vec<String> = store.list::<User>(USERS)?.into_iter().map(|(k, _)| k).collect();
    let teams: Vec<Team> = store.list(TEAMS)?.into_iter().map(|(_, v)| v).collect();
    let orgs: Vec<Org> = store.list(ORGS)?.into_iter().map(|(_, v)| v).collect();
    let roles: Vec<Role> = store.list(ROLES)?.into_iter().map(|(_, v)| v).collect();
    let grants: Vec<Grant> = store.list(GRANTS)?.into_iter().map(|(_, v)| v).collect();
    let tokens: Vec<TokenRecord> = store.list(TOKENS)?.into_iter().map(|(_, v)| v).collect();
    let mut index = Index::build(&users, &teams, &orgs, &roles, &grants, &tokens);
    let repos = store.list::<RepositoryCollection>(REPOSITORY_COLLECTIONS)?;
    index.set_repository_collections(repos.into_iter().map(|(_, r)| (r.prefix, r.collection)).collect());
    index.set_disabled(
        store
            .list::<crate::directory::DirectoryAccount>(crate::directory::DIRECTORY_ACCOUNTS)?
            .into_iter()
            .filter_map(|(name, a)| Some((name, a.disabled?)))
            .collect(),
    );
    Ok(index)
}

fn set_index(cell: &RwLock<Arc<Index>>, index: Index) {
    let index = Arc::new(index);
    match cell.write() {
        Ok(mut i) => *i = index,
        Err(poisoned) => *poisoned.into_inner() = index,
    }
}

/// An outcome a command cannot have answered: a bug, reported as one.
pub(crate) fn unexpected(outcome: Outcome) -> Error {
    Error::Invalid(format!("internal error: unexpected outcome {outcome:?}"))
}

impl Access {
    // --- users ---

    pub fn create_user(&self, name: &str, password: &str) -> Result<UserView> {
        check_name("user", name)?;
        check_password(password)?;
        let user = User {
            name: name.to_string(),
            password_hash: hash_password(password)?,
            created: self.now_text(),
        };
        self.state.propose(ClusterCommand::CreateUser { user: user.clone() })?;
        Ok(UserView {
            name: user.name,
            created: user.created,
            teams: vec![],
        })
    }

    pub fn list_users(&self) -> Result<Vec<UserView>> {
        let index = self.index();
        Ok(self
            .store
            .list::<User>(USERS)?
            .into_iter()
            .map(|(_, u)| UserView {
                teams: index.teams_of(&u.name).to_vec(),
                name: u.name,
                created: u.created,
            })
            .collect())
    }

    pub fn user_exists(&self, name: &str) -> Result<bool> {
        Ok(self.store.get::<User>(USERS, name)?.is_some())
    }

    /// Removes a user with its tokens, grants and team memberships.
    pub fn remove_user(&self, name: &str) -> Result<()> {
        self.state
            .propose(ClusterCommand::RemoveUser { name: name.to_string() })?;
        Ok(())
    }

    pub fn set_password(&self, name: &str, password: &str) -> Result<()> {
        check_password(password)?;
        let hash = hash_password(password)?;
        self.state.propose(ClusterCommand::SetPassword {
            name: name.to_string(),
            password_hash: hash,
        })?;
        Ok(())
    }

    // --- teams and organizations ---

    pub fn create_team(&self, name: &str) -> Result<Team> {
        check_name("team", name)?;
        let team = Team {
            name: name.to_string(),
            members: BTreeSet::new(),
            created: self.now_text(),
        };
        self.state.propose(ClusterCommand::CreateTeam { team: team.clone() })?;
        Ok(team)
    }

    pub fn list_teams(&self) -> Result<Vec<Team>> {
        Ok(self.store.list(TEAMS)?.into_iter().map(|(_, v)| v).collect())
    }

    pub fn remove_team(&self, name: &str) -> Result<()> {
        self.state
            .propose(ClusterCommand::RemoveTeam { name: name.to_string() })?;
        Ok(())
    }

    /// Adds (`add`) or removes a user from a team.
    pub fn set_member(&self, team: &str, user: &str, add: bool) -> Result<Team> {
        match self.state.propose(ClusterCommand::SetTeamMember {
            team: team.to_string(),
            user: user.to_string(),
            add,
        })? {
            Outcome::Team(team) => Ok(team),
            other => Err(unexpected(other)),
        }
    }

    pub fn create_org(&self, name: &str) -> Result<Org> {
        check_name("organization", name)?;
        let org = Org {
            name: name.to_string(),
            teams: BTreeSet::new(),
            created: self.now_text(),
        };
        self.state.propose(ClusterCommand::CreateOrg { org: org.clone() })?;
        Ok(org)
    }

    pub fn list_orgs(&self) -> Result<Vec<Org>> {
        Ok(self.store.list(ORGS)?.into_iter().map(|(_, v)| v).collect())
    }

    pub fn remove_org(&self, name: &str) -> Result<()> {
        self.state
            .propose(ClusterCommand::RemoveOrg { name: name.to_string() })?;
        Ok(())
    }

    /// Adds (`add`) or removes a team from an organization.
    pub fn set_org_team(&self, org: &str, team: &str, add: bool) -> Result<Org> {
        match self.state.propose(ClusterCommand::SetOrgTeam {
            org: org.to_string(),
            team: team.to_string(),
            add,
        })? {
            Outcome::Org(org) => Ok(org),
            other => Err(unexpected(other)),
        }
    }

    // --- roles and grants ---

    /// Built-in roles first, then custom ones.
    pub fn list_roles(&self) -> Result<Vec<Role>> {
        let mut out: Vec<Role> = BUILTIN_ROLES
            .iter()
            .map(|n| Role {
                name: n.to_string(),
                permissions: builtin_role(n).unwrap_or_default().permissions(),
                builtin: true,
            })
            .collect();
        out.extend(self.store.list::<Role>(ROLES)?.into_iter().map(|(_, v)| v));
        Ok(out)
    }

    pub fn create_role(&self, name: &str, permissions: &[Permission]) -> Result<Role> {
        check_name("role", name)?;
        if builtin_role(name).is_some() {
            return Err(Error::Conflict(format!("{name} is a built-in role")));
        }
        let mut permissions = permissions.to_vec();
        permissions.sort();
        permissions.dedup();
        let role = Role {
            name: name.to_string(),
            permissions,
            builtin: false,
        };
        self.state.propose(ClusterCommand::CreateRole { role: role.clone() })?;
        Ok(role)
    }

    pub fn remove_role(&self, name: &str) -> Result<()> {
        if builtin_role(name).is_some() {
            return Err(Error::Invalid(format!("{name} is a built-in role")));
        }
        self.state
            .propose(ClusterCommand::RemoveRole { name: name.to_string() })?;
        Ok(())
    }

    /// The permissions of a role (built-in or custom).
    pub fn role_permissions(&self, role: &str) -> Option<PermSet> {
        self.index().role(role)
    }

    pub fn create_grant(&self, subject: &str, role: &str, collection: &str) -> Result<Grant> {
        let collection = collection_path(collection)
            .ok_or_else(|| Error::Invalid(format!("invalid collection {collection:?}: use /name/name")))?;
        // The subject's kind and existence are the command's to check.
        subject.split_once(':').ok_or_else(|| {
            Error::Invalid(format!(
                "invalid subject {subject:?}: use user:NAME, team:NAME or org:NAME"
            ))
        })?;
        let grant = Grant {
            id: hex::encode(random_bytes::<8>()),
            subject: subject.to_string(),
            role: role.to_string(),
            collection,
            created: self.now_text(),
        };
        self.state.propose(ClusterCommand::CreateGrant {
            grant: grant.clone(),
            builtin_role: builtin_role(role).is_some(),
        })?;
        Ok(grant)
    }

    pub fn list_grants(&self) -> Result<Vec<Grant>> {
        Ok(self.store.list(GRANTS)?.into_iter().map(|(_, v)| v).collect())
    }

    pub fn remove_grant(&self, id: &str) -> Result<()> {
        self.state.propose(ClusterCommand::RemoveGrant { id: id.to_string() })?;
        Ok(())
    }

    // --- tokens ---

    /// A new personal access token for `user`; the secret is returned
    /// once and only its hash is kept.
    pub fn create_token(
        &self,
        user: &str,
        lifetime_secs: Option<u64>,
        scopes: &[String],
        description: &str,
    ) -> Result<(TokenView, String)> {
        let scopes = if scopes.is_empty() {
            vec!["*".to_string()]
        } else {
            scopes.to_vec()
        };
        for s in &scopes {
            let valid = s == "*"
                || s == "read"
                || s.split_once(':').is_some_and(|(r, a)| {
                    crate::Resource::parse(r).is_some() && (a == "*" || crate::Action::parse(a).is_some())
                });
            if !valid {
                return Err(Error::Invalid(format!(
                    "invalid token scope {s:?}: use *, read, RESOURCE:ACTION or RESOURCE:*"
                )));
            }
        }
        let id = hex::encode(random_bytes::<8>());
        let secret = format!("{TOKEN_PREFIX}{id}_{}", hex::encode(random_bytes::<32>()));
        let now = self.now();
        let expires = lifetime_secs
            .map(|s| {
                let secs = i64::try_from(s).map_err(|_| Error::Invalid("token lifetime too long".into()))?;
                Ok::<_, Error>(
                    (now + chrono::TimeDelta::seconds(secs)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                )
            })
            .transpose()?;
        let record = TokenRecord {
            id: id.clone(),
            user: user.to_string(),
            hash: sha256_hex(secret.as_bytes()),
            scopes,
            created: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            expires,
            description: description.to_string(),
        };
        self.state
            .propose(ClusterCommand::CreateToken { token: record.clone() })?;
        Ok((TokenView::from(&record), secret))
    }

    /// Tokens of one user, or of everyone.
    pub fn list_tokens(&self, user: Option<&str>) -> Result<Vec<TokenView>> {
        Ok(self
            .store
            .list::<TokenRecord>(TOKENS)?
            .iter()
            .filter(|(_, t)| user.is_none_or(|u| t.user == u))
            .map(|(_, t)| TokenView::from(t))
            .collect())
    }

    /// Revokes a token; with `owner`, only that user's.
    pub fn remove_token(&self, id: &str, owner: Option<&str>) -> Result<()> {
        self.state.propose(ClusterCommand::RemoveToken {
            id: id.to_string(),
            owner: owner.map(str::to_string),
        })?;
        Ok(())
    }

    /// Checks a personal access token. `source` is the peer address, if
    /// known. The success path takes no lock but the index's read lock.
    pub fn authenticate_token(&self, token: &str, source: Option<&str>) -> Result<Identity, AuthFailure> {
        let now = self.now().timestamp();
        if source.is_some() && self.limiter().source_locked(source, now) {
            return Err(AuthFailure {
                user: None,
                reason: "source locked out after failed logins",
            });
        }
        let fail = |user: Option<String>, reason| {
            self.limiter().fail(None, source, now);
            Err(AuthFailure { user, reason })
        };
        let Some(id) = token
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|rest| rest.split_once('_'))
            .map(|(id, _)| id)
        else {
            return fail(None, "malformed token");
        };
        let index = self.index();
        let Some(entry) = index.tokens.get(id) else {
            return fail(None, "unknown or revoked token");
        };
        if !constant_time_eq(&Sha256::digest(token.as_bytes()), &entry.hash) {
            return fail(Some(entry.user.clone()), "token does not match");
        }
        if entry.expires.is_some_and(|e| e <= now) {
            return fail(Some(entry.user.clone()), "token expired");
        }
        Ok(Identity {
            name: entry.user.clone(),
            scopes: Some(entry.scopes.clone()),
            token_id: Some(entry.id.clone()),
        })
    }

    /// Checks a user's password (HTTP Basic), with failed-login limits.
    pub fn authenticate_password(
        &self,
        user: &str,
        password: &str,
        source: Option<&str>,
    ) -> Result<Identity, AuthFailure> {
        let now = self.now().timestamp();
        {
            let limiter = self.limiter();
            if limiter.user_locked(user, now) {
                return Err(AuthFailure {
                    user: Some(user.to_string()),
                    reason: "user locked out after failed logins",
                });
            }
            if limiter.source_locked(source, now) {
                return Err(AuthFailure {
                    user: Some(user.to_string()),
                    reason: "source locked out after failed logins",
                });
            }
        }
        let record = self.store.get::<User>(USERS, user).ok().flatten();
        // Verify against a dummy hash for unknown users so that timing
        // does not tell which names exist.
        let hash = record.as_ref().map_or(dummy_hash(), |u| u.password_hash.as_str());
        let ok = PasswordHash::new(hash)
            .map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
            .unwrap_or(false);
        if record.is_none() || !ok {
            self.limiter().fail(Some(user), source, now);
            return Err(AuthFailure {
                user: Some(user.to_string()),
                reason: if record.is_none() {
                    "no such user"
                } else {
                    "wrong password"
                },
            });
        }
        self.limiter().succeed(user);
        Ok(Identity {
            name: user.to_string(),
            scopes: None,
            token_id: None,
        })
    }

    /// Refuses a login (a directory's, see `directory.rs`) while `user` or
    /// `source` is locked out: directory logins share the local limits.
    pub(crate) fn login_allowed(&self, user: &str, source: Option<&str>) -> Result<(), AuthFailure> {
        let now = self.now().timestamp();
        let limiter = self.limiter();
        if limiter.user_locked(user, now) {
            return Err(AuthFailure {
                user: Some(user.to_string()),
                reason: "user locked out after failed logins",
            });
        }
        if limiter.source_locked(source, now) {
            return Err(AuthFailure {
                user: Some(user.to_string()),
                reason: "source locked out after failed logins",
            });
        }
        Ok(())
    }

    /// Counts a failed login of `user` from `source`.
    pub(crate) fn login_failed(&self, user: &str, source: Option<&str>) {
        let now = self.now().timestamp();
        self.limiter().fail(Some(user), source, now);
    }

    /// Clears `user`'s failed logins.
    pub(crate) fn login_succeeded(&self, user: &str) {
        self.limiter().succeed(user);
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, Limiter> {
        match self.limiter.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// Failed logins per user and per source, kept in memory on the node that
/// saw them.
#[derive(Default)]
struct Limiter {
    users: HashMap<String, Failures>,
    sources: HashMap<String, Failures>,
}

#[derive(Default)]
struct Failures {
    times: VecDeque<i64>,
    locked_until: i64,
}

impl Failures {
    fn record(&mut self, now: i64, limit: usize) {
        while self.times.front().is_some_and(|t| *t <= now - FAILURE_WINDOW) {
            self.times.pop_front();
        }
        self.times.push_back(now);
        if self.times.len() >= limit {
            self.locked_until = now + LOCKOUT;
            self.times.clear();
        }
    }
}

impl Limiter {
    fn user_locked(&self, user: &str, now: i64) -> bool {
        self.users.get(user).is_some_and(|f| f.locked_until > now)
    }
    fn source_locked(&self, source: Option<&str>, now: i64) -> bool {
        source.is_some_and(|s| self.sources.get(s).is_some_and(|f| f.locked_until > now))
    }
    fn fail(&mut self, user: Option<&str>, source: Option<&str>, now: i64) {
        if let Some(u) = user {
            self.users
                .entry(u.to_string())
                .or_default()
                .record(now, USER_FAILURE_LIMIT);
        }
        if let Some(s) = source {
            self.sources
                .entry(s.to_string())
                .or_default()
                .record(now, SOURCE_FAILURE_LIMIT);
        }
        // Bound memory under a spray of names.
        if self.users.len() > 100_000 {
            self.users.retain(|_, f| f.locked_until > now || !f.times.is_empty());
        }
    }
    fn succeed(&mut self, user: &str) {
        self.users.remove(user);
    }
}

pub(crate) fn check_name(what: &str, name: &str) -> Result<()> {
    if berth_state::records::valid_name(name) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid {what} name {name:?}: use letters, digits, '-', '_', '.', '@' (at most 64)"
        )))
    }
}

fn check_password(password: &str) -> Result<()> {
    if password.chars().count() < 8 {
        return Err(Error::Invalid("passwords need at least 8 characters".into()));
    }
    Ok(())
}

fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::encode_b64(&random_bytes::<16>()).map_err(|e| Error::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Hash(e.to_string()))
}

fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not a password of anyone").unwrap_or_default())
}

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

/// A random secret of letters and digits.
pub(crate) fn random_secret(bytes: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rngs::OsRng;
    (0..bytes * 4 / 3)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Creates `path` (mode 0600) with `data`; fails if it exists.
fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    let io = |source| Error::Io {
        what: "writing",
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(data).map_err(io)?;
    f.sync_all().map_err(io)
}

fn load_or_create_key(path: &Path) -> Result<[u8; 32]> {
    match std::fs::read(path) {
        Ok(bytes) => bytes.try_into().map_err(|_| Error::Io {
            what: "reading",
            path: path.to_path_buf(),
            source: std::io::Error::other("the key must be 32 bytes"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = random_bytes::<32>();
            write_private(path, &key)?;
            Ok(key)
        }
        Err(source) => Err(Error::Io {
            what: "reading",
            path: path.to_path_buf(),
            source,
        }),
    }
}
