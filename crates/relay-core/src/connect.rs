//! The connect flow: OAuth 2.0 authorization code with PKCE (S256 only).
//!
//! `start` mints a state (256 random bits) and a PKCE verifier, records the flow under the
//! state's hash (the state itself is never stored; the whole flow, verifier included, is sealed
//! as one record bound to the state hash, so an edited or swapped record does not open), and
//! returns the provider URL. `complete` consumes the state exactly once (an atomic delete), checks expiry,
//! provider and issuer (RFC 9207 mix-up defence) before anything is sent to the token
//! endpoint, exchanges the code with the verifier and stores the tokens.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use zeroize::{Zeroize, Zeroizing};

use crate::clock::{Clock, Timestamp};
use crate::connection::Connection;
use crate::coordination::{FlowStore, StoreFlows};
use crate::error::ServiceError;
use crate::events::{self, OAuthEvent};
use crate::ids::{ActorId, ActorType, ProviderName, Scopes, WorkspaceId};
use crate::oauth::{AuthorizationParams, OAuthError, ProviderAccount, ProviderGateway};
use crate::ports::{FlowRecord, Store};
use crate::random;
use crate::refresh::{NewConnection, TokenService};
use crate::vault::{Binding, Keyring};

/// What the browser is told when another account signed in than the flow expected.
pub const ACCOUNT_MISMATCH: &str = "the account that signed in is not the one this link was made for; nothing was connected. Sign in with the expected account and start again";

/// The vault binding's column for a sealed pending flow (the record is the state hash).
pub const OAUTH_FLOW: &str = "oauth_flow";

/// What a pending flow holds, sealed as one value into [`FlowRecord::sealed`]. Serialized as
/// JSON inside the seal; new fields are optional so a flow sealed by an older Relay still opens.
#[derive(Serialize, Deserialize)]
struct PendingFlow {
    provider: String,
    actor_type: String,
    actor_id: String,
    scopes: String,
    pkce_verifier: String,
    redirect_uri: String,
    expected_issuer: Option<String>,
    iss_required: bool,
    return_to: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    expected_subject: Option<String>,
    #[serde(default)]
    expected_email: Option<String>,
    #[serde(default)]
    app_state: Option<String>,
}

impl Drop for PendingFlow {
    fn drop(&mut self) {
        self.pkce_verifier.zeroize();
    }
}

fn flow_binding<'a>(workspace: &'a WorkspaceId, state_hash: &'a str) -> Binding<'a> {
    Binding {
        workspace: workspace.as_str(),
        record: state_hash,
        column: OAUTH_FLOW,
    }
}

pub struct ConnectService {
    /// Pending flows: the database by default, Redis when configured (see `with_flows`).
    flows: Arc<dyn FlowStore>,
    providers: Arc<dyn ProviderGateway>,
    tokens: Arc<TokenService>,
    keyring: Arc<Keyring>,
    clock: Arc<dyn Clock>,
    /// `{RELAY_PUBLIC_BASE_URL}` without a trailing slash.
    public_base_url: String,
    flow_ttl: Duration,
}

#[derive(Debug)]
pub struct StartRequest {
    pub workspace_id: WorkspaceId,
    pub provider: ProviderName,
    pub actor_type: ActorType,
    pub actor_id: ActorId,
    /// Extra scopes beyond the provider's configured ones.
    pub scopes: Option<Scopes>,
    /// Already checked against the allow-list by the caller.
    pub return_to: Option<String>,
    /// Passed to the provider as `login_hint`.
    pub login_hint: Option<String>,
    /// The callback is refused unless the provider account has this `sub`...
    pub expected_subject: Option<String>,
    /// ...or this email (compared case-insensitively).
    pub expected_email: Option<String>,
    /// Opaque to Relay, echoed on `return_to` so the app can bind the return to its session.
    pub app_state: Option<String>,
}

#[derive(Debug)]
pub struct StartedFlow {
    pub authorize_url: String,
    pub state: SecretString,
    pub expires_at: Timestamp,
}

/// What the provider sent back to the callback.
#[derive(Debug, Default)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

#[derive(Debug)]
pub struct CompletedFlow {
    pub connection: Connection,
    pub return_to: Option<String>,
    /// The provider account linked, when the provider said (ID token or userinfo).
    pub account: Option<ProviderAccount>,
    pub app_state: Option<String>,
}

