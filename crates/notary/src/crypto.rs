//! Signature verification for every key type Notary accepts, software
//! signing keys (ECDSA P-256 and Ed25519), X.509 certificates for root keys,
//! and private-key encodings (PKCS#8, including the forms the notary CLI
//! writes).
//!
//! Verification follows Notary's verifiers exactly: ECDSA signatures are raw
//! `r || s` of the curve's size (DER is rejected, as Notary rejects it) over
//! SHA-256; Ed25519 signs the message itself; RSA keys must have at least
//! 2048 bits and sign SHA-256 with PSS (salt length 32) or PKCS#1 v1.5.

use std::fmt;

use chrono::{DateTime, Datelike, Duration, Utc};
use p256::pkcs8::DecodePublicKey as _;
use sha2_next::{Digest, Sha256};
use x509_parser::prelude::{FromDer as _, X509Certificate};
use zeroize::Zeroizing;

use crate::keys::{KeyType, PublicKey, SigMethod, SignError, Signer};

/// Smallest RSA modulus Notary accepts, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Why a key, certificate or signature was rejected.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CryptoError {
    #[error("signature by key {key_id} is invalid")]
    BadSignature { key_id: String },
    #[error("key {key_id} of type {keytype} cannot verify {method} signatures")]
    MethodMismatch {
        key_id: String,
        keytype: KeyType,
        method: String,
    },
    #[error("key {key_id} is malformed: {reason}")]
    MalformedKey { key_id: String, reason: String },
    #[error("rsa key {key_id} has {bits} bits, fewer than {MIN_RSA_BITS}")]
    RsaKeyTooShort { key_id: String, bits: usize },
    #[error("certificate is invalid: {0}")]
    Certificate(String),
    #[error("certificate with CN {cn:?} is expired or not yet valid")]
    CertificateExpired { cn: String },
    #[error("private key is malformed or unsupported: {0}")]
    PrivateKey(String),
    #[error("wrong passphrase for encrypted private key")]
    WrongPassphrase,
    #[error("public key {found} does not match {expected}")]
    KeyMismatch { expected: String, found: String },
    #[error("cannot create certificate: {0}")]
    CertificateCreation(String),
}

/// Verify `sig` over `message` by `key` with `method`.
pub fn verify_signature(key: &PublicKey, method: SigMethod, message: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
    let key_id = key.id();
    let mismatch = || CryptoError::MethodMismatch {
        key_id: key.id(),
        keytype: key.keytype,
        method: method.to_string(),
    };
    let bad = || CryptoError::BadSignature { key_id: key.id() };
    match method {
        SigMethod::Ecdsa => {
            let spki = match key.keytype {
                KeyType::Ecdsa => key.public.clone(),
                KeyType::EcdsaX509 => certificate_spki(key)?,
                _ => return Err(mismatch()),
            };
            let verifying =
                p256::ecdsa::VerifyingKey::from_public_key_der(&spki).map_err(|e| CryptoError::MalformedKey {
                    key_id: key_id.clone(),
                    reason: format!("not a P-256 key: {e}"),
                })?;
            if sig.len() != 64 {
                return Err(bad());
            }
            // The signature check itself runs in ring (assembly P-256): a
            // publish verifies several signatures on the trust server's
            // hot path. Raw `r || s`, as Notary writes it.
            let point = verifying.to_sec1_point(false);
            ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point.as_bytes())
                .verify(message, sig)
                .map_err(|_| bad())
        }
        SigMethod::Ed25519 => {
            if key.keytype != KeyType::Ed25519 {
                return Err(mismatch());
            }
            let raw: [u8; 32] = key
                .public
                .as_slice()
                .try_into()
                .map_err(|_| CryptoError::MalformedKey {
                    key_id: key_id.clone(),
                    reason: format!("ed25519 public key must be 32 bytes, not {}", key.public.len()),
                })?;
            let verifying = ed25519_dalek::VerifyingKey::from_bytes(&raw).map_err(|e| CryptoError::MalformedKey {
                key_id: key_id.clone(),
                reason: e.to_string(),
            })?;
            let signature = ed25519_dalek::Signature::from_slice(sig).map_err(|_| bad())?;
            use ed25519_dalek::Verifier as _;
            verifying.verify(message, &signature).map_err(|_| bad())
        }
        SigMethod::RsaPss | SigMethod::RsaPkcs1v15 => {
            let spki = match key.keytype {
                KeyType::Rsa => key.public.clone(),
                KeyType::RsaX509 => certificate_spki(key)?,
                _ => return Err(mismatch()),
            };
            let public = rsa::PublicKey::from_public_key_der(&spki).map_err(|e| CryptoError::MalformedKey {
                key_id: key_id.clone(),
                reason: format!("not an rsa key: {e}"),
            })?;
            use rsa::traits::PublicKeyParts as _;
            let bits = public.size() * 8;
            if bits < MIN_RSA_BITS {
                return Err(CryptoError::RsaKeyTooShort { key_id, bits });
            }
            if sig.len() < MIN_RSA_BITS / 8 {
                return Err(bad());
            }
            use rsa::signature::Verifier as _;
            if method == SigMethod::RsaPss {
                let verifying = rsa::pss::VerifyingKey::<Sha256>::new_with_salt_len(public, 32);
                let signature = rsa::pss::Signature::try_from(sig).map_err(|_| bad())?;
                verifying.verify(message, &signature).map_err(|_| bad())
            } else {
                let verifying = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(public);
                let signature = rsa::pkcs1v15::Signature::try_from(sig).map_err(|_| bad())?;
                verifying.verify(message, &signature).map_err(|_| bad())
            }
        }
    }
}

