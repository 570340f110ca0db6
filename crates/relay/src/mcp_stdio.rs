//! `relay mcp`: Relay's MCP tools over stdio, for desktop agents that start a local process
//! instead of calling a URL.
//!
//! It forwards, and interprets nothing: each JSON-RPC message read from standard input is
//! POSTed to a Relay server's `/mcp` (with the API key and the actor), and each message the
//! server answers (a JSON body, or the events of an SSE stream) is written to standard output,
//! one per line. The tools, their rules and their protocol handling live in one place, the
//! server; this side only adds what stdio lacks: the `MCP-Protocol-Version` header after
//! `initialize` (and `Mcp-Session-Id` if a server hands one out), and a JSON-RPC error for a
//! request the server refused at the HTTP level (a wrong key, a rate limit), so the client is
//! never left waiting. Logs go to standard error; standard output carries only the protocol.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};
use std::io::{BufRead as _, Write as _};
use tokio::sync::mpsc;

/// Where to forward and as whom.
pub struct StdioProxy {
    /// The server's `/mcp` URL.
    pub endpoint: reqwest::Url,
    pub api_key: SecretString,
    /// Sent as `Relay-Actor-Id` on every request, when set.
    pub actor_id: Option<String>,
    pub actor_type: Option<String>,
}

/// Headers learnt from the server's answers, sent on later requests.
#[derive(Default)]
struct Negotiated {
    protocol_version: Option<String>,
    session_id: Option<String>,
}

/// The longest a tool call may take before the proxy gives up on it (the server cuts a
/// request off at 60 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(90);

impl StdioProxy {
    /// Forwards until standard input closes, then waits for the answers still in flight.
    pub async fn run(self) -> anyhow::Result<()> {
        relay_providers::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("relay-mcp-stdio/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        let this = Arc::new(self);
        let negotiated = Arc::new(Mutex::new(Negotiated::default()));
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
        // One writer, so that concurrent answers never interleave within a line. Standard
        // input and output are read and written on threads of their own (blocking std I/O,
        // as a pipe from the agent may not support non-blocking use).
        let writer = tokio::task::spawn_blocking(move || {
            let mut stdout = std::io::stdout().lock();
            while let Some(line) = out_rx.blocking_recv() {
                if writeln!(stdout, "{line}").is_err() || stdout.flush().is_err() {
                    break;
                }
            }
        });
        let (in_tx, mut in_rx) = mpsc::unbounded_channel::<std::io::Result<String>>();
        std::thread::Builder::new()
            .name("mcp-stdin".into())
            .spawn(move || {
                for line in std::io::stdin().lock().lines() {
                    let stop = line.is_err();
                    if in_tx.send(line).is_err() || stop {
                        break;
                    }
                }
            })
            .context("starting the standard input reader")?;
        let mut in_flight = tokio::task::JoinSet::new();
        while let Some(line) = in_rx.recv().await {
            let line = line.context("reading standard input")?;
            let line = line.trim().to_owned();
            if line.is_empty() {
                continue;
            }
            let (this, http, negotiated, out) = (
                this.clone(),
                http.clone(),
                negotiated.clone(),
                out_tx.clone(),
            );
            // Concurrently: a client may send a request while a slow tool call runs.
            in_flight.spawn(async move { this.forward(&http, &negotiated, &out, line).await });
        }
        while in_flight.join_next().await.is_some() {}
        drop(out_tx);
        let _ = writer.await;
        Ok(())
    }

    async fn forward(
        &self,
        http: &reqwest::Client,
        negotiated: &Mutex<Negotiated>,
        out: &mpsc::UnboundedSender<String>,
        line: String,
    ) {
        let message: Option<Value> = serde_json::from_str(&line).ok();
        // A request (it has an id and a method) must get an answer whatever happens.
        let request_id = message
            .as_ref()
            .filter(|m| m.get("method").is_some())
            .and_then(|m| m.get("id"))
            .cloned();
        let mut req = http
            .post(self.endpoint.clone())
            .bearer_auth(self.api_key.expose_secret())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(line);
        if let Some(actor) = &self.actor_id {
            req = req.header("relay-actor-id", actor);
        }
        if let Some(t) = &self.actor_type {
            req = req.header("relay-actor-type", t);
        }
        {
            let n = negotiated.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(v) = &n.protocol_version {
                req = req.header("mcp-protocol-version", v);
            }
            if let Some(s) = &n.session_id {
                req = req.header("mcp-session-id", s);
            }
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "the Relay server could not be reached");
                fail(
                    out,
                    request_id,
                    format!("the Relay server could not be reached: {e}"),
                );
                return;
            }
        };
        let status = resp.status();
        if let Some(session) = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            negotiated
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .session_id = Some(session.to_owned());
        }
        let is_sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let body = match resp.text().await {
            Ok(b) => b,
            Err(e) => {
                fail(
                    out,
                    request_id,
                    format!("reading Relay's answer failed: {e}"),
                );
                return;
            }
        };
        if !status.is_success() {
            // The error envelope's message (401 wrong key, 429 rate limited, ...).
            let detail = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| {
                    let e = v.get("error")?;
                    let code = e.get("code")?.as_str()?.to_owned();
                    let message = e.get("message")?.as_str()?.to_owned();
                    Some(format!("{code}: {message}"))
                })
                .unwrap_or_else(|| body.chars().take(200).collect());
            tracing::warn!(
                status = status.as_u16(),
                "the Relay server refused a request"
            );
            fail(
                out,
                request_id,
                format!("Relay answered HTTP {}: {detail}", status.as_u16()),
            );
            return;
        }
        let messages = if is_sse {
            sse_data(&body)
        } else if body.trim().is_empty() {
            Vec::new() // 202 Accepted for a notification or a response.
        } else {
            vec![body]
        };
        for m in messages {
            // One message per line: re-serialized compactly.
            let Ok(value) = serde_json::from_str::<Value>(&m) else {
                continue;
            };
            if let Some(v) = value
                .get("result")
                .and_then(|r| r.get("protocolVersion"))
                .and_then(Value::as_str)
            {
                negotiated
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .protocol_version = Some(v.to_owned());
            }
            let _ = out.send(value.to_string());
        }
    }
}

/// A JSON-RPC error for a request the server did not answer (nothing for a notification).
fn fail(out: &mpsc::UnboundedSender<String>, id: Option<Value>, message: String) {
    if let Some(id) = id {
        let error =
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32000, "message": message}});
        let _ = out.send(error.to_string());
    }
}

/// The `data` of each event of a Server-Sent Events body (multi-line data joined with `\n`).
fn sse_data(body: &str) -> Vec<String> {
    let mut events = Vec::new();
    let mut data: Vec<&str> = Vec::new();
    for line in body.lines().chain(std::iter::once("")) {
        if line.is_empty() {
            if !data.is_empty() {
                events.push(data.join("\n"));
                data.clear();
            }
        } else if let Some(rest) = line.strip_prefix("data:") {
            data.push(rest.strip_prefix(' ').unwrap_or(rest));
        }
    }
    events
        .into_iter()
        .filter(|d| !d.trim().is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_are_split_and_priming_events_dropped() {
        let body = "id: 0\nretry: 3000\ndata:\n\nevent: message\ndata: {\"a\":1}\n\ndata: {\"b\":\ndata: 2}\n";
        assert_eq!(sse_data(body), vec!["{\"a\":1}", "{\"b\":\n2}"]);
    }
}
