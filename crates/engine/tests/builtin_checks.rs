//! The checks built into the binary are offered to a fresh data root: a
//! helper process compiles and installs them when one runs (leaving the
//! compiled code in the plugin cache on disk), and the daemon installs them
//! itself when the helper cannot start; either way they end up installed
//! and enabled. The packages come from `BERTH_TEST_PLUGINS` (set by `cargo
//! xtask test`; default `target/plugins`), as the scan tests' do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_engine::builtin_plugins::{install_here, BuiltinPlugin};
use berth_engine::{Config, Engine, ScanConfig, ScanService};
use berth_runtime::fake::FakeRuntime;

const SHIPPED: [&str; 3] = ["config-risks", "file-permissions", "secrets"];

/// The shipped plugin packages, as the binary's build script embeds them.
fn builtins() -> Vec<BuiltinPlugin> {
    let dist = std::env::var_os("BERTH_TEST_PLUGINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/plugins"))
        .join("dist");
    SHIPPED
        .iter()
        .map(|name| {
            let read = |file: &str| -> &'static [u8] {
                let path = dist.join(name).join(file);
                let bytes = std::fs::read(&path).unwrap_or_else(|e| {
                    panic!(
                        "{}: {e} (BERTH_TEST_PLUGINS): run `cargo xtask plugins`",
                        path.display()
                    )
                });
                Box::leak(bytes.into_boxed_slice())
            };
            BuiltinPlugin {
                manifest_json: read("plugin.json"),
                wasm: read("plugin.wasm"),
            }
        })
        .collect()
}

/// `name@version` of a package.
fn key(plugin: &BuiltinPlugin) -> String {
    let manifest: serde_json::Value = serde_json::from_slice(plugin.manifest_json).unwrap();
    format!(
        "{}@{}",
        manifest["name"].as_str().unwrap(),
        manifest["version"].as_str().unwrap()
    )
}

/// Opens a node's scan service on `root` with the built-in `builtins`,
/// their installs run by `installer`; the plugins it lists: (name, enabled,
/// built in).
fn open_and_list(root: &Path, builtins: Vec<BuiltinPlugin>, installer: Option<PathBuf>) -> Vec<(String, bool, bool)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let fake = Arc::new(FakeRuntime::new(root));
    let config = Config {
        data_root: root.to_path_buf(),
        exe: PathBuf::from("/nonexistent/berth"),
    };
    let engine = rt.block_on(Engine::open_with_runtime(config, fake)).unwrap();
    let scan = ScanConfig {
        builtin_plugins: builtins,
        builtin_installer: installer,
        ..ScanConfig::default()
    };
    let service = ScanService::open(engine, None, scan).unwrap();
    let mut listed: Vec<(String, bool, bool)> = service
        .list_plugins()
        .unwrap()
        .iter()
        .map(|info| {
            (
                info.manifest.name.clone(),
                info.enabled,
                service.is_builtin_plugin(info),
            )
        })
        .collect();
    listed.sort();
    listed
}

fn all_enabled() -> Vec<(String, bool, bool)> {
    SHIPPED.iter().map(|n| (n.to_string(), true, true)).collect()
}

#[test]
fn a_helper_that_cannot_start_leaves_the_install_to_the_daemon() {
    let root = tempfile::tempdir().unwrap();
    let listed = open_and_list(root.path(), builtins(), Some(PathBuf::from("/nonexistent/berth")));
    assert_eq!(listed, all_enabled());
}

#[test]
fn the_helper_installs_disabled_with_the_compiled_code_on_disk() {
    let root = tempfile::tempdir().unwrap();
    let builtins = builtins();
    let wanted: Vec<String> = builtins.iter().map(key).chain(["nothing@1.0.0".to_string()]).collect();
    // What `berth install-builtin-checks` runs: an unknown name fails the
    // helper (the daemon then tries itself), the rest are installed.
    let err = install_here(root.path(), &builtins, &wanted).unwrap_err();
    assert_eq!(err, "nothing@1.0.0: not built into this binary");
    let cached = std::fs::read_dir(root.path().join("plugins/cache"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "cwasm"))
        .count();
    assert_eq!(cached, SHIPPED.len(), "one compiled file per check");
    // Installed twice is no error.
    install_here(root.path(), &builtins, &wanted[..1]).unwrap();
    // The daemon then only enables and records them.
    assert_eq!(open_and_list(root.path(), builtins, None), all_enabled());
}
