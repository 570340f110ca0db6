//! Connections: list, read, import, delete, and the token read (`/connections/{id}/token`),
//! the hottest path in Relay.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use relay_core::audit::{AuditAction, AuditEvent};
use relay_core::connection::Connection;
use relay_core::oauth::TokenSet;
use relay_core::ports::ConnectionFilter;
use relay_core::refresh::{NewConnection, TokenRequest};
use relay_core::{ConnectionId, Scopes, ServiceError, Timestamp};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::{ApiError, ErrorEnvelope};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::routes::oauth::{parse_actor, parse_provider};
use crate::state::AppState;

/// Connection metadata. Never contains a token.
#[derive(Serialize, ToSchema)]
pub struct ConnectionView {
    id: String,
    provider: String,
    actor_type: String,
    actor_id: String,
    scopes: Vec<String>,
    token_type: String,
    /// `active`, `needs_reauth` or `revoked`.
    status: String,
    status_reason: Option<String>,
    has_refresh_token: bool,
    expires_at: Option<String>,
    created_at: String,
    updated_at: String,
    last_refreshed_at: Option<String>,
    /// The provider account the connect flow linked (the ID token's `sub`); null for imported
    /// connections and providers that do not say who signed in.
    account_subject: Option<String>,
    /// That account's email, when granted and not marked unverified.
    account_email: Option<String>,
}

