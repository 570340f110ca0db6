//! The storage contract: what every `Store` implementation must do, written once against the
//! port and run against SQLite and PostgreSQL alike. Services rely on exactly these
//! behaviours (single-use flows, exclusive leases, compare-and-swap writes, workspace
//! isolation), so a dialect that passes here can be swapped in without touching them.

mod support;

use std::sync::Arc;
use std::time::Duration;

use relay_core::clock::Timestamp;
use relay_core::connection::TokenUpdate;
use relay_core::ports::{
    ApiKeyRecord, ApiKeyRole, ConnectionFilter, FlowRecord, SealedKind, Store,
};
use relay_core::{
    ActorId, ActorType, Connection, ConnectionId, ConnectionStatus, ProviderName, Scopes,
    StoreError, WorkspaceId,
};
use relay_store::PoolConfig;
use support::TestDb;

const T0: Timestamp = Timestamp(1_750_000_000_000);

fn at(secs: i64) -> Timestamp {
    Timestamp(T0.0 + secs * 1000)
}

async fn workspace(store: &Arc<dyn Store>, name: &str) -> WorkspaceId {
    store
        .ensure_workspace(name, T0)
        .await
        .expect("workspace")
        .id
}

/// A connection as the token service would write it; the token bytes stand in for sealed
/// values (the store treats them as opaque).
fn connection(ws: &WorkspaceId, provider: &str, actor: &str, created: Timestamp) -> Connection {
    Connection {
        id: ConnectionId::generate(),
        workspace_id: ws.clone(),
        provider: ProviderName::parse(provider).expect("provider"),
        actor_type: ActorType::user(),
        actor_id: ActorId::parse(actor).expect("actor"),
        scopes: Scopes::parse("openid email").expect("scopes"),
        token_type: "Bearer".into(),
        access_token: vec![1, 2, 3, 0, 255],
        refresh_token: Some(vec![9, 8, 7]),
        expires_at: Some(created.plus(Duration::from_secs(3600))),
        status: ConnectionStatus::Active,
        status_reason: None,
        version: 1,
        lease_owner: None,
        lease_until: None,
        created_at: created,
        updated_at: created,
        last_refreshed_at: None,
        next_refresh_at: Some(created.plus(Duration::from_secs(3300))),
        refresh_failures: 0,
        account_subject: None,
        account_email: None,
    }
}

fn update(access: &[u8], refresh: Option<&[u8]>, now: Timestamp) -> TokenUpdate {
    TokenUpdate {
        access_token: access.to_vec(),
        refresh_token: refresh.map(<[u8]>::to_vec),
        token_type: "Bearer".into(),
        expires_at: Some(now.plus(Duration::from_secs(3600))),
        scopes: None,
        next_refresh_at: Some(now.plus(Duration::from_secs(3300))),
        now,
    }
}

fn flow(ws: &WorkspaceId, state_hash: &str, expires_at: Timestamp) -> FlowRecord {
    FlowRecord {
        state_hash: state_hash.into(),
        workspace_id: ws.clone(),
        sealed: vec![0, 1, 2, 250, 251],
        created_at: T0,
        expires_at,
    }
}

on_every_backend!(
    store ping_answers,
    store ensure_workspace_is_idempotent,
    store api_keys_insert_find_revoke,
    store flows_are_taken_once_even_by_concurrent_takers,
    store expired_flows_are_purged,
    store upsert_inserts_then_replaces_the_same_connection,
    store upsert_with_another_id_for_the_same_actor_conflicts,
    store workspaces_are_isolated,
    store list_filters_orders_and_limits,
    store only_one_of_many_concurrent_acquirers_gets_the_lease,
    store an_expired_lease_can_be_taken_over,
    store complete_refresh_is_a_compare_and_swap,
    store mark_needs_reauth_is_a_compare_and_swap,
    store release_records_failures_only_for_the_owner,
    store vault_keys_are_registered_once,
    store connections_page_walks_every_workspace_and_reseal_is_a_compare_and_swap,
    store sealed_values_are_paged_across_workspaces_and_resealed_by_compare_and_swap,
    db migrations_can_be_undone_and_reapplied,
);

