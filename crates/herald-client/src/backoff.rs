//! The reconnect delay policy: exponential growth from the server's `retry:` value, a cap,
//! jitter, and an optional limit on consecutive failed attempts.
//!
//! This module only computes delays. It never sleeps, never decides which failures are
//! worth a retry (that is [`crate::Error::is_retryable`]) and keeps no state of its own:
//! the client counts the attempts.

use std::time::Duration;

/// The cap used when none is set: no delay grows past 30 seconds.
pub const DEFAULT_BACKOFF_CAP: Duration = Duration::from_secs(30);

/// How a computed delay is randomised, so that many clients cut off at once do not all
/// come back at the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// No randomness: the delay is exactly the exponential value.
    None,
    /// Anywhere between zero and the exponential value. Spreads load best, but a retry may
    /// come at once.
    Full,
    /// Half the exponential value plus a random part of the other half: never less than
    /// half. The default.
    #[default]
    Equal,
}

/// The reconnect delay policy.
///
/// The delay before the `n`th consecutive reconnect attempt (counted from 1) is
/// `base × 2^(n−1)`, capped, then jittered. `base` is the reconnection time: the initial
/// retry set on the builder (3 s by default) until the server sends a `retry:` field, and
/// that value afterwards. The count goes back to zero each time a connection opens, so
/// the first reconnect after a stream that worked waits about `base`.
///
/// The cap never shortens the server's own `retry:` value: if the server asks for more
/// than the cap, that is the delay.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use herald_client::{Backoff, Jitter};
///
/// let backoff = Backoff::new()
///     .with_jitter(Jitter::None)
///     .with_cap(Duration::from_secs(10))
///     .with_max_attempts(5);
/// let base = Duration::from_secs(1);
/// assert_eq!(backoff.delay_before(base, 1, 0.5), Duration::from_secs(1));
/// assert_eq!(backoff.delay_before(base, 3, 0.5), Duration::from_secs(4));
/// assert_eq!(backoff.delay_before(base, 9, 0.5), Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// How the delay is randomised.
    jitter: Jitter,
    /// The largest delay the exponential growth may reach.
    cap: Duration,
    /// Consecutive failed attempts allowed before the client gives up; `None` is forever.
    max_attempts: Option<u32>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    /// The default policy: equal jitter, a cap of [`DEFAULT_BACKOFF_CAP`], and retrying
    /// forever, as browsers do.
    pub const fn new() -> Self {
        Self {
            jitter: Jitter::Equal,
            cap: DEFAULT_BACKOFF_CAP,
            max_attempts: None,
        }
    }

    /// Sets how delays are randomised. Default: [`Jitter::Equal`].
    pub const fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets the largest delay exponential growth may reach. Default: 30 seconds.
    pub const fn with_cap(mut self, cap: Duration) -> Self {
        self.cap = cap;
        self
    }

    /// Gives up after `max_attempts` consecutive failed reconnects. Default: never. A
    /// connection that opens resets the count.
    pub const fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = Some(max_attempts);
        self
    }

    /// The jitter in use.
    pub const fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// The cap in use.
    pub const fn cap(&self) -> Duration {
        self.cap
    }

    /// The limit on consecutive failed attempts, if any.
    pub const fn max_attempts(&self) -> Option<u32> {
        self.max_attempts
    }

    /// Whether reconnect attempt number `attempt` (counted from 1) is allowed.
    pub fn is_attempt_allowed(&self, attempt: u32) -> bool {
        match self.max_attempts {
            Some(max) => attempt <= max,
            None => true,
        }
    }

    /// The delay before reconnect attempt number `attempt` (counted from 1; 0 counts as
    /// 1), given the reconnection time `base` and a `random` number in `[0, 1)` that
    /// drives the jitter (values outside are clamped).
    pub fn delay_before(&self, base: Duration, attempt: u32, random: f64) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        let cap = self.cap.max(base);
        let exponential = base.saturating_mul(1 << doublings).min(cap);
        let random = if random.is_finite() {
            random.clamp(0.0, 1.0)
        } else {
            0.0
        };
        match self.jitter {
            Jitter::None => exponential,
            Jitter::Full => scale(exponential, random),
            Jitter::Equal => {
                let half = exponential / 2;
                half + scale(exponential - half, random)
            }
        }
    }
}

