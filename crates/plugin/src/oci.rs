//! A plugin as an OCI artifact (OCI image manifest v1.1 with an
//! `artifactType`), so it can be pushed to and pulled from any OCI registry:
//!
//! - `artifactType`: `application/vnd.berth.plugin.v1+json`
//! - config: the plugin manifest (`plugin.json`), media type
//!   `application/vnd.berth.plugin.config.v1+json`
//! - one layer: the component, media type `application/wasm`
//!
//! These functions only produce and check bytes; moving them is the
//! registry client's business. A pull is: fetch the manifest, call
//! [`read_oci_manifest`], fetch the two blobs it names, call
//! [`plugin_from_blobs`], then `PluginRegistry::install_bytes`.

use oci_spec::image::{Descriptor, ImageManifest, ANNOTATION_DESCRIPTION, ANNOTATION_TITLE, ANNOTATION_VERSION};

use crate::error::PluginError;
use crate::manifest::{sha256_digest, PluginManifest};

pub const ARTIFACT_TYPE: &str = "application/vnd.berth.plugin.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.berth.plugin.config.v1+json";
pub const WASM_MEDIA_TYPE: &str = "application/wasm";
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// One blob to push, with its descriptor's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub media_type: String,
    /// `sha256:<hex>` of `data`.
    pub digest: String,
    pub data: Vec<u8>,
}

impl Blob {
    fn new(media_type: &str, data: Vec<u8>) -> Blob {
        Blob {
            media_type: media_type.to_string(),
            digest: sha256_digest(&data),
            data,
        }
    }
}

/// Everything a push uploads: the two blobs, then the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginArtifact {
    /// The OCI image manifest JSON (media type [`MANIFEST_MEDIA_TYPE`]).
    pub manifest: Vec<u8>,
    /// `sha256:<hex>` of `manifest`.
    pub manifest_digest: String,
    pub config: Blob,
    pub layer: Blob,
}

/// A blob an artifact's manifest refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// What [`read_oci_manifest`] found: the blobs to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactBlobs {
    pub config: BlobRef,
    pub layer: BlobRef,
}

/// The artifact for a plugin; `wasm` must be the component `manifest` describes.
pub fn to_oci_artifact(manifest: &PluginManifest, wasm: &[u8]) -> Result<PluginArtifact, PluginError> {
    manifest.validate(&manifest.name)?;
    manifest.verify_wasm(wasm)?;
    let config = Blob::new(CONFIG_MEDIA_TYPE, manifest.to_json());
    let layer = Blob::new(WASM_MEDIA_TYPE, wasm.to_vec());
    // Written with a fixed key order (not through oci-spec's HashMaps) so
    // that the same plugin always makes the same manifest and digest.
    let image_manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": {
            "mediaType": config.media_type,
            "digest": config.digest,
            "size": config.data.len(),
        },
        "layers": [{
            "mediaType": layer.media_type,
            "digest": layer.digest,
            "size": layer.data.len(),
            "annotations": { ANNOTATION_TITLE: format!("{}.wasm", manifest.name) },
        }],
        "annotations": {
            ANNOTATION_TITLE: manifest.name,
            ANNOTATION_VERSION: manifest.version,
            ANNOTATION_DESCRIPTION: manifest.description,
        },
    });
    let mut json = serde_json::to_vec_pretty(&image_manifest)
        .map_err(|err| invalid(format!("could not encode the manifest: {err}")))?;
    json.push(b'\n');
    Ok(PluginArtifact {
        manifest_digest: sha256_digest(&json),
        manifest: json,
        config,
        layer,
    })
}

/// Checks that `manifest` is a berth plugin artifact and returns the blobs
/// it names.
pub fn read_oci_manifest(manifest: &[u8]) -> Result<ArtifactBlobs, PluginError> {
    let parsed =
        ImageManifest::from_reader(manifest).map_err(|err| invalid(format!("not an OCI image manifest: {err}")))?;
    if let Some(media_type) = parsed.media_type() {
        if media_type.to_string() != MANIFEST_MEDIA_TYPE {
            return Err(invalid(format!(
                "manifest media type {media_type} is not {MANIFEST_MEDIA_TYPE}"
            )));
        }
    }
    let artifact_type = parsed.artifact_type().as_ref().map(ToString::to_string);
    if artifact_type.as_deref() != Some(ARTIFACT_TYPE) {
        return Err(invalid(format!(
            "artifactType is {}, not {ARTIFACT_TYPE}",
            artifact_type.as_deref().unwrap_or("missing")
        )));
    }
    let config = blob_ref(parsed.config());
    if config.media_type != CONFIG_MEDIA_TYPE {
        return Err(invalid(format!(
            "config media type {} is not {CONFIG_MEDIA_TYPE}",
            config.media_type
        )));
    }
    let [layer] = parsed.layers().as_slice() else {
        return Err(invalid(format!("expected one layer, found {}", parsed.layers().len())));
    };
    let layer = blob_ref(layer);
    if layer.media_type != WASM_MEDIA_TYPE {
        return Err(invalid(format!(
            "layer media type {} is not {WASM_MEDIA_TYPE}",
            layer.media_type
        )));
    }
    Ok(ArtifactBlobs { config, layer })
}

