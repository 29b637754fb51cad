//! Image optimization analysis: wasted space, the efficiency score, the
//! paths that waste it, the largest files and the package-manager caches a
//! build left behind, each finding with a concrete suggestion.
//!
//! The headline numbers follow the definitions of the `dive` image explorer
//! exactly, so the two can be compared side by side:
//!
//! - Each layer is seen as the tree of entries it carries (a tar layer's
//!   headers). Only *leaves* of that tree are counted: files, symlinks,
//!   devices, whiteouts and empty directories. Sizes are tar header sizes:
//!   regular files count their length, everything else (directories,
//!   symlinks, the second and later names of a hard link) counts 0.
//! - Every time a path appears as a leaf in a layer it adds its size to that
//!   path's cumulative size and the smallest size seen is remembered. A
//!   whiteout adds 0 when it deletes a file, and when it deletes a directory
//!   it adds the size of everything below that directory in the image as
//!   stacked so far.
//! - A path seen in two or more layers is *inefficient*; the wasted bytes
//!   are the sum of the cumulative sizes of all inefficient paths (every
//!   copy, the final one included, and 0 for the whiteout itself).
//! - efficiency = Σ smallest size / Σ cumulative size over all paths
//!   (1 for an image with no bytes).
//! - user wasted percent = wasted bytes / the size of all layers but the
//!   first, × 100.
//!
//! Where berth differs: an opaque directory (`trusted.overlay.opaque=y`, or
//! `.wh..wh..opq` in a tar layer) is ignored by those numbers just as dive
//! ignores it, and the lower files it hides are reported on their own in
//! [`Optimization::opaque_hidden`]; a whiteout of a path that does not exist
//! below it counts 0 (dive stops counting that layer).
//!
//! **Architecture Invariant:** one directory walk per layer, sizes from
//! metadata only: no file is ever opened or read.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::types::Layer;

/// How many of the largest files [`analyze`] lists.
pub const DEFAULT_LARGEST_FILES: usize = 20;

/// The overlayfs xattrs that mark a directory opaque (privileged and
/// user-namespace mounts).
const OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];
const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

#[derive(Debug, thiserror::Error)]
pub enum OptimizeError {
    #[error("reading {path} of layer {layer}: {source}")]
    Read {
        layer: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("layer {layer}: snapshot dir {path} is not a directory")]
    NotADirectory { layer: String, path: PathBuf },
}

pub type Result<T, E = OptimizeError> = std::result::Result<T, E>;

/// What [`analyze_with`] should list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalyzeOptions {
    /// How many of the largest files to list.
    pub largest_files: usize,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        AnalyzeOptions {
            largest_files: DEFAULT_LARGEST_FILES,
        }
    }
}

/// The result of [`analyze`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Optimization {
    /// dive's efficiency score, 0..=1 (1 = nothing wasted).
    pub efficiency: f64,
    /// Bytes in paths that more than one layer touches (dive's rule, see the
    /// module docs).
    pub wasted_bytes: u64,
    /// Wasted bytes as a percentage of the bytes above the base layer;
    /// `None` when the layers above the base carry no bytes at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_wasted_percent: Option<f64>,
    /// Content bytes of all layers.
    pub total_bytes: u64,
    /// Content bytes of all layers but the first.
    pub user_bytes: u64,
    pub layer_count: usize,
    pub layers: Vec<LayerSummary>,
    /// Sorted by cumulative size, largest first, then by path.
    pub inefficient_paths: Vec<InefficientPath>,
    /// The largest files of the final image, largest first, then by path.
    pub largest_files: Vec<LargeFile>,
    /// Package-manager caches present in the final image, largest first.
    pub caches: Vec<CacheFinding>,
    /// Opaque directories that hide bytes of lower layers, largest first.
    pub opaque_hidden: Vec<OpaqueHidden>,
}

impl Optimization {
    /// Keeps only the first `limit` inefficient paths, largest files and
    /// opaque directories (the lists are sorted largest first), for reports
    /// that should stay small; the totals still cover everything.
    pub fn keep_top(&mut self, limit: usize) {
        self.inefficient_paths.truncate(limit);
        self.largest_files.truncate(limit);
        self.opaque_hidden.truncate(limit);
    }
}

/// One layer's share of the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSummary {
    /// 0 is the base layer.
    pub index: usize,
    pub digest: String,
    /// Content bytes (the sum of the layer's regular file sizes, hard links
    /// counted once).
    pub size_bytes: u64,
    /// The compressed size from the manifest, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compressed_bytes: Option<u64>,
    /// Regular files the layer adds or changes.
    pub files: u64,
    /// Paths the layer deletes.
    pub whiteouts: u64,
}

