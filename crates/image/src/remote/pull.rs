//! `pull`: the manifest (or index, then the platform's manifests), the
//! configs, and the layers the content store lacks, three at a time, each
//! streamed into a temp blob and verified before anything is recorded.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use berth_model::{short_id, Digest, Image, Progress, Reference};
use berth_store::IMAGES;
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use sha2::{Digest as _, Sha256};

use super::client::{describe_error, header, read_limited, Body, Client, MANIFEST_ACCEPT};
use super::{run_concurrently, Platform, PullOptions};
use crate::compression::decompress;
use crate::content::{read_small, HashingReader, Staged};
use crate::error::{Error, Result};
use crate::refs::set_tag;
use crate::ImageStore;

/// Manifests and indexes larger than this are refused.
const MANIFEST_LIMIT: u64 = 8 << 20;

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

fn is_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// A manifest or index as fetched: its bytes, their digest, its media type.
pub(crate) struct Fetched {
    pub bytes: Vec<u8>,
    pub digest: String,
    pub media_type: String,
}

/// The media type a manifest document says it has (`mediaType`), else what
/// the registry said (`Content-Type`).
pub(crate) fn media_type_of(bytes: &[u8], content_type: Option<&str>) -> String {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v.get("mediaType").and_then(|t| t.as_str()).map(String::from))
        .or_else(|| content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_string()))
        .unwrap_or_default()
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// One image to record.
struct Planned {
    manifest: Fetched,
    config_digest: String,
    config: ImageConfiguration,
    layers: Vec<Descriptor>,
}

/// A blob to download.
#[derive(Clone)]
struct Job {
    digest: String,
    size: u64,
    /// For layers: the diff id the uncompressed stream must have.
    diff_id: Option<String>,
}