impl From<&Connection> for ConnectionView {
    fn from(c: &Connection) -> Self {
        Self {
            id: c.id.to_string(),
            provider: c.provider.to_string(),
            actor_type: c.actor_type.to_string(),
            actor_id: c.actor_id.to_string(),
            scopes: c.scopes.as_slice().to_vec(),
            token_type: c.token_type.clone(),
            status: c.status.as_str().to_owned(),
            status_reason: c.status_reason.clone(),
            has_refresh_token: c.refresh_token.is_some(),
            expires_at: c.expires_at.map(|t| t.to_rfc3339()),
            created_at: c.created_at.to_rfc3339(),
            updated_at: c.updated_at.to_rfc3339(),
            last_refreshed_at: c.last_refreshed_at.map(|t| t.to_rfc3339()),
            account_subject: c.account_subject.clone(),
            account_email: c.account_email.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ConnectionList {
    connections: Vec<ConnectionView>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    provider: Option<String>,
    actor_id: Option<String>,
    actor_type: Option<String>,
    /// 1 to 1000, default 100.
    limit: Option<u32>,
}

fn parse_connection_id(raw: &str) -> Result<ConnectionId, ApiError> {
    // A malformed id cannot exist: "not found", like any unknown id.
    ConnectionId::parse(raw).map_err(|_| ApiError::not_found("connection"))
}

/// List the workspace's connections.
#[utoipa::path(get, path = "/connections", tag = "connections", params(ListQuery),
    responses((status = 200, body = ConnectionList),
        (status = 400, body = ErrorEnvelope, description = "invalid_query: ill-typed or unknown parameter"),
        (status = 401, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope, description = "Unknown provider"),
        (status = 422, body = ErrorEnvelope, description = "validation_error: invalid actor or limit")),
    security(("api_key" = [])))]
pub async fn list_connections(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<axum::Json<ConnectionList>, ApiError> {
    let provider = q
        .provider
        .as_deref()
        .map(|p| parse_provider(&state, p))
        .transpose()?;
    let (actor_type, actor_id) = match &q.actor_id {
        Some(a) => {
            let (t, id) = parse_actor(a, q.actor_type.as_deref())?;
            (Some(t), Some(id))
        }
        None => (None, None),
    };
    if q.limit.is_some_and(|l| l == 0 || l > 1000) {
        return Err(ApiError::validation("limit must be between 1 and 1000"));
    }
    let list = state
        .tokens
        .list(
            &caller.workspace_id,
            &ConnectionFilter {
                provider,
                actor_type,
                actor_id,
                limit: q.limit,
            },
        )
        .await?;
    Ok(axum::Json(ConnectionList {
        connections: list.iter().map(ConnectionView::from).collect(),
    }))
}

/// One connection's metadata.
#[utoipa::path(get, path = "/connections/{id}", tag = "connections",
    params(("id" = String, Path)),
    responses((status = 200, body = ConnectionView), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn get_connection(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<ConnectionView>, ApiError> {
    let id = parse_connection_id(&id)?;
    let conn = state.tokens.connection(&caller.workspace_id, &id).await?;
    Ok(axum::Json(ConnectionView::from(&conn)))
}

/// Existing tokens to import, or a service account to act through (Google Workspace
/// domain-wide delegation: give `service_account`, `subject` and `scopes` instead of tokens).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportConnection {
    provider: String,
    actor_id: String,
    actor_type: Option<String>,
    /// Required unless `service_account` is given. 1 to 16,384 printable ASCII characters (no
    /// control characters).
    access_token: Option<String>,
    /// The service account key JSON as Google's console downloads it (`"type":
    /// "service_account"`, `client_email`, `private_key`, ...), or its text as kept in
    /// `GOOGLE_CREDENTIALS_JSON`. Stored sealed, never returned.
    #[schema(value_type = Option<Object>)]
    service_account: Option<serde_json::Value>,
    /// With `service_account`: the email of the Workspace user to act as.
    subject: Option<String>,
    /// 1 to 16,384 printable ASCII characters (no control characters).
    refresh_token: Option<String>,
    /// RFC 3339 time or Unix seconds. Give this or `expires_in`.
    #[schema(value_type = Option<String>)]
    expires_at: Option<serde_json::Value>,
    expires_in: Option<u64>,
    /// A list, or one space/comma separated string.
    #[schema(value_type = Option<Vec<String>>)]
    scopes: Option<serde_json::Value>,
    token_type: Option<String>,
}

fn parse_expires_at(v: &serde_json::Value) -> Result<Timestamp, ApiError> {
    let bad = || {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "expires_at must be an RFC 3339 time or Unix seconds",
        )
    };
    match v {
        serde_json::Value::Number(n) => n
            .as_i64()
            .and_then(|s| s.checked_mul(1000))
            .map(Timestamp)
            .ok_or_else(bad),
        serde_json::Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| Timestamp(t.timestamp_millis()))
            .map_err(|_| bad()),
        _ => Err(bad()),
    }
}

fn parse_scopes(v: &serde_json::Value) -> Result<Scopes, ApiError> {
    let invalid =
        |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_error", m);
    match v {
        serde_json::Value::String(s) => Scopes::parse(s).map_err(|e| invalid(e.to_string())),
        serde_json::Value::Array(items) => {
            let strs: Option<Vec<&str>> = items.iter().map(|i| i.as_str()).collect();
            let strs = strs.ok_or_else(|| invalid("scopes must be strings".into()))?;
            Scopes::from_iter_checked(strs).map_err(|e| invalid(e.to_string()))
        }
        _ => Err(invalid("scopes must be a list or a string".into())),
    }
}

/// Import a connection from existing tokens, or connect an actor through a Google service
/// account with domain-wide delegation (a first token is minted before anything is stored).
#[utoipa::path(post, path = "/connections", tag = "connections", request_body = ImportConnection,
    responses((status = 201, body = ConnectionView), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope, description = "validation_error, or invalid_service_account: the key cannot be used"),
        (status = 502, body = ErrorEnvelope, description = "provider_error: the token endpoint refused the service account (e.g. unauthorized_client: no delegation for these scopes)"),
        (status = 503, body = ErrorEnvelope, description = "provider_unavailable: the token endpoint did not answer")),
    security(("api_key" = [])))]
