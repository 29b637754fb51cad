//! TUF metadata in Notary v1's wire format: role names, the signed envelope
//! and the four role types.
//!
//! **Invariant:** a [`Signed`] keeps the canonical bytes of its `signed`
//! object as received (or as built), and signatures are made and checked
//! over those bytes, never over a re-encoding of the typed struct. Fields
//! berth does not know survive in `unknown` maps, so re-serializing what a
//! client uploaded does not change what was signed.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use sha2_next::{Digest, Sha256, Sha512};

use crate::canonical::{self, CanonicalError};
use crate::keys::{PublicKey, SignError, Signer};

/// Why metadata could not be read or built.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum MetadataError {
    #[error("{role}: malformed metadata: {reason}")]
    Malformed { role: String, reason: String },
    #[error("{role}: expected _type {expected:?}, found {found:?}")]
    WrongType {
        role: String,
        expected: String,
        found: String,
    },
    #[error("invalid role name {name:?}: {reason}")]
    InvalidRole { name: String, reason: String },
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
}

/// A role name: the four top-level roles or a delegation `targets/...`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RoleName {
    Root,
    Targets,
    Snapshot,
    Timestamp,
    /// The full name, e.g. `targets/releases`.
    Delegation(String),
}

impl RoleName {
    /// Parse and validate a role name as Notary does: delegations are
    /// `targets/` followed by `[-a-z0-9_/]`, path-clean, under 256 bytes.
    pub fn parse(name: &str) -> Result<RoleName, MetadataError> {
        match name {
            "root" => return Ok(RoleName::Root),
            "targets" => return Ok(RoleName::Targets),
            "snapshot" => return Ok(RoleName::Snapshot),
            "timestamp" => return Ok(RoleName::Timestamp),
            _ => {}
        }
        let invalid = |reason: &str| MetadataError::InvalidRole {
            name: name.to_string(),
            reason: reason.to_string(),
        };
        if !name.starts_with("targets/") {
            return Err(invalid("not a base role and not a delegation under targets/"));
        }
        if name.len() >= 256 {
            return Err(invalid("longer than 255 bytes"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'/')
        {
            return Err(invalid("only a-z, 0-9, -, _ and / are allowed"));
        }
        if name.split('/').any(|seg| seg.is_empty()) {
            return Err(invalid("empty path segment"));
        }
        // Names are also path-clean: no "." or ".." segments (a "." cannot
        // appear given the allowed characters) and no trailing slash.
        Ok(RoleName::Delegation(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            RoleName::Root => "root",
            RoleName::Targets => "targets",
            RoleName::Snapshot => "snapshot",
            RoleName::Timestamp => "timestamp",
            RoleName::Delegation(name) => name,
        }
    }

    /// `targets` or a delegation: a role whose metadata is a `Targets`.
    pub fn is_targets_like(&self) -> bool {
        matches!(self, RoleName::Targets | RoleName::Delegation(_))
    }

    pub fn is_delegation(&self) -> bool {
        matches!(self, RoleName::Delegation(_))
    }

    /// The delegating role: `targets/a/b` → `targets/a`, `targets/a` →
    /// `targets`; `None` for top-level roles.
    pub fn parent(&self) -> Option<RoleName> {
        match self {
            RoleName::Delegation(name) => {
                let (parent, _) = name.rsplit_once('/')?;
                RoleName::parse(parent).ok()
            }
            _ => None,
        }
    }

    /// Path segments; orders parents before children.
    pub fn depth(&self) -> usize {
        self.as_str().split('/').count()
    }

    /// The `_type` a role's metadata must carry.
    pub fn tuf_type(&self) -> &'static str {
        match self {
            RoleName::Root => Root::TYPE,
            RoleName::Targets | RoleName::Delegation(_) => Targets::TYPE,
            RoleName::Snapshot => Snapshot::TYPE,
            RoleName::Timestamp => Timestamp::TYPE,
        }
    }

    /// Notary's default expiry for metadata of this role.
    pub fn default_expiry(&self) -> Duration {
        match self {
            RoleName::Root => Duration::days(3650),
            RoleName::Targets | RoleName::Delegation(_) => Duration::days(3 * 365),
            RoleName::Snapshot => Duration::days(3 * 365),
            RoleName::Timestamp => Duration::days(14),
        }
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RoleName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RoleName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        RoleName::parse(&name).map_err(serde::de::Error::custom)
    }
}

/// One signature: `{"keyid", "method", "sig"}` with `sig` in base64. The
/// method stays a string: Notary skips signatures whose method it does not
/// know instead of rejecting the document, and so does berth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    pub keyid: String,
    pub method: String,
    #[serde(with = "base64_bytes")]
    pub sig: Vec<u8>,
}

/// The role types.
pub trait Metadata: Serialize + DeserializeOwned + Clone {
    /// `_type` on the wire.
    const TYPE: &'static str;
    fn version(&self) -> u64;
    fn expires(&self) -> DateTime<Utc>;
    fn type_field(&self) -> &str;
}

/// A signed envelope `{"signed": T, "signatures": [...]}`.
#[derive(Debug, Clone)]
pub struct Signed<T> {
    signed: T,
    signatures: Vec<Signature>,
    /// The `signed` object as generic JSON (as received, or as built).
    value: Value,
    /// Canonical bytes of `value`: what signatures cover.
    canonical: Vec<u8>,
    /// The file exactly as received, until signatures change.
    raw: Option<Vec<u8>>,
}

#[derive(Deserialize)]
struct Envelope {
    signed: Value,
    #[serde(default, deserialize_with = "nullable")]
    signatures: Vec<Signature>,
}

impl<T: Metadata> Signed<T> {
    /// Parse a metadata file. `role` names the file in errors.
    pub fn from_bytes(role: &RoleName, bytes: &[u8]) -> Result<Signed<T>, MetadataError> {
        let malformed = |reason: String| MetadataError::Malformed {
            role: role.to_string(),
            reason,
        };
        let envelope: Envelope = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        if !envelope.signed.is_object() {
            return Err(malformed("\"signed\" is not an object".into()));
        }
        let found = envelope
            .signed
            .get("_type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if found != T::TYPE {
            return Err(MetadataError::WrongType {
                role: role.to_string(),
                expected: T::TYPE.into(),
                found,
            });
        }
        let canonical = canonical::canonical_json(&envelope.signed)?;
        let signed: T = serde_json::from_value(envelope.signed.clone()).map_err(|e| malformed(e.to_string()))?;
        Ok(Signed {
            signed,
            signatures: envelope.signatures,
            value: envelope.signed,
            canonical,
            raw: Some(bytes.to_vec()),
        })
    }

