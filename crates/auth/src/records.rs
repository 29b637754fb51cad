//! What the access tables hold, and what the API shows of it (never a
//! password hash or a token's hash).

use serde::{Deserialize, Serialize};

pub use berth_state::directory::DirectoryGroup;
pub use berth_state::records::{Bundle, Grant, Org, Role, Team, TokenRecord, User};

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

/// A user as listed: directory users also name their directory and DN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserListing {
    #[serde(flatten)]
    pub user: UserView,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dn: Option<String>,
}

/// A team as listed: a synced team names its directory group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TeamListing {
    #[serde(flatten)]
    pub team: Team,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory_group: Option<DirectoryGroup>,
}

/// `POST /v1/bundles`: a client bundle just issued. The key is in this
/// answer only; the daemon keeps none of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BundleIssued {
    pub bundle: Bundle,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// A resource's audit level, as `GET /v1/audit/levels` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LevelView {
    pub resource: String,
    pub level: berth_state::records::AuditLevel,
}