pub(crate) fn pull(
    images: &ImageStore,
    reference: &str,
    options: &PullOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Vec<Image>> {
    let parsed = Reference::parse(reference).map_err(Error::InvalidReference)?;
    let shown = parsed.familiar();
    let wanted = match &options.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::parse("linux/amd64")?,
    };
    let repository = &parsed.repository;
    let client = images.registry_client(&parsed.registry, vec![format!("repository:{repository}:pull")])?;
    let target = parsed
        .digest
        .clone()
        .or_else(|| parsed.tag.clone())
        .unwrap_or_else(|| berth_model::DEFAULT_TAG.to_string());
    progress(Progress::status(
        format!("Pulling from {}", parsed.familiar_name()),
        parsed.tag.as_deref(),
    ));
    let top = fetch_manifest(&client, &shown, repository, &target, parsed.digest.as_deref())?;

    let from_index = is_index(&top.media_type);
    let manifests: Vec<Fetched> = if from_index {
        let index: ImageIndex = serde_json::from_slice(&top.bytes)
            .map_err(|e| client.error(format!("{shown}: image index {} does not parse: {e}", top.digest)))?;
        let chosen = choose(&index, &wanted, options, &shown, &top.digest)?;
        let mut fetched = Vec::new();
        for descriptor in chosen {
            let digest = descriptor.digest().to_string();
            fetched.push(fetch_manifest(&client, &shown, repository, &digest, Some(&digest))?);
        }
        fetched
    } else if is_manifest(&top.media_type) {
        vec![top_clone(&top)]
    } else {
        return Err(client.error(format!("{shown}: unsupported manifest media type {:?}", top.media_type)));
    };

    let blobs = &images.inner.blobs;
    let transferred = AtomicU64::new(0);
    let mut staged: BTreeMap<String, Staged> = BTreeMap::new();
    let mut planned = Vec::new();
    for manifest in manifests {
        let parsed_manifest: ImageManifest = serde_json::from_slice(&manifest.bytes)
            .map_err(|e| client.error(format!("{shown}: manifest {} does not parse: {e}", manifest.digest)))?;
        let config_descriptor = parsed_manifest.config();
        let config_digest = config_descriptor.digest().to_string();
        berth_model::validate_digest(&config_digest).map_err(Error::InvalidDigest)?;
        let config_bytes = if let Some(s) = staged.get(&config_digest) {
            read_small(&mut s.open()?, Path::new(&config_digest))?
        } else if blobs.contains(&config_digest)? {
            read_small(&mut blobs.open_blob(&config_digest)?, Path::new(&config_digest))?
        } else {
            let job = Job {
                digest: config_digest.clone(),
                size: config_descriptor.size(),
                diff_id: None,
            };
            let s = download(&client, repository, &shown, &job, images, &transferred, &|_, _| {})?;
            let bytes = read_small(&mut s.open()?, Path::new(&config_digest))?;
            staged.insert(config_digest.clone(), s);
            bytes
        };
        let config: ImageConfiguration = serde_json::from_slice(&config_bytes)
            .map_err(|e| client.error(format!("{shown}: image config {config_digest} does not parse: {e}")))?;
        if let (Some(asked), false) = (&options.platform, from_index) {
            let actual = format!("{}/{}", config.os(), config.architecture());
            if actual != format!("{}/{}", wanted.os, wanted.architecture) {
                return Err(Error::RemoteNotFound {
                    reference: shown.clone(),
                    message: format!("the image is {actual}, not {asked}"),
                });
            }
        }
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != parsed_manifest.layers().len() {
            return Err(client.error(format!(
                "{shown}: manifest {} lists {} layers but its config lists {} diff ids",
                manifest.digest,
                parsed_manifest.layers().len(),
                diff_ids.len()
            )));
        }
        for diff_id in diff_ids {
            berth_model::validate_digest(diff_id).map_err(Error::InvalidDigest)?;
        }
        planned.push(Planned {
            manifest,
            config_digest,
            config,
            layers: parsed_manifest.layers().clone(),
        });
    }

    // Layers: what is in the content store already is not transferred. A
    // layer no image record vouches for (a blob pushed to this node's
    // registry) gets its diff id checked here instead.
    let vouched: HashSet<(String, String)> = images
        .inner
        .store
        .list::<Image>(IMAGES)?
        .into_iter()
        .flat_map(|(_, image)| {
            image
                .layers
                .into_iter()
                .map(String::from)
                .zip(image.diff_ids.into_iter().map(String::from))
        })
        .collect();
    let mut jobs: Vec<Job> = Vec::new();
    let mut seen = HashSet::new();
    for plan in &planned {
        for (layer, diff_id) in plan.layers.iter().zip(plan.config.rootfs().diff_ids()) {
            let digest = layer.digest().to_string();
            berth_model::validate_digest(&digest).map_err(Error::InvalidDigest)?;
            if !seen.insert(digest.clone()) {
                continue;
            }
            if blobs.contains(&digest)? {
                if !vouched.contains(&(digest.clone(), diff_id.clone())) {
                    let file = blobs.open_blob(&digest)?;
                    check_diff_id(file, &digest, diff_id, &client, &shown)?;
                }
                progress(Progress::status("Already exists", Some(short_id(&digest))));
                continue;
            }
            progress(Progress::status("Pulling fs layer", Some(short_id(&digest))));
            jobs.push(Job {
                digest,
                size: layer.size(),
                diff_id: Some(diff_id.clone()),
            });
        }
    }
    let report = |job: &Job, done: u64| {
        progress(Progress {
            status: "Downloading".into(),
            id: Some(short_id(&job.digest).to_string()),
            current: Some(done),
            total: Some(job.size),
            ..Progress::default()
        })
    };
    let downloaded = run_concurrently(jobs, &|job: Job| {
        let s = download(&client, repository, &shown, &job, images, &transferred, &report)?;
        progress(Progress::status("Pull complete", Some(short_id(&job.digest))));
        Ok((job.digest, s))
    })?;
    staged.extend(downloaded);

    let tag = match (&parsed.tag, &parsed.digest) {
        (Some(_), None) => Some(crate::refs::tag_name(reference)?),
        _ => None,
    };
    // With every platform pulled, the index is kept with the images, so
    // that a push sends the whole multi-platform image.
    let index = (from_index && options.all_platforms).then_some(&top);
    let recorded = commit(
        images,
        staged,
        &planned,
        index,
        &wanted,
        tag.as_deref(),
        &client,
        &shown,
    )?;
    let transferred = transferred.load(Ordering::SeqCst);
    progress(Progress::status(format!("Digest: {}", top.digest), None));
    let status = if transferred == 0 {
        format!("Status: Image is up to date for {shown}")
    } else {
        format!("Status: Downloaded newer image for {shown}")
    };
    progress(Progress {
        status,
        id: recorded.first().map(|i| short_id(&i.id).to_string()),
        current: Some(transferred),
        ..Progress::default()
    });
    for image in &recorded {
        tracing::info!(image_id = %image.id, reference = %shown, platform = %format!("{}/{}", image.os, image.architecture), bytes = transferred, "pulled image");
    }
    Ok(recorded)
}

