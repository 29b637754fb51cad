//! rpm databases written by the real tools (see `fixtures/rpm/make.sh`):
//! sqlite, NDB and Berkeley DB hash in both byte orders, all holding the
//! same three packages and a gpg-pubkey; and damaged ones, which must give
//! warnings that name the file, never a silently empty inventory.

use std::path::{Path, PathBuf};

use berth_scanner::inventory::{self, Inventory};
use berth_scanner::layers::MergedView;
use berth_scanner::report::{sarif, table, ImageRef, ScanReport, SeverityFilter};
use berth_scanner::scan::{scan_image, MemoryCache, ScanRequest};
use berth_scanner::{Component, Ecosystem, Layer};

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rpm")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A one-layer image holding `files` (path in the image, content).
struct Image {
    dir: tempfile::TempDir,
}

impl Image {
    fn new(files: &[(&str, &[u8])]) -> Image {
        let dir = tempfile::tempdir().expect("temp dir");
        for (path, content) in files {
            let host = dir.path().join("l0").join(path.trim_start_matches('/'));
            std::fs::create_dir_all(host.parent().expect("parent")).expect("dirs");
            std::fs::write(&host, content).expect("writing the fixture");
        }
        Image { dir }
    }

    fn layers(&self) -> Vec<Layer> {
        vec![Layer {
            digest: format!("sha256:{:064}", 1),
            diff_id: format!("sha256:{:064}", 2),
            dir: self.layer_dir(),
            size: None,
        }]
    }

    fn layer_dir(&self) -> PathBuf {
        self.dir.path().join("l0")
    }

    /// The merged view's inventory, checked against the per-layer path
    /// (with its cache format round trip).
    fn scan(&self) -> Inventory {
        let whole = inventory::scan(&MergedView::open(&self.layers()).expect("view")).expect("scan");
        let layer = inventory::scan_layer(&self.layers()[0]).expect("scan_layer");
        let json = serde_json::to_string(&layer).expect("serialize");
        let merged = inventory::merge(&[serde_json::from_str(&json).expect("deserialize")]);
        assert_eq!(merged.components, whole.components, "per-layer result differs");
        assert_eq!(merged.problems, whole.problems, "per-layer problems differ");
        whole
    }
}

