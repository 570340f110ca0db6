//! Test support for Relay: local OAuth 2.0 / OpenID Connect authorization servers that the
//! integration tests point Relay at, and the small helpers needed to drive them (PKCE, a
//! headless "browser" that follows authorization redirects, an HTTP client).
//!
//! Two servers are offered, for two different jobs:
//!
//! * [`fake_provider::FakeProvider`]: an in-process axum server that plays Google, Microsoft or
//!   a generic OIDC provider, with scripted faults (429, 5xx, `invalid_grant`, delays) and exact
//!   observability (how many refreshes, which refresh tokens were presented, what was revoked).
//!   Use it to test Relay's own logic.
//! * [`oidc_provider::OidcProviderHarness`]: panva's certified `oidc-provider` (Node.js) run on
//!   loopback from `tests/oidc-provider/`. Use it to prove interoperability with a real,
//!   standards-strict authorization server.
//!
//! For actions, [`fake_google_api::FakeGoogleApi`] (Gmail and Drive),
//! [`fake_graph::FakeGraph`] (Microsoft Graph `sendMail`) and
//! [`webhook_receiver::WebhookReceiver`] play the APIs Relay calls with the tokens it keeps;
//! [`fake_service_account::FakeServiceAccountToken`] plays Google's token endpoint for service
//! accounts (the JWT bearer grant).
//!
//! Both are driven by the same browser stand-in, [`browser::browser_authorize`], which returns a
//! [`browser::CallbackRedirect`]: the URL the provider sent the browser back to. Where only a
//! real browser proves the point (CORS), [`chromium`] runs a page in headless Chromium.
#![allow(clippy::unwrap_used)]

pub mod api_server;
pub mod browser;
pub mod chromium;
pub mod fake_google_api;
pub mod fake_graph;
pub mod fake_provider;
pub mod fake_service_account;
pub mod mcp_clients;
pub mod oidc_provider;
pub mod otlp_collector;
pub mod pkce;
pub mod webhook_receiver;

pub use api_server::{ApiFault, RecordedRequest, TokenCheck};
pub use browser::{CallbackRedirect, browser_authorize};
pub use fake_google_api::{DriveFile, FakeGoogleApi};
pub use fake_graph::FakeGraph;
pub use fake_provider::{
    Failure, FakeProvider, FakeProviderConfig, IssMode, RefreshMode, follow_authorize,
};
pub use fake_service_account::{FakeServiceAccountToken, generate_rsa_key};
pub use oidc_provider::{OidcProviderHarness, OidcProviderOptions, complete_browser_flow};
pub use otlp_collector::OtlpCollector;
pub use pkce::Pkce;
pub use webhook_receiver::{Reply, WebhookReceiver};

/// Installs the `ring` rustls crypto provider as the process default, once.
///
/// The workspace builds reqwest with `rustls-no-provider`, so building any reqwest client panics
/// unless a provider was installed first. Calling this more than once is harmless.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err only means another provider is already installed, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A reqwest client for tests: crypto provider installed, redirects NOT followed (tests want to
/// see every 302/303 an authorization server answers), and a generous overall timeout so that a
/// hung server fails a test instead of hanging it. Idle pooled connections are dropped after
/// 60 s, before Relay's 75 s keep-alive timeout closes them (as a proxy in front of Relay must
/// be configured), so a request never races the server's close of an idle connection.
pub fn http_client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("building a reqwest client for tests")
}

/// `bytes` random bytes from the system CSPRNG, encoded as unpadded base64url.
pub fn random_token(bytes: usize) -> String {
    use base64::Engine as _;
    use ring::rand::SecureRandom as _;
    let mut buf = vec![0u8; bytes];
    ring::rand::SystemRandom::new()
        .fill(&mut buf)
        .expect("system random number generator failed");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}
