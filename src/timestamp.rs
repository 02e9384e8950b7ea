//! Time: the injectable clock, and the one stored timestamp form
//! (RFC 3339, millisecond precision, the server's UTC offset at that instant).

use chrono::{DateTime, Datelike, FixedOffset, Local, NaiveDateTime, TimeZone, Timelike};

/// Where "now" comes from. Tests substitute a fixed or stepping clock so that
/// file names, rollovers and retention are checked without sleeping.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<FixedOffset>;
}

/// The system clock, in the server's local time zone.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<FixedOffset> {
        Local::now().fixed_offset()
    }
}

/// A clock that stands still until moved.
/// The same instant at an offset of whole minutes: RFC 3339 offsets have no
/// seconds, and some zones' old local mean times had them (Africa/Monrovia
/// was −00:44:30 until 1972). The seconds are dropped from the offset and
/// the wall time moves with them, so the instant stays exact.
fn whole_minute_offset(t: &DateTime<FixedOffset>) -> DateTime<FixedOffset> {
    let off = t.offset().local_minus_utc();
    match FixedOffset::east_opt(off - off % 60) {
        Some(o) if off % 60 != 0 => t.with_timezone(&o),
        _ => *t,
    }
}

/// Formats an instant in the stored form, e.g. `2026-11-22T09:45:37.120+01:00`.
/// The year must be within 0001..9999 at that offset ([`normalize`] makes
/// sure of it for client times; the clock's are).
pub fn format(t: &DateTime<FixedOffset>) -> String {
    let t = &whole_minute_offset(t);
    let mut out = String::with_capacity(29);
    push_digits(&mut out, t.year().clamp(0, 9999) as u32, 4);
    out.push('-');
    push_digits(&mut out, t.month(), 2);
    out.push('-');
    push_digits(&mut out, t.day(), 2);
    out.push('T');
    push_digits(&mut out, t.hour(), 2);
    out.push(':');
    push_digits(&mut out, t.minute(), 2);
    out.push(':');
    // chrono keeps a leap second as second 59 with 1_000_000_000 ns or more.
    let leap = t.nanosecond() >= 1_000_000_000;
    push_digits(&mut out, t.second() + u32::from(leap), 2);
    out.push('.');
    push_digits(&mut out, (t.nanosecond() % 1_000_000_000) / 1_000_000, 3);
    let off = t.offset().local_minus_utc();
    out.push(if off < 0 { '-' } else { '+' });
    let off = off.unsigned_abs() / 60;
    push_digits(&mut out, off / 60, 2);
    out.push(':');
    push_digits(&mut out, off % 60, 2);
    out
}

fn push_digits(out: &mut String, mut v: u32, width: usize) {
    let mut buf = [b'0'; 10];
    for i in (0..width).rev() {
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.push_str(std::str::from_utf8(&buf[..width]).unwrap_or("0"));
}

/// Parses any RFC 3339 timestamp.
pub fn parse(s: &str) -> Result<DateTime<FixedOffset>, String> {
    DateTime::parse_from_rfc3339(s.trim())
        .map_err(|e| format!("{s:?} is not an RFC 3339 timestamp such as 2026-11-22T09:45:37.120+01:00 ({e})"))
}

/// Brings a submitted timestamp to the stored form. `Ok(None)` means the input
/// is already exactly in that form and can be kept as it is. A leap second
/// (second 60) is kept as it is when one was inserted then, and refused
/// otherwise.
pub fn normalize(s: &str) -> Result<Option<String>, String> {
    normalize_at(s, |t| Local.from_utc_datetime(&t.naive_utc()).fixed_offset())
}

/// [`normalize`], with `local` giving an instant in the server's time zone.
fn normalize_at(
    s: &str,
    local: impl Fn(&DateTime<FixedOffset>) -> DateTime<FixedOffset>,
) -> Result<Option<String>, String> {
    let t = parse(s)?;
    if !(1..=9999).contains(&t.year()) {
        return Err(format!("{s:?} is outside the years 0001..9999"));
    }
    if t.nanosecond() >= 1_000_000_000 && !is_leap_second(&t) {
        return Err(format!(
            "{s:?} has second 60, but no leap second was inserted then (leap seconds come at 23:59:60 UTC at the end \
             of the days listed in IERS Bulletin C; the last was 2016-12-31)"
        ));
    }
    let local = whole_minute_offset(&local(&t));
    if !(1..=9999).contains(&local.year()) {
        return Err(format!(
            "{s:?} is in the year {} in the server's time zone (UTC{}), outside the years 0001..9999 a timestamp \
             is stored in",
            local.year(),
            local.offset()
        ));
    }
    let stored = format(&local);
    Ok(if stored == s { None } else { Some(stored) })
}

/// Milliseconds since the epoch of a stored (or any RFC 3339) timestamp. The
/// epoch count has no room for a leap second: every instant in one is taken as
/// the last millisecond before it ends, so it sorts after 23:59:59.xxx and
/// before the next day's 00:00:00.000.
pub fn millis(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| epoch_millis(&t))
}

