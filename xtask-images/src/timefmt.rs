//! Calendar dates from Unix time, in UTC (days-from-civil, after H. Hinnant), so tags and labels
//! need no date crate.

/// `(year, month, day, hour, minute, second)` in UTC.
fn civil(epoch: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, secs / 3600, secs % 3600 / 60, secs % 60)
}

/// `2025-01-15T10:30:00Z`
pub fn rfc3339(epoch: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(epoch);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `20250115`
pub fn yyyymmdd(epoch: i64) -> String {
    let (y, mo, d, ..) = civil(epoch);
    format!("{y:04}{mo:02}{d:02}")
}

/// `2027-03-01` → Unix time of that day's start (UTC); None unless a real `YYYY-MM-DD` date.
pub fn parse_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i64 = s[..4].parse().ok()?;
    let m: i64 = s[5..7].parse().ok()?;
    let d: i64 = s[8..].parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let (yy, mm) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * mm + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let epoch = (era * 146_097 + doe - 719_468) * 86_400;
    // 2027-02-30 would land in March: not a date.
    (yyyymmdd(epoch) == s.replace('-', "")).then_some(epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dates() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2000-02-29"), Some(951_782_400));
        assert_eq!(
            parse_date("2027-03-01").map(rfc3339).as_deref(),
            Some("2027-03-01T00:00:00Z")
        );
        assert_eq!(parse_date("2027-02-30"), None);
        assert_eq!(parse_date("2027-3-1"), None);
        assert_eq!(parse_date("tomorrow"), None);
    }

    #[test]
    fn dates() {
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_736_937_000, "2025-01-15T10:30:00Z"),
            (4_107_542_399, "2100-02-28T23:59:59Z"),
            (-1, "1969-12-31T23:59:59Z"),
        ];
        for (epoch, want) in cases {
            assert_eq!(rfc3339(epoch), want, "{epoch}");
        }
        assert_eq!(yyyymmdd(1_736_937_000), "20250115");
    }
}