/// What berth needs from an X.509 certificate.
#[derive(Debug, Clone)]
pub struct CertificateInfo {
    pub der: Vec<u8>,
    pub common_name: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub is_ca: bool,
    /// DER SubjectPublicKeyInfo.
    pub spki: Vec<u8>,
    /// `Ecdsa` or `Rsa`, the type of the bare public key.
    pub key_type: KeyType,
    pub rsa_bits: Option<usize>,
    /// Signed with SHA-1, which Notary refuses.
    pub sha1_signature: bool,
}

impl CertificateInfo {
    /// Parse one DER certificate.
    pub fn from_der(der: &[u8]) -> Result<CertificateInfo, CryptoError> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| CryptoError::Certificate(e.to_string()))?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_string();
        let not_before = DateTime::from_timestamp(cert.validity().not_before.timestamp(), 0)
            .ok_or_else(|| CryptoError::Certificate("notBefore out of range".into()))?;
        let not_after = DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
            .ok_or_else(|| CryptoError::Certificate("notAfter out of range".into()))?;
        let spki_alg = cert.public_key().algorithm.algorithm.to_id_string();
        let (key_type, rsa_bits) = match spki_alg.as_str() {
            "1.2.840.10045.2.1" => (KeyType::Ecdsa, None),
            "1.2.840.113549.1.1.1" => {
                let bits = match cert.public_key().parsed() {
                    Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => rsa.key_size(),
                    _ => return Err(CryptoError::Certificate("unreadable rsa public key".into())),
                };
                (KeyType::Rsa, Some(bits))
            }
            other => {
                return Err(CryptoError::Certificate(format!(
                    "unsupported public key algorithm {other}"
                )))
            }
        };
        let sig_alg = cert.signature_algorithm.algorithm.to_id_string();
        let sha1_signature = matches!(
            sig_alg.as_str(),
            "1.2.840.113549.1.1.5" | "1.2.840.10045.4.1" | "1.2.840.10040.4.3"
        );
        Ok(CertificateInfo {
            der: der.to_vec(),
            common_name,
            not_before,
            not_after,
            is_ca: cert.is_ca(),
            spki: cert.public_key().raw.to_vec(),
            key_type,
            rsa_bits,
            sha1_signature,
        })
    }

    /// Notary's certificate checks: a sane validity window, no SHA-1
    /// signature, RSA keys of at least 2048 bits, and (with `now`) the
    /// certificate valid at `now`, allowing `notBefore` up to a day ahead.
    pub fn validate(&self, now: Option<DateTime<Utc>>) -> Result<(), CryptoError> {
        if self.not_before > self.not_after {
            return Err(CryptoError::Certificate(format!(
                "certificate {:?} has an invalid validity window",
                self.common_name
            )));
        }
        if self.sha1_signature {
            return Err(CryptoError::Certificate(format!(
                "certificate {:?} is signed with SHA-1",
                self.common_name
            )));
        }
        if let Some(bits) = self.rsa_bits {
            if bits < MIN_RSA_BITS {
                return Err(CryptoError::Certificate(format!(
                    "certificate {:?} has a {bits}-bit rsa key",
                    self.common_name
                )));
            }
        }
        if let Some(now) = now {
            if now + Duration::days(1) < self.not_before || now > self.not_after {
                return Err(CryptoError::CertificateExpired {
                    cn: self.common_name.clone(),
                });
            }
        }
        Ok(())
    }

    /// The bare public key (`ecdsa` or `rsa`) of this certificate.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::new(self.key_type, self.spki.clone())
    }

    /// Whether `issuer` signed this certificate.
    pub fn is_signed_by(&self, issuer: &CertificateInfo) -> bool {
        let Ok((_, cert)) = X509Certificate::from_der(&self.der) else {
            return false;
        };
        let Ok((_, issuer_cert)) = X509Certificate::from_der(&issuer.der) else {
            return false;
        };
        cert.verify_signature(Some(issuer_cert.public_key())).is_ok()
    }
}

/// Every `CERTIFICATE` block of a PEM bundle, in order.
pub fn parse_certificate_bundle(pem_bytes: &[u8]) -> Result<Vec<CertificateInfo>, CryptoError> {
    let blocks = pem::parse_many(pem_bytes).map_err(|e| CryptoError::Certificate(format!("bad PEM: {e}")))?;
    let mut certs = Vec::new();
    for block in blocks {
        if block.tag() != "CERTIFICATE" {
            return Err(CryptoError::Certificate(format!(
                "unexpected PEM block {:?}",
                block.tag()
            )));
        }
        certs.push(CertificateInfo::from_der(block.contents())?);
    }
    if certs.is_empty() {
        return Err(CryptoError::Certificate("no certificates found in PEM data".into()));
    }
    Ok(certs)
}

