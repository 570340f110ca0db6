//! The audit log and the connection census for both dialects.
//!
//! Appending is one transaction: for each workspace in the batch (in id order, so two writers
//! never wait on each other in a cycle) an upsert on `audit_heads` both creates the head and
//! locks it (PostgreSQL's `ON CONFLICT DO UPDATE` takes the row lock and returns the latest
//! committed head; SQLite's first write takes the database's single write lock), the records
//! are chained with `relay_core::audit` and inserted, and the heads advanced. Writers in other
//! processes wait on the same lock, so a chain never forks.

use std::collections::BTreeMap;

use async_trait::async_trait;
use relay_core::audit::{
    AuditAction, AuditCount, AuditEvent, AuditFilter, AuditHead, AuditKey, AuditOutcome,
    AuditRecord, AuditStore, GENESIS_HASH,
};
use relay_core::census::{ConnectionCensus, ConnectionCount};
use relay_core::clock::Timestamp;
use relay_core::{StoreError, WorkspaceId};

use crate::error::{self, Dialect};
use crate::rows::Fields;
use crate::{PostgresStore, SqliteStore};

const LOCK_HEAD: &str = "INSERT INTO audit_heads (workspace_id, seq, hash) VALUES ($1, 0, $2) \
     ON CONFLICT (workspace_id) DO UPDATE SET seq = audit_heads.seq RETURNING seq, hash";
const ADVANCE_HEAD: &str = "UPDATE audit_heads SET seq = $1, hash = $2 WHERE workspace_id = $3";
/// PostgreSQL inserts a whole batch in one statement, one array per column.
const INSERT_MANY_PG: &str = "INSERT INTO audit_log (workspace_id, seq, at, action, outcome, \
     api_key_id, actor_id, connection_id, provider, request_id, client_addr, detail, prev_hash, \
     hash) SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], \
     $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], \
     $13::text[], $14::text[])";
/// PostgreSQL's steady-state append: one statement that advances the workspace's head only if
/// it is still the one this process last wrote (compare-and-swap on seq and hash) and inserts
/// the batch only if it did. One round trip and one implicit transaction, instead of
/// BEGIN / lock head / insert / advance / COMMIT; a writer on another replica that moved the
/// head makes it insert nothing, and the batch then takes the locking path.
const APPEND_IF_HEAD_PG: &str = "WITH advanced AS (UPDATE audit_heads SET seq = $15, hash = $16 \
     WHERE workspace_id = $17 AND seq = $18 AND hash = $19 RETURNING 1) \
     INSERT INTO audit_log (workspace_id, seq, at, action, outcome, \
     api_key_id, actor_id, connection_id, provider, request_id, client_addr, detail, prev_hash, \
     hash) SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], \
     $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], \
     $13::text[], $14::text[]) WHERE EXISTS (SELECT 1 FROM advanced)";
const LIST: &str = "SELECT workspace_id, seq, at, action, outcome, api_key_id, actor_id, \
     connection_id, provider, request_id, client_addr, detail, prev_hash, hash FROM audit_log \
     WHERE workspace_id = $1 \
       AND ($2 IS NULL OR connection_id = $2) \
       AND ($3 IS NULL OR actor_id = $3) \
       AND ($4 IS NULL OR action = $4) \
       AND ($5 IS NULL OR at >= $5) \
       AND ($6 IS NULL OR at < $6) \
       AND ($7 IS NULL OR seq < $7) \
     ORDER BY seq DESC LIMIT $8";
const RANGE: &str = "SELECT workspace_id, seq, at, action, outcome, api_key_id, actor_id, \
     connection_id, provider, request_id, client_addr, detail, prev_hash, hash FROM audit_log \
     WHERE workspace_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";
/// Hourly counts for `GET /stats`; the (workspace_id, at) index bounds the scan.
const COUNT_BY_HOUR: &str = "SELECT (at / 3600000) * 3600000 AS hour, action, outcome, \
     COUNT(*) AS n FROM audit_log WHERE workspace_id = $1 AND at >= $2 AND at < $3 \
     GROUP BY 1, 2, 3 ORDER BY 1";
