//! Manifests: OCI image manifests and indexes, Docker schema2 manifests and
//! manifest lists. A manifest is checked (media type, size, structure, every
//! blob and child manifest it names present in the repository) before it is
//! stored as a blob and recorded; tags point at manifest digests; manifests
//! with a `subject` are found by the referrers API.

use std::io::Write;

use berth_image::BLOB_HOLDS;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::error::{io_err, Code, Error, Result};
use crate::{
    hold_key, is_digest, link_key, secs, validate_digest, validate_name, validate_tag, BlobLink, Registry, TagRecord,
    BLOB_LINKS, MANIFESTS, TAGS,
};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Layers that registries need not hold (Windows foreign layers and OCI's
/// non-distributable ones): a manifest may name them without them being here.
fn non_distributable(media_type: &str) -> bool {
    media_type.contains("foreign") || media_type.contains("nondistributable")
}

fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// A stored manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ManifestRecord {
    pub media_type: String,
    pub size: u64,
    pub created: u64,
    /// Blobs it references (config and layers).
    pub blobs: Vec<String>,
    /// Manifests it references (an index's entries).
    pub children: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// `artifactType`, else the config's media type (what referrers report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Value>,
}

/// A manifest read back.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub digest: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// What storing a manifest did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutManifest {
    pub digest: String,
    /// The manifest's `subject` digest, which the API echoes as `OCI-Subject`.
    pub subject: Option<String>,
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(Code::ManifestInvalid, message)
}

fn descriptor_digest(d: &Value, what: &str) -> Result<String> {
    let digest = d
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{what}: descriptor without a digest")))?;
    validate_digest(digest).map_err(|e| invalid(format!("{what}: {e}")))?;
    if d.get("size").and_then(Value::as_u64).is_none() {
        return Err(invalid(format!("{what} {digest}: descriptor without a size")));
    }
    Ok(digest.to_string())
}

/// Checks the manifest's structure and returns its record (without `created`).
fn parse(content_type: Option<&str>, bytes: &[u8]) -> Result<ManifestRecord> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| invalid(format!("manifest is not valid JSON: {e}")))?;
    let declared = doc.get("mediaType").and_then(Value::as_str);
    let media_type = match (content_type, declared) {
        (Some(c), Some(d)) if c != d => {
            return Err(invalid(format!(
                "Content-Type {c} does not match the manifest's mediaType {d}"
            )));
        }
        (Some(c), _) => c,
        (None, Some(d)) => d,
        (None, None) => {
            return Err(Error::new(Code::UnsupportedMediaType, "manifest has no media type"));
        }
    };
    if ![OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].contains(&media_type) {
        return Err(Error::new(
            Code::UnsupportedMediaType,
            format!("unsupported manifest media type {media_type}"),
        ));
    }
    if doc.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return Err(invalid("schemaVersion must be 2"));
    }
    let mut record = ManifestRecord {
        media_type: media_type.to_string(),
        size: bytes.len() as u64,
        created: 0,
        blobs: Vec::new(),
        children: Vec::new(),
        subject: None,
        artifact_type: doc.get("artifactType").and_then(Value::as_str).map(str::to_string),
        annotations: doc.get("annotations").cloned(),
    };
    if is_index(media_type) {
        let entries = doc
            .get("manifests")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("index without a manifests list"))?;
        for entry in entries {
            record.children.push(descriptor_digest(entry, "index entry")?);
        }
    } else {
        let config = doc.get("config").ok_or_else(|| invalid("manifest without a config"))?;
        record.blobs.push(descriptor_digest(config, "config")?);
        if record.artifact_type.is_none() {
            record.artifact_type = config.get("mediaType").and_then(Value::as_str).map(str::to_string);
        }
        let layers = doc
            .get("layers")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("manifest without a layers list"))?;
        for layer in layers {
            let digest = descriptor_digest(layer, "layer")?;
            let media = layer.get("mediaType").and_then(Value::as_str).unwrap_or("");
            if !non_distributable(media) {
                record.blobs.push(digest);
            }
        }
    }
    if let Some(subject) = doc.get("subject") {
        record.subject = Some(descriptor_digest(subject, "subject")?);
    }
    Ok(record)
}

