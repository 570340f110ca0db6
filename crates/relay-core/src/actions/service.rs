//! The action service: preview (validate, check the connection, render, store sealed) and
//! execute (claim once, fresh token, send, record, metrics). See the parent module for the
//! rules it enforces.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::SecretString;
use serde::Serialize;
use tracing::{info, warn};

use super::{
    ActionDescriptor, ActionError, ActionExecutor, ActionStore, Claim, ExecutionRecord,
    ExecutionRequest, PreviewRecord, WAIT_POLL, WebhookSecretRecord,
};
use crate::audit::{AuditAction, AuditEvent, AuditSink};
use crate::clock::{Clock, Timestamp};
use crate::connection::{Connection, ConnectionStatus};
use crate::error::ServiceError;
use crate::ids::{ActorId, ActorType, ConnectionId, ProviderName, WorkspaceId};
use crate::random;
use crate::refresh::{TokenRequest, TokenService};
use crate::vault::{Binding, Keyring};

/// Tunables, from the `[actions]` configuration table.
#[derive(Debug, Clone)]
pub struct ActionSettings {
    /// How long a preview can be executed.
    pub preview_ttl: Duration,
    /// A claim older than this without a result means its process died mid-send.
    pub in_doubt_after: Duration,
    /// How long a second caller waits for the first caller's result before answering
    /// `execution_in_progress`.
    pub max_wait: Duration,
    /// How long a rotated-out webhook secret keeps signing.
    pub webhook_secret_grace: Duration,
}

impl Default for ActionSettings {
    fn default() -> Self {
        Self {
            preview_ttl: Duration::from_secs(15 * 60),
            in_doubt_after: Duration::from_secs(120),
            max_wait: Duration::from_secs(30),
            webhook_secret_grace: Duration::from_secs(24 * 3600),
        }
    }
}

/// Who the action acts for: a connection id, or a provider and actor.
#[derive(Debug, Clone)]
pub enum ConnectionRef {
    Id(ConnectionId),
    Actor {
        provider: ProviderName,
        actor_type: ActorType,
        actor_id: ActorId,
    },
}

#[derive(Debug, Clone)]
pub struct PreviewRequest {
    pub action: String,
    pub connection: Option<ConnectionRef>,
    pub params: serde_json::Value,
}

/// What a preview returns.
#[derive(Debug, Clone, Serialize)]
pub struct PreviewView {
    pub preview_id: String,
    pub action: String,
    pub rendered: serde_json::Value,
    pub digest: String,
    pub expires_at: String,
}

/// What an execute returns.
#[derive(Debug, Clone)]
pub struct ExecuteOutcome {
    pub result: serde_json::Value,
    /// True when this is the stored result of an earlier execute.
    pub replayed: bool,
}

pub struct ActionService {
    store: Arc<dyn ActionStore>,
    tokens: Arc<TokenService>,
    executor: Arc<dyn ActionExecutor>,
    keyring: Arc<Keyring>,
    clock: Arc<dyn Clock>,
    settings: ActionSettings,
    /// Records previews and executions in the audit log; an execution whose record cannot be
    /// stored is reported as failed to the caller.
    audit: Option<Arc<dyn AuditSink>>,
}

pub(crate) const PREVIEW: &str = "preview";
pub(crate) const RESULT: &str = "result";
pub(crate) const WEBHOOK_SECRET: &str = "webhook_secret";

/// The stored form of an execution's outcome.
#[derive(Serialize, serde::Deserialize)]
struct StoredOutcome {
    ok: bool,
    #[serde(default)]
    result: serde_json::Value,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
}

impl ActionService {
    pub fn new(
        store: Arc<dyn ActionStore>,
        tokens: Arc<TokenService>,
        executor: Arc<dyn ActionExecutor>,
        keyring: Arc<Keyring>,
        clock: Arc<dyn Clock>,
        settings: ActionSettings,
    ) -> Self {
        for d in executor.descriptors() {
            register_metrics(d);
        }
        Self {
            store,
            tokens,
            executor,
            keyring,
            clock,
            settings,
            audit: None,
        }
    }

