//! What the access tables hold, and what the API shows of it (never a
//! password hash or a token's hash).

use serde::{Deserialize, Serialize};

pub use berth_state::records::{Grant, Org, Role, Team, TokenRecord, User};

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserView {
    pub name: String,
    pub created: String,
    pub teams: Vec<String>,
}

/// A token as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
