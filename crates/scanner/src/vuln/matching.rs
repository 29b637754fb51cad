//! Matching components against the database with the OSV evaluation
//! algorithm: for each `affected[]` entry of the component's ecosystem (and
//! of the image's release when both are known), the version is affected when
//! it is listed in `versions` or inside a range. A range's events are sorted
//! by the range's order (`introduced: "0"` first, `limit: "*"` last);
//! `introduced` opens, `fixed` closes (exclusive), `last_affected` closes
//! (inclusive), and `limit` events bound the whole range. `SEMVER` ranges use
//! SemVer precedence whatever the ecosystem, `ECOSYSTEM` ranges the
//! ecosystem's order. Withdrawn records are skipped; findings of one
//! package that share an id or alias are merged.
//!
//! **Architecture Invariant**: [`match_components`] is pure; see
//! [`cache_key`] for caching its results per layer.

use std::cmp::Ordering;

use super::db::{AffectedPackage, AffectedRange, Event, RangeKind};
use super::VulnDb;
use crate::types::{Component, Ecosystem, Vulnerability};
use crate::versions::{self, VersionError};

/// The image's distribution as os-release names it (`ID` and `VERSION_ID`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distro {
    pub id: String,
    pub version: Option<String>,
}

impl Distro {
    /// Parses `debian-12`, `alpine-3.19.1`, `opensuse-leap-15.5`, `ubuntu-22.04`
    /// or a bare id (`debian` for testing/sid).
    pub fn parse(distro: &str) -> Distro {
        let distro = distro.trim().to_ascii_lowercase();
        match distro.rfind('-') {
            Some(i) if distro[i + 1..].starts_with(|c: char| c.is_ascii_digit()) => Distro {
                id: distro[..i].to_owned(),
                version: Some(distro[i + 1..].to_owned()),
            },
            _ => Distro {
                id: distro,
                version: None,
            },
        }
    }
}

/// The cache key for one layer's findings: results of [`match_components`]
/// for the components found in a layer depend only on those components
/// (keyed by the layer's diff_id), the distro and the database content.
pub fn cache_key(layer_diff_id: &str, distro: Option<&str>, db: &VulnDb) -> String {
    format!("{layer_diff_id}|{}|{}", distro.unwrap_or("-"), db.digest())
}

/// The OSV ecosystem names whose records apply to a component.
fn osv_ecosystems(ecosystem: Ecosystem, distro: Option<&Distro>) -> &'static [&'static str] {
    let id = distro.map(|d| d.id.as_str()).unwrap_or("");
    match ecosystem {
        Ecosystem::Debian if id == "ubuntu" => &["Ubuntu"],
        Ecosystem::Debian => &["Debian"],
        Ecosystem::Rpm => match id {
            "rocky" => &["Rocky Linux"],
            "almalinux" => &["AlmaLinux"],
            "opensuse" | "opensuse-leap" | "opensuse-tumbleweed" => &["openSUSE"],
            "sles" | "sled" | "sles_sap" => &["SUSE"],
            "mageia" => &["Mageia"],
            "openeuler" => &["openEuler"],
            _ => &["Red Hat"],
        },
        Ecosystem::Alpine => &["Alpine"],
        Ecosystem::Cargo => &["crates.io"],
        Ecosystem::PyPI => &["PyPI"],
        Ecosystem::Npm => &["npm"],
        Ecosystem::Go => &["Go"],
        Ecosystem::Maven => &["Maven"],
        Ecosystem::RubyGems => &["RubyGems"],
    }
}

/// Whether an OSV ecosystem name is the distribution `id` (so its release
/// suffix can be checked against the image's release).
fn is_distro_ecosystem(osv: &str, id: &str) -> bool {
    matches!(
        (osv, id),
        ("Debian", "debian")
            | ("Ubuntu", "ubuntu")
            | ("Alpine", "alpine")
            | ("Red Hat", "rhel")
            | ("Rocky Linux", "rocky")
            | ("AlmaLinux", "almalinux")
            | ("openSUSE", "opensuse" | "opensuse-leap" | "opensuse-tumbleweed")
            | ("SUSE", "sles" | "sled" | "sles_sap")
            | ("Mageia", "mageia")
            | ("openEuler", "openeuler")
    )
}

