//! `push`: every blob of the image the registry lacks (HEAD first, then a
//! cross-repository mount from another repository of the same registry the
//! image is tagged in, then a monolithic or, for large blobs, chunked
//! upload), three at a time; then the stored manifest bytes unchanged, so
//! that the registry names the image by the same digest.

use std::sync::atomic::{AtomicU64, Ordering};

use berth_model::{short_id, Progress, Reference};

use super::client::{describe_error, header, Body, Client};
use super::pull::{media_type_of, OCI_MANIFEST};
use super::run_concurrently;
use crate::error::{io_err, Error, Result};
use crate::ImageStore;

/// Blobs up to this size go in one PUT; larger ones in PATCH chunks of it.
const CHUNK: u64 = 32 << 20;

pub(crate) fn push(images: &ImageStore, reference: &str, progress: &(dyn Fn(Progress) + Sync)) -> Result<String> {
    let parsed = Reference::parse(reference).map_err(Error::InvalidReference)?;
    let shown = parsed.familiar();
    let image = images.resolve(reference)?;
    let repository = parsed.repository.clone();
    // Other repositories of the same registry this image is tagged in: blobs
    // can be mounted from there instead of uploaded.
    let mount_from: Vec<String> = image
        .tags
        .iter()
        .filter_map(|t| Reference::parse(t).ok())
        .filter(|r| r.registry == parsed.registry && r.repository != repository)
        .map(|r| r.repository)
        .collect();
    let mut scopes = vec![format!("repository:{repository}:pull,push")];
    scopes.extend(mount_from.iter().map(|r| format!("repository:{r}:pull")));
    let client = images.registry_client(&parsed.registry, scopes)?;
    progress(Progress::status(
        format!("The push refers to repository [{}]", parsed.familiar_name()),
        None,
    ));

    let target = parsed
        .tag
        .clone()
        .or_else(|| parsed.digest.clone())
        .unwrap_or_else(|| image.manifest_digest.to_string());
    let transferred = AtomicU64::new(0);
    let to = Destination {
        client: &client,
        repository: &repository,
        mount_from: &mount_from,
        shown: &shown,
        transferred: &transferred,
    };
    // A multi-platform image pulled whole goes whole: every platform's
    // image by digest, then the index under the tag.
    let platforms = match &image.index_digest {
        Some(index) => platform_images(images, index)?,
        None => None,
    };
    let (digest, size) = match (&image.index_digest, platforms) {
        (Some(index_digest), Some(platforms)) => {
            for one in &platforms {
                push_image(images, &to, one, &one.manifest_digest, progress)?;
            }
            let index = read_blob(images, index_digest)?;
            put_manifest(&to, &target, index_digest, &index)?;
            (index_digest.clone(), index.len())
        }
        (Some(_), None) => {
            progress(Progress::status(
                format!(
                    "Only the {}/{} image of this multi-platform image is here: pushing it alone",
                    image.os, image.architecture
                ),
                None,
            ));
            let size = push_image(images, &to, &image, &target, progress)?;
            (image.manifest_digest.to_string(), size)
        }
        (None, _) => {
            let size = push_image(images, &to, &image, &target, progress)?;
            (image.manifest_digest.to_string(), size)
        }
    };
    let transferred = transferred.load(Ordering::SeqCst);
    progress(Progress {
        status: format!("{target}: digest: {digest} size: {size}"),
        current: Some(transferred),
        ..Progress::default()
    });
    images
        .inner
        .store
        .write(|txn| crate::refs::add_repo_digest(txn, &image.id, &shown))?;
    tracing::info!(image_id = %image.id, reference = %shown, digest = %digest, bytes = transferred, "pushed image");
    Ok(digest)
}

/// Where a push goes.
struct Destination<'a> {
    client: &'a Client,
    repository: &'a str,
    /// Repositories of the same registry blobs may be mounted from.
    mount_from: &'a [String],
    shown: &'a str,
    transferred: &'a AtomicU64,
}

