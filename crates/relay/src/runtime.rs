//! Wiring: open the database, check the keys, build the services, and serve.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use relay_core::connect::ConnectService;
use relay_core::coordination::{LocalRateLimiter, RateLimiter};
use relay_core::ports::ConnectionCache;
use relay_core::refresh::{RefreshPolicy, TokenService};
use relay_core::refresher::RefresherSettings;
use relay_core::{Clock, SystemClock};
use relay_providers::Catalog;
use relay_server::auth::ApiKeys;
use relay_server::rate_limit::RateLimits;
use relay_server::state::ReadinessCheck;
use relay_server::{AppParts, AppState, ServerSettings};
use relay_store::redis::{
    Redis, RedisCache, RedisFlows, RedisLocks, RedisRateLimiter, RedisSettings,
};
use relay_store::{Database, MemoryCache};
use tracing::info;
use url::Url;

use crate::config::Config;
use crate::keys;

pub fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // Logging may already be initialised (tests); that is fine.
    let _ = if format == "json" {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.try_init()
    };
}

/// Opens the configured database and brings its schema up to date.
pub async fn open_database(config: &Config) -> anyhow::Result<Database> {
    if config.embedded {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
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
    let redis = match &config.redis.url {
        Some(url) => {
            let settings = RedisSettings {
                url: url.clone(),
                key_prefix: config.redis.key_prefix.clone(),
                command_timeout: Duration::from_millis(config.redis.command_timeout_ms.max(1)),
                cool_down: Duration::from_secs(1),
            };
            let redis = Redis::open(&settings).context("REDIS_URL is not a valid Redis URL")?;
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
    let mut tokens = TokenService::new(
        store.clone(),
        cache,
        catalog.clone(),
        keyring.clone(),
        clock.clone(),
        policy,
    );
    if let Some(r) = &redis {
        tokens = tokens.with_locks(Arc::new(RedisLocks::new(r.clone())));
    }
    let tokens = Arc::new(tokens);

    let listener = tokio::net::TcpListener::bind(config.listen_addr()?)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let local = listener.local_addr().context("reading the bound address")?;
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
    let readiness: Vec<Arc<dyn ReadinessCheck>> = redis
        .iter()
        .map(|r| Arc::new(RedisReadiness(r.clone())) as Arc<dyn ReadinessCheck>)
        .collect();
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
    for info in catalog.infos() {
        relay_core::events::register(&info.name);
    }
    let state = AppState::new(AppParts {
        tokens: tokens.clone(),
        connect,
        store: store.clone(),
        catalog,
        api_keys: Arc::new(ApiKeys::new(
            store.clone(),
            clock.clone(),
            Duration::from_secs(config.cache.api_key_ttl_secs),
        )),
        clock: clock.clone(),
        settings: Arc::new(ServerSettings {
            return_to_allow,
            primary_key_id,
        }),
        metrics,
        rate_limits: Arc::new(RateLimits {
            limiter,
            default_per_minute: config.rate_limit.per_minute,
        }),
        api_key_admin: db.api_key_admin(),
        readiness,
    });

    let janitor = tokio::spawn(purge_expired_flows(store.clone(), clock.clone()));
    if keyring.key_ids().len() > 1 {
        // Previous keys are configured: a rotation is under way. Re-seal in the background.
        let (store, keyring) = (store.clone(), keyring.clone());
        tokio::spawn(async move {
            if let Err(e) = relay_core::rotation::reseal_all(store.as_ref(), &keyring).await {
                tracing::warn!(error = %e, "background re-seal failed; `relay vault reseal` retries it");
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
    relay_server::serve(listener, state, shutdown_signal())
        .await
        .context("serving HTTP")?;
    // Stop claiming; refreshes in flight finish and save (within the grace period), so a
    // rotated refresh token is never lost to a shutdown.
    let _ = stop_refresher.send(true);
    if let Some(task) = refresher {
        let grace = Duration::from_secs(config.refresher.shutdown_grace_secs);
        if tokio::time::timeout(grace, task).await.is_err() {
            tracing::warn!(
                ?grace,
                "background refreshes did not finish within the grace period; their leases expire on their own"
            );
        }
    }
    janitor.abort();
    db.close().await;
    info!("relay stopped");
    Ok(())
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

/// `/ready` reports Redis when it is configured.
struct RedisReadiness(Redis);

#[async_trait::async_trait]
impl ReadinessCheck for RedisReadiness {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn check(&self, budget: Duration) -> Result<(), String> {
        self.0.ping(budget).await.map_err(|e| match e {
            relay_store::redis::RedisError::Timeout => {
                format!("redis did not answer within {} s", budget.as_secs())
            }
            _ => "redis unavailable".to_owned(),
        })
    }
}
