//! A connection: one actor's grant at one provider in one workspace, with its sealed tokens
//! and the fields the refresh protocol coordinates on (version and lease).

use crate::clock::Timestamp;
use crate::ids::{ActorId, ActorType, ConnectionId, ProviderName, Scopes, WorkspaceId};
use crate::vault::Binding;

pub const ACCESS_TOKEN: &str = "access_token";
pub const REFRESH_TOKEN: &str = "refresh_token";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionStatus {
    Active,
    /// The grant no longer works (revoked by the user, expired, rotated out): only the user
    /// reconnecting fixes it. `status_reason` says why.
    NeedsReauth,
    Revoked,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::NeedsReauth => "needs_reauth",
            Self::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "needs_reauth" => Some(Self::NeedsReauth),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

/// A stored connection. Token fields hold sealed bytes only (see [`crate::vault`]); nothing in
/// this struct is a plaintext secret, so it may be cached and logged with `Debug` safely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub id: ConnectionId,
    pub workspace_id: WorkspaceId,
    pub provider: ProviderName,
    pub actor_type: ActorType,
    pub actor_id: ActorId,
    pub scopes: Scopes,
    pub token_type: String,
    pub access_token: Vec<u8>,
    pub refresh_token: Option<Vec<u8>>,
    pub expires_at: Option<Timestamp>,
    pub status: ConnectionStatus,
    pub status_reason: Option<String>,
    /// Incremented by every write of new tokens or status; the compare-and-swap target.
    pub version: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub last_refreshed_at: Option<Timestamp>,
    /// When the background refresher should look at this connection next.
    pub next_refresh_at: Option<Timestamp>,
    pub refresh_failures: i32,
    /// The provider account the connect flow linked (the ID token's `sub`), when known.
    pub account_subject: Option<String>,
    /// That account's email, when the provider granted it and did not call it unverified.
    pub account_email: Option<String>,
}

impl Connection {
    pub fn binding<'a>(&'a self, column: &'a str) -> Binding<'a> {
        Binding {
            workspace: self.workspace_id.as_str(),
            record: self.id.as_str(),
            column,
        }
    }

    pub fn is_leased_at(&self, now: Timestamp) -> bool {
        matches!(self.lease_until, Some(until) if until > now)
    }
}

/// New tokens from a refresh, already sealed for this connection.
#[derive(Debug, Clone)]
pub struct TokenUpdate {
    pub access_token: Vec<u8>,
    /// `None` keeps the stored refresh token (Google does not return one on refresh).
    pub refresh_token: Option<Vec<u8>>,
    pub token_type: String,
    pub expires_at: Option<Timestamp>,
    /// `None` keeps the stored scopes.
    pub scopes: Option<Scopes>,
    pub next_refresh_at: Option<Timestamp>,
    pub now: Timestamp,
}
