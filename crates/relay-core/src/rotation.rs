//! Key rotation: re-seal every stored token under the primary key, so that the previous key
//! can be retired. Idempotent and safe to run while serving: each row is rewritten with a
//! compare-and-swap on its version, so a concurrent refresh wins and the row is simply
//! looked at again on the next run.

use std::collections::BTreeMap;

use tracing::{info, warn};

use crate::connection::{ACCESS_TOKEN, Connection, REFRESH_TOKEN};
use crate::error::ServiceError;
use crate::ports::Store;
use crate::vault::Keyring;

const PAGE: u32 = 500;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResealReport {
    pub scanned: u64,
    pub resealed: u64,
    /// Rows that changed while being re-sealed (a refresh wrote them); the next run sees them.
    pub changed_meanwhile: u64,
    /// Rows whose tokens no configured key opens.
    pub unreadable: u64,
}

/// Re-seals every connection whose tokens are not under the primary key.
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
            report.scanned += 1;
            let stale = keyring.needs_reseal(&conn.access_token)
                || conn
                    .refresh_token
                    .as_deref()
                    .is_some_and(|r| keyring.needs_reseal(r));
            if !stale {
                continue;
            }
            match reseal_one(store, keyring, conn).await {
                Ok(true) => report.resealed += 1,
                Ok(false) => report.changed_meanwhile += 1,
                Err(ServiceError::Vault(e)) => {
                    warn!(connection_id = %conn.id, error = %e, "token cannot be opened with the configured keys");
                    report.unreadable += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
    info!(?report, "re-seal finished");
    Ok(report)
}

async fn reseal_one(
    store: &dyn Store,
    keyring: &Keyring,
    conn: &Connection,
) -> Result<bool, ServiceError> {
    let access = keyring.open(&conn.access_token, conn.binding(ACCESS_TOKEN))?;
    let access = keyring.seal(&access, conn.binding(ACCESS_TOKEN));
    let refresh = match &conn.refresh_token {
        Some(r) => {
            let plain = keyring.open(r, conn.binding(REFRESH_TOKEN))?;
            Some(keyring.seal(&plain, conn.binding(REFRESH_TOKEN)))
        }
        None => None,
    };
    Ok(store
        .reseal_connection(&conn.id, conn.version, &access, refresh.as_deref())
        .await?)
}

/// How many sealed tokens each key id holds (`unreadable` for malformed values).
pub async fn key_usage(store: &dyn Store) -> Result<BTreeMap<String, u64>, ServiceError> {
    let mut usage = BTreeMap::new();
    let mut after = None;
    loop {
        let page = store.connections_page(after.as_ref(), PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for conn in &page {
            for sealed in std::iter::once(&conn.access_token).chain(conn.refresh_token.iter()) {
                let key = Keyring::key_id_of(sealed)
                    .map(|k| k.to_hex())
                    .unwrap_or_else(|_| "unreadable".into());
                *usage.entry(key).or_insert(0) += 1;
            }
        }
    }
    Ok(usage)
}
