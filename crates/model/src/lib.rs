//! Resource types shared by the API, the store, the CLI and (later) the UI:
//! specs, statuses, ids and wire errors. This crate does no IO.
#![forbid(unsafe_code)]

pub mod access;
pub mod assignment;
pub mod audit;
pub mod container;
pub mod directory;
pub mod error;
pub mod event;
pub mod ids;
pub mod image;
pub mod node;
pub mod plugin;
pub mod reference;
pub mod scan;
pub mod system;
pub mod units;

pub use container::*;
pub use error::*;
pub use event::*;
pub use ids::*;
pub use image::*;
pub use plugin::*;
pub use reference::*;
pub use system::*;

/// A new random resource id: 64 lower-case hex digits, like Docker's.
/// Random (not sequential) so ids stay unique across every node of a cluster.
pub fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// The short form of an id shown in tables.
pub fn short_id(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    &id[..id.len().min(12)]
}
