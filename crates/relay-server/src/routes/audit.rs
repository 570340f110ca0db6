//! `GET /audit`: the caller's workspace's audit records, newest first, with filters and a
//! cursor. Records hold ids and reasons, never a secret.

use axum::extract::State;
use relay_core::Timestamp;
use relay_core::audit::{AuditAction, AuditFilter, AuditRecord};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::AdminCaller;
use crate::error::{ApiError, ErrorEnvelope};
use crate::extract::ApiQuery;
use crate::state::AppState;

/// One audit record, as `GET /audit` and `relay audit export` show it.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct AuditRecordView {
    /// Position in the workspace's chain, from 1.
    pub seq: i64,
    /// RFC 3339, millisecond precision.
    pub at: String,
    pub workspace_id: String,
    /// `connection.created`, `token.read`, `token.refreshed`, `token.refresh_failed`,
    /// `connection.needs_reauth`, `connection.deleted`, `action.previewed`, `action.executed`,
    /// `api_key.created`, `api_key.updated`, `api_key.revoked`, `webhook_secret.read`,
    /// `webhook_secret.rotated`, `vault.resealed`, `audit.sealed`.
    pub action: String,
    /// `ok` or `failed`.
    pub outcome: String,
    pub api_key_id: Option<String>,
    pub actor_id: Option<String>,
    pub connection_id: Option<String>,
    pub provider: Option<String>,
    pub request_id: Option<String>,
    pub client_addr: Option<String>,
    pub detail: Option<String>,
    /// The previous record's hash (64 zeros for the first).
    pub prev_hash: String,
    /// `hmac:` and the HMAC-SHA256 (keyed with Relay's audit key) over `prev_hash` and this
    /// record's canonical encoding; records of a Relay before keyed audit carry a plain
    /// SHA-256 (64 hex digits, no prefix).
    pub hash: String,
}

impl From<&AuditRecord> for AuditRecordView {
    fn from(r: &AuditRecord) -> Self {
        let e = &r.event;
        Self {
            seq: r.seq,
            at: rfc3339_millis(e.at),
            workspace_id: e.workspace_id.to_string(),
            action: e.action.as_str().to_owned(),
            outcome: e.outcome.as_str().to_owned(),
            api_key_id: e.api_key_id.clone(),
            actor_id: e.actor_id.clone(),
            connection_id: e.connection_id.clone(),
            provider: e.provider.clone(),
            request_id: e.request_id.clone(),
            client_addr: e.client_addr.clone(),
            detail: e.detail.clone(),
            prev_hash: r.prev_hash.clone(),
            hash: r.hash.clone(),
        }
    }
}

/// `2026-11-22T01:02:03.456Z`: the record's exact time, which its hash covers.
pub fn rfc3339_millis(t: Timestamp) -> String {
    chrono::DateTime::from_timestamp_millis(t.0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| t.to_rfc3339())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    connection_id: Option<String>,
    actor_id: Option<String>,
    /// One action name, e.g. `token.read`.
    action: Option<String>,
    /// RFC 3339; records at or after this time.
    from: Option<String>,
    /// RFC 3339; records before this time.
    to: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1 to 1000, default 100.
    limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    records: Vec<AuditRecordView>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    next_cursor: Option<String>,
}

fn parse_time(field: &str, v: &str) -> Result<Timestamp, ApiError> {
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| Timestamp(t.timestamp_millis()))
        .map_err(|_| ApiError::validation(format!("{field} must be an RFC 3339 time")))
}

fn bounded_id(field: &str, v: Option<String>) -> Result<Option<String>, ApiError> {
    match v {
        Some(s) if s.is_empty() || s.len() > 256 || s.chars().any(char::is_control) => Err(
            ApiError::validation(format!("{field} must be 1 to 256 printable characters")),
        ),
        other => Ok(other),
    }
}

/// The workspace's audit records, newest first (admin keys only).
#[utoipa::path(get, path = "/audit", tag = "operations", params(AuditQuery),
    responses((status = 200, body = AuditPage),
        (status = 400, body = ErrorEnvelope, description = "invalid_query (ill-typed or unknown parameter), invalid_cursor"),
        (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope, description = "`forbidden`: not an admin key"),
        (status = 422, body = ErrorEnvelope, description = "validation_error: bad time, action, id or limit")),
    security(("api_key" = [])))]
pub async fn list_audit(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<axum::Json<AuditPage>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::validation("limit must be between 1 and 1000"));
    }
    let action = q
        .action
        .as_deref()
        .map(|a| {
            AuditAction::parse(a)
                .ok_or_else(|| ApiError::validation(format!("unknown action {a:?}")))
        })
        .transpose()?;
    let before_seq = q
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ApiError::bad_request("invalid_cursor", "cursor is not valid"))
        })
        .transpose()?;
    let from = q
        .from
        .as_deref()
        .map(|v| parse_time("from", v))
        .transpose()?;
    let to = q.to.as_deref().map(|v| parse_time("to", v)).transpose()?;
    let filter = AuditFilter {
        connection_id: bounded_id("connection_id", q.connection_id)?,
        actor_id: bounded_id("actor_id", q.actor_id)?,
        action,
        from,
        to,
        before_seq,
        limit,
    };
    // Buffered token-read records of this replica are stored first, so a caller reads its own
    // reads (best effort: a failing writer does not stop the log from being read).
    match tokio::time::timeout(std::time::Duration::from_secs(2), state.audit.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "GET /audit: queued records could not be stored first")
        }
        Err(_) => tracing::warn!("GET /audit: queued records were not stored within 2 s"),
    }
    let records = state
        .audit_store
        .list_audit(&caller.workspace_id, &filter)
        .await
        .map_err(relay_core::ServiceError::from)?;
    let next_cursor = (records.len() == limit as usize)
        .then(|| records.last().map(|r| r.seq.to_string()))
        .flatten();
    Ok(axum::Json(AuditPage {
        records: records.iter().map(AuditRecordView::from).collect(),
        next_cursor,
    }))
}

/// The result of checking the caller's workspace's chain.
#[derive(Serialize, Deserialize, ToSchema, Debug)]
pub struct AuditVerification {
    /// `true` when every record links to the one before and the head matches.
    pub intact: bool,
    /// Records checked (up to the first broken one).
    pub records: u64,
    /// The first broken record's `seq`, when `intact` is false.
    pub broken_seq: Option<i64>,
    /// Why that link is broken, in words.
    pub reason: Option<String>,
}

/// Verifies the workspace's audit chain with Relay's audit key (admin keys only), as
/// `relay audit verify --workspace` does.
#[utoipa::path(get, path = "/audit/verify", tag = "operations",
    responses((status = 200, body = AuditVerification),
        (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope, description = "`forbidden`: not an admin key")),
    security(("api_key" = [])))]
pub async fn verify_audit(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
) -> Result<axum::Json<AuditVerification>, ApiError> {
    let report = relay_core::audit::verify(
        state.audit_store.as_ref(),
        &state.audit_key,
        Some(&caller.workspace_id),
        &[],
    )
    .await
    .map_err(relay_core::ServiceError::from)?;
    Ok(axum::Json(AuditVerification {
        intact: report.broken.is_none(),
        records: report.records,
        broken_seq: report.broken.as_ref().map(|b| b.seq),
        reason: report.broken.map(|b| b.reason),
    }))
}
