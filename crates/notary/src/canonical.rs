//! Canonical JSON exactly as Notary computes it: the bytes that are signed
//! and hashed into key ids.
//!
//! Rules (those of Notary's canonical encoder): object keys sorted by their
//! UTF-8 bytes, no whitespace, strings escape only `"` and `\` (every other
//! byte, control characters and non-ASCII included, is written as is),
//! numbers are integers (a number with a fractional part is an error), and
//! `null`, `true`, `false` as usual.
//!
//! Notary verifies a signature over the canonical form of the `signed`
//! object *as decoded into generic JSON*, so verifying from a parsed
//! [`serde_json::Value`] gives the same bytes Notary checks.

use serde::Serialize;
use serde_json::Value;

/// Why a value has no canonical form.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CanonicalError {
    #[error("canonical json: number {0} is not an integer")]
    NotAnInteger(String),
    #[error("canonical json: cannot serialize value: {0}")]
    Serialize(String),
}

/// Canonical bytes of a JSON value.
pub fn canonical_json(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    write_value(&mut out, value, Escape::Canonical)?;
    Ok(out)
}

/// Canonical bytes of anything serializable.
pub fn to_canonical<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    let value = serde_json::to_value(value).map_err(|e| CanonicalError::Serialize(e.to_string()))?;
    canonical_json(&value)
}

/// Canonical layout (sorted keys, compact) with the escaping Go's encoder
/// applies when it embeds canonical bytes in a metadata file (`<`, `>`, `&`,
/// U+2028, U+2029, and control characters as `\uXXXX`): valid JSON that
/// decodes to the same value, byte-for-byte what Notary writes.
pub(crate) fn compact_sorted_json(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    write_value(&mut out, value, Escape::Wire)?;
    Ok(out)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Escape {
    /// Only `"` and `\`.
    Canonical,
    /// Also control characters, as `\u00XX`.
    Wire,
}

fn write_value(out: &mut Vec<u8>, value: &Value, escape: Escape) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n)?,
        Value::String(s) => write_string(out, s, escape),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item, escape)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // Sort explicitly: serde_json's map order depends on a feature
            // flag another crate in the build may turn on.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, key, escape);
                out.push(b':');
                write_value(out, item, escape)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_number(out: &mut Vec<u8>, n: &serde_json::Number) -> Result<(), CanonicalError> {
    if let Some(i) = n.as_i64() {
        out.extend_from_slice(i.to_string().as_bytes());
        return Ok(());
    }
    if let Some(u) = n.as_u64() {
        out.extend_from_slice(u.to_string().as_bytes());
        return Ok(());
    }
    // A float: Notary decodes every number as a float64 and accepts it
    // only when it is integral, then prints it as an int64.
    match n.as_f64() {
        Some(f) if f.is_finite() && f.fract() == 0.0 && f >= i64::MIN as f64 && f <= i64::MAX as f64 => {
            out.extend_from_slice((f as i64).to_string().as_bytes());
            Ok(())
        }
        _ => Err(CanonicalError::NotAnInteger(n.to_string())),
    }
}

fn write_string(out: &mut Vec<u8>, s: &str, escape: Escape) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    if escape == Escape::Canonical {
        for &b in s.as_bytes() {
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b => out.push(b),
            }
        }
    } else {
        // What Go's encoder writes when it embeds canonical bytes in an
        // envelope: <, >, & and U+2028/U+2029 escaped (control characters,
        // which Go cannot embed at all, escaped too).
        let mut buf = [0u8; 4];
        for c in s.chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '<' | '>' | '&' | '\u{0}'..='\u{1f}' => {
                    let b = c as u8;
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 0xf)]);
                }
                '\u{2028}' => out.extend_from_slice(b"\\u2028"),
                '\u{2029}' => out.extend_from_slice(b"\\u2029"),
                c => out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(input: Value, expect: &str) {
        let got = canonical_json(&input).unwrap();
        assert_eq!(String::from_utf8_lossy(&got), expect);
    }

    #[test]
    fn canonical_vectors() {
        check(
            json!({"b": 1, "a": [true, false, null], "_type": "Root"}),
            r#"{"_type":"Root","a":[true,false,null],"b":1}"#,
        );
        check(json!({"z": {"y": {}, "x": []}}), r#"{"z":{"x":[],"y":{}}}"#);
        check(json!("quote\" back\\slash"), r#""quote\" back\\slash""#);
        // control characters, <>& and non-ASCII are written raw
        check(json!("a\nb\t<&>é\u{2028}"), "\"a\nb\t<&>é\u{2028}\"");
        check(json!(-5), "-5");
        check(json!(18446744073709551615u64), "18446744073709551615");
        check(json!(3.0), "3");
        // byte order, not locale order: uppercase sorts before lowercase
        check(json!({"b": 0, "B": 0, "a": 0, "_": 0}), r#"{"B":0,"_":0,"a":0,"b":0}"#);
    }

    #[test]
    fn fractional_numbers_have_no_canonical_form() {
        assert_eq!(
            canonical_json(&json!({"x": 1.5})),
            Err(CanonicalError::NotAnInteger("1.5".into()))
        );
    }

    #[test]
    fn wire_form_escapes_like_go_and_round_trips() {
        let v = json!({"name": "a\nb\u{1}<&>\u{2028}é\"\\", "k": 1});
        let wire = compact_sorted_json(&v).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&wire),
            r#"{"k":1,"name":"a\u000ab\u0001\u003c\u0026\u003e\u2028é\"\\"}"#
        );
        let back: Value = serde_json::from_slice(&wire).unwrap();
        assert_eq!(canonical_json(&back).unwrap(), canonical_json(&v).unwrap());
    }
}
