//! What the access tables hold, and what the API shows of it (never a
//! password hash or a token's hash).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::Permission;

/// A local user. `password_hash` is argon2id in PHC form.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub password_hash: String,
    pub created: String,
}

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserView {
    pub name: String,
    pub created: String,
    pub teams: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Team {
    pub name: String,
    pub members: BTreeSet<String>,
    pub created: String,
}

/// An organization: a set of teams.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Org {
    pub name: String,
    pub teams: BTreeSet<String>,
    pub created: String,
}

/// A named set of (resource, action).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    pub permissions: Vec<Permission>,
    #[serde(default)]
    pub builtin: bool,
}

/// Subject (`user:NAME`, `team:NAME`, `org:NAME`) + role + collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub subject: String,
    pub role: String,
    pub collection: String,
    pub created: String,
}

/// A personal access token at rest: only the sha256 of the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub user: String,
    /// Hex sha256 of the whole token string.
    pub hash: String,
    pub scopes: Vec<String>,
    pub created: String,
    /// RFC 3339; none = does not expire.
    pub expires: Option<String>,
    #[serde(default)]
    pub description: String,
}

/// A token as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenView {
    pub id: String,
    pub user: String,
    pub scopes: Vec<String>,
    pub created: String,
    pub expires: Option<String>,
    pub description: String,
}

impl From<&TokenRecord> for TokenView {
    fn from(t: &TokenRecord) -> Self {
        Self {
            id: t.id.clone(),
            user: t.user.clone(),
            scopes: t.scopes.clone(),
            created: t.created.clone(),
            expires: t.expires.clone(),
            description: t.description.clone(),
        }
    }
}
