//! Relay's storage adapters: the [`Store`] for SQLite (a single node, nothing to install) and
//! for PostgreSQL (production, several instances), each with its migrations embedded in the
//! binary, and the in-process [`MemoryCache`].
//!
//! [`connect`] picks the implementation from the URL's scheme, so the rest of Relay holds an
//! `Arc<dyn Store>` and never asks which database it runs on.
//!
//! Both dialects store times as integer Unix milliseconds, tokens as sealed bytes (BLOB /
//! BYTEA) and scopes as one space-separated string, and every step of the refresh protocol is
//! a single atomic statement; one contract test suite holds both to the same behaviour.

use std::sync::Arc;
use std::time::Duration;

use relay_core::StoreError;
use relay_core::ports::Store;

mod audit;
mod cache;
mod error;
mod postgres;
mod postgres_actions;
pub mod redis;
mod rows;
mod scale;
mod sql_actions;
mod sql_store;
mod sqlite;
mod sqlite_actions;

pub use cache::MemoryCache;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Which SQL dialect a [`Database`] speaks, for logs and `relay migrate` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

impl DatabaseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// Connection pool settings. The defaults suit one Relay instance.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Most connections the pool opens; `None` picks a default per dialect (8 for SQLite,
    /// whose single writer gains nothing from more, 16 for PostgreSQL).
    pub max_connections: Option<u32>,
    /// How long a query waits for a free connection before failing as `Unavailable`.
    pub acquire_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: None,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

/// An open database: the store, plus the operations on its schema.
#[derive(Debug, Clone)]
pub struct Database {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PostgresStore>),
}

/// Opens the database named by `database_url` with the default pool settings:
/// `sqlite:...` (for example `sqlite://data/relay.db?mode=rwc`, which creates the file) or
/// `postgres://...` / `postgresql://...`. Migrations are not run; call [`Database::migrate`].
pub async fn connect(database_url: &str) -> Result<Database, StoreError> {
    connect_with(database_url, &PoolConfig::default()).await
}

/// [`connect`] with explicit pool settings.
pub async fn connect_with(database_url: &str, config: &PoolConfig) -> Result<Database, StoreError> {
    let backend = match kind_of(database_url)? {
        DatabaseKind::Sqlite => {
            Backend::Sqlite(Arc::new(SqliteStore::connect(database_url, config).await?))
        }
        DatabaseKind::Postgres => Backend::Postgres(Arc::new(
            PostgresStore::connect(database_url, config).await?,
        )),
    };
    Ok(Database { backend })
}

/// The dialect a URL names, by its scheme. Any other scheme is refused (without echoing the
/// URL, which may hold a password).
pub fn kind_of(database_url: &str) -> Result<DatabaseKind, StoreError> {
    let scheme = database_url
        .split_once(':')
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
    match scheme.as_str() {
        "sqlite" => Ok(DatabaseKind::Sqlite),
        "postgres" | "postgresql" => Ok(DatabaseKind::Postgres),
        _ => Err(StoreError::Other(
            "unsupported database URL: expected sqlite:, postgres:// or postgresql://".into(),
        )),
    }
}

impl Database {
    pub fn kind(&self) -> DatabaseKind {
        match self.backend {
            Backend::Sqlite(_) => DatabaseKind::Sqlite,
            Backend::Postgres(_) => DatabaseKind::Postgres,
        }
    }

    /// The store, as the port the services use.
    pub fn store(&self) -> Arc<dyn Store> {
        match &self.backend {
            Backend::Sqlite(s) => s.clone(),
            Backend::Postgres(s) => s.clone(),
        }
    }

    /// The same database, as the port the action service uses.
    pub fn action_store(&self) -> Arc<dyn relay_core::actions::ActionStore> {
        match &self.backend {
            Backend::Sqlite(s) => s.clone(),
            Backend::Postgres(s) => s.clone(),
        }
    }

    /// The background refresher's claim of due connections, on this database.
    pub fn due_connections(&self) -> Arc<dyn relay_core::coordination::DueConnections> {
        match &self.backend {
            Backend::Sqlite(s) => s.clone(),
            Backend::Postgres(s) => s.clone(),
        }
    }

    /// The audit log, as the port the audit writer uses.
    pub fn audit_store(&self) -> Arc<dyn relay_core::audit::AuditStore> {
        match &self.backend {
            Backend::Sqlite(s) => s.clone(),
            Backend::Postgres(s) => s.clone(),
        }
    }

