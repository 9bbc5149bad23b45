//! Group fsync of the WAL, decoupled from commits.
//!
//! The writer connection commits with `synchronous=NORMAL`: in WAL mode a commit then only writes its frames to
//! the WAL file (consistent, not yet durable), and SQLite itself syncs around checkpoints. Before any event is
//! acknowledged, [`WalSyncer::sync`] fdatasyncs the WAL file, which makes every commit written so far durable.
//! Concurrent sync requests coalesce: one fsync serves all the commits made before it started, so the disk's
//! sync latency is paid once per group of batches rather than once per batch.

use crate::store::{StoreError, StoreResult, SyncTicket};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

pub(super) struct WalSyncer {
    wal_path: PathBuf,
    /// Commits made so far (the ticket of the latest commit).
    committed: AtomicU64,
    /// Commits known durable.
    synced: AtomicU64,
    /// The WAL file, opened on first use; held while an fsync runs so that fsyncs do not overlap.
    file: Mutex<Option<File>>,
}

impl WalSyncer {
    pub fn open(db_path: &Path) -> StoreResult<Self> {
        let mut wal = db_path.as_os_str().to_owned();
        wal.push("-wal");
        Ok(WalSyncer {
            wal_path: PathBuf::from(wal),
            committed: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            file: Mutex::new(None),
        })
    }

    /// Records a commit (called by the writer right after `COMMIT`, while it still holds the writer lock).
    pub fn committed(&self) -> SyncTicket {
        SyncTicket(self.committed.fetch_add(1, Ordering::AcqRel) + 1)
    }

    /// True once the commit `ticket` (and every earlier one) is on stable storage.
    pub fn is_synced(&self, ticket: SyncTicket) -> bool {
        self.synced.load(Ordering::Acquire) >= ticket.0
    }

    /// Returns once the commit `ticket` (and every earlier one) is on stable storage; blocks for the fsync.
    pub fn sync(&self, ticket: SyncTicket) -> StoreResult<()> {
        if self.is_synced(ticket) {
            return Ok(());
        }
        let mut guard = self
            .file
            .lock()
            .map_err(|_| StoreError::Database("WAL syncer lock poisoned".into()))?;
        // Someone else's fsync may have covered us while we waited for the lock.
        if self.is_synced(ticket) {
            return Ok(());
        }
        let file = match guard.as_ref() {
            Some(file) => file,
            None => guard.insert(
                File::options()
                    .read(true)
                    .write(true)
                    .open(&self.wal_path)
                    .map_err(|e| {
                        StoreError::Database(format!(
                            "cannot open {}: {e}",
                            self.wal_path.display()
                        ))
                    })?,
            ),
        };
        // Every commit counted so far has finished writing its frames, so this fsync covers all of them.
        let covered = self.committed.load(Ordering::Acquire);
        file.sync_data().map_err(|e| {
            if e.raw_os_error() == Some(28) {
                StoreError::Full(e.to_string())
            } else {
                StoreError::Database(format!("fsync of the WAL failed: {e}"))
            }
        })?;
        self.synced.fetch_max(covered, Ordering::AcqRel);
        Ok(())
    }
}