    /// Wrap freshly built metadata, unsigned.
    pub fn new(signed: T) -> Result<Signed<T>, MetadataError> {
        let value = serde_json::to_value(&signed).map_err(|e| MetadataError::Malformed {
            role: T::TYPE.to_string(),
            reason: e.to_string(),
        })?;
        let canonical = canonical::canonical_json(&value)?;
        Ok(Signed {
            signed,
            signatures: Vec::new(),
            value,
            canonical,
            raw: None,
        })
    }

    pub fn signed(&self) -> &T {
        &self.signed
    }

    pub fn into_signed(self) -> T {
        self.signed
    }

    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    /// The bytes signatures cover.
    pub fn canonical_bytes(&self) -> &[u8] {
        &self.canonical
    }

    /// Add a signature by each signer, replacing an older one by the same key.
    pub fn sign(&mut self, signers: &[&dyn Signer]) -> Result<(), SignError> {
        for signer in signers {
            let keyid = signer.public_key().id();
            let sig = signer.sign(&self.canonical)?;
            self.raw = None;
            self.signatures.retain(|s| s.keyid != keyid);
            self.signatures.push(Signature {
                keyid,
                method: signer.method().as_str().to_string(),
                sig,
            });
        }
        Ok(())
    }

    /// Drop every signature.
    pub fn clear_signatures(&mut self) {
        self.raw = None;
        self.signatures.clear();
    }

    /// Keep only signatures whose key id satisfies `keep`.
    pub fn retain_signatures(&mut self, keep: impl Fn(&str) -> bool) {
        self.raw = None;
        self.signatures.retain(|s| keep(&s.keyid));
    }

    /// Add a signature made elsewhere (over [`Signed::canonical_bytes`]).
    pub fn push_signature(&mut self, signature: Signature) {
        self.raw = None;
        self.signatures.retain(|s| s.keyid != signature.keyid);
        self.signatures.push(signature);
    }

