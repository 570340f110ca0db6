//! API keys: minted once, shown once, stored only as a SHA-256 hash.
//!
//! Checks are cached per process for a few seconds so that the hot path does not query the
//! database on every request; a revoked key stops working everywhere within that TTL.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use relay_core::ports::{ApiKeyRecord, Store};
use relay_core::{Clock, WorkspaceId, random};
use secrecy::SecretString;

use crate::error::ApiError;
use crate::state::AppState;

const KEY_PREFIX: &str = "rly_";

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub workspace_id: WorkspaceId,
    pub api_key_id: String,
    /// The key's own limit; `None` uses `[rate_limit] per_minute`.
    pub rate_limit_per_minute: Option<i64>,
}

pub struct ApiKeys {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    cache: moka::future::Cache<String, Caller>,
}

impl ApiKeys {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, ttl: Duration) -> Self {
        Self {
            store,
            clock,
            cache: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
        }
    }

    pub async fn authenticate(&self, presented: &str) -> Result<Caller, ApiError> {
        if !presented.starts_with(KEY_PREFIX) || presented.len() > 128 {
            return Err(ApiError::unauthorized("the API key is not valid"));
        }
        let hash = random::sha256_hex(presented.as_bytes());
        if let Some(c) = self.cache.get(&hash).await {
            return Ok(c);
        }
        let record = self
            .store
            .find_api_key_by_hash(&hash)
            .await
            .map_err(relay_core::ServiceError::from)?;
        match record {
            Some(r) if r.revoked_at.is_none_or(|t| t > self.clock.now()) => {
                let caller = Caller {
                    workspace_id: r.workspace_id,
                    api_key_id: r.id,
                    rate_limit_per_minute: r.rate_limit_per_minute,
                };
                self.cache.insert(hash, caller.clone()).await;
                Ok(caller)
            }
            _ => Err(ApiError::unauthorized("the API key is not valid")),
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
) -> MintedKey {
    let secret = format!("{KEY_PREFIX}{}", random::token());
    let record = ApiKeyRecord {
        id: format!("key_{}", uuid::Uuid::now_v7().simple()),
        workspace_id,
        secret_hash: random::sha256_hex(secret.as_bytes()),
        created_at: now,
        revoked_at: None,
        rate_limit_per_minute,
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
        // the workspace).
        if let Some(caller) = parts.extensions.get::<Caller>() {
            relay_core::audit::RequestContext::set_current_api_key(&caller.api_key_id);
            return Ok(caller.clone());
        }
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer <api key>`"))?;
        let value = header
            .to_str()
            .map_err(|_| ApiError::unauthorized("the API key is not valid"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| ApiError::unauthorized("expected `Authorization: Bearer <api key>`"))?;
        let caller = state.api_keys.authenticate(token.trim()).await?;
        tracing::Span::current().record("workspace_id", caller.workspace_id.as_str());
        relay_core::audit::RequestContext::set_current_api_key(&caller.api_key_id);
        Ok(caller)
    }
}
