//! Protocol behaviour of the registry library: every operation and every
//! error the spec names, on a real store and content store in a temp dir.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_registry::{Code, Config, Registry};
use sha2::{Digest as _, Sha256};

struct Fixture {
    dir: tempfile::TempDir,
    registry: Registry,
    images: berth_image::ImageStore,
    now: Arc<AtomicU64>,
}

fn config(now: &Arc<AtomicU64>) -> Config {
    let now = now.clone();
    Config {
        clock: Arc::new(move || SystemTime::UNIX_EPOCH + Duration::from_secs(now.load(Ordering::SeqCst))),
        max_manifest_size: 64 * 1024,
        ..Config::default()
    }
}

fn open_in(dir: tempfile::TempDir, now: Arc<AtomicU64>) -> Fixture {
    let store = berth_store::Store::open(&dir.path().join("berth.redb")).expect("store");
    let images =
        berth_image::ImageStore::open(dir.path(), berth_state::State::open(store).expect("state")).expect("images");
    let registry = Registry::open(images.clone(), dir.path(), config(&now)).expect("registry");
    Fixture {
        dir,
        registry,
        images,
        now,
    }
}

fn fixture() -> Fixture {
    open_in(
        tempfile::tempdir().expect("tempdir"),
        Arc::new(AtomicU64::new(1_000_000)),
    )
}

impl Fixture {
    fn reopen(self) -> Fixture {
        let Fixture {
            dir,
            now,
            registry,
            images,
        } = self;
        drop((registry, images));
        open_in(dir, now)
    }
    fn advance(&self, secs: u64) {
        self.now.fetch_add(secs, Ordering::SeqCst);
    }
    fn push_blob(&self, repo: &str, content: &[u8]) -> String {
        let d = digest(content);
        self.registry.put_blob(repo, &d, &mut &content[..]).expect("put blob");
        d
    }
    /// Pushes config + one layer and an image manifest; returns the manifest digest.
    fn push_image(&self, repo: &str, tag: &str, layer: &[u8]) -> (String, Vec<u8>) {
        let config = format!("{{\"layer\":{}}}", layer.len());
        let c = self.push_blob(repo, config.as_bytes());
        let l = self.push_blob(repo, layer);
        let m = manifest(&c, config.len(), &l, layer.len(), None);
        let put = self
            .registry
            .put_manifest(repo, tag, Some(OCI_MANIFEST), &m)
            .expect("put manifest");
        (put.digest, m)
    }
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn digest(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

fn manifest(
    config: &str,
    config_size: usize,
    layer: &str,
    layer_size: usize,
    subject: Option<(&str, &str)>,
) -> Vec<u8> {
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_size}],
    });
    if let Some((subject, artifact_type)) = subject {
        m["subject"] = serde_json::json!({"mediaType": OCI_MANIFEST, "digest": subject, "size": 1});
        m["artifactType"] = serde_json::json!(artifact_type);
    }
    serde_json::to_vec(&m).expect("json")
}

fn code<T: std::fmt::Debug>(r: berth_registry::Result<T>) -> Code {
    r.expect_err("should fail").code()
}

#[test]
fn monolithic_blob_upload_and_read() {
    let f = fixture();
    let d = f.push_blob("a/b/c", b"hello");
    let info = f.registry.blob("a/b/c", &d).expect("blob");
    assert_eq!(info.size, 5);
    assert_eq!(std::fs::read(&info.path).expect("read"), b"hello");
    // One copy: the blob is in the image store's content store.
    assert_eq!(f.images.blob_path(&d).expect("content store"), info.path);
    // Repository scoped: another repository does not see it.
    assert_eq!(code(f.registry.blob("other", &d)), Code::BlobUnknown);
}

#[test]
fn digest_mismatch_changes_nothing() {
    let f = fixture();
    let wrong = digest(b"other");
    assert_eq!(
        code(f.registry.put_blob("r", &wrong, &mut &b"hello"[..])),
        Code::DigestInvalid
    );
    assert_eq!(code(f.registry.blob("r", &wrong)), Code::BlobUnknown);
    assert_eq!(code(f.registry.blob("r", &digest(b"hello"))), Code::BlobUnknown);
    assert!(f.images.blob_path(&digest(b"hello")).is_err());
    assert_eq!(
        code(f.registry.put_blob("r", "sha256:xyz", &mut &b""[..])),
        Code::DigestInvalid
    );
    assert_eq!(
        code(f.registry.put_blob("r", "md5:abc", &mut &b""[..])),
        Code::DigestInvalid
    );
    // Nothing was left in the uploads dir.
    let uploads = f.dir.path().join("registry/uploads");
    assert_eq!(std::fs::read_dir(uploads).expect("uploads").count(), 0);
}

