//! Limits for live connections: a token bucket (events pushed and messages received per connection) and the cap
//! on connections served at once.
//!
//! Both are plain counters: the bucket lives with the one task that uses it, and the cap is an atomic, so nothing
//! here takes a lock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Allows `per_sec` actions a second on average and bursts of up to `burst`; refills continuously.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket that allows bursts of one second's worth.
    pub fn new(per_sec: u32, now: Instant) -> Self {
        Self::with_burst(per_sec, per_sec, now)
    }

    /// A full bucket that allows bursts of `burst` actions.
    pub fn with_burst(per_sec: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            per_sec: f64::from(per_sec.max(1)),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The cap on live connections (Socket.IO sockets and SSE streams together).
#[derive(Debug)]
pub struct ConnectionSlots {
    max: usize,
    live: AtomicUsize,
}

/// One taken slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot(Arc<ConnectionSlots>);

impl ConnectionSlots {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(ConnectionSlots {
            max,
            live: AtomicUsize::new(0),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Takes a slot unless all are taken.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
                (live < self.max).then_some(live + 1)
            })
            .ok()
            .map(|_| Slot(Arc::clone(self)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, start);
        assert_eq!((0..20).filter(|_| bucket.try_take(start)).count(), 10);
        let later = start + Duration::from_millis(500);
        assert_eq!((0..20).filter(|_| bucket.try_take(later)).count(), 5);
        let much_later = later + Duration::from_secs(60);
        assert_eq!(
            (0..20).filter(|_| bucket.try_take(much_later)).count(),
            10,
            "never more than one second's worth"
        );
    }

    #[test]
    fn a_larger_burst_absorbs_uneven_arrivals() {
        let start = Instant::now();
        let mut bucket = TokenBucket::with_burst(10, 30, start);
        assert_eq!((0..50).filter(|_| bucket.try_take(start)).count(), 30);
        let later = start + Duration::from_secs(1);
        assert_eq!((0..50).filter(|_| bucket.try_take(later)).count(), 10);
    }

    #[test]
    fn slots_cap_connections_and_free_on_drop() {
        let slots = ConnectionSlots::new(2);
        let a = slots.try_acquire().expect("first");
        let _b = slots.try_acquire().expect("second");
        assert!(slots.try_acquire().is_none());
        drop(a);
        assert_eq!(slots.live(), 1);
        assert!(slots.try_acquire().is_some());
    }
}
