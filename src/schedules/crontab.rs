//! Cron expressions read the way crontab(5) reads them, and fired the way
//! cron (Vixie cron, cronie) fires them across daylight-saving changes.
//!
//! The `cron` crate matches fields; this module decides what they mean and
//! when a match fires:
//!
//! * **Fields**: `sec min hour day-of-month month day-of-week [year]`, or a
//!   shortcut (`@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`,
//!   `@midnight`, `@hourly`). Day-of-week follows crontab(5): `0` or `7` is
//!   Sunday, `1` Monday … `6` Saturday, or the names `SUN`…`SAT` (the crate
//!   itself counts 1 = Sunday). When both day fields are restricted, a day
//!   matching *either* runs, as in crontab(5).
//! * **Matching is on the wall clock** (the naive local time), then each
//!   match is placed on the time line in the zone:
//!   - a time that does not exist (the hour skipped when DST starts): a
//!     *fixed-time* schedule runs once, right after the jump; a *repeating*
//!     one just goes on after it;
//!   - a time that happens twice (the hour repeated when DST ends): a
//!     fixed-time schedule runs once, at the first pass — or at the second
//!     when it did not run at the first (the service was not running then); a
//!     repeating one runs at both, so it keeps its pace in real time.
//!
//!   A schedule is *repeating* when its hour field is `*` or `*/n` (it runs
//!   every hour, or every n hours): what cron calls a wildcard job.
//! * Fire instants are strictly increasing.

use std::str::FromStr;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, Offset, TimeZone, Timelike, Utc};

/// A parsed expression.
#[derive(Debug, Clone)]
pub struct Cron {
    /// One schedule, or two when both day fields are restricted (a day
    /// matching either runs).
    parts: Vec<cron::Schedule>,
    /// The hour field repeats (`*`, `*/n`): see the module docs.
    repeating: bool,
}