    /// Audits previews and executions through `audit`.
    pub fn with_audit(mut self, audit: Arc<dyn AuditSink>) -> Self {
        self.audit = Some(audit);
        self
    }

    async fn audit(&self, event: AuditEvent) -> Result<(), ActionError> {
        match &self.audit {
            Some(sink) => sink
                .record(event)
                .await
                .map_err(|e| ActionError::Service(ServiceError::Audit(e))),
            None => Ok(()),
        }
    }

    pub fn descriptors(&self) -> &[ActionDescriptor] {
        self.executor.descriptors()
    }

    pub fn executor(&self) -> &Arc<dyn ActionExecutor> {
        &self.executor
    }

    pub fn store(&self) -> &Arc<dyn ActionStore> {
        &self.store
    }

    fn descriptor(&self, action: &str) -> Result<&ActionDescriptor, ActionError> {
        self.descriptors()
            .iter()
            .find(|d| d.answers_to(action))
            .ok_or_else(|| ActionError::unknown_action(action, self.descriptors()))
    }

    /// Validates, checks the connection, renders and stores a preview. Sends nothing.
    pub async fn preview(
        &self,
        workspace: &WorkspaceId,
        req: PreviewRequest,
    ) -> Result<PreviewView, ActionError> {
        let descriptor = self.descriptor(&req.action)?;
        // Parameters first: bad input is a validation error whatever the connection.
        let rendered = self.executor.render(descriptor.name, &req.params).await?;
        let connection = if descriptor.needs_connection() {
            let reference = req.connection.as_ref().ok_or_else(|| {
                ActionError::Validation(format!(
                    "{} needs `connection_id`, or `provider` and `actor_id`",
                    descriptor.name
                ))
            })?;
            let conn = self.resolve(workspace, reference).await?;
            self.check_connection(descriptor, &conn)?;
            Some(conn)
        } else {
            None
        };
        let bytes = serde_json::to_vec(&rendered)
            .map_err(|e| ActionError::Validation(format!("cannot render: {e}")))?;
        let digest = format!("sha256:{}", random::sha256_hex(&bytes));
        let id = format!("prv_{}", uuid::Uuid::now_v7().simple());
        let now = self.clock.now();
        let expires_at = now.plus(self.settings.preview_ttl);
        let payload = self.keyring.seal(&bytes, binding(workspace, &id, PREVIEW));
        self.store
            .insert_preview(&PreviewRecord {
                id: id.clone(),
                workspace_id: workspace.clone(),
                action: descriptor.name.to_owned(),
                connection_id: connection.as_ref().map(|c| c.id.clone()),
                digest: digest.clone(),
                payload,
                created_at: now,
                expires_at,
            })
            .await
            .map_err(ServiceError::from)?;
        let mut event = AuditEvent::new(workspace.clone(), AuditAction::ActionPreviewed, now)
            .detail(format!("{} {id}", descriptor.name));
        if let Some(conn) = &connection {
            event = event.connection(conn);
        }
        self.audit(event).await?;
        info!(preview_id = %id, action = descriptor.name, "action previewed");
        Ok(PreviewView {
            preview_id: id,
            action: descriptor.name.to_owned(),
            rendered,
            digest,
            expires_at: expires_at.to_rfc3339(),
        })
    }

    async fn resolve(
        &self,
        workspace: &WorkspaceId,
        reference: &ConnectionRef,
    ) -> Result<Connection, ActionError> {
        let missing = || {
            ActionError::TokenMissing(
                "no connection for this actor and provider; connect the account first".into(),
            )
        };
        match reference {
            ConnectionRef::Id(id) => match self.tokens.connection(workspace, id).await {
                Ok(conn) => Ok(conn),
                Err(ServiceError::NotFound(_)) => Err(missing()),
                Err(e) => Err(e.into()),
            },
            ConnectionRef::Actor {
                provider,
                actor_type,
                actor_id,
            } => self
                .tokens
                .find(workspace, provider, actor_type, actor_id)
                .await?
                .ok_or_else(missing),
        }
    }

