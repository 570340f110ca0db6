//! The audit log's storage contract on both backends: records chain per workspace, filters and
//! cursors page through them, concurrent writers in two "processes" never fork a chain,
//! tampering is found at the first broken record, and a record that cannot be stored fails
//! the caller.

mod support;

use std::sync::Arc;

use relay_core::WorkspaceId;
use relay_core::audit::{
    self, AuditAction, AuditEvent, AuditFilter, AuditLog, AuditSink, AuditStore, GroupCommit,
};
use relay_core::clock::Timestamp;
use relay_store::DatabaseKind;
use support::TestDb;

fn ws(name: &str) -> WorkspaceId {
    WorkspaceId::from_stored(name.to_owned())
}

fn event(workspace: &str, n: i64, action: AuditAction) -> AuditEvent {
    AuditEvent::new(ws(workspace), action, Timestamp(1_000_000 + n * 1000))
        .connection_id(format!("conn_{}", n % 3))
        .actor_id(format!("actor_{}", n % 2))
        .provider("google")
        .api_key_id("key_1")
}

/// Runs one SQL statement on the test database, outside Relay (an attacker with access).
async fn tamper(t: &TestDb, sql: &str) {
    use sqlx::Connection;
    match t.kind() {
        DatabaseKind::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&t.url).await.expect("open");
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&mut c)
                .await
                .expect("tamper");
        }
        DatabaseKind::Postgres => {
            let mut c = sqlx::PgConnection::connect(&t.url).await.expect("open");
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&mut c)
                .await
                .expect("tamper");
        }
    }
}

