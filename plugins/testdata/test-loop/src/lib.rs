//! A misbehaving check for the host's tests: `run` spins forever. The host's
//! CPU deadline (epoch interruption) must stop it.

use berth_plugin_sdk::{CheckInfo, Finding, Guest, ImageInfo};

struct Spin;

impl Guest for Spin {
    fn describe() -> CheckInfo {
        CheckInfo {
            name: "test-loop".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: env!("CARGO_PKG_DESCRIPTION").to_string(),
            rules: Vec::new(),
        }
    }

    fn run(_image: ImageInfo) -> Result<Vec<Finding>, String> {
        let mut counter: u64 = 0;
        loop {
            counter = std::hint::black_box(counter.wrapping_add(1));
        }
    }
}

berth_plugin_sdk::export_check!(Spin);
