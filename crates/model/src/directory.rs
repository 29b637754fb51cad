//! LDAP/AD directories as the API takes and shows them: a directory's
//! configuration (`PUT /v1/directories/{name}`), its view (the bind password
//! as `***`), how its last sync went, and what a sync did. The stored
//! records are the state crate's; each converts there.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One directory server and how users and groups are found in it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

/// A directory as `PUT /v1/directories/{name}` takes it: the name may be
/// left out, an absent or `***` bind password keeps the stored one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SyncState {
    pub time: String,
    /// Every mapped group was read.
    pub ok: bool,
    pub errors: Vec<String>,
    pub added: usize,
    pub removed: usize,
    pub created_users: usize,
}

/// A directory user a sync cut off, and what was revoked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DisabledUser {
    pub user: String,
    pub reason: String,
    pub tokens: usize,
    pub sessions: usize,
    pub bundles: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SkippedMember {
    pub username: String,
    pub reason: String,
}

/// A directory as the API shows it: the bind password is `***` (or empty
/// when none is set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DirectoryView {
    #[serde(flatten)]
    pub config: DirectoryConfig,
    pub sync_interval_minutes: Option<u64>,
    pub created: String,
    pub last_sync: Option<SyncState>,
}

/// What one sync of one directory did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
