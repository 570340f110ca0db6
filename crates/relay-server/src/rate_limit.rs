//! Per-API-key rate limits, enforced after authentication and before any handler.
//!
//! The request middleware ([`crate::middleware::handle`]) calls [`authenticate`] (from the
//! per-process key cache, so no database query per request) and then [`admit`], which asks the
//! limiter (Redis, shared by every replica, or in-process) and hands the caller on in the
//! request's extensions so the handler does not check again.
//! Every limited response carries the IETF draft `RateLimit-Limit`, `RateLimit-Remaining` and
//! `RateLimit-Reset` headers; a refusal is 429 `rate_limited` with `Retry-After`.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use relay_core::coordination::{RateDecision, RateLimiter};

use crate::auth::{AuthFailure, Caller, KeyCheckError, bearer_token};
use crate::error::ApiError;
use crate::state::AppState;

/// The limiter and the limit of keys that have none of their own.
pub struct RateLimits {
    pub limiter: Arc<dyn RateLimiter>,
    /// `[rate_limit] per_minute`.
    pub default_per_minute: u32,
}

/// What admission decided: the limit to report on the response, or the refusal to send.
pub(crate) enum Admission {
    /// No API key was presented, or it is not valid: the handler's extractor answers 401 in the
    /// envelope (or the route needs no key).
    Unauthenticated,
    /// Authenticated and within the limit; the caller is in the request's extensions.
    Admitted(RateDecision),
    /// Over the limit: 429 `rate_limited` with `Retry-After` and the `RateLimit-*` headers.
    Refused(Response),
}

/// The caller of a request that presents a valid API key (from the per-process key cache),
/// or why there is none: the middleware keeps the failure in the request's extensions, and
/// the handler's extractor answers 401 from it without checking the key a second time (a
/// route that needs no key ignores it). `Ok(None)` when the key could not be checked (the
/// database did not answer): the extractor tries again and reports the storage error.
pub(crate) async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Caller>, AuthFailure> {
    let presented = bearer_token(headers)?;
    match state.api_keys.authenticate(presented).await {
        Ok(caller) => Ok(Some(caller)),
        Err(KeyCheckError::Invalid) => Err(AuthFailure::InvalidToken),
        Err(KeyCheckError::Store(_)) => Ok(None),
    }
}

/// Asks the limiter for an authenticated caller, before any handler runs, and hands the caller
/// on in the request's extensions so that the handler does not authenticate again.
pub(crate) async fn admit(
    state: &AppState,
    caller: Option<Caller>,
    req: &mut Request,
) -> Admission {
    let Some(caller) = caller else {
        return Admission::Unauthenticated;
    };
    let per_minute = caller
        .rate_limit_per_minute
        .and_then(|l| u32::try_from(l).ok())
        .filter(|l| *l > 0)
        .unwrap_or(state.rate_limits.default_per_minute);
    let decision = state
        .rate_limits
        .limiter
        .check(&caller.api_key_id, per_minute)
        .await;
    if !decision.allowed {
        metrics::counter!("rate_limit_rejections_total").increment(1);
        let mut err = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("this API key is limited to {per_minute} requests per minute"),
        );
        err.retry_after = Some(decision.retry_after);
        let mut resp = err.into_response();
        // Retry-After in whole seconds, rounded up: retrying earlier is refused again.
        set(
            resp.headers_mut(),
            "retry-after",
            ceil_secs(decision.retry_after),
        );
        add_headers(resp.headers_mut(), &decision);
        return Admission::Refused(resp);
    }
    req.extensions_mut().insert(caller);
    Admission::Admitted(decision)
}

fn ceil_secs(d: std::time::Duration) -> u64 {
    d.as_millis().div_ceil(1000).try_into().unwrap_or(u64::MAX)
}

fn set(headers: &mut HeaderMap, name: &'static str, value: u64) {
    headers.insert(name, HeaderValue::from(value));
}

pub(crate) fn add_headers(headers: &mut HeaderMap, d: &RateDecision) {
    set(headers, "ratelimit-limit", u64::from(d.limit));
    set(headers, "ratelimit-remaining", u64::from(d.remaining));
    set(headers, "ratelimit-reset", ceil_secs(d.reset_after));
}
