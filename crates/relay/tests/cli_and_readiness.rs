//! The operations surface of the binary: migrations up and down, readiness that follows the
//! database (and reports Redis as degraded, not down), API-key revocation, and the generated
//! OpenAPI document.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_turns_503_when_the_database_goes_away() {
    let Some(pg) = pg_database().await else {
        return;
    };
    let dir = TempDir::new();
    let mut opts = RelayOptions::new(dir.path(), "");
    opts.database_url = Some(pg.url.clone());
    let relay = Relay::start(opts).await;
    let (status, body) = relay.get_json("/ready", "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["database"]["ok"], true);

    drop(pg); // DROP DATABASE ... WITH (FORCE): connections are cut, the database is gone.
    let mut last = (0, Value::Null);
    for _ in 0..50 {
        last = relay.get_json("/ready", "").await;
        if last.0 == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last.0, 503, "{}", last.1);
    assert_eq!(last.1["status"], "not_ready");
    assert_eq!(last.1["checks"]["database"]["ok"], false);
    let (status, _) = relay.get_json("/health", "").await;
    assert_eq!(status, 200, "alive even when not ready");
}

/// Redis going away does not stop Relay from serving (cache, flows, locks fall back to the
/// database, rate limits to the process), so `/ready` stays 200 and says `degraded`, with the
/// Redis check failing; load balancers keep the replica. The Redis here is a private one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_degraded_not_503_when_redis_goes_away() {
    let Some(mut redis) = PrivateRedis::start().await else {
        return;
    };
    let fake = FakeProvider::start(FakeProviderConfig::google()).await;
    let dir = TempDir::new();
    let toml = format!(
        "{FAST_REFRESH}{}",
        provider_toml("test", "oidc", &fake.issuer(), "")
    );
    let opts = RelayOptions::new(dir.path(), &toml)
        .with_env("REDIS_URL", &redis.url())
        .with_env(
            "REDIS_KEY_PREFIX",
            &format!("relay-it:{}:", random_token(9)),
        );
    let key = opts.create_api_key("acme").await;
    let relay = Relay::start(opts).await;
    let (status, body) = relay.get_json("/ready", "").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ready")),
        "{body}"
    );
    assert_eq!(body["checks"]["redis"]["ok"], true, "{body}");

    redis.stop();
    let (status, body) = relay.get_json("/ready", "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["checks"]["redis"]["ok"], false, "{body}");
    for check in ["database", "encryption_key", "audit_writer"] {
        assert_eq!(body["checks"][check]["ok"], true, "{check}: {body}");
    }
    // And it does serve: a connection is stored and its token read, from the database.
    let (access, refresh) = fake.issue_tokens_directly();
    let (status, conn) = relay
        .post_json(
            "/connections",
            &key,
            &serde_json::json!({"provider": "test", "actor_id": "u1", "access_token": access,
                "refresh_token": refresh, "expires_in": 3600}),
        )
        .await;
    assert_eq!(status, 201, "{conn}");
    let (status, token) = relay
        .get_json(
            &format!("/connections/{}/token", conn["id"].as_str().unwrap()),
            &key,
        )
        .await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["access_token"], access.as_str());
    let metrics = relay
        .http
        .get(relay.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.lines().any(|l| l == "ready 1"), "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l == "readiness_check{check=\"redis\"} 0"),
        "{metrics}"
    );
    assert!(relay.stop().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_go_down_and_up_again() {
    let dir = TempDir::new();
    let opts = RelayOptions::new(dir.path(), "");
    let (ok, out, err) = opts.run(&["migrate"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("migrations applied"));
    let key = opts.create_api_key("acme").await;
    let (ok, _, err) = opts.run(&["migrate", "--undo-to", "0"]).await;
    assert!(ok, "{err}");
    // Everything is gone: the key no longer exists once the schema is back.
    let relay = Relay::start(opts.clone()).await;
    let (status, _) = relay.get_json("/connections", &key).await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_api_key_stops_working() {
    let dir = TempDir::new();
    let opts = RelayOptions::new(dir.path(), "[cache]\napi_key_ttl_secs = 1\n");
    let key = opts.create_api_key("acme").await;
    let relay = Relay::start(opts.clone()).await;
    let (status, _) = relay.get_json("/connections", &key).await;
    assert_eq!(status, 200);
    let (ok, _, err) = opts.run(&["api-key", "create", "--workspace", ""]).await;
    assert!(!ok && err.contains("--workspace"), "{err}");
    // `api-key create` names the new key's id on stderr; revoke that one by id.
    let (ok, out, err) = opts
        .run(&["api-key", "create", "--workspace", "acme"])
        .await;
    assert!(ok, "{err}");
    let second = out.lines().last().unwrap().trim().to_owned();
    let id = err
        .split_whitespace()
        .find(|w| w.starts_with("key_"))
        .unwrap()
        .to_owned();
    let (status, _) = relay.get_json("/connections", &second).await;
    assert_eq!(status, 200);
    let (ok, out, err) = opts.run(&["api-key", "revoke", &id]).await;
    assert!(ok, "{err}");
    assert!(out.contains(&id));
    let (ok, _, err) = opts.run(&["api-key", "revoke", &id]).await;
    assert!(!ok && err.contains("no active API key"), "{err}");
    let mut status = 200;
    for _ in 0..40 {
        status = relay.get_json("/connections", &second).await.0;
        if status == 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 401, "revoked within the cache TTL");
    let (status, _) = relay.get_json("/connections", &key).await;
    assert_eq!(status, 200, "other keys keep working");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_describes_every_route_and_the_error_envelope() {
    let dir = TempDir::new();
    let relay = Relay::start(RelayOptions::new(dir.path(), "")).await;
    let doc: Value = relay
        .http
        .get(relay.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (path, method) in [
        ("/health", "get"),
        ("/ready", "get"),
        ("/metrics", "get"),
        ("/oauth/{provider}/authorize", "get"),
        ("/oauth/{provider}/callback", "get"),
        ("/oauth/{provider}/status", "get"),
        ("/connections", "get"),
        ("/connections", "post"),
        ("/connections/{id}", "get"),
        ("/connections/{id}", "delete"),
        ("/connections/{id}/token", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is documented"
        );
    }
    assert!(doc["components"]["schemas"]["ErrorEnvelope"].is_object());
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_is_refused_with_the_reason() {
    let dir = TempDir::new();
    for (toml, needle) in [
        (
            "[providers.x]\nkind = \"oidc\"\nclient_id = \"c\"\n",
            "issuer",
        ),
        (
            "[providers.x]\nkind = \"nope\"\nclient_id = \"c\"\n",
            "kind",
        ),
        (
            "[refresh]\nlease_secs = 1\nprovider_timeout_ms = 5000\n",
            "lease_secs",
        ),
        (
            "[oauth]\nreturn_to_allow = [\"not a url\"]\n",
            "return_to_allow",
        ),
        ("unknown_key = 1\n", "unknown_key"),
    ] {
        let logs = Relay::try_start(RelayOptions::new(dir.path(), toml))
            .await
            .err()
            .expect("refused");
        assert!(logs.contains(needle), "{toml} -> {logs}");
    }
}
