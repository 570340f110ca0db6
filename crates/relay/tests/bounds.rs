//! Input bounds at Relay's trust boundary (issue 10): what an unauthenticated or hostile
//! client can make Relay spend is bounded — scope lists, metric series, connections held open
//! by slow clients — and `/metrics` and the `/ready` details can be kept off the public
//! listener.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use relay_test_support::{FakeProvider, FakeProviderConfig};
use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn start(extra_toml: &str) -> (Relay, String, FakeProvider, TempDir) {
    let fake = FakeProvider::start(FakeProviderConfig::default()).await;
    let dir = TempDir::new();
    let toml = format!(
        "{FAST_REFRESH}{extra_toml}\n{}",
        provider_toml("test", "oidc", &fake.issuer(), "")
    );
    let opts = RelayOptions::new(dir.path(), &toml);
    let key = opts.create_api_key("acme").await;
    let relay = Relay::start(opts).await;
    (relay, key, fake, dir)
}

/// The worst scope list the 1 MB body limit allows — ~110,000 distinct scopes — is refused
/// with 422, and answered while `/health` stays responsive. The quadratic de-duplication took
/// ~25 s of both cores in a release build on this input (minutes in a debug build); the
/// generous bound below is orders of magnitude above the linear parser's time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_megabyte_of_distinct_scopes_is_refused_without_quadratic_work() {
    let (relay, key, _fake, _dir) = start("").await;
    let scopes: Vec<String> = (0..110_000).map(|i| format!("s{i}")).collect();
    let body = json!({"provider": "test", "actor_id": "alice", "access_token": "at",
        "refresh_token": "rt", "expires_in": 3600, "scopes": scopes});
    assert!(
        body.to_string().len() < 1024 * 1024,
        "within the body limit"
    );
    let (status, answer) = tokio::time::timeout(
        Duration::from_secs(30),
        relay.post_json("/connections", &key, &body),
    )
    .await
    .expect("answered without quadratic work");
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["code"], "validation_error");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 100")
    );

    let joined = scopes.join(" ");
    let (status, _) = tokio::time::timeout(
        Duration::from_secs(30),
        relay.post_json(
            "/connections",
            &key,
            &json!({"provider": "test", "actor_id": "alice", "access_token": "at",
                "scopes": joined}),
        ),
    )
    .await
    .expect("answered without quadratic work");
    assert_eq!(status, 422);
}

