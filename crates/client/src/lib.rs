//! The typed Rust client of berth's HTTP API: one method per route the CLI
//! (and tests) call, taking and returning the named types of the wire
//! contract (`berth_model`, and the records and views the route table
//! declares), over the daemon's unix socket, loopback TCP or the TLS
//! listener. It holds no logic of a service: what a call means is the
//! daemon's; this crate only says it in types.
//!
//! Errors are the daemon's own message (`{"code","message"}`), carried as an
//! [`ExitError`] with the exit status the CLI gives them.

mod calls;
mod transport;

pub use calls::*;
pub use transport::*;
