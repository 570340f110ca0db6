//! The multi-replica adapters against the real services: the background refresher's claim
//! and workspace-scoped API-key management on SQLite and PostgreSQL, and the Redis cache,
//! flows, lock and rate limiter against the real Redis (and against a Redis that is down).
//!
//! Redis is `RELAY_TEST_REDIS_URL` (default the local one). Each test uses its own random key
//! prefix, so tests running in parallel never see each other's keys. When Redis cannot be
//! reached the Redis tests are skipped with a notice, except in CI (`CI=true`), where they fail.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use relay_core::clock::{Clock, ManualClock, Timestamp};
use relay_core::coordination::{
    ApiKeyChange, FlowStore, LocalRateLimiter, LockAttempt, RateLimiter, RefreshLocks,
};
use relay_core::ports::{
    ApiKeyRecord, ApiKeyRole, CachedToken, ConnectionCache, FlowRecord, Store,
};
use relay_core::{
    ActorId, ActorType, Connection, ConnectionId, ConnectionStatus, ProviderName, Scopes,
    WorkspaceId,
};
use relay_store::redis::{
    Redis, RedisCache, RedisFlows, RedisLocks, RedisRateLimiter, RedisSettings,
};
use support::TestDb;

const T0: Timestamp = Timestamp(1_750_000_000_000);

fn at(secs: i64) -> Timestamp {
    Timestamp(T0.0 + secs * 1000)
}

async fn workspace(store: &Arc<dyn Store>, name: &str) -> WorkspaceId {
    store
        .ensure_workspace(name, T0)
        .await
        .expect("workspace")
        .id
}

fn connection(ws: &WorkspaceId, actor: &str, next_refresh_secs: i64) -> Connection {
    Connection {
        id: ConnectionId::generate(),
        workspace_id: ws.clone(),
        provider: ProviderName::parse("google").expect("provider"),
        actor_type: ActorType::user(),
        actor_id: ActorId::parse(actor).expect("actor"),
        scopes: Scopes::parse("openid").expect("scopes"),
        token_type: "Bearer".into(),
        access_token: vec![1, 2, 3],
        refresh_token: Some(vec![9, 8, 7]),
        expires_at: Some(at(3600)),
        status: ConnectionStatus::Active,
        status_reason: None,
        version: 1,
        lease_owner: None,
        lease_until: None,
        created_at: T0,
        updated_at: T0,
        last_refreshed_at: None,
        next_refresh_at: Some(at(next_refresh_secs)),
        refresh_failures: 0,
        account_subject: None,
        account_email: None,
    }
}

/// Only due, active, unleased connections with a refresh token are claimed, each once.
async fn claim_takes_only_due_free_refreshable_rows(t: &TestDb) {
    let store = t.store();
    let due = t.db.due_connections();
    let ws = workspace(&store, "acme").await;
    let due_now = store
        .upsert_connection(&connection(&ws, "due", 10))
        .await
        .expect("insert");
    let later = store
        .upsert_connection(&connection(&ws, "later", 500))
        .await
        .expect("insert");
    let mut no_rt = connection(&ws, "no-refresh-token", 10);
    no_rt.refresh_token = None;
    store.upsert_connection(&no_rt).await.expect("insert");
    let leased = store
        .upsert_connection(&connection(&ws, "leased", 10))
        .await
        .expect("insert");
    store
        .try_acquire_lease(&leased.id, "someone", at(0), at(100))
        .await
        .expect("lease")
        .expect("free");

    let claimed = due
        .claim_due("bg:1", at(20), at(50), 10)
        .await
        .expect("claim");
    let ids: Vec<_> = claimed.iter().map(|c| c.id.clone()).collect();
    assert_eq!(ids, vec![due_now.id.clone()]);
    assert_eq!(claimed[0].lease_owner.as_deref(), Some("bg:1"));
    assert_eq!(claimed[0].lease_until, Some(at(50)));

    // Claimed rows are leased: a second claim before the lease ends finds nothing.
    assert!(
        due.claim_due("bg:2", at(21), at(51), 10)
            .await
            .expect("claim")
            .is_empty()
    );
    // After the lease expires (a crashed claimer), the row is claimable again.
    let again = due
        .claim_due("bg:3", at(60), at(90), 10)
        .await
        .expect("claim");
    assert_eq!(again.len(), 1);
    // The later one becomes due in its time.
    let much_later = due
        .claim_due("bg:4", at(600), at(700), 10)
        .await
        .expect("claim");
    assert!(much_later.iter().any(|c| c.id == later.id));
}

