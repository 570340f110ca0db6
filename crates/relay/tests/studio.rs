//! Studio (the embedded web UI) and the provider listing it relies on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn studio_is_served_with_a_strict_content_security_policy() {
    let dir = TempDir::new();
    let toml = "[providers.google]\nkind = \"google\"\nclient_id = \"demo\"\nclient_secret = \"studio-canary-secret\"\nscopes = [\"openid\"]\n";
    let opts = RelayOptions::new(dir.path(), toml).with_env("PROVIDER_GOOGLE_ENABLED", "true");
    let key = opts.create_api_key("acme").await;
    let relay = Relay::start(opts).await;

    let page = relay.http.get(relay.url("/studio")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains("/studio/app.js") && !html.contains("<script>"),
        "no inline script"
    );
    for (path, kind) in [
        ("/studio/app.js", "text/javascript"),
        ("/studio/style.css", "text/css"),
    ] {
        let r = relay.http.get(relay.url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
    }
    let js = relay
        .http
        .get(relay.url("/studio/app.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !js.contains("innerHTML"),
        "untrusted text is never rendered as HTML"
    );

    let (status, body) = relay.get_json("/providers", &key).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["providers"][0]["name"], "google");
    assert_eq!(body["providers"][0]["kind"], "google");
    assert_eq!(body["providers"][0]["enabled"], true);
    assert!(!body.to_string().contains("studio-canary-secret"));
    let (status, _) = relay.get_json("/providers", "").await;
    assert_eq!(status, 401);
}
