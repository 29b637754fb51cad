//! Installing, listing, enabling, disabling and removing plugins; install
//! refuses anything that is not exactly what its manifest says (and leaves
//! nothing behind); a plugin travels as an OCI artifact; compiled code is
//! cached on disk.

#![allow(clippy::unwrap_used)] // the helpers outside #[test] fns unwrap too

mod support;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use berth_plugin::{oci, DirImageFs, HostConfig, ImageInfo, PluginError, PluginHost, PluginManifest, PluginRegistry};
use support::*;

/// A registry in `<dir>/plugins` with its compile cache in `<dir>/plugins/cache`.
fn registry(dir: &Path) -> PluginRegistry {
    let host = PluginHost::new(HostConfig::with_data_root(dir)).unwrap();
    PluginRegistry::open(dir.join("plugins"), host).unwrap()
}

fn secrets_dir(parent: &Path, version: &str) -> std::path::PathBuf {
    let wasm = wasm("secrets");
    let manifest = PluginManifest {
        version: version.to_string(),
        ..manifest_for("secrets", &wasm)
    };
    plugin_dir(parent, &format!("secrets-{version}"), &manifest, &wasm)
}

#[test]
fn install_list_inspect_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(dir.path());
    let source = secrets_dir(dir.path(), "0.1.0");
    let info = registry.install(&source).unwrap();
    assert_eq!(info.manifest.name, "secrets");
    assert!(info.enabled);
    assert_eq!(info.dir, dir.path().join("plugins/secrets/0.1.0"));
    let check = info.check.as_ref().unwrap();
    assert_eq!(check.name, "secrets");
    assert!(check.rules.iter().any(|rule| rule.id == "private-key"));

    assert_eq!(registry.list().unwrap(), vec![info.clone()]);
    assert_eq!(registry.inspect("secrets", None).unwrap(), info);
    assert_eq!(registry.inspect("secrets", Some("0.1.0")).unwrap(), info);
    assert_eq!(
        tree(&info.dir),
        ["plugin.json", "plugin.wasm", "state.json"],
        "the install holds the component, its manifest and its state"
    );
    // Installing from the manifest's path works the same way, and twice is refused.
    let err = registry.install(&source.join("plugin.json")).unwrap_err();
    assert_eq!(err.to_string(), "plugin secrets 0.1.0 is already installed");

    let image_dir = tempfile::tempdir().unwrap();
    write(
        image_dir.path(),
        "/id_rsa",
        fake_pem("RSA PRIVATE KEY", 1).as_bytes(),
        0o600,
    );
    let enabled = registry.enabled_scanner_checks().unwrap();
    assert_eq!(enabled.len(), 1);
    let findings = enabled[0]
        .1
        .run(
            &ImageInfo::default(),
            Arc::new(DirImageFs::new(image_dir.path()).unwrap()),
        )
        .unwrap();
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].path.as_deref(), Some("/id_rsa"));
}

