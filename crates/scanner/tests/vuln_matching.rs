//! OSV matching on fixture records (tests/fixtures/vuln/records): every
//! range type and edge of the OSV evaluation algorithm, Debian release
//! suffixes and source packages, Alpine releases, withdrawn records, alias
//! dedupe, and severities from CVSS vectors and database ratings.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::path::Path;

use berth_scanner::vuln::{self, match_components, VulnDb};
use berth_scanner::{Component, Ecosystem, LicenseClass, Severity, Vulnerability};

fn fixtures() -> VulnDb {
    let mut db = VulnDb::default();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vuln/records");
    let stats = vuln::import(&dir, &mut db).unwrap();
    assert_eq!(stats.skipped, 0, "{:?}", stats.errors);
    db
}

fn component(ecosystem: Ecosystem, name: &str, version: &str, source: Option<&str>) -> Component {
    Component {
        name: name.to_owned(),
        version: version.to_owned(),
        ecosystem,
        purl: format!("pkg:{}/{name}@{version}", ecosystem.purl_type()),
        arch: None,
        source: source.map(str::to_owned),
        license: None,
        license_declared: None,
        license_class: LicenseClass::Unknown,
        locations: Vec::new(),
    }
}

/// One line per finding: `package version: id fixed=... severity`.
fn summarize(findings: &[Vulnerability]) -> Vec<String> {
    findings
        .iter()
        .map(|f| {
            format!(
                "{} {}: {} fixed={} {:?}",
                f.package,
                f.installed_version,
                f.id,
                f.fixed_version.as_deref().unwrap_or("-"),
                f.severity
            )
        })
        .collect()
}

fn check(db: &VulnDb, distro: Option<&str>, components: &[Component], expected: &[&str]) -> Vec<Vulnerability> {
    let findings = match_components(db, components, distro);
    assert_eq!(summarize(&findings), expected, "distro {distro:?}");
    findings
}

#[test]
fn debian_ecosystem_ranges_epochs_tildes_and_source_packages() {
    let db = fixtures();
    let d = Ecosystem::Debian;
    let components = [
        component(d, "libssl3", "3.0.11-1~deb12u2", Some("openssl")),
        component(d, "openssl", "3.0.13-1~deb12u1", None),
        component(d, "login", "1:4.13+dfsg1-1", Some("shadow")),
        component(d, "passwd", "4.14-1", Some("shadow")),
        component(d, "curl", "7.88.1-10+deb12u5~pre1", None),
        component(d, "libcurl4", "7.88.1-10+deb12u5", Some("curl")),
        component(d, "zlib1g", "1:1.2.13.dfsg-1", Some("zlib")),
    ];
    let findings = check(
        &db,
        Some("debian-12"),
        &components,
        &[
            // DSA-5600-1 shares CVE-2024-0001 and is merged; the withdrawn
            // DEBIAN-CVE-2024-0006 and the Debian:11 entry do not apply.
            "libssl3 3.0.11-1~deb12u2: DEBIAN-CVE-2024-0001 fixed=3.0.13-1~deb12u1 Critical",
            // Epoch 1 introduced the bug; 4.14 has epoch 0 and is older.
            "login 1:4.13+dfsg1-1: DEBIAN-CVE-2024-0002 fixed=1:4.13+dfsg1-2 High",
            // `~pre1` sorts before the fixed version.
            "curl 7.88.1-10+deb12u5~pre1: DEBIAN-CVE-2024-0003 fixed=7.88.1-10+deb12u5 High",
            // Only the record without a release suffix applies to Debian 12.
            "zlib1g 1:1.2.13.dfsg-1: DEBIAN-CVE-2024-0005 fixed=- Low",
        ],
    );
    let openssl = &findings[0];
    assert_eq!(openssl.aliases, ["CVE-2024-0001", "DSA-5600-1", "CVE-2024-0009"]);
    assert_eq!(openssl.cvss_score, Some(9.8));
    assert_eq!(
        openssl.cvss_vector.as_deref(),
        Some("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H")
    );
    assert_eq!(
        openssl.summary, "OpenSSL flaw in X.509 parsing.",
        "summary falls back to the first line of details"
    );
    assert_eq!(findings[2].cvss_score, Some(7.5), "CVSS v2 base score");
}

