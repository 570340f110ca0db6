//! Actions: an application asks Relay to do something in a user's account. Relay first shows
//! exactly what it would send (a preview, stored sealed), then sends it once (execute).
//!
//! This module holds the domain: action descriptors, the error reasons (a bounded, stable
//! set), the records previews and executions are stored as, the two ports (`ActionStore` for
//! storage, `ActionExecutor` for rendering and talking to provider APIs) and the
//! [`ActionService`] that enforces the rules:
//!
//! * a preview checks the connection (exists, active, has the scopes) and renders the request;
//!   nothing is sent;
//! * an execute claims the preview with a unique row **before** sending, so concurrent
//!   executes (in one process or across replicas) send once and the others return the first
//!   result; a claim without a result that is older than `in_doubt_after` means a process died
//!   mid-send, and is reported as `execution_in_doubt` instead of being sent again;
//! * a 401 from the provider API forces one refresh and one retry; a second 401 marks the
//!   connection `needs_reauth`.

pub(crate) mod service;

pub use service::{
    ActionService, ActionSettings, ConnectionRef, ExecuteOutcome, PreviewRequest, PreviewView,
};

use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;
use serde::Serialize;

use crate::clock::Timestamp;
use crate::error::StoreError;
use crate::ids::{ConnectionId, ProviderName, WorkspaceId};

/// What an action does to the world, so callers can decide how careful to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SideEffect {
    Read,
    Write,
    Send,
}

/// The provider API an action talks to; names the `{api}_4xx` / `{api}_5xx` reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    Gmail,
    Drive,
    Outlook,
    Webhook,
}

impl Api {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gmail => "gmail",
            Self::Drive => "drive",
            Self::Outlook => "outlook",
            Self::Webhook => "webhook",
        }
    }

    fn code_4xx(self) -> &'static str {
        match self {
            Self::Gmail => "gmail_4xx",
            Self::Drive => "drive_4xx",
            Self::Outlook => "outlook_4xx",
            Self::Webhook => "webhook_4xx",
        }
    }

    fn code_5xx(self) -> &'static str {
        match self {
            Self::Gmail => "gmail_5xx",
            Self::Drive => "drive_5xx",
            Self::Outlook => "outlook_5xx",
            Self::Webhook => "webhook_5xx",
        }
    }
}

/// Which kind of provider connection an action needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderFamily {
    Google,
    Microsoft,
    /// No connection: the action carries its own destination (webhooks).
    None,
}

impl ProviderFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Google => "google",
            Self::Microsoft => "microsoft",
            Self::None => "webhook",
        }
    }
}

/// One action, as `GET /actions` lists it.
#[derive(Debug, Clone)]
pub struct ActionDescriptor {
    /// The canonical name: what previews, audit records and metrics carry.
    pub name: &'static str,
    /// Other names callers may use (those of the services Relay replaces, e.g.
    /// `gmail.send_email`); they resolve to `name` before anything is stored or counted.
    pub aliases: Vec<&'static str>,
    pub family: ProviderFamily,
    pub api: Api,
    pub description: &'static str,
    pub side_effect: SideEffect,
    /// The scope to request for this action.
    pub scopes: Vec<&'static str>,
    /// Any one of these granted scopes is enough (broader scopes include the narrow one).
    pub accepted_scopes: Vec<&'static str>,
    /// JSON Schema of the parameters, generated from the struct that parses them.
    pub params_schema: serde_json::Value,
}

impl ActionDescriptor {
    /// Whether `action` names this action, by its canonical name or an alias.
    pub fn answers_to(&self, action: &str) -> bool {
        self.name == action || self.aliases.contains(&action)
    }

    pub fn needs_connection(&self) -> bool {
        self.family != ProviderFamily::None
    }

    /// Whether granted scopes satisfy the action. Scope comparison ignores case and a
    /// `https://graph.microsoft.com/` prefix, as Microsoft reports both spellings.
    pub fn scopes_satisfied(&self, granted: &crate::ids::Scopes) -> bool {
        if self.accepted_scopes.is_empty() {
            return true;
        }
        let norm = |s: &str| {
            s.trim_start_matches("https://graph.microsoft.com/")
                .to_ascii_lowercase()
        };
        granted.iter().any(|g| {
            let g = norm(g);
            self.accepted_scopes.iter().any(|a| norm(a) == g)
        })
    }
}

/// Facts about a configured provider the action rules need.
#[derive(Debug, Clone)]
pub struct ProviderFacts {
    pub family: ProviderFamily,
    /// `PROVIDER_{NAME}_ENABLED`: whether actions may execute against it.
    pub enabled: bool,
}