/// Whether a record's release suffix (`12`, `v3.19`, `22.04:LTS`,
/// `enterprise_linux:9::appstream`) names the image's release: its first
/// numeric part must be a dotted prefix of the image's `VERSION_ID`.
fn release_matches(release: &str, version: &str) -> bool {
    let Some(wanted) = release
        .split(':')
        .map(|part| part.trim_start_matches('v'))
        .find(|part| part.starts_with(|c: char| c.is_ascii_digit()))
    else {
        return true;
    };
    let mut have = version.trim_start_matches('v').split('.');
    wanted.split('.').all(|part| have.next() == Some(part))
}

/// The OSV ecosystems whose records the matcher uses, as osv.dev names
/// them (and its exports: `<ecosystem>/all.zip`).
pub const SUPPORTED_ECOSYSTEMS: &[&str] = &[
    "AlmaLinux",
    "Alpine",
    "Debian",
    "Go",
    "Mageia",
    "Maven",
    "PyPI",
    "Red Hat",
    "Rocky Linux",
    "RubyGems",
    "SUSE",
    "Ubuntu",
    "crates.io",
    "npm",
    "openEuler",
    "openSUSE",
];

/// Which version order an OSV ecosystem's `ECOSYSTEM` ranges use.
pub fn order_of(osv_ecosystem: &str) -> Option<Ecosystem> {
    Some(match osv_ecosystem {
        "Debian" | "Ubuntu" => Ecosystem::Debian,
        "Alpine" => Ecosystem::Alpine,
        "Red Hat" | "Rocky Linux" | "AlmaLinux" | "openSUSE" | "SUSE" | "Mageia" | "openEuler" => Ecosystem::Rpm,
        "crates.io" => Ecosystem::Cargo,
        "PyPI" => Ecosystem::PyPI,
        "npm" => Ecosystem::Npm,
        "Go" => Ecosystem::Go,
        "Maven" => Ecosystem::Maven,
        "RubyGems" => Ecosystem::RubyGems,
        _ => return None,
    })
}

fn compare(kind: RangeKind, order: Option<Ecosystem>, a: &str, b: &str) -> Result<Ordering, VersionError> {
    match (kind, order) {
        (RangeKind::Semver, _) => versions::semver::compare_osv(a, b),
        (RangeKind::Ecosystem, Some(ecosystem)) => versions::compare(ecosystem, a, b),
        (RangeKind::Ecosystem, None) => Err(VersionError {
            scheme: "unknown",
            version: a.to_owned(),
            reason: "no version order for this ecosystem".into(),
        }),
    }
}

/// Position of an event in the sorted order: `introduced: "0"` before
/// everything, `limit: "*"` after everything; ties keep `introduced` first.
fn event_order(kind: RangeKind, order: Option<Ecosystem>, a: &Event, b: &Event) -> Result<Ordering, VersionError> {
    fn bound(e: &Event) -> (i8, &str) {
        match e {
            Event::Introduced(v) if v == "0" => (-1, v),
            Event::Limit(v) if v == "*" => (1, v),
            Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) | Event::Limit(v) => (0, v),
        }
    }
    let rank = |e: &Event| match e {
        Event::Introduced(_) => 0,
        Event::Fixed(_) | Event::LastAffected(_) => 1,
        Event::Limit(_) => 2,
    };
    let ((ba, va), (bb, vb)) = (bound(a), bound(b));
    let by_version = if ba != 0 || bb != 0 {
        ba.cmp(&bb)
    } else {
        compare(kind, order, va, vb)?
    };
    Ok(by_version.then_with(|| rank(a).cmp(&rank(b))))
}

