//! Google service accounts with domain-wide delegation: a connection that acts as a Workspace
//! user (`subject`) through a service account key instead of that user's consent, the way the
//! services Relay replaces did with `GOOGLE_CREDENTIALS_JSON` + `GMAIL_DELEGATED_USER`.
//!
//! The key is validated once ([`credential`]) and reduced to a [`Credential`] that Relay seals
//! in the connection's refresh slot. Each access token is minted with the JWT bearer grant
//! (RFC 7523 section 2.1; Google's "Using OAuth 2.0 for Server to Server Applications"): a JWT
//! signed RS256 with the key, claiming `iss` = the service account, `sub` = the user, `scope`,
//! `aud` = the token endpoint, `iat`, and `exp` one hour later.
//!
//! The private key never leaves this module in the clear except inside the sealed credential;
//! errors name the problem, never a value of the key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use relay_core::Scopes;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// How long a minted assertion is valid: Google's maximum, one hour.
const ASSERTION_LIFETIME_SECS: u64 = 3600;

/// A service account key that cannot be used; the message is safe to show.
pub use relay_core::oauth::InvalidServiceAccount;

fn invalid(message: &str) -> InvalidServiceAccount {
    InvalidServiceAccount(message.to_owned())
}

/// The fields of the key JSON Google's console downloads that Relay uses.
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: Option<String>,
    private_key: Option<String>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
}

/// What Relay seals for a service-account connection: the key's usable part, the user it acts
/// as, and the scopes it asks for. Never logged, never returned.
#[derive(Serialize, Deserialize)]
pub(crate) struct Credential {
    pub client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default)]
    pub token_uri: Option<String>,
    pub subject: String,
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("client_email", &self.client_email)
            .field("private_key", &"[redacted]")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

fn email_like(s: &str) -> bool {
    let s = s.trim();
    !s.is_empty()
        && s.len() <= 320
        && s.contains('@')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn signing_key(pem: &str) -> Result<RsaKeyPair, InvalidServiceAccount> {
    let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|_| invalid("private_key is not a PEM-encoded PKCS#8 private key"))?;
    RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
        .map_err(|_| invalid("private_key is not an RSA key ring can sign RS256 with"))
}

/// Validates a service account key (the JSON object Google's console downloads) for acting as
/// `subject` with `scopes`, and returns the credential to seal.
pub fn credential(
    key: &Value,
    subject: &str,
    scopes: &Scopes,
) -> Result<SecretString, InvalidServiceAccount> {
    // The services Relay replaces kept the key in an environment variable
    // (`GOOGLE_CREDENTIALS_JSON`): its text is accepted as well as the object.
    let parsed;
    let key = match key {
        Value::String(text) => {
            parsed = serde_json::from_str::<Value>(text)
                .map_err(|_| invalid("service_account must be the key's JSON object"))?;
            &parsed
        }
        other => other,
    };
    if !key.is_object() {
        return Err(invalid("service_account must be the key's JSON object"));
    }
    // serde's messages can quote a value; this one must never quote the key.
    let file: KeyFile = serde_json::from_value(key.clone())
        .map_err(|_| invalid("service_account has a field of the wrong type"))?;
    if file.kind.as_deref() != Some("service_account") {
        return Err(invalid(
            "service_account must be a key of \"type\": \"service_account\"",
        ));
    }
    let client_email = file
        .client_email
        .filter(|e| email_like(e))
        .ok_or_else(|| invalid("service_account.client_email is missing or not an email"))?;
    let private_key = file
        .private_key
        .ok_or_else(|| invalid("service_account.private_key is missing"))?;
    signing_key(&private_key)?;
    if !email_like(subject) {
        return Err(invalid(
            "subject must be the email of the Workspace user to act as",
        ));
    }
    if scopes.is_empty() {
        return Err(invalid(
            "scopes must list what the service account was delegated (at least one)",
        ));
    }
    let credential = Credential {
        client_email: client_email.trim().to_owned(),
        private_key,
        private_key_id: file.private_key_id.filter(|k| !k.is_empty()),
        token_uri: file.token_uri.filter(|u| !u.is_empty()),
        subject: subject.trim().to_owned(),
        scopes: scopes.as_slice().to_vec(),
    };
    serde_json::to_string(&credential)
        .map(SecretString::from)
        .map_err(|_| invalid("service_account could not be stored"))
}

/// Reads a sealed credential back.
pub(crate) fn parse(credential: &str) -> Result<Credential, InvalidServiceAccount> {
    serde_json::from_str(credential)
        .map_err(|_| invalid("the stored service account credential is unreadable"))
}

/// The signed JWT for the bearer grant at `audience` (the token endpoint), issued at `now`.
pub(crate) fn assertion(
    credential: &Credential,
    audience: &str,
    now_unix_secs: u64,
) -> Result<String, InvalidServiceAccount> {
    let key = signing_key(&credential.private_key)?;
    let mut header = json!({"alg": "RS256", "typ": "JWT"});
    if let Some(kid) = &credential.private_key_id {
        header["kid"] = json!(kid);
    }
    let claims = json!({
        "iss": credential.client_email,
        "sub": credential.subject,
        "scope": credential.scopes.join(" "),
        "aud": audience,
        "iat": now_unix_secs,
        "exp": now_unix_secs + ASSERTION_LIFETIME_SECS,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signature = vec![0u8; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        signing_input.as_bytes(),
        &mut signature,
    )
    .map_err(|_| invalid("signing the assertion failed"))?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_usable_key_without_quoting_it() {
        let scopes = Scopes::parse("https://www.googleapis.com/auth/gmail.send").unwrap();
        let cases = [
            (json!("just a string"), "JSON object"),
            (json!("[\"not\", \"an object\"]"), "JSON object"),
            (
                json!(json!({"type": "authorized_user"}).to_string()),
                "\"type\": \"service_account\"",
            ),
            (
                json!({"type": "authorized_user"}),
                "\"type\": \"service_account\"",
            ),
            (
                json!({"type": "service_account", "private_key": "x"}),
                "client_email",
            ),
            (
                json!({"type": "service_account", "client_email": "sa@p.iam.gserviceaccount.com",
                       "private_key": "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleQ==\n-----END PRIVATE KEY-----\n"}),
                "not an RSA key",
            ),
            (
                json!({"type": "service_account", "client_email": "sa@p.iam.gserviceaccount.com",
                       "private_key": "secret-key-material"}),
                "PEM-encoded",
            ),
            (
                json!({"type": "service_account", "client_email": 5, "private_key": "secret-key-material"}),
                "wrong type",
            ),
        ];
        for (key, want) in cases {
            let err = credential(&key, "user@example.com", &scopes)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{key}: {err}");
            assert!(
                !err.contains("secret-key") && !err.contains("c2VjcmV0"),
                "{err}"
            );
        }
    }
}
