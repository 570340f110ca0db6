//! The API contract at its edges, through the real server: every error a client can see is the
//! `{"error": {"code", "message"}}` envelope with a stable code, including the ones answered by
//! layers and extractors that know nothing of the API (body limits, undecodable paths).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `head` (and then `body`, written while the answer is read, since the server may
/// answer before it has read it all) over a fresh connection and returns the status, the
/// `Content-Type` and the body of the answer.
async fn raw(relay: &Relay, head: String, body: Vec<u8>) -> (u16, String, String) {
    let addr = relay.url("").trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    wr.write_all(head.as_bytes()).await.unwrap();
    // The server may close its side before the body is written: write errors are expected.
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&body).await;
        wr
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        rd.read_to_end(&mut answer),
    )
    .await
    .expect("the server answers within 30 s");
    drop(writer.await);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).unwrap_or("0").parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

fn envelope_code(content_type: &str, body: &str) -> String {
    assert!(
        content_type.starts_with("application/json"),
        "not JSON ({content_type}): {body}"
    );
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert!(v["error"]["message"].is_string(), "{v}");
    v["error"]["code"].as_str().unwrap().to_owned()
}

async fn relay_with_key() -> (Relay, String, FakeProvider, TempDir) {
    let fake = FakeProvider::start(FakeProviderConfig::google()).await;
    let dir = TempDir::new();
    let toml = provider_toml("test", "oidc", &fake.issuer(), "");
    let key = RelayOptions::new(dir.path(), &toml)
        .create_api_key("acme")
        .await;
    let relay = Relay::start(RelayOptions::new(dir.path(), &toml)).await;
    (relay, key, fake, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_outside_the_handlers_use_the_envelope() {
    let (relay, key, _fake, _dir) = relay_with_key().await;

    // A declared body over the 1 MiB limit: refused by the body-limit layer.
    let big = vec![b' '; 2 * 1024 * 1024];
    let head = format!(
        "POST /connections HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        big.len()
    );
    let (status, ct, body) = raw(&relay, head, big).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(envelope_code(&ct, &body), "payload_too_large");

    // A chunked body over the limit: only found out while the JSON extractor reads it.
    let mut chunked = Vec::new();
    for _ in 0..3 {
        chunked.extend_from_slice(b"100000\r\n");
        chunked.extend(std::iter::repeat_n(b' ', 0x100000));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = format!(
        "POST /connections HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let (status, ct, body) = raw(&relay, head, chunked).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(envelope_code(&ct, &body), "payload_too_large");

    // Path segments that are not UTF-8 once decoded, on every route with a path parameter
    // (including routes whose handlers use axum's own extractor).
    for (method, path) in [
        ("GET", "/connections/%FF"),
        ("GET", "/connections/%FF/token"),
        ("DELETE", "/connections/%FF"),
        ("DELETE", "/api-keys/%FF"),
        ("GET", "/oauth/%FF/status?actor_id=u1"),
    ] {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
             Connection: close\r\n\r\n"
        );
        let (status, ct, body) = raw(&relay, head, Vec::new()).await;
        assert_eq!(status, 400, "{method} {path}: {body}");
        assert_eq!(envelope_code(&ct, &body), "invalid_path", "{method} {path}");
    }

    // Too many headers is refused by hyper's parser before the API sees the request: 431
    // with an empty body (documented in docs/API.md as the one exception with the request line).
    let mut head = String::from("GET /health HTTP/1.1\r\nHost: x\r\n");
    for i in 0..200 {
        head.push_str(&format!("X-Filler-{i}: 1\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    let (status, _, body) = raw(&relay, head, Vec::new()).await;
    assert_eq!(status, 431, "{body}");
    assert!(body.is_empty(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_in_tokens_and_undecodable_queries_are_refused() {
    let (relay, key, _fake, _dir) = relay_with_key().await;
    let import = |access: &str, refresh: Option<&str>| {
        serde_json::json!({
            "provider": "test", "actor_id": "u1", "access_token": access,
            "refresh_token": refresh, "expires_in": 3600,
        })
    };
    for (access, refresh) in [
        ("ab\u{0}c", None),
        ("ab\u{7}c", None),
        ("ab\u{7f}c", None),
        ("abc", Some("r\u{0}")),
        ("abc", Some("r\nx")),
    ] {
        let (status, v) = relay
            .post_json("/connections", &key, &import(access, refresh))
            .await;
        assert_eq!(status, 422, "{access:?} {refresh:?}: {v}");
        assert_eq!(v["error"]["code"], "validation_error", "{v}");
    }
    // Printable tokens (spaces included, as RFC 6749 allows) are still imported.
    let (status, v) = relay
        .post_json(
            "/connections",
            &key,
            &import("ya29.a-b_c~d+e/f=", Some("1//r t")),
        )
        .await;
    assert_eq!(status, 201, "{v}");

    // Query strings that are not UTF-8 once decoded are refused, not mangled to U+FFFD.
    for path in [
        "/connections?actor_id=%FF%FE",
        "/connections?provider=test&actor_id=a%C0",
        "/oauth/test/authorize?actor_id=%FF%FE",
        "/oauth/test/status?actor_id=%FF",
        "/audit?actor_id=%FF",
    ] {
        let (status, v) = relay.get_json(path, &key).await;
        assert_eq!(status, 400, "{path}: {v}");
        assert_eq!(v["error"]["code"], "invalid_query", "{path}: {v}");
    }
    // Encoded UTF-8 is still fine.
    let (status, v) = relay.get_json("/connections?actor_id=%C3%A9", &key).await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_errors_are_422_and_unknown_query_parameters_are_refused_everywhere() {
    let (relay, key, _fake, _dir) = relay_with_key().await;
    let (status, v) = relay
        .post_json(
            "/connections",
            &key,
            &serde_json::json!({"provider": "test", "actor_id": "u1", "access_token": "t"}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();

    // An invalid value is 422 `validation_error` whether it is in the body or the query
    // (`POST /connections` answered 400 for a bad actor id and 422 for a bad token).
    let (status, v) = relay
        .post_json(
            "/connections",
            &key,
            &serde_json::json!({"provider": "test", "actor_id": "", "access_token": "t"}),
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("validation_error")),
        "{v}"
    );
    for path in [
        "/connections?actor_id=".to_owned(),
        "/connections?limit=0".to_owned(),
        "/oauth/test/authorize?actor_id=".to_owned(),
        "/oauth/test/status?actor_id=".to_owned(),
        format!("/connections/{id}/token?min_ttl=100000"),
        "/audit?limit=0".to_owned(),
    ] {
        let (status, v) = relay.get_json(&path, &key).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (422, Some("validation_error")),
            "{path}: {v}"
        );
    }

    // Unknown query parameters are refused on every route with a query, as `/audit` did.
    for path in [
        "/connections?colour=red".to_owned(),
        "/oauth/test/authorize?actor_id=a&colour=red".to_owned(),
        "/oauth/test/status?actor_id=a&colour=red".to_owned(),
        format!("/connections/{id}/token?colour=red"),
        "/audit?colour=red".to_owned(),
    ] {
        let (status, v) = relay.get_json(&path, &key).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (400, Some("invalid_query")),
            "{path}: {v}"
        );
    }
}
