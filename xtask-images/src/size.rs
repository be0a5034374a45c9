//! Byte sizes as written in config (`500MB`, `1.5 GiB`, `1048576`) and as shown to people.

/// Parses a size. Decimal units (kB, MB, GB, TB) are powers of 1000, as `podman images` shows
/// them; binary units (KiB, MiB, GiB, TiB) are powers of 1024. A bare number is bytes.
pub fn parse(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    let factor: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "`{text}` has an unknown unit `{unit}`; use B, kB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB"
            ))
        }
    };
    let value: f64 = num.parse().map_err(|_| {
        format!("`{text}` is not a size; write it like `500MB`, `1.5GiB` or `1048576`")
    })?;
    let bytes = value * factor as f64;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(format!("`{text}` is too large"));
    }
    Ok(bytes.round() as u64)
}

/// `412.3 MB`, in the decimal units podman uses.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let cases: &[(&str, u64)] = &[
            ("500MB", 500_000_000),
            ("500 MB", 500_000_000),
            ("1.5GiB", 1_610_612_736),
            ("1048576", 1_048_576),
            ("10kb", 10_000),
            ("0", 0),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), Ok(*want), "{text}");
        }
    }

    #[test]
    fn rejects() {
        assert!(parse("500 parsecs")
            .unwrap_err()
            .contains("unknown unit `parsecs`"));
        assert!(parse("MB").unwrap_err().contains("not a size"));
        assert!(parse("1.2.3MB").unwrap_err().contains("not a size"));
    }

    #[test]
    fn shows() {
        assert_eq!(human(999), "999 B");
        assert_eq!(human(412_345_678), "412.3 MB");
    }
}
