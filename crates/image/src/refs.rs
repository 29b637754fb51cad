//! Names of images: resolving references to image records, tagging, and
//! removal with `docker rmi` semantics.

use berth_model::{Image, Reference};
use berth_store::{Txn, IMAGES, TAGS};

use crate::error::{Error, Result};
use crate::ImageStore;

/// How a reference matched an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum By {
    /// Through a tag, given in familiar form (`busybox:latest`).
    Tag(String),
    /// By id, id prefix or digest.
    Id,
}

const MIN_PREFIX: usize = 4;

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl ImageStore {
    pub(crate) fn resolve_inner(&self, reference: &str) -> Result<(Image, By)> {
        let store = &self.inner.store;
        if let Some(hex) = reference.strip_prefix("sha256:") {
            if hex.len() < MIN_PREFIX || !is_hex(hex) {
                return Err(Error::InvalidReference(format!(
                    "invalid image id {reference:?}: expected sha256: and at least {MIN_PREFIX} lower-case hex digits"
                )));
            }
            return self.by_id_prefix(hex, reference).map(|image| (image, By::Id));
        }
        if reference.len() == 64 && is_hex(reference) {
            return self.by_id_prefix(reference, reference).map(|image| (image, By::Id));
        }
        let parsed = Reference::parse(reference).map_err(Error::InvalidReference)?;
        if let Some(digest) = &parsed.digest {
            // Image records do not keep repository digests, so the name part
            // is not checked: a manifest digest names one image anyway.
            let found = store
                .list::<Image>(IMAGES)?
                .into_iter()
                .map(|(_, image)| image)
                .find(|image| &image.manifest_digest == digest || &image.id == digest);
            return found
                .map(|image| (image, By::Id))
                .ok_or_else(|| Error::NotFound(reference.to_string()));
        }
        let familiar = parsed.familiar();
        if let Some(id) = store.get::<String>(TAGS, &familiar)? {
            if let Some(image) = store.get::<Image>(IMAGES, &id)? {
                return Ok((image, By::Tag(familiar)));
            }
            tracing::warn!(tag = %familiar, image_id = %id, "tag points at a missing image");
        }
        if reference.len() >= MIN_PREFIX && is_hex(reference) {
            return self.by_id_prefix(reference, reference).map(|image| (image, By::Id));
        }
        Err(Error::NotFound(reference.to_string()))
    }

    fn by_id_prefix(&self, hex_prefix: &str, reference: &str) -> Result<Image> {
        let store = &self.inner.store;
        if hex_prefix.len() == 64 {
            return store
                .get::<Image>(IMAGES, &format!("sha256:{hex_prefix}"))?
                .ok_or_else(|| Error::NotFound(reference.to_string()));
        }
        let mut matches: Vec<Image> = store
            .list::<Image>(IMAGES)?
            .into_iter()
            .filter(|(id, _)| {
                id.strip_prefix("sha256:")
                    .is_some_and(|hex| hex.starts_with(hex_prefix))
            })
            .map(|(_, image)| image)
            .collect();
        match matches.len() {
            0 => Err(Error::NotFound(reference.to_string())),
            1 => Ok(matches.remove(0)),
            count => Err(Error::AmbiguousReference {
                prefix: reference.to_string(),
                count,
            }),
        }
    }
}

/// The familiar `name:tag` a tag reference is stored under.
pub(crate) fn tag_name(target: &str) -> Result<String> {
    let parsed = Reference::parse(target).map_err(Error::InvalidReference)?;
    if parsed.digest.is_some() {
        return Err(Error::InvalidReference(format!(
            "invalid tag {target:?}: a tag cannot contain a digest"
        )));
    }
    Ok(parsed.familiar())
}

pub(crate) fn tag(images: &ImageStore, source: &str, target: &str) -> Result<Image> {
    let name = tag_name(target)?;
    let _content = images.lock_content();
    let (image, _) = images.resolve_inner(source)?;
    let image = images.inner.store.write(|txn| {
        set_tag(txn, &name, &image.id)?;
        txn.get::<Image>(IMAGES, &image.id)
    })?;
    image.ok_or_else(|| Error::NotFound(source.to_string()))
}

