//! Handlers, grouped by resource.

pub mod actions;
pub mod api_keys;
pub mod audit;
pub mod connections;
pub mod health;
pub mod oauth;
pub mod providers;
pub mod stats;
pub mod studio;
pub mod webhooks;
