//! API keys at Relay's trust boundary, against the real `relay` binary on SQLite and
//! PostgreSQL (and Redis for several replicas): what each role may do, the escalation the
//! outside review found (a key limited to 5 per minute raised its own limit, revoked the
//! admin key and minted new keys, unaudited), the audit record of every key and webhook-secret
//! operation, revocation that takes effect at once on the replica that revoked (and through
//! Redis on the others), the `Bearer` scheme in any case with `WWW-Authenticate` on every
//! 401, and the negative cache that keeps made-up keys away from the database.
//!
//! The key cache's time-to-live is a minute in these tests, so that "at once" cannot pass by
//! the cache expiring.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

const LONG_KEY_CACHE: &str = "[cache]\napi_key_ttl_secs = 60\n";

/// A Relay on SQLite or on a fresh PostgreSQL database, with the long key cache.
async fn start(postgres: bool) -> Option<(Relay, TempDir, Option<PgDb>)> {
    let dir = TempDir::new();
    let mut opts = RelayOptions::new(dir.path(), LONG_KEY_CACHE);
    let pg = if postgres {
        let pg = pg_database().await?;
        opts.database_url = Some(pg.url.clone());
        Some(pg)
    } else {
        None
    };
    Some((Relay::start(opts).await, dir, pg))
}

async fn send(
    relay: &Relay,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = relay.http.request(method, relay.url(path)).bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn patch(relay: &Relay, path: &str, key: &str, body: Value) -> (u16, Value) {
    send(relay, reqwest::Method::PATCH, path, key, Some(body)).await
}

/// The id of the key `secret` as `GET /api-keys` lists it (found by creation order).
async fn key_ids(relay: &Relay, admin: &str) -> Vec<(String, String, Value)> {
    let (status, listed) = relay.get_json("/api-keys", admin).await;
    assert_eq!(status, 200, "{listed}");
    listed["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["id"].as_str().unwrap().to_owned(),
                k["role"].as_str().unwrap().to_owned(),
                k["rate_limit_per_minute"].clone(),
            )
        })
        .collect()
}

fn assert_forbidden(answer: &(u16, Value), what: &str) {
    assert_eq!(answer.0, 403, "{what}: {}", answer.1);
    assert_eq!(
        answer.1["error"]["code"], "forbidden",
        "{what}: {}",
        answer.1
    );
}

