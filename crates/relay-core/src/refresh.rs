//! The token service: hands out access tokens that are always fresh, and refreshes each due
//! connection with exactly one request to its provider, however many callers, tasks and
//! processes ask at once.
//!
//! The protocol, in three layers:
//! 1. **Single flight in process.** Callers of one connection queue on a per-connection gate;
//!    whoever enters re-reads the row, so the ones behind a successful refresh just take the
//!    new token.
//! 2. **A lease on the row**, across processes. `try_acquire_lease` sets an owner and an expiry
//!    only when no unexpired lease exists. A process that finds the lease taken hands out the
//!    current token while it is still valid, or waits for the holder's write.
//! 3. **Compare-and-swap write.** New tokens are written only if the row's version is the one
//!    the lease holder read, so a holder whose lease expired mid-call cannot overwrite a newer
//!    token (which, with rotating refresh tokens, would store a dead one).
//!
//! The provider call has a deadline shorter than the lease. `invalid_grant` marks the
//! connection `needs_reauth` only after re-reading that nobody else refreshed in the
//! meantime; timeouts, 5xx and 429 are retried with backoff and never change the status.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tracing::{Instrument, debug, info, warn};

use crate::audit::{AuditAction, AuditEvent, AuditSink};
use crate::clock::{Clock, Timestamp};
use crate::connection::{
    ACCESS_TOKEN, Connection, ConnectionStatus, Grant, REFRESH_TOKEN, SERVICE_ACCOUNT, TokenUpdate,
};
use crate::coordination::{LockAttempt, LockGuard, NoLocks, RefreshLocks};
use crate::error::{ServiceError, StoreError};
use crate::events::{self, OAuthEvent};
use crate::gates::KeyedGates;
use crate::ids::{ActorId, ActorType, ConnectionId, ProviderName, Scopes, WorkspaceId};
use crate::oauth::{OAuthError, ProviderGateway, TokenKind, TokenSet};
use crate::ports::{CachedToken, ConnectionCache, ConnectionFilter, Store};
use crate::random;
use crate::vault::Keyring;

/// When to refresh, and how hard to try.
#[derive(Debug, Clone)]
pub struct RefreshPolicy {
    /// A token is due when less than `max(min_remaining, fraction × lifetime)` remains.
    pub min_remaining: Duration,
    pub fraction: f64,
    /// How long a refresher owns a connection. Longer than `provider_timeout`.
    pub lease: Duration,
    /// Deadline for one token-endpoint call.
    pub provider_timeout: Duration,
    /// Attempts per refresh for transient failures, and the first backoff (doubling, with jitter).
    pub attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// How often a caller waiting on another process's lease re-reads the row.
    pub lock_poll: Duration,
    /// Spread of scheduled refreshes: up to this fraction of a token's lifetime is taken off
    /// `next_refresh_at` at random, so tokens issued together are not refreshed together.
    pub jitter_fraction: f64,
    /// Refresh tokens that die when unused (idle expiry) are exercised at least this often by
    /// the background refresher, even when the access token has no expiry.
    pub keepalive: Option<Duration>,
    /// Time-to-live of the distributed refresh lock (extended while the provider call runs).
    pub lock_ttl: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            min_remaining: Duration::from_secs(60),
            fraction: 0.10,
            lease: Duration::from_secs(30),
            provider_timeout: Duration::from_secs(10),
            attempts: 3,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(8),
            lock_poll: Duration::from_millis(50),
            jitter_fraction: 0.0,
            keepalive: None,
            lock_ttl: Duration::from_secs(5),
        }
    }
}

impl RefreshPolicy {
    /// When a token issued at `now` and expiring at `expires_at` becomes due.
    pub fn refresh_at(&self, now: Timestamp, expires_at: Timestamp) -> Timestamp {
        let lifetime = now.until(expires_at);
        let margin = self
            .min_remaining
            .max(lifetime.mul_f64(self.fraction.clamp(0.0, 1.0)));
        expires_at.minus(margin)
    }

    /// When the background refresher should next look at a token issued at `now`: the due
    /// time minus a random share of the lifetime, and no later than the keep-alive.
    pub fn schedule(&self, now: Timestamp, expires_at: Option<Timestamp>) -> Option<Timestamp> {
        let due = expires_at.map(|e| {
            let at = self.refresh_at(now, e);
            let spread = now
                .until(at)
                .mul_f64(self.jitter_fraction.clamp(0.0, 0.5) * random::unit_fraction());
            at.minus(spread)
        });
        let keepalive = self.keepalive.map(|k| now.plus(k));
        match (due, keepalive) {
            (Some(d), Some(k)) => Some(d.min(k)),
            (d, k) => d.or(k),
        }
    }

    /// The backoff before attempt `attempt + 1` (1-based `attempt`), with full jitter on the
    /// upper half so that replicas retrying together spread out.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .backoff_base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.backoff_max);
        exp.mul_f64(0.5 + 0.5 * random::unit_fraction())
    }
}

/// What a caller asks of a token read.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenRequest {
    /// The token must stay valid at least this long.
    pub min_ttl: Option<Duration>,
    /// Refresh now (joining a refresh already in flight instead of starting another).
    pub force_refresh: bool,
}

/// How a token read was served, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadPath {
    CacheHit,
    CacheMiss,
    /// This call performed the refresh.
    Refreshed,
    /// Another caller's refresh, or a still-valid token while another process refreshes.
    Joined,
}

impl ReadPath {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CacheHit => "hit",
            Self::CacheMiss => "miss",
            Self::Refreshed => "refreshed",
            Self::Joined => "joined",
        }
    }
}

#[derive(Debug)]
pub struct IssuedToken {
    pub access_token: SecretString,
    pub token_type: String,
    pub expires_at: Option<Timestamp>,
    pub scopes: Scopes,
    pub connection_id: ConnectionId,
    pub path: ReadPath,
    /// For the token read's audit record.
    pub provider: ProviderName,
    pub actor_id: ActorId,
}

/// Plaintext tokens to store for an actor (from a code exchange or an import).
#[derive(Debug)]
pub struct NewConnection {
    pub workspace_id: WorkspaceId,
    pub provider: ProviderName,
    pub actor_type: ActorType,
    pub actor_id: ActorId,
    pub tokens: TokenSet,
    /// Scopes to record when the token response does not say which were granted.
    pub requested_scopes: Scopes,
    /// Overrides `tokens.expires_in` (an import may know the absolute expiry).
    pub expires_at: Option<Timestamp>,
    /// The provider account, when a connect flow identified it; an import knows none.
    pub account: Option<crate::oauth::ProviderAccount>,
}