/// name, version as the inventory shows it, arch, license as declared, purl.
type Expected = (&'static str, &'static str, &'static str, &'static str, &'static str);

/// What every good fixture holds; the gpg-pubkey is not a package.
const PACKAGES: [Expected; 3] = [
    (
        "berth-big",
        "10.2.1-0.3.fc39",
        "x86_64",
        "ASL 2.0 and BSD",
        "pkg:rpm/berth-big@10.2.1-0.3.fc39?arch=x86_64",
    ),
    (
        "berth-hello",
        "1.0-1",
        "noarch",
        "MIT",
        "pkg:rpm/berth-hello@1.0-1?arch=noarch",
    ),
    (
        "berth-tool",
        "2:3.4.5-6.el8",
        "x86_64",
        "GPLv2+",
        "pkg:rpm/berth-tool@3.4.5-6.el8?arch=x86_64&epoch=2",
    ),
];

fn rpm_components(inventory: &Inventory) -> Vec<&Component> {
    inventory
        .components
        .iter()
        .filter(|c| c.ecosystem == Ecosystem::Rpm)
        .collect()
}

/// Scans `fixture_name` placed at `path` and checks it holds [`PACKAGES`]
/// and nothing else, without problems.
fn check_good(fixture_name: &str, path: &str) {
    let image = Image::new(&[(path, &fixture(fixture_name))]);
    let scanned = image.scan();
    assert!(scanned.problems.is_empty(), "{fixture_name}: {:#?}", scanned.problems);
    let found: Vec<Expected> = rpm_components(&scanned)
        .iter()
        .map(|c| {
            (
                leak(&c.name),
                leak(&c.version),
                leak(c.arch.as_deref().unwrap_or("")),
                leak(c.license_declared.as_deref().unwrap_or("")),
                leak(&c.purl),
            )
        })
        .collect();
    assert_eq!(found, PACKAGES, "{fixture_name} at {path}");
    for c in rpm_components(&scanned) {
        assert_eq!(c.locations.len(), 1, "{c:?}");
        assert_eq!(c.locations[0].path, path);
        let (name, version) = (&c.name, &c.version);
        let version = version.split_once(':').map_or(version.as_str(), |(_, v)| v);
        assert_eq!(c.source.as_deref(), Some(format!("{name}-{version}.src.rpm").as_str()));
    }
    let tool = scanned
        .components
        .iter()
        .find(|c| c.name == "berth-tool")
        .expect("tool");
    assert_eq!(tool.license.as_deref(), Some("GPL-2.0-or-later"));
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

#[test]
fn sqlite_database_written_by_rpm() {
    check_good("sqlite/rpmdb.sqlite", "/var/lib/rpm/rpmdb.sqlite");
    check_good("sqlite/rpmdb.sqlite", "/usr/lib/sysimage/rpm/rpmdb.sqlite");
}

#[test]
fn ndb_database_written_by_rpm() {
    check_good("ndb/Packages.db", "/usr/lib/sysimage/rpm/Packages.db");
    check_good("ndb/Packages.db", "/var/lib/rpm/Packages.db");
}

#[test]
fn berkeley_db_little_endian_with_inline_and_overflow_values() {
    check_good("bdb-le/Packages", "/var/lib/rpm/Packages");
}

#[test]
fn berkeley_db_big_endian_with_small_pages_and_many_buckets() {
    check_good("bdb-be/Packages", "/var/lib/rpm/Packages");
    check_good("bdb-be/Packages", "/usr/lib/sysimage/rpm/Packages");
}

#[test]
fn format_is_told_by_content_not_by_name() {
    // openSUSE Leap 15 keeps a Berkeley DB at /usr/lib/sysimage/rpm/Packages;
    // a file's name does not decide how it is read.
    check_good("ndb/Packages.db", "/var/lib/rpm/Packages");
    check_good("bdb-le/Packages", "/usr/lib/sysimage/rpm/Packages.db");
}

#[test]
fn rpm_files_elsewhere_are_not_databases() {
    let bdb = fixture("bdb-le/Packages");
    let image = Image::new(&[
        ("/var/lib/rpm/Index.db", b"not read"),
        ("/var/lib/rpm/__db.001", b"not read"),
        ("/srv/backup/var/lib/rpm/Packages", &bdb),
        ("/var/lib/rpm/old/Packages", &bdb),
    ]);
    let scanned = image.scan();
    assert!(scanned.components.is_empty(), "{:#?}", scanned.components);
    assert!(scanned.problems.is_empty(), "{:#?}", scanned.problems);
}

/// The problems of `path`'s scan as `(path, message)`; no rpm components
/// beyond `expected_names`.
fn problems_of(files: &[(&str, &[u8])], expected_names: &[&str]) -> Vec<(String, String)> {
    let scanned = Image::new(files).scan();
    let names: Vec<&str> = rpm_components(&scanned).iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, expected_names);
    scanned
        .problems
        .into_iter()
        .map(|p| (p.location.path, p.message))
        .collect()
}

fn owned(problems: &[(&str, &str)]) -> Vec<(String, String)> {
    problems
        .iter()
        .map(|(path, message)| (path.to_string(), message.to_string()))
        .collect()
}

#[test]
fn truncated_berkeley_db_gives_what_it_holds_and_warnings() {
    // Cut after page 1: berth-hello is stored on it; berth-tool's value is
    // on the missing page 3, bucket 1 (berth-big) on the missing page 2.
    let path = "/var/lib/rpm/Packages";
    let problems = problems_of(&[(path, &fixture("corrupt/Packages"))], &["berth-hello"]);
    assert_eq!(
        problems,
        owned(&[
            (
                path,
                "Berkeley DB rpm database: the file ends after page 1, its metadata says page 7 is the last"
            ),
            (
                path,
                "Berkeley DB rpm database: package 2: page 3 is past the end of the file (2 pages); left out"
            ),
            (
                path,
                "Berkeley DB rpm database: bucket 1: page 2 is past the end of the file (2 pages); \
                 the packages from there on are left out"
            ),
        ])
    );
}

#[test]
fn ndb_blob_with_a_bad_checksum_is_left_out_with_a_warning() {
    let path = "/usr/lib/sysimage/rpm/Packages.db";
    let problems = problems_of(
        &[(path, &fixture("corrupt/Packages.db"))],
        &["berth-big", "berth-hello"],
    );
    assert_eq!(
        problems,
        owned(&[(
            path,
            "NDB rpm database: package 2: its blob's checksum does not match; left out"
        )])
    );
}

/// The byte offsets of `needle` in `haystack`.
fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

/// The offset of NDB package `index`'s slot (in the first slot page) and of
/// its blob (16-byte aligned, after the slot pages).
fn ndb_slot_and_blob(data: &[u8], index: u32) -> (usize, usize) {
    let index_at = |at: usize| u32::from_le_bytes(data[at + 4..at + 8].try_into().expect("4 bytes"));
    let slot = (32..4096)
        .step_by(16)
        .find(|at| &data[*at..*at + 4] == b"Slot" && index_at(*at) == index)
        .expect("slot");
    let blob = (4096..data.len())
        .step_by(16)
        .find(|at| &data[*at..*at + 4] == b"BlbS" && index_at(*at) == index)
        .expect("blob");
    (slot, blob)
}

/// Damage done to a good fixture and what it must give: what was done, the
/// damaged file, its path in the image, the packages still read and the
/// warnings, in order.
type Damage = (
    &'static str,
    Vec<u8>,
    &'static str,
    &'static [&'static str],
    Vec<String>,
);