const HEADS: &str =
    "SELECT workspace_id, seq, hash FROM audit_heads WHERE seq > 0 ORDER BY workspace_id";
const CHAINED_WORKSPACES: &str = "SELECT DISTINCT workspace_id FROM audit_log";
/// Workspaces holding data whose creation writes an audit record.
const WORKSPACES_EXPECTING_AUDIT: &str = "SELECT workspace_id FROM connections \
     UNION SELECT workspace_id FROM api_keys UNION SELECT workspace_id FROM action_previews";
const SEALED_KEY: &str = "SELECT sealed FROM audit_mac_key WHERE id = 1";
const INSERT_SEALED_KEY: &str = "INSERT INTO audit_mac_key (id, sealed, created_at) \
     VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING";
const RESEAL_KEY: &str = "UPDATE audit_mac_key SET sealed = $1 WHERE id = 1 AND sealed = $2";
const CENSUS: &str = "SELECT provider, status, COUNT(*) AS n FROM connections \
     GROUP BY provider, status ORDER BY provider, status";

fn record(row: &impl Fields) -> Result<AuditRecord, StoreError> {
    let action_text = row.text("action")?;
    let action = AuditAction::parse(&action_text)
        .ok_or_else(|| StoreError::Other(format!("unknown audit action {action_text:?}")))?;
    let outcome_text = row.text("outcome")?;
    let outcome = AuditOutcome::parse(&outcome_text)
        .ok_or_else(|| StoreError::Other(format!("unknown audit outcome {outcome_text:?}")))?;
    Ok(AuditRecord {
        seq: row.int("seq")?,
        event: AuditEvent {
            at: Timestamp(row.int("at")?),
            workspace_id: WorkspaceId::from_stored(row.text("workspace_id")?),
            action,
            outcome,
            api_key_id: row.opt_text("api_key_id")?,
            actor_id: row.opt_text("actor_id")?,
            connection_id: row.opt_text("connection_id")?,
            provider: row.opt_text("provider")?,
            request_id: row.opt_text("request_id")?,
            client_addr: row.opt_text("client_addr")?,
            detail: row.opt_text("detail")?,
        },
        prev_hash: row.text("prev_hash")?,
        hash: row.text("hash")?,
    })
}

/// Chains `events` after the locked heads, in order; returns the records and the new heads.
fn chain(
    key: &AuditKey,
    mut heads: BTreeMap<String, AuditHead>,
    events: &[AuditEvent],
) -> (Vec<AuditRecord>, BTreeMap<String, AuditHead>) {
    let records = events
        .iter()
        .map(|e| {
            heads
                .entry(e.workspace_id.as_str().to_owned())
                .or_insert_with(AuditHead::genesis)
                .append(key, e.clone())
        })
        .collect();
    (records, heads)
}

/// The audit key a store chains with, installed once the vault is open
/// (`Database::install_audit_key`). Until then appends fail: no record is ever written
/// unkeyed.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeySlot(std::sync::Arc<std::sync::OnceLock<std::sync::Arc<AuditKey>>>);

impl KeySlot {
    pub(crate) fn install(&self, key: std::sync::Arc<AuditKey>) {
        // A second install (the same database opened twice in one process) keeps the first.
        let _ = self.0.set(key);
    }

    fn get(&self) -> Result<std::sync::Arc<AuditKey>, StoreError> {
        self.0.get().cloned().ok_or_else(|| {
            StoreError::Other("the audit key is not loaded: audit records cannot be written".into())
        })
    }
}

fn workspaces(events: &[AuditEvent]) -> Vec<String> {
    let mut ws: Vec<String> = events
        .iter()
        .map(|e| e.workspace_id.as_str().to_owned())
        .collect();
    ws.sort();
    ws.dedup();
    ws
}

/// Binds the list query's parameters, in `LIST` order (the same for both dialects).
macro_rules! bind_list {
    ($q:expr, $ws:expr, $f:expr) => {
        $q.bind($ws.as_str().to_owned())
            .bind($f.connection_id.clone())
            .bind($f.actor_id.clone())
            .bind($f.action.map(|a| a.as_str()))
            .bind($f.from.map(|t| t.0))
            .bind($f.to.map(|t| t.0))
            .bind($f.before_seq)
            .bind(i64::from($f.limit.clamp(1, 1000)))
    };
}

