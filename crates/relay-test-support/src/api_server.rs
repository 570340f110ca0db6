//! What the fake provider APIs (Gmail, Drive, Graph) and the webhook receiver share: a
//! loopback server on its own thread and runtime, a FIFO of scripted faults, and a record of
//! every request received (faulted ones included), so tests can check exactly what Relay sent.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;

/// Decides whether a bearer token is valid (usually [`crate::FakeProvider::token_checker`]).
pub type TokenCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// A fault to answer the next matching request with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiFault {
    /// This status with the provider's documented error body.
    Status(u16),
    /// 401, whatever the token, as for a token revoked at the provider.
    Unauthorized,
    /// 403 because the grant lacks the scope.
    InsufficientScope,
    /// 429 with `Retry-After`.
    RateLimited { retry_after_secs: u64 },
    /// Answer normally, after this delay.
    Delay(Duration),
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Faults and records, shared by a fake's handlers and its handle.
#[derive(Default)]
pub struct Script {
    faults: Mutex<VecDeque<ApiFault>>,
    requests: Mutex<Vec<RecordedRequest>>,
}

impl Script {
    pub fn push_fault(&self, fault: ApiFault) {
        self.faults.lock().unwrap().push_back(fault);
    }

    pub fn next_fault(&self) -> Option<ApiFault> {
        self.faults.lock().unwrap().pop_front()
    }

    pub fn pending_faults(&self) -> usize {
        self.faults.lock().unwrap().len()
    }

    pub fn record(
        &self,
        method: &str,
        path: &str,
        query: Option<String>,
        headers: &HeaderMap,
        body: &[u8],
    ) {
        self.requests.lock().unwrap().push(RecordedRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            query,
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: body.to_vec(),
        });
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().unwrap().clone()
    }
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_owned)
}

/// A server running on its own thread until dropped.
pub struct Background {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Background {
    /// Binds `127.0.0.1:0` and serves `app`.
    pub fn start(name: &str, app: Router) -> Self {
        let listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("binding a fake API to 127.0.0.1:0");
        listener.set_nonblocking(true).expect("non-blocking socket");
        let addr = listener.local_addr().expect("bound address");
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("{name}-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("building a fake API runtime");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("registering socket");
                    tokio::select! {
                        result = axum::serve(listener, app) => {
                            result.expect("fake API server failed");
                        }
                        _ = stopped => {}
                    }
                });
            })
            .expect("spawning a fake API thread");
        Self {
            addr,
            shutdown: Some(shutdown),
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
    }
}
