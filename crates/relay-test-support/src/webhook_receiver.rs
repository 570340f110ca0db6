//! A webhook receiver on loopback: records every delivery (headers and exact body bytes) and
//! answers 200 unless told otherwise (a status with a body, 429 with `Retry-After`, or a
//! delay), so tests can check signatures, retries and failure reports.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::api_server::{Background, RecordedRequest, Script};

/// How to answer one delivery.
#[derive(Debug, Clone)]
pub enum Reply {
    Status {
        status: u16,
        body: String,
    },
    RateLimited {
        retry_after_secs: u64,
    },
    Delay(Duration),
    /// A 302 to another URL (which must not be followed).
    Redirect(String),
}

struct Inner {
    script: Script,
    replies: Mutex<VecDeque<Reply>>,
}

pub struct WebhookReceiver {
    inner: Arc<Inner>,
    server: Background,
}

impl WebhookReceiver {
    pub fn start() -> Self {
        let inner = Arc::new(Inner {
            script: Script::default(),
            replies: Mutex::new(VecDeque::new()),
        });
        let app = Router::new()
            .route("/{*path}", post(receive))
            .with_state(inner.clone());
        Self {
            inner,
            server: Background::start("webhook-receiver", app),
        }
    }

    /// `http://127.0.0.1:PORT/hook`.
    pub fn url(&self) -> String {
        format!("{}/hook", self.server.base_url())
    }

    pub fn port(&self) -> u16 {
        self.server.addr.port()
    }

    pub fn push_reply(&self, reply: Reply) {
        self.inner.replies.lock().unwrap().push_back(reply);
    }

    pub fn deliveries(&self) -> Vec<RecordedRequest> {
        self.inner.script.requests()
    }
}

async fn receive(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    inner.script.record("POST", "/hook", None, &headers, &body);
    let reply = inner.replies.lock().unwrap().pop_front();
    match reply {
        None => (StatusCode::OK, "ok").into_response(),
        Some(Reply::Delay(d)) => {
            tokio::time::sleep(d).await;
            (StatusCode::OK, "late").into_response()
        }
        Some(Reply::Status { status, body }) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body,
        )
            .into_response(),
        Some(Reply::RateLimited { retry_after_secs }) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, retry_after_secs.to_string())],
            "slow down",
        )
            .into_response(),
        Some(Reply::Redirect(to)) => {
            (StatusCode::FOUND, [(header::LOCATION, to)], "moved").into_response()
        }
    }
}
