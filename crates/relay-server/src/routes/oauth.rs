//! The connect flow: `/oauth/{provider}/authorize`, `/callback` and `/status`.

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use relay_core::connect::{CallbackError, CallbackParams, StartRequest};
use relay_core::{ActorId, ActorType, ProviderName, Scopes};
use serde::{Deserialize, Serialize};
use url::Url;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::{ApiError, ErrorEnvelope};
use crate::extract::{ApiPath, ApiQuery};
use crate::state::AppState;

pub(crate) fn parse_provider(state: &AppState, raw: &str) -> Result<ProviderName, ApiError> {
    let name = ProviderName::parse(raw).map_err(|_| ApiError::not_found("provider"))?;
    if state.catalog.listing(&name).is_none() {
        return Err(ApiError::not_found("provider"));
    }
    Ok(name)
}

pub(crate) fn parse_actor(
    actor_id: &str,
    actor_type: Option<&str>,
) -> Result<(ActorType, ActorId), ApiError> {
    let actor_id = ActorId::parse(actor_id).map_err(|e| ApiError::validation(e.to_string()))?;
    let actor_type = match actor_type {
        Some(t) => ActorType::parse(t).map_err(|e| ApiError::validation(e.to_string()))?,
        None => ActorType::user(),
    };
    Ok((actor_type, actor_id))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeQuery {
    /// Your identifier for the end user.
    actor_id: String,
    /// Defaults to `user`.
    actor_type: Option<String>,
    /// Extra scopes, comma or space separated, added to the provider's configured scopes.
    scopes: Option<String>,
    /// Where to send the browser after the callback; must match `oauth.return_to_allow`.
    return_to: Option<String>,
    /// Passed to the provider as OIDC `login_hint` (which account to suggest). At most 256
    /// characters.
    login_hint: Option<String>,
    /// Refuse the callback unless the provider account's `sub` is this (connection fixation
    /// defence). Needs a provider that says who signed in (ID token or userinfo).
    expected_subject: Option<String>,
    /// Refuse the callback unless the provider account's verified email is this
    /// (case-insensitive). Needs a provider that says who signed in.
    expected_email: Option<String>,
    /// Opaque value echoed as `app_state` on `return_to`, so your app can check the return
    /// belongs to the session that started it. At most 512 characters.
    app_state: Option<String>,
}

/// An optional free-text parameter: at most `max` characters, no control characters.
fn bounded(name: &str, value: Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.is_empty() => Ok(None),
        Some(v) if v.chars().count() > max || v.chars().any(char::is_control) => {
            Err(ApiError::validation(format!(
                "{name} must be at most {max} characters, without control characters"
            )))
        }
        other => Ok(other),
    }
}

#[derive(Serialize, ToSchema)]
pub struct AuthorizeResponse {
    /// Send the user's browser here.
    authorize_url: String,
    /// The flow's state (also inside `authorize_url`); single use.
    state: String,
    /// RFC 3339; the flow must complete before this.
    expires_at: String,
}

/// Start a connect flow for an actor.
#[utoipa::path(get, path = "/oauth/{provider}/authorize", tag = "oauth",
    params(("provider" = String, Path, description = "Configured provider name"), AuthorizeQuery),
    responses(
        (status = 200, body = AuthorizeResponse),
        (status = 400, body = ErrorEnvelope, description = "invalid_query (missing, ill-typed or unknown parameter), return_to_not_allowed; `identity_unverifiable` when expected_subject or expected_email is given for a provider that cannot say who signed in"),
        (status = 401, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope, description = "Unknown provider"),
        (status = 422, body = ErrorEnvelope, description = "validation_error: invalid actor or scopes"),
    ),
    security(("api_key" = [])))]
