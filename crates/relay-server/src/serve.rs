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
//! - a new connection must deliver its first request head within `header_read_timeout` of
//!   being accepted;
//! - a kept-alive connection may wait `keep_alive_timeout` for its next request; once the first
//!   byte of that request arrives, the rest of the head must follow within
//!   `header_read_timeout`. The two are apart because a reverse proxy or load balancer keeps
//!   idle upstream connections open for a minute or so (nginx 60 s, AWS ALB 60 s) and reuses
//!   them without warning: a server that closes idle connections sooner races the proxy's
//!   next request and the proxy answers 502. `keep_alive_timeout` must exceed the proxy's;
//! - a connection whose answer cannot be written because the client stopped reading it, and
//!   on which no byte moves for `idle_timeout` while no request is being handled, is closed;
//! - a request body must be read completely within `body_read_timeout` (otherwise 408).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
    pub keep_alive_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_read_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            // Above the 60 s idle timeouts of common proxies and load balancers (nginx's
            // 75 s keepalive_timeout for the same reason).
            keep_alive_timeout: Duration::from_secs(75),
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
        // hyper's own header timer starts as soon as it waits for a head, so it would also
        // end kept-alive connections after `header_read_timeout`; `head_overdue` below tells
        // the two waits apart.
        .header_read_timeout(None)
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
                () = activity.stalled_for(idle) => {
                    tracing::debug!(client = %remote, "closing a connection whose client stopped reading");
                    return;
                }
                () = activity.head_overdue(self.limits) => {
                    tracing::debug!(client = %remote, "closing a connection whose request head did not arrive in time");
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

/// Not yet: a `head_begun_ms` with no head under way.
const NOT_YET: u64 = u64::MAX;

/// When bytes last moved on a connection, how many of its requests are being handled, and
/// where it stands in waiting for the next request head. Times are milliseconds since
/// `started`.
struct Activity {
    started: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
    /// Requests handled to the end on this connection (0: a new connection).
    served: AtomicU64,
    /// When the connection began waiting for a request head: accepted, or last answer given.
    waiting_since_ms: AtomicU64,
    /// When the first byte of the awaited request head arrived (`NOT_YET` before).
    head_begun_ms: AtomicU64,
    /// The last write found the client's socket full: the client is not reading.
    write_blocked: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            waiting_since_ms: AtomicU64::new(0),
            head_begun_ms: AtomicU64::new(NOT_YET),
            write_blocked: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.started + Duration::from_millis(ms)
    }

    fn touch(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    fn wrote(&self, polled: &Poll<std::io::Result<usize>>) {
        match polled {
            Poll::Ready(Ok(n)) if *n > 0 => {
                self.touch();
                self.write_blocked.store(false, Ordering::Relaxed);
            }
            Poll::Pending => self.write_blocked.store(true, Ordering::Relaxed),
            _ => {}
        }
    }

    /// Bytes arrived: while no request is being handled they begin the next request head.
    fn bytes_read(&self) {
        let now = self.now_ms();
        self.last_ms.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            let _ = self.head_begun_ms.compare_exchange(
                NOT_YET,
                now,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// Resolves once the awaited request head is late: a new connection's first head
    /// `header_read_timeout` after the accept, a kept-alive connection's next request
    /// `keep_alive_timeout` after the last answer, or a head under way `header_read_timeout`
    /// after its first byte (noticed within one header-read period).
    async fn head_overdue(&self, limits: ConnectionLimits) {
        loop {
            let begun = self.head_begun_ms.load(Ordering::Relaxed);
            let deadline = if begun != NOT_YET {
                self.at(begun) + limits.header_read_timeout
            } else if self.served.load(Ordering::Relaxed) == 0 {
                self.at(self.waiting_since_ms.load(Ordering::Relaxed)) + limits.header_read_timeout
            } else {
                self.at(self.waiting_since_ms.load(Ordering::Relaxed)) + limits.keep_alive_timeout
            };
            let now = Instant::now();
            if now >= deadline {
                if self.in_flight.load(Ordering::Relaxed) == 0 {
                    return;
                }
                // A request is being handled (bounded by the request timeout); the wait for
                // the next head starts when it ends.
                tokio::time::sleep(limits.header_read_timeout).await;
            } else {
                // A head may begin while waiting out the (longer) keep-alive deadline, which
                // moves the deadline earlier: look again at least every header-read period,
                // so a slow head is closed within twice the header-read timeout.
                tokio::time::sleep_until(deadline.min(now + limits.header_read_timeout)).await;
            }
        }
    }

    /// Resolves once an answer has been stuck for `idle`: the client stopped reading (the last
    /// write found its socket full), nothing moved since, and no request is being handled.
    /// Waiting for the client's next request is `head_overdue`'s to bound, not this.
    async fn stalled_for(&self, idle: Duration) {
        loop {
            let deadline = self.at(self.last_ms.load(Ordering::Relaxed)) + idle;
            if Instant::now() >= deadline
                && self.in_flight.load(Ordering::Relaxed) == 0
                && self.write_blocked.load(Ordering::Relaxed)
            {
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
        activity.head_begun_ms.store(NOT_YET, Ordering::Relaxed);
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = self.0.now_ms();
        self.0.last_ms.store(now, Ordering::Relaxed);
        self.0.waiting_since_ms.store(now, Ordering::Relaxed);
        self.0.served.fetch_add(1, Ordering::Relaxed);
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
            self.activity.bytes_read();
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
        self.activity.wrote(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.activity.wrote(&polled);
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

    async fn start(limits: ConnectionLimits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = Router::new().route("/ok", axum::routing::get(|| async { "ok" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve_router(listener, router, limits, async {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    /// Sends `GET /ok` on `sock` and reads its answer (a 2-byte body) completely.
    async fn get_ok(sock: &mut TcpStream) -> Result<(), String> {
        sock.write_all(b"GET /ok HTTP/1.1\r\nHost: relay\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        while !answer.ends_with(b"\r\n\r\nok") {
            match sock.read(&mut buf).await {
                Ok(0) => return Err("closed by the server".into()),
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e.to_string()),
            }
        }
        assert!(answer.starts_with(b"HTTP/1.1 200"));
        Ok(())
    }

    async fn closed_within(sock: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 64];
        tokio::time::timeout(within, async {
            loop {
                match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        })
        .await
        .is_ok()
    }

    /// A proxy reuses an idle upstream connection long after the header-read timeout: the
    /// keep-alive timeout, not the header-read timeout, bounds the wait for the next request,
    /// and the connection is closed once it passes.
    #[tokio::test]
    async fn a_kept_alive_connection_outlives_the_header_read_timeout_until_the_keep_alive_timeout()
    {
        let (addr, stop) = start(ConnectionLimits {
            header_read_timeout: Duration::from_secs(1),
            keep_alive_timeout: Duration::from_secs(4),
            ..ConnectionLimits::default()
        })
        .await;
        let mut sock = TcpStream::connect(addr).await.expect("connect");
        get_ok(&mut sock).await.expect("first request");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        get_ok(&mut sock)
            .await
            .expect("a request 2.5 s after the previous answer, past the header-read timeout");
        assert!(
            closed_within(&mut sock, Duration::from_secs(20)).await,
            "an idle kept-alive connection stays open past the keep-alive timeout"
        );
        let _ = stop.send(());
    }

    /// Once a request head has begun on a kept-alive connection, it must be complete within
    /// the header-read timeout (a slow head is not given the keep-alive timeout).
    #[tokio::test]
    async fn a_slow_head_on_a_kept_alive_connection_meets_the_header_read_timeout() {
        let (addr, stop) = start(ConnectionLimits {
            header_read_timeout: Duration::from_secs(1),
            keep_alive_timeout: Duration::from_secs(120),
            ..ConnectionLimits::default()
        })
        .await;
        let mut sock = TcpStream::connect(addr).await.expect("connect");
        get_ok(&mut sock).await.expect("first request");
        sock.write_all(b"GET /ok HTTP/1.1\r\nHost: re")
            .await
            .expect("half a head");
        assert!(
            closed_within(&mut sock, Duration::from_secs(30)).await,
            "a half-sent head was given the keep-alive timeout"
        );

        // A new connection that sends nothing meets the header-read timeout as well.
        let mut silent = TcpStream::connect(addr).await.expect("connect");
        assert!(closed_within(&mut silent, Duration::from_secs(30)).await);
        let _ = stop.send(());
    }
}
