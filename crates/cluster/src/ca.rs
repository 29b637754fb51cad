//! CA rotation with no downtime (`berth cluster ca --rotate`).
//!
//! 1. A manager makes a new root and signs it with the current root as
//!    well (a cross-signed certificate), seals the new root's key under the
//!    managers' cluster key and proposes `StartCaRotation`.
//! 2. Every node trusts both roots from then on: managers as they apply the
//!    command ([`spawn_follower`]), workers as the leader tells them over
//!    their session. The new root issues every certificate, and each
//!    node's chain carries the cross-signed certificate, so whoever has not
//!    heard of the rotation yet still verifies it.
//! 3. Each node renews its certificate under the new root at once
//!    ([`crate::agent::spawn_renewal`]); managers also issue themselves a
//!    new server certificate.
//! 4. Once every node on record holds a certificate of the new root, the
//!    leader proposes `FinishCaRotation`: the new root becomes the root,
//!    the old one is retired (audit checkpoints it signed still verify) and
//!    join tokens change, as they name the root.
//!
//! The CA files under `pki/` follow cluster state ([`follow`]); they are
//! written key first, so that a reader never pairs a certificate with
//! another's key ([`crate::pki::Pki`] refuses such a pair and keeps what
//! it had).

use std::path::Path;
use std::sync::Arc;

use berth_model::node::{CaCertificate, CaRotationStatus, CaStatus};
use berth_state::records::{CaRecord, CaRotation, NodeRecord};
use berth_state::{tables, ClusterCommand, State};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use rcgen::KeyPair;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};

use crate::membership::{now, values, Cluster};
use crate::pki::{fingerprint, key_of, pem_of, write_private, write_public, Pki};
use crate::rpc::proto;
use crate::{Error, Result};

/// The managers' cluster key: seals a new root's key in cluster state.
const CLUSTER_KEY: &str = "cluster.key";
const SEAL_AAD: &[u8] = b"berth CA key";

/// Writes `pki/cluster.key` when a manager has none: derived from the
/// root's key, so that the managers of a cluster made before it existed
/// derive the same one. It is kept across rotations, and handed to the
/// managers that join (it is one of the manager files).
pub(crate) fn ensure_cluster_key(dir: &Path, root_key: &KeyPair) -> Result<()> {
    let path = dir.join(CLUSTER_KEY);
    if path.exists() {
        return Ok(());
    }
    let mut h = Sha256::new();
    h.update(b"berth cluster key\0");
    h.update(root_key.serialized_der());
    write_private(&path, &h.finalize())
}

fn cluster_key(dir: &Path) -> Result<chacha20poly1305::XChaCha20Poly1305> {
    let path = dir.join(CLUSTER_KEY);
    let key = std::fs::read(&path).map_err(|e| Error::Io {
        what: "reading",
        path: path.clone(),
        source: e,
    })?;
    chacha20poly1305::XChaCha20Poly1305::new_from_slice(&key)
        .map_err(|_| Error::Invalid(format!("{} is not a 32-byte key", path.display())))
}

/// `plain` sealed under the cluster key: hex of the nonce, then of the
/// ciphertext.
fn seal(dir: &Path, plain: &[u8]) -> Result<String> {
    let nonce: [u8; 24] = rand::random();
    let sealed = cluster_key(dir)?
        .encrypt(
            &nonce.into(),
            Payload {
                msg: plain,
                aad: SEAL_AAD,
            },
        )
        .map_err(|_| Error::Invalid("sealing the CA key failed".into()))?;
    Ok(format!("{}{}", hex::encode(nonce), hex::encode(sealed)))
}

fn unseal(dir: &Path, sealed: &str) -> Result<Vec<u8>> {
    let bytes = hex::decode(sealed).map_err(|_| Error::Invalid("the sealed CA key is not hex".into()))?;
    if bytes.len() < 24 {
        return Err(Error::Invalid("the sealed CA key is too short".into()));
    }
    let (nonce, ciphertext) = bytes.split_at(24);
    let nonce = chacha20poly1305::XNonce::try_from(nonce)
        .map_err(|_| Error::Invalid("the sealed CA key's nonce has the wrong length".into()))?;
    cluster_key(dir)?
        .decrypt(
            &nonce,
            Payload {
                msg: ciphertext,
                aad: SEAL_AAD,
            },
        )
        .map_err(|_| {
            Error::Invalid(
                "the new CA key does not open with this manager's cluster key (pki/cluster.key differs from the other managers')"
                    .into(),
            )
        })
}