/// The read side is the same SQL on both dialects.
macro_rules! impl_reads {
    ($store:ty, $dialect:expr) => {
        impl $store {
            async fn audit_list(
                &self,
                workspace: &WorkspaceId,
                filter: &AuditFilter,
            ) -> Result<Vec<AuditRecord>, StoreError> {
                bind_list!(sqlx::query(LIST), workspace, filter)
                    .fetch_all(self.pool())
                    .await
                    .map_err(|e| error::map($dialect, e))?
                    .iter()
                    .map(record)
                    .collect()
            }

            async fn audit_counts(
                &self,
                workspace: &WorkspaceId,
                from: Timestamp,
                to: Timestamp,
            ) -> Result<Vec<AuditCount>, StoreError> {
                sqlx::query(COUNT_BY_HOUR)
                    .bind(workspace.as_str().to_owned())
                    .bind(from.0)
                    .bind(to.0)
                    .fetch_all(self.pool())
                    .await
                    .map_err(|e| error::map($dialect, e))?
                    .iter()
                    .filter_map(|row| {
                        let action = row.text("action").map(|a| AuditAction::parse(&a));
                        let outcome = row.text("outcome").map(|o| AuditOutcome::parse(&o));
                        match (action, outcome) {
                            (Ok(Some(action)), Ok(Some(outcome))) => Some(
                                row.int("hour")
                                    .and_then(|h| row.int("n").map(|n| (h, n)))
                                    .map(|(hour, count)| AuditCount {
                                        hour: Timestamp(hour),
                                        action,
                                        outcome,
                                        count,
                                    }),
                            ),
                            (Err(e), _) | (_, Err(e)) => Some(Err(e)),
                            // A name this version does not know (written by a newer one).
                            _ => None,
                        }
                    })
                    .collect()
            }

            async fn audit_heads_all(&self) -> Result<Vec<(WorkspaceId, AuditHead)>, StoreError> {
                sqlx::query(HEADS)
                    .fetch_all(self.pool())
                    .await
                    .map_err(|e| error::map($dialect, e))?
                    .iter()
                    .map(|row| {
                        Ok((
                            WorkspaceId::from_stored(row.text("workspace_id")?),
                            AuditHead {
                                seq: row.int("seq")?,
                                hash: row.text("hash")?,
                            },
                        ))
                    })
                    .collect()
            }

            async fn audit_chained(&self) -> Result<Vec<WorkspaceId>, StoreError> {
                self.workspace_list(CHAINED_WORKSPACES).await
            }

            async fn audit_expecting(&self) -> Result<Vec<WorkspaceId>, StoreError> {
                self.workspace_list(WORKSPACES_EXPECTING_AUDIT).await
            }

            async fn workspace_list(
                &self,
                sql: &'static str,
            ) -> Result<Vec<WorkspaceId>, StoreError> {
                sqlx::query(sql)
                    .fetch_all(self.pool())
                    .await
                    .map_err(|e| error::map($dialect, e))?
                    .iter()
                    .map(|row| row.text("workspace_id").map(WorkspaceId::from_stored))
                    .collect()
            }

            async fn audit_key_sealed(&self) -> Result<Option<Vec<u8>>, StoreError> {
                use sqlx::Row;
                sqlx::query(SEALED_KEY)
                    .fetch_optional(self.pool())
                    .await
                    .map_err(|e| error::map($dialect, e))?
                    .map(|row| row.try_get::<Vec<u8>, _>("sealed"))
                    .transpose()
                    .map_err(|e| error::map($dialect, e))
            }

            async fn audit_key_put(
                &self,
                sealed: &[u8],
                replacing: Option<&[u8]>,
                now: Timestamp,
            ) -> Result<bool, StoreError> {
                let done = match replacing {
                    None => {
                        sqlx::query(INSERT_SEALED_KEY)
                            .bind(sealed.to_vec())
                            .bind(now.0)
                            .execute(self.pool())
                            .await
                    }
                    Some(old) => {
                        sqlx::query(RESEAL_KEY)
                            .bind(sealed.to_vec())
                            .bind(old.to_vec())
                            .execute(self.pool())
                            .await
                    }
                }
                .map_err(|e| error::map($dialect, e))?;
                Ok(done.rows_affected() == 1)
            }

            async fn audit_after(
                &self,
                workspace: &WorkspaceId,
                after_seq: i64,
                limit: u32,
            ) -> Result<Vec<AuditRecord>, StoreError> {
                sqlx::query(RANGE)
                    .bind(workspace.as_str().to_owned())
                    .bind(after_seq)
                    .bind(i64::from(limit.clamp(1, 10_000)))
                    .fetch_all(self.pool())
                    .await
                    .map_err(|e| error::map($dialect, e))?
                    .iter()
                    .map(record)
                    .collect()
            }
        }

        #[async_trait]
        impl ConnectionCensus for $store {
            async fn count_connections(&self) -> Result<Vec<ConnectionCount>, StoreError> {
                sqlx::query(CENSUS)
                    .fetch_all(self.pool())
                    .await
                    .map_err(|e| error::map($dialect, e))?
                    .iter()
                    .map(|row| {
                        Ok(ConnectionCount {
                            provider: row.text("provider")?,
                            status: row.text("status")?,
                            count: row.int("n")?,
                        })
                    })
                    .collect()
            }
        }
    };
}

