//! Cron schedule maths: parsing five-field expressions and finding the next firing time in an
//! IANA time zone.
//!
//! # Syntax
//!
//! `minute hour day-of-month month day-of-week`, fields separated by whitespace:
//!
//! | field | values | names |
//! |---|---|---|
//! | minute | 0-59 | |
//! | hour | 0-23 | |
//! | day of month | 1-31 | |
//! | month | 1-12 | `JAN`-`DEC` |
//! | day of week | 0-7, 0 and 7 are Sunday | `SUN`-`SAT` |
//!
//! Each field is a comma-separated list of `*`, `N`, `A-B`, `*/S`, `A-B/S` or `N/S` (the last
//! one, an extension, means `N-max/S`). Names are three letters, case-insensitive, and work
//! wherever a number does (`MON-FRI`). The macros `@yearly`/`@annually`, `@monthly`, `@weekly`,
//! `@daily`/`@midnight` and `@hourly` stand for the usual expressions; `@reboot` has no meaning
//! here and is rejected.
//!
//! # Day matching
//!
//! As in Vixie cron: if both day fields are restricted, a day matches when *either* matches
//! (`0 0 13 * FRI` fires on every 13th and on every Friday); otherwise both must match. A
//! field counts as unrestricted when it starts with `*`, which includes `*/2`: so
//! `0 0 */2 * MON` fires on odd-numbered days that are Mondays, exactly as Vixie cron does.
//!
//! # Time zones and daylight saving
//!
//! The expression is matched against the wall clock of the schedule's zone, at minute
//! resolution, and results are returned in UTC.
//!
//! - **Gap (clocks spring forward).** A matching wall-clock minute that does not exist that day
//!   fires at the first minute that exists after the gap (`30 2 * * *` in Europe/Berlin fires at
//!   03:00 CEST on the last Sunday of March). Daily jobs therefore still run daily, and several
//!   matches inside the gap collapse into that one firing. This is also what Vixie cron does for
//!   fixed-time jobs.
//! - **Overlap (clocks fall back).** A wall-clock minute that happens twice fires once, at its
//!   first occurrence. During the repeated hour nothing fires again, so `*/15 * * * *` pauses
//!   for that hour instead of running twice as often.
//!
//! # Cost
//!
//! [`CronSchedule::next_after`] jumps field by field (to the next matching month, then day,
//! then hour, then minute, each found with bit operations) and never steps minute by minute. A
//! call costs a few iterations per month it crosses. Expressions that can never match
//! (`0 0 30 2 *`) are recognised when parsed and return `None` at once; as a safety net the
//! search gives up after 400 years, the period of the Gregorian calendar, after which every
//! date and weekday combination has occurred.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use std::fmt;
use std::iter::FusedIterator;
use std::str::FromStr;

/// A parsed cron expression bound to a time zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronSchedule {
    expression: String,
    tz: Tz,
    /// Bit `m` set: minute `m` matches.
    minutes: u64,
    /// Bit `h`: hour `h`.
    hours: u64,
    /// Bit `d` for day of month `d` (1-31).
    days: u64,
    /// Bit `m` for month `m` (1-12).
    months: u64,
    /// Bit `w` for weekday `w`, Sunday = 0 (7 folded into 0).
    weekdays: u64,
    rule: DayRule,
    /// Proven at parse time never to match.
    never: bool,
}

/// How the two day fields combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DayRule {
    /// At least one day field is unrestricted: both must match.
    Both,
    /// Both are restricted: either may match.
    Either,
}

/// One of the five fields, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CronField {
    /// Minute, 0-59.
    Minute,
    /// Hour, 0-23.
    Hour,
    /// Day of month, 1-31.
    DayOfMonth,
    /// Month, 1-12 or `JAN`-`DEC`.
    Month,
    /// Day of week, 0-7 or `SUN`-`SAT`.
    DayOfWeek,
}

impl fmt::Display for CronField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::DayOfMonth => "day-of-month",
            Self::Month => "month",
            Self::DayOfWeek => "day-of-week",
        })
    }
}

/// What is wrong with a token of a field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldProblem {
    /// Nothing between two commas, or an empty side of `-` or `/`.
    #[error("empty value")]
    Empty,
    /// Neither a number nor a name valid in this field.
    #[error("`{0}` is not a number or a name of this field")]
    NotAValue(String),
    /// A number outside the field's range.
    #[error("{value} is outside {min}-{max}")]
    OutOfRange {
        /// The value given.
        value: u32,
        /// Smallest allowed.
        min: u32,
        /// Largest allowed.
        max: u32,
    },
    /// A step that is not a positive number.
    #[error("step `{0}` is not a positive number")]
    BadStep(String),
    /// `A-B` with `A > B`.
    #[error("range {start}-{end} runs backwards")]
    ReversedRange {
        /// Start of the range.
        start: u32,
        /// End of the range.
        end: u32,
    },
}

