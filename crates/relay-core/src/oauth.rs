//! The port to OAuth providers. The core decides *when* to talk to a provider and what an
//! answer means for a connection; `relay-providers` knows *how* (endpoints, client
//! authentication, quirks). Errors arrive already classified, because the classification
//! (grant dead vs. try again later) drives the connection's status.

use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;

use crate::ids::{ProviderName, Scopes};

/// What the core asks for when it starts a connect flow.
#[derive(Debug, Clone)]
pub struct AuthorizationParams<'a> {
    pub state: &'a str,
    pub code_challenge: &'a str,
    pub redirect_uri: &'a str,
    pub scopes: &'a Scopes,
    /// OIDC `nonce`, bound to the flow; the ID token must carry it back.
    pub nonce: Option<&'a str>,
    /// OIDC `login_hint`: which account the provider should suggest.
    pub login_hint: Option<&'a str>,
}

#[derive(Debug, Clone)]
pub struct AuthorizationUrl {
    pub url: String,
    /// The issuer a callback's `iss` must equal (RFC 9207), when the provider has one.
    pub expected_issuer: Option<String>,
    /// Whether the provider promises to send `iss` (its metadata says
    /// `authorization_response_iss_parameter_supported`); then a callback without it is refused.
    pub iss_required: bool,
    /// Whether the provider can tell Relay which account signed in (a verifiable ID token
    /// for these scopes, or a userinfo endpoint); without it `expected_*` cannot be checked.
    pub identifies: bool,
}

/// The provider account a connect flow linked: the ID token's (or userinfo's) `sub`, and the
/// email when the provider granted it and does not call it unverified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderAccount {
    pub subject: String,
    pub email: Option<String>,
}

/// A token endpoint response (RFC 6749 §5.1).
#[derive(Debug, Clone)]
pub struct TokenSet {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    pub token_type: String,
    pub expires_in: Option<u64>,
    /// The granted scopes when the provider says them (it may grant fewer than asked).
    pub scope: Option<Scopes>,
    /// The OIDC ID token, unverified as received (see [`ProviderGateway::identify`]).
    pub id_token: Option<SecretString>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    AccessToken,
    RefreshToken,
}

impl TokenKind {
    pub fn hint(self) -> &'static str {
        match self {
            Self::AccessToken => "access_token",
            Self::RefreshToken => "refresh_token",
        }
    }
}

/// A provider's answer, classified where it arrives.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OAuthError {
    /// `invalid_grant`: the code or refresh token is dead. For a refresh, the user must reconnect
    /// (after checking that nobody else already refreshed).
    #[error("invalid_grant: {description}")]
    InvalidGrant { description: String },
    /// Worth retrying: timeouts, connection failures, 5xx, 429.
    #[error("transient provider failure: {detail}")]
    Transient {
        detail: String,
        retry_after: Option<Duration>,
        timed_out: bool,
    },
    /// A refusal that retrying will not fix and that is not the grant dying
    /// (`invalid_client`, `invalid_request`, `unauthorized_client`, an unparseable answer).
    #[error("provider refused: {detail}")]
    Rejected { detail: String },
    #[error("unknown provider")]
    UnknownProvider,
}

#[async_trait]
pub trait ProviderGateway: Send + Sync + 'static {
    /// Whether `provider` is configured.
    fn knows(&self, provider: &ProviderName) -> bool;

    /// The scopes always requested for this provider (from its preset and configuration).
    fn default_scopes(&self, provider: &ProviderName) -> Scopes;

    /// Whether the provider has an RFC 7009 revocation endpoint.
    async fn authorization_url(
        &self,
        provider: &ProviderName,
        params: AuthorizationParams<'_>,
    ) -> Result<AuthorizationUrl, OAuthError>;

    async fn exchange_code(
        &self,
        provider: &ProviderName,
        code: &str,
        code_verifier: &str,
        redirect_uri: &str,
    ) -> Result<TokenSet, OAuthError>;

    /// Who signed in, from a code exchange's answer: the ID token, validated (signature from
    /// the provider's JWKS, `iss`, `aud`, `exp`, `nonce`), or else the userinfo endpoint when
    /// the provider has one; `Ok(None)` when it offers neither. An ID token that fails a check
    /// is `Rejected`.
    async fn identify(
        &self,
        _provider: &ProviderName,
        _tokens: &TokenSet,
        _nonce: Option<&str>,
    ) -> Result<Option<ProviderAccount>, OAuthError> {
        Ok(None)
    }

    async fn refresh(
        &self,
        provider: &ProviderName,
        refresh_token: &str,
    ) -> Result<TokenSet, OAuthError>;

    /// Mints an access token for a service-account connection with the JWT bearer grant
    /// (RFC 7523) from its credential (JSON made by the gateway's own validation of the key).
    /// No refresh token is involved: the signed assertion is the grant, every time.
    async fn mint_service_account(
        &self,
        provider: &ProviderName,
        credential: &str,
    ) -> Result<TokenSet, OAuthError> {
        let _ = (provider, credential);
        Err(OAuthError::Rejected {
            detail: "this gateway does not mint tokens for service accounts".into(),
        })
    }

    /// Revokes a token (RFC 7009). `Ok(false)` when the provider has no revocation endpoint.
    async fn revoke(
        &self,
        provider: &ProviderName,
        token: &str,
        kind: TokenKind,
    ) -> Result<bool, OAuthError>;
}

/// Public facts about a configured provider, for `GET /providers`, Studio and MCP.
#[derive(Debug, Clone)]
pub struct ProviderListing {
    pub name: ProviderName,
    /// `google`, `microsoft`, `oidc` or `oauth2`.
    pub kind: &'static str,
    pub scopes: Scopes,
    pub enabled: bool,
}

/// A Google service-account key that cannot be used; the message never quotes the key.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct InvalidServiceAccount(pub String);

/// The configured providers as the HTTP layer sees them: what is configured, and the checks
/// of provider-specific inputs it must refuse before storing anything. Kept apart from
/// [`ProviderGateway`] (the protocol the core drives), so that `relay-server` depends on the
/// core's ports only and never on `relay-providers`.
pub trait ProviderDirectory: Send + Sync + 'static {
    /// Every configured provider, in name order.
    fn listings(&self) -> Vec<ProviderListing>;

    /// One configured provider.
    fn listing(&self, name: &ProviderName) -> Option<ProviderListing> {
        self.listings().into_iter().find(|l| &l.name == name)
    }

    /// Checks a service-account key JSON (the object, or its text as the services Relay
    /// replaces kept it) for `subject` and `scopes`, and returns the credential to seal.
    fn service_account_credential(
        &self,
        key: &serde_json::Value,
        subject: &str,
        scopes: &Scopes,
    ) -> Result<SecretString, InvalidServiceAccount>;
}
