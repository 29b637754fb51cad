//! Keys in Notary's wire form and the one signing interface every key
//! source (software key, encrypted key file, PKCS#11 token) implements.
//!
//! The types and the `Signer` trait below are the contract between the
//! software-key code and `pkcs11.rs`; extend them, don't change their shape.

use serde::{Deserialize, Serialize};

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

/// Signature methods as Notary writes them in `signatures[].method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigMethod {
    /// Raw `r || s`, 64 bytes for P-256, over SHA-256 of the message.
    #[serde(rename = "ecdsa")]
    Ecdsa,
    #[serde(rename = "ed25519")]
    Ed25519,
    /// RSASSA-PSS with SHA-256.
    #[serde(rename = "rsapss")]
    RsaPss,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    #[serde(rename = "rsa")]
    RsaPkcs1v15,
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
