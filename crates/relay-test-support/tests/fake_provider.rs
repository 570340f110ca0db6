//! Proves that the fake OAuth provider behaves like the specifications and the real providers
//! it stands in for, so that Relay tests built on it test Relay and not the fake's bugs.
//! Everything talks to 127.0.0.1 only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use relay_test_support::fake_provider::WRONG_ISSUER;
use relay_test_support::{
    CallbackRedirect, Failure, FakeProvider, FakeProviderConfig, IssMode, Pkce, follow_authorize,
    http_client,
};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

const REDIRECT_URI: &str = "http://127.0.0.1:9/oauth/callback";

fn authorize_url(provider: &FakeProvider, pkce: &Pkce, extra: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(&provider.authorization_url()).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", "relay-test")
        .append_pair("redirect_uri", REDIRECT_URI)
        .append_pair("scope", "openid email offline_access")
        .append_pair("state", "state-123")
        .append_pair("code_challenge", &pkce.challenge)
        .append_pair("code_challenge_method", "S256");
    for (name, value) in extra {
        url.query_pairs_mut().append_pair(name, value);
    }
    url.to_string()
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }

    fn str(&self, field: &str) -> Option<String> {
        self.json()[field].as_str().map(str::to_owned)
    }
}

async fn post_form(url: &str, form: &[(&str, &str)], basic: bool) -> Answer {
    let mut request = http_client().post(url).form(form);
    if basic {
        request = request.basic_auth("relay-test", Some("relay-secret"));
    }
    let response = request.send().await.unwrap();
    Answer {
        status: response.status(),
        headers: response.headers().clone(),
        text: response.text().await.unwrap(),
    }
}

async fn exchange(provider: &FakeProvider, code: &str, verifier: &str) -> Answer {
    post_form(
        &provider.token_url(),
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", verifier),
        ],
        true,
    )
    .await
}

async fn refresh(provider: &FakeProvider, refresh_token: &str) -> Answer {
    post_form(
        &provider.token_url(),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
        true,
    )
    .await
}

/// Runs the whole browser + code exchange flow; returns the token response.
async fn connect(provider: &FakeProvider, extra: &[(&str, &str)]) -> Answer {
    let pkce = Pkce::generate();
    let callback = follow_authorize(&authorize_url(provider, &pkce, extra)).await;
    let code = callback.code.expect("authorization code in the callback");
    let answer = exchange(provider, &code, &pkce.verifier).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer
}