async fn ping_answers(store: Arc<dyn Store>) {
    store.ping().await.expect("ping");
}

async fn ensure_workspace_is_idempotent(store: Arc<dyn Store>) {
    let first = store.ensure_workspace("acme", T0).await.expect("create");
    let again = store.ensure_workspace("acme", at(60)).await.expect("again");
    assert_eq!(first, again, "the same workspace, created_at unchanged");
    let other = store.ensure_workspace("globex", T0).await.expect("other");
    assert_ne!(other.id, first.id);

    // Concurrent first calls agree on one workspace.
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.ensure_workspace("race", T0).await })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.expect("task").expect("ensure").id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
}

async fn api_keys_insert_find_revoke(store: Arc<dyn Store>) {
    let ws = workspace(&store, "acme").await;
    let key = ApiKeyRecord {
        id: "key_1".into(),
        workspace_id: ws.clone(),
        secret_hash: "a".repeat(64),
        created_at: T0,
        revoked_at: None,
        rate_limit_per_minute: Some(120),
        role: ApiKeyRole::Service,
    };
    store.insert_api_key(&key).await.expect("insert");
    assert_eq!(
        store
            .find_api_key_by_hash(&key.secret_hash)
            .await
            .expect("find"),
        Some(key.clone())
    );
    assert_eq!(
        store.find_api_key_by_hash("nope").await.expect("find"),
        None
    );

    let duplicate = ApiKeyRecord {
        id: "key_2".into(),
        ..key.clone()
    };
    assert!(matches!(
        store.insert_api_key(&duplicate).await,
        Err(StoreError::Conflict(_))
    ));
    let orphan = ApiKeyRecord {
        id: "key_3".into(),
        secret_hash: "b".repeat(64),
        workspace_id: WorkspaceId::generate(),
        ..key.clone()
    };
    assert!(
        store.insert_api_key(&orphan).await.is_err(),
        "a key must belong to an existing workspace"
    );

    assert!(store.revoke_api_key("key_1", at(5)).await.expect("revoke"));
    assert!(!store.revoke_api_key("key_1", at(6)).await.expect("again"));
    assert!(
        !store
            .revoke_api_key("missing", at(6))
            .await
            .expect("missing")
    );
    let revoked = store
        .find_api_key_by_hash(&key.secret_hash)
        .await
        .expect("find")
        .expect("still there");
    assert_eq!(
        revoked.revoked_at,
        Some(at(5)),
        "the first revocation's time"
    );
}

async fn flows_are_taken_once_even_by_concurrent_takers(store: Arc<dyn Store>) {
    let ws = workspace(&store, "acme").await;
    let record = flow(&ws, &"f".repeat(64), at(600));
    store.insert_flow(&record).await.expect("insert");
    assert!(matches!(
        store.insert_flow(&record).await,
        Err(StoreError::Conflict(_))
    ));

    let takers: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            let hash = record.state_hash.clone();
            tokio::spawn(async move { store.take_flow(&hash).await })
        })
        .collect();
    let mut taken = Vec::new();
    for t in takers {
        if let Some(f) = t.await.expect("task").expect("take") {
            taken.push(f);
        }
    }
    assert_eq!(taken.len(), 1, "exactly one taker gets the flow");
    assert_eq!(taken[0], record, "every field round-trips");
    assert_eq!(
        store.take_flow(&record.state_hash).await.expect("take"),
        None
    );

    // An expired flow is still returned (the caller reports "expired"), once.
    let expired = flow(&ws, &"e".repeat(64), at(-1));
    store.insert_flow(&expired).await.expect("insert");
    assert_eq!(
        store.take_flow(&expired.state_hash).await.expect("take"),
        Some(expired)
    );
}

async fn expired_flows_are_purged(store: Arc<dyn Store>) {
    let ws = workspace(&store, "acme").await;
    for (hash, expires) in [("old", at(-1)), ("edge", at(0)), ("new", at(1))] {
        store
            .insert_flow(&flow(&ws, hash, expires))
            .await
            .expect("insert");
    }
    assert_eq!(store.purge_expired_flows(at(0)).await.expect("purge"), 1);
    assert_eq!(store.purge_expired_flows(at(0)).await.expect("purge"), 0);
    assert!(store.take_flow("old").await.expect("take").is_none());
    assert!(store.take_flow("edge").await.expect("take").is_some());
    assert!(store.take_flow("new").await.expect("take").is_some());
}