/// The fixtures' packages are 1 gpg-pubkey, 2 berth-tool, 3 berth-big and
/// 4 berth-hello.
#[test]
fn damaged_databases_are_warnings() {
    let bdb_path = "/var/lib/rpm/Packages";
    let ndb_path = "/usr/lib/sysimage/rpm/Packages.db";
    let le = fixture("bdb-le/Packages");
    let be = fixture("bdb-be/Packages");
    let ndb = fixture("ndb/Packages.db");
    let page = |data: &[u8], big: bool, number: usize, size: usize| {
        let p = &data[number * size..(number + 1) * size];
        let next = p[16..20].try_into().expect("4 bytes");
        (
            p[25],
            if big {
                u32::from_be_bytes(next)
            } else {
                u32::from_le_bytes(next)
            },
        )
    };
    let hello_message;
    let cases: Vec<Damage> = vec![
        (
            "not a database at all",
            b"PK\x03\x04 this is a zip file, not an rpm database".to_vec(),
            bdb_path,
            &[],
            vec!["rpm database could not be read: not sqlite, Berkeley DB or NDB".into()],
        ),
        (
            "an empty file",
            Vec::new(),
            bdb_path,
            &[],
            vec!["rpm database could not be read: the file is empty".into()],
        ),
        (
            "a Berkeley DB btree",
            {
                let mut data = le.clone();
                data[12..16].copy_from_slice(&0x0005_3162u32.to_le_bytes());
                data
            },
            bdb_path,
            &[],
            vec![
                "Berkeley DB rpm database could not be read: a Berkeley DB btree file, not the hash file rpm writes"
                    .into(),
            ],
        ),
        (
            "a page size that is no power of two",
            {
                let mut data = be.clone();
                data[20..24].copy_from_slice(&1000u32.to_be_bytes());
                data
            },
            bdb_path,
            &[],
            vec![
                "Berkeley DB rpm database could not be read: page size 1000 is not a power of two from 512 to 65536"
                    .into(),
            ],
        ),
        (
            "an encrypted Berkeley DB",
            {
                let mut data = le.clone();
                data[24] = 1;
                data
            },
            bdb_path,
            &[],
            vec!["Berkeley DB rpm database could not be read: encrypted".into()],
        ),
        (
            "more buckets than pages",
            {
                let mut data = le.clone();
                data[72..76].copy_from_slice(&1000u32.to_le_bytes());
                data
            },
            bdb_path,
            &[],
            vec!["Berkeley DB rpm database could not be read: 1001 buckets in a file of 8 pages".into()],
        ),
        (
            "an overflow chain that loops (big-endian page 15 leads back to 14)",
            {
                let mut data = be.clone();
                assert_eq!(page(&data, true, 15, 512), (7, 16), "fixture layout changed");
                data[15 * 512 + 16..15 * 512 + 20].copy_from_slice(&14u32.to_be_bytes());
                data
            },
            bdb_path,
            &["berth-hello", "berth-tool"],
            vec!["Berkeley DB rpm database: package 3: page 14 is reached a second time; left out".into()],
        ),
        (
            "an overflow page of the wrong type (little-endian page 3)",
            {
                let mut data = le.clone();
                assert_eq!(page(&data, false, 3, 8192), (7, 0), "fixture layout changed");
                data[3 * 8192 + 25] = 13;
                data
            },
            bdb_path,
            &["berth-big", "berth-hello"],
            vec!["Berkeley DB rpm database: package 2: page 3 has type 13; left out".into()],
        ),
        (
            "a hash page that claims more entries than fit",
            {
                let mut data = le.clone();
                data[2 * 8192 + 20..2 * 8192 + 22].copy_from_slice(&5000u16.to_le_bytes());
                data
            },
            bdb_path,
            &["berth-hello", "berth-tool"],
            vec![
                "Berkeley DB rpm database: bucket 1, page 2: 5000 entries do not fit the page; its packages are left out"
                    .into(),
            ],
        ),
        (
            "a package header whose data length runs past its end",
            {
                // berth-hello's header is stored inline on page 1 (item type
                // 1, then the header's big-endian entry count and data length).
                let mut data = le.clone();
                let page_1 = 8192..2 * 8192;
                let item = page_1.start + find_all(&data[page_1], &[1, 0, 0, 0, 60])[0];
                let length = u32::from_be_bytes(data[item + 5..item + 9].try_into().expect("4 bytes"));
                data[item + 5..item + 9].copy_from_slice(&(length + 1).to_be_bytes());
                hello_message = format!(
                    "Berkeley DB rpm database: package 4: header of 1964 bytes is shorter than its 60 entries and {} \
                     data bytes; left out",
                    length + 1
                );
                data
            },
            bdb_path,
            &["berth-big", "berth-tool"],
            vec![hello_message.clone()],
        ),
        (
            "an NDB file whose slot pages run past its end",
            {
                let mut data = ndb.clone();
                data[12..16].copy_from_slice(&1000u32.to_le_bytes());
                data
            },
            ndb_path,
            &[],
            vec!["NDB rpm database could not be read: 1000 slot pages in a file of 36352 bytes".into()],
        ),
        (
            "an NDB blob whose head names another package",
            {
                let mut data = ndb.clone();
                let (_, blob) = ndb_slot_and_blob(&data, 2);
                data[blob + 4..blob + 8].copy_from_slice(&77u32.to_le_bytes());
                data
            },
            ndb_path,
            &["berth-big", "berth-hello"],
            vec!["NDB rpm database: package 2: its blob belongs to package 77; left out".into()],
        ),
        (
            "an NDB slot pointing past the end of the file",
            {
                let mut data = ndb.clone();
                let (slot, _) = ndb_slot_and_blob(&data, 3);
                assert_eq!(data[slot + 12..slot + 16], 1640u32.to_le_bytes(), "fixture layout changed");
                data[slot + 8..slot + 12].copy_from_slice(&100_000u32.to_le_bytes());
                data
            },
            ndb_path,
            &["berth-hello", "berth-tool"],
            vec![
                "NDB rpm database: package 3: its slot points at blocks 100000 to 101640 of a file of 2272 blocks; \
                 left out"
                    .into(),
            ],
        ),
        (
            "two NDB slots pointing at the same blob",
            {
                // berth-hello's slot (after berth-tool's) gets berth-tool's place.
                let mut data = ndb.clone();
                let (tool, _) = ndb_slot_and_blob(&data, 2);
                let (hello, _) = ndb_slot_and_blob(&data, 4);
                assert!(tool < hello);
                let place = data[tool + 8..tool + 16].to_vec();
                data[hello + 8..hello + 16].copy_from_slice(&place);
                data
            },
            ndb_path,
            &["berth-big", "berth-tool"],
            vec!["NDB rpm database: package 4: its blob overlaps the one before it; left out".into()],
        ),
    ];
    for (what, data, path, names, messages) in cases {
        let scanned = Image::new(&[(path, &data)]).scan();
        let found: Vec<&str> = rpm_components(&scanned).iter().map(|c| c.name.as_str()).collect();
        assert_eq!(found, names, "{what}");
        let problems: Vec<(&str, &str)> = scanned
            .problems
            .iter()
            .map(|p| (p.location.path.as_str(), p.message.as_str()))
            .collect();
        let expected: Vec<(&str, &str)> = messages.iter().map(|m| (path, m.as_str())).collect();
        assert_eq!(problems, expected, "{what}");
    }
}

