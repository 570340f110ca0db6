//! Key rotation: re-seal every sealed value under the primary key (connection tokens and every
//! [`SealedKind`]: webhook secrets, action previews and outcomes, pending flows), so that the
//! previous key can be retired. Idempotent and safe to run while serving: each row is rewritten with a
//! compare-and-swap on its version, so a concurrent refresh wins and the row is simply
//! looked at again on the next run. Values other than tokens are swapped only if their bytes
//! are unchanged.

use std::collections::BTreeMap;

use tracing::{info, warn};

use crate::connection::{ACCESS_TOKEN, Connection};
use crate::error::ServiceError;
use crate::ports::{SealedKind, SealedValue, Store};
use crate::vault::{Binding, Keyring};

const PAGE: u32 = 500;

/// The name connection tokens are reported under, next to [`SealedKind::as_str`].
pub const CONNECTION_TOKEN: &str = "connection_token";

/// Totals over every kind, and the same counts per kind (`connection_token`, `webhook_secret`...).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResealReport {
    pub scanned: u64,
    pub resealed: u64,
    /// Rows that changed while being re-sealed (a refresh wrote them); the next run sees them.
    pub changed_meanwhile: u64,
    /// Rows whose sealed values no configured key opens.
    pub unreadable: u64,
    pub by_kind: BTreeMap<&'static str, KindReport>,
}

/// One kind's share of a [`ResealReport`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KindReport {
    pub scanned: u64,
    pub resealed: u64,
    pub changed_meanwhile: u64,
    pub unreadable: u64,
}

/// What happened to one row.
enum Step {
    Fresh,
    Resealed,
    ChangedMeanwhile,
    Unreadable,
}

impl ResealReport {
    fn record(&mut self, kind: &'static str, step: Step) {
        let entry = self.by_kind.entry(kind).or_default();
        entry.scanned += 1;
        self.scanned += 1;
        let (total, one) = match step {
            Step::Fresh => return,
            Step::Resealed => (&mut self.resealed, &mut entry.resealed),
            Step::ChangedMeanwhile => (&mut self.changed_meanwhile, &mut entry.changed_meanwhile),
            Step::Unreadable => (&mut self.unreadable, &mut entry.unreadable),
        };
        *total += 1;
        *one += 1;
    }
}

/// The vault binding's column of each kind (what it was sealed for).
fn binding_column(kind: SealedKind) -> &'static str {
    match kind {
        SealedKind::WebhookSecret => crate::actions::service::WEBHOOK_SECRET,
        SealedKind::ActionPreview => crate::actions::service::PREVIEW,
        SealedKind::ActionOutcome => crate::actions::service::RESULT,
        SealedKind::OAuthFlow => crate::connect::OAUTH_FLOW,
    }
}

fn binding_of(kind: SealedKind, value: &SealedValue) -> Binding<'_> {
    Binding {
        workspace: value.workspace_id.as_str(),
        record: &value.record,
        column: binding_column(kind),
    }
}

/// Re-seals every sealed value that is not under the primary key.
pub async fn reseal_all(
    store: &dyn Store,
    keyring: &Keyring,
) -> Result<ResealReport, ServiceError> {
    let mut report = ResealReport::default();
    let mut after = None;
    loop {
        let page = store.connections_page(after.as_ref(), PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for conn in &page {
            let stale = keyring.needs_reseal(&conn.access_token)
                || conn
                    .refresh_token
                    .as_deref()
                    .is_some_and(|r| keyring.needs_reseal(r));
            let step = if !stale {
                Step::Fresh
            } else {
                match reseal_connection(store, keyring, conn).await {
                    Ok(true) => Step::Resealed,
                    Ok(false) => Step::ChangedMeanwhile,
                    Err(ServiceError::Vault(e)) => {
                        warn!(connection_id = %conn.id, error = %e, "token cannot be opened with the configured keys");
                        Step::Unreadable
                    }
                    Err(e) => return Err(e),
                }
            };
            report.record(CONNECTION_TOKEN, step);
        }
    }
    for kind in SealedKind::ALL {
        let mut after: Option<(crate::ids::WorkspaceId, String)> = None;
        loop {
            let page = store
                .sealed_values_page(kind, after.as_ref().map(|(w, r)| (w, r.as_str())), PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some((last.workspace_id.clone(), last.record.clone()));
            for value in &page {
                let step = if !keyring.needs_reseal(&value.sealed) {
                    Step::Fresh
                } else {
                    match keyring.open(&value.sealed, binding_of(kind, value)) {
                        Ok(plain) => {
                            let resealed = keyring.seal(&plain, binding_of(kind, value));
                            if store.reseal_value(kind, value, &resealed).await? {
                                Step::Resealed
                            } else {
                                Step::ChangedMeanwhile
                            }
                        }
                        Err(e) => {
                            warn!(kind = kind.as_str(), workspace_id = %value.workspace_id, error = %e, "sealed value cannot be opened with the configured keys");
                            Step::Unreadable
                        }
                    }
                };
                report.record(kind.as_str(), step);
            }
        }
    }
    info!(?report, "re-seal finished");
    Ok(report)
}

async fn reseal_connection(
    store: &dyn Store,
    keyring: &Keyring,
    conn: &Connection,
) -> Result<bool, ServiceError> {
    let access = keyring.open(&conn.access_token, conn.binding(ACCESS_TOKEN))?;
    let access = keyring.seal(&access, conn.binding(ACCESS_TOKEN));
    // The refresh slot keeps the binding it has (a refresh token or a service account).
    let refresh = conn
        .open_refresh_slot(keyring)?
        .map(|(plain, column)| keyring.seal(&plain, conn.binding(column)));
    Ok(store
        .reseal_connection(&conn.id, conn.version, &access, refresh.as_deref())
        .await?)
}

/// How many sealed values each kind holds under each key id (`unreadable` for malformed
/// values): kind -> key id -> count.
pub async fn key_usage(
    store: &dyn Store,
) -> Result<BTreeMap<&'static str, BTreeMap<String, u64>>, ServiceError> {
    let mut usage: BTreeMap<&'static str, BTreeMap<String, u64>> = BTreeMap::new();
    let mut count = |kind: &'static str, sealed: &[u8]| {
        let key = Keyring::key_id_of(sealed)
            .map(|k| k.to_hex())
            .unwrap_or_else(|_| "unreadable".into());
        *usage.entry(kind).or_default().entry(key).or_insert(0) += 1;
    };
    let mut after = None;
    loop {
        let page = store.connections_page(after.as_ref(), PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for conn in &page {
            for sealed in std::iter::once(&conn.access_token).chain(conn.refresh_token.iter()) {
                count(CONNECTION_TOKEN, sealed);
            }
        }
    }
    for kind in SealedKind::ALL {
        let mut after: Option<(crate::ids::WorkspaceId, String)> = None;
        loop {
            let page = store
                .sealed_values_page(kind, after.as_ref().map(|(w, r)| (w, r.as_str())), PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some((last.workspace_id.clone(), last.record.clone()));
            for value in &page {
                count(kind.as_str(), &value.sealed);
            }
        }
    }
    Ok(usage)
}
