//! `plugin.json`: what a plugin says about itself before any of its code is
//! looked at. It travels next to the wasm in a directory and as the config
//! blob of the plugin's OCI artifact.
//!
//! ```json
//! {
//!   "schemaVersion": 1,
//!   "name": "secrets",
//!   "version": "0.1.0",
//!   "world": "scanner-check",
//!   "worldVersion": "0.1.0",
//!   "digest": "sha256:…",
//!   "description": "Finds private keys, …"
//! }
//! ```

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::PluginError;
use crate::worlds::WorldVersion;

/// The only manifest schema so far.
pub const SCHEMA_VERSION: u32 = 1;

/// Names that cannot be plugin names: they are used by the registry itself.
const RESERVED_NAMES: &[&str] = &["cache"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginManifest {
    pub schema_version: u32,
    /// `[a-z0-9][a-z0-9._-]*`, at most 64 characters.
    pub name: String,
    /// `[0-9A-Za-z][0-9A-Za-z.+_-]*`, at most 64 characters (semver advised).
    pub version: String,
    /// The world the component targets (`scanner-check`).
    pub world: String,
    /// The version of the `berth:plugin` package it was built against.
    pub world_version: String,
    /// `sha256:<64 hex digits>` of the component.
    pub digest: String,
    pub description: String,
}

impl PluginManifest {
    /// A manifest for `wasm`, its digest computed here.
    pub fn new(name: &str, version: &str, world: WorldVersion, description: &str, wasm: &[u8]) -> PluginManifest {
        PluginManifest {
            schema_version: SCHEMA_VERSION,
            name: name.to_string(),
            version: version.to_string(),
            world: world.world.name().to_string(),
            world_version: world.version.to_string(),
            digest: sha256_digest(wasm),
            description: description.to_string(),
        }
    }

    /// Parses and validates a manifest; `source_name` (a path, a digest)
    /// names it in errors.
    pub fn from_json(bytes: &[u8], source_name: &str) -> Result<PluginManifest, PluginError> {
        let manifest: PluginManifest = serde_json::from_slice(bytes).map_err(|err| PluginError::InvalidManifest {
            source_name: source_name.to_string(),
            reason: err.to_string(),
        })?;
        manifest.validate(source_name)?;
        Ok(manifest)
    }

    /// Pretty JSON with a final newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut json = serde_json::to_vec_pretty(self).unwrap_or_default();
        json.push(b'\n');
        json
    }

    /// Checks every field's form (not the wasm: see [`Self::verify_wasm`]).
    pub fn validate(&self, source_name: &str) -> Result<(), PluginError> {
        let invalid = |reason: String| PluginError::InvalidManifest {
            source_name: source_name.to_string(),
            reason,
        };
        if self.schema_version != SCHEMA_VERSION {
            return Err(invalid(format!(
                "schemaVersion {} is not supported (expected {SCHEMA_VERSION})",
                self.schema_version
            )));
        }
        if !is_valid_name(&self.name) {
            return Err(invalid(format!(
                "name {:?} must match [a-z0-9][a-z0-9._-]* (at most 64 characters) and not be {RESERVED_NAMES:?}",
                self.name
            )));
        }
        if !is_valid_version(&self.version) {
            return Err(invalid(format!(
                "version {:?} must match [0-9A-Za-z][0-9A-Za-z.+_-]* (at most 64 characters)",
                self.version
            )));
        }
        let hex = self.digest.strip_prefix("sha256:").unwrap_or("");
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(invalid(format!(
                "digest {:?} must be sha256: and 64 lower-case hex digits",
                self.digest
            )));
        }
        if self.description.len() > 4096 {
            return Err(invalid("the description is longer than 4096 bytes".to_string()));
        }
        WorldVersion::find(&self.world, &self.world_version)?;
        Ok(())
    }

    /// The supported world version this manifest targets.
    pub fn world_version(&self) -> Result<WorldVersion, PluginError> {
        WorldVersion::find(&self.world, &self.world_version)
    }

    /// Fails unless `wasm` is exactly the component this manifest describes.
    pub fn verify_wasm(&self, wasm: &[u8]) -> Result<(), PluginError> {
        let actual = sha256_digest(wasm);
        if actual != self.digest {
            return Err(PluginError::DigestMismatch {
                plugin: self.name.clone(),
                expected: self.digest.clone(),
                actual,
            });
        }
        Ok(())
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
        && !RESERVED_NAMES.contains(&name)
}

fn is_valid_version(version: &str) -> bool {
    let bytes = version.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worlds::World;

    fn manifest() -> PluginManifest {
        let world = WorldVersion {
            world: World::ScannerCheck,
            version: "0.1.0",
        };
        PluginManifest::new("secrets", "0.1.0", world, "finds secrets", b"wasm bytes")
    }

    #[test]
    fn round_trips_through_json_with_camel_case_keys() {
        let manifest = manifest();
        let json = manifest.to_json();
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(text.contains("\"worldVersion\": \"0.1.0\""), "{text}");
        assert!(text.contains("\"schemaVersion\": 1"), "{text}");
        assert_eq!(PluginManifest::from_json(&json, "test").unwrap(), manifest);
        // sha256sum of the 10 bytes "wasm bytes".
        assert_eq!(
            manifest.digest,
            "sha256:a81d16f296ff2ebdb2dfe2ee0fbb532ba602da1ef9f797f8b1edb3e987fcf5db"
        );
    }

    #[test]
    fn verify_wasm_names_both_digests() {
        let manifest = manifest();
        assert!(manifest.verify_wasm(b"wasm bytes").is_ok());
        let err = manifest.verify_wasm(b"other bytes").unwrap_err().to_string();
        assert!(err.contains(&manifest.digest), "{err}");
        assert!(err.contains(&sha256_digest(b"other bytes")), "{err}");
    }

    #[test]
    fn refuses_bad_fields_naming_them() {
        type Spoil = dyn Fn(&mut PluginManifest);
        let cases: &[(&str, &Spoil)] = &[
            ("name", &|m| m.name = "../etc".to_string()),
            ("name", &|m| m.name = "cache".to_string()),
            ("name", &|m| m.name = "Secrets".to_string()),
            ("version", &|m| m.version = "1/2".to_string()),
            ("version", &|m| m.version = String::new()),
            ("digest", &|m| m.digest = "sha256:xyz".to_string()),
            ("schemaVersion", &|m| m.schema_version = 2),
            ("scanner-check@0.9.0", &|m| m.world_version = "0.9.0".to_string()),
            ("ipam-driver@0.1.0", &|m| m.world = "ipam-driver".to_string()),
        ];
        for (named, spoil) in cases {
            let mut manifest = manifest();
            spoil(&mut manifest);
            let err = manifest.validate("plugin.json").unwrap_err().to_string();
            assert!(err.contains(named), "{err} should name {named}");
        }
        let err = PluginManifest::from_json(br#"{"name": "x"}"#, "plugin.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid plugin manifest plugin.json: missing field"),
            "{err}"
        );
    }
}
