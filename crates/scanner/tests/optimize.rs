//! Optimization analysis against synthetic layers in overlayfs lower-dir
//! form, with every expected number worked out by hand from dive's
//! definitions (see the `optimize` module docs). Whiteouts are real 0/0
//! character devices and opaque directories carry a real
//! `trusted.overlay.opaque` xattr, so these tests need root.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_scanner::optimize::{analyze, analyze_with, AnalyzeOptions, CacheKind, Optimization, OptimizeError};
use berth_scanner::Layer;

fn layer(root: &Path, index: usize) -> Layer {
    let dir = root.join(format!("layer{index}"));
    fs::create_dir_all(&dir).expect("create layer dir");
    Layer {
        digest: format!("sha256:{index:064x}"),
        diff_id: format!("sha256:{:064x}", index + 100),
        dir,
        size: Some(1000 + index as u64),
    }
}

fn file(layer: &Layer, path: &str, size: usize) -> PathBuf {
    let host = layer.dir.join(path.trim_start_matches('/'));
    fs::create_dir_all(host.parent().expect("has parent")).expect("create parents");
    fs::write(&host, vec![b'x'; size]).expect("write file");
    host
}

fn dir(layer: &Layer, path: &str) -> PathBuf {
    let host = layer.dir.join(path.trim_start_matches('/'));
    fs::create_dir_all(&host).expect("create dir");
    host
}

/// An overlayfs whiteout: a 0/0 character device.
fn whiteout(layer: &Layer, path: &str) {
    let host = layer.dir.join(path.trim_start_matches('/'));
    fs::create_dir_all(host.parent().expect("has parent")).expect("create parents");
    let status = Command::new("mknod")
        .arg(&host)
        .args(["c", "0", "0"])
        .status()
        .expect("mknod (coreutils) must be installed to build whiteouts");
    assert!(
        status.success(),
        "mknod {} c 0 0 failed: these tests must run as root",
        host.display()
    );
}

fn opaque(layer: &Layer, path: &str) {
    let host = dir(layer, path);
    xattr::set(&host, "trusted.overlay.opaque", b"y").unwrap_or_else(|err| {
        panic!(
            "setting trusted.overlay.opaque on {}: {err} (tests must run as root)",
            host.display()
        )
    });
}

/// (path, count, cumulative bytes, layers, removed) of every inefficient path.
fn inefficiencies(optimization: &Optimization) -> Vec<(&str, usize, u64, Vec<usize>, bool)> {
    optimization
        .inefficient_paths
        .iter()
        .map(|path| {
            (
                path.path.as_str(),
                path.count,
                path.cumulative_bytes,
                path.layers.clone(),
                path.removed,
            )
        })
        .collect()
}

/// The layers of dive's own efficiency unit test (nginx config over three
/// layers), except that the last layer deletes a file: dive's test deletes
/// `/etc/nginx`, which its hand-built tree holds only as an implicit parent
/// (not a directory entry), so that whiteout counts 0 there; real layers
/// carry the directory entry, and the next test covers that case.
#[test]
fn dive_nginx_layers_with_a_deleted_file() {
    let root = tempfile::tempdir().expect("tempdir");
    let base = layer(root.path(), 0);
    file(&base, "/etc/nginx/nginx.conf", 2000);
    file(&base, "/etc/nginx/public", 3000);
    let second = layer(root.path(), 1);
    file(&second, "/etc/nginx/nginx.conf", 5000);
    file(&second, "/etc/athing", 10000);
    let third = layer(root.path(), 2);
    whiteout(&third, "/etc/nginx/public");

    let optimization = analyze(&[base, second, third]).expect("analyze");

    // Per path: cumulative / smallest.
    //   nginx.conf  2000 + 5000 = 7000 / 2000    (two layers: inefficient)
    //   public      3000 + 0    = 3000 / 0       (a file whiteout counts 0: inefficient, removed)
    //   athing      10000              / 10000
    // efficiency = (2000 + 0 + 10000) / (7000 + 3000 + 10000) = 12000 / 20000
    assert_eq!(optimization.efficiency, 0.6);
    // wasted = the cumulative sizes of the inefficient paths, all copies.
    assert_eq!(optimization.wasted_bytes, 10000);
    assert_eq!(
        inefficiencies(&optimization),
        [
            ("/etc/nginx/nginx.conf", 2, 7000, vec![0, 1], false),
            ("/etc/nginx/public", 2, 3000, vec![0, 2], true)
        ]
    );
    // Layer bytes: 5000, 15000, 0 (a whiteout carries none); user = 15000.
    assert_eq!((optimization.total_bytes, optimization.user_bytes), (20000, 15000));
    let percent = optimization.user_wasted_percent.expect("user layers carry bytes");
    assert!((percent - 10000.0 / 15000.0 * 100.0).abs() < 1e-9, "{percent}");
    assert!(optimization.inefficient_paths[1]
        .suggestion
        .contains("deleted in layer 2"));
    assert!(optimization.inefficient_paths[0]
        .suggestion
        .contains("combine the RUN steps"));
}

