//! The cluster CA under `<data-root>/pki/`: made on the first start (ECDSA
//! P-256, key mode 0600), then the node's server certificate it signs
//! (renewed when the host's names change, the CA changes or expiry nears),
//! node certificates for the nodes that join, and client certificates for
//! bundles (keys returned, never stored).
//!
//! A node that joined as a worker holds the CA certificate but not its key
//! ([`Pki::is_manager`] is false): it presents its node certificate and
//! can issue nothing.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

const CA_DAYS: i64 = 3650;
const SERVER_DAYS: i64 = 365;
const CLIENT_DAYS: i64 = 365;
/// Node certificates are short-lived and renewed by their node.
pub const NODE_DAYS: i64 = 90;
/// A server certificate with less left than this is renewed at start.
const RENEW_BEFORE_DAYS: i64 = 30;

pub struct Pki {
    dir: PathBuf,
    /// Whether the CA key was here when the node started: a manager.
    manager: bool,
    /// The CA files as last read; read again when one of them changed.
    current: RwLock<Current>,
}

struct Current {
    stamp: Stamp,
    version: u64,
    ca: Arc<Authorities>,
}

/// When each CA file was last modified (`None`: absent).
type Stamp = [Option<std::time::SystemTime>; CA_FILES.len()];

/// The files the CA is kept in, under the pki directory: the root and its
/// key, the root's certificate signed by the root before it, a rotation's
/// new root (then its cross-signed certificate) and key, and the roots
/// the cluster had before.
pub(crate) const CA_FILES: [&str; 6] = [
    "ca.pem",
    "ca.key",
    "ca-cross.pem",
    "ca-next.pem",
    "ca-next.key",
    "ca-retired.pem",
];

/// The cluster's CAs as the files hold them.
pub(crate) struct Authorities {
    pub(crate) root: Authority,
    /// A rotation's new root, trusted next to the root and issuing.
    pub(crate) next: Option<Authority>,
    pub(crate) retired: Vec<CertificateDer<'static>>,
    /// Derives join token secrets: from the root's key, managers only.
    token_key: Option<ring::hmac::Key>,
}

/// One CA: its self-signed certificate, the same signed by the root
/// before it (when there was one), and its key (managers only).
pub(crate) struct Authority {
    pub(crate) pem: String,
    pub(crate) der: CertificateDer<'static>,
    pub(crate) cross: Option<CertificateDer<'static>>,
    issuer: Option<Issuer<'static, KeyPair>>,
}

impl Authorities {
    /// The CA that signs certificates: a rotation's new root, else the root.
    pub(crate) fn issuing(&self) -> &Authority {
        self.next.as_ref().unwrap_or(&self.root)
    }
}

impl Authority {
    /// Its key as an issuer: managers only.
    pub(crate) fn issuer(&self) -> Result<&Issuer<'static, KeyPair>> {
        self.issuer
            .as_ref()
            .ok_or_else(|| Error::Invalid("this node is a worker: only managers hold the cluster CA key".into()))
    }
}

/// A node certificate just issued by the CA.
#[derive(Debug, Clone)]
pub struct IssuedNode {
    pub cert_pem: String,
    /// SHA-256 of the certificate's DER, hex.
    pub fingerprint: String,
    /// RFC 3339.
    pub not_after: String,
    /// SHA-256 of the issuing CA's certificate, hex.
    pub ca: String,
}

/// A certificate chain and its key, ready for a TLS server.
pub struct ServerIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// A client certificate just issued. `key_pem` exists only here.
pub struct IssuedClient {
    pub cert_pem: String,
    pub key_pem: String,
    /// Hex of the serial number.
    pub serial: String,
    /// SHA-256 of the certificate's DER, hex.
    pub fingerprint: String,
    /// RFC 3339.
    pub not_after: String,
}

/// What the server certificate on disk was made for.
#[derive(Serialize, Deserialize, PartialEq, Eq)]
struct ServerMeta {
    names: Vec<String>,
    ca: String,
    not_after: i64,
}

/// A new root CA: its key, the parameters it was made from and its
/// self-signed certificate, with room for one CA below it (the next
/// root's cross-signed certificate).
pub(crate) fn new_root() -> Result<(KeyPair, CertificateParams, rcgen::Certificate)> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(&format!("berth cluster CA {}", hex::encode(rand::random::<[u8; 4]>())));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, CA_DAYS);
    let cert = params.self_signed(&key)?;
    Ok((key, params, cert))
}

