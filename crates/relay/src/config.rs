//! Configuration: `relay.toml` (from `--config`, `RELAY_CONFIG`, or `./relay.toml` when it
//! exists), with the environment overriding the file. Defaults give the embedded mode:
//! 127.0.0.1:8080, SQLite in `./relay-data`, an in-process cache.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use relay_core::ProviderName;
use relay_providers::{ProviderKind, ProviderSettings};
use secrecy::ExposeSecret;
use serde::Deserialize;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub public_base_url: Option<String>,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub oauth: OAuthConfig,
    #[serde(default)]
    pub refresh: RefreshConfig,
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderSettings>,
    #[serde(default)]
    pub actions: ActionsConfig,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub redis: RedisConfig,
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    #[serde(default)]
    pub refresher: RefresherConfig,
    #[serde(default)]
    pub mcp: McpConfig,
}

/// `[mcp]`: the MCP tool server (`/mcp`, `relay mcp`).
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields, default)]
pub struct McpConfig {
    /// Actions whose MCP tool executes at once instead of returning a preview (for example
    /// `["webhook.send"]`). Empty by default: every send and write is previewed first.
    pub direct_execute: Vec<String>,
}

/// `[actions]`: previews, provider API calls, Drive limits.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct ActionsConfig {
    /// How long a preview can be executed.
    pub preview_ttl_secs: u64,
    /// `drive.extract` refuses larger files.
    pub drive_max_bytes: u64,
    /// The most text `drive.extract` returns; longer text is cut and flagged `truncated`.
    pub drive_max_output_bytes: usize,
    /// Overrides the Drive API base URL (default: the provider's api_base_url, or
    /// https://www.googleapis.com for the Google preset).
    pub drive_base_url: Option<String>,
    /// Per-request timeout of provider API calls.
    pub request_timeout_ms: u64,
    /// Retries after the first attempt, for retryable failures only.
    pub retry_attempts: u32,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// Consecutive failures that open a provider's circuit breaker, and for how long.
    pub breaker_failures: u32,
    pub breaker_open_secs: u64,
    /// An execution claimed this long ago without a result is reported as in doubt.
    pub in_doubt_after_secs: u64,
    #[serde(default)]
    pub webhook: WebhookConfig,
}

impl Default for ActionsConfig {
    fn default() -> Self {
        Self {
            preview_ttl_secs: 900,
            drive_max_bytes: 10 * 1024 * 1024,
            drive_max_output_bytes: relay_providers::actions::DRIVE_MAX_OUTPUT_BYTES,
            drive_base_url: None,
            request_timeout_ms: 30_000,
            retry_attempts: 4,
            retry_base_ms: 1_000,
            retry_max_ms: 8_000,
            breaker_failures: 5,
            breaker_open_secs: 60,
            in_doubt_after_secs: 120,
            webhook: WebhookConfig::default(),
        }
    }
}

