//! A token bucket for a subscription's `rateLimit` (deliveries per second, bursts up to one second's worth).

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, now: Instant) -> Self {
        let capacity = rate.max(1.0);
        TokenBucket {
            rate,
            capacity,
            tokens: capacity,
            last: now,
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Takes a token if there is one (`None`), or tells how long until there will be.
    pub fn take(&mut self, now: Instant) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_paces() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(5.0, start);
        for _ in 0..5 {
            assert_eq!(bucket.take(start), None);
        }
        let wait = bucket.take(start).expect("empty");
        assert!((wait.as_secs_f64() - 0.2).abs() < 1e-6, "{wait:?}");
        assert_eq!(bucket.take(start + Duration::from_millis(200)), None);
        assert!(bucket.take(start + Duration::from_millis(200)).is_some());
    }

    #[test]
    fn slow_rates_allow_one_at_a_time() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(0.5, start);
        assert_eq!(bucket.take(start), None);
        let wait = bucket.take(start).expect("empty");
        assert!((wait.as_secs_f64() - 2.0).abs() < 1e-6);
    }
}
