//! The audit log: one append-only record for every sensitive operation, chained per workspace
//! by HMAC-SHA256 so that an edited, removed or reordered record is detected by [`verify`],
//! and only Relay (which holds the key) can extend a chain.
//!
//! The MAC key ([`AuditKey`]) is derived from the master key by HKDF the first time a database
//! needs it and then stored sealed by the vault ([`open_or_create_key`]): rotating the master
//! key re-seals it, so records written before a rotation still verify after it. Records
//! written by a Relay before keyed audit carry a plain SHA-256 (no [`KEYED_PREFIX`]); they
//! still verify, but a chain must end with a keyed record (a later keyed record covers every
//! record before it), so unkeyed records cannot be forged at the end or in the middle.
//! Anchors ([`Anchor`]: a workspace's head kept outside the database) catch what no key can:
//! the newest records deleted together with the head row.
//!
//! This module holds the rules (the record, its canonical encoding and hash, the verifier),
//! the port storage implements ([`AuditStore`]), the handle services call ([`AuditSink`]),
//! and the group-commit writer ([`AuditLog`]) that stores many records in one transaction
//! while each caller still waits until its own record is stored: an operation whose record
//! could not be written fails with it.
//!
//! Records carry ids, names and reasons, never a secret: there is no field a token, code,
//! client secret or API key could go into, and `detail` is a short reason chosen by Relay.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::clock::Timestamp;
use crate::error::StoreError;
use crate::ids::WorkspaceId;

/// The hash a workspace's first record chains to.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Records of operations that belong to no workspace (re-sealing the vault) chain here.
pub const SYSTEM_WORKSPACE: &str = "_system";

/// What happened. A small, bounded set: dashboards, filters and exports switch on these names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum AuditAction {
    ConnectionCreated,
    TokenRead,
    TokenRefreshed,
    TokenRefreshFailed,
    ConnectionNeedsReauth,
    ConnectionDeleted,
    ActionPreviewed,
    ActionExecuted,
    ApiKeyCreated,
    ApiKeyUpdated,
    ApiKeyRevoked,
    WebhookSecretRead,
    WebhookSecretRotated,
    VaultResealed,
    /// Keyed audit began: the record that seals a chain's unkeyed records (or starts the chain
    /// of a workspace whose data predates the audit log).
    AuditSealed,
}

impl AuditAction {
    pub const ALL: [AuditAction; 15] = [
        Self::ConnectionCreated,
        Self::TokenRead,
        Self::TokenRefreshed,
        Self::TokenRefreshFailed,
        Self::ConnectionNeedsReauth,
        Self::ConnectionDeleted,
        Self::ActionPreviewed,
        Self::ActionExecuted,
        Self::ApiKeyCreated,
        Self::ApiKeyUpdated,
        Self::ApiKeyRevoked,
        Self::WebhookSecretRead,
        Self::WebhookSecretRotated,
        Self::VaultResealed,
        Self::AuditSealed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConnectionCreated => "connection.created",
            Self::TokenRead => "token.read",
            Self::TokenRefreshed => "token.refreshed",
            Self::TokenRefreshFailed => "token.refresh_failed",
            Self::ConnectionNeedsReauth => "connection.needs_reauth",
            Self::ConnectionDeleted => "connection.deleted",
            Self::ActionPreviewed => "action.previewed",
            Self::ActionExecuted => "action.executed",
            Self::ApiKeyCreated => "api_key.created",
            Self::ApiKeyUpdated => "api_key.updated",
            Self::ApiKeyRevoked => "api_key.revoked",
            Self::WebhookSecretRead => "webhook_secret.read",
            Self::WebhookSecretRotated => "webhook_secret.rotated",
            Self::VaultResealed => "vault.resealed",
            Self::AuditSealed => "audit.sealed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// Whether the recorded operation succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum AuditOutcome {
    Ok,
    Failed,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ok" => Some(Self::Ok),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// One operation to record, before the store gives it a place in its workspace's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub at: Timestamp,
    pub workspace_id: WorkspaceId,
    pub action: AuditAction,
    pub outcome: AuditOutcome,
    /// The API key's public id (`key_...`), never the key.
    pub api_key_id: Option<String>,
    pub actor_id: Option<String>,
    pub connection_id: Option<String>,
    pub provider: Option<String>,
    pub request_id: Option<String>,
    pub client_addr: Option<String>,
    /// A short reason chosen by Relay (an error code, `invalid_grant: ...`), at most 300 chars.
    pub detail: Option<String>,
}

impl AuditEvent {
    /// An event of the current request (its id, client address and API key are filled in from
    /// the request context when there is one).
    pub fn new(workspace_id: WorkspaceId, action: AuditAction, at: Timestamp) -> Self {
        let mut event = Self {
            at,
            workspace_id,
            action,
            outcome: AuditOutcome::Ok,
            api_key_id: None,
            actor_id: None,
            connection_id: None,
            provider: None,
            request_id: None,
            client_addr: None,
            detail: None,
        };
        event.fill_from_request();
        event
    }

    /// The connection the operation touched: its id, actor and provider.
    pub fn connection(mut self, conn: &crate::Connection) -> Self {
        self.connection_id = Some(conn.id.to_string());
        self.actor_id = Some(conn.actor_id.to_string());
        self.provider = Some(conn.provider.to_string());
        self
    }

    pub fn connection_id(mut self, id: impl Into<String>) -> Self {
        self.connection_id = Some(id.into());
        self
    }

    pub fn actor_id(mut self, id: impl Into<String>) -> Self {
        self.actor_id = Some(id.into());
        self
    }

    pub fn provider(mut self, name: impl Into<String>) -> Self {
        self.provider = Some(name.into());
        self
    }

    pub fn api_key_id(mut self, id: impl Into<String>) -> Self {
        self.api_key_id = Some(id.into());
        self
    }

    pub fn detail(mut self, detail: impl AsRef<str>) -> Self {
        self.detail = Some(bounded(detail.as_ref(), 300));
        self
    }

    /// Marks the operation failed, with a reason.
    pub fn failed(mut self, reason: impl AsRef<str>) -> Self {
        self.outcome = AuditOutcome::Failed;
        self.detail(reason)
    }

    /// Fills the request id, client address and API key id from the current request, where
    /// the caller did not set them.
    pub fn fill_from_request(&mut self) {
        let Ok(ctx) = REQUEST.try_with(Arc::clone) else {
            return;
        };
        if self.request_id.is_none() {
            self.request_id = Some(ctx.request_id.clone());
        }
        if self.client_addr.is_none() {
            self.client_addr = ctx.client_addr.clone();
        }
        if self.api_key_id.is_none() {
            self.api_key_id = ctx.api_key_id.get().cloned();
        }
    }

