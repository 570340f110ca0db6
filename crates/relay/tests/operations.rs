//! Operating Relay, through the real binary: the audit trail of a whole flow (GET /audit,
//! `relay audit verify|export`, tampering found), no token leaving without its audit record,
//! request ids on responses, log lines and audit records, metrics with bounded labels, the
//! dashboard and alert rules referring only to exported metrics, `/ready`, and SIGTERM letting
//! an in-flight refresh finish.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use support::*;

async fn start_with(
    fake: &FakeProvider,
    pg: Option<&PgDb>,
    extra_toml: &str,
) -> (TempDir, RelayOptions, String) {
    let dir = TempDir::new();
    let toml = format!(
        "{FAST_REFRESH}\n{extra_toml}\n{}",
        provider_toml("test", "oidc", &fake.issuer(), "")
    );
    let mut opts = RelayOptions::new(dir.path(), &toml);
    opts.database_url = pg.map(|p| p.url.clone());
    let key = opts.create_api_key("acme").await;
    (dir, opts, key)
}

async fn import(
    relay: &Relay,
    key: &str,
    fake: &FakeProvider,
    actor: &str,
    expires_in: u64,
) -> String {
    let (access, refresh) = fake.issue_tokens_directly();
    let (s, body) = relay
        .post_json(
            "/connections",
            key,
            &json!({"provider": "test", "actor_id": actor, "access_token": access,
                    "refresh_token": refresh, "expires_in": expires_in}),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

async fn audit(relay: &Relay, key: &str, query: &str) -> (u16, Value) {
    relay.get_json(&format!("/audit{query}"), key).await
}

fn actions(page: &Value) -> Vec<String> {
    page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_owned())
        .collect()
}

async fn audit_trail(postgres: bool) {
    let pg = if postgres {
        match pg_database().await {
            Some(p) => Some(p),
            None => return,
        }
    } else {
        None
    };
    let fake = FakeProvider::start(FakeProviderConfig::microsoft()).await;
    let (_dir, opts, key) = start_with(&fake, pg.as_ref(), "").await;
    let relay = Relay::start(opts.clone()).await;

    let id = import(&relay, &key, &fake, "alice", 30).await;
    // A read of a due token: refreshed, then read. The response's request id is in both records.
    let resp = relay
        .http
        .get(relay.url(&format!("/connections/{id}/token")))
        .bearer_auth(&key)
        .header("x-request-id", "trace-abc.123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["x-request-id"], "trace-abc.123");
    let refreshed: Value = resp.json().await.unwrap();
    let (s, _) = relay
        .get_json(&format!("/connections/{id}/token"), &key)
        .await;
    assert_eq!(s, 200);

    // The grant dies at the provider: the forced refresh makes the connection needs_reauth.
    let rotated = fake
        .current_refresh_token_for(refreshed["access_token"].as_str().unwrap())
        .unwrap();
    assert!(fake.revoke_grant(&rotated));
    let (s, body) = relay
        .get_json(&format!("/connections/{id}/token?force_refresh=true"), &key)
        .await;
    assert_eq!(s, 409, "{body}");
    let (s, _) = relay.delete_json(&format!("/connections/{id}"), &key).await;
    assert_eq!(s, 200);

    let (s, page) = audit(&relay, &key, "").await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(
        actions(&page),
        vec![
            "connection.deleted",
            "token.read",
            "connection.needs_reauth",
            "token.read",
            "token.read",
            "token.refreshed",
            "connection.created",
            "api_key.created",
        ]
    );
    let records = page["records"].as_array().unwrap();
    let failed_read = &records[1];
    assert_eq!(failed_read["outcome"], "failed");
    assert!(
        failed_read["detail"]
            .as_str()
            .unwrap()
            .contains("invalid_grant")
    );
    assert_eq!(records[2]["outcome"], "failed");
    for r in &records[..7] {
        assert_eq!(r["connection_id"], id.as_str(), "{r}");
        assert_eq!(r["client_addr"], "127.0.0.1", "{r}");
        assert!(r["api_key_id"].as_str().unwrap().starts_with("key_"), "{r}");
        assert_eq!(r["provider"], "test");
    }
    assert_eq!(records[4]["actor_id"], "alice");
    assert_eq!(records[4]["request_id"], "trace-abc.123");
    assert_eq!(
        records[5]["request_id"], "trace-abc.123",
        "the refresh ran inside the read"
    );
    assert_eq!(records[7]["detail"], "cli");

    // Filters, time range and the cursor.
    let (_, reads) = audit(&relay, &key, "?action=token.read").await;
    assert_eq!(actions(&reads), vec!["token.read"; 3]);
    let (_, by_actor) = audit(&relay, &key, &format!("?actor_id=alice&connection_id={id}")).await;
    assert_eq!(by_actor["records"].as_array().unwrap().len(), 7);
    let (_, future) = audit(&relay, &key, "?from=2099-01-01T00:00:00Z").await;
    assert!(future["records"].as_array().unwrap().is_empty());
    let (_, first) = audit(&relay, &key, "?limit=5").await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let (_, second) = audit(&relay, &key, &format!("?limit=5&cursor={cursor}")).await;
    assert_eq!(second["records"].as_array().unwrap().len(), 3);
    assert!(second["next_cursor"].is_null());
    for (bad, status, code) in [
        ("?action=token.stolen", 422, "validation_error"),
        ("?limit=0", 422, "validation_error"),
        ("?limit=5000", 422, "validation_error"),
        ("?cursor=abc", 400, "invalid_cursor"),
        ("?from=yesterday", 422, "validation_error"),
        ("?colour=red", 400, "invalid_query"),
    ] {
        let (s, body) = audit(&relay, &key, bad).await;
        assert_eq!(
            (s, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{bad}: {body}"
        );
    }
    // A read of a connection that is gone (or never was, or is another workspace's) is
    // refused with 404 and recorded as a failed read: probing shows in the trail.
    let (s, _) = relay
        .get_json(&format!("/connections/{id}/token"), &key)
        .await;
    assert_eq!(s, 404);
    let (_, latest) = audit(&relay, &key, "?limit=1").await;
    let probe = &latest["records"][0];
    assert_eq!(
        (probe["action"].as_str(), probe["outcome"].as_str()),
        (Some("token.read"), Some("failed")),
        "{probe}"
    );
    assert_eq!(probe["connection_id"], id.as_str());
    assert!(
        probe["detail"].as_str().unwrap().contains("not found"),
        "{probe}"
    );

    // Another workspace sees none of it.
    let other = opts.create_api_key("globex").await;
    let (_, theirs) = audit(&relay, &other, "").await;
    assert_eq!(actions(&theirs), vec!["api_key.created"]);
    let (s, _) = relay.get_json("/audit", "rly_not-a-key").await;
    assert_eq!(s, 401);
    assert!(relay.stop().await.success());

    // CLI operations are audited too: revoking globex's key, re-sealing the vault.
    let (ok, _, err) = opts
        .run(&["api-key", "create", "--workspace", "globex"])
        .await;
    assert!(ok, "{err}");
    let key_id = err
        .split_whitespace()
        .find(|w| w.starts_with("key_"))
        .unwrap()
        .to_owned();
    let (ok, _, err) = opts.run(&["api-key", "revoke", &key_id]).await;
    assert!(ok, "{err}");
    let (ok, _, err) = opts.run(&["vault", "reseal"]).await;
    assert!(ok, "{err}");
    let (ok, out, err) = opts.run(&["audit", "export"]).await;
    assert!(ok, "{err}");
    let revoked: Value = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["action"] == "api_key.revoked")
        .expect("revocation audited");
    assert_eq!(revoked["api_key_id"], key_id.as_str());
    assert_eq!(
        revoked["workspace_id"],
        theirs["records"][0]["workspace_id"]
    );
    assert!(
        out.contains("\"workspace_id\":\"_system\",\"action\":\"vault.resealed\""),
        "{out}"
    );

    let (ok, out, err) = opts.run(&["audit", "verify"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("audit log intact: 13 records in 3 workspaces"),
        "{out}"
    );
    let (ok, out, err) = opts
        .run(&[
            "audit",
            "export",
            "--workspace",
            records[0]["workspace_id"].as_str().unwrap(),
        ])
        .await;
    assert!(ok, "{err}");
    let exported: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(exported.len(), 9);
    assert_eq!(exported[0]["action"], "api_key.created");
    assert_eq!(
        exported[7], records[0],
        "export and API show the same record"
    );

    // Someone edits a record in the database: verify names it and fails.
    let sql = format!(
        "UPDATE audit_log SET detail = 'nothing happened' WHERE seq = 3 AND workspace_id = '{}'",
        records[0]["workspace_id"].as_str().unwrap()
    );
    run_sql(&opts, pg.as_ref(), &sql).await;
    let (ok, out, _) = opts.run(&["audit", "verify"]).await;
    assert!(!ok);
    assert!(out.contains("record 3: hash does not match"), "{out}");
}

async fn run_sql(opts: &RelayOptions, pg: Option<&PgDb>, sql: &str) {
    use sqlx::Connection;
    match pg {
        Some(pg) => {
            let mut c = sqlx::PgConnection::connect(&pg.url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&mut c)
                .await
                .unwrap();
        }
        None => {
            let url = format!("sqlite://{}", opts.data_dir.join("relay.db").display());
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&mut c)
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_sensitive_operation_is_audited_on_sqlite() {
    audit_trail(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_sensitive_operation_is_audited_on_postgres() {
    audit_trail(true).await;
}

/// Anchors kept outside the database: the periodic `audit anchor` log lines and `relay audit
/// heads` output both serve `relay audit verify --anchors`, which then finds a chain rolled
/// back together with its head (invisible without anchors); a workspace's whole chain deleted
/// is found even without them.
async fn anchors(postgres: bool) {
    let pg = if postgres {
        match pg_database().await {
            Some(p) => Some(p),
            None => return,
        }
    } else {
        None
    };
    let fake = FakeProvider::start(FakeProviderConfig::google()).await;
    let (dir, opts, key) =
        start_with(&fake, pg.as_ref(), "[audit]\nanchor_interval_secs = 1\n").await;
    let relay = Relay::start(opts.clone()).await;
    let id = import(&relay, &key, &fake, "bob", 3600).await;
    for _ in 0..3 {
        let (s, _) = relay
            .get_json(&format!("/connections/{id}/token"), &key)
            .await;
        assert_eq!(s, 200);
    }
    let (_, page) = audit(&relay, &key, "?limit=1").await;
    let workspace = page["records"][0]["workspace_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let head_seq = page["records"][0]["seq"].as_i64().unwrap();
    assert_eq!(
        head_seq, 5,
        "api_key.created, connection.created, 3 token.read"
    );
    // The periodic anchor reaches the head (bounded wait for the next tick).
    let anchor_line = format!("\"workspace_id\":\"{workspace}\",\"seq\":{head_seq}");
    let mut logged = String::new();
    for _ in 0..100 {
        logged = relay.logs();
        if logged
            .lines()
            .any(|l| l.contains("audit anchor") && l.contains(&anchor_line))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        logged
            .lines()
            .any(|l| l.contains("audit anchor") && l.contains(&anchor_line)),
        "{logged}"
    );
    assert!(relay.stop().await.success());
    let log_file = dir.path().join("relay.log");
    std::fs::write(&log_file, &logged).unwrap();
    let (ok, heads, err) = opts.run(&["audit", "heads"]).await;
    assert!(ok, "{err}");
    assert!(heads.contains(&anchor_line), "{heads}");
    let heads_file = dir.path().join("heads.jsonl");
    std::fs::write(&heads_file, &heads).unwrap();
    let log_path = log_file.to_str().unwrap();
    let heads_path = heads_file.to_str().unwrap();
    for path in [log_path, heads_path] {
        let (ok, out, err) = opts.run(&["audit", "verify", "--anchors", path]).await;
        assert!(ok, "{out}{err}");
        assert!(out.contains("anchors reached"), "{out}");
    }

    // The newest two records deleted and the head set back to match what is left.
    let sql = format!(
        "DELETE FROM audit_log WHERE workspace_id = '{workspace}' AND seq > 3; \
         UPDATE audit_heads SET seq = 3, hash = (SELECT hash FROM audit_log \
         WHERE workspace_id = '{workspace}' AND seq = 3) WHERE workspace_id = '{workspace}'"
    );
    run_sql(&opts, pg.as_ref(), &sql).await;
    let (ok, out, err) = opts.run(&["audit", "verify"]).await;
    assert!(
        ok,
        "without anchors a consistent rollback passes: {out}{err}"
    );
    for path in [log_path, heads_path] {
        let (ok, out, _) = opts.run(&["audit", "verify", "--anchors", path]).await;
        assert!(!ok, "{out}");
        assert!(out.contains("record 4") && out.contains("anchor"), "{out}");
    }

    // The workspace's whole chain deleted: it still has an API key and a connection.
    let sql = format!(
        "DELETE FROM audit_log WHERE workspace_id = '{workspace}'; \
         DELETE FROM audit_heads WHERE workspace_id = '{workspace}'"
    );
    run_sql(&opts, pg.as_ref(), &sql).await;
    let (ok, out, _) = opts.run(&["audit", "verify"]).await;
    assert!(!ok, "{out}");
    assert!(out.contains("no audit chain"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn anchors_outside_the_database_find_a_rolled_back_chain_on_sqlite() {
    anchors(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn anchors_outside_the_database_find_a_rolled_back_chain_on_postgres() {
    anchors(true).await;
}

/// With `token_reads = "durable"`, the audit table becomes unwritable: a token read from the
/// warm cache is refused instead of handing out a token nobody recorded, while reads of
/// metadata still work. (The buffered default: tests/audit_durability.rs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_token_leaves_without_its_audit_record() {
    let Some(pg) = pg_database().await else {
        return;
    };
    let fake = FakeProvider::start(FakeProviderConfig::google()).await;
    let (_dir, opts, key) =
        start_with(&fake, Some(&pg), "[audit]\ntoken_reads = \"durable\"\n").await;
    let relay = Relay::start(opts).await;
    let id = import(&relay, &key, &fake, "bob", 3600).await;
    let (s, ok) = relay
        .get_json(&format!("/connections/{id}/token"), &key)
        .await;
    assert_eq!(s, 200);
    let token = ok["access_token"].as_str().unwrap().to_owned();

    run_sql(
        &relay.opts,
        Some(&pg),
        "ALTER TABLE audit_log RENAME TO audit_log_away",
    )
    .await;
    let resp = relay
        .http
        .get(relay.url(&format!("/connections/{id}/token")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let body = resp.text().await.unwrap();
    assert!(body.contains("\"audit_unavailable\""), "{body}");
    assert!(!body.contains(&token));
    let (s, _) = relay.get_json(&format!("/connections/{id}"), &key).await;
    assert_eq!(s, 200, "unaudited reads of metadata still work");

    run_sql(
        &relay.opts,
        Some(&pg),
        "ALTER TABLE audit_log_away RENAME TO audit_log",
    )
    .await;
    let (s, _) = relay
        .get_json(&format!("/connections/{id}/token"), &key)
        .await;
    assert_eq!(s, 200, "reads work again once records can be stored");
    let metrics = relay
        .http
        .get(relay.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("audit_records_total{outcome=\"failed\"} 1"),
        "{metrics}"
    );
    assert!(relay.stop().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_ids_are_kept_screened_and_on_every_log_line_of_the_request() {
    let fake = FakeProvider::start(FakeProviderConfig::google()).await;
    let (_dir, opts, key) = start_with(&fake, None, "").await;
    let relay = Relay::start(opts).await;
    let id = import(&relay, &key, &fake, "carol", 30).await;

    let get = |rid: Option<&str>| {
        let mut r = relay
            .http
            .get(relay.url(&format!("/connections/{id}/token")))
            .bearer_auth(&key);
        if let Some(v) = rid {
            r = r.header("x-request-id", v);
        }
        r.send()
    };
    let generated = get(None).await.unwrap();
    let generated_id = generated.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(generated_id.len(), 36, "a UUID: {generated_id}");
    let long = "a".repeat(129);
    for bad in [long.as_str(), "evil\tinjected=1", "a b", ""] {
        let r = get(Some(bad)).await.unwrap();
        let echoed = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_ne!(echoed, bad);
        assert_eq!(echoed.len(), 36);
    }
    // The refresh happened in the first request: its log line carries that request's id.
    let logs = relay.logs();
    let refreshed_line = logs
        .lines()
        .find(|l| l.contains("token refreshed"))
        .expect("refresh logged");
    assert!(refreshed_line.contains(&generated_id), "{refreshed_line}");
    let (_, page) = relay.get_json("/audit?action=token.read", &key).await;
    let ids: BTreeSet<&str> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(generated_id.as_str()));
    assert!(ids.iter().all(|i| i.len() == 36 && !i.contains('\t')));
    // The request's span also names the caller's workspace, on the refresh's line too.
    let workspace = page["records"][0]["workspace_id"].as_str().unwrap();
    let refreshed: serde_json::Value = serde_json::from_str(refreshed_line).unwrap();
    assert_eq!(refreshed["span"]["request_id"], generated_id.as_str());
    assert_eq!(
        refreshed["span"]["workspace_id"], workspace,
        "{refreshed_line}"
    );
    assert!(relay.stop().await.success());
}

/// Metric names and label sets in the text exposition: `name{labels} value`.
fn samples(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, _) = l.rsplit_once(' ').unwrap();
            match series.split_once('{') {
                None => (series.to_owned(), Vec::new()),
                Some((name, rest)) => {
                    let labels = rest
                        .trim_end_matches('}')
                        .split("\",")
                        .filter(|kv| !kv.is_empty())
                        .map(|kv| {
                            let (k, v) = kv.split_once('=').unwrap();
                            (k.to_owned(), v.trim_matches('"').to_owned())
                        })
                        .collect();
                    (name.to_owned(), labels)
                }
            }
        })
        .collect()
}

/// Names a running relay exports (histograms under their base name and their series names).
fn exported_names(text: &str) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = samples(text).into_iter().map(|(n, _)| n).collect();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            names.insert(rest.split_whitespace().next().unwrap().to_owned());
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_are_complete_from_the_first_scrape_and_carry_no_ids() {
    let fake = FakeProvider::start(FakeProviderConfig::google()).await;
    let (_dir, opts, key) = start_with(&fake, None, "").await;
    let relay = Relay::start(opts).await;
    let scrape = || async {
        relay
            .http
            .get(relay.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let first = exported_names(&scrape().await);
    for name in [
        "oauth_events_total",
        "refresh_latency_seconds",
        "token_read_seconds",
        "token_refreshes_total",
        "refresh_failures_total",
        "refresh_lock_wait_seconds",
        "connections",
        "audit_records_total",
        "audit_batch_size",
        "audit_write_seconds",
        "ready",
        "readiness_check",
    ] {
        assert!(
            first.contains(name),
            "{name} missing from the first scrape: {first:?}"
        );
    }

    let id = import(&relay, &key, &fake, "dave@example.com", 30).await;
    for _ in 0..3 {
        let (s, _) = relay
            .get_json(&format!("/connections/{id}/token"), &key)
            .await;
        assert_eq!(s, 200);
    }
    let (s, _) = relay
        .get_json("/connections/conn_doesnotexist/token", &key)
        .await;
    assert_eq!(s, 404);
    let (s, _) = relay.get_json("/no/such/route/conn_x", &key).await;
    assert_eq!(s, 404);
    // Token-read records are buffered; GET /audit stores them first (and the scrape then
    // counts them).
    let (s, _) = relay.get_json("/audit?limit=1", &key).await;
    assert_eq!(s, 200);
    let text = scrape().await;
    let all = samples(&text);
    let get = |name: &str, labels: &[(&str, &str)]| -> f64 {
        text.lines()
            .find(|l| {
                l.starts_with(&format!("{name}{{"))
                    && labels
                        .iter()
                        .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            })
            .and_then(|l| l.rsplit_once(' '))
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0.0)
    };
    assert_eq!(
        get(
            "token_refreshes_total",
            &[("provider", "test"), ("result", "performed")]
        ),
        1.0
    );
    assert_eq!(
        get(
            "oauth_events_total",
            &[("provider", "test"), ("event", "refresh_ok")]
        ),
        1.0
    );
    assert_eq!(
        get("token_read_seconds_count", &[("path", "refreshed")]),
        1.0
    );
    assert!(get("token_read_seconds_count", &[("path", "hit")]) >= 2.0);
    assert!(get("audit_records_total", &[("outcome", "stored")]) >= 5.0);
    assert_eq!(
        get(
            "http_requests_total",
            &[("route", "/connections/{id}/token"), ("status", "200")]
        ),
        3.0
    );
    assert_eq!(
        get(
            "http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        1.0
    );

    // Bounded labels: no id, actor, email, URL or key anywhere.
    let forbidden = [
        id.as_str(),
        "dave",
        "example.com",
        "://",
        "rly_",
        key.as_str(),
    ];
    for (name, labels) in &all {
        for (k, v) in labels {
            for f in forbidden {
                assert!(!v.contains(f), "{name}: label {k}={v:?} carries {f:?}");
            }
            let uuid_like = v.len() == 36 && v.matches('-').count() == 4;
            assert!(!uuid_like, "{name}: label {k}={v:?} looks like an id");
        }
    }
    assert!(relay.stop().await.success());
}

/// Every metric name in the PromQL expressions of the dashboard and the alert rules.
fn referenced_metrics(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: [&str; 9] = [
        "by", "without", "and", "or", "unless", "bool", "offset", "on", "ignoring",
    ];
    // Aggregations may be followed by `by (...)` instead of their parenthesis.
    const AGGREGATIONS: [&str; 12] = [
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
    ];
    // Drop label matchers, range selectors, grouping clauses and quoted strings.
    let mut cleaned = String::new();
    let mut depth_brace = 0;
    let mut depth_bracket = 0;
    let mut in_quote = false;
    for c in expr.chars() {
        match c {
            '"' => in_quote = !in_quote,
            _ if in_quote => {}
            '{' => depth_brace += 1,
            '}' => depth_brace -= 1,
            '[' => depth_bracket += 1,
            ']' => depth_bracket -= 1,
            _ if depth_brace > 0 || depth_bracket > 0 => {}
            _ => cleaned.push(c),
        }
    }
    let mut names = BTreeSet::new();
    let chars: Vec<char> = cleaned.chars().collect();
    let mut i = 0;
    let mut after_grouping = false;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if KEYWORDS.contains(&word.as_str()) {
                after_grouping = matches!(word.as_str(), "by" | "without" | "on" | "ignoring");
                continue;
            }
            if next == Some(&'(') || AGGREGATIONS.contains(&word.as_str()) {
                continue; // a function or aggregation
            }
            if !after_grouping {
                names.insert(word);
            }
        } else if c.is_ascii_digit() || c == '.' {
            // Numbers, including 1e-9.
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '.' || chars[i] == '-')
            {
                i += 1;
            }
            continue;
        } else {
            if c == ')' {
                after_grouping = false;
            }
            i += 1;
        }
    }
    names
}

/// The label matchers of a PromQL expression: `(metric, label, operator, value)` for each
/// `label="value"` / `label=~"re"` inside `metric{...}`, so that a dashboard selecting a label
/// value Relay never exports (e.g. `status="success"` after it became `ok`) fails the test.
fn label_matchers(expr: &str) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(open) = rest.find('{') {
        let metric: String = rest[..open]
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let body = &rest[open + 1..open + close];
        for matcher in body.split("\",").filter(|m| !m.trim().is_empty()) {
            let (label, op_value) = matcher
                .find(['=', '!'])
                .map(|i| matcher.split_at(i))
                .unwrap_or_else(|| panic!("a matcher without an operator in {expr}"));
            let op: String = op_value
                .chars()
                .take_while(|c| matches!(c, '=' | '!' | '~'))
                .collect();
            let value = op_value[op.len()..].trim().trim_matches('"').to_owned();
            out.push((metric.clone(), label.trim().to_owned(), op, value));
        }
        rest = &rest[open + close + 1..];
    }
    out
}

/// `(metric, label)` for each label an aggregation groups a metric by directly, as in
/// `max by (provider, api) (circuit_breaker_state)`: a panel or alert grouping by a label the
/// metric does not carry shows one merged series.
fn grouped_labels(expr: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("by (") {
        rest = &rest[at + 4..];
        let Some(close) = rest.find(')') else {
            break;
        };
        let labels = &rest[..close];
        let after = rest[close + 1..].trim_start();
        let Some(inner) = after.strip_prefix('(') else {
            continue;
        };
        let metric: String = inner
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let next = inner.trim_start()[metric.len()..].chars().next();
        if metric.is_empty() || next == Some('(') {
            continue; // a function, not a metric
        }
        for label in labels.split(',').map(str::trim).filter(|l| !l.is_empty()) {
            out.push((metric.clone(), label.to_owned()));
        }
    }
    out
}

#[test]
fn promql_grouping_labels_are_extracted() {
    assert_eq!(
        grouped_labels("max by (provider, api) (circuit_breaker_state) == 2"),
        [
            ("circuit_breaker_state".to_owned(), "provider".to_owned()),
            ("circuit_breaker_state".to_owned(), "api".to_owned())
        ]
    );
    assert!(grouped_labels("sum by (le) (rate(x_bucket[5m]))").is_empty());
}

#[test]
fn promql_label_matchers_are_extracted() {
    let m = label_matchers(
        r#"sum(rate(action_exec_total{status="ok",action=~"gmail.*"}[5m])) / sum(ready)"#,
    );
    let m: Vec<_> = m
        .iter()
        .map(|(a, b, c, d)| (a.as_str(), b.as_str(), c.as_str(), d.as_str()))
        .collect();
    assert_eq!(
        m,
        [
            ("action_exec_total", "status", "=", "ok"),
            ("action_exec_total", "action", "=~", "gmail.*")
        ]
    );
}

fn deploy_file(rel: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if k == "expr" {
                    out.push(v.as_str().unwrap().to_owned());
                } else {
                    collect_exprs(v, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

#[test]
fn promql_names_are_extracted_and_keywords_are_not() {
    let names = referenced_metrics(
        r#"histogram_quantile(0.95, sum by (le, route) (rate(http_request_duration_seconds_bucket{route=~"/a|b"}[5m]))) / clamp_min(sum(ready), 1e-9) > 0.1"#,
    );
    assert_eq!(
        names,
        ["http_request_duration_seconds_bucket", "ready"]
            .into_iter()
            .map(String::from)
            .collect()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_and_alerts_use_only_metrics_relay_exports() {
    let mut exprs = Vec::new();
    let dashboard: Value =
        serde_json::from_str(&deploy_file("deploy/grafana/relay-dashboard.json")).unwrap();
    collect_exprs(&dashboard, &mut exprs);
    let dashboard_exprs = exprs.len();
    assert!(dashboard_exprs >= 15, "the dashboard has its panels");
    for line in deploy_file("deploy/prometheus/alerts.yml").lines() {
        if let Some(e) = line.trim().strip_prefix("expr:") {
            exprs.push(e.trim().to_owned());
        }
    }
    assert!(
        exprs.len() >= dashboard_exprs + 5,
        "the alert rules were read"
    );
    let referenced: BTreeSet<String> = exprs.iter().flat_map(|e| referenced_metrics(e)).collect();

    let fake = FakeProvider::start(FakeProviderConfig::google()).await;
    // A Google provider too, so that its API circuit breaker exists.
    let google = "[providers.google]\nkind = \"google\"\nclient_id = \"relay-test\"\n";
    let (_dir, opts, _key) = start_with(&fake, None, google).await;
    let relay = Relay::start(opts).await;
    let text = relay
        .http
        .get(relay.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Requests are counted after they are answered: scrape twice so HTTP series exist.
    let text = text
        + &relay
            .http
            .get(relay.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    let exported = exported_names(&text);
    for name in &referenced {
        assert!(
            exported.contains(name),
            "{name} is referenced but not exported"
        );
    }
    // Every label an expression selects on is one the metric carries, and every value it
    // selects with `=` is one Relay exports (series are registered at zero from the start).
    let series = samples(&text);
    for (metric, label, op, value) in exprs.iter().flat_map(|e| label_matchers(e)) {
        let of_metric: Vec<_> = series.iter().filter(|(n, _)| *n == metric).collect();
        assert!(
            of_metric
                .iter()
                .any(|(_, labels)| labels.iter().any(|(k, _)| *k == label)),
            "{metric} has no label {label}"
        );
        if op == "=" {
            assert!(
                of_metric
                    .iter()
                    .any(|(_, labels)| labels.iter().any(|(k, v)| *k == label && *v == value)),
                "{metric}{{{label}=\"{value}\"}} is selected but never exported"
            );
        }
    }
    // `instance` and `job` are added by Prometheus to every scraped series.
    for (metric, label) in exprs
        .iter()
        .flat_map(|e| grouped_labels(e))
        .filter(|(_, l)| !matches!(l.as_str(), "instance" | "job"))
    {
        assert!(
            series
                .iter()
                .any(|(n, labels)| *n == metric && labels.iter().any(|(k, _)| *k == label)),
            "{metric} is grouped by {label}, which it does not carry"
        );
    }
    assert!(
        exprs
            .iter()
            .any(|e| e.contains("circuit_breaker_state") && e.contains("by (provider, api)")),
        "the circuit breakers are shown and alerted on per provider API"
    );
    assert!(
        exprs
            .iter()
            .any(|e| e.contains("action_exec_total{status=\"ok\"}")),
        "the dashboard shows the share of executes with status=\"ok\""
    );
    for must in [
        "token_read_seconds_bucket",
        "oauth_events_total",
        "connections",
        "ready",
        "refresh_failures_total",
    ] {
        assert!(
            referenced.contains(must),
            "{must} is on the dashboard or in an alert"
        );
    }
    assert!(relay.stop().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ready_lists_every_check() {
    let fake = FakeProvider::start(FakeProviderConfig::google()).await;
    let (_dir, opts, _key) = start_with(&fake, None, "").await;
    let relay = Relay::start(opts).await;
    let r = relay.http.get(relay.url("/ready")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ready", "{body}");
    for check in ["database", "encryption_key", "audit_writer", "redis"] {
        assert_eq!(body["checks"][check]["ok"], true, "{body}");
    }
    assert_eq!(
        body["checks"]["redis"]["detail"], "not configured",
        "Redis is listed even without it: {body}"
    );
    assert!(relay.stop().await.success());
}

/// SIGTERM while a token read waits on a slow provider refresh: the read completes, its new
/// token is stored (a restarted relay serves it without refreshing again), the process exits 0.
async fn sigterm_during_a_refresh(postgres: bool) {
    let pg = if postgres {
        match pg_database().await {
            Some(p) => Some(p),
            None => return,
        }
    } else {
        None
    };
    let fake = FakeProvider::start(FakeProviderConfig::google()).await;
    let (_dir, opts, key) =
        start_with(&fake, pg.as_ref(), "[server]\nshutdown_grace_secs = 20\n").await;
    let relay = Relay::start(opts.clone()).await;
    let id = import(&relay, &key, &fake, "erin", 30).await;
    fake.set_token_delay(Duration::from_millis(1500));
    let (http, url, k) = (
        relay.http.clone(),
        relay.url(&format!("/connections/{id}/token")),
        key.clone(),
    );
    let in_flight = tokio::spawn(async move { http.get(url).bearer_auth(k).send().await });
    // Wait until the provider has the request, then ask relay to stop.
    for _ in 0..200 {
        if fake.refresh_requests() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fake.refresh_requests(), 1);
    let base = relay.base_url.clone();
    let status = relay.stop().await;
    assert!(status.success(), "{status:?}");
    let resp = in_flight
        .await
        .unwrap()
        .expect("the in-flight read was answered");
    assert_eq!(resp.status().as_u16(), 200);
    let served: Value = resp.json().await.unwrap();
    // While stopping, no new connection was accepted, and now nothing listens.
    assert!(reqwest::get(format!("{base}/health")).await.is_err());

    fake.set_token_delay(Duration::ZERO);
    let relay = Relay::start(opts).await;
    let (s, again) = relay
        .get_json(&format!("/connections/{id}/token"), &key)
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        again["access_token"], served["access_token"],
        "the refreshed token was saved"
    );
    assert_eq!(fake.refresh_requests(), 1);
    assert!(relay.stop().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_lets_an_in_flight_refresh_finish_on_sqlite() {
    sigterm_during_a_refresh(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_lets_an_in_flight_refresh_finish_on_postgres() {
    sigterm_during_a_refresh(true).await;
}

/// A request longer than the grace period does not hold the process: it exits 0 anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_grace_period_bounds_shutdown() {
    let fake = FakeProvider::start(FakeProviderConfig::google()).await;
    let (_dir, opts, key) = start_with(&fake, None, "[server]\nshutdown_grace_secs = 1\n").await;
    // The provider is slower than the grace period but within the refresh deadline.
    let opts = RelayOptions {
        config_toml: opts
            .config_toml
            .replace("provider_timeout_ms = 2000", "provider_timeout_ms = 4000"),
        ..opts
    };
    let relay = Relay::start(opts).await;
    let id = import(&relay, &key, &fake, "frank", 30).await;
    fake.set_token_delay(Duration::from_secs(3));
    let (http, url, k) = (
        relay.http.clone(),
        relay.url(&format!("/connections/{id}/token")),
        key.clone(),
    );
    let in_flight = tokio::spawn(async move { http.get(url).bearer_auth(k).send().await });
    for _ in 0..200 {
        if fake.refresh_requests() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = relay.stop().await;
    assert!(status.success(), "{status:?}");
    assert!(
        in_flight.await.unwrap().is_err(),
        "cut off when the grace period ended"
    );
}
