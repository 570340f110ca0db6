//! The `Store` for SQLite: a single node's database, a file in the data directory with
//! nothing to install.
//!
//! Concurrency comes from the engine, not from Rust locks: the database runs in WAL mode
//! (readers never block the writer), every connection waits up to five seconds for the write
//! lock instead of failing with `SQLITE_BUSY`, and every protocol step is one autocommit
//! statement, which takes the write lock before it reads, so contended writers queue instead
//! of deadlocking on a lock upgrade.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use relay_core::clock::Timestamp;
use relay_core::connection::{Connection, TokenUpdate};
use relay_core::ports::{
    ApiKeyRecord, ConnectionFilter, FlowRecord, SealedKind, SealedValue, Store, VaultKeyRecord,
    Workspace,
};
use relay_core::{ActorId, ActorType, ConnectionId, ProviderName, StoreError, WorkspaceId};
use sqlx::Sqlite;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};

use crate::PoolConfig;
use crate::error::{self, Dialect};
use crate::rows::{self, api_key_columns, connection_columns, flow_columns};

pub(crate) static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// How long a connection waits for another connection's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// SQLite has one writer at a time; more connections only add threads waiting on its lock.
const DEFAULT_MAX_CONNECTIONS: u32 = 8;

pub(crate) fn err(e: sqlx::Error) -> StoreError {
    error::map(Dialect::Sqlite, e)
}

/// The SQLite implementation of [`Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    /// The audit writer's own connection and the heads it last wrote (see
    /// [`crate::audit`]); `None` for an in-memory database, whose only connection is the pool's.
    pub(crate) audit: Option<std::sync::Arc<crate::audit::SqliteAuditWriter>>,
    /// The key audit records are chained with.
    pub(crate) audit_key: crate::audit::KeySlot,
}

impl SqliteStore {
    /// Opens the database named by a `sqlite:` URL (`sqlite://relay.db?mode=rwc` creates the
    /// file; `sqlite::memory:` is a private in-memory database for tests).
    pub async fn connect(url: &str, config: &PoolConfig) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(err)?
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .synchronous(SqliteSynchronous::Normal);
        // An in-memory database lives only as long as a connection to it, and separate
        // connections to a shared one contend on table locks that busy_timeout does not
        // cover: one connection, kept forever.
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if !in_memory && creates_file(url) {
            create_parent_dir(options.get_filename())?;
            create_private_file(options.get_filename())?;
        }
        let mut pool = SqlitePoolOptions::new()
            .acquire_timeout(config.acquire_timeout)
            .test_before_acquire(false);
        pool = if in_memory {
            pool.max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            pool.max_connections(config.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS))
        };
        let pool = pool.connect_with(options.clone()).await.map_err(err)?;
        let audit = (!in_memory)
            .then(|| std::sync::Arc::new(crate::audit::SqliteAuditWriter::new(options)));
        Ok(Self {
            pool,
            audit,
            audit_key: Default::default(),
        })
    }

    /// Wraps a pool opened elsewhere (its options are the caller's responsibility).
    pub fn from_pool(pool: SqlitePool) -> Self {
        Self {
            pool,
            audit: None,
            audit_key: Default::default(),
        }
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| error::map_migrate(Dialect::Sqlite, e))
    }

    pub(crate) async fn undo_to(&self, version: i64) -> Result<(), StoreError> {
        MIGRATOR
            .undo(&self.pool, version)
            .await
            .map_err(|e| error::map_migrate(Dialect::Sqlite, e))
    }

    pub(crate) async fn close(&self) {
        if let Some(audit) = &self.audit {
            audit.close().await;
        }
        self.pool.close().await;
    }
}

/// Whether the URL asks for the file to be created (`mode=rwc`).
fn creates_file(url: &str) -> bool {
    url.split_once('?')
        .is_some_and(|(_, query)| query.split('&').any(|kv| kv == "mode=rwc"))
}

/// SQLite creates a missing file but not its directory; a fresh data directory
/// (`sqlite://data/relay.db?mode=rwc` on a new machine) should just work. The directory is
/// the owner's alone (0700): it holds sealed tokens and, in the embedded mode, the key file.
fn create_parent_dir(file: &Path) -> Result<(), StoreError> {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.exists() => {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                builder.mode(0o700);
            }
            builder.create(dir).map_err(|e| {
                StoreError::Other(format!("cannot create directory {}: {e}", dir.display()))
            })
        }
        _ => Ok(()),
    }
}

/// SQLite creates a missing database with mode 0644 (less the umask), and its `-wal` and
/// `-shm` files with the database file's mode: creating the empty file owner-only (0600)
/// first keeps all three unreadable to other local users. An existing file is left alone
/// (the binary warns at start when it is wider).
fn create_private_file(file: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(file) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Other(format!(
            "cannot create {}: {e}",
            file.display()
        ))),
    }
}

crate::sql_store::sql_store!(SqliteStore, Sqlite, SqliteArguments);
