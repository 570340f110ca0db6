//! What a `[providers.NAME]` table in relay.toml may say, and the presets that fill in what
//! it does not.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Google: offline access needs `access_type=offline` and `prompt=consent`; no new
    /// refresh token on refresh.
    Google,
    /// Microsoft identity platform v2: `offline_access` scope, rotating refresh tokens, tenant.
    Microsoft,
    /// Any OpenID Connect provider: endpoints from `{issuer}/.well-known/openid-configuration`.
    Oidc,
    /// Plain OAuth 2.0: endpoints given explicitly.
    Oauth2,
}

impl ProviderKind {
    /// The name configuration uses (`kind = "google"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Google => "google",
            Self::Microsoft => "microsoft",
            Self::Oidc => "oidc",
            Self::Oauth2 => "oauth2",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenAuthMethod {
    /// HTTP Basic with the form-urlencoded client id and secret (RFC 6749 §2.3.1).
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// Public client: `client_id` only (PKCE protects the code).
    None,
}

/// One provider's configuration. Every endpoint set here wins over the preset or discovery.
#[derive(Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    pub kind: Option<ProviderKind>,
    pub issuer: Option<String>,
    #[serde(default)]
    pub client_id: String,
    pub client_secret: Option<String>,
    /// Google only: the OAuth client JSON downloaded from the Cloud console (`installed` or
    /// `web`), read at start for the client id and secret and, when present, `auth_uri` and
    /// `token_uri` (see [`crate::google_credentials`]). Env `GOOGLE_CREDENTIALS_FILE`.
    pub credentials_file: Option<std::path::PathBuf>,
    pub scopes: Option<Vec<String>>,
    pub authorization_url: Option<String>,
    pub token_url: Option<String>,
    pub revocation_url: Option<String>,
    pub userinfo_url: Option<String>,
    /// Where the provider publishes its ID token signing keys (from discovery or the preset
    /// when not set).
    pub jwks_url: Option<String>,
    pub api_base_url: Option<String>,
    /// Microsoft tenant (`common`, `organizations`, `consumers` or a tenant id).
    pub tenant: Option<String>,
    pub token_auth_method: Option<TokenAuthMethod>,
    /// Extra query parameters on the authorization URL.
    #[serde(default)]
    pub authorize_params: BTreeMap<String, String>,
    /// Whether actions may execute against this provider (`PROVIDER_{NAME}_ENABLED`).
    pub enabled: Option<bool>,
}

impl std::fmt::Debug for ProviderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSettings")
            .field("kind", &self.kind)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("credentials_file", &self.credentials_file)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("scopes", &self.scopes)
            .field("authorization_url", &self.authorization_url)
            .field("token_url", &self.token_url)
            .field("revocation_url", &self.revocation_url)
            .field("jwks_url", &self.jwks_url)
            .field("api_base_url", &self.api_base_url)
            .finish_non_exhaustive()
    }
}

/// The fixed part of a preset.
pub(crate) struct Preset {
    pub issuer: Option<String>,
    pub authorization_url: String,
    pub token_url: String,
    pub revocation_url: Option<String>,
    /// The ID token signing keys; used only while `issuer` is the preset's own.
    pub jwks_url: Option<String>,
    pub api_base_url: Option<String>,
    pub scopes: &'static [&'static str],
    pub authorize_params: &'static [(&'static str, &'static str)],
    pub auth_method: TokenAuthMethod,
    /// Microsoft's multi-tenant issuer is a template; a callback `iss` cannot be checked exactly.
    pub issuer_checkable: bool,
}

pub(crate) fn preset(kind: ProviderKind, tenant: Option<&str>) -> Option<Preset> {
    match kind {
        ProviderKind::Google => Some(Preset {
            issuer: Some("https://accounts.google.com".into()),
            authorization_url: "https://accounts.google.com/o/oauth2/v2/auth".into(),
            token_url: "https://oauth2.googleapis.com/token".into(),
            revocation_url: Some("https://oauth2.googleapis.com/revoke".into()),
            jwks_url: Some("https://www.googleapis.com/oauth2/v3/certs".into()),
            api_base_url: Some("https://gmail.googleapis.com".into()),
            scopes: &["openid", "email"],
            // Without both, Google returns no refresh token on a repeat consent.
            authorize_params: &[
                ("access_type", "offline"),
                ("prompt", "consent"),
                ("include_granted_scopes", "true"),
            ],
            auth_method: TokenAuthMethod::ClientSecretPost,
            issuer_checkable: true,
        }),
        ProviderKind::Microsoft => {
            let tenant = tenant.unwrap_or("common");
            let base = format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0");
            let single_tenant = !matches!(tenant, "common" | "organizations" | "consumers");
            Some(Preset {
                issuer: single_tenant
                    .then(|| format!("https://login.microsoftonline.com/{tenant}/v2.0")),
                authorization_url: format!("{base}/authorize"),
                token_url: format!("{base}/token"),
                // Microsoft has no RFC 7009 endpoint; deleting a connection forgets the tokens.
                revocation_url: None,
                // A multi-tenant issuer is a template: no ID token check there (no issuer).
                jwks_url: single_tenant.then(|| {
                    format!("https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys")
                }),
                api_base_url: Some("https://graph.microsoft.com".into()),
                scopes: &["openid", "email", "offline_access"],
                authorize_params: &[],
                auth_method: TokenAuthMethod::ClientSecretPost,
                issuer_checkable: false,
            })
        }
        ProviderKind::Oidc | ProviderKind::Oauth2 => None,
    }
}
