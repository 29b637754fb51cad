//! License expressions as SBOM formats accept them: every id on the SPDX
//! license list spelled as the list spells it, everything else turned into
//! a `LicenseRef-` that the document declares with its original text.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// The longest `LicenseRef-` suffix kept verbatim; longer ones are cut and
/// made unique with a hash.
const MAX_REF_LEN: usize = 64;

/// A license that is not on the SPDX list, declared once per document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExtractedLicense {
    /// `LicenseRef-...`
    pub id: String,
    /// The token or expression as the package wrote it.
    pub name: String,
    /// The license text as declared (falls back to `name`).
    pub text: String,
}

/// The document-wide table of `LicenseRef-` ids, so equal licenses share an
/// id and different ones never do.
#[derive(Debug, Default)]
pub(crate) struct LicenseRefs {
    by_id: BTreeMap<String, ExtractedLicense>,
}

impl LicenseRefs {
    /// The id for `name` with `text`, registering it when new. A `name` that
    /// already is a well-formed `LicenseRef-` keeps its id.
    fn register(&mut self, name: &str, text: &str) -> String {
        let base = match name.strip_prefix("LicenseRef-") {
            Some(suffix) if is_idstring(suffix) => format!("LicenseRef-{suffix}"),
            _ => format!("LicenseRef-{}", sanitize_ref(name)),
        };
        let mut id = base.clone();
        if let Some(existing) = self.by_id.get(&id) {
            if existing.name == name && existing.text == text {
                return id;
            }
            id = format!("{base}-{}", short_hash(&format!("{name}\n{text}")));
            if self.by_id.contains_key(&id) {
                return id;
            }
        }
        self.by_id.insert(
            id.clone(),
            ExtractedLicense {
                id: id.clone(),
                name: name.to_string(),
                text: text.to_string(),
            },
        );
        id
    }

    /// Every declared license, sorted by id.
    pub fn into_extracted(self) -> Vec<ExtractedLicense> {
        self.by_id.into_values().collect()
    }
}

/// What [`convert`] made of a license string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Converted {
    /// A valid SPDX expression (may contain `LicenseRef-`s).
    Expression(String),
    /// `NONE` or `NOASSERTION`.
    Special(&'static str),
}

impl Converted {
    pub fn as_str(&self) -> &str {
        match self {
            Converted::Expression(expression) => expression,
            Converted::Special(special) => special,
        }
    }
}

/// Turns `license` into a valid SPDX expression, registering non-list ids
/// in `refs`. `declared` is the text the package declared, kept as the
/// extracted text of a license that is unknown as a whole.
pub(crate) fn convert(license: &str, declared: Option<&str>, refs: &mut LicenseRefs) -> Converted {
    let trimmed = license.trim();
    if trimmed.is_empty() || trimmed == "NOASSERTION" {
        return Converted::Special("NOASSERTION");
    }
    if trimmed == "NONE" {
        return Converted::Special("NONE");
    }
    let tokens = tokenize(trimmed);
    let whole_text = declared.unwrap_or(trimmed);
    let mut parser = Parser {
        tokens: &tokens,
        position: 0,
        out: Vec::new(),
    };
    if parser.expression().is_none() || parser.position != tokens.len() {
        return Converted::Expression(refs.register(trimmed, whole_text));
    }
    // Only a successful parse registers ids, so a malformed expression
    // leaves no stray declarations behind.
    let single = tokens.len() == 1;
    let out: Vec<String> = parser
        .out
        .into_iter()
        .map(|token| match token {
            Token::Text(text) => text,
            Token::Unlisted(name) => refs.register(&name, if single { whole_text } else { &name }),
        })
        .collect();
    Converted::Expression(join(&out))
}