impl Pki {
    /// Opens the CA in `dir`, creating it on first use. A directory with
    /// the CA certificate but not its key (a worker's) opens without it.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io("setting permissions of", dir, e))?;
        let key_path = dir.join("ca.key");
        let cert_path = dir.join("ca.pem");
        let manager = key_path.exists() || !cert_path.exists();
        if !cert_path.exists() {
            let (key, _, cert) = new_root()?;
            write_private(&key_path, key.serialize_pem().as_bytes())?;
            write_public(&cert_path, cert.pem().as_bytes())?;
            tracing::info!(path = %cert_path.display(), "created the cluster CA");
        }
        let ca = match load(dir, manager) {
            Ok(ca) => ca,
            Err(e) if manager => {
                // A stop while a rotation's files were being written.
                tracing::warn!(error = %e, "finishing what a CA rotation left half written");
                crate::ca::repair(dir)?;
                load(dir, manager)?
            }
            Err(e) => return Err(e),
        };
        let stamp = stamp(dir);
        let ca = Arc::new(ca);
        if manager {
            crate::ca::ensure_cluster_key(dir, ca.root.issuer()?.key())?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            manager,
            current: RwLock::new(Current { stamp, version: 0, ca }),
        })
    }

    /// The CA files as they are now: read again when one changed since
    /// (a CA rotation); on a read that fails, as they were.
    pub(crate) fn authorities(&self) -> Arc<Authorities> {
        let now = stamp(&self.dir);
        {
            let current = self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            if current.stamp == now {
                return current.ca.clone();
            }
        }
        let mut current = self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.stamp != now {
            match load(&self.dir, self.manager) {
                Ok(ca) => {
                    current.ca = Arc::new(ca);
                    current.stamp = now;
                    current.version += 1;
                }
                // A rotation's files being written: the next look reads them.
                Err(e) => tracing::debug!(error = %e, "the CA files changed but do not read yet"),
            }
        }
        current.ca.clone()
    }

    /// Goes up each time the CA files are read again: what was made from
    /// them (TLS roots, chains) is to be made again.
    pub fn version(&self) -> u64 {
        self.authorities();
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .version
    }

    /// Whether this node holds the CA key (a manager).
    pub fn is_manager(&self) -> bool {
        self.manager
    }

    /// The directory the CA and this node's certificates are kept in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The secret of a join token: HMAC-SHA256, under a key derived from
    /// the root's key, of the role and the nonce the cluster keeps for it.
    /// Only a manager can compute it; what the cluster stores reveals
    /// nothing. A new root (a CA rotation) makes new tokens.
    pub fn join_secret(&self, role: &str, nonce: &str) -> Result<[u8; 32]> {
        let ca = self.authorities();
        let key = ca
            .token_key
            .as_ref()
            .ok_or_else(|| Error::Invalid("this node is a worker: join tokens come from managers".into()))?;
        let tag = ring::hmac::sign(key, format!("{role}\0{nonce}").as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// A node certificate for `node_id`, for the public key of `csr_der`
    /// (a PKCS#10 request; only its key is used): SAN URI
    /// `berth:node:ID`, `localhost`, the loopback addresses and `ips`;
    /// server and client authentication; [`NODE_DAYS`] long.
    pub fn issue_node(&self, node_id: &str, csr_der: &[u8], ips: &[std::net::IpAddr]) -> Result<IssuedNode> {
        self.issue_node_for(
            node_id,
            csr_der,
            ips,
            std::time::Duration::from_secs(NODE_DAYS as u64 * 86400),
        )
    }

    /// [`Pki::issue_node`] valid for `lifetime` from now (valid from a day
    /// ago, for clocks that lag), signed by the issuing CA.
    pub fn issue_node_for(
        &self,
        node_id: &str,
        csr_der: &[u8],
        ips: &[std::net::IpAddr],
        lifetime: std::time::Duration,
    ) -> Result<IssuedNode> {
        let ca = self.authorities();
        let issuing = ca.issuing();
        let issuer = issuing.issuer()?;
        if !crate::join::valid_node_id(node_id) {
            return Err(Error::Invalid(format!("invalid node id {node_id:?}")));
        }
        let csr = rcgen::CertificateSigningRequestParams::from_der(&csr_der.to_vec().into())
            .map_err(|e| Error::Invalid(format!("the certificate request does not parse: {e}")))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(&format!("berth node {node_id}"));
        let mut sans = vec![
            SanType::URI(format!("berth:node:{node_id}").try_into()?),
            SanType::DnsName("localhost".to_string().try_into()?),
            SanType::IpAddress(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
            SanType::IpAddress(std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)),
        ];
        sans.extend(
            ips.iter()
                .filter(|ip| !ip.is_loopback())
                .map(|ip| SanType::IpAddress(*ip)),
        );
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.serial_number = Some(serial());
        params.use_authority_key_identifier_extension = true;
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        params.not_before = epoch + std::time::Duration::from_secs(now.saturating_sub(86400));
        let not_after = now + lifetime.as_secs();
        params.not_after = epoch + std::time::Duration::from_secs(not_after);
        let not_after = not_after as i64;
        let cert = params.signed_by(&csr.public_key, issuer)?;
        Ok(IssuedNode {
            cert_pem: cert.pem(),
            fingerprint: fingerprint(cert.der()),
            not_after: rfc3339(not_after),
            ca: fingerprint(&issuing.der),
        })
    }

    /// This node's certificate and key (`node.pem`, `node.key`), when it
    /// has one, the certificate followed by [`Pki::chain_tail`]: the
    /// chain it presents.
    pub fn node_identity(&self) -> Option<Result<ServerIdentity>> {
        let (cert, key) = (self.dir.join("node.pem"), self.dir.join("node.key"));
        (cert.exists() && key.exists()).then(|| self.presented(&cert, &key))
    }

    /// Stores this node's certificate and key.
    pub fn store_node_identity(&self, cert_pem: &str, key_pem: &str) -> Result<()> {
        write_private(&self.dir.join("node.key"), key_pem.as_bytes())?;
        write_public(&self.dir.join("node.pem"), cert_pem.as_bytes())
    }

    /// The root's expiry (RFC 3339).
    pub fn ca_expires(&self) -> String {
        not_after_of(&self.authorities().root.der).unwrap_or_default()
    }

    /// The root's certificate, PEM: what join tokens name.
    pub fn ca_pem(&self) -> String {
        self.authorities().root.pem.clone()
    }

    /// What a client is to trust, PEM: the root, and during a rotation
    /// the new root after it.
    pub fn trust_pem(&self) -> String {
        let ca = self.authorities();
        let mut pem = ca.root.pem.clone();
        if let Some(next) = &ca.next {
            pem.push_str(&next.pem);
        }
        pem
    }

    /// The root's certificate.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.authorities().root.der.clone()
    }

    /// The root's SHA-256 fingerprint, hex: names the cluster key.
    pub fn ca_fingerprint(&self) -> String {
        fingerprint(&self.authorities().root.der)
    }

    /// The issuing CA's fingerprint: a rotation's new root, else the root.
    pub fn issuing_fingerprint(&self) -> String {
        fingerprint(&self.authorities().issuing().der)
    }

    /// Whether the certificate `der` was issued by the issuing CA (false
    /// when it does not parse).
    pub fn issued_by_issuing(&self, der: &[u8]) -> bool {
        let ca = self.authorities();
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
            return false;
        };
        let Ok((_, issuing)) = x509_parser::parse_x509_certificate(&ca.issuing().der) else {
            return false;
        };
        cert.issuer().as_raw() == issuing.subject().as_raw()
    }

    /// The roots a node trusts in a server: the root, and a rotation's
    /// new root.
    pub fn trust_roots(&self) -> Vec<CertificateDer<'static>> {
        let ca = self.authorities();
        std::iter::once(ca.root.der.clone())
            .chain(ca.next.as_ref().map(|n| n.der.clone()))
            .collect()
    }

    /// The roots a client certificate may chain to: those of
    /// [`Pki::trust_roots`] and the retired ones. Every client certificate
    /// is also checked against its record (a bundle, a node), so one
    /// issued before a rotation works until it expires or is revoked.
    pub fn client_roots(&self) -> Vec<CertificateDer<'static>> {
        let ca = self.authorities();
        let mut roots = self.trust_roots();
        roots.extend(ca.retired.iter().cloned());
        roots
    }

    /// What follows a certificate the issuing CA signed in the chain a
    /// node presents: the issuing CA signed by the root before it (so that
    /// whoever trusts only that one verifies the chain), then the root
    /// (the last certificate, which a joining node checks against its
    /// token).
    pub fn chain_tail(&self) -> Vec<CertificateDer<'static>> {
        let ca = self.authorities();
        ca.issuing()
            .cross
            .iter()
            .cloned()
            .chain(std::iter::once(ca.root.der.clone()))
            .collect()
    }

    /// Signs `message` with the root's key: ECDSA P-256 over SHA-256, the
    /// signature DER-encoded. Checked by [`Pki::verify`] and
    /// [`verify_with_ca`].
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        use rcgen::SigningKey;
        let ca = self.authorities();
        Ok(ca.root.issuer()?.key().sign(message)?)
    }

    /// Whether `signature` over `message` is the key's of a CA the cluster
    /// has had (its root, a rotation's new root, the retired ones).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let ca = self.authorities();
        std::iter::once(&ca.root.der)
            .chain(ca.next.as_ref().map(|n| &n.der))
            .chain(ca.retired.iter())
            .any(|der| verify_der(der, message, signature).unwrap_or(false))
    }

    /// The server certificate for `names` (DNS names and IP addresses),
    /// issued again when what is on disk was made for other names, by
    /// another CA than the issuing one, or expires soon. Its chain ends
    /// with [`Pki::chain_tail`].
    pub fn server(&self, names: &[String]) -> Result<ServerIdentity> {
        let cert_path = self.dir.join("server.pem");
        let key_path = self.dir.join("server.key");
        let meta_path = self.dir.join("server.json");
        let ca = self.authorities();
        let want_ca = fingerprint(&ca.issuing().der);
        let now = chrono::Utc::now().timestamp();
        let current = std::fs::read(&meta_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<ServerMeta>(&b).ok())
            .filter(|m| {
                m.names == names
                    && m.ca == want_ca
                    && m.not_after - now > RENEW_BEFORE_DAYS * 86400
                    && cert_path.exists()
                    && key_path.exists()
            });
        if current.is_none() {
            let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
            let mut params = CertificateParams::default();
            let cn = names.iter().find(|n| n.parse::<std::net::IpAddr>().is_err());
            params.distinguished_name = dn(cn.map_or("berth node", String::as_str));
            params.subject_alt_names = names.iter().map(|n| san(n)).collect::<Result<_>>()?;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            params.serial_number = Some(serial());
            params.use_authority_key_identifier_extension = true;
            let not_after = validity(&mut params, SERVER_DAYS);
            let cert = params.signed_by(&key, ca.issuing().issuer()?)?;
            write_private(&key_path, key.serialize_pem().as_bytes())?;
            write_public(&cert_path, cert.pem().as_bytes())?;
            let meta = ServerMeta {
                names: names.to_vec(),
                ca: want_ca,
                not_after,
            };
            write_public(&meta_path, &serde_json::to_vec_pretty(&meta).unwrap_or_default())?;
            tracing::info!(names = ?names, "issued the server certificate");
        }
        self.presented(&cert_path, &key_path)
    }

    /// The certificate of `cert` and the key of `key`, the certificate
    /// followed by [`Pki::chain_tail`]: what this node presents.
    fn presented(&self, cert: &Path, key: &Path) -> Result<ServerIdentity> {
        let mut identity = load_identity(cert, key)?;
        identity.chain.truncate(1);
        identity.chain.extend(self.chain_tail());
        Ok(identity)
    }

    /// A client certificate naming `user` (common name and the SAN URI
    /// `berth:user:NAME`), signed by the issuing CA, with a fresh key.
    pub fn issue_client(&self, user: &str) -> Result<IssuedClient> {
        if user.is_empty() || user.len() > 128 || user.chars().any(|c| c.is_control() || c == ':') {
            return Err(Error::Invalid(format!("invalid user name {user:?}")));
        }
        let ca = self.authorities();
        let issuer = ca.issuing().issuer()?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(user);
        params.subject_alt_names = vec![SanType::URI(format!("berth:user:{user}").try_into()?)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let serial = serial();
        let serial_hex = hex::encode(serial.to_bytes());
        params.serial_number = Some(serial);
        params.use_authority_key_identifier_extension = true;
        let not_after = validity(&mut params, CLIENT_DAYS);
        let cert = params.signed_by(&key, issuer)?;
        Ok(IssuedClient {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial: serial_hex,
            fingerprint: fingerprint(cert.der()),
            not_after: chrono::DateTime::from_timestamp(not_after, 0)
                .unwrap_or_default()
                .to_rfc3339(),
        })
    }
}