/// Why an expression could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CronError {
    /// The expression is empty or only whitespace.
    #[error("empty cron expression")]
    Empty,
    /// Not five fields.
    #[error("expected 5 fields (minute hour day-of-month month day-of-week), found {found}")]
    FieldCount {
        /// Fields found.
        found: usize,
    },
    /// An `@` word that is not a supported macro (`@reboot` included).
    #[error("unsupported macro `{0}`")]
    UnknownMacro(String),
    /// A field contains a bad token.
    #[error("{field} field: {problem} (in `{token}`)")]
    Field {
        /// The field.
        field: CronField,
        /// The comma-separated element that failed, as written.
        token: String,
        /// What is wrong with it.
        problem: FieldProblem,
    },
    /// The time zone name is not in the IANA database.
    #[error("unknown time zone `{0}`")]
    UnknownTimeZone(String),
}

struct FieldSpec {
    field: CronField,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MONTH_NAMES: [&str; 12] = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const SPECS: [FieldSpec; 5] = [
    FieldSpec { field: CronField::Minute, min: 0, max: 59, names: &[] },
    FieldSpec { field: CronField::Hour, min: 0, max: 23, names: &[] },
    FieldSpec { field: CronField::DayOfMonth, min: 1, max: 31, names: &[] },
    FieldSpec { field: CronField::Month, min: 1, max: 12, names: &MONTH_NAMES },
    FieldSpec { field: CronField::DayOfWeek, min: 0, max: 7, names: &DAY_NAMES },
];

/// Longest a month can be, by month number (February counts its leap day).
const MAX_DAYS: [u32; 13] = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/// The search horizon; see the module docs.
const SEARCH_YEARS: i32 = 400;

impl FieldSpec {
    fn value(&self, text: &str) -> Result<u32, FieldProblem> {
        if text.is_empty() {
            return Err(FieldProblem::Empty);
        }
        let value = if text.bytes().all(|byte| byte.is_ascii_digit()) {
            text.parse::<u32>().map_err(|_| FieldProblem::NotAValue(text.to_owned()))?
        } else {
            let offset = if self.field == CronField::Month { 1 } else { 0 };
            self.names
                .iter()
                .position(|name| name.eq_ignore_ascii_case(text))
                .map(|index| index as u32 + offset)
                .ok_or_else(|| FieldProblem::NotAValue(text.to_owned()))?
        };
        if value < self.min || value > self.max {
            return Err(FieldProblem::OutOfRange { value, min: self.min, max: self.max });
        }
        Ok(value)
    }

    /// Bits of one comma-separated element.
    fn element(&self, element: &str) -> Result<u64, FieldProblem> {
        let (range, step) = match element.split_once('/') {
            Some((range, step)) => {
                let step = match step.parse::<u32>() {
                    Ok(step) if step > 0 => step,
                    _ => return Err(FieldProblem::BadStep(step.to_owned())),
                };
                (range, Some(step))
            }
            None => (element, None),
        };
        let (start, end) = if range == "*" {
            (self.min, self.max)
        } else if let Some((start, end)) = range.split_once('-') {
            let (start, end) = (self.value(start)?, self.value(end)?);
            if start > end {
                return Err(FieldProblem::ReversedRange { start, end });
            }
            (start, end)
        } else {
            let start = self.value(range)?;
            // `N/S` runs to the end of the field; a bare `N` is just N.
            (start, if step.is_some() { self.max } else { start })
        };
        let step = step.unwrap_or(1) as usize;
        Ok((start..=end).step_by(step).fold(0, |bits, value| bits | 1 << value))
    }

    fn parse(&self, text: &str) -> Result<u64, CronError> {
        text.split(',').try_fold(0, |bits, element| {
            self.element(element).map(|more| bits | more).map_err(|problem| CronError::Field {
                field: self.field,
                token: element.to_owned(),
                problem,
            })
        })
    }
}

/// The lowest set bit of `mask` at or above `from`.
fn next_bit(mask: u64, from: u32) -> Option<u32> {
    let above = if from >= 64 { 0 } else { mask & (u64::MAX << from) };
    (above != 0).then(|| above.trailing_zeros())
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if !is_leap(year) => 28,
        _ => MAX_DAYS.get(month as usize).copied().unwrap_or(0),
    }
}

fn floor_minute(time: NaiveDateTime) -> NaiveDateTime {
    time.with_second(0).and_then(|time| time.with_nanosecond(0)).unwrap_or(time)
}