    /// The canonical encoding the hash covers: every field in a fixed order, each
    /// length-prefixed (absent fields have their own marker), so no two different records
    /// encode alike.
    fn canonical(&self, seq: i64) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"relay-audit-v1");
        let mut field = |v: Option<&str>| match v {
            Some(s) => {
                out.push(1);
                out.extend_from_slice(&(s.len() as u64).to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            None => out.push(0),
        };
        field(Some(self.workspace_id.as_str()));
        field(Some(&seq.to_string()));
        field(Some(&self.at.0.to_string()));
        field(Some(self.action.as_str()));
        field(Some(self.outcome.as_str()));
        field(self.api_key_id.as_deref());
        field(self.actor_id.as_deref());
        field(self.connection_id.as_deref());
        field(self.provider.as_deref());
        field(self.request_id.as_deref());
        field(self.client_addr.as_deref());
        field(self.detail.as_deref());
        out
    }
}

/// A stored record: the event, its place in the workspace's chain, and the hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub event: AuditEvent,
    pub prev_hash: String,
    pub hash: String,
}

/// Keyed hashes start with this; a hash without it is a legacy unkeyed SHA-256 written by a
/// Relay before keyed audit.
pub const KEYED_PREFIX: &str = "hmac:";

/// The key that chains audit records (HMAC-SHA256). `Debug` never prints it.
pub struct AuditKey(ring::hmac::Key);

impl AuditKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes))
    }
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey([redacted])")
    }
}

fn chain_input(prev_hash: &str, seq: i64, event: &AuditEvent) -> Vec<u8> {
    let mut data = Vec::with_capacity(320);
    data.extend_from_slice(prev_hash.as_bytes());
    data.extend_from_slice(&event.canonical(seq));
    data
}

/// `"hmac:" + HMAC-SHA256(key, prev_hash || canonical(record))`, lowercase hex: what every
/// record Relay writes carries.
pub fn chain_hash(key: &AuditKey, prev_hash: &str, seq: i64, event: &AuditEvent) -> String {
    let tag = ring::hmac::sign(&key.0, &chain_input(prev_hash, seq, event));
    let mut out = String::with_capacity(KEYED_PREFIX.len() + 64);
    out.push_str(KEYED_PREFIX);
    for b in tag.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// `SHA-256(prev_hash || canonical(record))`: records of a Relay before keyed audit. Only
/// verified, never written.
pub fn legacy_chain_hash(prev_hash: &str, seq: i64, event: &AuditEvent) -> String {
    crate::random::sha256_hex(&chain_input(prev_hash, seq, event))
}

/// Whether a stored hash is keyed (an HMAC) rather than a legacy SHA-256.
pub fn is_keyed(hash: &str) -> bool {
    hash.starts_with(KEYED_PREFIX)
}

/// The end of a workspace's chain: the last sequence number and hash (`0` and
/// [`GENESIS_HASH`] when it has no records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: String,
}

impl AuditHead {
    pub fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
        }
    }

    /// Appends `event` after this head: the record to store, and the new head.
    pub fn append(&mut self, key: &AuditKey, event: AuditEvent) -> AuditRecord {
        let seq = self.seq + 1;
        let hash = chain_hash(key, &self.hash, seq, &event);
        let record = AuditRecord {
            seq,
            event,
            prev_hash: std::mem::replace(&mut self.hash, hash.clone()),
            hash,
        };
        self.seq = seq;
        record
    }
}

/// Filters for reading a workspace's records, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub connection_id: Option<String>,
    pub actor_id: Option<String>,
    pub action: Option<AuditAction>,
    /// Inclusive lower and exclusive upper bound on `at`.
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    /// Only records with a smaller sequence number (the cursor of the previous page).
    pub before_seq: Option<i64>,
    pub limit: u32,
}

/// How many records of one action and outcome a workspace wrote in one hour (`GET /stats`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCount {
    /// The hour's start, in milliseconds since the epoch (a multiple of 3 600 000).
    pub hour: Timestamp,
    pub action: AuditAction,
    pub outcome: AuditOutcome,
    pub count: i64,
}

/// Where audit records are kept. Implementations must chain records per workspace correctly
/// under concurrent writers in any number of processes: the head is read and advanced inside
/// the transaction that inserts the records, under a lock on that workspace's head.
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Stores the events in one transaction, each appended to its workspace's chain in the
    /// given order; all or nothing.
    async fn append_audit(&self, events: &[AuditEvent]) -> Result<Vec<AuditRecord>, StoreError>;
    /// A workspace's records matching `filter`, newest first.
    async fn list_audit(
        &self,
        workspace: &WorkspaceId,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditRecord>, StoreError>;
    /// A workspace's records with `from <= at < to`, counted per hour, action and outcome.
    async fn count_audit_by_hour(
        &self,
        workspace: &WorkspaceId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<AuditCount>, StoreError>;
    /// Every workspace with records, and its head.
    async fn audit_heads(&self) -> Result<Vec<(WorkspaceId, AuditHead)>, StoreError>;
    /// A workspace's records with `seq > after_seq`, oldest first.
    async fn audit_range(
        &self,
        workspace: &WorkspaceId,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError>;
    /// Every workspace that has records (whether or not its head row is there).
    async fn audit_workspaces(&self) -> Result<Vec<WorkspaceId>, StoreError>;
    /// Every workspace holding data whose creation is audited (connections, API keys, action
    /// previews): each must have a chain.
    async fn workspaces_expecting_audit(&self) -> Result<Vec<WorkspaceId>, StoreError>;
    /// The sealed audit MAC key, if one was stored.
    async fn sealed_audit_key(&self) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores the sealed audit MAC key: inserts it when `replacing` is `None` and none is
    /// stored, or replaces `replacing` (a compare-and-swap, for re-sealing under a new master
    /// key). `false` when another writer got there first.
    async fn put_sealed_audit_key(
        &self,
        sealed: &[u8],
        replacing: Option<&[u8]>,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
}

/// What the vault binds the sealed audit key to.
const AUDIT_KEY_BINDING: crate::vault::Binding<'static> = crate::vault::Binding {
    workspace: SYSTEM_WORKSPACE,
    record: "audit",
    column: "audit_mac_key",
};

/// Why the audit key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AuditKeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the stored audit key does not open with the configured encryption keys ({0}); \
         configure the key it was sealed with (OAUTH_ENCRYPTION_KEY_PREVIOUS during a rotation)"
    )]
    Sealed(crate::vault::VaultError),
}

