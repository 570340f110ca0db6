//! A fake OAuth 2.0 / OpenID Connect provider on `127.0.0.1:0`, so that Relay's integration
//! tests can play Google, Microsoft or a generic OIDC provider without the network, script
//! upstream failures, and assert exactly what Relay sent.
//!
//! It follows RFC 6749 (authorization code and refresh token grants, §5.2 JSON errors with
//! `Cache-Control: no-store`), RFC 7636 (PKCE, S256 only), RFC 7009 (revocation), RFC 9207
//! (`iss` in the authorization response) and OpenID Connect Discovery.
//!
//! # Public API
//!
//! * [`FakeProvider::start`]`(FakeProviderConfig) -> FakeProvider` (async), or
//!   [`FakeProvider::start_blocking`] from sync code. The server runs on its own thread and
//!   runtime (independent of the test's) and stops when the value is dropped.
//! * URLs: [`FakeProvider::issuer`] / [`FakeProvider::base_url`] (`http://127.0.0.1:PORT`, no
//!   trailing slash), [`FakeProvider::authorization_url`], [`FakeProvider::token_url`],
//!   [`FakeProvider::revocation_url`], [`FakeProvider::userinfo_url`],
//!   [`FakeProvider::jwks_url`], [`FakeProvider::discovery_url`].
//! * Scripting: [`FakeProvider::push_token_failure`] (any grant),
//!   [`FakeProvider::push_refresh_failure`] (refresh grants only),
//!   [`FakeProvider::push_code_failure`] (code grants only), [`FakeProvider::set_token_delay`],
//!   [`FakeProvider::deny_next_authorization`], [`FakeProvider::revoke_grant`] (the user
//!   removed the app at the provider), [`FakeProvider::expire_access_token`].
//! * Observation: [`FakeProvider::token_requests`], [`FakeProvider::refresh_requests`],
//!   [`FakeProvider::code_exchanges`], [`FakeProvider::authorize_requests`],
//!   [`FakeProvider::userinfo_requests`], [`FakeProvider::revocations`],
//!   [`FakeProvider::presented_refresh_tokens`], [`FakeProvider::last_authorize_query`],
//!   [`FakeProvider::is_access_token_valid`], [`FakeProvider::is_refresh_token_valid`],
//!   [`FakeProvider::current_refresh_token_for`].
//! * Shortcuts: [`FakeProvider::issue_tokens_directly`] mints a grant without the browser flow;
//!   [`follow_authorize`] plays the browser for an authorization URL.
//!
//! # Endpoints
//!
//! `GET /.well-known/openid-configuration`, `GET /authorize`, `POST /token`, `POST /revoke`,
//! `GET|POST /userinfo`, `GET /jwks` (one ES256 key; ID tokens are really signed with it).
//!
//! # Behaviour worth knowing
//!
//! * Counters count every request that reached the endpoint, including ones answered with an
//!   injected failure or a client-authentication error. `presented_refresh_tokens` records the
//!   `refresh_token` of every refresh request, in arrival order.
//! * Injected failures are taken FIFO, at arrival, by the first queued entry whose target
//!   matches the request's grant; they do not change any token's state (an injected
//!   `invalid_grant` leaves the refresh token valid).
//! * Authorization codes are single use and valid 60 s. Presenting a code a second time answers
//!   `invalid_grant` and revokes the tokens issued from it (RFC 6749 §4.1.2 "SHOULD").
//!   A code is used up by any exchange attempt, even one with a wrong `code_verifier`.
//! * Refresh tokens are issued on the code exchange only when the provider's rule is met
//!   (unless [`FakeProviderConfig::require_offline_request`] is false): Google mode needs
//!   `access_type=offline` on the authorization request, Rotating (Microsoft) mode needs the
//!   `offline_access` scope, Static mode always issues one.
//! * Refresh ([`RefreshMode`]): Google never returns a `refresh_token`; Rotating returns a new
//!   one each time and replay of a rotated one revokes the whole grant (reuse detection);
//!   Static returns the same one again. Old access tokens stay valid until they expire.
//! * Revocation: revoking a refresh token revokes its whole grant. Revoking an access token
//!   revokes only that token, except in Google mode, where (as Google documents) it revokes
//!   the grant too. Google mode also accepts revocation without client authentication, as
//!   Google's endpoint does; wrong credentials are still refused. Unknown tokens answer 200.
//! * Client authentication: `client_secret_basic` (id and secret form-urlencoded before base64
//!   as RFC 6749 §2.3.1 says; an unencoded secret is accepted too) or `client_secret_post`.
//!   Using both at once is `invalid_request`; failures are 401 `invalid_client`.
//! * Parameters sent twice in a token or revocation request are `invalid_request` (§3.2).
//! * `/userinfo` answers 401 with `WWW-Authenticate: Bearer error="invalid_token"` for an
//!   unknown, expired or revoked token, and a bare `Bearer` challenge when no token was sent
//!   (RFC 6750 §3.1).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};
use url::Url;

