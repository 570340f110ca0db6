//! OpenID Connect ID token validation (OIDC Core §3.1.3.7), so that Relay knows *which*
//! provider account a connect flow linked and can refuse a flow finished by the wrong person
//! (connection fixation).
//!
//! Checked: the signature against the provider's JWKS (RS256, ES256; `none` and HMAC are
//! refused), `iss` equal to the provider's issuer, `aud` containing our client id (and `azp`,
//! when there are several audiences), `exp` not passed (60 s leeway), and `nonce` equal to the
//! one sent in the authorization request. The JWKS is fetched on first use, cached, and
//! fetched again when a token names a key it does not hold (at most once a minute, so a
//! stream of forged `kid`s cannot make Relay hammer the provider). Bodies are read with a cap.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::discovery::without_url;

/// How far `exp` may be behind our clock (clock skew between us and the provider).
const LEEWAY_SECS: i64 = 60;
/// The largest JWKS or userinfo body read; real ones are a few KB.
pub(crate) const MAX_BODY_BYTES: usize = 256 * 1024;
/// The least time between two fetches prompted by an unknown `kid`.
const REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// The largest ID token accepted (before any decoding).
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why an ID token was refused. Messages name the check, never the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    #[error("the ID token is malformed: {0}")]
    Malformed(&'static str),
    #[error("the ID token uses an unsupported algorithm ({0}); RS256 and ES256 are accepted")]
    UnsupportedAlgorithm(String),
    #[error("the ID token is signed with a key the provider does not publish")]
    UnknownKey,
    #[error("the ID token's signature is invalid")]
    BadSignature,
    #[error("the ID token was issued by {0}, not by this provider")]
    WrongIssuer(String),
    #[error("the ID token was issued for another client")]
    WrongAudience,
    #[error("the ID token has expired")]
    Expired,
    #[error("the ID token's nonce does not match this sign-in")]
    WrongNonce,
    #[error("the provider's keys could not be fetched: {0}")]
    KeysUnavailable(String),
}

/// What the token is checked against.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    /// The nonce sent in the authorization request, if one was.
    pub nonce: Option<&'a str>,
    /// Seconds since the Unix epoch.
    pub now: i64,
}

/// The account an ID token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdClaims {
    pub subject: String,
    /// Only when the provider does not say it is unverified.
    pub email: Option<String>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: Audience,
    exp: i64,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<serde_json::Value>,
}

/// One public key of a JWKS (RFC 7517), the members this module uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct JwkSet {
    keys: Vec<Jwk>,
}

fn b64(part: &str, what: &'static str) -> Result<Vec<u8>, IdTokenError> {
    URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| IdTokenError::Malformed(what))
}

/// A JWT split into its parts, before any check.
struct Parsed<'t> {
    header: Header,
    signing_input: &'t str,
    signature: Vec<u8>,
    payload: Vec<u8>,
}

fn parse(token: &str) -> Result<Parsed<'_>, IdTokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(IdTokenError::Malformed("too long"));
    }
    let (signing_input, signature) = token
        .rsplit_once('.')
        .ok_or(IdTokenError::Malformed("not a JWS"))?;
    let (header, payload) = signing_input
        .split_once('.')
        .ok_or(IdTokenError::Malformed("not a JWS"))?;
    let header: Header = serde_json::from_slice(&b64(header, "header")?)
        .map_err(|_| IdTokenError::Malformed("header"))?;
    Ok(Parsed {
        header,
        signing_input,
        signature: b64(signature, "signature")?,
        payload: b64(payload, "payload")?,
    })
}

impl JwkSet {
    /// The key a token names: by `kid`, or the only signing key of the right type.
    fn find(&self, alg: &str, kid: Option<&str>) -> Option<&Jwk> {
        let kty = if alg == "RS256" { "RSA" } else { "EC" };
        let mut candidates = self.keys.iter().filter(|k| {
            k.kty == kty
                && k.use_.as_deref().is_none_or(|u| u == "sig")
                && k.alg.as_deref().is_none_or(|a| a == alg)
        });
        match kid {
            Some(kid) => candidates.find(|k| k.kid.as_deref() == Some(kid)),
            None => {
                let first = candidates.next();
                if candidates.next().is_some() {
                    None
                } else {
                    first
                }
            }
        }
    }
}

fn verify_signature(jwk: &Jwk, alg: &str, message: &[u8], sig: &[u8]) -> Result<(), IdTokenError> {
    let missing = || IdTokenError::Malformed("JWKS key");
    let result = match alg {
        "RS256" => {
            let n = b64(jwk.n.as_deref().ok_or_else(missing)?, "JWKS key")?;
            let e = b64(jwk.e.as_deref().ok_or_else(missing)?, "JWKS key")?;
            RsaPublicKeyComponents { n, e }.verify(
                &signature::RSA_PKCS1_2048_8192_SHA256,
                message,
                sig,
            )
        }
        "ES256" => {
            if jwk.crv.as_deref() != Some("P-256") {
                return Err(IdTokenError::UnknownKey);
            }
            let x = b64(jwk.x.as_deref().ok_or_else(missing)?, "JWKS key")?;
            let y = b64(jwk.y.as_deref().ok_or_else(missing)?, "JWKS key")?;
            if x.len() != 32 || y.len() != 32 {
                return Err(missing());
            }
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point).verify(message, sig)
        }
        other => return Err(IdTokenError::UnsupportedAlgorithm(other.to_owned())),
    };
    result.map_err(|_| IdTokenError::BadSignature)
}