fn top_clone(f: &Fetched) -> Fetched {
    Fetched {
        bytes: f.bytes.clone(),
        digest: f.digest.clone(),
        media_type: f.media_type.clone(),
    }
}

fn platform_of(d: &Descriptor) -> Option<Platform> {
    d.platform().as_ref().map(|p| Platform {
        os: p.os().to_string(),
        architecture: p.architecture().to_string(),
        variant: p.variant().clone(),
    })
}

/// The manifests of an index to pull: the wanted platform's (a variant
/// must match only when one is asked for), or every image with `all_platforms`.
fn choose<'a>(
    index: &'a ImageIndex,
    wanted: &Platform,
    options: &PullOptions,
    shown: &str,
    index_digest: &str,
) -> Result<Vec<&'a Descriptor>> {
    let images: Vec<&Descriptor> = index
        .manifests()
        .iter()
        .filter(|d| is_manifest(d.media_type().as_ref()))
        // Attestations (buildx) hang off an index with platform unknown/unknown.
        .filter(|d| platform_of(d).is_none_or(|p| p.os != "unknown"))
        .collect();
    if options.all_platforms && !images.is_empty() {
        return Ok(images);
    }
    let matches = |p: &Platform| {
        p.os == wanted.os
            && p.architecture == wanted.architecture
            && (wanted.variant.is_none() || p.variant == wanted.variant)
    };
    if let Some(d) = images.iter().find(|d| platform_of(d).is_some_and(|p| matches(&p))) {
        return Ok(vec![*d]);
    }
    if let ([only], None) = (images.as_slice(), &options.platform) {
        if platform_of(only).is_none() {
            return Ok(vec![*only]);
        }
    }
    let have: Vec<String> = images
        .iter()
        .map(|d| {
            platform_of(d)
                .map(|p| p.to_string())
                .unwrap_or_else(|| "unknown".into())
        })
        .collect();
    Err(Error::RemoteNotFound {
        reference: shown.to_string(),
        message: format!(
            "image index {index_digest} has no {wanted} image (it has: {})",
            if have.is_empty() {
                "none".to_string()
            } else {
                have.join(", ")
            }
        ),
    })
}

/// GETs a manifest or index and checks its digest: against `expected` (a
/// pull by digest) and against what the registry says it is.
pub(crate) fn fetch_manifest(
    client: &Client,
    shown: &str,
    repository: &str,
    target: &str,
    expected: Option<&str>,
) -> Result<Fetched> {
    let url = client.url(&format!("/v2/{repository}/manifests/{target}"));
    let mut response = client.send("GET", &url, &[("accept", MANIFEST_ACCEPT)], &Body::Empty)?;
    let status = response.status();
    if status == 404 {
        let described = describe_error(&mut response);
        return Err(Error::RemoteNotFound {
            reference: shown.to_string(),
            message: format!("not found in registry {} ({described})", client.registry),
        });
    }
    if !status.is_success() {
        let described = describe_error(&mut response);
        return Err(client.error(format!("{shown}: GET manifest {target} answered {described}")));
    }
    let bytes = read_limited(&mut response, MANIFEST_LIMIT)
        .map_err(|e| client.error(format!("{shown}: reading manifest {target}: {e}")))?;
    let digest = sha256(&bytes);
    let said = header(&response, "docker-content-digest");
    for claimed in [expected.map(String::from), said].into_iter().flatten() {
        if claimed != digest {
            return Err(Error::RemoteDigestMismatch {
                reference: shown.to_string(),
                what: "manifest",
                digest: claimed,
                actual: digest,
            });
        }
    }
    let content_type = header(&response, "content-type");
    let media_type = media_type_of(&bytes, content_type.as_deref());
    Ok(Fetched {
        bytes,
        digest,
        media_type,
    })
}

