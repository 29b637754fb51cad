//! Unpacking one layer tarball into its own directory, in the form overlayfs
//! wants for a lower dir: OCI whiteouts (`.wh.NAME`) become 0/0 character
//! devices, opaque markers (`.wh..wh..opq`) become the `trusted.overlay.opaque`
//! xattr, and ownership is optionally shifted into a user namespace's range.
//!
//! **Invariant:** nothing is ever created or changed outside `root`. Entry
//! paths are normalised and refused if they are absolute or use `..`; every
//! parent directory is checked with `lstat` and refused if it is a symlink;
//! the final component is created with calls that never follow symlinks.
//! `root` must be a fresh directory that only this unpack writes to.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{makedev, mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;

use crate::IdShift;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Why an entry could not be unpacked; `entry` is its path in the tarball.
#[derive(Debug)]
pub(crate) struct UnpackError {
    pub entry: String,
    pub message: String,
}

/// Unpacks the (already decompressed) layer tarball `layer` into `root`.
pub(crate) fn unpack_layer(layer: &mut dyn Read, root: &Path, shift: Option<IdShift>) -> Result<(), UnpackError> {
    let whole = |message: String| UnpackError {
        entry: String::new(),
        message,
    };
    let (root_uid, root_gid) = map_ids(0, 0, shift).map_err(whole)?;
    std::os::unix::fs::lchown(root, Some(root_uid), Some(root_gid))
        .map_err(|e| whole(format!("chown of the layer root: {e}")))?;

    let mut archive = tar::Archive::new(layer);
    let mut dir_times = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| whole(format!("reading layer tarball: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| whole(format!("reading layer tarball: {e}")))?;
        let raw_path = entry
            .path()
            .map_err(|e| whole(format!("reading entry path: {e}")))?
            .into_owned();
        unpack_entry(&mut entry, &raw_path, root, shift, &mut dir_times).map_err(|message| UnpackError {
            entry: raw_path.display().to_string(),
            message,
        })?;
    }
    // Directory mtimes last: adding children changes them.
    for (dir, mtime) in dir_times.iter().rev() {
        set_mtime(dir, *mtime).map_err(|message| UnpackError {
            entry: dir.display().to_string(),
            message,
        })?;
    }
    Ok(())
}

fn unpack_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    raw_path: &Path,
    root: &Path,
    shift: Option<IdShift>,
    dir_times: &mut Vec<(PathBuf, i64)>,
) -> Result<(), String> {
    let header = entry.header();
    let kind = header.entry_type();
    if kind.is_pax_global_extensions() {
        return Ok(());
    }
    let rel = normalize(raw_path)?;
    let uid = header.uid().map_err(|e| format!("bad uid: {e}"))?;
    let gid = header.gid().map_err(|e| format!("bad gid: {e}"))?;
    let mode = header.mode().map_err(|e| format!("bad mode: {e}"))? & 0o7777;
    let mtime = i64::try_from(header.mtime().map_err(|e| format!("bad mtime: {e}"))?).unwrap_or(i64::MAX);
    // Only device entries carry meaningful numbers; other writers leave the fields blank.
    let device = if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
        (
            header
                .device_major()
                .map_err(|e| format!("bad device major: {e}"))?
                .unwrap_or(0),
            header
                .device_minor()
                .map_err(|e| format!("bad device minor: {e}"))?
                .unwrap_or(0),
        )
    } else {
        (0, 0)
    };
    let link_name = header
        .link_name()
        .map_err(|e| format!("bad link name: {e}"))?
        .map(|l| l.into_owned());
    let (host_uid, host_gid) = map_ids(uid, gid, shift)?;

    let file_name = rel.file_name().map(OsStr::as_bytes).unwrap_or_default();
    if let Some(hidden) = file_name.strip_prefix(WHITEOUT_PREFIX) {
        let parent = prepare_parent(root, &rel, shift)?;
        if file_name == OPAQUE_MARKER {
            return set_xattr(&parent, OsStr::new(OPAQUE_XATTR), b"y", false);
        }
        if hidden.starts_with(WHITEOUT_PREFIX) {
            // Other `.wh..wh.` names are aufs bookkeeping with no meaning here.
            tracing::debug!(entry = %raw_path.display(), "skipping aufs metadata entry");
            return Ok(());
        }
        // `.wh..` would name the parent of the parent: outside the layer at its root.
        if matches!(hidden, b"" | b"." | b"..") {
            return Err("invalid whiteout name".into());
        }
        let target = parent.join(OsStr::from_bytes(hidden));
        crate::fsutil::remove_any(&target).map_err(|e| e.to_string())?;
        mknod(&target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
            .map_err(|e| format!("creating whiteout device {}: {e}", target.display()))?;
        return lchown(&target, host_uid, host_gid);
    }

    let xattrs = entry_xattrs(entry)?;
    if rel.as_os_str().is_empty() {
        // The layer root itself (`./`): only its metadata matters.
        if kind.is_dir() {
            apply_metadata(root, host_uid, host_gid, Some(mode), &xattrs)?;
            dir_times.push((root.to_path_buf(), mtime));
        }
        return Ok(());
    }

    let parent = prepare_parent(root, &rel, shift)?;
    let path = parent.join(rel.file_name().unwrap_or_default());
    match fs::symlink_metadata(&path) {
        Ok(existing) if existing.is_dir() && kind.is_dir() => {}
        Ok(_) => crate::fsutil::remove_any(&path).map_err(|e| e.to_string())?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("reading metadata of {}: {e}", path.display())),
    }

    let mut is_symlink = false;
    match kind {
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            let mut file = File::options()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(|e| format!("creating {}: {e}", path.display()))?;
            io::copy(entry, &mut file).map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        tar::EntryType::Directory => {
            if !path.is_dir() {
                fs::create_dir(&path).map_err(|e| format!("creating directory {}: {e}", path.display()))?;
            }
        }
        tar::EntryType::Symlink => {
            let target = link_name.ok_or("symlink without a target")?;
            std::os::unix::fs::symlink(&target, &path)
                .map_err(|e| format!("creating symlink {}: {e}", path.display()))?;
            is_symlink = true;
        }
        tar::EntryType::Link => {
            let target = link_name.ok_or("hard link without a target")?;
            let target_rel = normalize(&target).map_err(|e| format!("hard link target {}: {e}", target.display()))?;
            let target_parent = existing_parent(root, &target_rel)?;
            let target_path = target_parent.join(target_rel.file_name().unwrap_or_default());
            match fs::symlink_metadata(&target_path) {
                Ok(m) if !m.is_dir() => {}
                Ok(_) => return Err(format!("hard link target {} is a directory", target.display())),
                Err(_) => return Err(format!("hard link target {} is not in this layer", target.display())),
            }
            // Same inode as the target: its metadata was set by the target's entry.
            return fs::hard_link(&target_path, &path)
                .map_err(|e| format!("creating hard link {}: {e}", path.display()));
        }
        tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
            let file_type = match kind {
                tar::EntryType::Char => SFlag::S_IFCHR,
                tar::EntryType::Block => SFlag::S_IFBLK,
                _ => SFlag::S_IFIFO,
            };
            mknod(
                &path,
                file_type,
                Mode::empty(),
                makedev(device.0.into(), device.1.into()),
            )
            .map_err(|e| format!("creating device node {}: {e}", path.display()))?;
        }
        other => {
            tracing::debug!(entry = %raw_path.display(), kind = ?other, "skipping tar entry of unsupported type");
            return Ok(());
        }
    }
    apply_metadata(&path, host_uid, host_gid, (!is_symlink).then_some(mode), &xattrs)?;
    if kind.is_dir() {
        dir_times.push((path, mtime));
        Ok(())
    } else {
        set_mtime(&path, mtime)
    }
}

