//! What the access tables hold (the state crate's records) and what the API
//! shows of them (`berth_model::access`'s views, never a password hash or a
//! token's hash), under one name for the crates that use both.

pub use berth_model::access::{BundleIssued, LevelView, TeamListing, TokenView, UserListing, UserView};
pub use berth_state::directory::DirectoryGroup;
pub use berth_state::records::{Bundle, Grant, Org, Role, Team, TokenRecord, User};
