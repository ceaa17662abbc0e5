//! The `Date` header value in IMF-fixdate form, computed from a Unix time without reading a clock.

use std::fmt;

/// Latest time IMF-fixdate can show: 9999-12-31 23:59:59 GMT (the year has four digits).
const MAX_SECS: u64 = 253_402_300_799;

/// Day names, starting from Thursday, the weekday of 1970-01-01.
const WEEKDAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];

/// Month names, January first.
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// A `Date` value such as `Sun, 06 Nov 1994 08:49:37 GMT` (IMF-fixdate, RFC 9110 §5.6.7).
///
/// Sans-IO: the engine reads its clock and builds one per second; formatting is a
/// handful of divisions.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HttpDate([u8; 29]);

impl HttpDate {
    /// The date `secs` seconds after 1970-01-01 00:00:00 UTC; times after year 9999
    /// show as its last second.
    pub fn from_unix_secs(secs: u64) -> Self {
        let secs = secs.min(MAX_SECS);
        let days = secs / 86_400;
        let in_day = secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
        out[0..3].copy_from_slice(WEEKDAYS[(days % 7) as usize]);
        put_two_digits(&mut out[5..7], day);
        out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
        put_two_digits(&mut out[12..14], year / 100);
        put_two_digits(&mut out[14..16], year % 100);
        put_two_digits(&mut out[17..19], in_day / 3600);
        put_two_digits(&mut out[20..22], in_day / 60 % 60);
        put_two_digits(&mut out[23..25], in_day % 60);
        Self(out)
    }

    /// The 29 bytes of the value, without the field name or CRLF.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for HttpDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Built from ASCII only, so the lossy conversion never replaces anything.
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for HttpDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HttpDate({self})")
    }
}

/// `01/Dec/2026:20:15:02 +0000`: the time of an access log line in the Common Log Format
/// (nginx's `$time_local`, in UTC), `secs` after 1970-01-01 00:00:00 UTC.
pub fn common_log_time(secs: u64) -> [u8; 26] {
    let secs = secs.min(MAX_SECS);
    let in_day = secs % 86_400;
    let (year, month, day) = civil_from_days(secs / 86_400);
    let mut out = *b"01/Jan/1970:00:00:00 +0000";
    put_two_digits(&mut out[0..2], day);
    out[3..6].copy_from_slice(MONTHS[(month - 1) as usize]);
    put_two_digits(&mut out[7..9], year / 100);
    put_two_digits(&mut out[9..11], year % 100);
    put_two_digits(&mut out[12..14], in_day / 3600);
    put_two_digits(&mut out[15..17], in_day / 60 % 60);
    put_two_digits(&mut out[18..20], in_day % 60);
    out
}

/// `2026-12-01T20:15:02.123Z`: an RFC 3339 UTC time to the millisecond, `millis` after
/// 1970-01-01 00:00:00 UTC.
pub fn rfc3339_millis(millis: u64) -> [u8; 24] {
    let secs = (millis / 1000).min(MAX_SECS);
    let in_day = secs % 86_400;
    let (year, month, day) = civil_from_days(secs / 86_400);
    let mut out = *b"1970-01-01T00:00:00.000Z";
    put_two_digits(&mut out[0..2], year / 100);
    put_two_digits(&mut out[2..4], year % 100);
    put_two_digits(&mut out[5..7], month);
    put_two_digits(&mut out[8..10], day);
    put_two_digits(&mut out[11..13], in_day / 3600);
    put_two_digits(&mut out[14..16], in_day / 60 % 60);
    put_two_digits(&mut out[17..19], in_day % 60);
    let ms = millis % 1000;
    out[20] = b'0' + (ms / 100) as u8;
    put_two_digits(&mut out[21..23], ms % 100);
    out
}

