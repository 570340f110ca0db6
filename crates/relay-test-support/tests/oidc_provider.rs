//! Proves the oidc-provider harness works end to end (discovery, headless login and consent,
//! code exchange with PKCE and client_secret_basic, refresh with rotation, reuse detection,
//! revocation), so Relay's tests can rely on it. Skips, with a message, only when Node.js is
//! not installed and CI is not set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use relay_test_support::{
    OidcProviderHarness, OidcProviderOptions, Pkce, complete_browser_flow, http_client,
};
use reqwest::StatusCode;
use serde_json::Value;

const REDIRECT_URI: &str = "http://127.0.0.1:9/oauth/callback";

struct Endpoints {
    authorization: String,
    token: String,
    revocation: String,
    userinfo: String,
}

async fn discover(issuer: &str) -> Endpoints {
    let doc: Value = http_client()
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["issuer"], issuer);
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    assert_eq!(
        doc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    let get = |name: &str| doc[name].as_str().unwrap().to_owned();
    Endpoints {
        authorization: get("authorization_endpoint"),
        token: get("token_endpoint"),
        revocation: get("revocation_endpoint"),
        userinfo: get("userinfo_endpoint"),
    }
}

fn authorize_url(
    endpoints: &Endpoints,
    pkce: &Pkce,
    scope: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut url = url::Url::parse(&endpoints.authorization).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", "relay-test")
        .append_pair("redirect_uri", REDIRECT_URI)
        .append_pair("scope", scope)
        .append_pair("state", "state-xyz")
        .append_pair("nonce", "nonce-1")
        .append_pair("code_challenge", &pkce.challenge)
        .append_pair("code_challenge_method", "S256");
    for (name, value) in extra {
        url.query_pairs_mut().append_pair(name, value);
    }
    url.to_string()
}

async fn token_request(endpoints: &Endpoints, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let response = http_client()
        .post(&endpoints.token)
        .basic_auth("relay-test", Some("relay-secret"))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, body)
}

async fn start() -> Option<OidcProviderHarness> {
    OidcProviderHarness::start(&[REDIRECT_URI.to_owned()]).await
}

