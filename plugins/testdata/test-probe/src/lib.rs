//! A check for the host's tests that reports what it can reach, one finding
//! per probe, so the host can assert it has no ambient authority: no
//! environment, no arguments, no preopened directory, nothing on stdin; and
//! that its one real window, `image-fs`, works (including refusals).

use std::io::Read;

use berth_plugin_sdk::{describe_fs_error, image_fs, CheckInfo, Finding, Guest, ImageInfo, Severity};

struct Probe;

fn report(rule: &str, message: String) -> Finding {
    Finding::new(rule, Severity::Info, message, None)
}

impl Guest for Probe {
    fn describe() -> CheckInfo {
        CheckInfo {
            name: "test-probe".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: env!("CARGO_PKG_DESCRIPTION").to_string(),
            rules: Vec::new(),
        }
    }

    fn run(image: ImageInfo) -> Result<Vec<Finding>, String> {
        let mut findings = Vec::new();
        findings.push(report("env", std::env::vars_os().count().to_string()));
        findings.push(report("args", std::env::args_os().count().to_string()));
        findings.push(report(
            "host-root",
            match std::fs::read_dir("/") {
                Ok(entries) => format!("listed {} entries", entries.count()),
                Err(err) => format!("refused: {err}"),
            },
        ));
        findings.push(report(
            "host-file",
            match std::fs::read("/etc/passwd") {
                Ok(data) => format!("read {} bytes", data.len()),
                Err(err) => format!("refused: {err}"),
            },
        ));
        let mut stdin = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut stdin);
        findings.push(report("stdin", stdin.len().to_string()));
        println!("stdout goes nowhere");
        findings.push(report("user", image.user.unwrap_or_default()));
        findings.push(report(
            "image-hostname",
            match image_fs::read_file("/etc/hostname", 0, 100) {
                Ok(data) => String::from_utf8_lossy(&data).trim().to_string(),
                Err(err) => format!("refused: {}", describe_fs_error(&err)),
            },
        ));
        findings.push(report(
            "image-escape",
            match image_fs::read_file("/../../outside", 0, 100) {
                Ok(data) => format!("read {} bytes", data.len()),
                Err(err) => format!("refused: {}", describe_fs_error(&err)),
            },
        ));
        findings.push(report(
            "image-big-read",
            match image_fs::read_file("/big", 0, u32::MAX) {
                Ok(data) => data.len().to_string(),
                Err(err) => format!("refused: {}", describe_fs_error(&err)),
            },
        ));
        Ok(findings)
    }
}

berth_plugin_sdk::export_check!(Probe);