/// The CA as nodes follow it: the root and its cross-signed certificate,
/// a rotation's new root and its cross-signed certificate, the retired
/// roots (each PEM).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CaView {
    pub root: String,
    pub cross: String,
    pub next: Option<(String, String)>,
    pub retired: Vec<String>,
}

impl CaView {
    pub fn of(record: &CaRecord) -> Self {
        Self {
            root: record.root.clone(),
            cross: record.cross.clone(),
            next: record.next.as_ref().map(|n| (n.cert.clone(), n.cross.clone())),
            retired: record.retired.clone(),
        }
    }

    pub fn to_proto(&self) -> proto::CaState {
        let (next, next_cross) = self.next.clone().unwrap_or_default();
        proto::CaState {
            root: self.root.clone(),
            cross: self.cross.clone(),
            next,
            next_cross,
            retired: self.retired.clone(),
        }
    }

    pub fn from_proto(p: proto::CaState) -> Self {
        Self {
            root: p.root,
            cross: p.cross,
            next: (!p.next.is_empty()).then_some((p.next, p.next_cross)),
            retired: p.retired,
        }
    }
}

/// The cluster's CA record; `None` until the first rotation.
pub fn record(state: &State) -> Result<Option<CaRecord>> {
    Ok(state.store().get::<CaRecord>(tables::CA, tables::CA_KEY)?)
}

/// The certificates of `pem`, in order.
fn certs(pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Invalid(format!("a CA certificate in cluster state is not PEM: {e}")))
}

/// What a PEM file at `path` should hold: `pems`' certificates, in
/// order; `None` when there are none (the file goes).
fn file_text(pems: &[&str]) -> Result<Option<String>> {
    let mut text = String::new();
    for pem in pems {
        for der in certs(pem)? {
            text.push_str(&pem_of(&der));
        }
    }
    Ok((!text.is_empty()).then_some(text))
}

