//! The authorization decision: resources, actions, built-in roles as sets
//! of (resource, action), collections, and [`Index::decide`], a pure
//! function over an in-memory index of who holds which grant where. The
//! index is rebuilt whenever users, teams, organizations, roles, grants or
//! tokens change, so a decision is a few hash lookups and a short scan.

use std::collections::HashMap;

pub use berth_model::access::{Action, Permission, Resource, ACTIONS, RESOURCES};

/// A set of permissions as bits: resource × action fits in 128.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PermSet(u128);

const _: () = assert!(RESOURCES.len() * ACTIONS.len() <= 128);

fn bit(resource: Resource, action: Action) -> u128 {
    1u128 << (resource as usize * ACTIONS.len() + action as usize)
}

impl PermSet {
    pub fn of(perms: &[(Resource, Action)]) -> Self {
        Self(perms.iter().fold(0, |acc, (r, a)| acc | bit(*r, *a)))
    }
    pub fn all() -> Self {
        let mut s = Self::default();
        for r in RESOURCES {
            for a in ACTIONS {
                s.0 |= bit(r, a);
            }
        }
        s
    }
    pub fn contains(self, resource: Resource, action: Action) -> bool {
        self.0 & bit(resource, action) != 0
    }
    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
    pub fn is_subset_of(self, other: Self) -> bool {
        self.0 & !other.0 == 0
    }
    pub fn permissions(self) -> Vec<Permission> {
        let mut out = Vec::new();
        for resource in RESOURCES {
            for action in ACTIONS {
                if self.contains(resource, action) {
                    out.push(Permission { resource, action });
                }
            }
        }
        out
    }
    pub fn from_permissions(perms: &[Permission]) -> Self {
        Self(perms.iter().fold(0, |acc, p| acc | bit(p.resource, p.action)))
    }
}

/// The built-in roles, weakest first.
pub const BUILTIN_ROLES: [&str; 6] = [
    "none",
    "view-only",
    "restricted-control",
    "scheduler",
    "full-control",
    "admin",
];

/// A built-in role's permissions. Profile (own identity and tokens) is not
/// in any role: every authenticated user has it.
pub fn builtin_role(name: &str) -> Option<PermSet> {
    use Action::*;
    use Resource::*;
    let view: &[(Resource, Action)] = &[
        (System, Read),
        (Image, Read),
        (Container, Read),
        (Repository, Pull),
        (Node, Read),
    ];
    // Everything on workloads but what reaches the host: exec/attach, host
    // bind mounts, privileged containers.
    let restricted: &[(Resource, Action)] = &[
        (Image, Write),
        (Container, Write),
        (Repository, Push),
        (Repository, Delete),
    ];
    let full: &[(Resource, Action)] = &[
        (Container, Exec),
        (Container, HostMount),
        (Container, Privileged),
        (Node, Schedule),
    ];
    Some(match name {
        "none" => PermSet::default(),
        "view-only" => PermSet::of(view),
        "restricted-control" => PermSet::of(view).union(PermSet::of(restricted)),
        "scheduler" => PermSet::of(&[(Node, Schedule)]),
        "full-control" => PermSet::of(view)
            .union(PermSet::of(restricted))
            .union(PermSet::of(full)),
        "admin" => PermSet::all(),
        _ => return None,
    })
}

/// Checks and normalizes a collection path: `/`, `/shared/team-a`.
pub fn collection_path(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let valid =
        |s: &&str| *s != "." && *s != ".." && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !segments.iter().all(valid) {
        return None;
    }
    Some(format!("/{}", segments.join("/")))
}

/// Whether a grant on collection `grant` covers an object in `object`:
/// the same collection or a descendant.
pub fn covers(grant: &str, object: &str) -> bool {
    grant == "/"
        || object == grant
        || (object.len() > grant.len() && object.starts_with(grant) && object.as_bytes()[grant.len()] == b'/')
}

/// Who asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller<'a> {
    /// The unix socket: the cluster admin.
    Admin,
    User(&'a Identity),
    Anonymous,
}

/// An authenticated user, as the request carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    /// Set when the caller came with a token: what the token may do
    /// (`*`, `read`, `RESOURCE:ACTION`, `RESOURCE:*`). Password logins
    /// are not restricted.
    pub scopes: Option<std::sync::Arc<Vec<String>>>,
    /// The token's id, when a token was used.
    pub token_id: Option<String>,
}

/// Where the object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Where<'a> {
    /// An object in this collection.
    In(&'a str),
    /// No single object (lists, creates that name their collection later,
    /// node-shared content such as images): a grant in any collection.
    Anywhere,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(String),
}

