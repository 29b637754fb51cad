//! berth's PEP 440 order against Python's `packaging.version` (Debian
//! package `python3-packaging`, run with `/usr/bin/python3`) on every pair
//! of a list of versions covering epochs, pre/post/dev releases, local
//! versions and the spellings PEP 440 normalizes.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::io::Write;
use std::process::{Command, Stdio};

use berth_scanner::versions;
use berth_scanner::Ecosystem;

const VERSIONS: &[&str] = &[
    "0",
    "0.1",
    "1",
    "1.0",
    "1.0.0",
    "1.0.0.0",
    "1.0.post1",
    "1.0-1",
    "1.0.post1.dev2",
    "1.0.dev1",
    "1.0.dev0",
    "1.0a1",
    "1.0a1.dev1",
    "1.0alpha1",
    "1.0-ALPHA-1",
    "1.0a",
    "1.0b2",
    "1.0beta2",
    "1.0rc1",
    "1.0c1",
    "1.0pre1",
    "1.0preview1",
    "1.0rc1.post1",
    "1.0+local",
    "1.0+local.2",
    "1.0+local.10",
    "1.0+2",
    "1.0+abc.5",
    "1.0+ABC.5",
    "1.0.post1+local",
    "1!0.1",
    "1!1.0",
    "2!0",
    "v1.0",
    "V1.0",
    "1.0_post_2",
    "1.0.r3",
    "1.0rev4",
    "1.1.dev1",
    "1.1",
    "1.10",
    "1.9",
    "1.01",
    "2.0.0rc1",
    "2.0",
    "10.0",
    "2024.1",
    "1.0a10",
    "1.0a2",
    "1.0.post10",
];

#[test]
fn pep440_order_matches_python_packaging() {
    let mut child = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(
            "import sys\n\
             from packaging.version import Version\n\
             vs = [Version(l.strip()) for l in sys.stdin if l.strip()]\n\
             for a in vs:\n    print(' '.join(str((a > b) - (a < b)) for b in vs))\n",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 (Debian package python3) is needed for this test");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(VERSIONS.join("\n").as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "python packaging failed (install the Debian package python3-packaging): {}",
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
            let ours = versions::compare(Ecosystem::PyPI, a, b);
            if ours != Ok(expected) {
                mismatches.push(format!("{a} vs {b}: packaging {expected:?}, berth {ours:?}"));
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