use crate::browser::CallbackRedirect;

/// How the token endpoint treats `grant_type=refresh_token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RefreshMode {
    /// Google: the refresh response carries no `refresh_token`; the original one stays valid.
    Google,
    /// Microsoft-like rotation: every refresh returns a new refresh token and invalidates the
    /// presented one. Presenting an already-rotated token answers `invalid_grant` and revokes
    /// the whole grant (every access and refresh token of the family, the newest included).
    Rotating,
    /// The same refresh token is returned on every refresh.
    #[default]
    Static,
}

/// What the authorization response says in its `iss` parameter (RFC 9207).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IssMode {
    /// `iss` is the provider's issuer.
    #[default]
    Correct,
    /// No `iss` parameter (a provider that does not implement RFC 9207).
    Omit,
    /// `iss` names another issuer, as in a mix-up attack: [`WRONG_ISSUER`].
    Wrong,
}

/// The issuer sent in the callback under [`IssMode::Wrong`].
pub const WRONG_ISSUER: &str = "https://attacker.invalid";

/// Settings of a [`FakeProvider`]. `FakeProviderConfig::default()` is a generic OIDC provider
/// with static refresh tokens; see also [`FakeProviderConfig::google`] and
/// [`FakeProviderConfig::microsoft`].
#[derive(Debug, Clone)]
pub struct FakeProviderConfig {
    /// The only client the provider knows. Default `relay-test`.
    pub client_id: String,
    /// That client's secret. Default `relay-secret`.
    pub client_secret: String,
    /// Refresh behaviour. Default [`RefreshMode::Static`].
    pub mode: RefreshMode,
    /// `expires_in` of access tokens, in seconds. Default 3600.
    pub expires_in: u64,
    /// `iss` in the authorization response. Default [`IssMode::Correct`].
    pub iss_in_callback: IssMode,
    /// Apply the provider's rule for issuing a refresh token on the code exchange (see the
    /// module documentation). Default true.
    pub require_offline_request: bool,
    /// Registered redirect URIs; empty accepts any absolute URI. Default empty.
    pub redirect_uris: Vec<String>,
    /// `sub` of the (single) end user. Default `user-1`.
    pub subject: String,
    /// `email` of that user. Default `user-1@example.test`.
    pub email: String,
}

impl Default for FakeProviderConfig {
    fn default() -> Self {
        Self {
            client_id: "relay-test".to_owned(),
            client_secret: "relay-secret".to_owned(),
            mode: RefreshMode::Static,
            expires_in: 3600,
            iss_in_callback: IssMode::Correct,
            require_offline_request: true,
            redirect_uris: Vec::new(),
            subject: "user-1".to_owned(),
            email: "user-1@example.test".to_owned(),
        }
    }
}

impl FakeProviderConfig {
    /// Google-like: no refresh token on refresh, refresh token only with `access_type=offline`.
    pub fn google() -> Self {
        Self {
            mode: RefreshMode::Google,
            ..Self::default()
        }
    }

    /// Microsoft-like: rotating refresh tokens, refresh token only with `offline_access`.
    pub fn microsoft() -> Self {
        Self {
            mode: RefreshMode::Rotating,
            ..Self::default()
        }
    }
}

/// A scripted answer for the next matching token-endpoint request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// 400 `{"error":"invalid_grant"}`; the token itself stays valid.
    InvalidGrant,
    /// This HTTP status with a short plain-text (non-JSON) body, like a proxy error page.
    Status(u16),
    /// This HTTP status with an RFC 6749 §5.2 JSON body `{"error": error}`.
    OAuthError {
        /// HTTP status, e.g. 400, 401, 503.
        status: u16,
        /// The `error` code, e.g. `temporarily_unavailable`.
        error: String,
    },
    /// 429 with `Retry-After: retry_after_secs` and a JSON body.
    RateLimited {
        /// Value of the `Retry-After` header, in seconds.
        retry_after_secs: u64,
    },
    /// Answer normally, but only after this delay.
    Delay(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Any,
    Refresh,
    Code,
}

impl Target {
    fn matches(self, grant_type: Option<&str>) -> bool {
        match self {
            Target::Any => true,
            Target::Refresh => grant_type == Some("refresh_token"),
            Target::Code => grant_type == Some("authorization_code"),
        }
    }
}