fn stamp(dir: &Path) -> Stamp {
    CA_FILES.map(|name| std::fs::metadata(dir.join(name)).and_then(|m| m.modified()).ok())
}

/// Reads the CA files. A key that is not its certificate's (files half
/// written by a rotation) is an error: the caller keeps what it had.
fn load(dir: &Path, manager: bool) -> Result<Authorities> {
    let root_path = dir.join("ca.pem");
    let root_der =
        CertificateDer::from_pem_slice(read(&root_path)?.as_bytes()).map_err(|e| pem_error(&root_path, e))?;
    let cross = read_certs(&dir.join("ca-cross.pem"))?.into_iter().next();
    let root = authority(root_der, cross, manager.then(|| dir.join("ca.key")))?;
    let next = match read_certs(&dir.join("ca-next.pem"))?.as_slice() {
        [] => None,
        [cert, rest @ ..] => {
            let key = dir.join("ca-next.key");
            let key = (manager && key.exists()).then_some(key);
            Some(authority(cert.clone(), rest.first().cloned(), key)?)
        }
    };
    let retired = read_certs(&dir.join("ca-retired.pem"))?;
    let token_key = root.issuer.as_ref().map(|issuer| {
        let mut h = Sha256::new();
        h.update(b"berth join tokens\0");
        h.update(issuer.key().serialized_der());
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &h.finalize())
    });
    Ok(Authorities {
        root,
        next,
        retired,
        token_key,
    })
}