/// `[redis]`: a shared cache, flows, refresh lock and rate limits for several replicas.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `REDIS_URL` overrides it; unset means everything stays in process.
    pub url: Option<String>,
    /// Prefix of every key and channel (`REDIS_KEY_PREFIX` overrides it).
    pub key_prefix: String,
    pub command_timeout_ms: u64,
    /// Entries of the in-process tier in front of Redis (0 turns the tier off).
    pub local_capacity: u64,
    /// Backstop lifetime of an in-process entry; pub/sub invalidation is the real bound.
    pub local_ttl_secs: u64,
    /// Time-to-live of the refresh lock (extended while the provider call runs).
    pub lock_ttl_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            key_prefix: "relay:".into(),
            command_timeout_ms: 500,
            local_capacity: 100_000,
            local_ttl_secs: 30,
            lock_ttl_ms: 5_000,
        }
    }
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// After SIGTERM, how long requests (and the refreshes they wait on) may take to finish
    /// before the process exits anyway.
    pub shutdown_grace_secs: u64,
    /// Origins whose pages may call the API from a browser (CORS), e.g.
    /// `["https://studio.example.com"]`, or `["*"]`. Empty (the default): same origin only.
    /// Env `RELAY_CORS_ALLOW_ORIGINS` (comma-separated) replaces it.
    pub cors_allow_origins: Vec<String>,
    /// A new connection's first request head must arrive within this many seconds of the
    /// accept, and any request head within this many seconds of its first byte.
    pub header_read_timeout_secs: u64,
    /// A kept-alive connection may wait this many seconds for its next request. Keep it
    /// above the idle timeout of any proxy or load balancer in front of Relay (usually 60 s),
    /// or the proxy reuses connections Relay is closing and answers 502.
    pub keep_alive_timeout_secs: u64,
    /// A connection on which nothing moves for this long, with no request being handled, is
    /// closed (a client that stops reading its answer).
    pub idle_timeout_secs: u64,
    /// A request body must be received completely within this many seconds (else 408).
    pub body_read_timeout_secs: u64,
    /// Open client connections at most; more wait in the accept backlog.
    pub max_connections: usize,
    /// A separate address (e.g. `127.0.0.1:9090`) serving `/metrics` and the full `/ready`;
    /// the public listener then answers `/metrics` with 404 and `/ready` with its status only.
    pub metrics_listen: Option<String>,
    /// A bearer token required for `/metrics` (`RELAY_METRICS_TOKEN` overrides it); the
    /// public `/ready` then shows its details only to callers presenting it.
    pub metrics_token: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let limits = relay_server::ConnectionLimits::default();
        Self {
            shutdown_grace_secs: 30,
            cors_allow_origins: Vec::new(),
            header_read_timeout_secs: limits.header_read_timeout.as_secs(),
            keep_alive_timeout_secs: limits.keep_alive_timeout.as_secs(),
            idle_timeout_secs: limits.idle_timeout.as_secs(),
            body_read_timeout_secs: limits.body_read_timeout.as_secs(),
            max_connections: limits.max_connections,
            metrics_listen: None,
            metrics_token: None,
        }
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("shutdown_grace_secs", &self.shutdown_grace_secs)
            .field("header_read_timeout_secs", &self.header_read_timeout_secs)
            .field("keep_alive_timeout_secs", &self.keep_alive_timeout_secs)
            .field("idle_timeout_secs", &self.idle_timeout_secs)
            .field("body_read_timeout_secs", &self.body_read_timeout_secs)
            .field("max_connections", &self.max_connections)
            .field("metrics_listen", &self.metrics_listen)
            .field("cors_allow_origins", &self.cors_allow_origins)
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

impl ServerConfig {
    pub fn metrics_listen_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        self.metrics_listen
            .as_deref()
            .map(|a| {
                a.parse()
                    .with_context(|| format!("server.metrics_listen must be HOST:PORT, not {a:?}"))
            })
            .transpose()
    }

    pub fn connection_limits(&self) -> relay_server::ConnectionLimits {
        relay_server::ConnectionLimits {
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            keep_alive_timeout: Duration::from_secs(self.keep_alive_timeout_secs),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            body_read_timeout: Duration::from_secs(self.body_read_timeout_secs),
            max_connections: self.max_connections,
        }
    }
}

/// `[actions.webhook]`: where webhooks may go and how long they may take.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Addresses or CIDR blocks allowed although private/loopback/link-local.
    pub allow_hosts: Vec<String>,
    pub connect_timeout_ms: u64,
    pub timeout_ms: u64,
    pub max_response_bytes: usize,
    /// How long a rotated-out secret keeps signing.
    pub secret_grace_secs: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            allow_hosts: Vec::new(),
            connect_timeout_ms: 5_000,
            timeout_ms: 15_000,
            max_response_bytes: 64 * 1024,
            secret_grace_secs: 24 * 3600,
        }
    }
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Most audit records stored per group-commit transaction.
    pub max_batch: usize,
    /// Records that may wait for the writer; when it is full, token reads wait for room.
    pub queue: usize,
    /// How token reads are recorded: `buffered` (default: queued, stored within
    /// `access_flush_ms`), `durable` (stored before the token is returned) or `off`.
    pub token_reads: relay_core::audit::TokenReads,
    /// A buffered token-read record is stored at most this many milliseconds after the read.
    pub access_flush_ms: u64,
    /// After this many seconds in which the writer stored nothing, token reads fail closed
    /// with 503 `audit_unavailable` and `/ready` reports the audit writer failing.
    pub fail_after_secs: u64,
    /// Every this many seconds each workspace's chain head is logged (`audit anchor`), for an
    /// outside log to keep as anchors (`relay audit verify --anchors`); 0 turns it off.
    pub anchor_interval_secs: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            max_batch: 512,
            queue: 8192,
            token_reads: relay_core::audit::TokenReads::Buffered,
            access_flush_ms: 50,
            fail_after_secs: 10,
            anchor_interval_secs: 300,
        }
    }
}

