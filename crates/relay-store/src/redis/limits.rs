//! Per-key rate limits shared by every replica: GCRA in one Lua script, so the read, the
//! decision and the write are one atomic step on the server, timed by the server's own clock
//! (replicas' clocks may drift; Redis has one). One key per API key, holding one number.
//!
//! When Redis fails, the in-process limiter decides: each replica then enforces the limit on
//! its own share of the traffic, which is looser but never blocks a request Redis would allow.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use relay_core::coordination::{LocalRateLimiter, RateDecision, RateLimiter};

use super::{Redis, RedisError, fell_back};

const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local interval = 60000 / limit
local burst = interval * limit
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst
if now < allow_at then
  return {0, 0, math.ceil(tat - now), math.max(1, math.ceil(allow_at - now))}
end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(new_tat - now) + 1000)
local remaining = math.floor((burst - (new_tat - now)) / interval)
if remaining < 0 then remaining = 0 end
return {1, remaining, math.ceil(new_tat - now), 0}
";

pub struct RedisRateLimiter {
    redis: Redis,
    script: redis::Script,
    fallback: Arc<LocalRateLimiter>,
}

impl RedisRateLimiter {
    pub fn new(redis: Redis, fallback: Arc<LocalRateLimiter>) -> Self {
        Self {
            redis,
            script: redis::Script::new(GCRA_SCRIPT),
            fallback,
        }
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, key: &str, per_minute: u32) -> RateDecision {
        let limit = per_minute.max(1);
        let redis_key = self.redis.key(&format!("rl:{key}"));
        let result: Result<Vec<i64>, RedisError> = self
            .redis
            .run(async |c| self.script.key(&redis_key).arg(limit).invoke_async(c).await)
            .await;
        match result {
            Ok(v) if v.len() == 4 => RateDecision {
                allowed: v[0] == 1,
                limit,
                remaining: u32::try_from(v[1].max(0)).unwrap_or(0).min(limit),
                reset_after: Duration::from_millis(u64::try_from(v[2].max(0)).unwrap_or(0)),
                retry_after: Duration::from_millis(u64::try_from(v[3].max(0)).unwrap_or(0)),
            },
            Ok(_) => {
                fell_back("rate_limit", &RedisError::Decode);
                self.fallback.check_now(key, limit)
            }
            Err(e) => {
                fell_back("rate_limit", &e);
                self.fallback.check_now(key, limit)
            }
        }
    }
}
