//! Wiring: open the database, check the keys, build the services, and serve.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use relay_core::actions::{ActionService, ActionSettings};
use relay_core::audit::{AuditLog, AuditSink, GroupCommit};
use relay_core::connect::ConnectService;
use relay_core::coordination::{LocalRateLimiter, RateLimiter};
use relay_core::ports::ConnectionCache;
use relay_core::refresh::{RefreshPolicy, TokenService};
use relay_core::refresher::RefresherSettings;
use relay_core::{Clock, SystemClock};
use relay_providers::Catalog;
use relay_providers::actions::{
    ActionRetryPolicy, Cidr, ExecutorSettings, ProviderActions, WebhookSettings,
};
use relay_server::auth::ApiKeys;
use relay_server::rate_limit::RateLimits;
use relay_server::readiness::{AuditWriterCheck, CHECK_TIMEOUT, CheckResult, ReadinessCheck};
use relay_server::{AppParts, AppState, ServerSettings};
use relay_store::redis::{
    Redis, RedisApiKeyChanges, RedisCache, RedisFlows, RedisLocks, RedisRateLimiter, RedisSettings,
};
use relay_store::{Database, MemoryCache};
use tracing::info;
use url::Url;

use crate::config::Config;
use crate::keys;

/// A runtime for background work next to the serving one, shut down without waiting when
/// dropped (dropping a runtime inside another one would panic).
struct BackgroundRuntime(Option<tokio::runtime::Runtime>);

impl BackgroundRuntime {
    fn start(name: &str) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(name)
            .enable_all()
            .build()
            .with_context(|| format!("starting the {name} runtime"))?;
        Ok(Self(Some(runtime)))
    }

    fn handle(&self) -> tokio::runtime::Handle {
        match &self.0 {
            Some(runtime) => runtime.handle().clone(),
            None => tokio::runtime::Handle::current(),
        }
    }
}

impl Drop for BackgroundRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Opens the configured database and brings its schema up to date.
/// The per-process API key cache; with Redis, revocations and changes made on any replica (or
/// by `relay api-key revoke`) are announced to every replica, which drops the key at once.
fn api_keys(
    config: &Config,
    store: Arc<dyn relay_core::ports::Store>,
    clock: Arc<dyn Clock>,
    redis: Option<&Redis>,
) -> Arc<ApiKeys> {
    let keys = ApiKeys::new(
        store,
        clock,
        Duration::from_secs(config.cache.api_key_ttl_secs),
    );
    let Some(redis) = redis else {
        return Arc::new(keys);
    };
    let changes = RedisApiKeyChanges::new(redis.clone());
    let keys = Arc::new(keys.with_announcer(Arc::new(changes.clone())));
    let weak = Arc::downgrade(&keys);
    changes.listen(move |id| match weak.upgrade() {
        Some(keys) => {
            keys.forget(id);
            true
        }
        None => false,
    });
    keys
}

/// Tells running replicas that key `id` was revoked by the command line, when Redis is
/// configured (best effort: a replica that misses it refuses the key within
/// `[cache] api_key_ttl_secs`).
pub async fn announce_api_key_change(config: &Config, id: &str) {
    use relay_core::coordination::ApiKeyChanges;
    let Some(url) = &config.redis.url else {
        return;
    };
    let settings = RedisSettings {
        url: url.clone(),
        key_prefix: config.redis.key_prefix.clone(),
        command_timeout: Duration::from_millis(config.redis.command_timeout_ms.max(1)),
        cool_down: Duration::from_secs(1),
    };
    match Redis::open(&settings) {
        Ok(redis) => RedisApiKeyChanges::new(redis).announce(id).await,
        Err(e) => {
            tracing::warn!(error = %e, "cannot tell the replicas about the revocation; they refuse the key within the key cache's time-to-live")
        }
    }
}

