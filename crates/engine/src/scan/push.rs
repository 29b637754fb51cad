//! Scans on push: after a manifest was pushed to this node's registry (the
//! engine's `image push` event), the image is scanned in the background and
//! an `image scan` event says what became of it.

use std::sync::Arc;

use berth_model::Image;
use serde_json::Value;

use super::run::bare_image;
use super::{ScanError, ScanService};

impl ScanService {
    /// Called after a manifest was pushed to this node's registry: scans it
    /// in the background when scans on push are on and it is an image.
    /// Every push ends in an `image scan` event (`trigger=push`) saying what
    /// became of it: `outcome` is `scanned`, `skipped` (not an image),
    /// `failed` or `off` (`--scan-on-push false`).
    pub fn pushed(self: &Arc<Self>, repository: &str, reference: &str, digest: &str) {
        let name = if berth_model::validate_digest(reference).is_ok() {
            format!("{repository}@{reference}")
        } else {
            format!("{repository}:{reference}")
        };
        let outcome = |this: &ScanService, name: &str, digest: &str, outcome: &str| {
            this.engine.emit(
                "image",
                "scan",
                digest,
                &[("name", name), ("trigger", "push"), ("outcome", outcome)],
            );
        };
        if !self.config.scan_on_push {
            outcome(self, &name, digest, "off");
            return;
        }
        let this = self.clone();
        let digest = digest.to_string();
        let spawned = tokio::runtime::Handle::try_current().map(|rt| {
            rt.spawn_blocking(move || match this.scan_pushed(&name, &digest) {
                Ok(true) => outcome(&this, &name, &digest, "scanned"),
                Ok(false) => outcome(&this, &name, &digest, "skipped"),
                Err(e) => {
                    tracing::warn!(image = %name, digest = %digest, error = %e, "scan on push failed");
                    outcome(&this, &name, &digest, "failed");
                }
            })
        });
        if spawned.is_err() {
            tracing::warn!("scan on push skipped: no async runtime");
        }
    }

    /// Whether there was an image to scan.
    fn scan_pushed(&self, name: &str, digest: &str) -> Result<bool, ScanError> {
        let Some(image) = registry_image(self.engine.images(), digest)? else {
            return Ok(false);
        };
        let checks = self.select_checks(None)?;
        let record = self.scan_blocking(name, &image, checks, &[], None, None, "push", &|_| {})?;
        tracing::info!(image = %name, record = %record.id, "scanned pushed image");
        Ok(true)
    }
}

/// An image record for a manifest stored in the content store (pushed to
/// the registry); `None` when it is not a single-platform image (an index,
/// a signature, a plugin or another artifact).
fn registry_image(images: &berth_image::ImageStore, digest: &str) -> Result<Option<Image>, ScanError> {
    const IMAGE_CONFIGS: [&str; 2] = [
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
    ];
    let read = |digest: &str| -> Result<Value, ScanError> {
        let path = images.blob_path(digest)?;
        let bytes = std::fs::read(&path).map_err(|e| ScanError::Failed(format!("reading {}: {e}", path.display())))?;
        serde_json::from_slice(&bytes).map_err(|e| ScanError::Failed(format!("blob {digest} is not JSON: {e}")))
    };
    let manifest = read(digest)?;
    let config_type = manifest["config"]["mediaType"].as_str().unwrap_or_default();
    if !IMAGE_CONFIGS.contains(&config_type) {
        return Ok(None);
    }
    let config_digest = manifest["config"]["digest"].as_str().unwrap_or_default().to_string();
    let config = read(&config_digest)?;
    let layers: Vec<String> = manifest["layers"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|d| d["digest"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
        .as_array()
        .map(|l| l.iter().filter_map(|d| d.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if layers.is_empty() || layers.len() != diff_ids.len() {
        return Ok(None);
    }
    Ok(Some(bare_image(&config_digest, digest, layers, diff_ids)))
}
