//! The human rendering of a report for a terminal: a header, the counts by
//! severity, what the scan could not read, then vulnerabilities (most severe first), license violations,
//! check findings and failures, the functional test and the optimization
//! headline. The severity filter narrows the listed vulnerabilities and
//! findings; the counts always cover everything.

use std::fmt::Write;

use super::{format_bytes, severity_name, vulnerability_order, ScanReport, SeverityCounts, SeverityFilter};
use crate::types::Vulnerability;

/// Longest title shown in the vulnerability table.
const TITLE_WIDTH: usize = 60;
/// Inefficient paths and caches named in the optimization section.
const OPTIMIZATION_ITEMS: usize = 5;

/// Renders `report` as plain-text tables.
pub fn write_table(report: &ScanReport, filter: &SeverityFilter) -> String {
    let mut out = String::new();
    let summary = report.summary();
    line(
        &mut out,
        format!("Image:    {} ({})", report.image.reference, report.image.digest),
    );
    if let Some(os) = &report.os {
        let name = os
            .pretty_name
            .clone()
            .unwrap_or_else(|| format!("{} {}", os.name, os.version.as_deref().unwrap_or("")));
        line(&mut out, format!("OS:       {}", name.trim()));
    }
    let database = report
        .database_version
        .as_deref()
        .map(|v| format!(", database {v}"))
        .unwrap_or_default();
    line(
        &mut out,
        format!(
            "Scanned:  {} by berth-scanner {}{database}",
            report.created.format("%Y-%m-%d %H:%M:%S UTC"),
            report.scanner_version
        ),
    );
    line(&mut out, format!("Components: {}", report.components.len()));
    line(
        &mut out,
        format!(
            "Vulnerabilities: {} ({}); {} fixable, {} ignored",
            summary.vulnerabilities.total(),
            counts(&summary.vulnerabilities),
            summary.fixable,
            summary.ignored
        ),
    );
    if filter.is_restrictive() {
        line(&mut out, format!("Showing severities: {filter}"));
    }
    if !report.warnings.is_empty() {
        out.push('\n');
        line(
            &mut out,
            format!("Warnings: {} (the components may be incomplete)", report.warnings.len()),
        );
        for warning in &report.warnings {
            line(&mut out, format!("  {warning}"));
        }
    }

    let mut vulnerabilities: Vec<&Vulnerability> = report
        .vulnerabilities
        .iter()
        .filter(|vulnerability| vulnerability.ignored.is_none() && filter.allows(vulnerability.severity))
        .collect();
    vulnerabilities.sort_by(|a, b| vulnerability_order(a, b));
    if !vulnerabilities.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = vulnerabilities
            .iter()
            .map(|v| {
                vec![
                    v.package.clone(),
                    v.installed_version.clone(),
                    v.fixed_version.clone().unwrap_or_default(),
                    v.id.clone(),
                    severity_name(v.severity).to_string(),
                    shorten(&v.summary, TITLE_WIDTH),
                ]
            })
            .collect();
        table(
            &mut out,
            &["PACKAGE", "INSTALLED", "FIXED", "ID", "SEVERITY", "TITLE"],
            &rows,
        );
    }

    if !report.license_violations.is_empty() {
        let mut violations: Vec<_> = report.license_violations.iter().collect();
        violations.sort();
        out.push('\n');
        line(&mut out, format!("License violations: {}", violations.len()));
        let rows: Vec<Vec<String>> = violations
            .iter()
            .map(|v| {
                vec![
                    v.component.clone(),
                    v.version.clone(),
                    v.license.clone(),
                    v.rule.clone(),
                ]
            })
            .collect();
        table(&mut out, &["COMPONENT", "VERSION", "LICENSE", "RULE"], &rows);
    }

    let mut findings: Vec<_> = report
        .check_findings
        .iter()
        .filter(|f| filter.allows(f.severity))
        .collect();
    if !report.check_findings.is_empty() {
        findings.sort_by(|a, b| {
            (std::cmp::Reverse(a.severity), &a.check, &a.rule, &a.path, &a.message).cmp(&(
                std::cmp::Reverse(b.severity),
                &b.check,
                &b.rule,
                &b.path,
                &b.message,
            ))
        });
        out.push('\n');
        line(
            &mut out,
            format!(
                "Check findings: {} ({})",
                summary.check_findings.total(),
                counts(&summary.check_findings)
            ),
        );
        let rows: Vec<Vec<String>> = findings
            .iter()
            .map(|f| {
                vec![
                    severity_name(f.severity).to_string(),
                    f.check.clone(),
                    f.rule.clone(),
                    f.path.clone().unwrap_or_default(),
                    f.message.clone(),
                ]
            })
            .collect();
        if !rows.is_empty() {
            table(&mut out, &["SEVERITY", "CHECK", "RULE", "PATH", "MESSAGE"], &rows);
        }
    }

    if !report.check_failures.is_empty() {
        let mut failures: Vec<_> = report.check_failures.iter().collect();
        failures.sort();
        out.push('\n');
        line(&mut out, format!("Checks that could not finish: {}", failures.len()));
        for failure in failures {
            line(&mut out, format!("  {}: {}", failure.check, failure.reason));
        }
    }

    if let Some(test) = &report.functional_test {
        out.push('\n');
        let exit = test
            .exit_code
            .map_or_else(|| "no exit code".to_string(), |code| format!("exit {code}"));
        line(
            &mut out,
            format!(
                "Functional test: {} ({exit}, {} ms): {}",
                if test.passed { "passed" } else { "FAILED" },
                test.duration_ms,
                test.command.join(" ")
            ),
        );
    }

    if let Some(optimization) = &report.optimization {
        out.push('\n');
        let user = optimization
            .user_wasted_percent
            .map(|percent| format!(", {percent:.2} % of the bytes above the base layer"))
            .unwrap_or_default();
        line(
            &mut out,
            format!(
                "Optimization: efficiency {:.2} %, {} wasted{user}; {} layers, {}",
                optimization.efficiency * 100.0,
                format_bytes(optimization.wasted_bytes),
                optimization.layer_count,
                format_bytes(optimization.total_bytes)
            ),
        );
        for path in optimization
            .inefficient_paths
            .iter()
            .filter(|p| p.cumulative_bytes > 0)
            .take(OPTIMIZATION_ITEMS)
        {
            line(
                &mut out,
                format!(
                    "  {} x{} {}: {}",
                    format_bytes(path.cumulative_bytes),
                    path.count,
                    path.path,
                    path.suggestion
                ),
            );
        }
        for cache in optimization.caches.iter().take(OPTIMIZATION_ITEMS) {
            line(
                &mut out,
                format!(
                    "  {} cache {}: {}",
                    format_bytes(cache.size_bytes),
                    cache.path,
                    cache.suggestion
                ),
            );
        }
    }
    out
}

fn counts(counts: &SeverityCounts) -> String {
    format!(
        "critical {}, high {}, medium {}, low {}, unknown {}",
        counts.critical, counts.high, counts.medium, counts.low, counts.unknown
    )
}

fn line(out: &mut String, text: String) {
    out.push_str(&text);
    out.push('\n');
}

/// Columns padded to their widest cell (in characters), two spaces apart;
/// the last column is not padded.
fn table(out: &mut String, headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|header| header.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header_row: Vec<String> = headers.iter().map(|header| header.to_string()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut text = String::new();
        for (index, cell) in row.iter().enumerate() {
            if index + 1 == row.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}  ", width = widths[index]);
            }
        }
        line(out, text.trim_end().to_string());
    }
}

/// The first line of `text`, cut to `width` characters with an ellipsis.
fn shorten(text: &str, width: usize) -> String {
    let first_line = text.lines().next().unwrap_or_default().trim();
    if first_line.chars().count() <= width {
        return first_line.to_string();
    }
    let mut cut: String = first_line.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}