/// The first certificate of an `-x509` key.
pub fn key_certificate(key: &PublicKey) -> Result<CertificateInfo, CryptoError> {
    let blocks = pem::parse_many(&key.public).map_err(|e| CryptoError::MalformedKey {
        key_id: key.id(),
        reason: format!("certificate PEM: {e}"),
    })?;
    let block = blocks
        .into_iter()
        .find(|b| b.tag() == "CERTIFICATE" && b.headers().iter().next().is_none())
        .ok_or_else(|| CryptoError::MalformedKey {
            key_id: key.id(),
            reason: "no certificate in PEM data".into(),
        })?;
    CertificateInfo::from_der(block.contents())
}

fn certificate_spki(key: &PublicKey) -> Result<Vec<u8>, CryptoError> {
    Ok(key_certificate(key)?.spki)
}

/// The bare public key inside an `-x509` key's certificate.
pub fn public_key_from_certificate(key: &PublicKey) -> Result<PublicKey, CryptoError> {
    let cert = key_certificate(key)?;
    let expected = match key.keytype {
        KeyType::EcdsaX509 => KeyType::Ecdsa,
        KeyType::RsaX509 => KeyType::Rsa,
        other => {
            return Err(CryptoError::MalformedKey {
                key_id: key.id(),
                reason: format!("{other} key has no certificate"),
            })
        }
    };
    if cert.key_type != expected {
        return Err(CryptoError::MalformedKey {
            key_id: key.id(),
            reason: format!("{} key holds a certificate for a {} key", key.keytype, cert.key_type),
        });
    }
    Ok(cert.public_key())
}

/// The `-x509` key for a certificate: its PEM exactly as Go's encoder
/// writes it (LF line ends, 64-column base64), since Notary re-encodes root
/// certificates that way and takes the key id from the result.
pub fn certificate_key(cert: &CertificateInfo) -> PublicKey {
    certificate_bundle_key(cert, &[])
}

/// The `-x509` key for a leaf certificate followed by intermediates.
pub fn certificate_bundle_key(leaf: &CertificateInfo, intermediates: &[CertificateInfo]) -> PublicKey {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    let mut pem_text = String::new();
    for cert in std::iter::once(leaf).chain(intermediates) {
        pem_text.push_str(&pem::encode_config(
            &pem::Pem::new("CERTIFICATE", cert.der.clone()),
            config,
        ));
    }
    let keytype = if leaf.key_type == KeyType::Rsa {
        KeyType::RsaX509
    } else {
        KeyType::EcdsaX509
    };
    PublicKey::new(keytype, pem_text.into_bytes())
}

/// Validity of root certificates the notary CLI makes: ten years.
pub const ROOT_CERTIFICATE_DAYS: i64 = 3650;

/// Make the self-signed root certificate for `gun` the way the notary CLI
/// does (CN = gun, ten years, digitalSignature + keyEncipherment, code
/// signing, CA:FALSE), signed by `signer`, which may be a hardware key.
/// Returns the `ecdsa-x509` public key that goes into root.json.
pub fn create_root_certificate(signer: &dyn Signer, gun: &str, now: DateTime<Utc>) -> Result<PublicKey, CryptoError> {
    if signer.public_key().keytype != KeyType::Ecdsa || signer.method() != SigMethod::Ecdsa {
        return Err(CryptoError::CertificateCreation(format!(
            "root certificates need an ecdsa key, not {}",
            signer.public_key().keytype
        )));
    }
    let spki = p256::ecdsa::VerifyingKey::from_public_key_der(&signer.public_key().public)
        .map_err(|e| CryptoError::CertificateCreation(format!("signer key is not P-256: {e}")))?;
    let point = spki.to_sec1_point(false).as_bytes().to_vec();
    let key = RemoteEcdsaKey { signer, point };

    let mut params = rcgen::CertificateParams::default();
    let start = now.date_naive();
    let end = (now + Duration::days(ROOT_CERTIFICATE_DAYS)).date_naive();
    let ymd = |d: chrono::NaiveDate| {
        rcgen::date_time_ymd(
            d.year(),
            u8::try_from(d.month()).unwrap_or(1),
            u8::try_from(d.day()).unwrap_or(1),
        )
    };
    params.not_before = ymd(start);
    params.not_after = ymd(end);
    let mut serial = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut serial);
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::CommonName, gun);
    params.distinguished_name = name;
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::CodeSigning];
    let cert = params
        .self_signed(&key)
        .map_err(|e| CryptoError::CertificateCreation(e.to_string()))?;
    let info = CertificateInfo::from_der(cert.der())?;
    Ok(certificate_key(&info))
}

struct RemoteEcdsaKey<'a> {
    signer: &'a dyn Signer,
    point: Vec<u8>,
}