/// The audit MAC key of this database: the stored one, opened with any key of the ring (and
/// re-sealed under the primary key when an older key sealed it, so rotation never strands
/// it); or, the first time, `derived` (from the primary master key:
/// [`crate::vault::MasterKey::derive_audit_key`]) sealed and stored. Replicas starting at once
/// with the same master key derive the same key, and only the first insert wins anyway.
pub async fn open_or_create_key(
    store: &dyn AuditStore,
    keyring: &crate::vault::Keyring,
    derived: &[u8; 32],
    now: Timestamp,
) -> Result<AuditKey, AuditKeyError> {
    for _ in 0..3 {
        let Some(sealed) = store.sealed_audit_key().await? else {
            let sealed = keyring.seal(derived, AUDIT_KEY_BINDING);
            store.put_sealed_audit_key(&sealed, None, now).await?;
            continue;
        };
        let opened = keyring
            .open(&sealed, AUDIT_KEY_BINDING)
            .map_err(AuditKeyError::Sealed)?;
        let bytes: [u8; 32] = opened
            .as_slice()
            .try_into()
            .map_err(|_| AuditKeyError::Sealed(crate::vault::VaultError::Malformed))?;
        if keyring.needs_reseal(&sealed) {
            let resealed = keyring.seal(&bytes, AUDIT_KEY_BINDING);
            // Losing this race is fine: another replica re-sealed the same key.
            store
                .put_sealed_audit_key(&resealed, Some(&sealed), now)
                .await?;
        }
        let key = AuditKey::from_bytes(&bytes);
        let mut bytes = bytes;
        zeroize::Zeroize::zeroize(&mut bytes);
        return Ok(key);
    }
    Err(StoreError::Conflict("the audit key changed concurrently three times".into()).into())
}

/// Starts keyed audit on a database that has none yet: every chain that ends with unkeyed
/// records, and every workspace holding audited data but no chain (data older than the audit
/// log), gets an `audit.sealed` record, keyed, which covers what came before it. Runs only
/// while no chain has a keyed head (the first start of a Relay with keyed audit), so it can
/// never seal records forged later. Returns how many chains it sealed.
pub async fn seal_legacy_chains(
    store: &dyn AuditStore,
    sink: &dyn AuditSink,
    now: Timestamp,
) -> Result<usize, AuditError> {
    let unavailable = |e: StoreError| AuditError::Unavailable(e.to_string());
    let heads = store.audit_heads().await.map_err(unavailable)?;
    if heads.iter().any(|(_, h)| is_keyed(&h.hash)) {
        return Ok(0);
    }
    let mut todo: std::collections::BTreeMap<WorkspaceId, i64> = heads
        .into_iter()
        .filter(|(_, h)| h.seq > 0)
        .map(|(ws, h)| (ws, h.seq))
        .collect();
    for ws in store
        .workspaces_expecting_audit()
        .await
        .map_err(unavailable)?
    {
        todo.entry(ws).or_insert(0);
    }
    for (ws, unkeyed) in &todo {
        let detail = if *unkeyed == 0 {
            "keyed audit begins; this workspace's data predates the audit log".to_owned()
        } else {
            format!("keyed audit begins after {unkeyed} unkeyed records")
        };
        tracing::warn!(workspace_id = %ws, unkeyed_records = unkeyed, "sealing an audit chain written before keyed audit");
        sink.record(AuditEvent::new(ws.clone(), AuditAction::AuditSealed, now).detail(detail))
            .await?;
    }
    Ok(todo.len())
}

/// Why a record could not be stored. The operation it records must fail too.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    #[error("the audit record could not be stored: {0}")]
    Unavailable(String),
    #[error("the audit writer has stopped")]
    Stopped,
}

/// What services call to record an operation.
#[async_trait]
pub trait AuditSink: Send + Sync + 'static {
    /// Records an activity event (a change, or something sent): returns once it is stored.
    async fn record(&self, event: AuditEvent) -> Result<(), AuditError>;

    /// Records an access event (`token.read`). Depending on `[audit] token_reads` it is
    /// stored before this returns (`durable`), queued for the next group commit
    /// (`buffered`), or not recorded (`off`). Sinks without a buffer store it at once.
    async fn record_access(&self, event: AuditEvent) -> Result<(), AuditError> {
        self.record(event).await
    }

    /// Returns once every record handed over before the call is stored (`GET /audit` reads
    /// its own writes; shutdown loses nothing queued).
    async fn flush(&self) -> Result<(), AuditError> {
        Ok(())
    }
}

/// A sink that writes each record in its own transaction (CLI commands, tests).
pub struct DirectAudit(pub Arc<dyn AuditStore>);

#[async_trait]
impl AuditSink for DirectAudit {
    async fn record(&self, mut event: AuditEvent) -> Result<(), AuditError> {
        event.fill_from_request();
        self.0
            .append_audit(std::slice::from_ref(&event))
            .await
            .map(|_| ())
            .map_err(|e| AuditError::Unavailable(e.to_string()))
    }
}

/// The two classes of audit record (docs/OPERATIONS.md lists the class of every action).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum AuditClass {
    /// Everything that changes state or sends something: stored before the operation answers.
    Activity,
    /// Data reads (`token.read`): recorded too, but the read need not wait for the commit
    /// (`[audit] token_reads`), and kept for a shorter time (`access_retain_days`).
    Access,
}

impl AuditClass {
    pub const ALL: [AuditClass; 2] = [Self::Activity, Self::Access];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Activity => "activity",
            Self::Access => "access",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl AuditAction {
    /// The class of records of this action.
    pub fn class(self) -> AuditClass {
        match self {
            Self::TokenRead => AuditClass::Access,
            _ => AuditClass::Activity,
        }
    }
}

/// How token reads (access records) are recorded: `[audit] token_reads`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenReads {
    /// The read answers once its record is queued; the writer stores it within
    /// `access_flush_ms` (group commit). A `kill -9` can lose the last flush window.
    #[default]
    Buffered,
    /// The read answers only once its record is stored (nothing is ever lost).
    Durable,
    /// No access records at all (a warning is logged at start).
    Off,
}