/// Claimers racing over many due rows split them: no row is claimed twice.
async fn concurrent_claims_are_disjoint(t: &TestDb) {
    let store = t.store();
    let ws = workspace(&store, "acme").await;
    for i in 0..40 {
        store
            .upsert_connection(&connection(&ws, &format!("actor-{i}"), i))
            .await
            .expect("insert");
    }
    let tasks: Vec<_> = (0..6)
        .map(|n| {
            let due = t.db.due_connections();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = due
                        .claim_due(&format!("bg:{n}"), at(100), at(200), 3)
                        .await
                        .expect("claim");
                    if got.is_empty() {
                        break;
                    }
                    mine.extend(got.into_iter().map(|c| c.id));
                }
                mine
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let unique: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(all.len(), 40, "every due row claimed once");
    assert_eq!(unique.len(), 40, "no row claimed twice");
}

/// Keys are listed, limited and revoked within the caller's workspace only.
async fn api_key_admin_is_scoped_to_the_workspace(t: &TestDb) {
    let store = t.store();
    let admin = t.db.api_key_admin();
    let a = workspace(&store, "a").await;
    let b = workspace(&store, "b").await;
    let key = |id: &str, ws: &WorkspaceId| ApiKeyRecord {
        id: id.into(),
        workspace_id: ws.clone(),
        secret_hash: relay_core::random::sha256_hex(id.as_bytes()),
        created_at: T0,
        revoked_at: None,
        rate_limit_per_minute: None,
        role: ApiKeyRole::Admin,
    };
    store
        .insert_api_key(&key("key_a1", &a))
        .await
        .expect("insert");
    store
        .insert_api_key(&key("key_b1", &b))
        .await
        .expect("insert");

    let listed = admin.list_api_keys(&a).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, "key_a1");

    let limit = |l: Option<i64>| ApiKeyChange {
        rate_limit_per_minute: Some(l),
        role: None,
    };
    assert_eq!(
        admin
            .update_api_key(&a, "key_b1", &limit(Some(5)))
            .await
            .expect("set"),
        None
    );
    assert_eq!(
        admin
            .update_api_key(&a, "key_a1", &limit(Some(5)))
            .await
            .expect("set")
            .and_then(|k| k.rate_limit_per_minute),
        Some(5)
    );
    let found = store
        .find_api_key_by_hash(&relay_core::random::sha256_hex(b"key_a1"))
        .await
        .expect("find")
        .expect("exists");
    assert_eq!(found.rate_limit_per_minute, Some(5));

    assert!(
        !admin
            .revoke_workspace_api_key(&a, "key_b1", at(1))
            .await
            .expect("revoke")
    );
    assert!(
        admin
            .revoke_workspace_api_key(&a, "key_a1", at(1))
            .await
            .expect("revoke")
    );
    assert!(
        !admin
            .revoke_workspace_api_key(&a, "key_a1", at(2))
            .await
            .expect("twice")
    );
    assert_eq!(
        admin
            .update_api_key(&a, "key_a1", &limit(Some(9)))
            .await
            .expect("set"),
        None,
        "a revoked key is not changed"
    );
    let b_keys = admin.list_api_keys(&b).await.expect("list");
    assert!(
        b_keys[0].revoked_at.is_none(),
        "the other workspace is untouched"
    );
}

