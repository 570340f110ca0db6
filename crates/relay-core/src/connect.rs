//! The connect flow: OAuth 2.0 authorization code with PKCE (S256 only).
//!
//! `start` mints a state (256 random bits) and a PKCE verifier, records the flow under the
//! state's hash (the state itself is never stored; the verifier is sealed), and returns the
//! provider URL. `complete` consumes the state exactly once (an atomic delete), checks expiry,
//! provider and issuer (RFC 9207 mix-up defence) before anything is sent to the token
//! endpoint, exchanges the code with the verifier and stores the tokens.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;
use tracing::{info, warn};

use crate::clock::{Clock, Timestamp};
use crate::connection::Connection;
use crate::coordination::{FlowStore, StoreFlows};
use crate::error::ServiceError;
use crate::events::{self, OAuthEvent};
use crate::ids::{ActorId, ActorType, ProviderName, Scopes, WorkspaceId};
use crate::oauth::{AuthorizationParams, OAuthError, ProviderGateway};
use crate::ports::{FlowRecord, Store};
use crate::random;
use crate::refresh::{NewConnection, TokenService};
use crate::vault::{Binding, Keyring};

pub const PKCE_VERIFIER: &str = "pkce_verifier";

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
        let verifier = zeroize::Zeroizing::new(random::token());
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
        let auth = self
            .providers
            .authorization_url(
                &req.provider,
                AuthorizationParams {
                    state: &state,
                    code_challenge: &challenge,
                    redirect_uri: &redirect_uri,
                    scopes: &scopes,
                },
            )
            .await
            .map_err(|e| oauth_to_service(e, "authorization endpoint"))?;
        let binding = Binding {
            workspace: req.workspace_id.as_str(),
            record: &state_hash,
            column: PKCE_VERIFIER,
        };
        let expires_at = now.plus(self.flow_ttl);
        let flow = FlowRecord {
            pkce_verifier: self.keyring.seal(verifier.as_bytes(), binding),
            state_hash,
            workspace_id: req.workspace_id,
            provider: req.provider.clone(),
            actor_type: req.actor_type,
            actor_id: req.actor_id,
            scopes,
            redirect_uri,
            expected_issuer: auth.expected_issuer,
            iss_required: auth.iss_required,
            return_to: req.return_to,
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
        if &flow.provider != provider {
            return Err(CallbackError::InvalidState);
        }
        if self.clock.now() >= flow.expires_at {
            return Err(CallbackError::ExpiredState);
        }
        match (&flow.expected_issuer, &params.iss) {
            (Some(expected), Some(got)) if expected != got => {
                return Err(CallbackError::IssuerMismatch);
            }
            (Some(_), None) if flow.iss_required => return Err(CallbackError::IssuerMismatch),
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
        let binding = Binding {
            workspace: flow.workspace_id.as_str(),
            record: &flow.state_hash,
            column: PKCE_VERIFIER,
        };
        let verifier = self
            .keyring
            .open_string(&flow.pkce_verifier, binding)
            .map_err(ServiceError::from)?;
        let tokens = self
            .providers
            .exchange_code(provider, &code, verifier.as_str(), &flow.redirect_uri)
            .await
            .map_err(|e| match e {
                OAuthError::Transient {
                    timed_out: true, ..
                } => CallbackError::ExchangeTimeout,
                other => CallbackError::ExchangeFailed(other.to_string()),
            })?;
        let connection = self
            .tokens
            .store_new(
                NewConnection {
                    workspace_id: flow.workspace_id,
                    provider: provider.clone(),
                    actor_type: flow.actor_type,
                    actor_id: flow.actor_id,
                    tokens,
                    requested_scopes: flow.scopes,
                    expires_at: None,
                },
                "connect flow",
            )
            .await?;
        info!(connection_id = %connection.id, %provider, "account connected");
        Ok(CompletedFlow {
            connection,
            return_to: flow.return_to,
        })
    }
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