impl Decision {
    pub fn allowed(&self) -> bool {
        *self == Decision::Allow
    }
}

/// Whether a token's scopes let it do `action` on `resource`.
pub fn scope_allows(scopes: &[String], resource: Resource, action: Action) -> bool {
    scopes.iter().any(|s| match s.as_str() {
        "*" => true,
        "read" => matches!(action, Action::Read | Action::Pull),
        other => match other.split_once(':') {
            Some((r, "*")) => Resource::parse(r) == Some(resource),
            Some((r, a)) => Resource::parse(r) == Some(resource) && Action::parse(a) == Some(action),
            None => false,
        },
    })
}

/// Who holds what where; built from the store by [`crate::Access`].
#[derive(Debug, Default)]
pub struct Index {
    /// Per user: every grant that applies (own, its teams', their orgs').
    pub(crate) effective: HashMap<String, Vec<(PermSet, String)>>,
    /// Per user: its teams.
    pub(crate) teams: HashMap<String, Vec<String>>,
    pub(crate) roles: HashMap<String, PermSet>,
    pub(crate) tokens: HashMap<String, TokenEntry>,
    /// Repository-name prefixes and their collections, longest first.
    pub(crate) repository_collections: Vec<(String, String)>,
    /// Users cut off (a directory no longer has them), and why: refused
    /// everything, their own profile included, whatever credential they
    /// still hold (a TLS connection opened with a now revoked bundle).
    pub(crate) disabled: HashMap<String, String>,
}

/// A token as the hot path checks it: hash bytes and expiry decoded once.
#[derive(Debug)]
pub(crate) struct TokenEntry {
    pub(crate) hash: [u8; 32],
    /// Unix seconds; `None` never expires. An unreadable expiry counts as expired.
    pub(crate) expires: Option<i64>,
    pub(crate) user: String,
    pub(crate) id: String,
    pub(crate) scopes: std::sync::Arc<Vec<String>>,
}

impl Index {
    /// Builds an index from records (the store's, or a test's).
    /// Marks `users` (name, reason) as cut off.
    pub fn set_disabled(&mut self, users: HashMap<String, String>) {
        self.disabled = users;
    }

    pub fn build(
        users: &[String],
        teams: &[crate::Team],
        orgs: &[crate::Org],
        custom_roles: &[crate::Role],
        grants: &[crate::Grant],
        tokens: &[crate::TokenRecord],
    ) -> Self {
        let mut roles: HashMap<String, PermSet> = BUILTIN_ROLES
            .iter()
            .filter_map(|n| Some((n.to_string(), builtin_role(n)?)))
            .collect();
        for r in custom_roles {
            roles
                .entry(r.name.clone())
                .or_insert_with(|| PermSet::from_permissions(&r.permissions));
        }
        let mut by_subject: HashMap<&str, Vec<(PermSet, String)>> = HashMap::new();
        for g in grants {
            let Some(perms) = roles.get(&g.role) else { continue };
            by_subject
                .entry(g.subject.as_str())
                .or_default()
                .push((*perms, g.collection.clone()));
        }
        let mut teams_of: HashMap<String, Vec<String>> = HashMap::new();
        for t in teams {
            for m in &t.members {
                teams_of.entry(m.clone()).or_default().push(t.name.clone());
            }
        }
        let mut orgs_of: HashMap<&str, Vec<&str>> = HashMap::new();
        for o in orgs {
            for t in &o.teams {
                orgs_of.entry(t.as_str()).or_default().push(o.name.as_str());
            }
        }
        let mut effective = HashMap::new();
        for user in users {
            let mut list = Vec::new();
            let mut add = |subject: String| {
                if let Some(g) = by_subject.get(subject.as_str()) {
                    list.extend(g.iter().cloned());
                }
            };
            add(format!("user:{user}"));
            for team in teams_of.get(user).into_iter().flatten() {
                add(format!("team:{team}"));
                for org in orgs_of.get(team.as_str()).into_iter().flatten() {
                    add(format!("org:{org}"));
                }
            }
            effective.insert(user.clone(), list);
        }
        Self {
            effective,
            teams: teams_of,
            roles,
            repository_collections: Vec::new(),
            disabled: HashMap::new(),
            tokens: tokens
                .iter()
                .map(|t| {
                    let mut hash = [0u8; 32];
                    // A hash that does not decode matches nothing (all zeros
                    // is no sha256 anyone can aim for).
                    if hex::decode_to_slice(&t.hash, &mut hash).is_err() {
                        hash = [0; 32];
                    }
                    let expires = t
                        .expires
                        .as_deref()
                        .map(|e| chrono::DateTime::parse_from_rfc3339(e).map_or(i64::MIN, |e| e.timestamp()));
                    let entry = TokenEntry {
                        hash,
                        expires,
                        user: t.user.clone(),
                        id: t.id.clone(),
                        scopes: std::sync::Arc::new(t.scopes.clone()),
                    };
                    (t.id.clone(), entry)
                })
                .collect(),
        }
    }

