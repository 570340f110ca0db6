//! One error type for the whole API and one JSON shape:
//! `{"error": {"code": "snake_case", "message": "..."}}`.
//!
//! Codes are stable (clients switch on them). 5xx bodies say nothing internal: the cause is
//! logged once, here, with the request's span (which carries the request id).

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use relay_core::ServiceError;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<Duration>,
    /// The `WWW-Authenticate` challenge of a 401 (RFC 6750); every 401 carries one, `Bearer`
    /// when this is `None`.
    pub www_authenticate: Option<&'static str>,
    /// The provider's own HTTP status, when the error is its refusal (`{api}_4xx`).
    pub provider_status: Option<u16>,
}

/// The challenge of a 401 when a bearer token was presented but is not valid (RFC 6750 §3.1).
const INVALID_TOKEN_CHALLENGE: &str = r#"Bearer error="invalid_token""#;

/// The error envelope, as documented in the OpenAPI description.
#[derive(Serialize, ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, snake_case; switch on this.
    pub code: String,
    /// Human-readable; may change.
    pub message: String,
    /// The provider's own HTTP status, on a refusal by the provider API (`{api}_4xx`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_status: Option<u16>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            www_authenticate: None,
            provider_status: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// 401 for a request without a usable bearer credential (challenge `Bearer`).
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 401 for a bearer token that is not a valid API key (challenge
    /// `Bearer error="invalid_token"`). Same code as [`ApiError::unauthorized`]: clients need
    /// not tell the two apart.
    pub fn invalid_token() -> Self {
        let mut err = Self::unauthorized("the API key is not valid");
        err.www_authenticate = Some(INVALID_TOKEN_CHALLENGE);
        err
    }

    /// 403 for a valid key whose role (or whose relation to the key it acts on) does not allow
    /// the operation.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// A value is invalid. Always 422, whether it came in the body, the query or the path, so
    /// that one code has one status.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            message,
        )
    }

    /// The request body is larger than the server accepts (1 MiB).
    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is larger than the 1 MiB this server accepts",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "an internal error occurred; the request id identifies it in the logs",
        )
    }
}

fn e_message_identity() -> String {
    ServiceError::IdentityUnverifiable.to_string()
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::InvalidInput(v) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_error",
                v.to_string(),
            ),
            ServiceError::NotFound(what) => Self::not_found(what),
            ServiceError::NeedsReauth { reason } => Self::new(
                StatusCode::CONFLICT,
                "needs_reauth",
                format!("the user must reconnect this account ({reason})"),
            ),
            ServiceError::Revoked => Self::new(
                StatusCode::CONFLICT,
                "connection_revoked",
                "the connection was revoked",
            ),
            ServiceError::ProviderUnavailable {
                detail,
                retry_after,
            } => {
                tracing::warn!(%detail, "provider unavailable");
                Self {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    code: "provider_unavailable",
                    message: format!("the provider is temporarily unavailable: {detail}"),
                    retry_after: Some(retry_after.unwrap_or(Duration::from_secs(5))),
                    www_authenticate: None,
                    provider_status: None,
                }
            }
            ServiceError::ProviderRejected { detail } => {
                tracing::warn!(%detail, "provider rejected a request");
                Self::new(
                    StatusCode::BAD_GATEWAY,
                    "provider_error",
                    format!("the provider refused the request: {detail}"),
                )
            }
            ServiceError::IdentityUnverifiable => Self::new(
                StatusCode::BAD_REQUEST,
                "identity_unverifiable",
                e_message_identity(),
            ),
            ServiceError::Vault(err) => {
                tracing::error!(error = %err, "stored token could not be decrypted");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "token_undecryptable",
                    "a stored token could not be decrypted with the configured keys",
                )
            }
            ServiceError::Audit(err) => {
                tracing::error!(error = %err, "operation refused: its audit record was not stored");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "audit_unavailable",
                    "the operation could not be recorded in the audit log, so it was not performed",
                )
            }
            ServiceError::Store(err) => {
                tracing::error!(error = %err, "storage failure");
                match err {
                    relay_core::StoreError::Unavailable(_) => Self::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "database_unavailable",
                        "the database is unavailable",
                    ),
                    _ => Self::internal(),
                }
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        if body_timed_out(&r) {
            return Self::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request body was not received in time ([server] body_read_timeout_secs)",
            );
        }
        match r {
            JsonRejection::JsonDataError(e) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_error",
                e.body_text(),
            ),
            JsonRejection::JsonSyntaxError(e) => Self::bad_request("invalid_json", e.body_text()),
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected `Content-Type: application/json`",
            ),
            // A body over the limit (a chunked one is only found out while it is read).
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => Self::payload_too_large(),
            other => Self::bad_request("invalid_request", other.body_text()),
        }
    }
}

/// Whether buffering the body failed because the body-read deadline passed.
fn body_timed_out(r: &JsonRejection) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(r);
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        // axum's own text says "Invalid URL: ..."; the segment itself is not echoed.
        Self::bad_request(
            "invalid_path",
            format!("a path segment is not valid: {}", r.body_text()),
        )
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::bad_request("invalid_query", r.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorEnvelope {
            error: ErrorBody {
                code: self.code.to_owned(),
                message: self.message,
                provider_status: self.provider_status,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(ra) = self.retry_after {
            let secs = ra.as_secs().max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(self.www_authenticate.unwrap_or("Bearer")),
            );
        }
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}