/// A binNMU (`login 1:4.13+dfsg1-1+b1`, `Source: shadow (1:4.13+dfsg1-1)`)
/// is matched on the source package at the source's version, and reported
/// as the binary package.
#[test]
fn binnmus_match_on_the_source_package_and_version() {
    let db = fixtures();
    let d = Ecosystem::Debian;
    check(
        &db,
        Some("debian-12"),
        &[
            component(d, "login", "1:4.13+dfsg1-1+b1", Some("shadow (1:4.13+dfsg1-1)")),
            component(d, "passwd", "1:4.13+dfsg1-2+b1", Some("shadow (1:4.13+dfsg1-2)")),
            component(d, "uidmap", "1:4.13+dfsg1-1+b1", Some("shadow")),
        ],
        &[
            "login 1:4.13+dfsg1-1+b1: DEBIAN-CVE-2024-0002 fixed=1:4.13+dfsg1-2 High",
            "uidmap 1:4.13+dfsg1-1+b1: DEBIAN-CVE-2024-0002 fixed=1:4.13+dfsg1-2 High",
        ],
    );
    let login = component(d, "login", "1:4.13+dfsg1-1+b1", Some("shadow (1:4.13+dfsg1-1)"));
    assert_eq!(vuln::source_package(&login), ("shadow", "1:4.13+dfsg1-1"));
}

#[test]
fn release_suffixes_apply_only_with_a_known_distro() {
    let db = fixtures();
    let zlib = [component(Ecosystem::Debian, "zlib1g", "1:1.2.13.dfsg-1", Some("zlib"))];
    check(
        &db,
        Some("debian-12"),
        &zlib,
        &["zlib1g 1:1.2.13.dfsg-1: DEBIAN-CVE-2024-0005 fixed=- Low"],
    );
    check(
        &db,
        Some("debian-11"),
        &zlib,
        &[
            "zlib1g 1:1.2.13.dfsg-1: DEBIAN-CVE-2024-0004 fixed=1:1.3.dfsg-1 Unknown",
            "zlib1g 1:1.2.13.dfsg-1: DEBIAN-CVE-2024-0005 fixed=- Low",
        ],
    );
    check(
        &db,
        None,
        &zlib,
        &[
            "zlib1g 1:1.2.13.dfsg-1: DEBIAN-CVE-2024-0004 fixed=1:1.3.dfsg-1 Unknown",
            "zlib1g 1:1.2.13.dfsg-1: DEBIAN-CVE-2024-0005 fixed=- Low",
        ],
    );
    // Ubuntu images look up Ubuntu records, not Debian ones.
    check(&db, Some("ubuntu-22.04"), &zlib, &[]);
}

#[test]
fn alpine_releases_and_suffix_order() {
    let db = fixtures();
    let a = Ecosystem::Alpine;
    let components = [
        component(a, "libcrypto3", "3.1.4-r4", Some("openssl")),
        component(a, "busybox", "1.36.1-r15", None),
        component(a, "busybox", "1.36.0-r0", None),
        component(a, "busybox", "1.36.1_rc1-r0", None),
        component(a, "busybox", "1.36.1_beta2-r0", None),
    ];
    check(
        &db,
        Some("alpine-3.19.1"),
        &components,
        &[
            "libcrypto3 3.1.4-r4: ALPINE-CVE-2024-0010 fixed=3.1.4-r5 Unknown",
            "busybox 1.36.1-r15: ALPINE-CVE-2024-0011 fixed=1.36.1-r16 Unknown",
            "busybox 1.36.1_rc1-r0: ALPINE-CVE-2024-0011 fixed=1.36.1-r16 Unknown",
        ],
    );
    // On 3.18 only the 3.18 entry applies, and r4 is past its fix.
    check(&db, Some("alpine-3.18.6"), &components[..1], &[]);
}

#[test]
fn semver_ranges_with_several_introduced_fixed_pairs_and_alias_dedupe() {
    let db = fixtures();
    let n = Ecosystem::Npm;
    let components = [
        component(n, "lodash", "1.2.0", None),
        component(n, "lodash", "1.5.0", None),
        component(n, "lodash", "2.0.4", None),
        component(n, "lodash", "2.0.5", None),
        component(n, "lodash", "0.9.0", None),
    ];
    let findings = check(
        &db,
        None,
        &components,
        &[
            // GHSA-aaaa-bbbb-cccc (1.0.0..1.2.3, 2.0.0..2.0.5) and CVE-2024-0020
            // (0..2.0.5) are one vulnerability: merged, smallest fix kept.
            "lodash 1.2.0: CVE-2024-0020 fixed=1.2.3 Critical",
            "lodash 1.5.0: CVE-2024-0020 fixed=2.0.5 Critical",
            "lodash 2.0.4: CVE-2024-0020 fixed=2.0.5 Critical",
            "lodash 0.9.0: CVE-2024-0020 fixed=2.0.5 Critical",
        ],
    );
    assert_eq!(findings[0].aliases, ["GHSA-aaaa-bbbb-cccc"]);
    assert!(findings[1].aliases.is_empty(), "only the CVE record matches 1.5.0");
    assert_eq!(findings[0].cvss_score, Some(10.0));
}

