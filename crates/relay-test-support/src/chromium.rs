//! Headless Chromium, for what only a real browser shows. CORS is enforced by browsers, not by
//! HTTP clients: whether a page on another origin may call Relay (the preflight, which
//! headers it may send, which response headers its script may read) is only proven by a
//! browser running that page.
//!
//! [`PageOrigin`] serves one HTML page from its own loopback origin and collects what the
//! page's script reports back (`POST /report` on that same origin, which needs no CORS);
//! [`run_page`] opens the page in headless Chromium and waits for the report. Debian's
//! `chromium` package provides the browser (`.ci/run` installs it); `RELAY_TEST_CHROMIUM`
//! names another binary.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::api_server::Background;

/// The browser binary: `RELAY_TEST_CHROMIUM`, else the first of `chromium`,
/// `chromium-browser`, `google-chrome` on `PATH`. `None` (skip) outside CI when there is
/// none; under `CI=true` a missing browser fails the test.
pub fn chromium_binary() -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = match std::env::var_os("RELAY_TEST_CHROMIUM") {
        Some(p) => vec![PathBuf::from(p)],
        None => {
            let path = std::env::var_os("PATH").unwrap_or_default();
            std::env::split_paths(&path)
                .flat_map(|dir| {
                    ["chromium", "chromium-browser", "google-chrome"].map(|name| dir.join(name))
                })
                .collect()
        }
    };
    if let Some(found) = candidates.into_iter().find(|p| p.is_file()) {
        return Some(found);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "headless Chromium is required under CI=true: install Debian's `chromium` (apt-get install chromium) or set RELAY_TEST_CHROMIUM"
        );
    }
    eprintln!("skipping: no chromium binary (apt-get install chromium)");
    None
}

struct Page {
    html: String,
    reports: Mutex<Vec<String>>,
    arrived: tokio::sync::Notify,
}

/// A web page on an origin of its own (`http://127.0.0.1:PORT`): `GET /` serves the HTML,
/// `POST /report` records a body the page's script sends back.
pub struct PageOrigin {
    page: Arc<Page>,
    server: Background,
}

impl PageOrigin {
    pub fn start(html: String) -> Self {
        let page = Arc::new(Page {
            html,
            reports: Mutex::new(Vec::new()),
            arrived: tokio::sync::Notify::new(),
        });
        let app = Router::new()
            .route("/", get(serve_page))
            .route("/report", post(record_report))
            .with_state(page.clone());
        Self {
            page,
            server: Background::start("page-origin", app),
        }
    }

    /// `http://127.0.0.1:PORT`, exactly as the browser sends it in `Origin`.
    pub fn origin(&self) -> String {
        self.server.base_url()
    }

    /// The first report, waiting up to `timeout` for it.
    pub async fn wait_report(&self, timeout: Duration) -> Option<String> {
        let wait = async {
            loop {
                let arrived = self.page.arrived.notified();
                if let Some(r) = self.page.reports.lock().unwrap().first().cloned() {
                    return r;
                }
                arrived.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.ok()
    }
}

async fn serve_page(State(page): State<Arc<Page>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page.html.clone(),
    )
}

async fn record_report(State(page): State<Arc<Page>>, body: String) -> &'static str {
    page.reports.lock().unwrap().push(body);
    page.arrived.notify_waiters();
    "ok"
}

/// Opens `page` at `path_and_query` (e.g. `/?relay=...`: the script reads its parameters
/// from `location.search`) in headless Chromium and returns the page's report (its script
/// must POST one to `/report`), or panics after `timeout` with the browser's stderr. The
/// browser runs with a throwaway profile and is killed once the report is in.
pub async fn run_page(
    chromium: &PathBuf,
    page: &PageOrigin,
    path_and_query: &str,
    timeout: Duration,
) -> String {
    let profile = std::env::temp_dir().join(format!(
        "relay-chromium-{}",
        crate::random_token(9).replace(['-', '_'], "x")
    ));
    let mut child = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            // Root in containers and CI has no user namespaces for the sandbox.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("{}{path_and_query}", page.origin()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", chromium.display()));
    let report = page.wait_report(timeout).await;
    let _ = child.start_kill();
    let output = child.wait_with_output().await;
    let _ = std::fs::remove_dir_all(&profile);
    match report {
        Some(r) => r,
        None => panic!(
            "the page reported nothing within {timeout:?}; chromium stderr:\n{}",
            output
                .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                .unwrap_or_default()
        ),
    }
}
