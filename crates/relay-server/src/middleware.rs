//! Cross-cutting request handling: request ids, a span per request carrying the request id
//! (and the audit context: request id, client address, API key), authentication and rate
//! limits, HTTP metrics by route template (never by raw path), and JSON envelopes for 404,
//! 405, panics and the plain-text errors of layers that know nothing of the API (413, bad
//! paths).

use std::any::Any;
use std::collections::HashMap;
use std::sync::{LazyLock, RwLock};
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{Counter, Histogram};
use tracing::Instrument;

use crate::error::ApiError;
use crate::rate_limit::{self, Admission};
use crate::state::AppState;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Everything every request goes through, in one middleware rather than a stack of layers
/// (each `from_fn` layer boxes the inner service and its future per request; on the token
/// read's hot path the stack of five cost about a third of the request's CPU):
///
/// 1. the request id: an incoming `X-Request-Id` is kept when it is acceptable (see
///    [`acceptable_request_id`]), otherwise a new one is generated; it is set on the request
///    and returned on the response;
/// 2. `Authorization` and `Cookie` are marked sensitive, so no debug output shows them;
/// 3. a span carrying the request id (on every log line of the request) and the audit
///    context (request id, client address, API key);
/// 4. authentication and the caller's rate limit ([`rate_limit::authenticate`],
///    [`rate_limit::admit`]);
/// 5. HTTP metrics by route template (never by raw path), method and status.
pub(crate) async fn handle(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = request_id(req.headers_mut());
    mark_sensitive(req.headers_mut());
    let route = req.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = method_label(req.method());
    let client_addr = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string());
    let id = request_id.to_str().unwrap_or_default();
    // Authenticated before the span is made, so that the span is made with the workspace
    // (recording a field on a span afterwards costs the log formatter more); authentication
    // logs nothing of its own.
    let caller = match rate_limit::authenticate(&state, req.headers()).await {
        Ok(caller) => caller,
        Err(failure) => {
            req.extensions_mut().insert(failure);
            None
        }
    };
    let workspace_id = caller.as_ref().map(|c| c.workspace_id.as_str());
    let span = tracing::info_span!("request", request_id = %id, %method, %route, workspace_id);
    let context = relay_core::audit::RequestContext::new(id, client_addr);
    let resp = context
        .scope(async {
            match rate_limit::admit(&state, caller, &mut req).await {
                Admission::Refused(refusal) => refusal,
                Admission::Unauthenticated => next.run(req).await,
                Admission::Admitted(decision) => {
                    let mut resp = next.run(req).await;
                    rate_limit::add_headers(resp.headers_mut(), &decision);
                    resp
                }
            }
        })
        .instrument(span.clone())
        .await;
    let mut resp = envelope_plain_errors(resp).await;
    resp.headers_mut().insert(X_REQUEST_ID, request_id);
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
    let (requests, duration) = HTTP_METRICS.series(method, route, status);
    requests.increment(1);
    duration.record(elapsed.as_secs_f64());
    resp
}

/// The longest incoming `X-Request-Id` kept.
const MAX_REQUEST_ID: usize = 128;

/// An incoming `X-Request-Id` is kept only when it is a single value of 1 to 128 letters,
/// digits and `-_.:`; anything else (a log-injection attempt, a megabyte of noise, two
/// values) is dropped for a new id.
fn acceptable_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_REQUEST_ID
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
}

/// The request's id (kept or generated), also set on the request for the handlers.
fn request_id(headers: &mut HeaderMap) -> HeaderValue {
    let kept = {
        let mut values = headers.get_all(&X_REQUEST_ID).iter();
        match (values.next(), values.next()) {
            (Some(v), None) if acceptable_request_id(v) => Some(v.clone()),
            _ => None,
        }
    };
    let id = kept.unwrap_or_else(|| {
        let mut buf = uuid::Uuid::encode_buffer();
        let generated = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
        HeaderValue::from_str(generated).unwrap_or_else(|_| HeaderValue::from_static("-"))
    });
    headers.insert(X_REQUEST_ID, id.clone());
    id
}

