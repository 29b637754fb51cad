//! berth's dpkg order against the real `dpkg --compare-versions` on
//! thousands of real version strings from this machine's apt lists and dpkg
//! status file. CI runs `apt-get update` first; with no lists the test fails
//! and says so.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use berth_scanner::versions;
use berth_scanner::Ecosystem;

const PAIRS: usize = 4000;

/// A small deterministic generator (xorshift64*) so the sample is the same on
/// every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn versions_from(text: &str, into: &mut BTreeSet<String>) {
    for line in text.lines() {
        if let Some(version) = line.strip_prefix("Version: ") {
            into.insert(version.trim().to_owned());
        }
    }
}

/// Every `Version:` from the apt lists (compressed or not, read through
/// apt-helper) and from `/var/lib/dpkg/status`.
fn real_versions() -> BTreeSet<String> {
    let mut versions = BTreeSet::new();
    let lists = Path::new("/var/lib/apt/lists");
    let mut list_files: Vec<_> = std::fs::read_dir(lists)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    list_files.retain(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.contains("_Packages"))
    });
    list_files.sort();
    assert!(
        !list_files.is_empty(),
        "no Packages lists under /var/lib/apt/lists: run `apt-get update` before this test"
    );
    for file in &list_files {
        let output = Command::new("/usr/lib/apt/apt-helper")
            .arg("cat-file")
            .arg(file)
            .output()
            .expect("apt-helper (package `apt`) is needed to read the apt lists");
        assert!(output.status.success(), "apt-helper cat-file {} failed", file.display());
        versions_from(&String::from_utf8_lossy(&output.stdout), &mut versions);
    }
    if let Ok(status) = std::fs::read_to_string("/var/lib/dpkg/status") {
        versions_from(&status, &mut versions);
    }
    versions
}

/// Pairs that exercise the interesting parts of the order: random pairs,
/// neighbours in string order (same package, nearby versions), and
/// neighbours with `~`, `+`, epoch and revision variations.
fn sample_pairs(versions: &[String]) -> Vec<(String, String)> {
    let mut rng = Rng(0x005E_ED0F_BE27);
    let mut pairs = Vec::with_capacity(PAIRS);
    while pairs.len() < PAIRS {
        let i = rng.below(versions.len());
        let a = versions[i].clone();
        let b = match rng.below(4) {
            0 => versions[rng.below(versions.len())].clone(),
            1 | 2 => versions[(i + 1 + rng.below(3)).min(versions.len() - 1)].clone(),
            _ => {
                let base = versions[(i + 1).min(versions.len() - 1)].clone();
                match rng.below(6) {
                    0 => format!("{base}~rc1"),
                    1 => format!("{a}~"),
                    2 => format!("{a}+b1"),
                    3 if !a.contains(':') => format!("1:{a}"),
                    4 if !a.contains('-') => format!("{a}-0"),
                    _ => format!("{}.0", a),
                }
            }
        };
        pairs.push((a, b));
    }
    pairs
}

/// Runs one shell script that asks dpkg about every pair and prints `<`,
/// `=` or `>` per line.
fn dpkg_orders(pairs: &[(String, String)]) -> Vec<Ordering> {
    let mut script = String::new();
    for (a, b) in pairs {
        assert!(
            !a.contains('\'') && !b.contains('\''),
            "unexpected quote in {a:?} or {b:?}"
        );
        script.push_str(&format!(
            "if dpkg --compare-versions '{a}' lt '{b}'; then echo '<'; \
             elif dpkg --compare-versions '{a}' eq '{b}'; then echo '='; else echo '>'; fi\n"
        ));
    }
    let mut child = Command::new("sh")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("sh is needed to run dpkg");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write script");
    let output = child.wait_with_output().expect("run dpkg script");
    assert!(output.status.success(), "dpkg script failed (is dpkg installed?)");
    let text = String::from_utf8(output.stdout).expect("utf-8");
    let orders: Vec<Ordering> = text
        .lines()
        .map(|line| match line {
            "<" => Ordering::Less,
            "=" => Ordering::Equal,
            ">" => Ordering::Greater,
            other => panic!("unexpected dpkg script output {other:?}"),
        })
        .collect();
    assert_eq!(
        orders.len(),
        pairs.len(),
        "dpkg answered {} of {} pairs",
        orders.len(),
        pairs.len()
    );
    orders
}

#[test]
fn dpkg_order_matches_real_dpkg() {
    assert!(
        Command::new("dpkg")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "dpkg (Debian package `dpkg`) is needed for this test"
    );
    let versions: Vec<String> = real_versions().into_iter().collect();
    assert!(
        versions.len() > 1000,
        "only {} distinct versions found: run `apt-get update`",
        versions.len()
    );
    let pairs = sample_pairs(&versions);
    let started = std::time::Instant::now();
    let expected = dpkg_orders(&pairs);
    let dpkg_time = started.elapsed();
    let mut mismatches = Vec::new();
    for ((a, b), expected) in pairs.iter().zip(&expected) {
        match versions::compare(Ecosystem::Debian, a, b) {
            Ok(order) if order == *expected => {}
            other => mismatches.push(format!("{a} vs {b}: dpkg {expected:?}, berth {other:?}")),
        }
    }
    let distinct_orders: BTreeSet<_> = expected.iter().map(|o| *o as i8).collect();
    assert_eq!(
        distinct_orders.len(),
        3,
        "the sample should contain less, equal and greater pairs"
    );
    assert!(
        mismatches.is_empty(),
        "{} of {} pairs disagree:\n{}",
        mismatches.len(),
        pairs.len(),
        mismatches.join("\n")
    );
    eprintln!(
        "{} pairs from {} versions agree with dpkg (dpkg took {dpkg_time:?})",
        pairs.len(),
        versions.len()
    );
}