/// `[rate_limit]`: requests per minute per API key, unless the key has its own.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub per_minute: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self { per_minute: 1200 }
    }
}

/// `[refresher]`: the background refresher.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct RefresherConfig {
    pub enabled: bool,
    /// Pause between steps that found less than a full batch.
    pub interval_ms: u64,
    pub batch: u32,
    /// Up to this fraction of a token's lifetime is taken off its scheduled refresh, at
    /// random, so that tokens issued together are refreshed apart.
    pub jitter_fraction: f64,
    /// Refresh at least this often even when the access token has no expiry, for providers
    /// whose refresh tokens die when unused (0 turns it off).
    pub keepalive_days: u64,
    /// On shutdown, how long refreshes in flight may take to finish and save.
    pub shutdown_grace_secs: u64,
}

impl Default for RefresherConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_ms: 5_000,
            batch: 50,
            jitter_fraction: 0.1,
            keepalive_days: 0,
            shutdown_grace_secs: 10,
        }
    }
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `pretty` (default) or `json`.
    pub format: Option<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct OAuthConfig {
    /// How long a started connect flow stays valid.
    pub flow_ttl_secs: u64,
    /// URLs a flow's `return_to` may point under.
    pub return_to_allow: Vec<String>,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self {
            flow_ttl_secs: 600,
            return_to_allow: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct RefreshConfig {
    /// A token is due when less than max(min_remaining_secs, fraction × lifetime) remains.
    pub min_remaining_secs: u64,
    pub fraction: f64,
    pub lease_secs: u64,
    pub provider_timeout_ms: u64,
    pub attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
}

impl Default for RefreshConfig {
    fn default() -> Self {
        Self {
            min_remaining_secs: 60,
            fraction: 0.10,
            lease_secs: 30,
            provider_timeout_ms: 10_000,
            attempts: 3,
            backoff_base_ms: 1_000,
            backoff_max_ms: 8_000,
        }
    }
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub capacity: u64,
    /// Bounds how stale another replica's view can be without Redis.
    pub ttl_secs: u64,
    pub api_key_ttl_secs: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            ttl_secs: 30,
            api_key_ttl_secs: 5,
        }
    }
}

/// The resolved configuration every subcommand uses.
#[derive(Debug)]
pub struct Config {
    pub listen: String,
    pub data_dir: PathBuf,
    pub database_url: String,
    /// True when the database is the default SQLite file in the data directory.
    pub embedded: bool,
    pub public_base_url: Option<String>,
    pub log_format: String,
    pub oauth: OAuthConfig,
    pub refresh: RefreshConfig,
    pub cache: CacheConfig,
    pub providers: BTreeMap<ProviderName, ProviderSettings>,
    pub actions: ActionsConfig,
    pub server: ServerConfig,
    /// `server.cors_allow_origins`, checked.
    pub cors_allow_origins: relay_server::cors::CorsOrigins,
    pub audit: AuditConfig,
    pub redis: RedisConfig,
    pub rate_limit: RateLimitConfig,
    pub refresher: RefresherConfig,
    pub mcp: McpConfig,
}

/// Reads one environment variable, treating empty as unset.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_bool(name: &str) -> anyhow::Result<Option<bool>> {
    match env(name) {
        None => Ok(None),
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(Some(true)),
            "0" | "false" | "no" | "off" => Ok(Some(false)),
            _ => bail!("{name} must be true or false, not {v:?}"),
        },
    }
}

