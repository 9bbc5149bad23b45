//! Leases: which process runs a singleton job (a durable listener, the retention purge) when several processes
//! share one store. A lease is held until released or until its holder's session with the database ends, so a
//! crashed process's jobs move to another process.

use async_trait::async_trait;

/// A held lease.
#[async_trait]
pub trait Lease: Send + Sync {
    /// False once the lease is lost (the session that held it ended); the holder must stop and ask again.
    async fn held(&self) -> bool;

    /// Gives the lease up.
    async fn release(self: Box<Self>);
}

/// The lease of a store only one process uses: always held.
pub struct LocalLease;

#[async_trait]
impl Lease for LocalLease {
    async fn held(&self) -> bool {
        true
    }

    async fn release(self: Box<Self>) {}
}