async fn userinfo_status(provider: &FakeProvider, access_token: &str) -> StatusCode {
    http_client()
        .get(provider.userinfo_url())
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn discovery_document_describes_the_provider() {
    let provider = FakeProvider::start(FakeProviderConfig::default()).await;
    let issuer = provider.issuer();
    assert!(issuer.starts_with("http://127.0.0.1:") && !issuer.ends_with('/'));
    let doc: Value = http_client()
        .get(provider.discovery_url())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["issuer"], issuer);
    assert_eq!(doc["authorization_endpoint"], provider.authorization_url());
    assert_eq!(doc["token_endpoint"], provider.token_url());
    assert_eq!(doc["revocation_endpoint"], provider.revocation_url());
    assert_eq!(doc["userinfo_endpoint"], provider.userinfo_url());
    assert_eq!(doc["jwks_uri"], provider.jwks_url());
    assert_eq!(
        doc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(
        doc["token_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "client_secret_post"])
    );
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
}

#[tokio::test]
async fn code_flow_with_pkce_issues_working_tokens() {
    let provider = FakeProvider::start(FakeProviderConfig::default()).await;
    let pkce = Pkce::generate();
    let url = authorize_url(&provider, &pkce, &[("nonce", "n-1"), ("prompt", "consent")]);
    let callback = follow_authorize(&url).await;
    assert_eq!(callback.redirect_uri(), REDIRECT_URI);
    assert_eq!(callback.state.as_deref(), Some("state-123"));
    assert_eq!(callback.iss, Some(provider.issuer()));
    assert_eq!(callback.error, None);

    let query = provider.last_authorize_query().unwrap();
    assert_eq!(query["prompt"], "consent");
    assert_eq!(query["scope"], "openid email offline_access");
    assert_eq!(provider.authorize_requests(), 1);

    let answer = exchange(&provider, callback.code.as_deref().unwrap(), &pkce.verifier).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.headers["cache-control"], "no-store");
    let body = answer.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "openid email offline_access");
    let access = body["access_token"].as_str().unwrap();
    let refresh_token = body["refresh_token"].as_str().unwrap();
    assert!(provider.is_access_token_valid(access));
    assert!(provider.is_refresh_token_valid(refresh_token));
    assert_eq!(provider.code_exchanges(), 1);
    assert_eq!(provider.token_requests(), 1);

    // The ID token is a real ES256 JWT, verifiable with the published key.
    let id_token = body["id_token"].as_str().unwrap();
    let jwks: Value = http_client()
        .get(provider.jwks_url())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let claims = verify_es256(id_token, &jwks["keys"][0]);
    assert_eq!(claims["iss"], provider.issuer());
    assert_eq!(claims["aud"], "relay-test");
    assert_eq!(claims["sub"], "user-1");
    assert_eq!(claims["nonce"], "n-1");

    let response = http_client()
        .get(provider.userinfo_url())
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let info: Value = response.json().await.unwrap();
    assert_eq!(info["sub"], "user-1");
    assert_eq!(info["email"], "user-1@example.test");
}

fn verify_es256(jwt: &str, jwk: &Value) -> Value {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (signing_input, signature) = jwt.rsplit_once('.').unwrap();
    let mut point = vec![4u8];
    point.extend(b64.decode(jwk["x"].as_str().unwrap()).unwrap());
    point.extend(b64.decode(jwk["y"].as_str().unwrap()).unwrap());
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point)
        .verify(signing_input.as_bytes(), &b64.decode(signature).unwrap())
        .expect("ID token signature verifies with the JWKS key");
    let payload = signing_input.split('.').nth(1).unwrap();
    serde_json::from_slice(&b64.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn pkce_mismatch_is_invalid_grant() {
    let provider = FakeProvider::start(FakeProviderConfig::default()).await;
    let pkce = Pkce::generate();
    let callback = follow_authorize(&authorize_url(&provider, &pkce, &[])).await;
    let other = Pkce::generate();
    let answer = exchange(
        &provider,
        callback.code.as_deref().unwrap(),
        &other.verifier,
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error(), "invalid_grant");
    assert_eq!(answer.headers["cache-control"], "no-store");

    // A missing verifier is refused as well.
    let callback = follow_authorize(&authorize_url(&provider, &pkce, &[])).await;
    let answer = post_form(
        &provider.token_url(),
        &[
            ("grant_type", "authorization_code"),
            ("code", callback.code.as_deref().unwrap()),
            ("redirect_uri", REDIRECT_URI),
        ],
        true,
    )
    .await;
    assert_eq!(answer.error(), "invalid_grant");
}

#[tokio::test]
async fn code_reuse_is_invalid_grant_and_revokes_the_first_tokens() {
    let provider = FakeProvider::start(FakeProviderConfig::default()).await;
    let pkce = Pkce::generate();
    let callback = follow_authorize(&authorize_url(&provider, &pkce, &[])).await;
    let code = callback.code.unwrap();
    let first = exchange(&provider, &code, &pkce.verifier).await;
    assert_eq!(first.status, StatusCode::OK);
    let access = first.str("access_token").unwrap();
    assert!(provider.is_access_token_valid(&access));

    let second = exchange(&provider, &code, &pkce.verifier).await;
    assert_eq!(second.status, StatusCode::BAD_REQUEST);
    assert_eq!(second.error(), "invalid_grant");
    assert!(!provider.is_access_token_valid(&access));
    assert_eq!(provider.code_exchanges(), 2);
}

#[tokio::test]
async fn redirect_uri_must_match_on_exchange() {
    let provider = FakeProvider::start(FakeProviderConfig::default()).await;
    let pkce = Pkce::generate();
    let callback = follow_authorize(&authorize_url(&provider, &pkce, &[])).await;
    let answer = post_form(
        &provider.token_url(),
        &[
            ("grant_type", "authorization_code"),
            ("code", callback.code.as_deref().unwrap()),
            ("redirect_uri", "http://127.0.0.1:9/elsewhere"),
            ("code_verifier", &pkce.verifier),
        ],
        true,
    )
    .await;
    assert_eq!(answer.error(), "invalid_grant");
}

#[tokio::test]
async fn bad_authorization_requests_are_refused() {
    let provider = FakeProvider::start(FakeProviderConfig::default()).await;
    let pkce = Pkce::generate();

    // Missing PKCE: redirected back with invalid_request, state and iss.
    let url = authorize_url(&provider, &pkce, &[]).replace("code_challenge=", "x_challenge=");
    let callback = follow_authorize(&url).await;
    assert_eq!(callback.error.as_deref(), Some("invalid_request"));
    assert_eq!(callback.state.as_deref(), Some("state-123"));
    assert_eq!(callback.iss, Some(provider.issuer()));
    assert_eq!(callback.code, None);

    // plain is not supported.
    let url = authorize_url(&provider, &pkce, &[]).replace("method=S256", "method=plain");
    let callback = follow_authorize(&url).await;
    assert_eq!(callback.error.as_deref(), Some("invalid_request"));

    // Wrong response type.
    let url =
        authorize_url(&provider, &pkce, &[]).replace("response_type=code", "response_type=token");
    let callback = follow_authorize(&url).await;
    assert_eq!(callback.error.as_deref(), Some("unsupported_response_type"));

    // Unknown client: an error page, never a redirect.
    let url =
        authorize_url(&provider, &pkce, &[]).replace("client_id=relay-test", "client_id=evil");
    let response = http_client().get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().get("location").is_none());
    assert_eq!(provider.authorize_requests(), 4);
}

