//! The image store of one node: a content store of blobs by digest, import
//! ([`ImageStore::load`]) and export ([`ImageStore::save`]) of image archives,
//! image records and tags in the embedded store, and layers unpacked once into
//! snapshot dirs that serve as overlayfs lower dirs.
//!
//! On disk, under `<data_root>/image/`:
//!
//! ```text
//! blobs/sha256/<hex>   every blob once (manifests, configs, layers)
//! blobs/tmp/           blobs being written; emptied on open
//! snapshots/<key>/     one unpacked layer; key = diff id hex [+ "-uid-gid-size" when shifted]
//! snapshots/tmp/       unpacks in progress; emptied on open
//! ```
//!
//! **Architecture invariants:**
//! - A blob at its final path always has the content its digest names.
//! - Every blob and snapshot is referenced by an image record (`IMAGES`) or,
//!   for blobs, held by another component through [`BLOB_HOLDS`] (the
//!   registry); anything else is garbage, removed by `remove` and by `open`
//!   (which is how a crash half way through a load or unpack is cleaned up).
//! - Records change only in one store transaction per operation, after the
//!   content they point at is in place: a failed load records nothing.
//! - This crate does not know about containers: callers say whether an image
//!   is in use through the `in_use` callback of [`ImageStore::remove`].
#![forbid(unsafe_code)]

mod compression;
mod content;
mod error;
mod fsutil;
mod load;
mod refs;
pub mod remote;
mod save;
mod snapshot;
mod unpack;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use berth_model::{Digest, Image, Progress};
use berth_store::{Store, Table, Txn, IMAGES};
use serde::{Deserialize, Serialize};

pub use error::{Error, Result};
pub use remote::{is_loopback, registry_key, Artifacts, Credentials, PullOptions, REGISTRY_CREDENTIALS};

/// Blobs other components (the registry) keep in this content store, so that
/// garbage collection leaves them alone. Key: `"<digest> <holder>"`, value `()`.
pub const BLOB_HOLDS: Table = Table("local/blob_holds");

/// How host ids are shifted when a layer is unpacked for containers in a user
/// namespace: a file owned by uid `u` in the layer becomes host uid
/// `uid_base + u` (same for gid). Ids at or above `size` are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdShift {
    pub uid_base: u32,
    pub gid_base: u32,
    pub size: u32,
}

/// The image store of this node. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct ImageStore {
    inner: Arc<Inner>,
}

struct Inner {
    blobs: content::Blobs,
    snapshots: PathBuf,
    /// Cluster state (registry credentials); its store holds this node's
    /// image, tag and snapshot records too.
    state: berth_state::State,
    store: Store,
    /// Held while blobs are committed or collected and while image or tag
    /// records change, so that a load never sees "blob already there" for a
    /// blob that a concurrent remove is about to collect.
    content_lock: Mutex<()>,
    /// One lock per snapshot key: concurrent unpacks of one layer wait for
    /// the first instead of racing it.
    snapshot_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// `berth daemon --insecure-registry`: registries (`host[:port]`)
    /// spoken to without verifying their certificate, or in plain HTTP.
    insecure_registries: std::sync::RwLock<Vec<String>>,
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore")
            .field("snapshots", &self.inner.snapshots)
            .finish_non_exhaustive()
    }
}

