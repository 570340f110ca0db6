//! Service-account connections (Google Workspace domain-wide delegation): the real `relay`
//! binary against a local fake of Google's token endpoint that verifies each JWT bearer
//! assertion (RS256 signature with the account's public key, iss, sub, scope, aud, iat/exp),
//! with a throwaway RSA key made per test, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::*;

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

macro_rules! on_both_backends {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario(super::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$scenario(super::Backend::Postgres).await;
            }
        }
    };
}

const EMAIL: &str = "relay-mailer@relay-test.iam.gserviceaccount.com";
const GMAIL_SEND: &str = "https://www.googleapis.com/auth/gmail.send";

/// A key file as Google's console downloads it.
fn key_file(private_key_pem: &str, token_uri: &str) -> Value {
    json!({
        "type": "service_account",
        "project_id": "relay-test",
        "private_key_id": "0123456789abcdef",
        "private_key": private_key_pem,
        "client_email": EMAIL,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "universe_domain": "googleapis.com"
    })
}

fn google_toml(fake: &FakeServiceAccountToken) -> String {
    format!(
        "{FAST_REFRESH}[providers.google]\nkind = \"google\"\nclient_id = \"relay-test\"\nclient_secret = \"relay-secret\"\ntoken_url = \"{}\"\nrevocation_url = \"{}/revoke\"\n",
        fake.token_url(),
        fake.base_url()
    )
}

/// A line from the middle of the PEM: if it shows up anywhere, the key leaked.
fn canary(pem: &str) -> String {
    pem.lines().nth(5).unwrap().to_owned()
}

/// Everything Relay wrote to its store, as text.
async fn stored_text(dir: &TempDir, pg: Option<&PgDb>) -> String {
    use sqlx::Connection;
    match pg {
        Some(pg) => {
            let mut c = sqlx::PgConnection::connect(&pg.url).await.unwrap();
            let mut all = String::new();
            for table in ["connections", "audit_log"] {
                let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT t::text FROM {table} t"
                )))
                .fetch_all(&mut c)
                .await
                .unwrap();
                all.push_str(&rows.join("\n"));
            }
            all
        }
        None => {
            let mut all = String::new();
            for entry in std::fs::read_dir(dir.path()).unwrap() {
                let path = entry.unwrap().path();
                if path.is_file() {
                    all.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
                }
            }
            all
        }
    }
}

