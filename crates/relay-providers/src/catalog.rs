//! The provider catalog: every configured provider resolved to concrete endpoints, and the
//! `ProviderGateway` the core talks to.
//!
//! Resolution order for each endpoint: explicit configuration, then the preset (Google,
//! Microsoft), then OIDC discovery. Discovery happens on first use, not at start, so that a
//! provider being down does not stop Relay from starting; a failed discovery is retried on
//! the next use.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use relay_core::oauth::{
    AuthorizationParams, AuthorizationUrl, InvalidServiceAccount, OAuthError, ProviderAccount,
    ProviderDirectory, ProviderGateway, ProviderListing, TokenKind, TokenSet,
};
use relay_core::{ProviderName, Scopes};
use secrecy::SecretString;
use tokio::sync::RwLock;
use url::Url;

use crate::discovery::{self, DiscoveryError, ProviderMetadata};
use crate::id_token::{Expected, IdTokenError, KeyCache, get_capped};
use crate::service_account;
use crate::settings::{self, ProviderKind, ProviderSettings, TokenAuthMethod};
use crate::token_client::{self, ClientAuth};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("provider {provider}: {reason}")]
    Invalid { provider: String, reason: String },
}

/// Endpoints once known.
#[derive(Debug, Clone)]
struct Endpoints {
    authorization_url: String,
    token_url: String,
    revocation_url: Option<String>,
    issuer: Option<String>,
    iss_required: bool,
    auth_method: TokenAuthMethod,
    /// The ID token signing keys; with `issuer`, ID tokens are validated.
    jwks_url: Option<String>,
    userinfo_url: Option<String>,
}

struct Provider {
    name: ProviderName,
    kind: ProviderKind,
    settings: ProviderSettings,
    scopes: Scopes,
    authorize_params: Vec<(String, String)>,
    /// `Some` when known without discovery, or after a successful discovery.
    endpoints: RwLock<Option<Endpoints>>,
    issuer_checkable: bool,
    api_base_url: Option<String>,
    /// The provider's JWKS, fetched on the first ID token.
    keys: KeyCache,
}

/// Public facts about a provider, for listing and for actions.
#[derive(Debug, Clone)]
pub struct ProviderInfo {
    pub name: ProviderName,
    pub kind: ProviderKind,
    pub scopes: Scopes,
    pub api_base_url: Option<String>,
    pub enabled: bool,
}

pub struct Catalog {
    http: reqwest::Client,
    providers: BTreeMap<ProviderName, Arc<Provider>>,
}

fn invalid(name: &ProviderName, reason: impl Into<String>) -> CatalogError {
    CatalogError::Invalid {
        provider: name.to_string(),
        reason: reason.into(),
    }
}

