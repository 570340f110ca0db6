//! Relay's MCP server driven by MCP clients nobody here wrote: the official Python SDK
//! (`tests/mcp-clients/python_client.py`), the official TypeScript SDK
//! (`tests/mcp-clients/node_client.mjs`) and the MCP Inspector's CLI, against the real `relay`
//! binary with the providers played by local fakes. This file prepares the world (accounts in
//! each state an agent meets), runs the client, and checks what the client cannot see: the
//! webhook delivery and its signature, the metrics, the audit log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use support::*;

const GMAIL_SEND: &str = "https://www.googleapis.com/auth/gmail.send";
const DRIVE_READONLY: &str = "https://www.googleapis.com/auth/drive.readonly";
const DRIVE_FILE: &str = "1docMcpAAAAAAAAAAAAAAAAA";

struct World {
    _google: FakeProvider,
    _microsoft: FakeProvider,
    api: FakeGoogleApi,
    _graph: FakeGraph,
    hooks: WebhookReceiver,
    relay: Relay,
    key: String,
    /// Input for the client scripts (`$MCP_TEST`).
    input: Value,
    _dir: TempDir,
}

fn overrides(fake: &FakeProvider) -> String {
    format!(
        "issuer = \"{}\"\nauthorization_url = \"{}\"\ntoken_url = \"{}\"\nrevocation_url = \"{}\"\n",
        fake.issuer(),
        fake.authorization_url(),
        fake.token_url(),
        fake.revocation_url()
    )
}