/// Group-commit settings.
#[derive(Debug, Clone)]
pub struct GroupCommit {
    /// Most records per transaction.
    pub max_batch: usize,
    /// How many records may wait for the writer before callers wait for room (back-pressure).
    pub queue: usize,
    /// How token reads are recorded.
    pub token_reads: TokenReads,
    /// A buffered access record is stored at most this long after it was queued.
    pub access_flush: Duration,
    /// When the writer has stored nothing for this long while records wait, token reads fail
    /// closed (`audit_unavailable`) and `/ready` reports the writer failing.
    pub fail_after: Duration,
}

impl Default for GroupCommit {
    fn default() -> Self {
        Self {
            max_batch: 512,
            queue: 8192,
            token_reads: TokenReads::Buffered,
            access_flush: Duration::from_millis(50),
            fail_after: Duration::from_secs(10),
        }
    }
}

type Answer = oneshot::Sender<Result<(), AuditError>>;

/// What callers hand the writer task.
enum Pending {
    /// An activity (or durable access) record; its caller waits for the answer.
    Durable(AuditEvent, Answer),
    /// A buffered access record, queued at this instant; nobody waits for it.
    Buffered(AuditEvent, Instant),
    /// Answers once everything queued before it is stored.
    Flush(Answer),
}

/// Whether the writer is storing: shared by the writer task and its handles.
#[derive(Debug)]
struct WriterHealth {
    started: Instant,
    /// Milliseconds since `started` at which the writer began failing, plus one; 0 while
    /// it stores.
    failing_since: AtomicU64,
}

impl WriterHealth {
    fn ok(&self) {
        if self.failing_since.swap(0, Ordering::Relaxed) != 0 {
            metrics::gauge!("audit_writer_failing").set(0.0);
            tracing::info!("the audit writer stores records again");
        }
    }

    fn failed(&self) {
        let now = self.started.elapsed().as_millis() as u64 + 1;
        if self
            .failing_since
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            metrics::gauge!("audit_writer_failing").set(1.0);
        }
    }

    /// How long the writer has failed to store anything, if it is failing.
    fn failing_for(&self) -> Option<Duration> {
        match self.failing_since.load(Ordering::Relaxed) {
            0 => None,
            since => Some(
                self.started
                    .elapsed()
                    .saturating_sub(Duration::from_millis(since - 1)),
            ),
        }
    }
}

/// The group-commit writer. Activity records: callers hand their record to one writer task
/// and wait for its answer; the task takes everything queued (up to `max_batch`) and stores it
/// in one transaction; while a transaction runs the next callers queue, so batches grow with
/// load and an idle system pays no added delay. Buffered access records: the caller only
/// queues; a batch holding nothing else lingers until its oldest record is `access_flush` old
/// (or the batch is full, or an activity record arrives), so a busy read path costs one
/// transaction per flush window instead of one per disk write. An access record that could
/// not be stored is kept and retried (never dropped); while the writer fails, the queue fills
/// and token reads wait for room, and after `fail_after` they fail closed.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Pending>,
    health: Arc<WriterHealth>,
    settings: Arc<GroupCommit>,
}

impl AuditLog {
    /// Starts the writer task on the current runtime. It ends when every handle is dropped,
    /// after storing what was queued.
    pub fn spawn(store: Arc<dyn AuditStore>, settings: GroupCommit) -> Self {
        let (tx, rx) = mpsc::channel(settings.queue.max(1));
        let health = Arc::new(WriterHealth {
            started: Instant::now(),
            failing_since: AtomicU64::new(0),
        });
        let settings = Arc::new(settings);
        tokio::spawn(
            Writer {
                store,
                health: health.clone(),
                max: settings.max_batch.max(1),
                access_flush: settings.access_flush,
                capacity: settings.queue.max(1),
            }
            .run(rx),
        );
        Self {
            tx,
            health,
            settings,
        }
    }

    /// Exports the queue's capacity (`audit_queue_capacity`), once the metrics recorder is
    /// installed.
    pub fn export_capacity(&self) {
        metrics::gauge!("audit_queue_capacity").set(self.tx.max_capacity() as f64);
    }

    /// Whether the writer task still runs (for `/ready`).
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Why the writer is not healthy, if it is not (for `/ready`): stopped, or unable to store
    /// anything for `fail_after`.
    pub fn failure(&self) -> Option<String> {
        if !self.is_running() {
            return Some("the audit writer has stopped".into());
        }
        self.failing_longer_than_allowed()
            .err()
            .map(|e| e.to_string())
    }

    fn failing_longer_than_allowed(&self) -> Result<(), AuditError> {
        match self.health.failing_for() {
            Some(d) if d >= self.settings.fail_after => Err(AuditError::Unavailable(format!(
                "the audit writer has stored nothing for {} s",
                d.as_secs()
            ))),
            _ => Ok(()),
        }
    }

    async fn queue(&self, pending: Pending) -> Result<(), AuditError> {
        self.tx.send(pending).await.map_err(|_| AuditError::Stopped)
    }
}

#[async_trait]
impl AuditSink for AuditLog {
    async fn record(&self, mut event: AuditEvent) -> Result<(), AuditError> {
        event.fill_from_request();
        let (done, wait) = oneshot::channel();
        self.queue(Pending::Durable(event, done)).await?;
        wait.await.unwrap_or(Err(AuditError::Stopped))
    }

    async fn record_access(&self, mut event: AuditEvent) -> Result<(), AuditError> {
        match self.settings.token_reads {
            TokenReads::Off => return Ok(()),
            TokenReads::Durable => return self.record(event).await,
            TokenReads::Buffered => {}
        }
        event.fill_from_request();
        // Fail closed once the writer has stored nothing for `fail_after`.
        self.failing_longer_than_allowed()?;
        let permit = match self.tx.try_reserve() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Closed(())) => return Err(AuditError::Stopped),
            Err(mpsc::error::TrySendError::Full(())) => loop {
                // The queue is full: wait for room (back-pressure, never a drop), but stop
                // waiting once the writer is known to be failing.
                metrics::counter!("audit_queue_full_total").increment(1);
                match tokio::time::timeout(Duration::from_millis(100), self.tx.reserve()).await {
                    Ok(Ok(permit)) => break permit,
                    Ok(Err(_)) => return Err(AuditError::Stopped),
                    Err(_) => self.failing_longer_than_allowed()?,
                }
            },
        };
        permit.send(Pending::Buffered(event, Instant::now()));
        Ok(())
    }

    async fn flush(&self) -> Result<(), AuditError> {
        let (done, wait) = oneshot::channel();
        self.queue(Pending::Flush(done)).await?;
        wait.await.unwrap_or(Err(AuditError::Stopped))
    }
}

