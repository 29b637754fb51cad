//! The plugin engine: one wasmtime [`Engine`] with the pooling allocator and
//! epoch interruption, a linker per supported world version, compiled
//! components kept in memory and on disk, and the per-call sandbox.
//!
//! Every call gets a fresh [`Store`]: a new instance (cheap with the pooling
//! allocator and an [`InstancePre`](wasmtime::component::InstancePre)), a
//! memory cap enforced by a [`ResourceLimiter`], and a CPU deadline counted
//! in ticks of an epoch thread. Whatever a call does — trap, spin, exhaust
//! its memory — ends with its store; the next call starts clean.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use wasmtime::component::{Component, HasData, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::cache::CompileCache;
use crate::check::{CheckInfo, Finding, ImageInfo};
use crate::error::PluginError;
use crate::fs::{EmptyImageFs, ImageFs};
use crate::manifest::sha256_digest;
use crate::stderr::StderrTail;
use crate::worlds::{v0_1_0, World, WorldVersion};

/// What one plugin call may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The most linear memory (all memories of the instance together) a call
    /// may grow to, in bytes. At most 4 GiB (wasm32).
    pub memory_bytes: u64,
    /// Wall-clock time a call may spend running wasm (instantiation
    /// included); checked at every loop back-edge and function entry.
    pub timeout: Duration,
    /// The most bytes one `read-file` call returns, whatever the plugin asks.
    pub max_read_len: u32,
    /// How many calls may run at once (instance slots in the pool).
    pub max_concurrent_calls: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 256 << 20,
            timeout: Duration::from_secs(10),
            max_read_len: 1 << 20,
            max_concurrent_calls: 16,
        }
    }
}

/// How to set up a [`PluginHost`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    pub limits: Limits,
    /// Where compiled components are kept between runs; `None` compiles
    /// every plugin once per process.
    pub cache_dir: Option<PathBuf>,
    /// How often the epoch advances: the granularity of the CPU deadline.
    pub epoch_tick: Duration,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            limits: Limits::default(),
            cache_dir: None,
            epoch_tick: Duration::from_millis(10),
        }
    }
}

impl HostConfig {
    /// The default configuration with the compile cache under
    /// `<data_root>/plugins/cache`.
    pub fn with_data_root(data_root: &Path) -> Self {
        HostConfig {
            cache_dir: Some(data_root.join("plugins").join("cache")),
            ..HostConfig::default()
        }
    }
}

/// The plugin engine. Cheap to clone; clones share the engine, the compiled
/// components and the epoch thread, which stops when the last clone (and the
/// last plugin loaded through it) is dropped.
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<HostInner>,
}

struct HostInner {
    engine: Engine,
    config: HostConfig,
    scanner_check_v0_1_0: Linker<HostState>,
    compiled: Mutex<HashMap<String, Component>>,
    cache: Option<CompileCache>,
    ticker: EpochTicker,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl PluginHost {
    pub fn new(config: HostConfig) -> Result<PluginHost, PluginError> {
        let limits = &config.limits;
        if limits.memory_bytes == 0 || limits.memory_bytes > 4 << 30 {
            return Err(engine_error(format!(
                "the memory limit must be between 1 byte and 4 GiB, not {}",
                limits.memory_bytes
            )));
        }
        if limits.timeout.is_zero() || config.epoch_tick.is_zero() || limits.max_concurrent_calls == 0 {
            return Err(engine_error(
                "the timeout, the epoch tick and the call slots must not be zero",
            ));
        }
        let engine = Engine::new(&engine_config(limits)).map_err(|err| engine_error(format!("{err:#}")))?;
        let mut scanner_check_v0_1_0 = Linker::new(&engine);
        add_empty_wasi(&mut scanner_check_v0_1_0).map_err(|err| engine_error(format!("{err:#}")))?;
        v0_1_0::add_scanner_check(&mut scanner_check_v0_1_0).map_err(|err| engine_error(format!("{err:#}")))?;
        let cache = config.cache_dir.as_deref().map(|dir| CompileCache::new(dir, &engine));
        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick)?;
        Ok(PluginHost {
            inner: Arc::new(HostInner {
                engine,
                config,
                scanner_check_v0_1_0,
                compiled: Mutex::new(HashMap::new()),
                cache,
                ticker,
            }),
        })
    }

    pub fn config(&self) -> &HostConfig {
        &self.inner.config
    }

