//! Compiled components on disk, so a plugin is compiled once per berth
//! version rather than once per process.
//!
//! A file is named `<wasm sha256>-<engine key>.cwasm`, the engine key being a
//! hash of the wasmtime version and of every engine setting that affects the
//! compiled code ([`Engine::precompile_compatibility_hash`]). Files are
//! written to a temporary name and renamed, so a reader never sees half a
//! file; the directory is created `0700`.
//!
//! **Trust:** loading compiled code runs it as native code. Only files berth
//! wrote itself, in its own root-owned cache directory, are ever loaded; the
//! cache is not a way to ship plugins (plugins travel as wasm and are
//! compiled here).

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

use crate::error::PluginError;

/// The wasmtime this crate is built with; part of the cache key. A test
/// checks it against `Cargo.lock`.
pub const WASMTIME_VERSION: &str = "48.0.8";

/// A directory of compiled components for one engine configuration.
pub struct CompileCache {
    dir: PathBuf,
    engine: Engine,
    engine_key: String,
}

impl CompileCache {
    pub fn new(dir: &Path, engine: &Engine) -> CompileCache {
        CompileCache {
            dir: dir.to_path_buf(),
            engine: engine.clone(),
            engine_key: engine_key(engine),
        }
    }

    /// Where the compiled form of the wasm with `digest` (`sha256:<hex>`) lives.
    pub fn path_for(&self, digest: &str) -> PathBuf {
        self.dir
            .join(format!("{}-{}.cwasm", digest_hex(digest), self.engine_key))
    }

    /// The cached component for `digest`, if there is a usable one. A file
    /// wasmtime refuses (another version, another configuration, damage) is
    /// removed so that the next store replaces it.
    pub fn load(&self, digest: &str) -> Option<Component> {
        let path = self.path_for(digest);
        // Read into memory rather than mapped: a mapped file changed under
        // the daemon (truncated, rewritten in place) would crash it with SIGBUS.
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "could not read a compiled plugin");
                return None;
            }
        };
        // SAFETY: `path` is in berth's own cache directory and was written by
        // `store` below from a component this engine compiled; nothing else
        // writes there (see the module docs). wasmtime still checks that the
        // bytes are a compiled component for this engine's version and
        // configuration before using them.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize(&self.engine, &bytes) };
        match loaded {
            Ok(component) => Some(component),
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %format!("{err:#}"), "discarding an unusable compiled plugin");
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    /// Writes `component`'s compiled form for `digest`, replacing older
    /// files for the same wasm compiled by another engine.
    pub fn store(&self, digest: &str, component: &Component) -> Result<(), PluginError> {
        let bytes = component.serialize().map_err(|err| PluginError::Engine {
            reason: format!("could not serialize the compiled plugin {digest}: {err:#}"),
        })?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(PluginError::io("creating the plugin cache directory", &self.dir))?;
        let path = self.path_for(digest);
        let temp = self.dir.join(format!(
            ".{}.tmp-{}-{}",
            digest_hex(digest),
            std::process::id(),
            next_serial()
        ));
        let written = fs::File::create(&temp)
            .and_then(|mut file| {
                file.write_all(&bytes)?;
                file.sync_all()
            })
            .and_then(|()| fs::rename(&temp, &path));
        if let Err(err) = written {
            let _ = fs::remove_file(&temp);
            return Err(PluginError::Io {
                action: "writing the compiled plugin",
                path,
                source: err,
            });
        }
        self.remove_others(digest, &path);
        Ok(())
    }

    /// Removes every compiled form of the wasm with `digest`.
    pub fn remove(&self, digest: &str) {
        self.remove_others(digest, Path::new(""));
    }

    fn remove_others(&self, digest: &str, keep: &Path) {
        let prefix = format!("{}-", digest_hex(digest));
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let ours = entry.file_name().to_str().is_some_and(|name| name.starts_with(&prefix));
            if ours && path != keep {
                let _ = fs::remove_file(&path);
            }
        }
    }
}

/// The hex part of `sha256:<hex>` (or the string itself, without a colon).
fn digest_hex(digest: &str) -> &str {
    digest.split_once(':').map_or(digest, |(_, hex)| hex)
}

fn next_serial() -> u64 {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    SERIAL.fetch_add(1, Ordering::Relaxed)
}

/// 16 hex digits naming the wasmtime version and the engine's compilation
/// settings.
fn engine_key(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    WASMTIME_VERSION.hash(&mut hasher);
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..8])
}

/// Feeds [`Hash`] into SHA-256, which (unlike `DefaultHasher`) is the same in
/// every build.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wasmtime_version_in_the_key_is_the_one_in_cargo_lock() {
        let lock_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock");
        let lock = fs::read_to_string(&lock_path).unwrap();
        let wasmtime = lock
            .split("[[package]]")
            .find(|package| package.contains("\nname = \"wasmtime\"\n"))
            .expect("wasmtime in Cargo.lock");
        assert!(
            wasmtime.contains(&format!("\nversion = \"{WASMTIME_VERSION}\"\n")),
            "update WASMTIME_VERSION to match Cargo.lock:{wasmtime}"
        );
    }

    #[test]
    fn cache_file_names_carry_the_wasm_digest_and_the_engine_key() {
        let engine = Engine::default();
        let cache = CompileCache::new(Path::new("/cache"), &engine);
        let name = cache
            .path_for("sha256:abcd")
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let (digest, rest) = name.split_once('-').unwrap();
        assert_eq!(digest, "abcd");
        assert_eq!(rest.len(), 16 + ".cwasm".len());
        assert_eq!(engine_key(&engine), engine_key(&engine.clone()));
    }
}