impl Config {
    pub fn load(explicit: Option<&Path>) -> anyhow::Result<Self> {
        let path = explicit
            .map(Path::to_path_buf)
            .or_else(|| env("RELAY_CONFIG").map(PathBuf::from))
            .or_else(|| Some(PathBuf::from("relay.toml")).filter(|p| p.exists()));
        let file: FileConfig = match &path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading configuration file {}", p.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("parsing configuration file {}", p.display()))?
            }
            None => FileConfig::default(),
        };
        Self::resolve(file)
    }

    fn resolve(file: FileConfig) -> anyhow::Result<Self> {
        let listen = env("RELAY_LISTEN")
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let data_dir = env("RELAY_DATA_DIR")
            .map(PathBuf::from)
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("relay-data"));
        let (database_url, embedded) = match env("DATABASE_URL").or(file.database_url) {
            Some(url) => (url, false),
            None => (
                format!("sqlite://{}?mode=rwc", data_dir.join("relay.db").display()),
                true,
            ),
        };
        let mut providers = BTreeMap::new();
        for (name, settings) in file.providers {
            let parsed = ProviderName::parse(&name)
                .map_err(|e| anyhow::anyhow!("[providers.{name}]: {e}"))?;
            providers.insert(parsed, settings);
        }
        // GOOGLE_CLIENT_ID / MICROSOFT_CLIENT_ID enable those providers without a file.
        for (prefix, name, kind) in [
            ("GOOGLE", "google", ProviderKind::Google),
            ("MICROSOFT", "microsoft", ProviderKind::Microsoft),
        ] {
            let id = env(&format!("{prefix}_CLIENT_ID"));
            let secret = env(&format!("{prefix}_CLIENT_SECRET"));
            if id.is_none() && secret.is_none() {
                continue;
            }
            let key = ProviderName::parse(name).map_err(|e| anyhow::anyhow!("{e}"))?;
            let entry = providers.entry(key).or_insert_with(|| ProviderSettings {
                kind: Some(kind),
                ..Default::default()
            });
            if let Some(id) = id {
                entry.client_id = id;
            }
            if let Some(secret) = secret {
                entry.client_secret = Some(secret);
            }
            if kind == ProviderKind::Microsoft
                && let Some(t) = env("MICROSOFT_TENANT")
            {
                entry.tenant = Some(t);
            }
        }
        // GOOGLE_CREDENTIALS_FILE: the `google` provider from the console's OAuth client JSON.
        if let Some(path) = env("GOOGLE_CREDENTIALS_FILE") {
            let key = ProviderName::parse("google").map_err(|e| anyhow::anyhow!("{e}"))?;
            let entry = providers.entry(key).or_insert_with(|| ProviderSettings {
                kind: Some(ProviderKind::Google),
                ..Default::default()
            });
            entry.credentials_file = Some(PathBuf::from(path));
        }
        for (name, settings) in providers.iter_mut() {
            apply_credentials_file(name, settings)?;
        }
        for (name, settings) in providers.iter_mut() {
            let var = format!(
                "PROVIDER_{}_ENABLED",
                name.as_str().to_ascii_uppercase().replace('-', "_")
            );
            if let Some(v) = env_bool(&var)? {
                settings.enabled = Some(v);
            }
        }
        let log_format = env("RELAY_LOG_FORMAT")
            .or(file.log.format)
            .unwrap_or_else(|| "pretty".into());
        if !matches!(log_format.as_str(), "pretty" | "json") {
            bail!("RELAY_LOG_FORMAT must be pretty or json, not {log_format:?}");
        }
        if file.refresh.lease_secs * 1000 <= file.refresh.provider_timeout_ms {
            bail!("refresh.lease_secs must be longer than refresh.provider_timeout_ms");
        }
        for host in &file.actions.webhook.allow_hosts {
            relay_providers::actions::Cidr::parse(host)
                .map_err(|e| anyhow::anyhow!("actions.webhook.allow_hosts: {e}"))?;
        }
        if file.actions.drive_max_output_bytes == 0 {
            bail!("actions.drive_max_output_bytes must be positive");
        }
        if file.actions.preview_ttl_secs == 0 {
            bail!("actions.preview_ttl_secs must be positive");
        }
        if file.audit.max_batch == 0 || file.audit.queue == 0 {
            bail!("audit.max_batch and audit.queue must be positive");
        }
        if file.audit.access_flush_ms == 0 || file.audit.access_flush_ms > 60_000 {
            bail!("audit.access_flush_ms must be between 1 and 60000");
        }
        if file.audit.fail_after_secs == 0 {
            bail!("audit.fail_after_secs must be positive");
        }
        if !(0.0..=0.9).contains(&file.refresh.fraction) {
            bail!("refresh.fraction must be between 0 and 0.9");
        }
        let mut redis = file.redis;
        if let Some(url) = env("REDIS_URL") {
            redis.url = Some(url);
        }
        if let Some(prefix) = env("REDIS_KEY_PREFIX") {
            redis.key_prefix = prefix;
        }
        if file.rate_limit.per_minute == 0 {
            bail!("rate_limit.per_minute must be at least 1");
        }
        if !(0.0..=0.5).contains(&file.refresher.jitter_fraction) {
            bail!("refresher.jitter_fraction must be between 0 and 0.5");
        }
        let server = &file.server;
        if server.header_read_timeout_secs == 0
            || server.keep_alive_timeout_secs == 0
            || server.idle_timeout_secs == 0
            || server.body_read_timeout_secs == 0
        {
            bail!(
                "server.header_read_timeout_secs, keep_alive_timeout_secs, idle_timeout_secs and body_read_timeout_secs must be positive"
            );
        }
        if server.max_connections == 0 {
            bail!("server.max_connections must be at least 1");
        }
        server.metrics_listen_addr()?;
        let mut server = file.server;
        if let Some(token) = env("RELAY_METRICS_TOKEN") {
            server.metrics_token = Some(token);
        }
        if server
            .metrics_token
            .as_ref()
            .is_some_and(|t| t.trim().len() < 16)
        {
            bail!("server.metrics_token must be at least 16 characters");
        }
        if file.refresher.batch == 0 {
            bail!("refresher.batch must be at least 1");
        }
        if let Some(list) = env("RELAY_CORS_ALLOW_ORIGINS") {
            server.cors_allow_origins = list.split(',').map(|o| o.trim().to_owned()).collect();
        }
        let cors_allow_origins = relay_server::cors::CorsOrigins::parse(&server.cors_allow_origins)
            .map_err(|e| anyhow::anyhow!("server.{e}"))?;
        Ok(Self {
            redis,
            rate_limit: file.rate_limit,
            refresher: file.refresher,
            mcp: file.mcp,
            listen,
            data_dir,
            database_url,
            embedded,
            public_base_url: env("RELAY_PUBLIC_BASE_URL").or(file.public_base_url),
            log_format,
            oauth: file.oauth,
            refresh: file.refresh,
            cache: file.cache,
            providers,
            actions: file.actions,
            server,
            cors_allow_origins,
            audit: file.audit,
        })
    }

    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listen
            .parse()
            .with_context(|| format!("RELAY_LISTEN must be HOST:PORT, not {:?}", self.listen))
    }
}

