//! The SQL side of running several replicas: the background refresher's claim of due
//! connections, and API-key management scoped to a workspace. One statement per operation in
//! each dialect, so each step is atomic without a transaction held across round trips.

use async_trait::async_trait;
use relay_core::clock::Timestamp;
use relay_core::coordination::{ApiKeyAdmin, ApiKeyChange, DueConnections};
use relay_core::ports::ApiKeyRecord;
use relay_core::{Connection, StoreError, WorkspaceId};

use crate::rows::{self, api_key_columns, connection_columns};
use crate::{PostgresStore, SqliteStore, postgres, sqlite};

// Only rows with a refresh token can be refreshed in the background; one without is left to
// readers (who fall back to the still-valid token, then ask the user to reconnect).
macro_rules! due_filter {
    () => {
        "status = 'active' AND refresh_token IS NOT NULL AND next_refresh_at IS NOT NULL \
         AND next_refresh_at <= $3 AND (lease_until IS NULL OR lease_until <= $3)"
    };
}

#[async_trait]
impl DueConnections for PostgresStore {
    async fn claim_due(
        &self,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
        limit: u32,
    ) -> Result<Vec<Connection>, StoreError> {
        // SKIP LOCKED: replicas claiming at the same moment take disjoint rows instead of
        // queueing on each other's row locks; the lease set here keeps them disjoint after.
        let rows = sqlx::query(concat!(
            "UPDATE connections SET lease_owner = $1, lease_until = $2 \
              WHERE id IN (SELECT id FROM connections WHERE ",
            due_filter!(),
            " ORDER BY next_refresh_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
              AND ",
            due_filter!(),
            " RETURNING ",
            connection_columns!()
        ))
        .bind(owner.to_owned())
        .bind(until.0)
        .bind(now.0)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(postgres::err)?;
        rows.iter().map(rows::connection).collect()
    }
}

#[async_trait]
impl DueConnections for SqliteStore {
    async fn claim_due(
        &self,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
        limit: u32,
    ) -> Result<Vec<Connection>, StoreError> {
        // SQLite has one writer at a time: the UPDATE is the claim, atomic on its own.
        let rows = sqlx::query(concat!(
            "UPDATE connections SET lease_owner = $1, lease_until = $2 \
              WHERE id IN (SELECT id FROM connections WHERE ",
            due_filter!(),
            " ORDER BY next_refresh_at LIMIT $4) RETURNING ",
            connection_columns!()
        ))
        .bind(owner.to_owned())
        .bind(until.0)
        .bind(now.0)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(sqlite::err)?;
        rows.iter().map(rows::connection).collect()
    }
}

macro_rules! impl_api_key_admin {
    ($store:ty, $err:path) => {
        #[async_trait]
        impl ApiKeyAdmin for $store {
            async fn list_api_keys(
                &self,
                workspace: &WorkspaceId,
            ) -> Result<Vec<ApiKeyRecord>, StoreError> {
                let rows = sqlx::query(concat!(
                    "SELECT ",
                    api_key_columns!(),
                    " FROM api_keys WHERE workspace_id = $1 ORDER BY created_at, id"
                ))
                .bind(workspace.as_str().to_owned())
                .fetch_all(&self.pool)
                .await
                .map_err($err)?;
                rows.iter().map(rows::api_key).collect()
            }

            async fn update_api_key(
                &self,
                workspace: &WorkspaceId,
                id: &str,
                change: &ApiKeyChange,
            ) -> Result<Option<ApiKeyRecord>, StoreError> {
                // One statement: a field the change leaves out keeps its stored value.
                let row = sqlx::query(concat!(
                    "UPDATE api_keys SET \
                       rate_limit_per_minute = CASE WHEN $3 THEN $4 ELSE rate_limit_per_minute END, \
                       role = COALESCE($5, role) \
                      WHERE workspace_id = $1 AND id = $2 AND revoked_at IS NULL RETURNING ",
                    api_key_columns!()
                ))
                .bind(workspace.as_str().to_owned())
                .bind(id.to_owned())
                .bind(change.rate_limit_per_minute.is_some())
                .bind(change.rate_limit_per_minute.flatten())
                .bind(change.role.map(|r| r.as_str()))
                .fetch_optional(&self.pool)
                .await
                .map_err($err)?;
                row.map(|r| rows::api_key(&r)).transpose()
            }

            async fn revoke_workspace_api_key(
                &self,
                workspace: &WorkspaceId,
                id: &str,
                now: Timestamp,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE api_keys SET revoked_at = $3 \
                      WHERE workspace_id = $1 AND id = $2 AND revoked_at IS NULL",
                )
                .bind(workspace.as_str().to_owned())
                .bind(id.to_owned())
                .bind(now.0)
                .execute(&self.pool)
                .await
                .map_err($err)?;
                Ok(done.rows_affected() > 0)
            }
        }
    };
}

impl_api_key_admin!(PostgresStore, postgres::err);
impl_api_key_admin!(SqliteStore, sqlite::err);