/// The outcome of deleting a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    /// Whether the provider confirmed the revocation.
    pub revoked: bool,
    /// Why revocation did not happen (no endpoint, or the provider failed); safe to show.
    pub revocation_note: Option<String>,
}

pub struct TokenService {
    store: Arc<dyn Store>,
    cache: Arc<dyn ConnectionCache>,
    locks: Arc<dyn RefreshLocks>,
    providers: Arc<dyn ProviderGateway>,
    keyring: Arc<Keyring>,
    clock: Arc<dyn Clock>,
    policy: RefreshPolicy,
    /// Names this process in lease owners, for operators reading the table.
    instance: String,
    /// Per connection, the gate of this process's single flight (see `refresh_single_flight`).
    gates: Arc<KeyedGates<ConnectionId, tokio::sync::RwLock<()>>>,
    /// Records refresh outcomes and re-authorization needs (see [`TokenService::with_audit`]).
    audit: Option<Arc<dyn AuditSink>>,
    /// Where refreshes run as tasks of their own (see [`TokenService::run_refreshes_on`]).
    runner: std::sync::OnceLock<RefreshRunner>,
}

/// The runtime refreshes are spawned on, and the service they run in.
struct RefreshRunner {
    service: std::sync::Weak<TokenService>,
    handle: tokio::runtime::Handle,
}

impl TokenService {
    pub fn new(
        store: Arc<dyn Store>,
        cache: Arc<dyn ConnectionCache>,
        providers: Arc<dyn ProviderGateway>,
        keyring: Arc<Keyring>,
        clock: Arc<dyn Clock>,
        policy: RefreshPolicy,
    ) -> Self {
        Self {
            store,
            cache,
            locks: Arc::new(NoLocks),
            providers,
            keyring,
            clock,
            policy,
            instance: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
            gates: Arc::default(),
            audit: None,
            runner: std::sync::OnceLock::new(),
        }
    }

    /// Runs every refresh a read starts as a task of its own on `handle`, a runtime kept for
    /// refreshes, instead of inside the request:
    ///
    /// - a refresh, once started, finishes and stores its tokens even if the request that
    ///   started it goes away (client disconnect, timeout): a provider that rotates refresh
    ///   tokens has already spent the old one, and a refresh dropped between its answer and
    ///   the save would lose the new one;
    /// - a burst of requests queued on the serving runtime does not delay the refresh: at a
    ///   stampede, each of the refresh's database and Redis round trips would otherwise wait
    ///   behind every request that arrived meanwhile before the provider is even called.
    ///
    /// Without it (tests, the CLI) refreshes run inside the caller.
    pub fn run_refreshes_on(self: &Arc<Self>, handle: tokio::runtime::Handle) {
        let _ = self.runner.set(RefreshRunner {
            service: Arc::downgrade(self),
            handle,
        });
    }