/// Checks a token against a key set already at hand (no I/O).
pub fn verify_with(
    token: &str,
    keys: &JwkSet,
    expected: &Expected<'_>,
) -> Result<IdClaims, IdTokenError> {
    let parsed = parse(token)?;
    check(&parsed, keys, expected)
}

fn check(
    parsed: &Parsed<'_>,
    keys: &JwkSet,
    expected: &Expected<'_>,
) -> Result<IdClaims, IdTokenError> {
    let alg = parsed.header.alg.as_str();
    if !matches!(alg, "RS256" | "ES256") {
        return Err(IdTokenError::UnsupportedAlgorithm(
            alg.chars().take(16).collect(),
        ));
    }
    let jwk = keys
        .find(alg, parsed.header.kid.as_deref())
        .ok_or(IdTokenError::UnknownKey)?;
    verify_signature(jwk, alg, parsed.signing_input.as_bytes(), &parsed.signature)?;
    let claims: Claims =
        serde_json::from_slice(&parsed.payload).map_err(|_| IdTokenError::Malformed("claims"))?;
    if claims.iss.trim_end_matches('/') != expected.issuer.trim_end_matches('/') {
        return Err(IdTokenError::WrongIssuer(
            claims.iss.chars().take(200).collect(),
        ));
    }
    let audience_ok = match &claims.aud {
        Audience::One(a) => a == expected.client_id,
        Audience::Many(list) => {
            list.iter().any(|a| a == expected.client_id)
                && (list.len() == 1 || claims.azp.as_deref() == Some(expected.client_id))
        }
    };
    if !audience_ok {
        return Err(IdTokenError::WrongAudience);
    }
    if claims.exp + LEEWAY_SECS <= expected.now {
        return Err(IdTokenError::Expired);
    }
    if let Some(nonce) = expected.nonce
        && claims.nonce.as_deref() != Some(nonce)
    {
        return Err(IdTokenError::WrongNonce);
    }
    if claims.sub.is_empty() {
        return Err(IdTokenError::Malformed("empty sub"));
    }
    let unverified = matches!(claims.email_verified, Some(serde_json::Value::Bool(false)))
        || matches!(&claims.email_verified, Some(serde_json::Value::String(s)) if s == "false");
    Ok(IdClaims {
        subject: claims.sub,
        email: claims.email.filter(|_| !unverified),
    })
}

/// A provider's JWKS, fetched lazily and kept.
#[derive(Default)]
pub(crate) struct KeyCache {
    inner: Mutex<Option<(JwkSet, Instant)>>,
}

impl KeyCache {
    /// Verifies `token` with the cached keys, fetching them first if needed, and once more
    /// when the token names a key not (yet) in the set: the provider may have rotated.
    pub(crate) async fn verify(
        &self,
        http: &reqwest::Client,
        jwks_url: &str,
        token: &str,
        expected: &Expected<'_>,
    ) -> Result<IdClaims, IdTokenError> {
        let parsed = parse(token)?;
        let mut slot = self.inner.lock().await;
        if slot.is_none() {
            *slot = Some((fetch(http, jwks_url).await?, Instant::now()));
        }
        let Some((keys, fetched_at)) = slot.as_ref() else {
            return Err(IdTokenError::UnknownKey);
        };
        match check(&parsed, keys, expected) {
            Err(IdTokenError::UnknownKey) if fetched_at.elapsed() >= REFETCH_INTERVAL => {
                let keys = fetch(http, jwks_url).await?;
                let result = check(&parsed, &keys, expected);
                *slot = Some((keys, Instant::now()));
                result
            }
            other => other,
        }
    }
}

async fn fetch(http: &reqwest::Client, url: &str) -> Result<JwkSet, IdTokenError> {
    let body = get_capped(http, url, None)
        .await
        .map_err(IdTokenError::KeysUnavailable)?;
    serde_json::from_slice(&body)
        .map_err(|_| IdTokenError::KeysUnavailable("the JWKS is not a key set".into()))
}

