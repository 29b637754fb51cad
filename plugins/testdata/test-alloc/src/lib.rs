//! A misbehaving check for the host's tests: `run` allocates (and touches)
//! memory until the allocator fails. The host's memory cap must stop it.

use berth_plugin_sdk::{CheckInfo, Finding, Guest, ImageInfo};

struct Hog;

impl Guest for Hog {
    fn describe() -> CheckInfo {
        CheckInfo {
            name: "test-alloc".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: env!("CARGO_PKG_DESCRIPTION").to_string(),
            rules: Vec::new(),
        }
    }

    fn run(_image: ImageInfo) -> Result<Vec<Finding>, String> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![0xa5; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }
}

berth_plugin_sdk::export_check!(Hog);