fn check_url(name: &ProviderName, field: &str, value: &str) -> Result<(), CatalogError> {
    let url = Url::parse(value).map_err(|e| invalid(name, format!("{field} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(invalid(name, format!("{field} must be an http(s) URL")));
    }
    Ok(())
}

impl Catalog {
    pub fn new(
        http: reqwest::Client,
        configured: BTreeMap<ProviderName, ProviderSettings>,
    ) -> Result<Self, CatalogError> {
        let mut providers = BTreeMap::new();
        for (name, s) in configured {
            let kind = s.kind.ok_or_else(|| {
                invalid(
                    &name,
                    "`kind` is required: google, microsoft, oidc or oauth2",
                )
            })?;
            if s.client_id.trim().is_empty() {
                return Err(invalid(&name, "`client_id` is required"));
            }
            for (field, v) in [
                ("issuer", &s.issuer),
                ("authorization_url", &s.authorization_url),
                ("token_url", &s.token_url),
                ("revocation_url", &s.revocation_url),
                ("userinfo_url", &s.userinfo_url),
                ("jwks_url", &s.jwks_url),
                ("api_base_url", &s.api_base_url),
            ] {
                if let Some(v) = v {
                    check_url(&name, field, v)?;
                }
            }
            let preset = settings::preset(kind, s.tenant.as_deref());
            let scopes = match &s.scopes {
                Some(list) => Scopes::from_iter_checked(list.iter().map(String::as_str))
                    .map_err(|e| invalid(&name, e.to_string()))?,
                None => Scopes::from_iter_checked(
                    preset
                        .as_ref()
                        .map(|p| p.scopes.to_vec())
                        .unwrap_or_default(),
                )
                .map_err(|e| invalid(&name, e.to_string()))?,
            };
            let mut authorize_params: Vec<(String, String)> = preset
                .as_ref()
                .map(|p| {
                    p.authorize_params
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            for (k, v) in &s.authorize_params {
                if RESERVED_PARAMS.contains(&k.as_str()) {
                    return Err(invalid(
                        &name,
                        format!("authorize_params may not set `{k}`"),
                    ));
                }
                authorize_params.retain(|(pk, _)| pk != k);
                authorize_params.push((k.clone(), v.clone()));
            }
            let issuer = s
                .issuer
                .clone()
                .or_else(|| preset.as_ref().and_then(|p| p.issuer.clone()));
            let endpoints = match (kind, &preset) {
                (_, Some(p)) => Some(Endpoints {
                    authorization_url: s
                        .authorization_url
                        .clone()
                        .unwrap_or_else(|| p.authorization_url.clone()),
                    token_url: s.token_url.clone().unwrap_or_else(|| p.token_url.clone()),
                    revocation_url: s
                        .revocation_url
                        .clone()
                        .or_else(|| p.revocation_url.clone()),
                    issuer: issuer.clone().filter(|_| p.issuer_checkable),
                    iss_required: false,
                    auth_method: s.token_auth_method.unwrap_or(p.auth_method),
                    // The preset's keys sign only the preset's issuer's tokens.
                    jwks_url: s.jwks_url.clone().or_else(|| {
                        p.jwks_url
                            .clone()
                            .filter(|_| s.issuer.is_none() || s.issuer == p.issuer)
                    }),
                    userinfo_url: s.userinfo_url.clone(),
                }),
                (ProviderKind::Oauth2, None) => {
                    let (Some(a), Some(t)) = (&s.authorization_url, &s.token_url) else {
                        return Err(invalid(
                            &name,
                            "kind oauth2 needs authorization_url and token_url",
                        ));
                    };
                    Some(Endpoints {
                        authorization_url: a.clone(),
                        token_url: t.clone(),
                        revocation_url: s.revocation_url.clone(),
                        issuer: issuer.clone(),
                        iss_required: false,
                        auth_method: s
                            .token_auth_method
                            .unwrap_or(TokenAuthMethod::ClientSecretBasic),
                        jwks_url: s.jwks_url.clone(),
                        userinfo_url: s.userinfo_url.clone(),
                    })
                }
                (ProviderKind::Oidc, None) => {
                    if s.issuer.is_none() {
                        return Err(invalid(&name, "kind oidc needs `issuer`"));
                    }
                    None
                }
                _ => None,
            };
            let api_base_url = s
                .api_base_url
                .clone()
                .or_else(|| preset.as_ref().and_then(|p| p.api_base_url.clone()));
            providers.insert(
                name.clone(),
                Arc::new(Provider {
                    name,
                    kind,
                    issuer_checkable: preset.as_ref().is_none_or(|p| p.issuer_checkable),
                    settings: s,
                    scopes,
                    authorize_params,
                    endpoints: RwLock::new(endpoints),
                    api_base_url,
                    keys: KeyCache::default(),
                }),
            );
        }
        Ok(Self { http, providers })
    }

    pub fn infos(&self) -> Vec<ProviderInfo> {
        self.providers.values().map(|p| Self::info_of(p)).collect()
    }

    pub fn info(&self, name: &ProviderName) -> Option<ProviderInfo> {
        self.providers.get(name).map(|p| Self::info_of(p))
    }

    fn listing_of(p: &Provider) -> ProviderListing {
        let info = Self::info_of(p);
        ProviderListing {
            name: info.name,
            kind: info.kind.as_str(),
            scopes: info.scopes,
            enabled: info.enabled,
        }
    }

    fn info_of(p: &Provider) -> ProviderInfo {
        ProviderInfo {
            name: p.name.clone(),
            kind: p.kind,
            scopes: p.scopes.clone(),
            api_base_url: p.api_base_url.clone(),
            enabled: p.settings.enabled.unwrap_or(false),
        }
    }

    fn provider(&self, name: &ProviderName) -> Result<&Arc<Provider>, OAuthError> {
        self.providers.get(name).ok_or(OAuthError::UnknownProvider)
    }

    async fn endpoints(&self, p: &Provider) -> Result<Endpoints, OAuthError> {
        if let Some(e) = p.endpoints.read().await.as_ref() {
            return Ok(e.clone());
        }
        let mut slot = p.endpoints.write().await;
        if let Some(e) = slot.as_ref() {
            return Ok(e.clone());
        }
        let issuer = p.settings.issuer.clone().unwrap_or_default();
        let meta = discovery::discover(&self.http, &issuer)
            .await
            .map_err(|e| match e {
                DiscoveryError::Unreachable(d) => OAuthError::Transient {
                    detail: format!("OIDC discovery: {d}"),
                    retry_after: None,
                    timed_out: false,
                },
                DiscoveryError::Invalid(d) => OAuthError::Rejected {
                    detail: format!("OIDC discovery: {d}"),
                },
            })?;
        let e = Self::from_metadata(&p.settings, meta);
        *slot = Some(e.clone());
        Ok(e)
    }

    fn from_metadata(s: &ProviderSettings, meta: ProviderMetadata) -> Endpoints {
        let supported = meta
            .token_endpoint_auth_methods_supported
            .unwrap_or_default();
        // OIDC's default is client_secret_basic when the provider lists nothing.
        let discovered_method =
            if supported.is_empty() || supported.iter().any(|m| m == "client_secret_basic") {
                TokenAuthMethod::ClientSecretBasic
            } else if supported.iter().any(|m| m == "client_secret_post") {
                TokenAuthMethod::ClientSecretPost
            } else {
                TokenAuthMethod::ClientSecretBasic
            };
        Endpoints {
            authorization_url: s
                .authorization_url
                .clone()
                .unwrap_or(meta.authorization_endpoint),
            token_url: s.token_url.clone().unwrap_or(meta.token_endpoint),
            revocation_url: s.revocation_url.clone().or(meta.revocation_endpoint),
            issuer: Some(meta.issuer),
            iss_required: meta.authorization_response_iss_parameter_supported,
            auth_method: s.token_auth_method.unwrap_or(discovered_method),
            jwks_url: s.jwks_url.clone().or(meta.jwks_uri),
            userinfo_url: s.userinfo_url.clone().or(meta.userinfo_endpoint),
        }
    }

    /// The account the access token belongs to, from the userinfo endpoint (body capped).
    async fn userinfo(&self, url: &str, tokens: &TokenSet) -> Result<ProviderAccount, OAuthError> {
        use secrecy::ExposeSecret;
        #[derive(serde::Deserialize)]
        struct UserInfo {
            sub: String,
            #[serde(default)]
            email: Option<String>,
            #[serde(default)]
            email_verified: Option<serde_json::Value>,
        }
        let body = get_capped(&self.http, url, Some(tokens.access_token.expose_secret()))
            .await
            .map_err(|detail| OAuthError::Transient {
                detail: format!("userinfo: {detail}"),
                retry_after: None,
                timed_out: false,
            })?;
        let info: UserInfo = serde_json::from_slice(&body)
            .ok()
            .filter(|i: &UserInfo| !i.sub.is_empty())
            .ok_or_else(|| OAuthError::Rejected {
                detail: "userinfo answered without a subject".into(),
            })?;
        let unverified = info.email_verified == Some(serde_json::Value::Bool(false));
        Ok(ProviderAccount {
            subject: info.sub,
            email: info.email.filter(|_| !unverified),
        })
    }

    fn client_auth(p: &Provider, method: TokenAuthMethod) -> ClientAuth {
        ClientAuth {
            client_id: p.settings.client_id.clone(),
            client_secret: p.settings.client_secret.clone().map(SecretString::from),
            method,
        }
    }
}

/// Parameters Relay sets itself; configuration may not override them.
const RESERVED_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "nonce",
];

impl ProviderDirectory for Catalog {
    fn listings(&self) -> Vec<ProviderListing> {
        self.providers
            .values()
            .map(|p| Self::listing_of(p))
            .collect()
    }

    fn listing(&self, name: &ProviderName) -> Option<ProviderListing> {
        self.providers.get(name).map(|p| Self::listing_of(p))
    }

    fn service_account_credential(
        &self,
        key: &serde_json::Value,
        subject: &str,
        scopes: &Scopes,
    ) -> Result<SecretString, InvalidServiceAccount> {
        service_account::credential(key, subject, scopes)
    }
}

#[async_trait]
impl ProviderGateway for Catalog {
    fn knows(&self, provider: &ProviderName) -> bool {
        self.providers.contains_key(provider)
    }

    fn default_scopes(&self, provider: &ProviderName) -> Scopes {
        self.providers
            .get(provider)
            .map(|p| p.scopes.clone())
            .unwrap_or_default()
    }

    async fn authorization_url(
        &self,
        provider: &ProviderName,
        params: AuthorizationParams<'_>,
    ) -> Result<AuthorizationUrl, OAuthError> {
        let p = self.provider(provider)?;
        let e = self.endpoints(p).await?;
        let mut url = Url::parse(&e.authorization_url).map_err(|err| OAuthError::Rejected {
            detail: format!("authorization_url is not a URL: {err}"),
        })?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &p.settings.client_id)
                .append_pair("redirect_uri", params.redirect_uri)
                .append_pair("state", params.state)
                .append_pair("code_challenge", params.code_challenge)
                .append_pair("code_challenge_method", "S256");
            if !params.scopes.is_empty() {
                q.append_pair("scope", &params.scopes.to_space_separated());
            }
            // A nonce means something only where an ID token comes back (OIDC Core §3.1.2.1).
            if let Some(nonce) = params.nonce.filter(|_| params.scopes.contains("openid")) {
                q.append_pair("nonce", nonce);
            }
            if let Some(hint) = params.login_hint {
                q.append_pair("login_hint", hint);
            }
            for (k, v) in &p.authorize_params {
                if k == "login_hint" && params.login_hint.is_some() {
                    continue;
                }
                q.append_pair(k, v);
            }
        }
        let verifies_id_tokens =
            params.scopes.contains("openid") && e.issuer.is_some() && e.jwks_url.is_some();
        Ok(AuthorizationUrl {
            url: url.into(),
            expected_issuer: e.issuer.filter(|_| p.issuer_checkable),
            iss_required: e.iss_required,
            identifies: verifies_id_tokens || e.userinfo_url.is_some(),
        })
    }

    async fn exchange_code(
        &self,
        provider: &ProviderName,
        code: &str,
        code_verifier: &str,
        redirect_uri: &str,
    ) -> Result<TokenSet, OAuthError> {
        let p = self.provider(provider)?;
        let e = self.endpoints(p).await?;
        let form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", redirect_uri.to_owned()),
            ("code_verifier", code_verifier.to_owned()),
        ];
        token_client::token_request(
            &self.http,
            &e.token_url,
            &Self::client_auth(p, e.auth_method),
            form,
        )
        .await
    }

    async fn identify(
        &self,
        provider: &ProviderName,
        tokens: &TokenSet,
        nonce: Option<&str>,
    ) -> Result<Option<ProviderAccount>, OAuthError> {
        use secrecy::ExposeSecret;
        let p = self.provider(provider)?;
        let e = self.endpoints(p).await?;
        if let (Some(token), Some(issuer), Some(jwks_url)) =
            (&tokens.id_token, &e.issuer, &e.jwks_url)
        {
            let expected = Expected {
                issuer,
                client_id: &p.settings.client_id,
                nonce,
                now: unix_now(),
            };
            let claims = p
                .keys
                .verify(&self.http, jwks_url, token.expose_secret(), &expected)
                .await
                .map_err(|err| match err {
                    IdTokenError::KeysUnavailable(detail) => OAuthError::Transient {
                        detail: format!("JWKS: {detail}"),
                        retry_after: None,
                        timed_out: false,
                    },
                    other => OAuthError::Rejected {
                        detail: other.to_string(),
                    },
                })?;
            let mut account = ProviderAccount {
                subject: claims.subject,
                email: claims.email,
            };
            // Many servers put scope claims (email) in userinfo only, when an access token is
            // issued; taken from there only for the same subject (OIDC Core §5.3.2).
            if account.email.is_none()
                && let Some(url) = &e.userinfo_url
                && let Ok(info) = self.userinfo(url, tokens).await
                && info.subject == account.subject
            {
                account.email = info.email;
            }
            return Ok(Some(account));
        }
        match &e.userinfo_url {
            Some(url) => self.userinfo(url, tokens).await.map(Some),
            None => Ok(None),
        }
    }

    async fn refresh(
        &self,
        provider: &ProviderName,
        refresh_token: &str,
    ) -> Result<TokenSet, OAuthError> {
        let p = self.provider(provider)?;
        let e = self.endpoints(p).await?;
        let form = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", refresh_token.to_owned()),
        ];
        token_client::token_request(
            &self.http,
            &e.token_url,
            &Self::client_auth(p, e.auth_method),
            form,
        )
        .await
    }

    async fn mint_service_account(
        &self,
        provider: &ProviderName,
        credential: &str,
    ) -> Result<TokenSet, OAuthError> {
        let p = self.provider(provider)?;
        let e = self.endpoints(p).await?;
        let rejected = |detail: String| OAuthError::Rejected { detail };
        let credential =
            service_account::parse(credential).map_err(|err| rejected(err.to_string()))?;
        // The assertion goes to the provider's configured token endpoint, never to a URL from
        // the key: a key names its `token_uri`, and a key for another endpoint is refused.
        if let Some(uri) = &credential.token_uri
            && uri.trim_end_matches('/') != e.token_url.trim_end_matches('/')
        {
            return Err(rejected(format!(
                "the service account key is for the token endpoint {uri}, but provider {provider} uses {}",
                e.token_url
            )));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let assertion = service_account::assertion(&credential, &e.token_url, now)
            .map_err(|err| rejected(err.to_string()))?;
        token_client::jwt_bearer_request(&self.http, &e.token_url, assertion).await
    }

    async fn revoke(
        &self,
        provider: &ProviderName,
        token: &str,
        kind: TokenKind,
    ) -> Result<bool, OAuthError> {
        let p = self.provider(provider)?;
        let e = self.endpoints(p).await?;
        let Some(url) = e.revocation_url.as_deref() else {
            return Ok(false);
        };
        token_client::revoke(
            &self.http,
            url,
            &Self::client_auth(p, e.auth_method),
            token,
            kind.hint(),
        )
        .await?;
        Ok(true)
    }
}