/// Ownership, then mode (chown clears setuid/setgid, so the mode comes after),
/// then xattrs (chown clears `security.capability` too).
fn apply_metadata(
    path: &Path,
    uid: u32,
    gid: u32,
    mode: Option<u32>,
    xattrs: &[(OsString, Vec<u8>)],
) -> Result<(), String> {
    lchown(path, uid, gid)?;
    if let Some(mode) = mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| format!("chmod {}: {e}", path.display()))?;
    }
    for (name, value) in xattrs {
        set_xattr(path, name, value, mode.is_none())?;
    }
    Ok(())
}

/// The entry's path relative to the layer root, refusing anything that could
/// point outside it.
fn normalize(raw: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Err("absolute path escapes the layer".into()),
            Component::ParentDir => return Err("path with '..' escapes the layer".into()),
        }
    }
    Ok(out)
}

/// Makes every parent directory of `rel` exist under `root` (missing ones are
/// created root-owned, 0755) and returns the absolute parent path. Refuses a
/// parent that is a symlink or not a directory.
fn prepare_parent(root: &Path, rel: &Path, shift: Option<IdShift>) -> Result<PathBuf, String> {
    walk_parents(root, rel, Some(shift))
}

/// Like [`prepare_parent`] but creates nothing: every parent must exist.
fn existing_parent(root: &Path, rel: &Path) -> Result<PathBuf, String> {
    walk_parents(root, rel, None)
}

