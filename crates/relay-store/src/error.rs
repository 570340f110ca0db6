//! Classifies sqlx errors into the three `StoreError` kinds the services act on: the database
//! cannot be reached (retry later, `/ready` fails), a write conflicted with another, or
//! anything else. Messages come from sqlx and the database, which never include bound
//! values, so no token bytes can leak through them.

use relay_core::StoreError;
use sqlx::error::ErrorKind;

/// Which dialect's error codes to read. Only this module looks at it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

pub(crate) fn map(dialect: Dialect, err: sqlx::Error) -> StoreError {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err.to_string()),
        sqlx::Error::Database(ref db) => {
            if db.kind() == ErrorKind::UniqueViolation {
                let what = db.constraint().unwrap_or("a unique key");
                return StoreError::Conflict(format!("{what} already exists"));
            }
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            match classify_code(dialect, &code) {
                Class::Unavailable => StoreError::Unavailable(err.to_string()),
                Class::Conflict => StoreError::Conflict(err.to_string()),
                Class::Other => StoreError::Other(err.to_string()),
            }
        }
        other => StoreError::Other(other.to_string()),
    }
}

/// A migration that could not reach the database is `Unavailable` like any other query; one
/// that failed for its content (or a changed, missing or dirty migration) is `Other`, with the
/// version in the message.
pub(crate) fn map_migrate(dialect: Dialect, err: sqlx::migrate::MigrateError) -> StoreError {
    use sqlx::migrate::MigrateError;
    match err {
        MigrateError::Execute(e) => match map(dialect, e) {
            StoreError::Unavailable(m) => StoreError::Unavailable(m),
            other => StoreError::Other(format!("migration failed: {other}")),
        },
        MigrateError::ExecuteMigration(e, version) => match map(dialect, e) {
            StoreError::Unavailable(m) => StoreError::Unavailable(m),
            other => StoreError::Other(format!("migration {version} failed: {other}")),
        },
        other => StoreError::Other(format!("migrations: {other}")),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Class {
    Unavailable,
    Conflict,
    Other,
}

fn classify_code(dialect: Dialect, code: &str) -> Class {
    match dialect {
        Dialect::Postgres => {
            // SQLSTATE classes: 08 connection exception, 53 insufficient resources,
            // 57P0x the server shutting down or starting; 40 a serialization failure or
            // deadlock, which a retry of the same write resolves.
            if code.starts_with("08") || code.starts_with("53") || code.starts_with("57P0") {
                Class::Unavailable
            } else if code.starts_with("40") {
                Class::Conflict
            } else {
                Class::Other
            }
        }
        Dialect::Sqlite => {
            // sqlx reports SQLite's extended result code; the primary code is its low byte.
            let primary = code.parse::<i32>().map(|c| c & 0xff).unwrap_or(-1);
            match primary {
                // BUSY and LOCKED (still contended after busy_timeout), IOERR, FULL, CANTOPEN.
                5 | 6 | 10 | 13 | 14 => Class::Unavailable,
                _ => Class::Other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified_per_dialect() {
        let cases = [
            (Dialect::Postgres, "08006", Class::Unavailable),
            (Dialect::Postgres, "57P01", Class::Unavailable),
            (Dialect::Postgres, "53300", Class::Unavailable),
            (Dialect::Postgres, "40001", Class::Conflict),
            (Dialect::Postgres, "42P01", Class::Other),
            (Dialect::Sqlite, "5", Class::Unavailable),
            (Dialect::Sqlite, "517", Class::Unavailable),
            (Dialect::Sqlite, "14", Class::Unavailable),
            (Dialect::Sqlite, "1", Class::Other),
            (Dialect::Sqlite, "", Class::Other),
        ];
        for (dialect, code, want) in cases {
            assert_eq!(classify_code(dialect, code), want, "{dialect:?} {code}");
        }
    }

    #[test]
    fn pool_and_io_failures_are_unavailable() {
        assert!(matches!(
            map(Dialect::Postgres, sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            map(Dialect::Sqlite, sqlx::Error::RowNotFound),
            StoreError::Other(_)
        ));
    }
}
