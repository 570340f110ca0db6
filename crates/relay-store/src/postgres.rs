//! The `Store` for PostgreSQL, for production and for several Relay instances sharing one
//! database.
//!
//! Every protocol step is one statement, so the database's own row locking decides races:
//! under READ COMMITTED, a second `UPDATE ... WHERE lease_until <= now` waiting on the first
//! re-checks its `WHERE` against the committed row and finds the lease taken, so exactly one
//! of any number of concurrent acquirers wins, across processes, with no explicit
//! transactions or advisory locks.

use std::str::FromStr;

use async_trait::async_trait;
use relay_core::clock::Timestamp;
use relay_core::connection::{Connection, TokenUpdate};
use relay_core::ports::{
    ApiKeyRecord, ConnectionFilter, FlowRecord, SealedKind, SealedValue, Store, VaultKeyRecord,
    Workspace,
};
use relay_core::{ActorId, ActorType, ConnectionId, ProviderName, StoreError, WorkspaceId};
use sqlx::Postgres;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions};

use crate::PoolConfig;
use crate::error::{self, Dialect};
use crate::rows::{self, api_key_columns, connection_columns, flow_columns};

pub(crate) static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// Enough for a busy instance; several instances share the server's `max_connections`.
const DEFAULT_MAX_CONNECTIONS: u32 = 16;

pub(crate) fn err(e: sqlx::Error) -> StoreError {
    error::map(Dialect::Postgres, e)
}

/// The PostgreSQL implementation of [`Store`].
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pub(crate) pool: PgPool,
    /// The last audit head this process wrote per workspace, so that the next batch is one
    /// compare-and-swap statement instead of a locking transaction (see `audit.rs`).
    pub(crate) audit_heads: std::sync::Arc<crate::audit::KnownHeads>,
    /// The key audit records are chained with.
    pub(crate) audit_key: crate::audit::KeySlot,
}

impl PostgresStore {
    /// Connects to the database named by a `postgres://` or `postgresql://` URL. Fails with
    /// `StoreError::Unavailable` when the server cannot be reached.
    pub async fn connect(url: &str, config: &PoolConfig) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(err)?
            .application_name("relay");
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS))
            .acquire_timeout(config.acquire_timeout)
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(err)?;
        Ok(Self::from_pool(pool))
    }

    /// Wraps a pool opened elsewhere (its options are the caller's responsibility).
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            pool,
            audit_heads: Default::default(),
            audit_key: Default::default(),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| error::map_migrate(Dialect::Postgres, e))
    }

    pub(crate) async fn undo_to(&self, version: i64) -> Result<(), StoreError> {
        MIGRATOR
            .undo(&self.pool, version)
            .await
            .map_err(|e| error::map_migrate(Dialect::Postgres, e))
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }
}

crate::sql_store::sql_store!(PostgresStore, Postgres, PgArguments);
