//! Relay's OAuth client against a real, certified authorization server: panva's
//! `oidc-provider` on loopback (see tests/oidc-provider). Discovery, PKCE S256, RFC 9207
//! `iss`, refresh token rotation with reuse detection, and RFC 7009 revocation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connect_refresh_and_revoke_against_oidc_provider() {
    let port = free_port();
    let redirect = format!("http://127.0.0.1:{port}/oauth/panva/callback");
    let Some(op) = OidcProviderHarness::start(std::slice::from_ref(&redirect)).await else {
        eprintln!("skipping: node is not installed");
        return;
    };
    let dir = TempDir::new();
    // oidc-provider grants offline_access (and so a refresh token) only with prompt=consent.
    let toml = format!(
        "{FAST_REFRESH}\n{}",
        provider_toml(
            "panva",
            "oidc",
            &op.issuer(),
            "[providers.panva.authorize_params]\nprompt = \"consent\""
        )
    );
    let mut opts = RelayOptions::new(dir.path(), &toml);
    opts.port = Some(port);
    let key = opts.create_api_key("acme").await;
    let relay = Relay::start(opts).await;

    let (status, body) = relay
        .get_json("/oauth/panva/authorize?actor_id=alice", &key)
        .await;
    assert_eq!(status, 200, "{body}");
    let callback = complete_browser_flow(body["authorize_url"].as_str().unwrap()).await;
    assert_eq!(
        callback.iss.as_deref(),
        Some(op.issuer().as_str()),
        "oidc-provider sends iss (RFC 9207)"
    );
    assert!(callback.error.is_none(), "{:?}", callback.error_description);
    let resp = relay.http.get(&callback.location).send().await.unwrap();
    let status = resp.status().as_u16();
    assert_eq!(
        status,
        200,
        "{}\n{}",
        resp.text().await.unwrap(),
        relay.logs()
    );

    let (_, st) = relay
        .get_json("/oauth/panva/status?actor_id=alice", &key)
        .await;
    assert_eq!(st["status"], "active");
    assert!(
        st["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "offline_access"),
        "{st}"
    );
    let id = st["connection_id"].as_str().unwrap().to_owned();
    let (_, meta) = relay.get_json(&format!("/connections/{id}"), &key).await;
    assert_eq!(meta["has_refresh_token"], true, "{meta}");

    let userinfo = discover_userinfo(&relay.http, &op.issuer()).await;
    let first = token(&relay, &id, &key, "").await;
    assert_eq!(userinfo_status(&relay.http, &userinfo, &first).await, 200);

    // Rotation on every refresh: three refreshes in a row each present the newest token
    // (oidc-provider revokes the whole grant if a used one is replayed).
    let mut last = first.clone();
    for _ in 0..3 {
        let t = token(&relay, &id, &key, "?force_refresh=true").await;
        assert_ne!(t, last);
        assert_eq!(userinfo_status(&relay.http, &userinfo, &t).await, 200);
        last = t;
    }

    // Revocation (RFC 7009) ends the grant: the last access token stops working.
    let (status, body) = relay.delete_json(&format!("/connections/{id}"), &key).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revoked"], true, "{body}");
    assert_eq!(userinfo_status(&relay.http, &userinfo, &last).await, 401);
}

async fn token(relay: &Relay, id: &str, key: &str, q: &str) -> String {
    let (status, body) = relay
        .get_json(&format!("/connections/{id}/token{q}"), key)
        .await;
    assert_eq!(status, 200, "{body}\n{}", relay.logs());
    body["access_token"].as_str().unwrap().to_owned()
}

async fn discover_userinfo(http: &reqwest::Client, issuer: &str) -> String {
    let doc: Value = http
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    doc["userinfo_endpoint"].as_str().unwrap().to_owned()
}

async fn userinfo_status(http: &reqwest::Client, url: &str, access_token: &str) -> u16 {
    http.get(url)
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A real RS256 ID token from a certified server: Relay checks its signature against the
/// published JWKS, its issuer, audience, expiry and nonce, records the account, and refuses a
/// link finished by another account than expected.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_id_token_names_the_account_and_a_different_one_is_refused() {
    let port = free_port();
    let redirect = format!("http://127.0.0.1:{port}/oauth/panva/callback");
    let Some(op) = OidcProviderHarness::start(std::slice::from_ref(&redirect)).await else {
        eprintln!("skipping: node is not installed");
        return;
    };
    let dir = TempDir::new();
    let toml = format!(
        "{FAST_REFRESH}\n{}",
        provider_toml("panva", "oidc", &op.issuer(), "")
    );
    let mut opts = RelayOptions::new(dir.path(), &toml);
    opts.port = Some(port);
    let key = opts.create_api_key("acme").await;
    let relay = Relay::start(opts).await;

    // alice's link, finished by alice (login_hint picks the account at oidc-provider).
    let (status, body) = relay
        .get_json(
            "/oauth/panva/authorize?actor_id=alice&login_hint=alice&expected_subject=alice&expected_email=alice%40example.test",
            &key,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let authorize_url = body["authorize_url"].as_str().unwrap();
    assert!(authorize_url.contains("nonce="), "{authorize_url}");
    let callback = complete_browser_flow(authorize_url).await;
    let resp = relay.http.get(&callback.location).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{}", relay.logs());
    let (_, st) = relay
        .get_json("/oauth/panva/status?actor_id=alice", &key)
        .await;
    assert_eq!(st["account_subject"], "alice", "{st}");
    assert_eq!(st["account_email"], "alice@example.test", "{st}");

    // A link made for alice, finished by mallory: refused, nothing stored for alice's actor.
    let (_, body) = relay
        .get_json(
            "/oauth/panva/authorize?actor_id=alice-2&expected_subject=alice&login_hint=mallory",
            &key,
        )
        .await;
    let callback = complete_browser_flow(body["authorize_url"].as_str().unwrap()).await;
    let resp = relay.http.get(&callback.location).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403, "{}", relay.logs());
    let (_, st) = relay
        .get_json("/oauth/panva/status?actor_id=alice-2", &key)
        .await;
    assert_eq!(st["linked"], false, "{st}");
}