/// `duration × factor` for a factor in `[0, 1]`, never more than `duration` and never
/// panicking, however large the duration.
fn scale(duration: Duration, factor: f64) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    let nanos = duration.as_nanos();
    // A float-to-int `as` cast saturates; rounding may overshoot, hence the `min`.
    let scaled = ((nanos as f64 * factor) as u128).min(nanos);
    let secs = u64::try_from(scaled / NANOS_PER_SEC).unwrap_or(u64::MAX);
    let subsec_nanos = u32::try_from(scaled % NANOS_PER_SEC).unwrap_or(0);
    Duration::new(secs, subsec_nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn delay_doubles_per_attempt_until_the_cap() {
        let backoff = Backoff::new().with_jitter(Jitter::None);
        let delays: Vec<_> = (1..=7)
            .map(|attempt| backoff.delay_before(SECOND, attempt, 0.0).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn huge_attempt_counts_saturate_at_the_cap() {
        let backoff = Backoff::new().with_jitter(Jitter::None);
        assert_eq!(
            backoff.delay_before(Duration::from_millis(1), u32::MAX, 0.0),
            DEFAULT_BACKOFF_CAP
        );
        assert_eq!(
            backoff.delay_before(Duration::MAX, u32::MAX, 0.0),
            Duration::MAX
        );
    }

    #[test]
    fn server_retry_above_the_cap_is_respected() {
        let backoff = Backoff::new()
            .with_jitter(Jitter::None)
            .with_cap(Duration::from_secs(5));
        let base = Duration::from_secs(60);
        assert_eq!(backoff.delay_before(base, 1, 0.0), base);
        assert_eq!(backoff.delay_before(base, 4, 0.0), base);
    }

    #[test]
    fn full_jitter_spans_zero_to_the_delay() {
        let backoff = Backoff::new().with_jitter(Jitter::Full);
        assert_eq!(backoff.delay_before(SECOND, 2, 0.0), Duration::ZERO);
        assert_eq!(backoff.delay_before(SECOND, 2, 0.5), SECOND);
        assert_eq!(backoff.delay_before(SECOND, 2, 1.0), 2 * SECOND);
    }

    #[test]
    fn equal_jitter_never_goes_below_half() {
        let backoff = Backoff::new();
        assert_eq!(backoff.delay_before(SECOND, 2, 0.0), SECOND);
        assert_eq!(backoff.delay_before(SECOND, 2, 1.0), 2 * SECOND);
        assert_eq!(backoff.delay_before(SECOND, 2, f64::NAN), SECOND);
        assert_eq!(backoff.delay_before(SECOND, 2, -3.0), SECOND);
    }

    #[test]
    fn jitter_on_the_largest_duration_does_not_panic() {
        for jitter in [Jitter::Full, Jitter::Equal] {
            let backoff = Backoff::new().with_jitter(jitter);
            assert!(backoff.delay_before(Duration::MAX, 1, 0.999_999) <= Duration::MAX);
            assert_eq!(backoff.delay_before(Duration::MAX, 1, 1.0), Duration::MAX);
        }
    }

    #[test]
    fn max_attempts_limits_consecutive_attempts() {
        let backoff = Backoff::new().with_max_attempts(2);
        assert!(backoff.is_attempt_allowed(1));
        assert!(backoff.is_attempt_allowed(2));
        assert!(!backoff.is_attempt_allowed(3));
        assert!(Backoff::new().is_attempt_allowed(u32::MAX));
    }
}