fn epoch_millis(t: &DateTime<FixedOffset>) -> i64 {
    if t.nanosecond() >= 1_000_000_000 { t.timestamp() * 1000 + 999 } else { t.timestamp_millis() }
}

/// UTC days at whose end a leap second (23:59:60) was inserted, from IERS
/// Bulletin C (also tzdata's `leap-seconds.list`). None has been announced
/// since 2016, and the CGPM decided in 2022 to stop adding them by 2035.
const LEAP_SECOND_DAYS: [(i32, u32, u32); 27] = [
    (1972, 6, 30),
    (1972, 12, 31),
    (1973, 12, 31),
    (1974, 12, 31),
    (1975, 12, 31),
    (1976, 12, 31),
    (1977, 12, 31),
    (1978, 12, 31),
    (1979, 12, 31),
    (1981, 6, 30),
    (1982, 6, 30),
    (1983, 6, 30),
    (1985, 6, 30),
    (1987, 12, 31),
    (1989, 12, 31),
    (1990, 12, 31),
    (1992, 6, 30),
    (1993, 6, 30),
    (1994, 6, 30),
    (1995, 12, 31),
    (1997, 6, 30),
    (1998, 12, 31),
    (2005, 12, 31),
    (2008, 12, 31),
    (2012, 6, 30),
    (2015, 6, 30),
    (2016, 12, 31),
];

/// Whether an instant in second 60 is a leap second that was inserted.
fn is_leap_second(t: &DateTime<FixedOffset>) -> bool {
    let u = t.naive_utc();
    (u.hour(), u.minute(), u.second()) == (23, 59, 59) && LEAP_SECOND_DAYS.contains(&(u.year(), u.month(), u.day()))
}

/// Parses a filter bound given by a user: RFC 3339, `YYYY-MM-DD HH:MM[:SS]`
/// (local time), or a date `YYYY-MM-DD` (local midnight; with `end_of_day`,
/// the last millisecond of that day, so `--to 2026-11-30` includes the 30th).
///
/// A local time that happens twice (the hour repeated when daylight saving
/// time ends) covers both: a start bound takes the first instant, an end
/// bound the second.
pub fn parse_bound(s: &str, end_of_day: bool) -> Result<i64, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(epoch_millis(&t));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(s, fmt) {
            return local_millis(n, s, end_of_day);
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let n = if end_of_day { d.and_hms_milli_opt(23, 59, 59, 999) } else { d.and_hms_opt(0, 0, 0) };
        return local_millis(n.ok_or_else(|| format!("{s:?} is not a valid date"))?, s, end_of_day);
    }
    Err(format!(
        "{s:?} is not a time: use RFC 3339 (2026-11-22T09:45:37+01:00), local `2026-11-22 09:45:37`, or a date `2026-11-22`"
    ))
}

fn local_millis(n: NaiveDateTime, s: &str, end: bool) -> Result<i64, String> {
    // Second 60 (a leap second) is the last millisecond of second 59, as in
    // [`millis`].
    let (n, leap) =
        if n.nanosecond() >= 1_000_000_000 { (n.with_nanosecond(0).unwrap_or(n), true) } else { (n, false) };
    let ms = |t: DateTime<Local>| if leap { t.timestamp() * 1000 + 999 } else { t.timestamp_millis() };
    match Local.from_local_datetime(&n) {
        chrono::LocalResult::Single(t) => Ok(ms(t)),
        chrono::LocalResult::Ambiguous(a, b) => {
            let (a, b) = (ms(a), ms(b));
            Ok(if end { a.max(b) } else { a.min(b) })
        }
        chrono::LocalResult::None => Err(format!(
            "{s:?} does not exist in the local time zone (the hour skipped when daylight saving time starts); give \
             an offset, e.g. {}+01:00",
            n.format("%Y-%m-%dT%H:%M:%S")
        )),
    }
}

