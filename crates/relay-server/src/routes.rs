//! Handlers, grouped by resource.

pub mod actions;
pub mod connections;
pub mod health;
pub mod oauth;
pub mod webhooks;
