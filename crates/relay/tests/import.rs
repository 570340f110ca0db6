//! `relay import`: Google token.json files and Fernet-encrypted legacy rows. The Fernet rows are
//! made by Python's `cryptography` (the library our users encrypted them with), so the test
//! proves compatibility with the real thing, not with our own reading of the format.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fernet_rows_from_a_legacy_table_import_and_keep_working() {
    if !python_fernet_available() {
        return;
    }
    let fake = FakeProvider::start(FakeProviderConfig::default()).await;
    let dir = TempDir::new();
    let opts = RelayOptions::new(
        dir.path(),
        &provider_toml("google", "oidc", &fake.issuer(), ""),
    );
    let legacy_key = new_fernet_key();
    let (a1, r1) = fake.issue_tokens_directly();
    let (a2, r2) = fake.issue_tokens_directly();
    let sealed = python_fernet(&legacy_key, &[&a1, &r1, &a2, &r2, "ya29.service-row"]);
    let other_key_row = python_fernet(&new_fernet_key(), &["ya29.other"]);
    let rows = [
        json!({"actor_id": 42, "access_token": sealed[0], "refresh_token": sealed[1],
               "expires_at": "2030-01-01 00:00:00.000000", "scopes": "openid email"})
        .to_string(),
        json!({"actor_id": "user-7", "access_token": sealed[2], "refresh_token": sealed[3],
               "expires_at": 1_900_000_000, "scopes": ["openid"]})
        .to_string(),
        String::new(),
        // The services Relay replaces name the provider column `service`.
        json!({"actor_id": "svc", "service": "google", "access_token": sealed[4]}).to_string(),
        json!({"actor_id": "wrong-key", "access_token": other_key_row[0]}).to_string(),
        "{not json".to_owned(),
    ];
    let file = dir.path().join("rows.jsonl");
    std::fs::write(&file, rows.join("\n")).unwrap();
    let importer = opts.clone().with_env("LEGACY_FERNET_KEY", &legacy_key);
    let (ok, out, err) = importer
        .run(&[
            "import",
            "fernet-jsonl",
            "--workspace",
            "acme",
            "--provider",
            "google",
            file.to_str().unwrap(),
        ])
        .await;
    assert!(!ok, "bad rows make the command fail");
    assert!(out.contains("imported 3, failed 2"), "{out}");
    assert!(
        err.contains("line 5: access_token does not decrypt"),
        "{err}"
    );
    assert!(err.contains("line 6: invalid JSON"), "{err}");
    for secret in [&a1, &r1, &a2, &r2, &legacy_key] {
        assert!(!out.contains(secret.as_str()) && !err.contains(secret.as_str()));
    }

    let key = opts.create_api_key("acme").await;
    let relay = Relay::start(opts).await;
    let (_, st) = relay
        .get_json("/oauth/google/status?actor_id=42", &key)
        .await;
    assert_eq!(st["scopes"], json!(["openid", "email"]));
    assert_eq!(st["expires_at"], "2030-01-01T00:00:00Z");
    let (_, svc) = relay
        .get_json("/oauth/google/status?actor_id=svc", &key)
        .await;
    assert_eq!(svc["linked"], true, "{svc}");
    let id = st["connection_id"].as_str().unwrap().to_owned();
    let (s, tok) = relay
        .get_json(&format!("/connections/{id}/token"), &key)
        .await;
    assert_eq!(s, 200);
    assert_eq!(tok["access_token"], a1.as_str());
    // The imported refresh token is the real one: a refresh works.
    let (s, tok) = relay
        .get_json(&format!("/connections/{id}/token?force_refresh=true"), &key)
        .await;
    assert_eq!(s, 200, "{tok}");
    assert_eq!(fake.presented_refresh_tokens(), vec![r1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_token_json_files_import() {
    let fake = FakeProvider::start(FakeProviderConfig::google()).await;
    let dir = TempDir::new();
    let toml = format!(
        "[providers.google]\nkind = \"google\"\nclient_id = \"relay-test\"\nclient_secret = \"relay-secret\"\nissuer = \"{}\"\nauthorization_url = \"{}\"\ntoken_url = \"{}\"\n",
        fake.issuer(),
        fake.authorization_url(),
        fake.token_url()
    );
    let opts = RelayOptions::new(dir.path(), &toml);
    let (access, refresh) = fake.issue_tokens_directly();
    let write = |name: &str, v: serde_json::Value| {
        let p = dir.path().join(name);
        std::fs::write(&p, v.to_string()).unwrap();
        p.to_str().unwrap().to_owned()
    };
    // google-auth's Credentials.to_json().
    let full = write(
        "token.json",
        json!({"token": access, "refresh_token": refresh,
        "token_uri": "https://oauth2.googleapis.com/token", "client_id": "relay-test", "client_secret": "relay-secret",
        "scopes": ["https://www.googleapis.com/auth/gmail.send"], "universe_domain": "googleapis.com",
        "account": "", "expiry": "2031-05-06T07:08:09.123456Z"}),
    );
    let args = |actor: &str, file: &str| {
        vec![
            "import".to_owned(),
            "token-json".into(),
            "--workspace".into(),
            "acme".into(),
            "--provider".into(),
            "google".into(),
            "--actor-id".into(),
            actor.into(),
            file.into(),
        ]
    };
    let run = |a: Vec<String>| {
        let opts = opts.clone();
        async move {
            let refs: Vec<&str> = a.iter().map(String::as_str).collect();
            opts.run(&refs).await
        }
    };
    let (ok, out, err) = run(args("alice", &full)).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("imported connection "), "{out}");
    assert!(!out.contains(&access) && !err.contains(&access) && !err.contains(&refresh));

    // gcloud's authorized_user file: no access token, so Relay refreshes once at import.
    let (_, refresh2) = fake.issue_tokens_directly();
    let adc = write(
        "adc.json",
        json!({"type": "authorized_user", "client_id": "relay-test",
        "client_secret": "relay-secret", "refresh_token": refresh2}),
    );
    let (ok, _, err) = run(args("bob", &adc)).await;
    assert!(ok, "{err}");
    assert_eq!(fake.presented_refresh_tokens(), vec![refresh2.clone()]);

    // Tokens of another OAuth client would never refresh: refused with the reason.
    let foreign = write(
        "foreign.json",
        json!({"token": "x", "refresh_token": "y", "client_id": "someone-else"}),
    );
    let (ok, _, err) = run(args("carol", &foreign)).await;
    assert!(
        !ok && err.contains("issued to client someone-else"),
        "{err}"
    );
    let not_json = write("bad.json", json!(["not", "an", "object"]));
    let (ok, _, err) = run(args("dave", &not_json)).await;
    assert!(!ok && err.contains("not a Google token.json"), "{err}");
    let service = write(
        "sa.json",
        json!({"type": "service_account", "client_id": "relay-test"}),
    );
    let (ok, _, err) = run(args("erin", &service)).await;
    assert!(!ok && err.contains("authorized-user"), "{err}");

    let key = opts.create_api_key("acme").await;
    let relay = Relay::start(opts.clone()).await;
    let (_, st) = relay
        .get_json("/oauth/google/status?actor_id=alice", &key)
        .await;
    assert_eq!(st["expires_at"], "2031-05-06T07:08:09Z");
    assert_eq!(
        st["scopes"],
        json!(["https://www.googleapis.com/auth/gmail.send"])
    );
    let id = st["connection_id"].as_str().unwrap();
    let (_, tok) = relay
        .get_json(&format!("/connections/{id}/token"), &key)
        .await;
    assert_eq!(tok["access_token"], access.as_str());
    let (_, st) = relay
        .get_json("/oauth/google/status?actor_id=bob", &key)
        .await;
    let id = st["connection_id"].as_str().unwrap();
    let (_, tok) = relay
        .get_json(&format!("/connections/{id}/token"), &key)
        .await;
    assert!(fake.is_access_token_valid(tok["access_token"].as_str().unwrap()));
    let (_, meta) = relay.get_json(&format!("/connections/{id}"), &key).await;
    assert_eq!(
        meta["has_refresh_token"], true,
        "Google sent no new refresh token; the imported one is kept"
    );
}