/// A running fake provider. Dropping it stops the server.
pub struct FakeProvider {
    inner: Arc<Inner>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

struct Inner {
    config: FakeProviderConfig,
    issuer: String,
    signing_key: EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
    state: Mutex<ProviderState>,
}

#[derive(Default)]
struct ProviderState {
    codes: HashMap<String, AuthCode>,
    grants: Vec<Grant>,
    refresh_tokens: HashMap<String, usize>,
    access_tokens: HashMap<String, AccessToken>,
    failures: VecDeque<(Target, Failure)>,
    token_delay: Duration,
    pending_denials: usize,
    last_authorize_query: Option<HashMap<String, String>>,
    authorize_requests: u64,
    token_requests: u64,
    refresh_requests: u64,
    code_exchanges: u64,
    userinfo_requests: u64,
    revocations: Vec<(String, Option<String>)>,
    presented_refresh_tokens: Vec<String>,
}

struct AuthCode {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    scope: String,
    nonce: Option<String>,
    offline: bool,
    expires_at: Instant,
    /// Set once the code was presented; the grant it produced, if any.
    used: Option<Option<usize>>,
}

struct Grant {
    scope: String,
    current_refresh: Option<String>,
    revoked: bool,
}

struct AccessToken {
    grant: usize,
    expires_at: Instant,
    revoked: bool,
}

impl ProviderState {
    fn new_grant(&mut self, scope: String) -> usize {
        self.grants.push(Grant {
            scope,
            current_refresh: None,
            revoked: false,
        });
        self.grants.len() - 1
    }

    fn access_token_valid(&self, token: &str) -> bool {
        self.access_tokens.get(token).is_some_and(|at| {
            !at.revoked && !self.grants[at.grant].revoked && at.expires_at > Instant::now()
        })
    }
}

impl FakeProvider {
    /// Binds `127.0.0.1:0` and serves the provider in a background task of the current tokio
    /// runtime.
    pub async fn start(config: FakeProviderConfig) -> FakeProvider {
        Self::start_blocking(config)
    }

    /// As [`FakeProvider::start`], usable outside async code.
    ///
    /// The server runs on its own thread and tokio runtime, not on the caller's: it keeps
    /// serving while a test blocks, and outlives the runtime of the test that started it (so
    /// one provider can be shared by several `#[tokio::test]`s through a static).
    pub fn start_blocking(config: FakeProviderConfig) -> FakeProvider {
        let listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("binding the fake provider to 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("making the fake provider's socket non-blocking");
        let addr = listener
            .local_addr()
            .expect("local address of a bound socket");
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("generating a P-256 key");
        let signing_key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                .expect("loading the generated P-256 key");
        let inner = Arc::new(Inner {
            config,
            issuer: format!("http://{addr}"),
            signing_key,
            rng,
            state: Mutex::new(ProviderState::default()),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/revoke", post(revoke))
            .route("/userinfo", get(userinfo).post(userinfo))
            .route("/jwks", get(jwks))
            .with_state(inner.clone());
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("fake-provider-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("building the fake provider's runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("registering the fake provider's socket");
                    tokio::select! {
                        result = axum::serve(listener, app) => {
                            result.expect("fake provider server failed");
                        }
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime here cancels in-flight requests and closes the port.
            })
            .expect("spawning the fake provider thread");
        FakeProvider {
            inner,
            shutdown: Some(shutdown),
        }
    }

    /// The issuer identifier, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn issuer(&self) -> String {
        self.inner.issuer.clone()
    }

    /// Same as [`FakeProvider::issuer`].
    pub fn base_url(&self) -> String {
        self.inner.issuer.clone()
    }

    /// The configuration the provider runs with.
    pub fn config(&self) -> &FakeProviderConfig {
        &self.inner.config
    }

    /// `{issuer}/.well-known/openid-configuration`.
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.inner.issuer)
    }

    /// `{issuer}/authorize`.
    pub fn authorization_url(&self) -> String {
        format!("{}/authorize", self.inner.issuer)
    }

    /// `{issuer}/token`.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.inner.issuer)
    }

    /// `{issuer}/revoke`.
    pub fn revocation_url(&self) -> String {
        format!("{}/revoke", self.inner.issuer)
    }

    /// `{issuer}/userinfo`.
    pub fn userinfo_url(&self) -> String {
        format!("{}/userinfo", self.inner.issuer)
    }

