//! The `Store` implementation, written once for both SQL dialects.
//!
//! Every query Relay's store runs is the same text on SQLite and PostgreSQL (`$N` placeholders,
//! `RETURNING`, `ON CONFLICT`, integer milliseconds for times), so the implementation is one
//! macro expanded in `sqlite.rs` and `postgres.rs` with that dialect's types. Names in the body
//! (`err`, `rows`, the column macros, the domain types) resolve where it is expanded, so each
//! dialect keeps its own error mapping.

/// Expands `bind_connection` and `impl Store for $store` for one dialect.
macro_rules! sql_store {
    ($store:ty, $db:ty, $args:ty) => {
        type Q = sqlx::query::Query<'static, $db, $args>;

        /// Binds every column of `connections`, in `connection_columns!` order.
        fn bind_connection(q: Q, c: &Connection) -> Q {
            q.bind(c.id.as_str().to_owned())
                .bind(c.workspace_id.as_str().to_owned())
                .bind(c.provider.as_str().to_owned())
                .bind(c.actor_type.as_str().to_owned())
                .bind(c.actor_id.as_str().to_owned())
                .bind(c.scopes.to_space_separated())
                .bind(c.token_type.clone())
                .bind(c.access_token.clone())
                .bind(c.refresh_token.clone())
                .bind(c.expires_at.map(|t| t.0))
                .bind(c.status.as_str())
                .bind(c.status_reason.clone())
                .bind(c.version)
                .bind(c.lease_owner.clone())
                .bind(c.lease_until.map(|t| t.0))
                .bind(c.created_at.0)
                .bind(c.updated_at.0)
                .bind(c.last_refreshed_at.map(|t| t.0))
                .bind(c.next_refresh_at.map(|t| t.0))
                .bind(c.refresh_failures)
                .bind(c.account_subject.clone())
                .bind(c.account_email.clone())
        }


        /// Inserts a connection or replaces its tokens (see `Store::upsert_connection`).
        fn upsert_query(conn: &Connection) -> Q {
            // The WHERE on the conflict branch refuses to hand one actor's key to another
            // connection id (the new tokens were sealed for `conn.id`): no row comes back then.
            let q = sqlx::query(concat!(
                    "INSERT INTO connections (",
                    connection_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
                               $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22) \
                     ON CONFLICT (workspace_id, provider, actor_type, actor_id) DO UPDATE SET \
                        scopes = excluded.scopes, \
                        token_type = excluded.token_type, \
                        access_token = excluded.access_token, \
                        refresh_token = COALESCE(excluded.refresh_token, connections.refresh_token), \
                        expires_at = excluded.expires_at, \
                        status = 'active', \
                        status_reason = NULL, \
                        version = connections.version + 1, \
                        lease_owner = NULL, \
                        lease_until = NULL, \
                        updated_at = excluded.updated_at, \
                        last_refreshed_at = COALESCE(excluded.last_refreshed_at, connections.last_refreshed_at), \
                        next_refresh_at = excluded.next_refresh_at, \
                        refresh_failures = 0, \
                        account_subject = excluded.account_subject, \
                        account_email = excluded.account_email \
                     WHERE connections.id = excluded.id \
                     RETURNING ",
                    connection_columns!()
                ));
            bind_connection(q, conn)
        }

        fn upserted(row: Option<<$db as sqlx::Database>::Row>) -> Result<Connection, StoreError> {
            match row {
                Some(row) => rows::connection(&row),
                None => Err(StoreError::Conflict(
                    "another connection holds this workspace, provider and actor".into(),
                )),
            }
        }

        /// A failure while writing a change's audit record inside its transaction.
        fn audit_failed(e: StoreError) -> StoreError {
            StoreError::Audit(e.to_string())
        }

        const DELETE_CONNECTION: &str = "DELETE FROM connections WHERE id = $1 AND workspace_id = $2";

        #[async_trait]
        impl Store for $store {
            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1")
                    .execute(&self.pool)
                    .await
                    .map_err(err)?;
                Ok(())
            }

            async fn ensure_workspace(&self, name: &str, now: Timestamp) -> Result<Workspace, StoreError> {
                const SELECT: &str = "SELECT id, name, created_at FROM workspaces WHERE name = $1";
                if let Some(row) = sqlx::query(SELECT)
                    .bind(name.to_owned())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(err)?
                {
                    return rows::workspace(&row);
                }
                // Two callers may create the same workspace at once: the loser's insert does nothing
                // and both read the winner's row.
                sqlx::query(
                    "INSERT INTO workspaces (id, name, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(WorkspaceId::generate().as_str().to_owned())
                .bind(name.to_owned())
                .bind(now.0)
                .execute(&self.pool)
                .await
                .map_err(err)?;
                let row = sqlx::query(SELECT)
                    .bind(name.to_owned())
                    .fetch_one(&self.pool)
                    .await
                    .map_err(err)?;
                rows::workspace(&row)
            }

            async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
                sqlx::query(concat!(
                    "INSERT INTO api_keys (",
                    api_key_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
                ))
                .bind(key.id.clone())
                .bind(key.workspace_id.as_str().to_owned())
                .bind(key.secret_hash.clone())
                .bind(key.created_at.0)
                .bind(key.revoked_at.map(|t| t.0))
                .bind(key.rate_limit_per_minute)
                .bind(key.role.as_str())
                .execute(&self.pool)
                .await
                .map_err(err)?;
                Ok(())
            }

            async fn find_api_key_by_hash(
                &self,
                secret_hash: &str,
            ) -> Result<Option<ApiKeyRecord>, StoreError> {
                sqlx::query(concat!(
                    "SELECT ",
                    api_key_columns!(),
                    " FROM api_keys WHERE secret_hash = $1"
                ))
                .bind(secret_hash.to_owned())
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?
                .map(|row| rows::api_key(&row))
                .transpose()
            }

            async fn revoke_api_key(&self, id: &str, now: Timestamp) -> Result<bool, StoreError> {
                let done =
                    sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                        .bind(id.to_owned())
                        .bind(now.0)
                        .execute(&self.pool)
                        .await
                        .map_err(err)?;
                Ok(done.rows_affected() > 0)
            }

            async fn insert_flow(&self, flow: &FlowRecord) -> Result<(), StoreError> {
                sqlx::query(concat!(
                    "INSERT INTO oauth_flows (",
                    flow_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5)"
                ))
                .bind(flow.state_hash.clone())
                .bind(flow.workspace_id.as_str().to_owned())
                .bind(flow.sealed.clone())
                .bind(flow.created_at.0)
                .bind(flow.expires_at.0)
                .execute(&self.pool)
                .await
                .map_err(err)?;
                Ok(())
            }

            async fn take_flow(&self, state_hash: &str) -> Result<Option<FlowRecord>, StoreError> {
                // One statement: of two concurrent deletes of the row, only one sees it.
                sqlx::query(concat!(
                    "DELETE FROM oauth_flows WHERE state_hash = $1 RETURNING ",
                    flow_columns!()
                ))
                .bind(state_hash.to_owned())
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?
                .map(|row| rows::flow(&row))
                .transpose()
            }

            async fn purge_expired_flows(&self, now: Timestamp) -> Result<u64, StoreError> {
                let done = sqlx::query("DELETE FROM oauth_flows WHERE expires_at < $1")
                    .bind(now.0)
                    .execute(&self.pool)
                    .await
                    .map_err(err)?;
                Ok(done.rows_affected())
            }

            async fn upsert_connection(&self, conn: &Connection) -> Result<Connection, StoreError> {
                upserted(upsert_query(conn).fetch_optional(&self.pool).await.map_err(err)?)
            }

            async fn upsert_connection_audited(
                &self,
                conn: &Connection,
                audit: &relay_core::audit::AuditEvent,
            ) -> Result<Connection, StoreError> {
                let mut tx = self.pool.begin().await.map_err(err)?;
                let saved = upserted(upsert_query(conn).fetch_optional(&mut *tx).await.map_err(err)?)?;
                let (_, heads) = self
                    .append_in(&mut tx, std::slice::from_ref(audit))
                    .await
                    .map_err(audit_failed)?;
                tx.commit().await.map_err(err)?;
                self.remember_heads(heads);
                Ok(saved)
            }

            async fn get_connection(&self, id: &ConnectionId) -> Result<Option<Connection>, StoreError> {
                sqlx::query(concat!(
                    "SELECT ",
                    connection_columns!(),
                    " FROM connections WHERE id = $1"
                ))
                .bind(id.as_str().to_owned())
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?
                .map(|row| rows::connection(&row))
                .transpose()
            }

            async fn find_connection(
                &self,
                workspace: &WorkspaceId,
                provider: &ProviderName,
                actor_type: &ActorType,
                actor_id: &ActorId,
            ) -> Result<Option<Connection>, StoreError> {
                sqlx::query(concat!(
                    "SELECT ",
                    connection_columns!(),
                    " FROM connections \
                      WHERE workspace_id = $1 AND provider = $2 AND actor_type = $3 AND actor_id = $4"
                ))
                .bind(workspace.as_str().to_owned())
                .bind(provider.as_str().to_owned())
                .bind(actor_type.as_str().to_owned())
                .bind(actor_id.as_str().to_owned())
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?
                .map(|row| rows::connection(&row))
                .transpose()
            }

            async fn list_connections(
                &self,
                workspace: &WorkspaceId,
                filter: &ConnectionFilter,
            ) -> Result<Vec<Connection>, StoreError> {
                sqlx::query(concat!(
                    "SELECT ",
                    connection_columns!(),
                    " FROM connections \
                      WHERE workspace_id = $1 \
                        AND ($2 IS NULL OR provider = $2) \
                        AND ($3 IS NULL OR actor_type = $3) \
                        AND ($4 IS NULL OR actor_id = $4) \
                      ORDER BY created_at, id \
                      LIMIT $5"
                ))
                .bind(workspace.as_str().to_owned())
                .bind(filter.provider.as_ref().map(|p| p.as_str().to_owned()))
                .bind(filter.actor_type.as_ref().map(|a| a.as_str().to_owned()))
                .bind(filter.actor_id.as_ref().map(|a| a.as_str().to_owned()))
                .bind(rows::list_limit(filter.limit))
                .fetch_all(&self.pool)
                .await
                .map_err(err)?
                .iter()
                .map(rows::connection)
                .collect()
            }

            async fn connections_page(
                &self,
                after: Option<&ConnectionId>,
                limit: u32,
            ) -> Result<Vec<Connection>, StoreError> {
                sqlx::query(concat!(
                    "SELECT ",
                    connection_columns!(),
                    " FROM connections WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2"
                ))
                .bind(after.map(|a| a.as_str().to_owned()))
                .bind(i64::from(limit.clamp(1, 10_000)))
                .fetch_all(&self.pool)
                .await
                .map_err(err)?
                .iter()
                .map(rows::connection)
                .collect()
            }

            async fn reseal_connection(
                &self,
                id: &ConnectionId,
                expected_version: i64,
                access_token: &[u8],
                refresh_token: Option<&[u8]>,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE connections SET access_token = $1, refresh_token = COALESCE($2, refresh_token) \
                     WHERE id = $3 AND version = $4",
                )
                .bind(access_token.to_vec())
                .bind(refresh_token.map(<[u8]>::to_vec))
                .bind(id.as_str().to_owned())
                .bind(expected_version)
                .execute(&self.pool)
                .await
                .map_err(err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn sealed_values_page(
                &self,
                kind: SealedKind,
                after: Option<(&WorkspaceId, &str)>,
                limit: u32,
            ) -> Result<Vec<SealedValue>, StoreError> {
                let sql = rows::sealed_sql(kind).page;
                let (ws, rec) = match after {
                    Some((ws, rec)) => (Some(ws.as_str().to_owned()), Some(rec.to_owned())),
                    None => (None, None),
                };
                sqlx::query(sql)
                    .bind(ws)
                    .bind(rec)
                    .bind(i64::from(limit.clamp(1, 10_000)))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(err)?
                    .iter()
                    .map(|row| {
                        Ok(SealedValue {
                            workspace_id: WorkspaceId::from_stored(rows::Fields::text(row, "workspace_id")?),
                            record: rows::Fields::text(row, "record")?,
                            sealed: rows::Fields::bytes(row, "sealed")?,
                        })
                    })
                    .collect()
            }

            async fn reseal_value(
                &self,
                kind: SealedKind,
                value: &SealedValue,
                new: &[u8],
            ) -> Result<bool, StoreError> {
                let sql = rows::sealed_sql(kind).reseal;
                let done = sqlx::query(sql)
                    .bind(new.to_vec())
                    .bind(value.workspace_id.as_str().to_owned())
                    .bind(value.record.clone())
                    .bind(value.sealed.clone())
                    .execute(&self.pool)
                    .await
                    .map_err(err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete_connection(
                &self,
                workspace: &WorkspaceId,
                id: &ConnectionId,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(DELETE_CONNECTION)
                    .bind(id.as_str().to_owned())
                    .bind(workspace.as_str().to_owned())
                    .execute(&self.pool)
                    .await
                    .map_err(err)?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_connection_audited(
                &self,
                workspace: &WorkspaceId,
                id: &ConnectionId,
                audit: &relay_core::audit::AuditEvent,
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await.map_err(err)?;
                let done = sqlx::query(DELETE_CONNECTION)
                    .bind(id.as_str().to_owned())
                    .bind(workspace.as_str().to_owned())
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                if done.rows_affected() == 0 {
                    // Nothing changed, nothing to record (dropping `tx` rolls it back).
                    return Ok(false);
                }
                let (_, heads) = self
                    .append_in(&mut tx, std::slice::from_ref(audit))
                    .await
                    .map_err(audit_failed)?;
                tx.commit().await.map_err(err)?;
                self.remember_heads(heads);
                Ok(true)
            }

            async fn try_acquire_lease(
                &self,
                id: &ConnectionId,
                owner: &str,
                now: Timestamp,
                until: Timestamp,
            ) -> Result<Option<Connection>, StoreError> {
                sqlx::query(concat!(
                    "UPDATE connections SET lease_owner = $2, lease_until = $3 \
                      WHERE id = $1 AND (lease_until IS NULL OR lease_until <= $4) \
                      RETURNING ",
                    connection_columns!()
                ))
                .bind(id.as_str().to_owned())
                .bind(owner.to_owned())
                .bind(until.0)
                .bind(now.0)
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?
                .map(|row| rows::connection(&row))
                .transpose()
            }

            async fn release_lease(
                &self,
                id: &ConnectionId,
                owner: &str,
                failed_retry_at: Option<Timestamp>,
            ) -> Result<(), StoreError> {
                let q = match failed_retry_at {
                    None => sqlx::query(
                        "UPDATE connections SET lease_owner = NULL, lease_until = NULL \
                          WHERE id = $1 AND lease_owner = $2",
                    )
                    .bind(id.as_str().to_owned())
                    .bind(owner.to_owned()),
                    Some(retry_at) => sqlx::query(
                        "UPDATE connections SET lease_owner = NULL, lease_until = NULL, \
                                refresh_failures = refresh_failures + 1, next_refresh_at = $3 \
                          WHERE id = $1 AND lease_owner = $2",
                    )
                    .bind(id.as_str().to_owned())
                    .bind(owner.to_owned())
                    .bind(retry_at.0),
                };
                q.execute(&self.pool).await.map_err(err)?;
                Ok(())
            }

            async fn complete_refresh(
                &self,
                id: &ConnectionId,
                owner: &str,
                expected_version: i64,
                update: &TokenUpdate,
            ) -> Result<Option<Connection>, StoreError> {
                sqlx::query(concat!(
                    "UPDATE connections SET \
                        access_token = $4, \
                        refresh_token = COALESCE($5, refresh_token), \
                        token_type = $6, \
                        expires_at = $7, \
                        scopes = COALESCE($8, scopes), \
                        next_refresh_at = $9, \
                        last_refreshed_at = $10, \
                        updated_at = $10, \
                        version = version + 1, \
                        lease_owner = NULL, \
                        lease_until = NULL, \
                        refresh_failures = 0 \
                      WHERE id = $1 AND version = $2 AND lease_owner = $3 \
                      RETURNING ",
                    connection_columns!()
                ))
                .bind(id.as_str().to_owned())
                .bind(expected_version)
                .bind(owner.to_owned())
                .bind(update.access_token.clone())
                .bind(update.refresh_token.clone())
                .bind(update.token_type.clone())
                .bind(update.expires_at.map(|t| t.0))
                .bind(update.scopes.as_ref().map(|s| s.to_space_separated()))
                .bind(update.next_refresh_at.map(|t| t.0))
                .bind(update.now.0)
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?
                .map(|row| rows::connection(&row))
                .transpose()
            }

            async fn mark_needs_reauth(
                &self,
                id: &ConnectionId,
                owner: &str,
                expected_version: i64,
                reason: &str,
                now: Timestamp,
            ) -> Result<Option<Connection>, StoreError> {
                // Nothing left to refresh: next_refresh_at is cleared so the background refresher
                // skips the row until the user reconnects.
                sqlx::query(concat!(
                    "UPDATE connections SET \
                        status = 'needs_reauth', \
                        status_reason = $4, \
                        version = version + 1, \
                        lease_owner = NULL, \
                        lease_until = NULL, \
                        next_refresh_at = NULL, \
                        updated_at = $5 \
                      WHERE id = $1 AND version = $2 AND lease_owner = $3 \
                      RETURNING ",
                    connection_columns!()
                ))
                .bind(id.as_str().to_owned())
                .bind(expected_version)
                .bind(owner.to_owned())
                .bind(reason.to_owned())
                .bind(now.0)
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?
                .map(|row| rows::connection(&row))
                .transpose()
            }

            async fn vault_keys(&self) -> Result<Vec<VaultKeyRecord>, StoreError> {
                sqlx::query("SELECT key_id, created_at FROM vault_keys ORDER BY created_at, key_id")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(err)?
                    .iter()
                    .map(rows::vault_key)
                    .collect()
            }

            async fn register_vault_key(&self, key_id: &str, now: Timestamp) -> Result<(), StoreError> {
                // Registering a key twice keeps the first sighting's time.
                sqlx::query(
                    "INSERT INTO vault_keys (key_id, created_at) VALUES ($1, $2) \
                     ON CONFLICT (key_id) DO NOTHING",
                )
                .bind(key_id.to_owned())
                .bind(now.0)
                .execute(&self.pool)
                .await
                .map_err(err)?;
                Ok(())
            }
        }
    };
}

pub(crate) use sql_store;
