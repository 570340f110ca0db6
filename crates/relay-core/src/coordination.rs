//! Ports for running several replicas side by side: a distributed lock that sits in front of
//! the row lease, connect-flow storage that any replica can consume, per-key rate limits, and
//! the claim of due connections by the background refresher.
//!
//! Every port has an in-process or SQL default, so a single node needs nothing else; the Redis
//! adapters in `relay-store` implement the same traits. Domain code never asks which one runs.
//! None of them carries correctness alone: the row lease and the compare-and-swap in
//! [`crate::refresh`] still decide who writes, and the database stays the source of truth.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::{Clock, Timestamp};
use crate::connection::Connection;
use crate::error::StoreError;
use crate::ids::WorkspaceId;
use crate::ports::{ApiKeyRecord, ApiKeyRole, FlowRecord, Store};

/// The outcome of trying a distributed lock.
pub enum LockAttempt {
    /// We hold it until the guard is dropped (which releases it if we still own it).
    Acquired(Box<dyn LockGuard>),
    /// Someone else holds it.
    Busy,
    /// The lock service did not answer; the caller proceeds to the next layer (the row lease).
    Unavailable,
}

/// A held lock. Dropping it stops any extension and releases the lock if still ours.
pub trait LockGuard: Send + Sync {}

/// A best-effort mutual exclusion across replicas, taken before the row lease so that the
/// database sees one lease attempt per refresh instead of one per replica.
#[async_trait]
pub trait RefreshLocks: Send + Sync + 'static {
    /// Tries once, without waiting. The lock lives `ttl` and is extended while held.
    async fn try_lock(&self, key: &str, ttl: Duration) -> LockAttempt;
}

/// No distributed lock: every attempt goes straight to the row lease (single node default).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoLocks;

struct NoGuard;
impl LockGuard for NoGuard {}

#[async_trait]
impl RefreshLocks for NoLocks {
    async fn try_lock(&self, _key: &str, _ttl: Duration) -> LockAttempt {
        LockAttempt::Acquired(Box::new(NoGuard))
    }
}

/// Where pending connect flows live between `/authorize` and `/callback`.
#[async_trait]
pub trait FlowStore: Send + Sync + 'static {
    async fn insert_flow(&self, flow: &FlowRecord) -> Result<(), StoreError>;
    /// Deletes and returns the flow in one atomic step; of two concurrent calls at most one
    /// gets `Some`.
    async fn take_flow(&self, state_hash: &str) -> Result<Option<FlowRecord>, StoreError>;
}

/// The default [`FlowStore`]: the flows table of the database.
pub struct StoreFlows(pub Arc<dyn Store>);

#[async_trait]
impl FlowStore for StoreFlows {
    async fn insert_flow(&self, flow: &FlowRecord) -> Result<(), StoreError> {
        self.0.insert_flow(flow).await
    }
    async fn take_flow(&self, state_hash: &str) -> Result<Option<FlowRecord>, StoreError> {
        self.0.take_flow(state_hash).await
    }
}

/// A rate-limit verdict, with what the `RateLimit-*` headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Until the bucket is full again (`RateLimit-Reset`).
    pub reset_after: Duration,
    /// Until the next request would be allowed (`Retry-After`); zero when allowed.
    pub retry_after: Duration,
}

/// Per-key request limits (`per_minute` requests, bursting up to the same number).
#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    async fn check(&self, key: &str, per_minute: u32) -> RateDecision;
}

/// The generic cell rate algorithm: one timestamp per key (the theoretical arrival time of the
/// next request), so a limit costs a few bytes per key and no background sweeping.
///
/// `tat` is the stored theoretical arrival time in milliseconds (`None` for a new key), kept
/// as a fraction: at high limits the interval is far below a millisecond, and rounding it would
/// turn 100,000 per minute into 1,000 per second at most. Returns the verdict and the new
/// `tat` to store when allowed.
pub fn gcra(now_ms: i64, tat: Option<f64>, per_minute: u32) -> (RateDecision, Option<f64>) {
    let limit = per_minute.max(1);
    let interval = 60_000.0 / f64::from(limit);
    let burst_window = interval * f64::from(limit);
    let now = now_ms as f64;
    let tat = tat.unwrap_or(now).max(now);
    let new_tat = tat + interval;
    let allow_at = new_tat - burst_window;
    if now < allow_at {
        let retry = (allow_at - now).ceil() as u64;
        let remaining = 0;
        return (
            RateDecision {
                allowed: false,
                limit,
                remaining,
                reset_after: Duration::from_millis((tat - now).ceil() as u64),
                retry_after: Duration::from_millis(retry.max(1)),
            },
            None,
        );
    }
    let remaining = ((burst_window - (new_tat - now)) / interval)
        .floor()
        .max(0.0) as u32;
    (
        RateDecision {
            allowed: true,
            limit,
            remaining: remaining.min(limit),
            reset_after: Duration::from_millis((new_tat - now).ceil() as u64),
            retry_after: Duration::ZERO,
        },
        Some(new_tat),
    )
}

