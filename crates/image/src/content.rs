//! The content store: every blob once, under `blobs/sha256/<hex>`.
//!
//! **Invariant:** a file at a final blob path has exactly the content its name
//! says. Blobs are written to `blobs/tmp/`, fsynced, and only renamed into
//! place by [`Blobs::commit`] after the caller checked the digest it expected.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::error::{io_err, Error, Result};

/// The `blobs/` directory of one image store.
#[derive(Debug, Clone)]
pub(crate) struct Blobs {
    root: PathBuf,
}

/// A blob written to `blobs/tmp/` and not yet in place. Its temp file is
/// removed when it is dropped without being committed.
#[derive(Debug)]
pub(crate) struct Staged {
    temp: PathBuf,
    pub digest: String,
    pub size: u64,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_file(&self.temp) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %self.temp.display(), error = %e, "cannot remove temp blob");
            }
        }
    }
}

impl Staged {
    pub fn open(&self) -> Result<File> {
        File::open(&self.temp).map_err(io_err("opening temp blob", &self.temp))
    }
}

impl Blobs {
    /// Creates `blobs/sha256` and `blobs/tmp` and empties `blobs/tmp`
    /// (whatever is there was left by a crash).
    pub fn open(root: PathBuf) -> Result<Self> {
        let blobs = Self { root };
        fs::create_dir_all(blobs.sha256_dir()).map_err(io_err("creating", blobs.sha256_dir()))?;
        crate::fsutil::recreate_empty_dir(&blobs.tmp_dir())?;
        Ok(blobs)
    }

    fn sha256_dir(&self) -> PathBuf {
        self.root.join("sha256")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Where the blob with `digest` lives (whether or not it is there).
    pub fn path(&self, digest: &str) -> Result<PathBuf> {
        berth_model::validate_digest(digest).map_err(Error::InvalidDigest)?;
        let hex = &digest["sha256:".len()..];
        Ok(self.sha256_dir().join(hex))
    }

    pub fn contains(&self, digest: &str) -> Result<bool> {
        Ok(self.path(digest)?.is_file())
    }

    pub fn open_blob(&self, digest: &str) -> Result<File> {
        let path = self.path(digest)?;
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::BlobNotFound(digest.to_string()),
            _ => Error::Io {
                action: "opening blob",
                path,
                source: e,
            },
        })
    }

    /// Copies `content` into a fsynced temp file, hashing it on the way.
    /// Errors reading `content` go through `read_err`, so that they can name
    /// where the content came from.
    pub fn stage(&self, content: &mut dyn Read, read_err: &dyn Fn(io::Error) -> Error) -> Result<Staged> {
        let temp = self.tmp_dir().join(crate::fsutil::random_name());
        let mut file = File::options()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(io_err("creating temp blob", &temp))?;
        // From here on, dropping `staged` removes the file.
        let mut staged = Staged {
            temp,
            digest: String::new(),
            size: 0,
        };
        let mut writer = HashingWriter::new(&mut file);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match content.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_err(e)),
            };
            writer
                .write_all(&buf[..n])
                .map_err(io_err("writing temp blob", &staged.temp))?;
        }
        let (digest, size) = writer.finish();
        file.sync_all().map_err(io_err("syncing temp blob", &staged.temp))?;
        staged.digest = digest;
        staged.size = size;
        Ok(staged)
    }

    pub fn stage_bytes(&self, mut bytes: &[u8]) -> Result<Staged> {
        let path = self.tmp_dir();
        self.stage(&mut bytes, &|e| Error::Io {
            action: "staging blob in",
            path: path.clone(),
            source: e,
        })
    }

    /// Moves a staged blob into place. Returns whether the blob is new (it was
    /// not in the store before). The caller holds the store's content lock.
    pub fn commit(&self, staged: Staged) -> Result<bool> {
        let path = self.path(&staged.digest)?;
        if path.is_file() {
            return Ok(false);
        }
        fs::rename(&staged.temp, &path).map_err(io_err("moving blob into place at", &path))?;
        crate::fsutil::sync_dir(&self.sha256_dir())?;
        Ok(true)
    }

    /// Removes a blob; a blob that is already gone is not an error.
    pub fn remove(&self, digest: &str) -> Result<()> {
        let path = self.path(digest)?;
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::Io {
                action: "removing blob",
                path,
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Every blob in the store with its size.
    pub fn list(&self) -> Result<Vec<(String, u64)>> {
        let dir = self.sha256_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("listing", &dir))? {
            let entry = entry.map_err(io_err("listing", &dir))?;
            let meta = entry.metadata().map_err(io_err("reading metadata of", entry.path()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let digest = format!("sha256:{name}");
            if !meta.is_file() || berth_model::validate_digest(&digest).is_err() {
                tracing::warn!(path = %entry.path().display(), "unexpected file in the content store");
                continue;
            }
            out.push((digest, meta.len()));
        }
        out.sort();
        Ok(out)
    }
}

/// A writer that hashes (sha256) and counts what passes through it.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// `("sha256:<hex>", bytes written)`.
    pub fn finish(self) -> (String, u64) {
        (format!("sha256:{}", hex::encode(self.hasher.finalize())), self.size)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes (sha256) what is read through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// Reads the rest of the stream and returns `"sha256:<hex>"` of all of it.
    pub fn finish(mut self) -> io::Result<String> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(format!("sha256:{}", hex::encode(self.hasher.finalize())))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Reads a small JSON document (a manifest, index or config) whole, refusing
/// anything larger than a sane limit so a hostile archive cannot exhaust memory.
pub(crate) fn read_small(reader: &mut dyn Read, path: &Path) -> Result<Vec<u8>> {
    const LIMIT: u64 = 8 << 20;
    let mut buf = Vec::new();
    reader
        .take(LIMIT + 1)
        .read_to_end(&mut buf)
        .map_err(io_err("reading", path))?;
    if buf.len() as u64 > LIMIT {
        return Err(Error::Io {
            action: "reading",
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidData, format!("larger than {LIMIT} bytes")),
        });
    }
    Ok(buf)
}
