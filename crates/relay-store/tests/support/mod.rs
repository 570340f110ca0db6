//! Databases for the integration tests: a fresh SQLite file or a fresh PostgreSQL database per
//! test, removed again afterwards, so tests run in parallel without seeing each other's rows.
//!
//! PostgreSQL is the real server named by `RELAY_TEST_POSTGRES_URL` (default: the local one,
//! user `postgres`, trust authentication). When it cannot be reached, a developer's run skips
//! the PostgreSQL half with a notice, but CI (`CI=true`) fails: there a skipped backend would
//! be a silently untested one.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use relay_core::ports::Store;
use relay_store::{Database, DatabaseKind, PoolConfig};
use sqlx::Connection as _;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Small pools: many tests run at once against one server with a bounded `max_connections`.
fn pool_config() -> PoolConfig {
    PoolConfig {
        max_connections: Some(6),
        acquire_timeout: Duration::from_secs(20),
    }
}

/// The audit key every test database chains with (Relay derives its own from the master key).
pub fn test_audit_key() -> Arc<relay_core::audit::AuditKey> {
    Arc::new(relay_core::audit::AuditKey::from_bytes(&[42u8; 32]))
}

/// One test's database. Dropping it removes the database (best effort), also when the test
/// panicked.
pub struct TestDb {
    pub db: Database,
    /// Opens the same database again: a second Relay "process" in tests.
    pub url: String,
    // Declared last so that it drops after the pool.
    cleanup: Cleanup,
}

/// Removes a test database when dropped. Built as soon as the database exists, so a test
/// that panics halfway still cleans up.
enum Cleanup {
    SqliteFile(PathBuf),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    pub fn kind(&self) -> DatabaseKind {
        self.db.kind()
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.db.store()
    }

    /// Another pool on the same database, as a second instance of Relay would have.
    pub async fn open_again(&self) -> Database {
        let db = relay_store::connect_with(&self.url, &pool_config())
            .await
            .expect("reopen the test database");
        db.install_audit_key(test_audit_key());
        db
    }

    /// The same database on another pool with no audit key installed (a Relay process before
    /// it loaded its key).
    pub async fn open_bare(&self) -> Database {
        relay_store::connect_with(&self.url, &pool_config())
            .await
            .expect("reopen the test database")
    }

    /// The SQLite file, for tests that read its bytes.
    pub fn sqlite_path(&self) -> Option<&PathBuf> {
        match &self.cleanup {
            Cleanup::SqliteFile(p) => Some(p),
            Cleanup::Postgres { .. } => None,
        }
    }

    /// Closes the pool before the database is removed, so PostgreSQL has no sessions to end.
    pub async fn teardown(self) {
        self.db.close().await;
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        match self {
            Cleanup::SqliteFile(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    let _ = std::fs::remove_file(p);
                }
            }
            Cleanup::Postgres { admin_url, name } => {
                // Drop cannot await, and may run inside a runtime: use a thread of our own.
                let (admin_url, name) = (admin_url.clone(), name.clone());
                let dropper = std::thread::spawn(move || {
                    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        return;
                    };
                    rt.block_on(async move {
                        if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                                .execute(&mut admin)
                                .await;
                            let _ = admin.close().await;
                        }
                    });
                });
                let _ = dropper.join();
            }
        }
    }
}

fn random_name() -> String {
    format!("relay_t_{}", uuid::Uuid::new_v4().simple())
}

/// A migrated SQLite database in a new file under the system's temporary directory.
pub async fn sqlite() -> TestDb {
    let path = std::env::temp_dir().join(format!("{}.db", random_name()));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let cleanup = Cleanup::SqliteFile(path);
    let db = relay_store::connect_with(&url, &pool_config())
        .await
        .expect("open a SQLite test database");
    db.migrate().await.expect("migrate SQLite");
    db.install_audit_key(test_audit_key());
    TestDb { db, url, cleanup }
}

/// A migrated PostgreSQL database of its own, or `None` (after a notice) when no server
/// answers outside CI.
pub async fn postgres() -> Option<TestDb> {
    let admin_url =
        std::env::var("RELAY_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned());
    let connected = tokio::time::timeout(
        Duration::from_secs(5),
        sqlx::PgConnection::connect(&admin_url),
    )
    .await;
    let mut admin = match connected {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return unreachable_postgres(&e.to_string()),
        Err(_) => return unreachable_postgres("connecting timed out after 5 s"),
    };
    let name = random_name();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create a PostgreSQL test database");
    let _ = admin.close().await;
    let url = with_database(&admin_url, &name);
    let cleanup = Cleanup::Postgres { admin_url, name };
    let db = relay_store::connect_with(&url, &pool_config())
        .await
        .expect("connect to the new PostgreSQL test database");
    db.migrate().await.expect("migrate PostgreSQL");
    db.install_audit_key(test_audit_key());
    Some(TestDb { db, url, cleanup })
}

fn unreachable_postgres(why: &str) -> Option<TestDb> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "PostgreSQL is required in CI but cannot be reached ({why}); \
             start it or set RELAY_TEST_POSTGRES_URL"
        );
    }
    eprintln!("notice: PostgreSQL cannot be reached ({why}); skipping this PostgreSQL test");
    None
}

/// `admin_url` with its database name replaced by `name`, keeping any query parameters.
fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[authority_start..]
        .find('/')
        .map(|i| authority_start + i)
        .unwrap_or(base.len());
    let mut url = format!("{}/{name}", &base[..path_start]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

/// Runs each listed async test function once per backend, as `sqlite::name` and
/// `postgres::name`. Functions listed as `store name` take the `Arc<dyn Store>` alone (the
/// contract); `db name` ones take the whole `&TestDb`.
#[macro_export]
macro_rules! on_every_backend {
    (@arg store, $t:ident) => { $t.store() };
    (@arg db, $t:ident) => { &$t };
    ($($arg:ident $name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let t = $crate::support::sqlite().await;
                    super::$name($crate::on_every_backend!(@arg $arg, t)).await;
                    t.teardown().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(t) = $crate::support::postgres().await else { return };
                    super::$name($crate::on_every_backend!(@arg $arg, t)).await;
                    t.teardown().await;
                }
            )*
        }
    };
}