/// Seconds since the Unix epoch, for ID token expiry.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ProviderName {
        ProviderName::parse(s).expect("valid name")
    }

    fn catalog(entries: Vec<(&str, ProviderSettings)>) -> Result<Catalog, CatalogError> {
        let http = crate::http_client(std::time::Duration::from_secs(5)).expect("client");
        Catalog::new(
            http,
            entries.into_iter().map(|(n, s)| (name(n), s)).collect(),
        )
    }

    #[tokio::test]
    async fn google_preset_asks_for_offline_access_and_consent() {
        let c = catalog(vec![(
            "google",
            ProviderSettings {
                kind: Some(ProviderKind::Google),
                client_id: "cid".into(),
                client_secret: Some("secret".into()),
                ..Default::default()
            },
        )])
        .expect("valid");
        let scopes = c.default_scopes(&name("google"));
        let auth = c
            .authorization_url(
                &name("google"),
                AuthorizationParams {
                    state: "st",
                    code_challenge: "ch",
                    redirect_uri: "http://127.0.0.1:8080/oauth/google/callback",
                    scopes: &scopes,
                    nonce: Some("n-1"),
                    login_hint: Some("bob@example.test"),
                },
            )
            .await
            .expect("url");
        let url = Url::parse(&auth.url).expect("url");
        assert_eq!(url.host_str(), Some("accounts.google.com"));
        let q: BTreeMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["access_type"], "offline");
        assert_eq!(q["nonce"], "n-1", "openid is asked for: the nonce is sent");
        assert_eq!(q["login_hint"], "bob@example.test");
        assert!(
            auth.identifies,
            "Google's ID tokens are checked with its JWKS"
        );
        assert_eq!(q["prompt"], "consent");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["scope"], "openid email");
        assert_eq!(
            auth.expected_issuer.as_deref(),
            Some("https://accounts.google.com")
        );
    }

    #[tokio::test]
    async fn microsoft_preset_uses_the_tenant_and_offline_access_and_overrides_win() {
        let c = catalog(vec![(
            "ms",
            ProviderSettings {
                kind: Some(ProviderKind::Microsoft),
                client_id: "cid".into(),
                tenant: Some("contoso.onmicrosoft.com".into()),
                token_url: Some("http://127.0.0.1:1/token".into()),
                ..Default::default()
            },
        )])
        .expect("valid");
        assert!(c.default_scopes(&name("ms")).contains("offline_access"));
        let p = c.provider(&name("ms")).expect("known");
        let e = c.endpoints(p).await.expect("static endpoints");
        assert_eq!(
            e.authorization_url,
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize"
        );
        assert_eq!(e.token_url, "http://127.0.0.1:1/token");
        assert!(e.revocation_url.is_none());
    }

    #[test]
    fn invalid_configurations_are_refused_with_the_reason() {
        let cases = vec![
            (
                ProviderSettings {
                    client_id: "c".into(),
                    ..Default::default()
                },
                "kind",
            ),
            (
                ProviderSettings {
                    kind: Some(ProviderKind::Oidc),
                    client_id: "c".into(),
                    ..Default::default()
                },
                "issuer",
            ),
            (
                ProviderSettings {
                    kind: Some(ProviderKind::Oauth2),
                    client_id: "c".into(),
                    ..Default::default()
                },
                "token_url",
            ),
            (
                ProviderSettings {
                    kind: Some(ProviderKind::Google),
                    ..Default::default()
                },
                "client_id",
            ),
            (
                ProviderSettings {
                    kind: Some(ProviderKind::Google),
                    client_id: "c".into(),
                    token_url: Some("ftp://x".into()),
                    ..Default::default()
                },
                "http",
            ),
            (
                ProviderSettings {
                    kind: Some(ProviderKind::Google),
                    client_id: "c".into(),
                    authorize_params: [("state".to_owned(), "x".to_owned())].into(),
                    ..Default::default()
                },
                "state",
            ),
        ];
        for (s, needle) in cases {
            let err = catalog(vec![("p", s)]).err().expect("refused").to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }

    #[test]
    fn debug_output_hides_the_client_secret() {
        let s = ProviderSettings {
            client_secret: Some("canary-secret".into()),
            ..Default::default()
        };
        assert!(!format!("{s:?}").contains("canary-secret"));
    }
}
