//! Connection fixation, prevented: a connect link made for one user and finished in another
//! user's browser must not link the wrong account. Relay validates the provider's ID token
//! (the fake signs real ES256 tokens; tests/oidc_provider.rs covers RS256 from panva's
//! oidc-provider), records which account was linked, refuses a callback from another account
//! than `expected_subject` / `expected_email`, and echoes `app_state` on `return_to`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use support::*;

const RETURN_TO: &str = "https://app.example.test/done";

/// The fake's one user is bob: whoever finishes a link at the fake signs in as bob.
fn bob() -> FakeProviderConfig {
    FakeProviderConfig {
        subject: "bob-sub".into(),
        email: "bob@example.test".into(),
        ..FakeProviderConfig::default()
    }
}

async fn relay_for(fake: &FakeProvider, extra: &str) -> (Relay, String, TempDir) {
    let dir = TempDir::new();
    let toml = format!(
        "{FAST_REFRESH}\n[oauth]\nreturn_to_allow = [\"{RETURN_TO}\"]\n{}\n{extra}",
        provider_toml("test", "oidc", &fake.issuer(), "")
    );
    let opts = RelayOptions::new(dir.path(), &toml);
    let key = opts.create_api_key("acme").await;
    (Relay::start(opts).await, key, dir)
}

/// Starts a flow with `query`, lets the fake's user sign in, and returns Relay's answer.
async fn finish(relay: &Relay, key: &str, query: &str) -> reqwest::Response {
    let (status, body) = relay
        .get_json(&format!("/oauth/test/authorize?{query}"), key)
        .await;
    assert_eq!(status, 200, "{body}");
    let redirect = follow_authorize(body["authorize_url"].as_str().unwrap()).await;
    relay.http.get(&redirect.location).send().await.unwrap()
}

fn query_of(location: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_linked_account_is_recorded_and_returned_with_app_state() {
    let fake = FakeProvider::start(bob()).await;
    let (relay, key, _dir) = relay_for(&fake, "").await;
    let resp = finish(
        &relay,
        &key,
        "actor_id=bob&return_to=https%3A%2F%2Fapp.example.test%2Fdone&app_state=sess-42&expected_email=BOB%40example.test&login_hint=bob%40example.test",
    )
    .await;
    assert_eq!(resp.status().as_u16(), 303, "{}", relay.logs());
    let q = query_of(resp.headers()["location"].to_str().unwrap());
    assert_eq!(q["account_subject"], "bob-sub");
    assert_eq!(q["account_email"], "bob@example.test");
    assert_eq!(q["app_state"], "sess-42");
    let id = q["connection_id"].clone();
    let (_, conn) = relay.get_json(&format!("/connections/{id}"), &key).await;
    assert_eq!(conn["account_subject"], "bob-sub", "{conn}");
    assert_eq!(conn["account_email"], "bob@example.test", "{conn}");
    let (_, st) = relay
        .get_json("/oauth/test/status?actor_id=bob", &key)
        .await;
    assert_eq!(st["account_subject"], "bob-sub", "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_for_mallory_finished_by_bob_is_refused_and_audited() {
    let fake = FakeProvider::start(bob()).await;
    let (relay, key, _dir) = relay_for(&fake, "").await;
    for query in [
        "actor_id=mallory&expected_subject=mallory-sub",
        "actor_id=mallory&expected_email=mallory%40example.test",
    ] {
        let resp = finish(&relay, &key, query).await;
        assert_eq!(resp.status().as_u16(), 403, "{query}");
        assert_eq!(resp.headers()["x-relay-result"], "account_mismatch");
        let page = resp.text().await.unwrap();
        assert!(page.contains("nothing was connected"), "{page}");
        assert!(!page.contains("bob"), "the page names nobody: {page}");
    }
    let (_, st) = relay
        .get_json("/oauth/test/status?actor_id=mallory", &key)
        .await;
    assert_eq!(st["linked"], false, "nothing stored: {st}");
    let (_, list) = relay.get_json("/connections", &key).await;
    assert_eq!(list["connections"], Value::Array(vec![]), "{list}");
    let (_, audit) = relay
        .get_json("/audit?action=connection.created", &key)
        .await;
    let refused: Vec<&Value> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("account_mismatch"))
        })
        .collect();
    assert_eq!(refused.len(), 2, "{audit}");
    assert_eq!(refused[0]["actor_id"], "mallory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expected_identity_needs_a_provider_that_can_say_who_signed_in() {
    let fake = FakeProvider::start(bob()).await;
    // Plain OAuth 2.0: no ID token checked (no issuer, no JWKS) and no userinfo endpoint.
    let plain = format!(
        "[providers.plain]\nkind = \"oauth2\"\nclient_id = \"relay-test\"\nclient_secret = \"relay-secret\"\nauthorization_url = \"{}\"\ntoken_url = \"{}\"\nscopes = [\"openid\"]\n\
         [providers.withinfo]\nkind = \"oauth2\"\nclient_id = \"relay-test\"\nclient_secret = \"relay-secret\"\nauthorization_url = \"{}\"\ntoken_url = \"{}\"\nuserinfo_url = \"{}\"\nscopes = [\"openid\"]\n",
        fake.authorization_url(),
        fake.token_url(),
        fake.authorization_url(),
        fake.token_url(),
        fake.userinfo_url(),
    );
    let (relay, key, _dir) = relay_for(&fake, &plain).await;
    let (status, body) = relay
        .get_json(
            "/oauth/plain/authorize?actor_id=a&expected_subject=bob-sub",
            &key,
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "identity_unverifiable");
    // Without expected_*, the flow works and records no account.
    let (status, body) = relay
        .get_json("/oauth/plain/authorize?actor_id=a", &key)
        .await;
    assert_eq!(status, 200, "{body}");
    let redirect = follow_authorize(body["authorize_url"].as_str().unwrap()).await;
    let resp = relay.http.get(&redirect.location).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (_, st) = relay.get_json("/oauth/plain/status?actor_id=a", &key).await;
    assert_eq!(st["linked"], true, "{st}");
    assert_eq!(st["account_subject"], Value::Null, "{st}");
    // With a userinfo endpoint, the account comes from there and is checked.
    let (status, body) = relay
        .get_json(
            "/oauth/withinfo/authorize?actor_id=b&expected_subject=mallory-sub",
            &key,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let redirect = follow_authorize(body["authorize_url"].as_str().unwrap()).await;
    let resp = relay.http.get(&redirect.location).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(fake.userinfo_requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlong_or_control_character_parameters_are_refused() {
    let fake = FakeProvider::start(bob()).await;
    let (relay, key, _dir) = relay_for(&fake, "").await;
    let long = "x".repeat(513);
    for query in [
        format!("actor_id=a&app_state={long}"),
        "actor_id=a&login_hint=a%0Ab".to_owned(),
        format!("actor_id=a&expected_subject={}", "y".repeat(257)),
    ] {
        let (status, body) = relay
            .get_json(&format!("/oauth/test/authorize?{query}"), &key)
            .await;
        assert_eq!(status, 422, "{query}: {body}");
        assert_eq!(body["error"]["code"], "validation_error");
    }
}
