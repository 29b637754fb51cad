//! Ground truth from the real tools: a debootstrapped Debian root against
//! `dpkg-query`, a pip-installed venv against `pip list`, an npm project
//! against `npm ls --all`. They need network access to the Debian mirror,
//! PyPI and the npm registry, and the tools `debootstrap`, `dpkg-query`,
//! `python3` (with `venv`), `npm`; the Debian root is built once and kept in
//! `/var/cache/berth/debootstrap-bookworm-minbase` (pip and npm download
//! caches live beside it).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use berth_scanner::inventory::{self, purl::pep503};
use berth_scanner::layers::MergedView;
use berth_scanner::licenses;
use berth_scanner::{Ecosystem, Layer, LicenseClass};

const CACHE: &str = "/var/cache/berth";
const DEBIAN_ROOT: &str = "/var/cache/berth/debootstrap-bookworm-minbase";

fn layer(dir: &Path) -> Layer {
    Layer {
        digest: "sha256:1111111111111111111111111111111111111111111111111111111111111111".to_string(),
        diff_id: "sha256:2222222222222222222222222222222222222222222222222222222222222222".to_string(),
        dir: dir.to_path_buf(),
        size: None,
    }
}

/// Fails the test, naming the tool, when `tool` is not on PATH.
fn require_tool(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false);
    assert!(found, "this test needs `{tool}` (install the `{package}` package)");
}

fn run(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("tool output is UTF-8")
}

/// The Debian mirror this machine's apt uses (the only one reachable).
fn debian_mirror() -> String {
    let mut texts = Vec::new();
    for path in ["/etc/apt/sources.list"] {
        if let Ok(text) = std::fs::read_to_string(path) {
            texts.push(text);
        }
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for entry in dir.flatten() {
            if let Ok(text) = std::fs::read_to_string(entry.path()) {
                texts.push(text);
            }
        }
    }
    for text in &texts {
        for line in text.lines() {
            let line = line.trim();
            let urls: Vec<&str> = if let Some(rest) = line.strip_prefix("URIs:") {
                rest.split_whitespace().collect()
            } else if line.starts_with("deb ") {
                line.split_whitespace()
                    .filter(|w| w.starts_with("http"))
                    .take(1)
                    .collect()
            } else {
                Vec::new()
            };
            if let Some(url) = urls.into_iter().find(|u| u.trim_end_matches('/').ends_with("/debian")) {
                return url.to_string();
            }
        }
    }
    "http://deb.debian.org/debian".to_string()
}

/// The cached minbase root, built into a temporary directory and renamed
/// into place so a failed build leaves nothing behind.
fn debian_root() -> PathBuf {
    let root = PathBuf::from(DEBIAN_ROOT);
    if root.join("var/lib/dpkg/status").is_file() {
        return root;
    }
    require_tool("debootstrap", "debootstrap");
    std::fs::create_dir_all(CACHE).expect("creating the cache directory");
    let build = tempfile::Builder::new()
        .prefix(".debootstrap-")
        .tempdir_in(CACHE)
        .expect("temp dir in the cache");
    let target = build.path().join("root");
    run(Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(&target)
        .arg(debian_mirror()));
    if let Err(e) = std::fs::rename(&target, &root) {
        // Another run may have finished first.
        assert!(
            root.join("var/lib/dpkg/status").is_file(),
            "moving the debootstrap root into the cache: {e}"
        );
    }
    root
}

