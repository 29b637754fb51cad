//! Keys in Notary's wire form and the one signing interface every key
//! source (software key, encrypted key file, PKCS#11 token) implements.
//!
//! The types and the `Signer` trait below are the contract between the
//! software-key code and `pkcs11.rs`; extend them, don't change their shape.
//!
//! Two ids name a key. The *key id* is the hex SHA-256 of the canonical JSON
//! `{"keytype":..,"keyval":{"private":null,"public":base64}}`; metadata uses
//! it everywhere. The *canonical key id* differs only for the `-x509` types:
//! it is the key id of the bare public key inside the certificate
//! (`ecdsa`/`rsa` with the certificate's SubjectPublicKeyInfo). Key stores
//! file private keys under the canonical id, so one root key serves many
//! repositories whose root certificates differ.

use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2_next::{Digest, Sha256};

use crate::canonical;

/// Notary's key types (`keytype` in TUF key objects).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyType {
    #[serde(rename = "ecdsa")]
    Ecdsa,
    #[serde(rename = "ecdsa-x509")]
    EcdsaX509,
    #[serde(rename = "ed25519")]
    Ed25519,
    #[serde(rename = "rsa")]
    Rsa,
    #[serde(rename = "rsa-x509")]
    RsaX509,
}

impl KeyType {
    /// The wire name (`ecdsa`, `ecdsa-x509`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Ecdsa => "ecdsa",
            KeyType::EcdsaX509 => "ecdsa-x509",
            KeyType::Ed25519 => "ed25519",
            KeyType::Rsa => "rsa",
            KeyType::RsaX509 => "rsa-x509",
        }
    }

    /// Parse a wire name.
    pub fn from_wire(name: &str) -> Option<KeyType> {
        Some(match name {
            "ecdsa" => KeyType::Ecdsa,
            "ecdsa-x509" => KeyType::EcdsaX509,
            "ed25519" => KeyType::Ed25519,
            "rsa" => KeyType::Rsa,
            "rsa-x509" => KeyType::RsaX509,
            _ => return None,
        })
    }

    /// Whether `public` holds a PEM certificate.
    pub fn is_x509(self) -> bool {
        matches!(self, KeyType::EcdsaX509 | KeyType::RsaX509)
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A public key as TUF metadata carries it: `{"keytype": ..., "keyval":
/// {"public": base64, "private": null}}`. `public` holds the raw bytes that
/// are base64-encoded on the wire: DER SubjectPublicKeyInfo for `ecdsa` and
/// `rsa`, the 32-byte key for `ed25519`, a PEM certificate for the `-x509`
/// types.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PublicKey {
    pub keytype: KeyType,
    pub public: Vec<u8>,
}

impl PublicKey {
    pub fn new(keytype: KeyType, public: Vec<u8>) -> PublicKey {
        PublicKey { keytype, public }
    }

    /// The TUF key id: hex SHA-256 of the canonical JSON of this key with
    /// `"private": null`.
    pub fn id(&self) -> String {
        let value = self.to_json();
        // A key object has no numbers, so canonical encoding cannot fail.
        let bytes = canonical::canonical_json(&value).unwrap_or_default();
        hex::encode(Sha256::digest(&bytes))
    }

    /// The canonical key id (see the module doc): for `-x509` keys, the id
    /// of the certificate's bare public key; otherwise [`PublicKey::id`].
    pub fn canonical_id(&self) -> Result<String, crate::crypto::CryptoError> {
        match self.keytype {
            KeyType::EcdsaX509 | KeyType::RsaX509 => Ok(crate::crypto::public_key_from_certificate(self)?.id()),
            _ => Ok(self.id()),
        }
    }

    /// The wire object `{"keytype":..,"keyval":{"private":null,"public":..}}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "keytype": self.keytype.as_str(),
            "keyval": {
                "private": null,
                "public": base64::engine::general_purpose::STANDARD.encode(&self.public),
            }
        })
    }

    /// Parse the wire object. Private material, if any was sent, is ignored.
    pub fn from_json(value: &serde_json::Value) -> Result<PublicKey, String> {
        let keytype = value
            .get("keytype")
            .and_then(|v| v.as_str())
            .ok_or_else(|| "key object has no keytype".to_string())?;
        let keytype = KeyType::from_wire(keytype).ok_or_else(|| format!("unsupported key type {keytype:?}"))?;
        let public = value
            .get("keyval")
            .and_then(|v| v.get("public"))
            .and_then(|v| v.as_str())
            .ok_or_else(|| "key object has no keyval.public".to_string())?;
        let public = base64::engine::general_purpose::STANDARD
            .decode(public)
            .map_err(|e| format!("keyval.public is not base64: {e}"))?;
        Ok(PublicKey { keytype, public })
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        PublicKey::from_json(&value).map_err(serde::de::Error::custom)
    }
}

