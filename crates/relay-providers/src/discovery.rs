//! OpenID Connect discovery (OpenID Connect Discovery 1.0 §4): endpoints read from
//! `{issuer}/.well-known/openid-configuration`, checked to belong to the issuer asked for.

use serde::Deserialize;

use crate::limited_body::{BodyError, METADATA_MAX, read_limited};

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ProviderMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum DiscoveryError {
    #[error("discovery request failed: {0}")]
    Unreachable(String),
    #[error("discovery document is invalid: {0}")]
    Invalid(String),
}

pub(crate) async fn discover(
    http: &reqwest::Client,
    issuer: &str,
) -> Result<ProviderMetadata, DiscoveryError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let resp = http
        .get(&url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| DiscoveryError::Unreachable(without_url(&e)))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(if status.is_server_error() || status.as_u16() == 429 {
            DiscoveryError::Unreachable(format!("HTTP {status}"))
        } else {
            DiscoveryError::Invalid(format!("HTTP {status}"))
        });
    }
    let body = read_limited(resp, METADATA_MAX)
        .await
        .map_err(|e| match e {
            BodyError::Transport(e) => DiscoveryError::Unreachable(without_url(&e)),
            too_large @ BodyError::TooLarge { .. } => {
                DiscoveryError::Invalid(too_large.to_string())
            }
        })?;
    let meta: ProviderMetadata =
        serde_json::from_slice(&body).map_err(|e| DiscoveryError::Invalid(e.to_string()))?;
    // §4.3: the issuer in the document must be exactly the one we asked for, or an attacker
    // controlling the document could impersonate another issuer.
    if meta.issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
        return Err(DiscoveryError::Invalid(format!(
            "issuer mismatch: configured {issuer}, document says {}",
            meta.issuer
        )));
    }
    if meta
        .code_challenge_methods_supported
        .as_ref()
        .is_some_and(|methods| !methods.iter().any(|m| m == "S256"))
    {
        return Err(DiscoveryError::Invalid(
            "the provider does not support PKCE S256".into(),
        ));
    }
    Ok(meta)
}

/// reqwest errors print the URL; provider URLs are configuration, not secrets, but query
/// strings could carry codes, so they are stripped.
pub(crate) fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_decode() {
        "invalid response body"
    } else {
        "request failed"
    };
    match e.url() {
        Some(u) => format!("{kind} ({}://{}{})", u.scheme(), u.authority(), u.path()),
        None => kind.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limited_body::tests::huge_answer;

    #[tokio::test]
    async fn a_huge_discovery_document_is_refused_at_the_cap() {
        let issuer = huge_answer("content-type: application/json\r\n", b' ', 1 << 30).await;
        let err = discover(
            &crate::http_client(std::time::Duration::from_secs(30)).expect("client"),
            &issuer,
        )
        .await
        .expect_err("refused");
        assert!(
            matches!(&err, DiscoveryError::Invalid(m) if m.contains("larger than")),
            "{err}"
        );
    }
}