#[test]
fn dpkg_and_apk_databases_without_entries_are_warnings() {
    let problems = problems_of(
        &[
            ("/var/lib/dpkg/status", b"\x00\x01garbage that is no dpkg status\n"),
            ("/lib/apk/db/installed", b"garbage that is no apk database\n"),
        ],
        &[],
    );
    assert_eq!(
        problems,
        owned(&[
            (
                "/lib/apk/db/installed",
                "apk database has content but no `P:` entry; no packages read from it"
            ),
            (
                "/var/lib/dpkg/status",
                "dpkg database has content but no `Package:` entry; no packages read from it"
            ),
        ])
    );
    // Empty databases are databases with nothing installed.
    let problems = problems_of(&[("/var/lib/dpkg/status", b""), ("/lib/apk/db/installed", b"\n")], &[]);
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn a_problem_in_a_file_an_upper_layer_replaced_is_not_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let layers: Vec<Layer> = (0..2)
        .map(|i| {
            let layer_dir = dir.path().join(format!("l{i}"));
            std::fs::create_dir_all(layer_dir.join("var/lib/rpm")).expect("dirs");
            Layer {
                digest: format!("sha256:{i:064}"),
                diff_id: format!("sha256:{:064}", i + 10),
                dir: layer_dir,
                size: None,
            }
        })
        .collect();
    std::fs::write(layers[0].dir.join("var/lib/rpm/Packages"), fixture("corrupt/Packages")).expect("write");
    std::fs::write(layers[1].dir.join("var/lib/rpm/Packages"), fixture("bdb-be/Packages")).expect("write");
    let per_layer: Vec<_> = layers
        .iter()
        .map(|l| inventory::scan_layer(l).expect("scan_layer"))
        .collect();
    assert_eq!(per_layer[0].facts.problems.len(), 3);
    let merged = inventory::merge(&per_layer);
    assert!(merged.problems.is_empty(), "{:#?}", merged.problems);
    assert_eq!(rpm_components(&merged).len(), 3);
    let whole = inventory::scan(&MergedView::open(&layers).expect("view")).expect("scan");
    assert_eq!(whole, merged);

    // The other way round, the damaged upper database is the image's: its
    // warnings show, and the lower one does not show through it.
    std::fs::write(layers[0].dir.join("var/lib/rpm/Packages"), fixture("bdb-be/Packages")).expect("write");
    std::fs::write(layers[1].dir.join("var/lib/rpm/Packages"), b"").expect("write");
    let per_layer: Vec<_> = layers
        .iter()
        .map(|l| inventory::scan_layer(l).expect("scan_layer"))
        .collect();
    let merged = inventory::merge(&per_layer);
    assert!(rpm_components(&merged).is_empty(), "{:#?}", merged.components);
    assert_eq!(merged.problems.len(), 1, "{:#?}", merged.problems);
    assert_eq!(merged.problems[0].location.layer, layers[1].digest);
    let whole = inventory::scan(&MergedView::open(&layers).expect("view")).expect("scan");
    assert_eq!(whole, merged);
}

