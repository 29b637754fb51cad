//! A merged, read-only view of an image's layers, resolved the way
//! overlayfs would: an upper layer's file hides a lower one's, whiteouts
//! delete, opaque directories hide everything below them.
//!
//! [`MergedView::open`] walks every layer directory exactly once, top layer
//! first, and keeps one table of the visible tree (path → [`Entry`], with the
//! layer each entry came from). A lower layer's subtree is not even read when
//! an upper layer hid it. Everything afterwards (lookups, listing, symlink
//! resolution) is answered from that table; files are read from the one layer
//! that holds them.
//!
//! **Architecture Invariant**: nothing outside the layer directories is ever
//! touched. Symlinks inside the image are resolved against the image root
//! (an absolute target starts again at the image root, `..` stops at it) using
//! the table, never by the host kernel; files are opened with `O_NOFOLLOW`,
//! and every directory on the host path of an entry is one the walk saw as a
//! real directory.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::PathBuf;

use crate::types::Layer;

/// The xattrs that mark an opaque directory: the kernel's trusted namespace
/// (what the image store writes as root) and the `userxattr` mount variant.
pub const OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

/// How many symlinks one resolution may follow, as the kernel's limit.
const MAX_SYMLINK_HOPS: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading layer directory {path}: {source}")]
    Walk {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: no such file in the image")]
    NotFound { path: String },
    #[error("{path}: not a regular file")]
    NotAFile { path: String },
    #[error("{path}: {size} bytes is over the {cap}-byte limit")]
    TooLarge { path: String, size: u64, cap: u64 },
    #[error("{path}: too many levels of symbolic links")]
    SymlinkLoop { path: String },
    #[error("reading {path} from layer {layer}: {source}")]
    Read {
        path: String,
        layer: String,
        #[source]
        source: io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of thing an [`Entry`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// Devices, fifos, sockets: visible, never read.
    Other,
    /// A whiteout: hides the path in lower layers; not visible itself.
    Whiteout,
}

/// One path of the merged tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    /// Index into [`MergedView::layers`] (0 is the bottom layer).
    pub layer: usize,
    pub size: u64,
    /// The full `st_mode` (type and permission bits).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// This layer's copy of the directory is opaque.
    pub opaque: bool,
    /// Lower layers no longer contribute below this directory (it, or an
    /// upper copy of it, was opaque). Only meaningful while walking.
    sealed: bool,
}

impl Entry {
    /// Whether any execute bit is set.
    pub fn is_executable(&self) -> bool {
        self.mode & 0o111 != 0
    }
}

/// The merged tree of an image's layers.
#[derive(Debug, Clone)]
pub struct MergedView {
    layers: Vec<Layer>,
    /// Absolute paths (`/etc/passwd`, no trailing slash, root not stored),
    /// whiteouts included so lookups can tell "deleted" from "absent".
    entries: BTreeMap<String, Entry>,
    visible: usize,
}

impl MergedView {
    /// Walks `layers` (bottom layer first) once and builds the merged tree.
    pub fn open(layers: &[Layer]) -> Result<MergedView> {
        let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
        for index in (0..layers.len()).rev() {
            walk_layer(&layers[index], index, &mut entries)?;
        }
        let visible = entries.values().filter(|e| e.kind != EntryKind::Whiteout).count();
        Ok(MergedView {
            layers: layers.to_vec(),
            entries,
            visible,
        })
    }

    /// The layers, bottom first.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// The digest of the layer that holds `entry`.
    pub fn layer_digest(&self, entry: &Entry) -> &str {
        &self.layers[entry.layer].digest
    }

    /// Number of visible paths.
    pub fn len(&self) -> usize {
        self.visible
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every visible path with its entry, in byte order of the path.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries
            .iter()
            .filter(|(_, e)| e.kind != EntryKind::Whiteout)
            .map(|(p, e)| (p.as_str(), e))
    }

    /// Paths deleted by a whiteout in this view's layers. In a view of one
    /// layer these are that layer's whiteouts, which the per-layer cache needs.
    pub fn whiteouts(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .filter(|(_, e)| e.kind == EntryKind::Whiteout)
            .map(|(p, _)| p.as_str())
    }

    /// Directories whose holding layer marked them opaque.
    pub fn opaque_dirs(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .filter(|(_, e)| e.kind == EntryKind::Dir && e.opaque)
            .map(|(p, _)| p.as_str())
    }

    /// The entry at `path` itself (a final symlink is not followed; earlier
    /// components must be real directories). `None` when absent or deleted.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        let key = normalize(path);
        self.entries.get(&key).filter(|e| e.kind != EntryKind::Whiteout)
    }

    /// Direct children of the directory `dir` (not following a symlink at
    /// `dir`), as (name, entry), in name order.
    pub fn children<'a>(&'a self, dir: &str) -> impl Iterator<Item = (&'a str, &'a Entry)> + 'a {
        let mut prefix = normalize(dir);
        prefix.push('/');
        let prefix_len = prefix.len();
        self.entries
            .range(prefix.clone()..)
            .take_while(move |(p, _)| p.starts_with(&prefix))
            .filter(move |(p, e)| e.kind != EntryKind::Whiteout && !p[prefix_len..].contains('/'))
            .map(move |(p, e)| (&p[prefix_len..], e))
    }

    /// Resolves `path` the way `open(2)` inside the image would: symlinks in
    /// every component (and the last one) are followed within the image root.
    /// Returns the final absolute path and its entry.
    pub fn resolve(&self, path: &str) -> Result<(String, &Entry)> {
        self.resolve_inner(path, true)
    }

    /// Like [`MergedView::resolve`] but does not follow a symlink in the last
    /// component (`lstat` rather than `stat`).
    pub fn resolve_nofollow(&self, path: &str) -> Result<(String, &Entry)> {
        self.resolve_inner(path, false)
    }

    fn resolve_inner(&self, path: &str, follow_last: bool) -> Result<(String, &Entry)> {
        let not_found = || Error::NotFound { path: path.to_string() };
        let mut pending: VecDeque<String> = components(path).map(str::to_string).collect();
        let mut resolved = String::new();
        let mut hops = 0;
        // The entry of `resolved`; the root has none of its own.
        let mut current: Option<&Entry> = None;
        while let Some(component) = pending.pop_front() {
            if component == "." {
                continue;
            }
            if component == ".." {
                if let Some(i) = resolved.rfind('/') {
                    resolved.truncate(i);
                }
                current = if resolved.is_empty() {
                    None
                } else {
                    self.entries.get(&resolved)
                };
                continue;
            }
            if let Some(entry) = current {
                if entry.kind != EntryKind::Dir {
                    return Err(not_found());
                }
            }
            let candidate = format!("{resolved}/{component}");
            let entry = self.entries.get(&candidate).ok_or_else(not_found)?;
            match entry.kind {
                EntryKind::Whiteout => return Err(not_found()),
                EntryKind::Symlink if follow_last || !pending.is_empty() => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(Error::SymlinkLoop { path: path.to_string() });
                    }
                    let target = self.read_link(&candidate, entry)?;
                    if target.starts_with('/') {
                        resolved.clear();
                        current = None;
                    }
                    for part in components(&target).rev() {
                        pending.push_front(part.to_string());
                    }
                }
                _ => {
                    resolved = candidate;
                    current = Some(entry);
                }
            }
        }
        match current {
            Some(entry) => Ok((resolved, entry)),
            // The root itself: not an entry a caller can read.
            None => Err(not_found()),
        }
    }

    /// The target of the symlink `entry` at `path`, as written.
    pub fn read_link(&self, path: &str, entry: &Entry) -> Result<String> {
        let host = self.host_path(path, entry);
        let target = fs::read_link(&host).map_err(|source| self.read_error(path, entry, source))?;
        Ok(target.to_string_lossy().into_owned())
    }

    /// Reads the file at `path` (following symlinks within the image), at
    /// most `cap` bytes: a larger file is an error, not a truncated read.
    pub fn read(&self, path: &str, cap: u64) -> Result<Vec<u8>> {
        let (resolved, entry) = self.resolve(path)?;
        let entry = entry.clone();
        self.read_entry(&resolved, &entry, cap)
    }

    /// Reads the regular file `entry` at `path` (as listed by
    /// [`MergedView::entries`]), at most `cap` bytes.
    pub fn read_entry(&self, path: &str, entry: &Entry, cap: u64) -> Result<Vec<u8>> {
        if entry.size > cap {
            return Err(Error::TooLarge {
                path: path.to_string(),
                size: entry.size,
                cap,
            });
        }
        let file = self.open_entry(path, entry)?;
        let mut data = Vec::with_capacity(entry.size as usize);
        file.take(cap + 1)
            .read_to_end(&mut data)
            .map_err(|source| self.read_error(path, entry, source))?;
        if data.len() as u64 > cap {
            return Err(Error::TooLarge {
                path: path.to_string(),
                size: data.len() as u64,
                cap,
            });
        }
        Ok(data)
    }

    /// Opens the regular file `entry` at `path` for reading (`O_NOFOLLOW`).
    pub fn open_entry(&self, path: &str, entry: &Entry) -> Result<File> {
        if entry.kind != EntryKind::File {
            return Err(Error::NotAFile { path: path.to_string() });
        }
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_NONBLOCK)
            .open(self.host_path(path, entry))
            .map_err(|source| self.read_error(path, entry, source))
    }

    fn host_path(&self, path: &str, entry: &Entry) -> PathBuf {
        self.layers[entry.layer].dir.join(path.trim_start_matches('/'))
    }

    fn read_error(&self, path: &str, entry: &Entry, source: io::Error) -> Error {
        Error::Read {
            path: path.to_string(),
            layer: self.layers[entry.layer].digest.clone(),
            source,
        }
    }
}