fn mark_sensitive(headers: &mut HeaderMap) {
    for name in [AUTHORIZATION, COOKIE] {
        if let axum::http::header::Entry::Occupied(mut entry) = headers.entry(name) {
            for value in entry.iter_mut() {
                value.set_sensitive(true);
            }
        }
    }
}

/// The method as a metric label: the standard ones by name, any extension method as `other`
/// (a client must not be able to mint new series).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

static HTTP_METRICS: LazyLock<HttpMetrics> = LazyLock::new(HttpMetrics::default);

/// The handles of `http_requests_total` and `http_request_duration_seconds`, by route
/// template, method and status: found with one map lookup per request instead of building
/// and hashing owned label sets for each metric. Bounded like the labels themselves (route
/// templates × standard methods × statuses).
#[derive(Default)]
struct HttpMetrics {
    routes: RwLock<HashMap<Box<str>, Vec<MethodSeries>>>,
}

struct MethodSeries {
    method: &'static str,
    duration: Histogram,
    requests: Vec<(u16, Counter)>,
}

impl HttpMetrics {
    fn series(&self, method: &'static str, route: &str, status: u16) -> (Counter, Histogram) {
        let found = |routes: &HashMap<Box<str>, Vec<MethodSeries>>| {
            let m = routes.get(route)?.iter().find(|m| m.method == method)?;
            let (_, requests) = m.requests.iter().find(|(s, _)| *s == status)?;
            Some((requests.clone(), m.duration.clone()))
        };
        if let Some(series) = found(&self.routes.read().unwrap_or_else(|p| p.into_inner())) {
            return series;
        }
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        let methods = routes.entry(route.into()).or_default();
        let index = match methods.iter().position(|m| m.method == method) {
            Some(i) => i,
            None => {
                methods.push(MethodSeries {
                    method,
                    duration: metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route.to_owned()),
                    requests: Vec::new(),
                });
                methods.len() - 1
            }
        };
        let m = &mut methods[index];
        let requests = match m.requests.iter().find(|(s, _)| *s == status) {
            Some((_, c)) => c.clone(),
            None => {
                let c = metrics::counter!("http_requests_total", "method" => method, "route" => route.to_owned(), "status" => status.to_string());
                m.requests.push((status, c.clone()));
                c
            }
        };
        (requests, m.duration.clone())
    }
}

/// The longest plain-text error body read to classify it (axum's and tower-http's are short).
const MAX_PLAIN_ERROR: usize = 4096;

/// Rewrites an error answered in plain text by a layer or extractor that knows nothing of the
/// API (tower-http's body limit answers 413 "length limit exceeded", axum's path extractor 400
/// "Invalid URL: ...") into the `{"error": {"code", "message"}}` envelope, so every error a
/// client sees has a stable code. JSON errors, HTML pages (the OAuth callback) and successes
/// pass untouched.
async fn envelope_plain_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_plain = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !is_plain {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, MAX_PLAIN_ERROR)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let error = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::payload_too_large(),
        StatusCode::BAD_REQUEST if text.starts_with("Invalid URL") => ApiError::bad_request(
            "invalid_path",
            format!("a path segment is not valid: {text}"),
        ),
        StatusCode::BAD_REQUEST => ApiError::bad_request("invalid_request", text),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            status,
            "unsupported_media_type",
            "expected `Content-Type: application/json`",
        ),
        _ if status.is_server_error() => ApiError::internal(),
        _ => ApiError::new(status, "invalid_request", text),
    };
    let mut rewritten = error.into_response();
    // Headers the layers set (CORS, rate limits) are kept; the body's own are replaced.
    for (name, value) in parts.headers.iter() {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            rewritten
                .headers_mut()
                .entry(name)
                .or_insert_with(|| value.clone());
        }
    }
    rewritten
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
