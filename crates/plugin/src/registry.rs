//! Installed plugins, as plain files under one directory (normally
//! `<data-root>/plugins`):
//!
//! ```text
//! <root>/<name>/<version>/plugin.wasm   the component
//! <root>/<name>/<version>/plugin.json   its manifest
//! <root>/<name>/<version>/state.json    enabled or not, what it described itself as
//! <root>/cache/                         compiled code (see `cache`)
//! ```
//!
//! Install verifies everything before anything appears under `<root>/<name>`:
//! the manifest's form, the wasm's digest, that the component is a component,
//! that it links against the host's world at the declared version (its
//! imports are all provided, its exports are the world's), and that it runs
//! `describe` within its limits and calls itself by the manifest's name. It
//! is assembled in a staging directory and renamed into place, so a failed
//! install leaves nothing behind.
//!
//! At most one version of a name is enabled: enabling one disables the
//! others, and a fresh install is enabled unless another version already is.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::check::CheckInfo;
use crate::error::PluginError;
use crate::host::{PluginHost, ScannerCheck};
use crate::manifest::PluginManifest;
use crate::worlds::World;

const WASM_FILE: &str = "plugin.wasm";
const MANIFEST_FILE: &str = "plugin.json";
const STATE_FILE: &str = "state.json";
/// Directories under the root that are not plugins.
const CACHE_DIR: &str = "cache";

/// An installed plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    pub manifest: PluginManifest,
    pub enabled: bool,
    /// The directory it is installed in.
    pub dir: PathBuf,
    /// What a `scanner-check` plugin said about itself at install time.
    pub check: Option<CheckInfo>,
}

/// What `state.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    check: Option<CheckInfo>,
}

/// The installed plugins under one directory.
pub struct PluginRegistry {
    root: PathBuf,
    host: PluginHost,
}

impl PluginRegistry {
    /// The registry in `root`, created (mode 0700) if missing. `host` verifies
    /// and runs what is installed.
    pub fn open(root: impl Into<PathBuf>, host: PluginHost) -> Result<PluginRegistry, PluginError> {
        let root = root.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .map_err(PluginError::io("creating the plugin directory", &root))?;
        Ok(PluginRegistry { root, host })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn host(&self) -> &PluginHost {
        &self.host
    }

    /// Installs the plugin in `source`: a directory holding `plugin.json` and
    /// `plugin.wasm`, or the path of such a `plugin.json`.
    pub fn install(&self, source: &Path) -> Result<PluginInfo, PluginError> {
        let meta = fs::metadata(source).map_err(PluginError::io("reading", source))?;
        let (manifest_path, wasm_path) = if meta.is_dir() {
            (source.join(MANIFEST_FILE), source.join(WASM_FILE))
        } else if source.extension().is_some_and(|extension| extension == "json") {
            let dir = source.parent().unwrap_or(Path::new("."));
            (source.to_path_buf(), dir.join(WASM_FILE))
        } else {
            return Err(PluginError::InvalidManifest {
                source_name: source.display().to_string(),
                reason: format!("expected a plugin directory or its {MANIFEST_FILE}"),
            });
        };
        let manifest_json = fs::read(&manifest_path).map_err(PluginError::io("reading", &manifest_path))?;
        let wasm = fs::read(&wasm_path).map_err(PluginError::io("reading", &wasm_path))?;
        self.install_parts(&manifest_json, &manifest_path.display().to_string(), &wasm, true)
    }

    /// Installs a plugin from its manifest JSON and component bytes (what an
    /// OCI pull yields).
    pub fn install_bytes(&self, manifest_json: &[u8], wasm: &[u8]) -> Result<PluginInfo, PluginError> {
        self.install_parts(manifest_json, "(plugin manifest)", wasm, true)
    }

    /// Installs a plugin like [`install_bytes`](Self::install_bytes) but
    /// disabled, whatever else is installed (the daemon offers a new built-in
    /// version this way when the user had turned the plugin off).
    pub fn install_bytes_disabled(&self, manifest_json: &[u8], wasm: &[u8]) -> Result<PluginInfo, PluginError> {
        self.install_parts(manifest_json, "(plugin manifest)", wasm, false)
    }

    fn install_parts(
        &self,
        manifest_json: &[u8],
        source_name: &str,
        wasm: &[u8],
        may_enable: bool,
    ) -> Result<PluginInfo, PluginError> {
        let manifest = PluginManifest::from_json(manifest_json, source_name)?;
        manifest.verify_wasm(wasm)?;
        let target = self.version_dir(&manifest.name, &manifest.version);
        if target.exists() {
            return Err(PluginError::AlreadyInstalled {
                name: manifest.name.clone(),
                version: manifest.version.clone(),
            });
        }

        let world = manifest.world_version()?;
        let (check, described) = match world.world {
            World::ScannerCheck => {
                let check = self
                    .host
                    .prepare_scanner_check(&manifest.name, world.version, wasm, false)?;
                let described = check.describe()?;
                (check, described)
            }
        };
        if described.name != manifest.name {
            return Err(PluginError::InvalidManifest {
                source_name: source_name.to_string(),
                reason: format!(
                    "the manifest names the plugin {:?} but the component calls itself {:?}",
                    manifest.name, described.name
                ),
            });
        }

        let enabled = may_enable && !self.versions(&manifest.name)?.iter().any(|info| info.enabled);
        let staging = Staging::create(&self.root)?;
        write_file(&staging.path.join(WASM_FILE), wasm)?;
        write_file(&staging.path.join(MANIFEST_FILE), &manifest.to_json())?;
        let state = State {
            enabled,
            check: Some(described),
        };
        write_state(&staging.path, &state)?;

        let name_dir = self.root.join(&manifest.name);
        let created_name_dir = !name_dir.exists();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&name_dir)
            .map_err(PluginError::io("creating", &name_dir))?;
        if let Err(err) = fs::rename(&staging.path, &target) {
            if created_name_dir {
                let _ = fs::remove_dir(&name_dir);
            }
            // Someone else installed the same version meanwhile.
            if target.exists() {
                return Err(PluginError::AlreadyInstalled {
                    name: manifest.name.clone(),
                    version: manifest.version.clone(),
                });
            }
            return Err(PluginError::Io {
                action: "moving the plugin into place at",
                path: target,
                source: err,
            });
        }
        staging.disarm();
        check.persist();
        tracing::info!(plugin = %manifest.name, version = %manifest.version, digest = %manifest.digest, "installed plugin");
        Ok(PluginInfo {
            manifest,
            enabled: state.enabled,
            dir: target,
            check: state.check,
        })
    }