#[test]
fn debian_minbase_matches_dpkg_query() {
    require_tool("dpkg-query", "dpkg");
    let root = debian_root();
    let layers = [layer(&root)];

    let started = Instant::now();
    let view = MergedView::open(&layers).expect("walking the root");
    let walked = started.elapsed();
    let scanned = inventory::scan(&view).expect("inventory");
    let total = started.elapsed();
    let files = view.len();
    println!(
        "minbase: {files} paths, walk {:.1} ms, walk+inventory {:.1} ms ({:.0} files/s)",
        walked.as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3,
        files as f64 / total.as_secs_f64()
    );
    assert!(scanned.problems.is_empty(), "problems: {:#?}", scanned.problems);

    let admindir = root.join("var/lib/dpkg");
    // Three fields of every installed package, as dpkg-query prints them.
    let dpkg_query = |format: &str| -> BTreeSet<(String, String, String)> {
        run(Command::new("dpkg-query")
            .arg(format!("--admindir={}", admindir.display()))
            .args(["-W", "-f", &format!("{format}\n")]))
        .lines()
        .map(|l| {
            let mut parts = l.split(' ');
            let mut next = || parts.next().unwrap_or("").to_string();
            (next(), next(), next())
        })
        .collect()
    };
    let expected = dpkg_query("${Package} ${Version} ${Architecture}");
    let debian: Vec<_> = scanned
        .components
        .iter()
        .filter(|c| c.ecosystem == Ecosystem::Debian)
        .collect();
    let got: BTreeSet<(String, String, String)> = debian
        .iter()
        .map(|c| (c.name.clone(), c.version.clone(), c.arch.clone().unwrap_or_default()))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(debian.len(), expected.len(), "one component per installed package");
    assert!(
        expected.len() > 50,
        "a minbase root has ~90 packages, got {}",
        expected.len()
    );

    // Advisories are matched on the source package at the source's version
    // (binNMUs carry `Source: name (version)`): what dpkg itself says.
    let sources = dpkg_query("${Package} ${source:Package} ${source:Version}");
    let ours: BTreeSet<(String, String, String)> = debian
        .iter()
        .map(|c| {
            let (name, version) = berth_scanner::vuln::source_package(c);
            (c.name.clone(), name.to_string(), version.to_string())
        })
        .collect();
    assert_eq!(ours, sources);
    let binnmus = debian
        .iter()
        .filter(|c| c.source.as_deref().is_some_and(|s| s.contains('(')))
        .count();
    println!("minbase: {binnmus} packages name their source's version (binNMUs)");

    let without: Vec<&str> = debian
        .iter()
        .filter(|c| c.license.is_none())
        .map(|c| c.name.as_str())
        .collect();
    println!(
        "minbase: {} of {} packages without a license: {without:?}",
        without.len(),
        debian.len()
    );
    assert!(
        without.len() * 10 <= debian.len(),
        "more than 10% of packages without a license: {without:?}"
    );
    for c in &debian {
        if let Some(license) = &c.license {
            assert_eq!(licenses::classify(license), c.license_class, "{}", c.name);
        }
    }

    // bash's copyright is DEP-5; its `Files: *` paragraph says GPL-3+, and
    // that leads the combined expression.
    let copyright = std::fs::read_to_string(root.join("usr/share/doc/bash/copyright")).expect("bash copyright");
    let files_star = copyright
        .split("\n\n")
        .find(|p| p.lines().any(|l| l.trim() == "Files: *"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("License:")))
        .expect("a Files: * paragraph with a License")
        .trim();
    assert_eq!(files_star, "GPL-3+");
    let bash = debian.iter().find(|c| c.name == "bash").expect("bash is installed");
    let license = bash.license.as_deref().expect("bash has a license");
    assert!(license.starts_with("GPL-3.0-or-later"), "bash: {license}");
    assert_eq!(bash.license_class, LicenseClass::StrongCopyleft);
    assert!(bash.version.starts_with("5.2"), "{}", bash.version);
    let expected_purl = format!(
        "pkg:deb/debian/bash@{}?arch=amd64&distro=debian-12",
        bash.version.replace('+', "%2B")
    );
    assert_eq!(bash.purl, expected_purl);
    assert_eq!(bash.locations[0].path, "/var/lib/dpkg/status");
    // libgcc-s1's doc directory is a symlink to gcc-12-base's.
    let libgcc = debian
        .iter()
        .find(|c| c.name == "libgcc-s1")
        .expect("libgcc-s1 is installed");
    assert!(libgcc.license.is_some(), "libgcc-s1 license through the doc symlink");

    // The per-layer path gives the same answer.
    let started = Instant::now();
    let cached = inventory::scan_layer(&layers[0]).expect("scan_layer");
    let merged = inventory::merge(&[cached]);
    println!(
        "minbase: scan_layer + merge {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(merged.components, scanned.components);
}

#[test]
fn python_venv_matches_pip_list() {
    require_tool("python3", "python3 python3-venv");
    let dir = tempfile::tempdir().expect("temp dir");
    let venv = dir.path().join("venv");
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
    let pip = venv.join("bin/pip");
    run(Command::new(&pip).env("PIP_CACHE_DIR", format!("{CACHE}/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "six",
        "idna",
        "packaging",
        "attrs",
        "python-dateutil",
    ]));
    let listed: serde_json::Value = serde_json::from_str(&run(Command::new(&pip).args([
        "list",
        "--format",
        "json",
        "--disable-pip-version-check",
    ])))
    .expect("pip list JSON");
    let expected: BTreeSet<(String, String)> = listed
        .as_array()
        .expect("a list")
        .iter()
        .map(|p| {
            (
                pep503(p["name"].as_str().unwrap_or("")),
                p["version"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();

    let view = MergedView::open(&[layer(dir.path())]).expect("walking the venv");
    let scanned = inventory::scan(&view).expect("inventory");
    assert!(scanned.problems.is_empty(), "problems: {:#?}", scanned.problems);
    let python: Vec<_> = scanned
        .components
        .iter()
        .filter(|c| c.ecosystem == Ecosystem::PyPI)
        .collect();
    let got: BTreeSet<(String, String)> = python.iter().map(|c| (pep503(&c.name), c.version.clone())).collect();
    assert_eq!(got, expected);
    for name in ["six", "idna", "packaging", "attrs"] {
        assert!(got.iter().any(|(n, _)| n == name), "{name} missing");
    }
    let six = python.iter().find(|c| c.name == "six").expect("six");
    assert_eq!(six.license.as_deref(), Some("MIT"));
    assert_eq!(six.purl, format!("pkg:pypi/six@{}", six.version));
    let dateutil = python
        .iter()
        .find(|c| pep503(&c.name) == "python-dateutil")
        .expect("dateutil");
    assert!(
        dateutil.purl.starts_with("pkg:pypi/python-dateutil@"),
        "{}",
        dateutil.purl
    );
}

fn npm_ls_set(node: &serde_json::Value, out: &mut BTreeSet<(String, String)>) {
    if let Some(dependencies) = node["dependencies"].as_object() {
        for (name, dep) in dependencies {
            if let Some(version) = dep["version"].as_str() {
                out.insert((name.clone(), version.to_string()));
            }
            npm_ls_set(dep, out);
        }
    }
}

#[test]
fn npm_project_matches_npm_ls() {
    require_tool("npm", "npm");
    let dir = tempfile::tempdir().expect("temp dir");
    let project = dir.path().join("app");
    std::fs::create_dir(&project).expect("project dir");
    std::fs::write(
        project.join("package.json"),
        r#"{"name": "berth-inventory-test", "version": "1.0.0", "private": true}"#,
    )
    .expect("package.json");
    let cache = format!("{CACHE}/npm");
    run(Command::new("npm").current_dir(&project).args([
        "install",
        "--no-audit",
        "--no-fund",
        "--cache",
        &cache,
        "is-number",
        "chalk@4",
        "debug",
        "@isaacs/string-locale-compare",
    ]));
    let listed: serde_json::Value = serde_json::from_str(&run(Command::new("npm")
        .current_dir(&project)
        .args(["ls", "--all", "--json"])))
    .expect("npm ls JSON");
    let mut expected = BTreeSet::new();
    npm_ls_set(&listed, &mut expected);
    assert!(
        expected.len() >= 8,
        "chalk@4 and debug bring dependencies: {expected:?}"
    );

    let view = MergedView::open(&[layer(dir.path())]).expect("walking the project");
    let scanned = inventory::scan(&view).expect("inventory");
    assert!(scanned.problems.is_empty(), "problems: {:#?}", scanned.problems);
    let npm: Vec<_> = scanned
        .components
        .iter()
        .filter(|c| c.ecosystem == Ecosystem::Npm)
        .collect();
    let got: BTreeSet<(String, String)> = npm.iter().map(|c| (c.name.clone(), c.version.clone())).collect();
    assert_eq!(got, expected);
    // Found both in node_modules and in the project's package-lock.json.
    let chalk = npm.iter().find(|c| c.name == "chalk").expect("chalk");
    let paths: Vec<&str> = chalk.locations.iter().map(|l| l.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/app/node_modules/chalk/package.json", "/app/package-lock.json"]
    );
    assert_eq!(chalk.license.as_deref(), Some("MIT"));
    let scoped = npm
        .iter()
        .find(|c| c.name == "@isaacs/string-locale-compare")
        .expect("scoped package");
    assert!(
        scoped.purl.starts_with("pkg:npm/%40isaacs/string-locale-compare@"),
        "{}",
        scoped.purl
    );
}
