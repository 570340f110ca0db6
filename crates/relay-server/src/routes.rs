//! Handlers, grouped by resource.

pub mod audit;
pub mod connections;
pub mod health;
pub mod oauth;
