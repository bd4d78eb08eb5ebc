//! Exponential back-off with jitter: 800 ms doubling to 30 s, each delay drawn from [d, 2d), reset after a
//! healthy period (by default also when the last failure is 120 s old). Jitter spreads the reconnects of many
//! gateways after an API server outage.

use std::time::{Duration, Instant};

const INITIAL: Duration = Duration::from_millis(800);
const MAX: Duration = Duration::from_secs(30);
/// The most a server's Retry-After may stretch one delay: a proxy answering "come back tomorrow" must not silence
/// discovery for a day.
const MAX_SERVER_HINT: Duration = Duration::from_secs(120);
/// A connection that stayed healthy this long starts over from the initial delay.
const RESET_AFTER: Duration = Duration::from_secs(120);

pub struct Backoff {
    next: Duration,
    last_failure: Option<Instant>,
    /// Failures this far apart start over from the initial delay; `None`: only `reset` does.
    reset_after: Option<Duration>,
    rng: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    pub fn new() -> Backoff {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ (u64::from(std::process::id()) << 32);
        Backoff {
            next: INITIAL,
            last_failure: None,
            reset_after: Some(RESET_AFTER),
            rng: seed | 1,
        }
    }

    /// A back-off with a fixed random sequence (tests).
    #[cfg(test)]
    pub fn with_seed(seed: u64) -> Backoff {
        Backoff {
            next: INITIAL,
            last_failure: None,
            reset_after: Some(RESET_AFTER),
            rng: seed | 1,
        }
    }

    /// This back-off, growing until `reset` however long ago the last failure was: for failures whose own
    /// cause can take longer than `RESET_AFTER` to recur (a 410 after a list slower than the server's history).
    pub fn without_time_reset(mut self) -> Backoff {
        self.reset_after = None;
        self
    }

    /// The delay before the next attempt. `server_hint` (Retry-After) is honoured as a lower bound.
    pub fn next_delay(&mut self, server_hint: Option<Duration>) -> Duration {
        if let (Some(last), Some(after)) = (self.last_failure, self.reset_after)
            && last.elapsed() > after
        {
            self.next = INITIAL;
        }
        self.last_failure = Some(Instant::now());
        let base = self.next;
        self.next = (self.next * 2).min(MAX);
        let jittered = base + base.mul_f64(self.random_unit());
        jittered.max(server_hint.unwrap_or_default().min(MAX_SERVER_HINT))
    }

    /// A new back-off at the initial delay whose jitter comes from this one's random sequence (a second series
    /// that stays reproducible under `with_seed`).
    pub fn split(&mut self) -> Backoff {
        Backoff {
            next: INITIAL,
            last_failure: None,
            reset_after: self.reset_after,
            rng: (self.random_unit() * (1u64 << 53) as f64) as u64 | 1,
        }
    }

    /// Forget past failures (called after a productive or long-lived watch).
    pub fn reset(&mut self) {
        self.next = INITIAL;
        self.last_failure = None;
    }

    /// A random number in [0, n), for spreading other timers (e.g. watch timeouts) from the same source.
    pub fn random_below(&mut self, n: u64) -> u64 {
        (self.random_unit() * n as f64) as u64 % n.max(1)
    }

    /// Moves the last failure `d` into the past, as if that much time had passed (tests).
    #[cfg(test)]
    pub fn age(&mut self, d: Duration) {
        self.last_failure = self.last_failure.map(|t| t.checked_sub(d).unwrap_or(t));
    }

    fn random_unit(&mut self) -> f64 {
        // xorshift64: plenty for spreading retries.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_with_jitter_and_cap() {
        let mut b = Backoff::new();
        let mut base = INITIAL;
        for _ in 0..10 {
            let d = b.next_delay(None);
            assert!(
                d >= base && d < base * 2,
                "{d:?} not in [{base:?}, {:?})",
                base * 2
            );
            base = (base * 2).min(MAX);
        }
        b.reset();
        assert!(b.next_delay(None) < INITIAL * 2);
    }

    #[test]
    fn a_quiet_spell_resets_the_delay_unless_only_reset_may() {
        for (series, resets) in [
            (Backoff::with_seed(3), true),
            (Backoff::with_seed(3).without_time_reset(), false),
        ] {
            let mut b = series;
            b.next_delay(None);
            b.next_delay(None);
            b.age(RESET_AFTER + Duration::from_secs(1));
            let d = b.next_delay(None);
            assert_eq!(d < INITIAL * 2, resets, "{d:?}");
            if !resets {
                assert!(d >= INITIAL * 4, "it went on growing: {d:?}");
            }
        }
    }

    #[test]
    fn retry_after_is_a_lower_bound_within_reason() {
        let mut b = Backoff::new();
        assert!(b.next_delay(Some(Duration::from_secs(5))) >= Duration::from_secs(5));
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(u64::MAX))),
            MAX_SERVER_HINT
        );
    }
}