    /// Compiles (or finds already compiled) `wasm`, a `scanner-check`
    /// component built against `world_version`, and checks that it fits:
    /// every import is one the host gives, every export the world needs is
    /// there with the right type. `plugin` names it in errors. Does not run it.
    pub fn load_scanner_check(
        &self,
        plugin: &str,
        world_version: &str,
        wasm: &[u8],
    ) -> Result<ScannerCheck, PluginError> {
        self.prepare_scanner_check(plugin, world_version, wasm, true)
    }

    /// [`Self::load_scanner_check`], keeping the compiled code out of the
    /// caches unless `persist`: install verifies a plugin before anything
    /// about it is written.
    pub(crate) fn prepare_scanner_check(
        &self,
        plugin: &str,
        world_version: &str,
        wasm: &[u8],
        persist: bool,
    ) -> Result<ScannerCheck, PluginError> {
        let world = WorldVersion::find(World::ScannerCheck.name(), world_version)?;
        let digest = sha256_digest(wasm);
        let component = self.component(plugin, &digest, wasm, persist)?;
        let wrong_world = |err: wasmtime::Error| PluginError::WrongWorld {
            plugin: plugin.to_string(),
            world: world.world.to_string(),
            version: world.version.to_string(),
            reason: format!("{err:#}"),
        };
        let pre = match world.version {
            v0_1_0::VERSION => {
                let instance_pre = self
                    .inner
                    .scanner_check_v0_1_0
                    .instantiate_pre(&component)
                    .map_err(wrong_world)?;
                ScannerCheckPre::V0_1_0(v0_1_0::Pre::new(instance_pre).map_err(wrong_world)?)
            }
            // `find` only returns versions listed in SUPPORTED, each of which has an arm above.
            other => {
                return Err(PluginError::UnsupportedWorld {
                    world: world.world.to_string(),
                    version: other.to_string(),
                    supported: "a version with bindings in this build".to_string(),
                })
            }
        };
        Ok(ScannerCheck {
            host: self.clone(),
            plugin: plugin.to_string(),
            digest,
            world,
            pre,
        })
    }

    /// The compiled form of `wasm`: from memory, from the disk cache, or
    /// compiled now (and then cached if `persist`).
    fn component(&self, plugin: &str, digest: &str, wasm: &[u8], persist: bool) -> Result<Component, PluginError> {
        let compiled = self.inner.compiled.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(component) = compiled.get(digest) {
            return Ok(component.clone());
        }
        drop(compiled);
        check_component_header(plugin, wasm)?;
        let cached = self.inner.cache.as_ref().and_then(|cache| cache.load(digest));
        let component = match cached {
            Some(component) => component,
            None => {
                let started = std::time::Instant::now();
                let component = Component::new(&self.inner.engine, wasm).map_err(|err| PluginError::NotAComponent {
                    plugin: plugin.to_string(),
                    reason: format!("{err:#}"),
                })?;
                tracing::debug!(
                    plugin,
                    digest,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "compiled plugin"
                );
                if persist {
                    self.write_cache(plugin, digest, &component);
                }
                component
            }
        };
        if persist {
            self.remember(digest, &component);
        }
        Ok(component)
    }

    fn remember(&self, digest: &str, component: &Component) {
        let mut compiled = self.inner.compiled.lock().unwrap_or_else(PoisonError::into_inner);
        compiled.insert(digest.to_string(), component.clone());
    }

    fn write_cache(&self, plugin: &str, digest: &str, component: &Component) {
        if let Some(cache) = &self.inner.cache {
            // A cache that cannot be written costs a compile next time, nothing more.
            if let Err(err) = cache.store(digest, component) {
                tracing::warn!(plugin, digest, error = %err, "could not cache the compiled plugin");
            }
        }
    }

    /// Forgets compiled code for `digest`, in memory and on disk.
    pub(crate) fn forget(&self, digest: &str) {
        let mut compiled = self.inner.compiled.lock().unwrap_or_else(PoisonError::into_inner);
        compiled.remove(digest);
        drop(compiled);
        if let Some(cache) = &self.inner.cache {
            cache.remove(digest);
        }
    }

