//! A repository served by berth's server logic and published with berth's
//! editor, for the server and client tests. No HTTP: the client's fetch
//! function reads the server state directly, with per-file overrides for
//! attack scenarios.

#![allow(dead_code, clippy::unwrap_used)]

use std::cell::RefCell;
use std::collections::BTreeMap;

use berth_notary::builder::RepoEditor;
use berth_notary::client::FetchError;
use berth_notary::crypto::{create_root_certificate, SoftwareSigner};
use berth_notary::keys::{PublicKey, Signer};
use berth_notary::metadata::RoleName;
use berth_notary::server::{self, MemoryServerKeys, MetaUpdate, RepoState, ServerError};
use chrono::{DateTime, TimeZone, Utc};

pub const GUN: &str = "registry.example/acme/app";

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap()
}

pub struct Harness {
    pub state: RepoState,
    pub server_keys: MemoryServerKeys,
    pub root_key: SoftwareSigner,
    pub root_cert: PublicKey,
    pub targets_key: SoftwareSigner,
    pub editor: RepoEditor,
    pub now: DateTime<Utc>,
    /// Replaces what the server would answer for a file name.
    pub overrides: RefCell<BTreeMap<String, Result<Vec<u8>, FetchError>>>,
    /// Every name the client fetched.
    pub fetched: RefCell<Vec<String>>,
}

impl Harness {
    /// A new repository whose snapshot and timestamp keys the server holds.
    pub fn new() -> Harness {
        Harness::with_client_snapshot(None)
    }

    /// With `Some(key)`, the client holds the snapshot key instead.
    pub fn with_client_snapshot(snapshot_key: Option<&SoftwareSigner>) -> Harness {
        let now = t0();
        let state = RepoState::new(GUN);
        let server_keys = MemoryServerKeys::new();
        let root_key = SoftwareSigner::generate_ecdsa();
        let root_cert = create_root_certificate(&root_key, GUN, now).unwrap();
        let targets_key = SoftwareSigner::generate_ecdsa();
        let timestamp = server::get_or_create_key(&state, &RoleName::Timestamp, &server_keys).unwrap();
        let snapshot = match snapshot_key {
            Some(key) => key.public_key().clone(),
            None => server::get_or_create_key(&state, &RoleName::Snapshot, &server_keys).unwrap(),
        };
        let editor = RepoEditor::create(
            GUN,
            std::slice::from_ref(&root_cert),
            &[targets_key.public_key().clone()],
            &[snapshot],
            &[timestamp],
            now,
        )
        .unwrap();
        Harness {
            state,
            server_keys,
            root_key,
            root_cert,
            targets_key,
            editor,
            now,
            overrides: RefCell::new(BTreeMap::new()),
            fetched: RefCell::new(Vec::new()),
        }
    }

    /// Publish the editor's changes signed by `signers`, as a client would.
    pub fn publish_with(&mut self, signers: &[&dyn Signer]) -> Result<Vec<MetaUpdate>, ServerError> {
        let uploads = self.editor.publish(signers, self.now).unwrap();
        self.upload(uploads.into_iter().map(|(r, b)| (r.to_string(), b)).collect())
    }

    /// Publish signed by the root and targets keys.
    pub fn publish(&mut self) -> Result<Vec<MetaUpdate>, ServerError> {
        let root_key = &self.root_key as &dyn Signer;
        let targets_key = &self.targets_key as &dyn Signer;
        let uploads = self.editor.publish(&[root_key, targets_key], self.now).unwrap();
        self.upload(uploads.into_iter().map(|(r, b)| (r.to_string(), b)).collect())
    }

    /// Send raw files to the server and commit what it accepts.
    pub fn upload(&mut self, files: Vec<(String, Vec<u8>)>) -> Result<Vec<MetaUpdate>, ServerError> {
        let updates = server::apply_update(&self.state, files, self.now, &self.server_keys)?;
        self.state.commit(&updates);
        Ok(updates)
    }

    /// What the server serves for `name` (e.g. `snapshot.<hash>.json`).
    pub fn serve(&self, name: &str) -> Result<Vec<u8>, FetchError> {
        self.fetched.borrow_mut().push(name.to_string());
        if let Some(answer) = self.overrides.borrow().get(name) {
            return answer.clone();
        }
        let base = name.strip_suffix(".json").unwrap_or(name);
        if base == "timestamp" {
            return server::current_timestamp(&self.state, self.now, &self.server_keys)
                .map(|(bytes, _)| bytes)
                .map_err(|e| FetchError::Other(e.to_string()));
        }
        match server::get_metadata(&self.state, base) {
            Ok(bytes) => Ok(bytes.to_vec()),
            Err(ServerError::MetadataNotFound { .. }) => Err(FetchError::NotFound),
            Err(e) => Err(FetchError::Other(e.to_string())),
        }
    }

    /// A fetch function over [`Harness::serve`].
    pub fn fetcher(&self) -> impl Fn(&str, u64) -> Result<Vec<u8>, FetchError> + '_ {
        move |name, _max| self.serve(name)
    }

    pub fn current(&self, role: &RoleName) -> Vec<u8> {
        self.state.current(role).unwrap().1.to_vec()
    }

    pub fn set_override(&self, name: &str, answer: Result<Vec<u8>, FetchError>) {
        self.overrides.borrow_mut().insert(name.to_string(), answer);
    }

    pub fn clear_overrides(&self) {
        self.overrides.borrow_mut().clear();
    }
}
