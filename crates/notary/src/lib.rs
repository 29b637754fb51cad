//! Content trust: TUF roles and metadata in Notary v1's wire format, keys
//! (software, passphrase-encrypted at rest, and PKCS#11 tokens), the
//! Notary-compatible server's update validation, and client verification.
//! No HTTP here: the api crate serves the routes, the CLI fetches.
//!
//! # Public API
//!
//! - [`canonical`]: `canonical_json(&Value)`, `to_canonical(&T)` — the bytes
//!   Notary signs and hashes into key ids.
//! - [`keys`]: `PublicKey` (`id()`, `canonical_id()`, wire serde), `KeyType`,
//!   `SigMethod` (wire names `ecdsa`, `eddsa`, `rsapss`, `rsapkcs1v15`), the
//!   `Signer` trait, `CertifiedSigner` (a bare key signing as its x509 key).
//! - [`crypto`]: `verify_signature`, `SoftwareSigner` (ECDSA P-256, Ed25519;
//!   PKCS#8 in and out), `create_root_certificate(&dyn Signer, gun, now)`
//!   (the notary CLI's self-signed root certificate, any signer incl. tokens),
//!   `CertificateInfo`, `encrypt_pkcs8`/`decrypt_pkcs8`.
//! - [`metadata`]: `RoleName`, `Signed<T>` (keeps the canonical bytes as
//!   received; `from_bytes`, `new`, `sign`, `to_bytes`), `Root`, `Targets`,
//!   `Snapshot`, `Timestamp`, `FileMeta`, `Delegations`.
//! - [`repo`]: checks shared by server and client — `verify_signatures`,
//!   `validate_root` (x509 root certs named after the GUN, rotation,
//!   `TrustPinning`), structure, expiry, version, hash and path checks, each
//!   failing with its own `VerifyError` variant.
//! - [`server`]: `RepoState` (all versions of one GUN), `apply_update(state,
//!   uploads, now, &dyn ServerKeys) -> Vec<MetaUpdate>`, `get_metadata`
//!   (by role, `N.role`, `role.<sha256>`), `current_timestamp` /
//!   `current_snapshot` (re-sign when expired), `get_or_create_key`,
//!   `rotate_key`, `ServerKeys` + `MemoryServerKeys`, and `ServerError`
//!   with Notary's codes, statuses and JSON error body.
//! - [`client`]: `update(gun, cache_dir, &TrustPinning, now, &dyn Fetcher) ->
//!   TrustedRepo`, `TrustedRepo::resolve_target(name, Option<&SignerRequirement>)`,
//!   `check_target_bytes`.
//! - [`builder`]: `RepoEditor` — create a repository, add/remove targets and
//!   delegations, rotate keys and root, `publish(&[&dyn Signer], now)` to get
//!   the files to upload.
//! - [`keystore`]: `KeyStore` (Argon2id + XChaCha20-Poly1305 key files, mode
//!   0600; `TokenKeyRef` references to keys on PKCS#11 tokens, `add_token_key`,
//!   `check_restore` for backups), `Passphrase`, PEM import/export compatible
//!   with the notary CLI.
//! - [`pkcs11`]: `Pkcs11Module`, `Pkcs11Token` (user or security officer
//!   login), `Pkcs11Signer`, `piv_slot_cka_id`/`piv_slot_name` (YubiKey PIV
//!   slots as `libykcs11` numbers them).
//! - [`workflow`]: the signing workflow of `berth trust` — which roles and
//!   keys sign what (`roles_to_sign`, `role_keys`, `publish_keys`), signer
//!   delegations (`add_signer`, `remove_signer`), the next targets and
//!   snapshot (`Change`, `next_targets`, `next_snapshot`), pending threshold
//!   signatures, key descriptions, and `verify_attached` (trust data attached
//!   to an image) into a `View`; errors are a `WorkflowError` message.
//! - [`signing`]: the session of a `berth trust` command — `Signing` (keys:
//!   generate, list, load, rotate, backup, restore; signing: sign, revoke,
//!   signer add/remove; reading: view, resolve a tag), reaching the registry
//!   through a `TrustRemote` and the person at the keyboard through an
//!   `Interaction`, both given by the caller.
//!
//! **Architecture Invariant:** nothing here reads the clock, the network or
//! the environment; times, fetches and secrets are parameters. Only
//! `keystore`, the client's cache and `signing` (signer records and key
//! backups under the trust directory) touch the disk.

#![forbid(unsafe_code)]

pub mod builder;
pub mod canonical;
pub mod client;
pub mod crypto;
pub mod keys;
pub mod keystore;
pub mod metadata;
pub mod pkcs11;
pub mod repo;
pub mod server;
/// The daemon's trust service over the store (the lead's; see storage.rs).
pub mod service;
pub mod signing;
pub mod storage;
pub mod workflow;
