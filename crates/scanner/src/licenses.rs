//! Licenses: from what packages declare to SPDX expressions, classes and a
//! deny policy.
//!
//! [`normalize`] turns a declared license (an SPDX expression, a Debian
//! DEP-5 short name expression, a PyPI classifier, "Apache 2.0", "GPLv2+",
//! ...) into a valid SPDX expression; names that match no SPDX id but look
//! like one become `LicenseRef-<name>` so the expression stays valid and its
//! class is [`LicenseClass::Unknown`]. Prose that is not a license name gives
//! `None`. Plain "BSD" is read as `BSD-3-Clause` (what "BSD License" means
//! for most packages that say only that), unversioned "GPL" as
//! `GPL-1.0-or-later` ("any version", as the GPL itself says), unversioned
//! "LGPL" as `LGPL-2.0-or-later`, and "public domain" as
//! `LicenseRef-public-domain`.
//!
//! [`classify`]: an expression's class is the most permissive alternative of
//! an OR (an unknown alternative counts only when all are unknown) and the
//! strictest part of an AND, where strictness runs permissive < weak
//! copyleft < unknown < strong copyleft (a strong copyleft part binds
//! whatever an unknown part says; an unknown part keeps the whole from
//! being called permissive or weak).
//! A GNU license `WITH` an exception (Classpath, GCC runtime, linking, ...)
//! is weak copyleft.
//!
//! [`check_policy`]: a deny entry is an SPDX id or a class name
//! (`permissive`, `weak-copyleft`, `strong-copyleft`, `unknown`). A component
//! violates the policy when no alternative of its expression avoids every
//! denied entry. GNU `-or-later` licenses stand for every published later
//! version too, so denying `GPL-3.0-only` (or the deprecated `GPL-3.0`)
//! catches `GPL-3.0-or-later` (whose only choices are GPL 3) but not
//! `GPL-2.0-or-later` (which can still be taken as GPL 2); denying
//! `GPL-2.0-or-later` denies GPL 2 and every later GPL. An exception does not
//! lift a denied id. A component without a license violates only a policy
//! that denies `unknown`.

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::types::{Component, Ecosystem, LicenseClass};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("license policy entry {entry:?} is neither an SPDX license id nor a class (permissive, weak-copyleft, strong-copyleft, unknown)")]
    UnknownDenyEntry { entry: String },
}

/// A component whose license the policy denies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub name: String,
    pub version: String,
    pub ecosystem: Ecosystem,
    pub purl: String,
    /// The component's normalized license, `None` when unknown.
    pub license: Option<String>,
    /// The deny entries that left no acceptable alternative.
    pub denied: Vec<String>,
}

/// A license expression in the making: leaves joined by AND/OR.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Leaf { license: String, exception: Option<String> },
    And(Vec<Node>),
    Or(Vec<Node>),
}

impl Node {
    fn join(op_and: bool, parts: Vec<Node>) -> Node {
        let mut flat: Vec<Node> = Vec::new();
        for part in parts {
            match (op_and, part) {
                (true, Node::And(inner)) | (false, Node::Or(inner)) => {
                    for node in inner {
                        if !flat.contains(&node) {
                            flat.push(node);
                        }
                    }
                }
                (_, node) => {
                    if !flat.contains(&node) {
                        flat.push(node);
                    }
                }
            }
        }
        if flat.len() == 1 {
            return flat.remove(0);
        }
        if op_and {
            Node::And(flat)
        } else {
            Node::Or(flat)
        }
    }

    fn render(&self) -> String {
        match self {
            Node::Leaf {
                license,
                exception: Some(e),
            } => format!("{license} WITH {e}"),
            Node::Leaf {
                license,
                exception: None,
            } => license.clone(),
            Node::Or(parts) => parts.iter().map(Node::render).collect::<Vec<_>>().join(" OR "),
            Node::And(parts) => parts
                .iter()
                .map(|p| match p {
                    Node::Or(_) => format!("({})", p.render()),
                    _ => p.render(),
                })
                .collect::<Vec<_>>()
                .join(" AND "),
        }
    }
}

/// Normalizes a declared license to an SPDX expression; `None` when it
/// names no license (empty, "UNKNOWN", prose).
pub fn normalize(declared: &str) -> Option<String> {
    let node = parse_loose(declared)?;
    let rendered = node.render();
    // The rendering only uses SPDX ids, known exceptions and LicenseRefs, so
    // this holds; checking keeps a bad table entry from leaking out.
    spdx::Expression::parse_mode(&rendered, validate_mode()).ok()?;
    Some(rendered)
}

/// Combines several declared licenses that are alternatives (a gemspec's
/// `licenses`, several PyPI license classifiers, npm's legacy `licenses`).
pub fn normalize_any_of<S: AsRef<str>>(declared: &[S]) -> Option<String> {
    let parts: Vec<Node> = declared.iter().filter_map(|d| parse_loose(d.as_ref())).collect();
    if parts.is_empty() {
        return None;
    }
    Some(Node::join(false, parts).render())
}

/// The license named by PyPI `License ::` classifiers, `None` when there are
/// none or they name no license (e.g. `License :: OSI Approved`).
pub fn from_pypi_classifiers<S: AsRef<str>>(classifiers: &[S]) -> Option<String> {
    let names: Vec<&str> = classifiers
        .iter()
        .map(|c| c.as_ref().trim())
        .filter(|c| c.starts_with("License ::"))
        .filter_map(|c| c.rsplit("::").next().map(str::trim))
        .filter(|last| {
            !matches!(
                *last,
                "OSI Approved" | "Other/Proprietary License" | "Freely Distributable"
            )
        })
        .collect();
    let parts: Vec<Node> = names.iter().filter_map(|n| map_term(n).map(leaf)).collect();
    if parts.is_empty() {
        return None;
    }
    Some(Node::join(false, parts).render())
}