async fn service_account_connections(backend: Backend) {
    if !python_fernet_available() {
        return;
    }
    let (pem, public) = generate_rsa_key();
    let fake = FakeServiceAccountToken::start(EMAIL, public);
    let dir = TempDir::new();
    let pg = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => match pg_database().await {
            Some(pg) => Some(pg),
            None => return,
        },
    };
    let mut opts = RelayOptions::new(dir.path(), &google_toml(&fake));
    opts.database_url = pg.as_ref().map(|p| p.url.clone());
    let api = opts.create_api_key("acme").await;
    let relay = Relay::start(opts.clone()).await;
    let key = key_file(&pem, &fake.token_url());
    let body = |subject: &str, key: &Value| {
        json!({"provider": "google", "actor_id": "mailer", "service_account": key,
               "subject": subject, "scopes": [GMAIL_SEND]})
    };

    let (status, created) = relay
        .post_json("/connections", &api, &body("alice@example.com", &key))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "active");
    assert_eq!(created["scopes"], json!([GMAIL_SEND]));
    let id = created["id"].as_str().unwrap().to_owned();
    // The fake verified the assertion; these are its claims.
    let grants = fake.grants();
    assert_eq!(grants.len(), 1, "one token minted at creation");
    let claims = &grants[0];
    assert_eq!(claims["iss"], EMAIL);
    assert_eq!(claims["sub"], "alice@example.com");
    assert_eq!(claims["scope"], GMAIL_SEND);
    assert_eq!(claims["aud"], fake.token_url());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );

    let (status, token) = relay
        .get_json(&format!("/connections/{id}/token"), &api)
        .await;
    assert_eq!(status, 200, "{token}");
    let first = token["access_token"].as_str().unwrap().to_owned();
    assert!(fake.is_access_token_valid(&first));
    // "Refreshing" mints a new token through the same protocol; no refresh token involved.
    let (status, token) = relay
        .get_json(&format!("/connections/{id}/token?force_refresh=true"), &api)
        .await;
    assert_eq!(status, 200, "{token}");
    let second = token["access_token"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    assert!(fake.is_access_token_valid(&second));
    assert_eq!(fake.grants().len(), 2);

    // The key as the text of GOOGLE_CREDENTIALS_JSON works too.
    let mut as_text = body("erin@example.com", &json!(key.to_string()));
    as_text["actor_id"] = json!("erin");
    let (status, erin) = relay.post_json("/connections", &api, &as_text).await;
    assert_eq!(status, 201, "{erin}");
    assert_eq!(fake.grants().last().unwrap()["sub"], "erin@example.com");

    // Bad input: clear codes, nothing stored.
    let (status, err) = relay
        .post_json(
            "/connections",
            &api,
            &body("alice@example.com", &json!({"type": "authorized_user"})),
        )
        .await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["error"]["code"], "invalid_service_account");
    let mut no_subject = body("alice@example.com", &key);
    no_subject.as_object_mut().unwrap().remove("subject");
    let (status, err) = relay.post_json("/connections", &api, &no_subject).await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["error"]["code"], "validation_error");
    let mut with_token = body("alice@example.com", &key);
    with_token["access_token"] = json!("ya29.x");
    let (status, err) = relay.post_json("/connections", &api, &with_token).await;
    assert_eq!(status, 422, "{err}");
    let (other_pem, _) = generate_rsa_key();
    let mut bob = body("bob@example.com", &key_file(&other_pem, &fake.token_url()));
    bob["actor_id"] = json!("bob");
    let (status, err) = relay.post_json("/connections", &api, &bob).await;
    assert_eq!(status, 502, "a key the provider does not know: {err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Invalid JWT Signature"),
        "{err}"
    );
    fake.refuse_subject("carol@example.com");
    let mut carol = body("carol@example.com", &key);
    carol["actor_id"] = json!("carol");
    let (status, err) = relay.post_json("/connections", &api, &carol).await;
    assert_eq!(status, 502, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unauthorized_client"),
        "{err}"
    );
    let mut elsewhere = body(
        "alice@example.com",
        &key_file(&pem, "https://oauth2.example.com/token"),
    );
    elsewhere["actor_id"] = json!("dave");
    let (status, err) = relay.post_json("/connections", &api, &elsewhere).await;
    assert_eq!(status, 502, "a key for another token endpoint: {err}");
    for actor in ["bob", "carol", "dave"] {
        let (_, st) = relay
            .get_json(&format!("/oauth/google/status?actor_id={actor}"), &api)
            .await;
        assert_eq!(st["linked"], false, "{actor}: {st}");
    }

    // The administrator withdraws the delegation: the connection needs re-authorization.
    fake.withdraw_delegation();
    let (status, err) = relay
        .get_json(&format!("/connections/{id}/token?force_refresh=true"), &api)
        .await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "needs_reauth");
    let (_, view) = relay.get_json(&format!("/connections/{id}"), &api).await;
    assert_eq!(view["status"], "needs_reauth");
    assert!(
        view["status_reason"]
            .as_str()
            .unwrap()
            .starts_with("unauthorized_client: Client is unauthorized"),
        "{view}"
    );

    // Canary: the private key is nowhere but sealed.
    let canary = canary(&pem);
    let (_, list) = relay.get_json("/connections", &api).await;
    for shown in [&created, &erin, &view, &list] {
        assert!(!shown.to_string().contains(&canary), "{shown}");
    }
    assert!(!relay.logs().contains(&canary), "the key is in the logs");
    assert!(
        !relay.logs().contains("PRIVATE KEY"),
        "the key is in the logs"
    );
    relay.stop().await;
    let stored = stored_text(&dir, pg.as_ref()).await;
    assert!(
        !stored.is_empty() && !stored.contains(&canary) && !stored.contains("PRIVATE KEY"),
        "the key is on disk in plaintext"
    );
}
on_both_backends!(service_account_connections);