impl CronSchedule {
    /// Parses `expression`, to be read on the wall clock of `tz`.
    pub fn parse(expression: &str, tz: Tz) -> Result<Self, CronError> {
        let trimmed = expression.trim();
        if trimmed.is_empty() {
            return Err(CronError::Empty);
        }
        let expanded = if trimmed.starts_with('@') {
            match trimmed.to_ascii_lowercase().as_str() {
                "@yearly" | "@annually" => "0 0 1 1 *",
                "@monthly" => "0 0 1 * *",
                "@weekly" => "0 0 * * 0",
                "@daily" | "@midnight" => "0 0 * * *",
                "@hourly" => "0 * * * *",
                _ => return Err(CronError::UnknownMacro(trimmed.to_owned())),
            }
        } else {
            trimmed
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(CronError::FieldCount { found: fields.len() });
        };
        let [minute_spec, hour_spec, day_spec, month_spec, weekday_spec] = &SPECS;
        let days = day_spec.parse(day)?;
        let months = month_spec.parse(month)?;
        let mut weekdays = weekday_spec.parse(weekday)?;
        if weekdays & 1 << 7 != 0 {
            weekdays = (weekdays | 1) & !(1 << 7);
        }
        let rule = if day.starts_with('*') || weekday.starts_with('*') { DayRule::Both } else { DayRule::Either };
        // With `Both`, a day-of-month that no selected month has can never match. With
        // `Either`, the weekday alone matches some day of every month.
        let never = rule == DayRule::Both
            && !(1..=12u32).any(|m| months & 1 << m != 0 && days & ((1u64 << (MAX_DAYS[m as usize] + 1)) - 2) != 0);
        Ok(Self {
            expression: trimmed.to_owned(),
            tz,
            minutes: minute_spec.parse(minute)?,
            hours: hour_spec.parse(hour)?,
            days,
            months,
            weekdays,
            rule,
            never,
        })
    }

    /// Parses `expression` in the IANA zone named `zone` (`Europe/Berlin`), as stored in
    /// [`Schedule::timezone`](crate::model::Schedule::timezone).
    pub fn parse_in(expression: &str, zone: &str) -> Result<Self, CronError> {
        let tz = zone.parse::<Tz>().map_err(|_| CronError::UnknownTimeZone(zone.to_owned()))?;
        Self::parse(expression, tz)
    }

    /// The expression as given (trimmed).
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The zone whose wall clock the expression is read on.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// True if no time can ever match (`0 0 30 2 *`).
    pub fn is_never(&self) -> bool {
        self.never
    }

    /// True if the wall-clock minute `local` matches the expression (seconds are ignored).
    /// Says nothing about daylight saving: see [`next_after`](Self::next_after).
    pub fn matches_local(&self, local: NaiveDateTime) -> bool {
        let bit = |mask: u64, value: u32| mask & 1 << value != 0;
        let day = bit(self.days, local.day());
        let weekday = bit(self.weekdays, local.weekday().num_days_from_sunday());
        let day_matches = match self.rule {
            DayRule::Both => day && weekday,
            DayRule::Either => day || weekday,
        };
        bit(self.minutes, local.minute())
            && bit(self.hours, local.hour())
            && bit(self.months, local.month())
            && day_matches
    }

    /// The first firing time strictly after `after`, or `None` if there is none within the
    /// search horizon (see the module docs for the daylight-saving rules).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.never {
            return None;
        }
        let local = after.with_timezone(&self.tz).naive_local();
        let horizon = local.year().saturating_add(SEARCH_YEARS);
        let mut from = floor_minute(local).checked_add_signed(TimeDelta::minutes(1))?;
        loop {
            let candidate = self.next_local(from, horizon)?;
            let instant = self.resolve(candidate)?;
            // Only false for minutes repeated after clocks fell back, whose first occurrence
            // has passed: skip them.
            if instant > after {
                return Some(instant);
            }
            from = candidate.checked_add_signed(TimeDelta::minutes(1))?;
        }
    }

    /// Firing times after `after`, in order.
    pub fn upcoming(&self, after: DateTime<Utc>) -> Upcoming<'_> {
        Upcoming { schedule: self, last: Some(after) }
    }

    /// Days of `month` that match both day fields under the day rule, as bits 1-31.
    fn day_mask(&self, year: i32, month: u32) -> u64 {
        let Some(first) = NaiveDate::from_ymd_opt(year, month, 1) else { return 0 };
        let in_month = (1u64 << (days_in_month(year, month) + 1)) - 2;
        // Rotate the weekday bits so bit i means "day i+1 of the month", then repeat the week.
        let start = first.weekday().num_days_from_sunday();
        let week = ((self.weekdays >> start) | (self.weekdays << (7 - start))) & 0x7F;
        let by_weekday = (week | week << 7 | week << 14 | week << 21 | week << 28) << 1;
        let days = match self.rule {
            DayRule::Both => self.days & by_weekday,
            DayRule::Either => self.days | by_weekday,
        };
        days & in_month
    }

    /// The first wall-clock minute at or after `from` matching the expression, ignoring
    /// daylight saving.
    fn next_local(&self, from: NaiveDateTime, horizon: i32) -> Option<NaiveDateTime> {
        let (mut year, mut month, mut day) = (from.year(), from.month(), from.day());
        let (mut hour, mut minute) = (from.hour(), from.minute());
        // Moving a coarser field resets the finer ones to their first value; an out-of-range
        // value (month 13, day 32, hour 24) is carried by the next coarser check.
        loop {
            if year > horizon {
                return None;
            }
            match next_bit(self.months, month) {
                None => {
                    (year, month, day, hour, minute) = (year + 1, 1, 1, 0, 0);
                    continue;
                }
                Some(next) if next != month => (month, day, hour, minute) = (next, 1, 0, 0),
                Some(_) => {}
            }
            match next_bit(self.day_mask(year, month), day) {
                None => {
                    (month, day, hour, minute) = (month + 1, 1, 0, 0);
                    continue;
                }
                Some(next) if next != day => (day, hour, minute) = (next, 0, 0),
                Some(_) => {}
            }
            match next_bit(self.hours, hour) {
                None => {
                    (day, hour, minute) = (day + 1, 0, 0);
                    continue;
                }
                Some(next) if next != hour => (hour, minute) = (next, 0),
                Some(_) => {}
            }
            match next_bit(self.minutes, minute) {
                None => {
                    (hour, minute) = (hour + 1, 0);
                    continue;
                }
                Some(next) => return NaiveDate::from_ymd_opt(year, month, day)?.and_hms_opt(hour, next, 0),
            }
        }
    }

    /// The instant a matching wall-clock minute fires at.
    fn resolve(&self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        let earliest = |time: &NaiveDateTime| self.tz.from_local_datetime(time).earliest();
        if let Some(instant) = earliest(&local) {
            return Some(instant.with_timezone(&Utc));
        }
        // In a gap: find the first minute that exists. Widen the step until one exists, then
        // bisect between the last missing and the first existing minute. Gaps are an hour or
        // less in practice, a day at most in the database.
        let mut missing = local;
        let mut step = 1;
        let exists = loop {
            let probe = local.checked_add_signed(TimeDelta::minutes(step))?;
            if earliest(&probe).is_some() {
                break probe;
            }
            missing = probe;
            step *= 2;
            if step > 4 * 24 * 60 {
                return None;
            }
        };
        let mut exists = exists;
        while exists - missing > TimeDelta::minutes(1) {
            let middle = missing.checked_add_signed(TimeDelta::minutes((exists - missing).num_minutes() / 2))?;
            if earliest(&middle).is_some() {
                exists = middle;
            } else {
                missing = middle;
            }
        }
        earliest(&exists).map(|instant| instant.with_timezone(&Utc))
    }
}

