//! Cron schedules for crawlers: the five-field Unix form (`minute hour day-of-month month
//! day-of-week`) and AWS's `cron(minute hour day-of-month month day-of-week year)`, in UTC.
//!
//! Fields take `*`, `?` (same as `*`), numbers, ranges `a-b`, steps `*/n` and `a-b/n`, lists
//! `a,b`, and month and day names (`JAN`, `MON`). Day of week is 0–7 (0 and 7 are Sunday) in the
//! Unix form and 1–7 (1 is Sunday) in the AWS form. As in cron, when both day fields are
//! restricted a day matches if either does.

use chrono::{DateTime, Datelike, Duration, TimeZone, Timelike, Utc};

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// `None`: any year.
    years: Option<(i32, i32)>,
    days_restricted: bool,
    weekdays_restricted: bool,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Schedule {
    /// Parses `expr`; the error says which field is wrong.
    pub fn parse(expr: &str) -> Result<Self, String> {
        let trimmed = expr.trim();
        let (fields, aws) = match trimmed
            .strip_prefix("cron(")
            .and_then(|s| s.strip_suffix(')'))
        {
            Some(inner) => (inner.split_whitespace().collect::<Vec<_>>(), true),
            None => (trimmed.split_whitespace().collect::<Vec<_>>(), false),
        };
        let expected = if aws { 6 } else { 5 };
        if fields.len() != expected {
            return Err(format!(
                "{expected} fields expected ({}), found {}",
                if aws {
                    "cron(minute hour day-of-month month day-of-week year)"
                } else {
                    "minute hour day-of-month month day-of-week"
                },
                fields.len()
            ));
        }
        let minutes = field(fields[0], "minute", 0, 59, &[], 0)?;
        let hours = field(fields[1], "hour", 0, 23, &[], 0)?;
        let days = field(fields[2], "day-of-month", 1, 31, &[], 0)?;
        let months = field(fields[3], "month", 1, 12, &MONTHS, 1)?;
        let weekdays = if aws {
            // AWS: 1 = Sunday … 7 = Saturday; names as usual.
            let bits = field(fields[4], "day-of-week", 1, 7, &WEEKDAYS, 1)?;
            bits >> 1
        } else {
            let bits = field(fields[4], "day-of-week", 0, 7, &WEEKDAYS, 0)?;
            // 7 is Sunday too.
            (bits | ((bits >> 7) & 1)) & 0x7f
        };
        let years = match fields.get(5) {
            None => None,
            Some(y) if is_any(y) => None,
            Some(y) => {
                let (a, b) = match y.split_once('-') {
                    Some((a, b)) => (a, b),
                    None => (*y, *y),
                };
                let parse = |s: &str| {
                    s.parse::<i32>()
                        .map_err(|_| format!("year: {y:?} is not a year or a range of years"))
                };
                Some((parse(a)?, parse(b)?))
            }
        };
        if minutes == 0 || hours == 0 || days == 0 || months == 0 || weekdays == 0 {
            return Err("a field matches nothing".to_owned());
        }
        Ok(Self {
            minutes,
            hours,
            days,
            months,
            weekdays,
            years,
            // As in Vixie cron, a field starting with `*` (`*/2` too) does not restrict the day.
            days_restricted: !fields[2].starts_with('*') && fields[2] != "?",
            weekdays_restricted: !fields[4].starts_with('*') && fields[4] != "?",
        })
    }

    fn day_matches(&self, t: &DateTime<Utc>) -> bool {
        let dom = self.days & (1 << t.day()) != 0;
        let dow = self.weekdays & (1 << t.weekday().num_days_from_sunday()) != 0;
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => dom || dow,
            (true, false) => dom,
            (false, true) => dow,
            (false, false) => true,
        }
    }

    /// The first matching minute strictly after `after`, within the next five years.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = after.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        let mut day = Utc
            .with_ymd_and_hms(start.year(), start.month(), start.day(), 0, 0, 0)
            .single()?;
        let limit = start + Duration::days(5 * 366);
        while day < limit {
            let year_ok = self
                .years
                .is_none_or(|(a, b)| (a..=b).contains(&day.year()));
            if year_ok && self.months & (1 << day.month()) != 0 && self.day_matches(&day) {
                for hour in 0..24u32 {
                    if self.hours & (1 << hour) == 0 {
                        continue;
                    }
                    for minute in 0..60u32 {
                        if self.minutes & (1 << minute) == 0 {
                            continue;
                        }
                        let t = day.with_hour(hour)?.with_minute(minute)?;
                        if t >= start {
                            return Some(t);
                        }
                    }
                }
            }
            day += Duration::days(1);
        }
        None
    }
}

