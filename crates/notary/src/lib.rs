//! Content trust: TUF roles and metadata in Notary v1's wire format, keys
//! (software, passphrase-encrypted at rest, and PKCS#11 tokens), the
//! Notary-compatible server's update validation, and client verification.
//! No HTTP here: the api crate serves the routes, the CLI fetches.

pub mod keys;
