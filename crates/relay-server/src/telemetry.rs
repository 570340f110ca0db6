//! Every metric Relay exports, described once at start and registered at zero where its
//! labels are known in advance, so dashboards and alerts see each series from the first
//! scrape instead of after the first occurrence.
//!
//! Labels have bounded cardinality: provider names (configuration), route templates, status
//! codes and small enumerations. Never a connection id, actor id, email or URL.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use relay_core::ProviderName;
use relay_core::actions::BreakerSnapshot;
use relay_core::census::ConnectionCount;
use relay_core::refresh::ReadPath;

/// Connection statuses, for the `connections` gauge.
const STATUSES: [&str; 3] = ["active", "needs_reauth", "revoked"];

/// Reasons of `refresh_failures_total`, as the token service reports them.
const REFRESH_FAILURE_REASONS: [&str; 5] = [
    "needs_reauth",
    "provider_unavailable",
    "provider_rejected",
    "not_completed",
    "internal",
];

/// Describes every metric and registers the series whose labels are known now.
pub fn describe(providers: &[ProviderName]) {
    describe_counter!(
        "oauth_events_total",
        "OAuth events by provider: authorize_started, callback_error, invalid_state, token_exchange_failed, token_exchange_timeout, missing_access_token, tokens_stored, refresh_start, refresh_ok, refresh_failed, refresh_locked"
    );
    describe_histogram!(
        "refresh_latency_seconds",
        Unit::Seconds,
        "Token-endpoint refresh calls, retries included"
    );
    describe_histogram!(
        "token_read_seconds",
        Unit::Seconds,
        "Token reads by how they were served: hit, miss (cache), refreshed (this read refreshed), joined (another caller's refresh)"
    );
    describe_counter!(
        "refresh_failures_total",
        "Refreshes that did not store a new token, by reason: needs_reauth, provider_unavailable, provider_rejected, not_completed (the current token was served), internal"
    );
    describe_counter!(
        "token_refreshes_total",
        "Reads of a due token by result: performed (this caller refreshed) or joined (served by a refresh another caller performed)"
    );
    describe_histogram!(
        "refresh_lock_wait_seconds",
        Unit::Seconds,
        "Time waiting for another refresh of the same connection: lock=process (in this process) or lease (another instance)"
    );
    describe_gauge!(
        "connections",
        "Connections by provider and status, counted from the database every 30 s"
    );
    describe_counter!(
        "http_requests_total",
        "HTTP requests by method, route template and status"
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request duration by method and route template"
    );
    describe_gauge!(
        "readiness_check",
        "1 when a readiness check passes, 0 when it fails (updated every 15 s and on /ready)"
    );
    describe_gauge!(
        "ready",
        "1 when every required readiness check passes (ready or degraded: /ready answers 200), else 0"
    );
    relay_core::audit::describe_metrics();

    for path in [
        ReadPath::CacheHit,
        ReadPath::CacheMiss,
        ReadPath::Refreshed,
        ReadPath::Joined,
    ] {
        let _ = metrics::histogram!("token_read_seconds", "path" => path.as_str());
    }
    for lock in ["process", "lease"] {
        let _ = metrics::histogram!("refresh_lock_wait_seconds", "lock" => lock);
    }
    for provider in providers {
        relay_core::events::register(provider);
        let name = provider.as_str().to_owned();
        let _ = metrics::histogram!("refresh_latency_seconds", "provider" => name.clone());
        for result in ["performed", "joined"] {
            metrics::counter!("token_refreshes_total", "provider" => name.clone(), "result" => result)
                .increment(0);
        }
        for status in STATUSES {
            metrics::gauge!("connections", "provider" => name.clone(), "status" => status).set(0.0);
        }
        for reason in REFRESH_FAILURE_REASONS {
            metrics::counter!("refresh_failures_total", "provider" => name.clone(), "reason" => reason)
                .increment(0);
        }
    }
}

