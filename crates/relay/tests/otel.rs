//! OpenTelemetry trace export (built with `--features otel`): with an OTLP endpoint configured,
//! the request spans — carrying the request id and route — reach a local collector, and the
//! spans still buffered at SIGTERM are flushed before the process exits.
#![cfg(feature = "otel")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::*;

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_spans_are_exported_over_otlp_http() {
    let collector = OtlpCollector::start().await;
    let dir = TempDir::new();
    let opts = RelayOptions::new(dir.path(), "")
        .with_env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.base_url)
        .with_env("OTEL_SERVICE_NAME", "relay-under-test");
    let relay = Relay::start(opts).await;
    let r = relay
        .http
        .get(relay.url("/health"))
        .header("x-request-id", "otel-check-7f3a")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(relay.stop().await.success());

    let requests = collector.requests();
    assert!(!requests.is_empty(), "nothing was exported");
    let all: Vec<u8> = requests.iter().flat_map(|r| r.body.clone()).collect();
    assert!(
        requests
            .iter()
            .all(|r| r.content_type == "application/x-protobuf")
    );
    assert!(contains(&all, "relay-under-test"), "the service name");
    assert!(contains(&all, "request"), "the request span");
    assert!(contains(&all, "otel-check-7f3a"), "its request id");
    assert!(contains(&all, "/health"), "its route");
}

/// An unreachable collector costs nothing but the export: requests are served normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_collector_does_not_affect_requests() {
    let port = free_port();
    let dir = TempDir::new();
    let opts = RelayOptions::new(dir.path(), "").with_env(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        &format!("http://127.0.0.1:{port}"),
    );
    let relay = Relay::start(opts).await;
    for _ in 0..5 {
        let r = relay.http.get(relay.url("/health")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    assert!(relay.stop().await.success());
}
