//! The `ActionStore` on PostgreSQL (the implementation is shared: see `sql_actions.rs`).

use async_trait::async_trait;
use relay_core::actions::{
    ActionStore, Claim, ExecutionRecord, PreviewRecord, WebhookSecretRecord,
};
use relay_core::clock::Timestamp;
use relay_core::{ConnectionId, StoreError, WorkspaceId};
use sqlx::Row as _;
use sqlx::postgres::PgRow;

use crate::error::{self, Dialect};
use crate::postgres::PostgresStore;

fn err(e: sqlx::Error) -> StoreError {
    error::map(Dialect::Postgres, e)
}

crate::sql_actions::sql_action_store!(PostgresStore, PgRow);
