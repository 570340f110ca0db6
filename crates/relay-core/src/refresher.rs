//! The background refresher: refreshes connections before any reader needs them, so that a
//! token read almost never waits for a provider.
//!
//! One step ([`TokenService::refresh_due`]) claims a batch of due connections (the claim sets
//! their row lease in the same statement, so replicas running the step at once get disjoint
//! batches) and refreshes each through the same protocol as a read: the provider call under
//! the lease, then the compare-and-swap write. Failures schedule the next attempt with backoff
//! and never change the status, except `invalid_grant`, which marks the connection
//! `needs_reauth` exactly as a read would. [`run`] repeats the step until shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::clock::Timestamp;
use crate::coordination::DueConnections;
use crate::error::ServiceError;
use crate::random;
use crate::refresh::{TokenRequest, TokenService};

/// What one step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    pub claimed: usize,
    pub refreshed: usize,
    /// Transient failures: retried later with backoff, status unchanged.
    pub failed: usize,
    /// The grant is dead (`needs_reauth`) or the connection was revoked.
    pub needs_reauth: usize,
}

impl TokenService {
    /// Claims up to `limit` connections due at `now` and refreshes them, a few at a time.
    pub async fn refresh_due(
        &self,
        due: &dyn DueConnections,
        now: Timestamp,
        limit: u32,
    ) -> Result<Outcome, ServiceError> {
        let owner = format!("bg:{}", random::token());
        let until = now.plus(self.policy().lease);
        let claimed = due.claim_due(&owner, now, until, limit).await?;
        let mut outcome = Outcome {
            claimed: claimed.len(),
            ..Outcome::default()
        };
        let force = TokenRequest {
            min_ttl: None,
            force_refresh: true,
        };
        for leased in claimed {
            let id = leased.id.clone();
            match self.refresh_under_lease(leased, &owner, force).await {
                Ok(_) => {
                    outcome.refreshed += 1;
                    record("refreshed");
                }
                Err(ServiceError::NeedsReauth { .. } | ServiceError::Revoked) => {
                    outcome.needs_reauth += 1;
                    record("needs_reauth");
                }
                Err(e) => {
                    outcome.failed += 1;
                    record("failed");
                    debug!(connection_id = %id, error = %e, "background refresh failed; retried later");
                }
            }
        }
        Ok(outcome)
    }
}

fn record(outcome: &'static str) {
    metrics::counter!("background_refresh_total", "outcome" => outcome).increment(1);
}

/// How the loop paces itself.
#[derive(Debug, Clone)]
pub struct RefresherSettings {
    /// Pause between steps when the last one found nothing (or less than a full batch).
    pub interval: Duration,
    pub batch: u32,
}

/// Runs [`TokenService::refresh_due`] until `shutdown` turns true. A step in flight is
/// finished (its refreshes saved) before returning; the caller bounds that with a timeout.
pub async fn run(
    tokens: Arc<TokenService>,
    due: Arc<dyn DueConnections>,
    clock: Arc<dyn crate::Clock>,
    settings: RefresherSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    info!(interval = ?settings.interval, batch = settings.batch, "background refresher started");
    loop {
        if *shutdown.borrow() {
            break;
        }
        let full_batch = match tokens
            .refresh_due(due.as_ref(), clock.now(), settings.batch)
            .await
        {
            Ok(o) => {
                if o.claimed > 0 {
                    info!(
                        claimed = o.claimed,
                        refreshed = o.refreshed,
                        failed = o.failed,
                        needs_reauth = o.needs_reauth,
                        "background refresh step"
                    );
                }
                o.claimed as u32 >= settings.batch
            }
            Err(e) => {
                record("claim_failed");
                warn!(error = %e, "claiming due connections failed");
                false
            }
        };
        if full_batch {
            // More may be due right now; go again without sleeping (but let shutdown in).
            if *shutdown.borrow() {
                break;
            }
            continue;
        }
        // Replicas started together should not poll in lockstep.
        let pause = settings
            .interval
            .mul_f64(0.75 + 0.5 * random::unit_fraction());
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => {}
        }
    }
    info!("background refresher stopped");
}
