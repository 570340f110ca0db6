//! Cross-cutting request handling: a span per request carrying the request id (and the audit
//! context: request id, client address, API key), HTTP metrics by route template (never by
//! raw path), and JSON envelopes for 404, 405 and panics.

use std::any::Any;

use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::error::ApiError;

pub(crate) async fn observe(req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let client_addr = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string());
    let span = tracing::info_span!("request", %request_id, %method, %route, workspace_id = tracing::field::Empty);
    let context = relay_core::audit::RequestContext::new(request_id, client_addr);
    let resp = context.scope(next.run(req)).instrument(span.clone()).await;
    let status = resp.status().as_u16();
    let elapsed = started.elapsed();
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(
                status,
                elapsed_ms = elapsed.as_millis() as u64,
                "request failed"
            );
        } else {
            tracing::debug!(status, elapsed_ms = elapsed.as_millis() as u64, "request");
        }
    });
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(elapsed.as_secs_f64());
    resp
}

/// The longest incoming `X-Request-Id` kept.
const MAX_REQUEST_ID: usize = 128;

/// Keeps an incoming `X-Request-Id` only when it is 1 to 128 characters of letters, digits and
/// `-_.:`; anything else (a log-injection attempt, a megabyte of noise) is removed, and a new
/// id is generated for the request.
pub(crate) async fn screen_request_id(mut req: Request, next: Next) -> Response {
    let acceptable = |v: &axum::http::HeaderValue| {
        let b = v.as_bytes();
        !b.is_empty()
            && b.len() <= MAX_REQUEST_ID
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
    };
    let headers = req.headers_mut();
    let all_ok = {
        let mut values = headers.get_all("x-request-id").iter();
        matches!((values.next(), values.next()), (Some(v), None) if acceptable(v))
    };
    if !all_ok {
        headers.remove("x-request-id");
    }
    next.run(req).await
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "route_not_found", "no such route")
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method",
    )
}

pub(crate) fn panic_response(_: Box<dyn Any + Send + 'static>) -> Response {
    // The panic payload may hold anything; it is not echoed or logged verbatim.
    tracing::error!("a request handler panicked");
    ApiError::internal().into_response()
}