const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Cron {
    /// Parses an expression with a seconds field, or a `@` shortcut.
    pub fn parse(expr: &str) -> Result<Cron, String> {
        let text = expr.trim();
        let expanded = match text.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 0 1 1 *".to_owned(),
            "@monthly" => "0 0 0 1 * *".to_owned(),
            "@weekly" => "0 0 0 * * 0".to_owned(),
            "@daily" | "@midnight" => "0 0 0 * * *".to_owned(),
            "@hourly" => "0 0 * * * *".to_owned(),
            s if s.starts_with('@') => {
                return Err(format!(
                    "cron {expr:?}: unknown shortcut (use @yearly, @annually, @monthly, @weekly, @daily, @midnight or \
                     @hourly)"
                ));
            }
            _ => text.to_owned(),
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        match fields.len() {
            6 | 7 => {}
            5 => {
                return Err(format!(
                    "cron {expr:?} has 5 fields; schedules have a seconds field first (e.g. \"0 30 1 * * *\" is daily \
                     at 01:30)"
                ));
            }
            n => {
                return Err(format!(
                    "cron {expr:?} has {n} fields; use sec min hour day-of-month month day-of-week [year]"
                ));
            }
        }
        let dow = day_of_week(fields[5]).map_err(|e| format!("cron {expr:?}: day-of-week: {e}"))?;
        let year = fields.get(6).copied().unwrap_or("*");
        let build = |dom: &str, dow: &str| -> Result<cron::Schedule, String> {
            let s = format!("{} {} {} {dom} {} {dow} {year}", fields[0], fields[1], fields[2], fields[4]);
            cron::Schedule::from_str(&s).map_err(|e| format!("cron {expr:?} is not valid: {e}"))
        };
        // As in Vixie cron, a day field that starts with `*` is unrestricted;
        // when neither is, a day matching either runs (even `0-7`, which
        // names every day); otherwise a day must match both.
        let star = |f: &str| f.starts_with('*') || f == "?";
        let parts = if star(fields[3]) || star(fields[5]) {
            vec![build(fields[3], &dow)?]
        } else {
            vec![build(fields[3], "*")?, build("*", &dow)?]
        };
        let repeating = fields[2] == "*" || fields[2].starts_with("*/");
        Ok(Cron { parts, repeating })
    }

    /// Wall-clock times that match, strictly after `after`, in order.
    fn wall_times_after(&self, after: NaiveDateTime) -> impl Iterator<Item = NaiveDateTime> + '_ {
        let start = Utc.from_utc_datetime(&after);
        let mut iters: Vec<_> =
            self.parts.iter().map(|p| p.after_owned(start).map(|t| t.naive_utc()).peekable()).collect();
        std::iter::from_fn(move || {
            let next = iters.iter_mut().filter_map(|i| i.peek().copied()).min()?;
            for i in iters.iter_mut() {
                if i.peek() == Some(&next) {
                    i.next();
                }
            }
            Some(next)
        })
    }

    /// The first fire instant strictly after `from`, in `from`'s zone.
    /// `fired` is when the schedule last ran, if known: it decides whether a
    /// fixed-time schedule still runs at the second pass of a repeated hour.
    pub fn next_after<Tz: TimeZone>(&self, from: &DateTime<Tz>, fired: Option<&DateTime<Tz>>) -> Option<DateTime<Tz>> {
        let tz = from.timezone();
        let now_naive = from.naive_local();
        // Wall times before `from`'s are still ahead of it on the time line
        // when the clocks go back in the next hours (`from` is in the first
        // pass of a repeated hour, or just before it).
        let later = from.naive_utc() + Duration::hours(LOOKBACK_HOURS);
        let back = tz.offset_from_utc_datetime(&from.naive_utc()).fix().local_minus_utc()
            - tz.offset_from_utc_datetime(&later).fix().local_minus_utc();
        let back = Duration::seconds(i64::from(back.max(0)));
        let start = now_naive - back - Duration::seconds(1);
        // Within the repeated hour, wall-clock order is not time order: the
        // earliest candidate up to `from`'s wall time plus the shift wins.
        let window_end = now_naive + back;
        let mut best: Option<DateTime<Tz>> = None;
        for n in self.wall_times_after(start) {
            if best.is_some() && (back.is_zero() || n > window_end) {
                break;
            }
            let candidate = match placed(&tz, n) {
                LocalResult::Single(t) => Some(t),
                LocalResult::Ambiguous(a, b) => {
                    if a > *from {
                        Some(a)
                    } else if b > *from && (self.repeating || !fired.is_some_and(|f| *f >= a && *f < b)) {
                        Some(b)
                    } else {
                        None
                    }
                }
                LocalResult::None if self.repeating => None,
                LocalResult::None => after_gap(&tz, n),
            };
            if let Some(c) = candidate
                && c > *from
                && best.as_ref().is_none_or(|b| c < *b)
            {
                best = Some(c);
            }
        }
        best
    }

    /// The next `n` fire instants after `from`, strictly increasing.
    pub fn upcoming<Tz: TimeZone>(
        &self,
        from: &DateTime<Tz>,
        fired: Option<&DateTime<Tz>>,
        n: usize,
    ) -> Vec<DateTime<Tz>> {
        let mut out: Vec<DateTime<Tz>> = Vec::with_capacity(n);
        let mut at = from.clone();
        let mut last = fired.cloned();
        while out.len() < n {
            let Some(next) = self.next_after(&at, last.as_ref()) else { break };
            last = Some(next.clone());
            at = next.clone();
            out.push(next);
        }
        out
    }
}

/// How far ahead a backward clock change is looked for (no zone has had one
/// larger than two hours).
const LOOKBACK_HOURS: i64 = 3;

/// The instants a clock in `tz` shows the wall time `n` at, earliest first.
/// Only instants at which the clock really shows `n` count: a time zone
/// library may also offer the very moment of a change labelled with the
/// offset that ends there (03:00 +02:00 on the night 03:00 CEST becomes
/// 02:00 CET), which no clock shows.
fn placed<Tz: TimeZone>(tz: &Tz, n: NaiveDateTime) -> LocalResult<DateTime<Tz>> {
    let shown = |t: &DateTime<Tz>| tz.from_utc_datetime(&t.naive_utc()).naive_local() == n;
    let mut found: Vec<DateTime<Tz>> = match tz.from_local_datetime(&n) {
        LocalResult::Single(t) => vec![t],
        LocalResult::Ambiguous(x, y) => vec![x, y],
        LocalResult::None => Vec::new(),
    };
    found.retain(shown);
    found.sort();
    let mut it = found.into_iter().map(|t| tz.from_utc_datetime(&t.naive_utc()));
    match (it.next(), it.next()) {
        (Some(a), Some(b)) => LocalResult::Ambiguous(a, b),
        (Some(a), None) => LocalResult::Single(a),
        _ => LocalResult::None,
    }
}