#[tokio::test]
async fn registered_redirect_uris_are_enforced() {
    let provider = FakeProvider::start(FakeProviderConfig {
        redirect_uris: vec!["http://127.0.0.1:9/other".to_owned()],
        ..FakeProviderConfig::default()
    })
    .await;
    let response = http_client()
        .get(authorize_url(&provider, &Pkce::generate(), &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn iss_modes_and_denial() {
    let omit = FakeProvider::start(FakeProviderConfig {
        iss_in_callback: IssMode::Omit,
        ..FakeProviderConfig::default()
    })
    .await;
    let callback = follow_authorize(&authorize_url(&omit, &Pkce::generate(), &[])).await;
    assert!(callback.code.is_some());
    assert_eq!(callback.iss, None);

    let wrong = FakeProvider::start(FakeProviderConfig {
        iss_in_callback: IssMode::Wrong,
        ..FakeProviderConfig::default()
    })
    .await;
    let callback = follow_authorize(&authorize_url(&wrong, &Pkce::generate(), &[])).await;
    assert_eq!(callback.iss.as_deref(), Some(WRONG_ISSUER));

    let provider = FakeProvider::start(FakeProviderConfig::default()).await;
    provider.deny_next_authorization();
    let denied: CallbackRedirect =
        follow_authorize(&authorize_url(&provider, &Pkce::generate(), &[])).await;
    assert_eq!(denied.error.as_deref(), Some("access_denied"));
    assert!(denied.error_description.is_some());
    assert_eq!(denied.state.as_deref(), Some("state-123"));
    assert_eq!(denied.code, None);
    // Only the next one.
    let approved = follow_authorize(&authorize_url(&provider, &Pkce::generate(), &[])).await;
    assert!(approved.code.is_some());
}

#[tokio::test]
async fn client_authentication_methods() {
    let provider = FakeProvider::start(FakeProviderConfig::default()).await;
    let (_, refresh_token) = provider.issue_tokens_directly();

    // client_secret_post
    let answer = post_form(
        &provider.token_url(),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
            ("client_id", "relay-test"),
            ("client_secret", "relay-secret"),
        ],
        false,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);

    // Wrong secret, either way.
    let answer = post_form(
        &provider.token_url(),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
            ("client_id", "relay-test"),
            ("client_secret", "nope"),
        ],
        false,
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.error(), "invalid_client");
    let response = http_client()
        .post(provider.token_url())
        .basic_auth("relay-test", Some("nope"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().get("www-authenticate").is_some());

    // No credentials.
    let answer = post_form(
        &provider.token_url(),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
        ],
        false,
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);

    // Two methods at once.
    let answer = post_form(
        &provider.token_url(),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
            ("client_secret", "relay-secret"),
        ],
        true,
    )
    .await;
    assert_eq!(answer.error(), "invalid_request");
    assert_eq!(provider.refresh_requests(), 5);
}

