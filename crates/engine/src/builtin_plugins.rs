//! Plugins built into the berth binary (the checks in the source tree's
//! `plugins/`, embedded by the binary's build script), offered to each data
//! root once: a first scan runs them, and a user's choice is never undone.
//!
//! `local/builtin_plugins` remembers each `name@version` offered. At start
//! a built-in offered before is left alone (the user may have disabled or
//! removed it). One never offered is installed, and enabled when
//! - it is the first version of its name offered and no other version of
//!   the name is enabled (a user's own replacement stays in charge), or
//! - it succeeds a built-in version that is still enabled (an upgrade);
//!
//! otherwise it is installed disabled, for the user to enable.
//!
//! Installing compiles the plugin (cranelift) and runs its `describe`. The
//! daemon does that in a helper process (`berth install-builtin-checks`,
//! [`install_here`]), which leaves the compiled code in the plugin cache on
//! disk: a fresh daemon then idles without the compiler's pages and heap,
//! and a scan loads the compiled checks from the cache. Without a helper
//! (or when it fails) the install happens in this process.

use std::path::Path;

use berth_plugin::{HostConfig, PluginError, PluginHost, PluginManifest, PluginRegistry};
use berth_store::{Store, Table};
use serde::{Deserialize, Serialize};

/// `name@version` of every built-in plugin offered on this node.
pub const BUILTIN_PLUGINS: Table = Table("local/builtin_plugins");

/// A plugin package embedded in the binary: `plugin.json` and `plugin.wasm`.
#[derive(Clone, Copy)]
pub struct BuiltinPlugin {
    pub manifest_json: &'static [u8],
    pub wasm: &'static [u8],
}

impl std::fmt::Debug for BuiltinPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltinPlugin")
            .field("manifest_json", &String::from_utf8_lossy(self.manifest_json))
            .field("wasm_bytes", &self.wasm.len())
            .finish()
    }
}

/// What `local/builtin_plugins` holds per `name@version`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Offered {
    /// RFC 3339.
    offered_at: String,
}

/// What start-up does with a built-in version not offered before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seed {
    /// Not installed yet (a user may have installed the same version).
    pub install: bool,
    pub enable: bool,
}

/// The decision for built-in `version` of a plugin, given the versions of
/// it offered before and the installed ones with their enabled state;
/// `None`: offered before, leave it be.
pub(crate) fn decide(version: &str, offered: &[String], installed: &[(String, bool)]) -> Option<Seed> {
    if offered.iter().any(|v| v == version) {
        return None;
    }
    let enable = if offered.is_empty() {
        !installed.iter().any(|(_, enabled)| *enabled)
    } else {
        installed.iter().any(|(v, enabled)| *enabled && offered.contains(v))
    };
    Some(Seed {
        install: !installed.iter().any(|(v, _)| v == version),
        enable,
    })
}

/// The manifests of the built-in plugins; an unreadable one is logged and
/// left out.
pub(crate) fn manifests(builtins: &[BuiltinPlugin]) -> Vec<(PluginManifest, BuiltinPlugin)> {
    builtins
        .iter()
        .filter_map(
            |plugin| match PluginManifest::from_json(plugin.manifest_json, "(built-in plugin)") {
                Ok(manifest) => Some((manifest, *plugin)),
                Err(e) => {
                    tracing::error!(error = %e, "skipping a built-in plugin with an unreadable manifest");
                    None
                }
            },
        )
        .collect()
}

/// Offers every built-in plugin not offered on this node before (see the
/// module docs), installing new ones through the helper `installer` (the
/// berth binary and the data root) when given. A plugin that fails to
/// install is logged and offered again at the next start.
pub(crate) fn seed(
    registry: &PluginRegistry,
    store: &Store,
    builtins: &[(PluginManifest, BuiltinPlugin)],
    installer: Option<(&Path, &Path)>,
) {
    let mut plans = Vec::new();
    for (manifest, plugin) in builtins {
        match plan(registry, store, manifest) {
            Ok(Some(seed)) => plans.push((manifest, plugin, seed)),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(plugin = %manifest.name, version = %manifest.version, error = %e, "cannot offer a built-in plugin")
            }
        }
    }
    let wanted: Vec<String> = plans
        .iter()
        .filter(|(_, _, seed)| seed.install)
        .map(|(m, _, _)| name_at_version(m))
        .collect();
    if let (Some((exe, data_root)), false) = (installer, wanted.is_empty()) {
        if let Err(e) = install_in_helper(exe, data_root, &wanted) {
            tracing::warn!(error = %e, "the helper could not install the built-in checks: installing them in the daemon");
        }
    }
    for (manifest, plugin, seed) in plans {
        if let Err(e) = offer(registry, store, manifest, plugin, seed) {
            tracing::error!(plugin = %manifest.name, version = %manifest.version, error = %e, "cannot install a built-in plugin");
        }
    }
}

/// `name@version`: how `local/builtin_plugins` and the helper's command
/// line name a plugin version.
fn name_at_version(manifest: &PluginManifest) -> String {
    format!("{}@{}", manifest.name, manifest.version)
}

/// What to do with built-in `manifest` on this node; `None`: nothing.
fn plan(registry: &PluginRegistry, store: &Store, manifest: &PluginManifest) -> Result<Option<Seed>, String> {
    let prefix = format!("{}@", manifest.name);
    let offered: Vec<String> = store
        .list::<Offered>(BUILTIN_PLUGINS)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter_map(|(key, _)| key.strip_prefix(&prefix).map(str::to_string))
        .collect();
    let installed: Vec<(String, bool)> = registry
        .list()
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|info| info.manifest.name == manifest.name)
        .map(|info| (info.manifest.version, info.enabled))
        .collect();
    Ok(decide(&manifest.version, &offered, &installed))
}