/// A key's role is stored and read back; a change sets only the fields it names.
async fn api_key_roles_are_stored_and_changed_field_by_field(t: &TestDb) {
    let store = t.store();
    let admin = t.db.api_key_admin();
    let ws = workspace(&store, "a").await;
    let key = ApiKeyRecord {
        id: "key_s1".into(),
        workspace_id: ws.clone(),
        secret_hash: relay_core::random::sha256_hex(b"key_s1"),
        created_at: T0,
        revoked_at: None,
        rate_limit_per_minute: Some(30),
        role: ApiKeyRole::Service,
    };
    store.insert_api_key(&key).await.expect("insert");
    let found = store
        .find_api_key_by_hash(&key.secret_hash)
        .await
        .expect("find")
        .expect("exists");
    assert_eq!(found, key);

    // The role alone: the limit stays.
    let promoted = admin
        .update_api_key(
            &ws,
            "key_s1",
            &ApiKeyChange {
                rate_limit_per_minute: None,
                role: Some(ApiKeyRole::Admin),
            },
        )
        .await
        .expect("update")
        .expect("active");
    assert_eq!(promoted.role, ApiKeyRole::Admin);
    assert_eq!(promoted.rate_limit_per_minute, Some(30));
    // The limit alone, back to the default: the role stays.
    let reset = admin
        .update_api_key(
            &ws,
            "key_s1",
            &ApiKeyChange {
                rate_limit_per_minute: Some(None),
                role: None,
            },
        )
        .await
        .expect("update")
        .expect("active");
    assert_eq!(reset.role, ApiKeyRole::Admin);
    assert_eq!(reset.rate_limit_per_minute, None);
    assert_eq!(
        admin.list_api_keys(&ws).await.expect("list"),
        vec![reset.clone()]
    );
    assert_eq!(
        store
            .find_api_key_by_hash(&key.secret_hash)
            .await
            .expect("find"),
        Some(reset)
    );
}

/// Runs SQL on the test database directly, as an earlier Relay (or an operator) would.
async fn run_sql(t: &TestDb, sql: &str) {
    use sqlx::Connection;
    match t.kind() {
        relay_store::DatabaseKind::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&t.url).await.expect("open");
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&mut c)
                .await
                .expect("sql");
        }
        relay_store::DatabaseKind::Postgres => {
            let mut c = sqlx::PgConnection::connect(&t.url).await.expect("open");
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&mut c)
                .await
                .expect("sql");
        }
    }
}

/// Keys made before roles existed could do everything; the migration makes them `admin` so
/// that an upgraded deployment keeps working, and undoing it drops the column again.
async fn keys_from_before_roles_become_admin(t: &TestDb) {
    let store = t.store();
    let ws = workspace(&store, "a").await;
    t.db.undo_to(7).await.expect("back to before roles");
    run_sql(
        t,
        &format!(
            "INSERT INTO api_keys (id, workspace_id, secret_hash, created_at) \
             VALUES ('key_old', '{}', '{}', {})",
            ws.as_str(),
            relay_core::random::sha256_hex(b"key_old"),
            T0.0
        ),
    )
    .await;
    t.db.migrate().await.expect("migrate");
    let old = store
        .find_api_key_by_hash(&relay_core::random::sha256_hex(b"key_old"))
        .await
        .expect("find")
        .expect("kept");
    assert_eq!(old.role, ApiKeyRole::Admin);
    t.db.undo_to(7).await.expect("the migration can be undone");
    t.db.migrate().await.expect("and applied again");
    assert!(
        store
            .find_api_key_by_hash(&relay_core::random::sha256_hex(b"key_old"))
            .await
            .expect("find")
            .is_some()
    );
}

on_every_backend!(
    db claim_takes_only_due_free_refreshable_rows,
    db concurrent_claims_are_disjoint,
    db api_key_admin_is_scoped_to_the_workspace,
    db api_key_roles_are_stored_and_changed_field_by_field,
    db keys_from_before_roles_become_admin,
);

// ---------------------------------------------------------------- Redis

fn redis_url() -> String {
    std::env::var("RELAY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A handle on the test Redis with a fresh key prefix, or `None` (skip) outside CI when
/// Redis is not reachable.
async fn redis() -> Option<Redis> {
    let mut settings = RedisSettings::new(redis_url());
    settings.key_prefix = format!("relay-test:{}:", uuid::Uuid::new_v4().simple());
    settings.command_timeout = Duration::from_secs(2);
    let redis = Redis::open(&settings).expect("valid url");
    match redis.ping(Duration::from_secs(2)).await {
        Ok(()) => Some(redis),
        Err(e) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("Redis is required in CI but cannot be reached: {e}");
            }
            eprintln!("NOTICE: Redis not reachable ({e}); skipping this Redis test");
            None
        }
    }
}