impl rcgen::PublicKeyData for RemoteEcdsaKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for RemoteEcdsaKey<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        // Signers return raw r || s; X.509 wants the DER form.
        let raw = self.signer.sign(msg).map_err(|_| rcgen::Error::RemoteKeyError)?;
        let sig = p256::ecdsa::Signature::from_slice(&raw).map_err(|_| rcgen::Error::RemoteKeyError)?;
        Ok(sig.to_der().as_bytes().to_vec())
    }
}

/// A private key held in memory: ECDSA P-256 or Ed25519. `Debug` shows the
/// key id only; the key material is wiped when dropped.
#[derive(Clone)]
pub struct SoftwareSigner {
    key: SoftwareKey,
    public: PublicKey,
}

#[derive(Clone)]
enum SoftwareKey {
    Ecdsa(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

impl fmt::Debug for SoftwareSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftwareSigner")
            .field("keytype", &self.public.keytype)
            .field("key_id", &self.public.id())
            .finish_non_exhaustive()
    }
}

fn random_bytes<const N: usize>() -> Zeroizing<[u8; N]> {
    let mut bytes = Zeroizing::new([0u8; N]);
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, bytes.as_mut());
    bytes
}

impl SoftwareSigner {
    /// A fresh ECDSA P-256 key (Notary's default key type).
    pub fn generate_ecdsa() -> SoftwareSigner {
        loop {
            let bytes = random_bytes::<32>();
            // Fails only for the zero scalar or one above the group order.
            if let Ok(key) = p256::ecdsa::SigningKey::from_slice(bytes.as_ref()) {
                return SoftwareSigner::from_ecdsa(key);
            }
        }
    }

    /// A fresh Ed25519 key.
    pub fn generate_ed25519() -> SoftwareSigner {
        let seed = random_bytes::<32>();
        SoftwareSigner::from_ed25519(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    fn from_ecdsa(key: p256::ecdsa::SigningKey) -> SoftwareSigner {
        use p256::pkcs8::EncodePublicKey as _;
        let spki = key
            .verifying_key()
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        SoftwareSigner {
            public: PublicKey::new(KeyType::Ecdsa, spki),
            key: SoftwareKey::Ecdsa(key),
        }
    }

    fn from_ed25519(key: ed25519_dalek::SigningKey) -> SoftwareSigner {
        let public = PublicKey::new(KeyType::Ed25519, key.verifying_key().to_bytes().to_vec());
        SoftwareSigner {
            public,
            key: SoftwareKey::Ed25519(key),
        }
    }

    /// The key id (for software keys, also the canonical key id).
    pub fn key_id(&self) -> String {
        self.public.id()
    }

    /// Parse an unencrypted PKCS#8 private key: standard ECDSA P-256 and
    /// Ed25519 keys, and the forms the notary CLI writes (ECDSA with
    /// version 1 and no public key, Ed25519 under OID 1.3.6.1.4.1.11591.15.1
    /// holding public || private).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<SoftwareSigner, CryptoError> {
        let info = pkcs8_parse(der)?;
        match info.algorithm.as_str() {
            OID_EC_PUBLIC_KEY => {
                if let Some(curve) = &info.curve {
                    if curve != OID_P256 {
                        return Err(CryptoError::PrivateKey(format!("unsupported elliptic curve {curve}")));
                    }
                }
                SoftwareSigner::from_sec1_der(&info.private_key)
            }
            OID_ED25519 => {
                let inner = der_lite::read_tlv(&info.private_key)
                    .ok()
                    .filter(|(tag, _, rest)| *tag == 0x04 && rest.is_empty())
                    .map(|(_, value, _)| value)
                    .ok_or_else(|| CryptoError::PrivateKey("ed25519 key is not an octet string".into()))?;
                let seed: [u8; 32] = inner
                    .try_into()
                    .map_err(|_| CryptoError::PrivateKey("ed25519 seed must be 32 bytes".into()))?;
                Ok(SoftwareSigner::from_ed25519(ed25519_dalek::SigningKey::from_bytes(
                    &seed,
                )))
            }
            // public (32) || private (seed 32 || public 32)
            OID_NOTARY_ED25519 => ed25519_from_notary_legacy(&info.private_key),
            OID_RSA => Err(CryptoError::PrivateKey(
                "rsa private keys can be verified against but not used to sign".into(),
            )),
            other => Err(CryptoError::PrivateKey(format!(
                "unsupported private key algorithm {other}"
            ))),
        }
    }

    /// Parse a SEC1 `EC PRIVATE KEY` (P-256).
    pub fn from_sec1_der(der: &[u8]) -> Result<SoftwareSigner, CryptoError> {
        let secret = p256::SecretKey::from_sec1_der(der)
            .map_err(|e| CryptoError::PrivateKey(format!("not a P-256 EC private key: {e}")))?;
        Ok(SoftwareSigner::from_ecdsa(p256::ecdsa::SigningKey::from(secret)))
    }

    /// PKCS#8 DER in the form the notary CLI reads back (`notary key
    /// import`): ECDSA as standard PKCS#8, Ed25519 in Notary's own form.
    pub fn to_pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        match &self.key {
            SoftwareKey::Ecdsa(key) => {
                let secret = p256::SecretKey::from(key);
                let sec1 = secret
                    .to_sec1_der()
                    .map(|d| Zeroizing::new(d.to_vec()))
                    .unwrap_or_default();
                let alg = der_lite::sequence(&[der_lite::oid(OID_EC_PUBLIC_KEY), der_lite::oid(OID_P256)]);
                Zeroizing::new(der_lite::sequence(&[
                    der_lite::integer_small(0),
                    alg,
                    der_lite::octet_string(&sec1),
                ]))
            }
            SoftwareKey::Ed25519(key) => {
                let mut body = Zeroizing::new(Vec::with_capacity(96));
                body.extend_from_slice(&key.verifying_key().to_bytes());
                body.extend_from_slice(&key.to_bytes());
                body.extend_from_slice(&key.verifying_key().to_bytes());
                let alg = der_lite::sequence(&[der_lite::oid(OID_NOTARY_ED25519)]);
                Zeroizing::new(der_lite::sequence(&[
                    der_lite::integer_small(0),
                    alg,
                    der_lite::octet_string(&body),
                ]))
            }
        }
    }
}