    /// The file: exactly the bytes received if signatures did not change
    /// since, otherwise `{"signed":..,"signatures":[..]}`, compact, with
    /// `signed` in sorted-key form.
    pub fn to_bytes(&self) -> Vec<u8> {
        if let Some(raw) = &self.raw {
            return raw.clone();
        }
        let signed = canonical::compact_sorted_json(&self.value).unwrap_or_else(|_| self.canonical.clone());
        let signatures = serde_json::to_vec(&self.signatures).unwrap_or_else(|_| b"[]".to_vec());
        let mut out = Vec::with_capacity(signed.len() + signatures.len() + 32);
        out.extend_from_slice(b"{\"signed\":");
        out.extend_from_slice(&signed);
        out.extend_from_slice(b",\"signatures\":");
        out.extend_from_slice(&signatures);
        out.push(b'}');
        out
    }
}

/// Key ids and threshold of a top-level role, as listed in root.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootRole {
    #[serde(default, deserialize_with = "nullable")]
    pub keyids: Vec<String>,
    pub threshold: i64,
}

/// `root.json`'s `signed` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Root {
    #[serde(rename = "_type")]
    pub type_: String,
    #[serde(default)]
    pub consistent_snapshot: bool,
    #[serde(with = "rfc3339")]
    pub expires: DateTime<Utc>,
    #[serde(default, deserialize_with = "nullable")]
    pub keys: BTreeMap<String, PublicKey>,
    #[serde(default, deserialize_with = "nullable")]
    pub roles: BTreeMap<String, RootRole>,
    pub version: u64,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, Value>,
}

/// Length and hashes of a file (a target or a metadata file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    #[serde(default, with = "base64_map")]
    pub hashes: BTreeMap<String, Vec<u8>>,
    pub length: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<Value>,
}

impl FileMeta {
    /// Length, SHA-256 and SHA-512 of `bytes` (Notary's default hashes).
    pub fn from_bytes(bytes: &[u8]) -> FileMeta {
        let mut hashes = BTreeMap::new();
        hashes.insert("sha256".to_string(), Sha256::digest(bytes).to_vec());
        hashes.insert("sha512".to_string(), Sha512::digest(bytes).to_vec());
        FileMeta {
            hashes,
            length: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
            custom: None,
        }
    }

    /// The SHA-256, hex-encoded (what consistent-snapshot names carry).
    pub fn sha256_hex(&self) -> Option<String> {
        self.hashes.get("sha256").map(hex::encode)
    }

    /// Same length, same hashes, same custom data (Notary's `Equals`).
    pub fn same_as(&self, other: &FileMeta) -> bool {
        self.length == other.length && self.hashes == other.hashes && self.custom == other.custom
    }
}

/// A delegated role inside a targets file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegationRole {
    #[serde(default, deserialize_with = "nullable")]
    pub keyids: Vec<String>,
    pub name: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    pub threshold: i64,
}

/// Keys and roles a targets file delegates to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delegations {
    #[serde(default, deserialize_with = "nullable")]
    pub keys: BTreeMap<String, PublicKey>,
    #[serde(default, deserialize_with = "nullable")]
    pub roles: Vec<DelegationRole>,
}

/// `targets.json`'s (or a delegation's) `signed` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Targets {
    #[serde(rename = "_type")]
    pub type_: String,
    #[serde(default, deserialize_with = "nullable")]
    pub delegations: Delegations,
    #[serde(with = "rfc3339")]
    pub expires: DateTime<Utc>,
    #[serde(default, deserialize_with = "nullable")]
    pub targets: BTreeMap<String, FileMeta>,
    pub version: u64,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, Value>,
}

/// `snapshot.json`'s `signed` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    #[serde(rename = "_type")]
    pub type_: String,
    #[serde(with = "rfc3339")]
    pub expires: DateTime<Utc>,
    #[serde(default, deserialize_with = "nullable")]
    pub meta: BTreeMap<String, FileMeta>,
    pub version: u64,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, Value>,
}

/// `timestamp.json`'s `signed` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timestamp {
    #[serde(rename = "_type")]
    pub type_: String,
    #[serde(with = "rfc3339")]
    pub expires: DateTime<Utc>,
    #[serde(default, deserialize_with = "nullable")]
    pub meta: BTreeMap<String, FileMeta>,
    pub version: u64,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, Value>,
}