    /// `{issuer}/jwks`.
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.inner.issuer)
    }

    fn state(&self) -> MutexGuard<'_, ProviderState> {
        self.inner.lock()
    }

    /// Queues `failure` for the next token request of any grant type.
    pub fn push_token_failure(&self, failure: Failure) {
        self.state().failures.push_back((Target::Any, failure));
    }

    /// Queues `failure` for the next `grant_type=refresh_token` request.
    pub fn push_refresh_failure(&self, failure: Failure) {
        self.state().failures.push_back((Target::Refresh, failure));
    }

    /// Queues `failure` for the next `grant_type=authorization_code` request.
    pub fn push_code_failure(&self, failure: Failure) {
        self.state().failures.push_back((Target::Code, failure));
    }

    /// Failures queued and not yet consumed.
    pub fn pending_failures(&self) -> usize {
        self.state().failures.len()
    }

    /// Delays every token-endpoint answer by `delay` (a slow provider). `Duration::ZERO` ends it.
    pub fn set_token_delay(&self, delay: Duration) {
        self.state().token_delay = delay;
    }

    /// The next valid authorization request is refused by the "user": the browser is sent back
    /// with `error=access_denied`.
    pub fn deny_next_authorization(&self) {
        self.state().pending_denials += 1;
    }

    /// Revokes the grant that `token` (an access or refresh token, current or rotated) belongs
    /// to, as when the user removes the app at the provider. Returns false for unknown tokens.
    pub fn revoke_grant(&self, token: &str) -> bool {
        let mut state = self.state();
        let grant = state
            .refresh_tokens
            .get(token)
            .copied()
            .or_else(|| state.access_tokens.get(token).map(|at| at.grant));
        match grant {
            Some(grant) => {
                state.grants[grant].revoked = true;
                true
            }
            None => false,
        }
    }

    /// Makes one access token expired now (its grant is unaffected).
    pub fn expire_access_token(&self, token: &str) -> bool {
        match self.state().access_tokens.get_mut(token) {
            Some(at) => {
                at.expires_at = Instant::now();
                true
            }
            None => false,
        }
    }

    /// Requests that reached `POST /token`, whatever their outcome.
    pub fn token_requests(&self) -> u64 {
        self.state().token_requests
    }

    /// `POST /token` requests with `grant_type=refresh_token`, whatever their outcome.
    pub fn refresh_requests(&self) -> u64 {
        self.state().refresh_requests
    }

    /// `POST /token` requests with `grant_type=authorization_code`, whatever their outcome.
    pub fn code_exchanges(&self) -> u64 {
        self.state().code_exchanges
    }

    /// Requests that reached `GET /authorize`.
    pub fn authorize_requests(&self) -> u64 {
        self.state().authorize_requests
    }

    /// Requests that reached `/userinfo`.
    pub fn userinfo_requests(&self) -> u64 {
        self.state().userinfo_requests
    }

    /// Accepted (client-authenticated) revocation requests: `(token, token_type_hint)`.
    pub fn revocations(&self) -> Vec<(String, Option<String>)> {
        self.state().revocations.clone()
    }

    /// The `refresh_token` of every refresh request, in arrival order.
    pub fn presented_refresh_tokens(&self) -> Vec<String> {
        self.state().presented_refresh_tokens.clone()
    }

    /// The query parameters of the last `GET /authorize` (last value wins for repeated names).
    pub fn last_authorize_query(&self) -> Option<HashMap<String, String>> {
        self.state().last_authorize_query.clone()
    }

    /// Whether `token` is an access token this provider issued that is neither expired nor
    /// revoked (directly or through its grant).
    /// A [`crate::TokenCheck`] backed by this provider: the fake APIs accept exactly the
    /// access tokens this provider considers valid (not expired, not revoked).
    pub fn token_checker(&self) -> crate::TokenCheck {
        let inner = self.inner.clone();
        std::sync::Arc::new(move |t: &str| inner.lock().access_token_valid(t))
    }

    pub fn is_access_token_valid(&self, token: &str) -> bool {
        self.state().access_token_valid(token)
    }

    /// Whether `token` would be accepted by a refresh right now.
    pub fn is_refresh_token_valid(&self, token: &str) -> bool {
        let state = self.state();
        state.refresh_tokens.get(token).is_some_and(|&grant| {
            let grant = &state.grants[grant];
            !grant.revoked && grant.current_refresh.as_deref() == Some(token)
        })
    }

    /// The refresh token currently valid for the grant that `token` (any access or refresh
    /// token of it, rotated ones included) belongs to; None if unknown or revoked.
    pub fn current_refresh_token_for(&self, token: &str) -> Option<String> {
        let state = self.state();
        let grant = state
            .refresh_tokens
            .get(token)
            .copied()
            .or_else(|| state.access_tokens.get(token).map(|at| at.grant))?;
        let grant = &state.grants[grant];
        if grant.revoked {
            None
        } else {
            grant.current_refresh.clone()
        }
    }

    /// Mints a grant with scope `openid email offline_access` without any HTTP request, as if
    /// the user had connected earlier. Returns `(access_token, refresh_token)`.
    pub fn issue_tokens_directly(&self) -> (String, String) {
        self.issue_tokens_directly_with_scope("openid email offline_access")
    }

    /// As [`FakeProvider::issue_tokens_directly`], with the given scope.
    pub fn issue_tokens_directly_with_scope(&self, scope: &str) -> (String, String) {
        let mut state = self.state();
        let grant = state.new_grant(scope.to_owned());
        let refresh = self.inner.mint_refresh_token(&mut state, grant);
        let access = self.inner.mint_access_token(&mut state, grant);
        (access, refresh)
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // Err only means the server thread is already gone.
            let _ = shutdown.send(());
        }
    }
}