    fn check_connection(
        &self,
        descriptor: &ActionDescriptor,
        conn: &Connection,
    ) -> Result<(), ActionError> {
        let facts = self
            .executor
            .provider_facts(&conn.provider)
            .ok_or_else(|| {
                ActionError::Validation(format!(
                    "the connection's provider {} is not configured",
                    conn.provider
                ))
            })?;
        if facts.family != descriptor.family {
            return Err(ActionError::Validation(format!(
                "{} needs a {} connection; this one is {}",
                descriptor.name,
                descriptor.family.as_str(),
                conn.provider
            )));
        }
        match conn.status {
            ConnectionStatus::Active => {}
            ConnectionStatus::NeedsReauth => {
                return Err(ActionError::TokenExpired(
                    "the connection needs to be re-authorized: the user must reconnect".into(),
                ));
            }
            ConnectionStatus::Revoked => {
                return Err(ActionError::TokenMissing(
                    "the connection was revoked; connect the account again".into(),
                ));
            }
        }
        if !descriptor.scopes_satisfied(&conn.scopes) {
            return Err(ActionError::ScopeMissing(format!(
                "{} needs the scope {}; the user must reconnect granting it",
                descriptor.name,
                descriptor.scopes.join(" ")
            )));
        }
        Ok(())
    }

    /// Executes a preview once. A second call (same preview, or same idempotency key) gets
    /// the first result without sending again.
    pub async fn execute(
        &self,
        workspace: &WorkspaceId,
        preview_id: &str,
        idempotency_key: Option<&str>,
    ) -> Result<ExecuteOutcome, ActionError> {
        if let Some(key) = idempotency_key
            && (key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(ActionError::Validation(
                "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
            ));
        }
        let preview = self
            .store
            .get_preview(workspace, preview_id)
            .await
            .map_err(ServiceError::from)?
            .ok_or(ActionError::PreviewNotFound)?;
        let descriptor = self.descriptor(&preview.action)?.clone();
        let started = Instant::now();
        let waited_since = self.clock.now();
        loop {
            let now = self.clock.now();
            let claim = ExecutionRecord {
                workspace_id: workspace.clone(),
                preview_id: preview.id.clone(),
                idempotency_key: idempotency_key.map(str::to_owned),
                claimed_at: now,
                completed_at: None,
                outcome: None,
            };
            match self
                .store
                .claim_execution(&claim)
                .await
                .map_err(ServiceError::from)?
            {
                Claim::Claimed => {
                    // Expiry is checked after the claim lookup so that a replay of an
                    // executed preview still answers after the preview expired.
                    if now >= preview.expires_at {
                        self.release(workspace, &preview.id).await;
                        return Err(ActionError::PreviewExpired);
                    }
                    let outcome = self.perform(&descriptor, &preview).await;
                    self.record(&descriptor, &preview, &outcome, started).await;
                    let mut event = AuditEvent::new(
                        workspace.clone(),
                        AuditAction::ActionExecuted,
                        self.clock.now(),
                    )
                    .detail(format!("{} {}", descriptor.name, preview.id));
                    if let Some(id) = &preview.connection_id {
                        event = event.connection_id(id.as_str());
                    }
                    if let Err(e) = &outcome {
                        event = event.failed(e.reason());
                    }
                    self.audit(event).await?;
                    return outcome.map(|result| ExecuteOutcome {
                        result,
                        replayed: false,
                    });
                }
                Claim::Existing(existing) => {
                    if existing.preview_id != preview.id {
                        return Err(ActionError::IdempotencyKeyReused);
                    }
                    if let Some(sealed) = &existing.outcome {
                        return self.replay(workspace, &preview.id, sealed);
                    }
                    if existing.claimed_at.plus(self.settings.in_doubt_after) <= now {
                        return Err(ActionError::InDoubt);
                    }
                    if waited_since.plus(self.settings.max_wait) <= now {
                        return Err(ActionError::InProgress);
                    }
                    // The first caller is sending; wait for its result (or for its release,
                    // then try to claim again).
                    tokio::time::sleep(WAIT_POLL).await;
                }
            }
        }
    }

