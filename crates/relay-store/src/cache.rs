//! The in-process connection cache, the default when no Redis is configured.
//!
//! Values are [`CachedToken`]s: the sealed access token and what decides whether it is due;
//! never the refresh token, never plaintext. Entries expire after a time-to-live so that a change made by another
//! instance (which cannot invalidate this process's memory) is seen within that time.
//!
//! A `put` never replaces a newer version with an older one. Readers that missed the cache and
//! a refresher that just wrote new tokens both `put`; if the reader's older row landed last it
//! would serve the previous token until the entry expired.

use std::time::Duration;

use async_trait::async_trait;
use moka::future::Cache;
use moka::ops::compute::Op;
use relay_core::ConnectionId;
use relay_core::ports::{CachedToken, ConnectionCache};

/// A bounded, expiring in-memory [`ConnectionCache`].
#[derive(Clone)]
pub struct MemoryCache {
    entries: Cache<ConnectionId, CachedToken>,
}

impl std::fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCache")
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

impl MemoryCache {
    /// Holds at most `capacity` connections, each for at most `ttl` after it was written.
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
        }
    }
}

#[async_trait]
impl ConnectionCache for MemoryCache {
    async fn get(&self, id: &ConnectionId) -> Option<CachedToken> {
        self.entries.get(id).await
    }

    async fn put(&self, fresh: CachedToken) {
        self.entries
            .entry(fresh.id.clone())
            .and_compute_with(|current| async move {
                match current {
                    // Same version still replaces (an entry is rebuilt from the same row).
                    Some(entry) if entry.value().version > fresh.version => Op::Nop,
                    _ => Op::Put(fresh),
                }
            })
            .await;
    }

    async fn invalidate(&self, id: &ConnectionId) {
        self.entries.invalidate(id).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_core::clock::Timestamp;
    use relay_core::{
        ActorId, ActorType, Connection, ConnectionStatus, ProviderName, Scopes, WorkspaceId,
    };

    fn conn(version: i64) -> Connection {
        Connection {
            id: ConnectionId::from_stored("0190a0b0-0000-7000-8000-000000000001".into()),
            workspace_id: WorkspaceId::from_stored("ws".into()),
            provider: ProviderName::from_stored("google".into()),
            actor_type: ActorType::user(),
            actor_id: ActorId::from_stored("u1".into()),
            scopes: Scopes::default(),
            token_type: "Bearer".into(),
            access_token: vec![version as u8],
            refresh_token: None,
            expires_at: None,
            status: ConnectionStatus::Active,
            status_reason: None,
            version,
            lease_owner: None,
            lease_until: None,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
            last_refreshed_at: None,
            next_refresh_at: None,
            refresh_failures: 0,
            account_subject: None,
            account_email: None,
        }
    }

    #[tokio::test]
    async fn an_older_version_never_replaces_a_newer_one() {
        let cache = MemoryCache::new(10, Duration::from_secs(60));
        cache.put(CachedToken::from(&conn(2))).await;
        cache.put(CachedToken::from(&conn(1))).await;
        let got = cache.get(&conn(1).id).await.expect("cached");
        assert_eq!(got.version, 2);

        let mut leased = conn(2);
        leased.status_reason = Some("same version, rebuilt".into());
        cache.put(CachedToken::from(&leased)).await;
        let got = cache.get(&leased.id).await.expect("cached");
        assert_eq!(got.status_reason.as_deref(), Some("same version, rebuilt"));

        cache.put(CachedToken::from(&conn(3))).await;
        assert_eq!(cache.get(&leased.id).await.map(|c| c.version), Some(3));
        cache.invalidate(&leased.id).await;
        assert!(cache.get(&leased.id).await.is_none());
    }
}
