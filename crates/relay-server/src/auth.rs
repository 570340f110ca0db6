//! API keys: minted once, shown once, stored only as a SHA-256 hash, each with a role.
//!
//! Checks are cached per process for a few seconds so that the hot path does not query the
//! database on every request. A key revoked or changed through this process is dropped from
//! its cache at once, and announced to the other replicas (through Redis, when configured) so
//! that they drop it too; a replica that misses the announcement refuses the key within the
//! cache's time-to-live. Keys that are not valid are remembered for the same time (a bounded
//! negative cache), so that a flood of made-up keys costs no database query per request.
//!
//! Two extractors say who may call a handler: [`Caller`] (any valid key: the `service` routes)
//! and [`AdminCaller`] (an `admin` key: API keys, the webhook secret, the audit log). A key
//! whose role does not allow the route gets 403 `forbidden`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use relay_core::coordination::ApiKeyChanges;
use relay_core::ports::{ApiKeyRecord, ApiKeyRole, Store};
use relay_core::{Clock, WorkspaceId, random};
use secrecy::SecretString;

use crate::error::ApiError;
use crate::state::AppState;

const KEY_PREFIX: &str = "rly_";

/// How many made-up or revoked keys the negative cache remembers (about 100 bytes each).
const NEGATIVE_CAPACITY: u64 = 10_000;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub workspace_id: WorkspaceId,
    pub api_key_id: String,
    /// The key's own limit; `None` uses `[rate_limit] per_minute`.
    pub rate_limit_per_minute: Option<i64>,
    pub role: ApiKeyRole,
}

/// Why a request is not authenticated, kept in the request's extensions by the request
/// middleware so that the handler's extractor answers without checking the key again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization` header.
    Missing,
    /// An `Authorization` header of another scheme than `Bearer`.
    NotBearer,
    /// A bearer token that is not a valid, unrevoked API key.
    InvalidToken,
}

/// Why [`ApiKeys::authenticate`] did not find a caller.
#[derive(Debug)]
pub enum KeyCheckError {
    /// The key is not valid (unknown, revoked, malformed).
    Invalid,
    /// The key could not be checked: the database did not answer. Not cached; the handler's
    /// extractor tries again and answers with the storage error.
    Store(relay_core::StoreError),
}

