//! The read-only image filesystem a `scanner-check` plugin sees.
//!
//! [`ImageFs`] is what the host calls when a plugin uses its `image-fs`
//! import; the scanner implements it over an image's merged layers.
//! [`DirImageFs`] implements it over one plain directory (an unpacked root
//! filesystem, test fixtures) and resolves every path strictly inside it.
//!
//! Paths are absolute image paths; a relative one is taken from `/`. Symbolic
//! links are resolved the way they would be inside the image: `..` stops at
//! the root, an absolute target starts again at the root. `stat` and
//! `read_link` do not follow a final link; `list_dir` and `read` do.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How many symbolic links one path may go through (Linux's `MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// What a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    /// Devices, sockets, FIFOs.
    Other,
}

/// The metadata of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStat {
    pub kind: FileKind,
    pub size: u64,
    /// Permission bits with setuid/setgid/sticky (`mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    /// The entry's name (not UTF-8 names are converted lossily).
    pub name: String,
    pub stat: FileStat,
}

/// Why a filesystem request failed; what the plugin is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    #[error("not found")]
    NotFound,
    #[error("not a directory")]
    NotADirectory,
    #[error("not a regular file")]
    NotAFile,
    #[error("not a symbolic link")]
    NotASymlink,
    #[error("too many symbolic links")]
    TooManyLinks,
    #[error("invalid path: {0}")]
    InvalidPath(String),
    #[error("{0}")]
    Io(String),
}

/// A read-only view of an image's filesystem.
pub trait ImageFs: Send + Sync {
    /// The entries of the directory at `path` (not `.`/`..`), sorted by name.
    fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>, FsError>;

    /// Up to `max_len` bytes of the regular file at `path` from `offset`;
    /// fewer at its end, none past it.
    fn read(&self, path: &str, offset: u64, max_len: u32) -> Result<Vec<u8>, FsError>;

    /// The metadata of `path`, not following a final symbolic link.
    fn stat(&self, path: &str) -> Result<FileStat, FsError>;

    /// The target of the symbolic link at `path`, as stored.
    fn read_link(&self, path: &str) -> Result<String, FsError>;
}

/// An image with nothing in it but an empty root directory; what a plugin
/// sees while it describes itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyImageFs;

impl ImageFs for EmptyImageFs {
    fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>, FsError> {
        match normalize_lexically(path)?.as_slice() {
            [] => Ok(Vec::new()),
            _ => Err(FsError::NotFound),
        }
    }

    fn read(&self, path: &str, _offset: u64, _max_len: u32) -> Result<Vec<u8>, FsError> {
        match normalize_lexically(path)?.as_slice() {
            [] => Err(FsError::NotAFile),
            _ => Err(FsError::NotFound),
        }
    }

    fn stat(&self, path: &str) -> Result<FileStat, FsError> {
        match normalize_lexically(path)?.as_slice() {
            [] => Ok(FileStat {
                kind: FileKind::Dir,
                size: 0,
                mode: 0o755,
                uid: 0,
                gid: 0,
            }),
            _ => Err(FsError::NotFound),
        }
    }

    fn read_link(&self, path: &str) -> Result<String, FsError> {
        match normalize_lexically(path)?.as_slice() {
            [] => Err(FsError::NotASymlink),
            _ => Err(FsError::NotFound),
        }
    }
}

/// An image filesystem rooted at a directory of the host. No request leaves
/// the directory: every path component is checked and every symbolic link
/// resolved by this code, within the root, and files are opened with
/// `O_NOFOLLOW`. (The directory must not be changed by others while in use:
/// image snapshots are not.)
#[derive(Debug, Clone)]
pub struct DirImageFs {
    root: PathBuf,
}

impl DirImageFs {
    /// An image filesystem over `root`, which must be a directory.
    pub fn new(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        let meta = fs::metadata(&root)?;
        if !meta.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                format!("{} is not a directory", root.display()),
            ));
        }
        Ok(DirImageFs { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The host path `path` names inside the root, with every symbolic link
    /// along the way resolved inside the root; the final component too when
    /// `follow_final`. Fails if a component does not exist.
    fn resolve(&self, path: &str, follow_final: bool) -> Result<PathBuf, FsError> {
        let mut pending: VecDeque<OsString> = split(path)?.into_iter().collect();
        let mut resolved: Vec<OsString> = Vec::new();
        let mut links = 0;
        while let Some(component) = pending.pop_front() {
            if component == ".." {
                resolved.pop();
                continue;
            }
            let mut candidate = self.host_path(&resolved);
            candidate.push(&component);
            let meta = fs::symlink_metadata(&candidate).map_err(io_error)?;
            let is_last = pending.is_empty();
            if meta.file_type().is_symlink() && (!is_last || follow_final) {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(FsError::TooManyLinks);
                }
                let target = fs::read_link(&candidate).map_err(io_error)?;
                let target_bytes = target.as_os_str().as_bytes();
                if target_bytes.starts_with(b"/") {
                    resolved.clear();
                }
                for part in split_bytes(target_bytes).into_iter().rev() {
                    pending.push_front(part);
                }
                continue;
            }
            if !is_last && !meta.is_dir() {
                return Err(FsError::NotADirectory);
            }
            resolved.push(component);
        }
        Ok(self.host_path(&resolved))
    }

    fn host_path(&self, components: &[OsString]) -> PathBuf {
        let mut path = self.root.clone();
        path.extend(components);
        path
    }
}

