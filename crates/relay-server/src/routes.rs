//! Handlers, grouped by resource.

pub mod api_keys;
pub mod connections;
pub mod health;
pub mod oauth;
