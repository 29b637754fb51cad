//! A misbehaving check for the host's tests: `run` panics, which on
//! `wasm32-wasip2` aborts with a trap. The host must report the trap, with the
//! panic message it captured from standard error.

use berth_plugin_sdk::{CheckInfo, Finding, Guest, ImageInfo};

struct Crash;

impl Guest for Crash {
    fn describe() -> CheckInfo {
        CheckInfo {
            name: "test-trap".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: env!("CARGO_PKG_DESCRIPTION").to_string(),
            rules: Vec::new(),
        }
    }

    fn run(image: ImageInfo) -> Result<Vec<Finding>, String> {
        // Depend on the input so the panic is not folded into `describe`.
        let label_count = std::hint::black_box(image.labels.len());
        panic!("test-trap: deliberate panic with {label_count} labels");
    }
}

berth_plugin_sdk::export_check!(Crash);
