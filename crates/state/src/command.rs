//! [`ClusterCommand`]: every change to the cluster tables that has a
//! command, and [`ClusterCommand::apply`], the only code that writes them.
//!
//! `apply` is deterministic: the same command on the same state makes the
//! same change and the same [`Outcome`] on every manager. Whatever is not
//! a function of the state (the time, ids, salts, password hashes, token
//! secrets, signatures) is computed by the proposer and carried in the
//! command. `apply` reads no clock, no randomness, no file and no
//! environment; its refusals ([`Rejected`]) are decided on the state alone.

use std::collections::BTreeMap;

use berth_model::node::Availability;
use berth_store::{Table, Txn};
use serde::{Deserialize, Serialize};

use crate::directory::{
    AccountState, Directory, DirectoryGroup, DirectoryMember, GroupRead, LoginApplied, SyncApplied,
};
use crate::records::{
    audit_key, trust_entry_key, trust_role_key, trust_version_key, AuditEntry, AuditLevel, AuditSignature, Bundle,
    CaRecord, CaRotation, Credentials, Grant, JoinTokenRecord, NodeRecord, NodeStatusRecord, Org, RepositoryCollection,
    Role, SessionRecord, SignedScanRecord, Team, TokenRecord, TrustChange, TrustCurrent, TrustKeyRecord,
    TrustMetaUpdate, TrustPolicy, User, AUDIT_GENESIS, AUDIT_HEAD,
};
use crate::records::{task_key, AssignmentRecord, TaskRecord};
use crate::tables::*;

/// The version of the command format this berth writes. A manager reads
/// every version up to its own; a command of a newer version is refused
/// with a message saying so (see [`Envelope::decode`]).
pub const COMMAND_VERSION: u32 = 1;

/// A command as it travels and is logged: the format version with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u32,
    pub command: ClusterCommand,
}

impl Envelope {
    pub fn new(command: ClusterCommand) -> Self {
        Self {
            version: COMMAND_VERSION,
            command,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        // A command is plain data: strings, numbers, maps with string keys.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads an envelope, refusing one from a newer berth by its version
    /// (or, for a newer command in the current version, by its name).
    pub fn decode(bytes: &[u8]) -> Result<Self, crate::Error> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let v: Version = serde_json::from_slice(bytes).map_err(|e| crate::Error::Decode(e.to_string()))?;
        if v.version > COMMAND_VERSION {
            return Err(crate::Error::Decode(format!(
                "the command was written by a newer berth (command format {}, this berth reads up to {COMMAND_VERSION}): upgrade this manager",
                v.version
            )));
        }
        serde_json::from_slice(bytes).map_err(|e| crate::Error::Decode(format!("{e} (a command from a newer berth?)")))
    }
}

/// A change to cluster state. Each variant says what changes and carries
/// everything `apply` needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", content = "args", rename_all = "snake_case")]
pub enum ClusterCommand {
    // --- users, teams, organizations ---
    /// Refused when the name is taken.
    CreateUser {
        user: User,
    },
    /// Removes the user with their tokens, sessions, grants and team
    /// memberships.
    RemoveUser {
        name: String,
    },
    SetPassword {
        name: String,
        password_hash: String,
    },
    CreateTeam {
        team: Team,
    },
    /// Removes the team with its grants and organization memberships.
    RemoveTeam {
        name: String,
    },
    /// Adds (`add`) or removes `user` from `team`.
    SetTeamMember {
        team: String,
        user: String,
        add: bool,
    },
    CreateOrg {
        org: Org,
    },
    RemoveOrg {
        name: String,
    },
    /// Adds (`add`) or removes `team` from `org`.
    SetOrgTeam {
        org: String,
        team: String,
        add: bool,
    },

