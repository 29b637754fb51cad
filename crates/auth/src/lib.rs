//! Identities and access: users, teams and organizations, passwords and
//! tokens, roles, grants on collections, the authorization decision, LDAP/AD
//! directories and the hash-chained audit log. Cluster-wide state lives in
//! the store's `cluster/*` keyspace and changes only through `Store::apply`.
//!
//! **Invariant:** this crate does not know HTTP; `api` asks it for decisions.
#![forbid(unsafe_code)]

pub mod ldap;