impl std::fmt::Debug for FakeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeProvider")
            .field("issuer", &self.inner.issuer)
            .field("mode", &self.inner.config.mode)
            .finish_non_exhaustive()
    }
}

/// Plays the browser for an authorization URL of the fake provider (or any provider that
/// redirects straight back): GET without following redirects and parse the `Location`.
/// Panics if the provider answers without redirecting (e.g. the 400 page for an unknown
/// `client_id`).
pub async fn follow_authorize(authorize_url: &str) -> CallbackRedirect {
    crate::browser::browser_authorize(authorize_url).await
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, ProviderState> {
        // A test that panicked while holding the lock must not hide the state from the others.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn mint_access_token(&self, state: &mut ProviderState, grant: usize) -> String {
        let token = format!("at-{}", crate::random_token(24));
        state.access_tokens.insert(
            token.clone(),
            AccessToken {
                grant,
                expires_at: Instant::now() + Duration::from_secs(self.config.expires_in),
                revoked: false,
            },
        );
        token
    }

    fn mint_refresh_token(&self, state: &mut ProviderState, grant: usize) -> String {
        let token = format!("rt-{}", crate::random_token(32));
        state.refresh_tokens.insert(token.clone(), grant);
        state.grants[grant].current_refresh = Some(token.clone());
        token
    }

    /// An ES256-signed ID token for the configured user.
    fn id_token(&self, nonce: Option<&str>) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": KEY_ID});
        let mut claims = json!({
            "iss": self.issuer,
            "sub": self.config.subject,
            "aud": self.config.client_id,
            "iat": now,
            "exp": now + 3600,
            "email": self.config.email,
            "email_verified": true,
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = Value::String(nonce.to_owned());
        }
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let signing_input = format!(
            "{}.{}",
            b64.encode(header.to_string()),
            b64.encode(claims.to_string())
        );
        let signature = self
            .signing_key
            .sign(&self.rng, signing_input.as_bytes())
            .expect("ECDSA signing");
        format!("{signing_input}.{}", b64.encode(signature.as_ref()))
    }

    fn jwk(&self) -> Value {
        // Uncompressed SEC1 point: 0x04 || X (32 bytes) || Y (32 bytes).
        let point = self.signing_key.public_key().as_ref();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": b64.encode(&point[1..33]),
            "y": b64.encode(&point[33..65]),
            "use": "sig",
            "alg": "ES256",
            "kid": KEY_ID,
        })
    }
}

const KEY_ID: &str = "fake-es256";

// ---------------------------------------------------------------------------------------------
// Responses

fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// RFC 6749 §5.2 error.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = json!({"error": error, "error_description": description});
    no_store((status, axum::Json(body)).into_response())
}

fn invalid_client(description: &str) -> Response {
    let mut response = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", description);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"fake-provider\""),
    );
    response
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn failure_response(failure: &Failure) -> Option<Response> {
    match failure {
        Failure::InvalidGrant => Some(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "injected failure: the grant is invalid",
        )),
        Failure::Status(status) => {
            let status = status_code(*status);
            let body = format!("fake provider: injected HTTP {}\n", status.as_u16());
            Some(
                (
                    status,
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    body,
                )
                    .into_response(),
            )
        }
        Failure::OAuthError { status, error } => {
            Some(oauth_error(status_code(*status), error, "injected failure"))
        }
        Failure::RateLimited { retry_after_secs } => {
            let mut response = oauth_error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "injected failure: too many requests",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            Some(response)
        }
        Failure::Delay(_) => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Request parsing

/// A form body (or query) with duplicate detection.
struct Params {
    values: HashMap<String, String>,
    duplicate: Option<String>,
}

impl Params {
    fn parse(input: &[u8]) -> Params {
        let mut values = HashMap::new();
        let mut duplicate = None;
        for (name, value) in url::form_urlencoded::parse(input) {
            if values
                .insert(name.to_string(), value.into_owned())
                .is_some()
            {
                duplicate.get_or_insert_with(|| name.into_owned());
            }
        }
        Params { values, duplicate }
    }

    /// A parameter; an empty value counts as absent (RFC 6749 §3.1).
    fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

#[expect(
    clippy::result_large_err,
    reason = "the error is the HTTP answer, returned as is"
)]
fn parse_form(headers: &HeaderMap, body: &[u8]) -> Result<Params, Response> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !is_form {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the request body must be application/x-www-form-urlencoded",
        ));
    }
    let params = Params::parse(body);
    if let Some(name) = &params.duplicate {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("parameter {name} was sent more than once"),
        ));
    }
    Ok(params)
}

