//! Shared by the integration tests: builds berth's plugins (`plugins/`, its
//! own cargo workspace) for `wasm32-wasip2` once per test binary, into
//! `<target>/plugins`, and lays out plugin directories and image fixtures.

// Test helpers: each test binary uses some of them, and a failure here is a test failure.
#![allow(dead_code, clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use berth_plugin::{ImageInfo, PluginManifest, WorldVersion};

/// The plugins workspace.
pub fn plugins_workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins")
}

/// `<target>/plugins`: the plugins' own target directory.
pub fn plugins_target_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent()
        .expect("CARGO_TARGET_TMPDIR is <target>/tmp")
        .join("plugins")
}

/// Builds every plugin (once per process) and returns the directory holding
/// `<crate_name>.wasm`. Panics, naming what is missing, if the build cannot run.
pub fn built_plugins() -> &'static Path {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BUILT.get_or_init(build_plugins) {
        Ok(dir) => dir,
        Err(err) => panic!("{err}"),
    }
}

fn build_plugins() -> Result<PathBuf, String> {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .map_err(|err| format!("could not run rustc to find its sysroot: {err}"))?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
    if !Path::new(&sysroot).join("lib/rustlib/wasm32-wasip2").is_dir() {
        return Err(format!(
            "the Rust target wasm32-wasip2 is not installed (no {sysroot}/lib/rustlib/wasm32-wasip2): \
             run `rustup target add wasm32-wasip2`"
        ));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = plugins_target_dir();
    let manifest = plugins_workspace().join("Cargo.toml");
    let output = Command::new(cargo)
        .arg("build")
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["--target", "wasm32-wasip2", "--release", "--locked", "--target-dir"])
        .arg(&target_dir)
        .output()
        .map_err(|err| format!("could not run cargo to build the plugins: {err}"))?;
    if !output.status.success() {
        return Err(format!(
            "building the plugins ({}) failed:\n{}",
            manifest.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(target_dir.join("wasm32-wasip2/release"))
}

/// The component built from the plugin crate `name` (`test-loop`).
pub fn wasm(name: &str) -> Vec<u8> {
    let path = built_plugins().join(format!("{}.wasm", name.replace('-', "_")));
    fs::read(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
}

pub fn scanner_check_0_1_0() -> WorldVersion {
    WorldVersion::find("scanner-check", "0.1.0").unwrap()
}

/// A plugin directory (`plugin.json` + `plugin.wasm`) in `parent/dir_name`.
pub fn plugin_dir(parent: &Path, dir_name: &str, manifest: &PluginManifest, wasm: &[u8]) -> PathBuf {
    let dir = parent.join(dir_name);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("plugin.json"), manifest.to_json()).unwrap();
    fs::write(dir.join("plugin.wasm"), wasm).unwrap();
    dir
}

/// The manifest `cargo xtask plugins` would write for plugin crate `name`.
pub fn manifest_for(name: &str, wasm: &[u8]) -> PluginManifest {
    PluginManifest::new(name, "0.1.0", scanner_check_0_1_0(), "test", wasm)
}

/// Every file and directory below `dir`, relative, sorted.
pub fn tree(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            found.push(path.strip_prefix(dir).unwrap().display().to_string());
            if path.is_dir() {
                pending.push(path);
            }
        }
    }
    found.sort();
    found
}

pub fn write(root: &Path, path: &str, contents: &[u8], mode: u32) {
    let path = root.join(path.trim_start_matches('/'));
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, contents).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
}

pub fn mkdir(root: &Path, path: &str, mode: u32) {
    let path = root.join(path.trim_start_matches('/'));
    fs::create_dir_all(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
}

pub fn owner_uid(path: &Path) -> u32 {
    fs::metadata(path).unwrap().uid()
}

/// `n` characters from `alphabet`, the same every run (a fixed LCG), so
/// fixtures look random without being real secrets.
pub fn pseudo_random(n: usize, alphabet: &[u8], seed: u64) -> String {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            alphabet[(state >> 33) as usize % alphabet.len()] as char
        })
        .collect()
}

pub const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
pub const UPPER_DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
pub const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A fake PEM block: the right armor around 24 lines of base64 noise.
pub fn fake_pem(label: &str, seed: u64) -> String {
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in 0..24 {
        pem.push_str(&pseudo_random(64, BASE64, seed + line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

/// The image configuration of an image that does everything wrong.
pub fn risky_config() -> ImageInfo {
    ImageInfo {
        user: None,
        exposed_ports: vec!["22/tcp".to_string(), "8080/tcp".to_string()],
        env: ImageInfo::split_env(["PATH=/usr/bin:/bin", "MYSQL_ROOT_PASSWORD=hunter2-but-longer"]),
        entrypoint: vec!["/usr/sbin/sshd".to_string()],
        cmd: vec!["-D".to_string()],
        has_healthcheck: false,
        labels: Vec::new(),
        working_dir: None,
    }
}

/// The image configuration of an image that does everything right.
pub fn careful_config() -> ImageInfo {
    ImageInfo {
        user: Some("10001:10001".to_string()),
        exposed_ports: vec!["8080/tcp".to_string()],
        env: ImageInfo::split_env(["PATH=/usr/bin:/bin", "DB_PASSWORD_FILE=/run/secrets/db"]),
        entrypoint: vec!["/app/server".to_string()],
        cmd: Vec::new(),
        has_healthcheck: true,
        labels: vec![("org.opencontainers.image.title".to_string(), "app".to_string())],
        working_dir: Some("/app".to_string()),
    }
}