fn validate_mode() -> spdx::ParseMode {
    spdx::ParseMode {
        allow_deprecated: true,
        ..spdx::ParseMode::STRICT
    }
}

fn leaf(license: String) -> Node {
    Node::Leaf {
        license,
        exception: None,
    }
}

/// Parses a loosely written expression: SPDX syntax, DEP-5 syntax (`or`,
/// `and`, `, and`, `with X exception`), `/` or `|` for OR, `&` for AND.
fn parse_loose(text: &str) -> Option<Node> {
    let text = text.trim().trim_matches(|c| c == '"' || c == '\'').trim();
    if text.is_empty() || text.len() > 300 || text.contains('\n') {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "unknown" | "noassertion" | "none" | "n/a" | "other" | "see license" | "license.txt"
    ) || lower.starts_with("see ")
        || lower.starts_with("copyright")
    {
        return None;
    }
    if let Some(id) = alias(&squash(text)) {
        return Some(leaf(id.to_string()));
    }
    let text = rewrite_or_later(&text.replace("_or_", " or ").replace("_and_", " and "));
    parse_or(&text, 0)
}

/// `GPLv2 or later`, `GPL-2 or any later version` → `GPLv2+`, so the `or`
/// inside them is not read as an operator.
fn rewrite_or_later(text: &str) -> String {
    let mut out = text.to_string();
    for phrase in [
        " or (at your option) any later version",
        " or any later version",
        " or later version",
        " or newer",
        " or later",
        "-or-later",
    ] {
        while let Some(i) = out.to_ascii_lowercase().find(phrase) {
            out.replace_range(i..i + phrase.len(), "+");
        }
    }
    out
}

/// Splits `text` at the top-level (outside parentheses) occurrences of any
/// of `separators` (matched case-insensitively).
fn split_top<'a>(text: &'a str, separators: &[&str]) -> Vec<&'a str> {
    let lower = text.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'(' => depth += 1,
            b')' => depth -= 1,
            _ if depth == 0 => {
                // Bytes, not `str`: `i` may be inside a multi-byte character;
                // a match of an ASCII separator is always at a boundary.
                if let Some(sep) = separators.iter().find(|s| bytes[i..].starts_with(s.as_bytes())) {
                    parts.push(&text[start..i]);
                    i += sep.len();
                    start = i;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(&text[start..]);
    parts
}

/// Lowest precedence: DEP-5's `, and` / `, or`, then OR, then AND.
fn parse_or(text: &str, depth: usize) -> Option<Node> {
    if depth > 8 {
        return None;
    }
    let groups = split_top(text, &[", and ", ", or ", "; "]);
    if groups.len() > 1 {
        // DEP-5: a comma ends everything before it; the operator after it
        // joins. Mixed comma operators are rare; AND is the safe reading.
        let lower = text.to_ascii_lowercase();
        let and = lower.contains(", and ") || lower.contains("; ");
        let parts: Option<Vec<Node>> = groups.iter().map(|g| parse_or(g, depth + 1)).collect();
        return Some(Node::join(and, parts?));
    }
    let alternatives = split_top(text, &[" or ", " and/or ", " | ", " || ", "/"]);
    let parts: Option<Vec<Node>> = alternatives.iter().map(|a| parse_and(a, depth)).collect();
    Some(Node::join(false, parts?))
}

fn parse_and(text: &str, depth: usize) -> Option<Node> {
    let parts = split_top(text, &[" and ", " & ", " && ", ", "]);
    let nodes: Option<Vec<Node>> = parts.iter().map(|p| parse_term(p, depth)).collect();
    Some(Node::join(true, nodes?))
}

fn parse_term(text: &str, depth: usize) -> Option<Node> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if text.starts_with('(') && text.ends_with(')') && balanced(&text[1..text.len() - 1]) {
        return parse_or(&text[1..text.len() - 1], depth + 1);
    }
    let (name, exception) = match split_top(text, &[" with "]).as_slice() {
        [name, exception] => (name.trim(), Some(exception.trim())),
        _ => (text, None),
    };
    let license = map_term(name)?;
    let exception = exception.and_then(|e| map_exception(e, &license));
    Some(Node::Leaf { license, exception })
}

fn balanced(text: &str) -> bool {
    let mut depth = 0i32;
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return false;
        }
    }
    depth == 0
}

