//! berth's rpm order against rpm's own `rpm.vercmp` (through `rpm --eval`
//! and its embedded Lua, one process for all pairs) on real version strings
//! from this machine's dpkg status file plus `~`, `^` and epoch variants.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::process::Command;

use berth_scanner::versions;
use berth_scanner::Ecosystem;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
    }
}

fn base_versions() -> Vec<String> {
    let status = std::fs::read_to_string("/var/lib/dpkg/status").expect("/var/lib/dpkg/status is needed");
    let mut versions: BTreeSet<String> = status
        .lines()
        .filter_map(|l| l.strip_prefix("Version: "))
        .map(str::to_owned)
        .collect();
    for crafted in [
        "1.0",
        "1.0~rc1",
        "1.0~rc2",
        "1.0^git1",
        "1.0^git2~pre",
        "1.0^",
        "1.0~",
        "1.0a",
        "1.0.a",
        "1.0_1",
        "1.0.1",
        "2:1.0-1",
        "1.0-1.el9",
        "1.0-1.el9_3",
        "1.0-10.el9",
        "0:1.0-1",
        "1.0-1^post",
        "1.0-1~pre",
        "1.00",
        "1.001",
    ] {
        versions.insert(crafted.to_owned());
    }
    versions.into_iter().collect()
}

fn sample_pairs(versions: &[String]) -> Vec<(String, String)> {
    let mut rng = Rng(0x0052_504D_0042_4552);
    (0..3000)
        .map(|_| {
            let i = rng.below(versions.len());
            let a = versions[i].clone();
            let b = match rng.below(5) {
                0 => versions[rng.below(versions.len())].clone(),
                1 | 2 => versions[(i + 1 + rng.below(2)).min(versions.len() - 1)].clone(),
                _ => match rng.below(5) {
                    0 => format!("{a}~1"),
                    1 => format!("{a}^1"),
                    2 => format!("{a}.1"),
                    3 if !a.contains(':') => format!("1:{a}"),
                    _ => a.replace('.', "_"),
                },
            };
            (a, b)
        })
        .collect()
}

#[test]
fn rpm_order_matches_real_rpm() {
    let probe = Command::new("rpm").arg("--version").output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "rpm (Debian package `rpm`) is needed for this test"
    );
    let versions = base_versions();
    let pairs = sample_pairs(&versions);
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("pairs.txt");
    let body: String = pairs.iter().map(|(a, b)| format!("{a}\t{b}\n")).collect();
    std::fs::write(&input, body).unwrap();
    let script = format!(
        "%{{lua: for line in io.lines('{}') do local a, b = line:match('^(.-)\\t(.*)$'); print(rpm.vercmp(a, b) .. '\\n') end}}",
        input.display()
    );
    let output = Command::new("rpm").arg("--eval").arg(&script).output().unwrap();
    assert!(
        output.status.success(),
        "rpm --eval failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answers: Vec<Ordering> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| match l.trim() {
            "-1" => Ordering::Less,
            "0" => Ordering::Equal,
            "1" => Ordering::Greater,
            other => panic!("unexpected rpm output {other:?}"),
        })
        .collect();
    assert_eq!(answers.len(), pairs.len());
    let mismatches: Vec<String> = pairs
        .iter()
        .zip(&answers)
        .filter_map(|((a, b), expected)| {
            let ours = versions::compare(Ecosystem::Rpm, a, b);
            (ours.as_ref() != Ok(expected)).then(|| format!("{a} vs {b}: rpm {expected:?}, berth {ours:?}"))
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} of {} pairs disagree:\n{}",
        mismatches.len(),
        pairs.len(),
        mismatches.join("\n")
    );
}
