//! Builders for the small image archives the integration tests make for
//! themselves: layer tarballs, OCI image layouts and `docker save` archives.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use berth_image::ImageStore;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap()
}

/// A fresh data root with an opened store.
pub fn new_store() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    (dir, store)
}

pub fn open_store(data_root: &Path) -> ImageStore {
    let db = berth_store::Store::open(&data_root.join("berth.redb")).unwrap();
    ImageStore::open(data_root, berth_state::State::open(db).unwrap()).unwrap()
}

/// Every file under `dir` (recursively), as paths relative to it.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                out.push(entry.path().strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// A layer tarball, entry by entry.
#[derive(Default)]
pub struct Layer {
    builder: Option<tar::Builder<Vec<u8>>>,
}

impl Layer {
    pub fn new() -> Self {
        Self {
            builder: Some(tar::Builder::new(Vec::new())),
        }
    }

    fn append(mut self, kind: tar::EntryType, path: &str, data: &[u8], mode: u32, owner: (u64, u64)) -> Self {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(owner.0);
        header.set_gid(owner.1);
        header.set_mtime(1_700_000_000);
        header.set_size(data.len() as u64);
        self.builder
            .as_mut()
            .unwrap()
            .append_data(&mut header, path, data)
            .unwrap();
        self
    }

    pub fn dir(self, path: &str) -> Self {
        self.append(tar::EntryType::Directory, path, b"", 0o755, (0, 0))
    }

    pub fn file(self, path: &str, content: &str) -> Self {
        self.append(tar::EntryType::Regular, path, content.as_bytes(), 0o644, (0, 0))
    }

    pub fn file_with(self, path: &str, content: &str, mode: u32, owner: (u64, u64)) -> Self {
        self.append(tar::EntryType::Regular, path, content.as_bytes(), mode, owner)
    }

    /// Deletes `path` of a lower layer.
    pub fn whiteout(self, path: &str) -> Self {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let wh = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{dir}/.wh.{name}")
        };
        self.append(tar::EntryType::Regular, &wh, b"", 0o644, (0, 0))
    }

    /// Hides everything lower layers have in `dir`.
    pub fn opaque(self, dir: &str) -> Self {
        self.append(
            tar::EntryType::Regular,
            &format!("{dir}/.wh..wh..opq"),
            b"",
            0o644,
            (0, 0),
        )
    }

    pub fn build(mut self) -> Vec<u8> {
        self.builder.take().unwrap().into_inner().unwrap()
    }
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

pub fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).unwrap()
}

/// A layer as stored: blob bytes, media type, and the digest of its tarball.
#[derive(Clone)]
pub struct Blob {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub diff_id: String,
}

impl Blob {
    pub fn plain(tar: Vec<u8>) -> Self {
        Self {
            diff_id: sha256(&tar),
            bytes: tar,
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        }
    }
    pub fn gzip(tar: Vec<u8>) -> Self {
        Self {
            diff_id: sha256(&tar),
            bytes: gzip(&tar),
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        }
    }
    pub fn zstd(tar: Vec<u8>) -> Self {
        Self {
            diff_id: sha256(&tar),
            bytes: zstd(&tar),
            media_type: "application/vnd.oci.image.layer.v1.tar+zstd".into(),
        }
    }
    pub fn digest(&self) -> String {
        sha256(&self.bytes)
    }
}

/// An image config listing `diff_ids`; `label` makes configs differ.
pub fn config(diff_ids: &[String], label: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "created": "2024-01-02T03:04:05Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": ["/bin/entry"],
            "Cmd": ["sh"],
            "Env": ["PATH=/usr/bin:/bin"],
            "WorkingDir": "/srv",
            "User": "1000:1000",
            "Labels": { "test": label },
            "StopSignal": "SIGQUIT",
            "ExposedPorts": { "80/tcp": {} }
        },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": [{ "created_by": "test" }]
    }))
    .unwrap()
}

/// The ids of an image put into a layout or archive.
#[derive(Debug, Clone)]
pub struct Made {
    pub config_digest: String,
    pub manifest_digest: String,
    pub descriptor: Value,
}

/// An OCI image layout, blob by blob.
#[derive(Default)]
pub struct OciLayout {
    pub blobs: BTreeMap<String, Vec<u8>>,
    pub index: Vec<Value>,
}

impl OciLayout {
    pub fn add_blob(&mut self, bytes: Vec<u8>) -> String {
        let digest = sha256(&bytes);
        self.blobs.insert(digest.clone(), bytes);
        digest
    }

