//! Liveness and readiness. `/health` answers while the process runs; `/ready` says whether
//! this instance can serve: the database answers (2 s budget), the encryption key is loaded,
//! and every required [`crate::readiness::ReadinessCheck`] passes (the audit writer). A failing
//! optional check (Redis: every path falls back to the database) makes the instance
//! `degraded`, still 200, so load balancers keep sending it traffic.
//!
//! A deployment that exposes Relay publicly can keep its internals to itself (`[server]
//! metrics_listen` / `metrics_token`): then the public `/ready` answers only its status, and
//! `/metrics` and the full `/ready` are served on the separate listener ([`ops_router`]) or
//! to callers presenting the metrics token.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    status: &'static str,
}

/// Liveness: the process is up.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, body = Health)))]
pub async fn get_health() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

#[derive(Serialize, ToSchema)]
pub struct Check {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` (200), `degraded` (200: an optional check such as Redis fails, requests are
    /// served from the database) or `not_ready` (503: a required check fails).
    status: &'static str,
    /// Absent on the public listener when `[server] metrics_listen` or `metrics_token` is
    /// set (unless the metrics token is presented).
    #[serde(skip_serializing_if = "Option::is_none")]
    checks: Option<BTreeMap<String, Check>>,
}

/// Readiness: 200 `ready` when every check passes, 200 `degraded` when only optional checks
/// (Redis) fail, 503 `not_ready` when a required one (database, encryption key, audit writer)
/// fails. Every check is always listed, unless the public listener withholds the details
/// (`[server] metrics_listen` or `metrics_token`).
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, body = Readiness, description = "ready or degraded"),
        (status = 503, body = Readiness, description = "not_ready: a required check fails")))]
pub async fn get_ready(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let details = !state.settings.ops_restricted() || presents_metrics_token(&state, &headers);
    readiness(&state, details).await
}

/// `/ready` on the operations listener: always with details.
async fn get_ready_ops(State(state): State<AppState>) -> Response {
    readiness(&state, true).await
}

async fn readiness(state: &AppState, details: bool) -> Response {
    let (ready, checks) = evaluate(state).await;
    let (status, word) = if !ready {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    } else if checks.values().all(|c| c.ok) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::OK, "degraded")
    };
    (
        status,
        axum::Json(Readiness {
            status: word,
            checks: details.then_some(checks),
        }),
    )
        .into_response()
}

/// Re-evaluates readiness every `every`, so the `ready` and `readiness_check` gauges (which
/// alerts use) stay current even when nothing calls `/ready`.
pub async fn watch_readiness(state: AppState, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let _ = evaluate(&state).await;
    }
}

/// Runs every check; returns whether the instance can serve (every required check passes:
/// `degraded` counts as ready), and each check's result. Also sets the `ready` and
/// `readiness_check{check}` gauges.
async fn evaluate(state: &AppState) -> (bool, BTreeMap<String, Check>) {
    let mut checks = BTreeMap::new();
    let db = match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => Check {
            ok: true,
            detail: None,
        },
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database check failed");
            Check {
                ok: false,
                detail: Some("database unavailable".into()),
            }
        }
        Err(_) => Check {
            ok: false,
            detail: Some("database did not answer within 2 s".into()),
        },
    };
    checks.insert("database".to_owned(), db);
    checks.insert(
        "encryption_key".to_owned(),
        Check {
            ok: !state.settings.primary_key_id.is_empty(),
            detail: Some(format!("key id {}", state.settings.primary_key_id)),
        },
    );
    // Provider API circuit breakers are reported, but never make the instance unready: an
    // outage at Google or Microsoft is not this instance's fault, and taking every replica out
    // of the load balancer would also stop token reads and other providers' actions.
    for b in state.actions.executor().breakers() {
        checks.insert(
            format!("provider_api:{}:{}", b.provider, b.api),
            Check {
                ok: true,
                detail: Some(format!("circuit {}", b.state)),
            },
        );
    }
    let mut ready = checks.values().all(|c| c.ok);
    for check in state.readiness.iter() {
        let result = crate::readiness::run(check).await;
        if !result.ok {
            tracing::warn!(check = %check.name(), detail = ?result.detail, "readiness check failed");
        }
        if check.required() && !result.ok {
            ready = false;
        }
        checks.insert(
            check.name(),
            Check {
                ok: result.ok,
                detail: result.detail,
            },
        );
    }
    for (name, check) in &checks {
        metrics::gauge!("readiness_check", "check" => name.clone()).set(if check.ok {
            1.0
        } else {
            0.0
        });
    }
    metrics::gauge!("ready").set(if ready { 1.0 } else { 0.0 });
    (ready, checks)
}

/// Prometheus text exposition. With `[server] metrics_listen` it is served there only (404
/// here); with `[server] metrics_token` it requires `Authorization: Bearer <token>`.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"),
        (status = 401, body = crate::error::ErrorEnvelope, description = "metrics_token is set and was not presented"),
        (status = 404, body = crate::error::ErrorEnvelope, description = "served on metrics_listen instead")))]
pub async fn get_metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if state.settings.metrics_listen {
        return crate::middleware::not_found().await.into_response();
    }
    metrics_answer(&state, &headers)
}

async fn get_metrics_ops(State(state): State<AppState>, headers: HeaderMap) -> Response {
    metrics_answer(&state, &headers)
}

fn metrics_answer(state: &AppState, headers: &HeaderMap) -> Response {
    if state.settings.metrics_token.is_some() && !presents_metrics_token(state, headers) {
        return crate::error::ApiError::unauthorized(
            "/metrics requires the metrics token ([server] metrics_token)",
        )
        .into_response();
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Whether the request carries `Authorization: Bearer <metrics_token>`. Compared as SHA-256
/// digests, so the comparison's time says nothing about the token.
fn presents_metrics_token(state: &AppState, headers: &HeaderMap) -> bool {
    use secrecy::ExposeSecret;
    let Some(expected) = &state.settings.metrics_token else {
        return false;
    };
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    presented.is_some_and(|p| {
        relay_core::random::sha256_hex(p.as_bytes())
            == relay_core::random::sha256_hex(expected.expose_secret().as_bytes())
    })
}

/// The operations listener (`[server] metrics_listen`): `/metrics`, the full `/ready` and
/// `/health`, for a scraper and probes on a private address.
pub fn ops_router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(get_metrics_ops))
        .route("/ready", axum::routing::get(get_ready_ops))
        .route("/health", axum::routing::get(get_health))
        .fallback(crate::middleware::not_found)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            Duration::from_secs(60),
        ))
        .with_state(state)
}