macro_rules! impl_metadata {
    ($ty:ty, $name:literal) => {
        impl Metadata for $ty {
            const TYPE: &'static str = $name;
            fn version(&self) -> u64 {
                self.version
            }
            fn expires(&self) -> DateTime<Utc> {
                self.expires
            }
            fn type_field(&self) -> &str {
                &self.type_
            }
        }
    };
}
impl_metadata!(Root, "Root");
impl_metadata!(Targets, "Targets");
impl_metadata!(Snapshot, "Snapshot");
impl_metadata!(Timestamp, "Timestamp");

impl Root {
    /// An empty root of version 0 (versions are bumped when signed).
    pub fn new(expires: DateTime<Utc>) -> Root {
        Root {
            type_: Root::TYPE.into(),
            consistent_snapshot: false,
            expires,
            keys: BTreeMap::new(),
            roles: BTreeMap::new(),
            version: 0,
            unknown: BTreeMap::new(),
        }
    }
}

impl Targets {
    pub fn new(expires: DateTime<Utc>) -> Targets {
        Targets {
            type_: Targets::TYPE.into(),
            delegations: Delegations::default(),
            expires,
            targets: BTreeMap::new(),
            version: 0,
            unknown: BTreeMap::new(),
        }
    }
}

impl Snapshot {
    pub fn new(expires: DateTime<Utc>) -> Snapshot {
        Snapshot {
            type_: Snapshot::TYPE.into(),
            expires,
            meta: BTreeMap::new(),
            version: 0,
            unknown: BTreeMap::new(),
        }
    }
}

impl Timestamp {
    pub fn new(expires: DateTime<Utc>) -> Timestamp {
        Timestamp {
            type_: Timestamp::TYPE.into(),
            expires,
            meta: BTreeMap::new(),
            version: 0,
            unknown: BTreeMap::new(),
        }
    }
}

/// The `version` of any metadata file without parsing the rest, as
/// notary-server reads it from an upload.
pub fn peek_version(role: &RoleName, bytes: &[u8]) -> Result<u64, MetadataError> {
    #[derive(Deserialize)]
    struct Common {
        version: u64,
    }
    #[derive(Deserialize)]
    struct Env {
        signed: Common,
    }
    serde_json::from_slice::<Env>(bytes)
        .map(|e| e.signed.version)
        .map_err(|e| MetadataError::Malformed {
            role: role.to_string(),
            reason: e.to_string(),
        })
}

/// `null` decodes as the default (Go writes nil maps and slices as null).
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Times as RFC 3339; any offset is accepted, UTC is written.
pub mod rfc3339 {
    use super::*;

    /// Go's RFC3339Nano (fraction without trailing zeros), so that Notary
    /// re-encoding a time berth wrote gives the same bytes.
    pub fn serialize<S: Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_go(time))
    }

    pub fn format_go(time: &DateTime<Utc>) -> String {
        let seconds = time.to_rfc3339_opts(SecondsFormat::Secs, true);
        let nanos = time.timestamp_subsec_nanos();
        if nanos == 0 {
            return seconds;
        }
        let fraction = format!("{nanos:09}");
        let fraction = fraction.trim_end_matches('0');
        format!("{}.{fraction}Z", seconds.trim_end_matches('Z'))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| serde::de::Error::custom(format!("expires {text:?} is not RFC 3339: {e}")))
    }
}

mod base64_bytes {
    use super::*;

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?.unwrap_or_default();
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

mod base64_map {
    use super::*;

