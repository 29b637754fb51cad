//! Inventory from small hand-made images: overlay rules (whiteouts, opaque
//! directories, upper files superseding lower ones), symlinks that must
//! stay inside the image, and one fixture per ecosystem, including binary
//! formats built here byte by byte (an rpm header blob in an sqlite rpmdb,
//! ELF files with Go build information and a cargo-auditable section, zip
//! archives). Whiteouts (0/0 character devices) and the
//! `trusted.overlay.opaque` xattr need root, as CI runs these tests.

use std::io::{Cursor, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_scanner::inventory::{self, Inventory};
use berth_scanner::layers::{self, MergedView};
use berth_scanner::{Component, Ecosystem, Layer, LicenseClass};

/// An image under construction: layer directories `l0` (bottom), `l1`, ...
struct Image {
    dir: tempfile::TempDir,
    layers: usize,
}

impl Image {
    fn new(layers: usize) -> Image {
        let dir = tempfile::tempdir().expect("temp dir");
        for i in 0..layers {
            std::fs::create_dir(dir.path().join(format!("l{i}"))).expect("layer dir");
        }
        Image { dir, layers }
    }

    fn host(&self, layer: usize, path: &str) -> PathBuf {
        self.dir
            .path()
            .join(format!("l{layer}"))
            .join(path.trim_start_matches('/'))
    }

    fn write(&self, layer: usize, path: &str, content: impl AsRef<[u8]>) -> &Image {
        let host = self.host(layer, path);
        std::fs::create_dir_all(host.parent().expect("parent")).expect("parent dirs");
        std::fs::write(&host, content).expect("writing fixture file");
        self
    }

    fn executable(&self, layer: usize, path: &str, content: impl AsRef<[u8]>) -> &Image {
        self.write(layer, path, content);
        std::fs::set_permissions(self.host(layer, path), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        self
    }

    fn symlink(&self, layer: usize, path: &str, target: &str) -> &Image {
        let host = self.host(layer, path);
        std::fs::create_dir_all(host.parent().expect("parent")).expect("parent dirs");
        std::os::unix::fs::symlink(target, host).expect("symlink");
        self
    }

    fn whiteout(&self, layer: usize, path: &str) -> &Image {
        let host = self.host(layer, path);
        std::fs::create_dir_all(host.parent().expect("parent")).expect("parent dirs");
        let status = Command::new("mknod")
            .arg(&host)
            .args(["c", "0", "0"])
            .status()
            .expect("running mknod");
        assert!(
            status.success(),
            "mknod {} c 0 0 failed: whiteouts need root",
            host.display()
        );
        self
    }

    fn opaque(&self, layer: usize, dir: &str) -> &Image {
        let host = self.host(layer, dir);
        std::fs::create_dir_all(&host).expect("dir");
        xattr::set(&host, "trusted.overlay.opaque", b"y")
            .unwrap_or_else(|e| panic!("setting trusted.overlay.opaque on {}: {e} (needs root)", host.display()));
        self
    }

    fn layers(&self) -> Vec<Layer> {
        (0..self.layers)
            .map(|i| Layer {
                digest: format!("sha256:{i:064}"),
                diff_id: format!("sha256:{:064}", i + 100),
                dir: self.dir.path().join(format!("l{i}")),
                size: None,
            })
            .collect()
    }

    fn view(&self) -> MergedView {
        MergedView::open(&self.layers()).expect("merged view")
    }

    /// Scans the merged view and, separately, each layer and merges; both
    /// must agree.
    fn scan(&self) -> Inventory {
        let whole = inventory::scan(&self.view()).expect("inventory");
        let per_layer: Vec<_> = self
            .layers()
            .iter()
            .map(|l| inventory::scan_layer(l).expect("scan_layer"))
            .collect();
        // The cache format round-trips.
        let json = serde_json::to_string(&per_layer).expect("serialize");
        let per_layer: Vec<inventory::LayerInventory> = serde_json::from_str(&json).expect("deserialize");
        let merged = inventory::merge(&per_layer);
        assert_eq!(
            merged.components, whole.components,
            "per-layer merge differs from the merged view"
        );
        whole
    }
}

fn names(components: &[Component], ecosystem: Ecosystem) -> Vec<String> {
    components
        .iter()
        .filter(|c| c.ecosystem == ecosystem)
        .map(|c| format!("{}@{}", c.name, c.version))
        .collect()
}

fn find<'a>(components: &'a [Component], name: &str) -> &'a Component {
    components
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("{name} not found in {components:#?}"))
}

const STATUS_AB: &str = "Package: a\nStatus: install ok installed\nVersion: 1.0-1\nArchitecture: amd64\n\n\
                         Package: b\nStatus: install ok installed\nVersion: 2.0\nArchitecture: all\n";

