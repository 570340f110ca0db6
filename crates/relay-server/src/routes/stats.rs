//! `GET /stats`: what the caller's workspace did, hour by hour, for Studio's overview charts.
//! Counted from the audit log (every token read, refresh and execution already writes a
//! record there), so the numbers are the workspace's own and agree with `GET /audit`.

use axum::extract::State;
use relay_core::Timestamp;
use relay_core::audit::{AuditAction, AuditCount, AuditOutcome};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::{ApiError, ErrorEnvelope};
use crate::extract::ApiQuery;
use crate::routes::audit::rfc3339_millis;
use crate::state::AppState;

const HOUR_MS: i64 = 3_600_000;
/// How far back `since` may reach: a week of hourly buckets keeps the answer small.
const MAX_HOURS: i64 = 7 * 24;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// RFC 3339; the first bucket is the hour containing it. Default 24 hours ago; at most
    /// 7 days ago.
    since: Option<String>,
}

/// One hour of the workspace's activity.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsBucket {
    /// The hour's start, RFC 3339 UTC.
    pub start: String,
    /// Token reads (`GET /connections/{id}/token`), served or refused.
    pub token_reads: i64,
    /// Successful refreshes.
    pub refreshes: i64,
    /// Refreshes that failed (transient failures and those that made a connection
    /// `needs_reauth`).
    pub refresh_failures: i64,
    /// Executed actions, whatever their result.
    pub action_executions: i64,
    /// Executed actions that failed.
    pub action_errors: i64,
}

#[derive(Serialize, Deserialize, ToSchema, Debug)]
pub struct Stats {
    /// Start of the first bucket, RFC 3339 UTC.
    pub since: String,
    /// One bucket per hour, oldest first, up to the current hour (empty hours included).
    pub buckets: Vec<StatsBucket>,
    /// The buckets added up.
    pub totals: StatsBucket,
}

impl StatsBucket {
    fn add(&mut self, c: &AuditCount) {
        let failed = c.outcome == AuditOutcome::Failed;
        match c.action {
            AuditAction::TokenRead => self.token_reads += c.count,
            AuditAction::TokenRefreshed if !failed => self.refreshes += c.count,
            AuditAction::TokenRefreshed | AuditAction::TokenRefreshFailed => {
                self.refresh_failures += c.count
            }
            AuditAction::ConnectionNeedsReauth => self.refresh_failures += c.count,
            AuditAction::ActionExecuted => {
                self.action_executions += c.count;
                if failed {
                    self.action_errors += c.count;
                }
            }
            _ => {}
        }
    }
}

/// The workspace's activity per hour: token reads, refreshes, refresh failures, action
/// executions and errors.
#[utoipa::path(get, path = "/stats", tag = "operations", params(StatsQuery),
    responses((status = 200, body = Stats),
        (status = 400, body = ErrorEnvelope, description = "invalid_query (unknown parameter)"),
        (status = 401, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope, description = "validation_error: `since` is not RFC 3339, in the future or more than 7 days ago")),
    security(("api_key" = [])))]
pub async fn get_stats(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> Result<axum::Json<Stats>, ApiError> {
    let now = state.clock.now().0;
    let current_hour = now - now.rem_euclid(HOUR_MS);
    let earliest = current_hour - (MAX_HOURS - 1) * HOUR_MS;
    let since = match q.since.as_deref() {
        None => now - 24 * HOUR_MS,
        Some(v) => chrono::DateTime::parse_from_rfc3339(v)
            .map(|t| t.timestamp_millis())
            .map_err(|_| ApiError::validation("since must be an RFC 3339 time"))?,
    };
    let first_hour = since - since.rem_euclid(HOUR_MS);
    if first_hour > current_hour {
        return Err(ApiError::validation("since must not be in the future"));
    }
    if first_hour < earliest {
        return Err(ApiError::validation("since must be within the last 7 days"));
    }
    let counts = state
        .audit_store
        .count_audit_by_hour(
            &caller.workspace_id,
            Timestamp(first_hour),
            Timestamp(current_hour + HOUR_MS),
        )
        .await
        .map_err(relay_core::ServiceError::from)?;
    let mut buckets: Vec<StatsBucket> = (0..=(current_hour - first_hour) / HOUR_MS)
        .map(|i| StatsBucket {
            start: rfc3339_millis(Timestamp(first_hour + i * HOUR_MS)),
            ..StatsBucket::default()
        })
        .collect();
    let mut totals = StatsBucket {
        start: rfc3339_millis(Timestamp(first_hour)),
        ..StatsBucket::default()
    };
    for c in &counts {
        let index = usize::try_from((c.hour.0 - first_hour) / HOUR_MS).ok();
        if let Some(bucket) = index.and_then(|i| buckets.get_mut(i)) {
            bucket.add(c);
            totals.add(c);
        }
    }
    Ok(axum::Json(Stats {
        since: rfc3339_millis(Timestamp(first_hour)),
        buckets,
        totals,
    }))
}