#[tokio::test]
async fn full_flow_with_refresh_rotation() {
    let Some(harness) = start().await else {
        return;
    };
    let issuer = harness.issuer();
    let endpoints = discover(&issuer).await;

    let pkce = Pkce::generate();
    let url = authorize_url(
        &endpoints,
        &pkce,
        "openid email offline_access",
        &[("prompt", "consent")],
    );
    let callback = complete_browser_flow(&url).await;
    assert_eq!(callback.error, None, "{callback:?}\n{}", harness.output());
    assert_eq!(callback.redirect_uri(), REDIRECT_URI);
    assert_eq!(callback.state.as_deref(), Some("state-xyz"));
    assert_eq!(callback.iss.as_deref(), Some(issuer.as_str()));
    let code = callback.code.unwrap();

    let (status, tokens) = token_request(
        &endpoints,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", &pkce.verifier),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(tokens["id_token"].is_string());
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let rt0 = tokens["refresh_token"].as_str().unwrap().to_owned();

    let info: Value = http_client()
        .get(&endpoints.userinfo)
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["sub"], "user-1");
    assert_eq!(info["email"], "user-1@example.test");

    // Refresh once: the refresh token rotates.
    let (status, refreshed) = token_request(
        &endpoints,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt0)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    let rt1 = refreshed["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt0, "refresh token must rotate");
    assert_ne!(refreshed["access_token"], tokens["access_token"]);

    // The code is single use, and replaying it revokes the grant (RFC 6749 §4.1.2).
    let (status, reuse) = token_request(
        &endpoints,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", &pkce.verifier),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(reuse["error"], "invalid_grant");
    let (status, after) = token_request(
        &endpoints,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt1)],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{after}");
    assert_eq!(after["error"], "invalid_grant");
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_grant() {
    let Some(harness) = start().await else {
        return;
    };
    let endpoints = discover(&harness.issuer()).await;
    let pkce = Pkce::generate();
    let url = authorize_url(
        &endpoints,
        &pkce,
        "openid offline_access",
        &[("prompt", "consent")],
    );
    let callback = complete_browser_flow(&url).await;
    let (status, tokens) = token_request(
        &endpoints,
        &[
            ("grant_type", "authorization_code"),
            ("code", callback.code.as_deref().unwrap()),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", &pkce.verifier),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let rt0 = tokens["refresh_token"].as_str().unwrap().to_owned();

    let (status, refreshed) = token_request(
        &endpoints,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt0)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    let rt1 = refreshed["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt0, "refresh token must rotate");
    assert!(refreshed["access_token"].is_string());

    // Replaying the rotated token is refused and kills the newest one too.
    let (status, replay) = token_request(
        &endpoints,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt0)],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(replay["error"], "invalid_grant");
    let (status, newest) = token_request(
        &endpoints,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt1)],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{newest}");
    assert_eq!(newest["error"], "invalid_grant");
}

#[tokio::test]
async fn revocation_and_refresh_token_rules() {
    let Some(harness) = OidcProviderHarness::start_with(OidcProviderOptions {
        access_token_ttl: 120,
        ..OidcProviderOptions::new(&[REDIRECT_URI.to_owned()])
    })
    .await
    else {
        return;
    };
    let endpoints = discover(&harness.issuer()).await;

    // offline_access without prompt=consent is silently dropped: no refresh token.
    let pkce = Pkce::generate();
    let url = authorize_url(&endpoints, &pkce, "openid offline_access", &[]);
    let callback = complete_browser_flow(&url).await;
    let (status, tokens) = token_request(
        &endpoints,
        &[
            ("grant_type", "authorization_code"),
            ("code", callback.code.as_deref().unwrap()),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", &pkce.verifier),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert!(tokens.get("refresh_token").is_none(), "{tokens}");
    assert_eq!(tokens["expires_in"], 120);
    assert_eq!(tokens["scope"], "openid");

    // A wrong verifier is invalid_grant.
    let pkce = Pkce::generate();
    let url = authorize_url(
        &endpoints,
        &pkce,
        "openid offline_access",
        &[("prompt", "consent")],
    );
    let callback = complete_browser_flow(&url).await;
    let (status, error) = token_request(
        &endpoints,
        &[
            ("grant_type", "authorization_code"),
            ("code", callback.code.as_deref().unwrap()),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", &Pkce::generate().verifier),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"], "invalid_grant");

    // Revoking a refresh token (RFC 7009) makes it unusable.
    let pkce = Pkce::generate();
    let url = authorize_url(
        &endpoints,
        &pkce,
        "openid offline_access",
        &[("prompt", "consent")],
    );
    let callback = complete_browser_flow(&url).await;
    let (_, tokens) = token_request(
        &endpoints,
        &[
            ("grant_type", "authorization_code"),
            ("code", callback.code.as_deref().unwrap()),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", &pkce.verifier),
        ],
    )
    .await;
    let rt = tokens["refresh_token"].as_str().unwrap().to_owned();
    let response = http_client()
        .post(&endpoints.revocation)
        .basic_auth("relay-test", Some("relay-secret"))
        .form(&[("token", rt.as_str()), ("token_type_hint", "refresh_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (status, after) = token_request(
        &endpoints,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{after}");
    assert_eq!(after["error"], "invalid_grant");

    // oidc-provider treats client_secret_post and client_secret_basic as interchangeable for a
    // client registered with either: a bogus token gets invalid_grant, not invalid_client...
    let post = |secret: &'static str| {
        http_client().post(&endpoints.token).form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "bogus"),
            ("client_id", "relay-test"),
            ("client_secret", secret),
        ])
    };
    let response = post("relay-secret").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    // ...while a wrong secret is 401 invalid_client.
    let response = post("wrong").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
}

#[tokio::test]
async fn denial_and_missing_pkce_come_back_as_errors() {
    let Some(harness) = start().await else {
        return;
    };
    let issuer = harness.issuer();
    let endpoints = discover(&issuer).await;

    let url = authorize_url(
        &endpoints,
        &Pkce::generate(),
        "openid offline_access",
        &[("prompt", "consent"), ("login_hint", "deny")],
    );
    let denied = complete_browser_flow(&url).await;
    assert_eq!(denied.error.as_deref(), Some("access_denied"), "{denied:?}");
    assert_eq!(denied.state.as_deref(), Some("state-xyz"));
    assert_eq!(denied.iss.as_deref(), Some(issuer.as_str()));
    assert_eq!(denied.code, None);

    let url = authorize_url(&endpoints, &Pkce::generate(), "openid", &[])
        .replace("code_challenge=", "x_challenge=")
        .replace("code_challenge_method=", "x_method=");
    let refused = complete_browser_flow(&url).await;
    assert_eq!(
        refused.error.as_deref(),
        Some("invalid_request"),
        "{refused:?}"
    );
    assert_eq!(refused.iss.as_deref(), Some(issuer.as_str()));
}
