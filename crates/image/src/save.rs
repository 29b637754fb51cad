//! Export: an OCI image layout tarball holding the requested images, with a
//! docker `manifest.json` beside `index.json` so that `docker load` takes it
//! too. Output is deterministic: same images, same bytes.

use std::collections::BTreeSet;
use std::io::{self, Write};

use berth_model::{Image, Reference};
use oci_spec::image::ANNOTATION_REF_NAME;
use serde_json::json;

use crate::error::{io_err, Error, Result};
use crate::load::{blob_entry, OCI_INDEX, OCI_MANIFEST};
use crate::refs::By;
use crate::ImageStore;

pub(crate) fn save(images: &ImageStore, refs: &[String], out: &mut dyn Write) -> Result<()> {
    if refs.is_empty() {
        return Err(Error::InvalidReference(
            "no image to save: give at least one reference".into(),
        ));
    }
    // (image, name it was asked for by); resolve everything before writing anything.
    let mut wanted: Vec<(Image, Option<String>)> = Vec::new();
    for reference in refs {
        let (image, by) = images.resolve_inner(reference)?;
        let name = match by {
            By::Tag(name) => Some(name),
            By::Id => None,
        };
        if !wanted.iter().any(|(i, n)| i.id == image.id && *n == name) {
            wanted.push((image, name));
        }
    }
    let blobs = &images.inner.blobs;
    let mut digests = BTreeSet::new();
    for (image, _) in &wanted {
        digests.insert(image.manifest_digest.to_string());
        digests.insert(image.id.to_string());
        digests.extend(image.layers.iter().map(|l| l.to_string()));
    }
    for digest in &digests {
        if !blobs.contains(digest)? {
            let owner = wanted
                .iter()
                .find(|(i, _)| i.id == *digest || i.manifest_digest == *digest || i.layers.iter().any(|l| l == digest));
            return Err(Error::Corrupt {
                id: owner.map(|(i, _)| i.id.to_string()).unwrap_or_default(),
                message: format!("blob {digest} is missing from the content store"),
            });
        }
    }

    let write_err = |e: io::Error| Error::Io {
        action: "writing image archive of",
        path: refs.join(" ").into(),
        source: e,
    };
    let mut tar = tar::Builder::new(out);
    append_dir(&mut tar, "blobs/").map_err(write_err)?;
    append_dir(&mut tar, "blobs/sha256/").map_err(write_err)?;
    append_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(write_err)?;
    for digest in &digests {
        let path = blobs.path(digest)?;
        let mut file = blobs.open_blob(digest)?;
        let size = file.metadata().map_err(io_err("reading metadata of", &path))?.len();
        let mut header = file_header(size);
        tar.append_data(&mut header, blob_entry(digest), &mut file)
            .map_err(io_err("exporting blob", &path))?;
    }

    let mut manifests = Vec::new();
    for (image, name) in &wanted {
        let path = blobs.path(&image.manifest_digest)?;
        let manifest = std::fs::read(&path).map_err(io_err("reading", &path))?;
        let media_type = serde_json::from_slice::<serde_json::Value>(&manifest)
            .ok()
            .and_then(|m| m.get("mediaType").and_then(|t| t.as_str()).map(String::from))
            .unwrap_or_else(|| OCI_MANIFEST.to_string());
        let mut descriptor = json!({
            "mediaType": media_type,
            "digest": image.manifest_digest,
            "size": manifest.len(),
        });
        if let Some(name) = name {
            let full = Reference::parse(name)
                .map(|r| format!("{}/{}:{}", r.registry, r.repository, r.tag.unwrap_or_default()))
                .map_err(Error::InvalidReference)?;
            descriptor["annotations"] = json!({
                "io.containerd.image.name": full,
                ANNOTATION_REF_NAME: name,
            });
        }
        manifests.push(descriptor);
    }
    let index = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
    append_bytes(&mut tar, "index.json", &to_json(&index)).map_err(write_err)?;

    // Docker's format: one entry per image, with all the names asked for.
    let mut docker = Vec::new();
    let mut seen = BTreeSet::new();
    for (image, _) in &wanted {
        if !seen.insert(image.id.clone()) {
            continue;
        }
        let names: Vec<&String> = wanted
            .iter()
            .filter(|(i, _)| i.id == image.id)
            .filter_map(|(_, n)| n.as_ref())
            .collect();
        docker.push(json!({
            "Config": blob_entry(&image.id),
            "RepoTags": names,
            "Layers": image.layers.iter().map(|l| blob_entry(l)).collect::<Vec<_>>(),
        }));
    }
    append_bytes(&mut tar, "manifest.json", &to_json(&json!(docker))).map_err(write_err)?;
    tar.into_inner().and_then(|out| out.flush()).map_err(write_err)?;
    Ok(())
}

fn to_json(value: &serde_json::Value) -> Vec<u8> {
    // Serialising a `Value` cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn file_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, path: &str, bytes: &[u8]) -> io::Result<()> {
    let mut header = file_header(bytes.len() as u64);
    tar.append_data(&mut header, path, bytes)
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str) -> io::Result<()> {
    let mut header = file_header(0);
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o755);
    tar.append_data(&mut header, path, io::empty())
}
