//! API keys: generation, hashing, and the caller an authenticated request acts as.
//!
//! A key is `sb_` followed by 43 characters of base64url (32 random bytes). Only its SHA-256 is stored: the key
//! has 256 bits of entropy, so a fast hash is enough and lookups stay a single indexed read.

use crate::event::Timestamp;
use crate::store::{ApiKeyRecord, AuditEntry, DynStore, StoreResult};
use arc_swap::ArcSwap;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub const KEY_PREFIX: &str = "sb_";
/// The id of the admin key set from `auth.admin_token` / `SWITCHBOARD_ADMIN_TOKEN`.
pub const BOOTSTRAP_ADMIN_ID: &str = "admin";

/// What an authenticated request may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every org.
    Admin,
    /// One org only.
    Org(String),
}

/// The key a request was made with.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: String,
    pub scope: Scope,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.scope == Scope::Admin
    }

    pub fn org(&self) -> Option<&str> {
        match &self.scope {
            Scope::Admin => None,
            Scope::Org(org) => Some(org),
        }
    }
}

pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

pub fn hash_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// The first characters of a key, safe to show and log.
pub fn key_prefix(key: &str) -> String {
    key.chars().take(KEY_PREFIX.len() + 6).collect()
}

pub fn new_record(id: String, org_id: Option<String>, name: String, key: &str) -> ApiKeyRecord {
    ApiKeyRecord {
        id,
        org_id,
        name,
        key_hash: hash_key(key),
        prefix: key_prefix(key),
        created_at: Timestamp::now(),
    }
}

/// A freshly created org key: the only moment the key itself exists outside the caller's hands.
pub struct CreatedOrgKey {
    pub id: String,
    pub key: String,
}

/// Creates a key for `org_id` and records `key.create` in the audit log, in one transaction.
pub async fn create_org_key(
    store: &DynStore,
    actor: &str,
    org_id: &str,
    name: &str,
) -> StoreResult<CreatedOrgKey> {
    let key = generate_key();
    let id = uuid::Uuid::now_v7().to_string();
    let record = new_record(id.clone(), Some(org_id.to_string()), name.to_string(), &key);
    let audit = AuditEntry {
        timestamp: Timestamp::now(),
        actor: Some(actor.to_string()),
        org_id: Some(org_id.to_string()),
        action: "key.create".into(),
        target: id.clone(),
        outcome: "ok".into(),
        detail: Some(format!("prefix {}", record.prefix)),
    };
    store.insert_api_key(&record, &audit).await?;
    Ok(CreatedOrgKey { id, key })
}

/// Makes sure an admin key exists. With a configured token, that token becomes (or replaces) the bootstrap admin
/// key. Without one, the first start creates a key and returns it so the caller can print it once.
pub async fn bootstrap_admin(store: &DynStore, configured: &str) -> StoreResult<Option<String>> {
    if !configured.is_empty() {
        let record = new_record(
            BOOTSTRAP_ADMIN_ID.into(),
            None,
            "bootstrap admin".into(),
            configured,
        );
        store.upsert_api_key(&record).await?;
        return Ok(None);
    }
    if store.any_admin_key().await? {
        return Ok(None);
    }
    let key = generate_key();
    store
        .upsert_api_key(&new_record(
            BOOTSTRAP_ADMIN_ID.into(),
            None,
            "bootstrap admin".into(),
            &key,
        ))
        .await?;
    Ok(Some(key))
}

/// The caller a key hash belongs to, or `None` when no key has it.
async fn lookup(store: &DynStore, hash: &[u8]) -> StoreResult<Option<Caller>> {
    let record = store.find_api_key(hash).await?;
    Ok(record.map(|r| Caller {
        key_id: r.id,
        scope: match r.org_id {
            Some(org) => Scope::Org(org),
            None => Scope::Admin,
        },
    }))
}

/// Keys that authenticated recently, by hash, so that a request does not cost a database read (at thousands of
/// requests a second those reads, each on the blocking pool, were a large share of the HTTP path). An entry is
/// trusted for `ttl`, then read again; a key deleted through this process is forgotten at once, one deleted
/// through another instance within `ttl`. Only keys that exist are kept, so the map holds at most the keys in
/// use. Reads are lock-free (a snapshot swapped on change).
pub struct KeyCache {
    entries: ArcSwap<HashMap<Vec<u8>, (Caller, Instant)>>,
    ttl: Duration,
}

impl KeyCache {
    pub fn new(ttl: Duration) -> Self {
        KeyCache {
            entries: ArcSwap::from_pointee(HashMap::new()),
            ttl,
        }
    }

    /// Resolves a presented key to its caller (`None` when it is unknown), from the cache when it was seen
    /// within the ttl.
    pub async fn authenticate(&self, store: &DynStore, key: &str) -> StoreResult<Option<Caller>> {
        let hash = hash_key(key);
        if let Some((caller, seen)) = self.entries.load().get(&hash) {
            if seen.elapsed() < self.ttl {
                return Ok(Some(caller.clone()));
            }
        }
        let caller = lookup(store, &hash).await?;
        let now = Instant::now();
        self.entries.rcu(|entries| {
            let mut next = HashMap::clone(entries);
            next.retain(|_, (_, seen)| seen.elapsed() < self.ttl);
            match &caller {
                Some(caller) => next.insert(hash.clone(), (caller.clone(), now)),
                None => next.remove(&hash),
            };
            next
        });
        Ok(caller)
    }

    /// Drops the key with this id (it was deleted).
    pub fn forget(&self, key_id: &str) {
        self.entries.rcu(|entries| {
            let mut next = HashMap::clone(entries);
            next.retain(|_, (caller, _)| caller.key_id != key_id);
            next
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_prefixed() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX));
        assert_eq!(a.len(), KEY_PREFIX.len() + 43);
        assert_eq!(hash_key(&a).len(), 32);
        assert_eq!(key_prefix(&a).len(), 9);
    }
}