/// Why a callback failed. Each maps to a clear 4xx page (or 502 for provider failures).
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("the sign-in link is invalid, was already used, or belongs to another provider")]
    InvalidState,
    #[error("the sign-in link expired; start connecting again")]
    ExpiredState,
    #[error("the response came from an unexpected issuer")]
    IssuerMismatch,
    #[error("the provider refused the authorization: {error}")]
    ProviderDenied {
        error: String,
        description: Option<String>,
    },
    #[error("the provider sent no authorization code")]
    MissingCode,
    #[error("the code exchange failed: {0}")]
    ExchangeFailed(String),
    #[error("the provider did not answer in time")]
    ExchangeTimeout,
    /// The ID token failed validation (signature, issuer, audience, expiry or nonce).
    #[error("the provider's ID token was refused: {0}")]
    IdTokenInvalid(String),
    /// Someone else signed in than the flow was started for; nothing was stored.
    #[error("{}", ACCOUNT_MISMATCH)]
    AccountMismatch {
        /// What was expected and what came back, for the audit record (never shown).
        detail: String,
        /// The flow's workspace and actor, for the audit record.
        workspace_id: WorkspaceId,
        actor_id: ActorId,
    },
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl ConnectService {
    pub fn new(
        store: Arc<dyn Store>,
        providers: Arc<dyn ProviderGateway>,
        tokens: Arc<TokenService>,
        keyring: Arc<Keyring>,
        clock: Arc<dyn Clock>,
        public_base_url: &str,
        flow_ttl: Duration,
    ) -> Self {
        Self {
            flows: Arc::new(StoreFlows(store)),
            providers,
            tokens,
            keyring,
            clock,
            public_base_url: public_base_url.trim_end_matches('/').to_owned(),
            flow_ttl,
        }
    }

    /// Keeps pending flows somewhere other than the database (Redis, shared by replicas).
    pub fn with_flows(mut self, flows: Arc<dyn FlowStore>) -> Self {
        self.flows = flows;
        self
    }

    pub fn callback_url(&self, provider: &ProviderName) -> String {
        format!("{}/oauth/{provider}/callback", self.public_base_url)
    }

    pub async fn start(&self, req: StartRequest) -> Result<StartedFlow, ServiceError> {
        if !self.providers.knows(&req.provider) {
            return Err(ServiceError::NotFound("provider"));
        }
        let now = self.clock.now();
        let state = random::token();
        let state_hash = random::sha256_hex(state.as_bytes());
        let verifier = Zeroizing::new(random::token());
        let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(
            &ring::digest::SHA256,
            verifier.as_bytes(),
        ));
        let defaults = self.providers.default_scopes(&req.provider);
        let scopes = match &req.scopes {
            Some(extra) => defaults.union(extra),
            None => defaults,
        };
        let redirect_uri = self.callback_url(&req.provider);
        let nonce = random::token();
        let auth = self
            .providers
            .authorization_url(
                &req.provider,
                AuthorizationParams {
                    state: &state,
                    code_challenge: &challenge,
                    redirect_uri: &redirect_uri,
                    scopes: &scopes,
                    nonce: Some(&nonce),
                    login_hint: req.login_hint.as_deref(),
                },
            )
            .await
            .map_err(|e| oauth_to_service(e, "authorization endpoint"))?;
        if (req.expected_subject.is_some() || req.expected_email.is_some()) && !auth.identifies {
            return Err(ServiceError::IdentityUnverifiable);
        }
        let expires_at = now.plus(self.flow_ttl);
        let pending = PendingFlow {
            provider: req.provider.as_str().to_owned(),
            actor_type: req.actor_type.as_str().to_owned(),
            actor_id: req.actor_id.as_str().to_owned(),
            scopes: scopes.to_space_separated(),
            pkce_verifier: verifier.to_string(),
            redirect_uri,
            expected_issuer: auth.expected_issuer,
            iss_required: auth.iss_required,
            return_to: req.return_to,
            nonce: Some(nonce),
            expected_subject: req.expected_subject,
            expected_email: req.expected_email,
            app_state: req.app_state,
        };
        // Serializing a struct of strings cannot fail.
        #[allow(clippy::expect_used)]
        let plain = Zeroizing::new(serde_json::to_vec(&pending).expect("flow serializes"));
        let flow = FlowRecord {
            sealed: self
                .keyring
                .seal(&plain, flow_binding(&req.workspace_id, &state_hash)),
            state_hash,
            workspace_id: req.workspace_id,
            created_at: now,
            expires_at,
        };
        self.flows.insert_flow(&flow).await?;
        events::record(&req.provider, OAuthEvent::AuthorizeStarted);
        Ok(StartedFlow {
            authorize_url: auth.url,
            state: SecretString::from(state),
            expires_at,
        })
    }

    pub async fn complete(
        &self,
        provider: &ProviderName,
        params: CallbackParams,
    ) -> Result<CompletedFlow, CallbackError> {
        let result = self.complete_inner(provider, params).await;
        if let Err(e) = &result {
            let event = match e {
                CallbackError::InvalidState | CallbackError::ExpiredState => {
                    OAuthEvent::InvalidState
                }
                CallbackError::ExchangeTimeout => OAuthEvent::TokenExchangeTimeout,
                CallbackError::ExchangeFailed(_) => OAuthEvent::TokenExchangeFailed,
                _ => OAuthEvent::CallbackError,
            };
            events::record(provider, event);
            warn!(%provider, error = %e, "connect callback failed");
        }
        result
    }

    async fn complete_inner(
        &self,
        provider: &ProviderName,
        params: CallbackParams,
    ) -> Result<CompletedFlow, CallbackError> {
        let state = params
            .state
            .filter(|s| !s.is_empty() && s.len() <= 512)
            .ok_or(CallbackError::InvalidState)?;
        let state_hash = random::sha256_hex(state.as_bytes());
        // Consumed here, whatever happens next: a state is good for one attempt only.
        let flow = self
            .flows
            .take_flow(&state_hash)
            .await
            .map_err(ServiceError::from)?
            .ok_or(CallbackError::InvalidState)?;
        // The record must open under its own state hash: an edited record, or another flow's
        // record stored under this state, fails here and counts as an unknown state.
        let sealed_flow = match self
            .keyring
            .open(&flow.sealed, flow_binding(&flow.workspace_id, &state_hash))
        {
            Ok(plain) => serde_json::from_slice::<PendingFlow>(&plain)
                .map_err(|_| CallbackError::InvalidState)?,
            Err(e) => {
                warn!(%provider, error = %e, "a pending flow did not open: edited, swapped or sealed with a retired key");
                return Err(CallbackError::InvalidState);
            }
        };
        if sealed_flow.provider != provider.as_str() {
            return Err(CallbackError::InvalidState);
        }
        if self.clock.now() >= flow.expires_at {
            return Err(CallbackError::ExpiredState);
        }
        match (&sealed_flow.expected_issuer, &params.iss) {
            (Some(expected), Some(got)) if expected != got => {
                return Err(CallbackError::IssuerMismatch);
            }
            (Some(_), None) if sealed_flow.iss_required => {
                return Err(CallbackError::IssuerMismatch);
            }
            _ => {}
        }
        if let Some(error) = params.error {
            return Err(CallbackError::ProviderDenied {
                error: sanitize(&error, 64),
                description: params.error_description.map(|d| sanitize(&d, 200)),
            });
        }
        let code = params
            .code
            .filter(|c| !c.is_empty())
            .ok_or(CallbackError::MissingCode)?;
        let tokens = self
            .providers
            .exchange_code(
                provider,
                &code,
                &sealed_flow.pkce_verifier,
                &sealed_flow.redirect_uri,
            )
            .await
            .map_err(|e| match e {
                OAuthError::Transient {
                    timed_out: true, ..
                } => CallbackError::ExchangeTimeout,
                other => CallbackError::ExchangeFailed(other.to_string()),
            })?;
        // Who signed in, checked before anything is stored: a flow finished by another
        // account than expected changes nothing.
        let account = self
            .providers
            .identify(provider, &tokens, sealed_flow.nonce.as_deref())
            .await
            .map_err(|e| match e {
                OAuthError::Rejected { detail } => CallbackError::IdTokenInvalid(detail),
                OAuthError::Transient {
                    timed_out: true, ..
                } => CallbackError::ExchangeTimeout,
                other => CallbackError::ExchangeFailed(other.to_string()),
            })?;
        check_expected_account(&sealed_flow, account.as_ref()).map_err(|detail| {
            CallbackError::AccountMismatch {
                detail,
                workspace_id: flow.workspace_id.clone(),
                actor_id: ActorId::from_stored(sealed_flow.actor_id.clone()),
            }
        })?;
        let connection = self
            .tokens
            .store_new(
                NewConnection {
                    workspace_id: flow.workspace_id,
                    provider: provider.clone(),
                    actor_type: ActorType::from_stored(sealed_flow.actor_type.clone()),
                    actor_id: ActorId::from_stored(sealed_flow.actor_id.clone()),
                    tokens,
                    requested_scopes: Scopes::from_stored(&sealed_flow.scopes),
                    expires_at: None,
                    account: account.clone(),
                },
                "connect flow",
            )
            .await?;
        info!(connection_id = %connection.id, %provider, "account connected");
        Ok(CompletedFlow {
            connection,
            return_to: sealed_flow.return_to.clone(),
            account,
            app_state: sealed_flow.app_state.clone(),
        })
    }
}

