//! Requests to a provider's token and revocation endpoints (RFC 6749 §4.1.3, §6; RFC 7009),
//! with every answer classified where its HTTP status is known:
//!
//! | answer | classification |
//! |---|---|
//! | 2xx with an `access_token` | success |
//! | `invalid_grant` | the grant is dead ([`OAuthError::InvalidGrant`]) |
//! | 429, 5xx, `temporarily_unavailable`, `server_error`, timeouts, connection errors | [`OAuthError::Transient`], with `Retry-After` |
//! | any other error | [`OAuthError::Rejected`] (misconfiguration; retrying will not help) |
//!
//! Bodies are read up to a cap ([`TOKEN_RESPONSE_MAX`]) and parsed, never logged: they carry
//! tokens.

use std::time::Duration;

use relay_core::Scopes;
use relay_core::oauth::{OAuthError, TokenSet};
use secrecy::SecretString;
use serde::Deserialize;

use crate::discovery::without_url;
use crate::limited_body::{BodyError, TOKEN_RESPONSE_MAX, read_limited};
use crate::settings::TokenAuthMethod;

/// Client credentials for one provider.
#[derive(Clone)]
pub struct ClientAuth {
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    pub method: TokenAuthMethod,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default, deserialize_with = "number_or_string")]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// Some providers send `expires_in` as a string ("3599"); RFC 6749 says number.
fn number_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrStr {
        Num(u64),
        Float(f64),
        Str(String),
    }
    Ok(match Option::<NumOrStr>::deserialize(d)? {
        None => None,
        Some(NumOrStr::Num(n)) => Some(n),
        Some(NumOrStr::Float(f)) if f.is_finite() && f >= 0.0 => Some(f as u64),
        Some(NumOrStr::Float(_)) => None,
        Some(NumOrStr::Str(s)) => s.trim().parse().ok(),
    })
}

/// `application/x-www-form-urlencoded` per RFC 6749 §2.3.1 (Basic credentials are
/// form-encoded before base64, which matters for secrets with special characters).
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn apply_auth(
    req: reqwest::RequestBuilder,
    form: &mut Vec<(&'static str, String)>,
    auth: &ClientAuth,
) -> reqwest::RequestBuilder {
    use secrecy::ExposeSecret;
    match (auth.method, &auth.client_secret) {
        (TokenAuthMethod::ClientSecretBasic, Some(secret)) => req.basic_auth(
            form_encode(&auth.client_id),
            Some(form_encode(secret.expose_secret())),
        ),
        (TokenAuthMethod::ClientSecretPost, Some(secret)) => {
            form.push(("client_id", auth.client_id.clone()));
            form.push(("client_secret", secret.expose_secret().to_owned()));
            req
        }
        _ => {
            form.push(("client_id", auth.client_id.clone()));
            req
        }
    }
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    // Delta-seconds only; an HTTP-date is rare at token endpoints and treated as absent.
    v.trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(3600)))
}

fn transport_error(e: &reqwest::Error) -> OAuthError {
    OAuthError::Transient {
        detail: without_url(e),
        retry_after: None,
        timed_out: e.is_timeout(),
    }
}

