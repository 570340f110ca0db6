//! What someone who can write Relay's storage, but does not hold the master key, can do to it:
//! pending connect flows in Redis cannot be edited or swapped into another valid flow; and
//! what other local users of the machine can read: nothing of the data directory; and key
//! rotation, which re-seals every kind of sealed value so the old key can go.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use serde_json::Value;
use support::*;

/// The `state` query parameter of an authorize URL.
fn state_of(authorize_url: &str) -> String {
    url::Url::parse(authorize_url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("a state")
}

fn sha256_hex(s: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, s.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Edits a stored flow the way an attacker with Redis write access would: where the record
/// names the actor in the clear, re-targets it; otherwise alters the sealed bytes.
fn edit_flow(raw: &str) -> String {
    let mut v: Value = serde_json::from_str(raw).unwrap();
    if v.get("actor_id").is_some() {
        v["actor_id"] = "mallory".into();
        v["return_to"] = Value::Null;
    } else {
        let mut sealed = STANDARD_NO_PAD
            .decode(v["sealed"].as_str().expect("a sealed flow"))
            .unwrap();
        let last = sealed.len() - 20;
        sealed[last] ^= 1;
        v["sealed"] = STANDARD_NO_PAD.encode(sealed).into();
    }
    v.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_or_swapped_flow_in_redis_is_refused() {
    let Some(redis_url) = redis_url().await else {
        return;
    };
    let fake = FakeProvider::start(FakeProviderConfig::default()).await;
    let prefix = format!("relay-it:{}:", random_token(9));
    let dir = TempDir::new();
    let opts = RelayOptions::new(
        dir.path(),
        &format!(
            "{FAST_REFRESH}\n{}",
            provider_toml("test", "oidc", &fake.issuer(), "")
        ),
    )
    .with_env("REDIS_URL", &redis_url)
    .with_env("REDIS_KEY_PREFIX", &prefix);
    let key = opts.create_api_key("acme").await;
    let relay = Relay::start(opts).await;
    let redis = redis::Client::open(redis_url.as_str()).unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let flow_key = |state: &str| format!("{prefix}flow:{}", sha256_hex(state));

    // 1. A field of bob's pending flow is edited: the callback refuses the state.
    let (status, body) = relay
        .get_json("/oauth/test/authorize?actor_id=bob", &key)
        .await;
    assert_eq!(status, 200, "{body}");
    let authorize_url = body["authorize_url"].as_str().unwrap().to_owned();
    let redis_key = flow_key(&state_of(&authorize_url));
    let raw: String = redis::cmd("GET")
        .arg(&redis_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(&redis_key)
        .arg(edit_flow(&raw))
        .query_async(&mut conn)
        .await
        .unwrap();
    let redirect = follow_authorize(&authorize_url).await;
    let resp = relay.http.get(&redirect.location).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.text().await.unwrap().contains("invalid"));
    assert!(!raw.contains("bob"), "the actor is sealed: {raw}");

    // 2. Mallory's flow record is stored under bob's state: it does not open there.
    let (_, bob) = relay
        .get_json("/oauth/test/authorize?actor_id=bob", &key)
        .await;
    let (_, mallory) = relay
        .get_json("/oauth/test/authorize?actor_id=mallory", &key)
        .await;
    let bob_url = bob["authorize_url"].as_str().unwrap().to_owned();
    let bob_state = state_of(&bob_url);
    let mallory_key = flow_key(&state_of(mallory["authorize_url"].as_str().unwrap()));
    let raw: String = redis::cmd("GET")
        .arg(&mallory_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut swapped: Value = serde_json::from_str(&raw).unwrap();
    swapped["state_hash"] = sha256_hex(&bob_state).into();
    let _: () = redis::cmd("SET")
        .arg(flow_key(&bob_state))
        .arg(swapped.to_string())
        .query_async(&mut conn)
        .await
        .unwrap();
    let redirect = follow_authorize(&bob_url).await;
    let resp = relay.http.get(&redirect.location).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);

    // Neither callback connected anyone, and no code was exchanged.
    assert_eq!(fake.code_exchanges(), 0);
    for actor in ["bob", "mallory"] {
        let (status, st) = relay
            .get_json(&format!("/oauth/test/status?actor_id={actor}"), &key)
            .await;
        assert_eq!(status, 200, "{st}");
        assert_eq!(st["linked"], false, "{actor}: {st}");
    }
    let _: () = redis::cmd("DEL")
        .arg(&mallory_key)
        .query_async(&mut conn)
        .await
        .unwrap();
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_and_its_files_are_the_owners_alone() {
    use std::os::unix::fs::PermissionsExt;
    let fake = FakeProvider::start(FakeProviderConfig::default()).await;
    let home = TempDir::new();
    // A data directory Relay creates itself, with a key it generates.
    let data = home.path().join("data");
    let opts = RelayOptions::new(
        home.path(),
        &provider_toml("test", "oidc", &fake.issuer(), ""),
    )
    .without_env("OAUTH_ENCRYPTION_KEY")
    .with_env("RELAY_DATA_DIR", data.to_str().unwrap());
    let relay = Relay::start(opts.clone()).await;
    let key = opts.create_api_key("acme").await;
    let (status, _) = relay.get_json("/connections", &key).await;
    assert_eq!(status, 200);
    assert_eq!(mode(&data), 0o700, "the data directory");
    for file in ["relay.db", "relay.db-wal", "relay.db-shm", "encryption.key"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    assert!(
        !relay.logs().contains("open to other local users"),
        "{}",
        relay.logs()
    );
    assert!(relay.stop().await.success());

    // Widened by hand: Relay starts, and says which paths and how to fix them (SQLite gives the
    // `-wal` and `-shm` files the database file's mode, so they are wide too).
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        data.join("relay.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let relay = Relay::start(opts).await;
    let logs = relay.logs();
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("open to other local users"))
        .collect();
    assert_eq!(warnings.len(), 4, "{logs}");
    assert!(warnings.iter().any(|l| l.contains("chmod 700")), "{logs}");
    assert!(
        warnings
            .iter()
            .any(|l| l.contains("relay.db") && l.contains("chmod 600")),
        "{logs}"
    );
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A second master key, for rotation (Fernet format; test only).
const NEW_KEY: &str = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA=";

/// Rotation with every kind of sealed value present: connection tokens, the webhook secret, an
/// executed preview (its outcome), a preview not yet executed, and a pending connect flow.
/// After `vault reseal` every value names the new key, and with the old key removed each of
/// them still opens.
async fn rotation_reseals_every_kind_of_sealed_value(backend: Backend) {
    let fake = FakeProvider::start(FakeProviderConfig::default()).await;
    let hooks = WebhookReceiver::start();
    let dir = TempDir::new();
    let toml = format!(
        "{FAST_REFRESH}\n{}\n[actions.webhook]\nallow_hosts = [\"127.0.0.1\"]\n",
        provider_toml("test", "oidc", &fake.issuer(), "")
    );
    let mut opts = RelayOptions::new(dir.path(), &toml);
    // One port throughout: the pending flow's redirect URI must still reach Relay after restarts.
    opts.port = Some(free_port());
    let _pg = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let Some(pg) = pg_database().await else {
                return;
            };
            opts.database_url = Some(pg.url.clone());
            Some(pg)
        }
    };
    let key = opts.create_api_key("acme").await;
    let relay = Relay::start(opts.clone()).await;
    let (access, refresh) = fake.issue_tokens_directly();
    let (s, conn) = relay
        .post_json(
            "/connections",
            &key,
            &serde_json::json!({"provider": "test", "actor_id": "u", "access_token": access, "refresh_token": refresh}),
        )
        .await;
    assert_eq!(s, 201, "{conn}");
    let conn_id = conn["id"].as_str().unwrap().to_owned();
    let (s, secret) = relay.get_json("/webhooks/secret", &key).await;
    assert_eq!(s, 200, "{secret}");
    let preview = |n: u32| serde_json::json!({"action": "webhook.send", "params": {"url": hooks.url(), "payload": {"n": n}}});
    let (s, executed) = relay.post_json("/actions/preview", &key, &preview(1)).await;
    assert_eq!(s, 201, "{executed}");
    let executed = executed["preview_id"].as_str().unwrap().to_owned();
    let execute = async |relay: &Relay, id: &str| {
        relay
            .post_json(
                "/actions/execute",
                &key,
                &serde_json::json!({ "preview_id": id }),
            )
            .await
    };
    let (s, first) = execute(&relay, &executed).await;
    assert_eq!(s, 200, "{first}");
    let (s, pending) = relay.post_json("/actions/preview", &key, &preview(2)).await;
    assert_eq!(s, 201, "{pending}");
    let pending = pending["preview_id"].as_str().unwrap().to_owned();
    let (s, flow) = relay
        .get_json("/oauth/test/authorize?actor_id=flow-user", &key)
        .await;
    assert_eq!(s, 200, "{flow}");
    let authorize_url = flow["authorize_url"].as_str().unwrap().to_owned();
    assert!(relay.stop().await.success());

    let rotated = opts
        .clone()
        .with_env("OAUTH_ENCRYPTION_KEY", NEW_KEY)
        .with_env("OAUTH_ENCRYPTION_KEY_PREVIOUS", TEST_KEY);
    let (ok, out, err) = rotated.run(&["vault", "reseal"]).await;
    assert!(ok, "{out}{err}");
    let (ok, status, err) = rotated.run(&["vault", "status"]).await;
    assert!(ok, "{err}");

    // The old key is gone: everything still opens.
    let relay = Relay::start(rotated.without_env("OAUTH_ENCRYPTION_KEY_PREVIOUS")).await;
    let (s, again) = relay.get_json("/webhooks/secret", &key).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["secret"], secret["secret"]);
    let (s, tok) = relay
        .get_json(&format!("/connections/{conn_id}/token"), &key)
        .await;
    assert_eq!(s, 200, "{tok}");
    assert_eq!(tok["access_token"], access.as_str());
    let (s, replay) = execute(&relay, &executed).await;
    assert_eq!(s, 200, "the outcome opens: {replay}");
    assert_eq!(replay["result"], first["result"]);
    let (s, sent) = execute(&relay, &pending).await;
    assert_eq!(s, 200, "the preview opens: {sent}");
    assert_eq!(hooks.deliveries().len(), 2);
    let redirect = follow_authorize(&authorize_url).await;
    let resp = relay.http.get(&redirect.location).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "the pending flow opens");
    let (_, st) = relay
        .get_json("/oauth/test/status?actor_id=flow-user", &key)
        .await;
    assert_eq!(st["linked"], true, "{st}");

    // What `vault reseal` and `vault status` reported before the old key went.
    for line in [
        "connection_token\tscanned 1, re-sealed 1,",
        "webhook_secret\tscanned 1, re-sealed 1,",
        "action_preview\tscanned 2, re-sealed 2,",
        "action_outcome\tscanned 1, re-sealed 1,",
        "oauth_flow\tscanned 1, re-sealed 1,",
    ] {
        assert!(out.contains(line), "{line:?} in {out}");
    }
    let primary = status
        .lines()
        .find_map(|l| l.strip_prefix("primary key: "))
        .expect("the primary key")
        .to_owned();
    let counts: Vec<(&str, &str, &str)> = status
        .lines()
        .filter_map(|l| {
            let mut parts = l.split('\t');
            Some((parts.next()?, parts.next()?, parts.next()?))
        })
        .collect();
    assert_eq!(
        counts,
        vec![
            ("action_outcome", primary.as_str(), "1 sealed"),
            ("action_preview", primary.as_str(), "2 sealed"),
            ("audit_key", primary.as_str(), "1 sealed"),
            ("connection_token", primary.as_str(), "2 sealed"),
            ("oauth_flow", primary.as_str(), "1 sealed"),
            ("webhook_secret", primary.as_str(), "1 sealed"),
        ],
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_reseals_every_kind_of_sealed_value_on_sqlite() {
    rotation_reseals_every_kind_of_sealed_value(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_reseals_every_kind_of_sealed_value_on_postgres() {
    rotation_reseals_every_kind_of_sealed_value(Backend::Postgres).await;
}
