//! The registry and trust server a trust command signs for, as the signing
//! session's [`TrustRemote`]: requests through the image store's registry
//! client (`berth_image::remote::Connection`: its loopback rule, challenge
//! flow and retries), the trust server's multipart publish, and the daemon's
//! help for a loopback registry (its CA, a registry token).
//!
//! Calls block: the session runs in `block_in_place`, and the daemon's
//! async client is driven with the runtime's handle.

use berth_client::{query_value, Client, TlsFiles};
use berth_image::remote::{Answer, ConnectOptions, Connection};
use berth_notary::client::FetchError;
use berth_notary::keys::PublicKey;
use berth_notary::metadata::RoleName;
use berth_notary::signing::remote::{sha256_digest, MAX_DOCUMENT, OCI_MANIFEST};
use berth_notary::signing::{Manifest, TrustRemote};
use berth_notary::workflow::WorkflowError;
use hyper::StatusCode;
use serde_json::Value;
use std::path::Path;
use std::sync::OnceLock;

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";
/// Error answers are read up to this size.
const ERROR_BODY: u64 = 64 << 10;

type Result<T> = std::result::Result<T, WorkflowError>;

/// A registry host and the trust server on its `/v2/` routes.
pub struct Registry {
    host: String,
    tls: TlsFiles,
    /// The daemon this command talks to: for a loopback registry (its own,
    /// most often), the CA its TLS listener has and a registry token for
    /// `repository`; for any registry, a token when a delete asks for one.
    daemon: Client,
    repository: String,
    runtime: tokio::runtime::Handle,
    conn: OnceLock<Connection>,
}

/// A PEM file of `--tlscacert`/`--tlscert`/`--tlskey`.
fn pem_file(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| WorkflowError::new(format!("reading the {what} {}: {e}", path.display())))
}

impl Registry {
    /// The registry `host`, for `repository`; `daemon` helps as above.
    pub fn new(host: &str, repository: &str, tls: &TlsFiles, daemon: &Client) -> Registry {
        Registry {
            host: host.to_string(),
            tls: tls.clone(),
            daemon: daemon.clone(),
            repository: repository.to_string(),
            runtime: tokio::runtime::Handle::current(),
            conn: OnceLock::new(),
        }
    }

    /// TLS to any registry, verified with the public roots or the CA of
    /// `--tlscacert`; a loopback one (as Docker allows) verified with the
    /// daemon's CA when it speaks TLS (the daemon's own TLS listener), else
    /// in plain HTTP, and then with the daemon's token for the repository.
    fn conn(&self) -> Result<&Connection> {
        if let Some(conn) = self.conn.get() {
            return Ok(conn);
        }
        let mut options = ConnectOptions::default();
        if let (Some(cert), Some(key)) = (&self.tls.cert, &self.tls.key) {
            options.identity = Some((pem_file(cert, "client certificate")?, pem_file(key, "client key")?));
        }
        if !berth_image::is_loopback(&self.host) {
            if let Some(ca) = &self.tls.ca {
                options.ca_pem = Some(pem_file(ca, "CA")?);
            }
        } else {
            // A daemon without a TLS listener has no CA to give.
            options.ca_pem = self.runtime.block_on(self.daemon.ca_pem()).ok().flatten();
            let scope = format!("repository:{}:pull,push,delete", self.repository);
            options.authorization = self
                .runtime
                .block_on(self.daemon.registry_token(&scope))
                .ok()
                .map(|t| format!("Bearer {}", t.token));
        }
        let conn = Connection::open(&self.host, options).map_err(|e| WorkflowError::new(e.to_string()))?;
        Ok(self.conn.get_or_init(|| conn))
    }

