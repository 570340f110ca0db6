//! The accept loop: HTTP/1.1 connections with bounded lifetimes and a bounded count.
//!
//! `axum::serve` sets no timeouts and accepts without limit, so 300 clients that each sent half
//! a request head held Relay's file descriptors for ever and made it unreachable. Here:
//!
//! - a connection is accepted only while fewer than `max_connections` are open; beyond the
//!   cap Relay stops accepting and new connections wait in the kernel's accept backlog
//!   (closing them instead would turn a flood into errors for every honest client, and a
//!   waiting connection costs Relay no file descriptor); each is served, in order, as soon as
//!   an open one closes, and the timeouts below make sure open ones do close;
//! - the request head must arrive within `header_read_timeout` of Relay starting to wait for
//!   it (the connection accepted, or the previous response sent), which also closes idle
//!   keep-alive connections;
//! - a connection on which no byte moves either way for `idle_timeout` while no request is
//!   being handled is closed (a client that stops reading its response);
//! - a request body must be read completely within `body_read_timeout` (otherwise 408).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

/// Limits on client connections (`[server]` in relay.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_read_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves, then lets the
/// requests in flight finish (connections between requests close at once).
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // `acquire_many` below takes a u32.
    let max = limits
        .max_connections
        .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let slots = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let builder = Arc::new(builder);
    loop {
        // A slot first, then accept: past the cap connections wait in the backlog.
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        let (stream, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning; the connection (if
                    // any) stays in the backlog.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let conn = ServedConnection {
            router: router.clone(),
            builder: builder.clone(),
            limits,
            remote,
            stop: stop_rx.clone(),
        };
        tokio::spawn(async move {
            conn.run(stream).await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection task holds a slot until it ends: all slots back means all done.
    let _ = slots.acquire_many(max as u32).await;
    Ok(())
}

struct ServedConnection {
    router: Router,
    builder: Arc<hyper::server::conn::http1::Builder>,
    limits: ConnectionLimits,
    remote: SocketAddr,
    stop: watch::Receiver<bool>,
}

impl ServedConnection {
    async fn run(mut self, stream: TcpStream) {
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Tracked {
            inner: stream,
            activity: activity.clone(),
        });
        let router = self.router.clone();
        let remote = self.remote;
        let body_deadline = self.limits.body_read_timeout;
        let requests = activity.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let router = router.clone();
            let busy = InFlight::start(requests.clone());
            async move {
                let (mut parts, body) = req.into_parts();
                parts.extensions.insert(ConnectInfo(remote));
                // Most requests (token reads) have no body: no deadline timer for them.
                let body = if hyper::body::Body::is_end_stream(&body) {
                    axum::body::Body::new(body)
                } else {
                    axum::body::Body::new(tower_http::timeout::DeadlineBody::new(
                        body_deadline,
                        body,
                    ))
                };
                let resp = router
                    .oneshot(axum::http::Request::from_parts(parts, body))
                    .await;
                drop(busy);
                resp
            }
        });
        let conn = self.builder.serve_connection(io, service);
        let mut conn = std::pin::pin!(conn);
        let idle = self.limits.idle_timeout;
        let mut stopping = false;
        loop {
            tokio::select! {
                served = conn.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(error = %e, client = %remote, "connection ended with an error");
                    }
                    return;
                }
                () = activity.idle_for(idle) => {
                    tracing::debug!(client = %remote, "closing an idle connection");
                    return;
                }
                changed = self.stop.changed(), if !stopping => {
                    stopping = true;
                    if changed.is_ok() {
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    }
}

/// When bytes last moved on a connection, and how many of its requests are being handled.
struct Activity {
    started: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `idle` while no request was being handled.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.started + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline && self.in_flight.load(Ordering::Relaxed) == 0 {
                return;
            }
            // A request in flight is the handler's to bound (the 60 s request timeout); look
            // again one idle period later.
            let next = if Instant::now() >= deadline {
                Instant::now() + idle
            } else {
                deadline
            };
            tokio::time::sleep_until(next).await;
        }
    }
}

/// Marks a request as being handled until dropped (also when its future is dropped).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stream that records when bytes last moved.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const BIG: usize = 32 * 1024 * 1024;

    /// A client that asks for a large answer and stops reading it is cut off after the idle
    /// timeout (the header-read timeout, a minute here, does not apply once a request is in).
    #[tokio::test]
    async fn a_client_that_stops_reading_is_closed_after_the_idle_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = Router::new().route("/big", axum::routing::get(|| async { vec![b'x'; BIG] }));
        let limits = ConnectionLimits {
            header_read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(1),
            ..ConnectionLimits::default()
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_router(listener, router, limits, async {
            let _ = stopped.await;
        }));

        let mut sock = TcpStream::connect(addr).await.expect("connect");
        sock.write_all(b"GET /big HTTP/1.1\r\nHost: relay\r\n\r\n")
            .await
            .expect("send");
        // Not reading: the socket buffers fill, Relay's writes stall, nothing moves.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut received = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        let ended = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => received += n,
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "the connection was not closed");
        assert!(received < BIG, "closed before the whole answer was sent");

        let _ = stop.send(());
        server.await.expect("joined").expect("served");
    }
}