    /// A store for one call, with its limits armed.
    fn new_store(&self, image: Arc<dyn ImageFs>) -> (Store<HostState>, StderrTail) {
        let limits = &self.inner.config.limits;
        let stderr = StderrTail::default();
        // Nothing preopened, no arguments, no environment, stdin closed,
        // stdout discarded: the plugin's only view of the world is its imports.
        let wasi = WasiCtx::builder().stderr(stderr.clone()).build();
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(limits.memory_bytes),
            image,
            max_read_len: limits.max_read_len,
            _active: self.inner.ticker.call(),
        };
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(deadline_ticks(limits.timeout, self.inner.config.epoch_tick));
        store.epoch_deadline_trap();
        (store, stderr)
    }

    /// Turns a failed instantiation or call into the error that says why.
    fn classify(
        &self,
        plugin: &str,
        store: &Store<HostState>,
        stderr: &StderrTail,
        phase: Phase,
        err: wasmtime::Error,
    ) -> PluginError {
        let limits = &self.inner.config.limits;
        if store.data().limiter.refused {
            return PluginError::OutOfMemory {
                plugin: plugin.to_string(),
                limit: limits.memory_bytes,
            };
        }
        match err.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => PluginError::Timeout {
                plugin: plugin.to_string(),
                limit: limits.timeout,
            },
            Some(trap) => {
                let reason = match stderr.summary(300) {
                    Some(said) => format!("{trap}; the plugin's last words: {said}"),
                    None => trap.to_string(),
                };
                PluginError::Trap {
                    plugin: plugin.to_string(),
                    reason,
                }
            }
            None if phase == Phase::Instantiate => PluginError::Instantiate {
                plugin: plugin.to_string(),
                reason: format!("{err:#}"),
            },
            None => PluginError::Trap {
                plugin: plugin.to_string(),
                reason: format!("{err:#}"),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Instantiate,
    Call,
}

/// A `scanner-check` plugin ready to run: compiled, linked, checked against
/// its world. Each call instantiates it afresh. Cheap to clone.
#[derive(Clone)]
pub struct ScannerCheck {
    host: PluginHost,
    plugin: String,
    digest: String,
    world: WorldVersion,
    pre: ScannerCheckPre,
}

impl std::fmt::Debug for ScannerCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScannerCheck")
            .field("plugin", &self.plugin)
            .field("digest", &self.digest)
            .field("world", &self.world)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
enum ScannerCheckPre {
    V0_1_0(v0_1_0::Pre<HostState>),
}

impl ScannerCheck {
    /// The name errors use for this plugin.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// `sha256:<hex>` of the component.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    pub fn world(&self) -> WorldVersion {
        self.world
    }

    /// Asks the plugin for its name, version and rules. It sees an empty image.
    pub fn describe(&self) -> Result<CheckInfo, PluginError> {
        let (mut store, stderr) = self.host.new_store(Arc::new(EmptyImageFs));
        match &self.pre {
            ScannerCheckPre::V0_1_0(pre) => {
                let bindings = pre.instantiate(&mut store).map_err(|err| {
                    self.host
                        .classify(&self.plugin, &store, &stderr, Phase::Instantiate, err)
                })?;
                let info = bindings
                    .berth_plugin_check()
                    .call_describe(&mut store)
                    .map_err(|err| self.host.classify(&self.plugin, &store, &stderr, Phase::Call, err))?;
                Ok(v0_1_0::check_info(info))
            }
        }
    }

    /// Runs the check against an image: its configuration and its files.
    pub fn run(&self, image_info: &ImageInfo, image: Arc<dyn ImageFs>) -> Result<Vec<Finding>, PluginError> {
        let (mut store, stderr) = self.host.new_store(image);
        let outcome = match &self.pre {
            ScannerCheckPre::V0_1_0(pre) => {
                let bindings = pre.instantiate(&mut store).map_err(|err| {
                    self.host
                        .classify(&self.plugin, &store, &stderr, Phase::Instantiate, err)
                })?;
                bindings
                    .berth_plugin_check()
                    .call_run(&mut store, &v0_1_0::image_info(image_info))
                    .map_err(|err| self.host.classify(&self.plugin, &store, &stderr, Phase::Call, err))?
                    .map(|findings| findings.into_iter().map(v0_1_0::finding).collect())
            }
        };
        outcome.map_err(|message| PluginError::CheckFailed {
            plugin: self.plugin.clone(),
            message,
        })
    }

    /// Keeps the compiled code in the host's caches (memory and disk).
    pub(crate) fn persist(&self) {
        let component = match &self.pre {
            ScannerCheckPre::V0_1_0(pre) => pre.instance_pre().component().clone(),
        };
        self.host.write_cache(&self.plugin, &self.digest, &component);
        self.host.remember(&self.digest, &component);
    }
}

