//! Snapshots: each layer unpacked once into `snapshots/<key>/`, recorded in
//! the `SNAPSHOTS` table, and handed out as overlayfs lower dirs.
//!
//! An unpack goes to `snapshots/tmp/<random>`, is synced, renamed into place
//! and only then recorded, so a recorded snapshot is always complete. One
//! mutex per key makes concurrent callers for the same layer wait for the
//! first unpack instead of racing it.

use std::collections::HashSet;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use berth_model::Image;
use berth_store::SNAPSHOTS;
use serde::{Deserialize, Serialize};

use crate::content::HashingReader;
use crate::error::{io_err, Error, Result};
use crate::{fsutil, IdShift, ImageStore};

/// What the `SNAPSHOTS` table holds per key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapshotRecord {
    pub diff_id: String,
    #[serde(default)]
    pub shift: Option<IdShift>,
    pub created: String,
}

/// `<diff id hex>` or `<diff id hex>-<uid_base>-<gid_base>-<size>`.
pub(crate) fn snapshot_key(diff_id: &str, shift: Option<IdShift>) -> String {
    let hex = diff_id.strip_prefix("sha256:").unwrap_or(diff_id);
    match shift {
        None => hex.to_string(),
        Some(s) => format!("{hex}-{}-{}-{}", s.uid_base, s.gid_base, s.size),
    }
}

pub(crate) fn layer_dirs(images: &ImageStore, image: &Image, shift: Option<IdShift>) -> Result<Vec<PathBuf>> {
    if image.layers.len() != image.diff_ids.len() {
        return Err(Error::Corrupt {
            id: image.id.to_string(),
            message: format!("{} layers but {} diff ids", image.layers.len(), image.diff_ids.len()),
        });
    }
    let mut dirs = Vec::with_capacity(image.layers.len());
    for (layer, diff_id) in image.layers.iter().zip(&image.diff_ids) {
        dirs.push(ensure_snapshot(images, &image.id, layer, diff_id, shift)?);
    }
    dirs.reverse();
    Ok(dirs)
}

fn key_lock(images: &ImageStore, key: &str) -> Arc<Mutex<()>> {
    let mut locks = images
        .inner
        .snapshot_locks
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    locks.entry(key.to_string()).or_default().clone()
}

fn ensure_snapshot(
    images: &ImageStore,
    image_id: &str,
    layer: &str,
    diff_id: &str,
    shift: Option<IdShift>,
) -> Result<PathBuf> {
    berth_model::validate_digest(diff_id).map_err(|e| Error::Corrupt {
        id: image_id.to_string(),
        message: format!("bad diff id: {e}"),
    })?;
    let key = snapshot_key(diff_id, shift);
    let dir = images.inner.snapshots.join(&key);
    let lock = key_lock(images, &key);
    let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
    let store = &images.inner.store;
    if store.get::<SnapshotRecord>(SNAPSHOTS, &key)?.is_some() && dir.is_dir() {
        return Ok(dir);
    }
    // A dir without a record is an unpack that crashed before being recorded.
    fsutil::remove_any(&dir)?;
    let tmp = images.inner.snapshots.join("tmp").join(fsutil::random_name());
    fs::create_dir(&tmp).map_err(io_err("creating", &tmp))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).map_err(io_err("chmod", &tmp))?;
    if let Err(e) = unpack_into(images, image_id, layer, diff_id, shift, &tmp) {
        if let Err(cleanup) = fsutil::remove_any(&tmp) {
            tracing::warn!(error = %cleanup, "cannot remove failed unpack");
        }
        return Err(e);
    }
    fs::rename(&tmp, &dir).map_err(io_err("moving snapshot into place at", &dir))?;
    fsutil::sync_dir(&images.inner.snapshots)?;
    let record = SnapshotRecord {
        diff_id: diff_id.to_string(),
        shift,
        created: chrono::Utc::now().to_rfc3339(),
    };
    store.write(|txn| txn.put(SNAPSHOTS, &key, &record))?;
    tracing::info!(layer = %layer, snapshot = %key, "unpacked layer");
    Ok(dir)
}

/// Unpacks blob `layer` into `tmp` and checks that its uncompressed content
/// still has digest `diff_id`.
fn unpack_into(
    images: &ImageStore,
    image_id: &str,
    layer: &str,
    diff_id: &str,
    shift: Option<IdShift>,
    tmp: &Path,
) -> Result<()> {
    let blob = images.inner.blobs.open_blob(layer)?;
    let blob_path = images.inner.blobs.path(layer)?;
    let (_, stream) = crate::compression::decompress(blob).map_err(io_err("reading blob", &blob_path))?;
    let mut stream = HashingReader::new(stream);
    crate::unpack::unpack_layer(&mut stream, tmp, shift).map_err(|e| Error::Unpack {
        layer: layer.to_string(),
        entry: e.entry,
        message: e.message,
    })?;
    let actual = stream.finish().map_err(io_err("reading blob", &blob_path))?;
    if actual != diff_id {
        return Err(Error::Corrupt {
            id: image_id.to_string(),
            message: format!("layer {layer} unpacks to content with digest {actual}, not diff id {diff_id}"),
        });
    }
    let dir = fs::File::open(tmp).map_err(io_err("opening", tmp))?;
    nix::unistd::syncfs(dir.as_raw_fd()).map_err(|e| Error::Io {
        action: "syncing",
        path: tmp.to_path_buf(),
        source: e.into(),
    })?;
    Ok(())
}

/// Removes one snapshot: record first, then the dir (renamed into `tmp/` so a
/// crash half way through the removal leaves only temp files).
fn remove_snapshot(images: &ImageStore, key: &str) -> Result<()> {
    let lock = key_lock(images, key);
    let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
    images.inner.store.write(|txn| txn.delete(SNAPSHOTS, key))?;
    let dir = images.inner.snapshots.join(key);
    if dir.exists() {
        let doomed = images.inner.snapshots.join("tmp").join(fsutil::random_name());
        fs::rename(&dir, &doomed).map_err(io_err("moving away snapshot", &dir))?;
        fsutil::remove_any(&doomed)?;
    }
    tracing::info!(snapshot = %key, "removed snapshot");
    Ok(())
}

/// Removes snapshots of layers that no image has any more.
pub(crate) fn remove_unused(images: &ImageStore, diff_ids_in_use: &HashSet<&str>) -> Result<()> {
    for (key, record) in images.inner.store.list::<SnapshotRecord>(SNAPSHOTS)? {
        if !diff_ids_in_use.contains(record.diff_id.as_str()) {
            remove_snapshot(images, &key)?;
        }
    }
    Ok(())
}

pub(crate) fn reconcile(images: &ImageStore) -> Result<()> {
    let records: HashSet<String> = images
        .inner
        .store
        .list::<SnapshotRecord>(SNAPSHOTS)?
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    let root = &images.inner.snapshots;
    let mut dirs = HashSet::new();
    for entry in fs::read_dir(root).map_err(io_err("listing", root))? {
        let entry = entry.map_err(io_err("listing", root))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "tmp" {
            continue;
        }
        if records.contains(&name) {
            dirs.insert(name);
        } else {
            tracing::info!(snapshot = %name, "removing snapshot dir without a record");
            fsutil::remove_any(&entry.path())?;
        }
    }
    for key in records.difference(&dirs) {
        tracing::warn!(snapshot = %key, "removing snapshot record without a dir");
        images.inner.store.write(|txn| txn.delete(SNAPSHOTS, key))?;
    }
    Ok(())
}