#[test]
fn whiteouts_opaque_dirs_hard_links_and_caches() {
    let root = tempfile::tempdir().expect("tempdir");
    let base = layer(root.path(), 0);
    file(&base, "/etc/nginx/nginx.conf", 2000);
    file(&base, "/etc/nginx/public", 3000);
    file(&base, "/usr/bin/tool", 10000);
    file(&base, "/opt/data/a", 400);
    file(&base, "/opt/data/b", 600);
    file(&base, "/srv/old/x", 700);

    let second = layer(root.path(), 1);
    file(&second, "/etc/nginx/nginx.conf", 5000);
    file(&second, "/etc/athing", 10000);
    file(&second, "/tmp/build.tar", 8000);
    file(&second, "/var/lib/apt/lists/lock", 0);
    file(
        &second,
        "/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease",
        1200,
    );
    dir(&second, "/var/lib/apt/lists/partial");
    file(&second, "/root/.cache/pip/http/abc", 300);
    let hard1 = file(&second, "/usr/bin/hard1", 500);
    fs::hard_link(&hard1, second.dir.join("usr/bin/hard2")).expect("hard link");
    symlink("hard1", second.dir.join("usr/bin/link")).expect("symlink");

    let third = layer(root.path(), 2);
    whiteout(&third, "/etc/nginx");
    whiteout(&third, "/tmp/build.tar");
    whiteout(&third, "/srv/old");
    opaque(&third, "/opt/data");
    file(&third, "/opt/data/b", 100);
    file(&third, "/usr/bin/tool", 10000);

    let layers = [base, second, third];
    let optimization = analyze_with(&layers, &AnalyzeOptions { largest_files: 3 }).expect("analyze");

    // Leaves per path, cumulative / smallest:
    //   layer 0: nginx.conf 2000, public 3000, tool 10000, /opt/data/a 400, /opt/data/b 600, /srv/old/x 700
    //   layer 1: nginx.conf 5000, athing 10000, build.tar 8000, lists/lock 0, lists/InRelease 1200,
    //            lists/partial (empty dir) 0, pip/http/abc 300, hard1 500, hard2 0 (second name of a
    //            hard link, as in a tar), link 0 (symlink)
    //   layer 2: /etc/nginx whiteout of a directory = what was below it then: nginx.conf 5000 + public
    //            3000 = 8000; build.tar whiteout of a file = 0; /srv/old whiteout = x 700;
    //            /opt/data/b 100 (dive ignores the opaque marker); tool 10000
    //   nginx.conf 7000/2000, tool 20000/10000, /opt/data/b 700/100, build.tar 8000/0 are in two
    //   layers; the directory whiteouts are the only node at their own path: 8000/8000 and 700/700.
    // Σ cumulative = 7000+3000+20000+400+700+700+10000+8000+0+1200+0+300+500+0+0+8000+700 = 60500
    // Σ smallest   = 2000+3000+10000+400+100+700+10000+0+0+1200+0+300+500+0+0+8000+700 = 36900
    assert_eq!(optimization.efficiency, 36900.0 / 60500.0);
    // wasted = 20000 + 8000 + 7000 + 700
    assert_eq!(optimization.wasted_bytes, 35700);
    assert_eq!(
        inefficiencies(&optimization),
        [
            ("/usr/bin/tool", 2, 20000, vec![0, 2], false),
            ("/tmp/build.tar", 2, 8000, vec![1, 2], true),
            ("/etc/nginx/nginx.conf", 2, 7000, vec![0, 1], false),
            ("/opt/data/b", 2, 700, vec![0, 2], false),
        ]
    );

    // Layer bytes: 16700, 25000 (hard link once), 10100.
    let sizes: Vec<(u64, u64, u64)> = optimization
        .layers
        .iter()
        .map(|layer| (layer.size_bytes, layer.files, layer.whiteouts))
        .collect();
    assert_eq!(sizes, [(16700, 6, 0), (25000, 8, 0), (10100, 2, 3)]);
    assert_eq!(optimization.layers[1].compressed_bytes, Some(1001));
    assert_eq!(optimization.layers[2].digest, layers[2].digest);
    assert_eq!(
        (
            optimization.layer_count,
            optimization.total_bytes,
            optimization.user_bytes
        ),
        (3, 51800, 35100)
    );
    // dive's ratio can pass 100 %: base-layer copies of overwritten files count as wasted too.
    let percent = optimization.user_wasted_percent.expect("user layers carry bytes");
    assert!((percent - 35700.0 / 35100.0 * 100.0).abs() < 1e-9, "{percent}");

    // The final image: /etc/nginx, build.tar and /srv/old are gone, /opt/data/a is hidden.
    let largest: Vec<(&str, u64, usize)> = optimization
        .largest_files
        .iter()
        .map(|file| (file.path.as_str(), file.size_bytes, file.layer))
        .collect();
    assert_eq!(
        largest,
        [
            ("/etc/athing", 10000, 1),
            ("/usr/bin/tool", 10000, 2),
            (
                "/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease",
                1200,
                1
            ),
        ]
    );

    // apt lists without `lock` and `partial`, the pip cache.
    let caches: Vec<(CacheKind, &str, u64, u64, Vec<usize>)> = optimization
        .caches
        .iter()
        .map(|cache| {
            (
                cache.kind,
                cache.path.as_str(),
                cache.size_bytes,
                cache.files,
                cache.layers.clone(),
            )
        })
        .collect();
    assert_eq!(
        caches,
        [
            (CacheKind::AptLists, "/var/lib/apt/lists", 1200, 1, vec![1]),
            (CacheKind::Pip, "/root/.cache/pip", 300, 1, vec![1]),
        ]
    );
    assert!(optimization.caches[0]
        .suggestion
        .contains("rm -rf /var/lib/apt/lists/*"));
    assert!(optimization.caches[1].suggestion.contains("--no-cache-dir"));

    // The opaque /opt/data hides base-layer `a` (400 bytes); `b` is replaced, not hidden.
    let hidden: Vec<(&str, usize, u64, u64)> = optimization
        .opaque_hidden
        .iter()
        .map(|hidden| {
            (
                hidden.path.as_str(),
                hidden.layer,
                hidden.hidden_bytes,
                hidden.hidden_files,
            )
        })
        .collect();
    assert_eq!(hidden, [("/opt/data", 2, 400, 1)]);

    let mut small = optimization.clone();
    small.keep_top(2);
    assert_eq!(inefficiencies(&small), inefficiencies(&optimization)[..2]);
    assert_eq!(
        (small.wasted_bytes, small.efficiency),
        (optimization.wasted_bytes, optimization.efficiency)
    );
}

