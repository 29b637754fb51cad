//! What the signing workflow needs of a registry and its trust server, and
//! the artifacts it attaches to images: the [`TrustRemote`] trait (the CLI
//! implements it over the image store's registry client), the [`Manifest`]
//! it reads, and [`attach`]/[`attached`] for trust documents stored as OCI
//! referrers.

use serde_json::{json, Value};

use crate::client::FetchError;
use crate::keys::PublicKey;
use crate::metadata::{FileMeta, RoleName};
use crate::workflow::WorkflowError;

/// Artifact type of the signed trust metadata attached to an image.
pub const TRUST_ARTIFACT: &str = "application/vnd.berth.trust.v1+json";
/// Artifact type of a signature that does not yet reach its role's threshold.
pub const PENDING_ARTIFACT: &str = "application/vnd.berth.trust.pending.v1+json";
/// The media type of an OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
/// Largest manifest or trust document read from a registry.
pub const MAX_DOCUMENT: u64 = 4 << 20;

/// A manifest as the registry holds it.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub digest: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

impl Manifest {
    /// The OCI descriptor of this manifest (a referrer's `subject`).
    pub fn descriptor(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len()})
    }
}

/// A registry and the trust server on its `/v2/<gun>/_trust/tuf/` routes.
/// Calls block; errors are messages naming the registry and what failed.
pub trait TrustRemote {
    /// The registry's host, for messages.
    fn host(&self) -> &str;
    /// A trust metadata file (`root.json`, `2.root.json`, ...), at most `max` bytes.
    fn trust_get(&self, gun: &str, name: &str, max: u64) -> Result<Vec<u8>, FetchError>;
    /// Publishes an update: one file per role.
    fn trust_publish(&self, gun: &str, files: &[(RoleName, Vec<u8>)]) -> Result<(), WorkflowError>;
    /// The server-held `timestamp` or `snapshot` key; `rotate` asks for a new one.
    fn trust_key(&self, gun: &str, role: &str, rotate: bool) -> Result<PublicKey, WorkflowError>;
    /// A manifest by tag or digest, its digest checked; `None` when the registry has none.
    fn manifest(&self, repository: &str, reference: &str) -> Result<Option<Manifest>, WorkflowError>;
    /// A blob, at most `max` bytes, its digest checked.
    fn blob(&self, repository: &str, digest: &str, max: u64) -> Result<Vec<u8>, WorkflowError>;
    /// Uploads `bytes` as a blob unless it is there; its digest.
    fn put_blob(&self, repository: &str, bytes: &[u8]) -> Result<String, WorkflowError>;
    /// Pushes a manifest by digest; its digest.
    fn put_manifest(&self, repository: &str, media_type: &str, bytes: Vec<u8>) -> Result<String, WorkflowError>;
    /// Deletes a manifest (one already gone is no error).
    fn delete_manifest(&self, repository: &str, digest: &str) -> Result<(), WorkflowError>;
    /// Descriptors of the referrers of `digest` with `artifact_type`.
    fn referrers(&self, repository: &str, digest: &str, artifact_type: &str) -> Result<Vec<Value>, WorkflowError>;
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        FileMeta::from_bytes(bytes).sha256_hex().unwrap_or_default()
    )
}

/// Attaches `document` to `subject` (a descriptor) as an artifact of
/// `artifact_type`; the new referrer's manifest digest.
pub fn attach(
    remote: &dyn TrustRemote,
    repository: &str,
    subject: &Value,
    artifact_type: &str,
    document: &[u8],
    annotations: Value,
) -> Result<String, WorkflowError> {
    let config_digest = remote.put_blob(repository, b"{}")?;
    let layer_digest = remote.put_blob(repository, document)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": EMPTY_CONFIG, "digest": config_digest, "size": 2},
        "layers": [{"mediaType": artifact_type, "digest": layer_digest, "size": document.len()}],
        "subject": subject,
        "annotations": annotations,
    });
    let bytes = serde_json::to_vec(&manifest).map_err(|e| WorkflowError(format!("an artifact manifest: {e}")))?;
    remote.put_manifest(repository, OCI_MANIFEST, bytes)
}

/// A document attached to an image: its referrer's manifest digest, the
/// referrer's annotations, and the document.
pub struct Attached {
    pub digest: String,
    pub annotations: Value,
    pub document: Vec<u8>,
}

/// The documents attached to `digest` as `artifact_type`.
pub fn attached(
    remote: &dyn TrustRemote,
    repository: &str,
    digest: &str,
    artifact_type: &str,
) -> Result<Vec<Attached>, WorkflowError> {
    let mut out = Vec::new();
    for descriptor in remote.referrers(repository, digest, artifact_type)? {
        let Some(manifest_digest) = descriptor.get("digest").and_then(Value::as_str) else {
            continue;
        };
        let Some(manifest) = remote.manifest(repository, manifest_digest)? else {
            continue;
        };
        let doc: Value = serde_json::from_slice(&manifest.bytes)
            .map_err(|_| WorkflowError("a trust referrer is not JSON".into()))?;
        let Some(layer) = doc.get("layers").and_then(|l| l.get(0)) else {
            continue;
        };
        let Some(layer_digest) = layer.get("digest").and_then(Value::as_str) else {
            continue;
        };
        let document = remote.blob(repository, layer_digest, MAX_DOCUMENT)?;
        out.push(Attached {
            digest: manifest_digest.to_string(),
            annotations: doc.get("annotations").cloned().unwrap_or(Value::Null),
            document,
        });
    }
    Ok(out)
}
