//! The plugin lifecycle: listing, inspecting, installing, enabling,
//! disabling and removing plugins, and moving them to and from a registry
//! as OCI artifacts (a small anonymous OCI Distribution client).

use std::time::Duration;

use super::{PluginInfo, ScanError, ScanService};

impl ScanService {
    pub fn list_plugins(&self) -> Result<Vec<PluginInfo>, ScanError> {
        Ok(self.plugins()?.list()?)
    }

    /// Whether `info` is one of the plugins built into this binary.
    pub fn is_builtin_plugin(&self, info: &PluginInfo) -> bool {
        crate::builtin_plugins::is_builtin(&self.builtins, &info.manifest)
    }

    pub fn inspect_plugin(&self, name: &str, version: Option<&str>) -> Result<PluginInfo, ScanError> {
        Ok(self.plugins()?.inspect(name, version)?)
    }

    pub fn install_plugin(&self, manifest_json: &[u8], wasm: &[u8]) -> Result<PluginInfo, ScanError> {
        let info = self.plugins()?.install_bytes(manifest_json, wasm)?;
        tracing::info!(plugin = %info.manifest.name, version = %info.manifest.version, "installed plugin");
        Ok(info)
    }

    pub fn enable_plugin(&self, name: &str, version: Option<&str>) -> Result<PluginInfo, ScanError> {
        Ok(self.plugins()?.enable(name, version)?)
    }

    pub fn disable_plugin(&self, name: &str, version: Option<&str>) -> Result<PluginInfo, ScanError> {
        Ok(self.plugins()?.disable(name, version)?)
    }

    pub fn remove_plugin(&self, name: &str, version: Option<&str>) -> Result<PluginInfo, ScanError> {
        Ok(self.plugins()?.remove(name, version)?)
    }

    /// Pushes an installed plugin to `reference` as an OCI artifact;
    /// returns the manifest digest.
    pub fn push_plugin(&self, name: &str, version: Option<&str>, reference: &str) -> Result<String, ScanError> {
        let (info, wasm) = self.plugins()?.wasm(name, version)?;
        let artifact = berth_plugin::to_oci_artifact(&info.manifest, &wasm)?;
        let target = berth_model::Reference::parse(reference).map_err(ScanError::Invalid)?;
        let tag = target
            .tag
            .clone()
            .or(target.digest.clone())
            .unwrap_or_else(|| info.manifest.version.clone());
        let registry = OciClient::new(&target.registry);
        for blob in [&artifact.config, &artifact.layer] {
            registry.push_blob(&target.repository, &blob.digest, &blob.data)?;
        }
        registry.put_manifest(
            &target.repository,
            &tag,
            berth_plugin::oci::MANIFEST_MEDIA_TYPE,
            &artifact.manifest,
        )?;
        tracing::info!(plugin = %name, reference, digest = %artifact.manifest_digest, "pushed plugin");
        Ok(artifact.manifest_digest)
    }

    /// Pulls a plugin artifact from `reference` and installs it. With
    /// `expect_digest`, the manifest must have that digest (content trust).
    pub fn pull_plugin(&self, reference: &str, expect_digest: Option<&str>) -> Result<PluginInfo, ScanError> {
        let source = berth_model::Reference::parse(reference).map_err(ScanError::Invalid)?;
        let wanted = source
            .digest
            .clone()
            .or(source.tag.clone())
            .unwrap_or_else(|| "latest".to_string());
        let registry = OciClient::new(&source.registry);
        let manifest = registry.get(
            &format!("/v2/{}/manifests/{wanted}", source.repository),
            Some(berth_plugin::oci::MANIFEST_MEDIA_TYPE),
            4 << 20,
        )?;
        let digest = berth_plugin::manifest::sha256_digest(&manifest);
        for expected in [source.digest.as_deref(), expect_digest].into_iter().flatten() {
            if expected != digest {
                return Err(ScanError::Invalid(format!(
                    "{reference}: the registry sent a manifest with digest {digest}, not {expected}"
                )));
            }
        }
        let blobs = berth_plugin::read_oci_manifest(&manifest)?;
        let blob = |digest: &str, size: u64| {
            registry.get(&format!("/v2/{}/blobs/{digest}", source.repository), None, size.max(1))
        };
        let config = blob(&blobs.config.digest, blobs.config.size)?;
        let wasm = blob(&blobs.layer.digest, blobs.layer.size)?;
        let plugin_manifest = berth_plugin::plugin_from_blobs(&blobs, &config, &wasm)?;
        let json = serde_json::to_vec(&plugin_manifest)
            .map_err(|e| ScanError::Failed(format!("encoding the plugin manifest: {e}")))?;
        self.install_plugin(&json, &wasm)
    }
}

/// `scheme://host[:port]` of a URL, without its path, query or user info.
fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Just enough of the OCI Distribution protocol to move a plugin artifact:
/// anonymous access (a loopback registry speaks plain HTTP, others HTTPS).
struct OciClient {
    agent: ureq::Agent,
    base: String,
    registry: String,
}

impl OciClient {
    fn new(registry: &str) -> OciClient {
        let host = berth_image::registry_key(registry);
        let loopback = berth_image::is_loopback(&host);
        OciClient {
            agent: http_agent(),
            base: format!("{}://{host}", if loopback { "http" } else { "https" }),
            registry: host,
        }
    }

    fn error(&self, message: impl std::fmt::Display) -> ScanError {
        ScanError::Failed(format!("registry {}: {message}", self.registry))
    }

    fn get(&self, path: &str, accept: Option<&str>, limit: u64) -> Result<Vec<u8>, ScanError> {
        let mut request = self.agent.get(format!("{}{path}", self.base));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let mut response = request.call().map_err(|e| self.error(format!("GET {path}: {e}")))?;
        if !response.status().is_success() {
            return Err(self.error(format!("GET {path} answered {}", response.status())));
        }
        response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| self.error(format!("GET {path}: {e}")))
    }

    fn push_blob(&self, repository: &str, digest: &str, data: &[u8]) -> Result<(), ScanError> {
        let head = format!("{}/v2/{repository}/blobs/{digest}", self.base);
        if let Ok(response) = self.agent.head(&head).call() {
            if response.status().is_success() {
                return Ok(());
            }
        }
        let start = format!("/v2/{repository}/blobs/uploads/");
        let response = self
            .agent
            .post(format!("{}{start}", self.base))
            .send(&[][..])
            .map_err(|e| self.error(format!("POST {start}: {e}")))?;
        if response.status().as_u16() != 202 {
            return Err(self.error(format!("POST {start} answered {}", response.status())));
        }
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| self.error(format!("POST {start} gave no upload location")))?;
        let mut url = if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!("{}{location}", self.base)
        };
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("digest={digest}"));
        let response = self
            .agent
            .put(&url)
            .header("content-type", "application/octet-stream")
            .send(data)
            .map_err(|e| self.error(format!("PUT blob {digest}: {e}")))?;
        if response.status().as_u16() != 201 {
            return Err(self.error(format!("PUT blob {digest} answered {}", response.status())));
        }
        Ok(())
    }

    fn put_manifest(&self, repository: &str, reference: &str, media_type: &str, bytes: &[u8]) -> Result<(), ScanError> {
        let path = format!("/v2/{repository}/manifests/{reference}");
        let response = self
            .agent
            .put(format!("{}{path}", self.base))
            .header("content-type", media_type)
            .send(bytes)
            .map_err(|e| self.error(format!("PUT {path}: {e}")))?;
        if response.status().as_u16() != 201 {
            return Err(self.error(format!("PUT {path} answered {}", response.status())));
        }
        Ok(())
    }
}
