//! Parsing of human quantities used on the command line: memory sizes and cpu counts.

/// Parses a memory size such as `64m`, `1g`, `512k`, `1048576` or `64MiB` into bytes.
pub fn parse_memory(input: &str) -> Result<u64, String> {
    let s = input.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err(format!("invalid memory size {input:?}: expected a number such as 64m"));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("invalid memory size {input:?}: number too large"))?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "invalid memory size {input:?}: unknown unit {unit:?} (use b, k, m, g or t)"
            ))
        }
    };
    let bytes = n
        .checked_mul(mult)
        .ok_or_else(|| format!("invalid memory size {input:?}: too large"))?;
    // Below this the kernel or the container's own runtime cannot start a process.
    if bytes < 6 * 1024 * 1024 {
        return Err(format!("invalid memory size {input:?}: minimum is 6m"));
    }
    Ok(bytes)
}

/// Parses a cpu count such as `0.5` or `2` into nano-cpus (1 cpu = 1e9).
pub fn parse_cpus(input: &str) -> Result<u64, String> {
    let v: f64 = input
        .trim()
        .parse()
        .map_err(|_| format!("invalid --cpus value {input:?}: expected a number such as 0.5"))?;
    if !v.is_finite() || v <= 0.0 {
        return Err(format!("invalid --cpus value {input:?}: must be greater than 0"));
    }
    if v < 0.01 {
        return Err(format!("invalid --cpus value {input:?}: minimum is 0.01"));
    }
    if v > 1024.0 {
        return Err(format!("invalid --cpus value {input:?}: maximum is 1024"));
    }
    Ok((v * 1e9).round() as u64)
}

/// Formats a byte count the way `docker images` does (`4.2MB`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < UNITS.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
            + UNITS[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        let cases = [
            ("64m", Ok(64 << 20)),
            ("1g", Ok(1 << 30)),
            ("64MiB", Ok(64 << 20)),
            ("8388608", Ok(8 << 20)),
            ("1k", Err("minimum is 6m")),
            ("", Err("expected a number")),
            ("abc", Err("expected a number")),
            ("12x", Err("unknown unit")),
            ("99999999999999999999", Err("too large")),
        ];
        for (input, want) in cases {
            match (parse_memory(input), want) {
                (Ok(got), Ok(w)) => assert_eq!(got, w, "{input}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{input}: {e}"),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn cpus() {
        assert_eq!(parse_cpus("0.5"), Ok(500_000_000));
        assert_eq!(parse_cpus("2"), Ok(2_000_000_000));
        assert!(parse_cpus("0").unwrap_err().contains("greater than 0"));
        assert!(parse_cpus("-1").unwrap_err().contains("greater than 0"));
        assert!(parse_cpus("half").unwrap_err().contains("expected a number"));
        assert!(parse_cpus("NaN").is_err());
    }

    #[test]
    fn sizes_for_humans() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_200_000), "4.2MB");
        assert_eq!(human_size(1_000_000_000), "1GB");
    }
}
