//! Open-loop pacing: operations are due on a fixed schedule (`start + i / rate`) whatever the server does, and
//! latency is measured from the due time, so time spent waiting for the server is counted
//! (coordinated-omission safe). A cap on operations in flight keeps memory bounded; when it is reached the
//! pacer falls behind its schedule, which the report shows as backpressure.

use std::time::Duration;
use tokio::time::Instant;

/// The schedule of one path.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub start: Instant,
    pub rate: f64,
    pub duration: Duration,
}

impl Schedule {
    /// How many operations the schedule holds in all.
    pub fn total(&self) -> u64 {
        (self.rate * self.duration.as_secs_f64()).floor() as u64
    }

    /// When operation `i` (0-based) is due.
    pub fn due(&self, i: u64) -> Instant {
        self.start + Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// The operations due by `now` (a count, capped at the total).
    pub fn due_by(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.start).as_secs_f64();
        ((elapsed * self.rate).floor() as u64 + 1).min(self.total())
    }
}

/// How far behind its schedule a path fell (how late the last operation started), in ms.
pub fn lag_ms(due: Instant, started: Instant) -> f64 {
    started.saturating_duration_since(due).as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_math() {
        let start = Instant::now();
        let s = Schedule {
            start,
            rate: 1000.0,
            duration: Duration::from_secs(2),
        };
        assert_eq!(s.total(), 2000);
        assert_eq!(s.due(500), start + Duration::from_millis(500));
        assert_eq!(s.due_by(start), 1);
        assert_eq!(s.due_by(start + Duration::from_millis(10)), 11);
        assert_eq!(s.due_by(start + Duration::from_secs(10)), 2000);
    }
}