/// Why an action failed. Each variant has one stable reason code (see [`ActionError::reason`]).
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("{0}")]
    Validation(String),
    /// The name asked for (cut to 64 characters) and the list of known names.
    #[error("unknown action {name:?}; known actions: {known}")]
    UnknownAction { name: String, known: String },
    #[error("the provider {0} is disabled; set PROVIDER_{1}_ENABLED=true to execute actions")]
    ProviderDisabled(String, String),
    #[error("{0}")]
    TokenMissing(String),
    #[error("{0}")]
    TokenExpired(String),
    #[error("{0}")]
    ScopeMissing(String),
    /// The provider API answered 401 (internal: triggers the forced refresh).
    #[error("the provider rejected the access token")]
    Unauthorized,
    #[error("{api} answered {status}: {message}", api = api.as_str())]
    Upstream4xx {
        api: Api,
        status: u16,
        message: String,
    },
    #[error("{api} answered {status}: {message}", api = api.as_str())]
    Upstream5xx {
        api: Api,
        status: u16,
        message: String,
    },
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    ConnectionFailed(String),
    #[error("{0}")]
    DestinationBlocked(String),
    #[error("the circuit breaker for {0} is open after repeated failures; try again later")]
    CircuitOpen(String, Duration),
    #[error("{0}")]
    UnsupportedFileType(String),
    #[error("{0}")]
    FileTooLarge(String),
    #[error("preview not found")]
    PreviewNotFound,
    #[error("the preview expired; create a new one")]
    PreviewExpired,
    #[error("this Idempotency-Key was used for another preview")]
    IdempotencyKeyReused,
    #[error("another execute of this preview is still running; retry shortly")]
    InProgress,
    #[error(
        "an earlier execute of this preview started but never recorded a result (the process may have stopped mid-send); it is not sent again"
    )]
    InDoubt,
    /// A stored failure, replayed to a second execute of the same preview.
    #[error("{message}")]
    Replayed {
        reason: &'static str,
        message: String,
    },
    #[error(transparent)]
    Service(#[from] crate::error::ServiceError),
}

/// Every reason code an action error can carry (metrics labels and replays use these).
pub const REASONS: &[&str] = &[
    "validation_error",
    "provider_disabled",
    "oauth_token_missing",
    "oauth_token_expired",
    "scope_missing",
    "gmail_4xx",
    "gmail_5xx",
    "drive_4xx",
    "drive_5xx",
    "outlook_4xx",
    "outlook_5xx",
    "webhook_4xx",
    "webhook_5xx",
    "timeout",
    "connection_failed",
    "destination_blocked",
    "circuit_open",
    "unsupported_file_type",
    "file_too_large",
    "not_found",
    "preview_expired",
    "idempotency_key_reused",
    "execution_in_progress",
    "execution_in_doubt",
    "internal_error",
];

impl ActionError {
    /// An unknown action name, with every known name (aliases in parentheses) in the message,
    /// so a caller with a typo sees what it could have meant.
    pub fn unknown_action(name: &str, descriptors: &[ActionDescriptor]) -> Self {
        let known = descriptors
            .iter()
            .map(|d| {
                if d.aliases.is_empty() {
                    d.name.to_owned()
                } else {
                    format!("{} (also {})", d.name, d.aliases.join(", "))
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        Self::UnknownAction {
            name: name.chars().take(64).collect(),
            known,
        }
    }

    /// The stable reason code.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Validation(_) => "validation_error",
            Self::UnknownAction { .. } => "validation_error",
            Self::ProviderDisabled(..) => "provider_disabled",
            Self::TokenMissing(_) => "oauth_token_missing",
            Self::TokenExpired(_) | Self::Unauthorized => "oauth_token_expired",
            Self::ScopeMissing(_) => "scope_missing",
            Self::Upstream4xx { api, .. } => api.code_4xx(),
            Self::Upstream5xx { api, .. } => api.code_5xx(),
            Self::Timeout(_) => "timeout",
            Self::ConnectionFailed(_) => "connection_failed",
            Self::DestinationBlocked(_) => "destination_blocked",
            Self::CircuitOpen(..) => "circuit_open",
            Self::UnsupportedFileType(_) => "unsupported_file_type",
            Self::FileTooLarge(_) => "file_too_large",
            Self::PreviewNotFound => "not_found",
            Self::PreviewExpired => "preview_expired",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::InProgress => "execution_in_progress",
            Self::InDoubt => "execution_in_doubt",
            Self::Replayed { reason, .. } => reason,
            Self::Service(_) => "internal_error",
        }
    }

    /// Whether the failure proves nothing reached the provider, so the execution claim can
    /// be released and the same preview executed again later (after a reconnect, say).
    pub fn nothing_sent(&self) -> bool {
        matches!(
            self,
            Self::Validation(_)
                | Self::UnknownAction { .. }
                | Self::ProviderDisabled(..)
                | Self::TokenMissing(_)
                | Self::TokenExpired(_)
                | Self::Unauthorized
                | Self::ScopeMissing(_)
                | Self::ConnectionFailed(_)
                | Self::DestinationBlocked(_)
                | Self::CircuitOpen(..)
                | Self::Service(_)
        )
    }

    fn from_reason(reason: &str, message: String) -> Self {
        let reason = REASONS
            .iter()
            .find(|r| **r == reason)
            .copied()
            .unwrap_or("internal_error");
        Self::Replayed { reason, message }
    }
}

/// A stored preview. `payload` is the rendered request, sealed with the keyring (binding:
/// workspace, preview id, `preview`), since it can hold message bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewRecord {
    pub id: String,
    pub workspace_id: WorkspaceId,
    pub action: String,
    pub connection_id: Option<ConnectionId>,
    pub digest: String,
    pub payload: Vec<u8>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// One execution of a preview: claimed first (no outcome), completed with a sealed outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionRecord {
    pub workspace_id: WorkspaceId,
    pub preview_id: String,
    pub idempotency_key: Option<String>,
    pub claimed_at: Timestamp,
    pub completed_at: Option<Timestamp>,
    /// Sealed JSON (binding: workspace, preview id, `result`).
    pub outcome: Option<Vec<u8>>,
}