impl_reads!(SqliteStore, Dialect::Sqlite);
impl_reads!(PostgresStore, Dialect::Postgres);

/// The heads this process last wrote, per workspace: the steady-state append of both dialects
/// advances a head only if it is still one of these (a compare-and-swap), so it needs no lock.
#[derive(Debug, Default)]
pub(crate) struct KnownHeads(std::sync::Mutex<BTreeMap<String, AuditHead>>);

impl KnownHeads {
    pub(crate) fn remember(&self, heads: BTreeMap<String, AuditHead>) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(heads);
    }

    /// The heads of these workspaces; `None` if any is unknown.
    pub(crate) fn of(&self, workspaces: &[String]) -> Option<BTreeMap<String, AuditHead>> {
        let heads = self.0.lock().unwrap_or_else(|p| p.into_inner());
        workspaces
            .iter()
            .map(|ws| heads.get(ws).map(|h| (ws.clone(), h.clone())))
            .collect()
    }
}

/// The audit writer's connection.
#[derive(Debug)]
enum WriterConnection {
    /// Not opened yet, or dropped after an error: the next batch opens one.
    Idle,
    Open(sqlx::SqliteConnection),
    /// The store was closed: no connection is opened any more.
    Closed,
}

const COLUMNS: &str = "workspace_id, seq, at, action, outcome, api_key_id, actor_id, \
     connection_id, provider, request_id, client_addr, detail, prev_hash, hash";
/// SQLite's steady-state head advance: only if the head is still the one this process last
/// wrote; `RETURNING` tells whether it was.
const ADVANCE_IF_HEAD_SQLITE: &str = "UPDATE audit_heads SET seq = ?, hash = ? \
     WHERE workspace_id = ? AND seq = ? AND hash = ? RETURNING workspace_id;";
/// Rows per multi-row insert: one statement instead of one per record; 64 rows × 14 columns
/// stays far below SQLite's bound-parameter limit.
const SQLITE_INSERT_ROWS: usize = 64;

/// Binds one record's columns, in [`COLUMNS`] order.
macro_rules! bind_record {
    ($q:expr, $r:expr) => {{
        let (r, e) = ($r, &$r.event);
        $q.bind(e.workspace_id.as_str().to_owned())
            .bind(r.seq)
            .bind(e.at.0)
            .bind(e.action.as_str())
            .bind(e.outcome.as_str())
            .bind(e.api_key_id.clone())
            .bind(e.actor_id.clone())
            .bind(e.connection_id.clone())
            .bind(e.provider.clone())
            .bind(e.request_id.clone())
            .bind(e.client_addr.clone())
            .bind(e.detail.clone())
            .bind(r.prev_hash.clone())
            .bind(r.hash.clone())
    }};
}

