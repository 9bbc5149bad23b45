//! Latency samples and their percentiles (nearest-rank on the sorted samples; exact, no buckets).

use serde::Serialize;

/// Latency samples in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    values: Vec<u64>,
}

/// Count and percentiles of a set of samples, in milliseconds.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Samples {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one latency; negative ones (clock steps, or a push that beat the acknowledgement) count as 0.
    pub fn record(&mut self, micros: i64) {
        self.values.push(micros.max(0) as u64);
    }

    pub fn extend(&mut self, other: Samples) {
        self.values.extend(other.values);
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn summary(&self) -> Summary {
        let mut sorted = self.values.clone();
        sorted.sort_unstable();
        let ms = |v: u64| v as f64 / 1000.0;
        let Some(&max) = sorted.last() else {
            return Summary::default();
        };
        let sum: u128 = sorted.iter().map(|&v| u128::from(v)).sum();
        Summary {
            count: sorted.len(),
            p50_ms: ms(percentile(&sorted, 50.0)),
            p95_ms: ms(percentile(&sorted, 95.0)),
            p99_ms: ms(percentile(&sorted, 99.0)),
            max_ms: ms(max),
            mean_ms: sum as f64 / sorted.len() as f64 / 1000.0,
        }
    }
}

/// Nearest-rank percentile of sorted values: the smallest value with at least `p` % of the values at or below it.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 95.0), 95);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[7], 50.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
        // 95th of 10 values is the 10th (ceil 9.5).
        let ten: Vec<u64> = (1..=10).collect();
        assert_eq!(percentile(&ten, 95.0), 10);
    }

    #[test]
    fn summary_in_milliseconds() {
        let mut s = Samples::new();
        for v in [3000, 1000, 2000, -5] {
            s.record(v);
        }
        let sum = s.summary();
        assert_eq!(sum.count, 4);
        assert_eq!(sum.p50_ms, 1.0);
        assert_eq!(sum.max_ms, 3.0);
        assert_eq!(sum.mean_ms, 1.5);
        assert_eq!(Samples::new().summary(), Summary::default());
    }
}
