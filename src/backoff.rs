//! Exponential backoff with jitter, shared by the relay link and the LMS sync worker.
//!
//! Sans-IO: the attempt count and a jitter draw in, a wait out.

use std::time::Duration;

/// The wait before retry number `attempt` (0-based): `base * 2^attempt`, capped at
/// `max`, then scaled into [50%, 100%] by `jitter` in [0, 1), so boxes that lost the
/// same server at once do not all come back in the same instant.
pub fn delay(base: Duration, max: Duration, attempt: u32, jitter: f64) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(16));
    exp.min(max).mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// [`delay`] with the attempt count kept in memory (the reconnect loop).
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempt: 0,
        }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let wait = delay(self.base, self.max, self.attempt, jitter);
        self.attempt = self.attempt.saturating_add(1);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
        let waits: Vec<_> = (0..8).map(|_| b.next_delay(1.0)).collect();
        assert_eq!(waits[0], Duration::from_millis(250));
        assert_eq!(waits[1], Duration::from_millis(500));
        assert_eq!(waits[5], Duration::from_secs(8));
        assert_eq!(waits[7], Duration::from_secs(10));
        assert_eq!(
            b.next_delay(0.0),
            Duration::from_secs(5),
            "jitter halves at most"
        );
        b.reset();
        assert_eq!(b.next_delay(1.0), Duration::from_millis(250));
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        assert_eq!(
            delay(
                Duration::from_secs(1),
                Duration::from_secs(600),
                u32::MAX,
                1.0
            ),
            Duration::from_secs(600)
        );
    }
}