    /// Every installed plugin, by name then version. Directories that are
    /// not complete installs are skipped with a warning.
    pub fn list(&self) -> Result<Vec<PluginInfo>, PluginError> {
        let mut all = Vec::new();
        for name in sorted_dir_names(&self.root)? {
            if name == CACHE_DIR || name.starts_with('.') {
                continue;
            }
            all.extend(self.versions(&name)?);
        }
        Ok(all)
    }

    /// One installed plugin; `version` may be left out when only one is installed.
    pub fn inspect(&self, name: &str, version: Option<&str>) -> Result<PluginInfo, PluginError> {
        let versions = self.versions(name)?;
        pick(name, version, versions)
    }

    /// Enables `name` (at `version`), disabling its other versions.
    pub fn enable(&self, name: &str, version: Option<&str>) -> Result<PluginInfo, PluginError> {
        let versions = self.versions(name)?;
        let chosen = pick(name, version, versions.clone())?;
        for other in versions.iter().filter(|info| info.enabled && info.dir != chosen.dir) {
            self.set_enabled(other, false)?;
        }
        self.set_enabled(&chosen, true)
    }

    pub fn disable(&self, name: &str, version: Option<&str>) -> Result<PluginInfo, PluginError> {
        let chosen = self.inspect(name, version)?;
        self.set_enabled(&chosen, false)
    }

    /// Uninstalls a plugin version and drops its compiled code.
    pub fn remove(&self, name: &str, version: Option<&str>) -> Result<PluginInfo, PluginError> {
        let chosen = self.inspect(name, version)?;
        // Renamed first so the plugin disappears at once, even if the removal
        // of its files is interrupted.
        let doomed = self
            .root
            .join(format!(".removing-{}-{}", std::process::id(), next_serial()));
        fs::rename(&chosen.dir, &doomed).map_err(PluginError::io("removing", &chosen.dir))?;
        fs::remove_dir_all(&doomed).map_err(PluginError::io("removing", &doomed))?;
        let name_dir = self.root.join(name);
        if fs::read_dir(&name_dir).is_ok_and(|mut entries| entries.next().is_none()) {
            let _ = fs::remove_dir(&name_dir);
        }
        let digest_still_used = self
            .list()?
            .iter()
            .any(|info| info.manifest.digest == chosen.manifest.digest);
        if !digest_still_used {
            self.host.forget(&chosen.manifest.digest);
        }
        tracing::info!(plugin = %name, version = %chosen.manifest.version, "removed plugin");
        Ok(chosen)
    }

    /// The component bytes of an installed plugin, checked against its
    /// manifest's digest.
    pub fn wasm(&self, name: &str, version: Option<&str>) -> Result<(PluginInfo, Vec<u8>), PluginError> {
        let info = self.inspect(name, version)?;
        let path = info.dir.join(WASM_FILE);
        let wasm = fs::read(&path).map_err(PluginError::io("reading", &path))?;
        info.manifest.verify_wasm(&wasm)?;
        Ok((info, wasm))
    }

    /// An installed, enabled `scanner-check` plugin, ready to run.
    pub fn load_scanner_check(&self, name: &str, version: Option<&str>) -> Result<ScannerCheck, PluginError> {
        let (info, wasm) = self.wasm(name, version)?;
        if !info.enabled {
            return Err(PluginError::Disabled {
                name: info.manifest.name,
                version: info.manifest.version,
            });
        }
        self.host
            .load_scanner_check(&info.manifest.name, &info.manifest.world_version, &wasm)
    }

