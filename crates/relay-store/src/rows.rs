//! Turns database rows into domain records, once for both dialects.
//!
//! The two stores return rows of different types (`SqliteRow`, `PgRow`) holding the same
//! columns with the same meaning. [`Fields`] gives both the handful of typed getters the
//! mapping needs, so the mapping itself is written once and never asks which database it
//! reads from.

use relay_core::clock::Timestamp;
use relay_core::ports::{
    ApiKeyRecord, ApiKeyRole, FlowRecord, SealedKind, VaultKeyRecord, Workspace,
};
use relay_core::{
    ActorId, ActorType, Connection, ConnectionId, ConnectionStatus, ProviderName, Scopes,
    StoreError, WorkspaceId,
};
use sqlx::Row;

// Column lists as macros rather than consts so that `concat!` can build each statement as a
// `&'static str`: sqlx only takes SQL it can see is not assembled from runtime values.

/// The columns of `connections`, in the order every `SELECT` and `RETURNING` lists them.
macro_rules! connection_columns {
    () => {
        "id, workspace_id, provider, actor_type, actor_id, scopes, token_type, access_token, \
         refresh_token, expires_at, status, status_reason, version, lease_owner, lease_until, \
         created_at, updated_at, last_refreshed_at, next_refresh_at, refresh_failures, \
         account_subject, account_email"
    };
}

macro_rules! flow_columns {
    () => {
        "state_hash, workspace_id, sealed_flow, created_at, expires_at"
    };
}

macro_rules! api_key_columns {
    () => {
        "id, workspace_id, secret_hash, created_at, revoked_at, rate_limit_per_minute, role"
    };
}

pub(crate) use {api_key_columns, connection_columns, flow_columns};

/// The statements that page through and re-seal one kind of sealed value (see
/// `Store::sealed_values_page`); the same text on both dialects.
pub(crate) struct SealedSql {
    pub page: &'static str,
    pub reseal: &'static str,
}

/// Writes the two statements for a (table, record column, sealed column).
macro_rules! sealed_sql {
    ($table:literal, $record:literal, $column:literal) => {
        SealedSql {
            page: concat!(
                "SELECT workspace_id, ",
                $record,
                " AS record, ",
                $column,
                " AS sealed FROM ",
                $table,
                " WHERE ",
                $column,
                " IS NOT NULL AND ($1 IS NULL OR workspace_id > $1 ",
                "OR (workspace_id = $1 AND ",
                $record,
                " > $2)) ORDER BY workspace_id, ",
                $record,
                " LIMIT $3"
            ),
            reseal: concat!(
                "UPDATE ",
                $table,
                " SET ",
                $column,
                " = $1 WHERE workspace_id = $2 AND ",
                $record,
                " = $3 AND ",
                $column,
                " = $4"
            ),
        }
    };
}

/// Where each kind of sealed value lives.
pub(crate) fn sealed_sql(kind: SealedKind) -> SealedSql {
    match kind {
        SealedKind::WebhookSecret => sealed_sql!("webhook_secrets", "id", "secret"),
        SealedKind::ActionPreview => sealed_sql!("action_previews", "id", "payload"),
        SealedKind::ActionOutcome => sealed_sql!("action_executions", "preview_id", "outcome"),
        SealedKind::OAuthFlow => sealed_sql!("oauth_flows", "state_hash", "sealed_flow"),
    }
}

/// Typed column access shared by both row types. A decoding failure names the column, never
/// its value (which could be sealed token bytes).
pub(crate) trait Fields {
    fn text(&self, col: &str) -> Result<String, StoreError>;
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, col: &str) -> Result<i64, StoreError>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError>;
    fn bytes(&self, col: &str) -> Result<Vec<u8>, StoreError>;
    fn opt_bytes(&self, col: &str) -> Result<Option<Vec<u8>>, StoreError>;
    fn small_int(&self, col: &str) -> Result<i32, StoreError>;

    fn time(&self, col: &str) -> Result<Timestamp, StoreError> {
        self.int(col).map(Timestamp)
    }

    fn opt_time(&self, col: &str) -> Result<Option<Timestamp>, StoreError> {
        self.opt_int(col).map(|v| v.map(Timestamp))
    }
}

fn decode_error(col: &str, err: sqlx::Error) -> StoreError {
    // `ColumnDecode` carries a type mismatch description, not the value.
    StoreError::Other(format!("column {col}: {err}"))
}

