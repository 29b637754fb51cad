//! Import of OSV records from directories, osv.dev-style `all.zip` exports
//! built here, and directories of exports; persistence round trips; the load
//! time of a Debian-sized database.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use berth_scanner::vuln::{self, match_components, VulnDb};
use berth_scanner::{Component, Ecosystem, LicenseClass};

fn fixtures_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vuln/records")
}

fn write_zip(path: &Path, entries: &[(String, String)]) {
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, body) in entries {
        zip.start_file(name.as_str(), options).unwrap();
        zip.write_all(body.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
}

fn fixture_entries(sub: &str) -> Vec<(String, String)> {
    let mut entries: Vec<(String, String)> = std::fs::read_dir(fixtures_dir().join(sub))
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&path).unwrap(),
            )
        })
        .collect();
    entries.sort();
    entries
}

/// A Debian-like record: a source package, three releases, a CVSS vector
/// on every third record.
fn synthetic_record(i: usize) -> String {
    let package = format!("src{}", i % 3000);
    let severity = if matches!(i % 3, 0) {
        r#""severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H"}],"#
    } else {
        ""
    };
    let affected: Vec<String> = [(11, "deb11u"), (12, "deb12u"), (13, "")]
        .iter()
        .map(|(release, suffix)| {
            format!(
                r#"{{"package":{{"ecosystem":"Debian:{release}","name":"{package}","purl":"pkg:deb/debian/{package}?arch=source"}},
                   "ranges":[{{"type":"ECOSYSTEM","events":[{{"introduced":"0"}},{{"fixed":"{}.{}.{}-{}+{suffix}{}"}}]}}],
                   "ecosystem_specific":{{"urgency":"not yet assigned"}}}}"#,
                1 + i % 7,
                i % 13,
                i % 100,
                1 + i % 5,
                i % 4
            )
        })
        .collect();
    format!(
        r#"{{"schema_version":"1.6.0","id":"DEBIAN-CVE-{}-{:05}","modified":"2024-03-01T00:00:00Z","published":"2024-01-01T00:00:00Z",
            "aliases":["CVE-{}-{:05}"],"details":"A flaw was found in {package} that allows a remote attacker to cause a denial of service via crafted input ({i}).",
            {severity}"affected":[{}]}}"#,
        2000 + i % 25,
        i,
        2000 + i % 25,
        i,
        affected.join(",")
    )
}

fn component(name: &str, version: &str, source: &str) -> Component {
    Component {
        name: name.to_owned(),
        version: version.to_owned(),
        ecosystem: Ecosystem::Debian,
        purl: format!("pkg:deb/debian/{name}@{version}"),
        arch: None,
        source: Some(source.to_owned()),
        license: None,
        license_declared: None,
        license_class: LicenseClass::Unknown,
        locations: Vec::new(),
    }
}

#[test]
fn directory_zip_and_directory_of_zips_import_the_same_content() {
    let mut from_dir = VulnDb::default();
    let stats = vuln::import(&fixtures_dir(), &mut from_dir).unwrap();
    assert_eq!((stats.records, stats.skipped, stats.files), (19, 0, 19));
    assert_eq!(from_dir.len(), 19);
    assert!(from_dir.imported_at().is_some());
    let counts = from_dir.counts_by_ecosystem();
    assert_eq!(counts.get("Debian"), Some(&7));
    assert_eq!(counts.get("Alpine"), Some(&2));

    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("Debian")).unwrap();
    std::fs::create_dir_all(tmp.path().join("Other")).unwrap();
    write_zip(&tmp.path().join("Debian/all.zip"), &fixture_entries("debian"));
    write_zip(&tmp.path().join("Other/all.zip"), &fixture_entries("other"));

    let mut from_zip = VulnDb::default();
    let stats = vuln::import(&tmp.path().join("Debian/all.zip"), &mut from_zip).unwrap();
    assert_eq!((stats.records, stats.archives), (7, 1));
    let mut from_zips = VulnDb::default();
    let stats = vuln::import(tmp.path(), &mut from_zips).unwrap();
    assert_eq!((stats.records, stats.archives), (19, 2));
    assert_eq!(
        from_zips.digest(),
        from_dir.digest(),
        "same records, same digest whatever the source and order"
    );
    assert_ne!(from_zip.digest(), from_dir.digest());
}