pub async fn open_database(config: &Config) -> anyhow::Result<Database> {
    if config.embedded {
        crate::file_modes::create_private_dir(&config.data_dir).with_context(|| {
            format!("creating the data directory {}", config.data_dir.display())
        })?;
    }
    let db = relay_store::connect(&config.database_url)
        .await
        .context("opening the database")?;
    db.migrate().await.context("running database migrations")?;
    Ok(db)
}

pub async fn serve(config: Config) -> anyhow::Result<()> {
    relay_providers::install_crypto_provider();
    let db = open_database(&config).await?;
    let store = db.store();
    let loaded = keys::load(&config, store.as_ref()).await?;
    if let Some(path) = &loaded.generated_at {
        tracing::warn!(
            path = %path.display(),
            "generated a new encryption key (OAUTH_ENCRYPTION_KEY was not set); back this file up: without it the stored tokens cannot be read"
        );
    }
    let audit_key = keys::install_audit_key(&db, &loaded).await?;
    crate::file_modes::warn_if_open_to_others(&config);
    let keyring = Arc::new(loaded.keyring);
    let primary_key_id = keyring.primary_id().to_hex();
    info!(key_id = %primary_key_id, database = db.kind().as_str(), "encryption key loaded");

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let http = relay_providers::http_client(Duration::from_millis(
        config.refresh.provider_timeout_ms.max(1000),
    ))
    .context("building the HTTP client")?;
    let catalog = Arc::new(
        Catalog::new(http, config.providers.clone()).context("invalid provider configuration")?,
    );
    let redis_settings = config.redis.url.as_ref().map(|url| RedisSettings {
        url: url.clone(),
        key_prefix: config.redis.key_prefix.clone(),
        command_timeout: Duration::from_millis(config.redis.command_timeout_ms.max(1)),
        cool_down: Duration::from_secs(1),
    });
    let redis = match &redis_settings {
        Some(settings) => {
            let redis = Redis::open(settings).context("REDIS_URL is not a valid Redis URL")?;
            info!(key_prefix = %config.redis.key_prefix, "redis configured: shared cache, flows, refresh lock and rate limits");
            Some(redis)
        }
        None => None,
    };
    let cache: Arc<dyn ConnectionCache> = match &redis {
        Some(r) => RedisCache::new(
            r.clone(),
            clock.clone(),
            config.redis.local_capacity,
            Duration::from_secs(config.redis.local_ttl_secs.max(1)),
        ),
        None => Arc::new(MemoryCache::new(
            config.cache.capacity,
            Duration::from_secs(config.cache.ttl_secs),
        )),
    };
    let r = &config.refresh;
    let policy = RefreshPolicy {
        min_remaining: Duration::from_secs(r.min_remaining_secs),
        fraction: r.fraction,
        lease: Duration::from_secs(r.lease_secs),
        provider_timeout: Duration::from_millis(r.provider_timeout_ms),
        attempts: r.attempts.max(1),
        backoff_base: Duration::from_millis(r.backoff_base_ms),
        backoff_max: Duration::from_millis(r.backoff_max_ms),
        lock_poll: Duration::from_millis(50),
        jitter_fraction: config.refresher.jitter_fraction,
        keepalive: (config.refresher.keepalive_days > 0)
            .then(|| Duration::from_secs(config.refresher.keepalive_days * 86_400)),
        lock_ttl: Duration::from_millis(config.redis.lock_ttl_ms.max(100)),
    };
    let audit_log = AuditLog::spawn(
        db.audit_store(),
        GroupCommit {
            max_batch: config.audit.max_batch,
            queue: config.audit.queue,
            token_reads: config.audit.token_reads,
            access_flush: Duration::from_millis(config.audit.access_flush_ms),
            fail_after: Duration::from_secs(config.audit.fail_after_secs),
        },
    );
    if config.audit.token_reads == relay_core::audit::TokenReads::Off {
        tracing::warn!(
            "[audit] token_reads = \"off\": token reads leave no audit record (access class)"
        );
    }
    let audit: Arc<dyn AuditSink> = Arc::new(audit_log.clone());
    // The first start with keyed audit seals the chains an older Relay wrote.
    let sealed = relay_core::audit::seal_legacy_chains(
        db.audit_store().as_ref(),
        audit.as_ref(),
        clock.now(),
    )
    .await
    .context("sealing the audit chains written before keyed audit")?;
    if sealed > 0 {
        tracing::warn!(
            chains = sealed,
            "keyed audit begins: sealed the existing audit chains"
        );
    }
    let mut tokens = TokenService::new(
        store.clone(),
        cache,
        catalog.clone(),
        keyring.clone(),
        clock.clone(),
        policy,
    )
    .with_audit(audit.clone());
    // Refreshes started by reads run on a runtime of their own: one that a burst of requests
    // cannot queue behind, and on which a refresh finishes even if its request goes away
    // (see TokenService::run_refreshes_on). Requests wait for them, so graceful shutdown
    // does too.
    let refresh_runtime = BackgroundRuntime::start("relay-refresh")?;
    if let Some(settings) = &redis_settings {
        // The refresh lock has a Redis connection of its own, made on the refresh runtime, so
        // that its driver task runs there too: on the shared connection, whose driver runs on
        // the serving runtime, taking the lock waited behind every request of a burst.
        let lock_redis = Redis::open(settings).context("REDIS_URL is not a valid Redis URL")?;
        let connecting = lock_redis.clone();
        refresh_runtime.handle().spawn(async move {
            // The connection is lazy: this makes it on the refresh runtime (a failure here is
            // retried by the first lock; Redis being down never stops Relay).
            let _ = connecting.ping(Duration::from_secs(2)).await;
        });
        tokens = tokens.with_locks(Arc::new(RedisLocks::new(lock_redis)));
    }
    let tokens = Arc::new(tokens);
    tokens.run_refreshes_on(refresh_runtime.handle());

    let listener = tokio::net::TcpListener::bind(config.listen_addr()?)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let local = listener.local_addr().context("reading the bound address")?;
    let ops_listener = match config.server.metrics_listen_addr()? {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding server.metrics_listen {addr}"))?,
        ),
        None => None,
    };
    let public_base_url = config
        .public_base_url
        .clone()
        .unwrap_or_else(|| format!("http://{local}"));
    Url::parse(&public_base_url).context("RELAY_PUBLIC_BASE_URL must be an absolute URL")?;
    let mut connect = ConnectService::new(
        store.clone(),
        catalog.clone(),
        tokens.clone(),
        keyring.clone(),
        clock.clone(),
        &public_base_url,
        Duration::from_secs(config.oauth.flow_ttl_secs),
    );
    if let Some(r) = &redis {
        connect = connect.with_flows(Arc::new(RedisFlows::new(
            r.clone(),
            store.clone(),
            clock.clone(),
        )));
    }
    let connect = Arc::new(connect);
    let local_limits = Arc::new(LocalRateLimiter::new(clock.clone()));
    let limiter: Arc<dyn RateLimiter> = match &redis {
        Some(r) => Arc::new(RedisRateLimiter::new(r.clone(), local_limits)),
        None => local_limits,
    };
    let readiness: Vec<Arc<dyn ReadinessCheck>> = vec![Arc::new(RedisReadiness(redis.clone()))];
    let return_to_allow = config
        .oauth
        .return_to_allow
        .iter()
        .map(|u| {
            Url::parse(u)
                .with_context(|| format!("oauth.return_to_allow: {u:?} is not an absolute URL"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    let metrics = relay_server::metrics_handle();
    let actions = Arc::new(
        build_actions(
            &config,
            &db,
            catalog.clone(),
            tokens.clone(),
            keyring.clone(),
            clock.clone(),
        )?
        .with_audit(audit.clone()),
    );
    for name in &config.mcp.direct_execute {
        if !actions.descriptors().iter().any(|d| d.name == name) {
            bail!("mcp.direct_execute: {name:?} is not an action (see GET /actions)");
        }
    }
    relay_server::mcp::describe_metrics();
    let provider_names: Vec<_> = catalog.infos().into_iter().map(|i| i.name).collect();
    relay_server::telemetry::describe(&provider_names);
    relay_server::telemetry::describe_scale_out();
    audit_log.export_capacity();
    let action_series: Vec<(&str, &str)> = actions
        .descriptors()
        .iter()
        .map(|d| (d.family.as_str(), d.name))
        .collect();
    relay_server::telemetry::describe_actions(&action_series, &actions.executor().breakers());
    let state = AppState::new(AppParts {
        tokens: tokens.clone(),
        connect,
        actions: actions.clone(),
        store: store.clone(),
        catalog,
        api_keys: api_keys(&config, store.clone(), clock.clone(), redis.as_ref()),
        clock: clock.clone(),
        settings: Arc::new(ServerSettings {
            return_to_allow,
            primary_key_id,
            cors_allow_origins: config.cors_allow_origins.clone(),
            connection_limits: config.server.connection_limits(),
            metrics_listen: ops_listener.is_some(),
            metrics_token: config
                .server
                .metrics_token
                .clone()
                .map(secrecy::SecretString::from),
            mcp: relay_server::mcp::McpSettings {
                direct_execute: config.mcp.direct_execute.clone(),
            },
        }),
        metrics,
        audit,
        audit_store: db.audit_store(),
        audit_key,
        readiness: {
            let mut checks = readiness;
            checks.push(Arc::new(AuditWriterCheck(audit_log.clone())) as _);
            checks
        },
        rate_limits: Arc::new(RateLimits {
            limiter,
            default_per_minute: config.rate_limit.per_minute,
        }),
        api_key_admin: db.api_key_admin(),
    });

    let janitor = tokio::spawn(purge_expired_flows(store.clone(), clock.clone()));
    let preview_janitor = tokio::spawn(purge_expired_previews(actions, clock.clone()));
    let census = tokio::spawn(count_connections(db.census(), provider_names));
    let anchors = (config.audit.anchor_interval_secs > 0).then(|| {
        tokio::spawn(log_audit_anchors(
            db.audit_store(),
            Duration::from_secs(config.audit.anchor_interval_secs),
        ))
    });
    let readiness = tokio::spawn(relay_server::routes::health::watch_readiness(
        state.clone(),
        Duration::from_secs(15),
    ));
    if keyring.key_ids().len() > 1 {
        // Previous keys are configured: a rotation is under way. Re-seal in the background.
        let (store, keyring, audit) = (store.clone(), keyring.clone(), state.audit.clone());
        tokio::spawn(async move {
            match relay_core::rotation::reseal_all(store.as_ref(), &keyring).await {
                Ok(r) => {
                    let event = relay_core::audit::AuditEvent::new(
                        relay_core::WorkspaceId::from_stored(
                            relay_core::audit::SYSTEM_WORKSPACE.to_owned(),
                        ),
                        relay_core::audit::AuditAction::VaultResealed,
                        SystemClock.now(),
                    )
                    .detail(format!(
                        "background: primary key {}: resealed {}, changed meanwhile {}, unreadable {}",
                        keyring.primary_id(),
                        r.resealed,
                        r.changed_meanwhile,
                        r.unreadable
                    ));
                    if let Err(e) = audit.record(event).await {
                        tracing::error!(error = %e, "the background re-seal could not be audited");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "background re-seal failed; `relay vault reseal` retries it")
                }
            }
        });
    }
    info!(
        database = db.kind().as_str(),
        public_base_url = %public_base_url,
        "relay listening on http://{local}"
    );
    let (stop_refresher, stop_rx) = tokio::sync::watch::channel(false);
    let refresher = config.refresher.enabled.then(|| {
        tokio::spawn(relay_core::refresher::run(
            tokens.clone(),
            db.due_connections(),
            clock.clone(),
            RefresherSettings {
                interval: Duration::from_millis(config.refresher.interval_ms.max(100)),
                batch: config.refresher.batch,
            },
            stop_rx,
        ))
    });
    // After SIGTERM, requests in flight (and the refreshes they wait on) get the grace period;
    // then the process exits anyway. The background refresher stops claiming at once; its
    // refreshes in flight finish and save, so a rotated refresh token is never lost.
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    let (stopping_tx, mut stopping) = tokio::sync::watch::channel(false);
    if let Some(ops) = ops_listener {
        let addr = ops.local_addr().context("reading the metrics address")?;
        info!("metrics and readiness details served on http://{addr}");
        let mut stop = stopping_tx.subscribe();
        let router = relay_server::ops_router(state.clone());
        let limits = state.settings.connection_limits;
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = relay_server::serve_router(ops, router, limits, shutdown).await {
                tracing::error!(error = %e, "the metrics listener failed");
            }
        });
    }
    let shutdown = async move {
        shutdown_signal().await;
        let _ = stopping_tx.send(true);
        let _ = stop_refresher.send(true);
    };
    let grace_over = async move {
        let _ = stopping.wait_for(|s| *s).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        served = relay_server::serve(listener, state, shutdown) => served.context("serving HTTP")?,
        () = grace_over => {
            // Closing the pool would wait for the requests still running: exit now instead;
            // their connections close with the process.
            tracing::warn!(
                grace_secs = grace.as_secs(),
                "shutdown grace period over; exiting with requests still in flight"
            );
            flush_audit(&audit_log).await;
            return Ok(());
        }
    }
    if let Some(task) = refresher {
        let grace = Duration::from_secs(config.refresher.shutdown_grace_secs);
        if tokio::time::timeout(grace, task).await.is_err() {
            tracing::warn!(
                ?grace,
                "background refreshes did not finish within the grace period; their leases expire on their own"
            );
        }
    }
    // Every queued token-read record is stored before the process exits.
    flush_audit(&audit_log).await;
    janitor.abort();
    preview_janitor.abort();
    census.abort();
    if let Some(anchors) = anchors {
        anchors.abort();
    }
    readiness.abort();
    db.close().await;
    info!("relay stopped");
    Ok(())
}

/// Stores every audit record queued so far (buffered token reads), waiting at most 10 s.
async fn flush_audit(audit_log: &AuditLog) {
    match tokio::time::timeout(Duration::from_secs(10), audit_log.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(error = %e, "queued audit records could not be stored at shutdown")
        }
        Err(_) => tracing::error!("queued audit records were not stored within 10 s of shutdown"),
    }
}

