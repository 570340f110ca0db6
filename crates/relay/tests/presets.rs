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

const FILE_CLIENT_ID: &str = "123-file.apps.googleusercontent.com";
const FILE_SECRET: &str = "GOCSPX-from-the-credentials-file";

/// A fake Google that knows only the client of the credentials file.
async fn google_for_the_file() -> FakeProvider {
    FakeProvider::start(FakeProviderConfig {
        client_id: FILE_CLIENT_ID.to_owned(),
        client_secret: FILE_SECRET.to_owned(),
        ..FakeProviderConfig::google()
    })
    .await
}

/// The OAuth client JSON as the Cloud console writes it, `client_type` `installed` or `web`,
/// with its endpoints pointed at the fake.
fn credentials_json(client_type: &str, fake: &FakeProvider) -> String {
    serde_json::json!({ client_type: {
        "client_id": FILE_CLIENT_ID,
        "project_id": "relay-test-project",
        "auth_uri": fake.authorization_url(),
        "token_uri": fake.token_url(),
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_secret": FILE_SECRET,
        "redirect_uris": ["http://localhost"],
    }})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn google_from_the_consoles_credentials_file() {
    let fake = google_for_the_file().await;
    let dir = TempDir::new();
    let file = dir.path().join("credentials.json");
    std::fs::write(&file, credentials_json("installed", &fake)).unwrap();
    // No client_id, client_secret, authorization_url or token_url: all from the file.
    let toml = format!(
        "{FAST_REFRESH}\n[providers.google]\nkind = \"google\"\ncredentials_file = \"{}\"\nissuer = \"{}\"\nrevocation_url = \"{}\"\n",
        file.display(),
        fake.issuer(),
        fake.revocation_url()
    );
    let opts = RelayOptions::new(dir.path(), &toml);
    let key = opts.create_api_key("acme").await;
    let relay = Relay::start(opts).await;
    // The whole code flow: the authorization endpoint and the client id come from the file,
    // and the fake only exchanges the code for the file's client id and secret.
    let id = connect_through(&relay, &key, "google").await;
    let q = fake.last_authorize_query().unwrap();
    assert_eq!(q["client_id"], FILE_CLIENT_ID);
    let (s, body) = relay
        .get_json(&format!("/connections/{id}/token?force_refresh=true"), &key)
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(fake.presented_refresh_tokens().len(), 1);
    assert!(!relay.logs().contains(FILE_SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_credentials_file_from_the_environment() {
    let fake = google_for_the_file().await;
    let dir = TempDir::new();
    let file = dir.path().join("client_secret_web.json");
    std::fs::write(&file, credentials_json("web", &fake)).unwrap();
    let opts = RelayOptions::new(dir.path(), FAST_REFRESH)
        .with_env("GOOGLE_CREDENTIALS_FILE", file.to_str().unwrap());
    let key = opts.create_api_key("acme").await;
    let relay = Relay::start(opts).await;
    let (access, refresh) = fake.issue_tokens_directly();
    let (s, conn) = relay
        .post_json(
            "/connections",
            &key,
            &serde_json::json!({"provider": "google", "actor_id": "u1", "access_token": access,
                "refresh_token": refresh, "expires_in": 3600}),
        )
        .await;
    assert_eq!(s, 201, "{conn}");
    let id = conn["id"].as_str().unwrap();
    // The refresh goes to the file's token_uri with the file's client: the fake accepts no other.
    let (s, body) = relay
        .get_json(&format!("/connections/{id}/token?force_refresh=true"), &key)
        .await;
    assert_eq!(s, 200, "{body}");
    assert_ne!(body["access_token"], access.as_str());
    assert_eq!(fake.presented_refresh_tokens(), vec![refresh]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_credentials_files_stop_relay_with_a_clear_error_and_no_secret() {
    let fake = google_for_the_file().await;
    let dir = TempDir::new();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let missing = dir.path().join("nowhere.json").display().to_string();
    let service_account = write(
        "sa.json",
        &format!(
            r#"{{"type":"service_account","client_email":"x@p.iam.gserviceaccount.com","private_key":"{FILE_SECRET}"}}"#
        ),
    );
    let bad_id = write(
        "bad.json",
        &format!(r#"{{"installed":{{"client_id":7,"client_secret":"{FILE_SECRET}"}}}}"#),
    );
    let truncated = write("cut.json", &credentials_json("web", &fake)[..60]);
    let good = write("good.json", &credentials_json("web", &fake));
    let table = |path: &str, extra: &str| {
        format!("[providers.google]\nkind = \"google\"\ncredentials_file = \"{path}\"\n{extra}")
    };
    let cases = [
        (table(&missing, ""), "cannot read Google credentials file"),
        (table(&service_account, ""), "service-account key"),
        (table(&bad_id, ""), "\"installed.client_id\" is missing"),
        (table(&truncated, ""), "is not valid JSON"),
        (
            table(&good, "client_secret = \"another-secret\"\n"),
            "client_secret differs",
        ),
        (
            format!(
                "[providers.corp]\nkind = \"oidc\"\nissuer = \"{}\"\ncredentials_file = \"{good}\"\n",
                fake.issuer()
            ),
            "needs kind = \"google\"",
        ),
    ];
    for (toml, expected) in cases {
        let opts = RelayOptions::new(dir.path(), &toml);
        let (ok, _, stderr) =
            tokio::time::timeout(std::time::Duration::from_secs(30), opts.run(&["serve"]))
                .await
                .expect("relay exits on a bad configuration");
        assert!(!ok, "{toml}");
        assert!(stderr.contains(expected), "{toml}\n{stderr}");
        assert!(!stderr.contains(FILE_SECRET), "{stderr}");
        assert!(!stderr.contains("another-secret"), "{stderr}");
    }
}
