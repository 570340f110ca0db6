//! The action service in process, with a manual clock: preview expiry, a claim left by a
//! crashed process (in progress, then in doubt), and the webhook secret's grace period, all
//! without sleeping. Every part is the real one (SQLite store, token service, provider
//! executor); the only other party is the loopback webhook receiver.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use relay_core::actions::{
    ActionError, ActionService, ActionSettings, ActionStore, Claim, ExecutionRecord, PreviewRequest,
};
use relay_core::refresh::{RefreshPolicy, TokenService};
use relay_core::vault::{Keyring, MasterKey};
use relay_core::{Clock, ManualClock, SystemClock, WorkspaceId};
use relay_providers::Catalog;
use relay_providers::actions::{Cidr, ExecutorSettings, ProviderActions, WebhookSettings};
use relay_store::MemoryCache;
use relay_test_support::WebhookReceiver;
use serde_json::json;

struct Harness {
    service: ActionService,
    store: Arc<dyn ActionStore>,
    clock: ManualClock,
    workspace: WorkspaceId,
    hooks: WebhookReceiver,
    _db: relay_store::Database,
}

async fn harness() -> Harness {
    relay_providers::install_crypto_provider();
    let db = relay_store::connect("sqlite::memory:").await.unwrap();
    db.migrate().await.unwrap();
    let clock = ManualClock::new(SystemClock.now());
    let shared_clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let keyring = Arc::new(Keyring::new(&MasterKey::generate(), &[]));
    let http = relay_providers::http_client(Duration::from_secs(5)).unwrap();
    let catalog = Arc::new(Catalog::new(http, BTreeMap::new()).unwrap());
    let tokens = Arc::new(TokenService::new(
        db.store(),
        Arc::new(MemoryCache::new(100, Duration::from_secs(30))),
        catalog.clone(),
        keyring.clone(),
        shared_clock.clone(),
        RefreshPolicy::default(),
    ));
    let executor = ProviderActions::new(
        catalog,
        shared_clock.clone(),
        ExecutorSettings {
            webhook: WebhookSettings {
                allow: vec![Cidr::parse("127.0.0.1").unwrap()],
                ..WebhookSettings::default()
            },
            ..ExecutorSettings::default()
        },
    )
    .unwrap();
    let workspace = db
        .store()
        .ensure_workspace("acme", clock.now())
        .await
        .unwrap()
        .id;
    let store = db.action_store();
    let service = ActionService::new(
        store.clone(),
        tokens,
        Arc::new(executor),
        keyring,
        shared_clock,
        ActionSettings {
            preview_ttl: Duration::from_secs(900),
            in_doubt_after: Duration::from_secs(120),
            // Waiting for another caller would need real time to pass; answer at once.
            max_wait: Duration::ZERO,
            webhook_secret_grace: Duration::from_secs(3600),
        },
    );
    Harness {
        service,
        store,
        clock,
        workspace,
        hooks: WebhookReceiver::start(),
        _db: db,
    }
}

impl Harness {
    async fn webhook_preview(&self) -> String {
        self.service
            .preview(
                &self.workspace,
                PreviewRequest {
                    action: "webhook.send".into(),
                    connection: None,
                    params: json!({"url": self.hooks.url(), "payload": {"n": 1}}),
                },
            )
            .await
            .unwrap()
            .preview_id
    }
}

#[tokio::test]
async fn a_preview_expires_after_its_ttl_and_is_never_sent() {
    let h = harness().await;
    let id = h.webhook_preview().await;
    h.clock.advance(Duration::from_secs(900));
    let err = h
        .service
        .execute(&h.workspace, &id, None)
        .await
        .unwrap_err();
    assert!(matches!(err, ActionError::PreviewExpired), "{err:?}");
    assert!(h.hooks.deliveries().is_empty());
    // One millisecond before expiry it would have been sent.
    let id = h.webhook_preview().await;
    h.clock.advance(Duration::from_millis(899_999));
    let out = h.service.execute(&h.workspace, &id, None).await.unwrap();
    assert_eq!(out.result["status"], 200);
    assert_eq!(h.hooks.deliveries().len(), 1);
}

#[tokio::test]
async fn a_claim_without_an_outcome_is_in_progress_then_in_doubt_and_never_resent() {
    let h = harness().await;
    let id = h.webhook_preview().await;
    // A process claimed the preview, sent it, and died before recording the outcome.
    let claimed = h
        .store
        .claim_execution(&ExecutionRecord {
            workspace_id: h.workspace.clone(),
            preview_id: id.clone(),
            idempotency_key: None,
            claimed_at: h.clock.now(),
            completed_at: None,
            outcome: None,
        })
        .await
        .unwrap();
    assert_eq!(claimed, Claim::Claimed);
    let err = h
        .service
        .execute(&h.workspace, &id, None)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "execution_in_progress");
    h.clock.advance(Duration::from_secs(120));
    let err = h
        .service
        .execute(&h.workspace, &id, None)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "execution_in_doubt");
    assert!(h.hooks.deliveries().is_empty(), "never sent again");
}

#[tokio::test]
async fn a_rotated_secret_signs_only_during_its_grace_period() {
    let h = harness().await;
    let first = h.service.webhook_secret(&h.workspace).await.unwrap();
    let (second, until) = h.service.rotate_webhook_secret(&h.workspace).await.unwrap();
    assert_eq!(until, h.clock.now().plus(Duration::from_secs(3600)));
    use secrecy::ExposeSecret as _;
    assert_ne!(first.expose_secret(), second.expose_secret());
    let id = h.webhook_preview().await;
    h.service.execute(&h.workspace, &id, None).await.unwrap();
    h.clock.advance(Duration::from_secs(3600));
    let id = h.webhook_preview().await;
    h.service.execute(&h.workspace, &id, None).await.unwrap();
    let d = h.hooks.deliveries();
    let count = |i: usize| d[i].header("webhook-signature").unwrap().split(' ').count();
    assert_eq!((count(0), count(1)), (2, 1));
    assert_eq!(
        h.service
            .webhook_secret(&h.workspace)
            .await
            .unwrap()
            .expose_secret(),
        second.expose_secret()
    );
}