/// The first instant after a wall time that does not exist: the moment the
/// clocks jumped, labelled as the clock shows it.
fn after_gap<Tz: TimeZone>(tz: &Tz, n: NaiveDateTime) -> Option<DateTime<Tz>> {
    let mut m = n.with_second(0)?.with_nanosecond(0)?;
    for _ in 0..(24 * 60) {
        m += Duration::minutes(1);
        match placed(tz, m) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => return Some(t),
            LocalResult::None => {}
        }
    }
    None
}

/// Reads a crontab(5) day-of-week field into day names for the `cron` crate
/// (`*` for `*` or `?`).
fn day_of_week(field: &str) -> Result<String, String> {
    if matches!(field, "*" | "?") {
        return Ok("*".to_owned());
    }
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: usize = s.parse().map_err(|_| format!("{item:?}: the step {s:?} is not a number"))?;
                if step == 0 {
                    return Err(format!("{item:?}: a step of 0"));
                }
                (r, step)
            }
            None => (item, 1),
        };
        let (lo, hi) = match range {
            "*" | "?" => (0, 6),
            r => match r.split_once('-') {
                Some((a, b)) => (day(a)?, day(b)?),
                None if step > 1 => (day(r)?, 6),
                None => {
                    let d = day(r)?;
                    (d, d)
                }
            },
        };
        // 7 is Sunday again: `5-7` is Friday to Sunday.
        if lo > hi {
            return Err(format!("{item:?}: the range goes backwards"));
        }
        for d in (lo..=hi).step_by(step) {
            days[d % 7] = true;
        }
    }
    Ok(DAYS.iter().zip(days).filter(|(_, on)| *on).map(|(n, _)| *n).collect::<Vec<_>>().join(","))
}