#[tokio::test]
async fn rotating_mode_rotates_and_reuse_kills_the_family() {
    let provider = FakeProvider::start(FakeProviderConfig::microsoft()).await;
    let tokens = connect(&provider, &[]).await;
    let access0 = tokens.str("access_token").unwrap();
    let rt0 = tokens.str("refresh_token").unwrap();

    let first = refresh(&provider, &rt0).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let rt1 = first.str("refresh_token").unwrap();
    let access1 = first.str("access_token").unwrap();
    assert_ne!(rt1, rt0);
    assert!(!provider.is_refresh_token_valid(&rt0));
    assert!(provider.is_refresh_token_valid(&rt1));
    assert_eq!(provider.current_refresh_token_for(&rt0), Some(rt1.clone()));
    assert_eq!(
        provider.current_refresh_token_for(&access0),
        Some(rt1.clone())
    );

    let second = refresh(&provider, &rt1).await;
    let rt2 = second.str("refresh_token").unwrap();
    assert_ne!(rt2, rt1);

    // Replay of a rotated token: invalid_grant, and the whole family dies.
    let replay = refresh(&provider, &rt0).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    assert_eq!(replay.error(), "invalid_grant");
    assert!(!provider.is_refresh_token_valid(&rt2));
    assert!(!provider.is_access_token_valid(&access0));
    assert!(!provider.is_access_token_valid(&access1));
    assert_eq!(provider.current_refresh_token_for(&rt2), None);
    let newest = refresh(&provider, &rt2).await;
    assert_eq!(newest.error(), "invalid_grant");
    assert_eq!(
        userinfo_status(&provider, &access1).await,
        StatusCode::UNAUTHORIZED
    );

    assert_eq!(
        provider.presented_refresh_tokens(),
        vec![rt0.clone(), rt1, rt0, rt2]
    );
    assert_eq!(provider.refresh_requests(), 4);
    assert_eq!(provider.code_exchanges(), 1);
    assert_eq!(provider.token_requests(), 5);
}

#[tokio::test]
async fn microsoft_needs_offline_access_for_a_refresh_token() {
    let provider = FakeProvider::start(FakeProviderConfig::microsoft()).await;
    let pkce = Pkce::generate();
    let url = authorize_url(&provider, &pkce, &[]).replace("offline_access", "profile");
    let callback = follow_authorize(&url).await;
    let answer = exchange(&provider, callback.code.as_deref().unwrap(), &pkce.verifier).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.str("refresh_token"), None);
}

