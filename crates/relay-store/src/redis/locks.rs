//! The refresh lock in Redis: `SET key owner NX PX ttl` with a random owner token, extended
//! while the provider call runs, released only by its owner (compare-and-delete in a script).
//!
//! It sits in front of the row lease so that, of the replicas that see a token due at once,
//! one reaches the database lease and the others wait without querying it. It is never
//! trusted alone: if it expires mid-call (a paused process) or Redis is down, the row lease
//! and the compare-and-swap write still allow exactly one stored refresh.

use std::time::Duration;

use async_trait::async_trait;
use relay_core::coordination::{LockAttempt, LockGuard, RefreshLocks};
use relay_core::random;

use super::{Redis, RedisError, fell_back};

const EXTEND_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

const RELEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

pub struct RedisLocks {
    redis: Redis,
}

impl RedisLocks {
    pub fn new(redis: Redis) -> Self {
        Self { redis }
    }
}

struct RedisGuard {
    extender: tokio::task::JoinHandle<()>,
    redis: Redis,
    key: String,
    owner: String,
}

impl LockGuard for RedisGuard {}

impl Drop for RedisGuard {
    fn drop(&mut self) {
        self.extender.abort();
        let (redis, key, owner) = (self.redis.clone(), self.key.clone(), self.owner.clone());
        // Releasing is a network call; a guard is dropped in sync code. If the release never
        // runs, the lock just expires.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let script = redis::Script::new(RELEASE_SCRIPT);
                let r: Result<i64, RedisError> = redis
                    .run(async |c| script.key(&key).arg(&owner).invoke_async(c).await)
                    .await;
                if let Err(e) = r {
                    fell_back("lock_release", &e);
                }
            });
        }
    }
}

#[async_trait]
impl RefreshLocks for RedisLocks {
    async fn try_lock(&self, key: &str, ttl: Duration) -> LockAttempt {
        let key = self.redis.key(key);
        let owner = random::token();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let result: Result<Option<String>, RedisError> = self
            .redis
            .run(async |c| {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(&owner)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async(c)
                    .await
            })
            .await;
        match result {
            Ok(Some(_)) => {
                let extender =
                    tokio::spawn(extend(self.redis.clone(), key.clone(), owner.clone(), ttl));
                LockAttempt::Acquired(Box::new(RedisGuard {
                    extender,
                    redis: self.redis.clone(),
                    key,
                    owner,
                }))
            }
            Ok(None) => LockAttempt::Busy,
            Err(e) => {
                fell_back("lock_acquire", &e);
                LockAttempt::Unavailable
            }
        }
    }
}

/// Pushes the expiry forward every third of the TTL while the guard lives; stops once the
/// lock is no longer ours (it expired and someone else took it) or Redis fails.
async fn extend(redis: Redis, key: String, owner: String, ttl: Duration) {
    let script = redis::Script::new(EXTEND_SCRIPT);
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
    loop {
        tokio::time::sleep(ttl / 3).await;
        let r: Result<i64, RedisError> = redis
            .run(async |c| {
                script
                    .key(&key)
                    .arg(&owner)
                    .arg(ttl_ms)
                    .invoke_async(c)
                    .await
            })
            .await;
        match r {
            Ok(1) => {}
            Ok(_) => {
                tracing::debug!(
                    "refresh lock lost before the refresh finished; the row lease still guards it"
                );
                return;
            }
            Err(e) => {
                fell_back("lock_extend", &e);
                return;
            }
        }
    }
}