impl Signer for SoftwareSigner {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn method(&self) -> SigMethod {
        match self.key {
            SoftwareKey::Ecdsa(_) => SigMethod::Ecdsa,
            SoftwareKey::Ed25519(_) => SigMethod::Ed25519,
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        match &self.key {
            SoftwareKey::Ecdsa(key) => {
                use p256::ecdsa::signature::Signer as _;
                let sig: p256::ecdsa::Signature = key.sign(message);
                Ok(sig.to_bytes().to_vec())
            }
            SoftwareKey::Ed25519(key) => {
                use ed25519_dalek::Signer as _;
                Ok(key.sign(message).to_bytes().to_vec())
            }
        }
    }
}

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_ED25519: &str = "1.3.101.112";
const OID_NOTARY_ED25519: &str = "1.3.6.1.4.1.11591.15.1";
const OID_RSA: &str = "1.2.840.113549.1.1.1";

struct Pkcs8Info {
    algorithm: String,
    curve: Option<String>,
    private_key: Zeroizing<Vec<u8>>,
}

/// PKCS#8 `PrivateKeyInfo`, read leniently: the notary CLI writes version 1
/// without the public key field that version requires, which strict
/// decoders refuse.
fn pkcs8_parse(der: &[u8]) -> Result<Pkcs8Info, CryptoError> {
    let err = |what: &str| CryptoError::PrivateKey(format!("PKCS#8: {what}"));
    let (tag, body, _) = der_lite::read_tlv(der).map_err(|e| err(&e))?;
    if tag != 0x30 {
        return Err(err("not a sequence"));
    }
    let (tag, _version, rest) = der_lite::read_tlv(body).map_err(|e| err(&e))?;
    if tag != 0x02 {
        return Err(err("missing version"));
    }
    let (tag, alg, rest) = der_lite::read_tlv(rest).map_err(|e| err(&e))?;
    if tag != 0x30 {
        return Err(err("missing algorithm identifier"));
    }
    let (tag, oid, alg_rest) = der_lite::read_tlv(alg).map_err(|e| err(&e))?;
    if tag != 0x06 {
        return Err(err("algorithm is not an OID"));
    }
    let algorithm = der_lite::oid_to_string(oid);
    let curve = match der_lite::read_tlv(alg_rest) {
        Ok((0x06, value, _)) => Some(der_lite::oid_to_string(value)),
        _ => None,
    };
    let (tag, key, _) = der_lite::read_tlv(rest).map_err(|e| err(&e))?;
    if tag != 0x04 {
        return Err(err("private key is not an octet string"));
    }
    Ok(Pkcs8Info {
        algorithm,
        curve,
        private_key: Zeroizing::new(key.to_vec()),
    })
}

/// Iterations of PBKDF2-HMAC-SHA1 for keys berth exports encrypted. Notary
/// reads any count but only ever uses SHA-1 as the PRF, so the PRF stays.
const EXPORT_PBKDF2_ITERATIONS: u32 = 100_000;

/// Decrypt a PKCS#8 `EncryptedPrivateKeyInfo` (PBES2: PBKDF2 + AES-CBC, as
/// the notary CLI writes) and parse the key inside.
pub fn decrypt_pkcs8(der: &[u8], passphrase: &str) -> Result<SoftwareSigner, CryptoError> {
    let info = pkcs8::EncryptedPrivateKeyInfoRef::try_from(der)
        .map_err(|e| CryptoError::PrivateKey(format!("encrypted PKCS#8: {e}")))?;
    // A wrong passphrase shows as bad padding or as garbage that does not
    // parse; Notary reports both as a wrong passphrase.
    let plain = info
        .decrypt(passphrase.as_bytes())
        .map_err(|_| CryptoError::WrongPassphrase)?;
    SoftwareSigner::from_pkcs8_der(plain.as_bytes()).map_err(|_| CryptoError::WrongPassphrase)
}

/// Encrypt a PKCS#8 key the way the notary CLI can read it back.
pub fn encrypt_pkcs8(signer: &SoftwareSigner, passphrase: &str) -> Result<Vec<u8>, CryptoError> {
    use pkcs8::der::Encode as _;
    let salt = random_bytes::<16>();
    let iv = random_bytes::<16>();
    let kdf = pkcs8::pkcs5::pbes2::Pbkdf2Params {
        salt: pkcs8::pkcs5::pbes2::Salt::new(salt.as_ref()).map_err(|e| CryptoError::PrivateKey(e.to_string()))?,
        iteration_count: EXPORT_PBKDF2_ITERATIONS,
        key_length: None,
        prf: pkcs8::pkcs5::pbes2::Pbkdf2Prf::HmacWithSha1,
    };
    let params = pkcs8::pkcs5::pbes2::Parameters {
        kdf: kdf.into(),
        encryption: pkcs8::pkcs5::pbes2::EncryptionScheme::Aes256Cbc { iv: *iv },
    };
    let plain = signer.to_pkcs8_der();
    let encrypted = params
        .encrypt(passphrase.as_bytes(), &plain)
        .map_err(|e| CryptoError::PrivateKey(format!("encrypting: {e}")))?;
    let data = pkcs8::der::asn1::OctetStringRef::new(&encrypted).map_err(|e| CryptoError::PrivateKey(e.to_string()))?;
    let info = pkcs8::EncryptedPrivateKeyInfo {
        encryption_algorithm: params.into(),
        encrypted_data: data,
    };
    info.to_der()
        .map_err(|e| CryptoError::PrivateKey(format!("encoding: {e}")))
}

/// Decrypt the body of a legacy encrypted PEM block (`Proc-Type:
/// 4,ENCRYPTED`, as notary clients before 0.4 wrote private keys): the key is
/// OpenSSL's `EVP_BytesToKey` (MD5, one round, salt = first 8 bytes of the
/// IV) and the cipher AES-CBC with PKCS#7 padding. `dek_info` is the
/// `DEK-Info` header, e.g. `AES-256-CBC,<hex iv>`.
pub fn decrypt_legacy_pem(body: &[u8], dek_info: &str, passphrase: &str) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    use cbc::cipher::{block_padding::Pkcs7, BlockModeDecrypt as _, KeyIvInit as _};
    use md5::Digest as _;
    let (cipher, iv_hex) = dek_info
        .split_once(',')
        .ok_or_else(|| CryptoError::PrivateKey(format!("bad DEK-Info {dek_info:?}")))?;
    let key_len = match cipher.trim() {
        "AES-128-CBC" => 16,
        "AES-192-CBC" => 24,
        "AES-256-CBC" => 32,
        other => {
            return Err(CryptoError::PrivateKey(format!(
                "unsupported legacy PEM cipher {other}"
            )))
        }
    };
    let iv: [u8; 16] = hex::decode(iv_hex.trim())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| CryptoError::PrivateKey("bad DEK-Info IV".into()))?;
    let mut key = Zeroizing::new(Vec::with_capacity(48));
    let mut previous: Vec<u8> = Vec::new();
    while key.len() < key_len {
        let mut md5 = md5::Md5::new();
        md5.update(&previous);
        md5.update(passphrase.as_bytes());
        md5.update(&iv[..8]);
        previous = md5.finalize().to_vec();
        key.extend_from_slice(&previous);
    }
    key.truncate(key_len);
    let bad_key = |_| CryptoError::PrivateKey("bad legacy PEM key length".into());
    let plain = match key_len {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(&key, &iv)
            .map_err(bad_key)?
            .decrypt_padded_vec::<Pkcs7>(body),
        24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(&key, &iv)
            .map_err(bad_key)?
            .decrypt_padded_vec::<Pkcs7>(body),
        _ => cbc::Decryptor::<aes::Aes256>::new_from_slices(&key, &iv)
            .map_err(bad_key)?
            .decrypt_padded_vec::<Pkcs7>(body),
    };
    plain.map(Zeroizing::new).map_err(|_| CryptoError::WrongPassphrase)
}