/// Layer-tar spelling of whiteouts (`.wh.<name>`) and opaque directories
/// (`.wh..wh..opq`) counts the same as the overlayfs one.
#[test]
fn tar_style_whiteouts_count_like_overlay_ones() {
    let root = tempfile::tempdir().expect("tempdir");
    let base = layer(root.path(), 0);
    file(&base, "/app/cache/blob", 4000);
    file(&base, "/app/data/x", 100);
    file(&base, "/app/data/y", 50);
    let second = layer(root.path(), 1);
    file(&second, "/app/cache/.wh.blob", 0);
    file(&second, "/app/data/.wh..wh..opq", 0);
    file(&second, "/app/data/x", 10);

    let optimization = analyze(&[base, second]).expect("analyze");
    // blob 4000 + whiteout 0 (removed); x 100 + 10; y is hidden by the opaque dir.
    assert_eq!(
        inefficiencies(&optimization),
        [
            ("/app/cache/blob", 2, 4000, vec![0, 1], true),
            ("/app/data/x", 2, 110, vec![0, 1], false)
        ]
    );
    // (0 + 10 + 50) / (4000 + 110 + 50)
    assert_eq!(optimization.efficiency, 60.0 / 4160.0);
    assert_eq!(optimization.opaque_hidden.len(), 1);
    assert_eq!(
        (
            optimization.opaque_hidden[0].hidden_bytes,
            optimization.opaque_hidden[0].hidden_files
        ),
        (50, 1)
    );
    let summary = &optimization.layers[1];
    assert_eq!((summary.size_bytes, summary.files, summary.whiteouts), (10, 1, 1));
}