/// A Redis that is down: nothing listens on port 1 of loopback.
fn dead_redis() -> Redis {
    let mut settings = RedisSettings::new("redis://127.0.0.1:1");
    settings.command_timeout = Duration::from_millis(200);
    Redis::open(&settings).expect("valid url")
}

fn entry(id: &ConnectionId, version: i64, token: u8, clock: &ManualClock) -> CachedToken {
    CachedToken {
        id: id.clone(),
        workspace_id: WorkspaceId::from_stored("ws".into()),
        provider: ProviderName::from_stored("google".into()),
        actor_id: relay_core::ActorId::from_stored("user-1".into()),
        actor_type: ActorType::user(),
        scopes: Scopes::from_stored("openid"),
        token_type: "Bearer".into(),
        access_token: vec![token; 8],
        expires_at: Some(clock.now().plus(Duration::from_secs(3600))),
        next_refresh_at: None,
        status: ConnectionStatus::Active,
        status_reason: None,
        version,
    }
}

/// Polls (bounded) until `check` holds: pub/sub delivery is asynchronous.
async fn eventually<F: Fn() -> Fut, Fut: Future<Output = bool>>(check: F) -> bool {
    for _ in 0..200 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn the_shared_cache_orders_versions_and_invalidates_every_replica() {
    let Some(redis) = redis().await else { return };
    let clock = ManualClock::new(Timestamp(1_750_000_000_000));
    let c: Arc<dyn Clock> = Arc::new(clock.clone());
    let a = RedisCache::new(redis.clone(), c.clone(), 1000, Duration::from_secs(60));
    let b = RedisCache::new(redis.clone(), c.clone(), 1000, Duration::from_secs(60));
    let id = ConnectionId::generate();
    assert!(a.get(&id).await.is_none());
    assert!(
        eventually(|| async { a.local_tier_active() && b.local_tier_active() }).await,
        "the invalidation subscriptions come up"
    );

    a.put(entry(&id, 2, 2, &clock)).await;
    a.put(entry(&id, 1, 1, &clock)).await;
    assert_eq!(
        b.get(&id).await.map(|e| e.version),
        Some(2),
        "older never replaces newer"
    );

    // Let both subscriptions come up, then warm B's in-process tier.
    assert!(
        eventually(|| async {
            a.put(entry(&id, 2, 2, &clock)).await;
            b.get(&id).await.is_some()
        })
        .await
    );
    // A refresh on replica A is seen by replica B.
    a.put(entry(&id, 3, 3, &clock)).await;
    assert!(
        eventually(|| async { b.get(&id).await.map(|e| e.version) == Some(3) }).await,
        "B sees the refresh"
    );
    // A delete on A is seen by B.
    a.invalidate(&id).await;
    assert!(
        eventually(|| async { b.get(&id).await.is_none() }).await,
        "B sees the delete"
    );
}

/// Replica B refreshed from an older row (its write lost to A's newer version in Redis):
/// B must not keep its older entry in its in-process tier, where no invalidation would
/// ever reach it (A's write published nothing: it replaced no entry).
#[tokio::test]
async fn a_write_that_lost_to_a_newer_version_is_not_kept_in_the_local_tier() {
    let Some(redis) = redis().await else { return };
    let clock = ManualClock::new(Timestamp(1_750_000_000_000));
    let c: Arc<dyn Clock> = Arc::new(clock.clone());
    let a = RedisCache::new(redis.clone(), c.clone(), 1000, Duration::from_secs(60));
    let b = RedisCache::new(redis.clone(), c.clone(), 1000, Duration::from_secs(60));
    assert!(
        eventually(|| async { a.local_tier_active() && b.local_tier_active() }).await,
        "the invalidation subscriptions come up"
    );
    let id = ConnectionId::generate();
    a.put(entry(&id, 2, 2, &clock)).await;
    b.put(entry(&id, 1, 1, &clock)).await;
    assert_eq!(
        b.get(&id).await.map(|e| e.version),
        Some(2),
        "B serves the newer entry Redis holds, not the one it failed to write"
    );
}

#[tokio::test]
async fn the_cache_key_and_value_reveal_no_actor_and_no_refresh_token() {
    let Some(redis) = redis().await else { return };
    let clock = ManualClock::new(Timestamp(1_750_000_000_000));
    let cache = RedisCache::new(
        redis.clone(),
        Arc::new(clock.clone()),
        0,
        Duration::from_secs(1),
    );
    let id = ConnectionId::generate();
    cache.put(entry(&id, 1, 7, &clock)).await;
    let client = redis::Client::open(redis_url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", redis_prefix_of(&redis)))
        .query_async(&mut conn)
        .await
        .expect("keys");
    assert_eq!(keys.len(), 1);
    assert!(keys[0].ends_with(&format!("tok:{id}")));
    let value: String = redis::cmd("GET")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .expect("get");
    assert!(!value.contains("refresh"));
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .expect("ttl");
    assert!(
        ttl > 3_500_000 && ttl <= 3_600_000,
        "TTL follows the token's expiry: {ttl}"
    );
}

fn redis_prefix_of(redis: &Redis) -> String {
    let debug = format!("{redis:?}");
    debug
        .split('"')
        .nth(1)
        .expect("the Debug output names the prefix")
        .to_owned()
}

fn flow(ws: &WorkspaceId, hash: &str, clock: &ManualClock) -> FlowRecord {
    FlowRecord {
        state_hash: hash.into(),
        workspace_id: ws.clone(),
        sealed: vec![0, 1, 2, 250],
        created_at: clock.now(),
        expires_at: clock.now().plus(Duration::from_secs(600)),
    }
}

#[tokio::test]
async fn a_flow_in_redis_is_consumed_once_and_an_outage_falls_back_to_the_database() {
    let Some(redis) = redis().await else { return };
    let t = support::sqlite().await;
    let store = t.store();
    let ws = workspace(&store, "acme").await;
    let clock = ManualClock::new(Timestamp(1_750_000_000_000));
    let flows = Arc::new(RedisFlows::new(
        redis,
        store.clone(),
        Arc::new(clock.clone()),
    ));
    let f = flow(&ws, "hash-1", &clock);
    flows.insert_flow(&f).await.expect("insert");
    let takers: Vec<_> = (0..16)
        .map(|_| {
            let flows = flows.clone();
            tokio::spawn(async move { flows.take_flow("hash-1").await.expect("take") })
        })
        .collect();
    let mut got = Vec::new();
    for t in takers {
        if let Some(f) = t.await.expect("task") {
            got.push(f);
        }
    }
    assert_eq!(got, vec![f], "exactly one taker gets the flow, unchanged");

    // Redis down: the flow goes to the database, and is still consumed once.
    let down = RedisFlows::new(dead_redis(), store.clone(), Arc::new(clock.clone()));
    let g = flow(&ws, "hash-2", &clock);
    down.insert_flow(&g)
        .await
        .expect("falls back to the database");
    assert_eq!(down.take_flow("hash-2").await.expect("take"), Some(g));
    assert_eq!(down.take_flow("hash-2").await.expect("take"), None);
    t.teardown().await;
}

#[tokio::test]
async fn the_lock_excludes_others_is_extended_and_released_only_by_its_owner() {
    let Some(redis) = redis().await else { return };
    let locks = RedisLocks::new(redis.clone());
    let ttl = Duration::from_millis(300);
    let held = match locks.try_lock("oauth:refresh:ws:user:google:u1", ttl).await {
        LockAttempt::Acquired(g) => g,
        _ => panic!("a free lock is acquired"),
    };
    assert!(matches!(
        locks.try_lock("oauth:refresh:ws:user:google:u1", ttl).await,
        LockAttempt::Busy
    ));
    // Held well past its TTL: the extension keeps it.
    tokio::time::sleep(ttl * 3).await;
    assert!(matches!(
        locks.try_lock("oauth:refresh:ws:user:google:u1", ttl).await,
        LockAttempt::Busy
    ));
    drop(held);
    assert!(
        eventually(|| async {
            matches!(
                locks.try_lock("oauth:refresh:ws:user:google:u1", ttl).await,
                LockAttempt::Acquired(_)
            )
        })
        .await,
        "released on drop"
    );
    // Redis down: the caller is told to go on to the row lease.
    let down = RedisLocks::new(dead_redis());
    assert!(matches!(
        down.try_lock("oauth:refresh:x", ttl).await,
        LockAttempt::Unavailable
    ));
}

#[tokio::test]
async fn the_shared_limit_holds_across_replicas_and_falls_back_in_process() {
    let Some(redis) = redis().await else { return };
    let clock: Arc<dyn Clock> = Arc::new(relay_core::SystemClock);
    let replicas: Vec<_> = (0..3)
        .map(|_| {
            RedisRateLimiter::new(
                redis.clone(),
                Arc::new(LocalRateLimiter::new(clock.clone())),
            )
        })
        .collect();
    let mut allowed = 0;
    let mut last = None;
    for i in 0..30 {
        let d = replicas[i % 3].check("key_shared", 10).await;
        if d.allowed {
            allowed += 1;
        } else {
            last = Some(d);
        }
    }
    assert_eq!(allowed, 10, "10 per minute in total, not per replica");
    let refused = last.expect("refusals");
    assert_eq!(refused.remaining, 0);
    assert!(refused.retry_after > Duration::ZERO && refused.retry_after <= Duration::from_secs(6));
    assert!(
        replicas[0].check("key_other", 10).await.allowed,
        "keys are apart"
    );

    // A busy key takes slices of its allowance: still never more than the limit in total.
    let mut allowed = 0;
    let started = std::time::Instant::now();
    for i in 0..12_000 {
        if replicas[i % 3].check("key_busy", 6_000).await.allowed {
            allowed += 1;
        }
    }
    // The bucket refills at 100 per second while the loop runs.
    let refilled = (started.elapsed().as_secs_f64() * 100.0).ceil() as usize;
    assert!(
        allowed <= 6_000 + refilled,
        "never above the limit: {allowed} (refilled {refilled})"
    );
    assert!(allowed >= 5_900, "slices lose at most a little: {allowed}");

    let down = RedisRateLimiter::new(dead_redis(), Arc::new(LocalRateLimiter::new(clock)));
    let allowed = {
        let mut n = 0;
        for _ in 0..5 {
            if down.check("key_x", 3).await.allowed {
                n += 1;
            }
        }
        n
    };
    assert_eq!(allowed, 3, "the in-process limiter takes over");
}

/// A burst on a busy key finds its slice empty all at once: one request refills it while the
/// others wait and spend what it brought, so the allowance debited from the shared bucket stays
/// close to what the burst spends (before, every request of the burst ran the script and
/// debited a slice of its own, and a burst well under the limit was partly refused).
#[tokio::test]
async fn a_burst_refills_a_slice_once_instead_of_once_per_request() {
    let Some(redis) = redis().await else { return };
    let clock: Arc<dyn Clock> = Arc::new(relay_core::SystemClock);
    let limiter = Arc::new(RedisRateLimiter::new(
        redis.clone(),
        Arc::new(LocalRateLimiter::new(clock.clone())),
    ));
    // Another replica: its first check asks Redis, so it reports the shared bucket.
    let other = RedisRateLimiter::new(redis, Arc::new(LocalRateLimiter::new(clock)));
    // Slices of 64; the bucket refills about 1,067 per second.
    const LIMIT: u32 = 64_000;
    const BURST: usize = 1_000;
    let barrier = Arc::new(tokio::sync::Barrier::new(BURST));
    let requests: Vec<_> = (0..BURST)
        .map(|_| {
            let (limiter, barrier) = (limiter.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                limiter.check("key_burst", LIMIT).await
            })
        })
        .collect();
    let mut allowed = 0;
    for r in requests {
        if r.await.expect("request").allowed {
            allowed += 1;
        }
    }
    assert_eq!(allowed, BURST, "a burst far under the limit is allowed");
    let shared = other.check("key_burst", LIMIT).await;
    assert!(
        shared.allowed && shared.remaining as usize >= LIMIT as usize - BURST - 3 * 64,
        "the burst debited far more than it spent: {} left of {LIMIT} in the shared bucket",
        shared.remaining
    );
}

/// A loopback TCP proxy in front of the test Redis that can be cut (its connections closed,
/// new ones closed at once) and restored: an outage after which Redis still holds its data,
/// as after a network partition (a restarted Redis without persistence would have lost the
/// entries, which proves nothing).
struct CuttableProxy {
    addr: std::net::SocketAddr,
    cut: Arc<tokio::sync::watch::Sender<bool>>,
}

impl CuttableProxy {
    async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let cut = Arc::new(tokio::sync::watch::Sender::new(false));
        let is_cut = cut.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut cut_now = is_cut.subscribe();
                if *cut_now.borrow() {
                    continue; // dropped: closed at once
                }
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut_now.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Self { addr, cut }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

/// `host:port` of the test Redis.
fn redis_host_port() -> String {
    let url = redis_url();
    let rest = url.trim_start_matches("redis://");
    let authority = rest.split('/').next().unwrap_or(rest);
    authority.rsplit('@').next().unwrap_or(authority).to_owned()
}

/// A replica that cannot reach Redis when a connection is deleted or refreshed leaves the old
/// entry in Redis (the other replicas would keep serving it): it deletes the entry as soon as
/// Redis answers again.
#[tokio::test]
async fn entries_redis_could_not_drop_during_an_outage_are_dropped_when_it_is_back() {
    let Some(direct) = redis().await else { return };
    let proxy = CuttableProxy::start(redis_host_port()).await;
    let mut settings = RedisSettings::new(format!("redis://{}", proxy.addr));
    settings.key_prefix = redis_prefix_of(&direct);
    settings.command_timeout = Duration::from_millis(300);
    settings.cool_down = Duration::from_millis(100);
    let through_proxy = Redis::open(&settings).expect("valid url");
    let clock = ManualClock::new(Timestamp(1_750_000_000_000));
    let c: Arc<dyn Clock> = Arc::new(clock.clone());
    // No in-process tiers: every read below is Redis's answer.
    let replica = RedisCache::new(through_proxy, c.clone(), 0, Duration::from_secs(1));
    let other_replica = RedisCache::new(direct, c, 0, Duration::from_secs(1));
    let (deleted, refreshed) = (ConnectionId::generate(), ConnectionId::generate());
    replica.put(entry(&deleted, 1, 1, &clock)).await;
    replica.put(entry(&refreshed, 1, 1, &clock)).await;
    assert!(other_replica.get(&deleted).await.is_some());
    assert!(other_replica.get(&refreshed).await.is_some());

    proxy.set_cut(true);
    replica.invalidate(&deleted).await; // the connection was deleted
    replica.put(entry(&refreshed, 2, 2, &clock)).await; // and the other one refreshed
    assert_eq!(
        other_replica.get(&deleted).await.map(|e| e.version),
        Some(1),
        "during the outage Redis still holds the deleted connection's entry"
    );
    assert_eq!(
        other_replica.get(&refreshed).await.map(|e| e.version),
        Some(1),
        "and the refreshed one's old token"
    );

    proxy.set_cut(false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let left = (
            other_replica.get(&deleted).await.is_some(),
            other_replica.get(&refreshed).await.is_some(),
        );
        if left == (false, false) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Redis still holds (deleted, refreshed) entries {left:?} after it came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_cache_without_redis_misses_instead_of_failing() {
    let clock = ManualClock::new(Timestamp(1_750_000_000_000));
    let cache = RedisCache::new(
        dead_redis(),
        Arc::new(clock.clone()),
        100,
        Duration::from_secs(60),
    );
    let id = ConnectionId::generate();
    cache.put(entry(&id, 1, 1, &clock)).await;
    assert!(
        cache.get(&id).await.is_none(),
        "a miss sends the reader to the database"
    );
    cache.invalidate(&id).await;
}
