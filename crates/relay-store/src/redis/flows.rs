//! Connect flows in Redis: written with the flow's own expiry (10 minutes by default) and
//! consumed with `GETDEL`, atomic on the server, so of two callbacks with one state at most
//! one gets the flow. Flows survive a restart of Relay (Redis keeps them).
//!
//! When Redis fails, a flow is written to the database instead, and a take that finds nothing
//! in Redis (or fails there) looks in the database: a flow lives in exactly one of the two, and
//! each is consumed atomically where it lives.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use relay_core::clock::{Clock, Timestamp};
use relay_core::coordination::FlowStore;
use relay_core::ports::{FlowRecord, Store};
use relay_core::{StoreError, WorkspaceId};
use serde::{Deserialize, Serialize};

use super::{Redis, RedisError, fell_back};

pub struct RedisFlows {
    redis: Redis,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl RedisFlows {
    pub fn new(redis: Redis, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            redis,
            store,
            clock,
        }
    }

    fn key(&self, state_hash: &str) -> String {
        self.redis.key(&format!("flow:{state_hash}"))
    }
}

#[async_trait]
impl FlowStore for RedisFlows {
    async fn insert_flow(&self, flow: &FlowRecord) -> Result<(), StoreError> {
        let key = self.key(&flow.state_hash);
        let ttl = u64::try_from(self.clock.now().until(flow.expires_at).as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let value = encode(flow);
        // NX: a state is random (256 bits); a collision means a bug, never an overwrite.
        let result: Result<Option<String>, RedisError> = self
            .redis
            .run(async |c| {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(&value)
                    .arg("PX")
                    .arg(ttl)
                    .arg("NX")
                    .query_async(c)
                    .await
            })
            .await;
        match result {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(StoreError::Conflict("flow state already exists".into())),
            Err(e) => {
                fell_back("flow_insert", &e);
                self.store.insert_flow(flow).await
            }
        }
    }

    async fn take_flow(&self, state_hash: &str) -> Result<Option<FlowRecord>, StoreError> {
        let key = self.key(state_hash);
        let result: Result<Option<String>, RedisError> = self
            .redis
            .run(async |c| redis::cmd("GETDEL").arg(&key).query_async(c).await)
            .await;
        match result {
            Ok(Some(raw)) => match decode(&raw) {
                Some(flow) if flow.state_hash == state_hash => Ok(Some(flow)),
                _ => {
                    fell_back("flow_take", &RedisError::Decode);
                    Ok(None)
                }
            },
            // Not in Redis: it may have been written to the database during an outage.
            Ok(None) => self.store.take_flow(state_hash).await,
            Err(e) => {
                fell_back("flow_take", &e);
                self.store.take_flow(state_hash).await
            }
        }
    }
}

/// The stored form of a flow: the sealed record (see `FlowRecord`) and what expiry needs.
/// Nothing here is plaintext secret, and nothing here can be edited into another valid flow.
#[derive(Serialize, Deserialize)]
struct Stored {
    state_hash: String,
    ws: String,
    sealed: String,
    created_at: i64,
    expires_at: i64,
}

fn encode(f: &FlowRecord) -> String {
    serde_json::to_string(&Stored {
        state_hash: f.state_hash.clone(),
        ws: f.workspace_id.as_str().to_owned(),
        sealed: STANDARD_NO_PAD.encode(&f.sealed),
        created_at: f.created_at.0,
        expires_at: f.expires_at.0,
    })
    .unwrap_or_default()
}

fn decode(raw: &str) -> Option<FlowRecord> {
    let s: Stored = serde_json::from_str(raw).ok()?;
    Some(FlowRecord {
        state_hash: s.state_hash,
        workspace_id: WorkspaceId::from_stored(s.ws),
        sealed: STANDARD_NO_PAD.decode(s.sealed).ok()?,
        created_at: Timestamp(s.created_at),
        expires_at: Timestamp(s.expires_at),
    })
}
