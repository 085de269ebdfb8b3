//! Jittered exponential backoff, shared by the MQTT reconnect loop and the camera reopen loop.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Jittered exponential backoff, without a random-number dependency: std's `RandomState` is
/// seeded from the OS per instance, which is plenty to de-synchronise a fleet of boxes
/// reconnecting to the same broker after it restarts.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
    state: u64,
}

impl Backoff {
    /// Delays start between `base / 2` and `base` and double up to `max`.
    pub fn new(base: Duration, max: Duration) -> Backoff {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(0x5eed);
        Backoff {
            base,
            max,
            attempt: 0,
            state: h.finish() | 1,
        }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn next_delay(&mut self) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        // xorshift64*
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let r = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let frac = (r >> 11) as f64 / (1u64 << 53) as f64;
        // Between half and all of the exponential delay.
        exp.mul_f64(0.5 + 0.5 * frac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE_BACKOFF: Duration = Duration::from_millis(250);
    const MAX_BACKOFF: Duration = Duration::from_secs(5);

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        let mut b = Backoff::new(BASE_BACKOFF, MAX_BACKOFF);
        let delays: Vec<Duration> = (0..12).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= BASE_BACKOFF / 2 && delays[0] <= BASE_BACKOFF);
        assert!(delays
            .iter()
            .all(|d| *d <= MAX_BACKOFF && *d >= BASE_BACKOFF / 2));
        assert!(delays[11] >= MAX_BACKOFF / 2);
        let mut other = Backoff::new(BASE_BACKOFF, MAX_BACKOFF);
        let other_delays: Vec<Duration> = (0..12).map(|_| other.next_delay()).collect();
        assert_ne!(delays, other_delays, "two boxes must not retry in lockstep");
        b.reset();
        assert!(b.next_delay() <= BASE_BACKOFF);
    }
}
