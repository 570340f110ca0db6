//! API keys of the caller's workspace: create (the secret is shown once), list, change the
//! rate limit or role, revoke. Only `admin` keys reach these routes, and only for keys of their
//! own workspace.
//!
//! No key can gain through them what it does not have: a key cannot change or revoke itself,
//! and no key can give another (or a new one) a rate limit above its own. Every operation is
//! an audit record naming the acting key. A revocation or change is dropped from this
//! replica's key cache at once and announced to the others (through Redis, when configured);
//! a replica that misses the announcement applies it within `[cache] api_key_ttl_secs` (5 s).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use relay_core::audit::{AuditAction, AuditEvent};
use relay_core::coordination::ApiKeyChange;
use relay_core::ports::{ApiKeyRecord, ApiKeyRole};
use secrecy::ExposeSecret;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::auth::{AdminCaller, Caller, mint_api_key};
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
    role: Role,
    created_at: String,
    revoked_at: Option<String>,
}

/// What a key may do: `admin` (API keys, the webhook secret, the audit log, and everything
/// `service` may do) or `service` (connect, connections, tokens, actions, providers).
#[derive(Serialize, Deserialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Service,
}

impl From<ApiKeyRole> for Role {
    fn from(r: ApiKeyRole) -> Self {
        match r {
            ApiKeyRole::Admin => Self::Admin,
            ApiKeyRole::Service => Self::Service,
        }
    }
}

impl From<Role> for ApiKeyRole {
    fn from(r: Role) -> Self {
        match r {
            Role::Admin => Self::Admin,
            Role::Service => Self::Service,
        }
    }
}

impl From<&ApiKeyRecord> for ApiKeyView {
    fn from(r: &ApiKeyRecord) -> Self {
        Self {
            id: r.id.clone(),
            workspace_id: r.workspace_id.to_string(),
            rate_limit_per_minute: r.rate_limit_per_minute,
            role: r.role.into(),
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
    /// Requests per minute for this key; omit for the configured default. At most the creating
    /// key's own limit.
    rate_limit_per_minute: Option<i64>,
    /// `service` when omitted.
    role: Option<Role>,
}

/// The fields to change; an omitted field keeps its value.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateApiKey {
    /// Requests per minute, at most the acting key's own limit; `null` returns the key to the
    /// configured default.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    rate_limit_per_minute: Option<Option<i64>>,
    role: Option<Role>,
}

/// Tells a field sent as `null` (`Some(None)`) from one left out (`None`, by `default`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
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

/// A limit as it applies: the key's own, or the configured default.
fn effective_limit(state: &AppState, limit: Option<i64>) -> i64 {
    limit.unwrap_or_else(|| i64::from(state.rate_limits.default_per_minute))
}

/// No key gives a limit above its own, so that no chain of keys ends above where it started
/// (a key limited to 5 per minute cannot mint, or raise, one with 10,000,000).
fn check_not_above_own(
    state: &AppState,
    caller: &Caller,
    limit: Option<i64>,
) -> Result<(), ApiError> {
    let own = effective_limit(state, caller.rate_limit_per_minute);
    let wanted = effective_limit(state, limit);
    if wanted > own {
        return Err(ApiError::forbidden(format!(
            "a key cannot give a rate limit above its own ({own} requests per minute; {wanted} asked)"
        )));
    }
    Ok(())
}

/// What an audit record says of a key: its id, role and limit (never its secret or hash).
fn describe(key: &ApiKeyRecord) -> String {
    let limit = key
        .rate_limit_per_minute
        .map_or_else(|| "default".to_owned(), |l| l.to_string());
    format!(
        "{} role={} rate_limit_per_minute={limit}",
        key.id,
        key.role.as_str()
    )
}

async fn audit(
    state: &AppState,
    caller: &Caller,
    action: AuditAction,
    detail: String,
) -> Result<(), ApiError> {
    state
        .audit
        .record(
            AuditEvent::new(caller.workspace_id.clone(), action, state.clock.now())
                .api_key_id(caller.api_key_id.clone())
                .detail(detail),
        )
        .await
        .map_err(|e| ApiError::from(relay_core::ServiceError::from(e)))
}

/// Create an API key in the caller's workspace (admin keys only).
#[utoipa::path(post, path = "/api-keys", tag = "api_keys",
    request_body = CreateApiKey,
    responses((status = 201, body = CreatedApiKey), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope, description = "`forbidden`: not an admin key, or a limit above the key's own"),
        (status = 422, body = ErrorEnvelope), (status = 429, body = ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn create_api_key(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    ApiJson(body): ApiJson<CreateApiKey>,
) -> Result<(StatusCode, axum::Json<CreatedApiKey>), ApiError> {
    let limit = check_limit(body.rate_limit_per_minute)?;
    check_not_above_own(&state, &caller, limit)?;
    let role = body.role.map_or(ApiKeyRole::Service, ApiKeyRole::from);
    let minted = mint_api_key(caller.workspace_id.clone(), state.clock.now(), limit, role);
    state
        .store
        .insert_api_key(&minted.record)
        .await
        .map_err(relay_core::ServiceError::from)?;
    // Before the secret is shown: a key whose creation is not recorded is never handed out.
    audit(
        &state,
        &caller,
        AuditAction::ApiKeyCreated,
        describe(&minted.record),
    )
    .await?;
    tracing::info!(api_key_id = %minted.record.id, role = role.as_str(), created_by = %caller.api_key_id, "API key created");
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedApiKey {
            key: ApiKeyView::from(&minted.record),
            secret: minted.secret.expose_secret().to_owned(),
        }),
    ))
}

