//! A fake of Google's token endpoint for service accounts (the JWT bearer grant, RFC 7523
//! section 2.1, as "Using OAuth 2.0 for Server to Server Applications" documents it) on
//! loopback. It checks every assertion the way Google does: RS256 signature against the
//! service account's public key, `iss` = the account's email, `aud` = this token endpoint,
//! a `sub` and a `scope`, `iat` not in the future and `exp` at most an hour after it; and
//! answers `{"access_token", "expires_in", "token_type"}`, or Google's errors:
//! `invalid_grant` ("Invalid JWT Signature.", "Invalid JWT: ...") and 401 `unauthorized_client`
//! when the domain-wide delegation does not cover the user or scopes.
//!
//! [`generate_rsa_key`] makes a throwaway key pair per test (Python's `cryptography`), so no
//! private key is ever committed.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::api_server::Background;

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

#[derive(Default)]
struct Ledger {
    requests: u64,
    /// The claims of every assertion that was accepted.
    grants: Vec<Value>,
    issued: Vec<String>,
    /// Subjects the delegation does not cover (answered `unauthorized_client`).
    refused_subjects: HashSet<String>,
    withdrawn: bool,
}

struct Inner {
    client_email: String,
    /// PKCS#1 `RSAPublicKey` DER, what ring verifies with.
    public_key: Vec<u8>,
    token_url: OnceLock<String>,
    ledger: Mutex<Ledger>,
}

pub struct FakeServiceAccountToken {
    inner: Arc<Inner>,
    server: Background,
}

impl FakeServiceAccountToken {
    /// Serves `POST /token` for the service account `client_email` whose public key is
    /// `public_key_pkcs1_der`.
    pub fn start(client_email: &str, public_key_pkcs1_der: Vec<u8>) -> Self {
        let inner = Arc::new(Inner {
            client_email: client_email.to_owned(),
            public_key: public_key_pkcs1_der,
            token_url: OnceLock::new(),
            ledger: Mutex::new(Ledger::default()),
        });
        let app = Router::new()
            .route("/token", post(token))
            .with_state(inner.clone());
        let server = Background::start("fake-sa-token", app);
        let _ = inner.token_url.set(format!("{}/token", server.base_url()));
        Self { inner, server }
    }

    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// The token endpoint, which assertions must name as their `aud`.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.server.base_url())
    }

    /// Token requests received, whatever their outcome.
    pub fn requests(&self) -> u64 {
        self.inner.ledger.lock().unwrap().requests
    }

    /// The verified claims of each accepted assertion, oldest first.
    pub fn grants(&self) -> Vec<Value> {
        self.inner.ledger.lock().unwrap().grants.clone()
    }

    pub fn is_access_token_valid(&self, token: &str) -> bool {
        self.inner
            .ledger
            .lock()
            .unwrap()
            .issued
            .iter()
            .any(|t| t == token)
    }

    /// From now on the delegation covers no one: every request answers `unauthorized_client`.
    pub fn withdraw_delegation(&self) {
        self.inner.ledger.lock().unwrap().withdrawn = true;
    }

    /// The delegation does not cover `subject`.
    pub fn refuse_subject(&self, subject: &str) {
        self.inner
            .ledger
            .lock()
            .unwrap()
            .refused_subjects
            .insert(subject.to_owned());
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn invalid_grant(description: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

async fn token(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    inner.ledger.lock().unwrap().requests += 1;
    let form: std::collections::HashMap<String, String> = url::form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if form.get("grant_type").map(String::as_str) != Some(JWT_BEARER) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Invalid grant_type",
        );
    }
    let Some(assertion) = form.get("assertion") else {
        return invalid_grant("Invalid JWT: missing assertion");
    };
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return invalid_grant("Invalid JWT: not three segments");
    };
    let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).ok();
    let (Some(header), Some(claims_raw), Some(signature)) =
        (decode(header), decode(claims), decode(signature))
    else {
        return invalid_grant("Invalid JWT: not base64url");
    };
    let header: Value = serde_json::from_slice(&header).unwrap_or(Value::Null);
    if header["alg"] != "RS256" {
        return invalid_grant("Invalid JWT: alg must be RS256");
    }
    let signing_input = format!("{}.{}", parts[0], parts[1]);
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        &inner.public_key,
    );
    if key.verify(signing_input.as_bytes(), &signature).is_err() {
        return invalid_grant("Invalid JWT Signature.");
    }
    let claims: Value = match serde_json::from_slice(&claims_raw) {
        Ok(v) => v,
        Err(_) => return invalid_grant("Invalid JWT: claims are not JSON"),
    };
    if claims["iss"] != inner.client_email.as_str() {
        return invalid_grant("Invalid JWT: iss is not the service account");
    }
    if Some(claims["aud"].as_str().unwrap_or_default()) != inner.token_url.get().map(String::as_str)
    {
        return invalid_grant("Invalid JWT: Invalid audience");
    }
    let sub = claims["sub"].as_str().unwrap_or_default().to_owned();
    let scope = claims["scope"].as_str().unwrap_or_default();
    if sub.is_empty() || scope.trim().is_empty() {
        return invalid_grant("Invalid JWT: sub and scope are required");
    }
    let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
        return invalid_grant("Invalid JWT: iat and exp are required");
    };
    let now = now_secs();
    if iat > now + 60 || exp <= now || exp - iat > 3600 || exp <= iat {
        return invalid_grant(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
        );
    }
    let mut ledger = inner.ledger.lock().unwrap();
    if ledger.withdrawn || ledger.refused_subjects.contains(&sub) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized_client",
            "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.",
        );
    }
    let access_token = format!("ya29.sa-{}", crate::random_token(18));
    ledger.issued.push(access_token.clone());
    ledger.grants.push(claims);
    (
        StatusCode::OK,
        axum::Json(
            json!({"access_token": access_token, "expires_in": 3599, "token_type": "Bearer"}),
        ),
    )
        .into_response()
}

/// A fresh 2048-bit RSA key pair from Python's `cryptography`: the private key as PKCS#8 PEM
/// (what a Google service account key file holds) and the public key as PKCS#1 DER.
pub fn generate_rsa_key() -> (String, Vec<u8>) {
    let script = "from cryptography.hazmat.primitives.asymmetric import rsa\n\
from cryptography.hazmat.primitives import serialization as s\n\
import base64, json\n\
k = rsa.generate_private_key(public_exponent=65537, key_size=2048)\n\
print(json.dumps({'pem': k.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()).decode(),\n\
 'public': base64.b64encode(k.public_key().public_bytes(s.Encoding.DER, s.PublicFormat.PKCS1)).decode()}))";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .output()
        .expect("python3 with cryptography");
    assert!(
        out.status.success(),
        "generating an RSA key: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["pem"].as_str().unwrap().to_owned(),
        STANDARD.decode(v["public"].as_str().unwrap()).unwrap(),
    )
}