/// The writer task's state.
struct Writer {
    store: Arc<dyn AuditStore>,
    health: Arc<WriterHealth>,
    max: usize,
    access_flush: Duration,
    capacity: usize,
}

/// One transaction's worth of work.
#[derive(Default)]
struct Batch {
    events: Vec<AuditEvent>,
    /// Per event: `Some` for a caller waiting (activity), `None` for a buffered record.
    answers: Vec<Option<Answer>>,
    /// When each buffered record was queued (for `audit_flush_seconds`).
    queued: Vec<Option<Instant>>,
    flushes: Vec<Answer>,
}

impl Batch {
    fn len(&self) -> usize {
        self.events.len()
    }

    fn only_buffered(&self) -> bool {
        self.flushes.is_empty() && self.answers.iter().all(Option::is_none)
    }

    fn push(&mut self, pending: Pending) {
        match pending {
            Pending::Durable(event, answer) => {
                self.events.push(event);
                self.answers.push(Some(answer));
                self.queued.push(None);
            }
            Pending::Buffered(event, at) => {
                self.events.push(event);
                self.answers.push(None);
                self.queued.push(Some(at));
            }
            Pending::Flush(answer) => self.flushes.push(answer),
        }
    }

    fn oldest_buffered(&self) -> Option<Instant> {
        self.queued.iter().flatten().min().copied()
    }
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<Pending>) {
        let mut received: Vec<Pending> = Vec::with_capacity(self.max);
        // Buffered access records a failed transaction left unstored: retried first.
        let mut batch = Batch::default();
        let mut backoff = Duration::from_millis(50);
        loop {
            let room = self.max.saturating_sub(batch.len()).max(1);
            if batch.len() == 0 && batch.flushes.is_empty() {
                if rx.recv_many(&mut received, room).await == 0 {
                    break;
                }
            } else {
                // Records carried over from a failure: add what is queued, without waiting.
                while received.len() < room {
                    match rx.try_recv() {
                        Ok(p) => received.push(p),
                        Err(_) => break,
                    }
                }
            }
            for p in received.drain(..) {
                batch.push(p);
            }
            self.linger(&mut rx, &mut batch, &mut received).await;
            metrics::gauge!("audit_queue_depth").set((rx.len() + batch.len()) as f64);
            if self.write(&mut batch).await {
                backoff = Duration::from_millis(50);
            } else {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
        // Every handle is gone: store what a failure left over, a few more times.
        for _ in 0..5 {
            if batch.len() == 0 || self.write(&mut batch).await {
                break;
            }
            tokio::time::sleep(backoff).await;
        }
        if batch.len() > 0 {
            tracing::error!(
                records = batch.len(),
                "the audit writer stopped with access records it could not store"
            );
        }
        metrics::gauge!("audit_queue_depth").set(0.0);
    }

    /// A batch of buffered access records only waits (up to `access_flush` after its oldest
    /// record was queued) for more records to share its transaction; anything a caller waits
    /// for, or a full batch, ends the wait.
    async fn linger(
        &self,
        rx: &mut mpsc::Receiver<Pending>,
        batch: &mut Batch,
        received: &mut Vec<Pending>,
    ) {
        let Some(oldest) = batch.oldest_buffered() else {
            return;
        };
        let deadline = tokio::time::Instant::from_std(oldest + self.access_flush);
        while batch.only_buffered() && batch.len() < self.max {
            tokio::select! {
                n = rx.recv_many(received, self.max - batch.len()) => {
                    if n == 0 {
                        return;
                    }
                    for p in received.drain(..) {
                        batch.push(p);
                    }
                }
                () = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    /// Stores the batch in one transaction and answers its callers. On failure the waiting
    /// callers get the error (their operations fail) and the buffered records stay in the
    /// batch for the next attempt. Whether it stored.
    async fn write(&self, batch: &mut Batch) -> bool {
        let started = Instant::now();
        let result = if batch.len() == 0 {
            Ok(Vec::new())
        } else {
            self.store.append_audit(&batch.events).await
        };
        metrics::histogram!("audit_write_seconds").record(started.elapsed().as_secs_f64());
        let outcome = match &result {
            Ok(_) => "stored",
            Err(_) => "failed",
        };
        metrics::counter!("audit_records_total", "outcome" => outcome)
            .increment(batch.len() as u64);
        match result {
            Ok(_) => {
                self.health.ok();
                metrics::histogram!("audit_batch_size").record(batch.len() as f64);
                if let Some(oldest) = batch.oldest_buffered() {
                    metrics::histogram!("audit_flush_seconds")
                        .record(oldest.elapsed().as_secs_f64());
                }
                for answer in batch.answers.drain(..).flatten() {
                    // A caller that went away (request cancelled) no longer needs the answer.
                    let _ = answer.send(Ok(()));
                }
                for answer in batch.flushes.drain(..) {
                    let _ = answer.send(Ok(()));
                }
                batch.events.clear();
                batch.queued.clear();
                true
            }
            Err(e) => {
                self.health.failed();
                let error = AuditError::Unavailable(e.to_string());
                let buffered = batch.answers.iter().filter(|a| a.is_none()).count();
                tracing::error!(error = %e, records = batch.len(), kept_for_retry = buffered, queue_capacity = self.capacity,
                    "audit records could not be stored; the operations waiting on them fail, buffered token-read records are retried");
                let mut kept = Batch::default();
                let parts = batch
                    .events
                    .drain(..)
                    .zip(batch.answers.drain(..))
                    .zip(batch.queued.drain(..));
                for ((event, answer), queued) in parts {
                    match (answer, queued) {
                        (Some(answer), _) => {
                            let _ = answer.send(Err(error.clone()));
                        }
                        (None, Some(at)) => kept.push(Pending::Buffered(event, at)),
                        (None, None) => {}
                    }
                }
                for answer in batch.flushes.drain(..) {
                    let _ = answer.send(Err(error.clone()));
                }
                *batch = kept;
                false
            }
        }
    }
}

/// The request an operation runs in, for audit records (set by the HTTP layer).
#[derive(Debug)]
pub struct RequestContext {
    pub request_id: String,
    pub client_addr: Option<String>,
    /// Set once the caller is authenticated.
    pub api_key_id: OnceLock<String>,
}

tokio::task_local! {
    static REQUEST: Arc<RequestContext>;
}

impl RequestContext {
    pub fn new(request_id: impl Into<String>, client_addr: Option<String>) -> Arc<Self> {
        Arc::new(Self {
            request_id: request_id.into(),
            client_addr,
            api_key_id: OnceLock::new(),
        })
    }

    /// The context of the request this task runs in, if any (to carry it into a task the
    /// request spawns).
    pub fn current() -> Option<Arc<Self>> {
        REQUEST.try_with(Arc::clone).ok()
    }

    /// Runs `fut` with this context visible to [`AuditEvent::new`].
    pub async fn scope<F: std::future::Future>(self: Arc<Self>, fut: F) -> F::Output {
        REQUEST.scope(self, fut).await
    }

    /// Records the authenticated API key of the current request, if inside one.
    pub fn set_current_api_key(id: &str) {
        let _ = REQUEST.try_with(|ctx| ctx.api_key_id.set(id.to_owned()));
    }
}

/// Where a workspace's chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    pub workspace_id: WorkspaceId,
    pub seq: i64,
    pub reason: String,
}

impl std::fmt::Display for BrokenLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "workspace {} record {}: {}",
            self.workspace_id, self.seq, self.reason
        )
    }
}