/// A legacy Notary Ed25519 private key body: public (32) || private (64,
/// seed || public).
pub fn ed25519_from_notary_legacy(body: &[u8]) -> Result<SoftwareSigner, CryptoError> {
    if body.len() != 96 {
        return Err(CryptoError::PrivateKey("notary ed25519 key must be 96 bytes".into()));
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    seed.copy_from_slice(&body[32..64]);
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    if key.verifying_key().to_bytes()[..] != body[..32] {
        return Err(CryptoError::PrivateKey(
            "ed25519 public and private halves disagree".into(),
        ));
    }
    Ok(SoftwareSigner::from_ed25519(key))
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A just-enough DER reader and writer for PKCS#8 shapes that strict
/// decoders refuse (see [`pkcs8_parse`]).
mod der_lite {
    pub fn read_tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
        let (&tag, rest) = input.split_first().ok_or("truncated DER")?;
        let (&first, mut rest) = rest.split_first().ok_or("truncated DER length")?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return Err("bad DER length".into());
            }
            let mut len = 0usize;
            for &b in &rest[..n] {
                len = (len << 8) | usize::from(b);
            }
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return Err("DER value runs past its end".into());
        }
        Ok((tag, &rest[..len], &rest[len..]))
    }

    pub fn oid_to_string(value: &[u8]) -> String {
        let mut arcs: Vec<u64> = Vec::new();
        let mut acc: u64 = 0;
        for (i, &b) in value.iter().enumerate() {
            acc = (acc << 7) | u64::from(b & 0x7f);
            if b & 0x80 == 0 {
                if arcs.is_empty() && i < value.len() {
                    let first = if acc < 40 {
                        0
                    } else if acc < 80 {
                        1
                    } else {
                        2
                    };
                    arcs.push(first);
                    arcs.push(acc - first * 40);
                } else {
                    arcs.push(acc);
                }
                acc = 0;
            }
        }
        arcs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(".")
    }

    fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = value.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes = len.to_be_bytes();
            let skip = bytes.iter().take_while(|&&b| b == 0).count();
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
        out.extend_from_slice(value);
        out
    }

    pub fn sequence(items: &[Vec<u8>]) -> Vec<u8> {
        tlv(0x30, &items.concat())
    }

    pub fn octet_string(value: &[u8]) -> Vec<u8> {
        tlv(0x04, value)
    }

    pub fn integer_small(value: u8) -> Vec<u8> {
        tlv(0x02, &[value])
    }

    pub fn oid(dotted: &str) -> Vec<u8> {
        let arcs: Vec<u64> = dotted.split('.').filter_map(|a| a.parse().ok()).collect();
        let mut body = Vec::new();
        if arcs.len() >= 2 {
            encode_arc(&mut body, arcs[0] * 40 + arcs[1]);
            for &arc in &arcs[2..] {
                encode_arc(&mut body, arc);
            }
        }
        tlv(0x06, &body)
    }

    fn encode_arc(out: &mut Vec<u8>, arc: u64) {
        let mut groups = vec![(arc & 0x7f) as u8];
        let mut rest = arc >> 7;
        while rest > 0 {
            groups.push(((rest & 0x7f) as u8) | 0x80);
            rest >>= 7;
        }
        groups.reverse();
        out.extend_from_slice(&groups);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oid_round_trip() {
        for oid in [OID_EC_PUBLIC_KEY, OID_P256, OID_ED25519, OID_NOTARY_ED25519, OID_RSA] {
            let der = der_lite::oid(oid);
            let (tag, value, rest) = der_lite::read_tlv(&der).unwrap();
            assert_eq!((tag, rest.len()), (0x06, 0));
            assert_eq!(der_lite::oid_to_string(value), oid);
        }
    }

    #[test]
    fn software_keys_sign_and_verify() {
        for signer in [SoftwareSigner::generate_ecdsa(), SoftwareSigner::generate_ed25519()] {
            let sig = signer.sign(b"payload").unwrap();
            verify_signature(signer.public_key(), signer.method(), b"payload", &sig).unwrap();
            let err = verify_signature(signer.public_key(), signer.method(), b"payloaD", &sig).unwrap_err();
            assert_eq!(
                err,
                CryptoError::BadSignature {
                    key_id: signer.key_id()
                }
            );
        }
    }

    #[test]
    fn ecdsa_signature_is_raw_and_der_is_refused() {
        let signer = SoftwareSigner::generate_ecdsa();
        let raw = signer.sign(b"m").unwrap();
        assert_eq!(raw.len(), 64);
        let der = p256::ecdsa::Signature::from_slice(&raw)
            .unwrap()
            .to_der()
            .as_bytes()
            .to_vec();
        assert!(verify_signature(signer.public_key(), SigMethod::Ecdsa, b"m", &der).is_err());
    }

    #[test]
    fn wrong_method_for_key_type_is_refused() {
        let signer = SoftwareSigner::generate_ed25519();
        let sig = signer.sign(b"m").unwrap();
        let err = verify_signature(signer.public_key(), SigMethod::Ecdsa, b"m", &sig).unwrap_err();
        assert!(matches!(err, CryptoError::MethodMismatch { .. }), "{err:?}");
    }

    #[test]
    fn pkcs8_round_trip_keeps_the_key() {
        for signer in [SoftwareSigner::generate_ecdsa(), SoftwareSigner::generate_ed25519()] {
            let der = signer.to_pkcs8_der();
            let back = SoftwareSigner::from_pkcs8_der(&der).unwrap();
            assert_eq!(back.public_key(), signer.public_key());
            let encrypted = encrypt_pkcs8(&signer, "correct horse").unwrap();
            let back = decrypt_pkcs8(&encrypted, "correct horse").unwrap();
            assert_eq!(back.public_key(), signer.public_key());
            assert_eq!(
                decrypt_pkcs8(&encrypted, "wrong horse").unwrap_err(),
                CryptoError::WrongPassphrase
            );
        }
    }

    #[test]
    fn debug_of_software_signer_shows_no_secret() {
        let signer = SoftwareSigner::generate_ecdsa();
        let text = format!("{signer:?}");
        assert!(text.contains(&signer.key_id()));
        let SoftwareKey::Ecdsa(key) = &signer.key else {
            unreachable!()
        };
        let secret_hex = hex::encode(key.to_bytes());
        assert!(!text.contains(&secret_hex));
        assert!(!text.to_lowercase().contains(&secret_hex));
        assert!(!text.to_lowercase().contains("signingkey"));
    }

    fn rsa_key(pem_text: &str) -> (rsa::PrivateKey, PublicKey) {
        use rsa::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};
        let private = rsa::PrivateKey::from_pkcs8_pem(pem_text).unwrap();
        let spki = private.to_public_key().to_public_key_der().unwrap();
        (private, PublicKey::new(KeyType::Rsa, spki.as_bytes().to_vec()))
    }

    #[test]
    fn rsa_pkcs1v15_and_pss_signatures_verify() {
        use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _, Signer as _};
        let (private, public) = rsa_key(include_str!("../tests/fixtures/rsa-2048-test-key.pem"));
        let pkcs1 = rsa::pkcs1v15::SigningKey::<Sha256>::new(private.clone())
            .sign(b"meta")
            .to_vec();
        verify_signature(&public, SigMethod::RsaPkcs1v15, b"meta", &pkcs1).unwrap();
        assert!(verify_signature(&public, SigMethod::RsaPkcs1v15, b"metA", &pkcs1).is_err());
        assert!(verify_signature(&public, SigMethod::RsaPss, b"meta", &pkcs1).is_err());
        let mut rng = DeterministicRng(7);
        let pss = rsa::pss::SigningKey::<Sha256>::new(private)
            .sign_with_rng(&mut rng, b"meta")
            .to_vec();
        verify_signature(&public, SigMethod::RsaPss, b"meta", &pss).unwrap();
        assert!(verify_signature(&public, SigMethod::RsaPss, b"metA", &pss).is_err());
    }

    #[test]
    fn rsa_keys_under_2048_bits_are_refused() {
        use rsa::signature::{SignatureEncoding as _, Signer as _};
        let (private, public) = rsa_key(include_str!("../tests/fixtures/rsa-1024-test-key.pem"));
        let sig = rsa::pkcs1v15::SigningKey::<Sha256>::new(private).sign(b"meta").to_vec();
        let err = verify_signature(&public, SigMethod::RsaPkcs1v15, b"meta", &sig).unwrap_err();
        assert_eq!(
            err,
            CryptoError::RsaKeyTooShort {
                key_id: public.id(),
                bits: 1024
            }
        );
    }

    /// PSS salts in a test need some randomness source of the new
    /// rand_core generation; a counter is enough to exercise verification.
    struct DeterministicRng(u64);

    impl rsa::rand_core::TryRng for DeterministicRng {
        type Error = core::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            Ok(self.try_next_u64()? as u32)
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            Ok(self.0)
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            for chunk in dst.chunks_mut(8) {
                let v = self.try_next_u64()?.to_le_bytes();
                chunk.copy_from_slice(&v[..chunk.len()]);
            }
            Ok(())
        }
    }

    impl rsa::rand_core::TryCryptoRng for DeterministicRng {}

    #[test]
    fn root_certificate_like_the_notary_cli() {
        let signer = SoftwareSigner::generate_ecdsa();
        let now = Utc::now();
        let key = create_root_certificate(&signer, "example.com/app", now).unwrap();
        assert_eq!(key.keytype, KeyType::EcdsaX509);
        let text = String::from_utf8(key.public.clone()).unwrap();
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----\nMII") && text.ends_with("-----END CERTIFICATE-----\n"));
        assert!(
            !text.contains('\r') && text.lines().all(|l| l.len() <= 64),
            "Go's PEM layout: {text}"
        );
        let cert = key_certificate(&key).unwrap();
        assert_eq!(cert.common_name, "example.com/app");
        assert!(!cert.is_ca);
        assert!(cert.not_after - cert.not_before >= Duration::days(ROOT_CERTIFICATE_DAYS - 1));
        cert.validate(Some(now)).unwrap();
        assert!(cert.is_signed_by(&cert), "self-signed");
        // the canonical id is the signer's own key id
        assert_eq!(key.canonical_id().unwrap(), signer.key_id());
        assert_ne!(key.id(), signer.key_id());
        // and signatures by the signer verify against the certificate key
        let sig = signer.sign(b"root").unwrap();
        verify_signature(&key, SigMethod::Ecdsa, b"root", &sig).unwrap();
        let expired = now + Duration::days(ROOT_CERTIFICATE_DAYS + 2);
        assert!(matches!(
            cert.validate(Some(expired)),
            Err(CryptoError::CertificateExpired { .. })
        ));
    }
}