/// `INSERT INTO audit_log ... VALUES (...), (...)` for `rows` records.
fn sqlite_insert(rows: usize) -> String {
    sqlite_insert_with("INSERT", rows)
}

/// The same, as `INSERT OR ROLLBACK`: a conflict ends the whole transaction instead of
/// undoing the one statement. A statement that may fail halfway and be undone on its own
/// needs a statement journal (every page it changes is copied first, spilled to a temporary
/// file past 64 KiB); the steady-state writer rolls the whole batch back on any conflict
/// anyway, so it does without that copy, which cost about a tenth of an audited read's CPU.
fn sqlite_insert_or_rollback(rows: usize) -> String {
    sqlite_insert_with("INSERT OR ROLLBACK", rows)
}

fn sqlite_insert_with(verb: &str, rows: usize) -> String {
    let one = format!("({})", ["?"; 14].join(", "));
    format!(
        "{verb} INTO audit_log ({COLUMNS}) VALUES {};",
        vec![one; rows].join(", ")
    )
}

/// SQLite's audit writer for the steady state: a connection of its own, and the heads it
/// last wrote.
///
/// A batch is then two calls to SQLite's thread instead of five or more: `BEGIN IMMEDIATE`,
/// a compare-and-swap on each head and the multi-row inserts in one multi-statement call,
/// then `COMMIT` (or `ROLLBACK` when a head moved: another process, such as a CLI command,
/// wrote; the batch then takes the locking path). The connection is the only writer of the
/// audit tables in this process, so its page cache stays warm: pool connections take turns
/// and re-read the pages another connection changed.
#[derive(Debug)]
pub struct SqliteAuditWriter {
    options: sqlx::sqlite::SqliteConnectOptions,
    conn: tokio::sync::Mutex<WriterConnection>,
    heads: KnownHeads,
}

impl SqliteAuditWriter {
    pub(crate) fn new(options: sqlx::sqlite::SqliteConnectOptions) -> Self {
        Self {
            options,
            conn: tokio::sync::Mutex::new(WriterConnection::Idle),
            heads: KnownHeads::default(),
        }
    }

    /// Appends after the heads this process last wrote. `Ok(None)` when a head is unknown or
    /// moved: nothing was written and the batch must take the locking path.
    async fn append_at_known_heads(
        &self,
        key: &AuditKey,
        events: &[AuditEvent],
    ) -> Result<Option<Vec<AuditRecord>>, StoreError> {
        let err = |e| error::map(Dialect::Sqlite, e);
        let ws = workspaces(events);
        let Some(heads) = self.heads.of(&ws) else {
            return Ok(None);
        };
        let (records, advanced) = chain(key, heads.clone(), events);
        let mut sql = String::from("BEGIN IMMEDIATE;");
        for _ in &ws {
            sql.push_str(ADVANCE_IF_HEAD_SQLITE);
        }
        for chunk in records.chunks(SQLITE_INSERT_ROWS) {
            sql.push_str(&sqlite_insert_or_rollback(chunk.len()));
        }
        // Built from the constants above only: no data goes into the text, all of it is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (name, old) in &heads {
            let Some(new) = advanced.get(name) else {
                return Ok(None);
            };
            query = query
                .bind(new.seq)
                .bind(new.hash.clone())
                .bind(name.clone())
                .bind(old.seq)
                .bind(old.hash.clone());
        }
        for r in &records {
            query = bind_record!(query, r);
        }