fn walk_parents(root: &Path, rel: &Path, create: Option<Option<IdShift>>) -> Result<PathBuf, String> {
    let mut current = root.to_path_buf();
    let mut shown = PathBuf::new();
    for component in rel.parent().into_iter().flat_map(Path::components) {
        current.push(component);
        shown.push(component);
        match fs::symlink_metadata(&current) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!("path goes through symlink {}", shown.display()));
            }
            Ok(_) => return Err(format!("parent {} is not a directory", shown.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let Some(shift) = create else {
                    return Err(format!("parent {} is not in this layer", shown.display()));
                };
                fs::create_dir(&current).map_err(|e| format!("creating directory {}: {e}", shown.display()))?;
                let (uid, gid) = map_ids(0, 0, shift)?;
                apply_metadata(&current, uid, gid, Some(0o755), &[])?;
            }
            Err(e) => return Err(format!("reading metadata of {}: {e}", shown.display())),
        }
    }
    Ok(current)
}

/// Host ids for ids in the layer.
fn map_ids(uid: u64, gid: u64, shift: Option<IdShift>) -> Result<(u32, u32), String> {
    let Some(shift) = shift else {
        let uid = u32::try_from(uid).map_err(|_| format!("uid {uid} is too large"))?;
        let gid = u32::try_from(gid).map_err(|_| format!("gid {gid} is too large"))?;
        return Ok((uid, gid));
    };
    let map = |id: u64, base: u32, what: &str| {
        if id >= u64::from(shift.size) {
            return Err(format!(
                "{what} {id} is outside the {} ids mapped into the user namespace",
                shift.size
            ));
        }
        u32::try_from(u64::from(base) + id).map_err(|_| format!("{what} {id} shifted by {base} overflows"))
    };
    Ok((map(uid, shift.uid_base, "uid")?, map(gid, shift.gid_base, "gid")?))
}

fn lchown(path: &Path, uid: u32, gid: u32) -> Result<(), String> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(|e| format!("chown {}: {e}", path.display()))
}

fn set_mtime(path: &Path, mtime: i64) -> Result<(), String> {
    let time = TimeSpec::new(mtime, 0);
    utimensat(None, path, &time, &time, UtimensatFlags::NoFollowSymlink)
        .map_err(|e| format!("setting mtime of {}: {e}", path.display()))
}

/// Sets an xattr without following symlinks. Filesystems without xattrs (and
/// user xattrs on symlinks, which Linux refuses) are skipped, not failed.
fn set_xattr(path: &Path, name: &OsStr, value: &[u8], is_symlink: bool) -> Result<(), String> {
    match xattr::set(path, name, value) {
        Ok(()) => Ok(()),
        Err(e)
            if e.raw_os_error() == Some(libc::EOPNOTSUPP) || (is_symlink && e.raw_os_error() == Some(libc::EPERM)) =>
        {
            tracing::debug!(path = %path.display(), xattr = ?name, error = %e, "xattr not supported, skipped");
            Ok(())
        }
        Err(e) => Err(format!(
            "setting xattr {} on {}: {e}",
            name.to_string_lossy(),
            path.display()
        )),
    }
}