/// The Unix time of an HTTP-date (RFC 9110 §5.6.7), in any of its three forms:
/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`)
/// and asctime (`Sun Nov  6 08:49:37 1994`). `None` for anything else, or a date before 1970.
/// The weekday is not checked against the date (recipients may ignore it).
pub fn parse_http_date(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let (weekday, rest) = text.split_once([',', ' '])?;
    if !weekday.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let fields: Vec<&str> = rest.split(' ').filter(|f| !f.is_empty()).collect();
    let (day, month, year, time) = match (text.as_bytes().get(weekday.len()), fields.as_slice()) {
        // IMF-fixdate: day month year time GMT.
        (Some(b','), [day, month, year, time, "GMT"]) if day.len() == 2 && year.len() == 4 => {
            (*day, *month, number(year)?, *time)
        }
        // RFC 850: dd-Mon-yy time GMT; a two-digit year is taken as 1970-2069.
        (Some(b','), [date, time, "GMT"]) => {
            let mut parts = date.split('-');
            let (day, month, year) = (parts.next()?, parts.next()?, parts.next()?);
            if parts.next().is_some() || day.len() != 2 || year.len() != 2 {
                return None;
            }
            let year = number(year)?;
            (
                day,
                month,
                if year < 70 { 2000 + year } else { 1900 + year },
                *time,
            )
        }
        // asctime: Mon d time yyyy (the day padded with a space).
        (Some(b' '), [month, day, time, year]) if (1..=2).contains(&day.len()) => {
            (*day, *month, number(year)?, *time)
        }
        _ => return None,
    };
    let month = MONTHS
        .iter()
        .position(|m| m.as_slice() == month.as_bytes())? as u64
        + 1;
    let day = number(day)?;
    let mut clock = time.split(':');
    let (hour, minute, second) = (clock.next()?, clock.next()?, clock.next()?);
    if clock.next().is_some() || [hour, minute, second].iter().any(|f| f.len() != 2) {
        return None;
    }
    let (hour, minute, second) = (number(hour)?, number(minute)?, number(second)?);
    if !(1970..=9999).contains(&year)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second.min(59))
}

/// Digits only (no sign, no spaces), as a number.
fn number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) || text.len() > 4 {
        return None;
    }
    text.parse().ok()
}

fn is_leap(year: u64) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date (year >= 1970): the inverse of `civil_from_days`
/// (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let year_of_era = year % 400;
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Year, month (1-12) and day (1-31) of a day count since 1970-01-01, proleptic
/// Gregorian: Howard Hinnant's `civil_from_days`, with eras of 400 years starting on
/// March 1st so that the leap day ends a year.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Writes `n` (below 100) as two ASCII digits.
fn put_two_digits(out: &mut [u8], n: u64) {
    out[0] = b'0' + (n / 10) as u8;
    out[1] = b'0' + (n % 10) as u8;
}

#[cfg(test)]
mod tests {

    #[test]
    fn access_log_times() {
        // 2026-12-01 20:15:02.045 UTC.
        let millis = 1_796_156_102_045;
        assert_eq!(
            &common_log_time(millis / 1000),
            b"01/Dec/2026:20:15:02 +0000"
        );
        assert_eq!(&rfc3339_millis(millis), b"2026-12-01T20:15:02.045Z");
        assert_eq!(&common_log_time(0), b"01/Jan/1970:00:00:00 +0000");
        assert_eq!(
            &rfc3339_millis(951_782_400_999),
            b"2000-02-29T00:00:00.999Z"
        );
    }

    use super::*;
    use proptest::prelude::*;

    fn date(secs: u64) -> String {
        HttpDate::from_unix_secs(secs).to_string()
    }

    #[test]
    fn known_dates() {
        assert_eq!(date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        // Leap days: a year divisible by 4, and by 400.
        assert_eq!(date(1_709_208_000), "Thu, 29 Feb 2024 12:00:00 GMT");
        assert_eq!(date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(date(951_868_799), "Tue, 29 Feb 2000 23:59:59 GMT");
        assert_eq!(date(951_868_800), "Wed, 01 Mar 2000 00:00:00 GMT");
        // 2100 is not a leap year: February 28th is followed by March 1st.
        assert_eq!(date(4_107_456_000), "Sun, 28 Feb 2100 00:00:00 GMT");
        assert_eq!(date(4_107_542_400), "Mon, 01 Mar 2100 00:00:00 GMT");
        // Past the 32-bit time_t limit.
        assert_eq!(date(2_147_483_647), "Tue, 19 Jan 2038 03:14:07 GMT");
        assert_eq!(date(2_147_483_648), "Tue, 19 Jan 2038 03:14:08 GMT");
        assert_eq!(date(4_102_444_800), "Fri, 01 Jan 2100 00:00:00 GMT");
        assert_eq!(date(1_767_225_599), "Wed, 31 Dec 2025 23:59:59 GMT");
    }

    #[test]
    fn parses_the_three_forms_of_rfc_9110() {
        let expected = Some(784_111_777);
        assert_eq!(parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"), expected);
        assert_eq!(parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"), expected);
        assert_eq!(parse_http_date(b"Sun Nov  6 08:49:37 1994"), expected);
        assert_eq!(parse_http_date(b"Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date(b"Thursday, 01-Jan-70 00:00:00 GMT"),
            Some(0)
        );
        assert_eq!(
            parse_http_date(b"Tuesday, 01-Jan-36 00:00:00 GMT"),
            Some(2_082_758_400)
        );
    }

    #[test]
    fn refuses_what_is_not_an_http_date() {
        for value in [
            "",
            "yesterday",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Sun, 06 Nvember 1994 08:49:37 GMT",
            "Sun, 06 Nov 1969 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov +994 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994 GMT",
            "1994-11-06T08:49:37Z",
        ] {
            assert_eq!(parse_http_date(value.as_bytes()), None, "{value:?}");
        }
    }

    proptest! {
        #[test]
        fn a_formatted_date_parses_back(secs in 0u64..MAX_SECS) {
            let date = HttpDate::from_unix_secs(secs);
            prop_assert_eq!(parse_http_date(date.as_bytes()), Some(secs));
        }

        #[test]
        fn no_input_panics(value in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = parse_http_date(&value);
        }
    }

    #[test]
    fn clamps_after_year_9999() {
        assert_eq!(date(MAX_SECS), "Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(date(u64::MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    /// Days since 1970-01-01 of a civil date, counted the slow way.
    fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
        let leap =
            |y: u64| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
        let month_days = |y: u64, m: u64| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let years: u64 = (1970..year).map(|y| if leap(y) { 366 } else { 365 }).sum();
        let months: u64 = (1..month).map(|m| month_days(year, m)).sum();
        years + months + day - 1
    }

    proptest! {
        #[test]
        fn civil_date_agrees_with_counting_days(days in 0u64..2_932_897) {
            let (year, month, day) = civil_from_days(days);
            prop_assert!((1..=12).contains(&month));
            prop_assert!((1..=31).contains(&day));
            prop_assert_eq!(days_from_civil(year, month, day), days);
        }
    }
}