enum ClientAuth {
    Authenticated,
    /// No credentials at all.
    Anonymous,
}

fn percent_decode_form(value: &str) -> String {
    url::form_urlencoded::parse(format!("x={value}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// client_secret_basic or client_secret_post (RFC 6749 §2.3.1).
#[expect(
    clippy::result_large_err,
    reason = "the error is the HTTP answer, returned as is"
)]
fn authenticate_client(
    config: &FakeProviderConfig,
    headers: &HeaderMap,
    params: &Params,
) -> Result<ClientAuth, Response> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then(|| rest.trim())
        });
    if let Some(encoded) = basic {
        if params.get("client_secret").is_some() {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "more than one client authentication method was used",
            ));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok());
        let Some((raw_id, raw_secret)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
            return Err(invalid_client("malformed Basic credentials"));
        };
        let id = percent_decode_form(raw_id);
        let secret_ok = percent_decode_form(raw_secret) == config.client_secret
            || raw_secret == config.client_secret;
        if (id != config.client_id && raw_id != config.client_id) || !secret_ok {
            return Err(invalid_client("client authentication failed"));
        }
        if params
            .get("client_id")
            .is_some_and(|body_id| body_id != config.client_id)
        {
            return Err(invalid_client(
                "client_id does not match the authenticated client",
            ));
        }
        return Ok(ClientAuth::Authenticated);
    }
    match (params.get("client_id"), params.get("client_secret")) {
        (Some(id), Some(secret)) => {
            if id == config.client_id && secret == config.client_secret {
                Ok(ClientAuth::Authenticated)
            } else {
                Err(invalid_client("client authentication failed"))
            }
        }
        (None, None) => Ok(ClientAuth::Anonymous),
        _ => Err(invalid_client("client authentication failed")),
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers

async fn discovery(State(inner): State<Arc<Inner>>) -> Response {
    let issuer = &inner.issuer;
    axum::Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "authorization_response_iss_parameter_supported": true,
        "scopes_supported": ["openid", "email", "profile", "offline_access"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "email", "email_verified", "nonce"],
    }))
    .into_response()
}

async fn jwks(State(inner): State<Arc<Inner>>) -> Response {
    axum::Json(json!({"keys": [inner.jwk()]})).into_response()
}

fn error_page(description: &str) -> Response {
    let body = format!(
        "<!doctype html><title>Authorization error</title><h1>Authorization error</h1><p>{}</p>",
        description.replace('&', "&amp;").replace('<', "&lt;")
    );
    (StatusCode::BAD_REQUEST, Html(body)).into_response()
}

fn redirect_to(redirect_uri: &Url, params: &[(&str, Option<&str>)]) -> Response {
    let mut url = redirect_uri.clone();
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in params {
            if let Some(value) = value {
                query.append_pair(name, value);
            }
        }
    }
    let location = HeaderValue::from_str(url.as_str()).expect("a serialized URL is a valid header");
    no_store((StatusCode::FOUND, [(header::LOCATION, location)]).into_response())
}