/// Relay with Google enabled and Microsoft configured but not enabled (the disabled-provider
/// case), and these accounts: `ann` (Gmail and Drive, and Outlook), `cid` (Drive only: a
/// missing scope for Gmail), `dan` (needs reauthorization), `bob` (nothing connected).
async fn world(extra_config: &str) -> World {
    let google = FakeProvider::start(FakeProviderConfig::google()).await;
    let microsoft = FakeProvider::start(FakeProviderConfig::microsoft()).await;
    let api = FakeGoogleApi::start(google.token_checker());
    let graph = FakeGraph::start(microsoft.token_checker());
    let hooks = WebhookReceiver::start();
    let dir = TempDir::new();
    let toml = format!(
        "{FAST_REFRESH}
[providers.google]
kind = \"google\"
client_id = \"relay-test\"
client_secret = \"relay-secret\"
api_base_url = \"{api}\"
{g}
[providers.microsoft]
kind = \"microsoft\"
tenant = \"contoso\"
client_id = \"relay-test\"
client_secret = \"relay-secret\"
api_base_url = \"{graph}\"
{m}
[actions]
request_timeout_ms = 3000
retry_attempts = 0
[actions.webhook]
allow_hosts = [\"127.0.0.1\"]
{extra_config}
",
        api = api.base_url(),
        graph = graph.base_url(),
        g = overrides(&google),
        m = overrides(&microsoft),
    );
    let opts = RelayOptions::new(dir.path(), &toml).with_env("PROVIDER_GOOGLE_ENABLED", "true");
    let key = opts.create_api_key("acme").await;
    let other_key = opts.create_api_key("globex").await;
    let limited_key = opts.create_limited_api_key("acme", 4).await;
    let relay = Relay::start(opts).await;

    let import = |provider: &str, actor: &str, access: String, refresh: String, scopes: &[&str]| {
        let body = json!({"provider": provider, "actor_id": actor, "access_token": access,
            "refresh_token": refresh, "expires_in": 3600, "scopes": scopes});
        let relay = &relay;
        let key = &key;
        async move {
            let (s, body) = relay.post_json("/connections", key, &body).await;
            assert_eq!(s, 201, "{body}");
            body["id"].as_str().unwrap().to_owned()
        }
    };
    let both = format!("{GMAIL_SEND} {DRIVE_READONLY}");
    let (a, r) = google.issue_tokens_directly_with_scope(&both);
    import("google", "ann", a, r, &[GMAIL_SEND, DRIVE_READONLY]).await;
    let (a, r) = microsoft.issue_tokens_directly_with_scope("Mail.Send");
    import("microsoft", "ann", a, r, &["Mail.Send"]).await;
    let (a, r) = google.issue_tokens_directly_with_scope(DRIVE_READONLY);
    import("google", "cid", a, r, &[DRIVE_READONLY]).await;
    let (a, r) = google.issue_tokens_directly_with_scope(GMAIL_SEND);
    let dan = import("google", "dan", a, r, &[GMAIL_SEND]).await;
    // Two 401s from Gmail: Relay refreshes once, then marks the connection needs_reauth.
    let (s, p) = relay
        .post_json(
            "/actions/preview",
            &key,
            &json!({"action": "gmail.send", "connection_id": dan,
                "params": {"to": "a@example.com", "subject": "s", "text": "t"}}),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    api.push_fault(ApiFault::Unauthorized);
    api.push_fault(ApiFault::Unauthorized);
    let (s, body) = relay
        .post_json(
            "/actions/execute",
            &key,
            &json!({"preview_id": p["preview_id"]}),
        )
        .await;
    assert_eq!(s, 409, "{body}");

    api.add_file(DriveFile::google(
        DRIVE_FILE,
        "Notes",
        "application/vnd.google-apps.document",
        "text/plain",
        "Meeting notes\nLine two",
    ));
    // A preview of another workspace, which acme's key must not execute.
    let (s, foreign) = relay
        .post_json(
            "/actions/preview",
            &other_key,
            &json!({"action": "webhook.send", "params": {"url": hooks.url(), "payload": {"x": 1}}}),
        )
        .await;
    assert_eq!(s, 201, "{foreign}");

    let input = json!({
        "url": relay.url("/mcp"),
        "base_url": relay.base_url,
        "key": key,
        "limited_key": limited_key,
        "relay_bin": relay_bin(),
        "drive_file_id": DRIVE_FILE,
        "webhook_url": hooks.url(),
        "foreign_preview_id": foreign["preview_id"],
        "google_authorize_url": google.authorization_url(),
    });
    World {
        _google: google,
        _microsoft: microsoft,
        api,
        _graph: graph,
        hooks,
        relay,
        key,
        input,
        _dir: dir,
    }
}

/// Runs a client program with `$MCP_TEST`; returns its last stdout line as JSON. Bounded in
/// time; panics with the program's output when it fails.
async fn run_client(program: &std::path::Path, args: &[&str], input: &Value) -> Value {
    let child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(mcp_clients::clients_dir())
        .env("MCP_TEST", input.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the MCP client");
    let out = tokio::time::timeout(Duration::from_secs(50), child.wait_with_output())
        .await
        .expect("the MCP client finishes within 50 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} {args:?} failed ({}):\n{stdout}\n{stderr}",
        program.display(),
        out.status
    );
    eprintln!("{stderr}");
    serde_json::from_str(stdout.lines().last().unwrap_or("{}"))
        .unwrap_or_else(|e| panic!("the client's report is not JSON ({e}):\n{stdout}"))
}

impl World {
    async fn metrics(&self) -> String {
        self.relay
            .http
            .get(self.relay.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The webhook delivered for `preview_id`: once, with the previewed body, signed with the
    /// workspace's secret (checked by the official `standardwebhooks` package).
    async fn assert_delivered_once(
        &self,
        python: &std::path::Path,
        preview_id: &str,
        rendered_body: &str,
    ) {
        let deliveries: Vec<_> = self
            .hooks
            .deliveries()
            .into_iter()
            .filter(|d| d.header("webhook-id") == Some(preview_id))
            .collect();
        assert_eq!(
            deliveries.len(),
            1,
            "executed once, replayed without sending"
        );
        let d = &deliveries[0];
        assert_eq!(
            d.body,
            rendered_body.as_bytes(),
            "sent exactly what was previewed"
        );
        let (s, secret) = self.relay.get_json("/webhooks/secret", &self.key).await;
        assert_eq!(s, 200, "{secret}");
        let secret = secret["secret"].as_str().unwrap();
        assert!(verify_with_standardwebhooks(python, secret, d));
        let wrong = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        assert!(
            !verify_with_standardwebhooks(python, wrong, d),
            "and a wrong secret fails"
        );
    }
}

/// Verifies a delivery with the official Python `standardwebhooks` package (pinned in
/// `tests/mcp-clients/requirements.txt`, in the clients' virtual environment).
fn verify_with_standardwebhooks(
    python: &std::path::Path,
    secret: &str,
    req: &RecordedRequest,
) -> bool {
    let script = "import json, sys\nfrom standardwebhooks.webhooks import Webhook\n\
        d = json.load(sys.stdin)\ntry:\n    Webhook(d['secret']).verify(d['body'].encode(), d['headers'])\n    print('valid')\n\
        except Exception as e:\n    print('invalid', e)\n";
    let input = json!({
        "secret": secret,
        "body": String::from_utf8(req.body.clone()).unwrap(),
        "headers": {
            "webhook-id": req.header("webhook-id").unwrap_or_default(),
            "webhook-timestamp": req.header("webhook-timestamp").unwrap_or_default(),
            "webhook-signature": req.header("webhook-signature").unwrap_or_default(),
        },
    });
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim() == "valid"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_official_python_sdk_lists_previews_executes_and_meets_every_error() {
    let Some(python) = mcp_clients::python_with_mcp().await else {
        return;
    };
    let w = world("").await;
    let report = run_client(&python, &["python_client.py"], &w.input).await;

    let preview_id = report["webhook_preview_id"].as_str().unwrap();
    w.assert_delivered_once(
        &python,
        preview_id,
        report["webhook_rendered_body"].as_str().unwrap(),
    )
    .await;
    assert!(
        w.api.sent_messages().is_empty(),
        "a Gmail preview sends nothing"
    );
    // Confirmed through elicitation: sent once; declined: never sent.
    let deliveries_of = |id: &str| {
        w.hooks
            .deliveries()
            .iter()
            .filter(|d| d.header("webhook-id") == Some(id))
            .count()
    };
    assert_eq!(
        deliveries_of(report["confirmed_preview_id"].as_str().unwrap()),
        1
    );
    assert_eq!(
        deliveries_of(report["declined_preview_id"].as_str().unwrap()),
        0
    );
    assert!(
        report["protocol_versions"]
            .as_array()
            .unwrap()
            .contains(&json!("2026-07-28")),
        "{report}"
    );

    // Metrics by JSON-RPC method, from a fixed list: an unknown method counts as `other`.
    let resp = w
        .relay
        .http
        .post(w.relay.url("/mcp"))
        .bearer_auth(&w.key)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/evil\nlabel"}))
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("x-request-id").is_some());
    // A body that is not JSON gets JSON-RPC's parse error.
    let resp = w
        .relay
        .http
        .post(w.relay.url("/mcp"))
        .bearer_auth(&w.key)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32700, "{body}");
    // Past the body limit: 413 (from the router's body limit, as on every route).
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let resp = w
        .relay
        .http
        .post(w.relay.url("/mcp"))
        .bearer_auth(&w.key)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let metrics = w.metrics().await;
    for line in [
        "mcp_requests_total{method=\"initialize\"}",
        "mcp_requests_total{method=\"tools/list\"}",
        "mcp_requests_total{method=\"tools/call\"}",
        "mcp_requests_total{method=\"other\"}",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    assert!(!metrics.contains("evil"), "labels never come from input");

    // The audit log records the MCP previews and executions like the HTTP API's.
    let (s, audit) = w.relay.get_json("/audit?limit=200", &w.key).await;
    assert_eq!(s, 200, "{audit}");
    let executed = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["action"] == "action.executed"
                && r["detail"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(preview_id)
        })
        .unwrap_or_else(|| panic!("no action.executed record for {preview_id}: {audit}"));
    // With the request's context, as for the HTTP API.
    assert!(executed["request_id"].is_string(), "{executed}");
    assert!(executed["api_key_id"].is_string(), "{executed}");
    assert_eq!(executed["client_addr"], "127.0.0.1", "{executed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn direct_execute_sends_at_once_for_the_configured_actions() {
    let w = world("[mcp]\ndirect_execute = [\"webhook.send\"]").await;
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "webhook_send", "arguments": {"url": w.hooks.url(), "payload": {"n": 1}}}});
    let resp = w
        .relay
        .http
        .post(w.relay.url("/mcp"))
        .bearer_auth(&w.key)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&call)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let result = &body["result"]["structuredContent"];
    assert_eq!(result["status"], "succeeded", "{body}");
    let preview_id = result["preview_id"].as_str().unwrap();
    assert_eq!(
        w.hooks.deliveries().len(),
        1,
        "sent without a separate execute"
    );
    assert_eq!(
        w.hooks.deliveries()[0].header("webhook-id"),
        Some(preview_id)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_official_typescript_sdk_and_the_inspector_cli_use_the_tools() {
    let Some(python) = mcp_clients::python_with_mcp().await else {
        return;
    };
    let Some(node) = mcp_clients::node_with_mcp().await else {
        return;
    };
    let w = world("").await;
    let report = run_client(&node, &["node_client.mjs"], &w.input).await;
    w.assert_delivered_once(
        &python,
        report["webhook_preview_id"].as_str().unwrap(),
        report["webhook_rendered_body"].as_str().unwrap(),
    )
    .await;

    // The MCP Inspector's CLI lists the tools, and its --strict schema check finds no
    // error-severity portability problem (it exits 6 on one).
    let inspector = mcp_clients::clients_dir().join("node_modules/.bin/mcp-inspector");
    let bearer = format!("Authorization: Bearer {}", w.key);
    let out = tokio::time::timeout(
        Duration::from_secs(50),
        tokio::process::Command::new(&node)
            .arg(&inspector)
            .args(["--cli", &w.relay.url("/mcp"), "--transport", "http"])
            .args(["--method", "tools/list", "--strict", "--header", &bearer])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the inspector finishes within 50 s")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "inspector failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_str(&stdout).expect("the inspector prints JSON");
    let names: Vec<&str> = listed["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"gmail_send") && names.contains(&"relay_execute_preview"),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_action_in_direct_execute_stops_the_start() {
    let dir = TempDir::new();
    let opts = RelayOptions::new(dir.path(), "[mcp]\ndirect_execute = [\"gmail.sendd\"]\n");
    let logs = match Relay::try_start(opts).await {
        Ok(_) => panic!("relay started with an unknown action in mcp.direct_execute"),
        Err(logs) => logs,
    };
    assert!(
        logs.contains("mcp.direct_execute") && logs.contains("gmail.sendd"),
        "{logs}"
    );
}