/// Points tag `name` at image `id` (which must be recorded), taking it away
/// from any image that had it.
pub(crate) fn set_tag(txn: &mut Txn, name: &str, id: &str) -> berth_store::Result<()> {
    if let Some(old_id) = txn.get::<String>(TAGS, name)? {
        if old_id != id {
            if let Some(mut old) = txn.get::<Image>(IMAGES, &old_id)? {
                old.tags.retain(|t| t != name);
                txn.put(IMAGES, &old_id, &old)?;
            }
        }
    }
    txn.put(TAGS, name, &id)?;
    if let Some(mut image) = txn.get::<Image>(IMAGES, id)? {
        if !image.tags.iter().any(|t| t == name) {
            image.tags.push(name.to_string());
            image.tags.sort();
            txn.put(IMAGES, id, &image)?;
        }
    }
    Ok(())
}

/// Records that image `id` was known as `reference`'s repository (as
/// `name@manifest-digest` in its `repo_digests`). Names are only ever added:
/// an untagged image keeps the names it had.
pub(crate) fn add_repo_digest(txn: &mut Txn, id: &str, reference: &str) -> berth_store::Result<()> {
    let Ok(parsed) = Reference::parse(reference) else {
        return Ok(());
    };
    if let Some(mut image) = txn.get::<Image>(IMAGES, id)? {
        let name = format!("{}@{}", parsed.familiar_name(), image.manifest_digest);
        if !image.repo_digests.contains(&name) {
            image.repo_digests.push(name);
            image.repo_digests.sort();
            txn.put(IMAGES, id, &image)?;
        }
    }
    Ok(())
}

/// The names `old` had that `record` (the same image, stored again) keeps.
pub(crate) fn keep_names(record: &mut Image, old: Image) {
    record.tags = old.tags;
    if record.index_digest.is_none() && record.manifest_digest == old.manifest_digest {
        record.index_digest = old.index_digest;
    }
    for name in old.repo_digests {
        if !record.repo_digests.contains(&name) {
            record.repo_digests.push(name);
        }
    }
    record.repo_digests.sort();
}

/// `docker rmi`:
/// - by tag, when the image has other tags: untag only;
/// - by its last tag or by id: untag, delete the record, and delete blobs and
///   snapshots no other image uses;
/// - by id when the image has several tags: refused unless `force`;
/// - an image a container uses (`in_use`): refused unless `force`, and even
///   then only untagged, never deleted.
pub(crate) fn remove(
    images: &ImageStore,
    reference: &str,
    force: bool,
    in_use: &dyn Fn(&str) -> bool,
) -> Result<Vec<String>> {
    let _content = images.lock_content();
    let (image, by) = images.resolve_inner(reference)?;
    let used = in_use(&image.id);
    let (untag, delete): (Vec<String>, bool) = match by {
        By::Tag(name) if image.tags.len() > 1 => (vec![name], false),
        By::Tag(name) => {
            if used && !force {
                return Err(Error::InUse {
                    reference: reference.to_string(),
                    id: image.id.to_string(),
                });
            }
            (vec![name], !used)
        }
        By::Id => {
            if used && !force {
                return Err(Error::InUse {
                    reference: reference.to_string(),
                    id: image.id.to_string(),
                });
            }
            if !used && image.tags.len() > 1 && !force {
                return Err(Error::MultipleTags {
                    id: image.id.to_string(),
                    tags: image.tags.join(", "),
                });
            }
            (image.tags.clone(), !used)
        }
    };
    images.inner.store.write(|txn| {
        for name in &untag {
            if txn.get::<String>(TAGS, name)?.as_deref() == Some(image.id.as_str()) {
                txn.delete(TAGS, name)?;
            }
        }
        if delete {
            txn.delete(IMAGES, &image.id)?;
        } else if let Some(mut record) = txn.get::<Image>(IMAGES, &image.id)? {
            record.tags.retain(|t| !untag.contains(t));
            txn.put(IMAGES, &image.id, &record)?;
        }
        Ok(())
    })?;
    let mut lines: Vec<String> = untag.iter().map(|name| format!("Untagged: {name}")).collect();
    if delete {
        lines.push(format!("Deleted: {}", image.id));
        // One `Deleted:` line per image (callers turn them into image events);
        // the layer blobs collected with it are logged, not listed.
        let removed = images.collect_garbage()?;
        tracing::info!(image_id = %image.id, blobs = removed.len(), "collected blobs of deleted image");
    }
    tracing::info!(image_id = %image.id, reference, deleted = delete, "removed image");
    Ok(lines)
}