/// Lower case, `_` as `-`, whitespace collapsed.
fn squash(text: &str) -> String {
    text.trim()
        .to_ascii_lowercase()
        .replace('_', "-")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// One license name → an SPDX id (or `LicenseRef-...`).
fn map_term(name: &str) -> Option<String> {
    let name = name
        .trim()
        .trim_matches(|c| c == '"' || c == '\'' || c == ',' || c == ';')
        .trim();
    if name.is_empty() {
        return None;
    }
    if let Some(rest) = name.strip_prefix("LicenseRef-") {
        return Some(format!("LicenseRef-{}", sanitize_ref(rest)));
    }
    // "GNU General Public License v2 (GPLv2)": the name before the
    // parenthesis, or failing that the abbreviation inside it.
    if let (Some(open), true) = (name.find('('), name.ends_with(')')) {
        if open > 0 {
            let before = name[..open].trim();
            let inside = &name[open + 1..name.len() - 1];
            return map_known(before)
                .or_else(|| map_known(inside))
                .or_else(|| license_ref(before));
        }
    }
    map_known(name).or_else(|| license_ref(name))
}

/// A `LicenseRef-` for a name that looks like an identifier, not prose.
fn license_ref(name: &str) -> Option<String> {
    let ok = name.len() <= 64
        && name.split_whitespace().count() <= 4
        && name.chars().all(|c| c.is_ascii_alphanumeric() || " .+-_".contains(c));
    ok.then(|| format!("LicenseRef-{}", sanitize_ref(name)))
}

fn sanitize_ref(name: &str) -> String {
    let mapped: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = mapped.trim_matches('-');
    if trimmed.is_empty() {
        "unknown".to_string()
    } else {
        trimmed.to_string()
    }
}

fn map_known(name: &str) -> Option<String> {
    let key = squash(name);
    if key.is_empty() {
        return None;
    }
    if let Some(id) = alias(&key) {
        return Some(id.to_string());
    }
    if let Some(id) = gnu_family(&key) {
        return Some(id);
    }
    let (base, plus) = match key.strip_suffix('+') {
        Some(base) => (base, true),
        None => (key.as_str(), false),
    };
    if let Some(id) = alias(base) {
        return Some(if plus { format!("{id}+") } else { id.to_string() });
    }
    let id = spdx_ids_lower().get(base)?;
    Some(if plus { format!("{id}+") } else { (*id).to_string() })
}

/// SPDX license ids by their lower-case spelling.
fn spdx_ids_lower() -> &'static HashMap<String, &'static str> {
    static IDS: OnceLock<HashMap<String, &'static str>> = OnceLock::new();
    IDS.get_or_init(|| {
        spdx::identifiers::LICENSES
            .iter()
            .map(|l| (l.name.to_ascii_lowercase(), l.name))
            .collect()
    })
}

/// Names that are not SPDX ids but mean one: Debian DEP-5 short names and
/// what language package metadata commonly says. Keys are [`squash`]ed.
fn alias(key: &str) -> Option<&'static str> {
    Some(match key {
        "expat" | "mit" | "mit license" | "the mit license" | "mit/x11" | "mit-x11" | "mit license (mit)"
        | "mit/expat" => "MIT",
        "x11" | "x11 license" => "X11",
        "isc" | "isc license" | "iscl" | "isc license (iscl)" => "ISC",
        "zlib" | "zlib license" | "zlib/libpng" | "zlib/libpng license" => "Zlib",
        "apache"
        | "apache 2"
        | "apache-2"
        | "apache 2.0"
        | "apache-2.0"
        | "apache2"
        | "apache2.0"
        | "asl 2.0"
        | "asl2.0"
        | "asl-2.0"
        | "apache license 2.0"
        | "apache license, version 2.0"
        | "apache license version 2.0"
        | "apache software license"
        | "apache software license 2.0"
        | "the apache software license, version 2.0"
        | "the apache license, version 2.0"
        | "apache license"
        | "apache-2.0 license"
        | "apache 2.0 license" => "Apache-2.0",
        "apache-1.1" | "apache 1.1" | "apache software license 1.1" => "Apache-1.1",
        "bsd"
        | "bsd license"
        | "new bsd"
        | "new bsd license"
        | "modified bsd"
        | "modified bsd license"
        | "revised bsd"
        | "bsd-3"
        | "bsd3"
        | "3-clause bsd"
        | "bsd 3-clause"
        | "bsd 3-clause license"
        | "3-clause bsd license"
        | "bsd-3-clause license" => "BSD-3-Clause",
        "bsd-2"
        | "bsd2"
        | "simplified bsd"
        | "simplified bsd license"
        | "freebsd"
        | "2-clause bsd"
        | "bsd 2-clause"
        | "bsd 2-clause license"
        | "2-clause bsd license" => "BSD-2-Clause",
        "bsd-4" | "original bsd" | "4-clause bsd" | "bsd 4-clause" => "BSD-4-Clause",
        "artistic" | "perl artistic" | "artistic license" | "artistic-1" | "artistic-1.0-perl" => "Artistic-1.0-Perl",
        "artistic-2" | "artistic 2.0" | "artistic license 2.0" | "artistic-2.0" => "Artistic-2.0",
        "public-domain" | "public domain" | "publicdomain" | "pd" | "pd-debian" | "public domain dedication" => {
            "LicenseRef-public-domain"
        }
        "psf"
        | "psf-2"
        | "psf-2.0"
        | "psfl"
        | "psf license"
        | "python software foundation license"
        | "python software foundation" => "PSF-2.0",
        "python" | "python-2" | "python license" => "Python-2.0",
        "mpl"
        | "mpl2"
        | "mpl-2"
        | "mpl 2.0"
        | "mozilla public license 2.0"
        | "mozilla public license 2.0 (mpl 2.0)" => "MPL-2.0",
        "mpl-1.1" | "mpl 1.1" | "mozilla public license 1.1" | "mozilla public license 1.1 (mpl 1.1)" => "MPL-1.1",
        "mpl-1.0" | "mozilla public license 1.0" | "mozilla public license 1.0 (mpl)" => "MPL-1.0",
        "epl"
        | "epl-1"
        | "eclipse public license"
        | "eclipse public license 1.0"
        | "eclipse public license - v 1.0" => "EPL-1.0",
        "epl-2" | "eclipse public license 2.0" | "eclipse public license - v 2.0" => "EPL-2.0",
        "cddl" | "cddl-1" | "cddl 1.0" | "common development and distribution license 1.0" => "CDDL-1.0",
        "cddl 1.1" | "cddl+gpl license" => "CDDL-1.1",
        "cc0"
        | "cc0 1.0"
        | "cc0 license"
        | "cc0 1.0 universal"
        | "cc0 1.0 universal (cc0 1.0) public domain dedication" => "CC0-1.0",
        "unlicense" | "the unlicense" | "the unlicense (unlicense)" => "Unlicense",
        "wtfpl" => "WTFPL",
        "boost"
        | "bsl-1"
        | "boost software license"
        | "boost software license 1.0"
        | "boost software license 1.0 (bsl-1.0)" => "BSL-1.0",
        "zope public license" | "zpl" => "ZPL-2.1",
        "historical permission notice and disclaimer" | "historical permission notice and disclaimer (hpnd)" => "HPND",
        "academic free license" | "academic free license (afl)" => "AFL-3.0",
        "ruby" | "ruby license" => "Ruby",
        "openssl" | "openssl license" => "OpenSSL",
        "sleepycat" => "Sleepycat",
        "unicode" => "Unicode-DFS-2016",
        "beerware" => "Beerware",
        "ms-pl" | "microsoft public license" => "MS-PL",
        "eupl" | "eupl-1.2" | "european union public licence 1.2" => "EUPL-1.2",
        _ => return None,
    })
}

