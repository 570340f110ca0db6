//! Liveness and readiness. `/health` answers while the process runs; `/ready` says whether
//! this instance can serve: the database answers (2 s budget), Redis answers when configured
//! (2 s budget), and the encryption key is loaded.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
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
    /// `ready` or `not_ready`.
    status: &'static str,
    checks: BTreeMap<String, Check>,
}

/// Readiness: 200 when every required check passes, 503 otherwise.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn get_ready(State(state): State<AppState>) -> impl IntoResponse {
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
    for dep in &state.readiness {
        let check = match dep.check(Duration::from_secs(2)).await {
            Ok(()) => Check {
                ok: true,
                detail: None,
            },
            Err(detail) => {
                tracing::warn!(dependency = dep.name(), %detail, "readiness check failed");
                Check {
                    ok: false,
                    detail: Some(detail),
                }
            }
        };
        checks.insert(dep.name().to_owned(), check);
    }
    checks.insert(
        "encryption_key".to_owned(),
        Check {
            ok: !state.settings.primary_key_id.is_empty(),
            detail: Some(format!("key id {}", state.settings.primary_key_id)),
        },
    );
    let ready = checks.values().all(|c| c.ok);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(Readiness {
            status: if ready { "ready" } else { "not_ready" },
            checks,
        }),
    )
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn get_metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
}