async fn authorize(State(inner): State<Arc<Inner>>, RawQuery(query): RawQuery) -> Response {
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    let config = &inner.config;
    {
        let mut state = inner.lock();
        state.authorize_requests += 1;
        state.last_authorize_query = Some(params.values.clone());
    }

    // Errors that must not be redirected (RFC 6749 §4.1.2.1): bad client or redirect URI.
    if matches!(
        params.duplicate.as_deref(),
        Some("client_id" | "redirect_uri")
    ) {
        return error_page("client_id or redirect_uri was sent more than once");
    }
    match params.get("client_id") {
        Some(id) if id == config.client_id => {}
        Some(_) => return error_page("unknown client_id"),
        None => return error_page("missing client_id"),
    }
    let Some(redirect_raw) = params.get("redirect_uri") else {
        return error_page("missing redirect_uri");
    };
    let redirect_uri = match Url::parse(redirect_raw) {
        Ok(url) if url.fragment().is_none() && !url.cannot_be_a_base() => url,
        _ => return error_page("redirect_uri is not an absolute URI without fragment"),
    };
    if !config.redirect_uris.is_empty() && !config.redirect_uris.iter().any(|u| u == redirect_raw) {
        return error_page("redirect_uri is not registered for this client");
    }

    let state_param = params.get("state");
    let iss = match config.iss_in_callback {
        IssMode::Correct => Some(inner.issuer.as_str()),
        IssMode::Omit => None,
        IssMode::Wrong => Some(WRONG_ISSUER),
    };
    let error = |error: &str, description: &str| {
        redirect_to(
            &redirect_uri,
            &[
                ("error", Some(error)),
                ("error_description", Some(description)),
                ("state", state_param),
                ("iss", iss),
            ],
        )
    };

    if let Some(name) = &params.duplicate {
        return error(
            "invalid_request",
            &format!("parameter {name} was sent more than once"),
        );
    }
    match params.get("response_type") {
        Some("code") => {}
        Some(_) => {
            return error(
                "unsupported_response_type",
                "only response_type=code is supported",
            );
        }
        None => return error("invalid_request", "missing response_type"),
    }
    let Some(challenge) = params.get("code_challenge") else {
        return error("invalid_request", "code_challenge is required (PKCE)");
    };
    if params.get("code_challenge_method") != Some("S256") {
        return error("invalid_request", "code_challenge_method must be S256");
    }
    let well_formed = challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !well_formed {
        return error(
            "invalid_request",
            "code_challenge is not a base64url SHA-256 value",
        );
    }

    let scope = params.get("scope").unwrap_or_default().to_owned();
    let offline = match config.mode {
        _ if !config.require_offline_request => true,
        RefreshMode::Google => params.get("access_type") == Some("offline"),
        RefreshMode::Rotating => scope.split(' ').any(|s| s == "offline_access"),
        RefreshMode::Static => true,
    };

    let mut state = inner.lock();
    if state.pending_denials > 0 {
        state.pending_denials -= 1;
        drop(state);
        return error("access_denied", "the end-user denied the request");
    }
    let code = format!("code-{}", crate::random_token(32));
    state.codes.insert(
        code.clone(),
        AuthCode {
            client_id: config.client_id.clone(),
            redirect_uri: redirect_raw.to_owned(),
            challenge: challenge.to_owned(),
            scope,
            nonce: params.get("nonce").map(str::to_owned),
            offline,
            expires_at: Instant::now() + Duration::from_secs(60),
            used: None,
        },
    );
    drop(state);
    redirect_to(
        &redirect_uri,
        &[("code", Some(&code)), ("state", state_param), ("iss", iss)],
    )
}

async fn token(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let parsed = parse_form(&headers, &body);
    let grant_type = parsed
        .as_ref()
        .ok()
        .and_then(|p| p.get("grant_type"))
        .map(str::to_owned);

    // Count, record and pick the scripted behaviour at arrival, under one lock.
    let (failure, delay) = {
        let mut state = inner.lock();
        state.token_requests += 1;
        match grant_type.as_deref() {
            Some("refresh_token") => {
                state.refresh_requests += 1;
                let presented = parsed
                    .as_ref()
                    .ok()
                    .and_then(|p| p.get("refresh_token"))
                    .unwrap_or_default()
                    .to_owned();
                state.presented_refresh_tokens.push(presented);
            }
            Some("authorization_code") => state.code_exchanges += 1,
            _ => {}
        }
        let index = state
            .failures
            .iter()
            .position(|(target, _)| target.matches(grant_type.as_deref()));
        let failure = index.and_then(|i| state.failures.remove(i)).map(|(_, f)| f);
        (failure, state.token_delay)
    };

    let mut delay = delay;
    if let Some(Failure::Delay(extra)) = &failure {
        delay += *extra;
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(response) = failure.as_ref().and_then(failure_response) {
        return response;
    }

    let params = match parsed {
        Ok(params) => params,
        Err(response) => return response,
    };
    match authenticate_client(&inner.config, &headers, &params) {
        Ok(ClientAuth::Authenticated) => {}
        Ok(ClientAuth::Anonymous) => return invalid_client("client authentication is required"),
        Err(response) => return response,
    }
    match grant_type.as_deref() {
        Some("authorization_code") => exchange_code(&inner, &params),
        Some("refresh_token") => refresh(&inner, &params),
        Some(_) => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only authorization_code and refresh_token are supported",
        ),
        None => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "missing grant_type",
        ),
    }
}

fn invalid_grant(description: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

fn token_response(
    inner: &Inner,
    access_token: &str,
    refresh_token: Option<&str>,
    scope: &str,
    id_token: Option<String>,
) -> Response {
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": inner.config.expires_in,
        "scope": scope,
    });
    if let Some(refresh_token) = refresh_token {
        body["refresh_token"] = Value::String(refresh_token.to_owned());
    }
    if let Some(id_token) = id_token {
        body["id_token"] = Value::String(id_token);
    }
    no_store(axum::Json(body).into_response())
}

fn has_scope(scope: &str, wanted: &str) -> bool {
    scope.split(' ').any(|s| s == wanted)
}