/// A CA from its certificate and, when `key` is given, its key, which must
/// be the certificate's.
fn authority(
    der: CertificateDer<'static>,
    cross: Option<CertificateDer<'static>>,
    key: Option<PathBuf>,
) -> Result<Authority> {
    let pem = pem_of(&der);
    let issuer = match key {
        None => None,
        Some(path) => {
            let key = KeyPair::from_pem(&read(&path)?).map_err(|e| pem_error(&path, e))?;
            if !key_of(&der, &key) {
                return Err(Error::Invalid(format!(
                    "{} is not the key of its certificate",
                    path.display()
                )));
            }
            Some(Issuer::from_ca_cert_der(&der, key)?)
        }
    };
    Ok(Authority {
        pem,
        der,
        cross,
        issuer,
    })
}

/// Whether `key` is the key of the certificate `der`.
pub(crate) fn key_of(der: &[u8], key: &KeyPair) -> bool {
    x509_parser::parse_x509_certificate(der)
        .is_ok_and(|(_, cert)| cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw())
}

/// The certificates of a PEM file; none when it does not exist.
pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    match std::fs::read(path) {
        Ok(bytes) => CertificateDer::pem_slice_iter(&bytes)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| pem_error(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io("reading", path, e)),
    }
}

/// A certificate as PEM.
pub(crate) fn pem_of(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// A certificate chain and key from PEM files (`--tls-cert`, `--tls-key`).
pub fn load_identity(cert: &Path, key: &Path) -> Result<ServerIdentity> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_error(cert, e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert, e))?;
    if chain.is_empty() {
        return Err(Error::Pem {
            path: cert.to_path_buf(),
            message: "no certificate in the file".into(),
        });
    }
    // The key's own parse error could quote it: say only where it was.
    let key = PrivateKeyDer::from_pem_file(key).map_err(|_| Error::Pem {
        path: key.to_path_buf(),
        message: "no readable private key (PKCS#8, PKCS#1 or SEC1 PEM)".into(),
    })?;
    Ok(ServerIdentity { chain, key })
}