    /// Records every refresh (`token.refreshed`, `token.refresh_failed`) and every connection
    /// that needs re-authorization in the audit log. A refresh whose record cannot be stored
    /// fails with [`ServiceError::Audit`].
    pub fn with_audit(mut self, audit: Arc<dyn AuditSink>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Puts a distributed lock in front of the row lease (Redis, with several replicas).
    pub fn with_locks(mut self, locks: Arc<dyn RefreshLocks>) -> Self {
        self.locks = locks;
        self
    }

    /// Connections with a refresh in flight in this process, or callers waiting on one.
    pub fn refreshes_in_flight(&self) -> usize {
        self.gates.len()
    }

    pub fn policy(&self) -> &RefreshPolicy {
        &self.policy
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// A connection of `workspace`, read from the store: the cache holds only the token hot
    /// path. Another workspace's connection is "not found", exactly like a missing one.
    pub async fn connection(
        &self,
        workspace: &WorkspaceId,
        id: &ConnectionId,
    ) -> Result<Connection, ServiceError> {
        self.store
            .get_connection(id)
            .await?
            .filter(|c| &c.workspace_id == workspace)
            .ok_or(ServiceError::NotFound("connection"))
    }

    /// The hot-path entry of a connection of `workspace`: from the cache, or warmed from the
    /// store.
    async fn cached_entry(
        &self,
        workspace: &WorkspaceId,
        id: &ConnectionId,
    ) -> Result<(CachedToken, ReadPath), ServiceError> {
        let (entry, path) = match self.cache.get(id).await {
            Some(e) => (e, ReadPath::CacheHit),
            None => {
                let c = self
                    .store
                    .get_connection(id)
                    .await?
                    .ok_or(ServiceError::NotFound("connection"))?;
                let entry = CachedToken::from(&c);
                self.cache.put(entry.clone()).await;
                (entry, ReadPath::CacheMiss)
            }
        };
        if &entry.workspace_id != workspace {
            return Err(ServiceError::NotFound("connection"));
        }
        Ok((entry, path))
    }

    pub async fn list(
        &self,
        workspace: &WorkspaceId,
        filter: &ConnectionFilter,
    ) -> Result<Vec<Connection>, ServiceError> {
        Ok(self.store.list_connections(workspace, filter).await?)
    }

    pub async fn find(
        &self,
        workspace: &WorkspaceId,
        provider: &ProviderName,
        actor_type: &ActorType,
        actor_id: &ActorId,
    ) -> Result<Option<Connection>, ServiceError> {
        Ok(self
            .store
            .find_connection(workspace, provider, actor_type, actor_id)
            .await?)
    }

    /// An access token for the connection, refreshed first when it is due.
    pub async fn token(
        &self,
        workspace: &WorkspaceId,
        id: &ConnectionId,
        req: TokenRequest,
    ) -> Result<IssuedToken, ServiceError> {
        let (entry, path) = self.cached_entry(workspace, id).await?;
        usable(entry.status, entry.status_reason.as_deref())?;
        let now = self.clock.now();
        if !req.force_refresh
            && !self.due(entry.expires_at, entry.next_refresh_at, now, req.min_ttl)
        {
            return self.issue_entry(&entry, path);
        }
        let provider = entry.provider.clone();
        // A forced refresh joins only a refresh that finishes after it was asked for. A cached
        // entry can lag behind another replica's earlier refresh (the in-process tier learns
        // of it by pub/sub), so the version to compare with comes from the row itself.
        let seen_version = if req.force_refresh {
            self.store
                .get_connection(id)
                .await?
                .filter(|c| &c.workspace_id == workspace)
                .ok_or(ServiceError::NotFound("connection"))?
                .version
        } else {
            entry.version
        };
        // Boxed: the refresh's state machine is large and rarely needed, and an unboxed one
        // would make every read's future that size (moved on every poll of the handler).
        let issued = Box::pin(self.refresh_single_flight(&entry, seen_version, req)).await?;
        let result = if issued.path == ReadPath::Refreshed {
            "performed"
        } else {
            "joined"
        };
        metrics::counter!("token_refreshes_total", "provider" => provider.as_str().to_owned(), "result" => result)
            .increment(1);
        Ok(issued)
    }

    /// Whether the connection's token must be refreshed before it is handed out.
    pub fn is_due(&self, conn: &Connection, now: Timestamp, min_ttl: Option<Duration>) -> bool {
        self.due(conn.expires_at, conn.next_refresh_at, now, min_ttl)
    }

    fn due(
        &self,
        expires_at: Option<Timestamp>,
        next_refresh_at: Option<Timestamp>,
        now: Timestamp,
        min_ttl: Option<Duration>,
    ) -> bool {
        let Some(expires_at) = expires_at else {
            // The provider did not say when it expires; only a forced refresh touches it.
            return false;
        };
        // An expired token is always due, whatever backoff a failed refresh scheduled.
        if now >= expires_at || min_ttl.is_some_and(|ttl| now.plus(ttl) > expires_at) {
            return true;
        }
        match next_refresh_at {
            Some(at) => now >= at,
            None => now >= expires_at.minus(self.policy.min_remaining),
        }
    }

    fn satisfies(&self, conn: &Connection, now: Timestamp, req: &TokenRequest) -> bool {
        !self.is_due(conn, now, req.min_ttl)
    }

    /// Whether the current token can still be used (unexpired, and long enough for `min_ttl`).
    fn still_valid(conn: &Connection, now: Timestamp, min_ttl: Option<Duration>) -> bool {
        match conn.expires_at {
            None => true,
            Some(exp) => now.plus(min_ttl.unwrap_or(Duration::ZERO)) < exp,
        }
    }

    fn issue(&self, conn: &Connection, path: ReadPath) -> Result<IssuedToken, ServiceError> {
        let token = self
            .keyring
            .open_string(&conn.access_token, conn.binding(ACCESS_TOKEN))?;
        Ok(IssuedToken {
            access_token: SecretString::from(token.as_str()),
            token_type: conn.token_type.clone(),
            expires_at: conn.expires_at,
            scopes: conn.scopes.clone(),
            connection_id: conn.id.clone(),
            path,
            provider: conn.provider.clone(),
            actor_id: conn.actor_id.clone(),
        })
    }

    fn issue_entry(
        &self,
        entry: &CachedToken,
        path: ReadPath,
    ) -> Result<IssuedToken, ServiceError> {
        let token = self
            .keyring
            .open_string(&entry.access_token, entry.binding(ACCESS_TOKEN))?;
        Ok(IssuedToken {
            access_token: SecretString::from(token.as_str()),
            token_type: entry.token_type.clone(),
            expires_at: entry.expires_at,
            scopes: entry.scopes.clone(),
            connection_id: entry.id.clone(),
            path,
            provider: entry.provider.clone(),
            actor_id: entry.actor_id.clone(),
        })
    }

    /// A refresh that finished after the caller saw `seen_version`, taken from the cache (the
    /// refresher writes the database, then the cache).
    async fn refreshed_since(
        &self,
        id: &ConnectionId,
        seen_version: i64,
        req: &TokenRequest,
    ) -> Option<CachedToken> {
        let entry = self.cache.get(id).await?;
        // Newer only: a lagging in-process tier may still hold an older version, which is not
        // a refresh anyone finished (versions only grow).
        (entry.version > seen_version
            && usable(entry.status, entry.status_reason.as_deref()).is_ok()
            && !self.due(
                entry.expires_at,
                entry.next_refresh_at,
                self.clock.now(),
                req.min_ttl,
            ))
        .then_some(entry)
    }

    async fn reload(&self, id: &ConnectionId) -> Result<Connection, ServiceError> {
        let conn = self
            .store
            .get_connection(id)
            .await?
            .ok_or(ServiceError::NotFound("connection"))?;
        self.cache.put(CachedToken::from(&conn)).await;
        Ok(conn)
    }

    async fn refresh_single_flight(
        &self,
        seen: &CachedToken,
        seen_version: i64,
        req: TokenRequest,
    ) -> Result<IssuedToken, ServiceError> {
        let id = &seen.id;
        let waiting = std::time::Instant::now();
        // The caller that holds the connection's gate for writing runs the refresh; the others
        // wait for reading, so that they all wake at once when it is done instead of passing a
        // lock along one by one.
        let registered = self.gates.enter(id);
        let gate = registered.gate().clone();
        let _held = match gate.clone().try_write_owned() {
            Ok(held) => held,
            Err(_) => {
                // Another caller in this process is refreshing: wait for it together with
                // every other waiter, then take its result from the cache (no database read
                // each).
                drop(gate.read().await);
                metrics::histogram!("refresh_lock_wait_seconds", "lock" => "process")
                    .record(waiting.elapsed().as_secs_f64());
                if let Some(entry) = self.refreshed_since(id, seen_version, &req).await {
                    return self.issue_entry(&entry, ReadPath::Joined);
                }
                // It failed, or its token does not satisfy us: queue to lead, one at a time.
                gate.clone().write_owned().await
            }
        };
        metrics::histogram!("refresh_lock_wait_seconds", "lock" => "process")
            .record(waiting.elapsed().as_secs_f64());
        let runner = self
            .runner
            .get()
            .and_then(|r| Some((r.service.upgrade()?, r.handle.clone())));
        let Some((service, handle)) = runner else {
            return self.lead(seen, seen_version, req).await;
        };
        // The task holds the gate (and its registration) until the refresh is stored, so the
        // waiters behind it keep waiting for its result even if this caller goes away, and the
        // gate is forgotten when the last of them is done. It runs in the request's span
        // and audit context (request id, client, API key).
        let seen = seen.clone();
        let task = async move {
            let result = service.lead(&seen, seen_version, req).await;
            drop(_held);
            drop(registered);
            result
        }
        .instrument(tracing::Span::current());
        let refresh = match crate::audit::RequestContext::current() {
            Some(context) => handle.spawn(context.scope(task)),
            None => handle.spawn(task),
        };
        refresh.await.unwrap_or_else(|e| {
            // Not the panic's message: it is not ours to show, and could quote anything.
            let what = if e.is_panic() {
                "panicked"
            } else {
                "was cancelled"
            };
            Err(ServiceError::Store(StoreError::Other(format!(
                "the refresh task {what}"
            ))))
        })
    }

    /// The caller holding the connection's gate: take a refresh that finished meanwhile, or
    /// refresh (coordinating with other processes).
    async fn lead(
        &self,
        seen: &CachedToken,
        seen_version: i64,
        req: TokenRequest,
    ) -> Result<IssuedToken, ServiceError> {
        let id = &seen.id;
        // A refresh may also have finished between our read of the cache and now.
        if let Some(entry) = self.refreshed_since(id, seen_version, &req).await {
            return self.issue_entry(&entry, ReadPath::Joined);
        }
        // The usual case: nobody else is refreshing it. The lock, then the lease at once: the
        // lease hands back the row, so the row is not read first (one database round trip less
        // per refresh). A busy lock or lease takes the general path below, which reads the row
        // and waits for the other refresh.
        let lock_key = refresh_lock_key(
            &seen.workspace_id,
            &seen.actor_type,
            &seen.provider,
            &seen.actor_id,
        );
        let lock = match self.locks.try_lock(&lock_key, self.policy.lock_ttl).await {
            LockAttempt::Acquired(guard) => Some(Some(guard)),
            LockAttempt::Unavailable => Some(None),
            LockAttempt::Busy => None,
        };
        if let Some(lock_guard) = lock {
            let owner = self.lease_owner();
            let now = self.clock.now();
            let leased = self
                .store
                .try_acquire_lease(id, &owner, now, now.plus(self.policy.lease))
                .await?;
            if let Some(leased) = leased {
                return self
                    .refresh_leased(leased, seen_version, &owner, now, req, lock_guard)
                    .await;
            }
            // The lease is taken (the lock, when held, is released here and taken again below).
        }
        // Otherwise (here or in another process) the row says.
        let current = self
            .store
            .get_connection(id)
            .await?
            .ok_or(ServiceError::NotFound("connection"))?;
        let someone_refreshed = current.version != seen_version;
        if someone_refreshed {
            // Only then is the row news to the cache (which held the version we saw); the
            // usual case, nobody refreshed, goes to the provider without the round trip.
            self.cache.put(CachedToken::from(&current)).await;
        }
        ensure_usable(&current)?;
        let now = self.clock.now();
        if self.satisfies(&current, now, &req) && (someone_refreshed || !req.force_refresh) {
            return self.issue(&current, ReadPath::Joined);
        }
        self.refresh_across_processes(current, req).await
    }

    async fn refresh_across_processes(
        &self,
        current: Connection,
        req: TokenRequest,
    ) -> Result<IssuedToken, ServiceError> {
        let owner = self.lease_owner();
        let wait_until = self
            .clock
            .now()
            .plus(self.policy.lease + self.policy.provider_timeout);
        let mut counted_locked = false;
        let mut current = current;
        let mut lease_wait = LeaseWait(None);
        let lock_key = refresh_lock_key(
            &current.workspace_id,
            &current.actor_type,
            &current.provider,
            &current.actor_id,
        );
        // Held (when acquired) until this function returns: dropping it releases the lock.
        let mut lock_guard = None;
        loop {
            let now = self.clock.now();
            let until = now.plus(self.policy.lease);
            // Layer 2a: the distributed lock. `Busy` means another replica is refreshing, so
            // we wait like for a taken lease; `Unavailable` falls through to the lease, which
            // alone is enough for correctness.
            let lock_busy = if lock_guard.is_none() {
                match self.locks.try_lock(&lock_key, self.policy.lock_ttl).await {
                    LockAttempt::Acquired(g) => {
                        lock_guard = Some(g);
                        false
                    }
                    LockAttempt::Busy => true,
                    LockAttempt::Unavailable => false,
                }
            } else {
                false
            };
            let leased = if lock_busy {
                None
            } else {
                self.store
                    .try_acquire_lease(&current.id, &owner, now, until)
                    .await?
            };
            match leased {
                Some(leased) => {
                    return self
                        .refresh_leased(leased, current.version, &owner, now, req, lock_guard)
                        .await;
                }
                None => {
                    lease_wait.0.get_or_insert_with(std::time::Instant::now);
                    if !counted_locked {
                        events::record(&current.provider, OAuthEvent::RefreshLocked);
                        counted_locked = true;
                    }
                    // Another process is refreshing. A token that is still valid serves the
                    // caller now; only a caller that cannot use it waits for the new one.
                    if !req.force_refresh && Self::still_valid(&current, now, req.min_ttl) {
                        return self.issue(&current, ReadPath::Joined);
                    }
                    if now >= wait_until {
                        return Err(ServiceError::ProviderUnavailable {
                            detail: "another instance is refreshing this connection and has not finished".into(),
                            retry_after: Some(Duration::from_secs(1)),
                        });
                    }
                    tokio::time::sleep(self.policy.lock_poll).await;
                    let latest = self.reload(&current.id).await?;
                    ensure_usable(&latest)?;
                    if latest.version != current.version
                        && self.satisfies(
                            &latest,
                            self.clock.now(),
                            &TokenRequest {
                                force_refresh: false,
                                ..req
                            },
                        )
                    {
                        return self.issue(&latest, ReadPath::Joined);
                    }
                    current = latest;
                    // Give up a lock we may hold while the lease is elsewhere.
                    lock_guard = None;
                }
            }
        }
    }

    /// A lease owner's name: this process, and a random part for this attempt.
    fn lease_owner(&self) -> String {
        format!("{}:{}", self.instance, random::token())
    }

    /// Holding the lease (and the Redis lock, when Redis answered): serve a refresh that
    /// another caller finished since `seen_version`, or refresh now. The lock is released when
    /// the refresh is done.
    async fn refresh_leased(
        &self,
        leased: Connection,
        seen_version: i64,
        owner: &str,
        now: Timestamp,
        req: TokenRequest,
        lock_guard: Option<Box<dyn LockGuard>>,
    ) -> Result<IssuedToken, ServiceError> {
        ensure_usable_or_release(self, &leased, owner).await?;
        let refreshed_meanwhile = leased.version != seen_version;
        if self.satisfies(&leased, now, &req) && (refreshed_meanwhile || !req.force_refresh) {
            self.store.release_lease(&leased.id, owner, None).await?;
            self.cache.put(CachedToken::from(&leased)).await;
            return self.issue(&leased, ReadPath::Joined);
        }
        let result = self.refresh_under_lease(leased, owner, req).await;
        drop(lock_guard);
        result
    }

    /// Refreshes under the lease, then records the outcome in the audit log.
    pub(crate) async fn refresh_under_lease(
        &self,
        leased: Connection,
        owner: &str,
        req: TokenRequest,
    ) -> Result<IssuedToken, ServiceError> {
        let event = AuditEvent::new(
            leased.workspace_id.clone(),
            AuditAction::TokenRefreshed,
            self.clock.now(),
        )
        .connection(&leased);
        let provider = leased.provider.as_str().to_owned();
        let result = self.refresh_and_save(leased, owner, req).await;
        let failure = match &result {
            Ok(issued) if issued.path == ReadPath::Refreshed => None,
            Ok(_) => Some("not_completed"),
            Err(ServiceError::NeedsReauth { .. }) => Some("needs_reauth"),
            Err(ServiceError::ProviderUnavailable { .. }) => Some("provider_unavailable"),
            Err(ServiceError::ProviderRejected { .. }) => Some("provider_rejected"),
            Err(_) => Some("internal"),
        };
        if let Some(reason) = failure {
            metrics::counter!("refresh_failures_total", "provider" => provider, "reason" => reason)
                .increment(1);
        }
        let Some(audit) = self.audit.clone() else {
            return result;
        };
        let event = match &result {
            Ok(issued) if issued.path == ReadPath::Refreshed => event,
            Ok(_) => AuditEvent {
                action: AuditAction::TokenRefreshFailed,
                ..event
            }
            .failed("the refresh did not complete; the stored token was served"),
            Err(ServiceError::NeedsReauth { reason }) => AuditEvent {
                action: AuditAction::ConnectionNeedsReauth,
                ..event
            }
            .failed(reason),
            Err(e) => AuditEvent {
                action: AuditAction::TokenRefreshFailed,
                ..event
            }
            .failed(e.to_string()),
        };
        match (audit.record(event).await, result) {
            (Ok(()), result) => result,
            (Err(audit_error), Ok(_)) => Err(audit_error.into()),
            (Err(audit_error), Err(e)) => {
                warn!(error = %audit_error, "the failed refresh could not be audited");
                Err(e)
            }
        }
    }

    async fn refresh_and_save(
        &self,
        leased: Connection,
        owner: &str,
        req: TokenRequest,
    ) -> Result<IssuedToken, ServiceError> {
        let provider = leased.provider.clone();
        events::record(&provider, OAuthEvent::RefreshStart);
        let started = std::time::Instant::now();
        let result = self.call_provider(&leased, owner).await;
        metrics::histogram!("refresh_latency_seconds", "provider" => provider.as_str().to_owned())
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(tokens) => self.save_refresh(leased, owner, tokens).await,
            Err(RefreshFailure::InvalidGrant(description)) => {
                self.on_invalid_grant(leased, owner, description, req).await
            }
            Err(RefreshFailure::NoRefreshToken) => {
                events::record(&provider, OAuthEvent::RefreshFailed);
                if Self::still_valid(&leased, self.clock.now(), req.min_ttl) && !req.force_refresh {
                    self.store.release_lease(&leased.id, owner, None).await?;
                    return self.issue(&leased, ReadPath::Joined);
                }
                let reason = "no_refresh_token: the provider issued no refresh token; the user must reconnect";
                self.mark_reauth(&leased, owner, reason).await
            }
            Err(RefreshFailure::Transient {
                detail,
                retry_after,
            }) => {
                events::record(&provider, OAuthEvent::RefreshFailed);
                let retry_at = self
                    .clock
                    .now()
                    .plus(retry_after.unwrap_or(self.policy.backoff_max));
                self.store
                    .release_lease(&leased.id, owner, Some(retry_at))
                    .await?;
                warn!(connection_id = %leased.id, %provider, %detail, "refresh failed transiently; status unchanged");
                if Self::still_valid(&leased, self.clock.now(), req.min_ttl) && !req.force_refresh {
                    // Degrade gracefully: the current token still works for a while.
                    return self.issue(&leased, ReadPath::Joined);
                }
                Err(ServiceError::ProviderUnavailable {
                    detail,
                    retry_after,
                })
            }
            Err(RefreshFailure::Rejected(detail)) => {
                events::record(&provider, OAuthEvent::RefreshFailed);
                let retry_at = self.clock.now().plus(self.policy.backoff_max);
                self.store
                    .release_lease(&leased.id, owner, Some(retry_at))
                    .await?;
                warn!(connection_id = %leased.id, %provider, %detail, "provider refused the refresh request");
                Err(ServiceError::ProviderRejected { detail })
            }
            Err(RefreshFailure::Internal(e)) => {
                self.store.release_lease(&leased.id, owner, None).await?;
                Err(e)
            }
        }
    }

    /// Calls the token endpoint with retries for transient failures, all within the lease.
    async fn call_provider(
        &self,
        leased: &Connection,
        owner: &str,
    ) -> Result<TokenSet, RefreshFailure> {
        let Some(grant) = leased
            .open_grant(&self.keyring)
            .map_err(|e| RefreshFailure::Internal(e.into()))?
        else {
            return Err(RefreshFailure::NoRefreshToken);
        };
        let lease_end = leased
            .lease_until
            .unwrap_or_else(|| self.clock.now().plus(self.policy.lease));
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let call = match &grant {
                Grant::RefreshToken(rt) => self.providers.refresh(&leased.provider, rt.as_str()),
                Grant::ServiceAccount(credential) => self
                    .providers
                    .mint_service_account(&leased.provider, credential.as_str()),
            };
            let outcome = match tokio::time::timeout(self.policy.provider_timeout, call).await {
                // A service account keeps its credential: a refresh token in the answer to a
                // JWT bearer grant would replace it, so it is dropped.
                Ok(Ok(mut tokens)) if matches!(grant, Grant::ServiceAccount(_)) => {
                    tokens.refresh_token = None;
                    Ok(tokens)
                }
                Ok(r) => r,
                Err(_) => Err(OAuthError::Transient {
                    detail: format!(
                        "token endpoint did not answer within {:?}",
                        self.policy.provider_timeout
                    ),
                    retry_after: None,
                    timed_out: true,
                }),
            };
            match outcome {
                Ok(tokens) => return Ok(tokens),
                Err(OAuthError::InvalidGrant { description }) => {
                    return Err(RefreshFailure::InvalidGrant(description));
                }
                Err(OAuthError::Transient {
                    detail,
                    retry_after,
                    ..
                }) => {
                    let wait = retry_after
                        .map(|r| r.max(self.policy.backoff(attempt)))
                        .unwrap_or_else(|| self.policy.backoff(attempt));
                    let next_deadline = self.clock.now().plus(wait + self.policy.provider_timeout);
                    if attempt >= self.policy.attempts || next_deadline >= lease_end {
                        return Err(RefreshFailure::Transient {
                            detail,
                            retry_after,
                        });
                    }
                    debug!(connection_id = %leased.id, attempt, ?wait, %detail, owner, "retrying refresh");
                    tokio::time::sleep(wait).await;
                }
                Err(OAuthError::Rejected { detail }) => {
                    return Err(RefreshFailure::Rejected(detail));
                }
                Err(OAuthError::UnknownProvider) => {
                    return Err(RefreshFailure::Rejected(format!(
                        "provider {} is no longer configured",
                        leased.provider
                    )));
                }
            }
        }
    }