/// The canonical spelling of a license id on the SPDX list (any case, an
/// optional trailing `+`).
pub(crate) fn list_license(token: &str) -> Option<String> {
    let (base, plus) = match token.strip_suffix('+') {
        Some(base) => (base, "+"),
        None => (token, ""),
    };
    spdx::identifiers::LICENSES
        .iter()
        .find(|license| license.name.eq_ignore_ascii_case(base))
        .map(|license| format!("{}{plus}", license.name))
}

fn list_exception(token: &str) -> Option<&'static str> {
    spdx::identifiers::EXCEPTIONS
        .iter()
        .find(|exception| exception.name.eq_ignore_ascii_case(token))
        .map(|e| e.name)
}

fn tokenize(expression: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    for ch in expression.chars() {
        if ch == '(' || ch == ')' || ch.is_whitespace() {
            if !current.is_empty() {
                tokens.push(std::mem::take(&mut current));
            }
            if !ch.is_whitespace() {
                tokens.push(ch.to_string());
            }
        } else {
            current.push(ch);
        }
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    tokens
}

fn join(tokens: &[String]) -> String {
    let mut out = String::new();
    for (index, token) in tokens.iter().enumerate() {
        let glued = index == 0 || token == ")" || tokens[index - 1] == "(";
        if !glued {
            out.push(' ');
        }
        out.push_str(token);
    }
    out
}

fn is_operator(token: &str, operator: &str) -> bool {
    token.eq_ignore_ascii_case(operator)
}

/// An output token: kept as is, or a license off the SPDX list that still
/// needs its `LicenseRef-`.
enum Token {
    Text(String),
    Unlisted(String),
}

/// A recursive-descent check of the SPDX expression grammar that copies
/// the tokens to `out`, canonicalizing list ids on the way.
struct Parser<'a> {
    tokens: &'a [String],
    position: usize,
    out: Vec<Token>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.position).map(String::as_str)
    }

    fn push(&mut self, text: &str) {
        self.out.push(Token::Text(text.to_string()));
    }

    /// expression := term ((AND | OR) term)*
    fn expression(&mut self) -> Option<()> {
        self.term()?;
        while let Some(token) = self.peek() {
            let operator = if is_operator(token, "AND") {
                "AND"
            } else if is_operator(token, "OR") {
                "OR"
            } else {
                break;
            };
            self.push(operator);
            self.position += 1;
            self.term()?;
        }
        Some(())
    }

    /// term := '(' expression ')' | license [WITH exception]
    fn term(&mut self) -> Option<()> {
        let token = self.peek()?.to_string();
        if token == "(" {
            self.push("(");
            self.position += 1;
            self.expression()?;
            if self.peek()? != ")" {
                return None;
            }
            self.push(")");
            self.position += 1;
            return Some(());
        }
        if token == ")"
            || ["AND", "OR", "WITH"]
                .iter()
                .any(|operator| is_operator(&token, operator))
        {
            return None;
        }
        self.position += 1;
        match list_license(&token) {
            Some(id) => self.out.push(Token::Text(id)),
            None => self.out.push(Token::Unlisted(token)),
        }
        if self.peek().is_some_and(|token| is_operator(token, "WITH")) {
            self.position += 1;
            let exception = list_exception(self.peek()?)?;
            self.push("WITH");
            self.push(exception);
            self.position += 1;
        }
        Some(())
    }
}

fn is_idstring(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '.' || ch == '-')
}

/// Keeps `[A-Za-z0-9.-]`, spells `+` as `plus`, turns runs of anything else
/// into one `-`; long results are cut and made unique with a hash.
fn sanitize_ref(name: &str) -> String {
    let mut out = String::new();
    for ch in name.chars() {
        match ch {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '.' | '-' => out.push(ch),
            '+' => out.push_str("plus"),
            _ if out.ends_with('-') => {}
            _ => out.push('-'),
        }
    }
    let out = out.trim_matches('-').to_string();
    if out.is_empty() {
        return format!("unnamed-{}", short_hash(name));
    }
    if out.len() > MAX_REF_LEN {
        return format!("{}-{}", out[..MAX_REF_LEN - 9].trim_end_matches('-'), short_hash(name));
    }
    out
}