#[test]
fn enable_disable_and_remove() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(dir.path());
    let first = registry.install(&secrets_dir(dir.path(), "0.1.0")).unwrap();
    assert!(first.enabled);
    // A second version arrives disabled while the first is enabled.
    let second = registry.install(&secrets_dir(dir.path(), "0.2.0")).unwrap();
    assert!(!second.enabled);
    let err = registry.inspect("secrets", None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin secrets has several versions installed (0.1.0, 0.2.0); name one"
    );

    // Enabling one version disables the other.
    assert!(registry.enable("secrets", Some("0.2.0")).unwrap().enabled);
    let states: Vec<(String, bool)> = registry
        .list()
        .unwrap()
        .into_iter()
        .map(|p| (p.manifest.version, p.enabled))
        .collect();
    assert_eq!(states, [("0.1.0".to_string(), false), ("0.2.0".to_string(), true)]);
    let err = registry.load_scanner_check("secrets", Some("0.1.0")).unwrap_err();
    assert_eq!(err.to_string(), "plugin secrets 0.1.0 is disabled");
    assert!(registry.load_scanner_check("secrets", Some("0.2.0")).is_ok());

    assert!(!registry.disable("secrets", Some("0.2.0")).unwrap().enabled);
    assert!(registry.enabled_scanner_checks().unwrap().is_empty());
    // The state survives reopening the registry.
    let reopened = self::registry(dir.path());
    assert!(reopened.list().unwrap().iter().all(|p| !p.enabled));

    assert_eq!(
        registry.remove("secrets", Some("0.1.0")).unwrap().manifest.version,
        "0.1.0"
    );
    let left: Vec<String> = registry
        .list()
        .unwrap()
        .into_iter()
        .map(|p| p.manifest.version)
        .collect();
    assert_eq!(left, ["0.2.0"]);
    let err = registry.enable("secrets", Some("0.1.0")).unwrap_err();
    assert_eq!(err.to_string(), "plugin secrets 0.1.0 is not installed");
    // Both versions share the wasm, so its compiled code stays until the last goes.
    assert_eq!(tree(&dir.path().join("plugins/cache")).len(), 1);
    registry.remove("secrets", None).unwrap();
    assert!(registry.list().unwrap().is_empty());
    assert_eq!(tree(&dir.path().join("plugins")), ["cache"]);
    assert!(tree(&dir.path().join("plugins/cache")).is_empty());
    let err = registry.remove("secrets", None).unwrap_err();
    assert_eq!(err.to_string(), "plugin secrets is not installed");
}

#[test]
fn an_install_can_arrive_disabled_even_when_no_version_is_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(dir.path());
    let wasm = wasm("secrets");
    let manifest = manifest_for("secrets", &wasm);
    let info = registry.install_bytes_disabled(&manifest.to_json(), &wasm).unwrap();
    assert!(!info.enabled);
    assert!(!registry.inspect("secrets", None).unwrap().enabled);
    assert!(registry.enabled_scanner_checks().unwrap().is_empty());
    let err = registry.install_bytes_disabled(&manifest.to_json(), &wasm).unwrap_err();
    assert_eq!(err.to_string(), "plugin secrets 0.1.0 is already installed");
}

/// Installs `manifest` + `wasm` from a directory and expects a refusal that
/// leaves the registry directory exactly as empty as it was.
fn refused(manifest: &PluginManifest, wasm: &[u8]) -> PluginError {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(dir.path());
    let source = plugin_dir(dir.path(), "source", manifest, wasm);
    let err = registry.install(&source).unwrap_err();
    assert_eq!(
        tree(&dir.path().join("plugins")),
        Vec::<String>::new(),
        "left behind after: {err}"
    );
    assert!(registry.list().unwrap().is_empty());
    err
}

