//! Small filesystem helpers shared by the content store and the snapshotter.

use std::fs::{self, File};
use std::io;
use std::path::Path;

use crate::error::{io_err, Error, Result};

/// A random file name for temp files and dirs.
pub(crate) fn random_name() -> String {
    hex::encode(rand::random::<[u8; 12]>())
}

/// Makes `dir` exist and be empty: whatever is in it was left by a crash.
pub(crate) fn recreate_empty_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    for entry in fs::read_dir(dir).map_err(io_err("listing", dir))? {
        let entry = entry.map_err(io_err("listing", dir))?;
        remove_any(&entry.path())?;
        tracing::info!(path = %entry.path().display(), "removed leftover temp file");
    }
    Ok(())
}

/// Removes a file, symlink or whole directory tree; a missing path is fine.
pub(crate) fn remove_any(path: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(Error::Io {
                action: "reading metadata of",
                path: path.to_path_buf(),
                source: e,
            })
        }
    };
    let result = if meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::Io {
            action: "removing",
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Fsyncs a directory so that renames into it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing", dir))
}