#[test]
fn an_image_without_waste_scores_one() {
    let root = tempfile::tempdir().expect("tempdir");
    let base = layer(root.path(), 0);
    file(&base, "/bin/app", 1234);
    let empty = layer(root.path(), 1);
    let optimization = analyze(&[base, empty]).expect("analyze");
    assert_eq!(optimization.efficiency, 1.0);
    assert_eq!(optimization.wasted_bytes, 0);
    assert!(optimization.inefficient_paths.is_empty());
    // Nothing above the base layer: the percentage is undefined.
    assert_eq!(optimization.user_wasted_percent, None);
    assert_eq!(analyze(&[]).expect("no layers").efficiency, 1.0);
}

#[test]
fn go_npm_and_apk_caches_are_found_under_any_home() {
    let root = tempfile::tempdir().expect("tempdir");
    let base = layer(root.path(), 0);
    file(&base, "/home/app/.npm/_cacache/content-v2/sha512/aa/bb", 700);
    file(&base, "/home/app/.npm/_cacache/index-v5/cc", 30);
    file(&base, "/root/.cache/go-build/0a/0a1b-d", 900);
    file(&base, "/var/cache/apk/APKINDEX.abc.tar.gz", 500);
    file(&base, "/var/cache/apt/archives/curl_7.88.1-10_amd64.deb", 400);
    file(&base, "/var/cache/apt/pkgcache.bin", 200);
    file(
        &base,
        "/usr/lib/python3/dist-packages/__pycache__/x.cpython-311.pyc",
        50,
    );

    let optimization = analyze(&[base]).expect("analyze");
    let caches: Vec<(CacheKind, &str, u64, u64)> = optimization
        .caches
        .iter()
        .map(|cache| (cache.kind, cache.path.as_str(), cache.size_bytes, cache.files))
        .collect();
    assert_eq!(
        caches,
        [
            (CacheKind::GoBuild, "/root/.cache/go-build", 900, 1),
            (CacheKind::Npm, "/home/app/.npm/_cacache", 730, 2),
            (CacheKind::AptArchives, "/var/cache/apt", 600, 2),
            (CacheKind::Apk, "/var/cache/apk", 500, 1),
        ]
    );
    assert!(optimization.caches[0].suggestion.contains("multi-stage build"));
    assert!(optimization.caches[3].suggestion.contains("apk add --no-cache"));
}

#[test]
fn errors_name_the_layer_and_path() {
    let root = tempfile::tempdir().expect("tempdir");
    let missing = Layer {
        digest: "sha256:missing".into(),
        diff_id: "sha256:missing".into(),
        dir: root.path().join("nope"),
        size: None,
    };
    let err = analyze(&[missing]).expect_err("missing dir");
    assert!(matches!(err, OptimizeError::Read { .. }));
    let text = err.to_string();
    assert!(text.contains("sha256:missing") && text.contains("nope"), "{text}");

    let not_dir = root.path().join("file");
    fs::write(&not_dir, b"x").expect("write");
    let layer = Layer {
        digest: "sha256:file".into(),
        diff_id: "sha256:file".into(),
        dir: not_dir,
        size: None,
    };
    let err = analyze(&[layer]).expect_err("not a directory");
    assert!(matches!(err, OptimizeError::NotADirectory { .. }), "{err}");
}

/// The result is a serde type: the report embeds it.
#[test]
fn optimization_round_trips_through_json() {
    let root = tempfile::tempdir().expect("tempdir");
    let base = layer(root.path(), 0);
    file(&base, "/a", 10);
    let second = layer(root.path(), 1);
    whiteout(&second, "/a");
    let optimization = analyze(&[base, second]).expect("analyze");
    let json = serde_json::to_string(&optimization).expect("serialize");
    let back: Optimization = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, optimization);
    // Layer 1 carries no bytes: user percentage undefined although 10 bytes are wasted.
    assert_eq!((back.wasted_bytes, back.user_wasted_percent), (10, None));
}