/// Series in the Prometheus exposition (lines that are not comments).
async fn series(relay: &Relay) -> Vec<String> {
    let text = relay
        .http
        .get(relay.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.rsplit_once(' ').map_or(l, |(name, _)| name).to_owned())
        .collect()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// One round of hostile requests to the unauthenticated surface, each with fresh random
/// values: callbacks of unknown providers, callbacks of the real one with junk, authorize
/// without a key, unknown paths, odd and extension methods.
async fn flood(relay: &Relay, round: usize, n: usize) {
    let http = &relay.http;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let http = http.clone();
        let base = relay.base_url.clone();
        tasks.spawn(async move {
            for i in (worker..n).step_by(8) {
                let r = format!("{round}x{i}x{}", uuid_like(round * 100_000 + i));
                let requests = [
                    http.get(format!("{base}/oauth/p{r}/callback?code=c{r}&state=s{r}")),
                    http.get(format!("{base}/oauth/test/callback?state=s{r}&error=e{r}")),
                    http.get(format!("{base}/oauth/p{r}/authorize?actor_id=a{r}")),
                    http.get(format!("{base}/oauth/p{r}/status?actor_id=a{r}")),
                    http.get(format!("{base}/nope/{r}?q={r}")),
                    http.request(
                        reqwest::Method::from_bytes(format!("M{}", i % 1000).as_bytes()).unwrap(),
                        format!("{base}/connections/{r}"),
                    ),
                    http.patch(format!("{base}/health?{r}")),
                ];
                for req in requests {
                    let resp = req.send().await.expect("answered");
                    assert!(resp.status().as_u16() < 500, "{}", resp.status());
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

fn uuid_like(seed: usize) -> String {
    format!("{:016x}", (seed as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Every label in `/metrics` comes from configuration or a fixed list: thousands of random
/// provider names, paths, queries and methods add no series (and no memory to speak of).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_public_routes_with_random_values_mints_no_metric_series() {
    let (relay, _key, _fake, _dir) = start("").await;

    // Warm up: every kind of request once, so that the fixed series exist.
    flood(&relay, 0, 64).await;
    series(&relay).await; // the scrape's own series
    let before = series(&relay).await;
    let rss_before = rss_kib(relay.pid());
    flood(&relay, 1, 3_000).await;
    let after = series(&relay).await;
    let rss_after = rss_kib(relay.pid());

    let new: Vec<&String> = after.iter().filter(|s| !before.contains(s)).collect();
    assert!(new.is_empty(), "new series: {:?}", &new[..new.len().min(5)]);
    assert_eq!(before.len(), after.len());
    assert!(
        !after.iter().any(|s| s.contains("provider=\"p")),
        "no series carries a provider name from a request"
    );
    // Roughly flat: 3,000 new series cost ~17 MB before the fix; allocator noise is far less.
    let grown = rss_after.saturating_sub(rss_before);
    assert!(grown < 12 * 1024, "RSS grew by {grown} KiB");

    // An unknown provider's callback is a 404 envelope, like every other unknown thing.
    let resp = relay
        .http
        .get(relay.url("/oauth/no-such-provider/callback?code=x&state=y"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found", "{body}");
}

/// Opens a connection and sends half a request head.
async fn half_sent(relay: &Relay) -> tokio::net::TcpStream {
    let addr = relay.base_url.trim_start_matches("http://").to_owned();
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(b"GET /health HTTP/1.1\r\nHost: relay\r\nX-Slow: ")
        .await
        .unwrap();
    sock
}

/// Whether the server closed the connection (EOF or reset) within `within`; whatever it sent
/// before closing (a 408 page, say) is skipped.
async fn closed_by_server(sock: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue,
            }
        }
    })
    .await
    .unwrap_or(false)
}

/// More half-sent requests than the connection cap: those accepted are closed after the
/// header-read timeout, those beyond the cap wait in the backlog and are accepted (and closed)
/// in turn, and a normal client gets its answer meanwhile instead of waiting for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_are_closed_and_a_normal_client_is_served() {
    let (relay, key, _fake, _dir) = start(
        "[server]\nheader_read_timeout_secs = 1\nidle_timeout_secs = 2\nbody_read_timeout_secs = 1\nmax_connections = 8\n",
    )
    .await;
    let mut slow = Vec::new();
    for _ in 0..20 {
        slow.push(half_sent(&relay).await);
    }
    // A fresh client (its own connection) is served although 20 slow ones came first.
    let normal = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let resp = normal
        .get(relay.url("/health"))
        .send()
        .await
        .expect("served");
    assert_eq!(resp.status(), 200);
    for (i, sock) in slow.iter_mut().enumerate() {
        assert!(
            closed_by_server(sock, Duration::from_secs(20)).await,
            "half-sent connection {i} is still open"
        );
    }

    // A connection that sends nothing at all is closed too.
    let addr = relay.base_url.trim_start_matches("http://").to_owned();
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    assert!(closed_by_server(&mut silent, Duration::from_secs(20)).await);

    // A body that never completes: 408 with the envelope once the body-read timeout passes.
    let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /connections HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"provider\":"
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), sock.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");

    // Within the cap, slow connections do not delay anyone.
    let mut few = Vec::new();
    for _ in 0..4 {
        few.push(half_sent(&relay).await);
    }
    let resp = normal
        .get(relay.url("/health"))
        .send()
        .await
        .expect("served");
    assert_eq!(resp.status(), 200);
}

/// The operations listener's address, from the startup log.
fn ops_url(relay: &Relay) -> String {
    let logs = relay.logs();
    let marker = "served on http://";
    let line = logs
        .lines()
        .find(|l| l.contains("metrics and readiness details") && l.contains(marker))
        .unwrap_or_else(|| panic!("no metrics listener in the logs:\n{logs}"));
    let i = line.find(marker).unwrap() + "served on ".len();
    line[i..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"')
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_listen_moves_metrics_and_ready_details_off_the_public_listener() {
    let (relay, _key, _fake, _dir) = start("[server]\nmetrics_listen = \"127.0.0.1:0\"\n").await;
    let ops = ops_url(&relay);

    let resp = relay.http.get(relay.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 404, "not on the public listener");
    let (status, ready) = relay.get_json("/ready", "").await;
    assert_eq!(status, 200);
    assert_eq!(ready, json!({"status": "ready"}), "status only");

    let resp = relay
        .http
        .get(format!("{ops}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("http_requests_total"));
    let ready: Value = relay
        .http
        .get(format!("{ops}/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["checks"]["database"]["ok"], true, "{ready}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_token_guards_metrics_and_ready_details() {
    let token = "metrics-token-0123456789";
    let (relay, key, _fake, _dir) =
        start(&format!("[server]\nmetrics_token = \"{token}\"\n")).await;

    let resp = relay.http.get(relay.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    // An API key is not the metrics token.
    let (status, _) = relay.get_json("/metrics", &key).await;
    assert_eq!(status, 401);
    let resp = relay
        .http
        .get(relay.url("/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("http_requests_total"));

    let (status, ready) = relay.get_json("/ready", "").await;
    assert_eq!((status, ready), (200, json!({"status": "ready"})));
    let (status, ready) = relay.get_json("/ready", token).await;
    assert_eq!(status, 200);
    assert_eq!(ready["checks"]["database"]["ok"], true, "{ready}");
}