    pub fn serialize<S: Serializer>(map: &BTreeMap<String, Vec<u8>>, serializer: S) -> Result<S::Ok, S::Error> {
        let encoded: BTreeMap<&String, String> = map
            .iter()
            .map(|(k, v)| (k, base64::engine::general_purpose::STANDARD.encode(v)))
            .collect();
        encoded.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<String, Vec<u8>>, D::Error> {
        let encoded = Option::<BTreeMap<String, String>>::deserialize(deserializer)?.unwrap_or_default();
        encoded
            .into_iter()
            .map(|(k, v)| {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(v.as_bytes())
                    .map_err(|e| serde::de::Error::custom(format!("hash {k}: {e}")))?;
                Ok((k, bytes))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SoftwareSigner;

    #[test]
    fn role_names() {
        for ok in [
            "root",
            "targets",
            "snapshot",
            "timestamp",
            "targets/releases",
            "targets/a/b-c_9",
        ] {
            assert_eq!(RoleName::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "Root",
            "releases",
            "targets/",
            "targets//a",
            "targets/a/",
            "targets/A",
            "targets/a.b",
            "targets/../x",
        ] {
            assert!(RoleName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(RoleName::parse(&format!("targets/{}", "a".repeat(250))).is_err());
        let nested = RoleName::parse("targets/a/b").unwrap();
        assert_eq!(nested.parent(), Some(RoleName::parse("targets/a").unwrap()));
        assert_eq!(RoleName::parse("targets/a").unwrap().parent(), Some(RoleName::Targets));
        assert_eq!(RoleName::Targets.parent(), None);
    }

    #[test]
    fn unknown_fields_survive_and_signatures_cover_what_was_received() {
        // Metadata from a newer client with a field berth does not know,
        // keys in unsorted order and whitespace.
        let signer = SoftwareSigner::generate_ed25519();
        let signed_value = serde_json::json!({
            "version": 3, "_type": "Targets", "expires": "2030-01-01T00:00:00.123456789-05:00",
            "targets": {"app": {"length": 2, "hashes": {"sha256": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}}},
            "x-berth-future": {"nested": [1, 2]},
            "delegations": {"keys": {}, "roles": []}
        });
        let canonical = canonical::canonical_json(&signed_value).unwrap();
        let sig = signer.sign(&canonical).unwrap();
        let file = format!(
            "{{ \"signed\" : {} , \"signatures\": [{{\"keyid\":\"{}\",\"method\":\"EDDSA\",\"sig\":\"{}\"}}]}}",
            serde_json::to_string_pretty(&signed_value).unwrap(),
            signer.key_id(),
            base64::engine::general_purpose::STANDARD.encode(&sig)
        );
        let parsed = Signed::<Targets>::from_bytes(&RoleName::Targets, file.as_bytes()).unwrap();
        assert_eq!(parsed.canonical_bytes(), &canonical[..]);
        assert_eq!(
            parsed.signed().unknown["x-berth-future"],
            serde_json::json!({"nested": [1, 2]})
        );
        assert_eq!(parsed.to_bytes(), file.as_bytes(), "served exactly as received");
        // Re-encoding the typed struct keeps the unknown field.
        let again = Signed::new(parsed.signed().clone()).unwrap();
        let text = String::from_utf8(again.canonical_bytes().to_vec()).unwrap();
        assert!(text.contains("\"x-berth-future\":{\"nested\":[1,2]}"), "{text}");
        let keys = crate::repo::RoleKeys {
            role: RoleName::Targets,
            keys: [(signer.key_id(), signer.public_key().clone())].into_iter().collect(),
            threshold: 1,
            paths: None,
        };
        crate::repo::verify_signatures(&parsed, &keys).unwrap();
    }

    #[test]
    fn times_are_written_as_go_writes_them() {
        use chrono::TimeZone as _;
        let t = Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(rfc3339::format_go(&t), "2030-01-02T03:04:05Z");
        let t = t + Duration::nanoseconds(120_000_000);
        assert_eq!(rfc3339::format_go(&t), "2030-01-02T03:04:05.12Z");
        let t = t + Duration::nanoseconds(3);
        assert_eq!(rfc3339::format_go(&t), "2030-01-02T03:04:05.120000003Z");
        let parsed: DateTime<Utc> =
            rfc3339::deserialize(serde_json::json!("2116-07-03T17:56:36.027379879-05:00")).unwrap();
        assert_eq!(rfc3339::format_go(&parsed), "2116-07-03T22:56:36.027379879Z");
    }

    #[test]
    fn wrong_type_is_refused() {
        let file = br#"{"signed":{"_type":"Snapshot","expires":"2030-01-01T00:00:00Z","meta":{},"version":1},"signatures":[]}"#;
        let err = Signed::<Targets>::from_bytes(&RoleName::Targets, file).unwrap_err();
        assert_eq!(
            err,
            MetadataError::WrongType {
                role: "targets".into(),
                expected: "Targets".into(),
                found: "Snapshot".into()
            }
        );
    }

    #[test]
    fn go_nulls_decode_as_empty() {
        let file = br#"{"signed":{"_type":"Targets","delegations":{"keys":null,"roles":[{"keyids":null,"name":"targets/a","threshold":1}]},"expires":"2030-01-01T00:00:00Z","targets":null,"version":1},"signatures":null}"#;
        let parsed = Signed::<Targets>::from_bytes(&RoleName::Targets, file).unwrap();
        assert!(parsed.signed().targets.is_empty());
        assert!(parsed.signed().delegations.roles[0].keyids.is_empty());
        assert!(parsed.signatures().is_empty());
    }
}
