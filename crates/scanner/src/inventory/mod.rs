//! Component inventory: the packages an image holds, per ecosystem, with
//! their licenses and where each was found.
//!
//! One pass over a [`MergedView`] picks the files that describe packages by
//! their path (package databases, language metadata, lock files, jars) and
//! reads executables only after their first bytes say ELF. Each ecosystem
//! lives in its own file and turns one file into components.
//!
//! Two ways in:
//! - [`inventory`] / [`scan`] on the merged view of a whole image;
//! - [`scan_layer`] per layer (cacheable by the layer's `diff_id`, it is
//!   [`serde`]-serializable) and [`merge`] of the cached results: for each
//!   package file the topmost layer that has it wins (an upper layer's dpkg
//!   `status` supersedes the lower one), whiteouts and opaque directories in
//!   upper layers remove what lies below them. A layer result only knows its
//!   own layer, so a symlink whose target lies in another layer is not
//!   followed there; a directory replaced by a plain file in an upper layer
//!   is not seen as removing the package files below it.
//!
//! Facts that need the whole image are settled when finishing: the distro
//! (`/etc/os-release`) for OS package URLs and Debian packages' licenses from
//! `/usr/share/doc/<package>/copyright` (following doc-dir symlinks to the
//! package that ships the file). The same package found in several places
//! (same ecosystem and purl) is one component with several locations.
//!
//! A package file that cannot be read, in whole or in part, is a
//! [`Problem`] naming the file and why, never just fewer components: the
//! scan report carries them as warnings. A package database that cannot be
//! read still hides the copies of it in lower layers, as its readable
//! version would.

mod apk;
mod cargo;
mod dpkg;
mod elf;
mod golang;
mod java;
mod npm;
pub mod purl;
mod python;
mod rpm;
mod ruby;

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::layers::{self, Entry, EntryKind, MergedView};
use crate::licenses;
use crate::types::{Component, Ecosystem, Layer, LicenseClass, Location};

/// The rpm header tags the rpmdb parser reads.
pub mod rpm_tags {
    pub const NAME: u32 = 1000;
    pub const VERSION: u32 = 1001;
    pub const RELEASE: u32 = 1002;
    pub const EPOCH: u32 = 1003;
    pub const LICENSE: u32 = 1014;
    pub const ARCH: u32 = 1022;
    pub const SOURCERPM: u32 = 1044;
}

/// Changes whenever [`scan_layer`] finds something else in the same layer
/// (a format it could not read before), so that layer results cached by an
/// earlier build are scanned again. 2: Berkeley DB and NDB rpm databases,
/// warnings for package databases that yield nothing.
pub const CACHE_REVISION: u32 = 2;

/// Largest package database or lock file read (dpkg `status`, rpmdb, ...).
pub const DATABASE_CAP: u64 = 512 << 20;
/// Largest small metadata file read (`package.json`, `METADATA`, ...).
pub const METADATA_CAP: u64 = 16 << 20;
/// Largest archive opened (`.jar`, `.war`, `.ear`).
pub const ARCHIVE_CAP: u64 = 1 << 30;
/// Largest executable looked into for Go or Rust build information.
pub const BINARY_CAP: u64 = 2 << 30;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    View(#[from] layers::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A file that looked like package metadata but could not be read, in whole
/// or in part (a package database with damaged entries); the scan goes on
/// without what could not be read. The message says why and what is missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub location: Location,
    pub message: String,
}

/// `/etc/os-release` as far as package URLs need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsRelease {
    /// `ID` (`debian`, `alpine`, `fedora`, ...).
    pub id: String,
    /// `VERSION_ID` (`12`, `3.19.1`, ...).
    pub version_id: Option<String>,
    pub location: Location,
}

/// One package-describing file and what it describes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub location: Location,
    pub components: Vec<Component>,
}

/// What `/usr/share/doc/<package>` says about a Debian package's license.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebianDoc {
    pub package: String,
    /// The `copyright` file, or the doc directory when it is a symlink.
    pub location: Location,
    pub kind: DebianDocKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DebianDocKind {
    Copyright(licenses::DebianLicense),
    /// The doc directory is a symlink to this other package's.
    SameAs(String),
}