/// Signature methods as Notary writes them in `signatures[].method`
/// (`ecdsa`, `eddsa`, `rsapss`, `rsapkcs1v15`; Notary lower-cases the name
/// before looking it up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigMethod {
    /// Raw `r || s`, 64 bytes for P-256, over SHA-256 of the message.
    #[serde(rename = "ecdsa")]
    Ecdsa,
    /// Ed25519 over the message itself; Notary's wire name is `eddsa`.
    #[serde(rename = "eddsa")]
    Ed25519,
    /// RSASSA-PSS with SHA-256, salt length 32.
    #[serde(rename = "rsapss")]
    RsaPss,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    #[serde(rename = "rsapkcs1v15")]
    RsaPkcs1v15,
}

impl SigMethod {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SigMethod::Ecdsa => "ecdsa",
            SigMethod::Ed25519 => "eddsa",
            SigMethod::RsaPss => "rsapss",
            SigMethod::RsaPkcs1v15 => "rsapkcs1v15",
        }
    }

    /// Parse a wire name, case-insensitively as Notary does. `None` for
    /// methods berth (like Notary) cannot verify.
    pub fn from_wire(name: &str) -> Option<SigMethod> {
        Some(match name.to_ascii_lowercase().as_str() {
            "ecdsa" => SigMethod::Ecdsa,
            "eddsa" => SigMethod::Ed25519,
            "rsapss" => SigMethod::RsaPss,
            "rsapkcs1v15" => SigMethod::RsaPkcs1v15,
            _ => return None,
        })
    }
}

impl fmt::Display for SigMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a key could not sign.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("key {key_id}: {message}")]
    Key { key_id: String, message: String },
    #[error("hardware token: {0}")]
    Token(String),
}

/// Anything that can sign TUF metadata. Implementations never expose the
/// private key; `Debug` output of implementors must not contain it either.
pub trait Signer: Send + Sync {
    /// The public key as it appears in root or delegation metadata.
    fn public_key(&self) -> &PublicKey;
    /// The method this key signs with.
    fn method(&self) -> SigMethod;
    /// Sign `message` (the canonical JSON of a `signed` object). For ECDSA
    /// the result is raw `r || s`.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError>;
}

/// A signer presented under another public key with the same key material:
/// a root key signs as its `ecdsa-x509` certificate key, so signatures carry
/// the certificate key's id.
pub struct CertifiedSigner<'a> {
    inner: &'a dyn Signer,
    public: PublicKey,
}

impl<'a> CertifiedSigner<'a> {
    /// `public` must be the `-x509` form of `inner`'s key (checked).
    pub fn new(inner: &'a dyn Signer, public: PublicKey) -> Result<CertifiedSigner<'a>, crate::crypto::CryptoError> {
        let canonical = public.canonical_id()?;
        let inner_id = inner.public_key().canonical_id()?;
        if canonical != inner_id {
            return Err(crate::crypto::CryptoError::KeyMismatch {
                expected: canonical,
                found: inner_id,
            });
        }
        Ok(CertifiedSigner { inner, public })
    }
}

impl fmt::Debug for CertifiedSigner<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertifiedSigner")
            .field("key_id", &self.public.id())
            .finish()
    }
}

impl Signer for CertifiedSigner<'_> {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }
    fn method(&self) -> SigMethod {
        self.inner.method()
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        self.inner.sign(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_matches_notary_fixture() {
        // A timestamp key from a repository the notary 0.3 client published;
        // its id is the map key it is listed under in that root.json.
        let public = base64::engine::general_purpose::STANDARD
            .decode("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEZKFFI+3g0NH+9mitd5bRO3hkH3PG2cniXVrzqKKfRyc5QvmNc6W8wZ5IGlls6ZZX/GgKRzcpIttDidrOGiGlwQ==")
            .unwrap();
        let key = PublicKey::new(KeyType::Ecdsa, public);
        assert_eq!(
            key.id(),
            "f694343ec1d508b2840d86aec5387d7b4d62a39647e33566b2b2abf96029750c"
        );
        assert_eq!(key.canonical_id().unwrap(), key.id());
    }

    #[test]
    fn public_key_wire_round_trip() {
        let key = PublicKey::new(KeyType::Ed25519, vec![7u8; 32]);
        let text = serde_json::to_string(&key).unwrap();
        assert_eq!(
            text,
            r#"{"keytype":"ed25519","keyval":{"private":null,"public":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="}}"#
        );
        let back: PublicKey = serde_json::from_str(&text).unwrap();
        assert_eq!(back, key);
        let err = serde_json::from_str::<PublicKey>(r#"{"keytype":"dsa","keyval":{"public":""}}"#).unwrap_err();
        assert!(err.to_string().contains("unsupported key type \"dsa\""), "{err}");
    }

    #[test]
    fn sig_method_wire_names() {
        assert_eq!(serde_json::to_string(&SigMethod::Ed25519).unwrap(), r#""eddsa""#);
        assert_eq!(SigMethod::from_wire("ECDSA"), Some(SigMethod::Ecdsa));
        assert_eq!(SigMethod::from_wire("rsapkcs1v15"), Some(SigMethod::RsaPkcs1v15));
        assert_eq!(SigMethod::from_wire("pycrypto-pkcs#1 pss"), None);
    }
}
