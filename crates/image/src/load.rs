//! Import of image archives: an OCI image layout (`oci-layout` + `index.json`,
//! nested and multi-platform indexes included) or a `docker save` archive
//! (`manifest.json`), each as plain tar or gzip/zstd compressed.
//!
//! A load goes in three steps, and only the last one touches shared state:
//! 1. every regular file of the archive is streamed once into a temp blob,
//!    hashed on the way (nothing is held in memory but small JSON documents);
//! 2. the images are planned from the archive's metadata and verified: every
//!    blob against the digest that names it, every layer's uncompressed
//!    stream against the config's diff id;
//! 3. under the content lock, the needed temp blobs are renamed into place and
//!    all records written in one transaction. If that fails, the blobs this
//!    load added are removed again. Unneeded temp blobs go when dropped.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Component, Path};
use std::str::FromStr;

use berth_model::{short_id, Image, ImageConfig, Progress};
use berth_store::IMAGES;
use oci_spec::image::{
    Descriptor, Digest, ImageConfiguration, ImageIndex, ImageManifest, ImageManifestBuilder, MediaType,
    ANNOTATION_REF_NAME, SCHEMA_VERSION,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::compression::{decompress, Compression};
use crate::content::{read_small, Blobs, HashingReader, Staged};
use crate::error::{io_err, Error, Result};
use crate::refs::{set_tag, tag_name};
use crate::ImageStore;

const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
const MAX_INDEX_DEPTH: usize = 8;
const MAX_LINK_HOPS: usize = 16;

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// What an archive that is no image archive at all is told.
const NEITHER_FORMAT: &str = "is neither an OCI image layout nor a `docker save` archive";

fn archive_error(archive: &Path, message: impl Into<String>) -> Error {
    Error::Archive {
        archive: archive.to_path_buf(),
        message: message.into(),
    }
}

pub(crate) fn load(
    images: &ImageStore,
    path: &Path,
    archive: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<Image>> {
    let blobs = &images.inner.blobs;
    let mut files = ArchiveFiles::read(blobs, path, archive)?;
    let mut plans = if files.has("oci-layout") && files.has("index.json") {
        plan_oci(&files)?
    } else if files.has("manifest.json") {
        plan_docker(&files)?
    } else {
        return Err(archive_error(
            archive,
            NEITHER_FORMAT.to_string() + " (it has neither oci-layout and index.json nor manifest.json)",
        ));
    };
    if plans.is_empty() {
        return Err(archive_error(archive, "contains no image"));
    }

    let mut verified: HashMap<(String, String), Compression> = HashMap::new();
    for plan in &mut plans {
        let diff_ids = plan.config.rootfs().diff_ids().clone();
        for (layer, diff_id) in plan.layers.iter_mut().zip(&diff_ids) {
            let key = (layer.digest.clone(), diff_id.clone());
            if let Some(compression) = verified.get(&key) {
                layer.compression = *compression;
                continue;
            }
            progress(Progress {
                status: format!("Loading layer {}", layer.digest),
                id: Some(short_id(&layer.digest).to_string()),
                error: None,
                ..Progress::default()
            });
            layer.compression = files.verify_layer(layer, diff_id)?;
            verified.insert(key, layer.compression);
        }
    }

    let mut needed: BTreeMap<String, Source> = BTreeMap::new();
    let mut records = Vec::new();
    for plan in plans {
        let manifest_digest = match &plan.manifest {
            ManifestSource::Archive { digest, entry } => {
                needed
                    .entry(digest.clone())
                    .or_insert_with(|| Source::Entry(entry.clone()));
                digest.clone()
            }
            ManifestSource::Synthesize => {
                let staged = blobs.stage_bytes(&synthesize_manifest(&plan).map_err(|m| archive_error(archive, m))?)?;
                let digest = staged.digest.clone();
                needed.entry(digest.clone()).or_insert(Source::Staged(staged));
                digest
            }
        };
        needed
            .entry(plan.config_digest.clone())
            .or_insert_with(|| Source::Entry(plan.config_entry.clone()));
        for layer in &plan.layers {
            needed
                .entry(layer.digest.clone())
                .or_insert_with(|| Source::Entry(layer.entry.clone()));
        }
        records.push((image_record(&plan, manifest_digest), plan.names));
    }

    let loaded = {
        let _content = images.lock_content();
        let mut created = Vec::new();
        match commit(images, &mut files, needed, &records, &mut created) {
            Ok(loaded) => loaded,
            Err(e) => {
                for digest in &created {
                    if let Err(cleanup) = blobs.remove(digest) {
                        tracing::warn!(digest = %digest, error = %cleanup, "cannot remove blob of a failed load");
                    }
                }
                return Err(e);
            }
        }
    };
    drop(files);

    for image in &loaded {
        let names: Vec<&String> = records
            .iter()
            .filter(|(r, _)| r.id == image.id)
            .flat_map(|(_, names)| names)
            .collect();
        if names.is_empty() {
            progress(Progress {
                status: format!("Loaded image ID: {}", image.id),
                id: Some(short_id(&image.id).to_string()),
                error: None,
                ..Progress::default()
            });
        }
        for name in names {
            progress(Progress {
                status: format!("Loaded image: {name}"),
                id: Some(short_id(&image.id).to_string()),
                error: None,
                ..Progress::default()
            });
        }
        tracing::info!(image_id = %image.id, archive = %archive.display(), "loaded image");
    }
    Ok(loaded)
}

/// Moves the needed blobs into place and records the images. Blobs this call
/// added are pushed to `created` so that the caller can take them back.
fn commit(
    images: &ImageStore,
    files: &mut ArchiveFiles<'_>,
    needed: BTreeMap<String, Source>,
    records: &[(Image, Vec<String>)],
    created: &mut Vec<String>,
) -> Result<Vec<Image>> {
    for (digest, source) in needed {
        let staged = match source {
            Source::Entry(entry) => files.take(&entry)?,
            Source::Staged(staged) => staged,
        };
        if staged.digest != digest {
            // Planning verified this already; refuse rather than store a lie.
            return Err(Error::DigestMismatch {
                archive: files.archive.to_path_buf(),
                digest,
                entry: String::new(),
                actual: staged.digest.clone(),
            });
        }
        if images.inner.blobs.commit(staged)? {
            created.push(digest);
        }
    }
    let (loaded, replaced) = images.inner.store.write(|txn| {
        let mut replaced = false;
        for (image, names) in records {
            let mut record = image.clone();
            if let Some(old) = txn.get::<Image>(IMAGES, &record.id)? {
                replaced |= old.manifest_digest != record.manifest_digest;
                crate::refs::keep_names(&mut record, old);
            }
            txn.put(IMAGES, &record.id, &record)?;
            for name in names {
                set_tag(txn, name, &record.id)?;
                crate::refs::add_repo_digest(txn, &record.id, name)?;
            }
        }
        let mut loaded: Vec<Image> = Vec::new();
        for (image, _) in records {
            if loaded.iter().any(|l| l.id == image.id) {
                continue;
            }
            if let Some(record) = txn.get::<Image>(IMAGES, &image.id)? {
                loaded.push(record);
            }
        }
        Ok((loaded, replaced))
    })?;
    if replaced {
        // The same image came with another manifest; the old one's blobs may be unused now.
        images.collect_garbage()?;
    }
    Ok(loaded)
}

/// Where a needed blob comes from.
enum Source {
    /// A file of the archive (by its path there).
    Entry(String),
    /// A blob this load made (a manifest synthesised for a docker archive).
    Staged(Staged),
}

/// One image to load, before it is verified.
struct Plan {
    /// Familiar `name:tag` references to tag it with.
    names: Vec<String>,
    manifest: ManifestSource,
    config_digest: String,
    config_entry: String,
    config_size: u64,
    config: ImageConfiguration,
    layers: Vec<PlannedLayer>,
}

enum ManifestSource {
    Archive {
        digest: String,
        entry: String,
    },
    /// A docker archive has no manifest: one is made from the stored blobs.
    Synthesize,
}

struct PlannedLayer {
    digest: String,
    /// Its path in the archive.
    entry: String,
    /// What the media type says, where there is one.
    declared: Option<Compression>,
    size: u64,
    /// What the magic bytes say; set by verification.
    compression: Compression,
}

/// The regular files of an archive, each staged as a temp blob, plus its
/// symlinks and hard links (old docker archives link shared layers).
struct ArchiveFiles<'a> {
    archive: &'a Path,
    files: HashMap<String, Staged>,
    links: HashMap<String, String>,
}

impl<'a> ArchiveFiles<'a> {
    /// Reads the archive at `path`; errors name it `archive`.
    fn read(blobs: &Blobs, path: &Path, archive: &'a Path) -> Result<Self> {
        let bad = |message: String| archive_error(archive, message);
        let file = File::open(path).map_err(io_err("opening archive", archive))?;
        let (_, stream) = decompress(file).map_err(|e| bad(format!("{NEITHER_FORMAT} (reading it: {e})")))?;
        let mut tar = tar::Archive::new(stream);
        let mut out = Self {
            archive,
            files: HashMap::new(),
            links: HashMap::new(),
        };
        for entry in tar
            .entries()
            .map_err(|e| bad(format!("{NEITHER_FORMAT} (reading it: {e})")))?
        {
            // Nothing read yet: not a tar archive at all. Later: a cut or damaged one.
            let nothing_yet = out.files.is_empty() && out.links.is_empty();
            let mut entry = entry.map_err(|e| {
                if nothing_yet {
                    bad(format!("{NEITHER_FORMAT} (reading it as a tar archive: {e})"))
                } else {
                    bad(format!("reading: {e}"))
                }
            })?;
            let raw = entry
                .path()
                .map_err(|e| bad(format!("reading entry path: {e}")))?
                .into_owned();
            let Some(path) = lexical_path(None, &raw) else {
                tracing::warn!(archive = %archive.display(), entry = %raw.display(), "skipping archive entry outside the archive root");
                continue;
            };
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let staged = blobs.stage(&mut entry, &|e| bad(format!("reading {path}: {e}")))?;
                    out.files.insert(path, staged);
                }
                kind @ (tar::EntryType::Symlink | tar::EntryType::Link) => {
                    let target = entry
                        .link_name()
                        .map_err(|e| bad(format!("reading link {path}: {e}")))?;
                    // Symlinks are relative to their dir, hard links to the archive root.
                    let base = if kind == tar::EntryType::Symlink {
                        path.rsplit_once('/').map(|(dir, _)| dir)
                    } else {
                        None
                    };
                    if let Some(target) = target.and_then(|t| lexical_path(base, &t)) {
                        out.links.insert(path, target);
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }

    fn archive_error(&self, message: impl Into<String>) -> Error {
        archive_error(self.archive, message)
    }

    /// The path of the staged file `path` names, following links.
    fn resolve(&self, path: &str) -> Option<String> {
        let mut current = lexical_path(None, Path::new(path))?;
        for _ in 0..MAX_LINK_HOPS {
            if self.files.contains_key(&current) {
                return Some(current);
            }
            current = self.links.get(&current)?.clone();
        }
        None
    }

    fn has(&self, path: &str) -> bool {
        self.resolve(path).is_some()
    }

    /// The staged file at `path`, checked against the digest its name says
    /// (`blobs/sha256/<hex>`, `<hex>.json`) if it says one.
    fn require(&self, path: &str) -> Result<&Staged> {
        let staged = self
            .resolve(path)
            .and_then(|p| self.files.get(&p))
            .ok_or_else(|| self.archive_error(format!("{path} is missing")))?;
        if let Some(expected) = digest_named_by(path) {
            if staged.digest != expected {
                return Err(Error::DigestMismatch {
                    archive: self.archive.to_path_buf(),
                    digest: expected,
                    entry: path.to_string(),
                    actual: staged.digest.clone(),
                });
            }
        }
        Ok(staged)
    }

    fn take(&mut self, path: &str) -> Result<Staged> {
        let resolved = self
            .resolve(path)
            .ok_or_else(|| self.archive_error(format!("{path} is missing")))?;
        self.files
            .remove(&resolved)
            .ok_or_else(|| self.archive_error(format!("{path} is missing")))
    }

    fn json<T: DeserializeOwned>(&self, path: &str, what: &str) -> Result<T> {
        let staged = self.require(path)?;
        let bytes = read_small(&mut staged.open()?, Path::new(path))?;
        serde_json::from_slice(&bytes).map_err(|e| self.archive_error(format!("{path}: not a valid {what}: {e}")))
    }

    /// The blob a descriptor points at, checked against its digest and size.
    fn blob(&self, descriptor: &Descriptor) -> Result<(&Staged, String)> {
        let digest = descriptor.digest().to_string();
        berth_model::validate_digest(&digest).map_err(|e| self.archive_error(e))?;
        let entry = blob_entry(&digest);
        let staged = self.require(&entry)?;
        if staged.size != descriptor.size() {
            return Err(self.archive_error(format!(
                "blob {digest} has {} bytes but its descriptor says {}",
                staged.size,
                descriptor.size()
            )));
        }
        Ok((staged, entry))
    }

    fn blob_json<T: DeserializeOwned>(&self, descriptor: &Descriptor, what: &str) -> Result<T> {
        let (_, entry) = self.blob(descriptor)?;
        self.json(&entry, what)
    }

    /// Checks that a layer's uncompressed stream has digest `diff_id`;
    /// returns the compression its magic bytes show.
    fn verify_layer(&self, layer: &PlannedLayer, diff_id: &str) -> Result<Compression> {
        let staged = self.require(&layer.entry)?;
        let read_error =
            |e: std::io::Error| self.archive_error(format!("reading layer {} ({}): {e}", layer.digest, layer.entry));
        let (compression, stream) = decompress(staged.open()?).map_err(read_error)?;
        if layer.declared.is_some_and(|declared| declared != compression) {
            tracing::warn!(layer = %layer.digest, declared = ?layer.declared, found = ?compression,
                "layer media type and content disagree about compression; going by content");
        }
        let actual = if compression == Compression::None {
            staged.digest.clone()
        } else {
            HashingReader::new(stream).finish().map_err(read_error)?
        };
        if actual != diff_id {
            return Err(Error::DiffIdMismatch {
                archive: self.archive.to_path_buf(),
                digest: layer.digest.clone(),
                entry: layer.entry.clone(),
                expected: diff_id.to_string(),
                actual,
            });
        }
        Ok(compression)
    }
}

/// `blobs/sha256/<hex>` for `sha256:<hex>`.
pub(crate) fn blob_entry(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

/// The digest an archive path names: `blobs/sha256/<hex>` or a docker
/// archive's `<hex>.json` config.
fn digest_named_by(path: &str) -> Option<String> {
    let path = lexical_path(None, Path::new(path))?;
    let hex = path
        .strip_prefix("blobs/sha256/")
        .or_else(|| path.strip_suffix(".json").filter(|p| !p.contains('/')))?;
    let digest = format!("sha256:{hex}");
    berth_model::validate_digest(&digest).ok().map(|_| digest)
}

/// `path` (joined to `base`) normalised to `a/b/c`; `None` if it is absolute
/// or climbs out of the archive root.
fn lexical_path(base: Option<&str>, path: &Path) -> Option<String> {
    let mut parts: Vec<String> = base
        .into_iter()
        .flat_map(|b| b.split('/'))
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    for component in path.components() {
        match component {
            Component::Normal(name) => parts.push(name.to_str()?.to_string()),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

#[derive(Deserialize)]
struct OciLayout {
    #[serde(rename = "imageLayoutVersion")]
    version: String,
}

fn plan_oci(files: &ArchiveFiles<'_>) -> Result<Vec<Plan>> {
    let layout: OciLayout = files.json("oci-layout", "oci-layout file")?;
    if !layout.version.starts_with("1.") {
        return Err(files.archive_error(format!("unsupported oci image layout version {:?}", layout.version)));
    }
    let index: ImageIndex = files.json("index.json", "image index")?;
    let mut plans: Vec<Plan> = Vec::new();
    for descriptor in index.manifests() {
        let names = names_from_annotations(descriptor.annotations().as_ref());
        let Some(manifest) = select_manifest(files, descriptor, 0)? else {
            continue;
        };
        let digest = manifest.digest().to_string();
        let same = plans
            .iter_mut()
            .find(|p| matches!(&p.manifest, ManifestSource::Archive { digest: d, .. } if *d == digest));
        if let Some(plan) = same {
            plan.names.extend(names);
            continue;
        }
        if let Some(plan) = plan_oci_manifest(files, &manifest, names)? {
            plans.push(plan);
        }
    }
    Ok(plans)
}

/// The image name in a descriptor's annotations: containerd's full name, or
/// the OCI ref name when it is a full reference. A bare ref name such as
/// `latest` is only a tag without a repository, so it names nothing here.
fn names_from_annotations(annotations: Option<&HashMap<String, String>>) -> Vec<String> {
    let Some(annotations) = annotations else {
        return Vec::new();
    };
    let name = annotations.get(ANNOTATION_CONTAINERD_NAME).or_else(|| {
        annotations
            .get(ANNOTATION_REF_NAME)
            .filter(|n| n.contains(':') || n.contains('/'))
    });
    match name.map(|n| (n, tag_name(n))) {
        None => Vec::new(),
        Some((_, Ok(tag))) => vec![tag],
        Some((name, Err(e))) => {
            tracing::warn!(name = %name, error = %e, "ignoring unusable image name annotation");
            Vec::new()
        }
    }
}

fn is_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

fn platform_of(descriptor: &Descriptor) -> Option<(String, String)> {
    descriptor
        .platform()
        .as_ref()
        .map(|p| (p.os().to_string(), p.architecture().to_string()))
}

/// Follows nested indexes down to one image manifest: linux/amd64, or the
/// only image there is. `None` for descriptors that are not images.
fn select_manifest(files: &ArchiveFiles<'_>, descriptor: &Descriptor, depth: usize) -> Result<Option<Descriptor>> {
    let media_type = descriptor.media_type().to_string();
    if is_manifest(&media_type) {
        return Ok(Some(descriptor.clone()));
    }
    if !is_index(&media_type) {
        tracing::debug!(digest = %descriptor.digest(), media_type = %media_type, "skipping descriptor that is not an image");
        return Ok(None);
    }
    let digest = descriptor.digest().to_string();
    if depth >= MAX_INDEX_DEPTH {
        return Err(files.archive_error(format!(
            "image index {digest} nests deeper than {MAX_INDEX_DEPTH} levels"
        )));
    }
    let index: ImageIndex = files.blob_json(descriptor, "image index")?;
    // Attestations (buildx) hang off an index with platform unknown/unknown.
    let candidates: Vec<&Descriptor> = index
        .manifests()
        .iter()
        .filter(|d| platform_of(d).is_none_or(|(os, _)| os != "unknown"))
        .collect();
    let wanted = candidates
        .iter()
        .find(|d| platform_of(d).is_some_and(|(os, arch)| os == "linux" && arch == "amd64"));
    let chosen = match (wanted, candidates.as_slice()) {
        (Some(d), _) => *d,
        (None, [only]) => *only,
        (None, others) => {
            let platforms: Vec<String> = others
                .iter()
                .map(|d| {
                    platform_of(d)
                        .map(|(os, arch)| format!("{os}/{arch}"))
                        .unwrap_or_else(|| "unknown".into())
                })
                .collect();
            return Err(files.archive_error(format!(
                "image index {digest} has no linux/amd64 image (it has: {})",
                if platforms.is_empty() {
                    "none".to_string()
                } else {
                    platforms.join(", ")
                }
            )));
        }
    };
    select_manifest(files, chosen, depth + 1)
}

fn plan_oci_manifest(files: &ArchiveFiles<'_>, descriptor: &Descriptor, names: Vec<String>) -> Result<Option<Plan>> {
    let (_, manifest_entry) = files.blob(descriptor)?;
    let manifest_digest = descriptor.digest().to_string();
    let manifest: ImageManifest = files.json(&manifest_entry, "image manifest")?;
    let config_descriptor = manifest.config();
    let config_type = config_descriptor.media_type().to_string();
    if config_type != OCI_CONFIG && config_type != DOCKER_CONFIG {
        tracing::debug!(digest = %manifest_digest, config_type = %config_type, "skipping manifest that is not an image");
        return Ok(None);
    }
    let (config_staged, config_entry) = files.blob(config_descriptor)?;
    let config: ImageConfiguration = files.json(&config_entry, "image config")?;
    let mut layers = Vec::new();
    for layer in manifest.layers() {
        let digest = layer.digest().to_string();
        let declared = Compression::from_media_type(layer.media_type().as_ref())
            .map_err(|e| files.archive_error(format!("layer {digest}: {e}")))?;
        let (staged, entry) = files.blob(layer)?;
        layers.push(PlannedLayer {
            digest,
            entry,
            declared,
            size: staged.size,
            compression: Compression::None,
        });
    }
    let config_digest = config_descriptor.digest().to_string();
    check_diff_ids(files, &config_digest, &config, layers.len())?;
    Ok(Some(Plan {
        names,
        manifest: ManifestSource::Archive {
            digest: manifest_digest,
            entry: manifest_entry,
        },
        config_digest,
        config_entry,
        config_size: config_staged.size,
        config,
        layers,
    }))
}

/// One image of a docker archive's `manifest.json`.
#[derive(Deserialize)]
struct DockerArchiveEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

fn plan_docker(files: &ArchiveFiles<'_>) -> Result<Vec<Plan>> {
    let entries: Vec<DockerArchiveEntry> = files.json("manifest.json", "docker archive manifest")?;
    let mut plans: Vec<Plan> = Vec::new();
    for entry in entries {
        let mut names = Vec::new();
        for tag in entry.repo_tags.unwrap_or_default() {
            names.push(
                tag_name(&tag).map_err(|e| files.archive_error(format!("manifest.json: repo tag {tag:?}: {e}")))?,
            );
        }
        let config_staged = files.require(&entry.config)?;
        let config_digest = config_staged.digest.clone();
        if let Some(plan) = plans.iter_mut().find(|p| p.config_digest == config_digest) {
            plan.names.extend(names);
            continue;
        }
        let config: ImageConfiguration = files.json(&entry.config, "image config")?;
        let mut layers = Vec::new();
        for path in &entry.layers {
            let staged = files.require(path)?;
            layers.push(PlannedLayer {
                digest: staged.digest.clone(),
                entry: path.clone(),
                declared: None,
                size: staged.size,
                compression: Compression::None,
            });
        }
        check_diff_ids(files, &config_digest, &config, layers.len())?;
        plans.push(Plan {
            names,
            manifest: ManifestSource::Synthesize,
            config_digest,
            config_entry: entry.config,
            config_size: config_staged.size,
            config,
            layers,
        });
    }
    Ok(plans)
}

fn check_diff_ids(
    files: &ArchiveFiles<'_>,
    config_digest: &str,
    config: &ImageConfiguration,
    layers: usize,
) -> Result<()> {
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != layers {
        return Err(files.archive_error(format!(
            "image {config_digest}: the manifest lists {layers} layers but the config lists {} diff ids",
            diff_ids.len()
        )));
    }
    for diff_id in diff_ids {
        berth_model::validate_digest(diff_id)
            .map_err(|e| files.archive_error(format!("image {config_digest}: diff id: {e}")))?;
    }
    Ok(())
}

/// An OCI manifest for a docker archive's image, so that it can be served
/// and saved like any other.
fn synthesize_manifest(plan: &Plan) -> Result<Vec<u8>, String> {
    let digest = |d: &str| Digest::from_str(d).map_err(|e| format!("digest {d}: {e}"));
    let config = Descriptor::new(MediaType::ImageConfig, plan.config_size, digest(&plan.config_digest)?);
    let mut layers = Vec::new();
    for layer in &plan.layers {
        layers.push(Descriptor::new(
            MediaType::from(layer.compression.oci_media_type()),
            layer.size,
            digest(&layer.digest)?,
        ));
    }
    let manifest = ImageManifestBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(layers)
        .build()
        .map_err(|e| format!("building manifest for image {}: {e}", plan.config_digest))?;
    serde_json::to_vec(&manifest).map_err(|e| format!("encoding manifest for image {}: {e}", plan.config_digest))
}

fn image_record(plan: &Plan, manifest_digest: String) -> Image {
    let config = &plan.config;
    Image {
        id: plan.config_digest.clone().into(),
        manifest_digest: manifest_digest.into(),
        tags: Vec::new(),
        repo_digests: Vec::new(),
        index_digest: None,
        layers: plan
            .layers
            .iter()
            .map(|l| berth_model::Digest::from(l.digest.clone()))
            .collect(),
        diff_ids: config
            .rootfs()
            .diff_ids()
            .iter()
            .cloned()
            .map(berth_model::Digest::from)
            .collect(),
        size: plan.layers.iter().map(|l| l.size).sum(),
        created: config.created().clone(),
        architecture: config.architecture().to_string(),
        os: config.os().to_string(),
        config: image_config(config),
    }
}

/// The run-time parts of an image config that a container inherits.
pub(crate) fn image_config(config: &ImageConfiguration) -> ImageConfig {
    let Some(c) = config.config() else {
        return ImageConfig::default();
    };
    ImageConfig {
        entrypoint: c.entrypoint().clone().unwrap_or_default(),
        cmd: c.cmd().clone().unwrap_or_default(),
        env: c.env().clone().unwrap_or_default(),
        working_dir: c.working_dir().clone().unwrap_or_default(),
        user: c.user().clone().unwrap_or_default(),
        labels: c.labels().clone().unwrap_or_default().into_iter().collect(),
        stop_signal: c.stop_signal().clone(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn archive_paths() {
        let check = |base: Option<&str>, path: &str| lexical_path(base, Path::new(path));
        assert_eq!(check(None, "./blobs/sha256/ab"), Some("blobs/sha256/ab".into()));
        assert_eq!(check(Some("abc"), "../def/layer.tar"), Some("def/layer.tar".into()));
        assert_eq!(check(None, "../x"), None);
        assert_eq!(check(None, "/x"), None);
        assert_eq!(check(None, "./"), None);
        let hex = "a".repeat(64);
        assert_eq!(
            digest_named_by(&format!("blobs/sha256/{hex}")),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(digest_named_by(&format!("{hex}.json")), Some(format!("sha256:{hex}")));
        assert_eq!(digest_named_by(&format!("{hex}/layer.tar")), None);
        assert_eq!(digest_named_by("manifest.json"), None);
    }

    #[test]
    fn name_annotations() {
        let check = |pairs: &[(&str, &str)]| {
            let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            names_from_annotations(Some(&map))
        };
        assert_eq!(check(&[(ANNOTATION_REF_NAME, "latest")]), Vec::<String>::new());
        assert_eq!(check(&[(ANNOTATION_REF_NAME, "busybox:1.36")]), vec!["busybox:1.36"]);
        assert_eq!(
            check(&[
                (ANNOTATION_REF_NAME, "latest"),
                (ANNOTATION_CONTAINERD_NAME, "docker.io/library/busybox:latest")
            ]),
            vec!["busybox:latest"]
        );
        assert_eq!(check(&[(ANNOTATION_REF_NAME, "Bad:Name")]), Vec::<String>::new());
    }
}