pub async fn create_connection(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ImportConnection>,
) -> Result<(StatusCode, axum::Json<ConnectionView>), ApiError> {
    let provider = parse_provider(&state, &body.provider)?;
    let (actor_type, actor_id) = parse_actor(&body.actor_id, body.actor_type.as_deref())?;
    let unprocessable =
        |m: &str| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_error", m);
    if let Some(key) = &body.service_account {
        if body.access_token.is_some()
            || body.refresh_token.is_some()
            || body.expires_at.is_some()
            || body.expires_in.is_some()
            || body.token_type.is_some()
        {
            return Err(unprocessable(
                "a service_account connection takes no tokens: give service_account, subject and scopes",
            ));
        }
        let Some(subject) = &body.subject else {
            return Err(unprocessable(
                "subject (the Workspace user to act as) is required with service_account",
            ));
        };
        let scopes = body
            .scopes
            .as_ref()
            .map(parse_scopes)
            .transpose()?
            .unwrap_or_default();
        let credential = state
            .catalog
            .service_account_credential(key, subject, &scopes)
            .map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_service_account",
                    e.to_string(),
                )
            })?;
        let conn = state
            .tokens
            .store_service_account(
                NewConnection {
                    workspace_id: caller.workspace_id.clone(),
                    provider,
                    actor_type,
                    actor_id,
                    tokens: TokenSet {
                        access_token: SecretString::from(String::new()),
                        refresh_token: None,
                        token_type: "Bearer".into(),
                        expires_in: None,
                        scope: None,
                        id_token: None,
                    },
                    requested_scopes: scopes,
                    expires_at: None,
                    account: None,
                },
                credential,
                "service account",
            )
            .await?;
        return Ok((StatusCode::CREATED, axum::Json(ConnectionView::from(&conn))));
    }
    if body.subject.is_some() {
        return Err(unprocessable(
            "subject is only for service_account connections",
        ));
    }
    let Some(access_token) = body.access_token else {
        return Err(unprocessable(
            "access_token is required (or service_account for a service-account connection)",
        ));
    };
    if access_token.is_empty() || access_token.len() > 16 * 1024 {
        return Err(unprocessable("access_token must be 1 to 16384 characters"));
    }
    if body
        .refresh_token
        .as_ref()
        .is_some_and(|t| t.is_empty() || t.len() > 16 * 1024)
    {
        return Err(unprocessable("refresh_token must be 1 to 16384 characters"));
    }
    // RFC 6749 (appendix A.12, A.17): tokens are visible ASCII and space only. A NUL or other
    // control character would be stored and later break the `Authorization` header it is sent in.
    let vschar = |t: &str| t.bytes().all(|b| (0x20..=0x7e).contains(&b));
    if !vschar(&access_token) {
        return Err(unprocessable(
            "access_token must be printable ASCII (no control characters)",
        ));
    }
    if body.refresh_token.as_deref().is_some_and(|t| !vschar(t)) {
        return Err(unprocessable(
            "refresh_token must be printable ASCII (no control characters)",
        ));
    }
    if body.expires_at.is_some() && body.expires_in.is_some() {
        return Err(unprocessable("give expires_at or expires_in, not both"));
    }
    let expires_at = body.expires_at.as_ref().map(parse_expires_at).transpose()?;
    let scopes = body
        .scopes
        .as_ref()
        .map(parse_scopes)
        .transpose()?
        .unwrap_or_default();
    let token_type = body.token_type.unwrap_or_else(|| "Bearer".into());
    if token_type.is_empty()
        || token_type.len() > 32
        || !token_type
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(unprocessable(
            "token_type must be a short token such as Bearer",
        ));
    }
    let conn = state
        .tokens
        .store_new(
            NewConnection {
                workspace_id: caller.workspace_id.clone(),
                provider,
                actor_type,
                actor_id,
                tokens: TokenSet {
                    access_token: SecretString::from(access_token),
                    refresh_token: body.refresh_token.map(SecretString::from),
                    token_type,
                    expires_in: body.expires_in,
                    scope: None,
                    id_token: None,
                },
                requested_scopes: scopes,
                expires_at,
                account: None,
            },
            "imported",
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(ConnectionView::from(&conn))))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TokenQuery {
    /// The token must stay valid at least this many seconds (refreshed first if not).
    min_ttl: Option<u64>,
    /// Refresh now, joining a refresh already in flight.
    force_refresh: Option<bool>,
}

