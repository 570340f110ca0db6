//! Secrets never leave the vault in plaintext: canary tokens, the authorization code, the
//! client secret and the API key are searched for in the database files (SQLite) or a
//! `pg_dump` (PostgreSQL), in every log line, in metrics, in error bodies and in the audit log
//! (`GET /audit` and `relay audit export`), through the whole flow.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use support::*;

const CANARY_SECRET: &str = "canary-client-secret-91b7";

async fn scenario(postgres: bool) {
    let pg = if postgres {
        match pg_database().await {
            Some(p) => Some(p),
            None => return,
        }
    } else {
        None
    };
    let fake = FakeProvider::start(FakeProviderConfig {
        client_secret: CANARY_SECRET.into(),
        ..FakeProviderConfig::microsoft()
    })
    .await;
    let dir = TempDir::new();
    let toml = format!(
        "{FAST_REFRESH}\n[providers.test]\nkind = \"oidc\"\nissuer = \"{}\"\nclient_id = \"relay-test\"\nclient_secret = \"{CANARY_SECRET}\"\nscopes = [\"openid\", \"offline_access\"]\n",
        fake.issuer()
    );
    let mut opts = RelayOptions::new(dir.path(), &toml);
    opts.database_url = pg.as_ref().map(|p| p.url.clone());
    let key = opts.create_api_key("acme").await;
    let relay = Relay::start(opts.clone()).await;

    // Imported tokens (random values the fake minted: canaries only this test knows), then a
    // refresh (new tokens from the provider).
    let (canary_access, canary_refresh) = fake.issue_tokens_directly();
    let (s, body) = relay
        .post_json(
            "/connections",
            &key,
            &json!({"provider": "test", "actor_id": "canary-actor",
            "access_token": canary_access, "refresh_token": canary_refresh, "expires_in": 30}),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let (s, tok) = relay
        .get_json(&format!("/connections/{id}/token"), &key)
        .await;
    assert_eq!(s, 200, "{tok}");
    let refreshed_access = tok["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        fake.presented_refresh_tokens(),
        vec![canary_refresh.clone()]
    );
    let rotated_refresh = fake
        .current_refresh_token_for(&refreshed_access)
        .expect("grant is live");

    // A full connect flow: code, state, verifier all pass through Relay.
    let (_, body) = relay
        .get_json("/oauth/test/authorize?actor_id=flow-actor", &key)
        .await;
    let state = body["state"].as_str().unwrap().to_owned();
    let redirect = follow_authorize(body["authorize_url"].as_str().unwrap()).await;
    let code = redirect.code.clone().unwrap();
    let resp = relay.http.get(&redirect.location).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // Replaying the callback fails, and the error page does not echo the code.
    let replay = relay
        .http
        .get(&redirect.location)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!replay.contains(&code));

    // Error bodies of requests that carry secrets, or fail because of them.
    let mut error_bodies = vec![replay];
    let bad_requests = [
        format!(
            "{{\"provider\": \"test\", \"actor_id\": \"x\", \"access_token\": \"{canary_access}\""
        ),
        format!(
            "{{\"provider\": \"test\", \"actor_id\": \"x\", \"access_token\": \"{canary_access}\", \"token_type\": \"{canary_refresh}\"}}"
        ),
        format!(
            "{{\"provider\": \"test\", \"actor_id\": \"x\", \"access_token\": \"{canary_access}\", \"expires_at\": \"{canary_refresh}\"}}"
        ),
        format!(
            "{{\"provider\": \"test\", \"actor_id\": \"x\", \"access_token\": \"{canary_access}\", \"colour\": \"{canary_refresh}\"}}"
        ),
    ];
    for body in bad_requests {
        let r = relay
            .http
            .post(relay.url("/connections"))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error());
        error_bodies.push(r.text().await.unwrap());
    }
    let wrong_key = relay
        .get(&format!("/connections/{id}/token"), &format!("{key}x"))
        .await;
    assert_eq!(wrong_key.status().as_u16(), 401);
    error_bodies.push(wrong_key.text().await.unwrap());
    // The grant dies: the forced refresh fails with needs_reauth, whose reason comes from the
    // provider's answer.
    assert!(fake.revoke_grant(&rotated_refresh));
    let dead = relay
        .get(&format!("/connections/{id}/token?force_refresh=true"), &key)
        .await;
    assert_eq!(dead.status().as_u16(), 409);
    error_bodies.push(dead.text().await.unwrap());
    let audit_page = relay
        .get("/audit?limit=1000", &key)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        audit_page.contains("token.refreshed") && audit_page.contains("connection.needs_reauth")
    );
    assert!(
        audit_page.contains("\"actor_id\":\"flow-actor\"")
            && audit_page.contains("\"detail\":\"connect flow\""),
        "the connect flow's connection is audited: {audit_page}"
    );

    let metrics = relay
        .http
        .get(relay.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let log_handle = relay.log_handle();
    let status = relay.stop().await;
    assert!(status.success());

    let mut secrets = vec![
        canary_access,
        canary_refresh,
        CANARY_SECRET.to_owned(),
        refreshed_access,
        rotated_refresh,
        code,
        state,
        key.clone(),
    ];
    secrets.retain(|s| !s.is_empty());

    let (ok, exported, err) = opts.run(&["audit", "export"]).await;
    assert!(ok, "{err}");
    assert!(
        exported.contains("token.read"),
        "the export has the records"
    );
    let (ok, verified, err) = opts.run(&["audit", "verify"]).await;
    assert!(ok, "{err}");
    let logs = log_handle.lock().unwrap().clone();
    assert!(
        logs.contains("token refreshed"),
        "the logs were captured: {logs}"
    );
    let mut stored = Vec::new();
    match &pg {
        None => {
            for entry in std::fs::read_dir(dir.path()).unwrap() {
                let path = entry.unwrap().path();
                if path
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("relay.db")
                {
                    stored.extend(std::fs::read(&path).unwrap());
                }
            }
            assert!(!stored.is_empty(), "the SQLite files were read");
        }
        Some(pg) => {
            let out = std::process::Command::new("pg_dump")
                .args(["--data-only", &pg.url])
                .output()
                .expect("pg_dump is installed with PostgreSQL");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            stored = out.stdout;
            assert!(
                String::from_utf8_lossy(&stored).contains("canary-actor"),
                "the dump has the rows"
            );
        }
    }
    for secret in &secrets {
        assert!(
            !contains(&stored, secret.as_bytes()),
            "a secret is stored in plaintext"
        );
        assert!(!logs.contains(secret.as_str()), "a secret is in the logs");
        assert!(
            !metrics.contains(secret.as_str()),
            "a secret is in the metrics"
        );
        for body in &error_bodies {
            assert!(
                !body.contains(secret.as_str()),
                "a secret is in an error body: {body}"
            );
        }
        for audit in [&audit_page, &exported, &verified] {
            assert!(
                !audit.contains(secret.as_str()),
                "a secret is in the audit log"
            );
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_plaintext_secret_on_sqlite_disk_logs_or_metrics() {
    scenario(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_plaintext_secret_in_a_postgres_dump_logs_or_metrics() {
    scenario(true).await;
}