/// A path that more than one layer adds, changes or removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InefficientPath {
    pub path: String,
    /// How many layers touch it (dive's "count").
    pub count: usize,
    /// The bytes of every copy (dive's "wasted space" for the path).
    pub cumulative_bytes: u64,
    /// The layers that touch it, bottom first.
    pub layers: Vec<usize>,
    /// The last layer that touches it deletes it.
    pub removed: bool,
    pub suggestion: String,
}

/// One file of the final image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LargeFile {
    pub path: String,
    pub size_bytes: u64,
    /// The layer the final copy comes from.
    pub layer: usize,
}

/// A package manager whose cache can be left in an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheKind {
    /// `/var/lib/apt/lists/*` (other than `lock` and `partial/`).
    AptLists,
    /// `/var/cache/apt/*.bin` and downloaded `.deb` archives.
    AptArchives,
    /// `/var/cache/apk`.
    Apk,
    /// `/var/cache/dnf`, `/var/cache/yum`.
    Dnf,
    /// `~/.cache/pip`.
    Pip,
    /// `~/.npm/_cacache`.
    Npm,
    /// `~/.cache/yarn`, `/usr/local/share/.cache/yarn`, `~/.yarn/berry/cache`.
    Yarn,
    /// `~/.cache/go-build`.
    GoBuild,
    /// `$GOPATH/pkg/mod/cache/download`.
    GoModules,
}

impl CacheKind {
    fn suggestion(self, root: &str) -> String {
        match self {
            CacheKind::AptLists => format!(
                "remove {root} in the same RUN that installs packages: \
                 `apt-get update && apt-get install -y ... && rm -rf /var/lib/apt/lists/*`"
            ),
            CacheKind::AptArchives => format!(
                "run `apt-get clean` in the same RUN as `apt-get install` so {root} is empty when the layer \
                 is written, or use a cache mount: `RUN --mount=type=cache,target=/var/cache/apt ...`"
            ),
            CacheKind::Apk => format!("use `apk add --no-cache ...` instead of `apk update && apk add ...` ({root})"),
            CacheKind::Dnf => {
                format!("run `dnf clean all` (or `yum clean all`) in the same RUN that installs packages ({root})")
            }
            CacheKind::Pip => {
                format!("use `pip install --no-cache-dir ...` (or set `PIP_NO_CACHE_DIR=1`) so {root} is not written")
            }
            CacheKind::Npm => format!(
                "run `npm cache clean --force` in the same RUN as `npm ci`/`npm install`, or use a cache mount \
                 `RUN --mount=type=cache,target={root} ...`"
            ),
            CacheKind::Yarn => {
                format!("run `yarn cache clean` in the same RUN as `yarn install`, or use a cache mount for {root}")
            }
            CacheKind::GoBuild | CacheKind::GoModules => format!(
                "use a multi-stage build: compile in a builder stage and COPY only the binary into the final \
                 image, so {root} stays behind in the builder"
            ),
        }
    }
}

/// A package-manager cache present in the final image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheFinding {
    pub kind: CacheKind,
    /// The cache's directory (`/var/lib/apt/lists`, `/root/.cache/pip`).
    pub path: String,
    pub size_bytes: u64,
    pub files: u64,
    /// The layers that wrote its files, bottom first.
    pub layers: Vec<usize>,
    pub suggestion: String,
}

/// An opaque directory that hides lower layers' files: those bytes are
/// still shipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpaqueHidden {
    pub path: String,
    /// The layer whose opaque directory hides them.
    pub layer: usize,
    pub hidden_bytes: u64,
    pub hidden_files: u64,
    pub suggestion: String,
}

/// Analyzes the layers (bottom first) with the default options.
pub fn analyze(layers: &[Layer]) -> Result<Optimization> {
    analyze_with(layers, &AnalyzeOptions::default())
}

