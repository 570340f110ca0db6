//! `GET /providers`: what a workspace can connect to (names, kinds, scopes, whether actions may
//! execute). Configuration facts only; never a client secret.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::ErrorEnvelope;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct ProviderView {
    /// The `{provider}` in URLs.
    name: String,
    /// `google`, `microsoft`, `oidc` or `oauth2`.
    kind: String,
    /// Scopes requested on every connect flow.
    scopes: Vec<String>,
    /// Whether actions may execute against it (`PROVIDER_{NAME}_ENABLED`).
    enabled: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ProviderList {
    providers: Vec<ProviderView>,
}

/// The configured providers.
#[utoipa::path(get, path = "/providers", tag = "oauth",
    responses((status = 200, body = ProviderList), (status = 401, body = ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn list_providers(
    State(state): State<AppState>,
    _caller: Caller,
) -> axum::Json<ProviderList> {
    let providers = state
        .catalog
        .listings()
        .into_iter()
        .map(|p| ProviderView {
            name: p.name.to_string(),
            kind: p.kind.to_owned(),
            scopes: p.scopes.as_slice().to_vec(),
            enabled: p.enabled,
        })
        .collect();
    axum::Json(ProviderList { providers })
}
