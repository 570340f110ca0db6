//! A connection: one actor's grant at one provider in one workspace, with its sealed tokens
//! and the fields the refresh protocol coordinates on (version and lease).

use crate::clock::Timestamp;
use crate::ids::{ActorId, ActorType, ConnectionId, ProviderName, Scopes, WorkspaceId};
use crate::vault::{Binding, Keyring, VaultError};

pub const ACCESS_TOKEN: &str = "access_token";
pub const REFRESH_TOKEN: &str = "refresh_token";
/// The binding of the refresh slot when it holds a service account's credential (its key,
/// subject and scopes) instead of a refresh token. Only Relay seals under this binding, and
/// only from a key an API caller or operator handed in: whatever a provider answers is sealed
/// as a refresh token, so it can never pass for a service account.
pub const SERVICE_ACCOUNT: &str = "service_account";

/// The refresh slot's plaintext and the binding column it was sealed under.
pub type OpenedSlot = (zeroize::Zeroizing<Vec<u8>>, &'static str);

/// What a connection renews its access token with, opened from the refresh slot.
pub enum Grant {
    /// An OAuth refresh token (RFC 6749 section 6).
    RefreshToken(zeroize::Zeroizing<String>),
    /// A service account credential, JSON: minted anew with the JWT bearer grant (RFC 7523).
    ServiceAccount(zeroize::Zeroizing<String>),
}

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

    /// Opens the refresh slot: the binding it was sealed under says what it holds. Returns the
    /// plaintext and that binding's column, so a re-seal keeps it.
    pub fn open_refresh_slot(&self, keyring: &Keyring) -> Result<Option<OpenedSlot>, VaultError> {
        let Some(sealed) = self.refresh_token.as_deref() else {
            return Ok(None);
        };
        match keyring.open(sealed, self.binding(REFRESH_TOKEN)) {
            Ok(plain) => Ok(Some((plain, REFRESH_TOKEN))),
            Err(VaultError::Forged) => keyring
                .open(sealed, self.binding(SERVICE_ACCOUNT))
                .map(|plain| Some((plain, SERVICE_ACCOUNT))),
            Err(e) => Err(e),
        }
    }

    /// The connection's grant: a refresh token or a service account, `None` when it has neither.
    pub fn open_grant(&self, keyring: &Keyring) -> Result<Option<Grant>, VaultError> {
        let Some((plain, column)) = self.open_refresh_slot(keyring)? else {
            return Ok(None);
        };
        let text = zeroize::Zeroizing::new(
            String::from_utf8(plain.to_vec()).map_err(|_| VaultError::Malformed)?,
        );
        Ok(Some(if column == SERVICE_ACCOUNT {
            Grant::ServiceAccount(text)
        } else {
            Grant::RefreshToken(text)
        }))
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
