//! Maven's version order (`ComparableVersion`): the version splits on `.`,
//! `-` and digit/letter transitions into numbers and qualifiers; `-` and
//! transitions open a nested list. Qualifiers order `alpha < beta <
//! milestone < rc = cr < snapshot < "" = ga = final = release < sp`, unknown
//! qualifiers after those in lexical order; `a1`, `b1`, `m1` abbreviate
//! alpha/beta/milestone when followed by a digit. Trailing zeros and empty
//! qualifiers are dropped, so `1 = 1.0 = 1.0.0 = 1-ga = 1.0-final`. Every
//! non-blank string is a version.

use std::cmp::Ordering;

use super::VersionError;

const QUALIFIERS: [&str; 7] = ["alpha", "beta", "milestone", "rc", "snapshot", "", "sp"];
const RELEASE_INDEX: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    /// Decimal digits without leading zeros (zero is the empty string).
    Number(String),
    /// A qualifier after abbreviation and alias expansion.
    Qualifier(String),
    List(Vec<Item>),
}

impl Item {
    fn is_null(&self) -> bool {
        match self {
            Item::Number(digits) => digits.is_empty(),
            Item::Qualifier(q) => q.is_empty(),
            Item::List(items) => items.is_empty(),
        }
    }
}

/// The sort key of a qualifier: its rank among the known ones, unknown ones
/// after all of them and among themselves lexically.
fn qualifier_rank(q: &str) -> (usize, &str) {
    match QUALIFIERS.iter().position(|k| *k == q) {
        Some(i) => (i, ""),
        None => (QUALIFIERS.len(), q),
    }
}

fn qualifier(value: &str, followed_by_digit: bool) -> Item {
    let value = match value {
        "a" if followed_by_digit => "alpha",
        "b" if followed_by_digit => "beta",
        "m" if followed_by_digit => "milestone",
        "ga" | "final" | "release" => "",
        "cr" => "rc",
        other => other,
    };
    Item::Qualifier(value.to_owned())
}

fn item(is_digit: bool, text: &str) -> Item {
    if is_digit {
        Item::Number(text.trim_start_matches('0').to_owned())
    } else {
        qualifier(text, false)
    }
}