/// A workspace's head as it was at some moment, kept outside the database (a log line of
/// the periodic anchor, or `relay audit heads`). The chain must still reach `seq`, and its
/// record `seq` must still have this hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, Serialize)]
pub struct Anchor {
    pub workspace_id: WorkspaceId,
    pub seq: i64,
    pub hash: String,
}

/// Checks one workspace's records, fed oldest first.
#[derive(Debug)]
pub struct ChainVerifier<'k> {
    workspace_id: WorkspaceId,
    key: &'k AuditKey,
    head: AuditHead,
    /// Anchors of this workspace by seq.
    anchors: std::collections::BTreeMap<i64, String>,
}

impl<'k> ChainVerifier<'k> {
    pub fn new(workspace_id: WorkspaceId, key: &'k AuditKey) -> Self {
        Self {
            workspace_id,
            key,
            head: AuditHead::genesis(),
            anchors: Default::default(),
        }
    }

    /// Adds anchors; those of other workspaces are ignored.
    pub fn with_anchors<'a>(mut self, anchors: impl IntoIterator<Item = &'a Anchor>) -> Self {
        for a in anchors {
            if a.workspace_id == self.workspace_id {
                self.anchors.insert(a.seq, a.hash.clone());
            }
        }
        self
    }

    fn broken(&self, seq: i64, reason: impl Into<String>) -> BrokenLink {
        BrokenLink {
            workspace_id: self.workspace_id.clone(),
            seq,
            reason: reason.into(),
        }
    }

    pub fn check(&mut self, record: &AuditRecord) -> Result<(), BrokenLink> {
        let expected = self.head.seq + 1;
        if record.seq != expected {
            return Err(self.broken(
                expected,
                format!("record {expected} is missing (next is {})", record.seq),
            ));
        }
        if record.event.workspace_id != self.workspace_id {
            return Err(self.broken(record.seq, "record belongs to another workspace"));
        }
        if record.prev_hash != self.head.hash {
            return Err(self.broken(
                record.seq,
                "previous-hash does not match the record before it",
            ));
        }
        let recomputed = if is_keyed(&record.hash) {
            chain_hash(self.key, &record.prev_hash, record.seq, &record.event)
        } else {
            legacy_chain_hash(&record.prev_hash, record.seq, &record.event)
        };
        if recomputed != record.hash {
            return Err(self.broken(
                record.seq,
                "hash does not match the record's content (edited)",
            ));
        }
        if let Some(anchored) = self.anchors.get(&record.seq)
            && anchored != &record.hash
        {
            return Err(self.broken(
                record.seq,
                "hash differs from the anchor kept outside the database (rewritten)",
            ));
        }
        self.head = AuditHead {
            seq: record.seq,
            hash: record.hash.clone(),
        };
        Ok(())
    }

    /// After the last record: the chain must end where the stored head says (records removed
    /// from the end are detected here), with a keyed record (an unkeyed record at the end
    /// could be forged by anyone), and reach every anchor.
    pub fn finish(&self, head: Option<&AuditHead>) -> Result<(), BrokenLink> {
        let next = self.head.seq + 1;
        match head {
            Some(head) if head != &self.head => {
                return Err(self.broken(
                    next,
                    format!(
                        "the chain ends at record {} but the head says {}",
                        self.head.seq, head.seq
                    ),
                ));
            }
            None if self.head.seq > 0 => {
                return Err(self.broken(next, "the head row is missing (deleted)"));
            }
            _ => {}
        }
        if self.head.seq > 0 && !is_keyed(&self.head.hash) {
            return Err(self.broken(
                self.head.seq,
                "the chain ends with an unkeyed record (forged, or written by an older Relay \
                 and not yet followed by a keyed record)",
            ));
        }
        if let Some((&seq, _)) = self.anchors.range(next..).next_back() {
            return Err(self.broken(
                next,
                format!(
                    "the chain ends at record {} but an anchor shows it reached {seq} (records removed)",
                    self.head.seq
                ),
            ));
        }
        Ok(())
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub workspaces: usize,
    pub records: u64,
    /// How many anchors were checked.
    pub anchors: usize,
    /// The first broken link, if any (workspaces in id order).
    pub broken: Option<BrokenLink>,
}