#[test]
fn invalid_names_and_tags() {
    let f = fixture();
    assert_eq!(code(f.registry.start_upload("Upper")), Code::NameInvalid);
    assert_eq!(code(f.registry.blob("a//b", &digest(b""))), Code::NameInvalid);
    let (_, m) = f.push_image("r", "v1", b"layer");
    assert_eq!(
        code(f.registry.put_manifest("r", "-bad", Some(OCI_MANIFEST), &m)),
        Code::TagInvalid
    );
    assert_eq!(code(f.registry.manifest("r", "bad/tag")), Code::TagInvalid);
}

#[test]
fn chunked_upload_in_order_out_of_order_and_overlapping() {
    let f = fixture();
    let r = &f.registry;
    let s = r.start_upload("r").expect("start");
    assert_eq!(s.offset, 0);
    let s = r
        .upload_chunk("r", &s.uuid, Some((0, 2)), &mut &b"abc"[..])
        .expect("chunk 1");
    assert_eq!(s.offset, 3);
    // Overlapping and out-of-order chunks are refused and change nothing.
    assert_eq!(
        code(r.upload_chunk("r", &s.uuid, Some((2, 4)), &mut &b"cde"[..])),
        Code::RangeNotSatisfiable
    );
    assert_eq!(
        code(r.upload_chunk("r", &s.uuid, Some((5, 6)), &mut &b"fg"[..])),
        Code::RangeNotSatisfiable
    );
    // A body that does not match its range changes nothing.
    assert_eq!(
        code(r.upload_chunk("r", &s.uuid, Some((3, 9)), &mut &b"de"[..])),
        Code::BlobUploadInvalid
    );
    assert_eq!(r.upload_status("r", &s.uuid).expect("status").offset, 3);
    // Without a range a chunk is appended.
    let s = r.upload_chunk("r", &s.uuid, None, &mut &b"de"[..]).expect("chunk 2");
    assert_eq!(s.offset, 5);
    // Finishing with the wrong digest keeps the upload as it was.
    assert_eq!(
        code(r.finish_upload("r", &s.uuid, &digest(b"abcdeX"), None, &mut &b"f"[..])),
        Code::DigestInvalid
    );
    assert_eq!(r.upload_status("r", &s.uuid).expect("status").offset, 5);
    let d = r
        .finish_upload("r", &s.uuid, &digest(b"abcdef"), Some((5, 5)), &mut &b"f"[..])
        .expect("finish");
    assert_eq!(
        std::fs::read(r.blob("r", &d).expect("blob").path).expect("read"),
        b"abcdef"
    );
    // The upload is gone once finished.
    assert_eq!(code(r.upload_status("r", &s.uuid)), Code::BlobUploadUnknown);
}

#[test]
fn uploads_belong_to_their_repository_and_can_be_cancelled() {
    let f = fixture();
    let r = &f.registry;
    let s = r.start_upload("one").expect("start");
    assert_eq!(code(r.upload_status("two", &s.uuid)), Code::BlobUploadUnknown);
    assert_eq!(code(r.upload_status("one", "../../etc")), Code::BlobUploadUnknown);
    r.cancel_upload("one", &s.uuid).expect("cancel");
    assert_eq!(code(r.upload_status("one", &s.uuid)), Code::BlobUploadUnknown);
}