#[test]
fn unreadable_database_is_a_warning_in_the_scan_report() {
    let image = Image::new(&[("/var/lib/rpm/Packages", &fixture("corrupt/Packages"))]);
    let layers = image.layers();
    let request = ScanRequest {
        image: ImageRef {
            reference: "example.com/centos:7".to_string(),
            digest: format!("sha256:{:064}", 3),
        },
        layers: &layers,
        db: None,
        deny_licenses: &[],
        ignore: None,
        checks: None,
        functional_test: None,
        created: "2024-05-01T12:00:00Z".parse().expect("time"),
    };
    let outcome = scan_image(&request, &MemoryCache::default(), &|_| {}).expect("scan");
    let report = outcome.report;
    let names: Vec<&str> = report.components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["berth-hello"]);
    assert_eq!(report.warnings.len(), 3, "{:#?}", report.warnings);
    assert!(
        report.warnings[0].starts_with("/var/lib/rpm/Packages: Berkeley DB rpm database: "),
        "{}",
        report.warnings[0]
    );
    assert_eq!(outcome.problems, report.warnings);

    // The warnings survive storage and show in the renderings.
    let json = serde_json::to_string(&report).expect("encode");
    let decoded: ScanReport = serde_json::from_str(&json).expect("decode");
    assert_eq!(decoded.warnings, report.warnings);
    let text = table::write_table(&report, &SeverityFilter::default());
    assert!(
        text.contains("Warnings: 3 (the components may be incomplete)"),
        "{text}"
    );
    assert!(text.contains(&format!("  {}", report.warnings[1])), "{text}");
    let sarif: serde_json::Value = serde_json::from_str(&sarif::write_sarif(&report).expect("sarif")).expect("json");
    let notes = &sarif["runs"][0]["invocations"][0]["toolExecutionNotifications"];
    assert_eq!(notes.as_array().map(Vec::len), Some(3), "{notes}");
    assert_eq!(notes[0]["level"], "warning");

    // A report without warnings says nothing about them, and one stored
    // before they existed still reads.
    let mut clean = report.clone();
    clean.warnings.clear();
    let json = serde_json::to_value(&clean).expect("encode");
    assert!(json.get("warnings").is_none(), "{json}");
    let old: ScanReport = serde_json::from_value(json).expect("decode an old report");
    assert!(old.warnings.is_empty());
}
