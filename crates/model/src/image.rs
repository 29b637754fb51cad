//! Image records as the image store keeps them and the API shows them.

use serde::{Deserialize, Serialize};

/// One image: a manifest plus its config, stored once by manifest digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Image {
    /// `sha256:` digest of the image config (Docker's "image id").
    pub id: crate::Digest,
    /// `sha256:` digest of the manifest this image was stored from.
    pub manifest_digest: crate::Digest,
    /// Familiar `name:tag` references pointing at this image.
    pub tags: Vec<String>,
    /// Every `name@manifest-digest` this image was loaded, pulled or pushed
    /// as. A name stays here when its tag goes, so that trust policies see
    /// every name an image has or had.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repo_digests: Vec<String>,
    /// The multi-platform index this image was pulled with (`pull
    /// --all-platforms`), stored with it: pushing the image sends the whole
    /// index when every platform's image is here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_digest: Option<String>,
    /// Compressed layer digests in order (as in the manifest).
    pub layers: Vec<crate::Digest>,
    /// Uncompressed layer digests (diff ids) in order.
    pub diff_ids: Vec<crate::Digest>,
    /// Total size of the layer blobs, compressed.
    pub size: u64,
    pub created: Option<String>,
    pub architecture: String,
    pub os: String,
    pub config: ImageConfig,
}

/// The run-time parts of an image config that a container inherits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImageConfig {
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub working_dir: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub stop_signal: Option<String>,
}

/// One line of streamed progress for long image operations (NDJSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Progress {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::ApiError>,
    /// Bytes done so far of the transfer this line is about (a layer being
    /// pulled or pushed); on the last line of a pull or push, the bytes of
    /// blobs transferred in all (manifests not counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<u64>,
    /// Bytes in all of the transfer this line is about, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

impl Progress {
    /// A line with a status and, optionally, the short id it is about.
    pub fn status(status: impl Into<String>, id: Option<&str>) -> Self {
        Self {
            status: status.into(),
            id: id.map(String::from),
            ..Self::default()
        }
    }
}

/// One line of a progress stream that ends with a result (`POST /v1/scans`,
/// `POST /v1/vulndb/update`): a step (`S`, status and counts), and on the
/// last line the status `done` with the result under `record`, or `error`
/// with the error. The daemon writes these lines and the client reads them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressLine<S, T> {
    #[serde(flatten)]
    pub step: S,
    #[serde(default = "Option::default", skip_serializing_if = "Option::is_none")]
    pub record: Option<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::ApiError>,
}

impl<S: Serialize, T: Serialize> ProgressLine<S, T> {
    /// A step.
    pub fn step(step: S) -> Self {
        Self {
            step,
            record: None,
            error: None,
        }
    }

    /// The last line of a stream that succeeded: `end` has status `done`.
    pub fn done(end: S, record: T) -> Self {
        Self {
            step: end,
            record: Some(record),
            error: None,
        }
    }

    /// The last line of a stream that failed: `end` has status `error`.
    pub fn failed(end: S, error: crate::ApiError) -> Self {
        Self {
            step: end,
            record: None,
            error: Some(error),
        }
    }

    /// The line as NDJSON (with its newline).
    pub fn to_ndjson(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

/// "Images of repositories matching `pattern` must be signed by `threshold`
/// of `signers`."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TrustPolicy {
    pub pattern: String,
    /// Signer names: the delegations `targets/<name>`.
    pub signers: Vec<String>,
    pub threshold: usize,
    /// RFC 3339.
    #[serde(default)]
    pub created: String,
}

/// A signed scan record (`GET /v1/scans/{id}`, the end of `POST /v1/scans`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SignedScanRecord {
    pub id: String,
    /// The scan record as JSON: exactly the bytes signed.
    pub payload: String,
    /// Hex of the DER signature; empty when the node had no cluster key.
    pub signature: String,
    pub key_id: String,
    pub algorithm: String,
}

/// What [`Registry::gc`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GcReport {
    /// `"<repo>@<digest>"` links no manifest referenced.
    pub links_removed: Vec<String>,
    /// Blobs deleted from the content store.
    pub blobs_removed: Vec<String>,
    /// Expired uploads removed.
    pub uploads_removed: usize,
}

/// `POST /v1/auth/login`: credentials for a registry the daemon pulls from
/// and pushes to (`registry` empty: Docker Hub).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    #[serde(default)]
    pub registry: String,
    pub username: String,
    pub password: String,
}

/// What `berth login` and `logout` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoginAnswer {
    pub registry: String,
    pub status: String,
}

/// `PUT /v1/trust/policies/{pattern}`: who must have signed what the
/// pattern names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TrustPolicySpec {
    pub signers: Vec<String>,
    /// Default 1.
    #[serde(default)]
    pub threshold: Option<usize>,
}