/// Keeps the `connections{provider,status}` gauge current: one grouped count every 30 s,
/// whatever the request rate.
async fn count_connections(
    census: Arc<dyn relay_core::census::ConnectionCensus>,
    providers: Vec<relay_core::ProviderName>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tick.tick().await;
        match census.count_connections().await {
            Ok(counts) => relay_server::telemetry::record_census(&providers, &counts),
            Err(e) => tracing::warn!(error = %e, "counting connections failed"),
        }
    }
}

/// Logs every workspace's audit head (`audit anchor`, with `workspace_id`, `seq`, `hash`) at
/// start and then every `interval`: a log collector outside the database keeps them, and
/// `relay audit verify --anchors` proves the chains still reach them. The first tick fires at
/// once, so every start leaves an anchor too.
async fn log_audit_anchors(store: Arc<dyn relay_core::audit::AuditStore>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match store.audit_heads().await {
            Ok(heads) => {
                for (ws, head) in heads {
                    info!(workspace_id = %ws, seq = head.seq, hash = %head.hash, "audit anchor");
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the audit heads for anchors failed"),
        }
    }
}

/// Expired connect flows are useless; keep the table small.
async fn purge_expired_flows(store: Arc<dyn relay_core::ports::Store>, clock: Arc<dyn Clock>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        if let Err(e) = store.purge_expired_flows(clock.now()).await {
            tracing::warn!(error = %e, "purging expired connect flows failed");
        }
    }
}