pub(crate) fn short_hash(input: &str) -> String {
    let digest = Sha256::digest(input.as_bytes());
    hex::encode(&digest[..4])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, declared: Option<&str>, want: &str, want_refs: &[(&str, &str, &str)]) {
        let mut refs = LicenseRefs::default();
        let got = convert(input, declared, &mut refs);
        assert_eq!(got.as_str(), want, "{input}");
        let extracted: Vec<(String, String, String)> = refs
            .into_extracted()
            .into_iter()
            .map(|license| (license.id, license.name, license.text))
            .collect();
        let want_refs: Vec<(String, String, String)> = want_refs
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect();
        assert_eq!(extracted, want_refs, "{input}");
    }

    #[test]
    fn expressions_are_canonicalized() {
        check("MIT", None, "MIT", &[]);
        check("mit or apache-2.0", None, "MIT OR Apache-2.0", &[]);
        check(
            "(MIT OR Apache-2.0) AND BSD-3-Clause",
            None,
            "(MIT OR Apache-2.0) AND BSD-3-Clause",
            &[],
        );
        check("GPL-2.0+", None, "GPL-2.0+", &[]);
        check(
            "GPL-2.0-or-later WITH classpath-exception-2.0",
            None,
            "GPL-2.0-or-later WITH Classpath-exception-2.0",
            &[],
        );
        check("", None, "NOASSERTION", &[]);
        check("NONE", None, "NONE", &[]);
    }

    #[test]
    fn unknown_ids_become_declared_license_refs() {
        check(
            "Artistic",
            None,
            "LicenseRef-Artistic",
            &[("LicenseRef-Artistic", "Artistic", "Artistic")],
        );
        check(
            "custom",
            Some("Proprietary, see LICENSE"),
            "LicenseRef-custom",
            &[("LicenseRef-custom", "custom", "Proprietary, see LICENSE")],
        );
        check(
            "MIT AND GPL+",
            None,
            "MIT AND LicenseRef-GPLplus",
            &[("LicenseRef-GPLplus", "GPL+", "GPL+")],
        );
        check(
            "LicenseRef-acme",
            None,
            "LicenseRef-acme",
            &[("LicenseRef-acme", "LicenseRef-acme", "LicenseRef-acme")],
        );
    }

    #[test]
    fn malformed_expressions_become_one_license_ref() {
        check(
            "MIT AND (Apache-2.0",
            None,
            "LicenseRef-MIT-AND-Apache-2.0",
            &[(
                "LicenseRef-MIT-AND-Apache-2.0",
                "MIT AND (Apache-2.0",
                "MIT AND (Apache-2.0",
            )],
        );
        check(
            "MIT WITH not-an-exception",
            None,
            "LicenseRef-MIT-WITH-not-an-exception",
            &[(
                "LicenseRef-MIT-WITH-not-an-exception",
                "MIT WITH not-an-exception",
                "MIT WITH not-an-exception",
            )],
        );
    }

    #[test]
    fn a_failed_parse_declares_only_the_whole_text() {
        check(
            "Copyright (c) 2024 Example",
            None,
            "LicenseRef-Copyright-c-2024-Example",
            &[(
                "LicenseRef-Copyright-c-2024-Example",
                "Copyright (c) 2024 Example",
                "Copyright (c) 2024 Example",
            )],
        );
    }

    #[test]
    fn different_texts_under_one_name_get_different_ids() {
        let mut refs = LicenseRefs::default();
        let a = convert("custom", Some("text a"), &mut refs);
        let b = convert("custom", Some("text b"), &mut refs);
        let a_again = convert("custom", Some("text a"), &mut refs);
        assert_eq!(a, a_again);
        assert_ne!(a, b);
        assert_eq!(refs.into_extracted().len(), 2);
    }
}
