//! Per-key rate limits shared by every replica: GCRA in one Lua script, so the read, the
//! decision and the write are one atomic step on the server, timed by the server's own clock
//! (replicas' clocks may drift; Redis has one). One key per API key, holding one number.
//!
//! **Slices.** A round trip per request would make Redis the ceiling of a busy key. A replica
//! therefore takes up to `limit / 1000` requests' worth of allowance at once (at most 64, at
//! least 1), debited from the shared bucket *before* any of it is spent, and spends it locally
//! for at most one second. A key can never exceed its limit across replicas; unspent slices
//! are simply lost, so a busy multi-replica key may be refused up to 0.1 % early per replica.
//! Keys at the default limits (1,200 per minute) get slices of one: every request asks Redis.
//!
//! **One refill at a time.** A burst finds a key's slice empty all at once. Rather than every
//! request of the burst running the script (a thousand round trips, and Redis's CPU, where one
//! would do), one request per key refills the slice while the others of that key wait for it
//! and then spend what it brought. Keys with slices of one are not queued: each of their
//! requests needs its own answer from Redis anyway.
//!
//! When Redis fails, the in-process limiter decides: each replica then enforces the limit on
//! its own share of the traffic, which is looser but never blocks a request Redis would allow.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use relay_core::coordination::{LocalRateLimiter, RateDecision, RateLimiter};
use relay_core::gates::KeyedGates;

use super::{Redis, RedisError, fell_back};

/// Takes up to `ARGV[2]` requests' worth of allowance; returns
/// {granted, remaining, reset_ms, retry_ms}.
const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local limit = tonumber(ARGV[1])
local want = tonumber(ARGV[2])
local interval = 60000 / limit
local burst = interval * limit
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local fits = math.floor((now + burst - tat) / interval + 1e-9)
if fits < 1 then
  return {0, 0, math.ceil(tat - now), math.max(1, math.ceil(tat + interval - burst - now))}
end
local granted = math.min(want, fits)
local new_tat = tat + granted * interval
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(new_tat - now) + 1000)
local remaining = math.floor((burst - (new_tat - now)) / interval + 1e-9)
if remaining < 0 then remaining = 0 end
return {granted, remaining, math.ceil(new_tat - now), 0}
";

/// How long an unspent slice may be spent.
const SLICE_LIFETIME: Duration = Duration::from_secs(1);
const MAX_SLICE: u32 = 64;

struct Slice {
    left: u32,
    /// What Redis said remained after this slice was taken.
    remaining: u32,
    reset_after: Duration,
    taken_at: Instant,
}

pub struct RedisRateLimiter {
    redis: Redis,
    script: redis::Script,
    fallback: Arc<LocalRateLimiter>,
    slices: Mutex<HashMap<String, Slice>>,
    /// Per key, held by the request refilling its slice (see "One refill at a time").
    refills: Arc<KeyedGates<String, tokio::sync::Mutex<()>>>,
}

impl RedisRateLimiter {
    pub fn new(redis: Redis, fallback: Arc<LocalRateLimiter>) -> Self {
        Self {
            redis,
            script: redis::Script::new(GCRA_SCRIPT),
            fallback,
            slices: Mutex::new(HashMap::new()),
            refills: Arc::default(),
        }
    }

    fn spend_local(&self, key: &str, limit: u32) -> Option<RateDecision> {
        let mut slices = self.slices.lock().unwrap_or_else(|p| p.into_inner());
        let slice = slices.get_mut(key)?;
        let age = slice.taken_at.elapsed();
        if slice.left == 0 || age >= SLICE_LIFETIME {
            return None;
        }
        slice.left -= 1;
        Some(RateDecision {
            allowed: true,
            limit,
            remaining: slice.remaining.saturating_add(slice.left),
            reset_after: slice.reset_after.saturating_sub(age),
            retry_after: Duration::ZERO,
        })
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, key: &str, per_minute: u32) -> RateDecision {
        let limit = per_minute.max(1);
        if let Some(d) = self.spend_local(key, limit) {
            return d;
        }
        let want = (limit / 1000).clamp(1, MAX_SLICE);
        if want == 1 {
            return self.take_slice(key, limit, want).await;
        }
        let refill = self.refills.enter(&key.to_owned());
        let _refilling = refill.gate().lock().await;
        match self.spend_local(key, limit) {
            // Refilled by the request this one waited for.
            Some(d) => d,
            None => self.take_slice(key, limit, want).await,
        }
    }
}

impl RedisRateLimiter {
    /// Runs the script for up to `want` requests' worth of allowance: spends one now and keeps
    /// the rest as the key's slice.
    async fn take_slice(&self, key: &str, limit: u32, want: u32) -> RateDecision {
        let redis_key = self.redis.key(&format!("rl:{key}"));
        let result: Result<Vec<i64>, RedisError> = self
            .redis
            .run(async |c| {
                self.script
                    .key(&redis_key)
                    .arg(limit)
                    .arg(want)
                    .invoke_async(c)
                    .await
            })
            .await;
        let v = match result {
            Ok(v) if v.len() == 4 => v,
            Ok(_) => {
                fell_back("rate_limit", &RedisError::Decode);
                return self.fallback.check_now(key, limit);
            }
            Err(e) => {
                fell_back("rate_limit", &e);
                return self.fallback.check_now(key, limit);
            }
        };
        let granted = u32::try_from(v[0].max(0)).unwrap_or(0);
        let remaining = u32::try_from(v[1].max(0)).unwrap_or(0).min(limit);
        let reset_after = Duration::from_millis(u64::try_from(v[2].max(0)).unwrap_or(0));
        if granted == 0 {
            return RateDecision {
                allowed: false,
                limit,
                remaining: 0,
                reset_after,
                retry_after: Duration::from_millis(u64::try_from(v[3].max(1)).unwrap_or(1)),
            };
        }
        if granted > 1 {
            let mut slices = self.slices.lock().unwrap_or_else(|p| p.into_inner());
            // Keys idle for a while carry nothing worth keeping.
            if slices.len() > 10_000 {
                slices.retain(|_, s| s.taken_at.elapsed() < SLICE_LIFETIME);
            }
            // Requests that found the slice empty at the same moment each fetched one; keep
            // what every one of them brought, so none of the debited allowance is lost.
            let carried = slices
                .get(key)
                .filter(|s| s.taken_at.elapsed() < SLICE_LIFETIME)
                .map_or(0, |s| s.left);
            slices.insert(
                key.to_owned(),
                Slice {
                    left: (granted - 1).saturating_add(carried),
                    remaining,
                    reset_after,
                    taken_at: Instant::now(),
                },
            );
        }
        RateDecision {
            allowed: true,
            limit,
            remaining: remaining + (granted - 1),
            reset_after,
            retry_after: Duration::ZERO,
        }
    }
}