impl ImageStore {
    /// Opens the image store under `<data_root>/image`, creating its dirs, and
    /// cleans what a crash can leave: temp blobs, temp snapshot dirs, snapshot
    /// dirs without a record (and records without a dir), and blobs and
    /// snapshots that no image references.
    pub fn open(data_root: &Path, state: berth_state::State) -> Result<Self> {
        let store = state.store().clone();
        let root = data_root.join("image");
        let blobs = content::Blobs::open(root.join("blobs"))?;
        let snapshots = root.join("snapshots");
        fsutil::recreate_empty_dir(&snapshots.join("tmp"))?;
        let image_store = Self {
            inner: Arc::new(Inner {
                blobs,
                snapshots,
                state,
                store,
                content_lock: Mutex::new(()),
                snapshot_locks: Mutex::new(HashMap::new()),
                insecure_registries: Default::default(),
            }),
        };
        image_store.reconcile_snapshot_dirs()?;
        // Creates the table (the store only pre-creates its own ones).
        image_store
            .inner
            .store
            .write(|t| t.list::<serde::de::IgnoredAny>(BLOB_HOLDS).map(drop))?;
        {
            let _content = image_store.lock_content();
            image_store.collect_garbage()?;
        }
        Ok(image_store)
    }

    /// Imports an image archive: an OCI image layout or a `docker save`
    /// archive, plain tar or gzip/zstd compressed. Every blob is verified
    /// against its digest and every layer against its diff id before anything
    /// is recorded; a failed load leaves no blob, record or temp file behind.
    pub fn load(&self, archive: &Path, progress: &mut dyn FnMut(Progress)) -> Result<Vec<Image>> {
        load::load(self, archive, archive, progress)
    }

    /// [`Self::load`] of a file that errors call `shown`: the name the user
    /// gave an uploaded archive, never the daemon's spool file.
    pub fn load_as(&self, archive: &Path, shown: &Path, progress: &mut dyn FnMut(Progress)) -> Result<Vec<Image>> {
        load::load(self, archive, shown, progress)
    }

    /// Writes an OCI image layout tarball (with a docker `manifest.json` too)
    /// holding the given images, named by reference or id. Images given by
    /// name carry it in `org.opencontainers.image.ref.name` and
    /// `io.containerd.image.name` annotations.
    pub fn save(&self, refs: &[String], out: &mut dyn std::io::Write) -> Result<()> {
        save::save(self, refs, out)
    }

    /// Every image, newest first.
    pub fn list(&self) -> Result<Vec<Image>> {
        let mut images: Vec<Image> = self
            .inner
            .store
            .list(IMAGES)?
            .into_iter()
            .map(|(_, image)| image)
            .collect();
        images.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
        Ok(images)
    }

    /// Resolves `name[:tag]`, `name@sha256:..` (manifest digest), a full image
    /// id `sha256:...`, a bare hex id, or a unique id prefix of at least 4 hex
    /// digits.
    pub fn resolve(&self, reference: &str) -> Result<Image> {
        self.resolve_inner(reference).map(|(image, _)| image)
    }

    /// Adds tag `target` to the image `source` resolves to; a tag that named
    /// another image moves.
    pub fn tag(&self, source: &str, target: &str) -> Result<Image> {
        refs::tag(self, source, target)
    }

    /// Removes an image the way `docker rmi` does:
    /// - by tag, when the image has other tags: untag only;
    /// - by its last tag or by id: untag, delete the record, and delete the
    ///   blobs and snapshots no other image uses;
    /// - by id when the image has several tags: refused unless `force`;
    /// - an image a container uses (`in_use(image_id)`): refused with
    ///   [`Error::InUse`] unless `force`, and even then only untagged.
    ///
    /// Returns `Untagged: busybox:latest` / `Deleted: sha256:...` lines.
    /// `in_use` runs while the store's content lock is held: it must not call
    /// back into this store.
    pub fn remove(&self, reference: &str, force: bool, in_use: &dyn Fn(&str) -> bool) -> Result<Vec<String>> {
        refs::remove(self, reference, force, in_use)
    }

    /// Makes sure every layer of `image` is unpacked and returns the snapshot
    /// dirs top-most first, as overlayfs `lowerdir=` wants them. Each layer is
    /// unpacked once per `shift` (`None`: ids as in the layer) and cached.
    pub fn layer_dirs(&self, image: &Image, shift: Option<IdShift>) -> Result<Vec<PathBuf>> {
        snapshot::layer_dirs(self, image, shift)
    }