/// GNU licenses in the many ways they are written: `GPL-2+`, `GPLv3`,
/// `gpl2`, `GPL-2.0-only`, `LGPL-2.1+`, `GNU General Public License v2`,
/// `GNU Lesser General Public License v3 or later`, `GFDL-NIV-1.3+`, ...
fn gnu_family(key: &str) -> Option<String> {
    let key = key.strip_prefix("the ").unwrap_or(key);
    let key = key.strip_prefix("gnu ").unwrap_or(key);
    let families: [(&str, &[&str]); 4] = [
        ("AGPL", &["agpl", "affero general public license", "affero gpl"]),
        (
            "LGPL",
            &[
                "lgpl",
                "lesser general public license",
                "library general public license",
                "library or lesser general public license",
                "lesser gpl",
                "library gpl",
            ],
        ),
        ("GFDL", &["gfdl", "fdl", "free documentation license"]),
        ("GPL", &["gpl", "general public license"]),
    ];
    let (family, rest) = families.iter().find_map(|(family, prefixes)| {
        prefixes
            .iter()
            .find_map(|p| key.strip_prefix(p).map(|rest| (*family, rest)))
    })?;
    let mut rest = rest.trim().to_string();
    // Whatever follows must be version words only, or this is prose.
    for word in ["license", "licence", "version", "(", ")"] {
        rest = rest.replace(word, " ");
    }
    let or_later =
        rest.contains('+') || rest.contains("or later") || rest.contains("or-later") || rest.contains("later");
    let no_invariants = rest.contains("niv") || rest.contains("no-invariants") || rest.contains("no invariant");
    let version: String = {
        let start = rest.find(|c: char| c.is_ascii_digit());
        match start {
            Some(s) => rest[s..]
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect(),
            None => String::new(),
        }
    };
    let version = version.trim_end_matches('.');
    let without_version = if version.is_empty() {
        rest.clone()
    } else {
        rest.replace(version, " ")
    };
    let leftover: String = without_version
        .replace("or-later", " ")
        .replace("or later", " ")
        .replace("-only", " ")
        .replace("only", " ")
        .replace("no-invariants", " ")
        .replace("no invariants", " ")
        .replace("no invariant", " ")
        .replace("niv", " ")
        .replace("later", " ")
        .chars()
        .filter(|c| !" +-v,.".contains(*c))
        .collect();
    // Allow a trailing abbreviation like "gplv2" or "lgpl" in the leftovers.
    let leftover = leftover.replace("agpl", "").replace("lgpl", "").replace("gpl", "");
    if !leftover.is_empty() {
        return None;
    }
    let version = match (family, version) {
        ("GPL", "") => {
            return Some("GPL-1.0-or-later".to_string());
        }
        ("LGPL", "") => return Some("LGPL-2.0-or-later".to_string()),
        ("AGPL", "") => return Some("AGPL-3.0-or-later".to_string()),
        ("GFDL", "") => return Some("GFDL-1.1-or-later".to_string()),
        (_, "1") | (_, "1.0") => "1.0",
        (_, "2") | (_, "2.0") => "2.0",
        ("LGPL", "2.1") => "2.1",
        (_, "3") | (_, "3.0") => "3.0",
        ("GFDL", "1.1") => "1.1",
        ("GFDL", "1.2") => "1.2",
        ("GFDL", "1.3") => "1.3",
        _ => return None,
    };
    let version = if family == "GFDL" && version == "1.0" {
        "1.1"
    } else {
        version
    };
    let invariants = if family == "GFDL" && no_invariants {
        "-no-invariants"
    } else {
        ""
    };
    let suffix = if or_later { "-or-later" } else { "-only" };
    let id = format!("{family}-{version}{invariants}{suffix}");
    spdx::license_id(&id).map(|_| id)
}

/// A `with ... exception` clause → an SPDX exception id, `None` when SPDX
/// has none for it (the clause is then dropped from the expression).
fn map_exception(text: &str, license: &str) -> Option<String> {
    let key = squash(text);
    let key = key.trim_end_matches(" exception").trim_end_matches("-exception").trim();
    let gpl3 = license.contains("-3.0");
    let id = match key {
        "autoconf" | "autoconf-data" => {
            if gpl3 {
                "Autoconf-exception-3.0"
            } else {
                "Autoconf-exception-2.0"
            }
        }
        "bison" | "bison-2.2" => "Bison-exception-2.2",
        "gcc" | "gcc runtime library" | "gcc-3.1" | "runtime library" => {
            if gpl3 {
                "GCC-exception-3.1"
            } else {
                "GCC-exception-2.0"
            }
        }
        "classpath" | "classpath-2.0" => "Classpath-exception-2.0",
        "linux-syscall-note" | "linux syscall note" => "Linux-syscall-note",
        "llvm" => "LLVM-exception",
        "libtool" => "Libtool-exception",
        "texinfo" => "Texinfo-exception",
        "font" | "font-2.0" => "Font-exception-2.0",
        "openssl" => return None,
        other => {
            return spdx::identifiers::EXCEPTIONS
                .iter()
                .find(|e| {
                    e.name.eq_ignore_ascii_case(other) || e.name.eq_ignore_ascii_case(&format!("{other}-exception"))
                })
                .map(|e| e.name.to_string());
        }
    };
    spdx::exception_id(id).map(|_| id.to_string())
}