/// `Err(detail)` when the flow expected an account and another one (or none we can name)
/// signed in. The detail goes to the audit record only.
fn check_expected_account(
    flow: &PendingFlow,
    account: Option<&ProviderAccount>,
) -> Result<(), String> {
    if flow.expected_subject.is_none() && flow.expected_email.is_none() {
        return Ok(());
    }
    let Some(account) = account else {
        return Err("the provider did not say which account signed in".into());
    };
    if let Some(expected) = &flow.expected_subject
        && expected != &account.subject
    {
        return Err(format!(
            "expected subject {expected:?}, signed in as {:?}",
            account.subject
        ));
    }
    if let Some(expected) = &flow.expected_email
        && !account
            .email
            .as_deref()
            .is_some_and(|got| got.eq_ignore_ascii_case(expected))
    {
        return Err(format!(
            "expected email {expected:?}, signed in as {:?}",
            account.email.as_deref().unwrap_or("(no verified email)")
        ));
    }
    Ok(())
}

fn sanitize(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

pub(crate) fn oauth_to_service(e: OAuthError, what: &str) -> ServiceError {
    match e {
        OAuthError::UnknownProvider => ServiceError::NotFound("provider"),
        OAuthError::Transient {
            detail,
            retry_after,
            ..
        } => ServiceError::ProviderUnavailable {
            detail: format!("{what}: {detail}"),
            retry_after,
        },
        other => ServiceError::ProviderRejected {
            detail: format!("{what}: {other}"),
        },
    }
}