/// The data of one call's store.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    image: Arc<dyn ImageFs>,
    max_read_len: u32,
    /// Keeps the epoch ticking while this call's store lives.
    _active: ActiveCall,
}

impl HostState {
    pub(crate) fn image(&self) -> &dyn ImageFs {
        &*self.image
    }

    pub(crate) fn max_read_len(&self) -> u32 {
        self.max_read_len
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps the total linear memory of a call and remembers having refused, so
/// that the trap that usually follows (Rust aborts when an allocation fails)
/// is reported as running out of memory.
struct MemoryLimiter {
    limit: u64,
    in_use: u64,
    refused: bool,
}

impl MemoryLimiter {
    fn new(limit: u64) -> Self {
        MemoryLimiter {
            limit,
            in_use: 0,
            refused: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current) as u64;
        if self.in_use.saturating_add(growth) > self.limit {
            self.refused = true;
            return Ok(false);
        }
        self.in_use += growth;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Tables hold function references; a million is far beyond any real plugin.
        Ok(desired <= 1_000_000)
    }
}

/// The engine settings: component model, epoch interruption, pooling
/// allocator sized from the limits.
fn engine_config(limits: &Limits) -> Config {
    let slots = limits.max_concurrent_calls;
    let mut pool = PoolingAllocationConfig::default();
    // A Rust component for wasm32-wasip2 has a handful of core instances
    // (the program and the canonical-ABI shims) and one or two memories.
    pool.total_component_instances(slots)
        .total_core_instances(slots * 8)
        .total_memories(slots * 2)
        .total_tables(slots * 8)
        .total_stacks(slots)
        .max_memories_per_component(2)
        .max_memory_size(limits.memory_bytes as usize);
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// The epoch ticks in `timeout`, rounded up, at least one.
fn deadline_ticks(timeout: Duration, tick: Duration) -> u64 {
    let ticks = timeout.as_nanos().div_ceil(tick.as_nanos().max(1));
    u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
}

fn engine_error(reason: impl Into<String>) -> PluginError {
    PluginError::Engine { reason: reason.into() }
}

/// Refuses, with a clear reason, bytes that are not a component: not wasm at
/// all, or a core module (what `wasm32-unknown-unknown`/`wasip1` produce).
fn check_component_header(plugin: &str, wasm: &[u8]) -> Result<(), PluginError> {
    let refuse = |reason: &str| PluginError::NotAComponent {
        plugin: plugin.to_string(),
        reason: reason.to_string(),
    };
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        return Err(refuse("the file is not WebAssembly (no `\\0asm` header)"));
    }
    match &wasm[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        [0x01, 0x00, 0x00, 0x00] => Err(refuse(
            "it is a core WebAssembly module, not a component (build it for wasm32-wasip2, or wrap it with `wasm-tools component new`)",
        )),
        _ => Err(refuse("unknown WebAssembly version or layer")),
    }
}

/// The WASI interfaces Rust's `wasm32-wasip2` standard library imports,
/// backed by an empty context. `wasi:sockets` is deliberately absent: a
/// component that imports it does not link.
fn add_empty_wasi(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
    use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, io, random, sync};
    use wasmtime_wasi::random::{WasiRandom, WasiRandomView};

    struct HasTable;
    impl HasData for HasTable {
        type Data<'a> = &'a mut ResourceTable;
    }
    fn table(state: &mut HostState) -> &mut ResourceTable {
        &mut state.table
    }

    io::error::add_to_linker::<HostState, HasTable>(linker, table)?;
    sync::io::poll::add_to_linker::<HostState, HasTable>(linker, table)?;
    sync::io::streams::add_to_linker::<HostState, HasTable>(linker, table)?;
    clocks::wall_clock::add_to_linker::<HostState, WasiClocks>(linker, HostState::clocks)?;
    clocks::monotonic_clock::add_to_linker::<HostState, WasiClocks>(linker, HostState::clocks)?;
    random::random::add_to_linker::<HostState, WasiRandom>(linker, HostState::random)?;
    random::insecure::add_to_linker::<HostState, WasiRandom>(linker, HostState::random)?;
    random::insecure_seed::add_to_linker::<HostState, WasiRandom>(linker, HostState::random)?;
    cli::exit::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    cli::environment::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    cli::stdin::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    cli::stdout::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    cli::stderr::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    cli::terminal_input::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    cli::terminal_output::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    cli::terminal_stdin::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    cli::terminal_stdout::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    cli::terminal_stderr::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    filesystem::preopens::add_to_linker::<HostState, WasiFilesystem>(linker, HostState::filesystem)?;
    sync::filesystem::types::add_to_linker::<HostState, WasiFilesystem>(linker, HostState::filesystem)?;
    Ok(())
}

/// A thread that advances the engine's epoch every `tick` while at least one
/// call is running, and sleeps otherwise (an idle daemon wakes for nothing);
/// it ends when the ticker is dropped.
struct EpochTicker {
    state: Arc<TickerState>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct TickerState {
    /// (calls running, stop)
    flags: Mutex<(usize, bool)>,
    changed: Condvar,
}

/// Held by each call's store: the epoch ticks while any exists.
pub(crate) struct ActiveCall(Arc<TickerState>);

impl Drop for ActiveCall {
    fn drop(&mut self) {
        let mut flags = self.0.flags.lock().unwrap_or_else(PoisonError::into_inner);
        flags.0 -= 1;
    }
}

impl EpochTicker {
    fn start(engine: Engine, tick: Duration) -> Result<EpochTicker, PluginError> {
        let state = Arc::new(TickerState::default());
        let shared = state.clone();
        let thread = thread::Builder::new()
            .name("berth-plugin-epoch".to_string())
            .spawn(move || {
                let mut flags = shared.flags.lock().unwrap_or_else(PoisonError::into_inner);
                loop {
                    while flags.0 == 0 && !flags.1 {
                        flags = shared.changed.wait(flags).unwrap_or_else(PoisonError::into_inner);
                    }
                    if flags.1 {
                        return;
                    }
                    flags = shared
                        .changed
                        .wait_timeout(flags, tick)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                    if flags.1 {
                        return;
                    }
                    engine.increment_epoch();
                }
            })
            .map_err(|err| engine_error(format!("could not start the epoch thread: {err}")))?;
        Ok(EpochTicker {
            state,
            thread: Some(thread),
        })
    }