    async fn save_refresh(
        &self,
        leased: Connection,
        owner: &str,
        tokens: TokenSet,
    ) -> Result<IssuedToken, ServiceError> {
        let now = self.clock.now();
        if tokens.access_token.expose_secret().is_empty() {
            events::record(&leased.provider, OAuthEvent::MissingAccessToken);
            self.store
                .release_lease(&leased.id, owner, Some(now.plus(self.policy.backoff_max)))
                .await?;
            return Err(ServiceError::ProviderRejected {
                detail: "the token endpoint answered without an access_token".into(),
            });
        }
        let expires_at = tokens.expires_in.map(|s| now.plus(Duration::from_secs(s)));
        let update = TokenUpdate {
            access_token: self.keyring.seal(
                tokens.access_token.expose_secret().as_bytes(),
                leased.binding(ACCESS_TOKEN),
            ),
            refresh_token: tokens.refresh_token.as_ref().map(|rt| {
                self.keyring
                    .seal(rt.expose_secret().as_bytes(), leased.binding(REFRESH_TOKEN))
            }),
            token_type: normalize_token_type(&tokens.token_type),
            expires_at,
            scopes: tokens.scope.clone(),
            next_refresh_at: self.policy.schedule(now, expires_at),
            now,
        };
        match self
            .store
            .complete_refresh(&leased.id, owner, leased.version, &update)
            .await?
        {
            Some(saved) => {
                self.cache.put(CachedToken::from(&saved)).await;
                events::record(&saved.provider, OAuthEvent::RefreshOk);
                info!(connection_id = %saved.id, provider = %saved.provider, version = saved.version, "token refreshed");
                self.issue(&saved, ReadPath::Refreshed)
            }
            None => {
                // Our lease expired and someone else wrote first. Their token is the one to use;
                // ours is dropped (with rotation, the one stored is the live one).
                events::record(&leased.provider, OAuthEvent::RefreshFailed);
                warn!(connection_id = %leased.id, "refresh lost its lease before saving; using the stored token");
                self.after_lost_write(&leased.id).await
            }
        }
    }