async fn upsert_inserts_then_replaces_the_same_connection(store: Arc<dyn Store>) {
    let ws = workspace(&store, "acme").await;
    let original = connection(&ws, "google", "user-1", T0);
    let inserted = store.upsert_connection(&original).await.expect("insert");
    assert_eq!(inserted, original, "an insert stores every field as given");
    assert_eq!(
        store.get_connection(&original.id).await.expect("get"),
        Some(original.clone())
    );

    // Leave the row in a state the replacement must reset: needs_reauth, failures counted.
    let leased = store
        .try_acquire_lease(&original.id, "o1", at(1), at(31))
        .await
        .expect("lease")
        .expect("free");
    store
        .release_lease(&original.id, "o1", Some(at(90)))
        .await
        .expect("release");
    store
        .try_acquire_lease(&original.id, "o2", at(2), at(32))
        .await
        .expect("lease")
        .expect("free");
    let broken = store
        .mark_needs_reauth(
            &original.id,
            "o2",
            leased.version,
            "invalid_grant: revoked",
            at(3),
        )
        .await
        .expect("mark")
        .expect("held");
    assert_eq!(broken.version, 2);
    store
        .try_acquire_lease(&original.id, "o3", at(4), at(34))
        .await
        .expect("lease")
        .expect("free");

    let mut replacement = connection(&ws, "google", "user-1", at(100));
    replacement.id = original.id.clone();
    replacement.access_token = vec![42; 40];
    replacement.refresh_token = None;
    replacement.scopes = Scopes::parse("openid email profile").expect("scopes");
    replacement.updated_at = at(100);
    let replaced = store
        .upsert_connection(&replacement)
        .await
        .expect("replace");
    assert_eq!(replaced.id, original.id);
    assert_eq!(replaced.created_at, T0, "created_at is kept");
    assert_eq!(replaced.updated_at, at(100));
    assert_eq!(replaced.version, broken.version + 1, "version bumped");
    assert_eq!(replaced.access_token, replacement.access_token);
    assert_eq!(
        replaced.refresh_token, original.refresh_token,
        "a stored refresh token is kept when none is given"
    );
    assert_eq!(replaced.scopes, replacement.scopes);
    assert_eq!(replaced.status, ConnectionStatus::Active);
    assert_eq!(replaced.status_reason, None);
    assert_eq!((replaced.lease_owner, replaced.lease_until), (None, None));
    assert_eq!(replaced.refresh_failures, 0);
    assert_eq!(replaced.next_refresh_at, replacement.next_refresh_at);

    replacement.refresh_token = Some(vec![5; 30]);
    let again = store
        .upsert_connection(&replacement)
        .await
        .expect("replace");
    assert_eq!(
        again.refresh_token,
        Some(vec![5; 30]),
        "a new refresh token replaces"
    );
    assert_eq!(again.version, replaced.version + 1);
}