/// A reader that gives some bytes and then fails, as a dropped connection does.
struct Dropped<'a>(&'a [u8]);
impl Read for Dropped<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() {
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "connection reset"));
        }
        let n = self.0.len().min(buf.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn dropped_connection_leaves_a_resumable_upload_also_after_reopen() {
    let f = fixture();
    let s = f.registry.start_upload("r").expect("start");
    assert_eq!(
        code(f.registry.upload_chunk("r", &s.uuid, None, &mut Dropped(b"first-"))),
        Code::BlobUploadInvalid
    );
    assert_eq!(f.registry.upload_status("r", &s.uuid).expect("status").offset, 6);
    // A restart (a new process) hashes what is on disk and resumes.
    let f = f.reopen();
    assert_eq!(f.registry.upload_status("r", &s.uuid).expect("status").offset, 6);
    f.registry
        .upload_chunk("r", &s.uuid, Some((6, 11)), &mut &b"second"[..])
        .expect("resume");
    let want = digest(b"first-second");
    f.registry
        .finish_upload("r", &s.uuid, &want, None, &mut &b""[..])
        .expect("finish");
    assert_eq!(f.registry.blob("r", &want).expect("blob").size, 12);
}

#[test]
fn bytes_beyond_the_recorded_offset_are_cut_on_reopen() {
    let f = fixture();
    let s = f.registry.start_upload("r").expect("start");
    f.registry
        .upload_chunk("r", &s.uuid, None, &mut &b"abc"[..])
        .expect("chunk");
    // As if the process died after writing data but before recording the offset.
    let data = f.dir.path().join("registry/uploads").join(&s.uuid).join("data");
    std::fs::write(&data, b"abcGARBAGE").expect("write");
    let f = f.reopen();
    assert_eq!(f.registry.upload_status("r", &s.uuid).expect("status").offset, 3);
    let d = f
        .registry
        .finish_upload("r", &s.uuid, &digest(b"abcd"), None, &mut &b"d"[..])
        .expect("finish");
    assert_eq!(d, digest(b"abcd"));
}

#[test]
fn abandoned_uploads_expire_on_open_and_on_gc() {
    let f = fixture();
    let old = f.registry.start_upload("r").expect("start");
    f.advance(25 * 3600);
    let fresh = f.registry.start_upload("r").expect("start");
    let f = f.reopen();
    assert_eq!(code(f.registry.upload_status("r", &old.uuid)), Code::BlobUploadUnknown);
    assert_eq!(f.registry.upload_status("r", &fresh.uuid).expect("fresh").offset, 0);
    f.advance(25 * 3600);
    assert_eq!(f.registry.gc(Duration::from_secs(3600)).expect("gc").uploads_removed, 1);
    assert_eq!(
        code(f.registry.upload_status("r", &fresh.uuid)),
        Code::BlobUploadUnknown
    );
}

#[test]
fn cross_repository_mount() {
    let f = fixture();
    let d = f.push_blob("src", b"shared");
    assert!(f.registry.mount_blob("dst", "src", &d).expect("mount"));
    assert_eq!(f.registry.blob("dst", &d).expect("mounted").size, 6);
    // A blob the source does not have is not mounted.
    assert!(!f.registry.mount_blob("dst2", "nowhere", &d).expect("mount"));
    assert_eq!(code(f.registry.blob("dst2", &d)), Code::BlobUnknown);
}

#[test]
fn manifests_by_tag_and_digest() {
    let f = fixture();
    let (d, m) = f.push_image("r", "v1", b"layer");
    let by_tag = f.registry.manifest("r", "v1").expect("by tag");
    assert_eq!(
        (by_tag.digest.as_str(), by_tag.bytes.as_slice()),
        (d.as_str(), m.as_slice())
    );
    assert_eq!(by_tag.media_type, OCI_MANIFEST);
    assert_eq!(f.registry.manifest("r", &d).expect("by digest").bytes, m);
    // Push by digest: the content must have that digest.
    f.registry
        .put_manifest("r", &d, Some(OCI_MANIFEST), &m)
        .expect("by digest");
    assert_eq!(
        code(f.registry.put_manifest("r", &digest(b"x"), Some(OCI_MANIFEST), &m)),
        Code::DigestInvalid
    );
    assert_eq!(code(f.registry.manifest("r", "v2")), Code::ManifestUnknown);
    assert_eq!(code(f.registry.manifest("r", &digest(b"x"))), Code::ManifestUnknown);
    // Docker schema2 media types too; the media type may come from the document.
    let docker = String::from_utf8(m.clone())
        .expect("utf8")
        .replace(OCI_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json");
    let put = f
        .registry
        .put_manifest("r", "docker", None, docker.as_bytes())
        .expect("docker");
    assert_eq!(
        f.registry.manifest("r", &put.digest).expect("get").media_type,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
}

#[test]
fn bad_manifests_change_nothing() {
    let f = fixture();
    let (_, m) = f.push_image("r", "v1", b"layer");
    let missing = manifest(&digest(b"no config"), 9, &digest(b"no layer"), 8, None);
    assert_eq!(
        code(f.registry.put_manifest("r", "v1", Some(OCI_MANIFEST), &missing)),
        Code::ManifestBlobUnknown
    );
    // The blobs are in another repository only: still unknown here.
    assert_eq!(
        code(f.registry.put_manifest("elsewhere", "v1", Some(OCI_MANIFEST), &m)),
        Code::ManifestBlobUnknown
    );
    assert_eq!(
        code(f.registry.put_manifest("r", "v1", Some("text/plain"), b"{}")),
        Code::UnsupportedMediaType
    );
    assert_eq!(
        code(f.registry.put_manifest(
            "r",
            "v1",
            Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
            b"{}"
        )),
        Code::UnsupportedMediaType
    );
    assert_eq!(
        code(f.registry.put_manifest("r", "v1", Some(OCI_MANIFEST), b"not json")),
        Code::ManifestInvalid
    );
    assert_eq!(
        code(f.registry.put_manifest("r", "v1", Some(OCI_INDEX), &m)),
        Code::ManifestInvalid
    );
    let big = vec![b' '; 64 * 1024 + 1];
    assert_eq!(
        code(f.registry.put_manifest("r", "v1", Some(OCI_MANIFEST), &big)),
        Code::ManifestTooLarge
    );
    // v1 still names the first manifest.
    assert_eq!(f.registry.manifest("r", "v1").expect("v1").bytes, m);
    assert_eq!(f.registry.tags("r", None, None).expect("tags").0, vec!["v1"]);
}

#[test]
fn index_needs_its_manifests() {
    let f = fixture();
    let (d, m) = f.push_image("r", "amd64", b"layer");
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": d, "size": m.len(),
                       "platform": {"architecture": "amd64", "os": "linux"}}],
    }))
    .expect("json");
    f.registry
        .put_manifest("r", "multi", Some(OCI_INDEX), &index)
        .expect("index");
    assert_eq!(
        code(f.registry.put_manifest("other", "multi", Some(OCI_INDEX), &index)),
        Code::ManifestBlobUnknown
    );
    assert_eq!(f.registry.manifest("r", "multi").expect("get").media_type, OCI_INDEX);
}