    /// Our compare-and-swap lost: another owner holds or held the lease. Serve what is stored
    /// if it is still valid; never an expired token while the new holder is mid-call.
    async fn after_lost_write(&self, id: &ConnectionId) -> Result<IssuedToken, ServiceError> {
        let latest = self.reload(id).await?;
        ensure_usable(&latest)?;
        if Self::still_valid(&latest, self.clock.now(), None) {
            return self.issue(&latest, ReadPath::Joined);
        }
        Err(ServiceError::ProviderUnavailable {
            detail: "another instance took over this refresh and has not finished".into(),
            retry_after: Some(Duration::from_secs(1)),
        })
    }

    async fn on_invalid_grant(
        &self,
        leased: Connection,
        owner: &str,
        description: String,
        req: TokenRequest,
    ) -> Result<IssuedToken, ServiceError> {
        events::record(&leased.provider, OAuthEvent::RefreshFailed);
        // Before declaring the grant dead: did another process refresh (and rotate the token
        // we presented) while we held an expired lease?
        let latest = self.reload(&leased.id).await?;
        if latest.version != leased.version {
            ensure_usable(&latest)?;
            if Self::still_valid(&latest, self.clock.now(), req.min_ttl) {
                return self.issue(&latest, ReadPath::Joined);
            }
        }
        // A service account whose delegation was withdrawn answers `unauthorized_client`,
        // which the gateway reports as a dead grant with that code first.
        let reason = if description.starts_with("unauthorized_client") {
            truncate(&description, 200)
        } else {
            format!("invalid_grant: {}", truncate(&description, 200))
        };
        self.mark_reauth(&leased, owner, &reason).await
    }

