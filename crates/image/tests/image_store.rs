//! The image store end to end on a real data root: load OCI layouts and
//! docker archives, resolve, unpack into snapshots (whiteouts, opaque dirs,
//! shifted ids), tag, save, load the saved archive elsewhere, and remove.
//! These run as root: unpacking makes device nodes and `trusted.*` xattrs.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use berth_image::{Error, IdShift};
use common::*;

#[test]
fn image_store_is_shareable_between_threads() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<berth_image::ImageStore>();
}

fn no_container(_: &str) -> bool {
    false
}

#[test]
fn oci_layout_load_resolve_unpack_tag_save_remove() {
    let (root, images) = new_store();
    let fixture = busybox_layout();
    let archive = write_archive(root.path(), "busybox.tar.gz", &gzip(&fixture.layout.tar()));

    let mut lines = Vec::new();
    let loaded = images.load(&archive, &mut |p| lines.push(p.status)).unwrap();
    assert_eq!(loaded.len(), 1);
    let image = &loaded[0];
    assert_eq!(
        lines,
        vec![
            format!("Loading layer {}", fixture.layers[0].digest()),
            format!("Loading layer {}", fixture.layers[1].digest()),
            "Loaded image: busybox:latest".to_string(),
        ]
    );
    assert_eq!(image.id, fixture.made.config_digest);
    assert_eq!(image.manifest_digest, fixture.made.manifest_digest);
    assert_eq!(image.tags, vec!["busybox:latest"]);
    assert_eq!(
        image.layers,
        fixture.layers.iter().map(Blob::digest).collect::<Vec<_>>()
    );
    assert_eq!(
        image.diff_ids,
        fixture.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()
    );
    assert_eq!(
        image.size,
        fixture.layers.iter().map(|l| l.bytes.len() as u64).sum::<u64>()
    );
    assert_eq!((image.os.as_str(), image.architecture.as_str()), ("linux", "amd64"));
    assert_eq!(image.created.as_deref(), Some("2024-01-02T03:04:05Z"));
    assert_eq!(image.config.entrypoint, vec!["/bin/entry"]);
    assert_eq!(image.config.cmd, vec!["sh"]);
    assert_eq!(image.config.env, vec!["PATH=/usr/bin:/bin"]);
    assert_eq!(image.config.working_dir, "/srv");
    assert_eq!(image.config.user, "1000:1000");
    assert_eq!(image.config.labels.get("test").map(String::as_str), Some("busybox"));
    assert_eq!(image.config.stop_signal.as_deref(), Some("SIGQUIT"));

    assert_eq!(images.list().unwrap(), vec![image.clone()]);
    let blob_bytes: u64 = fixture.layout.blobs.values().map(|b| b.len() as u64).sum();
    assert_eq!(images.total_size().unwrap(), blob_bytes);
    let hex = hex_of(&image.id);
    for reference in [
        "busybox".to_string(),
        "busybox:latest".to_string(),
        "docker.io/library/busybox:latest".to_string(),
        image.id.to_string(),
        hex.to_string(),
        hex[..12].to_string(),
        hex[..4].to_string(),
        format!("sha256:{}", &hex[..8]),
        format!("busybox@{}", image.manifest_digest),
    ] {
        assert_eq!(images.resolve(&reference).unwrap().id, image.id, "{reference}");
    }
    assert!(images.blob_path(&image.manifest_digest).unwrap().is_file());

    // Unpack: top-most layer first.
    let dirs = images.layer_dirs(image, None).unwrap();
    let snapshots = root.path().join("image/snapshots");
    assert_eq!(
        dirs,
        vec![
            snapshots.join(hex_of(&image.diff_ids[1])),
            snapshots.join(hex_of(&image.diff_ids[0]))
        ]
    );
    let (top, base) = (&dirs[0], &dirs[1]);
    let whiteout = fs::symlink_metadata(top.join("etc/passwd")).unwrap();
    assert!(whiteout.file_type().is_char_device());
    assert_eq!(whiteout.rdev(), 0);
    assert!(!top.join("etc/.wh.passwd").exists());
    assert_eq!(
        xattr::get(top.join("var/cache"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    assert!(!top.join("var/cache/.wh..wh..opq").exists());
    assert_eq!(fs::read_to_string(top.join("var/cache/new")).unwrap(), "new\n");
    assert_eq!(
        fs::read_to_string(base.join("etc/passwd")).unwrap(),
        "root:x:0:0::/root:/bin/sh\n"
    );
    let su = fs::metadata(base.join("bin/su")).unwrap();
    assert_eq!((su.mode() & 0o7777, su.uid()), (0o4755, 0));
    assert_eq!(su.mtime(), 1_700_000_000);
    let notes = fs::metadata(base.join("home/user/notes")).unwrap();
    assert_eq!((notes.uid(), notes.gid(), notes.mode() & 0o7777), (1000, 1000, 0o600));
    // Cached: the same dirs, nothing unpacked again.
    let marker = base.join("marker");
    fs::write(&marker, "still here").unwrap();
    assert_eq!(images.layer_dirs(image, None).unwrap(), dirs);
    assert!(marker.exists());

    let tagged = images.tag("busybox", "localhost:5000/tools/bb:v1").unwrap();
    assert_eq!(tagged.tags, vec!["busybox:latest", "localhost:5000/tools/bb:v1"]);
    assert_eq!(images.resolve("localhost:5000/tools/bb:v1").unwrap().id, image.id);

    // Save by name, load into a second store: same ids, same name.
    let mut saved = Vec::new();
    images.save(&["busybox".to_string()], &mut saved).unwrap();
    let (other_root, other) = new_store();
    let saved_path = write_archive(other_root.path(), "saved.tar", &saved);
    let reloaded = other.load(&saved_path, &mut |_| {}).unwrap();
    assert_eq!(reloaded.len(), 1);
    assert_eq!(reloaded[0].id, image.id);
    assert_eq!(reloaded[0].manifest_digest, image.manifest_digest);
    assert_eq!(reloaded[0].layers, image.layers);
    assert_eq!(reloaded[0].tags, vec!["busybox:latest"]);
    // Saving is deterministic.
    let mut again = Vec::new();
    images.save(&["busybox".to_string()], &mut again).unwrap();
    assert!(again == saved, "save output differs between runs");

    // Remove: first tag only untags, the last one deletes everything.
    assert_eq!(
        images.remove("busybox", false, &no_container).unwrap(),
        vec!["Untagged: busybox:latest"]
    );
    assert_eq!(
        images.resolve(&image.id).unwrap().tags,
        vec!["localhost:5000/tools/bb:v1"]
    );
    let expected = vec![
        "Untagged: localhost:5000/tools/bb:v1".to_string(),
        format!("Deleted: {}", image.id),
    ];
    assert_eq!(
        images
            .remove("localhost:5000/tools/bb:v1", false, &no_container)
            .unwrap(),
        expected
    );
    assert!(images.list().unwrap().is_empty());
    assert_eq!(images.total_size().unwrap(), 0);
    assert!(files_under(&root.path().join("image/blobs")).is_empty());
    assert!(!dirs[0].exists() && !dirs[1].exists());
    assert!(matches!(images.resolve(&image.id), Err(Error::NotFound(_))));
}

#[test]
fn docker_archive_with_uncompressed_layers() {
    let (root, images) = new_store();
    let layer = Layer::new()
        .dir("app")
        .file_with("app/run", "#!/bin/sh\necho hi\n", 0o755, (0, 0))
        .build();
    let mut docker = DockerArchive::default();
    let id = docker.image(
        std::slice::from_ref(&layer),
        config(&[sha256(&layer)], "app"),
        &["app:v1", "registry.example.com/team/app:v1"],
    );
    let archive = write_archive(root.path(), "app.tar", &docker.tar());

    let mut lines = Vec::new();
    let loaded = images.load(&archive, &mut |p| lines.push(p.status)).unwrap();
    assert_eq!(loaded.len(), 1);
    let image = &loaded[0];
    assert_eq!(image.id, id);
    assert_eq!(image.tags, vec!["app:v1", "registry.example.com/team/app:v1"]);
    assert_eq!(image.layers, vec![sha256(&layer)]);
    assert_eq!(
        lines,
        vec![
            format!("Loading layer {}", sha256(&layer)),
            "Loaded image: app:v1".into(),
            "Loaded image: registry.example.com/team/app:v1".into()
        ]
    );

    // The synthesised manifest is a stored blob describing the stored blobs.
    let manifest_path = images.blob_path(&image.manifest_digest).unwrap();
    let manifest_bytes = fs::read(&manifest_path).unwrap();
    assert_eq!(sha256(&manifest_bytes), image.manifest_digest);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
    assert_eq!(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(manifest["config"]["digest"], image.id.as_str());
    assert_eq!(manifest["layers"][0]["digest"], sha256(&layer).as_str());
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar"
    );
    assert_eq!(manifest["layers"][0]["size"], layer.len());

    // Loading the same archive again changes nothing.
    let again = images.load(&archive, &mut |_| {}).unwrap();
    assert_eq!(again, loaded);
    assert_eq!(images.list().unwrap().len(), 1);

    let dirs = images.layer_dirs(image, None).unwrap();
    assert_eq!(
        fs::read_to_string(dirs[0].join("app/run")).unwrap(),
        "#!/bin/sh\necho hi\n"
    );
}

#[test]
fn shifted_unpack_moves_owners_into_the_range() {
    let (_root, images) = new_store();
    let fixture = busybox_layout();
    let archive = write_archive(_root.path(), "busybox.tar", &fixture.layout.tar());
    let image = images.load(&archive, &mut |_| {}).unwrap().remove(0);

    let shift = IdShift {
        uid_base: 100_000,
        gid_base: 200_000,
        size: 65_536,
    };
    let dirs = images.layer_dirs(&image, Some(shift)).unwrap();
    let base = &dirs[1];
    assert!(base.ends_with(format!("{}-100000-200000-65536", hex_of(&image.diff_ids[0]))));
    let passwd = fs::metadata(base.join("etc/passwd")).unwrap();
    assert_eq!((passwd.uid(), passwd.gid()), (100_000, 200_000));
    let su = fs::metadata(base.join("bin/su")).unwrap();
    assert_eq!(
        (su.uid(), su.mode() & 0o7777),
        (100_000, 0o4755),
        "setuid bit survives the chown"
    );
    let notes = fs::metadata(base.join("home/user/notes")).unwrap();
    assert_eq!((notes.uid(), notes.gid()), (101_000, 201_000));
    assert_eq!(fs::metadata(base).unwrap().uid(), 100_000);
    // Unshifted and shifted snapshots of one layer live side by side.
    let plain = images.layer_dirs(&image, None).unwrap();
    assert_ne!(plain, dirs);
    assert_eq!(fs::metadata(plain[1].join("etc/passwd")).unwrap().uid(), 0);

    // A range too small for the layer's ids is an error naming the file.
    let small = IdShift {
        uid_base: 300_000,
        gid_base: 300_000,
        size: 1000,
    };
    let err = images.layer_dirs(&image, Some(small)).unwrap_err().to_string();
    assert!(err.contains("home/user/notes") && err.contains("uid 1000"), "{err}");
    assert!(files_under(&_root.path().join("image/snapshots/tmp")).is_empty());
}

#[test]
fn multi_platform_index_picks_linux_amd64() {
    let (root, images) = new_store();
    let mut layout = OciLayout::default();
    let mut children = Vec::new();
    let mut ids = Vec::new();
    for (arch, content) in [("arm64", "arm"), ("amd64", "x86"), ("unknown", "attestation")] {
        let layer = Blob::gzip(Layer::new().file("arch", content).build());
        let os = if arch == "unknown" { "unknown" } else { "linux" };
        let made = layout.image(
            std::slice::from_ref(&layer),
            config(std::slice::from_ref(&layer.diff_id), arch),
            Some((os, arch)),
        );
        ids.push(made.config_digest.clone());
        children.push(made.descriptor);
    }
    let inner = layout.nested_index(&children);
    let outer = layout.nested_index(&[inner]);
    layout.add_to_index(outer, Some("multi:1"));
    let archive = write_archive(root.path(), "multi.tar", &layout.tar());

    let loaded = images.load(&archive, &mut |_| {}).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id, ids[1]);
    assert_eq!(loaded[0].tags, vec!["multi:1"]);
    // Only the chosen image's blobs are kept.
    let stored = files_under(&root.path().join("image/blobs/sha256"));
    assert_eq!(stored.len(), 3, "{stored:?}");

    // Without linux/amd64 and with several others, the choice is refused.
    let mut layout = OciLayout::default();
    let mut children = Vec::new();
    for arch in ["arm64", "s390x"] {
        let layer = Blob::gzip(Layer::new().file("arch", arch).build());
        children.push(
            layout
                .image(
                    std::slice::from_ref(&layer),
                    config(std::slice::from_ref(&layer.diff_id), arch),
                    Some(("linux", arch)),
                )
                .descriptor,
        );
    }
    let index = layout.nested_index(&children);
    layout.add_to_index(index, None);
    let archive = write_archive(root.path(), "noamd64.tar", &layout.tar());
    let err = images.load(&archive, &mut |_| {}).unwrap_err().to_string();
    assert!(
        err.contains("has no linux/amd64 image (it has: linux/arm64, linux/s390x)"),
        "{err}"
    );
}

#[test]
fn untagged_images_and_save_by_id() {
    let (root, images) = new_store();
    let mut fixture = busybox_layout();
    fixture.layout.index.clear();
    fixture.layout.add_to_index(fixture.made.descriptor.clone(), None);
    let archive = write_archive(root.path(), "untagged.tar", &fixture.layout.tar());
    let mut lines = Vec::new();
    let image = images.load(&archive, &mut |p| lines.push(p.status)).unwrap().remove(0);
    assert!(image.tags.is_empty());
    assert_eq!(lines.last().unwrap(), &format!("Loaded image ID: {}", image.id));

    let mut saved = Vec::new();
    images.save(&[hex_of(&image.id)[..10].to_string()], &mut saved).unwrap();
    let (other_root, other) = new_store();
    let reloaded = other
        .load(&write_archive(other_root.path(), "s.tar", &saved), &mut |_| {})
        .unwrap();
    assert_eq!(
        (reloaded[0].id.as_str(), reloaded[0].tags.len()),
        (image.id.as_str(), 0)
    );
}

#[test]
fn tags_move_and_removal_follows_docker_rules() {
    let (root, images) = new_store();
    let fixture = busybox_layout();
    let image = images
        .load(&write_archive(root.path(), "b.tar", &fixture.layout.tar()), &mut |_| {})
        .unwrap()
        .remove(0);
    let layer = Layer::new().file("x", "x").build();
    let mut docker = DockerArchive::default();
    let other_id = docker.image(
        std::slice::from_ref(&layer),
        config(&[sha256(&layer)], "other"),
        &["other:1"],
    );
    images
        .load(&write_archive(root.path(), "o.tar", &docker.tar()), &mut |_| {})
        .unwrap();

    // A tag that named another image moves; that image keeps its other tags.
    images.tag("busybox", "shared:1").unwrap();
    images.tag("other:1", "shared:1").unwrap();
    assert_eq!(images.resolve("shared:1").unwrap().id, other_id);
    assert_eq!(images.resolve(&image.id).unwrap().tags, vec!["busybox:latest"]);

    let in_use = |id: &str| id == image.id;
    // In use: refused without force, only untagged with it.
    let err = images.remove("busybox", false, &in_use).unwrap_err();
    assert!(matches!(err, Error::InUse { .. }), "{err}");
    assert!(
        err.to_string().contains("busybox") && err.to_string().contains(image.id.as_str()),
        "{err}"
    );
    assert_eq!(
        images.remove("busybox", true, &in_use).unwrap(),
        vec!["Untagged: busybox:latest"]
    );
    let kept = images.resolve(&image.id).unwrap();
    assert!(kept.tags.is_empty(), "the record stays, as <none>");
    // Forced by id: nothing left to untag, and the record of an image in use stays.
    assert_eq!(images.remove(&image.id, true, &in_use).unwrap(), Vec::<String>::new());
    assert_eq!(images.resolve(&image.id).unwrap(), kept);

    // By id with several tags: refused unless forced.
    let err = images.remove(&other_id, false, &no_container).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("unable to delete image {other_id} (must be forced): it is tagged as other:1, shared:1")
    );
    let lines = images.remove(&other_id, true, &no_container).unwrap();
    assert_eq!(
        lines,
        vec![
            "Untagged: other:1".to_string(),
            "Untagged: shared:1".to_string(),
            format!("Deleted: {other_id}"),
        ]
    );
    assert!(matches!(images.blob_path(&sha256(&layer)), Err(Error::BlobNotFound(_))));
    // The busybox image's blobs are untouched.
    assert!(images.layer_dirs(&kept, None).is_ok());
}

#[test]
fn concurrent_unpacks_of_one_layer_agree() {
    let (root, images) = new_store();
    let fixture = busybox_layout();
    let image = images
        .load(&write_archive(root.path(), "b.tar", &fixture.layout.tar()), &mut |_| {})
        .unwrap()
        .remove(0);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8).map(|_| s.spawn(|| images.layer_dirs(&image, None))).collect();
        handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
    });
    assert!(results.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(
        fs::read_to_string(results[0][0].join("var/cache/new")).unwrap(),
        "new\n"
    );
    assert!(files_under(&root.path().join("image/snapshots/tmp")).is_empty());
}