    // --- roles, grants, tokens, sessions ---
    CreateRole {
        role: Role,
    },
    /// Refused while a grant uses the role.
    RemoveRole {
        name: String,
    },
    /// `builtin_role`: the role is one of berth's built-in roles (the
    /// proposer knows them), so no custom role need exist.
    CreateGrant {
        grant: Grant,
        builtin_role: bool,
    },
    RemoveGrant {
        id: String,
    },
    CreateToken {
        token: TokenRecord,
    },
    /// With `owner`, only that user's token is removed.
    RemoveToken {
        id: String,
        owner: Option<String>,
    },
    /// Also drops every session expired at `now` (Unix seconds).
    CreateSession {
        session: SessionRecord,
        now: i64,
    },
    EndSession {
        id: String,
    },

    // --- registry, trust, audit settings ---
    SetRepositoryCollection {
        record: RepositoryCollection,
    },
    RemoveRepositoryCollection {
        prefix: String,
    },
    RecordBundle {
        bundle: Bundle,
    },
    /// Marks a bundle revoked at `at` (RFC 3339) unless it already is.
    RevokeBundle {
        id: String,
        at: String,
    },
    /// Adds or replaces the policy for its pattern.
    PutTrustPolicy {
        policy: TrustPolicy,
    },
    RemoveTrustPolicy {
        pattern: String,
    },
    /// The root `gun`'s trust data was first trusted with, for every node
    /// to verify from; the first pin of a GUN stays (a later one changes
    /// nothing and answers `Created(false)`).
    PinTrustRoot {
        gun: String,
        root: String,
    },
    /// `registry`: the key credentials are stored under (`host[:port]`).
    PutRegistryCredentials {
        registry: String,
        credentials: Credentials,
    },
    RemoveRegistryCredentials {
        registry: String,
    },
    /// `resource`: a resource name (`container`, `image`, ...).
    SetAuditLevel {
        resource: String,
        level: AuditLevel,
    },

    // --- the trust server ---
    /// Stores new metadata of `gun`'s roles and makes it current, all or
    /// nothing; refused when a version is not above the current one. A new
    /// timestamp is recorded in the changefeed at `at` (RFC 3339).
    CommitTrustMetadata {
        gun: String,
        updates: Vec<TrustMetaUpdate>,
        at: String,
    },
    /// Removes all of `gun`'s metadata (not its server keys) and records a
    /// deletion in the changefeed when there was any.
    DeleteTrustMetadata {
        gun: String,
        at: String,
    },
    PutTrustKey {
        gun: String,
        role: String,
        key: TrustKeyRecord,
    },

    // --- the audit log ---
    /// Appends `entry` to the chain with its signed `head` (and a signed
    /// `checkpoint` every so many entries). Refused unless the entry
    /// follows the current head and its hash is right: the chain never
    /// forks, whoever proposes.
    AppendAudit {
        entry: AuditEntry,
        head: AuditSignature,
        checkpoint: Option<AuditSignature>,
    },
    /// Appends several entries in one change, in order, each as
    /// [`ClusterCommand::AppendAudit`] would; all or none.
    AppendAuditBatch {
        appends: Vec<AuditAppend>,
    },
    /// Stores signatures over the chain by key (`head` or a checkpoint's
    /// sequence): the genesis head of an empty log, and old signatures
    /// signed again.
    PutAuditSignatures {
        signatures: Vec<(String, AuditSignature)>,
    },

    // --- directories (LDAP/AD) ---
    /// Creates or replaces a directory (`created` is kept from an existing
    /// one; an empty bind password keeps the stored one).
    PutDirectory {
        directory: Directory,
    },
    /// Removes a directory, its last sync and the team mappings to it.
    RemoveDirectory {
        name: String,
    },
    /// Maps `team` to a directory group, or (`None`) removes its mapping.
    SetTeamGroup {
        team: String,
        group: Option<DirectoryGroup>,
    },
    /// Drops what is kept about a removed user's directory account and a
    /// removed team's mapping.
    ForgetDirectoryRecords {
        user: Option<String>,
        team: Option<String>,
    },
    /// A login through `directory`, as the directory answered it: the user
    /// provisioned or updated, and memberships of teams synced from the
    /// directory set per `decisions` (team → member).
    DirectoryLogin {
        directory: String,
        member: DirectoryMember,
        decisions: BTreeMap<String, bool>,
        now: String,
    },
    /// One team sync of `directory`, with what was read from it.
    DirectorySync {
        directory: String,
        reads: Vec<GroupRead>,
        accounts: Vec<String>,
        states: Result<Vec<AccountState>, String>,
        now: String,
    },

