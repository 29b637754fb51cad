//! berth's RubyGems order against Ruby's own `Gem::Version` (Debian package
//! `ruby`) on every pair of a list of versions covering prereleases, `-`
//! prereleases, trailing zeros and long numbers.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::io::Write;
use std::process::{Command, Stdio};

use berth_scanner::versions;
use berth_scanner::Ecosystem;

const VERSIONS: &[&str] = &[
    "0",
    "0.0.1",
    "0.9",
    "1",
    "1.0",
    "1.0.0",
    "1.0.0.0",
    "1.0.a",
    "1.0.a1",
    "1.0.a.1",
    "1.0.a2",
    "1.0.a10",
    "1.0.b1",
    "1.0.b",
    "1.0.beta",
    "1.0.beta.2",
    "1.0.pre",
    "1.0.pre.1",
    "1.0.rc1",
    "1.0.RC1",
    "1.0-rc1",
    "1.0-beta-2",
    "1.0.0.pre.beta",
    "1.0.1",
    "1.0.1.a",
    "1.1",
    "1.1.a",
    "1.10",
    "1.9",
    "1.01",
    "2",
    "2.0.0.1",
    "10.0",
    "3.2.22.5",
    "1.0.0.a.0",
    "1.0.z",
    "1.0.A",
    "20240101",
    "1.2.3.4.5.6",
];

#[test]
fn rubygems_order_matches_gem_version() {
    let mut child = Command::new("ruby")
        .arg("-e")
        .arg(
            "vs = STDIN.read.split(\"\\n\").reject(&:empty?).map { |v| Gem::Version.new(v) }\n\
             vs.each { |a| puts vs.map { |b| (a <=> b).to_s }.join(' ') }",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ruby (Debian package `ruby`) is needed for this test");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(VERSIONS.join("\n").as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "ruby failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: Vec<Vec<i32>> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split(' ').map(|x| x.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), VERSIONS.len());
    let mut mismatches = Vec::new();
    for (i, a) in VERSIONS.iter().enumerate() {
        for (j, b) in VERSIONS.iter().enumerate() {
            let expected = rows[i][j].cmp(&0);
            let ours = versions::compare(Ecosystem::RubyGems, a, b);
            if ours != Ok(expected) {
                mismatches.push(format!("{a} vs {b}: Gem::Version {expected:?}, berth {ours:?}"));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} pairs disagree:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
