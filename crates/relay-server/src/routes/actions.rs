//! Actions: list them (`GET /actions`), preview one (`POST /actions/preview`: validate,
//! render, store, send nothing) and execute a preview once (`POST /actions/execute`, with an
//! optional `Idempotency-Key`).

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use relay_core::ConnectionId;
use relay_core::actions::{ActionError, ConnectionRef, PreviewRequest};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorEnvelope};
use crate::extract::ApiJson;
use crate::routes::oauth::{parse_actor, parse_provider};
use crate::state::AppState;

impl From<ActionError> for ApiError {
    fn from(e: ActionError) -> Self {
        let status = match &e {
            ActionError::Service(_) => {
                // Storage and vault failures keep the core envelope (503 database_unavailable,
                // 500 internal_error, ...).
                return match e {
                    ActionError::Service(inner) => Self::from(inner),
                    _ => Self::internal(),
                };
            }
            ActionError::Validation(_)
            | ActionError::UnknownAction { .. }
            | ActionError::DestinationBlocked(_)
            | ActionError::UnsupportedFileType(_)
            | ActionError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ActionError::ProviderDisabled(..) => StatusCode::NOT_IMPLEMENTED,
            ActionError::TokenMissing(_) | ActionError::PreviewNotFound => StatusCode::NOT_FOUND,
            ActionError::TokenExpired(_)
            | ActionError::Unauthorized
            | ActionError::InProgress
            | ActionError::InDoubt => StatusCode::CONFLICT,
            ActionError::ScopeMissing(_) => StatusCode::FORBIDDEN,
            // The provider refused this request (Drive's 403 for a file the user cannot read,
            // Gmail's 400): retrying cannot help, so not a 5xx (which SDKs and proxies retry).
            // 424 Failed Dependency rather than 422: the request was valid for Relay, and a
            // distinct status keeps "Relay refused" and "the provider refused" apart.
            // Its 408 and 429 (still there after the retries) are transient: 503, try later.
            ActionError::Upstream4xx {
                status: 408 | 429, ..
            } => StatusCode::SERVICE_UNAVAILABLE,
            ActionError::Upstream4xx { .. } => StatusCode::FAILED_DEPENDENCY,
            ActionError::Upstream5xx { .. } | ActionError::ConnectionFailed(_) => {
                StatusCode::BAD_GATEWAY
            }
            ActionError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ActionError::CircuitOpen(..) => StatusCode::SERVICE_UNAVAILABLE,
            ActionError::FileTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ActionError::PreviewExpired => StatusCode::GONE,
            ActionError::Replayed { reason, .. } => replayed_status(reason),
        };
        let retry_after = match &e {
            ActionError::CircuitOpen(_, wait) => Some((*wait).max(Duration::from_secs(1))),
            ActionError::InProgress => Some(Duration::from_secs(1)),
            _ => None,
        };
        let provider_status = match &e {
            ActionError::Upstream4xx { status, .. } => Some(*status),
            _ => None,
        };
        Self {
            status,
            code: e.reason(),
            message: e.to_string(),
            retry_after,
            www_authenticate: None,
            provider_status,
        }
    }
}