    /// Bytes of blobs on disk.
    pub fn total_size(&self) -> Result<u64> {
        Ok(self.inner.blobs.list()?.iter().map(|(_, size)| size).sum())
    }

    /// The path of a stored blob; `Error::BlobNotFound` if it is not stored.
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        let path = self.inner.blobs.path(digest)?;
        if !path.is_file() {
            return Err(Error::BlobNotFound(digest.to_string()));
        }
        Ok(path)
    }

    /// The embedded store this image store keeps its records in.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Cluster state, as the node opened it.
    pub fn state(&self) -> &berth_state::State {
        &self.inner.state
    }

    /// Moves `file` into the content store as the blob `digest` and then, in
    /// one store transaction, runs `record`, which must write a [`BLOB_HOLDS`]
    /// entry (or an image record) for it. Both happen under the content lock,
    /// so garbage collection never sees the blob without its hold. The caller
    /// has verified that `file` has `digest` and that it lies on the data
    /// root's filesystem. Returns whether the blob is new; when it was already
    /// stored, `file` is removed. A failed `record` leaves an unreferenced blob
    /// that the next collection removes.
    pub fn commit_blob<R>(
        &self,
        file: &Path,
        digest: &str,
        record: impl FnOnce(&mut Txn) -> berth_store::Result<R>,
    ) -> Result<(bool, R)> {
        let path = self.inner.blobs.path(digest)?;
        let _content = self.lock_content();
        let new = if path.is_file() {
            fsutil::remove_any(file)?;
            false
        } else {
            std::fs::rename(file, &path).map_err(error::io_err("moving blob into place at", &path))?;
            if let Some(dir) = path.parent() {
                fsutil::sync_dir(dir)?;
            }
            true
        };
        let r = self.inner.store.write(record)?;
        Ok((new, r))
    }

    /// Removes blobs and snapshots that neither an image record nor a hold
    /// references. Returns the removed blob digests.
    pub fn collect_unreferenced(&self) -> Result<Vec<String>> {
        let _content = self.lock_content();
        self.collect_garbage()
    }

    fn lock_content(&self) -> MutexGuard<'_, ()> {
        self.inner.content_lock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes blobs and snapshots that no image record references. The caller
    /// holds the content lock. Returns the removed blob digests.
    fn collect_garbage(&self) -> Result<Vec<String>> {
        let images: Vec<(String, Image)> = self.inner.store.list(IMAGES)?;
        let mut blobs_in_use = HashSet::new();
        let mut diff_ids_in_use = HashSet::new();
        for (_, image) in &images {
            blobs_in_use.insert(image.id.as_str());
            blobs_in_use.insert(image.manifest_digest.as_str());
            blobs_in_use.extend(image.index_digest.as_deref());
            blobs_in_use.extend(image.layers.iter().map(Digest::as_str));
            diff_ids_in_use.extend(image.diff_ids.iter().map(Digest::as_str));
        }
        let holds: Vec<(String, serde::de::IgnoredAny)> = self.inner.store.list(BLOB_HOLDS)?;
        let held: Vec<&str> = holds.iter().filter_map(|(key, _)| key.split(' ').next()).collect();
        blobs_in_use.extend(held);
        let mut removed = Vec::new();
        for (digest, _) in self.inner.blobs.list()? {
            if !blobs_in_use.contains(digest.as_str()) {
                self.inner.blobs.remove(&digest)?;
                tracing::info!(digest = %digest, "removed unreferenced blob");
                removed.push(digest);
            }
        }
        snapshot::remove_unused(self, &diff_ids_in_use)?;
        Ok(removed)
    }

    /// Snapshot dirs without a record are unpacks that crashed before being
    /// recorded; records without a dir lost their content. Both go.
    fn reconcile_snapshot_dirs(&self) -> Result<()> {
        snapshot::reconcile(self)
    }
}