    async fn mark_reauth(
        &self,
        leased: &Connection,
        owner: &str,
        reason: &str,
    ) -> Result<IssuedToken, ServiceError> {
        let now = self.clock.now();
        match self
            .store
            .mark_needs_reauth(&leased.id, owner, leased.version, reason, now)
            .await?
        {
            Some(saved) => {
                self.cache.put(CachedToken::from(&saved)).await;
                warn!(connection_id = %saved.id, provider = %saved.provider, reason, "connection needs re-authorization");
                Err(ServiceError::NeedsReauth {
                    reason: reason.to_owned(),
                })
            }
            None => self.after_lost_write(&leased.id).await,
        }
    }

    /// Marks a connection `needs_reauth` because the provider's API refused a freshly
    /// refreshed token (a second 401). Follows the protocol: takes the row's lease and writes
    /// under compare-and-swap, so a concurrent refresh is never overwritten. `false` when
    /// another holder has the lease or the row changed meanwhile (then that writer decides).
    pub async fn mark_rejected_by_api(
        &self,
        workspace: &WorkspaceId,
        id: &ConnectionId,
        reason: &str,
    ) -> Result<bool, ServiceError> {
        let conn = self.connection(workspace, id).await?;
        let owner = format!("{}:{}", self.instance, random::token());
        let now = self.clock.now();
        let Some(leased) = self
            .store
            .try_acquire_lease(&conn.id, &owner, now, now.plus(self.policy.lease))
            .await?
        else {
            return Ok(false);
        };
        match self
            .store
            .mark_needs_reauth(&leased.id, &owner, leased.version, reason, now)
            .await?
        {
            Some(saved) => {
                self.cache.put(CachedToken::from(&saved)).await;
                warn!(connection_id = %saved.id, provider = %saved.provider, reason, "connection needs re-authorization");
                Ok(true)
            }
            None => {
                self.store.release_lease(&leased.id, &owner, None).await?;
                self.cache.invalidate(&leased.id).await;
                Ok(false)
            }
        }
    }