fn exchange_code(inner: &Inner, params: &Params) -> Response {
    let Some(code) = params.get("code") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "missing code");
    };
    let mut state = inner.lock();
    let Some(record) = state.codes.get_mut(code) else {
        return invalid_grant("unknown authorization code");
    };
    if let Some(previous) = record.used {
        // RFC 6749 §4.1.2: revoke what the first use produced.
        if let Some(grant) = previous {
            state.grants[grant].revoked = true;
        }
        return invalid_grant("authorization code was already used");
    }
    record.used = Some(None);
    if record.expires_at <= Instant::now() {
        return invalid_grant("authorization code expired");
    }
    if record.client_id != inner.config.client_id {
        return invalid_grant("authorization code was issued to another client");
    }
    if params.get("redirect_uri") != Some(record.redirect_uri.as_str()) {
        return invalid_grant("redirect_uri does not match the authorization request");
    }
    let Some(verifier) = params.get("code_verifier") else {
        return invalid_grant("code_verifier is required");
    };
    if !crate::pkce::is_valid_verifier(verifier)
        || crate::pkce::s256_challenge(verifier) != record.challenge
    {
        return invalid_grant("PKCE verification failed");
    }
    let scope = record.scope.clone();
    let offline = record.offline;
    let nonce = record.nonce.clone();

    let grant = state.new_grant(scope.clone());
    if let Some(record) = state.codes.get_mut(code) {
        record.used = Some(Some(grant));
    }
    let refresh = offline.then(|| inner.mint_refresh_token(&mut state, grant));
    let access = inner.mint_access_token(&mut state, grant);
    drop(state);
    let id_token = has_scope(&scope, "openid").then(|| inner.id_token(nonce.as_deref()));
    token_response(inner, &access, refresh.as_deref(), &scope, id_token)
}

fn refresh(inner: &Inner, params: &Params) -> Response {
    let Some(presented) = params.get("refresh_token") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "missing refresh_token",
        );
    };
    let mut state = inner.lock();
    let Some(&grant_id) = state.refresh_tokens.get(presented) else {
        return invalid_grant("unknown refresh token");
    };
    let grant = &mut state.grants[grant_id];
    if grant.revoked {
        return invalid_grant("the grant was revoked");
    }
    if grant.current_refresh.as_deref() != Some(presented) {
        // Reuse of a rotated refresh token: assume theft and kill the whole family.
        grant.revoked = true;
        return invalid_grant("refresh token was already used; the grant has been revoked");
    }
    let granted = grant.scope.clone();
    let scope = match params.get("scope") {
        Some(requested) => {
            if let Some(extra) = requested.split(' ').find(|s| !has_scope(&granted, s)) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    &format!("scope {extra} was not granted"),
                );
            }
            requested.to_owned()
        }
        None => granted,
    };
    let new_refresh = match inner.config.mode {
        RefreshMode::Google => None,
        RefreshMode::Static => Some(presented.to_owned()),
        RefreshMode::Rotating => Some(inner.mint_refresh_token(&mut state, grant_id)),
    };
    let access = inner.mint_access_token(&mut state, grant_id);
    drop(state);
    let id_token = has_scope(&scope, "openid").then(|| inner.id_token(None));
    token_response(inner, &access, new_refresh.as_deref(), &scope, id_token)
}

async fn revoke(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let params = match parse_form(&headers, &body) {
        Ok(params) => params,
        Err(response) => return response,
    };
    match authenticate_client(&inner.config, &headers, &params) {
        Ok(ClientAuth::Authenticated) => {}
        Ok(ClientAuth::Anonymous) if inner.config.mode == RefreshMode::Google => {}
        Ok(ClientAuth::Anonymous) => return invalid_client("client authentication is required"),
        Err(response) => return response,
    }
    let Some(token) = params.get("token") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "missing token");
    };
    let hint = params.get("token_type_hint").map(str::to_owned);
    let mut state = inner.lock();
    state.revocations.push((token.to_owned(), hint));
    if let Some(&grant) = state.refresh_tokens.get(token) {
        state.grants[grant].revoked = true;
    } else if let Some(at) = state.access_tokens.get_mut(token) {
        at.revoked = true;
        let grant = at.grant;
        if inner.config.mode == RefreshMode::Google {
            state.grants[grant].revoked = true;
        }
    }
    // RFC 7009 §2.2: 200 whether or not the token was known.
    no_store(StatusCode::OK.into_response())
}

async fn userinfo(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| rest.trim().to_owned())
        });
    let valid = {
        let mut state = inner.lock();
        state.userinfo_requests += 1;
        token
            .as_deref()
            .is_some_and(|t| state.access_token_valid(t))
    };
    if !valid {
        let challenge = if token.is_some() {
            "Bearer error=\"invalid_token\", error_description=\"the access token is invalid\""
        } else {
            "Bearer"
        };
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, challenge)],
        )
            .into_response();
    }
    axum::Json(json!({
        "sub": inner.config.subject,
        "email": inner.config.email,
        "email_verified": true,
    }))
    .into_response()
}
