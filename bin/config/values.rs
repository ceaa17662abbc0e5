//! The values of the config file that take more than one spelling: whole numbers, sizes
//! (`65536` or `"64KiB"`) and durations (`10`, `0.5` or `"500ms"`), read as the file writes
//! them; ranges are checked later, with the span at hand.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::units::{UnitError, duration_from_secs, parse_duration, parse_size};

/// A whole number, kept wide so that range errors can quote any value the file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Int(pub i128);

/// A size in bytes: a bare integer or a unit string (`"64KiB"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

/// A duration: bare seconds (`10`, `0.5`) or a unit string (`"500ms"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub Duration);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(IntVisitor)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SizeVisitor)
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecondsVisitor)
    }
}

struct IntVisitor;

impl Visitor<'_> for IntVisitor {
    type Value = Int;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a whole number")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
        Ok(Int(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
        Ok(Int(v.into()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Int, E> {
        Ok(Int(v))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Int, E> {
        Ok(Int(i128::try_from(v).unwrap_or(i128::MAX)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Int, E> {
        Err(E::custom(format_args!("{v:?} is not a whole number")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Int, E> {
        if v.trim().parse::<i128>().is_ok() {
            Err(E::custom(format_args!(
                "{v:?} is a string: write the number without quotes"
            )))
        } else {
            Err(E::custom(format_args!("{v:?} is not a whole number")))
        }
    }
}

struct SizeVisitor;

impl Visitor<'_> for SizeVisitor {
    type Value = Size;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a size in bytes or with a unit, e.g. 512, "64KiB", "1MiB""#)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
        self.visit_i128(v.into())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
        Ok(Size(v))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Size, E> {
        match u64::try_from(v) {
            Ok(bytes) => Ok(Size(bytes)),
            Err(_) if v < 0 => Err(E::custom(format_args!(
                "{v} is not a size: sizes cannot be negative"
            ))),
            Err(_) => Err(E::custom(format_args!("{v} is too large for a size"))),
        }
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Size, E> {
        u64::try_from(v)
            .map(Size)
            .map_err(|_| E::custom(format_args!("{v} is too large for a size")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Size, E> {
        Err(E::custom(format_args!(
            r#"{v:?} is not a whole number of bytes (for a fraction use a unit, e.g. "1.5MiB")"#
        )))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
        parse_size(v).map(Size).map_err(|e| {
            E::custom(match e {
                UnitError::Malformed => format!(
                    r#"{v:?} is not a size (use bytes or a unit: B, KB, MB, GB, KiB, MiB, GiB; e.g. 512, "64KiB", "1.5MiB")"#
                ),
                UnitError::Fractional => format!("{v:?} is not a whole number of bytes"),
                UnitError::TooLarge => format!("{v:?} is too large for a size"),
            })
        })
    }
}

struct SecondsVisitor;

impl SecondsVisitor {
    fn error<E: de::Error>(written: &dyn fmt::Display, e: UnitError) -> E {
        E::custom(match e {
            UnitError::TooLarge => format!("{written} is too large for a duration"),
            UnitError::Malformed | UnitError::Fractional => {
                format!(r#"{written} is not a duration (use e.g. "500ms", "10s", "5m")"#)
            }
        })
    }
}

impl Visitor<'_> for SecondsVisitor {
    type Value = Seconds;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a duration in seconds or with a unit, e.g. 10, "500ms", "10s", "5m""#)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
        self.visit_i128(v.into())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
        Ok(Seconds(Duration::from_secs(v)))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Seconds, E> {
        match u64::try_from(v) {
            Ok(secs) => self.visit_u64(secs),
            Err(_) if v < 0 => Err(E::custom(format_args!(
                "{v} is not a duration: durations cannot be negative"
            ))),
            Err(_) => Err(Self::error(&v, UnitError::TooLarge)),
        }
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Seconds, E> {
        match u64::try_from(v) {
            Ok(secs) => self.visit_u64(secs),
            Err(_) => Err(Self::error(&v, UnitError::TooLarge)),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Seconds, E> {
        if v < 0.0 {
            return Err(E::custom(format_args!(
                "{v:?} is not a duration: durations cannot be negative"
            )));
        }
        duration_from_secs(v)
            .map(Seconds)
            .map_err(|e| Self::error(&format_args!("{v:?}"), e))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Seconds, E> {
        parse_duration(v)
            .map(Seconds)
            .map_err(|e| Self::error(&format_args!("{v:?}"), e))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct One<T> {
        v: T,
    }

    fn value<T: for<'de> Deserialize<'de>>(toml_value: &str) -> Result<T, String> {
        toml::from_str::<One<T>>(&format!("v = {toml_value}"))
            .map(|one| one.v)
            .map_err(|e| e.message().to_owned())
    }

    #[test]
    fn ints() {
        assert_eq!(value::<Int>("42"), Ok(Int(42)));
        assert_eq!(value::<Int>("-3"), Ok(Int(-3)));
        assert_eq!(value::<Int>("0x10"), Ok(Int(16)));
        assert_eq!(
            value::<Int>(r#""4""#),
            Err(r#""4" is a string: write the number without quotes"#.into())
        );
        assert_eq!(value::<Int>("1.5"), Err("1.5 is not a whole number".into()));
        assert_eq!(value::<Int>("2.0"), Err("2.0 is not a whole number".into()));
        assert!(
            value::<Int>("true")
                .unwrap_err()
                .contains("expected a whole number")
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(value::<Size>("1024"), Ok(Size(1024)));
        assert_eq!(value::<Size>(r#""16KiB""#), Ok(Size(16384)));
        assert_eq!(value::<Size>(r#""1.5 MB""#), Ok(Size(1_500_000)));
        assert_eq!(
            value::<Size>("-1"),
            Err("-1 is not a size: sizes cannot be negative".into())
        );
        assert!(
            value::<Size>("1.5")
                .unwrap_err()
                .contains("not a whole number of bytes")
        );
        assert!(
            value::<Size>(r#""16kb""#)
                .unwrap_err()
                .starts_with(r#""16kb" is not a size"#)
        );
        assert_eq!(
            value::<Size>(r#""0.5B""#),
            Err(r#""0.5B" is not a whole number of bytes"#.into())
        );
        assert_eq!(
            value::<Size>(r#""20000000000GiB""#),
            Err(r#""20000000000GiB" is too large for a size"#.into())
        );
    }

    #[test]
    fn durations() {
        assert_eq!(value::<Seconds>("10"), Ok(Seconds(Duration::from_secs(10))));
        assert_eq!(
            value::<Seconds>("0.5"),
            Ok(Seconds(Duration::from_millis(500)))
        );
        assert_eq!(
            value::<Seconds>(r#""500ms""#),
            Ok(Seconds(Duration::from_millis(500)))
        );
        assert_eq!(
            value::<Seconds>(r#""10 seconds""#),
            Err(r#""10 seconds" is not a duration (use e.g. "500ms", "10s", "5m")"#.into())
        );
        assert_eq!(
            value::<Seconds>("-2"),
            Err("-2 is not a duration: durations cannot be negative".into())
        );
        assert_eq!(
            value::<Seconds>("-0.5"),
            Err("-0.5 is not a duration: durations cannot be negative".into())
        );
        assert_eq!(
            value::<Seconds>("inf"),
            Err("inf is too large for a duration".into())
        );
        assert!(
            value::<Seconds>("nan")
                .unwrap_err()
                .contains("is not a duration")
        );
    }
}