/// Verifies every workspace's chain (or only `only`) against `key` and `anchors`, stopping at
/// the first broken link. Every workspace counts that has records, a head, audited data
/// (a workspace with connections whose whole chain was deleted is reported), or an anchor.
pub async fn verify(
    store: &dyn AuditStore,
    key: &AuditKey,
    only: Option<&WorkspaceId>,
    anchors: &[Anchor],
) -> Result<VerifyReport, StoreError> {
    use std::collections::{BTreeMap, BTreeSet};
    let heads: BTreeMap<WorkspaceId, AuditHead> = store
        .audit_heads()
        .await?
        .into_iter()
        .filter(|(_, h)| h.seq > 0)
        .collect();
    let expecting: BTreeSet<WorkspaceId> = store
        .workspaces_expecting_audit()
        .await?
        .into_iter()
        .collect();
    let mut all: BTreeSet<WorkspaceId> = store.audit_workspaces().await?.into_iter().collect();
    all.extend(heads.keys().cloned());
    all.extend(expecting.iter().cloned());
    all.extend(anchors.iter().map(|a| a.workspace_id.clone()));
    let mut report = VerifyReport {
        workspaces: 0,
        records: 0,
        anchors: 0,
        broken: None,
    };
    for ws in all {
        if only.is_some_and(|o| o != &ws) {
            continue;
        }
        report.workspaces += 1;
        report.anchors += anchors.iter().filter(|a| a.workspace_id == ws).count();
        let mut verifier = ChainVerifier::new(ws.clone(), key).with_anchors(anchors);
        let mut after = 0;
        loop {
            let page = store.audit_range(&ws, after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for record in &page {
                if let Err(b) = verifier.check(record) {
                    report.broken = Some(b);
                    return Ok(report);
                }
                report.records += 1;
            }
        }
        if after == 0 && expecting.contains(&ws) {
            report.broken = Some(BrokenLink {
                workspace_id: ws,
                seq: 1,
                reason: "the workspace holds connections, API keys or previews but has no audit \
                         chain (deleted)"
                    .into(),
            });
            return Ok(report);
        }
        if let Err(b) = verifier.finish(heads.get(&ws)) {
            report.broken = Some(b);
            return Ok(report);
        }
    }
    Ok(report)
}

/// Reads anchors from JSON lines: `relay audit heads` output, or Relay's JSON log lines of
/// the periodic `audit anchor` (other lines, and lines that are not JSON, are skipped, so a
/// whole log file can be given). Lines naming a workspace, seq and hash count.
pub fn parse_anchors(text: &str) -> Vec<Anchor> {
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line.trim()).ok())
        .filter_map(|v| {
            let fields = v.get("fields").filter(|f| f.is_object()).unwrap_or(&v);
            serde_json::from_value::<Anchor>(serde_json::json!({
                "workspace_id": fields.get("workspace_id")?,
                "seq": fields.get("seq")?,
                "hash": fields.get("hash")?,
            }))
            .ok()
        })
        .collect()
}

/// Counts a record written in its change's transaction (outside the group-commit writer) in
/// `audit_records_total`, by whether the change's result says it was stored. Errors other
/// than the record's own say nothing about it and are not counted.
pub fn count_transactional<T>(result: &Result<T, StoreError>) {
    let outcome = match result {
        Ok(_) => "stored",
        Err(StoreError::Audit(_)) => "failed",
        Err(_) => return,
    };
    metrics::counter!("audit_records_total", "outcome" => outcome).increment(1);
}

/// Registers the audit writer's metrics so they are exported from the first scrape.
pub fn describe_metrics() {
    metrics::describe_counter!(
        "audit_records_total",
        "Audit records by outcome of their write (stored, failed)"
    );
    metrics::describe_histogram!(
        "audit_batch_size",
        "Records stored per group-commit transaction"
    );
    metrics::describe_histogram!(
        "audit_write_seconds",
        metrics::Unit::Seconds,
        "Duration of one group-commit transaction"
    );
    metrics::describe_histogram!(
        "audit_flush_seconds",
        metrics::Unit::Seconds,
        "Age of the oldest buffered token-read record of a batch when the batch was stored \
         (at most about [audit] access_flush_ms while the writer keeps up)"
    );
    metrics::describe_gauge!(
        "audit_queue_depth",
        "Audit records queued for the writer or kept for a retry, not yet stored"
    );
    metrics::describe_gauge!(
        "audit_queue_capacity",
        "Records the audit queue holds before token reads wait for room ([audit] queue)"
    );
    metrics::describe_gauge!(
        "audit_writer_failing",
        "1 while the audit writer cannot store records (token reads fail closed after \
         [audit] fail_after_secs), else 0"
    );
    metrics::describe_counter!(
        "audit_queue_full_total",
        "Token reads that found the audit queue full and waited for room"
    );
    for outcome in ["stored", "failed"] {
        metrics::counter!("audit_records_total", "outcome" => outcome).increment(0);
    }
    metrics::counter!("audit_queue_full_total").increment(0);
    metrics::gauge!("audit_queue_depth").set(0.0);
    metrics::gauge!("audit_writer_failing").set(0.0);
    let _ = metrics::histogram!("audit_batch_size");
    let _ = metrics::histogram!("audit_write_seconds");
    let _ = metrics::histogram!("audit_flush_seconds");
}