impl AuthFailure {
    /// The 401 answer, with its `WWW-Authenticate` challenge (RFC 6750: `error="invalid_token"`
    /// only when a bearer token was presented).
    fn to_error(self) -> ApiError {
        match self {
            Self::Missing => ApiError::unauthorized("missing `Authorization: Bearer <api key>`"),
            Self::NotBearer => ApiError::unauthorized("expected `Authorization: Bearer <api key>`"),
            Self::InvalidToken => ApiError::invalid_token(),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header. The scheme is matched without
/// regard to case (RFC 7235 §2.1: `bearer`, `BEARER` and `Bearer` are the same scheme).
pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthFailure> {
    let value = headers.get(AUTHORIZATION).ok_or(AuthFailure::Missing)?;
    let value = value.to_str().map_err(|_| AuthFailure::InvalidToken)?;
    let (scheme, token) = value
        .trim_start()
        .split_once(' ')
        .ok_or(AuthFailure::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthFailure::NotBearer);
    }
    Ok(token.trim())
}

pub struct ApiKeys {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    valid: moka::future::Cache<String, Caller>,
    /// Hashes of presented keys that are unknown or revoked.
    invalid: moka::future::Cache<String, ()>,
    /// Counts [`ApiKeys::forget`] calls: a check that started before one does not cache what it
    /// read, since the key may have changed in between.
    forgotten: AtomicU64,
    /// Tells the other replicas about revocations and changes; `None` without Redis.
    announcer: Option<Arc<dyn ApiKeyChanges>>,
}

impl ApiKeys {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, ttl: Duration) -> Self {
        Self {
            store,
            clock,
            valid: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .support_invalidation_closures()
                .build(),
            invalid: moka::future::Cache::builder()
                .max_capacity(NEGATIVE_CAPACITY)
                .time_to_live(ttl)
                .build(),
            forgotten: AtomicU64::new(0),
            announcer: None,
        }
    }

    /// Announces revocations and changes made through this replica to the others.
    pub fn with_announcer(mut self, announcer: Arc<dyn ApiKeyChanges>) -> Self {
        self.announcer = Some(announcer);
        self
    }

    pub async fn authenticate(&self, presented: &str) -> Result<Caller, KeyCheckError> {
        if !presented.starts_with(KEY_PREFIX) || presented.len() > 128 {
            return Err(KeyCheckError::Invalid);
        }
        let hash = random::sha256_hex(presented.as_bytes());
        if let Some(c) = self.valid.get(&hash).await {
            return Ok(c);
        }
        if self.invalid.contains_key(&hash) {
            return Err(KeyCheckError::Invalid);
        }
        let generation = self.forgotten.load(Ordering::Acquire);
        let record = self
            .store
            .find_api_key_by_hash(&hash)
            .await
            .map_err(KeyCheckError::Store)?;
        let unchanged = || self.forgotten.load(Ordering::Acquire) == generation;
        match record {
            Some(r) if r.revoked_at.is_none_or(|t| t > self.clock.now()) => {
                let caller = Caller {
                    workspace_id: r.workspace_id,
                    api_key_id: r.id,
                    rate_limit_per_minute: r.rate_limit_per_minute,
                    role: r.role,
                };
                if unchanged() {
                    self.valid.insert(hash, caller.clone()).await;
                }
                Ok(caller)
            }
            _ => {
                self.invalid.insert(hash, ()).await;
                Err(KeyCheckError::Invalid)
            }
        }
    }

    /// Drops key `api_key_id` from this process's cache, so that its next request is checked
    /// against the database (a revoked key is refused, a changed one gets its new limit and
    /// role). Called for changes made here and for those announced by other replicas.
    pub fn forget(&self, api_key_id: &str) {
        self.forgotten.fetch_add(1, Ordering::AcqRel);
        let id = api_key_id.to_owned();
        if let Err(e) = self
            .valid
            .invalidate_entries_if(move |_, caller| caller.api_key_id == id)
        {
            // Only when the cache was built without invalidation closures (never, see `new`).
            tracing::error!(error = %e, "the API key cache could not drop a key; clearing it");
            self.valid.invalidate_all();
        }
    }

    /// [`ApiKeys::forget`] here, and on every other replica through the announcer.
    pub async fn forget_everywhere(&self, api_key_id: &str) {
        self.forget(api_key_id);
        if let Some(announcer) = &self.announcer {
            announcer.announce(api_key_id).await;
        }
    }
}

/// A newly minted key: the secret (shown once) and the record to store.
pub struct MintedKey {
    pub secret: SecretString,
    pub record: ApiKeyRecord,
}

pub fn mint_api_key(
    workspace_id: WorkspaceId,
    now: relay_core::Timestamp,
    rate_limit_per_minute: Option<i64>,
    role: ApiKeyRole,
) -> MintedKey {
    let secret = format!("{KEY_PREFIX}{}", random::token());
    let record = ApiKeyRecord {
        id: format!("key_{}", uuid::Uuid::now_v7().simple()),
        workspace_id,
        secret_hash: random::sha256_hex(secret.as_bytes()),
        created_at: now,
        revoked_at: None,
        rate_limit_per_minute,
        role,
    };
    MintedKey {
        secret: SecretString::from(secret),
        record,
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // The request middleware already authenticated this request (and made its span with
        // the workspace), or found why it is not.
        if let Some(caller) = parts.extensions.get::<Caller>() {
            relay_core::audit::RequestContext::set_current_api_key(&caller.api_key_id);
            return Ok(caller.clone());
        }
        if let Some(failure) = parts.extensions.get::<AuthFailure>() {
            return Err(failure.to_error());
        }
        let token = bearer_token(&parts.headers).map_err(AuthFailure::to_error)?;
        let caller = match state.api_keys.authenticate(token).await {
            Ok(caller) => caller,
            Err(KeyCheckError::Invalid) => return Err(AuthFailure::InvalidToken.to_error()),
            Err(KeyCheckError::Store(e)) => {
                return Err(ApiError::from(relay_core::ServiceError::from(e)));
            }
        };
        tracing::Span::current().record("workspace_id", caller.workspace_id.as_str());
        relay_core::audit::RequestContext::set_current_api_key(&caller.api_key_id);
        Ok(caller)
    }
}

/// The caller of a route only `admin` keys may use: API keys, the webhook secret, the audit
/// log. Any other valid key gets 403 `forbidden`.
#[derive(Debug, Clone)]
pub struct AdminCaller(pub Caller);

impl FromRequestParts<AppState> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if caller.role != ApiKeyRole::Admin {
            return Err(ApiError::forbidden(format!(
                "this route needs an admin API key; this key's role is {}",
                caller.role.as_str()
            )));
        }
        Ok(Self(caller))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = value {
            h.insert(AUTHORIZATION, HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn the_bearer_scheme_is_matched_without_regard_to_case() {
        for value in [
            "Bearer rly_x",
            "bearer rly_x",
            "BEARER rly_x",
            "bEaReR rly_x",
            "Bearer   rly_x ",
        ] {
            assert_eq!(bearer_token(&headers(Some(value))), Ok("rly_x"), "{value}");
        }
        assert_eq!(bearer_token(&headers(None)), Err(AuthFailure::Missing));
        for value in ["Basic dXNlcjpwYXNz", "Bearerrly_x", "rly_x", "Token rly_x"] {
            assert_eq!(
                bearer_token(&headers(Some(value))),
                Err(AuthFailure::NotBearer),
                "{value}"
            );
        }
    }
}