        let mut slot = self.conn.lock().await;
        if matches!(*slot, WriterConnection::Idle) {
            use sqlx::ConnectOptions;
            *slot = WriterConnection::Open(self.options.connect().await.map_err(err)?);
        }
        let WriterConnection::Open(conn) = &mut *slot else {
            return Err(err(sqlx::Error::PoolClosed));
        };
        let outcome = match query.fetch_all(&mut *conn).await {
            Ok(advanced_heads) if advanced_heads.len() == ws.len() => sqlx::query("COMMIT")
                .execute(&mut *conn)
                .await
                .map(|_| true),
            Ok(_) => sqlx::query("ROLLBACK")
                .execute(&mut *conn)
                .await
                .map(|_| false),
            // Another writer stored these sequence numbers: the head moved (its compare-and-
            // swap matched nothing and the insert met the other writer's records). The insert
            // is `OR ROLLBACK`: SQLite has already rolled the transaction back.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(true) => {
                self.heads.remember(advanced);
                Ok(Some(records))
            }
            Ok(false) => Ok(None),
            Err(e) => {
                // The transaction may still be open: closing the connection rolls it back,
                // and the next batch opens a new one.
                if let WriterConnection::Open(conn) =
                    std::mem::replace(&mut *slot, WriterConnection::Idle)
                {
                    let _ = sqlx::Connection::close(conn).await;
                }
                Err(err(e))
            }
        }
    }

    pub(crate) async fn close(&self) {
        let mut slot = self.conn.lock().await;
        if let WriterConnection::Open(conn) =
            std::mem::replace(&mut *slot, WriterConnection::Closed)
        {
            let _ = sqlx::Connection::close(conn).await;
        }
    }
}

impl SqliteStore {
    /// The general case: take the write lock, read each workspace's head, insert, advance.
    async fn append_locking(
        &self,
        events: &[AuditEvent],
    ) -> Result<(Vec<AuditRecord>, BTreeMap<String, AuditHead>), StoreError> {
        let err = |e| error::map(Dialect::Sqlite, e);
        let mut tx = self.pool().begin().await.map_err(err)?;
        let appended = self.append_in(&mut tx, events).await?;
        tx.commit().await.map_err(err)?;
        Ok(appended)
    }

