//! A local OpenTelemetry collector endpoint for OTLP/HTTP traces, as the OTLP specification
//! describes it: `POST /v1/traces` with a protobuf `ExportTraceServiceRequest`
//! (`Content-Type: application/x-protobuf`), answered `200` with a protobuf
//! `ExportTraceServiceResponse` (empty: full success). It keeps every request so tests can
//! check what was exported; it does not decode protobuf (string fields such as span names and
//! attribute values appear verbatim in the bytes).

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;

/// One export request as received.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub content_type: String,
    pub body: Vec<u8>,
}

pub struct OtlpCollector {
    pub base_url: String,
    received: Arc<Mutex<Vec<ExportRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl OtlpCollector {
    /// Listens on a free loopback port.
    pub async fn start() -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route("/v1/traces", post(export_traces))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base_url,
            received,
            task,
        }
    }

    pub fn requests(&self) -> Vec<ExportRequest> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for OtlpCollector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn export_traces(
    State(received): State<Arc<Mutex<Vec<ExportRequest>>>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, [(header::HeaderName, &'static str); 1], Vec<u8>) {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if content_type != "application/x-protobuf" {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            [(header::CONTENT_TYPE, "text/plain")],
            b"expected application/x-protobuf".to_vec(),
        );
    }
    received.lock().unwrap().push(ExportRequest {
        content_type,
        body: body.to_vec(),
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        Vec::new(),
    )
}
