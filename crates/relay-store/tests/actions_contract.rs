//! The action storage contract, run against SQLite and PostgreSQL: previews are
//! workspace-scoped, an execution is claimed by exactly one of many concurrent callers (by
//! preview and by idempotency key), outcomes are written once, released claims can be taken
//! again, and a workspace has one current webhook secret plus those in their grace period.

mod support;

use std::sync::Arc;
use std::time::Duration;

use relay_core::WorkspaceId;
use relay_core::actions::{
    ActionStore, Claim, ExecutionRecord, PreviewRecord, WebhookSecretRecord,
};
use relay_core::clock::Timestamp;
use support::TestDb;

const T0: Timestamp = Timestamp(1_750_000_000_000);

async fn workspace(t: &TestDb, name: &str) -> WorkspaceId {
    t.store()
        .ensure_workspace(name, T0)
        .await
        .expect("workspace")
        .id
}

fn preview(ws: &WorkspaceId, id: &str) -> PreviewRecord {
    PreviewRecord {
        id: id.into(),
        workspace_id: ws.clone(),
        action: "webhook.send".into(),
        connection_id: None,
        digest: "sha256:00".into(),
        payload: vec![1, 2, 3, 0, 255],
        created_at: T0,
        expires_at: T0.plus(Duration::from_secs(900)),
    }
}

fn claim(ws: &WorkspaceId, preview_id: &str, key: Option<&str>) -> ExecutionRecord {
    ExecutionRecord {
        workspace_id: ws.clone(),
        preview_id: preview_id.into(),
        idempotency_key: key.map(str::to_owned),
        claimed_at: T0,
        completed_at: None,
        outcome: None,
    }
}

fn secret(ws: &WorkspaceId, id: &str, at: Timestamp) -> WebhookSecretRecord {
    WebhookSecretRecord {
        id: id.into(),
        workspace_id: ws.clone(),
        secret: id.as_bytes().to_vec(),
        created_at: at,
        retires_at: None,
    }
}

async fn previews_are_scoped_to_their_workspace(t: &TestDb) {
    let store = t.db.action_store();
    let (a, b) = (workspace(t, "a").await, workspace(t, "b").await);
    store
        .insert_preview(&preview(&a, "prv_1"))
        .await
        .expect("insert");
    assert_eq!(
        store.get_preview(&a, "prv_1").await.expect("get"),
        Some(preview(&a, "prv_1"))
    );
    assert_eq!(store.get_preview(&b, "prv_1").await.expect("get"), None);
    assert_eq!(store.get_preview(&a, "prv_x").await.expect("get"), None);
    // Expired previews (and their executions) go; fresh ones stay.
    store
        .insert_preview(&preview(&a, "prv_2"))
        .await
        .expect("insert");
    assert_eq!(
        store
            .claim_execution(&claim(&a, "prv_1", None))
            .await
            .expect("claim"),
        Claim::Claimed
    );
    let purged = store
        .purge_expired_previews(T0.plus(Duration::from_secs(901)))
        .await
        .expect("purge");
    assert_eq!(purged, 2);
    assert_eq!(store.get_execution(&a, "prv_1").await.expect("get"), None);
}

async fn one_claim_wins_among_concurrent_callers(t: &TestDb) {
    let store = t.db.action_store();
    let ws = workspace(t, "w").await;
    store
        .insert_preview(&preview(&ws, "prv_c"))
        .await
        .expect("insert");
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store: Arc<dyn ActionStore> = store.clone();
        let ws = ws.clone();
        let key = (i % 2 == 0).then(|| "key-1".to_owned());
        tasks.push(tokio::spawn(async move {
            store
                .claim_execution(&claim(&ws, "prv_c", key.as_deref()))
                .await
                .expect("claim")
        }));
    }
    let mut won = 0;
    for t in tasks {
        if t.await.expect("task") == Claim::Claimed {
            won += 1;
        }
    }
    assert_eq!(won, 1);
}

