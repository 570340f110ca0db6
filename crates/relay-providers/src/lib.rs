//! Providers as data: presets (Google, Microsoft), OpenID Connect discovery and generic
//! OAuth 2.0 endpoints, each value overridable in configuration, and the HTTP client that
//! talks to their authorization, token and revocation endpoints.
//!
//! [`Catalog`] implements `relay_core::oauth::ProviderGateway`; errors are classified here,
//! where the HTTP status and body are known (see [`token_client`]).

pub mod actions;
mod catalog;
mod discovery;
pub mod google_credentials;
pub mod id_token;
pub mod limited_body;
pub mod service_account;
pub mod settings;
pub mod token_client;

pub use catalog::{Catalog, CatalogError};
pub use settings::{ProviderKind, ProviderSettings, TokenAuthMethod};

/// Builds the outbound HTTP client used for every provider call. Redirects are not followed
/// (a token endpoint that redirects is misconfigured, and following would leak the body).
pub fn http_client(timeout: std::time::Duration) -> Result<reqwest::Client, reqwest::Error> {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(std::time::Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("relay/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Installs rustls' ring provider as the process default (once; later calls are no-ops).
/// reqwest is built without a bundled provider so that only ring is in the tree.
pub fn install_crypto_provider() {
    // `Err` only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