/// What one scan found before the image-wide facts are settled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    pub sources: Vec<Source>,
    pub os_release: Option<OsRelease>,
    pub debian_docs: Vec<DebianDoc>,
    pub problems: Vec<Problem>,
}

/// The cacheable result of scanning one layer on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInventory {
    pub diff_id: String,
    pub digest: String,
    pub facts: Facts,
    /// Paths this layer's whiteouts delete from the layers below.
    pub whiteouts: Vec<String>,
    /// Directories this layer marks opaque (hiding the layers below).
    pub opaque_dirs: Vec<String>,
}

/// An image's components and the files that could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub components: Vec<Component>,
    pub os_release: Option<OsRelease>,
    pub problems: Vec<Problem>,
}

/// The components of the image `view` shows.
pub fn inventory(view: &MergedView) -> Result<Vec<Component>> {
    Ok(scan(view)?.components)
}

/// Like [`inventory`], also reporting unreadable package files.
pub fn scan(view: &MergedView) -> Result<Inventory> {
    Ok(finish(collect(view)))
}

/// Scans one layer on its own, for caching by `layer.diff_id`.
pub fn scan_layer(layer: &Layer) -> Result<LayerInventory> {
    let view = MergedView::open(std::slice::from_ref(layer))?;
    Ok(LayerInventory {
        diff_id: layer.diff_id.clone(),
        digest: layer.digest.clone(),
        facts: collect(&view),
        whiteouts: view.whiteouts().map(str::to_string).collect(),
        opaque_dirs: view.opaque_dirs().map(str::to_string).collect(),
    })
}

/// Merges per-layer results (bottom layer first) as overlayfs would stack
/// the layers, then settles the image-wide facts.
pub fn merge(layers: &[LayerInventory]) -> Inventory {
    let mut merged = Facts::default();
    // Prefixes ("/a/b/") and exact paths hidden by the layers above.
    let mut hidden_paths: HashSet<String> = HashSet::new();
    let mut hidden_dirs: Vec<String> = Vec::new();
    let mut taken: HashSet<String> = HashSet::new();
    let is_hidden = |path: &str, hidden_paths: &HashSet<String>, hidden_dirs: &[String]| {
        hidden_dirs.iter().any(|d| path.starts_with(d.as_str()))
            || hidden_paths.contains(path)
            || ancestors(path).any(|a| hidden_paths.contains(a))
    };
    for layer in layers.iter().rev() {
        let visible = |path: &str, taken: &HashSet<String>| {
            !taken.contains(path) && !is_hidden(path, &hidden_paths, &hidden_dirs)
        };
        let mut newly_taken = Vec::new();
        for source in &layer.facts.sources {
            if visible(&source.location.path, &taken) {
                newly_taken.push(source.location.path.clone());
                merged.sources.push(source.clone());
            }
        }
        for doc in &layer.facts.debian_docs {
            if visible(&doc.location.path, &taken) && !merged.debian_docs.iter().any(|d| d.package == doc.package) {
                newly_taken.push(doc.location.path.clone());
                merged.debian_docs.push(doc.clone());
            }
        }
        if merged.os_release.is_none() {
            if let Some(os) = &layer.facts.os_release {
                if visible(&os.location.path, &taken) {
                    merged.os_release = Some(os.clone());
                }
            }
        }
        // Problems with files the image no longer shows are not the image's.
        for problem in &layer.facts.problems {
            if visible(&problem.location.path, &taken) {
                merged.problems.push(problem.clone());
            }
        }
        taken.extend(newly_taken);
        // This layer's deletions apply to the layers below it only.
        hidden_paths.extend(layer.whiteouts.iter().cloned());
        hidden_dirs.extend(layer.opaque_dirs.iter().map(|d| format!("{d}/")));
    }
    finish(merged)
}

fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/')
        .filter(|(i, _)| *i > 0)
        .map(move |(i, _)| &path[..i])
}