#[test]
fn whiteout_hides_a_lower_package_database() {
    let image = Image::new(2);
    image.write(0, "/var/lib/dpkg/status", STATUS_AB);
    image.write(
        0,
        "/usr/lib/python3/dist-packages/foo-1.0.dist-info/METADATA",
        "Name: foo\nVersion: 1.0\n",
    );
    image.whiteout(1, "/var/lib/dpkg/status");
    image.whiteout(1, "/usr/lib/python3/dist-packages/foo-1.0.dist-info");
    let view = image.view();
    assert!(view.get("/var/lib/dpkg/status").is_none());
    assert!(view
        .get("/usr/lib/python3/dist-packages/foo-1.0.dist-info/METADATA")
        .is_none());
    assert_eq!(view.whiteouts().count(), 2);
    assert!(image.scan().components.is_empty());

    // Without the upper layer both are there.
    let bottom = inventory::scan(&MergedView::open(&image.layers()[..1]).expect("view")).expect("scan");
    assert_eq!(names(&bottom.components, Ecosystem::Debian), ["a@1.0-1", "b@2.0"]);
    assert_eq!(names(&bottom.components, Ecosystem::PyPI), ["foo@1.0"]);
}

#[test]
fn opaque_directory_hides_lower_contents() {
    let site = "/usr/lib/python3/dist-packages";
    let image = Image::new(2);
    image.write(
        0,
        &format!("{site}/foo-1.0.dist-info/METADATA"),
        "Name: foo\nVersion: 1.0\n",
    );
    image.write(0, "/usr/lib/python3/other", "kept");
    image.opaque(1, site);
    image.write(
        1,
        &format!("{site}/bar-2.0.dist-info/METADATA"),
        "Name: bar\nVersion: 2.0\n",
    );
    let view = image.view();
    assert!(view.get(&format!("{site}/foo-1.0.dist-info")).is_none());
    assert_eq!(
        view.read("/usr/lib/python3/other", 100)
            .expect("sibling of the opaque dir"),
        b"kept"
    );
    assert_eq!(view.opaque_dirs().collect::<Vec<_>>(), [site]);
    let children: Vec<&str> = view.children(site).map(|(name, _)| name).collect();
    assert_eq!(children, ["bar-2.0.dist-info"]);
    assert_eq!(names(&image.scan().components, Ecosystem::PyPI), ["bar@2.0"]);
}

#[test]
fn upper_package_database_supersedes_the_lower_one() {
    let image = Image::new(3);
    image.write(0, "/var/lib/dpkg/status", STATUS_AB);
    image.write(
        1,
        "/var/lib/dpkg/status",
        "Package: a\nStatus: install ok installed\nVersion: 1.1-1\nArchitecture: amd64\n",
    );
    image.write(2, "/etc/unrelated", "x");
    let scanned = image.scan();
    assert_eq!(names(&scanned.components, Ecosystem::Debian), ["a@1.1-1"]);
    let a = find(&scanned.components, "a");
    assert_eq!(a.locations.len(), 1);
    assert_eq!(a.locations[0].layer, image.layers()[1].digest);
    assert_eq!(a.locations[0].path, "/var/lib/dpkg/status");

    // An emptied upper database removes everything.
    image.write(2, "/var/lib/dpkg/status", "");
    assert!(image.scan().components.is_empty());
}