/// Sets the `connections` gauge from a census. Series of configured providers that have no
/// connection in some status are set to zero (not left at an old value).
pub fn record_census(providers: &[ProviderName], counts: &[ConnectionCount]) {
    for provider in providers {
        for status in STATUSES {
            let n = counts
                .iter()
                .find(|c| c.provider == provider.as_str() && c.status == status)
                .map_or(0, |c| c.count);
            metrics::gauge!("connections", "provider" => provider.as_str().to_owned(), "status" => status)
                .set(n as f64);
        }
    }
}

/// Reasons `action_error_total` can carry besides the per-API `{api}_4xx` / `{api}_5xx`
/// (the bounded set of `relay_core::actions::ActionError::reason`).
const ACTION_ERROR_REASONS: [&str; 10] = [
    "validation_error",
    "provider_disabled",
    "oauth_token_missing",
    "oauth_token_expired",
    "scope_missing",
    "timeout",
    "connection_failed",
    "destination_blocked",
    "circuit_open",
    "internal_error",
];

/// Describes the action metrics and registers every (provider family, action) series at zero,
/// and each provider API circuit breaker at its current state.
pub fn describe_actions(actions: &[(&str, &str)], breakers: &[BreakerSnapshot]) {
    describe_counter!(
        "action_exec_total",
        "Executes that reached a provider call, by provider family, action and status (ok, error)"
    );
    describe_counter!(
        "action_error_total",
        "Refused previews and failed executes, by provider family, action and stable reason"
    );
    describe_histogram!(
        "action_latency_seconds",
        Unit::Seconds,
        "Executes: token read, provider call and retries"
    );
    describe_gauge!(
        "circuit_breaker_state",
        "Provider API circuit breaker, by provider and api (gmail, drive, outlook): 0 closed, 1 half-open, 2 open"
    );
    for (family, action) in actions {
        let (family, action) = ((*family).to_owned(), (*action).to_owned());
        for status in ["ok", "error"] {
            metrics::counter!("action_exec_total", "provider" => family.clone(), "action" => action.clone(), "status" => status)
                .increment(0);
        }
        let _ = metrics::histogram!("action_latency_seconds", "provider" => family.clone(), "action" => action.clone());
        let api = action.split('.').next().unwrap_or("api").to_owned();
        let per_api = [format!("{api}_4xx"), format!("{api}_5xx")];
        for reason in ACTION_ERROR_REASONS
            .iter()
            .map(|r| (*r).to_owned())
            .chain(per_api)
        {
            metrics::counter!("action_error_total", "provider" => family.clone(), "action" => action.clone(), "reason" => reason)
                .increment(0);
        }
    }
    for b in breakers {
        let value = match b.state {
            "open" => 2.0,
            "half_open" => 1.0,
            _ => 0.0,
        };
        metrics::gauge!("circuit_breaker_state", "provider" => b.provider.clone(), "api" => b.api)
            .set(value);
    }
}

/// Operations that count in `redis_fallbacks_total` (the Redis adapters' call sites).
const REDIS_OPERATIONS: [&str; 10] = [
    "cache_get",
    "cache_put",
    "cache_invalidate",
    "flow_insert",
    "flow_take",
    "lock_acquire",
    "lock_extend",
    "lock_release",
    "rate_limit",
    "api_key_announce",
];

/// Describes the scale-out metrics (rate limits, Redis fallbacks, the background refresher) and
/// registers their series at zero.
pub fn describe_scale_out() {
    describe_counter!(
        "rate_limit_rejections_total",
        "Requests refused with 429 because their API key was over its limit"
    );
    describe_counter!(
        "redis_fallbacks_total",
        "Redis operations that failed and were served from the database or the process instead"
    );
    describe_counter!(
        "background_refresh_total",
        "Background refresher results: refreshed, failed (retried later), needs_reauth, claim_failed"
    );
    metrics::counter!("rate_limit_rejections_total").increment(0);
    for operation in REDIS_OPERATIONS {
        metrics::counter!("redis_fallbacks_total", "operation" => operation).increment(0);
    }
    for outcome in ["refreshed", "failed", "needs_reauth", "claim_failed"] {
        metrics::counter!("background_refresh_total", "outcome" => outcome).increment(0);
    }
}