/// A file handed to an ecosystem parser.
pub(crate) struct FileRef<'a> {
    pub view: &'a MergedView,
    pub path: &'a str,
    pub entry: &'a Entry,
    pub location: Location,
}

impl FileRef<'_> {
    pub fn read(&self, cap: u64) -> std::result::Result<Vec<u8>, String> {
        self.view
            .read_entry(self.path, self.entry, cap)
            .map_err(|e| e.to_string())
    }
}

/// What kind of package file a path is, by its name and place alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dpkg,
    Apk,
    Rpm,
    Python,
    NpmPackage,
    NpmLock,
    CargoLock,
    Java,
    Gem,
    MaybeBinary,
}

fn kind_of(path: &str, entry: &Entry) -> Option<Kind> {
    let (parent, name) = path.rsplit_once('/')?;
    let parent_name = parent.rsplit('/').next().unwrap_or("");
    let grandparent = parent.rsplit_once('/').map_or("", |(g, _)| g);
    let grandparent_name = grandparent.rsplit('/').next().unwrap_or("");
    Some(match name {
        _ if path == "/var/lib/dpkg/status" => Kind::Dpkg,
        _ if parent == "/var/lib/dpkg/status.d" && !name.ends_with(".md5sums") && !name.starts_with('.') => Kind::Dpkg,
        _ if path == "/lib/apk/db/installed" || path == "/usr/lib/apk/db/installed" => Kind::Apk,
        "rpmdb.sqlite" | "Packages" | "Packages.db"
            if parent == "/var/lib/rpm" || parent == "/usr/lib/sysimage/rpm" =>
        {
            Kind::Rpm
        }
        "METADATA" if parent_name.ends_with(".dist-info") && is_site_dir(grandparent_name) => Kind::Python,
        "PKG-INFO" if parent_name.ends_with(".egg-info") && is_site_dir(grandparent_name) => Kind::Python,
        _ if name.ends_with(".egg-info") && is_site_dir(parent_name) => Kind::Python,
        "package.json" if is_npm_package_dir(parent) => Kind::NpmPackage,
        "package-lock.json" if !path.contains("/node_modules/") => Kind::NpmLock,
        "Cargo.lock" => Kind::CargoLock,
        _ if name.ends_with(".jar") || name.ends_with(".war") || name.ends_with(".ear") => Kind::Java,
        _ if name.ends_with(".gemspec")
            && (parent_name == "specifications"
                || (parent_name == "default" && grandparent_name == "specifications")) =>
        {
            Kind::Gem
        }
        _ if entry.is_executable() || name.ends_with(".so") || name.contains(".so.") => Kind::MaybeBinary,
        _ => return None,
    })
}

fn is_site_dir(name: &str) -> bool {
    name == "site-packages" || name == "dist-packages"
}

/// `.../node_modules/<name>` or `.../node_modules/@scope/<name>`.
fn is_npm_package_dir(dir: &str) -> bool {
    let mut parts = dir.rsplit('/');
    let (Some(last), Some(up)) = (parts.next(), parts.next()) else {
        return false;
    };
    if last.starts_with('.') {
        return false;
    }
    up == "node_modules" || (up.starts_with('@') && parts.next() == Some("node_modules"))
}