#[tokio::test]
async fn google_mode_keeps_the_refresh_token() {
    let provider = FakeProvider::start(FakeProviderConfig::google()).await;

    // Without access_type=offline Google returns no refresh token.
    let online = connect(&provider, &[]).await;
    assert_eq!(online.str("refresh_token"), None);

    let tokens = connect(
        &provider,
        &[("access_type", "offline"), ("prompt", "consent")],
    )
    .await;
    assert_eq!(
        provider.last_authorize_query().unwrap()["access_type"],
        "offline"
    );
    let rt = tokens.str("refresh_token").unwrap();
    for _ in 0..3 {
        let answer = refresh(&provider, &rt).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        let body = answer.json();
        assert!(body.get("refresh_token").is_none(), "{body}");
        let access = body["access_token"].as_str().unwrap();
        assert!(provider.is_access_token_valid(access));
        assert!(provider.is_refresh_token_valid(&rt));
    }
    assert_eq!(provider.current_refresh_token_for(&rt), Some(rt.clone()));
}

#[tokio::test]
async fn static_mode_returns_the_same_refresh_token() {
    let provider = FakeProvider::start(FakeProviderConfig::default()).await;
    let (access, rt) = provider.issue_tokens_directly();
    assert!(provider.is_access_token_valid(&access));
    let answer = refresh(&provider, &rt).await;
    assert_eq!(answer.str("refresh_token"), Some(rt.clone()));
    let again = refresh(&provider, &rt).await;
    assert_eq!(again.str("refresh_token"), Some(rt));
    assert_ne!(answer.str("access_token"), again.str("access_token"));
}

#[tokio::test]
async fn unknown_refresh_token_and_narrowed_scope() {
    let provider = FakeProvider::start(FakeProviderConfig::default()).await;
    let answer = refresh(&provider, "rt-unknown").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error(), "invalid_grant");
    assert!(answer.json()["error_description"].is_string());

    let (_, rt) = provider.issue_tokens_directly_with_scope("openid email");
    let wider = post_form(
        &provider.token_url(),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt),
            ("scope", "openid calendar"),
        ],
        true,
    )
    .await;
    assert_eq!(wider.error(), "invalid_scope");
    let narrower = post_form(
        &provider.token_url(),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt),
            ("scope", "email"),
        ],
        true,
    )
    .await;
    assert_eq!(narrower.str("scope").as_deref(), Some("email"));
}

#[tokio::test]
async fn revocation_of_a_refresh_token_revokes_the_grant() {
    let provider = FakeProvider::start(FakeProviderConfig::microsoft()).await;
    let (access, rt) = provider.issue_tokens_directly();
    let answer = post_form(
        &provider.revocation_url(),
        &[("token", &rt), ("token_type_hint", "refresh_token")],
        true,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(!provider.is_refresh_token_valid(&rt));
    assert!(!provider.is_access_token_valid(&access));
    assert_eq!(refresh(&provider, &rt).await.error(), "invalid_grant");

    // Unknown tokens: still 200 (RFC 7009 §2.2).
    let answer = post_form(&provider.revocation_url(), &[("token", "whatever")], true).await;
    assert_eq!(answer.status, StatusCode::OK);

    // Client authentication is required outside Google mode.
    let answer = post_form(&provider.revocation_url(), &[("token", "whatever")], false).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);

    assert_eq!(
        provider.revocations(),
        vec![
            (rt, Some("refresh_token".to_owned())),
            ("whatever".to_owned(), None)
        ]
    );
}

#[tokio::test]
async fn revocation_of_an_access_token() {
    // Generic: only that access token.
    let provider = FakeProvider::start(FakeProviderConfig::default()).await;
    let (access, rt) = provider.issue_tokens_directly();
    post_form(&provider.revocation_url(), &[("token", &access)], true).await;
    assert!(!provider.is_access_token_valid(&access));
    assert!(provider.is_refresh_token_valid(&rt));

    // Google: the whole grant, and no client authentication needed.
    let google = FakeProvider::start(FakeProviderConfig::google()).await;
    let (access, rt) = google.issue_tokens_directly();
    let answer = post_form(&google.revocation_url(), &[("token", &access)], false).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(!google.is_refresh_token_valid(&rt));
}