    // --- scans ---
    /// Stores a signed scan record (signed by the proposer).
    RecordScan {
        record: SignedScanRecord,
    },

    // --- membership ---
    /// A node joins; refused when its id is taken.
    AddNode {
        node: NodeRecord,
    },
    /// Changes a node's availability and labels (`label_rm` first, then
    /// `label_add`).
    UpdateNode {
        id: String,
        availability: Option<Availability>,
        label_add: BTreeMap<String, String>,
        label_rm: Vec<String>,
    },
    /// A node leaves: its certificate is no longer accepted.
    RemoveNode {
        id: String,
    },
    /// A node renewed its certificate: the new one is current, the old one
    /// is still accepted until it expires.
    SetNodeCertificate {
        id: String,
        certificate: String,
        certificate_expires: String,
        /// SHA-256 (hex) of the CA that issued it.
        #[serde(default)]
        certificate_ca: String,
    },
    /// A node is promoted to manager or demoted to worker.
    SetNodeRole {
        id: String,
        role: berth_model::node::NodeRole,
    },
    /// The leader records nodes whose state changed (ready, down), so
    /// that every manager shows them; nodes no longer on record are
    /// skipped.
    SetNodeStatus {
        statuses: Vec<(String, NodeStatusRecord)>,
    },
    /// A new join token for `role` (`worker` or `manager`): the old one
    /// stops working.
    SetJoinToken {
        role: String,
        record: JoinTokenRecord,
    },
    /// A CA rotation starts: `next` is trusted next to `root` (the
    /// current root, recorded with it) and issues every certificate from
    /// now on. Refused while another is under way, or when `root` is not
    /// the recorded root.
    StartCaRotation {
        root: String,
        rotation: CaRotation,
    },
    /// The rotation whose new root is `cert` ends: it becomes the root,
    /// and the old root is retired. Refused when no such rotation is under
    /// way.
    FinishCaRotation {
        cert: String,
    },

    // --- dispatch ---
    /// A new assignment; refused when the name is taken.
    CreateAssignment {
        record: AssignmentRecord,
    },
    /// An assignment goes, with every node's report on it (the nodes stop
    /// its containers when the leader tells them).
    RemoveAssignment {
        name: String,
    },
    /// What `node` reports on its assignments, in place of what it
    /// reported before: reports on assignments that no longer exist are
    /// skipped, and the node's earlier reports not repeated are dropped.
    SetNodeTasks {
        node: String,
        tasks: Vec<TaskRecord>,
    },
}

/// One entry of [`ClusterCommand::AppendAuditBatch`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditAppend {
    pub entry: AuditEntry,
    pub head: AuditSignature,
    pub checkpoint: Option<AuditSignature>,
}

/// What an applied command answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    Done,
    /// For removals that are not refused when nothing was there.
    Removed(bool),
    Team(Team),
    Org(Org),
    Bundle(Bundle),
    /// Whether the record was created (rather than replaced).
    Created(bool),
    Login(LoginApplied),
    Sync(SyncApplied),
}

/// A command refused on the state it met; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Rejected {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{role} version {version} is not newer than the stored version {current}")]
    OldVersion { role: String, version: u64, current: u64 },
}

/// Why `apply` did not change the state.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Rejected(#[from] Rejected),
    #[error(transparent)]
    Store(#[from] berth_store::Error),
}

fn not_found(message: String) -> ApplyError {
    Rejected::NotFound(message).into()
}

fn conflict(message: String) -> ApplyError {
    Rejected::Conflict(message).into()
}