fn bounded(s: &str, max_chars: usize) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max_chars)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ws: &str, n: i64) -> AuditEvent {
        AuditEvent::new(
            WorkspaceId::from_stored(ws.into()),
            AuditAction::TokenRead,
            Timestamp(1_000 + n),
        )
        .connection_id(format!("conn_{n}"))
    }

    fn key() -> AuditKey {
        AuditKey::from_bytes(&[7u8; 32])
    }

    fn chain(ws: &str, n: i64) -> Vec<AuditRecord> {
        let mut head = AuditHead::genesis();
        (1..=n).map(|i| head.append(&key(), event(ws, i))).collect()
    }

    fn verify_all(records: &[AuditRecord], head: &AuditHead) -> Result<(), BrokenLink> {
        verify_anchored(records, head, &[])
    }

    fn verify_anchored(
        records: &[AuditRecord],
        head: &AuditHead,
        anchors: &[Anchor],
    ) -> Result<(), BrokenLink> {
        let key = key();
        let mut v =
            ChainVerifier::new(WorkspaceId::from_stored("ws".into()), &key).with_anchors(anchors);
        for r in records {
            v.check(r)?;
        }
        v.finish(Some(head))
    }

    fn head_of(records: &[AuditRecord]) -> AuditHead {
        records
            .last()
            .map(|r| AuditHead {
                seq: r.seq,
                hash: r.hash.clone(),
            })
            .unwrap_or_else(AuditHead::genesis)
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let records = chain("ws", 5);
        assert_eq!(records[0].prev_hash, GENESIS_HASH);
        assert_eq!(records[1].prev_hash, records[0].hash);
        verify_all(&records, &head_of(&records)).expect("intact");
    }

    #[test]
    fn every_kind_of_tampering_names_the_first_broken_record() {
        let original = chain("ws", 5);
        let head = head_of(&original);

        let mut edited = original.clone();
        edited[2].event.detail = Some("nothing to see".into());
        assert_eq!(verify_all(&edited, &head).expect_err("edited").seq, 3);

        let mut rehashed = original.clone();
        rehashed[2].event.outcome = AuditOutcome::Failed;
        rehashed[2].hash = chain_hash(&key(), &rehashed[2].prev_hash, 3, &rehashed[2].event);
        assert_eq!(verify_all(&rehashed, &head).expect_err("relinked").seq, 4);

        let mut removed = original.clone();
        removed.remove(1);
        assert_eq!(verify_all(&removed, &head).expect_err("removed").seq, 2);

        let mut truncated = original.clone();
        truncated.pop();
        assert_eq!(verify_all(&truncated, &head).expect_err("truncated").seq, 5);

        let mut swapped = original.clone();
        swapped.swap(1, 2);
        assert_eq!(verify_all(&swapped, &head).expect_err("reordered").seq, 2);
    }

    #[test]
    fn only_the_key_holder_can_extend_or_rewrite_a_chain() {
        let original = chain("ws", 4);
        assert!(original.iter().all(|r| is_keyed(&r.hash)));
        let other_key = AuditKey::from_bytes(&[8u8; 32]);

        // A record appended with another key (or none) does not verify.
        let mut forged = original.clone();
        let mut head = head_of(&forged);
        forged.push(head.append(&other_key, event("ws", 5)));
        assert_eq!(verify_all(&forged, &head).expect_err("wrong key").seq, 5);

        // The newest record rewritten with a recomputed unkeyed hash: the chain now ends
        // unkeyed, which nobody but an older Relay could have written.
        let mut unkeyed = original.clone();
        unkeyed[3].event.outcome = AuditOutcome::Failed;
        unkeyed[3].hash = legacy_chain_hash(&unkeyed[3].prev_hash, 4, &unkeyed[3].event);
        let err = verify_all(&unkeyed, &head_of(&unkeyed)).expect_err("unkeyed end");
        assert_eq!(err.seq, 4, "{err}");
        assert!(err.reason.contains("unkeyed"), "{err}");

        // A whole chain rewritten unkeyed from genesis fails the same way.
        let mut legacy_head = AuditHead::genesis();
        let rewritten: Vec<AuditRecord> = (1..=4)
            .map(|i| {
                let e = event("ws", i);
                let hash = legacy_chain_hash(&legacy_head.hash, i, &e);
                let r = AuditRecord {
                    seq: i,
                    event: e,
                    prev_hash: std::mem::replace(&mut legacy_head.hash, hash.clone()),
                    hash,
                };
                legacy_head.seq = i;
                r
            })
            .collect();
        assert!(verify_all(&rewritten, &legacy_head).is_err());

        // Legacy records followed by a keyed one verify: the keyed record covers them.
        let mut upgraded = rewritten;
        upgraded.push(legacy_head.append(&key(), event("ws", 5)));
        verify_all(&upgraded, &legacy_head).expect("legacy prefix, keyed end");
    }

    #[test]
    fn anchors_catch_truncation_and_rewriting_below_them() {
        let original = chain("ws", 5);
        let anchor = |seq: i64, hash: &str| Anchor {
            workspace_id: WorkspaceId::from_stored("ws".into()),
            seq,
            hash: hash.to_owned(),
        };
        let at4 = anchor(4, &original[3].hash);
        verify_anchored(&original, &head_of(&original), std::slice::from_ref(&at4))
            .expect("anchor matches");
        // The newest two records and the head rolled back together: consistent in the
        // database, but shorter than the anchor.
        let truncated = &original[..3];
        verify_all(truncated, &head_of(truncated)).expect("no anchor: undetectable");
        let err = verify_anchored(truncated, &head_of(truncated), &[at4]).expect_err("anchor");
        assert!(err.reason.contains("anchor"), "{err}");
        let wrong = anchor(2, &original[3].hash);
        assert_eq!(
            verify_anchored(&original, &head_of(&original), &[wrong])
                .expect_err("mismatch")
                .seq,
            2
        );
    }

    #[test]
    fn anchors_parse_from_heads_output_and_json_log_lines() {
        let text = concat!(
            "{\"workspace_id\":\"ws_1\",\"seq\":3,\"hash\":\"hmac:ab\"}\n",
            "not json\n",
            "{\"timestamp\":\"t\",\"level\":\"INFO\",\"message\":\"audit anchor\",",
            "\"workspace_id\":\"ws_2\",\"seq\":9,\"hash\":\"hmac:cd\"}\n",
            "{\"fields\":{\"workspace_id\":\"ws_3\",\"seq\":1,\"hash\":\"h\"}}\n",
            "{\"message\":\"something else\"}\n",
        );
        let anchors = parse_anchors(text);
        let seqs: Vec<(String, i64)> = anchors
            .iter()
            .map(|a| (a.workspace_id.as_str().to_owned(), a.seq))
            .collect();
        assert_eq!(
            seqs,
            vec![("ws_1".into(), 3), ("ws_2".into(), 9), ("ws_3".into(), 1)]
        );
    }

    #[test]
    fn the_encoding_separates_fields_unambiguously() {
        let a = event("ws", 1).actor_id("ab").provider("c");
        let b = event("ws", 1).actor_id("a").provider("bc");
        assert_ne!(
            legacy_chain_hash(GENESIS_HASH, 1, &a),
            legacy_chain_hash(GENESIS_HASH, 1, &b)
        );
        let none = event("ws", 1);
        let empty = event("ws", 1).actor_id("");
        assert_ne!(
            legacy_chain_hash(GENESIS_HASH, 1, &none),
            legacy_chain_hash(GENESIS_HASH, 1, &empty)
        );
    }

    #[test]
    fn action_names_round_trip_and_details_are_bounded() {
        for a in AuditAction::ALL {
            assert_eq!(AuditAction::parse(a.as_str()), Some(a));
        }
        assert_eq!(AuditAction::parse("token.deleted"), None);
        let e = event("ws", 1).failed("x\n".repeat(400));
        assert_eq!(e.detail.as_ref().map(|d| d.chars().count()), Some(300));
        assert!(!e.detail.unwrap_or_default().contains('\n'));
    }

    #[tokio::test]
    async fn the_request_context_fills_events_made_inside_it() {
        let ctx = RequestContext::new("req-1", Some("127.0.0.1".into()));
        let e = ctx
            .scope(async {
                RequestContext::set_current_api_key("key_1");
                event("ws", 1)
            })
            .await;
        assert_eq!(e.request_id.as_deref(), Some("req-1"));
        assert_eq!(e.client_addr.as_deref(), Some("127.0.0.1"));
        assert_eq!(e.api_key_id.as_deref(), Some("key_1"));
        assert_eq!(event("ws", 2).request_id, None);
    }
}