/// Posts a token request and classifies the answer.
pub async fn token_request(
    http: &reqwest::Client,
    token_url: &str,
    auth: &ClientAuth,
    mut form: Vec<(&'static str, String)>,
) -> Result<TokenSet, OAuthError> {
    let req = http
        .post(token_url)
        .header(reqwest::header::ACCEPT, "application/json");
    let req = apply_auth(req, &mut form, auth);
    send(req, form, &["invalid_grant"]).await
}

/// The JWT bearer grant (RFC 7523 section 2.1): the signed assertion is the only credential, no
/// client authentication. `unauthorized_client` (Google: the service account is not allowed
/// to act for that user or those scopes, i.e. the delegation was withdrawn) is a dead grant
/// too, like `invalid_grant`: retrying will not help until an administrator acts.
pub async fn jwt_bearer_request(
    http: &reqwest::Client,
    token_url: &str,
    assertion: String,
) -> Result<TokenSet, OAuthError> {
    let req = http
        .post(token_url)
        .header(reqwest::header::ACCEPT, "application/json");
    let form = vec![
        ("grant_type", JWT_BEARER_GRANT.to_owned()),
        ("assertion", assertion),
    ];
    send(req, form, &["invalid_grant", "unauthorized_client"]).await
}

/// The grant type of RFC 7523 section 2.1.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Sends a token request; `dead_grant_errors` are the OAuth error codes that mean the grant
/// no longer works ([`OAuthError::InvalidGrant`]).
async fn send(
    req: reqwest::RequestBuilder,
    form: Vec<(&'static str, String)>,
    dead_grant_errors: &[&str],
) -> Result<TokenSet, OAuthError> {
    let resp = req
        .form(&form)
        .send()
        .await
        .map_err(|e| transport_error(&e))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = match read_limited(resp, TOKEN_RESPONSE_MAX).await {
        Ok(b) => b,
        Err(BodyError::Transport(e)) => return Err(transport_error(&e)),
        Err(e @ BodyError::TooLarge { .. }) => {
            return Err(OAuthError::Rejected {
                detail: format!("token endpoint answered HTTP {status}, but {e}"),
            });
        }
    };
    if status.is_success() {
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|_| OAuthError::Rejected {
                detail: format!(
                    "token endpoint answered HTTP {status} with a body that is not a token response"
                ),
            })?;
        let scope = match parsed.scope.as_deref() {
            Some(s) => Some(Scopes::parse(s).map_err(|e| OAuthError::Rejected {
                detail: format!("token endpoint returned invalid scopes: {e}"),
            })?),
            None => None,
        };
        return Ok(TokenSet {
            access_token: SecretString::from(parsed.access_token.unwrap_or_default()),
            refresh_token: parsed
                .refresh_token
                .filter(|t| !t.is_empty())
                .map(SecretString::from),
            token_type: parsed.token_type.unwrap_or_else(|| "Bearer".into()),
            expires_in: parsed.expires_in,
            scope,
            id_token: parsed
                .id_token
                .filter(|t| !t.is_empty())
                .map(SecretString::from),
        });
    }
    Err(classify_error(
        status.as_u16(),
        &headers,
        &body,
        dead_grant_errors,
    ))
}

fn classify_error(
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
    dead_grant_errors: &[&str],
) -> OAuthError {
    let parsed: Option<ErrorResponse> = serde_json::from_slice(body).ok();
    let described = |e: &ErrorResponse| match &e.error_description {
        Some(d) => format!("{}: {}", e.error, clean(d)),
        None => e.error.clone(),
    };
    if status == 429 || status >= 500 {
        return OAuthError::Transient {
            detail: match &parsed {
                Some(e) => format!("HTTP {status} ({})", described(e)),
                None => format!("HTTP {status}"),
            },
            retry_after: retry_after(headers),
            timed_out: false,
        };
    }
    match parsed {
        Some(e) if e.error == "invalid_grant" => OAuthError::InvalidGrant {
            description: e
                .error_description
                .as_deref()
                .map(clean)
                .unwrap_or_else(|| "the grant is invalid, expired or revoked".into()),
        },
        // Another code that means a dead grant here: said first, so the reason names it.
        Some(e) if dead_grant_errors.contains(&e.error.as_str()) => OAuthError::InvalidGrant {
            description: described(&e),
        },
        Some(e) if e.error == "temporarily_unavailable" || e.error == "server_error" => {
            OAuthError::Transient {
                detail: described(&e),
                retry_after: retry_after(headers),
                timed_out: false,
            }
        }
        Some(e) => OAuthError::Rejected {
            detail: format!("HTTP {status}: {}", described(&e)),
        },
        None => OAuthError::Rejected {
            detail: format!("HTTP {status} without an OAuth error body"),
        },
    }
}

/// Provider error descriptions are shown to API callers: strip control characters, bound length.
fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// RFC 7009 revocation. `Ok(())` for 200 (the RFC answers 200 for unknown tokens too).
pub async fn revoke(
    http: &reqwest::Client,
    revocation_url: &str,
    auth: &ClientAuth,
    token: &str,
    hint: &'static str,
) -> Result<(), OAuthError> {
    let mut form = vec![
        ("token", token.to_owned()),
        ("token_type_hint", hint.to_owned()),
    ];
    let req = apply_auth(http.post(revocation_url), &mut form, auth);
    let resp = req
        .form(&form)
        .send()
        .await
        .map_err(|e| transport_error(&e))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let headers = resp.headers().clone();
    let body = read_limited(resp, TOKEN_RESPONSE_MAX)
        .await
        .unwrap_or_default();
    match classify_error(status.as_u16(), &headers, &body, &["invalid_grant"]) {
        // At a revocation endpoint, invalid_grant-like answers mean the token is already dead.
        OAuthError::InvalidGrant { .. } => Ok(()),
        other => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limited_body::tests::huge_answer;

    fn auth() -> ClientAuth {
        ClientAuth {
            client_id: "relay-test".into(),
            client_secret: None,
            method: TokenAuthMethod::None,
        }
    }

    /// A token endpoint answering 1 GiB gets a classified error once the cap is passed, not
    /// an out-of-memory.
    #[tokio::test]
    async fn a_huge_token_answer_is_refused_at_the_cap() {
        let url = huge_answer("content-type: application/json\r\n", b' ', 1 << 30).await;
        let err = token_request(
            &crate::http_client(std::time::Duration::from_secs(30)).expect("client"),
            &url,
            &auth(),
            vec![],
        )
        .await
        .expect_err("refused");
        match err {
            OAuthError::Rejected { detail } => assert!(detail.contains("larger than"), "{detail}"),
            other => panic!("expected rejected, got {other:?}"),
        }
    }

    /// A provider's `scope` answer of ~110,000 distinct scopes (what fits in the body cap) is
    /// refused at the 101st, quickly: the scope parser no longer de-duplicates quadratically.
    #[tokio::test]
    async fn a_token_answer_with_too_many_scopes_is_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let scopes: Vec<String> = (0..35_000).map(|i| format!("s{i}")).collect();
        let body = serde_json::json!({"access_token": "at", "token_type": "Bearer",
            "scope": scopes.join(" ")})
        .to_string();
        assert!(body.len() < TOKEN_RESPONSE_MAX);
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            if let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(answer.as_bytes()).await;
            }
        });
        let (http, url, auth) = (
            crate::http_client(std::time::Duration::from_secs(30)).expect("client"),
            format!("http://{addr}"),
            auth(),
        );
        let call = token_request(&http, &url, &auth, vec![]);
        let err = tokio::time::timeout(Duration::from_secs(20), call)
            .await
            .expect("answered without quadratic work")
            .expect_err("refused");
        match err {
            OAuthError::Rejected { detail } => assert!(detail.contains("at most 100"), "{detail}"),
            other => panic!("expected rejected, got {other:?}"),
        }
    }
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    #[test]
    fn unauthorized_client_is_a_dead_grant_only_where_asked() {
        let none = HeaderMap::new();
        let body = br#"{"error":"unauthorized_client","error_description":"Client is unauthorized to retrieve access tokens using this method"}"#;
        assert!(matches!(
            classify_error(401, &none, body, &["invalid_grant"]),
            OAuthError::Rejected { .. }
        ));
        match classify_error(401, &none, body, &["invalid_grant", "unauthorized_client"]) {
            OAuthError::InvalidGrant { description } => assert_eq!(
                description,
                "unauthorized_client: Client is unauthorized to retrieve access tokens using this method"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn classifies_token_endpoint_errors() {
        let none = HeaderMap::new();
        let mut ra = HeaderMap::new();
        ra.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        let cases: Vec<(u16, &HeaderMap, &str, &str)> = vec![
            (
                400,
                &none,
                r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#,
                "grant",
            ),
            (400, &none, r#"{"error":"invalid_client"}"#, "rejected"),
            (401, &none, r#"{"error":"invalid_client"}"#, "rejected"),
            (
                400,
                &none,
                r#"{"error":"temporarily_unavailable"}"#,
                "transient",
            ),
            (500, &none, "<html>oops</html>", "transient"),
            (503, &none, r#"{"error":"server_error"}"#, "transient"),
            (429, &ra, "", "transient"),
            (400, &none, "not json", "rejected"),
        ];
        for (status, headers, body, want) in cases {
            let got = classify_error(status, headers, body.as_bytes(), &["invalid_grant"]);
            let kind = match &got {
                OAuthError::InvalidGrant { .. } => "grant",
                OAuthError::Transient { .. } => "transient",
                OAuthError::Rejected { .. } => "rejected",
                OAuthError::UnknownProvider => "unknown",
            };
            assert_eq!(kind, want, "{status} {body}: {got:?}");
        }
        match classify_error(429, &ra, b"", &["invalid_grant"]) {
            OAuthError::Transient { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(7)))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn expires_in_accepts_numbers_and_strings() {
        for (body, want) in [
            (r#"{"access_token":"a","expires_in":3599}"#, Some(3599)),
            (r#"{"access_token":"a","expires_in":"3599"}"#, Some(3599)),
            (r#"{"access_token":"a","expires_in":3599.0}"#, Some(3599)),
            (r#"{"access_token":"a"}"#, None),
        ] {
            let t: TokenResponse = serde_json::from_str(body).expect("parses");
            assert_eq!(t.expires_in, want, "{body}");
        }
    }

    #[test]
    fn basic_credentials_are_form_encoded_first() {
        assert_eq!(form_encode("a b+c/é"), "a+b%2Bc%2F%C3%A9");
    }
}