fn compare_numbers(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// `a.compareTo(b)` where `b == None` is Maven's `null` (padding).
fn compare_items(a: &Item, b: Option<&Item>) -> Ordering {
    match (a, b) {
        (Item::Number(n), None) => {
            if n.is_empty() {
                Ordering::Equal
            } else {
                Ordering::Greater
            }
        }
        (Item::Number(x), Some(Item::Number(y))) => compare_numbers(x, y),
        (Item::Number(_), Some(_)) => Ordering::Greater,
        (Item::Qualifier(q), None) => qualifier_rank(q).cmp(&(RELEASE_INDEX, "")),
        (Item::Qualifier(_), Some(Item::Number(_))) => Ordering::Less,
        (Item::Qualifier(x), Some(Item::Qualifier(y))) => qualifier_rank(x).cmp(&qualifier_rank(y)),
        (Item::Qualifier(_), Some(Item::List(_))) => Ordering::Less,
        (Item::List(items), None) => items
            .first()
            .map_or(Ordering::Equal, |first| compare_items(first, None)),
        (Item::List(_), Some(Item::Number(_))) => Ordering::Less,
        (Item::List(_), Some(Item::Qualifier(_))) => Ordering::Greater,
        (Item::List(xs), Some(Item::List(ys))) => compare_lists(xs, ys),
    }
}

fn compare_lists(xs: &[Item], ys: &[Item]) -> Ordering {
    for i in 0..xs.len().max(ys.len()) {
        let result = match (xs.get(i), ys.get(i)) {
            (Some(x), y) => compare_items(x, y),
            (None, Some(y)) => compare_items(y, None).reverse(),
            (None, None) => Ordering::Equal,
        };
        if result != Ordering::Equal {
            return result;
        }
    }
    Ordering::Equal
}

/// Drops trailing null items (zeros, release qualifiers, empty lists),
/// stopping at the first non-null item that is not a list.
fn normalize(items: &mut Vec<Item>) {
    let mut i = items.len();
    while i > 0 {
        i -= 1;
        if items[i].is_null() {
            items.remove(i);
        } else if !matches!(items[i], Item::List(_)) {
            break;
        }
    }
}

fn parse(version: &str) -> Result<Vec<Item>, VersionError> {
    if version.trim().is_empty() {
        return Err(VersionError::new("maven", version, "empty version"));
    }
    let lower = version.to_lowercase();
    // Each `-` or digit/letter transition opens a list nested as the last
    // item of the current one, so the structure is a chain of levels.
    let mut levels: Vec<Vec<Item>> = vec![Vec::new()];
    let mut is_digit = false;
    let mut start = 0;
    for (i, c) in lower.char_indices() {
        let current = levels.len() - 1;
        if c == '.' || c == '-' {
            let piece = if i == start {
                Item::Number(String::new())
            } else {
                item(is_digit, &lower[start..i])
            };
            levels[current].push(piece);
            start = i + 1;
            if c == '-' {
                levels.push(Vec::new());
            }
        } else if c.is_ascii_digit() {
            if !is_digit && i > start {
                levels[current].push(qualifier(&lower[start..i], true));
                start = i;
                levels.push(Vec::new());
            }
            is_digit = true;
        } else {
            if is_digit && i > start {
                levels[current].push(item(true, &lower[start..i]));
                start = i;
                levels.push(Vec::new());
            }
            is_digit = false;
        }
    }
    if lower.len() > start {
        let current = levels.len() - 1;
        levels[current].push(item(is_digit, &lower[start..]));
    }
    let mut child: Option<Vec<Item>> = None;
    while let Some(mut level) = levels.pop() {
        if let Some(child) = child.take() {
            level.push(Item::List(child));
        }
        normalize(&mut level);
        child = Some(level);
    }
    Ok(child.unwrap_or_default())
}

/// Compares two Maven versions.
pub fn compare(a: &str, b: &str) -> Result<Ordering, VersionError> {
    Ok(compare_lists(&parse(a)?, &parse(b)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_order(versions: &[&str]) {
        for (i, a) in versions.iter().enumerate() {
            for (j, b) in versions.iter().enumerate() {
                assert_eq!(compare(a, b).unwrap(), i.cmp(&j), "{a} vs {b}");
            }
        }
    }

    fn check_equal(versions: &[&str]) {
        for a in versions {
            for b in versions {
                assert_eq!(compare(a, b).unwrap(), Ordering::Equal, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn qualifier_order() {
        check_order(&[
            "1-alpha2snapshot",
            "1-alpha2",
            "1-alpha-123",
            "1-beta-2",
            "1-beta123",
            "1-m2",
            "1-m11",
            "1-rc",
            "1-cr2",
            "1-rc123",
            "1-SNAPSHOT",
            "1",
            "1-sp",
            "1-sp2",
            "1-sp123",
            "1-abc",
            "1-def",
            "1-pom-1",
            "1-1-snapshot",
            "1-1",
            "1-2",
            "1-123",
        ]);
    }

    #[test]
    fn numeric_order() {
        check_order(&[
            "2.0", "2-1", "2.0.a", "2.0.0.a", "2.0.2", "2.0.123", "2.1.0", "2.1-a", "2.1b", "2.1-c", "2.1-1",
            "2.1.0.1", "2.2", "2.123", "11.a2", "11.a11", "11.b2", "11.b11", "11.m2", "11.m11", "11", "11.a", "11b",
            "11c", "11m",
        ]);
    }

    #[test]
    fn equal_spellings() {
        check_equal(&[
            "1",
            "1.0",
            "1.0.0",
            "1-0",
            "1.0-0",
            "1-ga",
            "1-final",
            "1-release",
            "1.0.0-GA",
            "1.ga",
        ]);
        check_equal(&["1a1", "1-a1", "1.0-alpha1", "1alpha1", "1-ALPHA-1"]);
        check_equal(&["1cr1", "1rc1", "1-RC-1"]);
        check_equal(&["1.0.0000000000000000000000000001", "1.0.1"]);
        assert!(compare("", "1").is_err());
    }
}