#[test]
fn open_cleans_what_a_crash_leaves() {
    let root = tempfile::tempdir().unwrap();
    let fixture = busybox_layout();
    let image = {
        let images = open_store(root.path());
        let image = images
            .load(&write_archive(root.path(), "b.tar", &fixture.layout.tar()), &mut |_| {})
            .unwrap()
            .remove(0);
        images.layer_dirs(&image, None).unwrap();
        image
    };
    let image_root = root.path().join("image");
    fs::write(image_root.join("blobs/tmp/partial"), "half a blob").unwrap();
    fs::create_dir_all(image_root.join("snapshots/tmp/abc/etc")).unwrap();
    let stray = image_root.join(format!("snapshots/{}", "f".repeat(64)));
    fs::create_dir(&stray).unwrap();
    let unreferenced = format!("sha256:{}", "e".repeat(64));
    fs::write(
        image_root.join(format!("blobs/sha256/{}", hex_of(&unreferenced))),
        "orphan",
    )
    .unwrap();

    let images = open_store(root.path());
    assert!(files_under(&image_root.join("blobs/tmp")).is_empty());
    assert!(fs::read_dir(image_root.join("snapshots/tmp")).unwrap().next().is_none());
    assert!(!stray.exists());
    assert!(matches!(images.blob_path(&unreferenced), Err(Error::BlobNotFound(_))));
    // What is referenced survives.
    assert_eq!(images.resolve("busybox").unwrap(), image);
    for layer in &image.layers {
        assert!(images.blob_path(layer).is_ok());
    }
    let dirs = images.layer_dirs(&image, None).unwrap();
    assert!(dirs.iter().all(|d| d.is_dir()));
}
