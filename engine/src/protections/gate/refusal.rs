//! What a refused client gets: the status, whether it is answered at all, and the one place a
//! refusal's `Retry-After` header is written.

use std::time::Duration;

/// What a refused client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// 400 (a trusted proxy named a client that is not an address), 403 or 429.
    pub status: u16,
    /// Whole seconds for `Retry-After`, if any.
    pub retry_after: Option<u64>,
    /// Close without an answer (a denied address under `deny_action = "close"`).
    pub silent: bool,
}

impl Refusal {
    /// The refusal's `Retry-After` header as a name and a value (RFC 9110 §10.2.3, a delay in
    /// whole seconds), or `None` when it names no wait.
    pub fn retry_after_header(&self) -> Option<(&'static str, String)> {
        self.retry_after
            .map(|secs| ("Retry-After", secs.to_string()))
    }
}

/// A wait as whole seconds for `Retry-After`, rounded up (at least 1).
pub(super) fn whole_seconds(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(whole_seconds(Duration::from_secs(30)), 30);
        assert_eq!(whole_seconds(Duration::ZERO), 1);
    }

    #[test]
    fn retry_after_header_is_the_wait_in_seconds() {
        let refusal = Refusal {
            status: 429,
            retry_after: Some(7),
            silent: false,
        };
        assert_eq!(
            refusal.retry_after_header(),
            Some(("Retry-After", "7".to_owned()))
        );
        let forbidden = Refusal {
            retry_after: None,
            ..refusal
        };
        assert_eq!(forbidden.retry_after_header(), None);
    }
}
