//! The SDKs in sdk/ are generated from the OpenAPI document (scripts/generate-sdks.sh). These
//! tests keep them honest: the checked-in document must be the one the code produces, and both
//! SDKs must work against a running Relay.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use support::*;

fn sdk_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../sdk")
}

fn required_or_skip(what: &str) -> bool {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{what} is required under CI=true"
    );
    eprintln!("skipping: {what} is not available");
    false
}

#[test]
fn the_checked_in_openapi_document_is_current() {
    let out = Command::new(relay_bin()).arg("openapi").output().unwrap();
    assert!(out.status.success());
    let produced: Value = serde_json::from_slice(&out.stdout).unwrap();
    let checked_in: Value =
        serde_json::from_str(&std::fs::read_to_string(sdk_dir().join("openapi.json")).unwrap())
            .unwrap();
    assert!(
        produced == checked_in,
        "sdk/openapi.json is stale: run scripts/generate-sdks.sh"
    );
    // OpenAPI requires a description on every response (generators refuse the document otherwise).
    for (path, item) in produced["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, resp) in op["responses"].as_object().unwrap() {
                let d = resp["description"].as_str().unwrap_or("");
                assert!(!d.is_empty(), "{method} {path} {status} has no description");
            }
        }
    }
}

/// A Relay with a fake provider `test`, an API key and tokens the fake knows.
async fn relay_with_tokens() -> (Relay, FakeProvider, String, TempDir) {
    let fake = FakeProvider::start(FakeProviderConfig::default()).await;
    let dir = TempDir::new();
    let opts = RelayOptions::new(
        dir.path(),
        &provider_toml("test", "oidc", &fake.issuer(), ""),
    );
    let key = opts.create_api_key("acme").await;
    (Relay::start(opts).await, fake, key, dir)
}

const PYTHON_SMOKE: &str = r#"
import json, sys
from relay_client import AuthenticatedClient
from relay_client.api.connections import create_connection, get_connection_token, list_connections
from relay_client.models import ImportConnection, ErrorEnvelope
base, key, access, refresh = sys.argv[1:5]
client = AuthenticatedClient(base_url=base, token=key)
created = create_connection.sync(client=client, body=ImportConnection(
    provider="test", actor_id="py-user", access_token=access, refresh_token=refresh, expires_in=3600))
token = get_connection_token.sync(client=client, id=created.id)
missing = get_connection_token.sync_detailed(client=client, id="00000000-0000-0000-0000-000000000000")
assert isinstance(missing.parsed, ErrorEnvelope), missing
print(json.dumps({"id": created.id, "access_token": token.access_token, "status": missing.status_code,
                  "code": missing.parsed.error.code,
                  "count": len(list_connections.sync(client=client).connections)}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_works_against_relay() {
    let deps = Command::new("python3")
        .args(["-c", "import httpx, attrs"])
        .status();
    if !deps.is_ok_and(|s| s.success()) && !required_or_skip("python3 with httpx and attrs") {
        return;
    }
    let (relay, fake, key, _dir) = relay_with_tokens().await;
    let (access, refresh) = fake.issue_tokens_directly();
    let out = Command::new("python3")
        .args(["-c", PYTHON_SMOKE, &relay.base_url, &key, &access, &refresh])
        .env("PYTHONPATH", sdk_dir().join("python"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["access_token"], access.as_str());
    assert_eq!(result["status"], 404);
    assert_eq!(result["code"], "not_found");
    assert_eq!(result["count"], 1);
}

const NODE_SMOKE: &str = r#"
import { createRelayClient } from "./dist/index.js";
const [base, key, id] = process.argv.slice(2);
const relay = createRelayClient(base, key);
const token = await relay.GET("/connections/{id}/token", { params: { path: { id } } });
const list = await relay.GET("/connections", { params: { query: { provider: "test" } } });
const bad = await relay.GET("/connections/{id}", { params: { path: { id: "nope" } } });
console.log(JSON.stringify({ token: token.data.access_token, count: list.data.connections.length,
  status: bad.response.status, code: bad.error.error.code }));
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_sdk_builds_and_works_against_relay() {
    let ts = sdk_dir().join("typescript");
    if Command::new("node").arg("--version").output().is_err() && !required_or_skip("node") {
        return;
    }
    {
        let _guard = npm_lock();
        if !ts.join("node_modules/typescript").exists() {
            let ok = Command::new("npm")
                .args(["ci", "--silent"])
                .current_dir(&ts)
                .status()
                .unwrap();
            assert!(ok.success(), "npm ci in sdk/typescript");
        }
        let tsc = Command::new("node")
            .args(["node_modules/typescript/bin/tsc", "-p", "tsconfig.json"])
            .current_dir(&ts)
            .output()
            .unwrap();
        assert!(
            tsc.status.success(),
            "tsc: {}",
            String::from_utf8_lossy(&tsc.stdout)
        );
    }

    let (relay, fake, key, _dir) = relay_with_tokens().await;
    let (access, refresh) = fake.issue_tokens_directly();
    let (s, created) = relay
        .post_json(
            "/connections",
            &key,
            &serde_json::json!({"provider": "test", "actor_id": "ts-user",
            "access_token": access, "refresh_token": refresh, "expires_in": 3600}),
        )
        .await;
    assert_eq!(s, 201);
    let script = ts.join("smoke.test.mjs");
    std::fs::write(&script, NODE_SMOKE).unwrap();
    let out = Command::new("node")
        .args([
            script.to_str().unwrap(),
            &relay.base_url,
            &key,
            created["id"].as_str().unwrap(),
        ])
        .current_dir(&ts)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&script);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["token"], access.as_str());
    assert_eq!(result["count"], 1);
    assert_eq!(result["status"], 404);
    assert_eq!(result["code"], "not_found");
}

/// One npm install at a time in sdk/typescript (tests run in parallel threads).
fn npm_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}