/// GETs `url` (with a bearer token when given) and reads at most [`MAX_BODY_BYTES`].
pub(crate) async fn get_capped(
    http: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
) -> Result<Vec<u8>, String> {
    let mut req = http.get(url).header("accept", "application/json");
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    let mut resp = req.send().await.map_err(|e| without_url(&e))?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| without_url(&e))? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(format!("the answer is larger than {MAX_BODY_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use serde_json::json;

    const ISSUER: &str = "https://op.example";
    const NOW: i64 = 1_750_000_000;

    struct Signer {
        key: EcdsaKeyPair,
        rng: SystemRandom,
    }

    impl Signer {
        fn new() -> Self {
            let rng = SystemRandom::new();
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
            let key =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .expect("key");
            Self { key, rng }
        }

        fn jwks(&self, kid: &str) -> JwkSet {
            let point = self.key.public_key().as_ref();
            serde_json::from_value(json!({"keys": [{
                "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            }]}))
            .expect("jwks")
        }

        fn sign(&self, header: serde_json::Value, claims: serde_json::Value) -> String {
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let sig = self.key.sign(&self.rng, input.as_bytes()).expect("sign");
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
        }
    }

    fn claims() -> serde_json::Value {
        json!({"iss": ISSUER, "sub": "user-1", "aud": "relay", "exp": NOW + 300,
               "iat": NOW, "nonce": "n-1", "email": "u@example.test", "email_verified": true})
    }

    fn expected() -> Expected<'static> {
        Expected {
            issuer: ISSUER,
            client_id: "relay",
            nonce: Some("n-1"),
            now: NOW,
        }
    }

    fn header() -> serde_json::Value {
        json!({"alg": "ES256", "kid": "k1"})
    }

    #[test]
    fn a_valid_token_names_the_account() {
        let s = Signer::new();
        let token = s.sign(header(), claims());
        assert_eq!(
            verify_with(&token, &s.jwks("k1"), &expected()),
            Ok(IdClaims {
                subject: "user-1".into(),
                email: Some("u@example.test".into())
            })
        );
    }

    #[test]
    fn every_failed_check_is_refused_with_its_reason() {
        let s = Signer::new();
        let other = Signer::new();
        let keys = s.jwks("k1");
        let with = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut c = claims();
            f(&mut c);
            s.sign(header(), c)
        };
        let cases: Vec<(&str, String, IdTokenError)> = vec![
            (
                "signed by another key",
                other.sign(header(), claims()),
                IdTokenError::BadSignature,
            ),
            (
                "wrong audience",
                with(&|c| c["aud"] = json!("someone-else")),
                IdTokenError::WrongAudience,
            ),
            (
                "several audiences, azp another client",
                with(&|c| {
                    c["aud"] = json!(["relay", "other"]);
                    c["azp"] = json!("other");
                }),
                IdTokenError::WrongAudience,
            ),
            (
                "wrong nonce",
                with(&|c| c["nonce"] = json!("n-2")),
                IdTokenError::WrongNonce,
            ),
            (
                "no nonce",
                with(&|c| {
                    c.as_object_mut().expect("object").remove("nonce");
                }),
                IdTokenError::WrongNonce,
            ),
            (
                "expired beyond the leeway",
                with(&|c| c["exp"] = json!(NOW - LEEWAY_SECS)),
                IdTokenError::Expired,
            ),
            (
                "another issuer",
                with(&|c| c["iss"] = json!("https://evil.example")),
                IdTokenError::WrongIssuer("https://evil.example".into()),
            ),
            (
                "unknown kid",
                s.sign(json!({"alg": "ES256", "kid": "k2"}), claims()),
                IdTokenError::UnknownKey,
            ),
            (
                "alg none",
                format!(
                    "{}.{}.",
                    URL_SAFE_NO_PAD.encode(json!({"alg": "none"}).to_string()),
                    URL_SAFE_NO_PAD.encode(claims().to_string())
                ),
                IdTokenError::UnsupportedAlgorithm("none".into()),
            ),
            (
                "HMAC",
                s.sign(json!({"alg": "HS256", "kid": "k1"}), claims()),
                IdTokenError::UnsupportedAlgorithm("HS256".into()),
            ),
            (
                "not a JWT",
                "abc".into(),
                IdTokenError::Malformed("not a JWS"),
            ),
        ];
        for (what, token, want) in cases {
            assert_eq!(verify_with(&token, &keys, &expected()), Err(want), "{what}");
        }
    }

    #[test]
    fn a_tampered_payload_fails_the_signature() {
        let s = Signer::new();
        let token = s.sign(header(), claims());
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut c = claims();
        c["sub"] = json!("mallory");
        parts[1] = URL_SAFE_NO_PAD.encode(c.to_string());
        assert_eq!(
            verify_with(&parts.join("."), &s.jwks("k1"), &expected()),
            Err(IdTokenError::BadSignature)
        );
    }

    #[test]
    fn within_the_leeway_and_unverified_emails() {
        let s = Signer::new();
        let mut c = claims();
        c["exp"] = json!(NOW - LEEWAY_SECS + 5);
        c["email_verified"] = json!(false);
        let got = verify_with(&s.sign(header(), c), &s.jwks("k1"), &expected()).expect("valid");
        assert_eq!(got.email, None, "an unverified email is not recorded");
    }
}
