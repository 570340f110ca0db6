//! A fake of Microsoft Graph's `POST /v1.0/me/sendMail` on loopback, following the documented
//! request (`{"message": {subject, body: {contentType, content}, toRecipients: [{emailAddress:
//! {address, name}}], ...}, "saveToSentItems"}`) and answers: 202 with no body, or
//! `{"error": {"code", "message", "innerError"}}` (401 `InvalidAuthenticationToken`, 403
//! `ErrorAccessDenied`, 400 `ErrorInvalidRecipients`, 429 `ApplicationThrottled`, 5xx).

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::api_server::{ApiFault, Background, RecordedRequest, Script, TokenCheck, bearer};

struct Inner {
    script: Script,
    tokens: TokenCheck,
    sent: Mutex<Vec<Value>>,
}

pub struct FakeGraph {
    inner: Arc<Inner>,
    server: Background,
}

impl FakeGraph {
    pub fn start(tokens: TokenCheck) -> Self {
        let inner = Arc::new(Inner {
            script: Script::default(),
            tokens,
            sent: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/v1.0/me/sendMail", post(send_mail))
            .with_state(inner.clone());
        Self {
            inner,
            server: Background::start("fake-graph", app),
        }
    }

    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    pub fn push_fault(&self, fault: ApiFault) {
        self.inner.script.push_fault(fault);
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner.script.requests()
    }

    /// The `sendMail` bodies accepted.
    pub fn sent(&self) -> Vec<Value> {
        self.inner.sent.lock().unwrap().clone()
    }
}

fn graph_error(status: u16, code: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [("request-id", "00000000-0000-0000-0000-000000000000")],
        axum::Json(json!({
            "error": {
                "code": code,
                "message": message,
                "innerError": { "date": "2026-01-01T00:00:00", "request-id": "00000000-0000-0000-0000-000000000000" }
            }
        })),
    )
        .into_response()
}

fn recipients_ok(v: &Value, required: bool) -> bool {
    match v {
        Value::Null => !required,
        Value::Array(a) => {
            (!required || !a.is_empty())
                && a.iter().all(|r| {
                    r["emailAddress"]["address"]
                        .as_str()
                        .is_some_and(|s| s.contains('@'))
                })
        }
        _ => false,
    }
}

async fn send_mail(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    inner
        .script
        .record("POST", "/v1.0/me/sendMail", None, &headers, &body);
    match inner.script.next_fault() {
        Some(ApiFault::Delay(d)) => tokio::time::sleep(d).await,
        Some(ApiFault::Unauthorized) => {
            return graph_error(
                401,
                "InvalidAuthenticationToken",
                "Access token has expired or is not yet valid.",
            );
        }
        Some(ApiFault::InsufficientScope) => {
            return graph_error(
                403,
                "ErrorAccessDenied",
                "Access is denied. Check credentials and try again.",
            );
        }
        Some(ApiFault::RateLimited { retry_after_secs }) => {
            let mut r = graph_error(
                429,
                "ApplicationThrottled",
                "Application is over its MailboxConcurrency limit.",
            );
            r.headers_mut().insert(
                header::RETRY_AFTER,
                retry_after_secs.to_string().parse().unwrap(),
            );
            return r;
        }
        Some(ApiFault::Status(s)) => {
            let code = match s {
                400 => "ErrorInvalidRequest",
                404 => "ResourceNotFound",
                500 => "InternalServerError",
                503 => "ServiceUnavailable",
                _ => "UnknownError",
            };
            return graph_error(s, code, &format!("Injected error {s}"));
        }
        None => {}
    }
    if !bearer(&headers).is_some_and(|t| (inner.tokens)(&t)) {
        return graph_error(
            401,
            "InvalidAuthenticationToken",
            "Access token validation failure. Invalid audience.",
        );
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return graph_error(400, "BadRequest", "Unable to read JSON request payload.");
    };
    let m = &v["message"];
    let body_ok = matches!(
        m["body"]["contentType"].as_str(),
        Some("Text" | "HTML" | "text" | "html")
    ) && m["body"]["content"].is_string();
    if !m["subject"].is_string() || !body_ok {
        return graph_error(400, "ErrorInvalidRequest", "The message is malformed.");
    }
    if !recipients_ok(&m["toRecipients"], true)
        || !recipients_ok(&m["ccRecipients"], false)
        || !recipients_ok(&m["bccRecipients"], false)
    {
        return graph_error(
            400,
            "ErrorInvalidRecipients",
            "At least one recipient is not valid.",
        );
    }
    inner.sent.lock().unwrap().push(v);
    (
        StatusCode::ACCEPTED,
        [("request-id", "11111111-2222-3333-4444-555555555555")],
    )
        .into_response()
}
