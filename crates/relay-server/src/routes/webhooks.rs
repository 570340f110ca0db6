//! The workspace's webhook signing secret (Standard Webhooks `whsec_...`): read it to verify
//! deliveries, rotate it with a grace period in which both secrets sign. Admin keys only (the
//! secret lets its holder forge deliveries); each read and rotation is an audit record.

use axum::extract::State;
use secrecy::ExposeSecret;
use serde::Serialize;
use utoipa::ToSchema;

use relay_core::audit::{AuditAction, AuditEvent};

use crate::auth::{AdminCaller, Caller};
use crate::error::{ApiError, ErrorEnvelope};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct WebhookSecret {
    /// `whsec_` followed by the base64 key; verify `webhook-signature` with it.
    secret: String,
}

#[derive(Serialize, ToSchema)]
pub struct RotatedWebhookSecret {
    secret: String,
    /// Until then deliveries carry a signature by the previous secret too. Only the current
    /// and the previous secret sign: an older one stops at this rotation.
    previous_valid_until: String,
}

/// The current webhook signing secret (created on first use).
#[utoipa::path(get, path = "/webhooks/secret", tag = "actions",
    responses((status = 200, body = WebhookSecret), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope, description = "`forbidden`: not an admin key")),
    security(("api_key" = [])))]
pub async fn get_webhook_secret(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
) -> Result<axum::Json<WebhookSecret>, ApiError> {
    let secret = state.actions.webhook_secret(&caller.workspace_id).await?;
    // No secret leaves without its audit record stored.
    audit(&state, &caller, AuditAction::WebhookSecretRead).await?;
    Ok(axum::Json(WebhookSecret {
        secret: secret.expose_secret().to_owned(),
    }))
}

/// Make a new webhook secret current; the old one keeps signing during the grace period.
#[utoipa::path(post, path = "/webhooks/secret/rotate", tag = "actions",
    responses((status = 200, body = RotatedWebhookSecret), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope, description = "`forbidden`: not an admin key"),
        (status = 409, body = ErrorEnvelope, description = "a concurrent rotation won")),
    security(("api_key" = [])))]
pub async fn rotate_webhook_secret(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
) -> Result<axum::Json<RotatedWebhookSecret>, ApiError> {
    // Make sure there is a secret to retire, so the first rotation has a grace period too.
    state.actions.webhook_secret(&caller.workspace_id).await?;
    let (secret, until) = state
        .actions
        .rotate_webhook_secret(&caller.workspace_id)
        .await?;
    audit(&state, &caller, AuditAction::WebhookSecretRotated).await?;
    tracing::info!(workspace_id = %caller.workspace_id, "webhook secret rotated");
    Ok(axum::Json(RotatedWebhookSecret {
        secret: secret.expose_secret().to_owned(),
        previous_valid_until: until.to_rfc3339(),
    }))
}

async fn audit(state: &AppState, caller: &Caller, action: AuditAction) -> Result<(), ApiError> {
    state
        .audit
        .record(
            AuditEvent::new(caller.workspace_id.clone(), action, state.clock.now())
                .api_key_id(caller.api_key_id.clone()),
        )
        .await
        .map_err(|e| ApiError::from(relay_core::ServiceError::from(e)))
}