/// An access token. The refresh token is never returned.
#[derive(Serialize, ToSchema)]
pub struct TokenView {
    access_token: String,
    token_type: String,
    expires_at: Option<String>,
    scopes: Vec<String>,
}

/// A fresh access token for the connection.
#[utoipa::path(get, path = "/connections/{id}/token", tag = "connections",
    params(("id" = String, Path), TokenQuery),
    responses(
        (status = 200, body = TokenView),
        (status = 400, body = ErrorEnvelope, description = "invalid_query: ill-typed or unknown parameter"),
        (status = 401, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope, description = "needs_reauth: the user must reconnect"),
        (status = 422, body = ErrorEnvelope, description = "validation_error: min_ttl over 86400"),
        (status = 503, body = ErrorEnvelope, description = "provider_unavailable: try again after Retry-After"),
    ),
    security(("api_key" = [])))]
pub async fn get_connection_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<TokenQuery>,
) -> Result<
    (
        [(axum::http::HeaderName, &'static str); 1],
        axum::Json<TokenView>,
    ),
    ApiError,
> {
    let id = parse_connection_id(&id)?;
    if q.min_ttl.is_some_and(|t| t > 86_400) {
        return Err(ApiError::validation(
            "min_ttl must be at most 86400 seconds",
        ));
    }
    let started = std::time::Instant::now();
    let result = state
        .tokens
        .token(
            &caller.workspace_id,
            &id,
            TokenRequest {
                min_ttl: q.min_ttl.map(Duration::from_secs),
                force_refresh: q.force_refresh.unwrap_or(false),
            },
        )
        .await;
    let read = AuditEvent::new(
        caller.workspace_id.clone(),
        AuditAction::TokenRead,
        state.clock.now(),
    )
    .connection_id(id.to_string());
    let issued = match result {
        Ok(issued) => issued,
        Err(e) => {
            // A refused read is recorded too, a read of a connection that does not exist (or
            // is another workspace's) included, so that probing shows in the trail (best
            // effort: the caller gets the original error either way).
            let read = match state.tokens.connection(&caller.workspace_id, &id).await {
                Ok(conn) => read.connection(&conn),
                Err(_) => read,
            };
            if !matches!(e, ServiceError::Audit(_))
                && let Err(audit_error) =
                    state.audit.record_access(read.failed(e.to_string())).await
            {
                tracing::warn!(error = %audit_error, "a refused token read could not be audited");
            }
            return Err(e.into());
        }
    };
    // No token leaves without its audit record queued (stored first with
    // `token_reads = "durable"`); a writer failing for `fail_after_secs` refuses it.
    state
        .audit
        .record_access(
            read.actor_id(issued.actor_id.to_string())
                .provider(issued.provider.to_string()),
        )
        .await
        .map_err(ServiceError::from)?;
    metrics::histogram!("token_read_seconds", "path" => issued.path.as_str())
        .record(started.elapsed().as_secs_f64());
    Ok((
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        axum::Json(TokenView {
            access_token: issued.access_token.expose_secret().to_owned(),
            token_type: issued.token_type,
            expires_at: issued.expires_at.map(|t| t.to_rfc3339()),
            scopes: issued.scopes.as_slice().to_vec(),
        }),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct DeletionView {
    deleted: bool,
    /// Whether the provider confirmed revoking the grant (RFC 7009).
    revoked: bool,
    revocation_note: Option<String>,
}

/// Revoke the grant at the provider where possible, then delete the connection.
#[utoipa::path(delete, path = "/connections/{id}", tag = "connections",
    params(("id" = String, Path)),
    responses((status = 200, body = DeletionView), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn delete_connection(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<DeletionView>, ApiError> {
    let id = parse_connection_id(&id)?;
    // The deletion and its audit record commit in one transaction (TokenService::delete).
    let d = state.tokens.delete(&caller.workspace_id, &id).await?;
    Ok(axum::Json(DeletionView {
        deleted: true,
        revoked: d.revoked,
        revocation_note: d.revocation_note,
    }))
}