/// Analyzes the layers (bottom first).
pub fn analyze_with(layers: &[Layer], options: &AnalyzeOptions) -> Result<Optimization> {
    let mut stacked: BTreeMap<String, StackedEntry> = BTreeMap::new();
    let mut paths: HashMap<String, PathStats> = HashMap::new();
    let mut summaries = Vec::with_capacity(layers.len());
    let mut opaque_hidden = Vec::new();

    for (index, layer) in layers.iter().enumerate() {
        let entries = walk_layer(layer)?;
        let mut summary = LayerSummary {
            index,
            digest: layer.digest.clone(),
            size_bytes: 0,
            compressed_bytes: layer.size,
            files: 0,
            whiteouts: 0,
        };

        // Counted against the image as stacked *before* this layer.
        for entry in entries.iter().filter(|entry| entry.leaf) {
            let size = match entry.kind {
                EntryKind::Whiteout => whiteout_size(&stacked, &entry.path),
                _ => entry.size,
            };
            let stats = paths.entry(entry.path.clone()).or_default();
            stats.count += 1;
            stats.cumulative += size;
            stats.min = Some(stats.min.map_or(size, |min| min.min(size)));
            stats.layers.push(index);
            stats.removed = entry.kind == EntryKind::Whiteout;
        }

        let own_paths: HashSet<&str> = entries.iter().map(|entry| entry.path.as_str()).collect();
        for entry in entries.iter().filter(|entry| entry.opaque) {
            let (hidden_bytes, hidden_files) = hide_below(&mut stacked, &entry.path, &own_paths);
            if hidden_files > 0 || hidden_bytes > 0 {
                opaque_hidden.push(OpaqueHidden {
                    path: entry.path.clone(),
                    layer: index,
                    hidden_bytes,
                    hidden_files,
                    suggestion: format!(
                        "layer {index} replaces the whole of {} but the {hidden_files} files it hides are still \
                         shipped in lower layers: remove them in the layer that creates them, or build in an earlier \
                         stage of a multi-stage build and COPY only the result",
                        entry.path
                    ),
                });
            }
        }

        for entry in &entries {
            summary.size_bytes += entry.size;
            match entry.kind {
                EntryKind::Whiteout => {
                    summary.whiteouts += 1;
                    remove_subtree(&mut stacked, &entry.path);
                }
                kind => {
                    if kind == EntryKind::File {
                        summary.files += 1;
                    }
                    if kind != EntryKind::Dir {
                        remove_below(&mut stacked, &entry.path);
                    }
                    stacked.insert(
                        entry.path.clone(),
                        StackedEntry {
                            size: entry.size,
                            kind,
                            layer: index,
                            hidden: false,
                        },
                    );
                }
            }
        }
        summaries.push(summary);
    }

    let (mut minimum, mut discovered) = (0u64, 0u64);
    let mut inefficient_paths = Vec::new();
    for (path, stats) in paths {
        minimum += stats.min.unwrap_or(0);
        discovered += stats.cumulative;
        if stats.count >= 2 {
            let suggestion = inefficiency_suggestion(&path, &stats);
            inefficient_paths.push(InefficientPath {
                path,
                count: stats.count,
                cumulative_bytes: stats.cumulative,
                layers: stats.layers,
                removed: stats.removed,
                suggestion,
            });
        }
    }
    inefficient_paths.sort_by(|a, b| {
        b.cumulative_bytes
            .cmp(&a.cumulative_bytes)
            .then_with(|| a.path.cmp(&b.path))
    });
    let efficiency = if discovered == 0 {
        1.0
    } else {
        minimum as f64 / discovered as f64
    };
    let wasted_bytes = inefficient_paths.iter().map(|path| path.cumulative_bytes).sum();
    let total_bytes = summaries.iter().map(|layer| layer.size_bytes).sum();
    let user_bytes: u64 = summaries.iter().skip(1).map(|layer| layer.size_bytes).sum();
    let user_wasted_percent = (user_bytes > 0).then(|| wasted_bytes as f64 / user_bytes as f64 * 100.0);

    let visible = || {
        stacked
            .iter()
            .filter(|(_, entry)| !entry.hidden && entry.kind == EntryKind::File)
    };
    let mut largest_files: Vec<LargeFile> = visible()
        .map(|(path, entry)| LargeFile {
            path: path.clone(),
            size_bytes: entry.size,
            layer: entry.layer,
        })
        .collect();
    largest_files.sort_by(|a, b| b.size_bytes.cmp(&a.size_bytes).then_with(|| a.path.cmp(&b.path)));
    largest_files.truncate(options.largest_files);

    let mut caches: BTreeMap<(CacheKind, String), (u64, u64, BTreeSet<usize>)> = BTreeMap::new();
    for (path, entry) in visible() {
        if let Some((kind, root)) = classify_cache(path) {
            let (bytes, files, layers) = caches.entry((kind, root)).or_default();
            *bytes += entry.size;
            *files += 1;
            layers.insert(entry.layer);
        }
    }
    let mut caches: Vec<CacheFinding> = caches
        .into_iter()
        .map(|((kind, path), (size_bytes, files, layers))| CacheFinding {
            kind,
            suggestion: kind.suggestion(&path),
            path,
            size_bytes,
            files,
            layers: layers.into_iter().collect(),
        })
        .collect();
    caches.sort_by(|a, b| b.size_bytes.cmp(&a.size_bytes).then_with(|| a.path.cmp(&b.path)));
    opaque_hidden.sort_by(|a, b| b.hidden_bytes.cmp(&a.hidden_bytes).then_with(|| a.path.cmp(&b.path)));

    Ok(Optimization {
        efficiency,
        wasted_bytes,
        user_wasted_percent,
        total_bytes,
        user_bytes,
        layer_count: layers.len(),
        layers: summaries,
        inefficient_paths,
        largest_files,
        caches,
        opaque_hidden,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryKind {
    File,
    Dir,
    /// Symlinks, devices, fifos, sockets: size 0.
    Other,
    Whiteout,
}

/// One entry of a layer's own tree.
#[derive(Debug)]
struct LayerEntry {
    /// Absolute, `/`-separated.
    path: String,
    kind: EntryKind,
    /// Tar header size: file length for regular files (0 for a second name
    /// of a hard link), else 0.
    size: u64,
    /// No children in this layer (dive counts only leaves).
    leaf: bool,
    opaque: bool,
}

#[derive(Debug, Clone, Copy)]
struct StackedEntry {
    size: u64,
    kind: EntryKind,
    layer: usize,
    /// Hidden by an opaque directory above it: invisible in the final image
    /// but, as for dive, still part of the stacked tree whiteouts measure.
    hidden: bool,
}

#[derive(Debug, Default)]
struct PathStats {
    count: usize,
    cumulative: u64,
    min: Option<u64>,
    layers: Vec<usize>,
    removed: bool,
}

fn inefficiency_suggestion(path: &str, stats: &PathStats) -> String {
    let layers = stats.layers.iter().map(usize::to_string).collect::<Vec<_>>().join(", ");
    if stats.removed {
        let last = stats.layers.last().copied().unwrap_or_default();
        format!(
            "{path} is deleted in layer {last} but its bytes stay in the layers below (layers {layers}): create and \
             delete it in the same RUN, or build it in an earlier stage of a multi-stage build and COPY only what \
             the final image needs"
        )
    } else {
        format!(
            "{path} is written by {} layers ({layers}): combine the RUN steps that modify it into one, or write it \
             once in its final form",
            stats.count
        )
    }
}

/// The bytes a whiteout at `path` deletes, as dive counts them: everything
/// below a directory (hidden-by-opaque entries included), 0 for a file.
fn whiteout_size(stacked: &BTreeMap<String, StackedEntry>, path: &str) -> u64 {
    match stacked.get(path) {
        Some(entry) if entry.kind == EntryKind::Dir => {
            entry.size + descendants(stacked, path).map(|(_, entry)| entry.size).sum::<u64>()
        }
        _ => 0,
    }
}

fn descendants<'a>(
    stacked: &'a BTreeMap<String, StackedEntry>,
    path: &str,
) -> impl Iterator<Item = (&'a String, &'a StackedEntry)> {
    let (start, end) = descendant_bounds(path);
    stacked.range(start..end)
}

/// Keys strictly below `path` sort in `[path + "/", path + "0")` since `'0'`
/// follows `'/'`.
fn descendant_bounds(path: &str) -> (String, String) {
    let base = path.trim_end_matches('/');
    (format!("{base}/"), format!("{base}0"))
}

fn remove_below(stacked: &mut BTreeMap<String, StackedEntry>, path: &str) {
    let keys: Vec<String> = descendants(stacked, path).map(|(key, _)| key.clone()).collect();
    for key in keys {
        stacked.remove(&key);
    }
}

fn remove_subtree(stacked: &mut BTreeMap<String, StackedEntry>, path: &str) {
    remove_below(stacked, path);
    stacked.remove(path);
}

/// Marks what an opaque directory at `path` hides (lower entries the layer
/// does not carry itself); returns their file bytes and file count.
fn hide_below(stacked: &mut BTreeMap<String, StackedEntry>, path: &str, own: &HashSet<&str>) -> (u64, u64) {
    let (start, end) = descendant_bounds(path);
    let (mut bytes, mut files) = (0, 0);
    for (key, entry) in stacked.range_mut(start..end) {
        if entry.hidden || own.contains(key.as_str()) {
            continue;
        }
        entry.hidden = true;
        if entry.kind == EntryKind::File {
            bytes += entry.size;
            files += 1;
        }
    }
    (bytes, files)
}

/// Walks a layer's snapshot directory once, in name order.
fn walk_layer(layer: &Layer) -> Result<Vec<LayerEntry>> {
    let meta = fs::symlink_metadata(&layer.dir).map_err(|source| read_error(layer, &layer.dir, source))?;
    if !meta.is_dir() {
        return Err(OptimizeError::NotADirectory {
            layer: layer.digest.clone(),
            path: layer.dir.clone(),
        });
    }
    let mut walk = Walk {
        layer,
        entries: Vec::new(),
        seen_inodes: HashSet::new(),
    };
    walk.dir(&layer.dir, "")?;
    Ok(walk.entries)
}

fn read_error(layer: &Layer, path: &Path, source: io::Error) -> OptimizeError {
    OptimizeError::Read {
        layer: layer.digest.clone(),
        path: path.to_path_buf(),
        source,
    }
}

struct Walk<'a> {
    layer: &'a Layer,
    entries: Vec<LayerEntry>,
    /// (dev, ino) of multiply-linked files already counted: a tar layer
    /// carries the later names as size-0 hard-link entries.
    seen_inodes: HashSet<(u64, u64)>,
}

impl Walk<'_> {
    /// Adds the entries below `host_dir`; returns whether it has any (an
    /// opaque marker does not count) and whether it carries an opaque marker.
    fn dir(&mut self, host_dir: &Path, image_dir: &str) -> Result<(bool, bool)> {
        let mut children = Vec::new();
        for child in fs::read_dir(host_dir).map_err(|source| read_error(self.layer, host_dir, source))? {
            children.push(child.map_err(|source| read_error(self.layer, host_dir, source))?);
        }
        children.sort_by_key(|child| child.file_name());
        let (mut has_children, mut opaque_marker) = (false, false);
        for child in children {
            let name = child.file_name().to_string_lossy().into_owned();
            if name == OPAQUE_MARKER {
                opaque_marker = true;
                continue;
            }
            has_children = true;
            let host_path = child.path();
            let meta = child
                .metadata()
                .map_err(|source| read_error(self.layer, &host_path, source))?;
            let file_type = meta.file_type();
            let (image_path, kind) = if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) {
                (format!("{image_dir}/{target}"), EntryKind::Whiteout)
            } else if file_type.is_char_device() && meta.rdev() == 0 {
                (format!("{image_dir}/{name}"), EntryKind::Whiteout)
            } else if file_type.is_dir() {
                (format!("{image_dir}/{name}"), EntryKind::Dir)
            } else if file_type.is_file() {
                (format!("{image_dir}/{name}"), EntryKind::File)
            } else {
                (format!("{image_dir}/{name}"), EntryKind::Other)
            };
            let first_name = meta.nlink() < 2 || self.seen_inodes.insert((meta.dev(), meta.ino()));
            let size = if kind == EntryKind::File && first_name {
                meta.len()
            } else {
                0
            };
            let index = self.entries.len();
            self.entries.push(LayerEntry {
                path: image_path,
                kind,
                size,
                leaf: true,
                opaque: false,
            });
            if kind == EntryKind::Dir {
                let image_path = self.entries[index].path.clone();
                let (dir_has_children, marker) = self.dir(&host_path, &image_path)?;
                let opaque =
                    marker || has_opaque_xattr(&host_path).map_err(|e| read_error(self.layer, &host_path, e))?;
                let entry = &mut self.entries[index];
                entry.leaf = !dir_has_children;
                entry.opaque = opaque;
            }
        }
        Ok((has_children, opaque_marker))
    }
}