/// Whether `signature` is the cluster key's (see [`Pki::sign`]) over
/// `message`, the key taken from a CA certificate of `ca_pem` (one, or a
/// bundle: the cluster's roots, current and retired).
pub fn verify_with_ca(ca_pem: &str, message: &[u8], signature: &[u8]) -> Result<bool> {
    let certs = CertificateDer::pem_slice_iter(ca_pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Invalid(format!("the CA certificate is not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Invalid("the CA file holds no certificate".into()));
    }
    for der in &certs {
        if verify_der(der, message, signature)? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn verify_der(der: &[u8], message: &[u8], signature: &[u8]) -> Result<bool> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Error::Invalid(format!("the CA certificate does not parse: {e}")))?;
    let point = cert.public_key().subject_public_key.data.to_vec();
    let key = ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, point);
    Ok(key.verify(message, signature).is_ok())
}

/// SHA-256 of a certificate's DER, hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// The user a client certificate names: its SAN URI `berth:user:NAME`, or
/// else its common name. `None` when it names nobody, does not parse, or
/// is a node certificate ([`node_of`]): a node is no user.
pub fn identity_of(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    if let Ok(Some(sans)) = cert.subject_alternative_name() {
        for name in &sans.value.general_names {
            if let x509_parser::extensions::GeneralName::URI(uri) = name {
                if uri.starts_with("berth:node:") {
                    return None;
                }
                if let Some(user) = uri.strip_prefix("berth:user:").filter(|u| !u.is_empty()) {
                    return Some(user.to_string());
                }
            }
        }
    }
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    (!cn.is_empty()).then(|| cn.to_string())
}

/// The node id a node certificate names (SAN URI `berth:node:ID`).
pub fn node_of(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let sans = cert.subject_alternative_name().ok()??;
    sans.value.general_names.iter().find_map(|name| match name {
        x509_parser::extensions::GeneralName::URI(uri) => uri
            .strip_prefix("berth:node:")
            .filter(|id| crate::join::valid_node_id(id))
            .map(str::to_string),
        _ => None,
    })
}

/// A certificate's not-after time, RFC 3339.
pub fn not_after_of(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(rfc3339(cert.validity().not_after.timestamp()))
}

/// When a node certificate should be renewed: once less than a third of
/// its lifetime (from its issue, a day after its not-before) is left.
/// `None` when it does not parse.
pub fn renew_at(der: &[u8]) -> Option<chrono::DateTime<chrono::Utc>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let before = cert.validity().not_before.timestamp() + 86400;
    let after = cert.validity().not_after.timestamp();
    let at = after - (after - before).max(0) / 3;
    chrono::DateTime::from_timestamp(at, 0)
}

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::OrganizationName, "berth");
    d.push(DnType::CommonName, cn);
    d
}

