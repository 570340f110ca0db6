//! Telling every replica at once that an API key was revoked or changed.
//!
//! Each replica checks keys from a per-process cache (`[cache] api_key_ttl_secs`). Without a
//! message, a revoked key keeps working on the other replicas until their entries expire; with
//! one, each drops the key as soon as the message arrives. The key's public id is published on
//! `{prefix}api-key-changed` (never the key or its hash). Messages are fire-and-forget: a
//! replica whose subscription is down misses them and falls back to the cache's expiry, which
//! bounds the staleness either way.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use relay_core::coordination::ApiKeyChanges;

use super::{Redis, RedisError, fell_back};

/// Publishes and receives API key changes on one channel.
#[derive(Clone)]
pub struct RedisApiKeyChanges {
    redis: Redis,
    channel: String,
}

impl RedisApiKeyChanges {
    pub fn new(redis: Redis) -> Self {
        let channel = redis.key("api-key-changed");
        Self { redis, channel }
    }

    /// Starts a task that hands every announced key id to `on_change`, resubscribing after a
    /// disconnect. The task ends when `on_change` returns `false` (its receiver is gone).
    pub fn listen(&self, on_change: impl Fn(&str) -> bool + Send + Sync + 'static) {
        let (client, channel) = (self.redis.client().clone(), self.channel.clone());
        tokio::spawn(async move {
            loop {
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
                let mut messages = pubsub.into_on_message();
                while let Some(msg) = messages.next().await {
                    if let Ok(id) = msg.get_payload::<String>()
                        && !on_change(&id)
                    {
                        return;
                    }
                }
                tracing::warn!(
                    "redis API key subscription lost; revocations elsewhere reach this replica within the key cache's time-to-live until it is back"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
}

#[async_trait]
impl ApiKeyChanges for RedisApiKeyChanges {
    async fn announce(&self, api_key_id: &str) {
        let result: Result<i64, RedisError> = self
            .redis
            .run(async |c| {
                redis::cmd("PUBLISH")
                    .arg(&self.channel)
                    .arg(api_key_id)
                    .query_async(c)
                    .await
            })
            .await;
        if let Err(e) = result {
            fell_back("api_key_announce", &e);
        }
    }
}