/// What a Debian `copyright` file says about licenses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebianLicense {
    /// The SPDX expression, `None` when nothing could be mapped.
    pub expression: Option<String>,
    /// The license names as the file wrote them (DEP-5 `License:` values
    /// joined with `and`, or the `common-licenses` files a free-form file
    /// points to).
    pub declared: String,
}

/// Reads a Debian `copyright` file: in DEP-5 machine-readable form the
/// `License:` of every `Files` paragraph, combined with AND; otherwise the
/// `/usr/share/common-licenses/<name>` files it refers to (a GNU one counted
/// as "or later" when the text grants "any later version").
pub fn parse_debian_copyright(text: &str) -> Option<DebianLicense> {
    let machine_readable = text.lines().take(5).any(|l| {
        let lower = l.to_ascii_lowercase();
        lower.starts_with("format:")
            && (lower.contains("copyright-format") || lower.contains("dep5") || lower.contains("dep-5"))
    });
    if machine_readable {
        parse_dep5(text)
    } else {
        parse_free_form_copyright(text)
    }
}

fn parse_dep5(text: &str) -> Option<DebianLicense> {
    let mut values: Vec<String> = Vec::new();
    let mut in_files = false;
    let mut license: Option<String> = None;
    let flush = |in_files: bool, license: &mut Option<String>, values: &mut Vec<String>| {
        if let (true, Some(value)) = (in_files, license.take()) {
            if !value.is_empty() && !values.contains(&value) {
                values.push(value);
            }
        }
        *license = None;
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(in_files, &mut license, &mut values);
            in_files = false;
            continue;
        }
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((field, value)) = line.split_once(':') else {
            continue;
        };
        match field.trim().to_ascii_lowercase().as_str() {
            "files" => in_files = true,
            "license" => license = Some(value.trim().to_string()),
            _ => {}
        }
    }
    flush(in_files, &mut license, &mut values);
    if values.is_empty() {
        return None;
    }
    let nodes: Vec<Node> = values.iter().filter_map(|v| parse_loose(v)).collect();
    let expression = (!nodes.is_empty()).then(|| Node::join(true, nodes).render());
    let declared = values
        .iter()
        .map(|v| {
            if v.contains(" or ") || v.contains(" and ") {
                format!("({v})")
            } else {
                v.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" and ");
    Some(DebianLicense { expression, declared })
}

fn parse_free_form_copyright(text: &str) -> Option<DebianLicense> {
    const MARKER: &str = "/usr/share/common-licenses/";
    let normalized = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase();
    let later = normalized.contains("any later version");
    let mut names: BTreeSet<String> = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find(MARKER) {
        rest = &rest[i + MARKER.len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || "+-.".contains(*c))
            .collect();
        let name = name.trim_end_matches('.');
        if !name.is_empty() {
            names.insert(name.to_string());
        }
    }
    if names.is_empty() {
        return None;
    }
    let written: Vec<String> = names
        .iter()
        .map(|n| {
            let gnu = n.starts_with("GPL") || n.starts_with("LGPL");
            if gnu && later && !n.ends_with('+') {
                format!("{n}+")
            } else {
                n.clone()
            }
        })
        .collect();
    let nodes: Vec<Node> = written.iter().filter_map(|n| parse_loose(n)).collect();
    let expression = (!nodes.is_empty()).then(|| Node::join(true, nodes).render());
    Some(DebianLicense {
        expression,
        declared: written.join(" and "),
    })
}

/// The class of one license id (without exception).
fn class_of_id(id: &str) -> LicenseClass {
    const STRONG: &[&str] = &[
        "GPL-",
        "AGPL-",
        "SSPL-",
        "OSL-",
        "RPL-",
        "QPL-",
        "EUPL-",
        "Sleepycat",
        "CC-BY-SA-",
        "CC-BY-NC-SA-",
        "GFDL-",
        "CECILL-1",
        "CECILL-2",
        "Parity-",
        "RPSL-",
        "CPAL-",
        "BSD-Protection",
    ];
    const WEAK: &[&str] = &[
        "LGPL-", "MPL-", "EPL-", "CDDL-", "CPL-", "IPL-", "APSL-", "MS-RL", "MS-PL", "NPL-", "SPL-", "ErlPL-",
        "CECILL-C", "OCCT-PL", "Motosoto", "SISSL", "YPL-", "xinetd", "LGPLLR", "Nokia", "eCos-",
    ];
    const PERMISSIVE: &[&str] = &[
        "MIT",
        "BSD-",
        "0BSD",
        "X11",
        "ISC",
        "Zlib",
        "Apache-",
        "HPND",
        "curl",
        "libpng",
        "FSFUL",
        "FSFAP",
        "Latex2e",
        "Beerware",
        "CC0-",
        "Unlicense",
        "WTFPL",
        "PSF-",
        "Python-",
        "Unicode-",
        "BSL-1.0",
        "PostgreSQL",
        "NTP",
        "TCL",
        "Spencer-",
        "bzip2-",
        "SGI-B-",
        "OpenSSL",
        "SSLeay",
        "Info-ZIP",
        "MirOS",
        "Artistic-",
        "ICU",
        "Ruby",
        "ZPL-",
        "AFL-",
        "LicenseRef-public-domain",
        "blessing",
        "Vim",
        "W3C",
        "PHP-",
    ];
    if id.starts_with("LGPL-") || WEAK.iter().any(|p| id.starts_with(p)) {
        return LicenseClass::WeakCopyleft;
    }
    if STRONG.iter().any(|p| id.starts_with(p)) {
        return LicenseClass::StrongCopyleft;
    }
    if PERMISSIVE.iter().any(|p| id.starts_with(p)) {
        return LicenseClass::Permissive;
    }
    match spdx::license_id(id) {
        Some(lic) if lic.is_copyleft() => LicenseClass::StrongCopyleft,
        Some(lic) if lic.is_osi_approved() || lic.is_fsf_free_libre() => LicenseClass::Permissive,
        _ => LicenseClass::Unknown,
    }
}

fn class_of_req(req: &spdx::LicenseReq) -> LicenseClass {
    let name = match &req.license {
        spdx::LicenseItem::Spdx { id, .. } => id.name.to_string(),
        spdx::LicenseItem::Other(r) => format!("LicenseRef-{}", r.lic_ref),
    };
    let class = class_of_id(&name);
    if req.addition.is_some() && class == LicenseClass::StrongCopyleft {
        LicenseClass::WeakCopyleft
    } else {
        class
    }
}

/// Strictness within an AND: a strong copyleft part binds the whole
/// whatever the unknown parts say; an unknown part keeps the rest from
/// counting as weak or permissive.
fn and_rank(class: LicenseClass) -> u8 {
    match class {
        LicenseClass::Permissive => 0,
        LicenseClass::WeakCopyleft => 1,
        LicenseClass::Unknown => 2,
        LicenseClass::StrongCopyleft => 3,
    }
}

/// The class of an SPDX expression (see the module docs for the rule).
pub fn classify(expression: &str) -> LicenseClass {
    let mode = spdx::ParseMode {
        allow_unknown: false,
        ..spdx::ParseMode::LAX
    };
    let Ok(parsed) = spdx::Expression::parse_mode(expression, mode) else {
        return normalize(expression)
            .filter(|n| n != expression)
            .map(|n| classify(&n))
            .unwrap_or(LicenseClass::Unknown);
    };
    let mut stack: Vec<LicenseClass> = Vec::new();
    for node in parsed.iter() {
        match node {
            spdx::expression::ExprNode::Req(req) => stack.push(class_of_req(&req.req)),
            spdx::expression::ExprNode::Op(op) => {
                let (Some(b), Some(a)) = (stack.pop(), stack.pop()) else {
                    return LicenseClass::Unknown;
                };
                stack.push(match op {
                    spdx::expression::Operator::And => std::cmp::max_by_key(a, b, |c| and_rank(*c)),
                    spdx::expression::Operator::Or => a.min(b),
                });
            }
        }
    }
    stack.pop().unwrap_or(LicenseClass::Unknown)
}

/// Checks that every deny entry is an SPDX id (or a name [`normalize`] maps
/// to one) or a class name.
pub fn validate_deny(deny: &[String]) -> Result<(), Error> {
    for entry in deny {
        if parse_class(entry).is_none() && deny_concrete(entry).is_none() {
            return Err(Error::UnknownDenyEntry { entry: entry.clone() });
        }
    }
    Ok(())
}

fn parse_class(entry: &str) -> Option<LicenseClass> {
    match entry.trim().to_ascii_lowercase().as_str() {
        "permissive" => Some(LicenseClass::Permissive),
        "weak-copyleft" => Some(LicenseClass::WeakCopyleft),
        "strong-copyleft" => Some(LicenseClass::StrongCopyleft),
        "unknown" => Some(LicenseClass::Unknown),
        _ => None,
    }
}

/// GNU versions that exist, per family, oldest first.
fn gnu_versions(family: &str) -> &'static [&'static str] {
    match family {
        "GPL" => &["1.0", "2.0", "3.0"],
        "LGPL" => &["2.0", "2.1", "3.0"],
        "AGPL" => &["1.0", "3.0"],
        "GFDL" => &["1.1", "1.2", "1.3"],
        _ => &[],
    }
}

