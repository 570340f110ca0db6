//! The `ActionStore` (previews, execution claims, webhook secrets), written once for both SQL
//! dialects and expanded in `sqlite_actions.rs` and `postgres_actions.rs` with that dialect's
//! types. Every claim is one `INSERT ... ON CONFLICT DO NOTHING` against the primary key
//! (workspace, preview) and the unique (workspace, idempotency key) index, so of concurrent
//! executes on any number of instances exactly one inserts its row and sends. SQLite (3.24+)
//! accepts the same statements as PostgreSQL.

/// Expands the row mappers and `impl ActionStore for $store` for one dialect; `err` is the
/// dialect's error mapping at the expansion site.
macro_rules! sql_action_store {
    ($store:ty, $row:ty) => {
        const PREVIEW_COLUMNS: &str =
            "id, workspace_id, action, connection_id, digest, payload, created_at, expires_at";
        const EXECUTION_COLUMNS: &str =
            "workspace_id, preview_id, idempotency_key, claimed_at, completed_at, outcome";
        const SECRET_COLUMNS: &str = "id, workspace_id, secret, created_at, retires_at";

        fn preview_of(row: &$row) -> Result<PreviewRecord, StoreError> {
            Ok(PreviewRecord {
                id: row.try_get("id").map_err(err)?,
                workspace_id: WorkspaceId::from_stored(row.try_get("workspace_id").map_err(err)?),
                action: row.try_get("action").map_err(err)?,
                connection_id: row
                    .try_get::<Option<String>, _>("connection_id")
                    .map_err(err)?
                    .map(ConnectionId::from_stored),
                digest: row.try_get("digest").map_err(err)?,
                payload: row.try_get("payload").map_err(err)?,
                created_at: Timestamp(row.try_get("created_at").map_err(err)?),
                expires_at: Timestamp(row.try_get("expires_at").map_err(err)?),
            })
        }

        fn execution_of(row: &$row) -> Result<ExecutionRecord, StoreError> {
            Ok(ExecutionRecord {
                workspace_id: WorkspaceId::from_stored(row.try_get("workspace_id").map_err(err)?),
                preview_id: row.try_get("preview_id").map_err(err)?,
                idempotency_key: row.try_get("idempotency_key").map_err(err)?,
                claimed_at: Timestamp(row.try_get("claimed_at").map_err(err)?),
                completed_at: row
                    .try_get::<Option<i64>, _>("completed_at")
                    .map_err(err)?
                    .map(Timestamp),
                outcome: row.try_get("outcome").map_err(err)?,
            })
        }

        fn secret_of(row: &$row) -> Result<WebhookSecretRecord, StoreError> {
            Ok(WebhookSecretRecord {
                id: row.try_get("id").map_err(err)?,
                workspace_id: WorkspaceId::from_stored(row.try_get("workspace_id").map_err(err)?),
                secret: row.try_get("secret").map_err(err)?,
                created_at: Timestamp(row.try_get("created_at").map_err(err)?),
                retires_at: row
                    .try_get::<Option<i64>, _>("retires_at")
                    .map_err(err)?
                    .map(Timestamp),
            })
        }

        impl $store {
            async fn execution_by_key(
                &self,
                workspace: &WorkspaceId,
                key: &str,
            ) -> Result<Option<ExecutionRecord>, StoreError> {
                let sql = format!(
                    "SELECT {EXECUTION_COLUMNS} FROM action_executions WHERE workspace_id = $1 AND idempotency_key = $2"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(workspace.as_str())
                    .bind(key)
                    .fetch_optional(self.pool())
                    .await
                    .map_err(err)?
                    .as_ref()
                    .map(execution_of)
                    .transpose()
            }
        }

        #[async_trait]
        impl ActionStore for $store {
            async fn insert_preview(&self, p: &PreviewRecord) -> Result<(), StoreError> {
                let sql = format!(
                    "INSERT INTO action_previews ({PREVIEW_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(&p.id)
                    .bind(p.workspace_id.as_str())
                    .bind(&p.action)
                    .bind(p.connection_id.as_ref().map(|c| c.as_str()))
                    .bind(&p.digest)
                    .bind(&p.payload)
                    .bind(p.created_at.0)
                    .bind(p.expires_at.0)
                    .execute(self.pool())
                    .await
                    .map_err(err)?;
                Ok(())
            }

            async fn get_preview(
                &self,
                workspace: &WorkspaceId,
                id: &str,
            ) -> Result<Option<PreviewRecord>, StoreError> {
                let sql = format!(
                    "SELECT {PREVIEW_COLUMNS} FROM action_previews WHERE workspace_id = $1 AND id = $2"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(workspace.as_str())
                    .bind(id)
                    .fetch_optional(self.pool())
                    .await
                    .map_err(err)?
                    .as_ref()
                    .map(preview_of)
                    .transpose()
            }

            async fn purge_expired_previews(&self, before: Timestamp) -> Result<u64, StoreError> {
                let mut tx = self.pool().begin().await.map_err(err)?;
                sqlx::query(
                    "DELETE FROM action_executions WHERE (workspace_id, preview_id) IN \
                     (SELECT workspace_id, id FROM action_previews WHERE expires_at < $1)",
                )
                .bind(before.0)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
                let done = sqlx::query("DELETE FROM action_previews WHERE expires_at < $1")
                    .bind(before.0)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await.map_err(err)?;
                Ok(done.rows_affected())
            }

            async fn claim_execution(&self, c: &ExecutionRecord) -> Result<Claim, StoreError> {
                // A row can vanish between our failed insert and the read (its claim was released):
                // then try again; a handful of rounds is plenty.
                for _ in 0..5 {
                    let sql = format!(
                        "INSERT INTO action_executions ({EXECUTION_COLUMNS}) VALUES ($1, $2, $3, $4, NULL, NULL) ON CONFLICT DO NOTHING"
                    );
                    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(c.workspace_id.as_str())
                        .bind(&c.preview_id)
                        .bind(c.idempotency_key.as_deref())
                        .bind(c.claimed_at.0)
                        .execute(self.pool())
                        .await
                        .map_err(err)?;
                    if done.rows_affected() == 1 {
                        return Ok(Claim::Claimed);
                    }
                    if let Some(existing) = self.get_execution(&c.workspace_id, &c.preview_id).await? {
                        return Ok(Claim::Existing(existing));
                    }
                    if let Some(key) = &c.idempotency_key
                        && let Some(existing) = self.execution_by_key(&c.workspace_id, key).await?
                    {
                        return Ok(Claim::Existing(existing));
                    }
                }
                Err(StoreError::Conflict(
                    "the execution claim kept changing; try again".into(),
                ))
            }

            async fn get_execution(
                &self,
                workspace: &WorkspaceId,
                preview_id: &str,
            ) -> Result<Option<ExecutionRecord>, StoreError> {
                let sql = format!(
                    "SELECT {EXECUTION_COLUMNS} FROM action_executions WHERE workspace_id = $1 AND preview_id = $2"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(workspace.as_str())
                    .bind(preview_id)
                    .fetch_optional(self.pool())
                    .await
                    .map_err(err)?
                    .as_ref()
                    .map(execution_of)
                    .transpose()
            }

            async fn complete_execution(
                &self,
                workspace: &WorkspaceId,
                preview_id: &str,
                outcome: &[u8],
                now: Timestamp,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE action_executions SET completed_at = $1, outcome = $2 \
                     WHERE workspace_id = $3 AND preview_id = $4 AND completed_at IS NULL",
                )
                .bind(now.0)
                .bind(outcome)
                .bind(workspace.as_str())
                .bind(preview_id)
                .execute(self.pool())
                .await
                .map_err(err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn release_execution(
                &self,
                workspace: &WorkspaceId,
                preview_id: &str,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "DELETE FROM action_executions \
                     WHERE workspace_id = $1 AND preview_id = $2 AND completed_at IS NULL",
                )
                .bind(workspace.as_str())
                .bind(preview_id)
                .execute(self.pool())
                .await
                .map_err(err)?;
                Ok(())
            }

            async fn webhook_secrets(
                &self,
                workspace: &WorkspaceId,
                now: Timestamp,
            ) -> Result<Vec<WebhookSecretRecord>, StoreError> {
                let sql = format!(
                    "SELECT {SECRET_COLUMNS} FROM webhook_secrets \
                     WHERE workspace_id = $1 AND (retires_at IS NULL OR retires_at > $2) \
                     ORDER BY created_at DESC, id DESC"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(workspace.as_str())
                    .bind(now.0)
                    .fetch_all(self.pool())
                    .await
                    .map_err(err)?;
                rows.iter().map(secret_of).collect()
            }

            async fn insert_first_webhook_secret(
                &self,
                s: &WebhookSecretRecord,
            ) -> Result<bool, StoreError> {
                let sql = format!(
                    "INSERT INTO webhook_secrets ({SECRET_COLUMNS}) VALUES ($1, $2, $3, $4, NULL) ON CONFLICT DO NOTHING"
                );
                let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(&s.id)
                    .bind(s.workspace_id.as_str())
                    .bind(&s.secret)
                    .bind(s.created_at.0)
                    .execute(self.pool())
                    .await
                    .map_err(err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn rotate_webhook_secret(
                &self,
                s: &WebhookSecretRecord,
                retire_at: Timestamp,
            ) -> Result<(), StoreError> {
                let mut tx = self.pool().begin().await.map_err(err)?;
                // Only the current and the previous secret sign: a secret rotated out earlier
                // stops now, however much of its grace period was left (otherwise each rotation
                // within the grace period added one more signature to every delivery).
                sqlx::query(
                    "UPDATE webhook_secrets SET retires_at = $1 \
                     WHERE workspace_id = $2 AND retires_at IS NOT NULL AND retires_at > $1",
                )
                .bind(s.created_at.0)
                .bind(s.workspace_id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(err)?;
                sqlx::query(
                    "UPDATE webhook_secrets SET retires_at = $1 WHERE workspace_id = $2 AND retires_at IS NULL",
                )
                .bind(retire_at.0)
                .bind(s.workspace_id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(err)?;
                let sql =
                    format!("INSERT INTO webhook_secrets ({SECRET_COLUMNS}) VALUES ($1, $2, $3, $4, NULL)");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(&s.id)
                    .bind(s.workspace_id.as_str())
                    .bind(&s.secret)
                    .bind(s.created_at.0)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await.map_err(err)?;
                Ok(())
            }
        }
    };
}

pub(crate) use sql_action_store;