/// In-process limits (single node, or the fallback while Redis is down).
pub struct LocalRateLimiter {
    clock: Arc<dyn Clock>,
    tats: Mutex<HashMap<String, f64>>,
}

impl LocalRateLimiter {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            tats: Mutex::new(HashMap::new()),
        }
    }

    pub fn check_now(&self, key: &str, per_minute: u32) -> RateDecision {
        let now = self.clock.now().as_millis();
        let mut tats = self.tats.lock().unwrap_or_else(|p| p.into_inner());
        // Keys whose bucket is full again carry no information; drop them to bound memory.
        if tats.len() > 100_000 {
            tats.retain(|_, tat| *tat > now as f64);
        }
        let (decision, new_tat) = gcra(now, tats.get(key).copied(), per_minute);
        if let Some(t) = new_tat {
            // The hot path: update in place, allocating the key only the first time.
            match tats.get_mut(key) {
                Some(tat) => *tat = t,
                None => {
                    tats.insert(key.to_owned(), t);
                }
            }
        }
        decision
    }
}

#[async_trait]
impl RateLimiter for LocalRateLimiter {
    async fn check(&self, key: &str, per_minute: u32) -> RateDecision {
        self.check_now(key, per_minute)
    }
}

/// Connections claimed by the background refresher: each comes back with its lease held by
/// `owner` until `until`, so no other replica (or reader) refreshes it meanwhile.
#[async_trait]
pub trait DueConnections: Send + Sync + 'static {
    /// Claims up to `limit` active connections whose `next_refresh_at` is at or before `now`
    /// and whose lease is free, setting the lease in the same statement. Replicas claiming at
    /// once get disjoint sets.
    async fn claim_due(
        &self,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
        limit: u32,
    ) -> Result<Vec<Connection>, StoreError>;
}

/// Managing a workspace's API keys through the API (every call is scoped to the workspace, so
/// one workspace never sees or changes another's keys).
#[async_trait]
pub trait ApiKeyAdmin: Send + Sync + 'static {
    async fn list_api_keys(&self, workspace: &WorkspaceId)
    -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Applies `change` to the active key `id` of this workspace and returns the key as it is
    /// now; `None` when there is no such active key.
    async fn update_api_key(
        &self,
        workspace: &WorkspaceId,
        id: &str,
        change: &ApiKeyChange,
    ) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// Revokes the key at `now`; `false` when no such active key in this workspace.
    async fn revoke_workspace_api_key(
        &self,
        workspace: &WorkspaceId,
        id: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
}

/// What `PATCH /api-keys/{id}` changes; a `None` field is left as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiKeyChange {
    /// `Some(None)` returns the key to the configured default limit.
    pub rate_limit_per_minute: Option<Option<i64>>,
    pub role: Option<ApiKeyRole>,
}

/// Tells every replica that an API key was revoked or changed, so that each drops it from its
/// per-process key cache at once rather than when the cache entry expires. Best effort: a
/// replica that misses the message still refuses the key within the cache's time-to-live.
#[async_trait]
pub trait ApiKeyChanges: Send + Sync + 'static {
    async fn announce(&self, api_key_id: &str);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn gcra_allows_the_burst_then_one_per_interval() {
        // 60 per minute: one per second, bursting to 60.
        let mut tat = None;
        for i in 0..60 {
            let (d, t) = gcra(0, tat, 60);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 59 - i);
            tat = t;
        }
        let (d, t) = gcra(0, tat, 60);
        assert!(!d.allowed);
        assert!(t.is_none());
        assert_eq!(d.retry_after, Duration::from_secs(1));
        assert_eq!(d.remaining, 0);
        // One interval later, exactly one more.
        let (d, t) = gcra(1_000, tat, 60);
        assert!(d.allowed);
        let (d, _) = gcra(1_000, t, 60);
        assert!(!d.allowed);
    }

    #[test]
    fn a_high_limit_is_not_rounded_down() {
        // 6,000,000 per minute is 100 per millisecond.
        let mut tat = None;
        for i in 0..10_000 {
            let (d, t) = gcra(0, tat, 6_000_000);
            assert!(d.allowed, "request {i}");
            tat = t;
        }
    }

    #[test]
    fn the_local_limiter_keeps_keys_apart_and_recovers_with_time() {
        let clock = ManualClock::new(Timestamp(1_000_000));
        let limiter = LocalRateLimiter::new(Arc::new(clock.clone()));
        for _ in 0..3 {
            assert!(limiter.check_now("a", 3).allowed);
        }
        assert!(!limiter.check_now("a", 3).allowed);
        assert!(limiter.check_now("b", 3).allowed);
        clock.advance(Duration::from_secs(20));
        assert!(limiter.check_now("a", 3).allowed);
        assert!(!limiter.check_now("a", 3).allowed);
    }
}
