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

    pub fn load_image(&self, archive: &Path, progress: &mut dyn FnMut(Progress)) -> Result<Vec<Image>, Error> {
        let loaded = self.images.load(archive, progress)?;
        for image in &loaded {
            let name = image.tags.first().cloned().unwrap_or_default();
            self.emit("image", "load", &image.id, &[("name", &name)]);
        }
        Ok(loaded)
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
