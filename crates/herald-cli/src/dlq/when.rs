//! `--since` / `--until` values: an RFC 3339 time, or a duration meaning
//! "that long ago" (`2h`, `30m`, `1h30m`, `7d`).

use herald_core::time::now_ms;

/// clap value parser: the time in ms since the epoch.
pub fn parse_when_arg(s: &str) -> Result<i64, String> {
    parse_when(s, now_ms())
}

/// `s` as ms since the epoch: an RFC 3339 time (or a `YYYY-MM-DD` date,
/// midnight UTC), else a duration before `now`.
pub fn parse_when(s: &str, now: i64) -> Result<i64, String> {
    let s = s.trim();
    if let Some(t) = parse_rfc3339(s) {
        return Ok(t);
    }
    parse_duration_ms(s).map(|d| now - d).ok_or_else(|| {
        format!("`{s}` is neither a duration (2h, 30m, 1h30m, 7d) nor an RFC 3339 time (2025-06-01T12:00:00Z)")
    })
}

/// `2h`, `90s`, `1h30m`, `500ms`, `7d`, `1w` as milliseconds.
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: i64 = rest[..digits].parse().ok()?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" | "sec" | "secs" => 1_000,
            "m" | "min" | "mins" => 60_000,
            "h" | "hr" | "hrs" => 3_600_000,
            "d" | "day" | "days" => 86_400_000,
            "w" | "week" | "weeks" => 7 * 86_400_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
        rest = rest[unit_len..].trim_start();
    }
    Some(total)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn num(s: &str) -> Option<i64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)`, `T` or a space between, or a bare
/// `YYYY-MM-DD` (UTC midnight).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    if s.len() < 10 || !s.is_char_boundary(10) {
        return None;
    }
    let (date, rest) = s.split_at(10);
    let mut dp = date.split('-');
    let (y, mo, d) = (num(dp.next()?)?, num(dp.next()?)?, num(dp.next()?)?);
    if date.as_bytes()[4] != b'-' || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    if rest.is_empty() {
        return Some(days * 86_400_000);
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let (clock, offset_ms) = if let Some(c) = rest.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else {
        let at = rest.rfind(['+', '-'])?;
        let (c, off) = rest.split_at(at);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off[1..].split_once(':')?;
        let (oh, om) = (num(oh)?, num(om)?);
        (c, sign * (oh * 3_600_000 + om * 60_000))
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let mut tp = hms.split(':');
    let (h, mi) = (num(tp.next()?)?, num(tp.next()?)?);
    let sec = tp.next().map(num).unwrap_or(Some(0))?;
    if tp.next().is_some() || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let ms = if frac.is_empty() {
        0
    } else {
        num(frac)?;
        format!("{frac:0<3}")[..3].parse::<i64>().ok()?
    };
    Some(days * 86_400_000 + h * 3_600_000 + mi * 60_000 + sec * 1_000 + ms - offset_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::time::rfc3339_ms;

    #[test]
    fn durations_mean_that_long_ago() {
        assert_eq!(parse_duration_ms("2h"), Some(7_200_000));
        assert_eq!(parse_duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration_ms("1h 30m"), Some(5_400_000));
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("7d"), Some(604_800_000));
        assert_eq!(parse_duration_ms("2"), None, "a unit is required");
        assert_eq!(parse_duration_ms("h"), None);
        assert_eq!(parse_duration_ms("2 fortnights"), None);
        assert_eq!(parse_when("2h", 10_000_000), Ok(2_800_000));
    }

    #[test]
    fn rfc3339_times() {
        for ms in [0, 951_782_400_007, 1_795_000_000_000] {
            assert_eq!(parse_rfc3339(&rfc3339_ms(ms)), Some(ms));
        }
        assert_eq!(parse_rfc3339("2000-02-29"), Some(951_782_400_000));
        assert_eq!(
            parse_rfc3339("2000-02-29T02:00:00+02:00"),
            Some(951_782_400_000)
        );
        assert_eq!(
            parse_rfc3339("2000-02-28 23:30:00.5-00:30"),
            Some(951_782_400_500)
        );
        assert_eq!(parse_rfc3339("2000-02-29T00:00Z"), Some(951_782_400_000));
        for bad in [
            "2000-13-01",
            "2000-02-29T25:00:00Z",
            "yesterday",
            "2000-02-29T00:00:00",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        assert!(parse_when("tomorrow", 0).is_err());
    }
}
