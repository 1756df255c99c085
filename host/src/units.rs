//! Sizes and durations as users type them, and sizes as users read them.

use std::time::Duration;

const GB: u128 = 1_000_000_000;

/// Parses `--images-bundle-chunk-size`: a bare number is decimal gigabytes as
/// in `d8` (`0.5` = 500000000 bytes); a number with a unit is taken in that
/// unit (`B`, `kB`, `MB`, `GB`, `TB`, `KiB`, `MiB`, `GiB`, `TiB`, any case).
/// `0` means "do not split".
pub fn parse_chunk_size(text: &str) -> Result<u64, String> {
    let invalid = |why: &str| {
        Err(format!(
            "invalid size {text:?}: {why} (examples: 0.5 for 0.5 GB, 500MB, 2GiB, 0 for no chunks)"
        ))
    };
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = (&t[..split], t[split..].trim());
    if number.is_empty() {
        return if t.starts_with('-') {
            invalid("a size cannot be negative")
        } else {
            invalid("expected a number")
        };
    }
    let multiplier: u128 = match unit.to_ascii_lowercase().as_str() {
        "" => GB,
        "b" => 1,
        "kb" | "k" => 1_000,
        "mb" | "m" => 1_000_000,
        "gb" | "g" => GB,
        "tb" | "t" => 1_000 * GB,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return invalid("unknown unit"),
    };
    let Some((mantissa, scale)) = parse_decimal(number) else {
        return invalid("expected a number");
    };
    let bytes = mantissa
        .checked_mul(multiplier)
        .map(|b| b / scale)
        .and_then(|b| u64::try_from(b).ok());
    match bytes {
        // `0` alone means "no chunks"; a zero with a unit is a mistake.
        Some(0) if !unit.is_empty() => invalid("a size with a unit must be more than zero"),
        Some(b) => Ok(b),
        None => invalid("too large"),
    }
}

/// `"12.5"` → (125, 10). At most 18 fraction digits, which is far below any
/// meaningful precision of a byte count.
fn parse_decimal(number: &str) -> Option<(u128, u128)> {
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.len() > 18 || int.len() > 20 {
        return None;
    }
    let digits = format!("{int}{frac}");
    let mantissa = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    Some((mantissa, 10u128.pow(frac.len() as u32)))
}

/// Parses a duration the way Go's `time.ParseDuration` (and so `d8`) does:
/// a sequence of decimal numbers with units `ns`, `us`, `ms`, `s`, `m`, `h`,
/// e.g. `30s`, `5m`, `1h30m`, `1.5s`. `0` alone is zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = |why: &str| {
        Err(format!(
            "invalid duration {text:?}: {why} (examples: 30s, 5m, 1h30m)"
        ))
    };
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.is_empty() {
        return invalid("empty");
    }
    let mut rest = t;
    let mut total_ns: u128 = 0;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let Some((mantissa, scale)) = parse_decimal(&rest[..n]) else {
            return invalid("expected a number");
        };
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit_ns: u128 = match &rest[..u] {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return invalid("missing unit"),
            _ => return invalid("unknown unit"),
        };
        rest = &rest[u..];
        total_ns = match mantissa
            .checked_mul(unit_ns)
            .and_then(|v| total_ns.checked_add(v / scale))
        {
            Some(v) => v,
            None => return invalid("too large"),
        };
    }
    let secs = u64::try_from(total_ns / 1_000_000_000).map_err(|_| "too large".to_string())?;
    Ok(Duration::new(secs, (total_ns % 1_000_000_000) as u32))
}

/// `1536` → `1.5 KiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes() {
        assert_eq!(parse_chunk_size("0.5"), Ok(500_000_000));
        assert_eq!(parse_chunk_size("2"), Ok(2_000_000_000));
        assert_eq!(parse_chunk_size("0"), Ok(0));
        assert_eq!(parse_chunk_size("1.25"), Ok(1_250_000_000));
        assert_eq!(parse_chunk_size("1024B"), Ok(1024));
        assert_eq!(parse_chunk_size("10kB"), Ok(10_000));
        assert_eq!(parse_chunk_size("10 MB"), Ok(10_000_000));
        assert_eq!(parse_chunk_size("3GB"), Ok(3_000_000_000));
        assert_eq!(parse_chunk_size("1KiB"), Ok(1024));
        assert_eq!(parse_chunk_size("1.5MiB"), Ok(1_572_864));
        assert_eq!(parse_chunk_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_chunk_size("2gib"), Ok(2 << 30));
    }

    #[test]
    fn bad_chunk_sizes_quote_the_value() {
        for bad in [
            "-1",
            "-0.5",
            "abc",
            "",
            "1.2.3",
            "5XB",
            ".",
            "99999999999999999999999",
            "0MB",
            "0.0GiB",
            "0.1B",
        ] {
            let err = parse_chunk_size(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
        assert!(parse_chunk_size("-1").unwrap_err().contains("negative"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["30", "", "5x", "-5s", "s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
    }
}