/// The `YYYYMMDDHHMMSS` stamp of a file name.
#[cfg(test)]
pub fn file_stamp(t: &DateTime<FixedOffset>) -> String {
    t.format("%Y%m%d%H%M%S").to_string()
}

/// Parses a `YYYYMMDDHHMMSS` stamp back (as a naive local time).
pub fn parse_file_stamp(s: &str) -> Option<NaiveDateTime> {
    if s.len() != 14 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveDateTime::parse_from_str(s, "%Y%m%d%H%M%S").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_instant_is_the_submitted_one_at_any_server_offset_or_it_is_refused() {
        let zones: Vec<FixedOffset> =
            [-12 * 3600, -(44 * 60 + 30), -(10 * 3600 + 29 * 60 + 20), 0, 19 * 60 + 32, 14 * 3600, 5 * 3600 + 1799]
                .into_iter()
                .map(|s| FixedOffset::east_opt(s).unwrap())
                .collect();
        let inputs = [
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999-00:44",
            "2026-11-30T12:34:56.789+05:30",
            "0001-01-01T00:00:00+14:00",
            "0001-01-01T11:00:00Z",
            "9999-12-31T23:59:59-12:00",
            "9999-12-31T10:00:00Z",
            "2016-12-31T23:59:60.500Z",
        ];
        for zone in &zones {
            let at = |t: &DateTime<FixedOffset>| t.with_timezone(zone);
            for input in inputs {
                match normalize_at(input, at) {
                    Ok(stored) => {
                        let stored = stored.unwrap_or_else(|| input.to_owned());
                        assert_eq!(millis(&stored), millis(input), "{input} at UTC{zone} stored as {stored}");
                        // What is stored can be submitted again, unchanged.
                        assert_eq!(normalize_at(&stored, at), Ok(None), "{stored} at UTC{zone}");
                    }
                    Err(e) => {
                        let year = at(&parse(input).unwrap()).year();
                        assert!(!(1..=9999).contains(&year), "{input} at UTC{zone} refused: {e}");
                    }
                }
            }
        }
    }

    #[test]
    fn format_is_fixed_width_with_millis() {
        let t = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.006789-05:30").unwrap();
        assert_eq!(format(&t), "2026-01-02T03:04:05.006-05:30");
        let t = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z").unwrap();
        assert_eq!(format(&t), "2026-01-02T03:04:05.000+00:00");
    }

    #[test]
    fn normalize_rejects_garbage() {
        assert!(normalize("2026-13-01T00:00:00Z").is_err());
        assert!(normalize("yesterday").is_err());
        assert!(normalize("2026-11-22 09:45:37").is_err(), "offset required");
    }

    #[test]
    fn bounds() {
        let a = parse_bound("2026-11-22", false).unwrap();
        let b = parse_bound("2026-11-22", true).unwrap();
        assert_eq!(b - a, 86_400_000 - 1);
        assert!(parse_bound("soon", false).is_err());
    }

    #[test]
    fn leap_seconds_are_kept_when_real_and_refused_otherwise() {
        assert!(normalize("2016-12-31T23:59:60.500Z").unwrap().unwrap().contains(":60.500"));
        assert!(normalize("2017-01-01T00:59:60.250+01:00").unwrap().unwrap().contains(":60.250"));
        for bad in ["2026-11-30T10:17:60Z", "2016-12-30T23:59:60Z", "2016-12-31T23:58:60Z"] {
            assert!(normalize(bad).unwrap_err().contains("no leap second"), "{bad}");
        }
        // A leap second sorts after 23:59:59.9 and before the next day.
        let leap = millis("2016-12-31T23:59:60.500Z").unwrap();
        assert!(leap > millis("2016-12-31T23:59:59.900Z").unwrap());
        assert!(leap < millis("2017-01-01T00:00:00.000Z").unwrap());
    }

    #[test]
    fn stamps_round_trip() {
        let t = DateTime::parse_from_rfc3339("2026-11-22T09:45:37.120+01:00").unwrap();
        assert_eq!(file_stamp(&t), "20261122094537");
        assert!(parse_file_stamp("20261122094537").is_some());
        assert!(parse_file_stamp("2026112209453x").is_none());
    }
}