    /// Stores tokens for an actor: a new connection, or new tokens for the existing one.
    /// Stores a new grant's tokens, and its `connection.created` audit record (with
    /// `audit_detail`: how it arrived) in the same transaction: a connection is never stored
    /// unrecorded.
    pub async fn store_new(
        &self,
        new: NewConnection,
        audit_detail: &str,
    ) -> Result<Connection, ServiceError> {
        self.store_with(new, None, audit_detail).await
    }

    /// Connects an actor through a service account (Google Workspace domain-wide delegation):
    /// mints a first access token with `credential` (proving the key and the delegation work),
    /// then stores the token and the credential, sealed under the service-account binding in
    /// the refresh slot. From then on the connection is refreshed like any other, by minting.
    pub async fn store_service_account(
        &self,
        mut new: NewConnection,
        credential: SecretString,
        audit_detail: &str,
    ) -> Result<Connection, ServiceError> {
        let call = self
            .providers
            .mint_service_account(&new.provider, credential.expose_secret());
        let minted = match tokio::time::timeout(self.policy.provider_timeout, call).await {
            Ok(Ok(tokens)) => tokens,
            Ok(Err(OAuthError::InvalidGrant { description })) => {
                return Err(ServiceError::ProviderRejected {
                    detail: format!("the service account was refused: {description}"),
                });
            }
            Ok(Err(OAuthError::Transient {
                detail,
                retry_after,
                ..
            })) => {
                return Err(ServiceError::ProviderUnavailable {
                    detail,
                    retry_after,
                });
            }
            Ok(Err(OAuthError::Rejected { detail })) => {
                return Err(ServiceError::ProviderRejected { detail });
            }
            Ok(Err(OAuthError::UnknownProvider)) => {
                return Err(ServiceError::NotFound("provider"));
            }
            Err(_) => {
                return Err(ServiceError::ProviderUnavailable {
                    detail: format!(
                        "token endpoint did not answer within {:?}",
                        self.policy.provider_timeout
                    ),
                    retry_after: None,
                });
            }
        };
        new.tokens = TokenSet {
            refresh_token: None,
            ..minted
        };
        new.expires_at = None;
        self.store_with(new, Some(credential), audit_detail).await
    }