impl Registry {
    /// Stores a manifest under `reference` (a tag, or the digest it must
    /// have). Nothing changes unless every check passes.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        content_type: Option<&str>,
        bytes: &[u8],
    ) -> Result<PutManifest> {
        validate_name(repo)?;
        let by_digest = is_digest(reference);
        if by_digest {
            validate_digest(reference)?;
        } else {
            validate_tag(reference)?;
        }
        let max = self.inner.config.max_manifest_size;
        if bytes.len() as u64 > max {
            return Err(Error::new(
                Code::ManifestTooLarge,
                format!("manifest of {} bytes is larger than the limit of {max}", bytes.len()),
            ));
        }
        let content_type = content_type
            .map(|c| c.split(';').next().unwrap_or(c).trim())
            .filter(|c| !c.is_empty());
        let mut record = parse(content_type, bytes)?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
        if by_digest && reference != digest {
            return Err(Error::new(
                Code::DigestInvalid,
                format!("manifest has digest {digest}, not {reference}"),
            ));
        }
        record.created = secs(self.now());
        let store = &self.inner.store;
        // The collection lock is held from the checks to the commit, so no
        // blob named here can be collected in between.
        let _commit = self.commit_guard();
        for blob in &record.blobs {
            if store.get::<BlobLink>(BLOB_LINKS, &link_key(repo, blob))?.is_none() {
                return Err(Error::new(
                    Code::ManifestBlobUnknown,
                    format!("blob unknown to repository {repo}: {blob}"),
                ));
            }
        }
        for child in &record.children {
            if store
                .get::<ManifestRecord>(MANIFESTS, &link_key(repo, child))?
                .is_none()
            {
                return Err(Error::new(
                    Code::ManifestBlobUnknown,
                    format!("manifest unknown to repository {repo}: {child}"),
                ));
            }
        }
        let tmp = self
            .inner
            .uploads
            .join(format!("manifest-{}.tmp", hex::encode(rand::random::<[u8; 12]>())));
        let written = std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
            .map_err(io_err("writing", &tmp));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let key = link_key(repo, &digest);
        let result = self.inner.images.commit_blob(&tmp, &digest, |t| {
            t.put(MANIFESTS, &key, &record)?;
            t.put(BLOB_HOLDS, &hold_key(&digest), &())?;
            if !by_digest {
                t.put(
                    TAGS,
                    &format!("{repo}:{reference}"),
                    &TagRecord { digest: digest.clone() },
                )?;
            }
            Ok(())
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result?;
        tracing::info!(repository = repo, reference, digest, "manifest stored");
        Ok(PutManifest {
            digest,
            subject: record.subject,
        })
    }

    /// The digest `reference` (tag or digest) names in `repo`, if any.
    fn resolve(&self, repo: &str, reference: &str) -> Result<(String, ManifestRecord)> {
        validate_name(repo)?;
        let unknown = || Error::new(Code::ManifestUnknown, format!("manifest unknown: {repo}:{reference}"));
        let digest = if is_digest(reference) {
            validate_digest(reference)?;
            reference.to_string()
        } else {
            validate_tag(reference)?;
            self.inner
                .store
                .get::<TagRecord>(TAGS, &format!("{repo}:{reference}"))?
                .ok_or_else(unknown)?
                .digest
        };
        let record = self
            .inner
            .store
            .get::<ManifestRecord>(MANIFESTS, &link_key(repo, &digest))?
            .ok_or_else(unknown)?;
        Ok((digest, record))
    }

    /// The manifest `reference` names in `repo`.
    pub fn manifest(&self, repo: &str, reference: &str) -> Result<Manifest> {
        let (digest, record) = self.resolve(repo, reference)?;
        let path = self.inner.images.blob_path(&digest)?;
        let bytes = std::fs::read(&path).map_err(io_err("reading", &path))?;
        Ok(Manifest {
            digest,
            media_type: record.media_type,
            bytes,
        })
    }

    /// Deletes a tag (by tag), or a manifest and every tag on it (by digest).
    pub fn delete_manifest(&self, repo: &str, reference: &str) -> Result<()> {
        let (digest, _) = self.resolve(repo, reference)?;
        let _commit = self.commit_guard();
        self.inner.store.write(|t| {
            if is_digest(reference) {
                t.delete(MANIFESTS, &link_key(repo, &digest))?;
                let prefix = format!("{repo}:");
                for (key, tag) in t.list::<TagRecord>(TAGS)? {
                    if key.starts_with(&prefix) && tag.digest == digest {
                        t.delete(TAGS, &key)?;
                    }
                }
            } else {
                t.delete(TAGS, &format!("{repo}:{reference}"))?;
            }
            Ok(())
        })?;
        tracing::info!(repository = repo, reference, "manifest deleted");
        Ok(())
    }

    /// The referrers of `digest` in `repo` as an OCI image index, filtered by
    /// `artifact_type` when given.
    pub fn referrers(&self, repo: &str, digest: &str, artifact_type: Option<&str>) -> Result<Vec<u8>> {
        validate_name(repo)?;
        validate_digest(digest)?;
        let prefix = format!("{repo}@");
        let mut manifests = Vec::new();
        for (key, record) in self.inner.store.list::<ManifestRecord>(MANIFESTS)? {
            let Some(referrer) = key.strip_prefix(&prefix) else {
                continue;
            };
            if record.subject.as_deref() != Some(digest) {
                continue;
            }
            if artifact_type.is_some() && record.artifact_type.as_deref() != artifact_type {
                continue;
            }
            let mut descriptor = json!({
                "mediaType": record.media_type,
                "digest": referrer,
                "size": record.size,
            });
            if let Some(a) = &record.artifact_type {
                descriptor["artifactType"] = json!(a);
            }
            if let Some(a) = &record.annotations {
                descriptor["annotations"] = a.clone();
            }
            manifests.push(descriptor);
        }
        let index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests,
        });
        serde_json::to_vec(&index).map_err(|e| Error::new(Code::Internal, e.to_string()))
    }
}