#[test]
fn dpkg_fields_licenses_and_purls() {
    let image = Image::new(2);
    image.write(
        0,
        "/var/lib/dpkg/status",
        "Package: libc6\nStatus: install ok installed\nPriority: optional\nArchitecture: amd64\n\
         Multi-Arch: same\nSource: glibc (2.36-9+deb12u4)\nVersion: 2.36-9+deb12u4\nDescription: GNU C Library\n \
         Contains the standard libraries.\n\n\
         Package: libpam0g\nStatus: install ok installed\nArchitecture: amd64\nSource: pam\nVersion: 1.5.2-6+deb12u1\n\n\
         Package: login\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:4.13+dfsg1-1+b1\n\n\
         Package: gone\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1.0\n\n\
         Package: half\nStatus: install ok half-configured\nArchitecture: amd64\nVersion: 1.0\n",
    );
    image.write(
        0,
        "/usr/lib/os-release",
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
    );
    image.symlink(0, "/etc/os-release", "../usr/lib/os-release");
    image.write(
        0,
        "/usr/share/doc/libc6/copyright",
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n\
         Files: *\nCopyright: FSF\nLicense: LGPL-2.1+\n\nFiles: debian/*\nCopyright: x\nLicense: GPL-2+\n",
    );
    image.write(
        0,
        "/usr/share/doc/login/copyright",
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nCopyright: x\nLicense: BSD-3-clause\n",
    );
    image.symlink(0, "/usr/share/doc/libpam0g", "login");
    // Distroless: one file per package, no Status field.
    image.write(
        1,
        "/var/lib/dpkg/status.d/tzdata",
        "Package: tzdata\nVersion: 2024a-0+deb12u1\nArchitecture: all\n",
    );
    image.write(
        1,
        "/var/lib/dpkg/status.d/tzdata.md5sums",
        "d41d8cd98f00b204e9800998ecf8427e  usr/share/x\n",
    );

    let scanned = image.scan();
    assert!(scanned.problems.is_empty(), "{:#?}", scanned.problems);
    assert_eq!(
        names(&scanned.components, Ecosystem::Debian),
        [
            "libc6@2.36-9+deb12u4",
            "libpam0g@1.5.2-6+deb12u1",
            "login@1:4.13+dfsg1-1+b1",
            "tzdata@2024a-0+deb12u1"
        ]
    );
    let libc = find(&scanned.components, "libc6");
    assert_eq!(libc.source.as_deref(), Some("glibc (2.36-9+deb12u4)"));
    assert_eq!(libc.arch.as_deref(), Some("amd64"));
    assert_eq!(
        libc.purl,
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12"
    );
    assert_eq!(libc.license.as_deref(), Some("LGPL-2.1-or-later AND GPL-2.0-or-later"));
    assert_eq!(libc.license_declared.as_deref(), Some("LGPL-2.1+ and GPL-2+"));
    assert_eq!(libc.license_class, LicenseClass::StrongCopyleft);
    let login = find(&scanned.components, "login");
    assert_eq!(
        login.purl,
        "pkg:deb/debian/login@1:4.13%2Bdfsg1-1%2Bb1?arch=amd64&distro=debian-12"
    );
    assert_eq!(login.license_class, LicenseClass::Permissive);
    // The doc directory symlink leads to login's copyright.
    let pam = find(&scanned.components, "libpam0g");
    assert_eq!(pam.source.as_deref(), Some("pam"));
    assert_eq!(pam.license.as_deref(), Some("BSD-3-Clause"));
    let tzdata = find(&scanned.components, "tzdata");
    assert_eq!(tzdata.locations[0].path, "/var/lib/dpkg/status.d/tzdata");
    assert_eq!(tzdata.license, None);
    assert_eq!(tzdata.license_class, LicenseClass::Unknown);
    let os = scanned.os_release.expect("os-release");
    assert_eq!((os.id.as_str(), os.version_id.as_deref()), ("debian", Some("12")));
    assert_eq!(os.location.path, "/usr/lib/os-release");
}

#[test]
fn symlinks_resolve_inside_the_image_only() {
    let image = Image::new(2);
    image.write(0, "/etc/hostname", "image-hostname\n");
    image.write(0, "/usr/lib/os-release", "ID=alpine\n");
    image.symlink(1, "/etc/os-release", "../usr/lib/os-release");
    image.symlink(1, "/escape", "../../../../../../../../etc/hostname");
    image.symlink(1, "/absolute", "/etc/hostname");
    image.symlink(1, "/dirlink", "/etc");
    image.symlink(1, "/loop-a", "loop-b");
    image.symlink(1, "/loop-b", "loop-a");
    image.symlink(1, "/dangling", "/nowhere");
    image.symlink(1, "/host-only", "/proc/self/status");
    let view = image.view();
    // A target in the lower layer, reached from a link in the upper one.
    let (resolved, entry) = view.resolve("/etc/os-release").expect("resolve os-release");
    assert_eq!(resolved, "/usr/lib/os-release");
    assert_eq!(entry.layer, 0);
    for path in [
        "/escape",
        "/absolute",
        "/dirlink/hostname",
        "/dirlink/../etc/./hostname",
    ] {
        assert_eq!(view.read(path, 1024).expect(path), b"image-hostname\n", "{path}");
    }
    assert!(matches!(
        view.read("/loop-a", 10),
        Err(layers::Error::SymlinkLoop { .. })
    ));
    assert!(matches!(
        view.read("/dangling", 10),
        Err(layers::Error::NotFound { .. })
    ));
    assert!(matches!(
        view.read("/host-only", 10),
        Err(layers::Error::NotFound { .. })
    ));
    assert!(matches!(view.read("/etc", 10), Err(layers::Error::NotAFile { .. })));
    let err = view.read("/etc/hostname", 4).unwrap_err();
    assert!(matches!(err, layers::Error::TooLarge { size: 15, cap: 4, .. }), "{err}");
    assert!(err.to_string().contains("/etc/hostname"), "{err}");
    // The link itself, not its target.
    let (path, link) = view.resolve_nofollow("/absolute").expect("lstat");
    assert_eq!((path.as_str(), link.kind), ("/absolute", layers::EntryKind::Symlink));
    let alpine = inventory::scan(&view).expect("scan").os_release.expect("os-release");
    assert_eq!(alpine.id, "alpine");
}

#[test]
fn apk_database() {
    let image = Image::new(1);
    image.write(
        0,
        "/lib/apk/db/installed",
        "C:Q1abc=\nP:musl\nV:1.2.4_git20230717-r4\nA:x86_64\nS:383152\nI:622592\nT:the musl c library\n\
         L:MIT\no:musl\nm:Natanael Copa\n\n\
         C:Q1def=\nP:ssl_client\nV:1.36.1-r15\nA:x86_64\nL:GPL-2.0-only\no:busybox\n\n\
         P:old-style\nV:1.0-r0\nA:x86_64\nL:MIT BSD-2-Clause\n\n",
    );
    image.write(
        0,
        "/etc/os-release",
        "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\n",
    );
    let scanned = image.scan();
    assert_eq!(
        names(&scanned.components, Ecosystem::Alpine),
        ["musl@1.2.4_git20230717-r4", "old-style@1.0-r0", "ssl_client@1.36.1-r15"]
    );
    let musl = find(&scanned.components, "musl");
    assert_eq!(
        musl.purl,
        "pkg:apk/alpine/musl@1.2.4_git20230717-r4?arch=x86_64&distro=alpine-3.19.1"
    );
    assert_eq!(musl.source, None);
    assert_eq!(musl.license.as_deref(), Some("MIT"));
    let ssl = find(&scanned.components, "ssl_client");
    assert_eq!(ssl.source.as_deref(), Some("busybox"));
    assert_eq!(ssl.license_class, LicenseClass::StrongCopyleft);
    assert_eq!(
        find(&scanned.components, "old-style").license.as_deref(),
        Some("MIT AND BSD-2-Clause")
    );
}

/// An rpm header blob as the sqlite rpmdb stores it: big-endian
/// `u32 il, u32 dl`, then `il` index entries `{u32 tag, u32 type, i32
/// offset, u32 count}`, then `dl` bytes of data. Strings (type 6) are
/// NUL-terminated at their offset; INT32 (type 4) values are 4-byte aligned.
enum Value<'a> {
    Str(&'a str),
    Int(u32),
}

fn rpm_header(entries: &[(u32, Value)]) -> Vec<u8> {
    let mut index = Vec::new();
    let mut store: Vec<u8> = Vec::new();
    for (tag, value) in entries {
        let (ty, offset) = match value {
            Value::Str(s) => {
                let offset = store.len();
                store.extend_from_slice(s.as_bytes());
                store.push(0);
                (6u32, offset)
            }
            Value::Int(v) => {
                while !store.len().is_multiple_of(4) {
                    store.push(0);
                }
                let offset = store.len();
                store.extend_from_slice(&v.to_be_bytes());
                (4u32, offset)
            }
        };
        for word in [*tag, ty, offset as u32, 1] {
            index.extend_from_slice(&word.to_be_bytes());
        }
    }
    let mut blob = Vec::new();
    blob.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    blob.extend_from_slice(&(store.len() as u32).to_be_bytes());
    blob.extend(index);
    blob.extend(store);
    blob
}

fn rpmdb(path: &Path, headers: &[Vec<u8>]) {
    let db = rusqlite::Connection::open(path).expect("create rpmdb");
    // rpm keeps its database in WAL mode.
    let mode: String = db.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).expect("wal");
    assert_eq!(mode, "wal");
    db.execute_batch("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)")
        .expect("create table");
    for header in headers {
        db.execute("INSERT INTO Packages (blob) VALUES (?1)", [header])
            .expect("insert");
    }
    db.close().expect("close rpmdb");
}

#[test]
fn rpm_sqlite_database() {
    use berth_scanner::inventory::rpm_tags as t;
    let image = Image::new(1);
    let host = image.host(0, "/var/lib/rpm/rpmdb.sqlite");
    std::fs::create_dir_all(host.parent().expect("parent")).expect("dirs");
    rpmdb(
        &host,
        &[
            rpm_header(&[
                (63, Value::Str("region tag, ignored")),
                (t::NAME, Value::Str("bash")),
                (t::VERSION, Value::Str("5.1.8")),
                (t::RELEASE, Value::Str("9.el9")),
                (t::ARCH, Value::Str("x86_64")),
                (t::LICENSE, Value::Str("GPLv3+")),
                (t::SOURCERPM, Value::Str("bash-5.1.8-9.el9.src.rpm")),
            ]),
            rpm_header(&[
                (t::NAME, Value::Str("openssl-libs")),
                (t::EPOCH, Value::Int(1)),
                (t::VERSION, Value::Str("3.0.7")),
                (t::RELEASE, Value::Str("27.el9")),
                (t::ARCH, Value::Str("x86_64")),
                (t::LICENSE, Value::Str("ASL 2.0")),
            ]),
            rpm_header(&[
                (t::NAME, Value::Str("gpg-pubkey")),
                (t::VERSION, Value::Str("fd431d51")),
            ]),
        ],
    );
    image.write(0, "/etc/os-release", "ID=\"rocky\"\nVERSION_ID=\"9.3\"\n");
    let scanned = image.scan();
    assert!(scanned.problems.is_empty(), "{:#?}", scanned.problems);
    assert_eq!(
        names(&scanned.components, Ecosystem::Rpm),
        ["bash@5.1.8-9.el9", "openssl-libs@1:3.0.7-27.el9"]
    );
    let bash = find(&scanned.components, "bash");
    assert_eq!(bash.purl, "pkg:rpm/rocky/bash@5.1.8-9.el9?arch=x86_64&distro=rocky-9.3");
    assert_eq!(bash.license.as_deref(), Some("GPL-3.0-or-later"));
    assert_eq!(bash.source.as_deref(), Some("bash-5.1.8-9.el9.src.rpm"));
    let ssl = find(&scanned.components, "openssl-libs");
    assert_eq!(
        ssl.purl,
        "pkg:rpm/rocky/openssl-libs@3.0.7-27.el9?arch=x86_64&distro=rocky-9.3&epoch=1"
    );
    assert_eq!(ssl.license.as_deref(), Some("Apache-2.0"));

    // A header whose data store is cut short is a problem, not a crash.
    let mut broken = rpm_header(&[(t::NAME, Value::Str("x"))]);
    broken.truncate(broken.len() - 1);
    let image = Image::new(1);
    let host = image.host(0, "/var/lib/rpm/rpmdb.sqlite");
    std::fs::create_dir_all(host.parent().expect("parent")).expect("dirs");
    rpmdb(&host, &[broken]);
    let scanned = image.scan();
    assert_eq!(scanned.problems.len(), 1, "{:#?}", scanned.problems);
    assert!(
        scanned.problems[0].message.contains("shorter than"),
        "{}",
        scanned.problems[0].message
    );
}

#[test]
fn python_metadata_variants() {
    let site = "/usr/local/lib/python3.11/site-packages";
    let image = Image::new(1);
    image.write(
        0,
        &format!("{site}/Flask_Login-0.6.3.dist-info/METADATA"),
        "Metadata-Version: 2.4\nName: Flask_Login\nVersion: 0.6.3\nLicense-Expression: MIT OR Apache-2.0\n\
         Classifier: License :: OSI Approved :: BSD License\n\nLicense: this is the body, not a header\n",
    );
    image.write(
        0,
        &format!("{site}/requests-2.31.0.egg-info/PKG-INFO"),
        "Metadata-Version: 1.1\nName: requests\nVersion: 2.31.0\nLicense: Apache 2.0\n\
         Classifier: License :: OSI Approved :: Apache Software License\n",
    );
    image.write(
        0,
        "/usr/lib/python3/dist-packages/chardet-5.1.0.egg-info",
        "Metadata-Version: 2.1\nName: chardet\nVersion: 5.1.0\nLicense: LGPL\n",
    );
    image.write(
        0,
        &format!("{site}/wheel-0.41.0.dist-info/METADATA"),
        "Name: wheel\nVersion: 0.41.0\nLicense: Copyright (c) someone\n        | Permission is hereby granted\n",
    );
    // Vendored inside another package: pip does not list it.
    image.write(
        0,
        &format!("{site}/setuptools/_vendor/packaging-24.0.dist-info/METADATA"),
        "Name: packaging\nVersion: 24.0\n",
    );
    let scanned = image.scan();
    assert!(scanned.problems.is_empty(), "{:#?}", scanned.problems);
    assert_eq!(
        names(&scanned.components, Ecosystem::PyPI),
        ["Flask_Login@0.6.3", "chardet@5.1.0", "requests@2.31.0", "wheel@0.41.0"]
    );
    let flask = find(&scanned.components, "Flask_Login");
    assert_eq!(flask.purl, "pkg:pypi/flask-login@0.6.3");
    assert_eq!(flask.license.as_deref(), Some("MIT OR Apache-2.0"));
    assert_eq!(
        find(&scanned.components, "requests").license.as_deref(),
        Some("Apache-2.0")
    );
    let chardet = find(&scanned.components, "chardet");
    assert_eq!(chardet.license.as_deref(), Some("LGPL-2.0-or-later"));
    assert_eq!(chardet.license_class, LicenseClass::WeakCopyleft);
    assert_eq!(find(&scanned.components, "wheel").license, None);
}

#[test]
fn npm_packages_and_lockfiles() {
    let image = Image::new(1);
    let nm = "/srv/app/node_modules";
    image.write(0, "/srv/app/package.json", r#"{"name": "app", "version": "1.0.0"}"#);
    image.write(
        0,
        &format!("{nm}/a/package.json"),
        r#"{"name": "a", "version": "1.0.0", "license": "MIT"}"#,
    );
    image.write(
        0,
        &format!("{nm}/a/lib/package.json"),
        r#"{"name": "not-a-package", "version": "9.9.9"}"#,
    );
    image.write(
        0,
        &format!("{nm}/a/node_modules/b/package.json"),
        r#"{"name": "b", "version": "2.0.0", "licenses": [{"type": "MIT"}, {"type": "Apache-2.0"}]}"#,
    );
    image.write(
        0,
        &format!("{nm}/@scope/c/package.json"),
        r#"{"name": "@scope/c", "version": "3.0.0", "license": {"type": "ISC"}}"#,
    );
    image.write(
        0,
        &format!("{nm}/.package-lock.json"),
        r#"{"packages": {"node_modules/zzz": {"version": "1.0.0"}}}"#,
    );
    image.write(
        0,
        "/srv/app/package-lock.json",
        r#"{"lockfileVersion": 3, "packages": {
            "": {"name": "app", "version": "1.0.0"},
            "node_modules/a": {"version": "1.0.0", "license": "MIT"},
            "node_modules/a/node_modules/b": {"version": "2.0.0"},
            "node_modules/@scope/c": {"version": "3.0.0"},
            "node_modules/d": {"version": "4.0.0", "dev": true},
            "node_modules/linked": {"resolved": "packages/linked", "link": true},
            "packages/linked": {"name": "linked", "version": "0.1.0"}
        }}"#,
    );
    image.write(
        0,
        "/srv/old/package-lock.json",
        r#"{"lockfileVersion": 1, "dependencies": {
            "e": {"version": "5.0.0", "dependencies": {"f": {"version": "6.0.0"}}},
            "local": {"version": "file:../local"}
        }}"#,
    );
    let scanned = image.scan();
    assert!(scanned.problems.is_empty(), "{:#?}", scanned.problems);
    assert_eq!(
        names(&scanned.components, Ecosystem::Npm),
        ["@scope/c@3.0.0", "a@1.0.0", "b@2.0.0", "d@4.0.0", "e@5.0.0", "f@6.0.0"]
    );
    let c = find(&scanned.components, "@scope/c");
    assert_eq!(c.purl, "pkg:npm/%40scope/c@3.0.0");
    assert_eq!(c.license.as_deref(), Some("ISC"));
    assert_eq!(
        find(&scanned.components, "b").license.as_deref(),
        Some("MIT OR Apache-2.0")
    );
    let a = find(&scanned.components, "a");
    let paths: Vec<&str> = a.locations.iter().map(|l| l.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/srv/app/node_modules/a/package.json", "/srv/app/package-lock.json"]
    );
}

/// A little-endian ELF64 file with the given sections (and `.shstrtab`).
fn elf_with_sections(sections: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = vec![0u8; 64];
    let mut placed = Vec::new();
    for (name, data) in sections {
        placed.push((*name, out.len(), data.len()));
        out.extend_from_slice(data);
    }
    let mut names = vec![0u8];
    let mut name_offsets = Vec::new();
    for (name, _, _) in &placed {
        name_offsets.push(names.len());
        names.extend_from_slice(name.as_bytes());
        names.push(0);
    }
    let shstrtab_name = names.len();
    names.extend_from_slice(b".shstrtab\0");
    let names_offset = out.len();
    out.extend_from_slice(&names);
    while !out.len().is_multiple_of(8) {
        out.push(0);
    }
    let shoff = out.len();
    let mut header = |name: usize, ty: u32, offset: usize, size: usize| {
        let mut sh = vec![0u8; 64];
        sh[0..4].copy_from_slice(&(name as u32).to_le_bytes());
        sh[4..8].copy_from_slice(&ty.to_le_bytes());
        sh[24..32].copy_from_slice(&(offset as u64).to_le_bytes());
        sh[32..40].copy_from_slice(&(size as u64).to_le_bytes());
        out.extend_from_slice(&sh);
    };
    header(0, 0, 0, 0);
    for (i, (_, offset, size)) in placed.iter().enumerate() {
        header(name_offsets[i], 1, *offset, *size);
    }
    header(shstrtab_name, 3, names_offset, names.len());
    let shnum = placed.len() + 2;
    out[0..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
    out[16..18].copy_from_slice(&2u16.to_le_bytes());
    out[18..20].copy_from_slice(&62u16.to_le_bytes());
    out[20..24].copy_from_slice(&1u32.to_le_bytes());
    out[40..48].copy_from_slice(&(shoff as u64).to_le_bytes());
    out[52..54].copy_from_slice(&64u16.to_le_bytes());
    out[54..56].copy_from_slice(&56u16.to_le_bytes());
    out[58..60].copy_from_slice(&64u16.to_le_bytes());
    out[60..62].copy_from_slice(&(shnum as u16).to_le_bytes());
    out[62..64].copy_from_slice(&((shnum - 1) as u16).to_le_bytes());
    out
}

const SENTINEL_START: [u8; 16] = [
    0x30, 0x77, 0xaf, 0x0c, 0x92, 0x74, 0x08, 0x02, 0x41, 0xe1, 0xc1, 0x07, 0xe6, 0xd6, 0x18, 0xe6,
];
const SENTINEL_END: [u8; 16] = [
    0xf9, 0x32, 0x43, 0x31, 0x86, 0x18, 0x20, 0x72, 0x00, 0x82, 0x42, 0x10, 0x41, 0x16, 0xd8, 0xf2,
];

fn modinfo(text: &str) -> Vec<u8> {
    let mut out = SENTINEL_START.to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&SENTINEL_END);
    out
}

fn uvarint(mut value: usize, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

const MODINFO: &str = "path\texample.com/cmd/tool\n\
                       mod\texample.com/tool\t(devel)\t\n\
                       dep\tgithub.com/pkg/errors\tv0.9.1\th1:abc=\n\
                       dep\tgolang.org/x/text\tv0.3.0\th1:def=\n\
                       =>\tgolang.org/x/text\tv0.3.8\th1:ghi=\n\
                       dep\texample.com/local\tv0.0.0\n\
                       =>\t../local\t\t\n\
                       build\t-compiler=gc\n\
                       build\tGOOS=linux\n";

/// Go ≥ 1.18: the strings inline after the 32-byte header.
fn go_inline_blob() -> Vec<u8> {
    let mut blob = b"\xff Go buildinf:".to_vec();
    blob.extend_from_slice(&[8, 2]);
    blob.resize(32, 0);
    let version = b"go1.21.5";
    uvarint(version.len(), &mut blob);
    blob.extend_from_slice(version);
    let info = modinfo(MODINFO);
    uvarint(info.len(), &mut blob);
    blob.extend_from_slice(&info);
    blob
}

/// Go < 1.18 without section headers: one writable PT_LOAD segment holds,
/// at a 16-byte aligned spot, the header with two pointers to Go string
/// headers `{data, len}` that point at the strings.
fn go_pointer_elf() -> Vec<u8> {
    const SEGMENT_OFFSET: usize = 0x100;
    const VADDR: u64 = 0x50_0000;
    let mut segment = vec![0xAAu8; 48]; // unrelated data before the blob
    let blob_at = segment.len();
    segment.extend_from_slice(b"\xff Go buildinf:");
    segment.extend_from_slice(&[8, 0]); // pointer size 8, little-endian pointer format
    let pointers_at = segment.len();
    segment.extend_from_slice(&[0u8; 16]);
    let version_header_at = segment.len();
    segment.extend_from_slice(&[0u8; 16]);
    let modinfo_header_at = segment.len();
    segment.extend_from_slice(&[0u8; 16]);
    let version_at = segment.len();
    let version = b"go1.16.15";
    segment.extend_from_slice(version);
    let modinfo_at = segment.len();
    let info = modinfo(
        "path\texample.com/old\nmod\texample.com/old\tv1.0.0\t\ndep\tgithub.com/x/y\tv2.1.0+incompatible\th1:z=\n",
    );
    segment.extend_from_slice(&info);
    let addr = |at: usize| VADDR + at as u64;
    let put = |seg: &mut Vec<u8>, at: usize, value: u64| seg[at..at + 8].copy_from_slice(&value.to_le_bytes());
    put(&mut segment, pointers_at, addr(version_header_at));
    put(&mut segment, pointers_at + 8, addr(modinfo_header_at));
    put(&mut segment, version_header_at, addr(version_at));
    put(&mut segment, version_header_at + 8, version.len() as u64);
    put(&mut segment, modinfo_header_at, addr(modinfo_at));
    put(&mut segment, modinfo_header_at + 8, info.len() as u64);
    assert_eq!(blob_at % 16, 0);

    let mut out = vec![0u8; SEGMENT_OFFSET];
    out[0..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
    out[16..18].copy_from_slice(&2u16.to_le_bytes());
    out[18..20].copy_from_slice(&62u16.to_le_bytes());
    out[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    out[52..54].copy_from_slice(&64u16.to_le_bytes());
    out[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    out[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
    out[58..60].copy_from_slice(&64u16.to_le_bytes());
    let ph = 64;
    out[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    out[ph + 4..ph + 8].copy_from_slice(&6u32.to_le_bytes()); // PF_R | PF_W
    out[ph + 8..ph + 16].copy_from_slice(&(SEGMENT_OFFSET as u64).to_le_bytes());
    out[ph + 16..ph + 24].copy_from_slice(&VADDR.to_le_bytes());
    out[ph + 32..ph + 40].copy_from_slice(&(segment.len() as u64).to_le_bytes());
    out[ph + 40..ph + 48].copy_from_slice(&(segment.len() as u64).to_le_bytes());
    out.extend_from_slice(&segment);
    out
}

#[test]
fn go_build_information() {
    let image = Image::new(1);
    image.executable(
        0,
        "/usr/local/bin/tool",
        elf_with_sections(&[(".text", b"\x90\x90"), (".go.buildinfo", &go_inline_blob())]),
    );
    image.executable(0, "/usr/local/bin/old", go_pointer_elf());
    let scanned = image.scan();
    assert!(scanned.problems.is_empty(), "{:#?}", scanned.problems);
    assert_eq!(
        names(&scanned.components, Ecosystem::Go),
        [
            "example.com/local@v0.0.0",
            "example.com/old@v1.0.0",
            "example.com/tool@(devel)",
            "github.com/pkg/errors@v0.9.1",
            "github.com/x/y@v2.1.0+incompatible",
            "golang.org/x/text@v0.3.8",
            "stdlib@1.16.15",
            "stdlib@1.21.5",
        ]
    );
    let errors = find(&scanned.components, "github.com/pkg/errors");
    assert_eq!(errors.purl, "pkg:golang/github.com/pkg/errors@v0.9.1");
    assert_eq!(errors.locations[0].path, "/usr/local/bin/tool");
    let stdlib = scanned
        .components
        .iter()
        .find(|c| c.name == "stdlib" && c.version == "1.21.5")
        .expect("stdlib");
    assert_eq!(stdlib.purl, "pkg:golang/stdlib@1.21.5");
    assert_eq!(
        find(&scanned.components, "github.com/x/y").purl,
        "pkg:golang/github.com/x/y@v2.1.0%2Bincompatible"
    );
}

#[test]
fn cargo_lock_and_auditable_binary() {
    let image = Image::new(1);
    image.write(
        0,
        "/src/app/Cargo.lock",
        "# This file is automatically @generated by Cargo.\nversion = 3\n\n\
         [[package]]\nname = \"app\"\nversion = \"0.1.0\"\ndependencies = [\n \"serde\",\n]\n\n\
         [[package]]\nname = \"serde\"\nversion = \"1.0.197\"\n\
         source = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"abc\"\n",
    );
    let json = br#"{"packages":[
        {"name":"tool","version":"0.2.0","source":"local","dependencies":[1,2],"root":true},
        {"name":"libc","version":"0.2.153","source":"crates.io"},
        {"name":"cc","version":"1.0.90","source":"crates.io","kind":"build"}]}"#;
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(json).expect("compress");
    let section = encoder.finish().expect("compress");
    image.executable(
        0,
        "/usr/bin/tool",
        elf_with_sections(&[(".text", b"\xc3"), (".dep-v0", &section)]),
    );
    let scanned = image.scan();
    assert!(scanned.problems.is_empty(), "{:#?}", scanned.problems);
    assert_eq!(
        names(&scanned.components, Ecosystem::Cargo),
        ["app@0.1.0", "libc@0.2.153", "serde@1.0.197", "tool@0.2.0"]
    );
    let libc = find(&scanned.components, "libc");
    assert_eq!(libc.purl, "pkg:cargo/libc@0.2.153");
    assert_eq!(libc.locations[0].path, "/usr/bin/tool");
}

fn zip(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in files {
        writer
            .start_file(*name, zip::write::SimpleFileOptions::default())
            .expect("zip entry");
        writer.write_all(data).expect("zip data");
    }
    writer.finish().expect("zip finish").into_inner()
}

#[test]
fn java_archives() {
    let image = Image::new(1);
    let pom_dir = "META-INF/maven/org.apache.commons/commons-lang3";
    let pom_properties = format!("{pom_dir}/pom.properties");
    let pom_xml = format!("{pom_dir}/pom.xml");
    let jar = zip(&[
        (
            "META-INF/MANIFEST.MF",
            b"Manifest-Version: 1.0\r\nImplementation-Title: Apache Commons Lang\r\n",
        ),
        (
            &pom_properties,
            b"#Generated\ngroupId=org.apache.commons\nartifactId=commons-lang3\nversion=3.14.0\n",
        ),
        (
            &pom_xml,
            b"<project><licenses><license><name>Apache-2.0</name><url>x</url></license></licenses></project>",
        ),
    ]);
    image.write(0, "/opt/app/lib/commons-lang3-3.14.0.jar", &jar);
    let inner = zip(&[(
        "META-INF/MANIFEST.MF",
        b"Manifest-Version: 1.0\nBundle-SymbolicName: org.example.inner;singleton:=true\nBundle-Version: 2.1\n\
          Implementation-Vendor-Id: org.example\nBundle-License: https://opensource.org/licenses/MIT, MIT\n",
    )]);
    let war = zip(&[("WEB-INF/lib/inner.jar", &inner), ("index.html", b"<html/>")]);
    image.write(0, "/opt/app/app.war", &war);
    image.write(
        0,
        "/opt/app/lib/plain-utils-1.2.jar",
        zip(&[("a/B.class", b"\xca\xfe\xba\xbe")]),
    );
    image.write(0, "/opt/app/lib/broken.jar", b"PK\x03\x04 not really");
    let scanned = image.scan();
    assert_eq!(
        names(&scanned.components, Ecosystem::Maven),
        [
            "org.apache.commons:commons-lang3@3.14.0",
            "org.example:org.example.inner@2.1",
            "plain-utils:plain-utils@1.2"
        ]
    );
    let lang = find(&scanned.components, "org.apache.commons:commons-lang3");
    assert_eq!(lang.purl, "pkg:maven/org.apache.commons/commons-lang3@3.14.0");
    assert_eq!(lang.license.as_deref(), Some("Apache-2.0"));
    let inner = find(&scanned.components, "org.example:org.example.inner");
    assert_eq!(inner.locations[0].path, "/opt/app/app.war!/WEB-INF/lib/inner.jar");
    assert_eq!(inner.purl, "pkg:maven/org.example/org.example.inner@2.1");
    assert_eq!(scanned.problems.len(), 1, "{:#?}", scanned.problems);
    assert_eq!(scanned.problems[0].location.path, "/opt/app/lib/broken.jar");
}

#[test]
fn ruby_gemspecs() {
    let image = Image::new(1);
    let specs = "/usr/local/lib/ruby/gems/3.2.0/specifications";
    image.write(
        0,
        &format!("{specs}/rake-13.0.6.gemspec"),
        "# -*- encoding: utf-8 -*-\nGem::Specification.new do |s|\n  s.name = \"rake\".freeze\n  \
         s.version = \"13.0.6\"\n  s.licenses = [\"MIT\".freeze]\nend\n",
    );
    image.write(
        0,
        &format!("{specs}/default/json-2.6.3.gemspec"),
        "Gem::Specification.new do |s|\n  s.name = \"json\".freeze\n  s.version = \"2.6.3\"\n  \
         s.licenses = [\"Ruby\".freeze, \"BSD-2-Clause\".freeze]\nend\n",
    );
    let scanned = image.scan();
    assert_eq!(
        names(&scanned.components, Ecosystem::RubyGems),
        ["json@2.6.3", "rake@13.0.6"]
    );
    let json = find(&scanned.components, "json");
    assert_eq!(json.license.as_deref(), Some("Ruby OR BSD-2-Clause"));
    assert_eq!(json.purl, "pkg:gem/json@2.6.3");
}

#[test]
fn non_elf_executables_and_bad_files() {
    let image = Image::new(1);
    image.executable(
        0,
        "/usr/bin/script",
        "#!/bin/sh\necho hello, this is long enough to be looked at ............\n",
    );
    image.executable(
        0,
        "/usr/bin/truncated-elf",
        b"\x7fELF\x02\x01\x01\x00 and then nothing useful at all, truncated.....",
    );
    image.write(
        0,
        "/app/node_modules/ok/package.json",
        r#"{"name": "ok", "version": "1.0.0"}"#,
    );
    image.write(0, "/app/node_modules/bad/package.json", "{ not json");
    let scanned = image.scan();
    assert_eq!(names(&scanned.components, Ecosystem::Npm), ["ok@1.0.0"]);
    assert_eq!(scanned.problems.len(), 1, "{:#?}", scanned.problems);
    assert_eq!(scanned.problems[0].location.path, "/app/node_modules/bad/package.json");
    assert!(
        scanned.problems[0].message.contains("invalid JSON"),
        "{}",
        scanned.problems[0].message
    );
}
