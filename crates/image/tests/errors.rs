//! What the image store refuses, and that a refused load leaves nothing
//! behind: no blob, no record, no temp file.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;

use berth_image::{Error, ImageStore};
use berth_model::Reference;
use common::*;

/// Nothing but what `before` had: same records, same blobs, no temp files.
fn assert_unchanged(root: &Path, before: &[String]) {
    let blobs: Vec<String> = files_under(&root.join("image/blobs"));
    assert_eq!(blobs, before, "blobs changed");
    assert!(files_under(&root.join("image/blobs/tmp")).is_empty());
    assert!(fs::read_dir(root.join("image/snapshots/tmp")).unwrap().next().is_none());
}

fn load_err(images: &ImageStore, archive: &Path) -> Error {
    images.load(archive, &mut |_| {}).unwrap_err()
}

#[test]
fn truncated_archives_are_refused() {
    let (root, images) = new_store();
    let tar = busybox_layout().layout.tar();
    for (name, bytes) in [
        ("half.tar", tar[..tar.len() / 2].to_vec()),
        ("header.tar", tar[..700].to_vec()),
        ("half.tar.gz", gzip(&tar)[..gzip(&tar).len() / 2].to_vec()),
        ("empty.tar", Vec::new()),
    ] {
        let archive = write_archive(root.path(), name, &bytes);
        let err = load_err(&images, &archive);
        assert!(matches!(err, Error::Archive { .. }), "{name}: {err:?}");
        assert!(
            err.to_string().starts_with(&format!("archive {}: ", archive.display())),
            "{err}"
        );
        assert!(images.list().unwrap().is_empty());
        assert_unchanged(root.path(), &[]);
    }
}