/// Carries out `seed` for one plugin (installing it here unless the helper
/// did) and records it as offered.
fn offer(
    registry: &PluginRegistry,
    store: &Store,
    manifest: &PluginManifest,
    plugin: &BuiltinPlugin,
    seed: Seed,
) -> Result<(), String> {
    if seed.install {
        match registry.install_bytes_disabled(plugin.manifest_json, plugin.wasm) {
            Ok(_) | Err(PluginError::AlreadyInstalled { .. }) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    if seed.enable {
        registry
            .enable(&manifest.name, Some(&manifest.version))
            .map_err(|e| e.to_string())?;
    }
    let key = name_at_version(manifest);
    let offered = Offered {
        offered_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    store
        .write(|t| t.put(BUILTIN_PLUGINS, &key, &offered))
        .map_err(|e| e.to_string())?;
    tracing::info!(
        plugin = %manifest.name,
        version = %manifest.version,
        installed = seed.install,
        enabled = seed.enable,
        "offered a built-in plugin"
    );
    Ok(())
}

/// Runs `exe install-builtin-checks --data-root DATA_ROOT NAME@VERSION...`
/// and waits for it.
fn install_in_helper(exe: &Path, data_root: &Path, wanted: &[String]) -> Result<(), String> {
    let output = std::process::Command::new(exe)
        .arg("install-builtin-checks")
        .arg("--data-root")
        .arg(data_root)
        .args(wanted)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("starting {}: {e}", exe.display()))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{} install-builtin-checks: {}: {}",
        exe.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    ))
}

/// Installs, disabled, the built-in plugins named `name@version` in
/// `wanted` into the plugin registry of `data_root`, their compiled code
/// cached on disk: what the helper process runs. One already installed is
/// no error.
pub fn install_here(data_root: &Path, builtins: &[BuiltinPlugin], wanted: &[String]) -> Result<(), String> {
    let host = PluginHost::new(HostConfig::with_data_root(data_root)).map_err(|e| e.to_string())?;
    let registry = PluginRegistry::open(data_root.join("plugins"), host).map_err(|e| e.to_string())?;
    let known = manifests(builtins);
    let mut failed = Vec::new();
    for want in wanted {
        let Some((manifest, plugin)) = known.iter().find(|(m, _)| name_at_version(m) == *want) else {
            failed.push(format!("{want}: not built into this binary"));
            continue;
        };
        match registry.install_bytes_disabled(plugin.manifest_json, plugin.wasm) {
            Ok(_) | Err(PluginError::AlreadyInstalled { .. }) => {}
            Err(e) => failed.push(format!("{}: {e}", manifest.name)),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}

/// Whether an installed plugin is one of the built-in ones (same name,
/// version and wasm).
pub(crate) fn is_builtin(builtins: &[(PluginManifest, BuiltinPlugin)], manifest: &PluginManifest) -> bool {
    builtins
        .iter()
        .any(|(b, _)| b.name == manifest.name && b.version == manifest.version && b.digest == manifest.digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `decide` for built-in `version`, with `offered` before and
    /// `installed` as `version` or `version+` (enabled).
    fn check(version: &str, offered: &[&str], installed: &[&str]) -> Option<(bool, bool)> {
        let offered: Vec<String> = offered.iter().map(|v| v.to_string()).collect();
        let installed: Vec<(String, bool)> = installed
            .iter()
            .map(|v| match v.strip_suffix('+') {
                Some(v) => (v.to_string(), true),
                None => (v.to_string(), false),
            })
            .collect();
        decide(version, &offered, &installed).map(|s| (s.install, s.enable))
    }

    #[test]
    fn built_in_plugins_are_offered_once_and_never_override_the_user() {
        // (built-in version, offered before, installed) → (install, enable); None: left alone.
        // A fresh data root: installed and enabled.
        assert_eq!(check("0.1.0", &[], &[]), Some((true, true)));
        // Offered before: left alone, whether enabled, disabled or removed.
        assert_eq!(check("0.1.0", &["0.1.0"], &["0.1.0+"]), None);
        assert_eq!(check("0.1.0", &["0.1.0"], &["0.1.0"]), None);
        assert_eq!(check("0.1.0", &["0.1.0"], &[]), None);
        // The user runs a version of their own: the built-in arrives disabled.
        assert_eq!(check("0.1.0", &[], &["0.0.9+"]), Some((true, false)));
        // The user installed this very version: enabled only when nothing else is.
        assert_eq!(check("0.1.0", &[], &["0.1.0"]), Some((false, true)));
        // An upgrade of a built-in the user kept enabled: the new one takes over.
        assert_eq!(check("0.2.0", &["0.1.0"], &["0.1.0+"]), Some((true, true)));
        // ... of one they disabled or removed: offered, disabled.
        assert_eq!(check("0.2.0", &["0.1.0"], &["0.1.0"]), Some((true, false)));
        assert_eq!(check("0.2.0", &["0.1.0"], &[]), Some((true, false)));
        // ... of one they replaced with their own version: theirs stays.
        assert_eq!(check("0.2.0", &["0.1.0"], &["0.1.0", "0.1.5+"]), Some((true, false)));
        // Installed (disabled) but not recorded, as after a crash: enabled now.
        assert_eq!(check("0.2.0", &["0.1.0"], &["0.1.0+", "0.2.0"]), Some((false, true)));
    }
}
