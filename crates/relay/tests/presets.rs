//! The Google and Microsoft presets: the parameters each provider needs to hand out refresh
//! tokens, their refresh behaviour (Google keeps its refresh token, Microsoft rotates), and
//! every endpoint overridable (which is how these tests point them at a local fake).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use support::*;

async fn connect_through(relay: &Relay, key: &str, provider: &str) -> String {
    let (status, body) = relay
        .get_json(&format!("/oauth/{provider}/authorize?actor_id=u1"), key)
        .await;
    assert_eq!(status, 200, "{body}");
    let redirect = follow_authorize(body["authorize_url"].as_str().unwrap()).await;
    let resp = relay.http.get(&redirect.location).send().await.unwrap();
    assert_eq!(
        resp.status().as_u16(),
        200,
        "{}",
        resp.text().await.unwrap()
    );
    let (_, st) = relay
        .get_json(&format!("/oauth/{provider}/status?actor_id=u1"), key)
        .await;
    st["connection_id"].as_str().unwrap().to_owned()
}

fn overrides(fake: &FakeProvider) -> String {
    format!(
        "issuer = \"{}\"\nauthorization_url = \"{}\"\ntoken_url = \"{}\"\nrevocation_url = \"{}\"\n",
        fake.issuer(),
        fake.authorization_url(),
        fake.token_url(),
        fake.revocation_url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn google_preset_gets_a_refresh_token_and_keeps_it() {
    let fake = FakeProvider::start(FakeProviderConfig::google()).await;
    let dir = TempDir::new();
    let toml = format!(
        "{FAST_REFRESH}\n[providers.google]\nkind = \"google\"\nclient_id = \"relay-test\"\nclient_secret = \"relay-secret\"\n{}",
        overrides(&fake)
    );
    let opts = RelayOptions::new(dir.path(), &toml);
    let key = opts.create_api_key("acme").await;
    let relay = Relay::start(opts).await;
    let id = connect_through(&relay, &key, "google").await;
    let q = fake.last_authorize_query().unwrap();
    assert_eq!(q["access_type"], "offline");
    assert_eq!(q["prompt"], "consent");
    assert_eq!(q["scope"], "openid email");
    // The fake (like Google) only issues a refresh token for access_type=offline.
    let (_, meta) = relay.get_json(&format!("/connections/{id}"), &key).await;
    assert_eq!(meta["has_refresh_token"], true, "{meta}");
    for _ in 0..2 {
        let (s, body) = relay
            .get_json(&format!("/connections/{id}/token?force_refresh=true"), &key)
            .await;
        assert_eq!(s, 200, "{body}");
    }
    let presented = fake.presented_refresh_tokens();
    assert_eq!(presented.len(), 2);
    assert_eq!(
        presented[0], presented[1],
        "Google's refresh token is kept across refreshes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn microsoft_preset_asks_for_offline_access_and_follows_rotation() {
    let fake = FakeProvider::start(FakeProviderConfig::microsoft()).await;
    let dir = TempDir::new();
    let toml = format!(
        "{FAST_REFRESH}\n[providers.microsoft]\nkind = \"microsoft\"\ntenant = \"contoso\"\nclient_id = \"relay-test\"\nclient_secret = \"relay-secret\"\n{}",
        overrides(&fake)
    );
    let opts = RelayOptions::new(dir.path(), &toml);
    let key = opts.create_api_key("acme").await;
    let relay = Relay::start(opts).await;
    let id = connect_through(&relay, &key, "microsoft").await;
    let q = fake.last_authorize_query().unwrap();
    assert!(
        q["scope"].split(' ').any(|s| s == "offline_access"),
        "{q:?}"
    );
    let mut seen = std::collections::HashSet::new();
    for _ in 0..3 {
        let (s, body) = relay
            .get_json(&format!("/connections/{id}/token?force_refresh=true"), &key)
            .await;
        assert_eq!(s, 200, "{body}");
        assert!(fake.is_access_token_valid(body["access_token"].as_str().unwrap()));
    }
    for t in fake.presented_refresh_tokens() {
        assert!(
            seen.insert(t),
            "a rotated refresh token was presented twice"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_from_the_environment_alone() {
    let dir = TempDir::new();
    let opts = RelayOptions::new(dir.path(), "")
        .with_env("GOOGLE_CLIENT_ID", "env-client.apps.googleusercontent.com")
        .with_env("GOOGLE_CLIENT_SECRET", "env-secret");
    let key = opts.create_api_key("acme").await;
    let relay = Relay::start(opts).await;
    let (status, body): (u16, Value) = relay
        .get_json(
            "/oauth/google/authorize?actor_id=u1&scopes=https://www.googleapis.com/auth/gmail.send",
            &key,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let url = url::Url::parse(body["authorize_url"].as_str().unwrap()).unwrap();
    assert_eq!(url.host_str(), Some("accounts.google.com"));
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], "env-client.apps.googleusercontent.com");
    assert_eq!(q["redirect_uri"], relay.url("/oauth/google/callback"));
    assert_eq!(
        q["scope"],
        "openid email https://www.googleapis.com/auth/gmail.send"
    );
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(!relay.logs().contains("env-secret"));
}