/// Whether `version` is inside `range`; an error when the range or the
/// version cannot be ordered.
fn included(range: &AffectedRange, order: Option<Ecosystem>, version: &str) -> Result<bool, VersionError> {
    let kind = range.kind;
    let mut limited = false;
    let mut before_a_limit = false;
    for event in &range.events {
        if let Event::Limit(limit) = event {
            limited = true;
            if limit == "*" || compare(kind, order, version, limit)? == Ordering::Less {
                before_a_limit = true;
            }
        }
    }
    if limited && !before_a_limit {
        return Ok(false);
    }
    // Check every event version first, so the sort below cannot hide an error.
    for event in &range.events {
        event_order(kind, order, event, event)?;
    }
    let mut events: Vec<&Event> = range.events.iter().collect();
    events.sort_by(|a, b| event_order(kind, order, a, b).unwrap_or(Ordering::Equal));
    let mut vulnerable = false;
    for event in events {
        match event {
            Event::Introduced(v) => {
                if v == "0" || compare(kind, order, version, v)? != Ordering::Less {
                    vulnerable = true;
                }
            }
            Event::Fixed(v) => {
                if compare(kind, order, version, v)? != Ordering::Less {
                    vulnerable = false;
                }
            }
            Event::LastAffected(v) => {
                if compare(kind, order, version, v)? == Ordering::Greater {
                    vulnerable = false;
                }
            }
            Event::Limit(_) => {}
        }
    }
    Ok(vulnerable)
}

/// Whether `version` is affected by one `affected[]` entry and, if so, the
/// smallest `fixed` version above it.
pub fn evaluate(affected: &AffectedPackage, version: &str) -> Option<Option<String>> {
    let order = order_of(&affected.ecosystem);
    let listed = affected.versions.iter().any(|listed| {
        listed == version
            || order.is_some_and(|o| versions::compare(o, listed, version).is_ok_and(|c| c == Ordering::Equal))
    });
    let in_range = affected
        .ranges
        .iter()
        .any(|range| included(range, order, version).unwrap_or(false));
    if !listed && !in_range {
        return None;
    }
    let mut fixed: Option<(RangeKind, &str)> = None;
    for range in &affected.ranges {
        for event in &range.events {
            let Event::Fixed(candidate) = event else { continue };
            if compare(range.kind, order, version, candidate) != Ok(Ordering::Less) {
                continue;
            }
            fixed = match fixed {
                Some((kind, best)) if compare(kind, order, best, candidate) != Ok(Ordering::Greater) => {
                    Some((kind, best))
                }
                _ => Some((range.kind, candidate.as_str())),
            };
        }
    }
    Some(fixed.map(|(_, v)| v.to_owned()))
}

fn shares_identity(a: &Vulnerability, b: &Vulnerability) -> bool {
    a.id == b.id
        || a.aliases.contains(&b.id)
        || b.aliases.contains(&a.id)
        || a.aliases.iter().any(|alias| b.aliases.contains(alias))
}

fn merge(into: &mut Vulnerability, other: Vulnerability) {
    for id in std::iter::once(other.id).chain(other.aliases) {
        if id != into.id && !into.aliases.contains(&id) {
            into.aliases.push(id);
        }
    }
    if other.severity > into.severity {
        into.severity = other.severity;
        into.cvss_score = other.cvss_score;
        into.cvss_vector = other.cvss_vector;
    }
    if into.summary.is_empty() {
        into.summary = other.summary;
    }
    // Keep the smallest fix the records name.
    into.fixed_version = match (into.fixed_version.take(), other.fixed_version) {
        (Some(a), Some(b)) => match versions::compare(into.ecosystem, &b, &a) {
            Ok(Ordering::Less) => Some(b),
            _ => Some(a),
        },
        (a, b) => a.or(b),
    };
}

/// The package and version advisories are matched on. Debian and Alpine
/// advisories name source packages: `Source: shadow` names the source and
/// keeps the binary's version; `Source: shadow (1:4.13+dfsg1-1)` (a binNMU,
/// whose binary version is `...+b1`) names the source's version too.
/// Findings still report the binary package and its version.
pub fn source_package(component: &Component) -> (&str, &str) {
    match (component.ecosystem, component.source.as_deref()) {
        (Ecosystem::Debian | Ecosystem::Alpine, Some(source)) => match source.split_once('(') {
            Some((name, rest)) => {
                let version = rest.trim().strip_suffix(')').unwrap_or(rest).trim();
                let version = if version.is_empty() {
                    component.version.as_str()
                } else {
                    version
                };
                (name.trim(), version)
            }
            None => (source.trim(), component.version.as_str()),
        },
        _ => (component.name.as_str(), component.version.as_str()),
    }
}

