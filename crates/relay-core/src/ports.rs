//! Storage and cache ports. One `Store` trait, implemented once per SQL dialect in
//! `relay-store` and held to one contract test suite; domain code never asks which database
//! it runs on.

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::connection::{Connection, ConnectionStatus, TokenUpdate};
use crate::error::StoreError;
use crate::ids::{ActorId, ActorType, ConnectionId, ProviderName, Scopes, WorkspaceId};
use crate::vault::Binding;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub name: String,
    pub created_at: Timestamp,
}

/// An API key as stored: only the SHA-256 of the secret is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Public identifier (safe to log and show), e.g. `key_01J...`.
    pub id: String,
    pub workspace_id: WorkspaceId,
    pub secret_hash: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    pub rate_limit_per_minute: Option<i64>,
    pub role: ApiKeyRole,
}

/// What an API key may do. Two roles, so that the key an application runs with cannot manage
/// keys, read the webhook secret or the audit log: a leaked `service` key reaches the tokens it
/// was meant to reach, and no further.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiKeyRole {
    /// Everything: the `service` routes plus API keys, the webhook secret and the audit log.
    Admin,
    /// Connect flows, connections, tokens, actions and providers.
    Service,
}

impl ApiKeyRole {
    pub const ALL: [ApiKeyRole; 2] = [Self::Admin, Self::Service];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Service => "service",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A pending connect flow as stored, keyed by the SHA-256 of its `state` (the state itself is
/// never stored). Everything the callback acts on (actor, return_to, the PKCE verifier, the
/// expected identity) is in `sealed`, sealed as one record bound to the workspace and state
/// hash (see `crate::connect`): whoever can write the table or Redis can delete a flow, never
/// redirect it. The clear fields only serve purging and `vault status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRecord {
    pub state_hash: String,
    pub workspace_id: WorkspaceId,
    pub sealed: Vec<u8>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// The kinds of sealed value kept besides connection tokens; key rotation re-seals and counts
/// every one (see `crate::rotation`). A new sealed column gets a kind here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SealedKind {
    /// A workspace's webhook signing secret (`webhook_secrets.secret`).
    WebhookSecret,
    /// A rendered action request (`action_previews.payload`).
    ActionPreview,
    /// What an execution returned (`action_executions.outcome`).
    ActionOutcome,
    /// A pending connect flow (`oauth_flows.sealed_flow`; flows in Redis expire on their own).
    OAuthFlow,
}

impl SealedKind {
    pub const ALL: [SealedKind; 4] = [
        SealedKind::WebhookSecret,
        SealedKind::ActionPreview,
        SealedKind::ActionOutcome,
        SealedKind::OAuthFlow,
    ];

    /// The name `vault status` and `vault reseal` report it under.
    pub fn as_str(self) -> &'static str {
        match self {
            SealedKind::WebhookSecret => "webhook_secret",
            SealedKind::ActionPreview => "action_preview",
            SealedKind::ActionOutcome => "action_outcome",
            SealedKind::OAuthFlow => "oauth_flow",
        }
    }
}

/// One stored sealed value and the (workspace, record) it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedValue {
    pub workspace_id: WorkspaceId,
    /// The record's id: webhook secret id, preview id, or state hash.
    pub record: String,
    pub sealed: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
pub struct ConnectionFilter {
    pub provider: Option<ProviderName>,
    pub actor_type: Option<ActorType>,
    pub actor_id: Option<ActorId>,
    pub limit: Option<u32>,
}

