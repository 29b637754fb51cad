//! The plugins built into this binary (see `build.rs`): the checks of the
//! source tree's `plugins/`, which the daemon offers to each data root once.

include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));

/// Every embedded plugin package.
pub fn all() -> Vec<berth_engine::builtin_plugins::BuiltinPlugin> {
    PACKAGES
        .iter()
        .map(|(_, manifest_json, wasm)| berth_engine::builtin_plugins::BuiltinPlugin { manifest_json, wasm })
        .collect()
}

/// Their names, for the log.
pub fn names() -> Vec<&'static str> {
    PACKAGES.iter().map(|(name, _, _)| *name).collect()
}