fn has_opaque_xattr(dir: &Path) -> io::Result<bool> {
    for name in OPAQUE_XATTRS {
        match xattr::get(dir, name) {
            Ok(Some(value)) if value == b"y" => return Ok(true),
            Ok(_) => {}
            // A filesystem without xattrs has no opaque directories.
            Err(err) if err.raw_os_error() == Some(libc::ENOTSUP) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(false)
}

/// The package-manager cache a final-image file belongs to, with the cache
/// directory it is reported under.
fn classify_cache(path: &str) -> Option<(CacheKind, String)> {
    if let Some(rest) = path.strip_prefix("/var/lib/apt/lists/") {
        let first = rest.split('/').next().unwrap_or_default();
        return (first != "lock" && first != "partial").then(|| (CacheKind::AptLists, "/var/lib/apt/lists".into()));
    }
    if let Some(rest) = path.strip_prefix("/var/cache/apt/") {
        let is_bin = !rest.contains('/') && rest.ends_with(".bin");
        let is_archive = rest.starts_with("archives/") && rest.ends_with(".deb");
        return (is_bin || is_archive).then(|| (CacheKind::AptArchives, "/var/cache/apt".into()));
    }
    for (prefix, kind) in [
        ("/var/cache/apk/", CacheKind::Apk),
        ("/var/cache/dnf/", CacheKind::Dnf),
        ("/var/cache/yum/", CacheKind::Dnf),
        ("/usr/local/share/.cache/yarn/", CacheKind::Yarn),
        ("/go/pkg/mod/cache/download/", CacheKind::GoModules),
    ] {
        if path.starts_with(prefix) {
            return Some((kind, prefix.trim_end_matches('/').into()));
        }
    }
    let (home, rest) = split_home(path)?;
    for (prefix, kind) in [
        (".cache/pip/", CacheKind::Pip),
        (".npm/_cacache/", CacheKind::Npm),
        (".cache/yarn/", CacheKind::Yarn),
        (".yarn/berry/cache/", CacheKind::Yarn),
        (".cache/go-build/", CacheKind::GoBuild),
        ("go/pkg/mod/cache/download/", CacheKind::GoModules),
    ] {
        if rest.starts_with(prefix) {
            return Some((kind, format!("{home}/{}", prefix.trim_end_matches('/'))));
        }
    }
    None
}

/// Splits `/root/x` and `/home/<user>/x` into the home directory and `x`.
fn split_home(path: &str) -> Option<(&str, &str)> {
    if let Some(rest) = path.strip_prefix("/root/") {
        return Some(("/root", rest));
    }
    let rest = path.strip_prefix("/home/")?;
    let user_len = rest.find('/')?;
    let home_len = "/home/".len() + user_len;
    Some((&path[..home_len], &path[home_len + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caches_are_classified_by_directory() {
        let cases = [
            (
                "/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease",
                Some("/var/lib/apt/lists"),
            ),
            ("/var/lib/apt/lists/lock", None),
            ("/var/lib/apt/lists/partial/x", None),
            ("/var/cache/apt/pkgcache.bin", Some("/var/cache/apt")),
            ("/var/cache/apt/archives/curl_7.88_amd64.deb", Some("/var/cache/apt")),
            ("/var/cache/apt/archives/lock", None),
            ("/var/cache/apk/APKINDEX.1.tar.gz", Some("/var/cache/apk")),
            ("/root/.cache/pip/http/a/b", Some("/root/.cache/pip")),
            ("/home/app/.cache/pip/wheels/x.whl", Some("/home/app/.cache/pip")),
            (
                "/home/app/.npm/_cacache/content-v2/sha512/ab",
                Some("/home/app/.npm/_cacache"),
            ),
            (
                "/usr/local/share/.cache/yarn/v6/x",
                Some("/usr/local/share/.cache/yarn"),
            ),
            ("/root/.cache/go-build/00/abc-d", Some("/root/.cache/go-build")),
            (
                "/go/pkg/mod/cache/download/golang.org/x/@v/list",
                Some("/go/pkg/mod/cache/download"),
            ),
            ("/usr/lib/python3/__pycache__/x.pyc", None),
            ("/home/app", None),
        ];
        for (path, want) in cases {
            assert_eq!(
                classify_cache(path).map(|(_, root)| root),
                want.map(String::from),
                "{path}"
            );
        }
    }

    #[test]
    fn descendant_bounds_cover_exactly_the_subtree() {
        let mut map = BTreeMap::new();
        for path in ["/a", "/a/b", "/a/b/c", "/a-b", "/a.b", "/a0", "/ab"] {
            map.insert(
                path.to_string(),
                StackedEntry {
                    size: 1,
                    kind: EntryKind::File,
                    layer: 0,
                    hidden: false,
                },
            );
        }
        let below: Vec<&String> = descendants(&map, "/a").map(|(key, _)| key).collect();
        assert_eq!(below, ["/a/b", "/a/b/c"]);
    }
}