    /// Appends inside the caller's transaction (the locking path): a change and its record
    /// commit together. The caller commits, then calls [`Self::remember_heads`].
    pub(crate) async fn append_in(
        &self,
        tx: &mut sqlx::SqliteConnection,
        events: &[AuditEvent],
    ) -> Result<(Vec<AuditRecord>, BTreeMap<String, AuditHead>), StoreError> {
        let err = |e| error::map(Dialect::Sqlite, e);
        let key = self.audit_key.get()?;
        let mut heads = BTreeMap::new();
        // The first statement writes, so the transaction takes SQLite's write lock before it
        // reads anything: concurrent writers queue (busy_timeout) instead of deadlocking.
        for ws in workspaces(events) {
            let row = sqlx::query(LOCK_HEAD)
                .bind(ws.clone())
                .bind(GENESIS_HASH)
                .fetch_one(&mut *tx)
                .await
                .map_err(err)?;
            heads.insert(
                ws,
                AuditHead {
                    seq: row.int("seq")?,
                    hash: row.text("hash")?,
                },
            );
        }
        let (records, heads) = chain(&key, heads, events);
        for chunk in records.chunks(SQLITE_INSERT_ROWS) {
            let sql = sqlite_insert(chunk.len());
            // Constants only (see `sqlite_insert`); the records are bound.
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
            for r in chunk {
                insert = bind_record!(insert, r);
            }
            insert.execute(&mut *tx).await.map_err(err)?;
        }
        for (ws, head) in &heads {
            sqlx::query(ADVANCE_HEAD)
                .bind(head.seq)
                .bind(head.hash.clone())
                .bind(ws.clone())
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        Ok((records, heads))
    }

    /// After a commit: the steady-state writer continues from these heads.
    pub(crate) fn remember_heads(&self, heads: BTreeMap<String, AuditHead>) {
        if let Some(writer) = &self.audit {
            writer.heads.remember(heads);
        }
    }
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn count_audit_by_hour(
        &self,
        workspace: &WorkspaceId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<AuditCount>, StoreError> {
        self.audit_counts(workspace, from, to).await
    }

    async fn append_audit(&self, events: &[AuditEvent]) -> Result<Vec<AuditRecord>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(writer) = &self.audit
            && let Some(records) = writer
                .append_at_known_heads(&*self.audit_key.get()?, events)
                .await?
        {
            return Ok(records);
        }
        let (records, heads) = self.append_locking(events).await?;
        self.remember_heads(heads);
        Ok(records)
    }

    async fn list_audit(
        &self,
        workspace: &WorkspaceId,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.audit_list(workspace, filter).await
    }

    async fn audit_heads(&self) -> Result<Vec<(WorkspaceId, AuditHead)>, StoreError> {
        self.audit_heads_all().await
    }

    async fn audit_range(
        &self,
        workspace: &WorkspaceId,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.audit_after(workspace, after_seq, limit).await
    }

    async fn audit_workspaces(&self) -> Result<Vec<WorkspaceId>, StoreError> {
        self.audit_chained().await
    }

    async fn workspaces_expecting_audit(&self) -> Result<Vec<WorkspaceId>, StoreError> {
        self.audit_expecting().await
    }

    async fn sealed_audit_key(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.audit_key_sealed().await
    }

    async fn put_sealed_audit_key(
        &self,
        sealed: &[u8],
        replacing: Option<&[u8]>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.audit_key_put(sealed, replacing, now).await
    }
}

impl PostgresStore {
    /// Binds a batch's columns as arrays, for `INSERT_MANY_PG` and `APPEND_IF_HEAD_PG`.
    fn bind_batch<'q>(
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
        records: &[AuditRecord],
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        let col = |f: fn(&AuditRecord) -> Option<String>| records.iter().map(f).collect::<Vec<_>>();
        query
            .bind(col(|r| Some(r.event.workspace_id.as_str().to_owned())))
            .bind(records.iter().map(|r| r.seq).collect::<Vec<i64>>())
            .bind(records.iter().map(|r| r.event.at.0).collect::<Vec<i64>>())
            .bind(col(|r| Some(r.event.action.as_str().to_owned())))
            .bind(col(|r| Some(r.event.outcome.as_str().to_owned())))
            .bind(col(|r| r.event.api_key_id.clone()))
            .bind(col(|r| r.event.actor_id.clone()))
            .bind(col(|r| r.event.connection_id.clone()))
            .bind(col(|r| r.event.provider.clone()))
            .bind(col(|r| r.event.request_id.clone()))
            .bind(col(|r| r.event.client_addr.clone()))
            .bind(col(|r| r.event.detail.clone()))
            .bind(col(|r| Some(r.prev_hash.clone())))
            .bind(col(|r| Some(r.hash.clone())))
    }

    /// The steady state: one workspace whose head this process wrote last. `None` when the
    /// head moved (another writer) and the batch must take the locking path.
    async fn append_at_known_head(
        &self,
        ws: &str,
        head: AuditHead,
        events: &[AuditEvent],
    ) -> Result<Option<Vec<AuditRecord>>, StoreError> {
        let key = self.audit_key.get()?;
        let (records, heads) = chain(
            &key,
            BTreeMap::from([(ws.to_owned(), head.clone())]),
            events,
        );
        let Some(next) = heads.get(ws) else {
            return Ok(None);
        };
        let inserted = Self::bind_batch(sqlx::query(APPEND_IF_HEAD_PG), &records)
            .bind(next.seq)
            .bind(next.hash.clone())
            .bind(ws.to_owned())
            .bind(head.seq)
            .bind(head.hash)
            .execute(&self.pool)
            .await
            .map_err(|e| error::map(Dialect::Postgres, e))?
            .rows_affected();
        if inserted as usize != records.len() {
            return Ok(None);
        }
        self.audit_heads.remember(heads);
        Ok(Some(records))
    }

    /// The general case: lock each workspace's head in a transaction, insert, advance.
    async fn append_locking(&self, events: &[AuditEvent]) -> Result<Vec<AuditRecord>, StoreError> {
        let err = |e| error::map(Dialect::Postgres, e);
        let mut tx = self.pool().begin().await.map_err(err)?;
        let (records, heads) = self.append_in(&mut tx, events).await?;
        tx.commit().await.map_err(err)?;
        self.audit_heads.remember(heads);
        Ok(records)
    }

