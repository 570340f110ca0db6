//! API keys of the caller's workspace: create (the secret is shown once), list, change the
//! rate limit, revoke. A key can only ever see and change keys of its own workspace.
//!
//! Keys are checked from a per-process cache; a revocation or a new limit takes effect on
//! every replica within that cache's time-to-live (`[cache] api_key_ttl_secs`, 5 s).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use relay_core::ports::ApiKeyRecord;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Caller, mint_api_key};
use crate::error::{ApiError, ErrorEnvelope};
use crate::extract::ApiJson;
use crate::state::AppState;

/// Highest per-key limit accepted (requests per minute).
const MAX_RATE_LIMIT: i64 = 10_000_000;

/// An API key's public view; never the secret.
#[derive(Serialize, ToSchema)]
pub struct ApiKeyView {
    id: String,
    workspace_id: String,
    /// Requests per minute; `null` means the configured default.
    rate_limit_per_minute: Option<i64>,
    created_at: String,
    revoked_at: Option<String>,
}

impl From<&ApiKeyRecord> for ApiKeyView {
    fn from(r: &ApiKeyRecord) -> Self {
        Self {
            id: r.id.clone(),
            workspace_id: r.workspace_id.to_string(),
            rate_limit_per_minute: r.rate_limit_per_minute,
            created_at: r.created_at.to_rfc3339(),
            revoked_at: r.revoked_at.map(|t| t.to_rfc3339()),
        }
    }
}

/// A created key: the only time its secret is shown.
#[derive(Serialize, ToSchema)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    key: ApiKeyView,
    secret: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// Requests per minute for this key; omit for the configured default.
    rate_limit_per_minute: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateApiKey {
    /// Requests per minute; `null` returns the key to the configured default.
    rate_limit_per_minute: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyList {
    api_keys: Vec<ApiKeyView>,
}

fn check_limit(limit: Option<i64>) -> Result<Option<i64>, ApiError> {
    match limit {
        Some(l) if !(1..=MAX_RATE_LIMIT).contains(&l) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            format!("rate_limit_per_minute must be between 1 and {MAX_RATE_LIMIT}"),
        )),
        other => Ok(other),
    }
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if id.starts_with("key_")
        && id.len() <= 64
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        Ok(())
    } else {
        Err(ApiError::not_found("API key"))
    }
}

/// Create an API key in the caller's workspace.
#[utoipa::path(post, path = "/api-keys", tag = "api_keys",
    request_body = CreateApiKey,
    responses((status = 201, body = CreatedApiKey), (status = 401, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope), (status = 429, body = ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn create_api_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateApiKey>,
) -> Result<(StatusCode, axum::Json<CreatedApiKey>), ApiError> {
    let limit = check_limit(body.rate_limit_per_minute)?;
    let minted = mint_api_key(caller.workspace_id.clone(), state.clock.now(), limit);
    state
        .store
        .insert_api_key(&minted.record)
        .await
        .map_err(relay_core::ServiceError::from)?;
    tracing::info!(api_key_id = %minted.record.id, created_by = %caller.api_key_id, "API key created");
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedApiKey {
            key: ApiKeyView::from(&minted.record),
            secret: minted.secret.expose_secret().to_owned(),
        }),
    ))
}

/// The API keys of the caller's workspace (revoked ones included, marked).
#[utoipa::path(get, path = "/api-keys", tag = "api_keys",
    responses((status = 200, body = ApiKeyList), (status = 401, body = ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn list_api_keys(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<ApiKeyList>, ApiError> {
    let keys = state
        .api_key_admin
        .list_api_keys(&caller.workspace_id)
        .await
        .map_err(relay_core::ServiceError::from)?;
    Ok(axum::Json(ApiKeyList {
        api_keys: keys.iter().map(ApiKeyView::from).collect(),
    }))
}

/// Change a key's rate limit.
#[utoipa::path(patch, path = "/api-keys/{id}", tag = "api_keys",
    params(("id" = String, Path)),
    request_body = UpdateApiKey,
    responses((status = 204), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn update_api_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateApiKey>,
) -> Result<StatusCode, ApiError> {
    check_id(&id)?;
    let limit = check_limit(body.rate_limit_per_minute)?;
    let changed = state
        .api_key_admin
        .set_api_key_rate_limit(&caller.workspace_id, &id, limit)
        .await
        .map_err(relay_core::ServiceError::from)?;
    if !changed {
        return Err(ApiError::not_found("API key"));
    }
    tracing::info!(api_key_id = %id, rate_limit_per_minute = ?limit, "API key rate limit changed");
    Ok(StatusCode::NO_CONTENT)
}

/// Revoke a key; every replica refuses it within 5 seconds.
#[utoipa::path(delete, path = "/api-keys/{id}", tag = "api_keys",
    params(("id" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn delete_api_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_id(&id)?;
    let revoked = state
        .api_key_admin
        .revoke_workspace_api_key(&caller.workspace_id, &id, state.clock.now())
        .await
        .map_err(relay_core::ServiceError::from)?;
    if !revoked {
        return Err(ApiError::not_found("API key"));
    }
    tracing::info!(api_key_id = %id, revoked_by = %caller.api_key_id, "API key revoked");
    Ok(StatusCode::NO_CONTENT)
}
