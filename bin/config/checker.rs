//! [`Checker`]: one value of the file against its bounds, with the source at hand so that an
//! error points at the value's line.

use std::ops::RangeInclusive;
use std::time::Duration;

use toml::Spanned;

use super::error::{ConfigError, Source};
use super::raw::{Int, Seconds, Size};
use super::units::{format_duration, format_size};

/// Longest duration anywhere in the file; far beyond any sane timeout, and short enough that
/// `Instant + duration` can never overflow in the engine.
const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Checks values against their bounds, with the source at hand for messages.
pub(super) struct Checker<'a, 'src> {
    /// The file, for `file:line:` and the value as written.
    pub(super) source: &'a Source<'src>,
}

impl Checker<'_, '_> {
    /// An integer within `range`.
    pub(super) fn int<T>(
        &self,
        value: &Spanned<Int>,
        key: &str,
        range: RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: TryFrom<i128> + PartialOrd + std::fmt::Display,
    {
        match T::try_from(value.get_ref().0) {
            Ok(v) if range.contains(&v) => Ok(v),
            _ => Err(self.source.error_at(
                value.span(),
                key,
                format!(
                    "{} is out of range ({}..={})",
                    self.source.written(value.span()),
                    range.start(),
                    range.end()
                ),
            )),
        }
    }

    /// A size within `range` (`why` explains a bound that is not a constant).
    pub(super) fn size(
        &self,
        value: &Spanned<Size>,
        key: &str,
        range: RangeInclusive<u64>,
        why: &str,
    ) -> Result<usize, ConfigError> {
        let bytes = value.get_ref().0;
        if range.contains(&bytes)
            && let Ok(bytes) = usize::try_from(bytes)
        {
            return Ok(bytes);
        }
        Err(self.source.error_at(
            value.span(),
            key,
            format!(
                "{} is out of range ({}..={}{why})",
                self.source.written(value.span()),
                format_size(*range.start()),
                format_size(*range.end())
            ),
        ))
    }

    /// A protection's timeout: more than zero, at most [`MAX_DURATION`].
    pub(super) fn timeout(
        &self,
        value: &Spanned<Seconds>,
        key: &str,
    ) -> Result<Duration, ConfigError> {
        if value.get_ref().0.is_zero() {
            return Err(self.source.error_at(
                value.span(),
                key,
                format!(
                    "{} would switch this protection off, which is not allowed (use a duration \
                     above 0, e.g. \"10s\")",
                    self.source.written(value.span())
                ),
            ));
        }
        self.duration(value, key, Duration::ZERO)
    }

    /// A duration from `min` to [`MAX_DURATION`].
    pub(super) fn duration(
        &self,
        value: &Spanned<Seconds>,
        key: &str,
        min: Duration,
    ) -> Result<Duration, ConfigError> {
        let duration = value.get_ref().0;
        if (min..=MAX_DURATION).contains(&duration) {
            return Ok(duration);
        }
        Err(self.source.error_at(
            value.span(),
            key,
            format!(
                "{} is out of range ({}..={})",
                self.source.written(value.span()),
                format_duration(min),
                format_duration(MAX_DURATION)
            ),
        ))
    }

    /// The error for a string that is none of `expected`.
    pub(super) fn one_of(
        &self,
        value: &Spanned<String>,
        key: &str,
        expected: &[&str],
    ) -> ConfigError {
        self.source.error_at(
            value.span(),
            key,
            format!(
                "{} is not one of: {}",
                self.source.written(value.span()),
                expected.join(", ")
            ),
        )
    }
}