pub async fn get_authorize(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(provider): ApiPath<String>,
    ApiQuery(q): ApiQuery<AuthorizeQuery>,
) -> Result<axum::Json<AuthorizeResponse>, ApiError> {
    use secrecy::ExposeSecret;
    let provider = parse_provider(&state, &provider)?;
    let (actor_type, actor_id) = parse_actor(&q.actor_id, q.actor_type.as_deref())?;
    let scopes = q
        .scopes
        .as_deref()
        .map(Scopes::parse)
        .transpose()
        .map_err(|e| ApiError::validation(e.to_string()))?;
    let return_to = match q.return_to {
        None => None,
        Some(raw) => {
            let url = Url::parse(&raw).map_err(|_| {
                ApiError::bad_request("return_to_not_allowed", "return_to must be an absolute URL")
            })?;
            if !state.settings.return_to_allowed(&url) {
                return Err(ApiError::bad_request(
                    "return_to_not_allowed",
                    "return_to is not in the configured allow-list (oauth.return_to_allow)",
                ));
            }
            Some(url.to_string())
        }
    };
    let login_hint = bounded("login_hint", q.login_hint, 256)?;
    let expected_subject = bounded("expected_subject", q.expected_subject, 256)?;
    let expected_email = bounded("expected_email", q.expected_email, 256)?;
    let app_state = bounded("app_state", q.app_state, 512)?;
    let started = state
        .connect
        .start(StartRequest {
            workspace_id: caller.workspace_id,
            provider,
            actor_type,
            actor_id,
            scopes,
            return_to,
            login_hint,
            expected_subject,
            expected_email,
            app_state,
        })
        .await?;
    Ok(axum::Json(AuthorizeResponse {
        authorize_url: started.authorize_url,
        state: started.state.expose_secret().to_owned(),
        expires_at: started.expires_at.to_rfc3339(),
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The provider redirects the browser here (public).
#[utoipa::path(get, path = "/oauth/{provider}/callback", tag = "oauth",
    params(("provider" = String, Path), CallbackQuery),
    responses(
        (status = 200, description = "HTML page: the account is connected"),
        (status = 303, description = "Redirect to return_to with connection_id, account_subject and account_email (when known) and app_state (when given) added"),
        (status = 400, description = "HTML page: invalid, expired or reused state; provider error; issuer mismatch; invalid ID token"),
        (status = 403, description = "HTML page: another account signed in than expected_subject / expected_email; nothing was connected"),
        (status = 404, body = ErrorEnvelope, description = "Unknown provider"),
        (status = 502, description = "HTML page: the code exchange failed"),
    ))]
pub async fn get_callback(
    State(state): State<AppState>,
    ApiPath(provider): ApiPath<String>,
    Query(q): Query<CallbackQuery>,
) -> Response {
    // Refused before anything is recorded: an unconfigured name must not mint an
    // `oauth_events_total` series (this route is public, so names are attacker-chosen). No
    // provider redirects a browser here, so the API's 404 envelope is the answer.
    let provider = match parse_provider(&state, &provider) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let params = CallbackParams {
        code: q.code,
        state: q.state,
        iss: q.iss,
        error: q.error,
        error_description: q.error_description,
    };
    match state.connect.complete(&provider, params).await {
        // The tokens were stored together with their `connection.created` audit record.
        Ok(done) => {
            let conn_id = done.connection.id.to_string();
            if let Some(mut url) = done.return_to.and_then(|r| Url::parse(&r).ok()) {
                {
                    let mut q = url.query_pairs_mut();
                    q.append_pair("connection_id", &conn_id);
                    // Which account was linked, so the app can check it is its user's.
                    if let Some(account) = &done.account {
                        q.append_pair("account_subject", &account.subject);
                        if let Some(email) = &account.email {
                            q.append_pair("account_email", email);
                        }
                    }
                    if let Some(app_state) = &done.app_state {
                        q.append_pair("app_state", app_state);
                    }
                }
                return with_page_headers(Redirect::to(url.as_str()).into_response());
            }
            page(
                StatusCode::OK,
                "connected",
                "Account connected",
                "Your account is connected. You can close this window.",
            )
        }
        Err(CallbackError::AccountMismatch {
            detail,
            workspace_id,
            actor_id,
        }) => {
            let recorded = state
                .audit
                .record(
                    relay_core::audit::AuditEvent::new(
                        workspace_id,
                        relay_core::audit::AuditAction::ConnectionCreated,
                        state.clock.now(),
                    )
                    .provider(provider.as_str())
                    .actor_id(actor_id.as_str())
                    .failed(format!("account_mismatch: {detail}")),
                )
                .await;
            if let Err(e) = recorded {
                tracing::error!(error = %e, "a refused connect callback could not be audited");
            }
            page(
                StatusCode::FORBIDDEN,
                "account_mismatch",
                "Could not connect the account",
                relay_core::connect::ACCOUNT_MISMATCH,
            )
        }
        Err(e) => {
            let message = match &e {
                CallbackError::Service(_) => {
                    "Something went wrong while saving the connection. Please try again.".to_owned()
                }
                other => other.to_string(),
            };
            let (status, code) = match e {
                CallbackError::InvalidState => (StatusCode::BAD_REQUEST, "invalid_state"),
                CallbackError::ExpiredState => (StatusCode::BAD_REQUEST, "expired_state"),
                CallbackError::IssuerMismatch => (StatusCode::BAD_REQUEST, "issuer_mismatch"),
                CallbackError::ProviderDenied { .. } => {
                    (StatusCode::BAD_REQUEST, "provider_denied")
                }
                CallbackError::MissingCode => (StatusCode::BAD_REQUEST, "missing_code"),
                CallbackError::ExchangeFailed(_) => {
                    (StatusCode::BAD_GATEWAY, "token_exchange_failed")
                }
                CallbackError::ExchangeTimeout => {
                    (StatusCode::GATEWAY_TIMEOUT, "token_exchange_timeout")
                }
                CallbackError::IdTokenInvalid(_) => (StatusCode::BAD_REQUEST, "id_token_invalid"),
                CallbackError::AccountMismatch { .. } => {
                    (StatusCode::FORBIDDEN, "account_mismatch")
                }
                CallbackError::Service(inner) => {
                    let api = ApiError::from(inner);
                    (api.status, api.code)
                }
            };
            page(status, code, "Could not connect the account", &message)
        }
    }
}

fn with_page_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    resp
}

/// A small, self-contained HTML page; every dynamic value is escaped.
fn page(status: StatusCode, code: &str, title: &str, message: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}}\
         code{{color:#666}}</style></head><body><h1>{t}</h1><p>{m}</p><p><code>{c}</code></p></body></html>",
        t = escape(title),
        m = escape(message),
        c = escape(code),
    );
    let mut resp = (status, Html(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(code) {
        resp.headers_mut().insert("x-relay-result", v);
    }
    with_page_headers(resp)
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    actor_id: String,
    actor_type: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct LinkStatus {
    linked: bool,
    connection_id: Option<String>,
    /// `active`, `needs_reauth` or `revoked`; absent when not linked.
    status: Option<String>,
    status_reason: Option<String>,
    scopes: Vec<String>,
    expires_at: Option<String>,
    /// The provider account linked (ID token `sub`), when known.
    account_subject: Option<String>,
    account_email: Option<String>,
}

/// Whether an actor is linked at a provider.
#[utoipa::path(get, path = "/oauth/{provider}/status", tag = "oauth",
    params(("provider" = String, Path), StatusQuery),
    responses((status = 200, body = LinkStatus),
        (status = 400, body = ErrorEnvelope, description = "invalid_query: missing, ill-typed or unknown parameter"),
        (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope, description = "validation_error: invalid actor")),
    security(("api_key" = [])))]
pub async fn get_status(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(provider): ApiPath<String>,
    ApiQuery(q): ApiQuery<StatusQuery>,
) -> Result<axum::Json<LinkStatus>, ApiError> {
    let provider = parse_provider(&state, &provider)?;
    let (actor_type, actor_id) = parse_actor(&q.actor_id, q.actor_type.as_deref())?;
    let found = state
        .tokens
        .find(&caller.workspace_id, &provider, &actor_type, &actor_id)
        .await?;
    Ok(axum::Json(match found {
        None => LinkStatus {
            linked: false,
            connection_id: None,
            status: None,
            status_reason: None,
            scopes: Vec::new(),
            expires_at: None,
            account_subject: None,
            account_email: None,
        },
        Some(c) => LinkStatus {
            linked: true,
            connection_id: Some(c.id.to_string()),
            status: Some(c.status.as_str().to_owned()),
            status_reason: c.status_reason.clone(),
            scopes: c.scopes.as_slice().to_vec(),
            expires_at: c.expires_at.map(|t| t.to_rfc3339()),
            account_subject: c.account_subject.clone(),
            account_email: c.account_email.clone(),
        },
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            super::escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}