/// A master key the database has seen, by id. Used to refuse starting with the wrong key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultKeyRecord {
    pub key_id: String,
    pub created_at: Timestamp,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Checks that the database answers (for `/ready`).
    async fn ping(&self) -> Result<(), StoreError>;

    // -- workspaces and API keys --

    /// Returns the workspace named `name`, creating it if needed.
    async fn ensure_workspace(&self, name: &str, now: Timestamp) -> Result<Workspace, StoreError>;
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;
    async fn find_api_key_by_hash(
        &self,
        secret_hash: &str,
    ) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// Marks a key revoked; `false` when no such active key.
    async fn revoke_api_key(&self, id: &str, now: Timestamp) -> Result<bool, StoreError>;

    // -- connect flows --

    async fn insert_flow(&self, flow: &FlowRecord) -> Result<(), StoreError>;
    /// Deletes and returns the flow in one atomic step, expired or not (the caller checks
    /// expiry so it can say "expired"). Of two concurrent calls, at most one gets `Some`.
    async fn take_flow(&self, state_hash: &str) -> Result<Option<FlowRecord>, StoreError>;
    /// Deletes flows that expired before `now`; returns how many.
    async fn purge_expired_flows(&self, now: Timestamp) -> Result<u64, StoreError>;

    // -- connections --

    /// Inserts a connection, or replaces the tokens of the existing connection for the same
    /// (workspace, provider, actor type, actor id) **if it has the same id**: the new tokens
    /// are sealed for `conn.id`. A stored refresh token is kept when `conn.refresh_token` is
    /// `None`. Status becomes active, the lease is cleared and the version incremented.
    /// Returns `StoreError::Conflict` when a row with another id holds that key.
    async fn upsert_connection(&self, conn: &Connection) -> Result<Connection, StoreError>;
    async fn get_connection(&self, id: &ConnectionId) -> Result<Option<Connection>, StoreError>;
    async fn find_connection(
        &self,
        workspace: &WorkspaceId,
        provider: &ProviderName,
        actor_type: &ActorType,
        actor_id: &ActorId,
    ) -> Result<Option<Connection>, StoreError>;
    async fn list_connections(
        &self,
        workspace: &WorkspaceId,
        filter: &ConnectionFilter,
    ) -> Result<Vec<Connection>, StoreError>;
    /// Deletes a connection of this workspace; `false` when there was none.
    async fn delete_connection(
        &self,
        workspace: &WorkspaceId,
        id: &ConnectionId,
    ) -> Result<bool, StoreError>;

    // -- changes that commit together with their audit record --
    //
    // The record is appended to its workspace's chain (the head locked and advanced) inside
    // the change's transaction: both are stored or neither. A record that cannot be stored
    // fails with `StoreError::Audit` and the change is rolled back.

    /// [`Store::upsert_connection`] and its `connection.created` record, in one transaction.
    async fn upsert_connection_audited(
        &self,
        conn: &Connection,
        audit: &crate::audit::AuditEvent,
    ) -> Result<Connection, StoreError>;
    /// [`Store::delete_connection`] and its `connection.deleted` record, in one transaction
    /// (no record when there was nothing to delete).
    async fn delete_connection_audited(
        &self,
        workspace: &WorkspaceId,
        id: &ConnectionId,
        audit: &crate::audit::AuditEvent,
    ) -> Result<bool, StoreError>;

    // -- the refresh protocol (see `crate::refresh`) --

    /// Takes the refresh lease when nobody holds an unexpired one; returns the row as it is
    /// after taking it, or `None` when another owner holds the lease.
    async fn try_acquire_lease(
        &self,
        id: &ConnectionId,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Option<Connection>, StoreError>;
    /// Releases the lease if `owner` still holds it; records a failed attempt when
    /// `failed_retry_at` is set (failure counter +1, next background attempt then).
    async fn release_lease(
        &self,
        id: &ConnectionId,
        owner: &str,
        failed_retry_at: Option<Timestamp>,
    ) -> Result<(), StoreError>;
    /// Writes refreshed tokens if the row still has `expected_version` and `owner` holds the
    /// lease (compare-and-swap); bumps the version and releases the lease. `None` when lost.
    async fn complete_refresh(
        &self,
        id: &ConnectionId,
        owner: &str,
        expected_version: i64,
        update: &TokenUpdate,
    ) -> Result<Option<Connection>, StoreError>;
    /// Marks the connection `needs_reauth` under the same compare-and-swap rule.
    async fn mark_needs_reauth(
        &self,
        id: &ConnectionId,
        owner: &str,
        expected_version: i64,
        reason: &str,
        now: Timestamp,
    ) -> Result<Option<Connection>, StoreError>;

    // -- key rotation --

    /// Every connection of every workspace, in id order, after `after` (a keyset page).
    async fn connections_page(
        &self,
        after: Option<&ConnectionId>,
        limit: u32,
    ) -> Result<Vec<Connection>, StoreError>;
    /// Replaces a connection's sealed tokens with the same tokens sealed under another key, if
    /// its version is still `expected_version`. The version is not bumped: the tokens did not
    /// change. `false` when the row changed meanwhile (the caller retries later).
    async fn reseal_connection(
        &self,
        id: &ConnectionId,
        expected_version: i64,
        access_token: &[u8],
        refresh_token: Option<&[u8]>,
    ) -> Result<bool, StoreError>;
    /// Sealed values of one kind other than connection tokens, in (workspace, record) order,
    /// after `after` (a keyset page).
    async fn sealed_values_page(
        &self,
        kind: SealedKind,
        after: Option<(&WorkspaceId, &str)>,
        limit: u32,
    ) -> Result<Vec<SealedValue>, StoreError>;
    /// Replaces one sealed value with the same plaintext sealed under another key, if it still
    /// holds `old` (a compare-and-swap on the bytes). `false` when it changed or went meanwhile.
    async fn reseal_value(
        &self,
        kind: SealedKind,
        value: &SealedValue,
        new: &[u8],
    ) -> Result<bool, StoreError>;

    // -- vault keys --

    async fn vault_keys(&self) -> Result<Vec<VaultKeyRecord>, StoreError>;
    async fn register_vault_key(&self, key_id: &str, now: Timestamp) -> Result<(), StoreError>;
}