fn collect(view: &MergedView) -> Facts {
    let mut facts = Facts::default();
    for (path, entry) in view.entries() {
        let location = Location {
            layer: view.layer_digest(entry).to_string(),
            path: path.to_string(),
        };
        if let Some(package) = path.strip_prefix("/usr/share/doc/").filter(|p| !p.contains('/')) {
            if entry.kind == EntryKind::Symlink {
                if let Ok(target) = view.read_link(path, entry) {
                    let target = target.trim_end_matches('/');
                    let other = target.rsplit('/').next().unwrap_or(target);
                    if !other.is_empty() && other != package {
                        facts.debian_docs.push(DebianDoc {
                            package: package.to_string(),
                            location,
                            kind: DebianDocKind::SameAs(other.to_string()),
                        });
                    }
                }
            }
            continue;
        }
        if entry.kind != EntryKind::File {
            continue;
        }
        if let Some(package) = path
            .strip_prefix("/usr/share/doc/")
            .and_then(|p| p.strip_suffix("/copyright"))
        {
            if !package.contains('/') {
                match view.read_entry(path, entry, METADATA_CAP) {
                    Ok(data) => {
                        if let Some(license) = licenses::parse_debian_copyright(&String::from_utf8_lossy(&data)) {
                            facts.debian_docs.push(DebianDoc {
                                package: package.to_string(),
                                location,
                                kind: DebianDocKind::Copyright(license),
                            });
                        }
                    }
                    Err(e) => facts.problems.push(Problem {
                        location,
                        message: e.to_string(),
                    }),
                }
                continue;
            }
        }
        let Some(kind) = kind_of(path, entry) else { continue };
        let file = FileRef {
            view,
            path,
            entry,
            location,
        };
        // What a database that was read could not make sense of.
        let mut warnings = Vec::new();
        let result = match kind {
            Kind::Dpkg => dpkg::parse(&file, parent_of(path) == "/var/lib/dpkg/status.d", &mut warnings),
            Kind::Apk => apk::parse(&file, &mut warnings),
            Kind::Rpm => rpm::parse(&file, &mut warnings),
            Kind::Python => python::parse(&file),
            Kind::NpmPackage => npm::parse_package_json(&file),
            Kind::NpmLock => npm::parse_lock(&file),
            Kind::CargoLock => cargo::parse_lock(&file),
            Kind::Java => java::parse(&file),
            Kind::Gem => ruby::parse(&file),
            Kind::MaybeBinary => binary(&file),
        };
        facts.problems.extend(warnings.into_iter().map(|message| Problem {
            location: file.location.clone(),
            message,
        }));
        match result {
            Ok(components) if components.is_empty() && !is_database(kind) => {}
            Ok(components) => facts.sources.push(Source {
                location: file.location,
                components,
            }),
            Err(message) => {
                // Still the topmost copy of the database: the layers below
                // do not show through it.
                if is_database(kind) {
                    facts.sources.push(Source {
                        location: file.location.clone(),
                        components: Vec::new(),
                    });
                }
                facts.problems.push(Problem {
                    location: file.location,
                    message,
                });
            }
        }
    }
    facts.os_release = os_release(view, &mut facts.problems);
    facts
}

/// Package databases are sources even when empty: an empty upper `status`
/// still supersedes a lower one.
fn is_database(kind: Kind) -> bool {
    matches!(kind, Kind::Dpkg | Kind::Apk | Kind::Rpm)
}

fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

/// Go and Rust (cargo-auditable) build information in an ELF file; any
/// other file is dropped after reading its first four bytes.
fn binary(file: &FileRef) -> std::result::Result<Vec<Component>, String> {
    if file.entry.size < 64 || file.entry.size > BINARY_CAP {
        return Ok(Vec::new());
    }
    let handle = file.view.open_entry(file.path, file.entry).map_err(|e| e.to_string())?;
    let Some(elf) = elf::Elf::parse(&handle) else {
        return Ok(Vec::new());
    };
    let mut components = golang::parse(&elf, &file.location)?;
    components.extend(cargo::parse_auditable(&elf, &file.location)?);
    Ok(components)
}