impl FromStr for CronSchedule {
    type Err = CronError;

    /// Parses in UTC.
    fn from_str(expression: &str) -> Result<Self, Self::Err> {
        Self::parse(expression, Tz::UTC)
    }
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expression)
    }
}

/// Iterator over upcoming firing times, from [`CronSchedule::upcoming`].
#[derive(Clone, Debug)]
pub struct Upcoming<'a> {
    schedule: &'a CronSchedule,
    last: Option<DateTime<Utc>>,
}

impl Iterator for Upcoming<'_> {
    type Item = DateTime<Utc>;

    fn next(&mut self) -> Option<Self::Item> {
        let next = self.schedule.next_after(self.last?);
        self.last = next;
        next
    }
}

impl FusedIterator for Upcoming<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::New_York;
    use chrono_tz::Australia::Lord_Howe;
    use chrono_tz::Europe::Berlin;
    use proptest::prelude::*;

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn cron(expression: &str) -> CronSchedule {
        expression.parse().unwrap()
    }

    fn next(schedule: &CronSchedule, after: &str) -> Option<String> {
        schedule.next_after(utc(after)).map(|time| time.format("%Y-%m-%dT%H:%MZ").to_string())
    }

    fn take(schedule: &CronSchedule, after: &str, count: usize) -> Vec<String> {
        schedule.upcoming(utc(after)).take(count).map(|time| time.format("%Y-%m-%dT%H:%MZ").to_string()).collect()
    }

    fn field_error(expression: &str) -> (CronField, String, FieldProblem) {
        match expression.parse::<CronSchedule>() {
            Err(CronError::Field { field, token, problem }) => (field, token, problem),
            other => panic!("expected a field error for {expression:?}, got {other:?}"),
        }
    }

    fn bits(values: impl IntoIterator<Item = u32>) -> u64 {
        values.into_iter().fold(0, |bits, value| bits | 1 << value)
    }

    #[test]
    fn parses_lists_ranges_and_steps() {
        let schedule = cron("*/15 1-5/2 1,15,31 * *");
        assert_eq!(schedule.minutes, bits([0, 15, 30, 45]));
        assert_eq!(schedule.hours, bits([1, 3, 5]));
        assert_eq!(schedule.days, bits([1, 15, 31]));
        assert_eq!(schedule.months, bits(1..=12));
        assert_eq!(schedule.weekdays, bits(0..=6));
        assert_eq!(cron("5/20 * * * *").minutes, bits([5, 25, 45]));
        assert_eq!(cron("0-59/59 * * * *").minutes, bits([0, 59]));
        assert_eq!(cron("*/61 * * * *").minutes, bits([0]), "a step past the range keeps the start");
        assert_eq!(cron("1,*/30 * * * *").minutes, bits([0, 1, 30]));
        assert_eq!(cron("  0\t0  * * *  ").expression(), "0\t0  * * *");
    }

    #[test]
    fn parses_names_case_insensitively_and_sunday_twice() {
        let schedule = cron("0 0 * jan-Mar,DEC mon-FRI");
        assert_eq!(schedule.months, bits([1, 2, 3, 12]));
        assert_eq!(schedule.weekdays, bits(1..=5));
        assert_eq!(cron("0 0 * * 7").weekdays, bits([0]));
        assert_eq!(cron("0 0 * * 0").weekdays, bits([0]));
        assert_eq!(cron("0 0 * * sun").weekdays, bits([0]));
        assert_eq!(cron("0 0 * * 5-7").weekdays, bits([0, 5, 6]));
        assert_eq!(cron("0 0 * * */2").weekdays, bits([0, 2, 4, 6]));
        assert_eq!(cron("0 0 * * FRI/1").weekdays, bits([0, 5, 6]), "N/S runs to 7, which is Sunday");
    }

    #[test]
    fn parses_macros() {
        for (name, equivalent) in [
            ("@yearly", "0 0 1 1 *"),
            ("@annually", "0 0 1 1 *"),
            ("@monthly", "0 0 1 * *"),
            ("@weekly", "0 0 * * 0"),
            ("@daily", "0 0 * * *"),
            ("@MIDNIGHT", "0 0 * * *"),
            ("@hourly", "0 * * * *"),
        ] {
            let (by_macro, by_fields) = (cron(name), cron(equivalent));
            assert_eq!(by_macro.expression(), name);
            assert_eq!(
                (by_macro.minutes, by_macro.hours, by_macro.days, by_macro.months, by_macro.weekdays, by_macro.rule),
                (
                    by_fields.minutes,
                    by_fields.hours,
                    by_fields.days,
                    by_fields.months,
                    by_fields.weekdays,
                    by_fields.rule
                ),
                "{name}"
            );
        }
        assert_eq!("@reboot".parse::<CronSchedule>(), Err(CronError::UnknownMacro("@reboot".to_owned())));
    }

    #[test]
    fn errors_name_the_field_and_token() {
        assert_eq!(
            field_error("61 * * * *"),
            (CronField::Minute, "61".to_owned(), FieldProblem::OutOfRange { value: 61, min: 0, max: 59 })
        );
        assert_eq!(
            field_error("0 0 * * MON-FOO"),
            (CronField::DayOfWeek, "MON-FOO".to_owned(), FieldProblem::NotAValue("FOO".to_owned()))
        );
        assert_eq!(field_error("0 0 * JANUARY *").1, "JANUARY");
        assert_eq!(field_error("*/0 * * * *").2, FieldProblem::BadStep("0".to_owned()));
        assert_eq!(field_error("0 */x * * *").2, FieldProblem::BadStep("x".to_owned()));
        assert_eq!(
            field_error("0 0 20-10 * *"),
            (CronField::DayOfMonth, "20-10".to_owned(), FieldProblem::ReversedRange { start: 20, end: 10 })
        );
        assert_eq!(field_error("0 0 0 * *").2, FieldProblem::OutOfRange { value: 0, min: 1, max: 31 });
        assert_eq!(field_error("0 0 1 13 *").0, CronField::Month);
        assert_eq!(field_error("0 24 * * *").0, CronField::Hour);
        assert_eq!(field_error("0 0 * * 8").0, CronField::DayOfWeek);
        assert_eq!(field_error("1,,2 * * * *"), (CronField::Minute, String::new(), FieldProblem::Empty));
        assert_eq!(field_error("-5 * * * *").2, FieldProblem::Empty);
        assert_eq!(field_error("99999999999 * * * *").2, FieldProblem::NotAValue("99999999999".to_owned()));
        assert_eq!("* * * *".parse::<CronSchedule>(), Err(CronError::FieldCount { found: 4 }));
        assert_eq!("* * * * * *".parse::<CronSchedule>(), Err(CronError::FieldCount { found: 6 }));
        assert_eq!("  ".parse::<CronSchedule>(), Err(CronError::Empty));
        assert_eq!(
            CronSchedule::parse_in("* * * * *", "Mars/Olympus"),
            Err(CronError::UnknownTimeZone("Mars/Olympus".to_owned()))
        );
        assert_eq!(field_error("0 0 * * MON-FOO").2.to_string(), "`FOO` is not a number or a name of this field");
        assert_eq!(
            "61 * * * *".parse::<CronSchedule>().unwrap_err().to_string(),
            "minute field: 61 is outside 0-59 (in `61`)"
        );
    }

    #[test]
    fn next_is_strictly_after_at_minute_resolution() {
        let every_minute = cron("* * * * *");
        assert_eq!(next(&every_minute, "2026-05-01T10:00:00Z").unwrap(), "2026-05-01T10:01Z");
        assert_eq!(next(&every_minute, "2026-05-01T10:00:59.999Z").unwrap(), "2026-05-01T10:01Z");
        assert_eq!(next(&every_minute, "2026-12-31T23:59:30Z").unwrap(), "2027-01-01T00:00Z");
        let hourly = cron("@hourly");
        assert_eq!(take(&hourly, "2026-05-01T10:00:00Z", 2), ["2026-05-01T11:00Z", "2026-05-01T12:00Z"]);
        assert_eq!(next(&cron("30 9 * * MON-FRI"), "2026-05-01T09:30:00Z").unwrap(), "2026-05-04T09:30Z");
    }

    #[test]
    fn skips_whole_months_and_years() {
        assert_eq!(next(&cron("0 0 1 1 *"), "2026-01-01T00:00:00Z").unwrap(), "2027-01-01T00:00Z");
        assert_eq!(next(&cron("0 12 31 * *"), "2026-04-01T00:00:00Z").unwrap(), "2026-05-31T12:00Z");
        // February 29th, skipping 2100, which is not a leap year.
        let leap = cron("0 0 29 2 *");
        assert_eq!(take(&leap, "2026-01-01T00:00:00Z", 2), ["2028-02-29T00:00Z", "2032-02-29T00:00Z"]);
        assert_eq!(next(&leap, "2096-03-01T00:00:00Z").unwrap(), "2104-02-29T00:00Z");
        // A star-step weekday field makes both day fields required: February 29th on a Sunday
        // (`*/7` over 0-7 is 0 and 7), next in 2032.
        assert_eq!(next(&cron("0 0 29 2 */7"), "2026-01-01T00:00:00Z").unwrap(), "2032-02-29T00:00Z");
    }

    #[test]
    fn impossible_expressions_return_none_at_once() {
        for expression in ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 30,31 feb *", "0 0 31 2 */2"] {
            let schedule = cron(expression);
            assert!(schedule.is_never(), "{expression}");
            assert_eq!(schedule.next_after(utc("2026-01-01T00:00:00Z")), None);
            assert_eq!(schedule.upcoming(utc("2026-01-01T00:00:00Z")).next(), None);
        }
        // Restricted on both day fields, the weekday rescues it.
        let rescued = cron("0 0 30 2 MON");
        assert!(!rescued.is_never());
        assert_eq!(next(&rescued, "2026-01-01T00:00:00Z").unwrap(), "2026-02-02T00:00Z");
        assert!(!cron("0 0 31 * *").is_never());
    }

    #[test]
    fn day_fields_follow_vixie_rules() {
        // Both restricted: either matches. May 2026: Friday the 1st, the 13th is a Wednesday.
        let either = cron("0 0 13 * FRI");
        assert_eq!(
            take(&either, "2026-04-30T12:00:00Z", 4),
            ["2026-05-01T00:00Z", "2026-05-08T00:00Z", "2026-05-13T00:00Z", "2026-05-15T00:00Z"]
        );
        // Day of month `*`: the weekday alone decides.
        assert_eq!(take(&cron("0 0 * * FRI"), "2026-04-30T12:00:00Z", 2), ["2026-05-01T00:00Z", "2026-05-08T00:00Z"]);
        // A star-step counts as unrestricted, so both must match: odd days that are Mondays.
        // Mondays of May 2026 are 4, 11, 18 and 25; June 1 is a Monday.
        assert_eq!(
            take(&cron("0 0 */2 * MON"), "2026-05-01T00:00:00Z", 3),
            ["2026-05-11T00:00Z", "2026-05-25T00:00Z", "2026-06-01T00:00Z"]
        );
        let sunday = NaiveDate::from_ymd_opt(2026, 5, 3).unwrap().and_hms_opt(0, 0, 0).unwrap();
        assert!(cron("0 0 * * 7").matches_local(sunday));
        assert!(cron("0 0 3 * 2").matches_local(sunday));
        assert!(!cron("0 0 */2 * 2").matches_local(sunday));
    }

    // Europe/Berlin 2026: CET -> CEST on March 29 at 01:00 UTC (02:00 -> 03:00 local);
    // CEST -> CET on October 25 at 01:00 UTC (03:00 -> 02:00 local).

    #[test]
    fn berlin_spring_forward_fires_after_the_gap() {
        let daily = CronSchedule::parse("30 2 * * *", Berlin).unwrap();
        assert_eq!(
            take(&daily, "2026-03-27T12:00:00Z", 3),
            // 02:30 CET, then the missing 02:30 fires at 03:00 CEST, then 02:30 CEST.
            ["2026-03-28T01:30Z", "2026-03-29T01:00Z", "2026-03-30T00:30Z"]
        );
        let quarterly = CronSchedule::parse("*/15 * * * *", Berlin).unwrap();
        assert_eq!(
            take(&quarterly, "2026-03-29T00:20:00Z", 4),
            // 01:30, 01:45 CET; 02:00-02:45 and 03:00 collapse into 03:00 CEST; 03:15 CEST.
            ["2026-03-29T00:30Z", "2026-03-29T00:45Z", "2026-03-29T01:00Z", "2026-03-29T01:15Z"]
        );
        // At 03:00 exactly only one firing, even though both 02:00 and 03:00 match.
        let two_and_three = CronSchedule::parse("0 2,3 * * *", Berlin).unwrap();
        assert_eq!(take(&two_and_three, "2026-03-28T23:00:00Z", 2), ["2026-03-29T01:00Z", "2026-03-30T00:00Z"]);
    }

    #[test]
    fn berlin_fall_back_fires_once() {
        let daily = CronSchedule::parse("30 2 * * *", Berlin).unwrap();
        assert_eq!(
            take(&daily, "2026-10-24T12:00:00Z", 2),
            // 02:30 CEST (first occurrence), not again at 02:30 CET; then 02:30 CET next day.
            ["2026-10-25T00:30Z", "2026-10-26T01:30Z"]
        );
        let half_hourly = CronSchedule::parse("*/30 * * * *", Berlin).unwrap();
        assert_eq!(
            take(&half_hourly, "2026-10-24T23:40:00Z", 4),
            // 02:00, 02:30 CEST; the repeated 02:00 and 02:30 CET are skipped; 03:00, 03:30 CET.
            ["2026-10-25T00:00Z", "2026-10-25T00:30Z", "2026-10-25T02:00Z", "2026-10-25T02:30Z"]
        );
        // Asked from inside the repeated hour, the next firing is after it.
        assert_eq!(next(&half_hourly, "2026-10-25T01:10:00Z").unwrap(), "2026-10-25T02:00Z");
    }

    // America/New_York 2026: EST -> EDT on March 8 at 07:00 UTC (02:00 -> 03:00 local);
    // EDT -> EST on November 1 at 06:00 UTC (02:00 -> 01:00 local).

    #[test]
    fn new_york_spring_forward() {
        let daily = CronSchedule::parse("30 2 * * *", New_York).unwrap();
        assert_eq!(take(&daily, "2026-03-07T12:00:00Z", 2), ["2026-03-08T07:00Z", "2026-03-09T06:30Z"]);
        let quarterly = CronSchedule::parse("*/15 * * * *", New_York).unwrap();
        assert_eq!(
            take(&quarterly, "2026-03-08T06:40:00Z", 3),
            ["2026-03-08T06:45Z", "2026-03-08T07:00Z", "2026-03-08T07:15Z"]
        );
        // A job at 03:00 is not disturbed.
        let three = CronSchedule::parse("0 3 8 3 *", New_York).unwrap();
        assert_eq!(next(&three, "2026-03-01T00:00:00Z").unwrap(), "2026-03-08T07:00Z");
    }

    #[test]
    fn new_york_fall_back() {
        let daily = CronSchedule::parse("30 1 * * *", New_York).unwrap();
        // 01:30 EDT = 05:30 UTC fires; 01:30 EST = 06:30 UTC does not; next day 01:30 EST.
        assert_eq!(take(&daily, "2026-10-31T12:00:00Z", 2), ["2026-11-01T05:30Z", "2026-11-02T06:30Z"]);
        let hourly = CronSchedule::parse("0 * * * *", New_York).unwrap();
        assert_eq!(
            take(&hourly, "2026-11-01T03:30:00Z", 4),
            // 00:00 EDT, 01:00 EDT, (01:00 EST skipped), 02:00 EST, 03:00 EST.
            ["2026-11-01T04:00Z", "2026-11-01T05:00Z", "2026-11-01T07:00Z", "2026-11-01T08:00Z"]
        );
    }

    #[test]
    fn half_hour_dst_zone() {
        // Lord Howe Island moves by 30 minutes: on October 4 2026 its clocks jump from 02:00
        // (+10:30) to 02:30 (+11:00), at 15:30 UTC the day before.
        let schedule = CronSchedule::parse("15 2 * * *", Lord_Howe).unwrap();
        assert_eq!(take(&schedule, "2026-10-02T12:00:00Z", 2), ["2026-10-02T15:45Z", "2026-10-03T15:30Z"]);
    }

    #[test]
    fn iterator_is_increasing_and_fused() {
        let schedule = CronSchedule::parse_in("*/7 */5 * * *", "Europe/Berlin").unwrap();
        let times: Vec<_> = schedule.upcoming(utc("2026-03-28T00:00:00Z")).take(200).collect();
        assert_eq!(times.len(), 200);
        assert!(times.windows(2).all(|pair| pair[0] < pair[1]));
        let yearly = cron("0 0 1 1 *");
        let mut ends = yearly.upcoming(DateTime::<Utc>::MAX_UTC - TimeDelta::days(2));
        assert_eq!(ends.next(), None);
        assert_eq!(ends.next(), None);
    }

    // ---- property test against a minute-by-minute scan ------------------------------------

    /// Independent statement of the rules: walks UTC minutes and fires at `u` when the wall
    /// clock shows a matching minute for the first time, or when it jumped over a matching
    /// minute. Returns every firing in `(after, after + window]`.
    fn brute_force(schedule: &CronSchedule, after: DateTime<Utc>, window: TimeDelta) -> Vec<DateTime<Utc>> {
        let local = |instant: DateTime<Utc>| instant.with_timezone(&schedule.timezone()).naive_local();
        let start = after.duration_trunc_minutes() - TimeDelta::days(1);
        let mut seen = local(start);
        let mut previous = seen;
        let mut instant = start;
        let mut fired = Vec::new();
        while instant + TimeDelta::minutes(1) <= after + window {
            instant += TimeDelta::minutes(1);
            let wall = local(instant);
            let mut fires = wall > seen && schedule.matches_local(wall);
            let mut skipped = previous + TimeDelta::minutes(1);
            while skipped < wall {
                fires |= schedule.matches_local(skipped);
                skipped += TimeDelta::minutes(1);
            }
            seen = seen.max(wall);
            previous = wall;
            if fires && instant > after {
                fired.push(instant);
            }
        }
        fired
    }

    trait TruncMinutes {
        fn duration_trunc_minutes(self) -> Self;
    }

    impl TruncMinutes for DateTime<Utc> {
        fn duration_trunc_minutes(self) -> Self {
            self.with_second(0).and_then(|time| time.with_nanosecond(0)).unwrap()
        }
    }

    fn element(min: u32, max: u32, names: &'static [&'static str]) -> impl Strategy<Value = String> {
        let name = move |index: usize| names.get(index).map_or_else(|| min.to_string(), |name| name.to_lowercase());
        prop_oneof![
            2 => Just("*".to_owned()),
            1 => (1..=max).prop_map(|step| format!("*/{step}")),
            3 => (min..=max).prop_map(|value| value.to_string()),
            2 => (min..=max, min..=max).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
            1 => (min..=max, min..=max, 1..=max).prop_map(|(a, b, s)| format!("{}-{}/{s}", a.min(b), a.max(b))),
            1 => (min..=max, 1..=max).prop_map(|(a, s)| format!("{a}/{s}")),
            1 => (0..names.len().max(1)).prop_map(name),
        ]
    }

    fn field(min: u32, max: u32, names: &'static [&'static str]) -> impl Strategy<Value = String> {
        prop_oneof![
            3 => Just("*".to_owned()),
            4 => prop::collection::vec(element(min, max, names), 1..3).prop_map(|parts| parts.join(",")),
        ]
    }

    fn expression() -> impl Strategy<Value = String> {
        (field(0, 59, &[]), field(0, 23, &[]), field(1, 31, &[]), field(1, 12, &MONTH_NAMES), field(0, 7, &DAY_NAMES))
            .prop_map(|(m, h, dom, mon, dow)| format!("{m} {h} {dom} {mon} {dow}"))
    }

    /// 2026 transitions of the zones tested (Lord Howe moves by 30 minutes).
    const TRANSITIONS: [(&str, Tz); 6] = [
        ("2026-03-29T01:00:00Z", Berlin),
        ("2026-10-25T01:00:00Z", Berlin),
        ("2026-03-08T07:00:00Z", New_York),
        ("2026-11-01T06:00:00Z", New_York),
        ("2026-04-04T15:00:00Z", Lord_Howe),
        ("2026-10-03T15:30:00Z", Lord_Howe),
    ];

    /// Instants near the transitions, and anywhere in 2026.
    fn after() -> impl Strategy<Value = DateTime<Utc>> {
        prop_oneof![
            (0..TRANSITIONS.len(), -3 * 86_400..86_400i64)
                .prop_map(|(index, offset)| utc(TRANSITIONS[index].0) + TimeDelta::seconds(offset)),
            (0..366 * 86_400i64).prop_map(|offset| utc("2026-01-01T00:00:00Z") + TimeDelta::seconds(offset)),
        ]
    }

    fn zone() -> impl Strategy<Value = Tz> {
        prop_oneof![Just(Tz::UTC), Just(Berlin), Just(New_York), Just(Lord_Howe)]
    }

    /// Expressions that fire often within a day, so sequences cross the transition.
    fn daily_expression() -> impl Strategy<Value = String> {
        (
            field(0, 59, &[]),
            field(0, 23, &[]),
            prop_oneof![3 => Just("* * *"), 1 => Just("* * SUN"), 1 => Just("1-10 * SAT,SUN")],
        )
            .prop_map(|(minute, hour, days)| format!("{minute} {hour} {days}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn next_after_matches_a_minute_scan(expression in expression(), tz in zone(), after in after()) {
            let schedule = CronSchedule::parse(&expression, tz).unwrap();
            let window = TimeDelta::days(4);
            let actual = schedule.next_after(after);
            match brute_force(&schedule, after, window).first() {
                Some(expected) => prop_assert_eq!(actual, Some(*expected), "{} in {}", expression, tz),
                None => prop_assert!(actual.is_none_or(|time| time > after + window), "{expression}: {actual:?}"),
            }
        }

        #[test]
        fn firings_across_dst_changes_match_a_minute_scan(
            expression in daily_expression(),
            transition in 0..TRANSITIONS.len(),
            before in 0..26 * 3_600i64,
        ) {
            let (at, tz) = TRANSITIONS[transition];
            let schedule = CronSchedule::parse(&expression, tz).unwrap();
            let after = utc(at) - TimeDelta::seconds(before);
            let window = TimeDelta::hours(30);
            let expected = brute_force(&schedule, after, window);
            let actual: Vec<_> = schedule.upcoming(after).take_while(|time| *time <= after + window).collect();
            prop_assert_eq!(actual, expected, "{} in {} after {}", expression, tz, after);
        }

        #[test]
        fn parse_never_panics(text in "[0-9A-Za-z*/,@ -]{0,40}") {
            let _ = CronSchedule::parse(&text, Tz::UTC);
        }
    }
}
