//! The application state handed to every handler: explicit `Arc` handles, no globals.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use relay_core::Clock;
use relay_core::actions::ActionService;
use relay_core::connect::ConnectService;
use relay_core::oauth::ProviderDirectory;
use relay_core::ports::Store;
use relay_core::refresh::TokenService;
use url::Url;

use crate::auth::ApiKeys;
use crate::rate_limit::RateLimits;
use crate::readiness::ReadinessCheck;
use relay_core::coordination::ApiKeyAdmin;

/// The state every handler receives: one `Arc` around [`AppParts`], so that handing it to a
/// handler (axum clones the state for every request, several times) costs one atomic
/// increment instead of one per field. Fields are reached through `Deref`: `state.tokens`.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl AppState {
    pub fn new(parts: AppParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

pub struct AppParts {
    pub tokens: Arc<TokenService>,
    pub connect: Arc<ConnectService>,
    pub actions: Arc<ActionService>,
    pub store: Arc<dyn Store>,
    pub catalog: Arc<dyn ProviderDirectory>,
    pub api_keys: Arc<ApiKeys>,
    pub clock: Arc<dyn Clock>,
    pub settings: Arc<ServerSettings>,
    pub metrics: PrometheusHandle,
    /// Records sensitive operations; handlers await it before answering.
    pub audit: Arc<dyn relay_core::audit::AuditSink>,
    /// Reads the audit log for `GET /audit`.
    pub audit_store: Arc<dyn relay_core::audit::AuditStore>,
    /// Checks the chain for `GET /audit/verify`.
    pub audit_key: Arc<relay_core::audit::AuditKey>,
    /// Checks `/ready` runs besides the database and the key (Redis, breakers, audit writer).
    pub readiness: Vec<Arc<dyn ReadinessCheck>>,
    pub rate_limits: Arc<RateLimits>,
    pub api_key_admin: Arc<dyn ApiKeyAdmin>,
}

/// Server behaviour that comes from configuration.
#[derive(Debug, Clone, Default)]
pub struct ServerSettings {
    /// Where a connect flow may send the browser afterwards. A `return_to` must have the same
    /// scheme, host and port as one entry, and a path under that entry's path.
    pub return_to_allow: Vec<Url>,
    /// The primary encryption key's id, reported by `/ready`.
    pub primary_key_id: String,
    /// Origins allowed to call the API from a browser (`[server] cors_allow_origins`).
    pub cors_allow_origins: crate::cors::CorsOrigins,
    /// Timeouts and the cap on open client connections.
    pub connection_limits: crate::ConnectionLimits,
    /// `/metrics` and the full `/ready` are served on a separate listener
    /// (`[server] metrics_listen`), not on this one.
    pub metrics_listen: bool,
    /// `[server] metrics_token`: required (as a bearer token) for `/metrics`.
    pub metrics_token: Option<secrecy::SecretString>,
    /// `[mcp]`: the MCP tool server's behaviour.
    pub mcp: crate::mcp::McpSettings,
}

impl ServerSettings {
    /// Whether the public listener keeps operational details to itself.
    pub fn ops_restricted(&self) -> bool {
        self.metrics_listen || self.metrics_token.is_some()
    }

    pub fn return_to_allowed(&self, candidate: &Url) -> bool {
        if !candidate.username().is_empty() || candidate.password().is_some() {
            return false;
        }
        self.return_to_allow.iter().any(|allowed| {
            allowed.scheme() == candidate.scheme()
                && allowed.host_str() == candidate.host_str()
                && allowed.port_or_known_default() == candidate.port_or_known_default()
                && path_under(allowed.path(), candidate.path())
        })
    }
}

/// `/app/` allows `/app/x`; `/app` allows `/app` and `/app/x` but not `/application`.
fn path_under(base: &str, path: &str) -> bool {
    if base.ends_with('/') {
        path.starts_with(base)
    } else {
        path == base || path.starts_with(&format!("{base}/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_to_allow_list_is_exact_on_origin_and_prefix_on_path() {
        let s = ServerSettings {
            return_to_allow: vec![
                Url::parse("https://app.example.com/settings").expect("url"),
                Url::parse("http://127.0.0.1:3000/").expect("url"),
            ],
            primary_key_id: String::new(),
            ..ServerSettings::default()
        };
        let allowed = [
            "https://app.example.com/settings",
            "https://app.example.com/settings/connections?x=1",
            "http://127.0.0.1:3000/anything",
        ];
        let refused = [
            "https://app.example.com/settingsx",
            "https://app.example.com.evil.com/settings",
            "http://app.example.com/settings",
            "https://app.example.com:8443/settings",
            "https://user@app.example.com/settings",
            "http://127.0.0.1:3001/",
            "javascript:alert(1)",
        ];
        for a in allowed {
            assert!(s.return_to_allowed(&Url::parse(a).expect("url")), "{a}");
        }
        for r in refused {
            assert!(!s.return_to_allowed(&Url::parse(r).expect("url")), "{r}");
        }
    }
}