fn san(name: &str) -> Result<SanType> {
    Ok(match name.parse::<std::net::IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(name.to_string().try_into()?),
    })
}

/// A random positive 128-bit serial number.
fn serial() -> SerialNumber {
    let mut b: [u8; 16] = rand::random();
    b[0] = (b[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&b)
}

/// From yesterday (clock skew) to `days` from today; returns not-after as unix seconds.
fn validity(params: &mut CertificateParams, days: i64) -> i64 {
    use chrono::Datelike;
    let ymd = |d: chrono::NaiveDate| rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8);
    let today = chrono::Utc::now().date_naive();
    let start = today - chrono::Duration::days(1);
    let end = today + chrono::Duration::days(days);
    params.not_before = ymd(start);
    params.not_after = ymd(end);
    end.and_hms_opt(0, 0, 0).map_or(0, |t| t.and_utc().timestamp())
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| io("reading", path, e))
}

/// Writes a key: mode 0600 from creation, then renamed into place.
pub(crate) fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    write_mode(path, data, 0o600)
}

pub(crate) fn write_public(path: &Path, data: &[u8]) -> Result<()> {
    write_mode(path, data, 0o644)
}

fn write_mode(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| io("creating", &tmp, e))?;
    f.write_all(data).map_err(|e| io("writing", &tmp, e))?;
    f.sync_all().map_err(|e| io("syncing", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("renaming", path, e))
}