/// The action service and its executor, from `[actions]`.
fn build_actions(
    config: &Config,
    db: &Database,
    catalog: Arc<Catalog>,
    tokens: Arc<TokenService>,
    keyring: Arc<relay_core::vault::Keyring>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<ActionService> {
    let a = &config.actions;
    let allow = a
        .webhook
        .allow_hosts
        .iter()
        .map(|h| Cidr::parse(h).map_err(|e| anyhow::anyhow!("actions.webhook.allow_hosts: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let executor = ProviderActions::new(
        catalog,
        clock.clone(),
        ExecutorSettings {
            drive_max_bytes: a.drive_max_bytes,
            drive_max_output_bytes: a.drive_max_output_bytes,
            drive_base_url: a.drive_base_url.clone(),
            request_timeout: Duration::from_millis(a.request_timeout_ms.max(100)),
            retry: ActionRetryPolicy {
                max_retries: a.retry_attempts,
                base: Duration::from_millis(a.retry_base_ms),
                max: Duration::from_millis(a.retry_max_ms.max(a.retry_base_ms)),
                max_retry_after: Duration::from_secs(30),
            },
            breaker_failures: a.breaker_failures,
            breaker_open_for: Duration::from_secs(a.breaker_open_secs),
            webhook: WebhookSettings {
                allow,
                connect_timeout: Duration::from_millis(a.webhook.connect_timeout_ms.max(100)),
                timeout: Duration::from_millis(a.webhook.timeout_ms.max(100)),
                max_response_bytes: a.webhook.max_response_bytes,
            },
        },
    )
    .context("building the action executor")?;
    Ok(ActionService::new(
        db.action_store(),
        tokens,
        Arc::new(executor),
        keyring,
        clock,
        ActionSettings {
            preview_ttl: Duration::from_secs(a.preview_ttl_secs),
            in_doubt_after: Duration::from_secs(a.in_doubt_after_secs),
            max_wait: Duration::from_secs(30),
            webhook_secret_grace: Duration::from_secs(a.webhook.secret_grace_secs),
        },
    ))
}

/// Expired previews are useless a day after expiry (replays of executed ones included).
async fn purge_expired_previews(actions: Arc<ActionService>, clock: Arc<dyn Clock>) {
    let mut tick = tokio::time::interval(Duration::from_secs(300));
    loop {
        tick.tick().await;
        let cutoff = clock.now().minus(Duration::from_secs(24 * 3600));
        if let Err(e) = actions.store().purge_expired_previews(cutoff).await {
            tracing::warn!(error = %e, "purging expired action previews failed");
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    info!("shutdown requested; finishing requests in flight");
}

/// `/ready` always reports Redis: `not configured` without it, else whether it answers.
struct RedisReadiness(Option<Redis>);

#[async_trait::async_trait]
impl ReadinessCheck for RedisReadiness {
    fn name(&self) -> String {
        "redis".to_owned()
    }

    /// Redis is not required: without it every path falls back to the database (cache,
    /// flows, locks) or the process (rate limits), so the replica keeps serving and `/ready`
    /// says `degraded` instead of taking it out of the load balancer.
    fn required(&self) -> bool {
        false
    }

    async fn check(&self) -> CheckResult {
        let Some(redis) = &self.0 else {
            return CheckResult {
                ok: true,
                detail: Some("not configured".to_owned()),
            };
        };
        match redis.ping(CHECK_TIMEOUT).await {
            Ok(()) => CheckResult::ok(),
            Err(relay_store::redis::RedisError::Timeout) => {
                CheckResult::failed("redis did not answer within 2 s")
            }
            Err(_) => CheckResult::failed("redis unavailable"),
        }
    }
}