    /// One request; the answer whatever its status, its body up to `limit`
    /// bytes (an error answer's up to 64 KiB).
    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8], limit: u64) -> Result<Answer> {
        self.conn()?
            .request(method, path, headers, body, limit.max(ERROR_BODY))
            .map_err(|e| WorkflowError::new(e.to_string()))
    }

    fn get(&self, path: &str, accept: &str, limit: u64) -> Result<Answer> {
        self.request("GET", path, &[("accept", accept)], &[], limit)
    }

    fn failure(&self, what: &str, answer: &Answer) -> WorkflowError {
        let detail = serde_json::from_slice::<Value>(&answer.body)
            .ok()
            .and_then(|v| {
                let e = v.get("errors")?.get(0)?.clone();
                let mut text = e.get("message")?.as_str()?.to_string();
                if let Some(d) = e.get("detail").filter(|d| !d.is_null()) {
                    text.push_str(&format!(" ({d})"));
                }
                Some(text)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&answer.body).trim().to_string());
        let status = StatusCode::from_u16(answer.status).map_or(answer.status.to_string(), |s| s.to_string());
        WorkflowError::new(format!("registry {}: {what}: {status}: {detail}", self.host))
    }
}

impl TrustRemote for Registry {
    fn host(&self) -> &str {
        &self.host
    }

    fn trust_get(&self, gun: &str, name: &str, max: u64) -> std::result::Result<Vec<u8>, FetchError> {
        let answer = self
            .get(&format!("/v2/{gun}/_trust/tuf/{name}"), "application/json", max)
            .map_err(|e| FetchError::Other(e.0))?;
        match answer.status {
            200 if answer.body.len() as u64 > max => {
                Err(FetchError::Other(format!("{name} is larger than {max} bytes")))
            }
            200 => Ok(answer.body),
            404 => Err(FetchError::NotFound),
            _ => Err(FetchError::Other(self.failure(&format!("GET {name}"), &answer).0)),
        }
    }