/// Stores `record` under `key`, refused when the key is taken (`what`
/// names the kind of record in the refusal).
fn insert_new<T: serde::Serialize + serde::de::DeserializeOwned>(
    t: &mut Txn,
    table: Table,
    key: &str,
    record: &T,
    what: &str,
) -> Result<(), ApplyError> {
    if t.get::<serde::de::IgnoredAny>(table, key)?.is_some() {
        return Err(conflict(format!("{what} {key} already exists")));
    }
    t.put(table, key, record)?;
    Ok(())
}

/// Deletes every record of `table` that `matches`; how many.
pub(crate) fn delete_where<T: serde::de::DeserializeOwned>(
    t: &mut Txn,
    table: Table,
    matches: impl Fn(&T) -> bool,
) -> Result<usize, ApplyError> {
    let mut n = 0;
    for (key, record) in t.list::<T>(table)? {
        if matches(&record) {
            t.delete(table, &key)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Appends one audit entry after the head, with its signed head (and
/// checkpoint); refused when it does not follow the head.
fn append_audit(
    t: &mut Txn,
    entry: &AuditEntry,
    head: &AuditSignature,
    checkpoint: Option<&AuditSignature>,
) -> Result<(), ApplyError> {
    let (seq, prev) = t
        .get::<AuditSignature>(AUDIT_SIGNATURES, AUDIT_HEAD)?
        .map_or((1, AUDIT_GENESIS.to_string()), |h| (h.seq + 1, h.hash));
    if entry.seq != seq || entry.prev != prev {
        return Err(conflict(format!(
            "audit entry {} does not follow the head of the log (entry {} next)",
            entry.seq, seq
        )));
    }
    if entry.hash != entry.compute_hash() || head.seq != seq || head.hash != entry.hash {
        return Err(Rejected::Invalid(format!("audit entry {seq}: hash or head does not match the entry")).into());
    }
    t.put(AUDIT, &audit_key(seq), entry)?;
    t.put(AUDIT_SIGNATURES, AUDIT_HEAD, head)?;
    if let Some(c) = checkpoint {
        t.put(AUDIT_SIGNATURES, &audit_key(c.seq), c)?;
    }
    Ok(())
}

fn existing_node(t: &mut Txn, id: &str) -> Result<NodeRecord, ApplyError> {
    t.get::<NodeRecord>(NODES, id)?
        .ok_or_else(|| not_found(format!("no such node: {id}")))
}

/// Appends to the trust changefeed, after its last change.
fn append_trust_change(
    t: &mut Txn,
    gun: &str,
    version: u64,
    sha256: &str,
    category: &str,
    at: &str,
) -> Result<(), ApplyError> {
    let last = t
        .list::<TrustChange>(TRUST_CHANGES)?
        .last()
        .and_then(|(k, _)| k.parse::<u64>().ok())
        .unwrap_or(0);
    let id = last + 1;
    let change = TrustChange {
        id: id.to_string(),
        created_at: at.to_string(),
        gun: gun.to_string(),
        version,
        sha256: sha256.to_string(),
        category: category.to_string(),
    };
    t.put(TRUST_CHANGES, &trust_version_key(id), &change)?;
    Ok(())
}

impl ClusterCommand {
    /// The command's name, for logs and errors.
    pub fn name(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.get("op").and_then(|o| o.as_str()).map(str::to_string))
            .unwrap_or_default()
    }

    /// Whether the command changes who may do what (users, teams,
    /// organizations, roles, grants, tokens, repository collections): the
    /// access index is rebuilt after such a command.
    pub fn changes_access(&self) -> bool {
        use ClusterCommand::*;
        matches!(
            self,
            CreateUser { .. }
                | RemoveUser { .. }
                | SetPassword { .. }
                | CreateTeam { .. }
                | RemoveTeam { .. }
                | SetTeamMember { .. }
                | CreateOrg { .. }
                | RemoveOrg { .. }
                | SetOrgTeam { .. }
                | CreateRole { .. }
                | RemoveRole { .. }
                | CreateGrant { .. }
                | RemoveGrant { .. }
                | CreateToken { .. }
                | RemoveToken { .. }
                | SetRepositoryCollection { .. }
                | RemoveRepositoryCollection { .. }
                | ForgetDirectoryRecords { .. }
                | DirectoryLogin { .. }
                | DirectorySync { .. }
        )
    }

    /// Applies the command in `t`. On an error the caller drops `t`, so a
    /// refused command changes nothing.
    pub fn apply(&self, t: &mut Txn) -> Result<Outcome, ApplyError> {
        use ClusterCommand::*;
        match self {
            CreateUser { user } => {
                insert_new(t, USERS, &user.name, user, "user")?;
            }
            RemoveUser { name } => {
                if !t.delete(USERS, name)? {
                    return Err(not_found(format!("no such user: {name}")));
                }
                delete_where::<TokenRecord>(t, TOKENS, |tok| &tok.user == name)?;
                delete_where::<SessionRecord>(t, SESSIONS, |s| &s.user == name)?;
                let subject = format!("user:{name}");
                delete_where::<Grant>(t, GRANTS, |g| g.subject == subject)?;
                for (key, mut team) in t.list::<Team>(TEAMS)? {
                    if team.members.remove(name) {
                        t.put(TEAMS, &key, &team)?;
                    }
                }
            }
            SetPassword { name, password_hash } => {
                let Some(mut user) = t.get::<User>(USERS, name)? else {
                    return Err(not_found(format!("no such user: {name}")));
                };
                user.password_hash.clone_from(password_hash);
                t.put(USERS, name, &user)?;
            }
            CreateTeam { team } => {
                insert_new(t, TEAMS, &team.name, team, "team")?;
            }
            RemoveTeam { name } => {
                if !t.delete(TEAMS, name)? {
                    return Err(not_found(format!("no such team: {name}")));
                }
                let subject = format!("team:{name}");
                delete_where::<Grant>(t, GRANTS, |g| g.subject == subject)?;
                for (key, mut org) in t.list::<Org>(ORGS)? {
                    if org.teams.remove(name) {
                        t.put(ORGS, &key, &org)?;
                    }
                }
            }
            SetTeamMember { team, user, add } => {
                let Some(mut record) = t.get::<Team>(TEAMS, team)? else {
                    return Err(not_found(format!("no such team: {team}")));
                };
                if *add && t.get::<User>(USERS, user)?.is_none() {
                    return Err(not_found(format!("no such user: {user}")));
                }
                let changed = if *add {
                    record.members.insert(user.clone())
                } else {
                    record.members.remove(user)
                };
                if !changed && !add {
                    return Err(not_found(format!("{user} is not a member of team {team}")));
                }
                t.put(TEAMS, team, &record)?;
                return Ok(Outcome::Team(record));
            }
            CreateOrg { org } => {
                insert_new(t, ORGS, &org.name, org, "organization")?;
            }
            RemoveOrg { name } => {
                if !t.delete(ORGS, name)? {
                    return Err(not_found(format!("no such organization: {name}")));
                }
                let subject = format!("org:{name}");
                delete_where::<Grant>(t, GRANTS, |g| g.subject == subject)?;
            }
            SetOrgTeam { org, team, add } => {
                let Some(mut record) = t.get::<Org>(ORGS, org)? else {
                    return Err(not_found(format!("no such organization: {org}")));
                };
                if *add && t.get::<Team>(TEAMS, team)?.is_none() {
                    return Err(not_found(format!("no such team: {team}")));
                }
                if *add {
                    record.teams.insert(team.clone());
                } else if !record.teams.remove(team) {
                    return Err(not_found(format!("team {team} is not in organization {org}")));
                }
                t.put(ORGS, org, &record)?;
                return Ok(Outcome::Org(record));
            }
            CreateRole { role } => {
                insert_new(t, ROLES, &role.name, role, "role")?;
            }
            RemoveRole { name } => {
                if let Some((_, g)) = t.list::<Grant>(GRANTS)?.into_iter().find(|(_, g)| &g.role == name) {
                    return Err(conflict(format!("role {name} is used by grant {}", g.id)));
                }
                if !t.delete(ROLES, name)? {
                    return Err(not_found(format!("no such role: {name}")));
                }
            }
            CreateGrant { grant, builtin_role } => {
                let Some((kind, name)) = grant.subject.split_once(':') else {
                    return Err(Rejected::Invalid(format!("invalid subject {:?}", grant.subject)).into());
                };
                let exists = match kind {
                    "user" => t.get::<User>(USERS, name)?.is_some(),
                    "team" => t.get::<Team>(TEAMS, name)?.is_some(),
                    "org" => t.get::<Org>(ORGS, name)?.is_some(),
                    _ => {
                        return Err(
                            Rejected::Invalid(format!("invalid subject kind {kind:?}: use user, team or org")).into(),
                        )
                    }
                };
                if !exists {
                    return Err(not_found(format!("no such {kind}: {name}")));
                }
                if !builtin_role && t.get::<Role>(ROLES, &grant.role)?.is_none() {
                    return Err(not_found(format!("no such role: {}", grant.role)));
                }
                t.put(GRANTS, &grant.id, grant)?;
            }
            RemoveGrant { id } => {
                if !t.delete(GRANTS, id)? {
                    return Err(not_found(format!("no such grant: {id}")));
                }
            }
            CreateToken { token } => {
                if t.get::<User>(USERS, &token.user)?.is_none() {
                    return Err(not_found(format!("no such user: {}", token.user)));
                }
                t.put(TOKENS, &token.id, token)?;
            }
            RemoveToken { id, owner } => match t.get::<TokenRecord>(TOKENS, id)? {
                Some(tok) if owner.as_ref().is_none_or(|o| *o == tok.user) => {
                    t.delete(TOKENS, id)?;
                }
                _ => return Err(not_found(format!("no such token: {id}"))),
            },
            CreateSession { session, now } => {
                delete_where::<SessionRecord>(t, SESSIONS, |s| s.expires <= *now)?;
                t.put(SESSIONS, &session.id, session)?;
            }
            EndSession { id } => return Ok(Outcome::Removed(t.delete(SESSIONS, id)?)),
            SetRepositoryCollection { record } => t.put(REPOSITORY_COLLECTIONS, &record.prefix, record)?,
            RemoveRepositoryCollection { prefix } => {
                if !t.delete(REPOSITORY_COLLECTIONS, prefix)? {
                    return Err(not_found(format!(
                        "no collection is set for repositories under {prefix:?}"
                    )));
                }
            }
            RecordBundle { bundle } => t.put(BUNDLES, &bundle.id, bundle)?,
            RevokeBundle { id, at } => {
                let Some(mut bundle) = t.get::<Bundle>(BUNDLES, id)? else {
                    return Err(not_found(format!("no such bundle: {id}")));
                };
                if bundle.revoked.is_none() {
                    bundle.revoked = Some(at.clone());
                    t.put(BUNDLES, id, &bundle)?;
                }
                return Ok(Outcome::Bundle(bundle));
            }
            PutTrustPolicy { policy } => t.put(TRUST_POLICIES, &policy.pattern, policy)?,
            RemoveTrustPolicy { pattern } => return Ok(Outcome::Removed(t.delete(TRUST_POLICIES, pattern)?)),
            PinTrustRoot { gun, root } => {
                let pinned = t.get::<String>(TRUST_PINS, gun)?.is_some();
                if !pinned {
                    t.put(TRUST_PINS, gun, root)?;
                }
                return Ok(Outcome::Created(!pinned));
            }
            PutRegistryCredentials { registry, credentials } => t.put(REGISTRY_CREDENTIALS, registry, credentials)?,
            RemoveRegistryCredentials { registry } => {
                return Ok(Outcome::Removed(t.delete(REGISTRY_CREDENTIALS, registry)?))
            }
            SetAuditLevel { resource, level } => t.put(AUDIT_LEVELS, resource, level)?,
            CommitTrustMetadata { gun, updates, at } => {
                for u in updates {
                    if let Some(cur) = t.get::<TrustCurrent>(TRUST_CURRENT, &trust_role_key(gun, &u.role))? {
                        if u.meta.version <= cur.version {
                            return Err(Rejected::OldVersion {
                                role: u.role.clone(),
                                version: u.meta.version,
                                current: cur.version,
                            }
                            .into());
                        }
                    }
                }
                for u in updates {
                    let m = &u.meta;
                    t.put(
                        TRUST_META,
                        &trust_entry_key(gun, &u.role, &trust_version_key(m.version)),
                        m,
                    )?;
                    t.put(TRUST_CHECKSUMS, &trust_entry_key(gun, &u.role, &m.sha256), &m.version)?;
                    let current = TrustCurrent {
                        version: m.version,
                        sha256: m.sha256.clone(),
                    };
                    t.put(TRUST_CURRENT, &trust_role_key(gun, &u.role), &current)?;
                    if u.role == "timestamp" {
                        append_trust_change(t, gun, m.version, &m.sha256, "update", at)?;
                    }
                }
            }
            DeleteTrustMetadata { gun, at } => {
                let prefix = format!("{gun}\n");
                let mut existed = false;
                for table in [TRUST_META, TRUST_CURRENT, TRUST_CHECKSUMS] {
                    let keys: Vec<String> = t
                        .list::<serde::de::IgnoredAny>(table)?
                        .into_iter()
                        .map(|(k, _)| k)
                        .filter(|k| k.starts_with(&prefix))
                        .collect();
                    existed |= !keys.is_empty();
                    for k in keys {
                        t.delete(table, &k)?;
                    }
                }
                if existed {
                    append_trust_change(t, gun, 0, "", "deletion", at)?;
                }
                return Ok(Outcome::Removed(existed));
            }
            PutTrustKey { gun, role, key } => t.put(TRUST_KEYS, &trust_entry_key(gun, role, &key.key_id), key)?,
            RecordScan { record } => t.put(SCAN_RECORDS, &record.id, record)?,
            PutDirectory { directory } => return Ok(Outcome::Created(crate::directory::put_directory(t, directory)?)),
            RemoveDirectory { name } => crate::directory::remove_directory(t, name)?,
            SetTeamGroup { team, group } => crate::directory::set_team_group(t, team, group.as_ref())?,
            ForgetDirectoryRecords { user, team } => {
                if let Some(user) = user {
                    t.delete(DIRECTORY_ACCOUNTS, user)?;
                }
                if let Some(team) = team {
                    t.delete(TEAM_GROUPS, team)?;
                }
            }
            DirectoryLogin {
                directory,
                member,
                decisions,
                now,
            } => {
                return Ok(Outcome::Login(crate::directory::login(
                    t, directory, member, decisions, now,
                )?))
            }
            DirectorySync {
                directory,
                reads,
                accounts,
                states,
                now,
            } => {
                let applied = crate::directory::sync(t, directory, reads, accounts, states, now)?;
                return Ok(Outcome::Sync(applied));
            }
            AppendAudit {
                entry,
                head,
                checkpoint,
            } => append_audit(t, entry, head, checkpoint.as_ref())?,
            AppendAuditBatch { appends } => {
                if appends.is_empty() {
                    return Err(Rejected::Invalid("an audit batch without entries".into()).into());
                }
                for a in appends {
                    append_audit(t, &a.entry, &a.head, a.checkpoint.as_ref())?;
                }
            }
            AddNode { node } => insert_new(t, NODES, &node.id, node, "node")?,
            UpdateNode {
                id,
                availability,
                label_add,
                label_rm,
            } => {
                let mut node = existing_node(t, id)?;
                if let Some(a) = availability {
                    node.availability = *a;
                }
                for k in label_rm {
                    node.labels.remove(k);
                }
                node.labels
                    .extend(label_add.iter().map(|(k, v)| (k.clone(), v.clone())));
                t.put(NODES, id, &node)?;
            }
            SetNodeCertificate {
                id,
                certificate,
                certificate_expires,
                certificate_ca,
            } => {
                let mut node = existing_node(t, id)?;
                if node.certificate != *certificate {
                    node.previous_certificate = Some(std::mem::take(&mut node.certificate));
                    node.certificate = certificate.clone();
                    node.certificate_expires = certificate_expires.clone();
                    node.certificate_ca = certificate_ca.clone();
                    t.put(NODES, id, &node)?;
                }
            }
            SetNodeRole { id, role } => {
                let mut node = existing_node(t, id)?;
                node.role = *role;
                t.put(NODES, id, &node)?;
            }
            SetNodeStatus { statuses } => {
                for (id, status) in statuses {
                    if let Some(mut node) = t.get::<NodeRecord>(NODES, id)? {
                        node.status = Some(status.clone());
                        t.put(NODES, id, &node)?;
                    }
                }
            }
            RemoveNode { id } => {
                if !t.delete(NODES, id)? {
                    return Err(not_found(format!("no such node: {id}")));
                }
                delete_where::<TaskRecord>(t, ASSIGNMENT_TASKS, |r| r.node == *id)?;
            }
            SetJoinToken { role, record } => {
                if role != "worker" && role != "manager" {
                    return Err(Rejected::Invalid(format!("no join token for role {role:?}")).into());
                }
                t.put(JOIN_TOKENS, role, record)?;
            }
            StartCaRotation { root, rotation } => {
                let mut ca = t.get::<CaRecord>(CA, CA_KEY)?.unwrap_or_else(|| CaRecord {
                    root: root.clone(),
                    ..Default::default()
                });
                if ca.root != *root {
                    return Err(conflict(
                        "the CA rotation was proposed against a root that is no longer the cluster's".into(),
                    ));
                }
                if ca.next.is_some() {
                    return Err(conflict(
                        "a CA rotation is already under way: it ends when every node holds a certificate of the new CA"
                            .into(),
                    ));
                }
                ca.next = Some(rotation.clone());
                t.put(CA, CA_KEY, &ca)?;
            }
            FinishCaRotation { cert } => {
                let mut ca = t.get::<CaRecord>(CA, CA_KEY)?.unwrap_or_default();
                let Some(next) = ca.next.take().filter(|n| n.cert == *cert) else {
                    return Err(not_found("no CA rotation to that root is under way".into()));
                };
                ca.retired.push(std::mem::replace(&mut ca.root, next.cert));
                ca.cross = next.cross;
                ca.sealed_key = next.sealed_key;
                t.put(CA, CA_KEY, &ca)?;
            }
            CreateAssignment { record } => {
                insert_new(t, ASSIGNMENTS, &record.spec.name, record, "assignment")?;
            }
            RemoveAssignment { name } => {
                if !t.delete(ASSIGNMENTS, name)? {
                    return Err(not_found(format!("no such assignment: {name}")));
                }
                delete_where::<TaskRecord>(t, ASSIGNMENT_TASKS, |r| r.assignment == *name)?;
            }
            SetNodeTasks { node, tasks } => {
                delete_where::<TaskRecord>(t, ASSIGNMENT_TASKS, |r| r.node == *node)?;
                for task in tasks.iter().filter(|r| r.node == *node) {
                    if t.get::<AssignmentRecord>(ASSIGNMENTS, &task.assignment)?.is_some() {
                        t.put(ASSIGNMENT_TASKS, &task_key(&task.assignment, node), task)?;
                    }
                }
            }
            PutAuditSignatures { signatures } => {
                for (key, signature) in signatures {
                    t.put(AUDIT_SIGNATURES, key, signature)?;
                }
            }
        }
        Ok(Outcome::Done)
    }
}