async fn roles_decide_who_may_do_what(postgres: bool) {
    let Some((relay, _dir, _pg)) = start(postgres).await else {
        return;
    };
    let admin = relay.opts.create_api_key("acme").await;
    // `relay api-key create` without `--role` makes a service key.
    let (ok, out, err) = relay
        .opts
        .run(&["api-key", "create", "--workspace", "acme"])
        .await;
    assert!(ok, "{err}");
    assert!(err.contains("created service API key"), "{err}");
    let service = out.lines().last().unwrap().trim().to_owned();
    let keys = key_ids(&relay, &admin).await;
    assert_eq!(
        keys.iter().map(|k| k.1.as_str()).collect::<Vec<_>>(),
        ["admin", "service"]
    );
    let (admin_id, service_id) = (keys[0].0.clone(), keys[1].0.clone());

    // A service key reaches the service routes...
    for path in ["/connections", "/providers", "/actions", "/stats"] {
        let (status, body) = relay.get_json(path, &service).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    // ...and none of the admin ones: keys, the webhook secret, the audit log.
    use reqwest::Method;
    let admin_only = [
        (Method::GET, "/api-keys".to_owned(), None),
        (Method::POST, "/api-keys".to_owned(), Some(json!({}))),
        (
            Method::PATCH,
            format!("/api-keys/{admin_id}"),
            Some(json!({"rate_limit_per_minute": 5})),
        ),
        (Method::DELETE, format!("/api-keys/{admin_id}"), None),
        (Method::DELETE, format!("/api-keys/{service_id}"), None),
        (Method::GET, "/webhooks/secret".to_owned(), None),
        (Method::POST, "/webhooks/secret/rotate".to_owned(), None),
        (Method::GET, "/audit".to_owned(), None),
        (Method::GET, "/audit/verify".to_owned(), None),
    ];
    for (method, path, body) in &admin_only {
        let answer = send(&relay, method.clone(), path, &service, body.clone()).await;
        assert_forbidden(&answer, &format!("{method} {path} with a service key"));
    }
    // The admin key may do all of it (and the service routes).
    for path in [
        "/connections",
        "/api-keys",
        "/webhooks/secret",
        "/audit",
        "/audit/verify",
        "/stats",
    ] {
        let (status, body) = relay.get_json(path, &admin).await;
        assert_eq!(status, 200, "{path}: {body}");
    }

    // `POST /api-keys`: `service` unless asked; an unknown role is refused.
    let (status, created) = relay.post_json("/api-keys", &admin, &json!({})).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["role"], "service");
    let (status, created) = relay
        .post_json("/api-keys", &admin, &json!({"role": "admin"}))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["role"], "admin");
    let second_admin = created["secret"].as_str().unwrap().to_owned();
    assert_eq!(relay.get_json("/audit", &second_admin).await.0, 200);
    let (status, body) = relay
        .post_json("/api-keys", &admin, &json!({"role": "root"}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "validation_error");

    // An admin key manages its own workspace's keys only.
    let other_admin = relay.opts.create_api_key("globex").await;
    let answer = patch(
        &relay,
        &format!("/api-keys/{service_id}"),
        &other_admin,
        json!({"role": "admin"}),
    )
    .await;
    assert_eq!(answer.0, 404, "{}", answer.1);
    let answer = relay
        .delete_json(&format!("/api-keys/{service_id}"), &other_admin)
        .await;
    assert_eq!(answer.0, 404, "{}", answer.1);
    assert!(
        key_ids(&relay, &other_admin)
            .await
            .iter()
            .all(|k| k.0 != service_id),
        "another workspace's keys are not listed"
    );

    // A role change applies to the next request at once (this replica's cache drops the key).
    let answer = patch(
        &relay,
        &format!("/api-keys/{service_id}"),
        &admin,
        json!({"role": "admin"}),
    )
    .await;
    assert_eq!(answer.0, 204, "{}", answer.1);
    assert_eq!(relay.get_json("/audit", &service).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_decide_who_may_do_what_on_sqlite() {
    roles_decide_who_may_do_what(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_decide_who_may_do_what_on_postgres() {
    roles_decide_who_may_do_what(true).await;
}

/// The review's attack, step by step: a key limited to 5 requests per minute raising its own
/// limit to 10,000,000, revoking the admin key and minting new keys. Refused for a service key
/// (the default) and, where it would be an escalation, for an admin key too.
async fn the_escalation_from_the_review_is_refused(postgres: bool) {
    let Some((relay, _dir, _pg)) = start(postgres).await else {
        return;
    };
    let admin = relay.opts.create_api_key("acme").await;
    let limited = relay.opts.create_limited_api_key("acme", 5).await;
    let keys = key_ids(&relay, &admin).await;
    let (admin_id, limited_id) = (keys[0].0.clone(), keys[1].0.clone());

    // Four requests, within its 5 per minute: each refused for its role.
    let raise = patch(
        &relay,
        &format!("/api-keys/{limited_id}"),
        &limited,
        json!({"rate_limit_per_minute": 10_000_000}),
    )
    .await;
    assert_forbidden(&raise, "raising its own limit");
    let revoke = relay
        .delete_json(&format!("/api-keys/{admin_id}"), &limited)
        .await;
    assert_forbidden(&revoke, "revoking the admin key");
    let mint = relay
        .post_json(
            "/api-keys",
            &limited,
            &json!({"rate_limit_per_minute": 10_000_000}),
        )
        .await;
    assert_forbidden(&mint, "minting a key");
    let mint_admin = relay
        .post_json("/api-keys", &limited, &json!({"role": "admin"}))
        .await;
    assert_forbidden(&mint_admin, "minting an admin key");

    // The same attack by an admin key limited to 5 per minute: it manages keys, but gains
    // nothing it does not have.
    let limited_admin = relay.opts.create_key("acme", "admin", Some(5)).await;
    let limited_admin_id = key_ids(&relay, &admin).await[2].0.clone();
    let raise = patch(
        &relay,
        &format!("/api-keys/{limited_admin_id}"),
        &limited_admin,
        json!({"rate_limit_per_minute": 10_000_000}),
    )
    .await;
    assert_forbidden(&raise, "an admin key raising its own limit");
    let mint = relay
        .post_json(
            "/api-keys",
            &limited_admin,
            &json!({"rate_limit_per_minute": 10_000_000}),
        )
        .await;
    assert_forbidden(&mint, "minting a key above its own limit");
    let mint_default = relay
        .post_json("/api-keys", &limited_admin, &json!({}))
        .await;
    assert_forbidden(
        &mint_default,
        "minting a key with the (higher) default limit",
    );
    let lift = patch(
        &relay,
        &format!("/api-keys/{limited_id}"),
        &limited_admin,
        json!({"rate_limit_per_minute": null}),
    )
    .await;
    assert_forbidden(&lift, "lifting another key above its own limit");
    let self_revoke = relay
        .delete_json(&format!("/api-keys/{limited_admin_id}"), &limited_admin)
        .await;
    assert_forbidden(&self_revoke, "revoking itself");

    // Nothing changed: every key active, every limit as it was.
    let keys = key_ids(&relay, &admin).await;
    assert_eq!(keys.len(), 3, "no key was minted: {keys:?}");
    assert_eq!(keys[1].2, 5);
    assert_eq!(keys[2].2, 5);
    let (_, listed) = relay.get_json("/api-keys", &admin).await;
    assert!(
        listed["api_keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["revoked_at"].is_null()),
        "{listed}"
    );
    // A key cannot change itself even downwards, or in role; another admin key can.
    let own = patch(
        &relay,
        &format!("/api-keys/{admin_id}"),
        &admin,
        json!({"role": "service"}),
    )
    .await;
    assert_forbidden(&own, "changing its own role");
    let lowered = patch(
        &relay,
        &format!("/api-keys/{limited_id}"),
        &admin,
        json!({"rate_limit_per_minute": 3}),
    )
    .await;
    assert_eq!(lowered.0, 204, "{}", lowered.1);
    let empty = patch(
        &relay,
        &format!("/api-keys/{limited_id}"),
        &admin,
        json!({}),
    )
    .await;
    assert_eq!(empty.0, 422, "{}", empty.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_escalation_from_the_review_is_refused_on_sqlite() {
    the_escalation_from_the_review_is_refused(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_escalation_from_the_review_is_refused_on_postgres() {
    the_escalation_from_the_review_is_refused(true).await;
}

/// The newest audit record of `action`, as `GET /audit` shows it.
async fn newest(relay: &Relay, admin: &str, action: &str) -> Value {
    let (status, page) = relay
        .get_json(&format!("/audit?action={action}&limit=1"), admin)
        .await;
    assert_eq!(status, 200, "{page}");
    page["records"][0].clone()
}

async fn key_and_webhook_secret_operations_are_audited(postgres: bool) {
    let Some((relay, _dir, _pg)) = start(postgres).await else {
        return;
    };
    let admin = relay.opts.create_api_key("acme").await;
    let admin_id = key_ids(&relay, &admin).await[0].0.clone();

    let (status, created) = relay
        .post_json("/api-keys", &admin, &json!({"rate_limit_per_minute": 50}))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let r = newest(&relay, &admin, "api_key.created").await;
    assert_eq!(r["api_key_id"], admin_id.as_str(), "the acting key: {r}");
    assert_eq!(
        r["detail"],
        format!("{id} role=service rate_limit_per_minute=50"),
        "{r}"
    );

    let answer = patch(
        &relay,
        &format!("/api-keys/{id}"),
        &admin,
        json!({"rate_limit_per_minute": 40, "role": "admin"}),
    )
    .await;
    assert_eq!(answer.0, 204, "{}", answer.1);
    let r = newest(&relay, &admin, "api_key.updated").await;
    assert_eq!(r["api_key_id"], admin_id.as_str(), "{r}");
    assert_eq!(
        r["detail"],
        format!("{id} role=admin rate_limit_per_minute=40"),
        "{r}"
    );

    let (status, body) = relay.get_json("/webhooks/secret", &admin).await;
    assert_eq!(status, 200, "{body}");
    let r = newest(&relay, &admin, "webhook_secret.read").await;
    assert_eq!(r["api_key_id"], admin_id.as_str(), "{r}");
    assert!(
        !r.to_string().contains(body["secret"].as_str().unwrap()),
        "the record holds no secret"
    );
    let (status, body) = relay
        .post_json("/webhooks/secret/rotate", &admin, &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let r = newest(&relay, &admin, "webhook_secret.rotated").await;
    assert_eq!(r["api_key_id"], admin_id.as_str(), "{r}");

    let (status, body) = relay.delete_json(&format!("/api-keys/{id}"), &admin).await;
    assert_eq!(status, 204, "{body}");
    let r = newest(&relay, &admin, "api_key.revoked").await;
    assert_eq!(r["api_key_id"], admin_id.as_str(), "{r}");
    assert_eq!(r["detail"], id.as_str(), "{r}");

    let (_, page) = relay.get_json("/audit?limit=1000", &admin).await;
    assert!(
        !page.to_string().contains(&secret),
        "no key appears in the audit log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_and_webhook_secret_operations_are_audited_on_sqlite() {
    key_and_webhook_secret_operations_are_audited(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_and_webhook_secret_operations_are_audited_on_postgres() {
    key_and_webhook_secret_operations_are_audited(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_through_a_replica_is_refused_there_at_once() {
    let Some((relay, _dir, _pg)) = start(false).await else {
        return;
    };
    let admin = relay.opts.create_api_key("acme").await;
    let (status, created) = relay.post_json("/api-keys", &admin, &json!({})).await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    // Used, so cached for the minute the key cache keeps entries.
    assert_eq!(relay.get_json("/connections", &secret).await.0, 200);
    assert_eq!(relay.get_json("/connections", &secret).await.0, 200);
    let (status, body) = relay.delete_json(&format!("/api-keys/{id}"), &admin).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = relay.get_json("/connections", &secret).await;
    assert_eq!(status, 401, "the very next request is refused: {body}");
    assert_eq!(relay.get_json("/connections", &admin).await.0, 200);
}

/// Polls `path` with `key` on `relay` until it answers 401, for at most `bound` (well under
/// the key cache's minute, so only an announcement can make it pass).
async fn refused_within(relay: &Relay, key: &str, bound: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < bound {
        let status = relay.get_json("/connections", key).await.0;
        if status == 401 {
            return true;
        }
        assert_eq!(status, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revocation_reaches_the_other_replicas_through_redis() {
    let Some(redis) = redis_url().await else {
        return;
    };
    let Some(pg) = pg_database().await else {
        return;
    };
    let prefix = format!("relay-it:{}:", random_token(9));
    let mut relays = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..2 {
        let dir = TempDir::new();
        let mut opts = RelayOptions::new(dir.path(), LONG_KEY_CACHE)
            .with_env("REDIS_URL", &redis)
            .with_env("REDIS_KEY_PREFIX", &prefix);
        opts.database_url = Some(pg.url.clone());
        dirs.push(dir);
        relays.push(Relay::start(opts).await);
    }
    let admin = relays[0].opts.create_api_key("acme").await;
    let (status, created) = relays[0].post_json("/api-keys", &admin, &json!({})).await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    let by_cli = relays[0].opts.create_key("acme", "service", None).await;
    for r in &relays {
        assert_eq!(r.get_json("/connections", &secret).await.0, 200);
        assert_eq!(r.get_json("/connections", &by_cli).await.0, 200);
    }

    // Revoked through replica 0: replica 1 drops it on the announcement.
    let (status, body) = relays[0]
        .delete_json(&format!("/api-keys/{id}"), &admin)
        .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(relays[0].get_json("/connections", &secret).await.0, 401);
    assert!(
        refused_within(&relays[1], &secret, Duration::from_secs(10)).await,
        "the other replica still accepts the revoked key"
    );

    // Revoked by the command line: both replicas drop it on the announcement.
    let cli_id = key_ids(&relays[0], &admin)
        .await
        .into_iter()
        .last()
        .unwrap()
        .0;
    let (ok, _, err) = relays[0].opts.run(&["api-key", "revoke", &cli_id]).await;
    assert!(ok, "{err}");
    for r in &relays {
        assert!(
            refused_within(r, &by_cli, Duration::from_secs(10)).await,
            "a replica still accepts the key revoked by the command line"
        );
    }
    assert_eq!(relays[1].get_json("/connections", &admin).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_is_matched_in_any_case_and_every_401_says_how_to_authenticate() {
    let Some((relay, _dir, _pg)) = start(false).await else {
        return;
    };
    let admin = relay.opts.create_api_key("acme").await;
    let get = |authorization: Option<String>| {
        let mut req = relay.http.get(relay.url("/connections"));
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        async move { req.send().await.unwrap() }
    };
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let r = get(Some(format!("{scheme} {admin}"))).await;
        assert_eq!(r.status().as_u16(), 200, "{scheme}");
    }
    let challenge = |r: &reqwest::Response| {
        r.headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    // No credential, or another scheme: the plain challenge.
    for authorization in [None, Some("Basic dXNlcjpwYXNz".to_owned())] {
        let r = get(authorization.clone()).await;
        assert_eq!(r.status().as_u16(), 401, "{authorization:?}");
        assert_eq!(
            challenge(&r).as_deref(),
            Some("Bearer"),
            "{authorization:?}"
        );
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    // A bearer token that is not a valid key: `invalid_token` (RFC 6750).
    for token in ["rly_madeup", "nonsense"] {
        let r = get(Some(format!("bearer {token}"))).await;
        assert_eq!(r.status().as_u16(), 401, "{token}");
        assert_eq!(
            challenge(&r).as_deref(),
            Some(r#"Bearer error="invalid_token""#),
            "{token}"
        );
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
}

/// A made-up key is looked up once, then remembered as invalid for the key cache's
/// time-to-live: with the database gone, it is still refused with 401 (from memory), while a
/// key never seen before gets the database's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_keys_are_remembered_and_not_looked_up_again() {
    let Some((relay, _dir, pg)) = start(true).await else {
        return;
    };
    let made_up = "rly_thisisnotakeyatallbutlookslikeone";
    assert_eq!(relay.get_json("/connections", made_up).await.0, 401);
    drop(pg); // DROP DATABASE ... WITH (FORCE)
    let mut unseen_status = 0;
    for i in 0..50 {
        let (status, body) = relay
            .get_json("/connections", &format!("rly_unseen{i}"))
            .await;
        unseen_status = status;
        if status >= 500 {
            assert_ne!(body["error"]["code"], "unauthorized", "{body}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        unseen_status >= 500,
        "the database is gone: {unseen_status}"
    );
    let (status, body) = relay.get_json("/connections", made_up).await;
    assert_eq!(status, 401, "remembered as invalid: {body}");
}