/// The known vulnerabilities of `components`. `distro` is the image's
/// os-release `ID-VERSION_ID` (`debian-12`); with it, records for other
/// releases of the same distribution are not applied.
pub fn match_components(db: &VulnDb, components: &[Component], distro: Option<&str>) -> Vec<Vulnerability> {
    let distro = distro.map(Distro::parse);
    let mut findings = Vec::new();
    for component in components {
        let (lookup_name, source_version) = source_package(component);
        let mut candidates = Vec::new();
        for osv_ecosystem in osv_ecosystems(component.ecosystem, distro.as_ref()) {
            let release_filter = distro
                .as_ref()
                .filter(|d| is_distro_ecosystem(osv_ecosystem, &d.id))
                .and_then(|d| d.version.as_deref());
            for (advisory, affected) in db.lookup(osv_ecosystem, lookup_name) {
                if advisory.withdrawn.is_some() {
                    continue;
                }
                if let (Some(release), Some(version)) = (affected.release.as_deref(), release_filter) {
                    if !release_matches(release, version) {
                        continue;
                    }
                }
                candidates.push((advisory, affected));
            }
        }
        candidates.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        let mut found: Vec<Vulnerability> = Vec::new();
        for (advisory, affected) in candidates {
            let Some(fixed_version) = evaluate(affected, source_version) else {
                continue;
            };
            let severity = affected.severity.as_ref().unwrap_or(&advisory.severity);
            let finding = Vulnerability {
                id: advisory.id.clone(),
                aliases: advisory.aliases.clone(),
                summary: advisory.summary.clone(),
                severity: severity.severity,
                cvss_score: severity.cvss.as_ref().map(|c| c.score),
                cvss_vector: severity.cvss.as_ref().map(|c| c.vector.clone()),
                package: component.name.clone(),
                installed_version: component.version.clone(),
                ecosystem: component.ecosystem,
                purl: component.purl.clone(),
                fixed_version,
                ignored: None,
            };
            match found.iter_mut().find(|existing| shares_identity(existing, &finding)) {
                Some(existing) => merge(existing, finding),
                None => found.push(finding),
            }
        }
        findings.extend(found);
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_supported_ecosystems_are_those_components_are_matched_in() {
        for ecosystem in SUPPORTED_ECOSYSTEMS {
            assert!(order_of(ecosystem).is_some(), "{ecosystem} has no version order");
        }
        let components = [
            Ecosystem::Debian,
            Ecosystem::Alpine,
            Ecosystem::Rpm,
            Ecosystem::Cargo,
            Ecosystem::PyPI,
            Ecosystem::Npm,
            Ecosystem::Go,
            Ecosystem::Maven,
            Ecosystem::RubyGems,
        ];
        let distros = [
            "debian",
            "ubuntu",
            "alpine",
            "rhel",
            "rocky",
            "almalinux",
            "opensuse-leap",
            "sles",
            "mageia",
            "openeuler",
        ];
        let mut matched: Vec<&str> = Vec::new();
        for component in components {
            for distro in distros {
                matched.extend(osv_ecosystems(component, Some(&Distro::parse(distro))));
            }
        }
        matched.sort();
        matched.dedup();
        let mut supported = SUPPORTED_ECOSYSTEMS.to_vec();
        supported.sort();
        assert_eq!(matched, supported);
    }

    #[test]
    fn distro_parsing_and_release_matching() {
        assert_eq!(
            Distro::parse("debian-12"),
            Distro {
                id: "debian".into(),
                version: Some("12".into())
            }
        );
        assert_eq!(
            Distro::parse("opensuse-leap-15.5"),
            Distro {
                id: "opensuse-leap".into(),
                version: Some("15.5".into())
            }
        );
        assert_eq!(
            Distro::parse("debian"),
            Distro {
                id: "debian".into(),
                version: None
            }
        );
        assert!(release_matches("12", "12"));
        assert!(!release_matches("11", "12"));
        assert!(release_matches("v3.19", "3.19.1"));
        assert!(!release_matches("v3.19", "3.1"));
        assert!(!release_matches("v3.1", "3.19.0"));
        assert!(release_matches("22.04:LTS", "22.04"));
        assert!(release_matches("Pro:18.04:LTS", "18.04"));
        assert!(release_matches("enterprise_linux:9::appstream", "9.3"));
        assert!(release_matches("LTS", "22.04"));
    }
}
