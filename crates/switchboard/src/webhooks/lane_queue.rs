//! The deliveries a subscription's lane holds, waiting for a request slot: retries go first.
//!
//! A retry was due at a time the subscription's retry schedule promised; a new delivery has not been promised a
//! time. When the receiver is slower than the event rate, the lane fills with new deliveries, and a retry queued
//! behind them would go out seconds late. So the lane takes retries first (oldest first), then new deliveries in
//! the order they came. New deliveries wait longer under that load either way; retries keep their schedule.

use crate::store::webhooks::ClaimedDelivery;
use std::collections::VecDeque;

#[derive(Default)]
pub struct LaneQueue {
    retries: VecDeque<ClaimedDelivery>,
    fresh: VecDeque<ClaimedDelivery>,
}

impl LaneQueue {
    pub fn push(&mut self, delivery: ClaimedDelivery) {
        if delivery.attempts > 0 {
            self.retries.push_back(delivery);
        } else {
            self.fresh.push_back(delivery);
        }
    }

    /// The next delivery to send: the oldest retry, else the oldest new delivery.
    pub fn pop(&mut self) -> Option<ClaimedDelivery> {
        self.retries.pop_front().or_else(|| self.fresh.pop_front())
    }

    pub fn is_empty(&self) -> bool {
        self.retries.is_empty() && self.fresh.is_empty()
    }

    /// Everything held, for handing back at a stop.
    pub fn drain(&mut self) -> impl Iterator<Item = ClaimedDelivery> + '_ {
        self.retries.drain(..).chain(self.fresh.drain(..))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Timestamp;
    use std::sync::Arc;

    fn delivery(id: i64, attempts: u32) -> ClaimedDelivery {
        ClaimedDelivery {
            id,
            subscription_id: Arc::from("sub"),
            attempts,
            created_at: Timestamp(0),
            fresh: attempts == 0,
            event: None,
            lease_until: Timestamp(0),
        }
    }

    #[test]
    fn retries_go_before_new_deliveries_and_each_kind_keeps_its_order() {
        let mut queue = LaneQueue::default();
        for (id, attempts) in [(1, 0), (2, 0), (3, 1), (4, 0), (5, 3), (6, 0)] {
            queue.push(delivery(id, attempts));
        }
        let order: Vec<i64> = std::iter::from_fn(|| queue.pop()).map(|d| d.id).collect();
        assert_eq!(order, vec![3, 5, 1, 2, 4, 6]);
        assert!(queue.is_empty());
    }

    #[test]
    fn drain_hands_back_everything() {
        let mut queue = LaneQueue::default();
        queue.push(delivery(1, 0));
        queue.push(delivery(2, 2));
        let ids: Vec<i64> = queue.drain().map(|d| d.id).collect();
        assert_eq!(ids, vec![2, 1]);
        assert!(queue.is_empty());
    }
}