#[tokio::test]
async fn rate_limit_and_server_errors_are_injected_in_order() {
    let provider = FakeProvider::start(FakeProviderConfig::default()).await;
    let (_, rt) = provider.issue_tokens_directly();
    provider.push_token_failure(Failure::RateLimited {
        retry_after_secs: 7,
    });
    provider.push_token_failure(Failure::Status(503));
    provider.push_token_failure(Failure::InvalidGrant);
    provider.push_token_failure(Failure::OAuthError {
        status: 503,
        error: "temporarily_unavailable".to_owned(),
    });

    let limited = refresh(&provider, &rt).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers["retry-after"], "7");

    let unavailable = refresh(&provider, &rt).await;
    assert_eq!(unavailable.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(serde_json::from_str::<Value>(&unavailable.text).is_err());

    let invalid = refresh(&provider, &rt).await;
    assert_eq!(invalid.error(), "invalid_grant");

    let json_error = refresh(&provider, &rt).await;
    assert_eq!(json_error.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json_error.error(), "temporarily_unavailable");

    // The injected invalid_grant did not harm the real token.
    let ok = refresh(&provider, &rt).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(provider.refresh_requests(), 5);
    assert_eq!(provider.pending_failures(), 0);
}

#[tokio::test]
async fn targeted_failures_skip_other_grants() {
    let provider = FakeProvider::start(FakeProviderConfig::default()).await;
    provider.push_refresh_failure(Failure::Status(502));
    // A code exchange goes through untouched...
    let tokens = connect(&provider, &[]).await;
    assert_eq!(provider.pending_failures(), 1);
    // ...and the next refresh gets the failure.
    let rt = tokens.str("refresh_token").unwrap();
    assert_eq!(
        refresh(&provider, &rt).await.status,
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(refresh(&provider, &rt).await.status, StatusCode::OK);

    provider.push_code_failure(Failure::InvalidGrant);
    assert_eq!(refresh(&provider, &rt).await.status, StatusCode::OK);
    let pkce = Pkce::generate();
    let callback = follow_authorize(&authorize_url(&provider, &pkce, &[])).await;
    let answer = exchange(&provider, callback.code.as_deref().unwrap(), &pkce.verifier).await;
    assert_eq!(answer.error(), "invalid_grant");
}

#[tokio::test]
async fn delays_slow_down_token_answers() {
    let provider = FakeProvider::start(FakeProviderConfig::default()).await;
    let (_, rt) = provider.issue_tokens_directly();

    provider.push_token_failure(Failure::Delay(Duration::from_millis(300)));
    let started = Instant::now();
    assert_eq!(refresh(&provider, &rt).await.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));

    provider.set_token_delay(Duration::from_millis(800));
    let started = Instant::now();
    assert_eq!(refresh(&provider, &rt).await.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(800));

    provider.set_token_delay(Duration::ZERO);
    let started = Instant::now();
    assert_eq!(refresh(&provider, &rt).await.status, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_millis(800));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counters_are_exact_under_concurrency() {
    let provider = std::sync::Arc::new(FakeProvider::start(FakeProviderConfig::google()).await);
    let (_, rt) = provider.issue_tokens_directly();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let provider = provider.clone();
        let rt = rt.clone();
        tasks.push(tokio::spawn(async move {
            let answer = refresh(&provider, &rt).await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
            answer.str("access_token").unwrap()
        }));
    }
    let mut access_tokens = std::collections::HashSet::new();
    for task in tasks {
        access_tokens.insert(task.await.unwrap());
    }
    assert_eq!(access_tokens.len(), 50);
    assert!(
        access_tokens
            .iter()
            .all(|t| provider.is_access_token_valid(t))
    );
    assert_eq!(provider.refresh_requests(), 50);
    assert_eq!(provider.token_requests(), 50);
    assert_eq!(provider.code_exchanges(), 0);
    assert_eq!(provider.presented_refresh_tokens(), vec![rt; 50]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refreshes_of_a_rotating_token_leave_a_dead_family() {
    // What a Relay without single-flight refresh would cause at Microsoft.
    let provider = std::sync::Arc::new(FakeProvider::start(FakeProviderConfig::microsoft()).await);
    let (_, rt) = provider.issue_tokens_directly();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let provider = provider.clone();
        let rt = rt.clone();
        tasks.push(tokio::spawn(
            async move { refresh(&provider, &rt).await.status },
        ));
    }
    let mut statuses: HashMap<StatusCode, usize> = HashMap::new();
    for task in tasks {
        *statuses.entry(task.await.unwrap()).or_default() += 1;
    }
    assert_eq!(statuses.get(&StatusCode::OK), Some(&1));
    assert_eq!(statuses.get(&StatusCode::BAD_REQUEST), Some(&9));
    assert_eq!(provider.current_refresh_token_for(&rt), None);
}

#[tokio::test]
async fn userinfo_requires_a_valid_bearer_token() {
    let provider = FakeProvider::start(FakeProviderConfig {
        expires_in: 60,
        ..FakeProviderConfig::default()
    })
    .await;
    let (access, _) = provider.issue_tokens_directly();
    assert_eq!(userinfo_status(&provider, &access).await, StatusCode::OK);

    let response = http_client()
        .get(provider.userinfo_url())
        .bearer_auth("at-forged")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\""),
        "{challenge}"
    );

    assert!(provider.expire_access_token(&access));
    assert_eq!(
        userinfo_status(&provider, &access).await,
        StatusCode::UNAUTHORIZED
    );
    assert!(!provider.is_access_token_valid(&access));
    assert_eq!(provider.userinfo_requests(), 3);
}