/// Splits a GNU id into (family, version, variant infix, or_later).
fn gnu_parts(id: &str) -> Option<(&str, &str, &str, bool)> {
    let (family, rest) = ["AGPL-", "LGPL-", "GFDL-", "GPL-"]
        .iter()
        .find_map(|f| id.strip_prefix(f).map(|r| (&f[..f.len() - 1], r)))?;
    let (rest, or_later) = if let Some(r) = rest.strip_suffix("-or-later") {
        (r, true)
    } else if let Some(r) = rest.strip_suffix("-only") {
        (r, false)
    } else if let Some(r) = rest.strip_suffix('+') {
        (r, true)
    } else {
        (rest, false)
    };
    let (version, variant) = rest.split_once('-').map_or((rest, ""), |(v, var)| (v, var));
    Some((family, version, variant, or_later))
}

/// The concrete licenses a deny entry or a requirement stands for: for GNU
/// licenses `FAMILY-VERSION[-variant]` for each version it covers, else the id.
fn concrete(id: &str, or_later: bool) -> Vec<String> {
    match gnu_parts(id) {
        Some((family, version, variant, later)) => {
            let later = later || or_later;
            let variant = if variant.is_empty() {
                String::new()
            } else {
                format!("-{variant}")
            };
            gnu_versions(family)
                .iter()
                .filter(|v| if later { **v >= version } else { **v == version })
                .map(|v| format!("{family}-{v}{variant}"))
                .collect()
        }
        None => vec![id.to_string()],
    }
}

fn deny_concrete(entry: &str) -> Option<Vec<String>> {
    let entry = entry.trim();
    let id = if spdx::license_id(entry).is_some() || entry.starts_with("LicenseRef-") {
        entry.to_string()
    } else {
        let n = normalize(entry)?;
        if n.contains(' ') {
            return None;
        }
        n
    };
    Some(concrete(&id, false))
}