async fn records_chain_per_workspace_and_filter(t: &TestDb) {
    let store = t.db.audit_store();
    let mut events = Vec::new();
    for n in 1..=10 {
        let action = if n % 4 == 0 {
            AuditAction::TokenRefreshed
        } else {
            AuditAction::TokenRead
        };
        events.push(event("ws_a", n, action));
        if n % 2 == 0 {
            events.push(event("ws_b", n, AuditAction::ConnectionCreated).failed("conflict"));
        }
    }
    let stored = store.append_audit(&events).await.expect("append");
    let a_seqs: Vec<i64> = stored
        .iter()
        .filter(|r| r.event.workspace_id == ws("ws_a"))
        .map(|r| r.seq)
        .collect();
    assert_eq!(a_seqs, (1..=10).collect::<Vec<_>>());
    // A second batch continues each chain where it ended.
    let more = store
        .append_audit(&[event("ws_b", 11, AuditAction::TokenRead)])
        .await
        .expect("append");
    assert_eq!(more[0].seq, 6);
    let b5 = stored
        .iter()
        .find(|r| r.event.workspace_id == ws("ws_b") && r.seq == 5)
        .expect("b5");
    assert_eq!(more[0].prev_hash, b5.hash);

    let report = audit::verify(store.as_ref(), &support::test_audit_key(), None, &[])
        .await
        .expect("verify");
    assert_eq!(report.broken, None);
    assert_eq!((report.workspaces, report.records), (2, 16));

    // Round trip: what is read is exactly what was stored.
    let all = store
        .list_audit(
            &ws("ws_b"),
            &AuditFilter {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(all.len(), 6);
    assert_eq!(all[0], more[0], "newest first, every field intact");
    assert_eq!(all[5].event.detail.as_deref(), Some("conflict"));

    let by = |f: AuditFilter| {
        let store = store.clone();
        async move { store.list_audit(&ws("ws_a"), &f).await.expect("list") }
    };
    let refreshed = by(AuditFilter {
        action: Some(AuditAction::TokenRefreshed),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(
        refreshed.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![8, 4]
    );
    let conn = by(AuditFilter {
        connection_id: Some("conn_0".into()),
        actor_id: Some("actor_1".into()),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(conn.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![9, 3]);
    let window = by(AuditFilter {
        from: Some(Timestamp(1_000_000 + 3_000)),
        to: Some(Timestamp(1_000_000 + 6_000)),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(
        window.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![5, 4, 3]
    );

    // Cursor pagination visits every record once.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = by(AuditFilter {
            before_seq: cursor,
            limit: 3,
            ..Default::default()
        })
        .await;
        seen.extend(page.iter().map(|r| r.seq));
        if page.len() < 3 {
            break;
        }
        cursor = page.last().map(|r| r.seq);
    }
    assert_eq!(seen, (1..=10).rev().collect::<Vec<_>>());
    // Another workspace's records are invisible.
    assert!(
        by(AuditFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .iter()
        .all(|r| r.event.workspace_id == ws("ws_a"))
    );
}

async fn concurrent_writers_in_two_processes_never_fork_a_chain(t: &TestDb) {
    let second = t.open_again().await;
    let stores: [Arc<dyn AuditStore>; 2] = [t.db.audit_store(), second.audit_store()];
    let mut tasks = Vec::new();
    for i in 0..16i64 {
        let store = stores[(i % 2) as usize].clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..5i64 {
                let batch: Vec<AuditEvent> = (0..3)
                    .map(|k| {
                        let shared = if k == 2 { "ws_other" } else { "ws_shared" };
                        event(shared, i * 100 + round * 10 + k, AuditAction::TokenRead)
                    })
                    .collect();
                store.append_audit(&batch).await.expect("append");
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer");
    }
    let report = audit::verify(stores[0].as_ref(), &support::test_audit_key(), None, &[])
        .await
        .expect("verify");
    assert_eq!(report.broken, None, "{report:?}");
    assert_eq!(report.records, 16 * 5 * 3);
    second.close().await;
}

/// Two processes' group-commit writers append to one workspace at once: every record is
/// stored once, in one unbroken chain, although their batches race each other's
/// compare-and-swap on the head (PostgreSQL) and take the locking path when they lose.
async fn group_commits_of_two_processes_keep_one_chain(t: &TestDb) {
    let second = t.open_again().await;
    let logs = [
        Arc::new(AuditLog::spawn(t.db.audit_store(), GroupCommit::default())),
        Arc::new(AuditLog::spawn(
            second.audit_store(),
            GroupCommit::default(),
        )),
    ];
    let mut calls = Vec::new();
    for n in 0..600i64 {
        let log = logs[(n % 2) as usize].clone();
        calls.push(tokio::spawn(async move {
            log.record(event("ws_pipe", n, AuditAction::TokenRead))
                .await
        }));
    }
    for c in calls {
        c.await.expect("task").expect("stored");
    }
    let report = audit::verify(
        t.db.audit_store().as_ref(),
        &support::test_audit_key(),
        None,
        &[],
    )
    .await
    .expect("verify");
    assert_eq!(report.broken, None, "{report:?}");
    assert_eq!(report.records, 600);
    second.close().await;
}

async fn tampering_is_found_at_the_first_broken_record(t: &TestDb) {
    let store = t.db.audit_store();
    let events: Vec<_> = (1..=6)
        .map(|n| event("ws_t", n, AuditAction::TokenRead))
        .collect();
    store.append_audit(&events).await.expect("append");
    store
        .append_audit(&[event("ws_clean", 1, AuditAction::TokenRead)])
        .await
        .expect("append");
    assert_eq!(
        audit::verify(store.as_ref(), &support::test_audit_key(), None, &[])
            .await
            .expect("verify")
            .broken,
        None
    );

    tamper(
        t,
        "UPDATE audit_log SET outcome = 'failed' WHERE workspace_id = 'ws_t' AND seq = 4",
    )
    .await;
    let broken = audit::verify(store.as_ref(), &support::test_audit_key(), None, &[])
        .await
        .expect("verify")
        .broken
        .expect("found");
    assert_eq!((broken.workspace_id.as_str(), broken.seq), ("ws_t", 4));
    // The untouched workspace still verifies on its own.
    let clean = audit::verify(
        store.as_ref(),
        &support::test_audit_key(),
        Some(&ws("ws_clean")),
        &[],
    )
    .await
    .expect("verify");
    assert_eq!((clean.broken, clean.records), (None, 1));

    tamper(
        t,
        "DELETE FROM audit_log WHERE workspace_id = 'ws_t' AND seq >= 3",
    )
    .await;
    let broken = audit::verify(store.as_ref(), &support::test_audit_key(), None, &[])
        .await
        .expect("verify")
        .broken
        .expect("found");
    assert_eq!(broken.seq, 3, "{broken}");
}

async fn group_commit_stores_every_record_or_fails_its_caller(t: &TestDb) {
    let log = Arc::new(AuditLog::spawn(t.db.audit_store(), GroupCommit::default()));
    let mut calls = Vec::new();
    for n in 0..200 {
        let log = log.clone();
        calls.push(tokio::spawn(async move {
            log.record(event("ws_g", n, AuditAction::TokenRead)).await
        }));
    }
    for c in calls {
        c.await.expect("task").expect("stored");
    }
    let report = audit::verify(
        t.db.audit_store().as_ref(),
        &support::test_audit_key(),
        None,
        &[],
    )
    .await
    .expect("verify");
    assert_eq!((report.records, report.broken), (200, None));
    assert!(log.is_running());

    // The database goes away: the caller is told, it does not get a silent success.
    t.db.close().await;
    let failed = log.record(event("ws_g", 201, AuditAction::TokenRead)).await;
    assert!(failed.is_err(), "{failed:?}");
}

/// The census behind the `connections{provider,status}` gauge counts across workspaces.
async fn connections_are_counted_by_provider_and_status(t: &TestDb) {
    use relay_core::census::ConnectionCount;
    use relay_core::{
        ActorId, ActorType, Connection, ConnectionId, ConnectionStatus, ProviderName, Scopes,
    };
    let store = t.store();
    assert!(
        t.db.census()
            .count_connections()
            .await
            .expect("count")
            .is_empty()
    );
    let mut ids = Vec::new();
    for (ws_name, provider, actor) in [
        ("ws1", "google", "a"),
        ("ws1", "google", "b"),
        ("ws2", "google", "c"),
        ("ws2", "microsoft", "d"),
    ] {
        let ws = store
            .ensure_workspace(ws_name, Timestamp(0))
            .await
            .expect("ws")
            .id;
        let conn = Connection {
            id: ConnectionId::generate(),
            workspace_id: ws,
            provider: ProviderName::parse(provider).expect("provider"),
            actor_type: ActorType::user(),
            actor_id: ActorId::parse(actor).expect("actor"),
            scopes: Scopes::parse("openid").expect("scopes"),
            token_type: "Bearer".into(),
            access_token: vec![1],
            refresh_token: Some(vec![2]),
            expires_at: Some(Timestamp(3_600_000)),
            status: ConnectionStatus::Active,
            status_reason: None,
            version: 1,
            lease_owner: None,
            lease_until: None,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
            last_refreshed_at: None,
            next_refresh_at: None,
            refresh_failures: 0,
            account_subject: None,
            account_email: None,
        };
        ids.push(store.upsert_connection(&conn).await.expect("insert"));
    }
    // One google connection's grant dies.
    let dead = &ids[1];
    let leased = store
        .try_acquire_lease(&dead.id, "o", Timestamp(1), Timestamp(10_000))
        .await
        .expect("lease")
        .expect("free");
    store
        .mark_needs_reauth(&dead.id, "o", leased.version, "invalid_grant", Timestamp(2))
        .await
        .expect("mark")
        .expect("won");
    let counts = t.db.census().count_connections().await.expect("count");
    let row = |provider: &str, status: &str, count: i64| ConnectionCount {
        provider: provider.into(),
        status: status.into(),
        count,
    };
    assert_eq!(
        counts,
        vec![
            row("google", "active", 2),
            row("google", "needs_reauth", 1),
            row("microsoft", "active", 1),
        ]
    );
}

/// Two processes take turns on one chain: each one's idea of the head goes stale when the
/// other writes, and its next append must notice instead of forking the chain.
async fn writers_taking_turns_keep_one_chain(t: &TestDb) {
    let second = t.open_again().await;
    let (a, b) = (t.db.audit_store(), second.audit_store());
    for round in 0..4i64 {
        for (store, k) in [(&a, 0), (&b, 1), (&a, 2)] {
            let n = round * 10 + k;
            let stored = store
                .append_audit(&[event("ws_turns", n, AuditAction::TokenRead)])
                .await
                .expect("append");
            assert_eq!(stored[0].seq, round * 3 + k + 1);
        }
    }
    let report = audit::verify(a.as_ref(), &support::test_audit_key(), None, &[])
        .await
        .expect("verify");
    assert_eq!((report.records, report.broken), (12, None));
    second.close().await;
}

on_every_backend!(
    db writers_taking_turns_keep_one_chain,
    db connections_are_counted_by_provider_and_status,
    db records_chain_per_workspace_and_filter,
    db concurrent_writers_in_two_processes_never_fork_a_chain,
    db group_commits_of_two_processes_keep_one_chain,
    db tampering_is_found_at_the_first_broken_record,
    db group_commit_stores_every_record_or_fails_its_caller,
    db a_failed_append_stores_nothing_and_the_next_one_recovers,
    db a_head_changed_behind_the_writer_is_followed_not_overwritten,
    db deleting_the_newest_records_and_the_head_is_detected,
    db deleting_a_whole_workspace_chain_is_detected,
    db a_forged_record_with_a_recomputed_unkeyed_hash_is_detected,
    db records_verify_across_a_master_key_rotation,
    db chains_of_an_older_relay_are_sealed_once_and_keep_verifying,
    db a_change_and_its_record_commit_together_or_not_at_all,
);

/// A batch that fails in the steady state (here: the table is briefly gone) stores nothing and
/// says so; the next batch, once the table is back, appends right after the last stored
/// record (SQLite's audit writer drops the connection the failure left mid-transaction and
/// opens a new one).
async fn a_failed_append_stores_nothing_and_the_next_one_recovers(t: &TestDb) {
    let store = t.db.audit_store();
    let first = store
        .append_audit(&[event("ws_f", 1, AuditAction::TokenRead)])
        .await
        .expect("append");
    store
        .append_audit(&[event("ws_f", 2, AuditAction::TokenRead)])
        .await
        .expect("append at the known head");
    tamper(t, "ALTER TABLE audit_log RENAME TO audit_log_away").await;
    let failed = store
        .append_audit(&[event("ws_f", 3, AuditAction::TokenRead)])
        .await;
    assert!(failed.is_err(), "{failed:?}");
    tamper(t, "ALTER TABLE audit_log_away RENAME TO audit_log").await;
    let stored = store
        .append_audit(&[event("ws_f", 4, AuditAction::TokenRead)])
        .await
        .expect("the writer recovered");
    assert_eq!(
        stored[0].seq,
        first[0].seq + 2,
        "nothing of the failed batch was kept"
    );
    let report = audit::verify(store.as_ref(), &support::test_audit_key(), None, &[])
        .await
        .expect("verify");
    assert_eq!((report.records, report.broken), (3, None));
}

/// The head a writer remembers changed without new records (here its hash; a restore from a
/// backup could do the same): the steady-state append must notice, not write after the head
/// it remembers. Its next record then chains from the head that is stored (and `verify`
/// reports the break there), and the head advances to that record.
async fn a_head_changed_behind_the_writer_is_followed_not_overwritten(t: &TestDb) {
    let store = t.db.audit_store();
    let first = store
        .append_audit(&[event("ws_h", 1, AuditAction::TokenRead)])
        .await
        .expect("append");
    let changed = "0".repeat(64);
    tamper(
        t,
        &format!("UPDATE audit_heads SET hash = '{changed}' WHERE workspace_id = 'ws_h'"),
    )
    .await;
    let second = store
        .append_audit(&[event("ws_h", 2, AuditAction::TokenRead)])
        .await
        .expect("append after the changed head");
    assert_eq!(second[0].seq, 2);
    assert_eq!(second[0].prev_hash, changed, "chained from the stored head");
    assert_ne!(second[0].prev_hash, first[0].hash);
    // The head is the second record: the next append follows it in the steady state.
    let third = store
        .append_audit(&[event("ws_h", 3, AuditAction::TokenRead)])
        .await
        .expect("append");
    assert_eq!(
        (third[0].seq, third[0].prev_hash.as_str()),
        (3, second[0].hash.as_str())
    );
    let report = audit::verify(
        store.as_ref(),
        &support::test_audit_key(),
        Some(&ws("ws_h")),
        &[],
    )
    .await
    .expect("verify");
    assert_eq!(
        report.broken.map(|b| b.seq),
        Some(2),
        "the break is where the head changed"
    );
}

async fn verify_with(t: &TestDb, anchors: &[audit::Anchor]) -> audit::VerifyReport {
    audit::verify(
        t.db.audit_store().as_ref(),
        &support::test_audit_key(),
        None,
        anchors,
    )
    .await
    .expect("verify")
}

async fn heads_as_anchors(t: &TestDb) -> Vec<audit::Anchor> {
    t.db.audit_store()
        .audit_heads()
        .await
        .expect("heads")
        .into_iter()
        .map(|(workspace_id, h)| audit::Anchor {
            workspace_id,
            seq: h.seq,
            hash: h.hash,
        })
        .collect()
}

/// Rolling a chain back (its newest records deleted, the head deleted or set back to match):
/// a missing head is found on its own; a consistent rollback only against an anchor kept
/// outside the database, which the chain no longer reaches.
async fn deleting_the_newest_records_and_the_head_is_detected(t: &TestDb) {
    let store = t.db.audit_store();
    let events: Vec<_> = (1..=5)
        .map(|n| event("ws_n", n, AuditAction::TokenRead))
        .collect();
    let stored = store.append_audit(&events).await.expect("append");
    let anchors = heads_as_anchors(t).await;
    assert_eq!(verify_with(t, &anchors).await.broken, None);

    tamper(
        t,
        "DELETE FROM audit_log WHERE workspace_id = 'ws_n' AND seq >= 4; \
         DELETE FROM audit_heads WHERE workspace_id = 'ws_n'",
    )
    .await;
    let broken = verify_with(t, &[]).await.broken.expect("head missing");
    assert!(broken.reason.contains("head row is missing"), "{broken}");

    // The attacker writes a head that matches the shortened chain.
    tamper(
        t,
        &format!(
            "INSERT INTO audit_heads (workspace_id, seq, hash) VALUES ('ws_n', 3, '{}')",
            stored[2].hash
        ),
    )
    .await;
    assert_eq!(
        verify_with(t, &[]).await.broken,
        None,
        "without anchors a consistent rollback cannot be told apart"
    );
    let broken = verify_with(t, &anchors).await.broken.expect("anchor");
    assert_eq!((broken.workspace_id.as_str(), broken.seq), ("ws_n", 4));
    assert!(broken.reason.contains("anchor"), "{broken}");
}

/// A workspace holding a connection whose whole chain (records and head) was deleted.
async fn deleting_a_whole_workspace_chain_is_detected(t: &TestDb) {
    let store = t.store();
    let conn = connection_in(t, "acme_whole", "u1").await;
    let created = AuditEvent::new(
        conn.workspace_id.clone(),
        AuditAction::ConnectionCreated,
        Timestamp(1),
    )
    .connection(&conn);
    store
        .upsert_connection_audited(&conn, &created)
        .await
        .expect("insert");
    assert_eq!(verify_with(t, &[]).await.broken, None);
    tamper(
        t,
        &format!(
            "DELETE FROM audit_log WHERE workspace_id = '{ws}'; \
             DELETE FROM audit_heads WHERE workspace_id = '{ws}'",
            ws = conn.workspace_id.as_str()
        ),
    )
    .await;
    let broken = verify_with(t, &[]).await.broken.expect("found");
    assert_eq!(broken.workspace_id, conn.workspace_id);
    assert!(broken.reason.contains("no audit chain"), "{broken}");
}

/// An attacker with the database rewrites the newest record and recomputes its hash the way
/// Relay used to (plain SHA-256), or as an HMAC under a key of their own: neither verifies.
async fn a_forged_record_with_a_recomputed_unkeyed_hash_is_detected(t: &TestDb) {
    let store = t.db.audit_store();
    let events: Vec<_> = (1..=3)
        .map(|n| event("ws_forged", n, AuditAction::TokenRead))
        .collect();
    let stored = store.append_audit(&events).await.expect("append");
    let mut forged = stored[2].clone();
    forged.event.outcome = relay_core::audit::AuditOutcome::Failed;
    for hash in [
        audit::legacy_chain_hash(&forged.prev_hash, 3, &forged.event),
        audit::chain_hash(
            &relay_core::audit::AuditKey::from_bytes(&[1u8; 32]),
            &forged.prev_hash,
            3,
            &forged.event,
        ),
    ] {
        tamper(
            t,
            &format!(
                "UPDATE audit_log SET outcome = 'failed', hash = '{hash}' \
                 WHERE workspace_id = 'ws_forged' AND seq = 3; \
                 UPDATE audit_heads SET hash = '{hash}' WHERE workspace_id = 'ws_forged'"
            ),
        )
        .await;
        let broken = verify_with(t, &[]).await.broken.expect("forgery found");
        assert_eq!((broken.workspace_id.as_str(), broken.seq), ("ws_forged", 3));
    }
}

/// The audit key survives a rotation of the master key: it is stored sealed, re-sealed under
/// the new key at the first start with it, and opens once the old key is gone, so records
/// from before and after the rotation verify together.
async fn records_verify_across_a_master_key_rotation(t: &TestDb) {
    use relay_core::vault::{Keyring, MasterKey};
    let (old, new) = (MasterKey::generate(), MasterKey::generate());
    let start = |db: relay_store::Database, ring: Keyring, primary: &MasterKey| {
        let derived = primary.derive_audit_key();
        async move {
            let key =
                audit::open_or_create_key(db.audit_store().as_ref(), &ring, &derived, Timestamp(1))
                    .await
                    .expect("audit key");
            let key = Arc::new(key);
            db.install_audit_key(key.clone());
            (db, key)
        }
    };
    let (before, _) = start(t.open_bare().await, Keyring::new(&old, &[]), &old).await;
    before
        .audit_store()
        .append_audit(&[event("ws_rot", 1, AuditAction::TokenRead)])
        .await
        .expect("append before");
    // Rotation under way: new primary, old previous.
    let (during, _) = start(
        t.open_bare().await,
        Keyring::new(
            &new,
            &[MasterKey::from_base64(&old.to_base64()).expect("key")],
        ),
        &new,
    )
    .await;
    during
        .audit_store()
        .append_audit(&[event("ws_rot", 2, AuditAction::TokenRead)])
        .await
        .expect("append during");
    // The old key removed.
    let (after, key) = start(t.open_bare().await, Keyring::new(&new, &[]), &new).await;
    after
        .audit_store()
        .append_audit(&[event("ws_rot", 3, AuditAction::TokenRead)])
        .await
        .expect("append after");
    let report = audit::verify(after.audit_store().as_ref(), &key, None, &[])
        .await
        .expect("verify");
    assert_eq!((report.records, report.broken), (3, None));
    // A key freshly derived from the new master key is another key: without the stored
    // one, the chain would not verify.
    let fresh = relay_core::audit::AuditKey::from_bytes(&new.derive_audit_key());
    let report = audit::verify(after.audit_store().as_ref(), &fresh, None, &[])
        .await
        .expect("verify");
    assert_eq!(report.broken.map(|b| b.seq), Some(1));
    for db in [before, during, after] {
        db.close().await;
    }
}

/// A chain an older Relay wrote (plain SHA-256) and a workspace whose connection predates
/// the audit log: the first start with keyed audit seals both with a keyed record, after
/// which everything verifies; a second start seals nothing more.
async fn chains_of_an_older_relay_are_sealed_once_and_keep_verifying(t: &TestDb) {
    let mut head = relay_core::audit::AuditHead::genesis();
    for n in 1..=3 {
        let e = event("ws_old", n, AuditAction::TokenRead);
        let hash = audit::legacy_chain_hash(&head.hash, n, &e);
        tamper(
            t,
            &format!(
                "INSERT INTO audit_log (workspace_id, seq, at, action, outcome, api_key_id, \
                 actor_id, connection_id, provider, prev_hash, hash) VALUES ('ws_old', {n}, {at}, \
                 'token.read', 'ok', 'key_1', '{actor}', '{conn}', 'google', '{prev}', '{hash}')",
                at = e.at.0,
                actor = e.actor_id.as_deref().unwrap_or_default(),
                conn = e.connection_id.as_deref().unwrap_or_default(),
                prev = head.hash,
            ),
        )
        .await;
        head = relay_core::audit::AuditHead { seq: n, hash };
    }
    tamper(
        t,
        &format!(
            "INSERT INTO audit_heads (workspace_id, seq, hash) VALUES ('ws_old', 3, '{}')",
            head.hash
        ),
    )
    .await;
    let unaudited = connection_in(t, "acme_old", "u1").await;
    t.store()
        .upsert_connection(&unaudited)
        .await
        .expect("a connection from before the audit log");
    let broken = verify_with(t, &[]).await.broken.expect("not sealed yet");
    assert!(
        broken.reason.contains("unkeyed") || broken.reason.contains("no audit chain"),
        "{broken}"
    );

    let sink = relay_core::audit::DirectAudit(t.db.audit_store());
    let sealed = audit::seal_legacy_chains(t.db.audit_store().as_ref(), &sink, Timestamp(9))
        .await
        .expect("seal");
    assert_eq!(sealed, 2);
    let report = verify_with(t, &[]).await;
    assert_eq!((report.records, report.broken), (5, None));
    assert_eq!(
        audit::seal_legacy_chains(t.db.audit_store().as_ref(), &sink, Timestamp(10))
            .await
            .expect("seal"),
        0,
        "keyed audit has begun: nothing is sealed again"
    );
}

/// A connection stored or deleted together with its record: when the record is refused (a
/// trigger rejects inserts into the audit table), the change is rolled back with it.
async fn a_change_and_its_record_commit_together_or_not_at_all(t: &TestDb) {
    use relay_core::StoreError;
    let store = t.store();
    let conn = connection_in(t, "acme_tx", "u1").await;
    let created = AuditEvent::new(
        conn.workspace_id.clone(),
        AuditAction::ConnectionCreated,
        Timestamp(1),
    )
    .connection(&conn);
    let deleted = AuditEvent::new(
        conn.workspace_id.clone(),
        AuditAction::ConnectionDeleted,
        Timestamp(2),
    )
    .connection(&conn);
    refuse_audit_inserts(t, true).await;
    let refused = store.upsert_connection_audited(&conn, &created).await;
    assert!(matches!(refused, Err(StoreError::Audit(_))), "{refused:?}");
    assert!(
        store.get_connection(&conn.id).await.expect("get").is_none(),
        "no connection without its record"
    );

    refuse_audit_inserts(t, false).await;
    store
        .upsert_connection_audited(&conn, &created)
        .await
        .expect("insert");
    refuse_audit_inserts(t, true).await;
    let refused = store
        .delete_connection_audited(&conn.workspace_id, &conn.id, &deleted)
        .await;
    assert!(matches!(refused, Err(StoreError::Audit(_))), "{refused:?}");
    assert!(
        store.get_connection(&conn.id).await.expect("get").is_some(),
        "the connection stays when its deletion cannot be recorded"
    );

    refuse_audit_inserts(t, false).await;
    assert!(
        store
            .delete_connection_audited(&conn.workspace_id, &conn.id, &deleted)
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete_connection_audited(&conn.workspace_id, &conn.id, &deleted)
            .await
            .expect("nothing left"),
    );
    // The group-commit writer of this process continues the chain the transactions extended.
    t.db.audit_store()
        .append_audit(&[AuditEvent::new(
            conn.workspace_id.clone(),
            AuditAction::TokenRead,
            Timestamp(3),
        )])
        .await
        .expect("append");
    let actions: Vec<&str> =
        t.db.audit_store()
            .audit_range(&conn.workspace_id, 0, 10)
            .await
            .expect("range")
            .iter()
            .map(|r| r.event.action.as_str())
            .collect::<Vec<_>>()
            .into_iter()
            .collect();
    assert_eq!(
        actions,
        vec!["connection.created", "connection.deleted", "token.read"]
    );
    assert_eq!(verify_with(t, &[]).await.broken, None);
}

/// Installs (or removes) a trigger that makes every insert into `audit_log` fail.
async fn refuse_audit_inserts(t: &TestDb, refuse: bool) {
    let sql = match (t.kind(), refuse) {
        (DatabaseKind::Sqlite, true) => {
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log \
             BEGIN SELECT RAISE(ABORT, 'audit refused'); END;"
        }
        (DatabaseKind::Sqlite, false) => "DROP TRIGGER refuse_audit",
        (DatabaseKind::Postgres, true) => {
            "CREATE OR REPLACE FUNCTION refuse_audit() RETURNS trigger \
             LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit refused'; END $$; \
             CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log \
             FOR EACH ROW EXECUTE FUNCTION refuse_audit();"
        }
        (DatabaseKind::Postgres, false) => "DROP TRIGGER refuse_audit ON audit_log",
    };
    tamper(t, sql).await;
}

/// A connection of a new workspace `name`, not stored yet.
async fn connection_in(t: &TestDb, name: &str, actor: &str) -> relay_core::Connection {
    use relay_core::{ActorId, ActorType, ConnectionId, ConnectionStatus, ProviderName, Scopes};
    let ws = t
        .store()
        .ensure_workspace(name, Timestamp(0))
        .await
        .expect("ws")
        .id;
    relay_core::Connection {
        id: ConnectionId::generate(),
        workspace_id: ws,
        provider: ProviderName::parse("google").expect("provider"),
        actor_type: ActorType::user(),
        actor_id: ActorId::parse(actor).expect("actor"),
        scopes: Scopes::parse("openid").expect("scopes"),
        token_type: "Bearer".into(),
        access_token: vec![1],
        refresh_token: Some(vec![2]),
        expires_at: Some(Timestamp(3_600_000)),
        status: ConnectionStatus::Active,
        status_reason: None,
        version: 1,
        lease_owner: None,
        lease_until: None,
        created_at: Timestamp(0),
        updated_at: Timestamp(0),
        last_refreshed_at: None,
        next_refresh_at: None,
        refresh_failures: 0,
        account_subject: None,
        account_email: None,
    }
}
