//! Image operations that touch more than the image store: events, and the
//! in-use check against this node's containers.

use std::path::Path;

use berth_model::{Image, Progress};
use berth_store::CONTAINERS;

use crate::{Engine, Error};

impl Engine {
    pub fn images(&self) -> &berth_image::ImageStore {
        &self.images
    }

    /// Loads the archive at `archive`; errors call it `shown` (what the user named).
    pub fn load_image(
        &self,
        archive: &Path,
        shown: &Path,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Vec<Image>, Error> {
        let loaded = self.images.load_as(archive, shown, progress)?;
        for image in &loaded {
            let name = image.tags.first().cloned().unwrap_or_default();
            self.emit("image", "load", &image.id, &[("name", &name)]);
        }
        Ok(loaded)
    }

    /// Pulls from a registry (blocking); one `pull` event per image recorded.
    pub fn pull_image(
        &self,
        reference: &str,
        options: &berth_image::PullOptions,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<Vec<Image>, Error> {
        let pulled = self.images.pull(reference, options, progress)?;
        for image in &pulled {
            self.emit("image", "pull", &image.id, &[("name", reference)]);
        }
        Ok(pulled)
    }

    /// Pushes to a registry (blocking); a `push` event. Returns the manifest digest.
    pub fn push_image(&self, reference: &str, progress: &(dyn Fn(Progress) + Sync)) -> Result<String, Error> {
        let digest = self.images.push(reference, progress)?;
        let id = self.images.resolve(reference).map(|i| i.id).unwrap_or_default();
        self.emit("image", "push", &id, &[("name", reference), ("digest", &digest)]);
        Ok(digest)
    }

    /// Checks and stores registry credentials (blocking); the registry key.
    pub fn registry_login(&self, registry: &str, credentials: berth_image::Credentials) -> Result<String, Error> {
        Ok(self.images.login(registry, credentials)?)
    }

    pub fn registry_logout(&self, registry: &str) -> Result<bool, Error> {
        Ok(self.images.logout(registry)?)
    }

    pub fn tag_image(&self, source: &str, target: &str) -> Result<Image, Error> {
        let image = self.images.tag(source, target)?;
        self.emit("image", "tag", &image.id, &[("name", target)]);
        Ok(image)
    }

    pub fn remove_image(&self, reference: &str, force: bool) -> Result<Vec<String>, Error> {
        let containers: Vec<(String, berth_model::Container)> = self.store.list(CONTAINERS)?;
        let in_use = |id: &str| containers.iter().any(|(_, c)| c.image_id == id);
        let lines = self.images.remove(reference, force, &in_use)?;
        for line in &lines {
            if let Some(id) = line.strip_prefix("Deleted: ") {
                self.emit("image", "delete", id, &[]);
            } else if let Some(name) = line.strip_prefix("Untagged: ") {
                self.emit("image", "untag", name, &[("name", name)]);
            }
        }
        Ok(lines)
    }
}