#[test]
fn last_affected_limit_versions_list_and_git_ranges() {
    let db = fixtures();
    let components = [
        component(Ecosystem::PyPI, "requests", "2.31.0", None),
        component(Ecosystem::PyPI, "requests", "2.31.0rc1", None),
        component(Ecosystem::PyPI, "requests", "2.31.0.post1", None),
        component(Ecosystem::PyPI, "requests", "1.9", None),
        component(Ecosystem::Cargo, "smallvec", "1.3.0", None),
        component(Ecosystem::Cargo, "smallvec", "1.4.0", None),
        component(Ecosystem::Cargo, "smallvec", "0.9.0", None),
        component(Ecosystem::RubyGems, "rack", "2.2.4", None),
        component(Ecosystem::RubyGems, "rack", "2.2.5", None),
    ];
    check(
        &db,
        None,
        &components,
        &[
            // last_affected is inclusive; the PyPI name matches after normalization.
            "requests 2.31.0: PYSEC-2024-1 fixed=- Unknown",
            "requests 2.31.0rc1: PYSEC-2024-1 fixed=- Unknown",
            // limit bounds the range from above (exclusive).
            "smallvec 1.3.0: RUSTSEC-2024-0001 fixed=- Unknown",
            // the versions list alone; the GIT-only record never matches.
            "rack 2.2.4: GHSA-rack-0000-0001 fixed=- Unknown",
        ],
    );
}

#[test]
fn go_pseudo_versions_incompatible_and_maven_qualifiers() {
    let db = fixtures();
    let go = Ecosystem::Go;
    let mvn = Ecosystem::Maven;
    let log4j = "org.apache.logging.log4j:log4j-core";
    let components = [
        component(
            go,
            "github.com/example/mod",
            "v1.2.4-0.20200101000000-abcdefabcdef",
            None,
        ),
        component(go, "github.com/example/mod", "v1.2.4", None),
        component(go, "github.com/example/mod", "v2.0.0+incompatible", None),
        component(mvn, log4j, "2.14.1", None),
        component(mvn, log4j, "2.0-beta9", None),
        component(mvn, log4j, "2.0-alpha1", None),
        component(mvn, log4j, "2.15.0", None),
    ];
    check(
        &db,
        None,
        &components,
        &[
            "github.com/example/mod v1.2.4-0.20200101000000-abcdefabcdef: GO-2024-0001 fixed=1.2.4 Unknown",
            "github.com/example/mod v2.0.0+incompatible: GO-2024-0001 fixed=2.1.0 Unknown",
            "org.apache.logging.log4j:log4j-core 2.14.1: GHSA-jfh8-c2jp-5v3q fixed=2.15.0 Critical",
            "org.apache.logging.log4j:log4j-core 2.0-beta9: GHSA-jfh8-c2jp-5v3q fixed=2.15.0 Critical",
        ],
    );
}

#[test]
fn rpm_distributions_and_epochs() {
    let db = fixtures();
    let components = [
        component(Ecosystem::Rpm, "openssl", "1:3.0.7-24.el9", None),
        component(Ecosystem::Rpm, "openssl", "1:3.0.7-25.el9_3", None),
    ];
    check(
        &db,
        Some("rocky-9.3"),
        &components,
        &["openssl 1:3.0.7-24.el9: RLSA-2024:0001 fixed=1:3.0.7-25.el9_3 Unknown"],
    );
    check(&db, Some("rocky-8.9"), &components, &[]);
    // A RHEL image reads Red Hat records, which the fixtures do not have.
    check(&db, Some("rhel-9.3"), &components, &[]);
}

#[test]
fn database_ratings_without_vectors() {
    let db = fixtures();
    let advisory = db.get("GHSA-aaaa-bbbb-cccc").unwrap();
    assert_eq!(advisory.severity.severity, Severity::High, "database_specific.severity");
    assert!(advisory.severity.cvss.is_none());
    assert!(
        db.get("OSV-2024-GIT").unwrap().affected[0].ranges.is_empty(),
        "GIT ranges are not kept"
    );
}

#[test]
fn matching_is_pure_and_keyed_by_layer_and_db_digest() {
    let db = fixtures();
    let components = [component(
        Ecosystem::Debian,
        "libssl3",
        "3.0.11-1~deb12u2",
        Some("openssl"),
    )];
    let first = match_components(&db, &components, Some("debian-12"));
    let second = match_components(&db, &components, Some("debian-12"));
    assert_eq!(first, second);
    let key = vuln::cache_key("sha256:layer", Some("debian-12"), &db);
    assert!(key.starts_with("sha256:layer|debian-12|sha256:"), "{key}");
    let mut changed = db.clone();
    let extra: vuln::OsvRecord = serde_json::from_str(
        r#"{"id":"EXTRA-1","modified":"2024-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"npm","name":"x"},"versions":["1.0.0"]}]}"#,
    )
    .unwrap();
    assert!(changed.insert(&extra));
    assert_ne!(
        vuln::cache_key("sha256:layer", Some("debian-12"), &changed),
        key,
        "new content, new key"
    );
}
