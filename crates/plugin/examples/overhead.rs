//! Measures the plugin host on this machine: the cold compile of each
//! shipped plugin, loading it again from the disk cache (what a restarted
//! daemon does), and the per-call overhead of a fresh instance plus a
//! trivial call (`describe`), as a median over many calls.
//!
//! ```text
//! cargo xtask plugins
//! cargo run -p berth-plugin --release --example overhead -- target/plugins/dist
//! ```
//!
//! Prints one JSON object per plugin.

use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_plugin::{EmptyImageFs, HostConfig, ImageInfo, PluginHost, PluginManifest};

const CALLS: usize = 2000;

fn main() -> Result<(), Box<dyn Error>> {
    let dist = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: overhead <dist dir of `cargo xtask plugins`>")?,
    );
    for name in ["secrets", "file-permissions", "config-risks"] {
        let dir = dist.join(name);
        let manifest = PluginManifest::from_json(&std::fs::read(dir.join("plugin.json"))?, name)?;
        let wasm = std::fs::read(dir.join("plugin.wasm"))?;
        let cache = tempfile::tempdir()?;
        let config = HostConfig {
            cache_dir: Some(cache.path().to_path_buf()),
            ..HostConfig::default()
        };

        let host = PluginHost::new(config.clone())?;
        let started = Instant::now();
        host.load_scanner_check(name, &manifest.world_version, &wasm)?;
        let cold_compile = started.elapsed();

        let restarted = PluginHost::new(config)?;
        let started = Instant::now();
        let check = restarted.load_scanner_check(name, &manifest.world_version, &wasm)?;
        let cached_load = started.elapsed();

        for _ in 0..50 {
            check.describe()?;
        }
        let mut describe = Vec::with_capacity(CALLS);
        for _ in 0..CALLS {
            let started = Instant::now();
            check.describe()?;
            describe.push(started.elapsed());
        }
        let mut run_empty = Vec::with_capacity(CALLS / 4);
        for _ in 0..CALLS / 4 {
            let started = Instant::now();
            check.run(&ImageInfo::default(), Arc::new(EmptyImageFs))?;
            run_empty.push(started.elapsed());
        }
        println!(
            "{{\"plugin\": \"{name}\", \"wasm_bytes\": {}, \"cold_compile_ms\": {:.1}, \"cached_load_ms\": {:.2}, \
             \"describe_call_us_median\": {:.0}, \"describe_call_us_p90\": {:.0}, \"run_empty_image_us_median\": {:.0}}}",
            wasm.len(),
            cold_compile.as_secs_f64() * 1e3,
            cached_load.as_secs_f64() * 1e3,
            micros(percentile(&mut describe, 50)),
            micros(percentile(&mut describe, 90)),
            micros(percentile(&mut run_empty, 50)),
        );
    }
    Ok(())
}

fn percentile(samples: &mut [Duration], percent: usize) -> Duration {
    samples.sort();
    samples[(samples.len() - 1) * percent / 100]
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}