/// The status a stored failure is replayed with: the same as the first answer.
fn replayed_status(reason: &str) -> StatusCode {
    match reason {
        "timeout" => StatusCode::GATEWAY_TIMEOUT,
        "file_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "unsupported_file_type" => StatusCode::UNPROCESSABLE_ENTITY,
        r if r.ends_with("_4xx") => StatusCode::FAILED_DEPENDENCY,
        r if r.ends_with("_5xx") => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[derive(Serialize, ToSchema)]
pub struct ActionView {
    /// e.g. `gmail.send`.
    name: &'static str,
    /// Other names accepted for this action (e.g. `gmail.send_email`); previews, audit
    /// records and metrics carry `name`.
    aliases: Vec<&'static str>,
    /// `google`, `microsoft` or `webhook` (no connection needed).
    provider: &'static str,
    description: &'static str,
    /// `read`, `write` or `send`.
    side_effect: &'static str,
    /// Scopes to request for this action.
    scopes: Vec<&'static str>,
    /// Any one of these granted scopes is enough.
    accepted_scopes: Vec<&'static str>,
    /// JSON Schema of `params`.
    #[schema(value_type = Object)]
    params_schema: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub struct ActionList {
    actions: Vec<ActionView>,
}

/// Every action, with the JSON Schema of its parameters.
#[utoipa::path(get, path = "/actions", tag = "actions",
    responses((status = 200, body = ActionList), (status = 401, body = ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn list_actions(
    State(state): State<AppState>,
    _caller: Caller,
) -> axum::Json<ActionList> {
    let actions = state
        .actions
        .descriptors()
        .iter()
        .map(|d| ActionView {
            name: d.name,
            aliases: d.aliases.clone(),
            provider: d.family.as_str(),
            description: d.description,
            side_effect: match d.side_effect {
                relay_core::actions::SideEffect::Read => "read",
                relay_core::actions::SideEffect::Write => "write",
                relay_core::actions::SideEffect::Send => "send",
            },
            scopes: d.scopes.clone(),
            accepted_scopes: d.accepted_scopes.clone(),
            params_schema: d.params_schema.clone(),
        })
        .collect();
    axum::Json(ActionList { actions })
}

/// What to preview: the action, whose account (a connection id, or provider and actor; not
/// needed for `webhook.send`), and the parameters.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewBody {
    /// The action's name or one of its `aliases` (`GET /actions`); the preview carries the
    /// canonical name.
    action: String,
    connection_id: Option<String>,
    provider: Option<String>,
    actor_id: Option<String>,
    actor_type: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    params: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub struct PreviewResponse {
    preview_id: String,
    action: String,
    /// Exactly what will be sent (for `gmail.send`: the headers and `raw`).
    #[schema(value_type = Object)]
    rendered: serde_json::Value,
    /// `sha256:` of the rendered request.
    digest: String,
    expires_at: String,
}

fn validation(message: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
        message,
    )
}

/// Validate the parameters and the connection, and render exactly what would be sent.
/// Sends nothing.
#[utoipa::path(post, path = "/actions/preview", tag = "actions", request_body = PreviewBody,
    responses((status = 201, body = PreviewResponse), (status = 400, body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope, description = "scope_missing"),
        (status = 404, body = ErrorEnvelope, description = "oauth_token_missing"),
        (status = 409, body = ErrorEnvelope, description = "oauth_token_expired"),
        (status = 422, body = ErrorEnvelope, description = "validation_error, destination_blocked")),
    security(("api_key" = [])))]
pub async fn preview_action(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<PreviewBody>,
) -> Result<(StatusCode, axum::Json<PreviewResponse>), ApiError> {
    let connection = match (&body.connection_id, &body.provider, &body.actor_id) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(validation(
                "give either connection_id, or provider and actor_id, not both",
            ));
        }
        (Some(id), None, None) => Some(ConnectionRef::Id(
            ConnectionId::parse(id).map_err(|e| validation(&e.to_string()))?,
        )),
        (None, Some(p), Some(a)) => {
            let provider = parse_provider(&state, p)?;
            let (actor_type, actor_id) = parse_actor(a, body.actor_type.as_deref())?;
            Some(ConnectionRef::Actor {
                provider,
                actor_type,
                actor_id,
            })
        }
        (None, Some(_), None) | (None, None, Some(_)) => {
            return Err(validation("provider and actor_id go together"));
        }
        (None, None, None) => None,
    };
    let result = state
        .actions
        .preview(
            &caller.workspace_id,
            PreviewRequest {
                action: body.action.clone(),
                connection,
                params: body.params,
            },
        )
        .await;
    let view = result.inspect_err(|e| state.actions.count_error(&body.action, e))?;
    Ok((
        StatusCode::CREATED,
        axum::Json(PreviewResponse {
            preview_id: view.preview_id,
            action: view.action,
            rendered: view.rendered,
            digest: view.digest,
            expires_at: view.expires_at,
        }),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteBody {
    preview_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct ExecuteResponse {
    /// `succeeded`.
    status: &'static str,
    /// The action's result (for `gmail.send`: `message_id`; for `drive.extract`: `text` and
    /// `metadata`).
    #[schema(value_type = Object)]
    result: serde_json::Value,
}

/// Execute a preview, once. Executing the same preview (or reusing the same
/// `Idempotency-Key`) returns the first result without sending again.
#[utoipa::path(post, path = "/actions/execute", tag = "actions", request_body = ExecuteBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries of this request safe")),
    responses((status = 200, body = ExecuteResponse), (status = 401, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope, description = "not_found, oauth_token_missing"),
        (status = 409, body = ErrorEnvelope, description = "oauth_token_expired, execution_in_progress, execution_in_doubt"),
        (status = 410, body = ErrorEnvelope, description = "preview_expired"),
        (status = 422, body = ErrorEnvelope, description = "idempotency_key_reused, destination_blocked"),
        (status = 501, body = ErrorEnvelope, description = "provider_disabled"),
        (status = 424, body = ErrorEnvelope, description = "{api}_4xx: the provider API refused the request; error.provider_status has its status (408 and 429 answer 503)"),
        (status = 502, body = ErrorEnvelope, description = "{api}_5xx, connection_failed"),
        (status = 503, body = ErrorEnvelope, description = "circuit_open"),
        (status = 504, body = ErrorEnvelope, description = "timeout")),
    security(("api_key" = [])))]
pub async fn execute_action(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ExecuteBody>,
) -> Result<Response, ApiError> {
    let key = match headers.get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| validation("Idempotency-Key must be visible ASCII"))?
                .to_owned(),
        ),
        None => None,
    };
    if body.preview_id.is_empty() || body.preview_id.len() > 100 {
        return Err(ApiError::not_found("preview"));
    }
    let outcome = state
        .actions
        .execute(&caller.workspace_id, &body.preview_id, key.as_deref())
        .await?;
    let mut resp = axum::Json(ExecuteResponse {
        status: "succeeded",
        result: outcome.result,
    })
    .into_response();
    if outcome.replayed {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(resp)
}