/// `relay connection add-service-account --key-file sa.json`: the CLI equivalent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_from_the_command_line() {
    if !python_fernet_available() {
        return;
    }
    let (pem, public) = generate_rsa_key();
    let fake = FakeServiceAccountToken::start(EMAIL, public);
    let dir = TempDir::new();
    let opts = RelayOptions::new(dir.path(), &google_toml(&fake));
    let file = dir.path().join("sa.json");
    std::fs::write(&file, key_file(&pem, &fake.token_url()).to_string()).unwrap();
    let run = |file: &str, subject: &str| {
        let opts = opts.clone();
        let (file, subject) = (file.to_owned(), subject.to_owned());
        async move {
            opts.run(&[
                "connection",
                "add-service-account",
                "--workspace",
                "acme",
                "--provider",
                "google",
                "--actor-id",
                "mailer",
                "--key-file",
                &file,
                "--subject",
                &subject,
                "--scope",
                GMAIL_SEND,
            ])
            .await
        }
    };
    let (ok, out, err) = run(file.to_str().unwrap(), "alice@example.com").await;
    assert!(ok, "{err}");
    assert!(
        out.contains("connected mailer through the service account"),
        "{out}"
    );
    let canary = canary(&pem);
    assert!(!out.contains(&canary) && !err.contains(&canary));
    assert_eq!(fake.grants()[0]["sub"], "alice@example.com");

    let not_a_key = dir.path().join("token.json");
    std::fs::write(
        &not_a_key,
        json!({"type": "authorized_user", "refresh_token": "1//secret"}).to_string(),
    )
    .unwrap();
    let (ok, _, err) = run(not_a_key.to_str().unwrap(), "alice@example.com").await;
    assert!(
        !ok && err.contains("\"type\": \"service_account\""),
        "{err}"
    );
    assert!(!err.contains("1//secret"), "{err}");

    let api = opts.create_api_key("acme").await;
    let relay = Relay::start(opts.clone()).await;
    let (_, st) = relay
        .get_json("/oauth/google/status?actor_id=mailer", &api)
        .await;
    assert_eq!(st["scopes"], json!([GMAIL_SEND]));
    let id = st["connection_id"].as_str().unwrap();
    let (status, tok) = relay
        .get_json(&format!("/connections/{id}/token?force_refresh=true"), &api)
        .await;
    assert_eq!(status, 200, "{tok}");
    assert!(fake.is_access_token_valid(tok["access_token"].as_str().unwrap()));
    relay.stop().await;

    // Key rotation re-seals the service account's credential under its own binding, so it
    // still mints once the old key is retired.
    let rotated = opts
        .clone()
        .with_env(
            "OAUTH_ENCRYPTION_KEY",
            "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA=",
        )
        .with_env("OAUTH_ENCRYPTION_KEY_PREVIOUS", TEST_KEY);
    let (ok, out, err) = rotated.run(&["vault", "reseal"]).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("re-sealed 1") && out.contains("unreadable 0"),
        "{out}"
    );
    let relay = Relay::start(rotated.without_env("OAUTH_ENCRYPTION_KEY_PREVIOUS")).await;
    let (status, tok) = relay
        .get_json(&format!("/connections/{id}/token?force_refresh=true"), &api)
        .await;
    assert_eq!(status, 200, "{tok}");
    assert!(fake.is_access_token_valid(tok["access_token"].as_str().unwrap()));
}
