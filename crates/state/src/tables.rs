//! Every `cluster/*` table: what Raft will replicate. The records of the
//! tables [`crate::ClusterCommand`] writes are in [`crate::records`]; the
//! tables still written directly by their services (audit, directories,
//! trust metadata, scan records) are listed in ARCHITECTURE.md's
//! "Cluster state" section until their commands exist.

use berth_store::Table;

// --- access (users, teams, organizations, roles, grants, tokens) ---
pub const USERS: Table = Table("cluster/users");
pub const TEAMS: Table = Table("cluster/teams");
pub const ORGS: Table = Table("cluster/orgs");
pub const ROLES: Table = Table("cluster/roles");
pub const GRANTS: Table = Table("cluster/grants");
pub const TOKENS: Table = Table("cluster/tokens");
/// Browser sessions by id.
pub const SESSIONS: Table = Table("cluster/sessions");
/// Which collection a registry repository prefix belongs to.
pub const REPOSITORY_COLLECTIONS: Table = Table("cluster/repository_collections");
/// Client bundles (certificates issued to users), by id.
pub const BUNDLES: Table = Table("cluster/bundles");

// --- audit ---
/// Audit entries by zero-padded sequence number.
pub const AUDIT: Table = Table("cluster/audit");
/// The signed head of the audit chain (key `head`) and the signed
/// checkpoints (key: zero-padded sequence number).
pub const AUDIT_SIGNATURES: Table = Table("cluster/audit_signatures");
/// How much the audit log records per resource.
pub const AUDIT_LEVELS: Table = Table("cluster/audit_levels");

// --- directories (LDAP/AD) ---
pub const DIRECTORIES: Table = Table("cluster/directories");
/// Users provisioned from a directory, and whether it disabled them.
pub const DIRECTORY_ACCOUNTS: Table = Table("cluster/directory_accounts");
/// Which directory group a team follows.
pub const TEAM_GROUPS: Table = Table("cluster/team_directory_groups");
/// The outcome of each directory's last sync.
pub const DIRECTORY_SYNC: Table = Table("cluster/directory_sync");

// --- images, trust, scans ---
/// `berth login` credentials, by registry.
pub const REGISTRY_CREDENTIALS: Table = Table("cluster/registry_credentials");
/// Content-trust policies, by repository pattern.
pub const TRUST_POLICIES: Table = Table("cluster/trust_policies");
/// The trust server's TUF metadata, checksums, keys and change feed.
pub const TRUST_META: Table = Table("cluster/trust_meta");
pub const TRUST_CURRENT: Table = Table("cluster/trust_current");
pub const TRUST_CHECKSUMS: Table = Table("cluster/trust_checksums");
pub const TRUST_KEYS: Table = Table("cluster/trust_keys");
pub const TRUST_CHANGES: Table = Table("cluster/trust_changes");
/// The root each GUN's trust data was first trusted with (`root.json`,
/// UTF-8 JSON), by GUN: every node verifies from the same pinned root.
pub const TRUST_PINS: Table = Table("cluster/trust_pins");
/// Signed scan records, by id.
pub const SCAN_RECORDS: Table = Table("cluster/scan_records");

// --- membership ---
/// Cluster nodes, by node id.
pub const NODES: Table = Table("cluster/nodes");
/// Per role (`worker`, `manager`): the nonce the role's join token secret
/// is derived from (see `berth_cluster::join`).
pub const JOIN_TOKENS: Table = Table("cluster/join_tokens");
/// The cluster CA ([`crate::records::CaRecord`], one row, [`CA_KEY`]):
/// its root, a rotation under way, the roots it replaced.
pub const CA: Table = Table("cluster/ca");
pub const CA_KEY: &str = "ca";

// --- dispatch ---
/// Assignments (a container spec and its placement constraints), by name.
pub const ASSIGNMENTS: Table = Table("cluster/assignments");
/// What each node last reported on its assignments, by
/// `ASSIGNMENT/NODE` ([`crate::records::task_key`]).
pub const ASSIGNMENT_TASKS: Table = Table("cluster/assignment_tasks");

/// Every cluster table, so that a fresh store has them all and a replay
/// test can compare them all.
pub const ALL: [Table; 30] = [
    USERS,
    TEAMS,
    ORGS,
    ROLES,
    GRANTS,
    TOKENS,
    SESSIONS,
    REPOSITORY_COLLECTIONS,
    BUNDLES,
    AUDIT,
    AUDIT_SIGNATURES,
    AUDIT_LEVELS,
    DIRECTORIES,
    DIRECTORY_ACCOUNTS,
    TEAM_GROUPS,
    DIRECTORY_SYNC,
    REGISTRY_CREDENTIALS,
    TRUST_POLICIES,
    TRUST_META,
    TRUST_CURRENT,
    TRUST_CHECKSUMS,
    TRUST_KEYS,
    TRUST_CHANGES,
    TRUST_PINS,
    SCAN_RECORDS,
    NODES,
    JOIN_TOKENS,
    CA,
    ASSIGNMENTS,
    ASSIGNMENT_TASKS,
];