#[test]
fn corrupt_oci_layer_names_its_digest() {
    let (root, images) = new_store();
    let mut fixture = busybox_layout();
    let digest = fixture.layers[1].digest();
    let blob = fixture.layout.blobs.get_mut(&digest).unwrap();
    let last = blob.len() - 1;
    blob[last] ^= 0xff;
    let archive = write_archive(root.path(), "corrupt.tar", &fixture.layout.tar());
    let err = load_err(&images, &archive);
    let Error::DigestMismatch { digest: named, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(named, &digest);
    let message = err.to_string();
    assert!(
        message.contains(&digest) && message.contains(&archive.display().to_string()),
        "{message}"
    );
    assert!(images.list().unwrap().is_empty());
    assert_unchanged(root.path(), &[]);
}

#[test]
fn oci_layer_not_matching_its_diff_id_is_refused() {
    let (root, images) = new_store();
    let base = Blob::gzip(Layer::new().file("a", "a").build());
    let mut layout = OciLayout::default();
    let wrong = sha256(b"something else");
    let made = layout.image(
        std::slice::from_ref(&base),
        config(std::slice::from_ref(&wrong), "x"),
        None,
    );
    layout.add_to_index(made.descriptor, Some("wrong:1"));
    let archive = write_archive(root.path(), "wrong.tar", &layout.tar());
    let err = load_err(&images, &archive);
    let Error::DiffIdMismatch {
        digest,
        expected,
        actual,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!((digest, expected, actual), (&base.digest(), &wrong, &base.diff_id));
    assert_unchanged(root.path(), &[]);
}

#[test]
fn corrupt_docker_layer_names_layer_and_archive() {
    let (root, images) = new_store();
    let layer = Layer::new().file("etc/motd", "hello\n").build();
    let mut docker = DockerArchive::default();
    docker.image(std::slice::from_ref(&layer), config(&[sha256(&layer)], "d"), &["d:1"]);
    let (path, bytes) = docker.files.iter_mut().find(|(p, _)| p.ends_with("layer.tar")).unwrap();
    let path = path.clone();
    let at = bytes.windows(5).position(|w| w == b"hello").unwrap();
    bytes[at] = b'j';
    let corrupted = sha256(bytes);
    let archive = write_archive(root.path(), "docker.tar", &docker.tar());
    let message = load_err(&images, &archive).to_string();
    assert_eq!(
        message,
        format!(
            "archive {}: layer {corrupted} ({path}): uncompressed content has digest {corrupted} but the image config lists diff id {}",
            archive.display(),
            sha256(&layer)
        )
    );
    assert_unchanged(root.path(), &[]);
}

#[test]
fn failed_load_keeps_existing_content_and_adds_none() {
    let (root, images) = new_store();
    let fixture = busybox_layout();
    let existing = images
        .load(&write_archive(root.path(), "b.tar", &fixture.layout.tar()), &mut |_| {})
        .unwrap();
    let before = files_under(&root.path().join("image/blobs"));

    // Two images sharing busybox's base layer; the second is broken, so neither may land.
    let mut layout = OciLayout::default();
    let shared = fixture.layers[0].clone();
    let fresh = Blob::zstd(Layer::new().file("fresh", "new content").build());
    let good = layout.image(
        &[shared.clone(), fresh.clone()],
        config(&[shared.diff_id.clone(), fresh.diff_id.clone()], "good"),
        None,
    );
    layout.add_to_index(good.descriptor, Some("good:1"));
    let broken = layout.image(
        std::slice::from_ref(&shared),
        config(&[sha256(b"not it")], "broken"),
        None,
    );
    layout.add_to_index(broken.descriptor, Some("broken:1"));
    let err = load_err(&images, &write_archive(root.path(), "two.tar", &layout.tar()));
    assert!(matches!(err, Error::DiffIdMismatch { .. }), "{err:?}");

    assert_eq!(images.list().unwrap(), existing);
    assert!(matches!(images.resolve("good:1"), Err(Error::NotFound(_))));
    assert_unchanged(root.path(), &before);
}

#[test]
fn not_an_image_archive() {
    let (root, images) = new_store();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "random.tar",
            tar_of(&[("README".into(), b"hi".to_vec())]),
            "is neither an OCI image layout nor a `docker save` archive",
        ),
        (
            "notes.txt",
            b"hello\n".to_vec(),
            "is neither an OCI image layout nor a `docker save` archive (reading it as a tar archive: ",
        ),
        (
            "noblob.tar",
            {
                let mut fixture = busybox_layout();
                fixture.layout.blobs.remove(&fixture.made.manifest_digest);
                fixture.layout.tar()
            },
            "is missing",
        ),
        (
            "badjson.tar",
            tar_of(&[
                ("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
                ("index.json".into(), b"{".to_vec()),
            ]),
            "index.json: not a valid image index",
        ),
        (
            "badversion.tar",
            tar_of(&[
                ("oci-layout".into(), br#"{"imageLayoutVersion":"2.0.0"}"#.to_vec()),
                ("index.json".into(), b"{}".to_vec()),
            ]),
            "unsupported oci image layout version \"2.0.0\"",
        ),
    ];
    for (name, bytes, want) in cases {
        let archive = write_archive(root.path(), name, &bytes);
        let message = load_err(&images, &archive).to_string();
        assert!(message.contains(want) && message.contains(name), "{name}: {message}");
        assert_unchanged(root.path(), &[]);
    }
    let missing = root.path().join("missing.tar");
    let message = load_err(&images, &missing).to_string();
    assert!(
        message.starts_with(&format!("opening archive {}: ", missing.display())),
        "{message}"
    );
}

#[test]
fn unknown_and_malformed_references() {
    let (root, images) = new_store();
    images
        .load(
            &write_archive(root.path(), "b.tar", &busybox_layout().layout.tar()),
            &mut |_| {},
        )
        .unwrap();
    let no_container = |_: &str| false;

    for reference in [
        "nope",
        "nope:1",
        "abcdef0123",
        &format!("sha256:{}", "0".repeat(64)),
        &format!("busybox@sha256:{}", "0".repeat(64)),
    ] {
        let err = images.resolve(reference).unwrap_err();
        assert_eq!(err.to_string(), format!("no such image: {reference}"));
        assert!(matches!(
            images.remove(reference, true, &no_container),
            Err(Error::NotFound(_))
        ));
        assert!(matches!(images.tag(reference, "x:1"), Err(Error::NotFound(_))));
        let mut out = Vec::new();
        assert!(matches!(
            images.save(&[reference.to_string()], &mut out),
            Err(Error::NotFound(_))
        ));
    }
    for reference in ["Bad/Name", "busybox:bad tag", "a//b", ""] {
        let err = images.resolve(reference).unwrap_err();
        assert!(matches!(err, Error::InvalidReference(_)), "{err:?}");
        assert_eq!(err.to_string(), Reference::parse(reference).unwrap_err());
    }
    let err = images.tag("busybox", "Upper:1").unwrap_err();
    assert_eq!(err.to_string(), Reference::parse("Upper:1").unwrap_err());
    let err = images
        .tag("busybox", &format!("x@sha256:{}", "a".repeat(64)))
        .unwrap_err();
    assert!(err.to_string().contains("a tag cannot contain a digest"), "{err}");
    assert!(matches!(images.resolve("sha256:xyz"), Err(Error::InvalidReference(_))));
    assert!(matches!(images.blob_path("md5:abc"), Err(Error::InvalidDigest(_))));
    assert!(matches!(
        images.blob_path(&format!("sha256:{}", "1".repeat(64))),
        Err(Error::BlobNotFound(_))
    ));
}

#[test]
fn ambiguous_id_prefix() {
    let (root, images) = new_store();
    let layer = Blob::gzip(Layer::new().file("a", "a").build());
    let diff_ids = [layer.diff_id.clone()];
    // Find two configs whose ids share their first four hex digits.
    let first = config(&diff_ids, "n0");
    let prefix = hex_of(&sha256(&first))[..4].to_string();
    let second = (1..2_000_000)
        .map(|i| config(&diff_ids, &format!("n{i}")))
        .find(|c| hex_of(&sha256(c)).starts_with(&prefix))
        .unwrap();
    let mut layout = OciLayout::default();
    let a = layout.image(std::slice::from_ref(&layer), first, None);
    let b = layout.image(std::slice::from_ref(&layer), second, None);
    layout.add_to_index(a.descriptor, Some("a:1"));
    layout.add_to_index(b.descriptor, Some("b:1"));
    let loaded = images
        .load(&write_archive(root.path(), "ab.tar", &layout.tar()), &mut |_| {})
        .unwrap();
    assert_eq!(loaded.len(), 2);

    let err = images.resolve(&prefix).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("image id prefix \"{prefix}\" is ambiguous: it matches 2 images")
    );
    assert!(matches!(
        images.resolve(&format!("sha256:{prefix}")),
        Err(Error::AmbiguousReference { count: 2, .. })
    ));
    // Longer prefixes tell them apart.
    assert_eq!(
        images.resolve(&hex_of(&a.config_digest)[..16]).unwrap().id,
        a.config_digest
    );
    assert_eq!(
        images.resolve(&hex_of(&b.config_digest)[..16]).unwrap().id,
        b.config_digest
    );
    // Prefixes shorter than four digits are names, not ids.
    assert!(matches!(images.resolve(&prefix[..3]), Err(Error::NotFound(_))));
}

#[test]
fn hostile_layer_fails_to_unpack_and_writes_nothing_outside() {
    let (root, images) = new_store();
    // `tar::Builder` refuses `..`, so write the name into the header by hand.
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(4);
    let name = b"../../../../evil";
    header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
    header.set_cksum();
    builder.append(&header, &b"evil"[..]).unwrap();
    let layer = Blob::gzip(builder.into_inner().unwrap());
    let mut layout = OciLayout::default();
    let made = layout.image(
        std::slice::from_ref(&layer),
        config(std::slice::from_ref(&layer.diff_id), "evil"),
        None,
    );
    layout.add_to_index(made.descriptor, Some("evil:1"));
    let image = images
        .load(&write_archive(root.path(), "evil.tar", &layout.tar()), &mut |_| {})
        .unwrap()
        .remove(0);

    let err = images.layer_dirs(&image, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "unpacking layer {}: entry \"../../../../evil\": path with '..' escapes the layer",
            layer.digest()
        )
    );
    assert!(fs::read_dir(root.path().join("image/snapshots/tmp"))
        .unwrap()
        .next()
        .is_none());
    let snapshot_dirs: Vec<_> = fs::read_dir(root.path().join("image/snapshots")).unwrap().collect();
    assert_eq!(snapshot_dirs.len(), 1, "only tmp/");
    assert!(!root.path().join("evil").exists() && !root.path().join("image/evil").exists());
}