    /// One multipart part per role, as the notary CLI sends them.
    fn trust_publish(&self, gun: &str, files: &[(RoleName, Vec<u8>)]) -> Result<()> {
        let boundary = format!("berth-{}", berth_model::new_id());
        let mut body = Vec::new();
        for (role, bytes) in files {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{role}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let answer = self.request(
            "POST",
            &format!("/v2/{gun}/_trust/tuf/"),
            &[("content-type", &content_type)],
            &body,
            ERROR_BODY,
        )?;
        if answer.is_success() {
            return Ok(());
        }
        Err(self.failure(&format!("publishing trust data for {gun}"), &answer))
    }

    fn trust_key(&self, gun: &str, role: &str, rotate: bool) -> Result<PublicKey> {
        let method = if rotate { "POST" } else { "GET" };
        let answer = self.request(
            method,
            &format!("/v2/{gun}/_trust/tuf/{role}.key"),
            &[("accept", "application/json")],
            &[],
            64 << 10,
        )?;
        if !answer.is_success() {
            return Err(self.failure(&format!("the {role} key of {gun}"), &answer));
        }
        let value: Value = serde_json::from_slice(&answer.body)
            .map_err(|e| WorkflowError::new(format!("the trust server's key is not JSON: {e}")))?;
        PublicKey::from_json(&value).map_err(|e| WorkflowError::new(format!("the trust server's {role} key: {e}")))
    }

    fn manifest(&self, repository: &str, reference: &str) -> Result<Option<Manifest>> {
        let answer = self.get(
            &format!("/v2/{repository}/manifests/{reference}"),
            MANIFEST_ACCEPT,
            MAX_DOCUMENT,
        )?;
        if answer.status == 404 {
            return Ok(None);
        }
        if !answer.is_success() {
            return Err(self.failure(&format!("manifest {repository}:{reference}"), &answer));
        }
        if answer.body.len() as u64 > MAX_DOCUMENT {
            return Err(WorkflowError::new(format!(
                "a manifest is larger than {MAX_DOCUMENT} bytes"
            )));
        }
        let media_type = answer.content_type.unwrap_or_else(|| OCI_MANIFEST.to_string());
        let bytes = answer.body;
        let digest = sha256_digest(&bytes);
        if reference.starts_with("sha256:") && reference != digest {
            return Err(WorkflowError::new(format!(
                "registry {}: manifest {reference} has digest {digest}",
                self.host
            )));
        }
        Ok(Some(Manifest {
            digest,
            media_type,
            bytes,
        }))
    }

    fn blob(&self, repository: &str, digest: &str, max: u64) -> Result<Vec<u8>> {
        let answer = self.get(&format!("/v2/{repository}/blobs/{digest}"), "*/*", max)?;
        if !answer.is_success() {
            return Err(self.failure(&format!("blob {digest}"), &answer));
        }
        if answer.body.len() as u64 > max {
            return Err(WorkflowError::new(format!("a blob is larger than {max} bytes")));
        }
        if sha256_digest(&answer.body) != digest {
            return Err(WorkflowError::new(format!(
                "registry {}: blob {digest} does not match its digest",
                self.host
            )));
        }
        Ok(answer.body)
    }

    /// One monolithic POST, unless the blob is there.
    fn put_blob(&self, repository: &str, bytes: &[u8]) -> Result<String> {
        let digest = sha256_digest(bytes);
        let head = self.request("HEAD", &format!("/v2/{repository}/blobs/{digest}"), &[], &[], 0)?;
        if head.is_success() {
            return Ok(digest);
        }
        let answer = self.request(
            "POST",
            &format!("/v2/{repository}/blobs/uploads/?digest={digest}"),
            &[("content-type", "application/octet-stream")],
            bytes,
            ERROR_BODY,
        )?;
        if !answer.is_success() {
            return Err(self.failure(&format!("uploading blob {digest}"), &answer));
        }
        Ok(digest)
    }

    fn put_manifest(&self, repository: &str, media_type: &str, bytes: Vec<u8>) -> Result<String> {
        let digest = sha256_digest(&bytes);
        let answer = self.request(
            "PUT",
            &format!("/v2/{repository}/manifests/{digest}"),
            &[("content-type", media_type)],
            &bytes,
            ERROR_BODY,
        )?;
        if !answer.is_success() {
            return Err(self.failure(&format!("pushing manifest {digest}"), &answer));
        }
        Ok(digest)
    }

    /// When the registry wants a token this connection has not (an open
    /// registry lets nobody delete anonymously), the daemon's token for the
    /// caller, which that daemon's own registry accepts.
    fn delete_manifest(&self, repository: &str, digest: &str) -> Result<()> {
        let path = format!("/v2/{repository}/manifests/{digest}");
        let answer = match self.request("DELETE", &path, &[], &[], ERROR_BODY) {
            Ok(answer) if answer.status != 401 => answer,
            _ => {
                let scope = format!("repository:{repository}:delete");
                let token = self
                    .runtime
                    .block_on(self.daemon.registry_token(&scope))
                    .map_err(|e| WorkflowError::new(format!("asking the daemon for a registry token: {e:#}")))?;
                let authorization = format!("Bearer {}", token.token);
                self.request("DELETE", &path, &[("authorization", &authorization)], &[], ERROR_BODY)?
            }
        };
        if answer.is_success() || answer.status == 404 {
            return Ok(());
        }
        Err(self.failure(&format!("deleting manifest {digest}"), &answer))
    }

    fn referrers(&self, repository: &str, digest: &str, artifact_type: &str) -> Result<Vec<Value>> {
        let path = format!(
            "/v2/{repository}/referrers/{digest}?artifactType={}",
            query_value(artifact_type)
        );
        let answer = self.get(&path, "application/vnd.oci.image.index.v1+json", MAX_DOCUMENT)?;
        if answer.status == 404 {
            return Ok(Vec::new());
        }
        if !answer.is_success() {
            return Err(self.failure(&format!("referrers of {digest}"), &answer));
        }
        let index: Value = serde_json::from_slice(&answer.body)
            .map_err(|e| WorkflowError::new(format!("the referrers index is not JSON: {e}")))?;
        Ok(index
            .get("manifests")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|d| d.get("artifactType").and_then(Value::as_str) == Some(artifact_type))
            .collect())
    }
}