    /// Installs the key audit records are chained with (from
    /// `relay_core::audit::open_or_create_key`). Until it is installed, appending fails.
    pub fn install_audit_key(&self, key: Arc<relay_core::audit::AuditKey>) {
        match &self.backend {
            Backend::Sqlite(s) => s.audit_key.install(key),
            Backend::Postgres(s) => s.audit_key.install(key),
        }
    }

    /// API-key management scoped to a workspace, on this database.
    pub fn api_key_admin(&self) -> Arc<dyn relay_core::coordination::ApiKeyAdmin> {
        match &self.backend {
            Backend::Sqlite(s) => s.clone(),
            Backend::Postgres(s) => s.clone(),
        }
    }

    /// Connection counts by provider and status, for the `connections` gauge.
    pub fn census(&self) -> Arc<dyn relay_core::census::ConnectionCensus> {
        match &self.backend {
            Backend::Sqlite(s) => s.clone(),
            Backend::Postgres(s) => s.clone(),
        }
    }

    /// The workspace an API key belongs to, by the key's public id.
    pub async fn api_key_workspace(
        &self,
        key_id: &str,
    ) -> Result<Option<relay_core::WorkspaceId>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.api_key_workspace(key_id).await,
            Backend::Postgres(s) => s.api_key_workspace(key_id).await,
        }
    }

    /// Applies every embedded migration not yet applied. Safe to run on every start, and by
    /// several instances at once (PostgreSQL serialises them with an advisory lock).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.migrate().await?,
            Backend::Postgres(s) => s.migrate().await?,
        }
        tracing::info!(
            database = self.kind().as_str(),
            "database schema is up to date"
        );
        Ok(())
    }

    /// Reverts applied migrations newer than `version`, newest first; `undo_to(0)` drops
    /// every table Relay created.
    pub async fn undo_to(&self, version: i64) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.undo_to(version).await?,
            Backend::Postgres(s) => s.undo_to(version).await?,
        }
        tracing::warn!(
            database = self.kind().as_str(),
            version,
            "migrations reverted"
        );
        Ok(())
    }

    /// The versions of the embedded migrations, oldest first.
    pub fn migration_versions(&self) -> Vec<i64> {
        let migrator = match self.backend {
            Backend::Sqlite(_) => &sqlite::MIGRATOR,
            Backend::Postgres(_) => &postgres::MIGRATOR,
        };
        // Each reversible migration appears twice (up and down); list each version once.
        let mut versions: Vec<i64> = migrator.iter().map(|m| m.version).collect();
        versions.dedup();
        versions
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(s) => s.close().await,
            Backend::Postgres(s) => s.close().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_picks_the_dialect() {
        let cases = [
            ("sqlite://relay.db?mode=rwc", Some(DatabaseKind::Sqlite)),
            ("sqlite::memory:", Some(DatabaseKind::Sqlite)),
            ("postgres://u@h/db", Some(DatabaseKind::Postgres)),
            ("postgresql://u@h/db", Some(DatabaseKind::Postgres)),
            ("PostgreSQL://u@h/db", Some(DatabaseKind::Postgres)),
            ("mysql://u:secret@h/db", None),
            ("relay.db", None),
        ];
        for (url, want) in cases {
            let got = kind_of(url);
            assert_eq!(got.as_ref().ok().copied(), want, "{url}");
            if let Err(e) = got {
                assert!(!e.to_string().contains("secret"));
            }
        }
    }

    #[tokio::test]
    async fn an_in_memory_database_migrates_and_answers() {
        let db = connect("sqlite::memory:").await.expect("opens");
        assert_eq!(db.kind(), DatabaseKind::Sqlite);
        db.migrate().await.expect("migrates");
        db.store().ping().await.expect("answers");
        assert_eq!(db.migration_versions(), vec![1, 2, 3, 4, 5, 6, 7, 8]);
        db.close().await;
    }

    #[tokio::test]
    async fn a_new_sqlite_file_gets_its_directory() {
        let root = std::env::temp_dir().join(format!("relay_t_{}", uuid::Uuid::new_v4().simple()));
        let file = root.join("data").join("relay.db");
        let url = format!("sqlite://{}?mode=rwc", file.display());
        let db = connect(&url).await.expect("opens, creating data/");
        db.migrate().await.expect("migrates");
        db.close().await;
        assert!(file.exists());
        let _ = std::fs::remove_dir_all(&root);

        // Without mode=rwc a missing file is an error, not a silently created database.
        let missing =
            std::env::temp_dir().join(format!("relay_t_{}.db", uuid::Uuid::new_v4().simple()));
        assert!(
            connect(&format!("sqlite://{}", missing.display()))
                .await
                .is_err()
        );
        assert!(!missing.exists());
    }
}