/// Makes the files of `path` hold `text` (`None`: no file). Whether it
/// changed anything.
fn put(path: &Path, text: Option<&str>, private: bool) -> Result<bool> {
    let now = std::fs::read(path).ok();
    match text {
        Some(t) if now.as_deref() == Some(t.as_bytes()) => Ok(false),
        Some(t) if private => write_private(path, t.as_bytes()).map(|()| true),
        Some(t) => write_public(path, t.as_bytes()).map(|()| true),
        None if now.is_none() => Ok(false),
        None => std::fs::remove_file(path).map(|()| true).map_err(|e| Error::Io {
            what: "removing",
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// Makes this node's CA files what `view` says. A manager also writes the
/// keys, from the files it has or unsealed from `record`. Whether
/// anything changed.
pub fn follow(pki: &Pki, view: &CaView, record: Option<&CaRecord>) -> Result<bool> {
    let dir = pki.dir();
    let mut changed = false;
    let retired: Vec<&str> = view.retired.iter().map(String::as_str).collect();
    changed |= put(&dir.join("ca-retired.pem"), file_text(&retired)?.as_deref(), false)?;

    changed |= put(&dir.join("ca-cross.pem"), file_text(&[&view.cross])?.as_deref(), false)?;
    let root =
        file_text(&[&view.root])?.ok_or_else(|| Error::Invalid("the cluster's CA record names no root".into()))?;
    let sealed_root = record.map(|r| r.sealed_key.as_str());
    if put_ca(pki, "ca.pem", &root, &view.root, "ca.key", sealed_root)? {
        changed = true;
        tracing::info!(root = %fingerprint(&certs(&view.root)?[0]), "this node's CA root changed");
    }
    match &view.next {
        None => {
            changed |= put(&dir.join("ca-next.pem"), None, false)?;
            changed |= put(&dir.join("ca-next.key"), None, true)?;
        }
        Some((cert, cross)) => {
            let text = file_text(&[cert, cross])?.unwrap_or_default();
            let sealed = record.and_then(|r| r.next.as_ref()).map(|n| n.sealed_key.as_str());
            if put_ca(pki, "ca-next.pem", &text, cert, "ca-next.key", sealed)? {
                changed = true;
                tracing::info!(next = %fingerprint(&certs(cert)?[0]), "a CA rotation is under way: this node trusts the new root too");
            }
        }
    }
    Ok(changed)
}

/// Makes `pem_file` hold `text` (the CA certificate `cert`, PEM, and what
/// follows it), a manager writing that certificate's key to `key_file`
/// first: from `ca-next.key` when it is that key, else unsealed from
/// `sealed`. Whether anything changed.
fn put_ca(pki: &Pki, pem_file: &str, text: &str, cert: &str, key_file: &str, sealed: Option<&str>) -> Result<bool> {
    let dir = pki.dir();
    if std::fs::read(dir.join(pem_file)).ok().as_deref() == Some(text.as_bytes()) {
        return Ok(false);
    }
    if pki.is_manager() {
        let key = key_for(dir, &certs(cert)?[0], "ca-next.key", sealed)?;
        put(&dir.join(key_file), Some(&key), true)?;
    }
    put(&dir.join(pem_file), Some(text), false)?;
    Ok(true)
}

/// The key (PEM) of the CA certificate `der`: from `file` under `dir` when
/// it is that key, else unsealed from `sealed`.
fn key_for(dir: &Path, der: &[u8], file: &str, sealed: Option<&str>) -> Result<String> {
    if let Ok(pem) = std::fs::read_to_string(dir.join(file)) {
        if KeyPair::from_pem(&pem).is_ok_and(|k| key_of(der, &k)) {
            return Ok(pem);
        }
    }
    let sealed = sealed.filter(|s| !s.is_empty()).ok_or_else(|| {
        Error::Invalid("cluster state holds no key for the CA root: this manager cannot issue under it".into())
    })?;
    let pem =
        String::from_utf8(unseal(dir, sealed)?).map_err(|_| Error::Invalid("the unsealed CA key is not PEM".into()))?;
    let key =
        KeyPair::from_pem(&pem).map_err(|e| Error::Invalid(format!("the unsealed CA key does not parse: {e}")))?;
    if !key_of(der, &key) {
        return Err(Error::Invalid("the unsealed CA key is not the new root's".into()));
    }
    Ok(pem)
}

/// Puts right what a stop in the middle of [`follow`] left: a root key
/// written before its certificate (the certificate is then `ca-next.pem`'s
/// first), or a new root's key written before its certificate (both go;
/// the follower writes them again from cluster state).
pub(crate) fn repair(dir: &Path) -> Result<()> {
    let key = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .ok()
            .and_then(|p| KeyPair::from_pem(&p).ok())
    };
    let next = crate::pki::read_certs(&dir.join("ca-next.pem"))?;
    let root = crate::pki::read_certs(&dir.join("ca.pem"))?;
    if let (Some(k), Some(root)) = (key("ca.key"), root.first()) {
        if !key_of(root, &k) {
            match next.first().filter(|n| key_of(n, &k)) {
                Some(n) => put(&dir.join("ca.pem"), Some(&pem_of(n)), false).map(|_| ())?,
                None => {
                    return Err(Error::Invalid(format!(
                        "{} is not the key of the CA root",
                        dir.join("ca.key").display()
                    )))
                }
            }
        }
    }
    if let Some(k) = key("ca-next.key") {
        if !next.first().is_some_and(|n| key_of(n, &k)) {
            put(&dir.join("ca-next.pem"), None, false)?;
            put(&dir.join("ca-next.key"), None, true)?;
        }
    }
    Ok(())
}

/// A manager: makes its CA files follow cluster state, now and after
/// each applied rotation command (or snapshot).
pub fn spawn_follower(pki: Arc<Pki>, state: State) -> tokio::task::JoinHandle<()> {
    let (tx, mut rx) = tokio::sync::watch::channel(0u64);
    let bump = Arc::new(move || tx.send_modify(|n| *n += 1));
    let on_command = bump.clone();
    state.subscribe(move |command| {
        if matches!(
            command,
            ClusterCommand::StartCaRotation { .. } | ClusterCommand::FinishCaRotation { .. }
        ) {
            on_command();
        }
        Ok(())
    });
    state.on_reset(move || {
        bump();
        Ok(())
    });
    tokio::spawn(async move {
        loop {
            let (p, s) = (pki.clone(), state.clone());
            let done = tokio::task::spawn_blocking(move || -> Result<()> {
                if let Some(record) = record(&s)? {
                    follow(&p, &CaView::of(&record), Some(&record))?;
                }
                Ok(())
            })
            .await;
            let retry = match done {
                Ok(Ok(())) => false,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "following the cluster CA");
                    true
                }
                Err(_) => true,
            };
            if retry {
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                continue;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    })
}

/// The leader: ends the rotation under way once every node on record
/// holds a certificate of the new root. Whether it did.
pub fn finish_if_done(state: &State) -> Result<bool> {
    let Some(record) = record(state)? else {
        return Ok(false);
    };
    let Some(next) = &record.next else {
        return Ok(false);
    };
    let digest = fingerprint(&certs(&next.cert)?[0]);
    let nodes: Vec<NodeRecord> = values(state, tables::NODES)?;
    if nodes.iter().any(|n| n.certificate_ca != digest) {
        return Ok(false);
    }
    state.propose(ClusterCommand::FinishCaRotation {
        cert: next.cert.clone(),
    })?;
    tracing::info!(root = %digest, "the CA rotation is complete: every node holds a certificate of the new root");
    Ok(true)
}

fn certificate(der: &[u8]) -> CaCertificate {
    let subject = x509_parser::parse_x509_certificate(der)
        .ok()
        .and_then(|(_, c)| {
            c.subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok().map(String::from))
        })
        .unwrap_or_default();
    CaCertificate {
        digest: fingerprint(der),
        subject,
        expires: crate::pki::not_after_of(der).unwrap_or_default(),
    }
}

impl Cluster {
    /// The CA as cluster state records it (the root as this node's files
    /// hold it before the first rotation).
    pub fn ca_status(&self) -> Result<CaStatus> {
        self.require_manager()?;
        let record = record(&self.state)?;
        let root = match &record {
            Some(r) => certs(&r.root)?.remove(0),
            None => self.pki.ca_der(),
        };
        let rotation = match record.as_ref().and_then(|r| r.next.as_ref()) {
            None => None,
            Some(next) => {
                let der = certs(&next.cert)?.remove(0);
                let digest = fingerprint(&der);
                let nodes: Vec<NodeRecord> = values(&self.state, tables::NODES)?;
                let pending: Vec<String> = nodes
                    .iter()
                    .filter(|n| n.certificate_ca != digest)
                    .map(|n| format!("{} ({})", n.hostname, n.id.get(..12).unwrap_or(&n.id)))
                    .collect();
                Some(CaRotationStatus {
                    next: certificate(&der),
                    started_at: next.started_at.clone(),
                    nodes: nodes.len(),
                    rotated: nodes.len() - pending.len(),
                    pending,
                })
            }
        };
        let mut retired = Vec::new();
        for pem in record.iter().flat_map(|r| r.retired.iter()) {
            retired.extend(certs(pem)?.iter().map(|d| certificate(d)));
        }
        Ok(CaStatus {
            root: certificate(&root),
            rotation,
            retired,
        })
    }

    /// Starts a CA rotation: a new root, cross-signed by the current one,
    /// its key sealed under the cluster key. Refused while one is under
    /// way.
    pub fn rotate_ca(&self) -> Result<CaStatus> {
        self.require_manager()?;
        if record(&self.state)?.is_some_and(|r| r.next.is_some()) {
            return Err(Error::Conflict(
                "a CA rotation is already under way: `berth cluster ca` shows which nodes it waits for".into(),
            ));
        }
        let (root, rotation) = new_rotation(&self.pki)?;
        let next = fingerprint(&certs(&rotation.cert)?[0]);
        self.state.propose(ClusterCommand::StartCaRotation { root, rotation })?;
        tracing::info!(%next, "started a CA rotation");
        self.ca_status()
    }
}

/// A rotation away from `pki`'s root: a new root, the same certificate
/// signed by the current root (with no room for a CA below it), the new
/// key sealed under the cluster key. With the current root (PEM).
pub(crate) fn new_rotation(pki: &Pki) -> Result<(String, CaRotation)> {
    let ca = pki.authorities();
    let root_issuer = ca.root.issuer()?;
    let (key, mut params, cert) = crate::pki::new_root()?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.use_authority_key_identifier_extension = true;
    let cross = params.signed_by(&key, root_issuer)?;
    let rotation = CaRotation {
        cert: pem_of(cert.der()),
        cross: pem_of(cross.der()),
        sealed_key: seal(pki.dir(), key.serialize_pem().as_bytes())?,
        started_at: now(),
    };
    Ok((ca.root.pem.clone(), rotation))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;

    /// Whether the chain `[leaf, rest...]` verifies for a client that
    /// trusts `roots` alone.
    fn verifies(chain: &[CertificateDer<'static>], roots: &[CertificateDer<'static>]) -> bool {
        let mut store = rustls::RootCertStore::empty();
        for r in roots {
            store.add(r.clone()).expect("a root");
        }
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(store),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .expect("a verifier");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
        verifier
            .verify_server_cert(&chain[0], &chain[1..], &name, &[], rustls::pki_types::UnixTime::now())
            .is_ok()
    }

    fn node_chain(pki: &Pki) -> Vec<CertificateDer<'static>> {
        let (_, csr) = crate::membership::node_key().expect("a key");
        let issued = pki.issue_node(&berth_model::new_id(), &csr, &[]).expect("issued");
        let mut chain = vec![CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).expect("pem")];
        chain.extend(pki.chain_tail());
        chain
    }

    #[test]
    fn a_rotation_is_trusted_by_old_and_new_roots_and_retires_the_old_one() {
        let dir = tempfile::tempdir().expect("a dir");
        let manager = Pki::open(dir.path()).expect("a CA");
        let worker_dir = tempfile::tempdir().expect("a dir");
        std::fs::write(worker_dir.path().join("ca.pem"), manager.ca_pem()).expect("write");
        let worker = Pki::open(worker_dir.path()).expect("a worker");
        let old_root = manager.ca_der();
        let late_dir = tempfile::tempdir().expect("a dir");
        for name in ["ca.pem", "ca.key", "cluster.key"] {
            std::fs::copy(dir.path().join(name), late_dir.path().join(name)).expect("copied");
        }
        let before = node_chain(&manager);
        let signed_before = manager.sign(b"checkpoint 1").expect("signed");
        let token_before = manager.join_secret("worker", "n").expect("a secret");

        // Start: both roots trusted, the new one issues.
        let (root, rotation) = new_rotation(&manager).expect("a rotation");
        let mut record = CaRecord {
            root,
            next: Some(rotation.clone()),
            ..Default::default()
        };
        assert!(follow(&manager, &CaView::of(&record), Some(&record)).expect("followed"));
        assert!(
            !follow(&manager, &CaView::of(&record), Some(&record)).expect("again"),
            "nothing left to do"
        );
        assert!(follow(&worker, &CaView::of(&record), None).expect("followed"));
        let new_root = certs(&rotation.cert).expect("pem").remove(0);
        assert_eq!(manager.issuing_fingerprint(), fingerprint(&new_root));
        assert_eq!(worker.trust_roots(), vec![old_root.clone(), new_root.clone()]);
        assert!(!worker_dir.path().join("ca-next.key").exists(), "a worker gets no key");
        let during = node_chain(&manager);
        assert!(!manager.issued_by_issuing(&before[0]) && manager.issued_by_issuing(&during[0]));
        assert!(
            verifies(&during, std::slice::from_ref(&old_root)),
            "a node that has not heard yet verifies it (cross-signed)"
        );
        assert!(verifies(&during, std::slice::from_ref(&new_root)));
        assert!(verifies(&before, &[old_root.clone(), new_root.clone()]));
        assert_eq!(
            during.last(),
            Some(&old_root),
            "a joining node still finds the root its token names"
        );
        assert_eq!(manager.join_secret("worker", "n").expect("a secret"), token_before);

        // Finish: the new root is the root, the old one retired.
        let next = record.next.take().expect("next");
        record.retired.push(std::mem::replace(&mut record.root, next.cert));
        record.cross = next.cross;
        record.sealed_key = next.sealed_key;
        assert!(follow(&manager, &CaView::of(&record), Some(&record)).expect("followed"));
        assert!(follow(&worker, &CaView::of(&record), None).expect("followed"));
        for pki in [&manager, &worker] {
            assert_eq!(pki.ca_der(), new_root);
            assert_eq!(pki.trust_roots(), vec![new_root.clone()]);
            assert_eq!(pki.client_roots(), vec![new_root.clone(), old_root.clone()]);
            assert!(!pki.dir().join("ca-next.pem").exists());
        }
        let after = node_chain(&manager);
        assert_eq!(after.last(), Some(&new_root));
        assert!(verifies(&after, std::slice::from_ref(&new_root)) && verifies(&after, std::slice::from_ref(&old_root)));
        assert!(
            !verifies(&before, std::slice::from_ref(&new_root)),
            "the old root's certificates are not trusted as servers"
        );
        assert!(
            manager.verify(b"checkpoint 1", &signed_before),
            "what the old root signed still verifies"
        );
        let signed_after = manager.sign(b"checkpoint 2").expect("signed");
        assert!(worker.verify(b"checkpoint 2", &signed_after));
        assert_ne!(
            manager.join_secret("worker", "n").expect("a secret"),
            token_before,
            "tokens change"
        );
        // Reopened from its files, the same.
        let again = Pki::open(dir.path()).expect("reopened");
        assert_eq!(again.ca_der(), new_root);
        assert!(again.verify(b"checkpoint 1", &signed_before));

        // A manager that was down through it all takes the key from state.
        let late = Pki::open(late_dir.path()).expect("a manager from before");
        assert_eq!(late.ca_der(), old_root);
        assert!(follow(&late, &CaView::of(&record), Some(&record)).expect("followed"));
        assert_eq!(late.ca_der(), new_root);
        assert_eq!(late.issuing_fingerprint(), fingerprint(&new_root));
        assert!(late.issued_by_issuing(&node_chain(&late)[0]));
    }

    #[test]
    fn a_rotation_stopped_half_written_is_put_right_at_start() {
        let dir = tempfile::tempdir().expect("a dir");
        let pki = Pki::open(dir.path()).expect("a CA");
        let (root, rotation) = new_rotation(&pki).expect("a rotation");
        let mut record = CaRecord {
            root,
            next: Some(rotation),
            ..Default::default()
        };
        follow(&pki, &CaView::of(&record), Some(&record)).expect("started");
        let next = pki.issuing_fingerprint();
        // Finishing: the new key is in ca.key, ca.pem still the old root.
        std::fs::copy(dir.path().join("ca-next.key"), dir.path().join("ca.key")).expect("copied");
        let reopened = Pki::open(dir.path()).expect("put right");
        assert_eq!(reopened.ca_fingerprint(), next);
        // Starting the next one: its key written, its certificate not yet.
        let n = record.next.take().expect("next");
        record.retired.push(std::mem::replace(&mut record.root, n.cert));
        follow(&reopened, &CaView::of(&record), Some(&record)).expect("finished");
        let (other, _, _) = crate::pki::new_root().expect("another");
        std::fs::copy(dir.path().join("ca.pem"), dir.path().join("ca-next.pem")).expect("copied");
        std::fs::write(dir.path().join("ca-next.key"), other.serialize_pem()).expect("written");
        let reopened = Pki::open(dir.path()).expect("put right");
        assert!(!dir.path().join("ca-next.key").exists() && reopened.trust_roots().len() == 1);
    }

    #[test]
    fn a_key_that_is_not_the_certificate_s_is_refused() {
        let dir = tempfile::tempdir().expect("a dir");
        let pki = Pki::open(dir.path()).expect("a CA");
        let root = pki.ca_der();
        let (other, _, _) = crate::pki::new_root().expect("another");
        std::fs::write(dir.path().join("ca.key"), other.serialize_pem()).expect("write");
        // The files changed but do not pair: what was read before stays.
        assert_eq!(pki.ca_der(), root);
        assert!(pki.sign(b"m").is_ok_and(|s| pki.verify(b"m", &s)));
        let refused = Pki::open(dir.path()).err().expect("refused").to_string();
        assert!(refused.contains("is not the key of the CA root"), "{refused}");
        // A sealed key from another cluster does not open here.
        let other_dir = tempfile::tempdir().expect("a dir");
        let sealed = seal(other_dir.path(), b"x");
        assert!(sealed.is_err(), "no cluster key there");
        let mine = seal(dir.path(), b"secret").expect("sealed");
        assert_eq!(unseal(dir.path(), &mine).expect("opened"), b"secret");
        let mut tampered = mine.clone();
        tampered.replace_range(60..62, "00");
        assert!(unseal(dir.path(), &tampered).is_err());
    }
}