fn io(what: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

fn pem_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Pem {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_key_signs_and_the_ca_certificate_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::open(dir.path()).unwrap();
        let sig = pki.sign(b"berth-audit:1:abc").unwrap();
        assert!(verify_with_ca(&pki.ca_pem(), b"berth-audit:1:abc", &sig).unwrap());
        assert!(!verify_with_ca(&pki.ca_pem(), b"berth-audit:1:abd", &sig).unwrap());
        // Another cluster's CA does not verify it.
        let other_dir = tempfile::tempdir().unwrap();
        let other = Pki::open(other_dir.path()).unwrap();
        assert!(!verify_with_ca(&other.ca_pem(), b"berth-audit:1:abc", &sig).unwrap());
        assert!(verify_with_ca("not pem", b"x", &sig).is_err());
        // Reopened from disk, the same key.
        let again = Pki::open(dir.path()).unwrap();
        assert_eq!(again.ca_fingerprint(), pki.ca_fingerprint());
        assert!(verify_with_ca(&pki.ca_pem(), b"m", &again.sign(b"m").unwrap()).unwrap());
    }

    #[test]
    fn ca_persists_and_server_renews_on_name_change() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::open(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = Pki::open(dir.path()).unwrap();
        assert_eq!(pki.ca_pem(), again.ca_pem());

        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let a = pki.server(&names).unwrap();
        let b = pki.server(&names).unwrap();
        assert_eq!(a.chain[0], b.chain[0], "same names: the certificate is kept");
        let c = pki.server(&["localhost".to_string()]).unwrap();
        assert_ne!(a.chain[0], c.chain[0], "other names: a new certificate");
        let mode = std::fs::metadata(dir.path().join("server.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn client_certificates_name_their_user() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::open(dir.path()).unwrap();
        let issued = pki.issue_client("alice").unwrap();
        let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
        assert_eq!(identity_of(&der).as_deref(), Some("alice"));
        assert_eq!(fingerprint(&der), issued.fingerprint);
        assert!(issued.key_pem.contains("PRIVATE KEY"));
        assert!(pki.issue_client("a:b").is_err());
        assert_ne!(pki.issue_client("alice").unwrap().serial, issued.serial);
    }

    #[test]
    fn node_certificates_name_their_node_and_no_user() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::open(dir.path()).unwrap();
        let id = berth_model::new_id();
        let (_, csr) = crate::membership::node_key().unwrap();
        let ip: std::net::IpAddr = "198.18.0.12".parse().unwrap();
        let issued = pki.issue_node(&id, &csr, &[ip]).unwrap();
        let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
        assert_eq!(node_of(&der).as_deref(), Some(id.as_str()));
        assert_eq!(identity_of(&der), None, "a node certificate is no user's");
        assert_eq!(fingerprint(&der), issued.fingerprint);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let sans = format!("{:?}", cert.subject_alternative_name().unwrap().unwrap().value);
        assert!(sans.contains("[198, 18, 0, 12]") && sans.contains(&id), "{sans}");
        assert!(pki.issue_node("not-an-id", &csr, &[]).is_err());
        assert!(pki.issue_node(&id, b"not a request", &[]).is_err());
        // A user's certificate names no node.
        let user = pki.issue_client("alice").unwrap();
        assert_eq!(
            node_of(&CertificateDer::from_pem_slice(user.cert_pem.as_bytes()).unwrap()),
            None
        );
    }

    #[test]
    fn a_worker_holds_the_ca_certificate_and_issues_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let manager = Pki::open(dir.path()).unwrap();
        let a = manager.join_secret("worker", "n1").unwrap();
        assert_eq!(
            a,
            Pki::open(dir.path()).unwrap().join_secret("worker", "n1").unwrap(),
            "derived again: the same"
        );
        assert_ne!(a, manager.join_secret("worker", "n2").unwrap());
        assert_ne!(a, manager.join_secret("manager", "n1").unwrap());
        let worker_dir = tempfile::tempdir().unwrap();
        std::fs::write(worker_dir.path().join("ca.pem"), manager.ca_pem()).unwrap();
        let worker = Pki::open(worker_dir.path()).unwrap();
        assert!(manager.is_manager() && !worker.is_manager());
        assert_eq!(worker.ca_fingerprint(), manager.ca_fingerprint());
        assert!(
            !worker_dir.path().join("ca.key").exists(),
            "a worker makes no CA of its own"
        );
        let refused = worker.issue_client("alice").err().unwrap().to_string();
        assert!(refused.contains("only managers hold the cluster CA key"), "{refused}");
        assert!(worker.sign(b"m").is_err() && worker.join_secret("worker", "n1").is_err());
    }
}
