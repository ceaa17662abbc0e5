//! Parsing and printing the size (`"64KiB"`) and duration (`"500ms"`) strings of the config file.

use std::time::Duration;

/// Why a size or duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitError {
    /// Not `<number>[ ]<unit>` with a known unit.
    Malformed,
    /// A fraction where only whole numbers make sense (`"1.5B"`).
    Fractional,
    /// Too large to represent.
    TooLarge,
}

/// Size units and their multipliers, case-sensitive: `KB` is 1000 bytes, `KiB` 1024.
const SIZE_UNITS: &[(&str, u128)] = &[
    ("B", 1),
    ("KB", 1000),
    ("MB", 1000 * 1000),
    ("GB", 1000 * 1000 * 1000),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
];

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Duration units in nanoseconds.
const DURATION_UNITS: &[(&str, u128)] = &[
    ("ms", 1_000_000),
    ("s", NANOS_PER_SEC),
    ("m", 60 * NANOS_PER_SEC),
    ("h", 3600 * NANOS_PER_SEC),
];

/// Most decimal places accepted after the point; more would only pretend to a precision that
/// bytes and nanoseconds do not have.
const MAX_FRACTION_DIGITS: usize = 9;

/// Parses a size string: a number, an optional space, then one of `B`, `KB`, `MB`, `GB`
/// (powers of 1000) or `KiB`, `MiB`, `GiB` (powers of 1024). A fraction is allowed with a
/// multiple of a byte (`"1.5MiB"`) and rounds down to whole bytes.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let (number, unit) = split_unit(text)?;
    let multiplier = lookup(SIZE_UNITS, unit)?;
    if multiplier == 1 && number.fraction != 0 {
        return Err(UnitError::Fractional);
    }
    u64::try_from(number.scale(multiplier)?).map_err(|_| UnitError::TooLarge)
}

/// Parses a duration string: a number, an optional space, then `ms`, `s`, `m` or `h`
/// (`"500ms"`, `"10s"`, `"1.5s"`, `"5m"`, `"1h"`). Precision is one nanosecond.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let (number, unit) = split_unit(text)?;
    let nanos = number.scale(lookup(DURATION_UNITS, unit)?)?;
    let secs = u64::try_from(nanos / NANOS_PER_SEC).map_err(|_| UnitError::TooLarge)?;
    let subsec = u32::try_from(nanos % NANOS_PER_SEC).map_err(|_| UnitError::TooLarge)?;
    Ok(Duration::new(secs, subsec))
}

/// Converts a bare number of seconds from the config file (`10`, `0.5`) to a duration.
pub fn duration_from_secs(secs: f64) -> Result<Duration, UnitError> {
    if secs.is_nan() || secs < 0.0 {
        return Err(UnitError::Malformed);
    }
    Duration::try_from_secs_f64(secs).map_err(|_| UnitError::TooLarge)
}

/// A size for messages: the largest binary unit that divides it exactly (`16KiB`), else bytes.
pub fn format_size(bytes: u64) -> String {
    for (unit, multiplier) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= multiplier && bytes.is_multiple_of(multiplier) {
            return format!("{}{unit}", bytes / multiplier);
        }
    }
    format!("{bytes}B")
}

/// A duration for messages, in the config file's own notation (`10s`, `500ms`, `5m`).
pub fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    if duration.subsec_nanos() != 0 {
        return format!("{}ms", duration.as_secs_f64() * 1000.0);
    }
    if secs != 0 && secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs != 0 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// A non-negative decimal number as written: `int + fraction / denominator`.
#[derive(Debug)]
struct Decimal {
    int: u128,
    fraction: u128,
    /// `10^digits after the point`, at most `10^MAX_FRACTION_DIGITS`.
    denominator: u128,
}

impl Decimal {
    /// `self * multiplier`, rounded down.
    fn scale(&self, multiplier: u128) -> Result<u128, UnitError> {
        let whole = self
            .int
            .checked_mul(multiplier)
            .ok_or(UnitError::TooLarge)?;
        // fraction < 10^9 and multiplier <= 3600 * 10^9: the product cannot overflow u128.
        let part = self.fraction * multiplier / self.denominator;
        whole.checked_add(part).ok_or(UnitError::TooLarge)
    }
}

/// Splits `"1.5 MiB"` into the number and the unit; the unit is never empty.
fn split_unit(text: &str) -> Result<(Decimal, &str), UnitError> {
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or(UnitError::Malformed)?;
    let (number, rest) = text.split_at(number_end);
    let unit = rest.strip_prefix(' ').unwrap_or(rest);
    Ok((parse_decimal(number)?, unit))
}