/// The API keys of the caller's workspace (revoked ones included, marked); admin keys only.
#[utoipa::path(get, path = "/api-keys", tag = "api_keys",
    responses((status = 200, body = ApiKeyList), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope, description = "`forbidden`: not an admin key")),
    security(("api_key" = [])))]
pub async fn list_api_keys(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
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

/// Change another key's rate limit or role (admin keys only; a key cannot change itself).
#[utoipa::path(patch, path = "/api-keys/{id}", tag = "api_keys",
    params(("id" = String, Path)),
    request_body = UpdateApiKey,
    responses((status = 204), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope, description = "`forbidden`: not an admin key, the key itself, or a limit above the key's own"),
        (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn update_api_key(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateApiKey>,
) -> Result<StatusCode, ApiError> {
    check_id(&id)?;
    if id == caller.api_key_id {
        return Err(ApiError::forbidden(
            "a key cannot change its own limit or role; use another admin key",
        ));
    }
    let change = ApiKeyChange {
        rate_limit_per_minute: body.rate_limit_per_minute.map(check_limit).transpose()?,
        role: body.role.map(ApiKeyRole::from),
    };
    if change == ApiKeyChange::default() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "nothing to change: send rate_limit_per_minute, role or both",
        ));
    }
    if let Some(limit) = change.rate_limit_per_minute {
        check_not_above_own(&state, &caller, limit)?;
    }
    let updated = state
        .api_key_admin
        .update_api_key(&caller.workspace_id, &id, &change)
        .await
        .map_err(relay_core::ServiceError::from)?
        .ok_or_else(|| ApiError::not_found("API key"))?;
    state.api_keys.forget_everywhere(&id).await;
    audit(
        &state,
        &caller,
        AuditAction::ApiKeyUpdated,
        describe(&updated),
    )
    .await?;
    tracing::info!(api_key_id = %id, updated_by = %caller.api_key_id, "API key changed");
    Ok(StatusCode::NO_CONTENT)
}

/// Revoke another key of the workspace (admin keys only; a key cannot revoke itself). This
/// replica refuses it at once; the others at once too when Redis is configured, and within
/// 5 seconds otherwise.
#[utoipa::path(delete, path = "/api-keys/{id}", tag = "api_keys",
    params(("id" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope, description = "`forbidden`: not an admin key, or the key itself"),
        (status = 404, body = ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn delete_api_key(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_id(&id)?;
    if id == caller.api_key_id {
        // So the API never leaves a workspace without an admin key: the last one can only be
        // revoked with `relay api-key revoke`.
        return Err(ApiError::forbidden(
            "a key cannot revoke itself; revoke it with another admin key or `relay api-key revoke`",
        ));
    }
    let revoked = state
        .api_key_admin
        .revoke_workspace_api_key(&caller.workspace_id, &id, state.clock.now())
        .await
        .map_err(relay_core::ServiceError::from)?;
    if !revoked {
        return Err(ApiError::not_found("API key"));
    }
    state.api_keys.forget_everywhere(&id).await;
    audit(&state, &caller, AuditAction::ApiKeyRevoked, id.clone()).await?;
    tracing::info!(api_key_id = %id, revoked_by = %caller.api_key_id, "API key revoked");
    Ok(StatusCode::NO_CONTENT)
}
