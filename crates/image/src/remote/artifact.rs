//! OCI artifacts (berth's plugins) moved through the same registry client
//! as image pulls and pushes: the credentials `berth login` stored, the
//! loopback and `--insecure-registry` rules, token challenges and retries.
//! Whoever moves an artifact gets raw manifests and blobs, capped in size;
//! what they mean is theirs to check.

use super::client::{describe_error, read_limited, Body, Client};
use crate::error::Result;
use crate::ImageStore;

/// One repository of one registry, for artifacts.
pub struct Artifacts {
    client: Client,
    repository: String,
}

impl ImageStore {
    /// A client for artifacts in `repository` of `registry`, asking for
    /// push rights too when `push`.
    pub fn artifacts(&self, registry: &str, repository: &str, push: bool) -> Result<Artifacts> {
        let actions = if push { "pull,push" } else { "pull" };
        let client = self.registry_client(registry, vec![format!("repository:{repository}:{actions}")])?;
        Ok(Artifacts {
            client,
            repository: repository.to_string(),
        })
    }
}

impl Artifacts {
    /// The manifest `reference` (tag or digest), as sent, at most `limit` bytes.
    pub fn manifest(&self, reference: &str, accept: &str, limit: u64) -> Result<Vec<u8>> {
        self.get(&format!("manifests/{reference}"), Some(accept), limit)
    }

    /// The blob `digest`, at most `limit` bytes.
    pub fn blob(&self, digest: &str, limit: u64) -> Result<Vec<u8>> {
        self.get(&format!("blobs/{digest}"), None, limit)
    }

    fn get(&self, tail: &str, accept: Option<&str>, limit: u64) -> Result<Vec<u8>> {
        let path = format!("/v2/{}/{tail}", self.repository);
        let headers: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
        let mut response = self
            .client
            .send("GET", &self.client.url(&path), &headers, &Body::Empty)?;
        if !response.status().is_success() {
            let described = describe_error(&mut response);
            return Err(self.client.error(format!("GET {path} answered {described}")));
        }
        read_limited(&mut response, limit).map_err(|e| self.client.error(format!("GET {path}: {e}")))
    }

    /// Uploads `data` as the blob `digest` unless the registry has it.
    pub fn push_blob(&self, digest: &str, data: &[u8]) -> Result<()> {
        let blob = self.client.url(&format!("/v2/{}/blobs/{digest}", self.repository));
        if self
            .client
            .send("HEAD", &blob, &[], &Body::Empty)?
            .status()
            .is_success()
        {
            return Ok(());
        }
        let uploads = self.client.url(&format!("/v2/{}/blobs/uploads/", self.repository));
        let mut response = self.client.send("POST", &uploads, &[], &Body::Empty)?;
        if response.status().as_u16() != 202 {
            let described = describe_error(&mut response);
            return Err(self
                .client
                .error(format!("starting the upload of blob {digest} answered {described}")));
        }
        let location = super::client::header(&response, "location").ok_or_else(|| {
            self.client
                .error(format!("the upload of blob {digest} has no Location"))
        })?;
        let sep = if location.contains('?') { '&' } else { '?' };
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("digest", digest)
            .finish();
        let url = self.client.location(&format!("{location}{sep}{query}"));
        let mut response = self.client.send(
            "PUT",
            &url,
            &[("content-type", "application/octet-stream")],
            &Body::Bytes(data),
        )?;
        if response.status().as_u16() != 201 {
            let described = describe_error(&mut response);
            return Err(self.client.error(format!("PUT blob {digest} answered {described}")));
        }
        Ok(())
    }

    /// PUTs manifest bytes unchanged under `reference`.
    pub fn put_manifest(&self, reference: &str, media_type: &str, bytes: &[u8]) -> Result<()> {
        let path = format!("/v2/{}/manifests/{reference}", self.repository);
        let mut response = self.client.send(
            "PUT",
            &self.client.url(&path),
            &[("content-type", media_type)],
            &Body::Bytes(bytes),
        )?;
        if !response.status().is_success() {
            let described = describe_error(&mut response);
            return Err(self.client.error(format!("PUT {path} answered {described}")));
        }
        Ok(())
    }
}