    /// Adds an image's blobs and manifest; returns its descriptor (not yet in the index).
    pub fn image(&mut self, layers: &[Blob], config: Vec<u8>, platform: Option<(&str, &str)>) -> Made {
        let config_size = config.len();
        let config_digest = self.add_blob(config);
        let layer_descriptors: Vec<Value> = layers
            .iter()
            .map(|l| json!({ "mediaType": l.media_type, "digest": self.add_blob(l.bytes.clone()), "size": l.bytes.len() }))
            .collect();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size },
            "layers": layer_descriptors,
        }))
        .unwrap();
        let size = manifest.len();
        let manifest_digest = self.add_blob(manifest);
        let mut descriptor = json!({ "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": size });
        if let Some((os, arch)) = platform {
            descriptor["platform"] = json!({ "os": os, "architecture": arch });
        }
        Made {
            config_digest,
            manifest_digest,
            descriptor,
        }
    }

    /// Adds a nested index over `children`; returns its descriptor.
    pub fn nested_index(&mut self, children: &[Value]) -> Value {
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": children,
        }))
        .unwrap();
        let size = index.len();
        let digest = self.add_blob(index);
        json!({ "mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest, "size": size })
    }

    /// Lists `descriptor` in index.json, named the way containerd names images.
    pub fn add_to_index(&mut self, mut descriptor: Value, name: Option<&str>) {
        if let Some(name) = name {
            let tag = name.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest");
            descriptor["annotations"] = json!({
                "io.containerd.image.name": format!("docker.io/library/{name}"),
                "org.opencontainers.image.ref.name": tag,
            });
        }
        self.index.push(descriptor);
    }

    pub fn tar(&self) -> Vec<u8> {
        let mut files: Vec<(String, Vec<u8>)> = vec![
            ("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
            (
                "index.json".into(),
                serde_json::to_vec(&json!({ "schemaVersion": 2, "manifests": self.index })).unwrap(),
            ),
        ];
        for (digest, bytes) in &self.blobs {
            files.push((format!("blobs/sha256/{}", hex_of(digest)), bytes.clone()));
        }
        tar_of(&files)
    }
}

/// A `docker save` archive: `<config hex>.json`, `<id>/layer.tar`, `manifest.json`.
#[derive(Default)]
pub struct DockerArchive {
    pub files: Vec<(String, Vec<u8>)>,
    pub manifest: Vec<Value>,
}

impl DockerArchive {
    /// Adds an image with uncompressed layers; returns its config digest.
    pub fn image(&mut self, layers: &[Vec<u8>], config: Vec<u8>, repo_tags: &[&str]) -> String {
        let config_digest = sha256(&config);
        let config_path = format!("{}.json", hex_of(&config_digest));
        self.files.push((config_path.clone(), config));
        let mut layer_paths = Vec::new();
        for (i, layer) in layers.iter().enumerate() {
            // Docker names layer dirs by a v1 id, which is not the layer digest.
            let v1_id = hex_of(&sha256(format!("{config_digest}{i}").as_bytes())).to_string();
            let path = format!("{v1_id}/layer.tar");
            self.files.push((path.clone(), layer.clone()));
            layer_paths.push(path);
        }
        self.manifest
            .push(json!({ "Config": config_path, "RepoTags": repo_tags, "Layers": layer_paths }));
        config_digest
    }

    pub fn tar(&self) -> Vec<u8> {
        let mut files = self.files.clone();
        files.push(("manifest.json".into(), serde_json::to_vec(&self.manifest).unwrap()));
        tar_of(&files)
    }
}

pub fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(bytes.len() as u64);
        header.set_mtime(0);
        builder.append_data(&mut header, path, &bytes[..]).unwrap();
    }
    builder.into_inner().unwrap()
}

/// Writes `bytes` to `dir/name` and returns the path.
pub fn write_archive(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The base image of most tests: a gzip layer, then a zstd layer that deletes
/// `etc/passwd` and makes `var/cache` opaque.
pub struct BusyboxLayout {
    pub layout: OciLayout,
    pub made: Made,
    pub layers: Vec<Blob>,
}

pub fn busybox_layout() -> BusyboxLayout {
    let base = Blob::gzip(
        Layer::new()
            .dir("bin")
            .file_with("bin/su", "#!/bin/sh\n", 0o4755, (0, 0))
            .dir("etc")
            .file("etc/passwd", "root:x:0:0::/root:/bin/sh\n")
            .file("etc/hostname", "box\n")
            .dir("var")
            .dir("var/cache")
            .file("var/cache/old", "old\n")
            .file_with("home/user/notes", "mine\n", 0o600, (1000, 1000))
            .build(),
    );
    let top = Blob::zstd(
        Layer::new()
            .dir("etc")
            .whiteout("etc/passwd")
            .dir("var/cache")
            .opaque("var/cache")
            .file("var/cache/new", "new\n")
            .build(),
    );
    let layers = vec![base, top];
    let mut layout = OciLayout::default();
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let made = layout.image(&layers, config(&diff_ids, "busybox"), None);
    layout.add_to_index(made.descriptor.clone(), Some("busybox:latest"));
    BusyboxLayout { layout, made, layers }
}
