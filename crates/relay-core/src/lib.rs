//! Relay's domain: what a connection is, how its tokens are sealed, when and how they are
//! refreshed, and the ports (traits) that storage, caches and providers implement.
//!
//! This crate performs no I/O of its own. Adapters in `relay-store` and `relay-providers`
//! implement the ports; `relay-server` wires them together. Keeping the rules here means the
//! same refresh protocol runs, unchanged, on SQLite, on PostgreSQL and in unit tests with a
//! manual clock.

pub mod actions;
pub mod audit;
pub mod census;
pub mod clock;
pub mod connect;
pub mod connection;
pub mod coordination;
pub mod error;
pub mod events;
pub mod gates;
pub mod ids;
pub mod oauth;
pub mod ports;
pub mod random;
pub mod refresh;
pub mod refresher;
pub mod rotation;
pub mod vault;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use connection::{Connection, ConnectionStatus};
pub use error::{ServiceError, StoreError};
pub use ids::{ActorId, ActorType, ConnectionId, InvalidValue, ProviderName, Scopes, WorkspaceId};
