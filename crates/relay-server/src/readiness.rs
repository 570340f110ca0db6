//! Readiness checks other components contribute to `/ready` (the Redis connection, each
//! provider's circuit breaker, the audit writer). The database and the encryption key are
//! checked by `/ready` itself; every check here runs with a 2 s budget.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use relay_core::audit::AuditLog;

/// The outcome of one check. `detail` is shown in `/ready`: never a URL with credentials,
/// never a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub ok: bool,
    pub detail: Option<String>,
}

impl CheckResult {
    pub fn ok() -> Self {
        Self {
            ok: true,
            detail: None,
        }
    }

    pub fn failed(detail: impl Into<String>) -> Self {
        Self {
            ok: false,
            detail: Some(detail.into()),
        }
    }
}

/// One line of `/ready`.
#[async_trait]
pub trait ReadinessCheck: Send + Sync + 'static {
    /// The key in `/ready`'s `checks` (e.g. `redis`, `audit_writer`).
    fn name(&self) -> String;
    /// A failing required check makes `/ready` answer 503; an optional one is only reported.
    fn required(&self) -> bool;
    async fn check(&self) -> CheckResult;
}

/// Time allowed to each check.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs a check within [`CHECK_TIMEOUT`].
pub async fn run(check: &Arc<dyn ReadinessCheck>) -> CheckResult {
    match tokio::time::timeout(CHECK_TIMEOUT, check.check()).await {
        Ok(r) => r,
        Err(_) => CheckResult::failed("did not answer within 2 s"),
    }
}

/// The audit writer must run: without it every audited operation fails.
pub struct AuditWriterCheck(pub AuditLog);

#[async_trait]
impl ReadinessCheck for AuditWriterCheck {
    fn name(&self) -> String {
        "audit_writer".to_owned()
    }

    fn required(&self) -> bool {
        true
    }

    async fn check(&self) -> CheckResult {
        match self.0.failure() {
            None => CheckResult::ok(),
            Some(why) => CheckResult::failed(why),
        }
    }
}