#[test]
fn malformed_records_are_skipped_and_named_and_newer_records_win() {
    let tmp = tempfile::tempdir().unwrap();
    let record = |id: &str, modified: &str, fixed: &str| {
        format!(
            r#"{{"id":"{id}","modified":"{modified}","affected":[{{"package":{{"ecosystem":"npm","name":"x"}},
                "ranges":[{{"type":"SEMVER","events":[{{"introduced":"0"}},{{"fixed":"{fixed}"}}]}}]}}]}}"#
        )
    };
    write_zip(
        &tmp.path().join("all.zip"),
        &[
            ("A-1.json".into(), record("A-1", "2024-01-02T00:00:00Z", "2.0.0")),
            ("A-1-old.json".into(), record("A-1", "2024-01-01T00:00:00.5Z", "1.0.0")),
            ("broken.json".into(), "{\"id\": ".into()),
            ("no-id.json".into(), r#"{"summary": "x"}"#.into()),
            ("README.txt".into(), "not a record".into()),
        ],
    );
    let mut db = VulnDb::default();
    let stats = vuln::import(&tmp.path().join("all.zip"), &mut db).unwrap();
    assert_eq!((stats.records, stats.changed, stats.skipped), (2, 1, 2));
    assert!(
        stats.errors.iter().any(|e| e.contains("all.zip!broken.json")),
        "{:?}",
        stats.errors
    );
    assert!(
        stats
            .errors
            .iter()
            .any(|e| e.contains("no-id.json") && e.contains("id")),
        "{:?}",
        stats.errors
    );
    let events = &db.get("A-1").unwrap().affected[0].ranges[0].events;
    assert_eq!(
        events[1],
        vuln::db::Event::Fixed("2.0.0".into()),
        "the later `modified` wins"
    );

    let not_zip = tmp.path().join("fake.zip");
    std::fs::write(&not_zip, b"not a zip").unwrap();
    let error = vuln::import(&not_zip, &mut db).unwrap_err().to_string();
    assert!(error.contains("fake.zip") && error.contains("zip"), "{error}");
    let error = vuln::import(&tmp.path().join("missing"), &mut db)
        .unwrap_err()
        .to_string();
    assert!(error.contains("missing"), "{error}");
}

#[test]
fn save_and_load_round_trip() {
    let mut db = VulnDb::default();
    vuln::import(&fixtures_dir(), &mut db).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("vulndb.bin");
    db.save(&path).unwrap();
    let loaded = VulnDb::load(&path).unwrap();
    assert_eq!(loaded.len(), db.len());
    assert_eq!(loaded.digest(), db.digest());
    assert_eq!(loaded.version(), db.version());
    assert_eq!(loaded.counts_by_ecosystem(), db.counts_by_ecosystem());
    for advisory in db.advisories() {
        assert_eq!(loaded.get(&advisory.id), Some(advisory));
    }
    let header = VulnDb::read_header(&path).unwrap();
    assert_eq!((header.advisories, header.digest.as_str()), (19, db.digest()));
    let components = [component("libssl3", "3.0.11-1~deb12u2", "openssl")];
    assert_eq!(
        match_components(&loaded, &components, Some("debian-12")),
        match_components(&db, &components, Some("debian-12"))
    );
    assert!(!tmp
        .path()
        .read_dir()
        .unwrap()
        .any(|e| e.unwrap().file_name().to_string_lossy().contains("tmp")));

    // Damage is detected and named.
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let error = VulnDb::load(&path).unwrap_err().to_string();
    assert!(error.contains("vulndb.bin") && error.contains("corrupt"), "{error}");
    std::fs::write(&path, b"something else entirely").unwrap();
    assert!(VulnDb::load(&path).unwrap_err().to_string().contains("bad magic"));
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let value = f();
    (value, started.elapsed())
}

/// Builds a synthetic Debian-sized export (`records` records in an
/// `all.zip`), imports, saves, loads and matches, and returns the timings.
fn synthetic_debian_timings(records: usize) -> (Duration, Duration, Duration, u64) {
    let tmp = tempfile::tempdir().unwrap();
    let entries: Vec<(String, String)> = (0..records)
        .map(|i| (format!("{i}.json"), synthetic_record(i)))
        .collect();
    let zip = tmp.path().join("all.zip");
    write_zip(&zip, &entries);
    let mut db = VulnDb::default();
    let (stats, import_time) = timed(|| vuln::import(&zip, &mut db).unwrap());
    assert_eq!(stats.records, records);
    let path = tmp.path().join("vulndb.bin");
    db.save(&path).unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    let (loaded, load_time) = timed(|| VulnDb::load(&path).unwrap());
    assert_eq!(loaded.len(), records);
    let components: Vec<Component> = (0..300)
        .map(|i| {
            component(
                &format!("lib{i}"),
                &format!("{}.{}.0-1", 1 + i % 7, i % 13),
                &format!("src{i}"),
            )
        })
        .collect();
    let (findings, match_time) = timed(|| match_components(&loaded, &components, Some("debian-12")));
    assert!(!findings.is_empty());
    (import_time, load_time, match_time, size)
}

/// Loading a database of 50 000 Debian-like records must stay well under a
/// second; the debug build used by `cargo test` gets a looser bound than the
/// release build the daemon ships.
#[test]
fn debian_sized_database_loads_quickly() {
    let (import_time, load_time, match_time, size) = synthetic_debian_timings(50_000);
    eprintln!("50k records: import {import_time:?}, load {load_time:?}, match 300 components {match_time:?}, file {size} bytes");
    let bound = if cfg!(debug_assertions) {
        Duration::from_secs(3)
    } else {
        Duration::from_millis(500)
    };
    assert!(
        load_time < bound,
        "loading 50k records took {load_time:?} (bound {bound:?})"
    );
}
