//! The plugin lifecycle: listing, inspecting, installing, enabling,
//! disabling and removing plugins, and moving them to and from a registry
//! as OCI artifacts through the image store's registry client (the same
//! credentials, loopback and insecure-registry rules and retries as image
//! pulls and pushes).

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
        let registry = self
            .engine
            .images()
            .artifacts(&target.registry, &target.repository, true)?;
        for blob in [&artifact.config, &artifact.layer] {
            registry.push_blob(&blob.digest, &blob.data)?;
        }
        registry.put_manifest(&tag, berth_plugin::oci::MANIFEST_MEDIA_TYPE, &artifact.manifest)?;
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
        let registry = self
            .engine
            .images()
            .artifacts(&source.registry, &source.repository, false)?;
        let manifest = registry.manifest(&wanted, berth_plugin::oci::MANIFEST_MEDIA_TYPE, 4 << 20)?;
        let digest = berth_plugin::manifest::sha256_digest(&manifest);
        for expected in [source.digest.as_deref(), expect_digest].into_iter().flatten() {
            if expected != digest {
                return Err(ScanError::Invalid(format!(
                    "{reference}: the registry sent a manifest with digest {digest}, not {expected}"
                )));
            }
        }
        let blobs = berth_plugin::read_oci_manifest(&manifest)?;
        let blob = |digest: &str, size: u64| registry.blob(digest, size.max(1));
        let config = blob(&blobs.config.digest, blobs.config.size)?;
        let wasm = blob(&blobs.layer.digest, blobs.layer.size)?;
        let plugin_manifest = berth_plugin::plugin_from_blobs(&blobs, &config, &wasm)?;
        let json = serde_json::to_vec(&plugin_manifest)
            .map_err(|e| ScanError::Failed(format!("encoding the plugin manifest: {e}")))?;
        self.install_plugin(&json, &wasm)
    }
}