#[test]
fn tags_and_catalog_paginate() {
    let f = fixture();
    for tag in ["c", "a", "b", "d"] {
        f.push_image("r", tag, b"layer");
    }
    f.push_image("x/y", "1", b"layer");
    let r = &f.registry;
    assert_eq!(
        r.tags("r", None, None).expect("all"),
        (vec!["a".into(), "b".into(), "c".into(), "d".into()], false)
    );
    assert_eq!(
        r.tags("r", Some(2), None).expect("page 1"),
        (vec!["a".into(), "b".into()], true)
    );
    assert_eq!(
        r.tags("r", Some(2), Some("b")).expect("page 2"),
        (vec!["c".into(), "d".into()], false)
    );
    assert_eq!(r.tags("r", Some(0), None).expect("none").0, Vec::<String>::new());
    assert_eq!(code(r.tags("unknown", None, None)), Code::NameUnknown);
    assert_eq!(
        r.catalog(None, None).expect("catalog"),
        (vec!["r".into(), "x/y".into()], false)
    );
    assert_eq!(r.catalog(Some(1), None).expect("catalog").0, vec!["r".to_string()]);
    assert_eq!(
        r.catalog(Some(1), Some("r")).expect("catalog"),
        (vec!["x/y".into()], false)
    );
}