/// Streams one blob into a temp blob; checks its size, digest and (for a
/// layer) diff id. Read errors part way through are retried.
fn download(
    client: &Client,
    repository: &str,
    shown: &str,
    job: &Job,
    images: &ImageStore,
    transferred: &AtomicU64,
    report: &(dyn Fn(&Job, u64) + Sync),
) -> Result<Staged> {
    let blobs = &images.inner.blobs;
    let url = client.url(&format!("/v2/{repository}/blobs/{}", job.digest));
    let mut attempt = 0;
    let staged = loop {
        attempt += 1;
        let mut response = client.send("GET", &url, &[], &Body::Empty)?;
        let status = response.status();
        if status == 404 {
            let described = describe_error(&mut response);
            return Err(Error::RemoteNotFound {
                reference: shown.to_string(),
                message: format!(
                    "blob {} not found in registry {} ({described})",
                    job.digest, client.registry
                ),
            });
        }
        if !status.is_success() {
            let described = describe_error(&mut response);
            return Err(client.error(format!("{shown}: GET blob {} answered {described}", job.digest)));
        }
        let reader = response.body_mut().as_reader();
        let mut counting = Progressing {
            inner: reader,
            done: 0,
            reported: 0,
            report: &|done| report(job, done),
        };
        let read_failed = std::cell::Cell::new(false);
        let result = blobs.stage(&mut counting, &|e| {
            read_failed.set(true);
            client.error(format!("{shown}: reading blob {}: {e}", job.digest))
        });
        transferred.fetch_add(counting.done, Ordering::SeqCst);
        match result {
            Ok(s) => break s,
            Err(e) if read_failed.get() && attempt <= 3 => {
                tracing::info!(digest = %job.digest, error = %e, attempt, "retrying blob download");
                std::thread::sleep(std::time::Duration::from_millis(250 << attempt));
            }
            Err(e) => return Err(e),
        }
    };
    if staged.digest != job.digest {
        return Err(Error::RemoteDigestMismatch {
            reference: shown.to_string(),
            what: if job.diff_id.is_some() { "layer" } else { "config" },
            digest: job.digest.clone(),
            actual: staged.digest.clone(),
        });
    }
    if staged.size != job.size {
        return Err(client.error(format!(
            "{shown}: blob {} has {} bytes but its descriptor says {}",
            job.digest, staged.size, job.size
        )));
    }
    if let Some(diff_id) = &job.diff_id {
        check_diff_id(staged.open()?, &job.digest, diff_id, client, shown)?;
    }
    Ok(staged)
}

/// Checks that a layer's uncompressed stream has digest `diff_id`.
fn check_diff_id(file: std::fs::File, digest: &str, diff_id: &str, client: &Client, shown: &str) -> Result<()> {
    let read_error = |e: std::io::Error| client.error(format!("{shown}: reading layer {digest}: {e}"));
    let (_, stream) = decompress(file).map_err(read_error)?;
    let actual = HashingReader::new(stream).finish().map_err(read_error)?;
    if actual != diff_id {
        return Err(Error::RemoteDigestMismatch {
            reference: shown.to_string(),
            what: "uncompressed layer (diff id)",
            digest: diff_id.to_string(),
            actual,
        });
    }
    Ok(())
}

/// Reports bytes read every 512 KiB.
struct Progressing<'a, R> {
    inner: R,
    done: u64,
    reported: u64,
    report: &'a dyn Fn(u64),
}

impl<R: Read> Read for Progressing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if n == 0 || self.done - self.reported >= 512 * 1024 {
            self.reported = self.done;
            (self.report)(self.done);
        }
        Ok(n)
    }
}