/// One day of the week: 0-7 (0 and 7 are Sunday) or a name.
fn day(s: &str) -> Result<usize, String> {
    if let Ok(n) = s.parse::<usize>() {
        return if n <= 7 { Ok(n) } else { Err(format!("{s} is not a day (0-7, 0 and 7 are Sunday)")) };
    }
    let upper = s.to_ascii_uppercase();
    DAYS.iter().position(|d| *d == upper).ok_or_else(|| format!("{s:?} is not a day (0-7 or SUN-SAT)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, NaiveDate, Weekday};
    use chrono_tz::Tz;

    fn at(tz: Tz, utc: &str) -> DateTime<Tz> {
        DateTime::parse_from_rfc3339(utc).unwrap().with_timezone(&tz)
    }

    fn list(expr: &str, tz: Tz, from_utc: &str, n: usize) -> Vec<String> {
        let c = Cron::parse(expr).unwrap();
        c.upcoming(&at(tz, from_utc), None, n).iter().map(|t| t.format("%Y-%m-%d %H:%M:%S %:z").to_string()).collect()
    }

    #[test]
    fn day_of_week_follows_crontab() {
        let weekday = |expr: &str| {
            let c = Cron::parse(expr).unwrap();
            let from = at(chrono_tz::UTC, "2026-11-30T12:00:00Z");
            c.upcoming(&from, None, 7).iter().map(|t| t.weekday()).collect::<Vec<_>>()
        };
        assert!(weekday("0 0 3 * * 1").iter().all(|&d| d == Weekday::Mon));
        assert!(weekday("0 0 3 * * 0").iter().all(|&d| d == Weekday::Sun));
        assert!(weekday("0 0 3 * * 7").iter().all(|&d| d == Weekday::Sun));
        assert!(weekday("0 0 3 * * sun").iter().all(|&d| d == Weekday::Sun));
        let workdays = weekday("0 0 3 * * 1-5");
        assert!(workdays.iter().all(|d| !matches!(d, Weekday::Sat | Weekday::Sun)), "{workdays:?}");
        let weekend = weekday("0 0 3 * * 6-7");
        assert!(weekend.iter().all(|d| matches!(d, Weekday::Sat | Weekday::Sun)), "{weekend:?}");
        assert!(weekday("0 0 3 * * 5-7").iter().all(|d| matches!(d, Weekday::Fri | Weekday::Sat | Weekday::Sun)));
        for bad in ["0 0 3 * * 8", "0 0 3 * * FOO", "0 0 3 * * 5-2", "0 0 3 * * */0"] {
            assert!(Cron::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn both_day_fields_restricted_means_either() {
        let from = at(chrono_tz::UTC, "2026-11-30T12:00:00Z");
        let days = |e: &str| -> Vec<u32> {
            Cron::parse(e).unwrap().upcoming(&from, None, 4).iter().map(|t| t.day()).collect()
        };
        assert_eq!(days("0 0 0 1 * MON"), [1, 7, 14, 21], "Dec 1 (1st), then Mondays");
        assert_eq!(days("0 0 0 1 * 0-7"), [1, 2, 3, 4], "every day named: every day");
        assert_eq!(days("0 0 0 1 * SUN-SAT"), [1, 2, 3, 4]);
        // A field starting with `*` is unrestricted: both must match.
        assert_eq!(days("0 0 0 */2 * MON"), [7, 21, 11, 25], "odd days that are Mondays");
        assert_eq!(days("0 0 0 1 * */2")[..1], [1], "the 1st when it is Sun/Tue/Thu/Sat (Tue 1 Dec)");
    }

    #[test]
    fn spring_forward_runs_fixed_times_once_after_the_jump() {
        let berlin = chrono_tz::Europe::Berlin;
        assert_eq!(
            list("0 45 2 * * *", berlin, "2026-03-28T11:00:00Z", 3),
            ["2026-03-29 03:00:00 +02:00", "2026-03-30 02:45:00 +02:00", "2026-03-31 02:45:00 +02:00"]
        );
        assert_eq!(
            list("0 */15 2 * * *", berlin, "2026-03-29T00:50:00Z", 2),
            ["2026-03-29 03:00:00 +02:00", "2026-03-30 02:00:00 +02:00"],
            "four matches in the missing hour run once"
        );
        // A repeating schedule just goes on after the jump.
        assert_eq!(
            list("0 30 * * * *", berlin, "2026-03-29T00:00:00Z", 3),
            ["2026-03-29 01:30:00 +01:00", "2026-03-29 03:30:00 +02:00", "2026-03-29 04:30:00 +02:00"]
        );
        let ny = chrono_tz::America::New_York;
        assert_eq!(
            list("0 30 2 * * SUN", ny, "2026-03-07T17:00:00Z", 2),
            ["2026-03-08 03:00:00 -04:00", "2026-03-15 02:30:00 -04:00"]
        );
    }

    #[test]
    fn fall_back_runs_fixed_times_once_and_repeating_ones_at_their_pace() {
        let berlin = chrono_tz::Europe::Berlin;
        assert_eq!(
            list("0 45 2 * * *", berlin, "2026-10-24T10:00:00Z", 3),
            ["2026-10-25 02:45:00 +02:00", "2026-10-26 02:45:00 +01:00", "2026-10-27 02:45:00 +01:00"]
        );
        assert_eq!(
            list("@hourly", berlin, "2026-10-24T23:30:00Z", 4),
            [
                "2026-10-25 02:00:00 +02:00",
                "2026-10-25 02:00:00 +01:00",
                "2026-10-25 03:00:00 +01:00",
                "2026-10-25 04:00:00 +01:00"
            ]
        );
        let every_minute = list("0 * * * * *", berlin, "2026-10-25T00:58:30Z", 4);
        assert_eq!(
            every_minute,
            [
                "2026-10-25 02:59:00 +02:00",
                "2026-10-25 02:00:00 +01:00",
                "2026-10-25 02:01:00 +01:00",
                "2026-10-25 02:02:00 +01:00"
            ]
        );
        // Started during the first pass, after 02:00 CEST: 02:00 and 02:45
        // run in the second pass, once.
        let c = Cron::parse("0 0 2 * * *").unwrap();
        let start = at(berlin, "2026-10-25T00:58:30Z");
        let yesterday = at(berlin, "2026-10-24T00:00:00Z");
        let next = c.next_after(&start, Some(&yesterday)).unwrap();
        assert_eq!(next, at(berlin, "2026-10-25T01:00:00Z"), "02:00 CET");
        // Ran at 02:00 CEST: not again at 02:00 CET.
        let ran = at(berlin, "2026-10-25T00:00:00.003Z");
        let next = c.next_after(&ran, Some(&ran)).unwrap();
        assert_eq!(next, at(berlin, "2026-10-26T01:00:00Z"), "tomorrow 02:00 CET");
    }

    #[test]
    fn the_end_of_a_repeated_hour_is_not_the_moment_of_the_change() {
        // 03:00 on the night 03:00 CEST becomes 02:00 CET is 03:00 CET, an
        // hour after the change, never the change itself.
        let berlin = chrono_tz::Europe::Berlin;
        assert_eq!(list("0 0 3 * * *", berlin, "2026-10-24T22:00:00Z", 1), ["2026-10-25 03:00:00 +01:00"]);
        let ny = chrono_tz::America::New_York;
        assert_eq!(list("0 0 2 * * *", ny, "2026-11-01T04:00:00Z", 1), ["2026-11-01 02:00:00 -05:00"]);
        let santiago = chrono_tz::America::Santiago;
        assert_eq!(list("@daily", santiago, "2026-04-04T12:00:00Z", 1), ["2026-04-05 00:00:00 -04:00"]);
        let lord_howe = chrono_tz::Australia::Lord_Howe;
        assert_eq!(
            list("@hourly", lord_howe, "2026-04-04T13:30:00Z", 3),
            ["2026-04-05 01:00:00 +11:00", "2026-04-05 02:00:00 +10:30", "2026-04-05 03:00:00 +10:30"]
        );
        // A time skipped when DST starts is labelled as the clock shows the jump.
        assert_eq!(list("@daily", santiago, "2026-09-05T12:00:00Z", 1), ["2026-09-06 01:00:00 -03:00"]);
    }

    #[test]
    fn zones_with_half_hour_shifts_and_utc() {
        let lord_howe = chrono_tz::Australia::Lord_Howe;
        // DST ends 2026-04-05 02:00 +11:00 → 01:30 +10:30: 01:30-01:59 twice.
        assert_eq!(
            list("0 45 1 * * *", lord_howe, "2026-04-04T10:00:00Z", 2),
            ["2026-04-05 01:45:00 +11:00", "2026-04-06 01:45:00 +10:30"]
        );
        // DST starts 2026-10-04 02:00 +10:30 → 02:30 +11:00.
        assert_eq!(
            list("0 15 2 * * *", lord_howe, "2026-10-03T10:00:00Z", 2),
            ["2026-10-04 02:30:00 +11:00", "2026-10-05 02:15:00 +11:00"]
        );
        assert_eq!(
            list("0 0 0 * * *", chrono_tz::UTC, "2026-11-30T12:00:00Z", 2),
            ["2026-12-01 00:00:00 +00:00", "2026-12-02 00:00:00 +00:00"]
        );
    }

    #[test]
    fn listed_instants_strictly_increase_in_every_zone() {
        let exprs = ["0 0 3 * * *", "@hourly", "0 */15 * * * *", "0 30 2 * * *", "0 0 */2 * * *", "*/20 * 1-3 * * *"];
        let zones = [
            chrono_tz::Europe::Berlin,
            chrono_tz::America::New_York,
            chrono_tz::Australia::Lord_Howe,
            chrono_tz::America::Santiago,
            chrono_tz::UTC,
        ];
        for tz in zones {
            for day in [
                NaiveDate::from_ymd_opt(2026, 3, 28).unwrap(),
                NaiveDate::from_ymd_opt(2026, 10, 24).unwrap(),
                NaiveDate::from_ymd_opt(2026, 4, 4).unwrap(),
                NaiveDate::from_ymd_opt(2026, 9, 5).unwrap(),
                NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            ] {
                let from = tz.from_utc_datetime(&day.and_hms_opt(12, 0, 0).unwrap());
                for e in exprs {
                    let c = Cron::parse(e).unwrap();
                    let got = c.upcoming(&from, None, 200);
                    assert_eq!(got.len(), 200, "{e} {tz}");
                    for w in got.windows(2) {
                        assert!(w[0] < w[1], "{e} in {tz} from {from}: {} then {}", w[0], w[1]);
                    }
                    assert!(got[0] > from);
                }
            }
        }
    }

    #[test]
    fn shortcuts_and_field_counts() {
        for s in ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly", "@DAILY"] {
            assert!(Cron::parse(s).is_ok(), "{s}");
        }
        assert!(Cron::parse("@reboot").is_err());
        assert!(Cron::parse("30 1 * * *").unwrap_err().contains("seconds field"));
        assert!(Cron::parse("0 0 0 1 1 * 2030").is_ok());
    }
}