/// The non-empty components of a path.
fn components(path: &str) -> impl DoubleEndedIterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty())
}

/// `a//b/` → `/a/b`; the root is the empty string.
fn normalize(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 1);
    for component in components(path) {
        out.push('/');
        out.push_str(component);
    }
    out
}

/// Adds layer `index`'s contribution to `entries`, which already holds
/// everything from the layers above it.
fn walk_layer(layer: &Layer, index: usize, entries: &mut BTreeMap<String, Entry>) -> Result<()> {
    let mut stack: Vec<String> = vec![String::new()];
    while let Some(dir) = stack.pop() {
        let host_dir = layer.dir.join(dir.trim_start_matches('/'));
        let reader = fs::read_dir(&host_dir).map_err(|source| Error::Walk {
            path: host_dir.clone(),
            source,
        })?;
        for item in reader {
            let item = item.map_err(|source| Error::Walk {
                path: host_dir.clone(),
                source,
            })?;
            let name = item.file_name();
            let path = format!("{dir}/{}", name.to_string_lossy());
            let meta = item.metadata().map_err(|source| Error::Walk {
                path: item.path(),
                source,
            })?;
            let file_type = meta.file_type();
            let kind = if file_type.is_dir() {
                EntryKind::Dir
            } else if file_type.is_file() {
                EntryKind::File
            } else if file_type.is_symlink() {
                EntryKind::Symlink
            } else if file_type.is_char_device() && meta.rdev() == 0 {
                EntryKind::Whiteout
            } else {
                EntryKind::Other
            };
            let opaque = kind == EntryKind::Dir && is_opaque(&item.path());
            match entries.get_mut(&path) {
                // An upper layer already decided this path. Only a directory
                // over a directory lets this layer contribute below it.
                Some(upper) => {
                    if upper.kind == EntryKind::Dir && kind == EntryKind::Dir && !upper.sealed {
                        upper.sealed = opaque;
                        stack.push(path);
                    }
                }
                None => {
                    let entry = Entry {
                        kind,
                        layer: index,
                        size: if kind == EntryKind::File { meta.len() } else { 0 },
                        mode: meta.mode(),
                        uid: meta.uid(),
                        gid: meta.gid(),
                        opaque,
                        sealed: opaque,
                    };
                    entries.insert(path.clone(), entry);
                    if kind == EntryKind::Dir {
                        stack.push(path);
                    }
                }
            }
        }
    }
    Ok(())
}

fn is_opaque(dir: &std::path::Path) -> bool {
    OPAQUE_XATTRS
        .iter()
        .any(|name| matches!(xattr::get(dir, name), Ok(Some(value)) if value.as_slice() == b"y"))
}