#[test]
fn referrers_with_artifact_type_filter_and_tag_fallback() {
    let f = fixture();
    let (subject, _) = f.push_image("r", "v1", b"layer");
    let c = f.push_blob("r", b"{}");
    let sig = f.push_blob("r", b"signature");
    let sbom = f.push_blob("r", b"sbom");
    let m1 = manifest(&c, 2, &sig, 9, Some((&subject, "application/vnd.example.sig")));
    let m2 = manifest(&c, 2, &sbom, 4, Some((&subject, "application/vnd.example.sbom")));
    let p1 = f
        .registry
        .put_manifest("r", &digest(&m1), Some(OCI_MANIFEST), &m1)
        .expect("sig");
    assert_eq!(p1.subject.as_deref(), Some(subject.as_str()));
    f.registry
        .put_manifest("r", &digest(&m2), Some(OCI_MANIFEST), &m2)
        .expect("sbom");
    let all: serde_json::Value =
        serde_json::from_slice(&f.registry.referrers("r", &subject, None).expect("referrers")).expect("json");
    assert_eq!(all["mediaType"], OCI_INDEX);
    assert_eq!(all["manifests"].as_array().expect("list").len(), 2);
    let sigs: serde_json::Value = serde_json::from_slice(
        &f.registry
            .referrers("r", &subject, Some("application/vnd.example.sig"))
            .expect("filtered"),
    )
    .expect("json");
    assert_eq!(sigs["manifests"].as_array().expect("list").len(), 1);
    assert_eq!(sigs["manifests"][0]["digest"], p1.digest);
    assert_eq!(sigs["manifests"][0]["artifactType"], "application/vnd.example.sig");
    // No referrers: an empty index, not an error.
    let none: serde_json::Value =
        serde_json::from_slice(&f.registry.referrers("r", &digest(b"x"), None).expect("none")).expect("json");
    assert_eq!(none["manifests"].as_array().expect("list").len(), 0);
    // The tag-schema fallback: an index under the tag sha256-<hex>.
    let fallback_tag = subject.replace(':', "-");
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": p1.digest, "size": m1.len()}],
    }))
    .expect("json");
    f.registry
        .put_manifest("r", &fallback_tag, Some(OCI_INDEX), &index)
        .expect("fallback tag");
    assert_eq!(f.registry.manifest("r", &fallback_tag).expect("get").bytes, index);
}

#[test]
fn deletion_then_gc_removes_exactly_the_unreferenced_blobs() {
    let f = fixture();
    let (keep, _) = f.push_image("r", "keep", b"kept layer");
    let (gone, _) = f.push_image("r", "gone", b"deleted layer");
    let stray = f.push_blob("r", b"never referenced");
    let layer_gone = digest(b"deleted layer");
    let layer_kept = digest(b"kept layer");
    // Deleting by tag removes the tag only; by digest, the manifest.
    f.registry.delete_manifest("r", "gone").expect("untag");
    assert_eq!(code(f.registry.manifest("r", "gone")), Code::ManifestUnknown);
    f.registry.manifest("r", &gone).expect("still there by digest");
    f.registry.delete_manifest("r", &gone).expect("delete");
    assert_eq!(code(f.registry.manifest("r", &gone)), Code::ManifestUnknown);
    assert_eq!(code(f.registry.delete_manifest("r", &gone)), Code::ManifestUnknown);
    f.registry.delete_blob("r", &stray).expect("delete blob");
    assert_eq!(code(f.registry.blob("r", &stray)), Code::BlobUnknown);
    assert_eq!(code(f.registry.delete_blob("r", &stray)), Code::BlobUnknown);
    // A blob linked within the grace period survives, referenced or not.
    f.advance(10);
    let young = f.push_blob("r", b"young");
    let report = f.registry.gc(Duration::from_secs(5)).expect("gc");
    assert!(report.blobs_removed.contains(&layer_gone), "{report:?}");
    assert!(report.blobs_removed.contains(&stray), "{report:?}");
    assert!(report.blobs_removed.contains(&gone), "{report:?}");
    assert!(!report.blobs_removed.contains(&layer_kept), "{report:?}");
    assert!(!report.blobs_removed.contains(&young), "{report:?}");
    assert!(f.images.blob_path(&layer_gone).is_err());
    assert!(f.images.blob_path(&layer_kept).is_ok());
    f.registry.manifest("r", "keep").expect("kept image");
    assert_eq!(f.registry.manifest("r", &keep).expect("by digest").digest, keep);
    // Everything recorded survives a reopen (the image store collects at open).
    let f = f.reopen();
    f.registry.blob("r", &layer_kept).expect("kept layer after reopen");
    f.registry.manifest("r", "keep").expect("kept manifest after reopen");
    f.registry.blob("r", &young).expect("young blob after reopen");
}