/// Lists the components whose license the deny list rules out (see the
/// module docs for the matching rules). Unrecognized deny entries match
/// `LicenseRef-<entry>` only; use [`validate_deny`] to reject them up front.
pub fn check_policy(components: &[Component], deny: &[String]) -> Vec<Violation> {
    let classes: Vec<(String, LicenseClass)> = deny
        .iter()
        .filter_map(|d| parse_class(d).map(|c| (d.clone(), c)))
        .collect();
    let ids: Vec<(String, Vec<String>)> = deny
        .iter()
        .filter(|d| parse_class(d).is_none())
        .map(|d| {
            (
                d.clone(),
                deny_concrete(d).unwrap_or_else(|| vec![format!("LicenseRef-{}", sanitize_ref(d))]),
            )
        })
        .collect();
    let mut violations = Vec::new();
    for component in components {
        let mut denied: BTreeSet<String> = BTreeSet::new();
        let acceptable = match component.license.as_deref() {
            None => {
                for (entry, class) in &classes {
                    if *class == LicenseClass::Unknown {
                        denied.insert(entry.clone());
                    }
                }
                denied.is_empty()
            }
            Some(expression) => {
                let mode = spdx::ParseMode {
                    allow_unknown: false,
                    ..spdx::ParseMode::LAX
                };
                match spdx::Expression::parse_mode(expression, mode) {
                    Ok(parsed) => parsed.evaluate(|req| {
                        let class = class_of_req(req);
                        let mut ok = true;
                        for (entry, denied_class) in &classes {
                            if class == *denied_class {
                                denied.insert(entry.clone());
                                ok = false;
                            }
                        }
                        let (name, or_later) = match &req.license {
                            spdx::LicenseItem::Spdx { id, or_later } => (id.name.to_string(), *or_later),
                            spdx::LicenseItem::Other(r) => (format!("LicenseRef-{}", r.lic_ref), false),
                        };
                        let alternatives = concrete(&name, or_later);
                        // Acceptable when some version it may be taken under is not denied.
                        let mut any_free = false;
                        for alternative in &alternatives {
                            let hits: Vec<&String> = ids
                                .iter()
                                .filter(|(_, c)| c.contains(alternative))
                                .map(|(e, _)| e)
                                .collect();
                            if hits.is_empty() {
                                any_free = true;
                            }
                            denied.extend(hits.into_iter().cloned());
                        }
                        ok && any_free
                    }),
                    Err(_) => {
                        for (entry, class) in &classes {
                            if *class == LicenseClass::Unknown {
                                denied.insert(entry.clone());
                            }
                        }
                        denied.is_empty()
                    }
                }
            }
        };
        if !acceptable {
            violations.push(Violation {
                name: component.name.clone(),
                version: component.version.clone(),
                ecosystem: component.ecosystem,
                purl: component.purl.clone(),
                license: component.license.clone(),
                denied: denied.into_iter().collect(),
            });
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_ascii_license_text_does_not_panic() {
        // The separators are looked for at every byte, inside multi-byte
        // characters too; slicing a `str` there used to panic.
        for declared in ["ASL 2.\u{fffd} and BSD", "GPL-2 ou ultérieure", "é or MIT", "MIT and ü"] {
            let _ = normalize(declared);
        }
    }

    #[test]
    fn normalizes_declared_names() {
        let cases = [
            ("MIT", Some("MIT")),
            ("MIT License", Some("MIT")),
            ("Expat", Some("MIT")),
            ("Apache 2.0", Some("Apache-2.0")),
            ("Apache License, Version 2.0", Some("Apache-2.0")),
            ("GPLv2+", Some("GPL-2.0-or-later")),
            ("GPLv2 or later", Some("GPL-2.0-or-later")),
            ("GPL-2", Some("GPL-2.0-only")),
            ("GPL-2.0", Some("GPL-2.0-only")),
            ("GPL-2.0+", Some("GPL-2.0-or-later")),
            ("GPL-3+", Some("GPL-3.0-or-later")),
            ("LGPL-2.1+", Some("LGPL-2.1-or-later")),
            ("LGPLv3+_or_GPLv2+", Some("LGPL-3.0-or-later OR GPL-2.0-or-later")),
            ("LGPL-3+ or GPL-2+", Some("LGPL-3.0-or-later OR GPL-2.0-or-later")),
            ("GPL-1+ or Artistic", Some("GPL-1.0-or-later OR Artistic-1.0-Perl")),
            (
                "GPL-1+ or Artistic, and Expat",
                Some("(GPL-1.0-or-later OR Artistic-1.0-Perl) AND MIT"),
            ),
            ("BSD-3-clause", Some("BSD-3-Clause")),
            ("BSD", Some("BSD-3-Clause")),
            ("public-domain", Some("LicenseRef-public-domain")),
            (
                "GPL-3+ with Bison exception",
                Some("GPL-3.0-or-later WITH Bison-exception-2.2"),
            ),
            (
                "GPL-2 with Linux-syscall-note exception",
                Some("GPL-2.0-only WITH Linux-syscall-note"),
            ),
            ("GFDL-NIV-1.3+", Some("GFDL-1.3-no-invariants-or-later")),
            ("MIT OR Apache-2.0", Some("MIT OR Apache-2.0")),
            (
                "(MIT OR Apache-2.0) AND BSD-2-Clause",
                Some("(MIT OR Apache-2.0) AND BSD-2-Clause"),
            ),
            ("MIT/Apache-2.0", Some("MIT OR Apache-2.0")),
            ("GNU General Public License v2 (GPLv2)", Some("GPL-2.0-only")),
            (
                "GNU Lesser General Public License v3 or later (LGPLv3+)",
                Some("LGPL-3.0-or-later"),
            ),
            ("permissive", Some("LicenseRef-permissive")),
            ("UNKNOWN", None),
            ("", None),
            (
                "Copyright (c) 2010 Someone. Permission is hereby granted, free of charge, to any person",
                None,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input).as_deref(), want, "normalize({input:?})");
        }
    }

    #[test]
    fn classifies_expressions() {
        use LicenseClass::*;
        let cases = [
            ("MIT", Permissive),
            ("Apache-2.0", Permissive),
            ("LGPL-2.1-or-later", WeakCopyleft),
            ("MPL-2.0", WeakCopyleft),
            ("EPL-2.0", WeakCopyleft),
            ("GPL-3.0-or-later", StrongCopyleft),
            ("AGPL-3.0-only", StrongCopyleft),
            ("GPL-2.0-only WITH Classpath-exception-2.0", WeakCopyleft),
            ("GPL-2.0-or-later OR MIT", Permissive),
            ("GPL-2.0-or-later AND MIT", StrongCopyleft),
            ("LGPL-3.0-or-later OR GPL-2.0-or-later", WeakCopyleft),
            ("MIT AND LicenseRef-foo", Unknown),
            ("LGPL-2.1-only AND LicenseRef-foo", Unknown),
            ("GPL-3.0-or-later AND LicenseRef-foo", StrongCopyleft),
            ("LicenseRef-foo OR LicenseRef-bar", Unknown),
            ("MIT OR LicenseRef-foo", Permissive),
            ("LicenseRef-public-domain", Permissive),
            ("not a license", Unknown),
        ];
        for (input, want) in cases {
            assert_eq!(classify(input), want, "classify({input:?})");
        }
    }

    fn component(name: &str, license: Option<&str>) -> Component {
        Component {
            name: name.to_string(),
            version: "1".to_string(),
            ecosystem: Ecosystem::Debian,
            purl: format!("pkg:deb/debian/{name}@1"),
            arch: None,
            source: None,
            license: license.map(str::to_string),
            license_declared: None,
            license_class: license.map_or(LicenseClass::Unknown, classify),
            locations: Vec::new(),
        }
    }

    #[test]
    fn policy_matches_ids_versions_and_classes() {
        let components = [
            component("gpl3only", Some("GPL-3.0-only")),
            component("gpl3later", Some("GPL-3.0-or-later")),
            component("gpl2later", Some("GPL-2.0-or-later")),
            component("dual", Some("GPL-3.0-only OR MIT")),
            component("both", Some("GPL-3.0-only AND MIT")),
            component("lgpl", Some("LGPL-2.1-or-later")),
            component("nolicense", None),
        ];
        let names = |deny: &[&str]| -> Vec<String> {
            let deny: Vec<String> = deny.iter().map(|s| s.to_string()).collect();
            check_policy(&components, &deny).into_iter().map(|v| v.name).collect()
        };
        assert_eq!(names(&["GPL-3.0-only"]), ["gpl3only", "gpl3later", "both"]);
        assert_eq!(names(&["GPL-3.0"]), ["gpl3only", "gpl3later", "both"]);
        assert_eq!(
            names(&["GPL-2.0-or-later"]),
            ["gpl3only", "gpl3later", "gpl2later", "both"]
        );
        assert_eq!(names(&["GPL-2.0-only"]), Vec::<String>::new());
        assert_eq!(
            names(&["strong-copyleft"]),
            ["gpl3only", "gpl3later", "gpl2later", "both"]
        );
        assert_eq!(names(&["weak-copyleft"]), ["lgpl"]);
        assert_eq!(names(&["unknown"]), ["nolicense"]);
        let violation = &check_policy(&components[4..5], &["strong-copyleft".to_string()])[0];
        assert_eq!(violation.denied, ["strong-copyleft"]);
        assert!(validate_deny(&["GPL-3.0-only".into(), "strong-copyleft".into(), "Apache 2.0".into()]).is_ok());
        let err = validate_deny(&["no such thing at all, really".into()]).unwrap_err();
        assert!(err.to_string().contains("no such thing"), "{err}");
    }

    #[test]
    fn reads_dep5_and_free_form_copyright() {
        let dep5 = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
                    Upstream-Name: x\n\nFiles: *\nCopyright: 2020 A\nLicense: GPL-3+\n\n\
                    Files: lib/*\nCopyright: 2020 B\nLicense: LGPL-2.1+ or BSD-3-clause\n  long text\n\n\
                    License: GPL-3+\n This is the standalone paragraph; not a Files one.\n\n\
                    Files: more/*\nCopyright: C\nLicense: GPL-3+\n";
        let got = parse_debian_copyright(dep5).unwrap();
        assert_eq!(
            got.expression.as_deref(),
            Some("GPL-3.0-or-later AND (LGPL-2.1-or-later OR BSD-3-Clause)")
        );
        assert_eq!(got.declared, "GPL-3+ and (LGPL-2.1+ or BSD-3-clause)");
        let free = "This is Debian's foo.\n\nfoo is free software; you can redistribute it under the terms of\n\
                    the GNU General Public License; either version 2, or (at your option)\nany later version.\n\n\
                    On Debian systems, see /usr/share/common-licenses/GPL-2.\n";
        let got = parse_debian_copyright(free).unwrap();
        assert_eq!(got.expression.as_deref(), Some("GPL-2.0-or-later"));
        assert_eq!(parse_debian_copyright("no licenses mentioned here"), None);
    }

    #[test]
    fn pypi_classifiers() {
        let got = from_pypi_classifiers(&[
            "Programming Language :: Python",
            "License :: OSI Approved :: MIT License",
            "License :: OSI Approved :: Apache Software License",
        ]);
        assert_eq!(got.as_deref(), Some("MIT OR Apache-2.0"));
        assert_eq!(from_pypi_classifiers(&["License :: OSI Approved"]), None);
        assert_eq!(
            from_pypi_classifiers(&["License :: OSI Approved :: GNU General Public License v2 or later (GPLv2+)"])
                .as_deref(),
            Some("GPL-2.0-or-later")
        );
    }
}
