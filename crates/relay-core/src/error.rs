//! The errors services return. Each variant maps to one stable API error code in the server;
//! messages are safe to show (no tokens, no keys, no internal detail).

use std::time::Duration;

use crate::ids::InvalidValue;
use crate::vault::VaultError;

/// A storage adapter failed. The detail is for logs, never for API bodies.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("conflicting write: {0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Other(String),
    /// A change's audit record, written in the change's transaction, could not be stored: the
    /// change was rolled back with it.
    #[error("the audit record could not be stored: {0}")]
    Audit(String),
}

/// A change whose audit record was refused is an audit failure (503 `audit_unavailable`),
/// whichever store reported it.
impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Audit(m) => Self::Audit(crate::audit::AuditError::Unavailable(m)),
            other => Self::Store(other),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    InvalidInput(#[from] InvalidValue),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The user must reconnect; `reason` says why (e.g. `invalid_grant: Token has been revoked`).
    #[error("the connection needs to be re-authorized: {reason}")]
    NeedsReauth { reason: String },
    #[error("the connection was revoked")]
    Revoked,
    /// The provider did not answer usefully (timeout, 5xx, 429); the connection is unchanged.
    #[error("the provider is unavailable: {detail}")]
    ProviderUnavailable {
        detail: String,
        retry_after: Option<Duration>,
    },
    /// The provider refused a request in a way that is not the user's grant dying
    /// (misconfigured client, bad request).
    #[error("the provider refused the request: {detail}")]
    ProviderRejected { detail: String },
    /// `expected_subject` / `expected_email` were asked for a provider that cannot say who
    /// signed in (no verifiable ID token, no userinfo endpoint).
    #[error(
        "this provider cannot tell Relay which account signed in (no verifiable ID token and no userinfo_url), so expected_subject and expected_email cannot be checked"
    )]
    IdentityUnverifiable,
    #[error("a stored token could not be decrypted: {0}")]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Store(StoreError),
    /// The operation's audit record could not be stored, so the operation fails too.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}