/// The `SCHILY.xattr.*` PAX records of an entry. `trusted.overlay.*` is
/// dropped: only whiteouts may steer overlayfs, not a layer's own content.
fn entry_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Vec<(OsString, Vec<u8>)>, String> {
    let mut out = Vec::new();
    let Some(extensions) = entry
        .pax_extensions()
        .map_err(|e| format!("reading pax headers: {e}"))?
    else {
        return Ok(out);
    };
    for extension in extensions {
        let extension = extension.map_err(|e| format!("reading pax headers: {e}"))?;
        let Some(name) = extension.key_bytes().strip_prefix(b"SCHILY.xattr.") else {
            continue;
        };
        if name.starts_with(b"trusted.overlay.") {
            tracing::debug!(xattr = %String::from_utf8_lossy(name), "dropping overlayfs xattr from layer content");
            continue;
        }
        out.push((OsStr::from_bytes(name).to_owned(), extension.value_bytes().to_vec()));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    use super::*;

    /// A GNU header with every numeric field filled in.
    fn new_header(kind: tar::EntryType, mode: u32, (uid, gid): (u64, u64)) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(uid);
        header.set_gid(gid);
        header.set_mtime(1_000_000);
        header.set_size(0);
        header
    }

    /// `(path, kind, content or link target)`.
    type Row<'a> = (&'a str, tar::EntryType, &'a str);

    /// A layer tarball built from rows.
    fn layer(rows: &[Row<'_>]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, data) in rows {
            let mut header = new_header(
                *kind,
                if *kind == tar::EntryType::Directory {
                    0o755
                } else {
                    0o644
                },
                (0, 0),
            );
            match kind {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    header.set_size(0);
                    builder.append_link(&mut header, path, data).unwrap();
                }
                _ => {
                    header.set_size(data.len() as u64);
                    // `append_data` refuses `..`; write the raw name for hostile cases.
                    header.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
                    header.set_cksum();
                    builder.append(&header, data.as_bytes()).unwrap();
                }
            }
        }
        builder.into_inner().unwrap()
    }

    fn unpack(bytes: &[u8], shift: Option<IdShift>) -> (tempfile::TempDir, Result<(), String>) {
        let dir = tempfile::tempdir().unwrap();
        let result =
            unpack_layer(&mut &bytes[..], dir.path(), shift).map_err(|e| format!("{}: {}", e.entry, e.message));
        (dir, result)
    }

    use tar::EntryType::{Directory as D, Link as L, Regular as F, Symlink as S};

    #[test]
    fn refuses_escapes() {
        let cases: &[(&[Row<'_>], &str)] = &[
            (&[("../evil", F, "x")], "../evil: path with '..' escapes the layer"),
            (
                &[("a/../../evil", F, "x")],
                "a/../../evil: path with '..' escapes the layer",
            ),
            (&[("/etc/evil", F, "x")], "/etc/evil: absolute path escapes the layer"),
            (
                &[("link", S, "/etc"), ("link/evil", F, "x")],
                "link/evil: path goes through symlink link",
            ),
            (
                &[("up", S, ".."), ("up/x/evil", F, "x")],
                "up/x/evil: path goes through symlink up",
            ),
            (
                &[("hl", L, "../../etc/passwd")],
                "hl: hard link target ../../etc/passwd: path with '..' escapes the layer",
            ),
            (
                &[("link", S, "/etc"), ("hl", L, "link/passwd")],
                "hl: path goes through symlink link",
            ),
            (&[(".wh..", F, "")], ".wh..: invalid whiteout name"),
            (&[("etc/.wh.", F, "")], "etc/.wh.: invalid whiteout name"),
            (&[(".wh...", F, "")], ".wh...: invalid whiteout name"),
            (
                &[("hl", L, "missing")],
                "hl: hard link target missing is not in this layer",
            ),
            (
                &[("link", S, "/etc"), ("link/.wh.passwd", F, "")],
                "link/.wh.passwd: path goes through symlink link",
            ),
        ];
        for (rows, want) in cases {
            let (dir, result) = unpack(&layer(rows), None);
            assert_eq!(result.unwrap_err(), *want);
            // Nothing was written next to the layer dir, nor was it removed.
            assert!(!dir.path().parent().unwrap().join("evil").exists());
            assert!(dir.path().is_dir());
        }
    }

    #[test]
    fn files_links_and_whiteouts() {
        let bytes = layer(&[
            ("./", D, ""),
            ("./etc/", D, ""),
            ("./etc/hosts", F, "127.0.0.1 localhost\n"),
            ("./etc/hosts.link", L, "./etc/hosts"),
            ("./etc/sym", S, "hosts"),
            ("./etc/.wh.passwd", F, ""),
            ("./var/.wh..wh..opq", F, ""),
            ("./var/.wh..wh.plnk", D, ""),
        ]);
        let (dir, result) = unpack(&bytes, None);
        result.unwrap();
        let root = dir.path();
        assert_eq!(
            fs::read_to_string(root.join("etc/hosts")).unwrap(),
            "127.0.0.1 localhost\n"
        );
        let hosts = fs::metadata(root.join("etc/hosts")).unwrap();
        assert_eq!(hosts.ino(), fs::metadata(root.join("etc/hosts.link")).unwrap().ino());
        assert_eq!(hosts.mode() & 0o7777, 0o644);
        assert_eq!(hosts.mtime(), 1_000_000);
        assert_eq!(fs::metadata(root.join("etc")).unwrap().mtime(), 1_000_000);
        assert_eq!(fs::read_link(root.join("etc/sym")).unwrap(), Path::new("hosts"));
        let whiteout = fs::symlink_metadata(root.join("etc/passwd")).unwrap();
        assert!(whiteout.file_type().is_char_device());
        assert_eq!(whiteout.rdev(), 0);
        assert!(!root.join("etc/.wh.passwd").exists());
        assert_eq!(
            xattr::get(root.join("var"), OPAQUE_XATTR).unwrap().as_deref(),
            Some(&b"y"[..])
        );
        assert!(!root.join("var/.wh..wh.plnk").exists());
    }

    #[test]
    fn setuid_survives_chown_and_ids_shift() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = new_header(F, 0o4755, (0, 0));
        header.set_size(2);
        builder.append_data(&mut header, "bin/su", &b"#!"[..]).unwrap();
        let mut header = new_header(F, 0o644, (1000, 1001));
        builder.append_data(&mut header, "home/user/file", &b""[..]).unwrap();
        let bytes = builder.into_inner().unwrap();

        let shift = IdShift {
            uid_base: 100_000,
            gid_base: 200_000,
            size: 65_536,
        };
        let (dir, result) = unpack(&bytes, Some(shift));
        result.unwrap();
        let su = fs::metadata(dir.path().join("bin/su")).unwrap();
        assert_eq!((su.uid(), su.gid(), su.mode() & 0o7777), (100_000, 200_000, 0o4755));
        let file = fs::metadata(dir.path().join("home/user/file")).unwrap();
        assert_eq!((file.uid(), file.gid()), (101_000, 201_001));
        let implicit_parent = fs::metadata(dir.path().join("home")).unwrap();
        assert_eq!(
            (implicit_parent.uid(), implicit_parent.mode() & 0o7777),
            (100_000, 0o755)
        );
        let layer_root = fs::metadata(dir.path()).unwrap();
        assert_eq!(layer_root.uid(), 100_000);

        let small = IdShift {
            uid_base: 100_000,
            gid_base: 100_000,
            size: 1000,
        };
        let (_dir, result) = unpack(&bytes, Some(small));
        assert_eq!(
            result.unwrap_err(),
            "home/user/file: uid 1000 is outside the 1000 ids mapped into the user namespace"
        );
    }

    #[test]
    fn devices_fifos_and_xattrs() {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, major, minor) in [
            ("dev/null", tar::EntryType::Char, 1, 3),
            ("dev/loop0", tar::EntryType::Block, 7, 0),
            ("run/fifo", tar::EntryType::Fifo, 0, 0),
        ] {
            let mut header = new_header(kind, 0o666, (0, 0));
            header.set_device_major(major).unwrap();
            header.set_device_minor(minor).unwrap();
            builder.append_data(&mut header, path, &b""[..]).unwrap();
        }
        builder
            .append_pax_extensions([
                ("SCHILY.xattr.user.note", &b"hello"[..]),
                ("SCHILY.xattr.trusted.overlay.redirect", &b"/x"[..]),
            ])
            .unwrap();
        let mut header = new_header(F, 0o644, (0, 0));
        builder.append_data(&mut header, "file", &b""[..]).unwrap();
        let bytes = builder.into_inner().unwrap();

        let (dir, result) = unpack(&bytes, None);
        result.unwrap();
        let null = fs::symlink_metadata(dir.path().join("dev/null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!((null.rdev(), null.mode() & 0o7777), (makedev(1, 3), 0o666));
        assert!(fs::symlink_metadata(dir.path().join("dev/loop0"))
            .unwrap()
            .file_type()
            .is_block_device());
        assert!(fs::symlink_metadata(dir.path().join("run/fifo"))
            .unwrap()
            .file_type()
            .is_fifo());
        let file = dir.path().join("file");
        assert_eq!(xattr::get(&file, "user.note").unwrap().as_deref(), Some(&b"hello"[..]));
        assert_eq!(xattr::get(&file, "trusted.overlay.redirect").unwrap(), None);
    }

    #[test]
    fn later_entries_replace_earlier_ones() {
        let bytes = layer(&[
            ("a", F, "file"),
            ("a", D, ""),
            ("a/b", F, "x"),
            ("c", D, ""),
            ("c", S, "a"),
        ]);
        let (dir, result) = unpack(&bytes, None);
        result.unwrap();
        assert!(dir.path().join("a").is_dir());
        assert!(fs::symlink_metadata(dir.path().join("c"))
            .unwrap()
            .file_type()
            .is_symlink());
    }
}