/// Under the content lock: blobs into place, then every record and the tag
/// in one transaction; blobs this pull added go again if that fails.
#[allow(clippy::too_many_arguments)]
fn commit(
    images: &ImageStore,
    staged: BTreeMap<String, Staged>,
    planned: &[Planned],
    index: Option<&Fetched>,
    wanted: &Platform,
    tag: Option<&str>,
    client: &Client,
    shown: &str,
) -> Result<Vec<Image>> {
    let blobs = &images.inner.blobs;
    let mut manifests = Vec::new();
    for plan in planned {
        manifests.push(blobs.stage_bytes(&plan.manifest.bytes)?);
    }
    if let Some(index) = index {
        manifests.push(blobs.stage_bytes(&index.bytes)?);
    }
    let records: Vec<Image> = planned
        .iter()
        .map(|plan| Image {
            index_digest: index.map(|i| i.digest.clone()),
            ..image_record(plan)
        })
        .collect();
    // The tag goes to the wanted platform's image, else the first.
    let tagged = records
        .iter()
        .position(|r| r.os == wanted.os && r.architecture == wanted.architecture)
        .unwrap_or(0);

    let _content = images.lock_content();
    let mut created = Vec::new();
    let result = (|| {
        for s in staged.into_values().chain(manifests) {
            let digest = s.digest.clone();
            if blobs.commit(s)? {
                created.push(digest);
            }
        }
        for record in &records {
            let index = record.index_digest.iter();
            for digest in record
                .layers
                .iter()
                .map(Digest::as_str)
                .chain([record.id.as_str(), record.manifest_digest.as_str()])
                .chain(index.map(String::as_str))
            {
                if !blobs.contains(digest)? {
                    return Err(client.error(format!(
                        "{shown}: blob {digest} was removed while the image was pulled; pull again"
                    )));
                }
            }
        }
        let (recorded, replaced) = images.inner.store.write(|txn| {
            let mut replaced = false;
            for record in &records {
                let mut record = record.clone();
                if let Some(old) = txn.get::<Image>(IMAGES, &record.id)? {
                    replaced |= old.manifest_digest != record.manifest_digest;
                    crate::refs::keep_names(&mut record, old);
                }
                txn.put(IMAGES, &record.id, &record)?;
            }
            if let (Some(tag), Some(record)) = (tag, records.get(tagged)) {
                set_tag(txn, tag, &record.id)?;
            }
            if let Some(record) = records.get(tagged) {
                crate::refs::add_repo_digest(txn, &record.id, shown)?;
            }
            let mut recorded: Vec<Image> = Vec::new();
            let order = records.get(tagged).into_iter().chain(records.iter());
            for record in order {
                if recorded.iter().any(|r| r.id == record.id) {
                    continue;
                }
                if let Some(r) = txn.get::<Image>(IMAGES, &record.id)? {
                    recorded.push(r);
                }
            }
            Ok((recorded, replaced))
        })?;
        if replaced {
            images.collect_garbage()?;
        }
        Ok(recorded)
    })();
    if result.is_err() {
        for digest in &created {
            if let Err(e) = blobs.remove(digest) {
                tracing::warn!(digest = %digest, error = %e, "cannot remove blob of a failed pull");
            }
        }
    }
    result
}

fn image_record(plan: &Planned) -> Image {
    let config = &plan.config;
    Image {
        id: plan.config_digest.clone().into(),
        manifest_digest: plan.manifest.digest.clone().into(),
        tags: Vec::new(),
        repo_digests: Vec::new(),
        index_digest: None,
        layers: plan
            .layers
            .iter()
            .map(|l| Digest::from(l.digest().to_string()))
            .collect(),
        diff_ids: config.rootfs().diff_ids().iter().cloned().map(Digest::from).collect(),
        size: plan.layers.iter().map(|l| l.size()).sum(),
        created: config.created().clone(),
        architecture: config.architecture().to_string(),
        os: config.os().to_string(),
        config: crate::load::image_config(config),
    }
}
