//! Retention: a background job that deletes events older than `retention.days`, a small batch per transaction
//! so the writer is never held for long. With several instances on one database, the one holding the
//! `retention` lease purges.

use crate::event::Timestamp;
use crate::store::DynStore;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Deletes everything older than `days` in batches of `batch_size`; returns how many were deleted.
pub async fn purge_once(
    store: &DynStore,
    days: u32,
    batch_size: usize,
    shutdown: &CancellationToken,
) -> u64 {
    let cutoff = Timestamp(Timestamp::now().0 - i64::from(days) * MICROS_PER_DAY);
    let mut total = 0;
    while !shutdown.is_cancelled() {
        match store.purge_events_before(cutoff, batch_size).await {
            Ok(0) => break,
            Ok(n) => {
                total += n;
                metrics::counter!("switchboard_retention_deleted_total").increment(n);
                // Let queued appends in before the next batch.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(err) => {
                tracing::error!(error = %err, "retention purge failed; will try again next round");
                break;
            }
        }
    }
    total
}

/// Runs the purge every `interval` until shutdown. `days == 0` disables it.
pub async fn run(
    store: DynStore,
    days: u32,
    interval: Duration,
    batch_size: usize,
    shutdown: CancellationToken,
) {
    if days == 0 {
        return;
    }
    loop {
        // One instance purges per round when several share the database.
        match store.try_lease("retention").await {
            Ok(Some(lease)) => {
                let deleted = purge_once(&store, days, batch_size, &shutdown).await;
                lease.release().await;
                if deleted > 0 {
                    tracing::info!(deleted, days, "retention purge deleted old events");
                }
            }
            Ok(None) => {}
            Err(err) => tracing::warn!(error = %err, "cannot take the retention lease; next round"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