/// What the token hot path needs from a connection, and nothing more: the **sealed access
/// token** (never the refresh token, never plaintext), the times that decide whether it is due,
/// and the version that orders writes. Metadata reads (`GET /connections/{id}`) go to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedToken {
    pub id: ConnectionId,
    pub workspace_id: WorkspaceId,
    pub provider: ProviderName,
    /// Carried so that audit records of cached reads name the actor.
    pub actor_id: ActorId,
    /// Carried, with the workspace, provider and actor, so that a refresh can take the
    /// connection's Redis lock without reading the row first.
    pub actor_type: ActorType,
    pub scopes: Scopes,
    pub token_type: String,
    /// Sealed bytes, bound to (workspace, connection, `access_token`).
    pub access_token: Vec<u8>,
    pub expires_at: Option<Timestamp>,
    pub next_refresh_at: Option<Timestamp>,
    pub status: ConnectionStatus,
    pub status_reason: Option<String>,
    pub version: i64,
}

impl CachedToken {
    pub fn binding<'a>(&'a self, column: &'a str) -> Binding<'a> {
        Binding {
            workspace: self.workspace_id.as_str(),
            record: self.id.as_str(),
            column,
        }
    }
}

impl From<&Connection> for CachedToken {
    fn from(c: &Connection) -> Self {
        Self {
            id: c.id.clone(),
            workspace_id: c.workspace_id.clone(),
            provider: c.provider.clone(),
            actor_id: c.actor_id.clone(),
            actor_type: c.actor_type.clone(),
            scopes: c.scopes.clone(),
            token_type: c.token_type.clone(),
            access_token: c.access_token.clone(),
            expires_at: c.expires_at,
            next_refresh_at: c.next_refresh_at,
            status: c.status,
            status_reason: c.status_reason.clone(),
            version: c.version,
        }
    }
}

/// A read-through cache of the token hot path. Entries hold sealed access tokens only.
///
/// `put` must never replace a newer version with an older one, and `invalidate` must be seen
/// by every reader of the same cache (every replica, for a shared cache) before it returns.
#[async_trait]
pub trait ConnectionCache: Send + Sync + 'static {
    async fn get(&self, id: &ConnectionId) -> Option<CachedToken>;
    async fn put(&self, entry: CachedToken);
    async fn invalidate(&self, id: &ConnectionId);
}