/// The images an index lists, when every one is here (attestations and
/// other non-image entries aside); `None` when one is missing.
fn platform_images(images: &ImageStore, index_digest: &str) -> Result<Option<Vec<berth_model::Image>>> {
    let index: serde_json::Value =
        serde_json::from_slice(&read_blob(images, index_digest)?).map_err(|e| Error::Corrupt {
            id: index_digest.to_string(),
            message: format!("the stored image index does not parse: {e}"),
        })?;
    let wanted: Vec<&str> = index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["platform"]["os"] != "unknown")
        .filter_map(|m| m["digest"].as_str())
        .collect();
    let all: Vec<(String, berth_model::Image)> = images.inner.store.list(berth_store::IMAGES)?;
    let mut found = Vec::new();
    for digest in wanted {
        match all.iter().find(|(_, i)| i.manifest_digest == digest) {
            Some((_, image)) => found.push(image.clone()),
            None => return Ok(None),
        }
    }
    Ok(Some(found))
}

fn read_blob(images: &ImageStore, digest: &str) -> Result<Vec<u8>> {
    let path = images.blob_path(digest)?;
    std::fs::read(&path).map_err(io_err("reading", &path))
}

/// The image's blobs the registry lacks, then its manifest under `target`;
/// the manifest's size.
fn push_image(
    images: &ImageStore,
    to: &Destination,
    image: &berth_model::Image,
    target: &str,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<usize> {
    let mut jobs: Vec<(String, u64)> = Vec::new();
    for digest in image
        .layers
        .iter()
        .map(berth_model::Digest::as_str)
        .chain([image.id.as_str()])
    {
        if jobs.iter().any(|(d, _)| d == digest) {
            continue;
        }
        let path = images.blob_path(digest)?;
        let size = std::fs::metadata(&path)
            .map_err(io_err("reading metadata of", &path))?
            .len();
        progress(Progress::status("Preparing", Some(short_id(digest))));
        jobs.push((digest.to_string(), size));
    }
    run_concurrently(jobs, &|(digest, size): (String, u64)| {
        push_blob(
            images,
            to.client,
            to.repository,
            to.mount_from,
            &digest,
            size,
            to.transferred,
            progress,
        )
    })?;
    let manifest = read_blob(images, &image.manifest_digest)?;
    put_manifest(to, target, &image.manifest_digest, &manifest)?;
    Ok(manifest.len())
}

/// PUTs stored manifest (or index) bytes unchanged under `target`; the
/// registry must name them by `digest`.
fn put_manifest(to: &Destination, target: &str, digest: &str, bytes: &[u8]) -> Result<()> {
    let client = to.client;
    let media_type = match media_type_of(bytes, None) {
        m if m.is_empty() => OCI_MANIFEST.to_string(),
        m => m,
    };
    let url = client.url(&format!("/v2/{}/manifests/{target}", to.repository));
    let mut response = client.send("PUT", &url, &[("content-type", &media_type)], &Body::Bytes(bytes))?;
    if !response.status().is_success() {
        let described = describe_error(&mut response);
        return Err(client.error(format!("{}: PUT manifest {digest} answered {described}", to.shown)));
    }
    if let Some(said) = header(&response, "docker-content-digest") {
        if said != digest {
            return Err(client.error(format!("{}: the registry stored manifest {digest} as {said}", to.shown)));
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn push_blob(
    images: &ImageStore,
    client: &Client,
    repository: &str,
    mount_from: &[String],
    digest: &str,
    size: u64,
    transferred: &AtomicU64,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<()> {
    let id = short_id(digest);
    let head = client.send(
        "HEAD",
        &client.url(&format!("/v2/{repository}/blobs/{digest}")),
        &[],
        &Body::Empty,
    )?;
    if head.status().is_success() {
        progress(Progress::status("Layer already exists", Some(id)));
        return Ok(());
    }
    let path = images.blob_path(digest)?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut sent = 0;
        let result = upload(client, repository, mount_from, digest, &path, size, &mut sent, progress);
        transferred.fetch_add(sent, Ordering::SeqCst);
        match result {
            Ok(Some(from)) => {
                progress(Progress::status(format!("Mounted from {from}"), Some(id)));
                return Ok(());
            }
            Ok(None) => {
                progress(Progress::status("Pushed", Some(id)));
                return Ok(());
            }
            Err(e @ Error::Registry { .. }) if attempt <= 3 => {
                tracing::info!(digest, error = %e, attempt, "retrying blob upload");
                std::thread::sleep(std::time::Duration::from_millis(250 << attempt));
            }
            Err(e) => return Err(e),
        }
    }
}

/// One upload session: a mount attempt from each repository in
/// `mount_from`, else the blob's bytes. `Some(repository)` when mounted.
#[allow(clippy::too_many_arguments)]
fn upload(
    client: &Client,
    repository: &str,
    mount_from: &[String],
    digest: &str,
    path: &std::path::Path,
    size: u64,
    sent: &mut u64,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Option<String>> {
    let id = short_id(digest);
    let uploads = client.url(&format!("/v2/{repository}/blobs/uploads/"));
    let mut location = None;
    for from in mount_from {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("mount", digest)
            .append_pair("from", from)
            .finish();
        let mut response = client.send("POST", &format!("{uploads}?{query}"), &[], &Body::Empty)?;
        match response.status().as_u16() {
            201 => return Ok(Some(from.clone())),
            202 => {
                location = header(&response, "location");
                break;
            }
            _ => {
                let described = describe_error(&mut response);
                tracing::debug!(digest, from = %from, answer = %described, "cross-repository mount refused");
            }
        }
    }
    let mut location = match location {
        Some(l) => l,
        None => {
            let mut response = client.send("POST", &uploads, &[], &Body::Empty)?;
            if response.status().as_u16() != 202 {
                let described = describe_error(&mut response);
                return Err(client.error(format!("starting the upload of blob {digest} answered {described}")));
            }
            header(&response, "location")
                .ok_or_else(|| client.error(format!("the upload of blob {digest} has no Location")))?
        }
    };
    let with_digest = |location: &str| {
        let sep = if location.contains('?') { '&' } else { '?' };
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("digest", digest)
            .finish();
        client.location(&format!("{location}{sep}{query}"))
    };
    let report = |done: u64| {
        progress(Progress {
            status: "Pushing".into(),
            id: Some(id.to_string()),
            current: Some(done),
            total: Some(size),
            ..Progress::default()
        })
    };
    let octets = [("content-type", "application/octet-stream")];
    let mut finish_body = Body::File {
        path,
        offset: 0,
        len: size,
        progress: Some(&report),
    };
    if size > CHUNK {
        let mut offset = 0;
        while offset < size {
            let len = CHUNK.min(size - offset);
            let range = format!("{}-{}", offset, offset + len - 1);
            let mut response = client.send(
                "PATCH",
                &client.location(&location),
                &[octets[0], ("content-range", &range)],
                &Body::File {
                    path,
                    offset,
                    len,
                    progress: None,
                },
            )?;
            if response.status().as_u16() != 202 {
                let described = describe_error(&mut response);
                return Err(client.error(format!("uploading bytes {range} of blob {digest} answered {described}")));
            }
            offset += len;
            *sent += len;
            report(offset);
            if let Some(next) = header(&response, "location") {
                location = next;
            }
        }
        finish_body = Body::Empty;
    }
    let mut response = client.send("PUT", &with_digest(&location), &octets, &finish_body)?;
    if response.status().as_u16() != 201 {
        let described = describe_error(&mut response);
        return Err(client.error(format!("finishing the upload of blob {digest} answered {described}")));
    }
    if size <= CHUNK {
        *sent += size;
    }
    Ok(None)
}