    /// A role's permissions (built-in or custom).
    pub fn role(&self, name: &str) -> Option<PermSet> {
        self.roles.get(name).copied()
    }

    pub fn teams_of(&self, user: &str) -> &[String] {
        self.teams.get(user).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Every permission `user` holds on an object in `collection`.
    pub fn permissions_in(&self, user: &str, collection: &str) -> PermSet {
        self.effective
            .get(user)
            .into_iter()
            .flatten()
            .filter(|(_, c)| covers(c, collection))
            .fold(PermSet::default(), |acc, (p, _)| acc.union(*p))
    }

    /// The decision. Pure: no IO, no clock.
    pub fn decide(&self, caller: &Caller, resource: Resource, action: Action, at: Where) -> Decision {
        let identity = match caller {
            Caller::Admin => return Decision::Allow,
            // Anonymous callers get nothing a grant decides: the routes a
            // client needs before it logs in (version, CA certificate) are
            // public in the API's route table and never ask.
            Caller::Anonymous => return Decision::Deny("authentication required".into()),
            Caller::User(identity) => identity,
        };
        if let Some(reason) = self.disabled.get(&identity.name) {
            return Decision::Deny(format!("user {} is disabled: {reason}", identity.name));
        }
        if let Some(scopes) = &identity.scopes {
            if !scope_allows(scopes, resource, action) {
                return Decision::Deny(format!(
                    "the token's scopes do not allow {}:{}",
                    resource.name(),
                    action.scope_name()
                ));
            }
        }
        if resource == Resource::Profile {
            return Decision::Allow;
        }
        let grants = self.effective.get(&identity.name).map(Vec::as_slice).unwrap_or(&[]);
        let hit = grants.iter().any(|(perms, collection)| {
            perms.contains(resource, action)
                && match at {
                    Where::In(object) => covers(collection, object),
                    Where::Anywhere => true,
                }
        });
        if hit {
            Decision::Allow
        } else {
            let place = match at {
                Where::In(c) => format!(" in {c}"),
                Where::Anywhere => String::new(),
            };
            Decision::Deny(format!(
                "{} may not {} {}{place}",
                identity.name,
                action.scope_name(),
                resource.name()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collections_nest() {
        assert!(covers("/", "/a/b"));
        assert!(covers("/a", "/a"));
        assert!(covers("/a", "/a/b"));
        assert!(!covers("/a", "/ab"));
        assert!(!covers("/a/b", "/a"));
        assert_eq!(collection_path("/shared//team-a/").as_deref(), Some("/shared/team-a"));
        assert_eq!(collection_path("/").as_deref(), Some("/"));
        assert_eq!(collection_path("/a/../b"), None);
        assert_eq!(collection_path("a"), None);
    }

    #[test]
    fn roles_are_ordered_where_they_should_be() {
        let role = |n| builtin_role(n).expect(n);
        assert!(role("view-only").is_subset_of(role("restricted-control")));
        assert!(role("restricted-control").is_subset_of(role("full-control")));
        assert!(role("full-control").is_subset_of(role("admin")));
        assert!(!role("restricted-control").contains(Resource::Container, Action::Exec));
        assert!(!role("restricted-control").contains(Resource::Container, Action::HostMount));
        assert!(!role("restricted-control").contains(Resource::Container, Action::Privileged));
        assert!(!role("scheduler").contains(Resource::Container, Action::Read));
        assert!(role("scheduler").contains(Resource::Node, Action::Schedule));
        assert!(!role("full-control").contains(Resource::Grant, Action::Write));
        for p in role("view-only").permissions() {
            assert!(matches!(p.action, Action::Read | Action::Pull), "{p}");
        }
        assert_eq!(
            Permission::parse("container:exec").map(|p| p.to_string()).as_deref(),
            Some("container:exec")
        );
    }

    #[test]
    fn token_scopes_narrow() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(scope_allows(&s(&["read"]), Resource::Image, Action::Read));
        assert!(!scope_allows(&s(&["read"]), Resource::Image, Action::Write));
        assert!(scope_allows(&s(&["container:*"]), Resource::Container, Action::Exec));
        assert!(!scope_allows(
            &s(&["container:read"]),
            Resource::Container,
            Action::Exec
        ));
        assert!(scope_allows(&s(&["*"]), Resource::Grant, Action::Write));
    }
}
