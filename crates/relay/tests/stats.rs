//! `GET /stats` (Studio's overview charts) and `GET /audit/verify`, through the real binary on
//! SQLite and PostgreSQL: hourly counts of token reads, refreshes, refresh failures, action
//! executions and errors, scoped to the caller's workspace; bad `since` refused with a code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::*;

async fn stats_count_the_workspace_activity(postgres: bool) {
    let pg = if postgres {
        match pg_database().await {
            Some(p) => Some(p),
            None => return,
        }
    } else {
        None
    };
    let fake = FakeProvider::start(FakeProviderConfig::microsoft()).await;
    let hooks = WebhookReceiver::start();
    let dir = TempDir::new();
    let toml = format!(
        "{FAST_REFRESH}\n[actions.webhook]\nallow_hosts = [\"127.0.0.1\"]\n{}",
        provider_toml("test", "oidc", &fake.issuer(), "")
    );
    let mut opts = RelayOptions::new(dir.path(), &toml);
    opts.database_url = pg.as_ref().map(|p| p.url.clone());
    let key = opts.create_api_key("acme").await;
    let other = opts.create_api_key("globex").await;
    let relay = Relay::start(opts).await;

    // Nothing yet: 24 or 25 empty hourly buckets (the hour 24 hours ago, up to this one).
    let (s, empty) = relay.get_json("/stats", &key).await;
    assert_eq!(s, 200, "{empty}");
    let buckets = empty["buckets"].as_array().unwrap();
    assert!((24..=25).contains(&buckets.len()), "{empty}");
    assert_eq!(empty["totals"]["token_reads"], 0);

    // A connection whose token is due: the first read refreshes it, the second is cached.
    let (access, refresh) = fake.issue_tokens_directly();
    let (s, body) = relay
        .post_json(
            "/connections",
            &key,
            &json!({"provider": "test", "actor_id": "alice", "access_token": access,
                    "refresh_token": refresh, "expires_in": 30}),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let (s, refreshed) = relay
        .get_json(&format!("/connections/{id}/token"), &key)
        .await;
    assert_eq!(s, 200, "{refreshed}");
    let (s, _) = relay
        .get_json(&format!("/connections/{id}/token"), &key)
        .await;
    assert_eq!(s, 200);
    // The grant dies at the provider: a forced refresh fails and the read is refused.
    let rotated = fake
        .current_refresh_token_for(refreshed["access_token"].as_str().unwrap())
        .unwrap();
    assert!(fake.revoke_grant(&rotated));
    let (s, _) = relay
        .get_json(&format!("/connections/{id}/token?force_refresh=true"), &key)
        .await;
    assert_eq!(s, 409);

    // Two webhook executions, the second answered 500 by the receiver.
    hooks.push_reply(Reply::Status {
        status: 200,
        body: String::new(),
    });
    for _ in 0..2 {
        hooks.push_reply(Reply::Status {
            status: 500,
            body: "down".into(),
        });
    }
    for n in 0..2 {
        let (s, p) = relay
            .post_json(
                "/actions/preview",
                &key,
                &json!({"action": "webhook.send", "params": {"url": hooks.url(), "payload": {"n": n}}}),
            )
            .await;
        assert_eq!(s, 201, "{p}");
        let resp = relay
            .http
            .post(relay.url("/actions/execute"))
            .bearer_auth(&key)
            .json(&json!({"preview_id": p["preview_id"]}))
            .send()
            .await
            .unwrap();
        let expected = if n == 0 { 200 } else { 502 };
        assert_eq!(resp.status().as_u16(), expected);
    }

    let (s, stats) = relay.get_json("/stats", &key).await;
    assert_eq!(s, 200, "{stats}");
    let totals = &stats["totals"];
    assert_eq!(totals["token_reads"], 3, "{stats}");
    assert_eq!(totals["refreshes"], 1, "{stats}");
    assert_eq!(totals["refresh_failures"], 1, "{stats}");
    assert_eq!(totals["action_executions"], 2, "{stats}");
    assert_eq!(totals["action_errors"], 1, "{stats}");
    // Everything happened in the current hour: the last bucket holds it all.
    let last = stats["buckets"].as_array().unwrap().last().unwrap().clone();
    let mut last_counts = last.clone();
    last_counts["start"] = Value::Null;
    let mut total_counts = totals.clone();
    total_counts["start"] = Value::Null;
    assert_eq!(last_counts, total_counts, "{stats}");
    let start = chrono::DateTime::parse_from_rfc3339(last["start"].as_str().unwrap()).unwrap();
    assert_eq!(start.timestamp() % 3600, 0, "buckets start on the hour");

    // Another workspace sees none of it.
    let (s, theirs) = relay.get_json("/stats", &other).await;
    assert_eq!(s, 200);
    assert_eq!(theirs["totals"]["token_reads"], 0, "{theirs}");
    assert_eq!(theirs["totals"]["action_executions"], 0, "{theirs}");

    // `since` bounds the window; a bad one is a clear 422.
    let since = (chrono::Utc::now() - chrono::Duration::hours(2)).to_rfc3339();
    let (s, two) = relay
        .get_json(&format!("/stats?since={}", urlencode(&since)), &key)
        .await;
    assert_eq!(s, 200, "{two}");
    assert_eq!(two["buckets"].as_array().unwrap().len(), 3, "{two}");
    assert_eq!(two["totals"]["token_reads"], 3);
    for bad in [
        "yesterday",
        &(chrono::Utc::now() - chrono::Duration::days(8)).to_rfc3339(),
        &(chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339(),
    ] {
        let (s, body) = relay
            .get_json(&format!("/stats?since={}", urlencode(bad)), &key)
            .await;
        assert_eq!(s, 422, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "validation_error", "{body}");
    }
    let (s, body) = relay.get_json("/stats?window=1", &key).await;
    assert_eq!(s, 400, "{body}");
    let (s, _) = relay.get_json("/stats", "").await;
    assert_eq!(s, 401);

    // The workspace's chain verifies; the other workspace's chain is its own.
    let (s, verified) = relay.get_json("/audit/verify", &key).await;
    assert_eq!(s, 200, "{verified}");
    assert_eq!(verified["intact"], true, "{verified}");
    assert!(verified["records"].as_u64().unwrap() >= 9, "{verified}");
    let (s, theirs) = relay.get_json("/audit/verify", &other).await;
    assert_eq!(s, 200);
    assert!(theirs["records"].as_u64().unwrap() < verified["records"].as_u64().unwrap());
    // A record changed in the database breaks the chain, and the answer says where.
    let (_, page) = relay.get_json("/audit?limit=1", &key).await;
    let sql = format!(
        "UPDATE audit_log SET detail = 'forged' WHERE workspace_id = '{}' AND action = 'token.read'",
        page["records"][0]["workspace_id"].as_str().unwrap()
    );
    match &pg {
        Some(p) => {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&p.url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .execute(&mut c)
                .await
                .unwrap();
        }
        None => {
            use sqlx::Connection;
            let url = format!("sqlite://{}", dir.path().join("relay.db").display());
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .execute(&mut c)
                .await
                .unwrap();
        }
    }
    let (s, broken) = relay.get_json("/audit/verify", &key).await;
    assert_eq!(s, 200, "{broken}");
    assert_eq!(broken["intact"], false, "{broken}");
    assert!(broken["broken_seq"].as_i64().unwrap() > 1, "{broken}");
    assert!(!broken["reason"].as_str().unwrap().is_empty());
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_the_workspace_activity_on_sqlite() {
    stats_count_the_workspace_activity(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_the_workspace_activity_on_postgres() {
    stats_count_the_workspace_activity(true).await;
}
