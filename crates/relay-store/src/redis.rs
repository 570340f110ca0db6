//! Redis adapters for running several replicas: the shared token cache (with an in-process
//! tier invalidated by pub/sub), connect flows, the refresh lock, per-key rate limits and the
//! announcement of revoked or changed API keys.
//!
//! Redis is an accelerator, never the source of truth. Every adapter treats a Redis error the
//! same way: log it, count it in `redis_fallbacks_total{operation}`, and fall back to what the
//! database (or the process) can do alone. After a failure, Redis is skipped for a short
//! cool-down so that an outage costs one timeout, not one per request.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

mod api_keys;
mod cache;
mod flows;
mod limits;
mod locks;

pub use api_keys::RedisApiKeyChanges;
pub use cache::RedisCache;
pub use flows::RedisFlows;
pub use limits::RedisRateLimiter;
pub use locks::RedisLocks;

/// Settings for the Redis connection.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: String,
    /// Prepended to every key and channel, so that several deployments (or tests) can share
    /// one Redis without seeing each other's data.
    pub key_prefix: String,
    /// Per-command deadline; past it the command counts as failed and the caller falls back.
    pub command_timeout: Duration,
    /// How long Redis is skipped after a failure.
    pub cool_down: Duration,
}

impl RedisSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: "relay:".into(),
            command_timeout: Duration::from_millis(500),
            cool_down: Duration::from_secs(1),
        }
    }
}

/// A shared handle on one Redis: a multiplexed, self-reconnecting connection, the key prefix,
/// and the cool-down state every adapter consults.
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
    command_timeout: Duration,
    cool_down: Duration,
    started: Instant,
    /// Milliseconds since `started` before which Redis is not tried.
    skip_until_ms: AtomicI64,
}

/// Why a Redis operation did not produce a value.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis is cooling down after a failure")]
    CoolingDown,
    #[error("redis command timed out")]
    Timeout,
    #[error("redis: {0}")]
    Command(#[from] redis::RedisError),
    #[error("redis returned an unreadable value")]
    Decode,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// Opens a lazy connection: Relay starts even while Redis is down, and the first command
    /// connects. The URL is never echoed in errors (it may hold a password).
    pub fn open(settings: &RedisSettings) -> Result<Self, RedisError> {
        let client = redis::Client::open(settings.url.as_str()).map_err(|e| {
            RedisError::Command(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "invalid REDIS_URL",
                e.category().to_owned(),
            )))
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.command_timeout))
            .set_response_timeout(Some(settings.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                conn,
                prefix: settings.key_prefix.clone(),
                command_timeout: settings.command_timeout,
                cool_down: settings.cool_down,
                started: Instant::now(),
                skip_until_ms: AtomicI64::new(0),
            }),
        })
    }

    pub(crate) fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.inner.prefix)
    }

    pub(crate) fn client(&self) -> &redis::Client {
        &self.inner.client
    }

    fn elapsed_ms(&self) -> i64 {
        i64::try_from(self.inner.started.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// Runs one command (or script) on the shared connection, within the deadline, unless
    /// Redis is cooling down after a recent failure.
    pub(crate) async fn run<T: redis::FromRedisValue>(
        &self,
        cmd: impl AsyncFnOnce(&mut ConnectionManager) -> redis::RedisResult<T>,
    ) -> Result<T, RedisError> {
        if self.elapsed_ms() < self.inner.skip_until_ms.load(Ordering::Relaxed) {
            return Err(RedisError::CoolingDown);
        }
        let mut conn = self.inner.conn.clone();
        let result = match tokio::time::timeout(self.inner.command_timeout, cmd(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(RedisError::Command(e)),
            Err(_) => Err(RedisError::Timeout),
        };
        if result.is_err() {
            let until =
                self.elapsed_ms() + i64::try_from(self.inner.cool_down.as_millis()).unwrap_or(1000);
            self.inner.skip_until_ms.store(until, Ordering::Relaxed);
        }
        result
    }

    /// `PING`, for `/ready`; ignores the cool-down so readiness reflects Redis right now.
    pub async fn ping(&self, timeout: Duration) -> Result<(), RedisError> {
        let mut conn = self.inner.conn.clone();
        match tokio::time::timeout(timeout, redis::cmd("PING").query_async::<String>(&mut conn))
            .await
        {
            Ok(Ok(_)) => {
                self.inner.skip_until_ms.store(0, Ordering::Relaxed);
                Ok(())
            }
            Ok(Err(e)) => Err(RedisError::Command(e)),
            Err(_) => Err(RedisError::Timeout),
        }
    }
}

/// Logs a Redis failure once per call site and counts it; the caller then falls back.
pub(crate) fn fell_back(operation: &'static str, error: &RedisError) {
    metrics::counter!("redis_fallbacks_total", "operation" => operation).increment(1);
    match error {
        // Already logged when the cool-down started.
        RedisError::CoolingDown => {}
        e => tracing::warn!(operation, error = %e, "redis failed; falling back"),
    }
}