/// Fills a Google provider's client id and secret (and, when the file has them, its
/// authorization and token endpoints) from its `credentials_file`. Values also set in the
/// table or the environment must agree with the file; endpoints set explicitly win. Errors
/// never show the secret.
fn apply_credentials_file(name: &ProviderName, s: &mut ProviderSettings) -> anyhow::Result<()> {
    let Some(path) = s.credentials_file.clone() else {
        return Ok(());
    };
    if s.kind != Some(ProviderKind::Google) {
        bail!(
            "[providers.{name}] credentials_file is Google's OAuth client JSON; it needs kind = \"google\""
        );
    }
    let creds = relay_providers::google_credentials::GoogleClientCredentials::load(&path)
        .map_err(|e| anyhow::anyhow!("[providers.{name}] credentials_file: {e}"))?;
    if s.client_id.is_empty() {
        s.client_id = creds.client_id;
    } else if s.client_id != creds.client_id {
        bail!(
            "[providers.{name}] client_id {:?} differs from the one in {} ({:?}); set one of them",
            s.client_id,
            path.display(),
            creds.client_id
        );
    }
    let secret = creds.client_secret.expose_secret();
    match &s.client_secret {
        None => s.client_secret = Some(secret.to_owned()),
        Some(given) if given == secret => {}
        Some(_) => bail!(
            "[providers.{name}] client_secret differs from the one in {} (neither is shown); set one of them",
            path.display()
        ),
    }
    if s.authorization_url.is_none() {
        s.authorization_url = creds.auth_uri;
    }
    if s.token_url.is_none() {
        s.token_url = creds.token_uri;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_provider_table_parses() {
        let text = r#"
            [providers.test]
            kind = "oidc"
            issuer = "http://127.0.0.1:9400"
            client_id = "relay-test"
            client_secret = "relay-secret"
            scopes = ["openid", "email", "offline_access"]
        "#;
        let f: FileConfig = toml::from_str(text).expect("parses");
        let p = &f.providers["test"];
        assert_eq!(p.kind, Some(ProviderKind::Oidc));
        assert_eq!(p.scopes.as_ref().map(Vec::len), Some(3));
    }

    #[test]
    fn unknown_keys_are_refused_not_ignored() {
        let err =
            toml::from_str::<FileConfig>("[providers.x]\nkind = \"oidc\"\nclient_idd = \"typo\"")
                .expect_err("refused");
        assert!(err.to_string().contains("client_idd"), "{err}");
    }
}