async fn upsert_with_another_id_for_the_same_actor_conflicts(store: Arc<dyn Store>) {
    let ws = workspace(&store, "acme").await;
    let first = connection(&ws, "google", "user-1", T0);
    store.upsert_connection(&first).await.expect("insert");

    let rival = connection(&ws, "google", "user-1", at(1));
    assert!(matches!(
        store.upsert_connection(&rival).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.get_connection(&first.id).await.expect("get"),
        Some(first.clone()),
        "the existing row is untouched"
    );
    assert_eq!(store.get_connection(&rival.id).await.expect("get"), None);

    // The same id for another actor collides on the primary key: also a conflict.
    let mut same_id = connection(&ws, "google", "user-2", at(2));
    same_id.id = first.id.clone();
    assert!(matches!(
        store.upsert_connection(&same_id).await,
        Err(StoreError::Conflict(_))
    ));

    // Another actor type is another key.
    let mut service = connection(&ws, "google", "user-1", at(3));
    service.actor_type = ActorType::parse("service").expect("type");
    store
        .upsert_connection(&service)
        .await
        .expect("a different actor type");
}

async fn workspaces_are_isolated(store: Arc<dyn Store>) {
    let a = workspace(&store, "a").await;
    let b = workspace(&store, "b").await;
    let conn = connection(&a, "google", "user-1", T0);
    store.upsert_connection(&conn).await.expect("insert");

    // The same actor in the other workspace is a separate connection, not a conflict.
    let twin = connection(&b, "google", "user-1", T0);
    store.upsert_connection(&twin).await.expect("insert twin");

    let found = store
        .find_connection(&b, &conn.provider, &conn.actor_type, &conn.actor_id)
        .await
        .expect("find")
        .expect("twin");
    assert_eq!(found.id, twin.id);
    let listed = store
        .list_connections(&b, &ConnectionFilter::default())
        .await
        .expect("list");
    assert_eq!(listed.iter().map(|c| &c.id).collect::<Vec<_>>(), [&twin.id]);

    let outsider = workspace(&store, "c").await;
    assert_eq!(
        store
            .find_connection(&outsider, &conn.provider, &conn.actor_type, &conn.actor_id)
            .await
            .expect("find"),
        None
    );
    assert!(
        store
            .list_connections(&outsider, &ConnectionFilter::default())
            .await
            .expect("list")
            .is_empty()
    );
    assert!(
        !store.delete_connection(&b, &conn.id).await.expect("delete"),
        "another workspace cannot delete it"
    );
    assert!(store.get_connection(&conn.id).await.expect("get").is_some());
    assert!(store.delete_connection(&a, &conn.id).await.expect("delete"));
    assert!(!store.delete_connection(&a, &conn.id).await.expect("again"));
    assert_eq!(store.get_connection(&conn.id).await.expect("get"), None);
    assert!(store.get_connection(&twin.id).await.expect("get").is_some());
}

async fn list_filters_orders_and_limits(store: Arc<dyn Store>) {
    let ws = workspace(&store, "acme").await;
    let specs = [
        ("google", "user", "alice", 30),
        ("google", "user", "bob", 10),
        ("microsoft", "user", "alice", 20),
        ("google", "service", "alice", 10),
        ("microsoft", "user", "carol", 40),
    ];
    let mut expected = Vec::new();
    for (provider, actor_type, actor, secs) in specs {
        let mut c = connection(&ws, provider, actor, at(secs));
        c.actor_type = ActorType::parse(actor_type).expect("type");
        store.upsert_connection(&c).await.expect("insert");
        expected.push(c);
    }
    expected.sort_by(|x, y| (x.created_at, &x.id).cmp(&(y.created_at, &y.id)));

    let all = store
        .list_connections(&ws, &ConnectionFilter::default())
        .await
        .expect("list");
    assert_eq!(all, expected, "ordered by (created_at, id)");

    let ids = |v: Vec<Connection>| {
        v.into_iter()
            .map(|c| c.actor_id.to_string())
            .collect::<Vec<_>>()
    };
    let google = ConnectionFilter {
        provider: Some(ProviderName::parse("google").expect("p")),
        ..Default::default()
    };
    assert_eq!(
        ids(store.list_connections(&ws, &google).await.expect("list")).len(),
        3
    );
    let alice_users = ConnectionFilter {
        actor_type: Some(ActorType::user()),
        actor_id: Some(ActorId::parse("alice").expect("a")),
        ..Default::default()
    };
    let got = store
        .list_connections(&ws, &alice_users)
        .await
        .expect("list");
    assert_eq!(got.len(), 2);
    assert!(
        got.iter()
            .all(|c| c.actor_id.as_str() == "alice" && c.actor_type == ActorType::user())
    );
    let two = ConnectionFilter {
        limit: Some(2),
        ..Default::default()
    };
    assert_eq!(
        store.list_connections(&ws, &two).await.expect("list"),
        expected[..2].to_vec()
    );

    // Without a limit, a page holds 100.
    let many = workspace(&store, "many").await;
    for i in 0..101 {
        store
            .upsert_connection(&connection(&many, "google", &format!("u{i:03}"), at(i)))
            .await
            .expect("insert");
    }
    let page = store
        .list_connections(&many, &ConnectionFilter::default())
        .await
        .expect("list");
    assert_eq!(page.len(), 100);
    assert_eq!(page[0].actor_id.as_str(), "u000");
}

async fn only_one_of_many_concurrent_acquirers_gets_the_lease(store: Arc<dyn Store>) {
    let ws = workspace(&store, "acme").await;
    let conn = connection(&ws, "google", "user-1", T0);
    store.upsert_connection(&conn).await.expect("insert");

    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (store, id, barrier) = (store.clone(), conn.id.clone(), barrier.clone());
            tokio::spawn(async move {
                let owner = format!("owner-{i}");
                barrier.wait().await;
                let got = store.try_acquire_lease(&id, &owner, at(10), at(40)).await;
                (owner, got)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        let (owner, got) = t.await.expect("task");
        if let Some(row) = got.expect("no errors under contention") {
            assert_eq!(row.lease_owner.as_deref(), Some(owner.as_str()));
            assert_eq!(row.lease_until, Some(at(40)));
            assert_eq!(row.version, conn.version, "a lease is not a new version");
            winners.push(owner);
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let row = store
        .get_connection(&conn.id)
        .await
        .expect("get")
        .expect("row");
    assert_eq!(row.lease_owner.as_ref(), Some(&winners[0]));
}

async fn an_expired_lease_can_be_taken_over(store: Arc<dyn Store>) {
    let ws = workspace(&store, "acme").await;
    let conn = connection(&ws, "google", "user-1", T0);
    store.upsert_connection(&conn).await.expect("insert");
    let id = &conn.id;

    assert!(
        store
            .try_acquire_lease(id, "a", at(0), at(10))
            .await
            .expect("a")
            .is_some()
    );
    assert!(
        store
            .try_acquire_lease(id, "b", at(9), at(19))
            .await
            .expect("b")
            .is_none()
    );
    let b = store
        .try_acquire_lease(id, "b", at(10), at(20))
        .await
        .expect("b")
        .expect("expired at 10");
    assert_eq!(b.lease_owner.as_deref(), Some("b"));

    // The old owner releasing does not free the new owner's lease.
    store.release_lease(id, "a", None).await.expect("release");
    assert!(
        store
            .try_acquire_lease(id, "c", at(11), at(21))
            .await
            .expect("c")
            .is_none()
    );
    store.release_lease(id, "b", None).await.expect("release");
    let c = store
        .try_acquire_lease(id, "c", at(11), at(21))
        .await
        .expect("c")
        .expect("released");
    assert_eq!(c.lease_owner.as_deref(), Some("c"));
    let missing = ConnectionId::generate();
    assert!(
        store
            .try_acquire_lease(&missing, "d", at(0), at(1))
            .await
            .expect("d")
            .is_none()
    );
}

async fn complete_refresh_is_a_compare_and_swap(store: Arc<dyn Store>) {
    let ws = workspace(&store, "acme").await;
    let conn = connection(&ws, "google", "user-1", T0);
    store.upsert_connection(&conn).await.expect("insert");
    let id = &conn.id;

    // Not holding the lease at all.
    let new = update(b"new-access", None, at(20));
    assert!(
        store
            .complete_refresh(id, "me", 1, &new)
            .await
            .expect("cas")
            .is_none()
    );

    store
        .try_acquire_lease(id, "me", at(1), at(31))
        .await
        .expect("l")
        .expect("free");
    store
        .release_lease(id, "me", Some(at(5)))
        .await
        .expect("fail once");
    let leased = store
        .try_acquire_lease(id, "me", at(10), at(40))
        .await
        .expect("lease")
        .expect("free");
    assert_eq!(leased.refresh_failures, 1);

    assert!(
        store
            .complete_refresh(id, "me", leased.version + 1, &new)
            .await
            .expect("cas")
            .is_none(),
        "wrong version"
    );
    assert!(
        store
            .complete_refresh(id, "someone-else", leased.version, &new)
            .await
            .expect("cas")
            .is_none(),
        "wrong owner"
    );
    let untouched = store.get_connection(id).await.expect("get").expect("row");
    assert_eq!(untouched.access_token, conn.access_token);
    assert_eq!(untouched.lease_owner.as_deref(), Some("me"));

    let saved = store
        .complete_refresh(id, "me", leased.version, &new)
        .await
        .expect("cas")
        .expect("won");
    assert_eq!(saved.version, leased.version + 1);
    assert_eq!(saved.access_token, b"new-access");
    assert_eq!(
        saved.refresh_token, conn.refresh_token,
        "kept when none came back"
    );
    assert_eq!(saved.scopes, conn.scopes, "kept when none came back");
    assert_eq!(saved.expires_at, new.expires_at);
    assert_eq!(saved.next_refresh_at, new.next_refresh_at);
    assert_eq!(saved.last_refreshed_at, Some(at(20)));
    assert_eq!(saved.updated_at, at(20));
    assert_eq!(saved.created_at, T0);
    assert_eq!((saved.lease_owner.clone(), saved.lease_until), (None, None));
    assert_eq!(saved.refresh_failures, 0);
    assert_eq!(
        store.get_connection(id).await.expect("get"),
        Some(saved.clone())
    );

    // The same write again loses: the version moved on and the lease is gone.
    assert!(
        store
            .complete_refresh(id, "me", leased.version, &new)
            .await
            .expect("cas")
            .is_none()
    );

    // A rotating response replaces the refresh token and, when given, the scopes.
    let leased = store
        .try_acquire_lease(id, "me2", at(30), at(60))
        .await
        .expect("lease")
        .expect("free");
    let mut rotated = update(b"newer-access", Some(b"rotated-refresh"), at(31));
    rotated.scopes = Some(Scopes::parse("openid").expect("s"));
    rotated.token_type = "mac".into();
    let saved = store
        .complete_refresh(id, "me2", leased.version, &rotated)
        .await
        .expect("cas")
        .expect("won");
    assert_eq!(
        saved.refresh_token.as_deref(),
        Some(&b"rotated-refresh"[..])
    );
    assert_eq!(saved.scopes, Scopes::parse("openid").expect("s"));
    assert_eq!(saved.token_type, "mac");
}

async fn mark_needs_reauth_is_a_compare_and_swap(store: Arc<dyn Store>) {
    let ws = workspace(&store, "acme").await;
    let conn = connection(&ws, "google", "user-1", T0);
    store.upsert_connection(&conn).await.expect("insert");
    let id = &conn.id;
    let leased = store
        .try_acquire_lease(id, "me", at(1), at(31))
        .await
        .expect("lease")
        .expect("free");
    let reason = "invalid_grant: Token has been expired or revoked.";
    assert!(
        store
            .mark_needs_reauth(id, "me", leased.version + 1, reason, at(2))
            .await
            .expect("cas")
            .is_none()
    );
    assert!(
        store
            .mark_needs_reauth(id, "other", leased.version, reason, at(2))
            .await
            .expect("cas")
            .is_none()
    );
    assert_eq!(
        store
            .get_connection(id)
            .await
            .expect("get")
            .expect("row")
            .status,
        ConnectionStatus::Active
    );
    let marked = store
        .mark_needs_reauth(id, "me", leased.version, reason, at(2))
        .await
        .expect("cas")
        .expect("won");
    assert_eq!(marked.status, ConnectionStatus::NeedsReauth);
    assert_eq!(marked.status_reason.as_deref(), Some(reason));
    assert_eq!(marked.version, leased.version + 1);
    assert_eq!(
        (marked.lease_owner.clone(), marked.lease_until),
        (None, None)
    );
    assert_eq!(marked.updated_at, at(2));
    assert_eq!(
        marked.access_token, conn.access_token,
        "tokens are kept for the record"
    );
    assert_eq!(store.get_connection(id).await.expect("get"), Some(marked));
}

async fn release_records_failures_only_for_the_owner(store: Arc<dyn Store>) {
    let ws = workspace(&store, "acme").await;
    let conn = connection(&ws, "google", "user-1", T0);
    store.upsert_connection(&conn).await.expect("insert");
    let id = &conn.id;

    store
        .try_acquire_lease(id, "me", at(1), at(31))
        .await
        .expect("l")
        .expect("free");
    store
        .release_lease(id, "other", Some(at(99)))
        .await
        .expect("not mine");
    let row = store.get_connection(id).await.expect("get").expect("row");
    assert_eq!(row.lease_owner.as_deref(), Some("me"));
    assert_eq!(
        (row.refresh_failures, row.next_refresh_at),
        (0, conn.next_refresh_at)
    );

    store
        .release_lease(id, "me", Some(at(50)))
        .await
        .expect("release");
    let row = store.get_connection(id).await.expect("get").expect("row");
    assert_eq!((row.lease_owner.clone(), row.lease_until), (None, None));
    assert_eq!(row.refresh_failures, 1);
    assert_eq!(row.next_refresh_at, Some(at(50)));
    assert_eq!(
        row.version, conn.version,
        "a failed attempt is not a new version"
    );
    assert_eq!(row.status, ConnectionStatus::Active);

    store
        .try_acquire_lease(id, "me", at(2), at(32))
        .await
        .expect("l")
        .expect("free");
    store
        .release_lease(id, "me", Some(at(70)))
        .await
        .expect("release");
    store
        .try_acquire_lease(id, "me", at(3), at(33))
        .await
        .expect("l")
        .expect("free");
    store
        .release_lease(id, "me", None)
        .await
        .expect("plain release");
    let row = store.get_connection(id).await.expect("get").expect("row");
    assert_eq!(row.refresh_failures, 2, "a plain release does not count");
    assert_eq!(row.next_refresh_at, Some(at(70)));
    assert_eq!(row.lease_owner, None);
}

async fn vault_keys_are_registered_once(store: Arc<dyn Store>) {
    assert!(store.vault_keys().await.expect("keys").is_empty());
    store
        .register_vault_key("a0ada0a3a1e1cd55", at(1))
        .await
        .expect("register");
    store
        .register_vault_key("0011223344556677", at(2))
        .await
        .expect("register");
    store
        .register_vault_key("a0ada0a3a1e1cd55", at(3))
        .await
        .expect("again");
    let keys: Vec<_> = store
        .vault_keys()
        .await
        .expect("keys")
        .into_iter()
        .map(|k| (k.key_id, k.created_at))
        .collect();
    assert_eq!(
        keys,
        [
            ("a0ada0a3a1e1cd55".to_owned(), at(1)),
            ("0011223344556677".to_owned(), at(2))
        ]
    );
}

async fn connections_page_walks_every_workspace_and_reseal_is_a_compare_and_swap(
    store: Arc<dyn Store>,
) {
    let a = workspace(&store, "a").await;
    let b = workspace(&store, "b").await;
    let mut ids = Vec::new();
    for (i, ws) in [&a, &b, &a, &b, &a].into_iter().enumerate() {
        let c = connection(ws, "google", &format!("u{i}"), at(i as i64));
        ids.push(store.upsert_connection(&c).await.expect("insert").id);
    }
    ids.sort();
    let first = store.connections_page(None, 2).await.expect("page");
    let rest = store
        .connections_page(Some(&first[1].id), 10)
        .await
        .expect("page");
    let walked: Vec<_> = first
        .iter()
        .chain(rest.iter())
        .map(|c| c.id.clone())
        .collect();
    assert_eq!(
        walked, ids,
        "keyset pages cover every row once, in id order"
    );

    let c = &first[0];
    assert!(
        store
            .reseal_connection(&c.id, c.version, b"new-access", None)
            .await
            .expect("reseal")
    );
    let after = store
        .get_connection(&c.id)
        .await
        .expect("get")
        .expect("row");
    assert_eq!(after.access_token, b"new-access");
    assert_eq!(
        after.refresh_token, c.refresh_token,
        "absent refresh token is kept"
    );
    assert_eq!(
        after.version, c.version,
        "re-sealing does not bump the version"
    );
    assert!(
        !store
            .reseal_connection(&c.id, c.version + 1, b"x", Some(b"y"))
            .await
            .expect("reseal"),
        "a stale version loses"
    );
}

async fn migrations_can_be_undone_and_reapplied(t: &TestDb) {
    let store = t.store();
    let ws = workspace(&store, "acme").await;
    store
        .upsert_connection(&connection(&ws, "google", "user-1", T0))
        .await
        .expect("insert");

    t.db.migrate().await.expect("migrating again is a no-op");
    t.db.undo_to(0).await.expect("undo everything");
    assert!(
        store.ensure_workspace("acme", T0).await.is_err(),
        "the tables are gone"
    );
    t.db.migrate().await.expect("migrate again");
    let ws = workspace(&store, "acme").await;
    assert!(
        store
            .list_connections(&ws, &ConnectionFilter::default())
            .await
            .expect("list")
            .is_empty()
    );
    store
        .upsert_connection(&connection(&ws, "google", "user-1", T0))
        .await
        .expect("the schema works again");
    assert_eq!(t.db.migration_versions(), [1, 2, 3, 4, 5, 6, 7, 8]);
}

/// A server that does not answer is `Unavailable` (so `/ready` and callers can say "try
/// later"), not a generic error.
#[tokio::test]
async fn an_unreachable_postgres_is_unavailable() {
    let config = PoolConfig {
        max_connections: Some(1),
        acquire_timeout: Duration::from_secs(2),
    };
    // Port 1 on loopback: nothing listens there.
    let err = relay_store::connect_with("postgres://postgres@127.0.0.1:1/relay", &config)
        .await
        .expect_err("nothing listens on port 1");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn an_unknown_scheme_is_refused() {
    let err = relay_store::connect("mysql://root:hunter2@localhost/relay")
        .await
        .expect_err("unsupported");
    assert!(matches!(err, StoreError::Other(_)));
    assert!(
        !err.to_string().contains("hunter2"),
        "the URL may hold a password"
    );
}

async fn sealed_values_are_paged_across_workspaces_and_resealed_by_compare_and_swap(
    store: Arc<dyn Store>,
) {
    let a = workspace(&store, "acme").await;
    let b = workspace(&store, "globex").await;
    for (ws, hash) in [(&b, "h1"), (&a, "h2"), (&a, "h4"), (&b, "h3")] {
        let mut f = flow(ws, hash, at(600));
        f.sealed = format!("{}-{hash}", ws.as_str()).into_bytes();
        store.insert_flow(&f).await.expect("insert");
    }
    let first = store
        .sealed_values_page(SealedKind::OAuthFlow, None, 3)
        .await
        .expect("page");
    let last = first.last().expect("a page");
    let rest = store
        .sealed_values_page(
            SealedKind::OAuthFlow,
            Some((&last.workspace_id, &last.record)),
            3,
        )
        .await
        .expect("page");
    let walked: Vec<(String, String)> = first
        .iter()
        .chain(rest.iter())
        .map(|v| (v.workspace_id.as_str().to_owned(), v.record.clone()))
        .collect();
    let mut expected: Vec<(String, String)> = [(&a, "h2"), (&a, "h4"), (&b, "h1"), (&b, "h3")]
        .iter()
        .map(|(ws, r)| (ws.as_str().to_owned(), (*r).to_owned()))
        .collect();
    expected.sort();
    assert_eq!(
        walked, expected,
        "every value once, in (workspace, record) order"
    );
    assert!(
        first
            .iter()
            .chain(rest.iter())
            .all(|v| v.sealed == format!("{}-{}", v.workspace_id.as_str(), v.record).into_bytes())
    );

    let v = &first[0];
    assert!(
        store
            .reseal_value(SealedKind::OAuthFlow, v, b"resealed")
            .await
            .expect("reseal")
    );
    assert!(
        !store
            .reseal_value(SealedKind::OAuthFlow, v, b"again")
            .await
            .expect("reseal"),
        "the bytes changed: a stale value loses"
    );
    let taken = store
        .take_flow(&v.record)
        .await
        .expect("take")
        .expect("flow");
    assert_eq!(taken.sealed, b"resealed");
    for kind in SealedKind::ALL {
        if kind != SealedKind::OAuthFlow {
            assert!(
                store
                    .sealed_values_page(kind, None, 10)
                    .await
                    .expect("page")
                    .is_empty(),
                "{kind:?}"
            );
        }
    }
}
