//! The shared token cache: Redis holds the hot-path entry of each connection (its sealed
//! access token, never the refresh token), and each replica keeps a small in-process tier in
//! front of it for speed.
//!
//! Keys are `{prefix}tok:{connection_id}`: a random id, so a key reveals no actor. A value is
//! `{version}:{json}`; the version prefix lets a Lua script refuse to replace a newer entry
//! with an older one. Entries expire with the token.
//!
//! **Staleness of the in-process tier.** Every write that changes an entry (refresh, status
//! change, delete) publishes the connection id on `{prefix}tok-invalidate`, and every replica
//! drops that id from its tier on receipt. The tier is only used while this replica's
//! subscription is live: on a disconnect it is cleared and bypassed until the subscription is
//! back (messages sent meanwhile are lost, so nothing cached before may be trusted). A reader
//! elsewhere therefore sees a change within the pub/sub delivery delay (sub-millisecond on a
//! LAN); a refreshed-away token stays valid until its own expiry, so that window never serves
//! an unusable token; a delete is seen by the next read after the message arrives.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use futures_util::StreamExt;
use relay_core::clock::{Clock, Timestamp};
use relay_core::ports::{CachedToken, ConnectionCache};
use relay_core::{
    ActorId, ActorType, ConnectionId, ConnectionStatus, ProviderName, Scopes, WorkspaceId,
};
use serde::{Deserialize, Serialize};

use super::{Redis, RedisError, fell_back};

/// Writes `ARGV[2]` unless the stored entry has a newer version (then answers 0); publishes
/// the id when an existing, different entry was replaced (replicas may hold it in their tier).
const PUT_SCRIPT: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur then
  local v = tonumber(string.match(cur, '^(%d+):'))
  if v and v > tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if cur and cur ~= ARGV[2] then redis.call('PUBLISH', KEYS[2], ARGV[4]) end
return 1
";

const DELETE_SCRIPT: &str = r"
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', KEYS[2], ARGV[1])
return 1
";

/// Entries of tokens without an expiry live this long in Redis.
const NO_EXPIRY_TTL: Duration = Duration::from_secs(3600);
/// No entry lives longer than this (a token's lifetime is capped here too).
const MAX_ENTRY_LIFETIME: Duration = Duration::from_secs(24 * 3600);

pub struct RedisCache {
    redis: Redis,
    clock: Arc<dyn Clock>,
    local: moka::future::Cache<ConnectionId, CachedToken>,
    /// True while the invalidation subscription is live; the local tier is used only then.
    subscribed: Arc<AtomicBool>,
    channel: String,
    put_script: redis::Script,
    delete_script: redis::Script,
}

impl RedisCache {
    /// Builds the cache and starts the invalidation listener (a task that reconnects on its
    /// own). `local_capacity` bounds the in-process tier (0 disables it); `local_ttl` is a
    /// backstop on top of invalidation.
    pub fn new(
        redis: Redis,
        clock: Arc<dyn Clock>,
        local_capacity: u64,
        local_ttl: Duration,
    ) -> Arc<Self> {
        let channel = redis.key("tok-invalidate");
        let cache = Arc::new(Self {
            local: moka::future::Cache::builder()
                .max_capacity(local_capacity)
                .time_to_live(local_ttl)
                .build(),
            subscribed: Arc::new(AtomicBool::new(false)),
            channel,
            put_script: redis::Script::new(PUT_SCRIPT),
            delete_script: redis::Script::new(DELETE_SCRIPT),
            redis,
            clock,
        });
        if local_capacity > 0 {
            tokio::spawn(listen(Arc::downgrade(&cache)));
        }
        cache
    }

    fn key(&self, id: &ConnectionId) -> String {
        self.redis.key(&format!("tok:{}", id.as_str()))
    }

    fn ttl_ms(&self, entry: &CachedToken) -> u64 {
        let ttl = match entry.expires_at {
            Some(exp) => self.clock.now().until(exp).min(MAX_ENTRY_LIFETIME),
            None => NO_EXPIRY_TTL,
        };
        u64::try_from(ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1_000)
    }

    /// Whether the in-process tier is in use (its invalidation subscription is live).
    pub fn local_tier_active(&self) -> bool {
        self.use_local()
    }