fn os_release(view: &MergedView, problems: &mut Vec<Problem>) -> Option<OsRelease> {
    for path in ["/etc/os-release", "/usr/lib/os-release"] {
        let Ok((resolved, entry)) = view.resolve(path) else {
            continue;
        };
        let location = Location {
            layer: view.layer_digest(entry).to_string(),
            path: resolved.clone(),
        };
        match view.read_entry(&resolved, entry, METADATA_CAP) {
            Ok(data) => {
                let text = String::from_utf8_lossy(&data);
                let field = |key: &str| {
                    text.lines().find_map(|l| {
                        let value = l.trim().strip_prefix(key)?.strip_prefix('=')?;
                        Some(value.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
                    })
                };
                if let Some(id) = field("ID").filter(|id| !id.is_empty()) {
                    return Some(OsRelease {
                        id,
                        version_id: field("VERSION_ID").filter(|v| !v.is_empty()),
                        location,
                    });
                }
            }
            Err(e) => problems.push(Problem {
                location,
                message: e.to_string(),
            }),
        }
    }
    None
}

/// A component with what every parser fills in; licenses and class are
/// settled in [`finish`].
pub(crate) fn component(
    ecosystem: Ecosystem,
    name: &str,
    version: &str,
    purl: String,
    location: &Location,
) -> Component {
    Component {
        name: name.to_string(),
        version: version.to_string(),
        ecosystem,
        purl,
        arch: None,
        source: None,
        license: None,
        license_declared: None,
        license_class: LicenseClass::Unknown,
        locations: vec![location.clone()],
    }
}

/// Sets the declared license and its normalized form.
pub(crate) fn set_license(component: &mut Component, declared: Option<&str>) {
    if let Some(declared) = declared.map(str::trim).filter(|d| !d.is_empty()) {
        component.license_declared = Some(declared.to_string());
        component.license = licenses::normalize(declared);
    }
}

/// Settles distro-dependent package URLs and Debian licenses, classifies
/// licenses and folds duplicates together.
fn finish(facts: Facts) -> Inventory {
    let docs: HashMap<&str, &DebianDocKind> = facts
        .debian_docs
        .iter()
        .map(|d| (d.package.as_str(), &d.kind))
        .collect();
    let debian_license = |package: &str| -> Option<&licenses::DebianLicense> {
        let mut current = package;
        for _ in 0..8 {
            match docs.get(current)? {
                DebianDocKind::Copyright(license) => return Some(license),
                DebianDocKind::SameAs(other) => current = other,
            }
        }
        None
    };
    let os = facts.os_release.as_ref();
    let mut by_purl: BTreeMap<(Ecosystem, String), Component> = BTreeMap::new();
    for source in facts.sources {
        for mut c in source.components {
            match c.ecosystem {
                Ecosystem::Debian => {
                    c.purl = dpkg::purl(&c, os);
                    if c.license.is_none() {
                        if let Some(license) = debian_license(&c.name) {
                            c.license = license.expression.clone();
                            c.license_declared = Some(license.declared.clone());
                        }
                    }
                }
                Ecosystem::Alpine => c.purl = apk::purl(&c, os),
                Ecosystem::Rpm => c.purl = rpm::purl(&c, os),
                _ => {}
            }
            c.license_class = c.license.as_deref().map_or(LicenseClass::Unknown, licenses::classify);
            match by_purl.get_mut(&(c.ecosystem, c.purl.clone())) {
                Some(existing) => {
                    for location in c.locations {
                        if !existing.locations.contains(&location) {
                            existing.locations.push(location);
                        }
                    }
                    if existing.license.is_none() && c.license.is_some() {
                        existing.license = c.license;
                        existing.license_declared = c.license_declared;
                        existing.license_class = c.license_class;
                    }
                }
                None => {
                    by_purl.insert((c.ecosystem, c.purl.clone()), c);
                }
            }
        }
    }
    let mut components: Vec<Component> = by_purl.into_values().collect();
    for c in &mut components {
        c.locations.sort();
    }
    components.sort_by(|a, b| (a.ecosystem, &a.name, &a.version).cmp(&(b.ecosystem, &b.name, &b.version)));
    Inventory {
        components,
        os_release: facts.os_release,
        problems: facts.problems,
    }
}

/// `Key: value` headers with continuation lines (dpkg, METADATA, MANIFEST.MF):
/// every paragraph as (key, value) pairs, keys as written; continuation
/// lines are joined with `\n`.
pub(crate) fn paragraphs(text: &str) -> Vec<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut current: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = current.last_mut() {
                value.push('\n');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            current.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The first value of `key` (ASCII case-insensitive) in a paragraph.
pub(crate) fn field<'a>(paragraph: &'a [(String, String)], key: &str) -> Option<&'a str> {
    paragraph
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}