    /// Marks a call as running until the returned guard is dropped.
    fn call(&self) -> ActiveCall {
        let mut flags = self.state.flags.lock().unwrap_or_else(PoisonError::into_inner);
        flags.0 += 1;
        if flags.0 == 1 {
            self.state.changed.notify_all();
        }
        ActiveCall(self.state.clone())
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.state.flags.lock().unwrap_or_else(PoisonError::into_inner).1 = true;
        self.state.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            // The thread only waits and ticks; it cannot panic.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_rounds_up_to_whole_ticks() {
        let tick = Duration::from_millis(10);
        assert_eq!(deadline_ticks(Duration::from_secs(10), tick), 1000);
        assert_eq!(deadline_ticks(Duration::from_millis(15), tick), 2);
        assert_eq!(deadline_ticks(Duration::from_nanos(1), tick), 1);
    }

    #[test]
    fn the_memory_limiter_counts_all_memories_and_remembers_refusing() {
        let mut limiter = MemoryLimiter::new(100);
        assert!(limiter.memory_growing(0, 60, None).unwrap());
        assert!(limiter.memory_growing(0, 40, None).unwrap());
        assert!(!limiter.refused);
        assert!(!limiter.memory_growing(60, 61, None).unwrap());
        assert!(limiter.refused);
    }

    #[test]
    fn headers_that_are_not_components_are_named() {
        let core_module = b"\0asm\x01\0\0\0";
        let err = check_component_header("p", core_module).unwrap_err().to_string();
        assert!(err.contains("core WebAssembly module, not a component"), "{err}");
        let err = check_component_header("p", b"#!/bin/sh\necho hi\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not WebAssembly"), "{err}");
        assert!(check_component_header("p", b"\0asm\x0d\0\x01\0").is_ok());
    }

    #[test]
    fn bad_limits_are_refused() {
        let mut config = HostConfig::default();
        config.limits.memory_bytes = 0;
        let err = PluginHost::new(config).err().unwrap().to_string();
        assert!(err.contains("memory limit"), "{err}");
    }
}