    /// Every enabled `scanner-check` plugin, ready to run.
    pub fn enabled_scanner_checks(&self) -> Result<Vec<(PluginInfo, ScannerCheck)>, PluginError> {
        let mut checks = Vec::new();
        for info in self.list()? {
            if info.enabled && info.manifest.world == World::ScannerCheck.name() {
                let check = self.load_scanner_check(&info.manifest.name, Some(&info.manifest.version))?;
                checks.push((info, check));
            }
        }
        Ok(checks)
    }

    fn version_dir(&self, name: &str, version: &str) -> PathBuf {
        self.root.join(name).join(version)
    }

    /// The installed versions of `name` (none if it is not installed).
    fn versions(&self, name: &str) -> Result<Vec<PluginInfo>, PluginError> {
        let name_dir = self.root.join(name);
        if name == CACHE_DIR || name.starts_with('.') || name.contains('/') || !name_dir.is_dir() {
            return Ok(Vec::new());
        }
        let mut versions = Vec::new();
        for version in sorted_dir_names(&name_dir)? {
            let dir = name_dir.join(&version);
            match read_installed(&dir) {
                Ok(info) => versions.push(info),
                Err(err) => tracing::warn!(dir = %dir.display(), error = %err, "skipping an incomplete plugin install"),
            }
        }
        Ok(versions)
    }

    fn set_enabled(&self, info: &PluginInfo, enabled: bool) -> Result<PluginInfo, PluginError> {
        let state = State {
            enabled,
            check: info.check.clone(),
        };
        write_state(&info.dir, &state)?;
        Ok(PluginInfo {
            enabled,
            ..info.clone()
        })
    }
}

fn pick(name: &str, version: Option<&str>, versions: Vec<PluginInfo>) -> Result<PluginInfo, PluginError> {
    match version {
        Some(version) => versions
            .into_iter()
            .find(|info| info.manifest.version == version)
            .ok_or_else(|| PluginError::NotInstalled {
                name: name.to_string(),
                version: Some(version.to_string()),
            }),
        None if versions.len() > 1 => Err(PluginError::AmbiguousVersion {
            name: name.to_string(),
            versions: versions
                .iter()
                .map(|info| info.manifest.version.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
        None => versions.into_iter().next().ok_or_else(|| PluginError::NotInstalled {
            name: name.to_string(),
            version: None,
        }),
    }
}

fn read_installed(dir: &Path) -> Result<PluginInfo, PluginError> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let manifest_json = fs::read(&manifest_path).map_err(PluginError::io("reading", &manifest_path))?;
    let manifest = PluginManifest::from_json(&manifest_json, &manifest_path.display().to_string())?;
    let state_path = dir.join(STATE_FILE);
    let state_json = fs::read(&state_path).map_err(PluginError::io("reading", &state_path))?;
    let state: State = serde_json::from_slice(&state_json).map_err(|err| PluginError::InvalidManifest {
        source_name: state_path.display().to_string(),
        reason: err.to_string(),
    })?;
    Ok(PluginInfo {
        manifest,
        enabled: state.enabled,
        dir: dir.to_path_buf(),
        check: state.check,
    })
}

fn sorted_dir_names(dir: &Path) -> Result<Vec<String>, PluginError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(PluginError::io("listing", dir))? {
        let entry = entry.map_err(PluginError::io("listing", dir))?;
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), PluginError> {
    fs::write(path, bytes).map_err(PluginError::io("writing", path))
}

/// Replaces `state.json` in `dir` atomically.
fn write_state(dir: &Path, state: &State) -> Result<(), PluginError> {
    let mut json = serde_json::to_vec_pretty(state).map_err(|err| PluginError::Engine {
        reason: format!("could not encode the plugin state: {err}"),
    })?;
    json.push(b'\n');
    let temp = dir.join(format!(".{STATE_FILE}.tmp-{}-{}", std::process::id(), next_serial()));
    write_file(&temp, &json)?;
    let path = dir.join(STATE_FILE);
    fs::rename(&temp, &path).map_err(|err| {
        let _ = fs::remove_file(&temp);
        PluginError::Io {
            action: "writing",
            path,
            source: err,
        }
    })
}

fn next_serial() -> u64 {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    SERIAL.fetch_add(1, Ordering::Relaxed)
}

/// A directory an install is assembled in; removed on drop unless disarmed
/// (renamed into place).
struct Staging {
    path: PathBuf,
    armed: bool,
}

impl Staging {
    fn create(root: &Path) -> Result<Staging, PluginError> {
        let path = root.join(format!(".staging-{}-{}", std::process::id(), next_serial()));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(PluginError::io("creating", &path))?;
        Ok(Staging { path, armed: true })
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}