    async fn store_with(
        &self,
        new: NewConnection,
        service_account: Option<SecretString>,
        audit_detail: &str,
    ) -> Result<Connection, ServiceError> {
        if new.tokens.access_token.expose_secret().is_empty() {
            events::record(&new.provider, OAuthEvent::MissingAccessToken);
            return Err(ServiceError::ProviderRejected {
                detail: "the token endpoint answered without an access_token".into(),
            });
        }
        let now = self.clock.now();
        let expires_at = new.expires_at.or_else(|| {
            new.tokens
                .expires_in
                .map(|s| now.plus(Duration::from_secs(s)))
        });
        let scopes = new
            .tokens
            .scope
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| new.requested_scopes.clone());
        // Two callbacks for one actor can race; the loser re-seals for the winner's id.
        for _ in 0..3 {
            let existing = self
                .store
                .find_connection(
                    &new.workspace_id,
                    &new.provider,
                    &new.actor_type,
                    &new.actor_id,
                )
                .await?;
            let mut conn = Connection {
                id: existing
                    .as_ref()
                    .map(|c| c.id.clone())
                    .unwrap_or_else(ConnectionId::generate),
                workspace_id: new.workspace_id.clone(),
                provider: new.provider.clone(),
                actor_type: new.actor_type.clone(),
                actor_id: new.actor_id.clone(),
                scopes: scopes.clone(),
                token_type: normalize_token_type(&new.tokens.token_type),
                access_token: Vec::new(),
                refresh_token: None,
                expires_at,
                status: ConnectionStatus::Active,
                status_reason: None,
                version: 1,
                lease_owner: None,
                lease_until: None,
                created_at: existing.as_ref().map(|c| c.created_at).unwrap_or(now),
                updated_at: now,
                last_refreshed_at: None,
                next_refresh_at: self.policy.schedule(now, expires_at),
                refresh_failures: 0,
                account_subject: new.account.as_ref().map(|a| a.subject.clone()),
                account_email: new.account.as_ref().and_then(|a| a.email.clone()),
            };
            conn.access_token = self.keyring.seal(
                new.tokens.access_token.expose_secret().as_bytes(),
                conn.binding(ACCESS_TOKEN),
            );
            conn.refresh_token = match &service_account {
                Some(credential) => Some(self.keyring.seal(
                    credential.expose_secret().as_bytes(),
                    conn.binding(SERVICE_ACCOUNT),
                )),
                None => new.tokens.refresh_token.as_ref().map(|rt| {
                    self.keyring
                        .seal(rt.expose_secret().as_bytes(), conn.binding(REFRESH_TOKEN))
                }),
            };
            let record = AuditEvent::new(
                conn.workspace_id.clone(),
                AuditAction::ConnectionCreated,
                now,
            )
            .connection(&conn)
            .detail(audit_detail);
            self.flush_queued_reads().await;
            let stored = self.store.upsert_connection_audited(&conn, &record).await;
            crate::audit::count_transactional(&stored);
            match stored {
                Ok(saved) => {
                    self.cache.put(CachedToken::from(&saved)).await;
                    events::record(&saved.provider, OAuthEvent::TokensStored);
                    return Ok(saved);
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict("connection changed concurrently three times".into()).into())
    }

    /// A change whose record commits in the change's own transaction (outside the audit
    /// writer) first lets the writer store the token reads queued before it, so the chain
    /// keeps them in the order they happened. Best effort: if the writer is failing, the
    /// change's own record shows whether the database takes writes.
    async fn flush_queued_reads(&self) {
        if let Some(audit) = &self.audit
            && let Err(e) = audit.flush().await
        {
            tracing::warn!(error = %e, "queued token-read records could not be stored before an audited change");
        }
    }

    /// Revokes the grant at the provider (RFC 7009) where possible, then deletes the
    /// connection. The deletion happens even when revocation fails: the caller asked for the
    /// account to be disconnected, and keeping its tokens would be worse.
    pub async fn delete(
        &self,
        workspace: &WorkspaceId,
        id: &ConnectionId,
    ) -> Result<Deletion, ServiceError> {
        let conn = self
            .store
            .get_connection(id)
            .await?
            .filter(|c| &c.workspace_id == workspace)
            .ok_or(ServiceError::NotFound("connection"))?;
        let deletion = self.revoke(&conn).await;
        let detail = match (&deletion.revoked, &deletion.revocation_note) {
            (true, _) => "revoked at the provider".to_owned(),
            (false, Some(note)) => format!("not revoked: {note}"),
            (false, None) => "not revoked".to_owned(),
        };
        let record = AuditEvent::new(
            workspace.clone(),
            AuditAction::ConnectionDeleted,
            self.clock.now(),
        )
        .connection(&conn)
        .detail(detail);
        // The deletion and its record commit together; a record that cannot be stored keeps
        // the connection (the grant may already be revoked at the provider: deleting again
        // finishes the job).
        self.flush_queued_reads().await;
        let deleted = self
            .store
            .delete_connection_audited(workspace, id, &record)
            .await;
        crate::audit::count_transactional(&deleted);
        if !deleted? {
            return Err(ServiceError::NotFound("connection"));
        }
        self.cache.invalidate(id).await;
        info!(connection_id = %id, provider = %conn.provider, revoked = deletion.revoked, "connection deleted");
        Ok(deletion)
    }

    async fn revoke(&self, conn: &Connection) -> Deletion {
        // Revoking the refresh token ends the whole grant at RFC 7009 providers.
        // A service account's credential is no token of the provider's: revoke the access
        // token it minted (the key itself is managed in the provider's console).
        let service_account = conn.refresh_token.is_some()
            && matches!(
                conn.open_refresh_slot(&self.keyring),
                Ok(Some((_, SERVICE_ACCOUNT)))
            );
        let (sealed, column, kind) = match &conn.refresh_token {
            Some(rt) if !service_account => (rt.as_slice(), REFRESH_TOKEN, TokenKind::RefreshToken),
            _ => (
                conn.access_token.as_slice(),
                ACCESS_TOKEN,
                TokenKind::AccessToken,
            ),
        };
        let token = match self.keyring.open_string(sealed, conn.binding(column)) {
            Ok(t) => t,
            Err(e) => {
                return Deletion {
                    revoked: false,
                    revocation_note: Some(format!("token could not be decrypted: {e}")),
                };
            }
        };
        let call = self.providers.revoke(&conn.provider, token.as_str(), kind);
        match tokio::time::timeout(self.policy.provider_timeout, call).await {
            Ok(Ok(true)) => Deletion {
                revoked: true,
                revocation_note: None,
            },
            Ok(Ok(false)) => Deletion {
                revoked: false,
                revocation_note: Some("the provider has no revocation endpoint".into()),
            },
            Ok(Err(e)) => Deletion {
                revoked: false,
                revocation_note: Some(format!("revocation failed: {e}")),
            },
            Err(_) => Deletion {
                revoked: false,
                revocation_note: Some("revocation timed out".into()),
            },
        }
    }
}

/// Measures how long a caller waited on another process's lease, when it did.
struct LeaseWait(Option<std::time::Instant>);

impl Drop for LeaseWait {
    fn drop(&mut self) {
        if let Some(since) = self.0 {
            metrics::histogram!("refresh_lock_wait_seconds", "lock" => "lease")
                .record(since.elapsed().as_secs_f64());
        }
    }
}

enum RefreshFailure {
    InvalidGrant(String),
    NoRefreshToken,
    Transient {
        detail: String,
        retry_after: Option<Duration>,
    },
    Rejected(String),
    Internal(ServiceError),
}

fn ensure_usable(conn: &Connection) -> Result<(), ServiceError> {
    usable(conn.status, conn.status_reason.as_deref())
}

fn usable(status: ConnectionStatus, reason: Option<&str>) -> Result<(), ServiceError> {
    match status {
        ConnectionStatus::Active => Ok(()),
        ConnectionStatus::NeedsReauth => Err(ServiceError::NeedsReauth {
            reason: reason.unwrap_or("the grant is no longer valid").to_owned(),
        }),
        ConnectionStatus::Revoked => Err(ServiceError::Revoked),
    }
}

/// The distributed lock's key. It names the grant (workspace, actor, provider), like the
/// unique key of the row, so that every replica asks for the same lock.
fn refresh_lock_key(
    workspace: &WorkspaceId,
    actor_type: &ActorType,
    provider: &ProviderName,
    actor: &ActorId,
) -> String {
    format!(
        "oauth:refresh:{}:{}:{}:{}",
        workspace.as_str(),
        actor_type.as_str(),
        provider.as_str(),
        actor.as_str()
    )
}

async fn ensure_usable_or_release(
    service: &TokenService,
    leased: &Connection,
    owner: &str,
) -> Result<(), ServiceError> {
    if let Err(e) = ensure_usable(leased) {
        service.store.release_lease(&leased.id, owner, None).await?;
        service.cache.put(CachedToken::from(leased)).await;
        return Err(e);
    }
    Ok(())
}

/// RFC 6749 token types are case-insensitive; `Bearer` is the canonical spelling.
fn normalize_token_type(t: &str) -> String {
    if t.is_empty() || t.eq_ignore_ascii_case("bearer") {
        "Bearer".to_owned()
    } else {
        t.to_owned()
    }
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(max_chars)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_time_is_the_larger_of_the_floor_and_the_fraction() {
        let p = RefreshPolicy::default();
        let now = Timestamp(1_000_000);
        let cases = [
            // (lifetime, margin before expiry)
            (Duration::from_secs(3600), Duration::from_secs(360)), // 10 % of an hour
            (Duration::from_secs(300), Duration::from_secs(60)),   // the 60 s floor
            (Duration::from_secs(30), Duration::from_secs(60)),    // already inside the window
        ];
        for (lifetime, margin) in cases {
            let expires = now.plus(lifetime);
            assert_eq!(
                p.refresh_at(now, expires),
                expires.minus(margin),
                "{lifetime:?}"
            );
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let p = RefreshPolicy::default();
        for attempt in 1..=6u32 {
            let full = Duration::from_secs(1u64 << (attempt - 1)).min(p.backoff_max);
            for _ in 0..50 {
                let b = p.backoff(attempt);
                assert!(
                    b >= full / 2 && b <= full,
                    "attempt {attempt}: {b:?} outside [{:?}, {full:?}]",
                    full / 2
                );
            }
        }
    }
}
