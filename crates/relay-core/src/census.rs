//! Counting connections by provider and status, for the `connections` gauge that tells
//! operators when connections needing re-authorization start to pile up. Computed
//! periodically from the store, never per request.

use async_trait::async_trait;

use crate::error::StoreError;

/// How many connections of one provider have one status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionCount {
    pub provider: String,
    /// `active`, `needs_reauth` or `revoked`.
    pub status: String,
    pub count: i64,
}

#[async_trait]
pub trait ConnectionCensus: Send + Sync + 'static {
    /// Counts every workspace's connections, grouped by provider and status.
    async fn count_connections(&self) -> Result<Vec<ConnectionCount>, StoreError>;
}