macro_rules! impl_fields {
    ($row:ty) => {
        impl Fields for $row {
            fn text(&self, col: &str) -> Result<String, StoreError> {
                self.try_get(col).map_err(|e| decode_error(col, e))
            }
            fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
                self.try_get(col).map_err(|e| decode_error(col, e))
            }
            fn int(&self, col: &str) -> Result<i64, StoreError> {
                self.try_get(col).map_err(|e| decode_error(col, e))
            }
            fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
                self.try_get(col).map_err(|e| decode_error(col, e))
            }
            fn bytes(&self, col: &str) -> Result<Vec<u8>, StoreError> {
                self.try_get(col).map_err(|e| decode_error(col, e))
            }
            fn opt_bytes(&self, col: &str) -> Result<Option<Vec<u8>>, StoreError> {
                self.try_get(col).map_err(|e| decode_error(col, e))
            }
            fn small_int(&self, col: &str) -> Result<i32, StoreError> {
                self.try_get(col).map_err(|e| decode_error(col, e))
            }
        }
    };
}

impl_fields!(sqlx::sqlite::SqliteRow);
impl_fields!(sqlx::postgres::PgRow);

pub(crate) fn connection(row: &impl Fields) -> Result<Connection, StoreError> {
    let status_text = row.text("status")?;
    let status = ConnectionStatus::parse(&status_text)
        .ok_or_else(|| StoreError::Other(format!("unknown connection status {status_text:?}")))?;
    Ok(Connection {
        id: ConnectionId::from_stored(row.text("id")?),
        workspace_id: WorkspaceId::from_stored(row.text("workspace_id")?),
        provider: ProviderName::from_stored(row.text("provider")?),
        actor_type: ActorType::from_stored(row.text("actor_type")?),
        actor_id: ActorId::from_stored(row.text("actor_id")?),
        scopes: Scopes::from_stored(&row.text("scopes")?),
        token_type: row.text("token_type")?,
        access_token: row.bytes("access_token")?,
        refresh_token: row.opt_bytes("refresh_token")?,
        expires_at: row.opt_time("expires_at")?,
        status,
        status_reason: row.opt_text("status_reason")?,
        version: row.int("version")?,
        lease_owner: row.opt_text("lease_owner")?,
        lease_until: row.opt_time("lease_until")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
        last_refreshed_at: row.opt_time("last_refreshed_at")?,
        next_refresh_at: row.opt_time("next_refresh_at")?,
        refresh_failures: row.small_int("refresh_failures")?,
        account_subject: row.opt_text("account_subject")?,
        account_email: row.opt_text("account_email")?,
    })
}

pub(crate) fn flow(row: &impl Fields) -> Result<FlowRecord, StoreError> {
    Ok(FlowRecord {
        state_hash: row.text("state_hash")?,
        workspace_id: WorkspaceId::from_stored(row.text("workspace_id")?),
        sealed: row.bytes("sealed_flow")?,
        created_at: row.time("created_at")?,
        expires_at: row.time("expires_at")?,
    })
}

pub(crate) fn api_key(row: &impl Fields) -> Result<ApiKeyRecord, StoreError> {
    Ok(ApiKeyRecord {
        id: row.text("id")?,
        workspace_id: WorkspaceId::from_stored(row.text("workspace_id")?),
        secret_hash: row.text("secret_hash")?,
        created_at: row.time("created_at")?,
        revoked_at: row.opt_time("revoked_at")?,
        rate_limit_per_minute: row.opt_int("rate_limit_per_minute")?,
        role: ApiKeyRole::parse(&row.text("role")?)
            .ok_or_else(|| StoreError::Other("column role: not a known API key role".into()))?,
    })
}

pub(crate) fn workspace(row: &impl Fields) -> Result<Workspace, StoreError> {
    Ok(Workspace {
        id: WorkspaceId::from_stored(row.text("id")?),
        name: row.text("name")?,
        created_at: row.time("created_at")?,
    })
}

pub(crate) fn vault_key(row: &impl Fields) -> Result<VaultKeyRecord, StoreError> {
    Ok(VaultKeyRecord {
        key_id: row.text("key_id")?,
        created_at: row.time("created_at")?,
    })
}

/// The page size `list_connections` uses: 100 unless asked, never more than 1000.
pub(crate) fn list_limit(requested: Option<u32>) -> i64 {
    i64::from(requested.unwrap_or(100).min(1000))
}

#[cfg(test)]
mod tests {
    use super::list_limit;

    #[test]
    fn list_limit_defaults_and_caps() {
        assert_eq!(list_limit(None), 100);
        assert_eq!(list_limit(Some(5)), 5);
        assert_eq!(list_limit(Some(5000)), 1000);
    }
}