    /// Appends inside the caller's transaction (the locking path): a change and its record
    /// commit together. The caller commits, then remembers the heads.
    pub(crate) async fn append_in(
        &self,
        tx: &mut sqlx::PgConnection,
        events: &[AuditEvent],
    ) -> Result<(Vec<AuditRecord>, BTreeMap<String, AuditHead>), StoreError> {
        let err = |e| error::map(Dialect::Postgres, e);
        let key = self.audit_key.get()?;
        let mut heads = BTreeMap::new();
        // Workspaces in id order: two batches lock shared heads in the same order.
        for ws in workspaces(events) {
            let row = sqlx::query(LOCK_HEAD)
                .bind(ws.clone())
                .bind(GENESIS_HASH)
                .fetch_one(&mut *tx)
                .await
                .map_err(err)?;
            heads.insert(
                ws,
                AuditHead {
                    seq: row.int("seq")?,
                    hash: row.text("hash")?,
                },
            );
        }
        let (records, heads) = chain(&key, heads, events);
        Self::bind_batch(sqlx::query(INSERT_MANY_PG), &records)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        for (ws, head) in &heads {
            sqlx::query(ADVANCE_HEAD)
                .bind(head.seq)
                .bind(head.hash.clone())
                .bind(ws.clone())
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        Ok((records, heads))
    }

    /// After a commit: the steady-state writer continues from these heads.
    pub(crate) fn remember_heads(&self, heads: BTreeMap<String, AuditHead>) {
        self.audit_heads.remember(heads);
    }
}

#[async_trait]
impl AuditStore for PostgresStore {
    async fn count_audit_by_hour(
        &self,
        workspace: &WorkspaceId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<AuditCount>, StoreError> {
        self.audit_counts(workspace, from, to).await
    }

    async fn append_audit(&self, events: &[AuditEvent]) -> Result<Vec<AuditRecord>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let ws = workspaces(events);
        if let [only] = ws.as_slice()
            && let Some(head) = self
                .audit_heads
                .of(std::slice::from_ref(only))
                .and_then(|mut heads| heads.remove(only))
            && let Some(records) = self.append_at_known_head(only, head, events).await?
        {
            return Ok(records);
        }
        self.append_locking(events).await
    }

    async fn list_audit(
        &self,
        workspace: &WorkspaceId,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.audit_list(workspace, filter).await
    }

    async fn audit_heads(&self) -> Result<Vec<(WorkspaceId, AuditHead)>, StoreError> {
        self.audit_heads_all().await
    }

    async fn audit_range(
        &self,
        workspace: &WorkspaceId,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.audit_after(workspace, after_seq, limit).await
    }

    async fn audit_workspaces(&self) -> Result<Vec<WorkspaceId>, StoreError> {
        self.audit_chained().await
    }

    async fn workspaces_expecting_audit(&self) -> Result<Vec<WorkspaceId>, StoreError> {
        self.audit_expecting().await
    }

    async fn sealed_audit_key(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.audit_key_sealed().await
    }

    async fn put_sealed_audit_key(
        &self,
        sealed: &[u8],
        replacing: Option<&[u8]>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.audit_key_put(sealed, replacing, now).await
    }
}

const API_KEY_WORKSPACE: &str = "SELECT workspace_id FROM api_keys WHERE id = $1";

macro_rules! impl_key_lookup {
    ($store:ty, $dialect:expr) => {
        impl $store {
            /// The workspace an API key belongs to (for audit records of its revocation).
            pub async fn api_key_workspace(
                &self,
                key_id: &str,
            ) -> Result<Option<WorkspaceId>, StoreError> {
                sqlx::query(API_KEY_WORKSPACE)
                    .bind(key_id.to_owned())
                    .fetch_optional(self.pool())
                    .await
                    .map_err(|e| error::map($dialect, e))?
                    .map(|row| row.text("workspace_id").map(WorkspaceId::from_stored))
                    .transpose()
            }
        }
    };
}

impl_key_lookup!(SqliteStore, Dialect::Sqlite);
impl_key_lookup!(PostgresStore, Dialect::Postgres);
