//! `relay health`, the container image's health check: exit 0 while the instance is ready, 1
//! when it is not ready or does not answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_exits_zero_when_ready_and_one_when_not() {
    let Some(pg) = pg_database().await else {
        return;
    };
    let dir = TempDir::new();
    let mut opts = RelayOptions::new(dir.path(), "");
    opts.database_url = Some(pg.url.clone());
    // A fixed port: `relay health` without --url derives its URL from RELAY_LISTEN, as the
    // container's HEALTHCHECK does.
    opts.port = Some(free_port());
    let relay = Relay::start(opts.clone()).await;

    let (ok, out, err) = opts.run(&["health"]).await;
    assert!(ok, "ready instance: {out} {err}");
    assert!(out.contains("/ready: 200"), "{out}");
    let url = format!("{}/ready", relay.base_url);
    let (ok, _, err) = opts.run(&["health", "--url", &url]).await;
    assert!(ok, "explicit --url: {err}");

    drop(pg); // the database goes away: /ready answers 503 and the probe fails
    let mut last = (true, String::new());
    for _ in 0..50 {
        let (ok, _, err) = opts.run(&["health", "--url", &url, "--timeout", "2"]).await;
        last = (ok, err);
        if !last.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!last.0, "not ready must exit 1");
    assert!(last.1.contains("503"), "{}", last.1);
    assert!(
        last.1.contains("database"),
        "names the failing check: {}",
        last.1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_exits_one_when_nothing_answers() {
    let dir = TempDir::new();
    let opts = RelayOptions::new(dir.path(), "");
    let url = format!("http://127.0.0.1:{}/ready", free_port());
    let (ok, _, err) = opts.run(&["health", "--url", &url, "--timeout", "1"]).await;
    assert!(!ok, "nothing listening must exit 1");
    assert!(err.contains("did not answer"), "{err}");
}