    fn use_local(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }
}

async fn listen(cache: std::sync::Weak<RedisCache>) {
    loop {
        let Some(strong) = cache.upgrade() else {
            return;
        };
        let client = strong.redis.client().clone();
        let channel = strong.channel.clone();
        let flag = strong.subscribed.clone();
        drop(strong);
        let mut pubsub = match client.get_async_pubsub().await {
            Ok(p) => p,
            Err(_) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if pubsub.subscribe(&channel).await.is_err() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        // Anything cached before this subscription may have missed a message.
        if let Some(c) = cache.upgrade() {
            c.local.invalidate_all();
        }
        flag.store(true, Ordering::Release);
        let mut messages = pubsub.into_on_message();
        while let Some(msg) = messages.next().await {
            let Some(c) = cache.upgrade() else { return };
            if let Ok(id) = msg.get_payload::<String>() {
                c.local.invalidate(&ConnectionId::from_stored(id)).await;
            }
        }
        flag.store(false, Ordering::Release);
        if let Some(c) = cache.upgrade() {
            c.local.invalidate_all();
        }
        tracing::warn!(
            "redis invalidation subscription lost; bypassing the in-process tier until it is back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[async_trait]
impl ConnectionCache for RedisCache {
    async fn get(&self, id: &ConnectionId) -> Option<CachedToken> {
        if self.use_local()
            && let Some(e) = self.local.get(id).await
        {
            return Some(e);
        }
        let key = self.key(id);
        let got: Result<Option<String>, RedisError> = self
            .redis
            .run(async |c| redis::cmd("GET").arg(&key).query_async(c).await)
            .await;
        match got {
            Ok(Some(raw)) => match decode(&raw) {
                Some(entry) if &entry.id == id => {
                    if self.use_local() {
                        self.local.insert(id.clone(), entry.clone()).await;
                    }
                    Some(entry)
                }
                _ => {
                    fell_back("cache_get", &RedisError::Decode);
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                fell_back("cache_get", &e);
                None
            }
        }
    }

    async fn put(&self, entry: CachedToken) {
        // The database was written first; Redis follows. A failed write leaves an older entry
        // at most until the delete below or its expiry, so drop it rather than keep it.
        let key = self.key(&entry.id);
        let value = encode(&entry);
        let ttl = self.ttl_ms(&entry);
        let id = entry.id.as_str().to_owned();
        let result: Result<i64, RedisError> = self
            .redis
            .run(async |c| {
                self.put_script
                    .key(&key)
                    .key(&self.channel)
                    .arg(entry.version)
                    .arg(&value)
                    .arg(ttl)
                    .arg(&id)
                    .invoke_async(c)
                    .await
            })
            .await;
        match result {
            // Redis holds a newer version (another replica refreshed meanwhile): ours is
            // stale, and no invalidation would ever drop it from the local tier.
            Ok(0) => self.local.invalidate(&entry.id).await,
            Ok(_) => {
                if self.use_local() {
                    let local_newer = self
                        .local
                        .get(&entry.id)
                        .await
                        .is_some_and(|e| e.version > entry.version);
                    if !local_newer {
                        self.local.insert(entry.id.clone(), entry).await;
                    }
                }
            }
            Err(e) => {
                fell_back("cache_put", &e);
                self.local.invalidate(&entry.id).await;
                // Redis may still hold the previous entry (an old token, or an active status
                // the database no longer has): remove it as soon as Redis answers again.
                self.spawn_retry_delete(entry.id.clone());
            }
        }
    }

    async fn invalidate(&self, id: &ConnectionId) {
        self.local.invalidate(id).await;
        let key = self.key(id);
        let result: Result<i64, RedisError> = self
            .redis
            .run(async |c| {
                self.delete_script
                    .key(&key)
                    .key(&self.channel)
                    .arg(id.as_str())
                    .invoke_async(c)
                    .await
            })
            .await;
        if let Err(e) = result {
            fell_back("cache_invalidate", &e);
            self.spawn_retry_delete(id.clone());
        }
    }
}

impl RedisCache {
    /// Keeps trying to delete (and announce) an entry that Redis could not drop when asked,
    /// every second for as long as any entry may live, so that a connection deleted or changed
    /// during an outage is not served from Redis once it is back.
    fn spawn_retry_delete(&self, id: ConnectionId) {
        let (redis, key, channel) = (self.redis.clone(), self.key(&id), self.channel.clone());
        tokio::spawn(async move {
            let script = redis::Script::new(DELETE_SCRIPT);
            let started = std::time::Instant::now();
            while started.elapsed() < MAX_ENTRY_LIFETIME {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let r: Result<i64, RedisError> = redis
                    .run(async |c| {
                        script
                            .key(&key)
                            .key(&channel)
                            .arg(id.as_str())
                            .invoke_async(c)
                            .await
                    })
                    .await;
                if r.is_ok() {
                    return;
                }
            }
        });
    }
}

/// The stored form of a [`CachedToken`]: the sealed access token in base64, nothing else
/// secret.
#[derive(Serialize, Deserialize)]
struct Stored {
    id: String,
    ws: String,
    provider: String,
    actor: String,
    /// Absent from entries written by an earlier Relay (during a rolling upgrade): such an
    /// entry is read as a miss, and written again from the database, rather than guessed.
    #[serde(default)]
    actor_type: Option<String>,
    scopes: String,
    token_type: String,
    at: String,
    exp: Option<i64>,
    next: Option<i64>,
    status: String,
    reason: Option<String>,
}

fn encode(e: &CachedToken) -> String {
    let stored = Stored {
        id: e.id.as_str().to_owned(),
        ws: e.workspace_id.as_str().to_owned(),
        provider: e.provider.as_str().to_owned(),
        actor: e.actor_id.as_str().to_owned(),
        actor_type: Some(e.actor_type.as_str().to_owned()),
        scopes: e.scopes.to_space_separated(),
        token_type: e.token_type.clone(),
        at: STANDARD_NO_PAD.encode(&e.access_token),
        exp: e.expires_at.map(|t| t.0),
        next: e.next_refresh_at.map(|t| t.0),
        status: e.status.as_str().to_owned(),
        reason: e.status_reason.clone(),
    };
    format!(
        "{}:{}",
        e.version,
        serde_json::to_string(&stored).unwrap_or_default()
    )
}

fn decode(raw: &str) -> Option<CachedToken> {
    let (version, json) = raw.split_once(':')?;
    let s: Stored = serde_json::from_str(json).ok()?;
    Some(CachedToken {
        id: ConnectionId::from_stored(s.id),
        workspace_id: WorkspaceId::from_stored(s.ws),
        provider: ProviderName::from_stored(s.provider),
        actor_id: ActorId::from_stored(s.actor),
        actor_type: ActorType::from_stored(s.actor_type?),
        scopes: Scopes::from_stored(&s.scopes),
        token_type: s.token_type,
        access_token: STANDARD_NO_PAD.decode(s.at).ok()?,
        expires_at: s.exp.map(Timestamp),
        next_refresh_at: s.next.map(Timestamp),
        status: ConnectionStatus::parse(&s.status)?,
        status_reason: s.reason,
        version: version.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_round_trips_and_holds_no_refresh_token() {
        let e = CachedToken {
            id: ConnectionId::from_stored("c1".into()),
            workspace_id: WorkspaceId::from_stored("ws".into()),
            provider: ProviderName::from_stored("google".into()),
            actor_id: ActorId::from_stored("user-1".into()),
            actor_type: ActorType::user(),
            scopes: Scopes::from_stored("a b"),
            token_type: "Bearer".into(),
            access_token: vec![1, 2, 3, 250],
            expires_at: Some(Timestamp(5)),
            next_refresh_at: None,
            status: ConnectionStatus::NeedsReauth,
            status_reason: Some("invalid_grant".into()),
            version: 42,
        };
        let raw = encode(&e);
        assert!(raw.starts_with("42:"));
        assert!(!raw.contains("refresh"));
        assert_eq!(decode(&raw), Some(e));
        assert_eq!(decode("x:{}"), None);
        // An entry of an earlier Relay, without the actor type, is a miss.
        let earlier = raw.replace(r#""actor_type":"user","#, "");
        assert_ne!(earlier, raw);
        assert_eq!(decode(&earlier), None);
        assert_eq!(decode("garbage"), None);
    }
}