fn is_any(field: &str) -> bool {
    field == "*" || field == "?"
}

/// One field as a bit set. `names[i]` stands for `i + name_base`.
fn field(
    text: &str,
    name: &str,
    min: u32,
    max: u32,
    names: &[&str],
    name_base: u32,
) -> Result<u64, String> {
    let bad = |why: &str| format!("{name}: {text:?} {why}");
    let value = |s: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(i as u32 + name_base);
        }
        let v: u32 = s.parse().map_err(|_| bad("is not a number or a name"))?;
        if v < min || v > max {
            return Err(bad(&format!("is out of range {min}-{max}")));
        }
        Ok(v)
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .map_err(|_| bad("has a step that is not a number"))?;
                if step == 0 {
                    return Err(bad("has a step of 0"));
                }
                if step > max {
                    return Err(bad(&format!("has a step larger than {max}")));
                }
                (r, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = if is_any(range) {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            // `5/15` means from 5 to the end in steps of 15.
            (v, if part.contains('/') { max } else { v })
        };
        if lo > hi {
            return Err(bad("has a range that runs backwards"));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn every_fifteen_minutes() {
        let s = Schedule::parse("*/15 * * * *").expect("parse");
        assert_eq!(
            s.next_after(at("2026-01-01T10:07:30Z")),
            Some(at("2026-01-01T10:15:00Z"))
        );
        assert_eq!(
            s.next_after(at("2026-01-01T10:45:00Z")),
            Some(at("2026-01-01T11:00:00Z"))
        );
    }

    #[test]
    fn weekdays_at_a_time_and_aws_form() {
        let unix = Schedule::parse("30 2 * * MON-FRI").expect("unix");
        // 2026-01-03 is a Saturday: the next run is Monday the 5th.
        assert_eq!(
            unix.next_after(at("2026-01-02T03:00:00Z")),
            Some(at("2026-01-05T02:30:00Z"))
        );
        let aws = Schedule::parse("cron(30 2 ? * 2-6 *)").expect("aws");
        assert_eq!(
            aws.next_after(at("2026-01-02T03:00:00Z")),
            Some(at("2026-01-05T02:30:00Z"))
        );
        let sunday = Schedule::parse("0 0 * * 7").expect("7 is Sunday");
        assert_eq!(
            sunday.next_after(at("2026-01-01T00:00:00Z")),
            Some(at("2026-01-04T00:00:00Z"))
        );
    }

    #[test]
    fn bad_schedules_name_the_field() {
        for (expr, needle) in [
            ("* * *", "5 fields"),
            ("61 * * * *", "minute"),
            ("* 24 * * *", "hour"),
            ("* * * FOO *", "month"),
            ("*/0 * * * *", "step of 0"),
            ("cron(* * * * *)", "6 fields"),
            ("0 0 31 2 *", "nothing"),
        ] {
            let result = Schedule::parse(expr).and_then(|s| {
                s.next_after(at("2026-01-01T00:00:00Z"))
                    .map(|_| s)
                    .ok_or_else(|| "matches nothing".to_owned())
            });
            let err = result.expect_err(expr);
            assert!(err.contains(needle), "{expr}: {err}");
        }
    }
}