/// The result of trying to claim an execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This caller holds the claim and must send.
    Claimed,
    /// A row for this preview or this idempotency key exists already.
    Existing(ExecutionRecord),
}

/// A workspace's webhook signing secret, sealed (binding: workspace, id, `webhook_secret`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSecretRecord {
    pub id: String,
    pub workspace_id: WorkspaceId,
    pub secret: Vec<u8>,
    pub created_at: Timestamp,
    /// `None` for the current secret; set when it was rotated out (still signs until then).
    pub retires_at: Option<Timestamp>,
}

/// Storage for previews, executions and webhook secrets.
#[async_trait]
pub trait ActionStore: Send + Sync + 'static {
    async fn insert_preview(&self, preview: &PreviewRecord) -> Result<(), StoreError>;
    /// The preview, only if it belongs to `workspace`.
    async fn get_preview(
        &self,
        workspace: &WorkspaceId,
        id: &str,
    ) -> Result<Option<PreviewRecord>, StoreError>;
    /// Deletes previews that expired before `now` and have no execution; returns how many.
    async fn purge_expired_previews(&self, now: Timestamp) -> Result<u64, StoreError>;

    /// Inserts the claim unless a row with the same (workspace, preview) or (workspace,
    /// idempotency key) exists; atomic, so of concurrent callers exactly one gets `Claimed`.
    async fn claim_execution(&self, claim: &ExecutionRecord) -> Result<Claim, StoreError>;
    async fn get_execution(
        &self,
        workspace: &WorkspaceId,
        preview_id: &str,
    ) -> Result<Option<ExecutionRecord>, StoreError>;
    /// Records the outcome of a claimed execution (once; `false` when already completed or
    /// no longer claimed).
    async fn complete_execution(
        &self,
        workspace: &WorkspaceId,
        preview_id: &str,
        outcome: &[u8],
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Deletes an uncompleted claim (nothing was sent), so the preview can be executed again.
    async fn release_execution(
        &self,
        workspace: &WorkspaceId,
        preview_id: &str,
    ) -> Result<(), StoreError>;

    /// The current secret (first) and those still in their grace period at `now`.
    async fn webhook_secrets(
        &self,
        workspace: &WorkspaceId,
        now: Timestamp,
    ) -> Result<Vec<WebhookSecretRecord>, StoreError>;
    /// Stores the workspace's first secret; `false` when it already has a current one.
    async fn insert_first_webhook_secret(
        &self,
        secret: &WebhookSecretRecord,
    ) -> Result<bool, StoreError>;
    /// Retires the current secret at `retire_at` and makes `secret` current, atomically; a
    /// secret rotated out before stops signing at `secret.created_at` (only the current and the
    /// previous secret sign).
    async fn rotate_webhook_secret(
        &self,
        secret: &WebhookSecretRecord,
        retire_at: Timestamp,
    ) -> Result<(), StoreError>;
}

/// What the executor needs to perform one rendered action.
pub struct ExecutionRequest<'a> {
    pub action: &'a str,
    pub workspace: &'a WorkspaceId,
    pub preview_id: &'a str,
    /// The provider of the connection, when the action has one.
    pub provider: Option<&'a ProviderName>,
    pub rendered: &'a serde_json::Value,
    pub access_token: Option<&'a SecretString>,
    /// Webhook signing secrets (`whsec_...`), current first.
    pub webhook_secrets: &'a [SecretString],
}

/// A circuit breaker's state, for `/ready`: one per (provider, API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BreakerSnapshot {
    pub provider: String,
    /// `gmail`, `drive` or `outlook` ([`Api::as_str`]).
    pub api: &'static str,
    /// `closed`, `half_open` or `open`.
    pub state: &'static str,
}

/// Renders and performs actions against provider APIs (implemented in `relay-providers`).
#[async_trait]
pub trait ActionExecutor: Send + Sync + 'static {
    fn descriptors(&self) -> &[ActionDescriptor];
    fn provider_facts(&self, provider: &ProviderName) -> Option<ProviderFacts>;
    /// Parses and validates the parameters, and renders exactly what would be sent.
    async fn render(
        &self,
        action: &str,
        params: &serde_json::Value,
    ) -> Result<serde_json::Value, ActionError>;
    async fn execute(&self, req: ExecutionRequest<'_>) -> Result<serde_json::Value, ActionError>;
    fn breakers(&self) -> Vec<BreakerSnapshot>;
}

/// How long to wait between looks at another caller's execution.
pub(crate) const WAIT_POLL: Duration = Duration::from_millis(25);