fn parse_decimal(text: &str) -> Result<Decimal, UnitError> {
    let (int, fraction) = match text.split_once('.') {
        Some((int, fraction)) => (int, fraction),
        None => (text, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !all_digits(int) || !all_digits(fraction) {
        return Err(UnitError::Malformed);
    }
    if text.ends_with('.') || fraction.len() > MAX_FRACTION_DIGITS {
        return Err(UnitError::Malformed);
    }
    let fraction_value = if fraction.is_empty() {
        0
    } else {
        fraction.parse().map_err(|_| UnitError::Malformed)?
    };
    Ok(Decimal {
        // Only digits remain, so the one way to fail is overflow.
        int: int.parse().map_err(|_| UnitError::TooLarge)?,
        fraction: fraction_value,
        denominator: (0..fraction.len()).fold(1, |d, _| d * 10),
    })
}

fn lookup(units: &[(&str, u128)], unit: &str) -> Result<u128, UnitError> {
    units
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|&(_, multiplier)| multiplier)
        .ok_or(UnitError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_every_unit() {
        assert_eq!(parse_size("0B"), Ok(0));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("1KB"), Ok(1000));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert_eq!(parse_size("3GB"), Ok(3_000_000_000));
        assert_eq!(parse_size("16KiB"), Ok(16 * 1024));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
    }

    #[test]
    fn sizes_with_fractions_and_spaces() {
        assert_eq!(parse_size("1.5MiB"), Ok(3 << 19));
        assert_eq!(parse_size("1.5 KB"), Ok(1500));
        assert_eq!(parse_size("64 KiB"), Ok(65536));
        assert_eq!(parse_size("0.1KiB"), Ok(102), "rounds down");
        assert_eq!(parse_size("1.000000001GB"), Ok(1_000_000_001));
    }

    #[test]
    fn bad_sizes() {
        for bad in [
            "",
            "KiB",
            "10",
            "10 ",
            "-1KiB",
            "+1KiB",
            "1kib",
            "1kb",
            "1Kb",
            "1 k",
            "1 KiB ",
            " 1KiB",
            "1  KiB",
            "1.KiB",
            ".5KiB",
            "1..5KiB",
            "1.2.3KiB",
            "1e3B",
            "1,5KiB",
            "ten KiB",
            "1TiB",
            "1 bytes",
            "1_000B",
            "1.0000000001GB",
        ] {
            assert_eq!(parse_size(bad), Err(UnitError::Malformed), "{bad:?}");
        }
        assert_eq!(parse_size("1.5B"), Err(UnitError::Fractional));
        assert_eq!(parse_size("1.0B"), Ok(1));
        assert_eq!(
            parse_size("18446744073709551616B"),
            Err(UnitError::TooLarge)
        );
        assert_eq!(parse_size("99999999999GiB"), Err(UnitError::TooLarge));
        assert_eq!(
            parse_size("999999999999999999999999999999999999999999B"),
            Err(UnitError::TooLarge)
        );
        assert_eq!(parse_size("18446744073709551615B"), Ok(u64::MAX));
    }

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0.5 h"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("2.5ms"), Ok(Duration::from_micros(2500)));
        assert_eq!(parse_duration("0.000000001s"), Ok(Duration::from_nanos(1)));
    }

    #[test]
    fn bad_durations() {
        for bad in [
            "",
            "s",
            "10",
            "10 seconds",
            "10sec",
            "10S",
            "1H",
            "10 s ",
            "-1s",
            "1.s",
            ".5s",
            "1us",
            "1d",
            "1e3ms",
            "1m30s",
            "PT10S",
        ] {
            assert_eq!(parse_duration(bad), Err(UnitError::Malformed), "{bad:?}");
        }
        assert_eq!(
            parse_duration("999999999999999999999999h"),
            Err(UnitError::TooLarge)
        );
    }

    #[test]
    fn bare_seconds() {
        assert_eq!(duration_from_secs(10.0), Ok(Duration::from_secs(10)));
        assert_eq!(duration_from_secs(0.25), Ok(Duration::from_millis(250)));
        assert_eq!(duration_from_secs(-1.0), Err(UnitError::Malformed));
        assert_eq!(duration_from_secs(f64::NAN), Err(UnitError::Malformed));
        assert_eq!(duration_from_secs(f64::INFINITY), Err(UnitError::TooLarge));
        assert_eq!(duration_from_secs(1e30), Err(UnitError::TooLarge));
    }

    #[test]
    fn printing_round_trips() {
        for bytes in [
            0,
            1,
            1000,
            1024,
            16 * 1024,
            1 << 20,
            3 << 19,
            1 << 30,
            5 << 30,
        ] {
            assert_eq!(parse_size(&format_size(bytes)), Ok(bytes), "{bytes}");
        }
        assert_eq!(format_size(16 * 1024), "16KiB");
        assert_eq!(format_size(1500), "1500B");
        for duration in [0, 1, 59, 60, 90, 3600, 7200, 86400] {
            let duration = Duration::from_secs(duration);
            assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
    }
}