    async fn release(&self, workspace: &WorkspaceId, preview_id: &str) {
        if let Err(e) = self.store.release_execution(workspace, preview_id).await {
            warn!(error = %e, preview_id, "releasing an execution claim failed; the preview stays claimed");
        }
    }

    fn replay(
        &self,
        workspace: &WorkspaceId,
        preview_id: &str,
        sealed: &[u8],
    ) -> Result<ExecuteOutcome, ActionError> {
        let bytes = self
            .keyring
            .open(sealed, binding(workspace, preview_id, RESULT))
            .map_err(ServiceError::from)?;
        let stored: StoredOutcome = serde_json::from_slice(&bytes).map_err(|e| {
            ServiceError::Store(crate::error::StoreError::Other(format!(
                "stored outcome unreadable: {e}"
            )))
        })?;
        if stored.ok {
            Ok(ExecuteOutcome {
                result: stored.result,
                replayed: true,
            })
        } else {
            Err(ActionError::from_reason(&stored.reason, stored.message))
        }
    }

    /// Performs a claimed execution: gates, fresh token, the provider call, 401 handling.
    async fn perform(
        &self,
        descriptor: &ActionDescriptor,
        preview: &PreviewRecord,
    ) -> Result<serde_json::Value, ActionError> {
        let workspace = &preview.workspace_id;
        let bytes = self
            .keyring
            .open(&preview.payload, binding(workspace, &preview.id, PREVIEW))
            .map_err(ServiceError::from)?;
        let rendered: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            ServiceError::Store(crate::error::StoreError::Other(format!(
                "stored preview unreadable: {e}"
            )))
        })?;
        let secrets = if descriptor.api == super::Api::Webhook {
            self.webhook_signing_secrets(workspace).await?
        } else {
            Vec::new()
        };
        let Some(connection_id) = &preview.connection_id else {
            return self
                .executor
                .execute(ExecutionRequest {
                    action: descriptor.name,
                    workspace,
                    preview_id: &preview.id,
                    provider: None,
                    rendered: &rendered,
                    access_token: None,
                    webhook_secrets: &secrets,
                })
                .await;
        };
        let conn = self
            .resolve(workspace, &ConnectionRef::Id(connection_id.clone()))
            .await?;
        let facts = self
            .executor
            .provider_facts(&conn.provider)
            .ok_or_else(|| {
                ActionError::Validation(format!("provider {} is not configured", conn.provider))
            })?;
        if !facts.enabled {
            return Err(ActionError::ProviderDisabled(
                conn.provider.to_string(),
                conn.provider
                    .as_str()
                    .to_ascii_uppercase()
                    .replace('-', "_"),
            ));
        }
        self.check_connection(descriptor, &conn)?;
        let mut forced = false;
        loop {
            let token = self
                .tokens
                .token(
                    workspace,
                    connection_id,
                    TokenRequest {
                        min_ttl: Some(Duration::from_secs(60)),
                        force_refresh: forced,
                    },
                )
                .await
                .map_err(token_error)?;
            let outcome = self
                .executor
                .execute(ExecutionRequest {
                    action: descriptor.name,
                    workspace,
                    preview_id: &preview.id,
                    provider: Some(&conn.provider),
                    rendered: &rendered,
                    access_token: Some(&token.access_token),
                    webhook_secrets: &secrets,
                })
                .await;
            match outcome {
                Err(ActionError::Unauthorized) if !forced => {
                    info!(connection_id = %connection_id, "provider API answered 401; forcing one refresh");
                    forced = true;
                }
                Err(ActionError::Unauthorized) => {
                    let reason = format!(
                        "{} rejected a freshly refreshed token (401)",
                        descriptor.api.as_str()
                    );
                    self.tokens
                        .mark_rejected_by_api(workspace, connection_id, &reason)
                        .await?;
                    return Err(ActionError::TokenExpired(format!(
                        "{reason}; the user must reconnect"
                    )));
                }
                other => return other,
            }
        }
    }

    async fn record(
        &self,
        descriptor: &ActionDescriptor,
        preview: &PreviewRecord,
        outcome: &Result<serde_json::Value, ActionError>,
        started: Instant,
    ) {
        let workspace = &preview.workspace_id;
        let provider = descriptor.family.as_str();
        metrics::histogram!("action_latency_seconds", "provider" => provider, "action" => descriptor.name)
            .record(started.elapsed().as_secs_f64());
        let stored = match outcome {
            Ok(result) => {
                metrics::counter!("action_exec_total", "provider" => provider, "action" => descriptor.name, "status" => "ok").increment(1);
                info!(preview_id = %preview.id, action = descriptor.name, "action executed");
                StoredOutcome {
                    ok: true,
                    result: result.clone(),
                    reason: String::new(),
                    message: String::new(),
                }
            }
            Err(e) => {
                metrics::counter!("action_exec_total", "provider" => provider, "action" => descriptor.name, "status" => "error").increment(1);
                metrics::counter!("action_error_total", "provider" => provider, "action" => descriptor.name, "reason" => e.reason()).increment(1);
                warn!(preview_id = %preview.id, action = descriptor.name, reason = e.reason(), error = %e, "action failed");
                if e.nothing_sent() {
                    self.release(workspace, &preview.id).await;
                    return;
                }
                StoredOutcome {
                    ok: false,
                    result: serde_json::Value::Null,
                    reason: e.reason().to_owned(),
                    message: e.to_string(),
                }
            }
        };
        let Ok(bytes) = serde_json::to_vec(&stored) else {
            return;
        };
        let sealed = self
            .keyring
            .seal(&bytes, binding(workspace, &preview.id, RESULT));
        match self
            .store
            .complete_execution(workspace, &preview.id, &sealed, self.clock.now())
            .await
        {
            Ok(true) => {}
            Ok(false) => warn!(preview_id = %preview.id, "execution outcome was already recorded"),
            // The claim stays without a result: later executes answer execution_in_doubt,
            // which is the truth (we cannot prove what happened to the record).
            Err(e) => {
                warn!(error = %e, preview_id = %preview.id, "recording the execution outcome failed")
            }
        }
    }

    /// Counts an error that happened before any execution was claimed (preview errors,
    /// unknown previews), so `action_error_total` sees every refusal.
    pub fn count_error(&self, action: &str, err: &ActionError) {
        let (provider, name) = match self.descriptors().iter().find(|d| d.answers_to(action)) {
            Some(d) => (d.family.as_str(), d.name),
            None => ("unknown", "unknown"),
        };
        metrics::counter!("action_error_total", "provider" => provider, "action" => name, "reason" => err.reason()).increment(1);
    }

    // -- webhook secrets --

    /// The workspace's current webhook secret (`whsec_...`), created on first use.
    pub async fn webhook_secret(
        &self,
        workspace: &WorkspaceId,
    ) -> Result<SecretString, ActionError> {
        let now = self.clock.now();
        let current = self.current_secret(workspace, now).await?;
        if let Some(rec) = current {
            return self.open_secret(&rec);
        }
        let rec = self.new_secret(workspace, now);
        self.store
            .insert_first_webhook_secret(&rec)
            .await
            .map_err(ServiceError::from)?;
        // Whether ours or a concurrent caller's was stored, the current one is the answer.
        let current = self.current_secret(workspace, now).await?.ok_or_else(|| {
            ServiceError::Store(crate::error::StoreError::Other(
                "webhook secret vanished".into(),
            ))
        })?;
        self.open_secret(&current)
    }

    /// Makes a new current secret; the old one keeps signing for the grace period.
    pub async fn rotate_webhook_secret(
        &self,
        workspace: &WorkspaceId,
    ) -> Result<(SecretString, Timestamp), ActionError> {
        let now = self.clock.now();
        let rec = self.new_secret(workspace, now);
        let retire_at = now.plus(self.settings.webhook_secret_grace);
        self.store
            .rotate_webhook_secret(&rec, retire_at)
            .await
            .map_err(ServiceError::from)?;
        Ok((self.open_secret(&rec)?, retire_at))
    }

    async fn current_secret(
        &self,
        workspace: &WorkspaceId,
        now: Timestamp,
    ) -> Result<Option<WebhookSecretRecord>, ActionError> {
        Ok(self
            .store
            .webhook_secrets(workspace, now)
            .await
            .map_err(ServiceError::from)?
            .into_iter()
            .find(|s| s.retires_at.is_none()))
    }

    async fn webhook_signing_secrets(
        &self,
        workspace: &WorkspaceId,
    ) -> Result<Vec<SecretString>, ActionError> {
        // Ensures a current secret exists, so the first webhook is signed too.
        self.webhook_secret(workspace).await?;
        let now = self.clock.now();
        let mut records = self
            .store
            .webhook_secrets(workspace, now)
            .await
            .map_err(ServiceError::from)?;
        records.sort_by_key(|r| r.retires_at.is_some());
        records.iter().map(|r| self.open_secret(r)).collect()
    }

    fn new_secret(&self, workspace: &WorkspaceId, now: Timestamp) -> WebhookSecretRecord {
        let id = format!("whs_{}", uuid::Uuid::now_v7().simple());
        let secret = format!("whsec_{}", STANDARD.encode(random::bytes::<32>()));
        let sealed = self
            .keyring
            .seal(secret.as_bytes(), binding(workspace, &id, WEBHOOK_SECRET));
        WebhookSecretRecord {
            id,
            workspace_id: workspace.clone(),
            secret: sealed,
            created_at: now,
            retires_at: None,
        }
    }

    fn open_secret(&self, rec: &WebhookSecretRecord) -> Result<SecretString, ActionError> {
        let s = self
            .keyring
            .open_string(
                &rec.secret,
                binding(&rec.workspace_id, &rec.id, WEBHOOK_SECRET),
            )
            .map_err(ServiceError::from)?;
        Ok(SecretString::from(s.as_str()))
    }
}

fn binding<'a>(workspace: &'a WorkspaceId, record: &'a str, column: &'a str) -> Binding<'a> {
    Binding {
        workspace: workspace.as_str(),
        record,
        column,
    }
}

/// Token-service errors in the action vocabulary.
fn token_error(e: ServiceError) -> ActionError {
    match e {
        ServiceError::NotFound(_) | ServiceError::Revoked => ActionError::TokenMissing(
            "the connection no longer exists or was revoked; connect the account again".into(),
        ),
        ServiceError::NeedsReauth { reason } => ActionError::TokenExpired(format!(
            "the connection needs to be re-authorized ({reason})"
        )),
        ServiceError::ProviderUnavailable { detail, .. } => {
            ActionError::ConnectionFailed(format!("the token could not be refreshed: {detail}"))
        }
        other => ActionError::Service(other),
    }
}

/// Every series at zero from the start, so dashboards and alerts see them.
fn register_metrics(d: &ActionDescriptor) {
    let provider = d.family.as_str();
    for status in ["success", "error"] {
        metrics::counter!("action_exec_total", "provider" => provider, "action" => d.name, "status" => status).increment(0);
    }
}
