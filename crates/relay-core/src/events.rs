//! OAuth events, counted as `oauth_events_total{provider,event}`. The names are part of the
//! product's contract (dashboards and alerts use them), so they live in one place.

use crate::ids::ProviderName;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthEvent {
    AuthorizeStarted,
    CallbackError,
    InvalidState,
    TokenExchangeFailed,
    TokenExchangeTimeout,
    MissingAccessToken,
    TokensStored,
    RefreshStart,
    RefreshOk,
    RefreshFailed,
    RefreshLocked,
}

impl OAuthEvent {
    pub const ALL: [OAuthEvent; 11] = [
        Self::AuthorizeStarted,
        Self::CallbackError,
        Self::InvalidState,
        Self::TokenExchangeFailed,
        Self::TokenExchangeTimeout,
        Self::MissingAccessToken,
        Self::TokensStored,
        Self::RefreshStart,
        Self::RefreshOk,
        Self::RefreshFailed,
        Self::RefreshLocked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizeStarted => "authorize_started",
            Self::CallbackError => "callback_error",
            Self::InvalidState => "invalid_state",
            Self::TokenExchangeFailed => "token_exchange_failed",
            Self::TokenExchangeTimeout => "token_exchange_timeout",
            Self::MissingAccessToken => "missing_access_token",
            Self::TokensStored => "tokens_stored",
            Self::RefreshStart => "refresh_start",
            Self::RefreshOk => "refresh_ok",
            Self::RefreshFailed => "refresh_failed",
            Self::RefreshLocked => "refresh_locked",
        }
    }
}

/// Counts one event. Provider names are configuration, so the label stays bounded.
pub fn record(provider: &ProviderName, event: OAuthEvent) {
    metrics::counter!(
        "oauth_events_total",
        "provider" => provider.as_str().to_owned(),
        "event" => event.as_str()
    )
    .increment(1);
}

/// Registers every event series of a provider at zero, so that dashboards and alerts see
/// them from the start rather than after the first occurrence.
pub fn register(provider: &ProviderName) {
    for event in OAuthEvent::ALL {
        metrics::counter!(
            "oauth_events_total",
            "provider" => provider.as_str().to_owned(),
            "event" => event.as_str()
        )
        .increment(0);
    }
}
