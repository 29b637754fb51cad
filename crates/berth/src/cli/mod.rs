//! The CLI's verbs, one module per group; output formatting lives here.

pub mod access;
pub mod audit;
pub mod bundle;
pub mod cluster;
pub mod containers;
pub mod images;
pub mod registry;
pub mod scan;
pub mod shim;
pub mod stream;
pub mod system;
pub mod trust;

/// "3 seconds ago", "2 hours ago" from an RFC 3339 time.
pub fn ago(t: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(t) {
        Ok(t) => format!("{} ago", duration(chrono::Utc::now().signed_duration_since(t))),
        Err(_) => t.to_string(),
    }
}

pub fn duration(d: chrono::TimeDelta) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86400),
    }
}

/// Prints rows as left-aligned columns separated by three spaces, like Docker.
pub fn table(rows: &[Vec<String>]) {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map(|c| c.chars().count()).unwrap_or(0))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}   ", w = widths[i]));
            }
        }
        println!("{}", line.trim_end());
    }
}
