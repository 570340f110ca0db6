//! CORS for a Studio or app on another origin (`[server] cors_allow_origins`): off by default,
//! preflights answered for allowed origins only, never with credentials, a configuration that
//! mixes `*` with a list or names something that is not an origin refused at start, and real
//! cross-origin calls from a page in headless Chromium (the only proof that a browser accepts
//! the answers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use relay_test_support::chromium::{PageOrigin, chromium_binary, run_page};
use serde_json::Value;
use support::*;

const STUDIO: &str = "https://studio.example.com";

fn with_origins(fake: &FakeProvider, origins: &str) -> String {
    format!(
        "[server]\ncors_allow_origins = {origins}\n{}",
        provider_toml("test", "oidc", &fake.issuer(), "")
    )
}

/// `OPTIONS path` as a browser sends it before a cross-origin POST with an API key.
async fn preflight(relay: &Relay, path: &str, origin: &str) -> reqwest::Response {
    relay
        .http
        .request(reqwest::Method::OPTIONS, relay.url(path))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type,idempotency-key",
        )
        .send()
        .await
        .unwrap()
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_configuration_only_the_same_origin_may_call() {
    let fake = FakeProvider::start(FakeProviderConfig::google()).await;
    let dir = TempDir::new();
    let toml = provider_toml("test", "oidc", &fake.issuer(), "");
    let key = RelayOptions::new(dir.path(), &toml)
        .create_api_key("acme")
        .await;
    let relay = Relay::start(RelayOptions::new(dir.path(), &toml)).await;
    let r = preflight(&relay, "/connections", STUDIO).await;
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    let r = relay
        .http
        .get(relay.url("/connections"))
        .bearer_auth(&key)
        .header("Origin", STUDIO)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    assert!(relay.stop().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflights_are_answered_for_listed_origins_and_never_with_credentials() {
    let fake = FakeProvider::start(FakeProviderConfig::google()).await;
    let dir = TempDir::new();
    let opts = RelayOptions::new(dir.path(), &with_origins(&fake, &format!("[\"{STUDIO}\"]")));
    let key = opts.create_api_key("acme").await;
    let relay = Relay::start(opts).await;

    for path in ["/connections", "/actions/preview", "/actions/execute"] {
        let r = preflight(&relay, path, STUDIO).await;
        assert!(r.status().is_success(), "{path}: {}", r.status());
        assert_eq!(header(&r, "access-control-allow-origin"), Some(STUDIO));
        let allowed = header(&r, "access-control-allow-headers")
            .unwrap()
            .to_ascii_lowercase();
        for h in ["authorization", "content-type", "idempotency-key"] {
            assert!(allowed.contains(h), "{path}: {allowed}");
        }
        assert!(
            header(&r, "access-control-allow-methods")
                .unwrap()
                .contains("POST")
        );
        assert_eq!(header(&r, "access-control-allow-credentials"), None);
    }
    // Another origin gets no permission (the browser then refuses the call).
    let r = preflight(&relay, "/connections", "https://evil.example").await;
    assert_eq!(header(&r, "access-control-allow-origin"), None);

    // The real call and its errors carry the headers, and the request id is readable.
    for (bearer, status) in [(key.as_str(), 200), ("rly_wrong", 401)] {
        let r = relay
            .http
            .get(relay.url("/connections"))
            .bearer_auth(bearer)
            .header("Origin", STUDIO)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status);
        assert_eq!(header(&r, "access-control-allow-origin"), Some(STUDIO));
        assert!(
            header(&r, "access-control-expose-headers")
                .unwrap()
                .to_ascii_lowercase()
                .contains("x-request-id")
        );
        assert_eq!(header(&r, "access-control-allow-credentials"), None);
    }
    assert!(relay.stop().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_origin_lists_are_refused_at_start() {
    let fake = FakeProvider::start(FakeProviderConfig::google()).await;
    for (origins, expected) in [
        (
            "[\"*\", \"https://studio.example.com\"]",
            "cannot be combined",
        ),
        ("[\"https://studio.example.com/\"]", "is not an origin"),
        ("[\"studio.example.com\"]", "is not an origin"),
    ] {
        let dir = TempDir::new();
        let opts = RelayOptions::new(dir.path(), &with_origins(&fake, origins));
        let (ok, _, stderr) = tokio::time::timeout(Duration::from_secs(30), opts.run(&["serve"]))
            .await
            .expect("relay exits on a bad configuration");
        assert!(!ok, "{origins}");
        assert!(
            stderr.contains("server.cors_allow_origins") && stderr.contains(expected),
            "{origins}: {stderr}"
        );
    }
    // The environment's list (comma-separated) replaces the file's and is checked the same way.
    let dir = TempDir::new();
    let opts = RelayOptions::new(dir.path(), &with_origins(&fake, "[]"))
        .with_env("RELAY_CORS_ALLOW_ORIGINS", "https://studio.example.com, *");
    let (ok, _, stderr) = tokio::time::timeout(Duration::from_secs(30), opts.run(&["serve"]))
        .await
        .expect("relay exits on a bad configuration");
    assert!(!ok);
    assert!(stderr.contains("cannot be combined"), "{stderr}");
}

/// The page both origins serve: it imports a connection with a POST (JSON body, API key,
/// `Idempotency-Key`: a preflighted request), lists connections reading `X-Request-Id`, and
/// reads a 401 envelope, then reports what its script saw.
const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>cross-origin caller</title>
<script>
const q = new URLSearchParams(location.search);
const relay = q.get("relay"), key = q.get("key");
const out = {};
async function call(name, path, init) {
  try {
    const r = await fetch(relay + path, init);
    out[name] = {status: r.status, request_id: r.headers.get("x-request-id"), body: await r.json()};
  } catch (e) {
    out[name] = {error: String(e)};
  }
}
(async () => {
  await call("create", "/connections", {
    method: "POST",
    headers: {"Authorization": "Bearer " + key, "Content-Type": "application/json", "Idempotency-Key": "browser-1"},
    body: JSON.stringify({provider: "test", actor_id: "browser-user", access_token: "at-from-browser",
                          refresh_token: "rt-from-browser", expires_in: 3600}),
  });
  await call("list", "/connections", {headers: {"Authorization": "Bearer " + key}});
  await call("unauthorized", "/connections", {headers: {"Authorization": "Bearer rly_wrong"}});
  await fetch("/report", {method: "POST", body: JSON.stringify(out)});
})();
</script>
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_an_allowed_origin_calls_relay_from_headless_chromium() {
    let Some(chromium) = chromium_binary() else {
        return;
    };
    let studio = PageOrigin::start(PAGE.to_owned());
    let elsewhere = PageOrigin::start(PAGE.to_owned());
    let fake = FakeProvider::start(FakeProviderConfig::google()).await;
    let dir = TempDir::new();
    let opts = RelayOptions::new(
        dir.path(),
        &with_origins(&fake, &format!("[\"{}\"]", studio.origin())),
    );
    let key = opts.create_api_key("acme").await;
    let relay = Relay::start(opts).await;
    let query = format!("/?relay={}&key={key}", relay.url(""));

    let report: Value =
        serde_json::from_str(&run_page(&chromium, &studio, &query, Duration::from_secs(40)).await)
            .unwrap();
    assert_eq!(report["create"]["status"], 201, "{report}");
    assert_eq!(report["list"]["status"], 200, "{report}");
    assert_eq!(
        report["list"]["body"]["connections"][0]["actor_id"], "browser-user",
        "{report}"
    );
    assert!(
        report["list"]["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "X-Request-Id is exposed to the script: {report}"
    );
    assert_eq!(report["unauthorized"]["status"], 401, "{report}");
    assert_eq!(
        report["unauthorized"]["body"]["error"]["code"], "unauthorized",
        "{report}"
    );

    // The same page on an origin not listed: the browser refuses every call, and the POST
    // never reaches Relay (its preflight got no permission).
    let report: Value = serde_json::from_str(
        &run_page(&chromium, &elsewhere, &query, Duration::from_secs(40)).await,
    )
    .unwrap();
    for call in ["create", "list", "unauthorized"] {
        assert!(
            report[call]["error"]
                .as_str()
                .is_some_and(|e| e.contains("TypeError")),
            "{call}: {report}"
        );
    }
    let (status, list) = relay.get_json("/connections", &key).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["connections"].as_array().unwrap().len(), 1, "{list}");
    assert!(relay.stop().await.success());
}
