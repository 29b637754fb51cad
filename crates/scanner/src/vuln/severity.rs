//! Severity from CVSS: base scores for CVSS v3.0/v3.1 and v2 vectors are
//! computed here from the specifications' formulas; CVSS v4.0 vectors are
//! scored by the `cvss` crate (its macrovector lookup tables are the
//! specification's own data). Scores map to severities by the CVSS bands;
//! databases' own ratings ("HIGH", "moderate", Ubuntu's "medium") are the
//! fallback when a record has no vector.

use std::str::FromStr;

use crate::types::Severity;

/// A computed base score and the vector it came from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Scored {
    pub score: f32,
    pub vector: String,
    pub severity: Severity,
}

/// A CVSS vector that could not be scored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CVSS vector {vector:?}: {reason}")]
pub struct CvssError {
    pub vector: String,
    pub reason: String,
}

fn cvss_error(vector: &str, reason: impl Into<String>) -> CvssError {
    CvssError {
        vector: vector.to_owned(),
        reason: reason.into(),
    }
}

/// Splits `K:V/K:V/...` into pairs, rejecting duplicates.
fn metrics<'a>(vector: &str, body: &'a str) -> Result<Vec<(&'a str, &'a str)>, CvssError> {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for part in body.split('/') {
        let (key, value) = part
            .split_once(':')
            .ok_or_else(|| cvss_error(vector, format!("malformed metric {part:?}")))?;
        if pairs.iter().any(|(k, _)| *k == key) {
            return Err(cvss_error(vector, format!("metric {key} given twice")));
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

fn metric_value(vector: &str, pairs: &[(&str, &str)], key: &str, table: &[(&str, f64)]) -> Result<f64, CvssError> {
    let value = pairs
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
        .ok_or_else(|| cvss_error(vector, format!("base metric {key} is missing")))?;
    table
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, weight)| *weight)
        .ok_or_else(|| cvss_error(vector, format!("{key}:{value} is not a valid value")))
}

/// CVSS v3.1's Roundup: the smallest one-decimal number not below `x`,
/// computed on integers to avoid floating-point surprises.
fn roundup_v31(x: f64) -> f64 {
    let int_input = (x * 100_000.0).round() as i64;
    if int_input % 10_000 == 0 {
        int_input as f64 / 100_000.0
    } else {
        ((int_input / 10_000) + 1) as f64 / 10.0
    }
}

/// CVSS v3.0's round up to one decimal.
fn roundup_v30(x: f64) -> f64 {
    (x * 10.0).ceil() / 10.0
}

/// The base score of a `CVSS:3.0/...` or `CVSS:3.1/...` vector. Temporal
/// and environmental metrics may be present and are ignored.
pub fn cvss3_base_score(vector: &str) -> Result<f64, CvssError> {
    let (minor, body) = if let Some(body) = vector.strip_prefix("CVSS:3.1/") {
        (1, body)
    } else if let Some(body) = vector.strip_prefix("CVSS:3.0/") {
        (0, body)
    } else {
        return Err(cvss_error(vector, "does not start with CVSS:3.0/ or CVSS:3.1/"));
    };
    let pairs = metrics(vector, body)?;
    let scope_changed = match pairs.iter().find(|(k, _)| *k == "S").map(|(_, v)| *v) {
        Some("U") => false,
        Some("C") => true,
        Some(other) => return Err(cvss_error(vector, format!("S:{other} is not a valid value"))),
        None => return Err(cvss_error(vector, "base metric S is missing")),
    };
    let av = metric_value(
        vector,
        &pairs,
        "AV",
        &[("N", 0.85), ("A", 0.62), ("L", 0.55), ("P", 0.2)],
    )?;
    let ac = metric_value(vector, &pairs, "AC", &[("L", 0.77), ("H", 0.44)])?;
    let pr_table: &[(&str, f64)] = if scope_changed {
        &[("N", 0.85), ("L", 0.68), ("H", 0.5)]
    } else {
        &[("N", 0.85), ("L", 0.62), ("H", 0.27)]
    };
    let pr = metric_value(vector, &pairs, "PR", pr_table)?;
    let ui = metric_value(vector, &pairs, "UI", &[("N", 0.85), ("R", 0.62)])?;
    let cia: &[(&str, f64)] = &[("H", 0.56), ("L", 0.22), ("N", 0.0)];
    let c = metric_value(vector, &pairs, "C", cia)?;
    let i = metric_value(vector, &pairs, "I", cia)?;
    let a = metric_value(vector, &pairs, "A", cia)?;

    let iss = 1.0 - (1.0 - c) * (1.0 - i) * (1.0 - a);
    let impact = if scope_changed {
        7.52 * (iss - 0.029) - 3.25 * (iss - 0.02).powi(15)
    } else {
        6.42 * iss
    };
    let exploitability = 8.22 * av * ac * pr * ui;
    if impact <= 0.0 {
        return Ok(0.0);
    }
    let raw = if scope_changed {
        (1.08 * (impact + exploitability)).min(10.0)
    } else {
        (impact + exploitability).min(10.0)
    };
    Ok(if minor == 1 { roundup_v31(raw) } else { roundup_v30(raw) })
}

/// The base score of a CVSS v2 vector (`AV:N/AC:L/Au:N/C:P/I:P/A:P`, with or
/// without surrounding parentheses or a `CVSS:2.0/` prefix).
pub fn cvss2_base_score(vector: &str) -> Result<f64, CvssError> {
    let body = vector.trim().trim_start_matches('(').trim_end_matches(')');
    let body = body.strip_prefix("CVSS:2.0/").unwrap_or(body);
    let pairs = metrics(vector, body)?;
    let av = metric_value(vector, &pairs, "AV", &[("L", 0.395), ("A", 0.646), ("N", 1.0)])?;
    let ac = metric_value(vector, &pairs, "AC", &[("H", 0.35), ("M", 0.61), ("L", 0.71)])?;
    let au = metric_value(vector, &pairs, "Au", &[("M", 0.45), ("S", 0.56), ("N", 0.704)])?;
    let cia: &[(&str, f64)] = &[("N", 0.0), ("P", 0.275), ("C", 0.660)];
    let c = metric_value(vector, &pairs, "C", cia)?;
    let i = metric_value(vector, &pairs, "I", cia)?;
    let a = metric_value(vector, &pairs, "A", cia)?;
    let impact = 10.41 * (1.0 - (1.0 - c) * (1.0 - i) * (1.0 - a));
    let exploitability = 20.0 * av * ac * au;
    let f = if impact == 0.0 { 0.0 } else { 1.176 };
    let raw = (0.6 * impact + 0.4 * exploitability - 1.5) * f;
    Ok((raw * 10.0).round() / 10.0)
}

/// The base score of a `CVSS:4.0/...` vector.
pub fn cvss4_base_score(vector: &str) -> Result<f64, CvssError> {
    let parsed = cvss::v4::Vector::from_str(vector).map_err(|e| cvss_error(vector, e.to_string()))?;
    Ok(parsed.score().value())
}

/// The CVSS v3/v4 qualitative bands: 0.1–3.9 low, 4.0–6.9 medium, 7.0–8.9
/// high, 9.0–10.0 critical. A 0.0 score ("none") maps to `Unknown`.
pub fn severity_from_score(score: f64) -> Severity {
    match score {
        s if s >= 9.0 => Severity::Critical,
        s if s >= 7.0 => Severity::High,
        s if s >= 4.0 => Severity::Medium,
        s if s > 0.0 => Severity::Low,
        _ => Severity::Unknown,
    }
}

/// The CVSS v2 bands (NVD): 0.0–3.9 low, 4.0–6.9 medium, 7.0–10.0 high.
pub fn severity_from_v2_score(score: f64) -> Severity {
    match score {
        s if s >= 7.0 => Severity::High,
        s if s >= 4.0 => Severity::Medium,
        s if s > 0.0 => Severity::Low,
        _ => Severity::Unknown,
    }
}

/// A database's own rating word.
pub fn severity_from_label(label: &str) -> Option<Severity> {
    match label.trim().to_ascii_lowercase().as_str() {
        "critical" => Some(Severity::Critical),
        "high" | "important" => Some(Severity::High),
        "moderate" | "medium" => Some(Severity::Medium),
        "low" | "negligible" | "unimportant" | "minor" => Some(Severity::Low),
        _ => None,
    }
}

/// Scores one OSV `severity[]` entry (`type`, `score`).
pub fn score_entry(kind: &str, score: &str) -> Option<Result<Scored, CvssError>> {
    let (value, severity) = match kind {
        "CVSS_V3" => match cvss3_base_score(score) {
            Ok(v) => (v, severity_from_score(v)),
            Err(e) => return Some(Err(e)),
        },
        "CVSS_V4" => match cvss4_base_score(score) {
            Ok(v) => (v, severity_from_score(v)),
            Err(e) => return Some(Err(e)),
        },
        "CVSS_V2" => match cvss2_base_score(score) {
            Ok(v) => (v, severity_from_v2_score(v)),
            Err(e) => return Some(Err(e)),
        },
        _ => return None,
    };
    Some(Ok(Scored {
        score: value as f32,
        vector: score.to_owned(),
        severity,
    }))
}

/// Picks the severity of a set of OSV `severity[]` entries: a CVSS v3
/// vector first, then v4, then v2 (the first valid one of each kind), then
/// a rating word from any entry's score or from `labels`.
pub fn pick<'a>(
    entries: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    labels: impl Iterator<Item = &'a str>,
) -> (Severity, Option<Scored>) {
    for wanted in ["CVSS_V3", "CVSS_V4", "CVSS_V2"] {
        for (kind, score) in entries.clone().filter(|(k, _)| *k == wanted) {
            if let Some(Ok(scored)) = score_entry(kind, score) {
                return (scored.severity, Some(scored));
            }
        }
    }
    let words = entries
        .filter(|(k, _)| !k.starts_with("CVSS_"))
        .map(|(_, s)| s)
        .chain(labels);
    let best = words.filter_map(severity_from_label).max();
    (best.unwrap_or(Severity::Unknown), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_v3_scores() {
        for (vector, expected) in [
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
            ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.8),
            ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", 5.9),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
            ("CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N", 1.6),
            ("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:P/RL:O", 9.8),
            ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:L/I:L/A:N", 6.4),
        ] {
            assert_eq!(cvss3_base_score(vector).unwrap(), expected, "{vector}");
        }
    }

    /// Every CVSS v3.1 base vector (2 592 of them), scored independently by
    /// the `cvss` crate.
    #[test]
    fn every_v3_base_vector_agrees_with_an_independent_implementation() {
        let mut checked = 0;
        for av in ["N", "A", "L", "P"] {
            for ac in ["L", "H"] {
                for pr in ["N", "L", "H"] {
                    for ui in ["N", "R"] {
                        for s in ["U", "C"] {
                            for c in ["H", "L", "N"] {
                                for i in ["H", "L", "N"] {
                                    for a in ["H", "L", "N"] {
                                        let vector =
                                            format!("CVSS:3.1/AV:{av}/AC:{ac}/PR:{pr}/UI:{ui}/S:{s}/C:{c}/I:{i}/A:{a}");
                                        let theirs = cvss::v3::Vector::from_str(&vector).unwrap().score().value();
                                        assert_eq!(cvss3_base_score(&vector).unwrap(), theirs, "{vector}");
                                        checked += 1;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 2592);
    }

    /// Every CVSS v2 base vector (729), scored independently by the `cvss` crate.
    #[test]
    fn every_v2_base_vector_agrees_with_an_independent_implementation() {
        let mut checked = 0;
        for av in ["L", "A", "N"] {
            for ac in ["H", "M", "L"] {
                for au in ["M", "S", "N"] {
                    for c in ["N", "P", "C"] {
                        for i in ["N", "P", "C"] {
                            for a in ["N", "P", "C"] {
                                let vector = format!("AV:{av}/AC:{ac}/Au:{au}/C:{c}/I:{i}/A:{a}");
                                let theirs = cvss::v2::Vector::from_str(&vector).unwrap().score().value();
                                assert_eq!(cvss2_base_score(&vector).unwrap(), theirs, "{vector}");
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 729);
    }

    #[test]
    fn known_v2_scores() {
        assert_eq!(cvss2_base_score("AV:N/AC:L/Au:N/C:P/I:P/A:P").unwrap(), 7.5);
        assert_eq!(cvss2_base_score("AV:N/AC:M/Au:N/C:N/I:P/A:N").unwrap(), 4.3);
        assert_eq!(cvss2_base_score("(AV:N/AC:L/Au:N/C:C/I:C/A:C)").unwrap(), 10.0);
        assert_eq!(cvss2_base_score("AV:L/AC:L/Au:N/C:N/I:N/A:N").unwrap(), 0.0);
    }

    #[test]
    fn invalid_vectors_name_the_problem() {
        let missing = cvss3_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H").unwrap_err();
        assert!(missing.reason.contains("A is missing"), "{missing}");
        let bad = cvss3_base_score("CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H").unwrap_err();
        assert!(bad.reason.contains("AV:X"), "{bad}");
        assert!(cvss3_base_score("CVSS:3.1/AV:N/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H").is_err());
        assert!(cvss3_base_score("AV:N/AC:L").is_err());
    }

    #[test]
    fn bands_and_picking() {
        assert_eq!(severity_from_score(9.0), Severity::Critical);
        assert_eq!(severity_from_score(8.9), Severity::High);
        assert_eq!(severity_from_score(4.0), Severity::Medium);
        assert_eq!(severity_from_score(3.9), Severity::Low);
        assert_eq!(severity_from_score(0.0), Severity::Unknown);
        let entries = [
            ("CVSS_V2", "AV:N/AC:L/Au:N/C:P/I:P/A:P"),
            ("CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N"),
        ];
        let (severity, scored) = pick(entries.iter().copied(), std::iter::empty());
        assert_eq!((severity, scored.unwrap().score), (Severity::Medium, 6.1));
        let (severity, scored) = pick(std::iter::empty(), ["MODERATE", "bogus"].into_iter());
        assert_eq!((severity, scored), (Severity::Medium, None));
        let (severity, _) = pick([("Ubuntu", "high")].into_iter(), std::iter::empty());
        assert_eq!(severity, Severity::High);
        let v4 = pick(
            [(
                "CVSS_V4",
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
            )]
            .into_iter(),
            std::iter::empty(),
        );
        assert_eq!(v4.0, Severity::Critical);
        assert_eq!(v4.1.unwrap().score, 9.3);
    }
}