impl ImageFs for DirImageFs {
    fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>, FsError> {
        let dir = self.resolve(path, true)?;
        let mut entries = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_error)? {
            let entry = entry.map_err(io_error)?;
            let meta = entry.metadata().map_err(io_error)?;
            entries.push(DirEntry {
                name: entry.file_name().to_string_lossy().into_owned(),
                stat: stat_of(&meta),
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    fn read(&self, path: &str, offset: u64, max_len: u32) -> Result<Vec<u8>, FsError> {
        let file_path = self.resolve(path, true)?;
        let mut file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&file_path)
            .map_err(io_error)?;
        // Checked on the open file, so a FIFO or device is never read.
        if !file.metadata().map_err(io_error)?.is_file() {
            return Err(FsError::NotAFile);
        }
        file.seek(SeekFrom::Start(offset)).map_err(io_error)?;
        let mut data = Vec::with_capacity(max_len.min(1 << 20) as usize);
        file.take(u64::from(max_len)).read_to_end(&mut data).map_err(io_error)?;
        Ok(data)
    }

    fn stat(&self, path: &str) -> Result<FileStat, FsError> {
        let target = self.resolve(path, false)?;
        let meta = fs::symlink_metadata(&target).map_err(io_error)?;
        Ok(stat_of(&meta))
    }

    fn read_link(&self, path: &str) -> Result<String, FsError> {
        let target = self.resolve(path, false)?;
        let meta = fs::symlink_metadata(&target).map_err(io_error)?;
        if !meta.file_type().is_symlink() {
            return Err(FsError::NotASymlink);
        }
        let link = fs::read_link(&target).map_err(io_error)?;
        Ok(link.to_string_lossy().into_owned())
    }
}

/// The [`FileStat`] of host metadata.
pub fn stat_of(meta: &fs::Metadata) -> FileStat {
    let file_type = meta.file_type();
    let kind = if file_type.is_symlink() {
        FileKind::Symlink
    } else if file_type.is_dir() {
        FileKind::Dir
    } else if file_type.is_file() {
        FileKind::File
    } else {
        FileKind::Other
    };
    FileStat {
        kind,
        size: meta.len(),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
    }
}

fn io_error(err: std::io::Error) -> FsError {
    match err.kind() {
        std::io::ErrorKind::NotFound => FsError::NotFound,
        std::io::ErrorKind::NotADirectory => FsError::NotADirectory,
        // ELOOP from O_NOFOLLOW: the final component turned into a link.
        _ if err.raw_os_error() == Some(libc::ELOOP) => FsError::TooManyLinks,
        _ => FsError::Io(err.kind().to_string()),
    }
}

/// The components of an image path, rejecting what no path may contain.
fn split(path: &str) -> Result<Vec<OsString>, FsError> {
    if path.is_empty() {
        return Err(FsError::InvalidPath("the path is empty".to_string()));
    }
    if path.contains('\0') {
        return Err(FsError::InvalidPath("the path contains a NUL byte".to_string()));
    }
    Ok(split_bytes(path.as_bytes()))
}

/// Path components without empty ones and `.`; `..` is kept for the caller.
fn split_bytes(path: &[u8]) -> Vec<OsString> {
    path.split(|&b| b == b'/')
        .filter(|part| !part.is_empty() && *part != b".")
        .map(|part| OsStr::from_bytes(part).to_os_string())
        .collect()
}

/// The components of `path` with `..` applied (clamped at the root).
fn normalize_lexically(path: &str) -> Result<Vec<OsString>, FsError> {
    let mut out = Vec::new();
    for part in split(path)? {
        if part == ".." {
            out.pop();
        } else {
            out.push(part);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::*;

    fn fixture() -> (tempfile::TempDir, DirImageFs) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("etc/ssl")).unwrap();
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::write(root.join("etc/hostname"), "box\n").unwrap();
        fs::write(root.join("usr/bin/tool"), "0123456789").unwrap();
        fs::set_permissions(root.join("usr/bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
        symlink("/usr/bin/tool", root.join("etc/abs-link")).unwrap();
        symlink("../usr/bin", root.join("etc/rel-dir-link")).unwrap();
        // Links that would leave the root if the OS resolved them.
        symlink("../../../../../../etc/passwd", root.join("etc/escape")).unwrap();
        symlink("/../../..", root.join("etc/up")).unwrap();
        symlink("loop-b", root.join("etc/loop-a")).unwrap();
        symlink("loop-a", root.join("etc/loop-b")).unwrap();
        // A file outside the root that escapes would find.
        fs::write(dir.path().join("outside"), "secret outside the root").unwrap();
        symlink("../outside", root.join("etc/sibling")).unwrap();
        let image = DirImageFs::new(&root).unwrap();
        (dir, image)
    }

    #[test]
    fn reads_files_and_follows_links_inside_the_root() {
        let (_dir, image) = fixture();
        assert_eq!(image.read("/etc/hostname", 0, 100).unwrap(), b"box\n");
        assert_eq!(image.read("etc/hostname", 1, 2).unwrap(), b"ox");
        assert_eq!(image.read("/etc/hostname", 10, 2).unwrap(), b"");
        assert_eq!(image.read("/etc/abs-link", 2, 3).unwrap(), b"234");
        assert_eq!(image.read("/etc/rel-dir-link/tool", 0, 4).unwrap(), b"0123");
        assert_eq!(image.read("/usr/../etc/./hostname", 0, 3).unwrap(), b"box");
    }

    #[test]
    fn links_and_dot_dots_never_leave_the_root() {
        let (_dir, image) = fixture();
        // `..` beyond the root stays at the root.
        let names: Vec<String> = image.list_dir("/etc/up").unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["etc", "usr"]);
        let names: Vec<String> = image
            .list_dir("/../../..")
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["etc", "usr"]);
        assert_eq!(image.read("/etc/escape", 0, 100), Err(FsError::NotFound));
        assert_eq!(image.read("/etc/sibling", 0, 100), Err(FsError::NotFound));
        assert_eq!(image.read("/../outside", 0, 100), Err(FsError::NotFound));
        assert_eq!(image.read("/etc/loop-a", 0, 100), Err(FsError::TooManyLinks));
    }

    #[test]
    fn stat_and_read_link_do_not_follow_the_final_link() {
        let (_dir, image) = fixture();
        let link = image.stat("/etc/abs-link").unwrap();
        assert_eq!(link.kind, FileKind::Symlink);
        assert_eq!(image.read_link("/etc/abs-link").unwrap(), "/usr/bin/tool");
        let tool = image.stat("/etc/rel-dir-link/tool").unwrap();
        assert_eq!((tool.kind, tool.mode, tool.size), (FileKind::File, 0o4755, 10));
        assert_eq!(image.read_link("/etc/hostname"), Err(FsError::NotASymlink));
        assert_eq!(image.stat("/etc/hostname/x"), Err(FsError::NotADirectory));
        assert_eq!(image.stat("/nope"), Err(FsError::NotFound));
    }

    #[test]
    fn list_dir_is_sorted_and_reports_links_as_links() {
        let (_dir, image) = fixture();
        let entries = image.list_dir("/etc").unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "abs-link",
                "escape",
                "hostname",
                "loop-a",
                "loop-b",
                "rel-dir-link",
                "sibling",
                "ssl",
                "up"
            ]
        );
        assert_eq!(entries[0].stat.kind, FileKind::Symlink);
        assert_eq!(entries[7].stat.kind, FileKind::Dir);
        assert_eq!(image.read("/etc", 0, 10), Err(FsError::NotAFile));
        assert_eq!(image.list_dir("/etc/hostname"), Err(FsError::NotADirectory));
    }

    #[test]
    fn bad_paths_are_refused() {
        let (_dir, image) = fixture();
        assert!(matches!(image.stat(""), Err(FsError::InvalidPath(_))));
        assert!(matches!(image.stat("/etc\0/x"), Err(FsError::InvalidPath(_))));
    }

    #[test]
    fn the_empty_image_has_only_a_root() {
        let image = EmptyImageFs;
        assert_eq!(image.list_dir("/").unwrap(), Vec::new());
        assert_eq!(image.stat("/..").unwrap().kind, FileKind::Dir);
        assert_eq!(image.read("/etc/passwd", 0, 1), Err(FsError::NotFound));
    }
}