async fn outcomes_are_written_once_and_released_claims_reopen(t: &TestDb) {
    let store = t.db.action_store();
    let ws = workspace(t, "w").await;
    assert_eq!(
        store
            .claim_execution(&claim(&ws, "prv_a", Some("k1")))
            .await
            .expect("claim"),
        Claim::Claimed
    );
    // The same key for another preview finds the first preview's row.
    match store
        .claim_execution(&claim(&ws, "prv_b", Some("k1")))
        .await
        .expect("claim")
    {
        Claim::Existing(e) => assert_eq!(e.preview_id, "prv_a"),
        other => panic!("expected the existing claim, got {other:?}"),
    }
    // Another workspace's identical key is independent.
    let other = workspace(t, "other").await;
    assert_eq!(
        store
            .claim_execution(&claim(&other, "prv_a", Some("k1")))
            .await
            .expect("claim"),
        Claim::Claimed
    );
    let at = T0.plus(Duration::from_secs(1));
    assert!(
        store
            .complete_execution(&ws, "prv_a", b"first", at)
            .await
            .expect("complete")
    );
    assert!(
        !store
            .complete_execution(&ws, "prv_a", b"second", at)
            .await
            .expect("complete")
    );
    let done = store
        .get_execution(&ws, "prv_a")
        .await
        .expect("get")
        .expect("row");
    assert_eq!(done.outcome.as_deref(), Some(&b"first"[..]));
    assert_eq!(done.completed_at, Some(at));
    // A completed execution is never released.
    store
        .release_execution(&ws, "prv_a")
        .await
        .expect("release");
    assert!(
        store
            .get_execution(&ws, "prv_a")
            .await
            .expect("get")
            .is_some()
    );
    // An uncompleted one is, and can be claimed again.
    assert_eq!(
        store
            .claim_execution(&claim(&ws, "prv_r", None))
            .await
            .expect("claim"),
        Claim::Claimed
    );
    store
        .release_execution(&ws, "prv_r")
        .await
        .expect("release");
    assert_eq!(
        store
            .claim_execution(&claim(&ws, "prv_r", None))
            .await
            .expect("claim"),
        Claim::Claimed
    );
}

async fn webhook_secrets_rotate_with_a_grace_period(t: &TestDb) {
    let store = t.db.action_store();
    let ws = workspace(t, "w").await;
    assert!(
        store
            .webhook_secrets(&ws, T0)
            .await
            .expect("list")
            .is_empty()
    );
    assert!(
        store
            .insert_first_webhook_secret(&secret(&ws, "whs_1", T0))
            .await
            .expect("first")
    );
    assert!(
        !store
            .insert_first_webhook_secret(&secret(&ws, "whs_x", T0))
            .await
            .expect("second")
    );
    let t1 = T0.plus(Duration::from_secs(10));
    let grace_end = t1.plus(Duration::from_secs(100));
    store
        .rotate_webhook_secret(&secret(&ws, "whs_2", t1), grace_end)
        .await
        .expect("rotate");
    let during = store.webhook_secrets(&ws, t1).await.expect("list");
    let ids: Vec<_> = during
        .iter()
        .map(|s| (s.id.as_str(), s.retires_at))
        .collect();
    assert_eq!(ids, vec![("whs_2", None), ("whs_1", Some(grace_end))]);
    let after = store.webhook_secrets(&ws, grace_end).await.expect("list");
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].id, "whs_2");
    // Rotating again within the grace period: the current and the previous secret sign, the
    // one before stops at once (29 rotations used to mean 30 signatures on every delivery).
    let t2 = t1.plus(Duration::from_secs(5));
    let grace_end2 = t2.plus(Duration::from_secs(100));
    store
        .rotate_webhook_secret(&secret(&ws, "whs_3", t2), grace_end2)
        .await
        .expect("rotate again");
    let t3 = t2.plus(Duration::from_secs(5));
    store
        .rotate_webhook_secret(&secret(&ws, "whs_4", t3), t3.plus(Duration::from_secs(100)))
        .await
        .expect("rotate a third time");
    let signing: Vec<_> = store
        .webhook_secrets(&ws, t3)
        .await
        .expect("list")
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(signing, vec!["whs_4".to_owned(), "whs_3".to_owned()]);
    let other = workspace(t, "other").await;
    assert!(
        store
            .webhook_secrets(&other, t1)
            .await
            .expect("list")
            .is_empty()
    );
}

on_every_backend!(
    db previews_are_scoped_to_their_workspace,
    db one_claim_wins_among_concurrent_callers,
    db outcomes_are_written_once_and_released_claims_reopen,
    db webhook_secrets_rotate_with_a_grace_period,
);
