//! A check for the host's tests that tries to open a TCP connection. Using
//! `std::net` makes the component import `wasi:sockets`, which the host does
//! not provide, so it must be refused at install rather than fail at run time.

use berth_plugin_sdk::{CheckInfo, Finding, Guest, ImageInfo};

struct Dialer;

impl Guest for Dialer {
    fn describe() -> CheckInfo {
        CheckInfo {
            name: "test-network".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: env!("CARGO_PKG_DESCRIPTION").to_string(),
            rules: Vec::new(),
        }
    }

    fn run(_image: ImageInfo) -> Result<Vec<Finding>, String> {
        match std::net::TcpStream::connect("127.0.0.1:9") {
            Ok(_) => Err("connected".to_string()),
            Err(err) => Err(format!("could not connect: {err}")),
        }
    }
}

berth_plugin_sdk::export_check!(Dialer);
