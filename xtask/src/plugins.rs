//! `cargo xtask plugins`: builds berth's shipped plugins (`plugins/`, its own
//! cargo workspace) for `wasm32-wasip2` into `<target>/plugins`, and packages
//! each one that declares a world (`[package.metadata.berth]`) as an
//! installable directory `<target>/plugins/dist/<name>/` holding
//! `plugin.wasm` and its `plugin.json` manifest. Test-only plugins under
//! `plugins/testdata/` are built (berth-plugin's tests use them) but not
//! packaged. `--check` first runs rustfmt and clippy over the plugins.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::util::{self, step};

const TARGET: &str = "wasm32-wasip2";

/// `cargo xtask plugins [--check]`.
pub fn main(args: &[String]) -> Result<()> {
    match args {
        [] => {}
        [flag] if flag == "--check" => check()?,
        [other, ..] => bail!("`cargo xtask plugins` takes only `--check`, got `{other}`"),
    }
    let dist = build()?;
    eprintln!("\nplugins packaged in {}", dist.display());
    Ok(())
}

/// Formatting and clippy (`-D warnings`) over the plugins workspace.
pub fn check() -> Result<()> {
    ensure_target()?;
    let manifest = plugins_manifest();
    step("plugins: formatting (cargo fmt --check)");
    util::run(
        util::cargo()
            .args(["fmt", "--manifest-path"])
            .arg(&manifest)
            .args(["--all", "--", "--check"]),
    )
    .context("plugin formatting differs: run `cargo fmt --manifest-path plugins/Cargo.toml --all`")?;
    step("plugins: lints (cargo clippy -D warnings)");
    util::run(
        util::cargo()
            .args(["clippy", "--locked", "--release", "--target", TARGET, "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(target_dir()?)
            .args(["--", "-D", "warnings"]),
    )
    .context("clippy found problems in the plugins")
}

/// Builds every plugin and packages the shipped ones; returns the `dist`
/// directory holding one installable directory per plugin.
pub fn build() -> Result<PathBuf> {
    ensure_target()?;
    let manifest = plugins_manifest();
    let target_dir = target_dir()?;
    step("plugins: building for wasm32-wasip2");
    util::run(
        util::cargo()
            .args(["build", "--locked", "--release", "--target", TARGET, "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target_dir),
    )
    .context("building the plugins failed")?;

    let metadata: Value = serde_json::from_str(&util::output(
        util::cargo()
            .args(["metadata", "--format-version", "1", "--no-deps", "--manifest-path"])
            .arg(&manifest),
    )?)
    .context("parsing `cargo metadata` for the plugins")?;
    let built = target_dir.join(TARGET).join("release");
    let dist = target_dir.join("dist");
    if dist.exists() {
        fs::remove_dir_all(&dist).with_context(|| format!("removing {}", dist.display()))?;
    }
    let packages = metadata["packages"]
        .as_array()
        .context("`cargo metadata` listed no packages")?;
    let mut packaged = 0;
    for package in packages {
        let Some(plugin) = shipped_plugin(package)? else {
            continue;
        };
        let wasm_path = built.join(format!("{}.wasm", plugin.name.replace('-', "_")));
        let wasm = fs::read(&wasm_path).with_context(|| format!("reading {}", wasm_path.display()))?;
        let dir = dist.join(&plugin.name);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        fs::write(dir.join("plugin.wasm"), &wasm)?;
        fs::write(dir.join("plugin.json"), plugin.manifest_json(&wasm))?;
        eprintln!("packaged {} {} ({} bytes)", plugin.name, plugin.version, wasm.len());
        packaged += 1;
    }
    ensure!(
        packaged > 0,
        "no plugin in {} declares [package.metadata.berth]",
        manifest.display()
    );
    Ok(dist)
}

fn plugins_manifest() -> PathBuf {
    util::workspace_root().join("plugins/Cargo.toml")
}

/// `<target>/plugins`.
fn target_dir() -> Result<PathBuf> {
    Ok(util::target_dir()?.join("plugins"))
}

/// Installs the wasm32-wasip2 Rust target with rustup when it is missing.
fn ensure_target() -> Result<()> {
    let sysroot = util::output(Command::new("rustc").args(["--print", "sysroot"]))?;
    if Path::new(sysroot.trim()).join("lib/rustlib").join(TARGET).is_dir() {
        return Ok(());
    }
    step("installing the wasm32-wasip2 Rust target");
    util::run(Command::new("rustup").args(["target", "add", TARGET]))
        .context("the wasm32-wasip2 target is missing and `rustup target add wasm32-wasip2` failed")
}

/// A plugin crate that ships: its package fields and declared world.
struct ShippedPlugin {
    name: String,
    version: String,
    description: String,
    world: String,
    world_version: String,
}

impl ShippedPlugin {
    /// `plugin.json`, in the form berth-plugin's `PluginManifest` reads.
    fn manifest_json(&self, wasm: &[u8]) -> Vec<u8> {
        let manifest = json!({
            "schemaVersion": 1,
            "name": self.name,
            "version": self.version,
            "world": self.world,
            "worldVersion": self.world_version,
            "digest": format!("sha256:{}", hex::encode(Sha256::digest(wasm))),
            "description": self.description,
        });
        let mut bytes = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

/// The plugin `package` (from `cargo metadata`) describes, if it declares a
/// world and is not test data.
fn shipped_plugin(package: &Value) -> Result<Option<ShippedPlugin>> {
    let name = package["name"].as_str().context("a package without a name")?;
    let berth = &package["metadata"]["berth"];
    let manifest_path = package["manifest_path"].as_str().unwrap_or_default();
    if berth.is_null() || manifest_path.contains("/testdata/") {
        return Ok(None);
    }
    let field = |key: &str| -> Result<String> {
        berth[key]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("plugin {name}: [package.metadata.berth] has no string `{key}`"))
    };
    Ok(Some(ShippedPlugin {
        name: name.to_string(),
        version: package["version"].as_str().unwrap_or_default().to_string(),
        description: package["description"].as_str().unwrap_or_default().to_string(),
        world: field("world")?,
        world_version: field("world-version")?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_only_plugins_that_declare_a_world_and_are_not_test_data() {
        let shipped = json!({
            "name": "secrets", "version": "0.1.0", "description": "finds secrets",
            "manifest_path": "/w/plugins/secrets/Cargo.toml",
            "metadata": {"berth": {"world": "scanner-check", "world-version": "0.1.0"}},
        });
        let test_data = json!({
            "name": "test-loop", "version": "0.1.0", "manifest_path": "/w/plugins/testdata/test-loop/Cargo.toml",
            "metadata": {"berth": {"world": "scanner-check", "world-version": "0.1.0"}},
        });
        let library =
            json!({"name": "berth-plugin-sdk", "manifest_path": "/w/plugins/sdk/Cargo.toml", "metadata": null});
        assert!(shipped_plugin(&test_data).unwrap().is_none());
        assert!(shipped_plugin(&library).unwrap().is_none());
        let plugin = shipped_plugin(&shipped).unwrap().unwrap();
        let manifest: Value = serde_json::from_slice(&plugin.manifest_json(b"wasm bytes")).unwrap();
        assert_eq!(
            manifest,
            json!({
                "schemaVersion": 1,
                "name": "secrets",
                "version": "0.1.0",
                "world": "scanner-check",
                "worldVersion": "0.1.0",
                // sha256sum of the 10 bytes "wasm bytes"
                "digest": "sha256:a81d16f296ff2ebdb2dfe2ee0fbb532ba602da1ef9f797f8b1edb3e987fcf5db",
                "description": "finds secrets",
            })
        );
    }
}
