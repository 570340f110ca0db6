//! The audit log: one append-only record for every sensitive operation, chained per workspace
//! by SHA-256 so that an edited, removed or reordered record is detected by [`verify`].
//!
//! This module holds the rules (the record, its canonical encoding and hash, the verifier),
//! the port storage implements ([`AuditStore`]), the handle services call ([`AuditSink`]),
//! and the group-commit writer ([`AuditLog`]) that stores many records in one transaction
//! while each caller still waits until its own record is stored: an operation whose record
//! could not be written fails with it.
//!
//! Records carry ids, names and reasons, never a secret: there is no field a token, code,
//! client secret or API key could go into, and `detail` is a short reason chosen by Relay.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

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
    ApiKeyRevoked,
    VaultResealed,
}

impl AuditAction {
    pub const ALL: [AuditAction; 11] = [
        Self::ConnectionCreated,
        Self::TokenRead,
        Self::TokenRefreshed,
        Self::TokenRefreshFailed,
        Self::ConnectionNeedsReauth,
        Self::ConnectionDeleted,
        Self::ActionPreviewed,
        Self::ActionExecuted,
        Self::ApiKeyCreated,
        Self::ApiKeyRevoked,
        Self::VaultResealed,
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
            Self::ApiKeyRevoked => "api_key.revoked",
            Self::VaultResealed => "vault.resealed",
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

/// `SHA-256(prev_hash || canonical(record))`, lowercase hex.
pub fn chain_hash(prev_hash: &str, seq: i64, event: &AuditEvent) -> String {
    let mut data = Vec::with_capacity(320);
    data.extend_from_slice(prev_hash.as_bytes());
    data.extend_from_slice(&event.canonical(seq));
    crate::random::sha256_hex(&data)
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
    pub fn append(&mut self, event: AuditEvent) -> AuditRecord {
        let seq = self.seq + 1;
        let hash = chain_hash(&self.hash, seq, &event);
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
    /// Every workspace with records, and its head.
    async fn audit_heads(&self) -> Result<Vec<(WorkspaceId, AuditHead)>, StoreError>;
    /// A workspace's records with `seq > after_seq`, oldest first.
    async fn audit_range(
        &self,
        workspace: &WorkspaceId,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError>;
}

/// Why a record could not be stored. The operation it records must fail too.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    #[error("the audit record could not be stored: {0}")]
    Unavailable(String),
    #[error("the audit writer has stopped")]
    Stopped,
}

/// What services call to record an operation. Returns once the record is stored.
#[async_trait]
pub trait AuditSink: Send + Sync + 'static {
    async fn record(&self, event: AuditEvent) -> Result<(), AuditError>;
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

/// Group-commit settings.
#[derive(Debug, Clone)]
pub struct GroupCommit {
    /// Most records per transaction.
    pub max_batch: usize,
    /// How many records may wait for the writer before callers queue on the channel.
    pub queue: usize,
}

impl Default for GroupCommit {
    fn default() -> Self {
        Self {
            max_batch: 512,
            queue: 8192,
        }
    }
}

type Pending = (AuditEvent, oneshot::Sender<Result<(), AuditError>>);

/// The group-commit writer. Callers hand their record to one writer task and wait for its
/// answer; the task takes everything queued (up to `max_batch`) and stores it in one
/// transaction. While a transaction runs, the next callers queue, so batches grow with load
/// and an idle system pays no added delay: no timer, no linger.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Pending>,
}

impl AuditLog {
    /// Starts the writer task on the current runtime. It ends when every handle is dropped,
    /// after storing what was queued.
    pub fn spawn(store: Arc<dyn AuditStore>, settings: GroupCommit) -> Self {
        let (tx, rx) = mpsc::channel(settings.queue.max(1));
        tokio::spawn(write_batches(store, rx, settings.max_batch.max(1)));
        Self { tx }
    }

    /// Whether the writer task still runs (for `/ready`).
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }
}

#[async_trait]
impl AuditSink for AuditLog {
    async fn record(&self, mut event: AuditEvent) -> Result<(), AuditError> {
        event.fill_from_request();
        let (done, wait) = oneshot::channel();
        self.tx
            .send((event, done))
            .await
            .map_err(|_| AuditError::Stopped)?;
        wait.await.unwrap_or(Err(AuditError::Stopped))
    }
}

async fn write_batches(store: Arc<dyn AuditStore>, mut rx: mpsc::Receiver<Pending>, max: usize) {
    let mut batch: Vec<Pending> = Vec::with_capacity(max);
    let mut events: Vec<AuditEvent> = Vec::with_capacity(max);
    let mut waiting = Vec::with_capacity(max);
    while rx.recv_many(&mut batch, max).await > 0 {
        // The events move into the batch; the callers' answer channels wait beside them.
        for (event, done) in batch.drain(..) {
            events.push(event);
            waiting.push(done);
        }
        let started = Instant::now();
        let result = store.append_audit(&events).await;
        metrics::histogram!("audit_batch_size").record(events.len() as f64);
        metrics::histogram!("audit_write_seconds").record(started.elapsed().as_secs_f64());
        let answer = match result {
            Ok(_) => {
                metrics::counter!("audit_records_total", "outcome" => "stored")
                    .increment(events.len() as u64);
                Ok(())
            }
            Err(e) => {
                metrics::counter!("audit_records_total", "outcome" => "failed")
                    .increment(events.len() as u64);
                tracing::error!(error = %e, records = events.len(), "audit records could not be stored; the operations they record fail");
                Err(AuditError::Unavailable(e.to_string()))
            }
        };
        events.clear();
        for done in waiting.drain(..) {
            // A caller that went away (request cancelled) no longer needs the answer.
            let _ = done.send(answer.clone());
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

/// Checks one workspace's records, fed oldest first.
#[derive(Debug)]
pub struct ChainVerifier {
    workspace_id: WorkspaceId,
    head: AuditHead,
}

impl ChainVerifier {
    pub fn new(workspace_id: WorkspaceId) -> Self {
        Self {
            workspace_id,
            head: AuditHead::genesis(),
        }
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
        if chain_hash(&record.prev_hash, record.seq, &record.event) != record.hash {
            return Err(self.broken(
                record.seq,
                "hash does not match the record's content (edited)",
            ));
        }
        self.head = AuditHead {
            seq: record.seq,
            hash: record.hash.clone(),
        };
        Ok(())
    }

    /// After the last record: the chain must end where the stored head says (records removed
    /// from the end are detected here).
    pub fn finish(&self, head: &AuditHead) -> Result<(), BrokenLink> {
        if &self.head != head {
            return Err(self.broken(
                self.head.seq + 1,
                format!(
                    "the chain ends at record {} but the head says {}",
                    self.head.seq, head.seq
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
    /// The first broken link, if any (workspaces in id order).
    pub broken: Option<BrokenLink>,
}

/// Verifies every workspace's chain (or only `only`), stopping at the first broken link.
pub async fn verify(
    store: &dyn AuditStore,
    only: Option<&WorkspaceId>,
) -> Result<VerifyReport, StoreError> {
    let mut heads = store.audit_heads().await?;
    heads.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    let mut report = VerifyReport {
        workspaces: 0,
        records: 0,
        broken: None,
    };
    for (ws, head) in heads {
        if only.is_some_and(|o| o != &ws) {
            continue;
        }
        report.workspaces += 1;
        let mut verifier = ChainVerifier::new(ws.clone());
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
        if let Err(b) = verifier.finish(&head) {
            report.broken = Some(b);
            return Ok(report);
        }
    }
    Ok(report)
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
    for outcome in ["stored", "failed"] {
        metrics::counter!("audit_records_total", "outcome" => outcome).increment(0);
    }
    let _ = metrics::histogram!("audit_batch_size");
    let _ = metrics::histogram!("audit_write_seconds");
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

    fn chain(ws: &str, n: i64) -> Vec<AuditRecord> {
        let mut head = AuditHead::genesis();
        (1..=n).map(|i| head.append(event(ws, i))).collect()
    }

    fn verify_all(records: &[AuditRecord], head: &AuditHead) -> Result<(), BrokenLink> {
        let mut v = ChainVerifier::new(WorkspaceId::from_stored("ws".into()));
        for r in records {
            v.check(r)?;
        }
        v.finish(head)
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
        rehashed[2].hash = chain_hash(&rehashed[2].prev_hash, 3, &rehashed[2].event);
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
    fn the_encoding_separates_fields_unambiguously() {
        let a = event("ws", 1).actor_id("ab").provider("c");
        let b = event("ws", 1).actor_id("a").provider("bc");
        assert_ne!(
            chain_hash(GENESIS_HASH, 1, &a),
            chain_hash(GENESIS_HASH, 1, &b)
        );
        let none = event("ws", 1);
        let empty = event("ws", 1).actor_id("");
        assert_ne!(
            chain_hash(GENESIS_HASH, 1, &none),
            chain_hash(GENESIS_HASH, 1, &empty)
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