/// Checks the fetched blobs against their descriptors and each other and
/// returns the plugin manifest. `wasm` can then be installed with it.
pub fn plugin_from_blobs(blobs: &ArtifactBlobs, config: &[u8], wasm: &[u8]) -> Result<PluginManifest, PluginError> {
    check_blob("config", &blobs.config, config)?;
    check_blob("layer", &blobs.layer, wasm)?;
    let manifest = PluginManifest::from_json(config, &blobs.config.digest)?;
    manifest.verify_wasm(wasm)?;
    Ok(manifest)
}

fn check_blob(what: &str, expected: &BlobRef, data: &[u8]) -> Result<(), PluginError> {
    if data.len() as u64 != expected.size {
        return Err(invalid(format!(
            "the {what} blob is {} bytes, its descriptor says {}",
            data.len(),
            expected.size
        )));
    }
    let actual = sha256_digest(data);
    if actual != expected.digest {
        return Err(invalid(format!(
            "the {what} blob's digest is {actual}, its descriptor says {}",
            expected.digest
        )));
    }
    Ok(())
}

fn blob_ref(descriptor: &Descriptor) -> BlobRef {
    BlobRef {
        media_type: descriptor.media_type().to_string(),
        digest: descriptor.digest().to_string(),
        size: descriptor.size(),
    }
}

fn invalid(reason: String) -> PluginError {
    PluginError::InvalidArtifact { reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worlds::WorldVersion;

    fn plugin() -> (PluginManifest, Vec<u8>) {
        let wasm = b"\0asm\x0d\0\x01\0not really a component".to_vec();
        let world = WorldVersion::find("scanner-check", "0.1.0").unwrap();
        (
            PluginManifest::new("secrets", "0.1.0", world, "finds secrets", &wasm),
            wasm,
        )
    }

    #[test]
    fn an_artifact_round_trips() {
        let (manifest, wasm) = plugin();
        let artifact = to_oci_artifact(&manifest, &wasm).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&artifact.manifest).unwrap();
        assert_eq!(json["schemaVersion"], 2);
        assert_eq!(json["mediaType"], MANIFEST_MEDIA_TYPE);
        assert_eq!(json["artifactType"], ARTIFACT_TYPE);
        assert_eq!(json["config"]["mediaType"], CONFIG_MEDIA_TYPE);
        assert_eq!(json["config"]["digest"], artifact.config.digest.as_str());
        assert_eq!(json["layers"][0]["mediaType"], WASM_MEDIA_TYPE);
        assert_eq!(json["layers"][0]["digest"], manifest.digest.as_str());
        assert_eq!(json["layers"][0]["size"], wasm.len());
        assert_eq!(artifact.manifest_digest, sha256_digest(&artifact.manifest));
        assert_eq!(json["annotations"][ANNOTATION_VERSION], "0.1.0");
        // The same plugin always makes the same artifact.
        for _ in 0..5 {
            assert_eq!(
                to_oci_artifact(&manifest, &wasm).unwrap().manifest_digest,
                artifact.manifest_digest
            );
        }

        let blobs = read_oci_manifest(&artifact.manifest).unwrap();
        let back = plugin_from_blobs(&blobs, &artifact.config.data, &artifact.layer.data).unwrap();
        assert_eq!(back, manifest);
    }

    #[test]
    fn tampered_blobs_and_foreign_manifests_are_refused() {
        let (manifest, wasm) = plugin();
        let artifact = to_oci_artifact(&manifest, &wasm).unwrap();
        let blobs = read_oci_manifest(&artifact.manifest).unwrap();

        let mut other = artifact.layer.data.clone();
        other[10] ^= 1;
        let err = plugin_from_blobs(&blobs, &artifact.config.data, &other)
            .unwrap_err()
            .to_string();
        assert!(err.contains("layer blob's digest"), "{err}");
        let err = plugin_from_blobs(&blobs, &artifact.config.data, &wasm[1..])
            .unwrap_err()
            .to_string();
        assert!(err.contains("layer blob is"), "{err}");

        let text = String::from_utf8(artifact.manifest.clone()).unwrap();
        let image = text.replace(ARTIFACT_TYPE, "application/vnd.example.other+json");
        let err = read_oci_manifest(image.as_bytes()).unwrap_err().to_string();
        assert!(
            err.contains("artifactType is application/vnd.example.other+json"),
            "{err}"
        );
        let two_layers = text.replace(WASM_MEDIA_TYPE, "application/vnd.oci.image.layer.v1.tar");
        let err = read_oci_manifest(two_layers.as_bytes()).unwrap_err().to_string();
        assert!(
            err.contains("layer media type application/vnd.oci.image.layer.v1.tar"),
            "{err}"
        );
        assert!(read_oci_manifest(b"{}").is_err());
    }

    #[test]
    fn an_artifact_needs_the_matching_wasm() {
        let (manifest, _) = plugin();
        let err = to_oci_artifact(&manifest, b"other").unwrap_err();
        assert!(matches!(err, PluginError::DigestMismatch { .. }), "{err}");
    }
}