#[test]
fn install_refuses_a_wasm_whose_digest_differs_from_the_manifest() {
    let wasm = wasm("secrets");
    let manifest = manifest_for("secrets", &wasm);
    let mut tampered = wasm.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    let err = refused(&manifest, &tampered);
    assert!(matches!(err, PluginError::DigestMismatch { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "plugin secrets: the wasm's digest {} does not match the manifest's {}",
            berth_plugin::manifest::sha256_digest(&tampered),
            manifest.digest
        )
    );
}

#[test]
fn install_refuses_a_component_for_another_world() {
    let wasm = wasm("test-wrong-world");
    let err = refused(&manifest_for("test-wrong-world", &wasm), &wasm);
    let PluginError::WrongWorld {
        plugin,
        world,
        version,
        reason,
    } = &err
    else {
        panic!("expected WrongWorld, got {err:?}");
    };
    assert_eq!(
        (plugin.as_str(), world.as_str(), version.as_str()),
        ("test-wrong-world", "scanner-check", "0.1.0")
    );
    assert!(reason.contains("berth:plugin/check@0.1.0"), "{reason}");
}

#[test]
fn install_refuses_a_component_that_imports_the_network() {
    let wasm = wasm("test-network");
    let err = refused(&manifest_for("test-network", &wasm), &wasm);
    let PluginError::WrongWorld { reason, .. } = &err else {
        panic!("expected WrongWorld, got {err:?}");
    };
    assert!(reason.contains("wasi:sockets"), "{reason}");
}

#[test]
fn install_refuses_what_is_not_a_component() {
    let cases: [(&str, Vec<u8>, &str); 3] = [
        ("a text file", b"#!/bin/sh\necho hello\n".to_vec(), "not WebAssembly"),
        (
            "a core module",
            b"\0asm\x01\0\0\0".to_vec(),
            "core WebAssembly module, not a component",
        ),
        (
            "a truncated component",
            wasm("secrets")[..2000].to_vec(),
            "is not a usable WebAssembly component",
        ),
    ];
    for (what, bytes, expected) in cases {
        let err = refused(&manifest_for("secrets", &bytes), &bytes);
        assert!(matches!(err, PluginError::NotAComponent { .. }), "{what}: {err:?}");
        let message = err.to_string();
        assert!(message.contains(expected), "{what}: {message}");
    }
}

#[test]
fn install_refuses_manifests_that_do_not_fit_the_component() {
    let wasm = wasm("secrets");
    // Another name than the component gives itself.
    let err = refused(&manifest_for("not-secrets", &wasm), &wasm);
    assert!(
        err.to_string().contains("the component calls itself \"secrets\""),
        "{err}"
    );
    // A world version this host does not have.
    let manifest = PluginManifest {
        world_version: "0.2.0".to_string(),
        ..manifest_for("secrets", &wasm)
    };
    let err = refused(&manifest, &wasm);
    assert!(matches!(err, PluginError::UnsupportedWorld { .. }), "{err:?}");
}

#[test]
fn a_plugin_travels_as_an_oci_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = wasm("config-risks");
    let manifest = manifest_for("config-risks", &wasm);
    let artifact = oci::to_oci_artifact(&manifest, &wasm).unwrap();
    // What a pull does with the bytes a registry hands back.
    let blobs = oci::read_oci_manifest(&artifact.manifest).unwrap();
    assert_eq!(blobs.layer.digest, manifest.digest);
    let pulled = oci::plugin_from_blobs(&blobs, &artifact.config.data, &artifact.layer.data).unwrap();
    let registry = registry(dir.path());
    let info = registry.install_bytes(&pulled.to_json(), &artifact.layer.data).unwrap();
    assert_eq!(info.manifest, manifest);
    // And a push of what is installed produces the same artifact.
    let (installed, installed_wasm) = registry.wasm("config-risks", None).unwrap();
    let pushed = oci::to_oci_artifact(&installed.manifest, &installed_wasm).unwrap();
    assert_eq!(
        String::from_utf8(pushed.manifest).unwrap(),
        String::from_utf8(artifact.manifest).unwrap()
    );
    assert_eq!(pushed.manifest_digest, artifact.manifest_digest);
}

#[test]
fn compiled_code_is_cached_on_disk_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(dir.path());
    let info = registry.install(&secrets_dir(dir.path(), "0.1.0")).unwrap();
    let cache_dir = dir.path().join("plugins/cache");
    let cached = tree(&cache_dir);
    assert_eq!(cached.len(), 1, "{cached:?}");
    let hex = info.manifest.digest.trim_start_matches("sha256:");
    assert!(
        cached[0].starts_with(&format!("{hex}-")) && cached[0].ends_with(".cwasm"),
        "{cached:?}"
    );

    // A new host (a restarted daemon) loads the cached code: the file is
    // left as it was, and the plugin runs.
    let before = fs::metadata(cache_dir.join(&cached[0])).unwrap().modified().unwrap();
    let reopened = self::registry(dir.path());
    let check = reopened.load_scanner_check("secrets", None).unwrap();
    assert_eq!(check.describe().unwrap().name, "secrets");
    assert_eq!(
        fs::metadata(cache_dir.join(&cached[0])).unwrap().modified().unwrap(),
        before
    );

    // A damaged cache file is discarded and replaced, not trusted.
    fs::write(cache_dir.join(&cached[0]), b"garbage").unwrap();
    let reopened = self::registry(dir.path());
    let check = reopened.load_scanner_check("secrets", None).unwrap();
    assert_eq!(check.describe().unwrap().name, "secrets");
    assert!(fs::metadata(cache_dir.join(&cached[0])).unwrap().len() > 1000);
}