#[tokio::test]
async fn revoke_grant_simulates_the_user_removing_the_app() {
    let provider = FakeProvider::start(FakeProviderConfig::google()).await;
    let (access, rt) = provider.issue_tokens_directly();
    assert!(provider.revoke_grant(&rt));
    assert!(!provider.is_access_token_valid(&access));
    assert_eq!(refresh(&provider, &rt).await.error(), "invalid_grant");
    assert!(!provider.revoke_grant("unknown"));
}

#[tokio::test]
async fn token_requests_must_be_well_formed() {
    let provider = FakeProvider::start(FakeProviderConfig::default()).await;
    let response = http_client()
        .post(provider.token_url())
        .basic_auth("relay-test", Some("relay-secret"))
        .json(&serde_json::json!({"grant_type": "refresh_token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");

    let answer = post_form(&provider.token_url(), &[("grant_type", "password")], true).await;
    assert_eq!(answer.error(), "unsupported_grant_type");
    let answer = post_form(
        &provider.token_url(),
        &[
            ("grant_type", "refresh_token"),
            ("grant_type", "refresh_token"),
        ],
        true,
    )
    .await;
    assert_eq!(answer.error(), "invalid_request");
}

#[tokio::test]
async fn dropping_the_provider_closes_the_port() {
    let provider = FakeProvider::start(FakeProviderConfig::default()).await;
    let url = provider.discovery_url();
    assert!(http_client().get(&url).send().await.is_ok());
    drop(provider);
    let mut refused = false;
    for _ in 0..50 {
        // A fresh client: no pooled keep-alive connection to the old server.
        if http_client().get(&url).send().await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        refused,
        "the fake provider still answers after being dropped"
    );
}

#[test]
fn one_provider_outlives_the_runtime_that_used_it() {
    let provider = FakeProvider::start_blocking(FakeProviderConfig::default());
    for _ in 0..2 {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (_, rt) = provider.issue_tokens_directly();
        let status = runtime.block_on(async { refresh(&provider, &rt).await.status });
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(provider.refresh_requests(), 2);
}
