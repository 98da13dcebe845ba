//! Accepting connections with limits a client cannot get around.
//!
//! `axum::serve` reads request headers without a deadline and accepts connections until the
//! process runs out of file descriptors: about a thousand connections that never finish a
//! request take a server with the common 1,024-descriptor limit off the air. This accept loop
//! serves the same router through hyper's HTTP/1 connection with these limits instead:
//!
//! - **Connections are capped** ([`ConnectionLimits::max_connections`], and never more than the
//!   process's descriptor limit allows, less a reserve for the database and the runtime).
//! - **An idle connection gives way.** A connection is idle while no request of it is being
//!   handled: before its first request's headers are in, and between keep-alive requests. When
//!   the cap is reached, a new connection closes the connection idle the longest, so holding
//!   connections open cannot lock out a tablet or an orchestrator's health check. Only when
//!   every connection is busy with a request is the new one answered `503` and closed.
//! - **Idle time is bounded**: [`ConnectionLimits::header_timeout`] from connecting until the
//!   first request's headers are in, [`ConnectionLimits::keep_alive`] between requests. A body
//!   that is read too slowly is cut by the handlers' own deadline
//!   ([`ConnectionLimits::body_timeout`], applied where bodies are read).
//!
//! Each limit that is hit is counted and the counts are logged at most every ten seconds, so a
//! flood shows in the log without filling it.

use axum::Router;
use axum::extract::ConnectInfo;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tower::ServiceExt;

/// Limits on connections and on how long a client may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections at most (lowered to fit the descriptor limit, see [`effective_cap`]).
    pub max_connections: usize,
    /// From connecting until the first request's headers are complete.
    pub header_timeout: Duration,
    /// Reading one request body, from its first byte to its last.
    pub body_timeout: Duration,
    /// Idle between two requests on one connection.
    pub keep_alive: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            // A 2 MiB push over a poor mobile link (≈50 kB/s) takes about 40 s.
            body_timeout: Duration::from_secs(60),
            keep_alive: Duration::from_secs(30),
        }
    }
}

/// Binds `addr` with a listen backlog of 4,096 (the kernel may cap it lower): the standard
/// library's 128 drops connections under a burst of connects before the loop accepts them,
/// which the connecting tablets see as a one-second stall.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// The read buffer of one connection: headers must fit in it (bodies stream through).
const MAX_READ_BUFFER: usize = 64 * 1024;

/// Descriptors kept back from connections: the database and its journal files (two
/// connections), the listener, standard streams, the runtime's own.
const RESERVED_DESCRIPTORS: usize = 64;

/// The cap in force: `configured`, or less if the process may not open that many descriptors.
pub fn effective_cap(configured: usize) -> usize {
    match open_file_limit() {
        Some(limit) => configured.min(limit.saturating_sub(RESERVED_DESCRIPTORS).max(1)),
        None => configured,
    }
    .max(1)
}

/// The soft limit on open files (Linux: `/proc/self/limits`); `None` where unknown.
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// What the accept loop counted since it last logged.
#[derive(Default)]
struct Counts {
    evicted: AtomicU64,
    refused: AtomicU64,
    timed_out: AtomicU64,
    accept_failed: AtomicU64,
}

/// One open connection as the accept loop sees it.
struct Conn {
    /// Requests being handled now.
    busy: AtomicUsize,
    /// When the connection last became idle (opened, or finished a request).
    idle_since: Mutex<Instant>,
    /// Whether it has finished a request (then `keep_alive` bounds its idle time).
    served: AtomicUsize,
    /// Told to close at once (evicted).
    close: Notify,
    /// Already told to close: not chosen again while its task winds down.
    closing: std::sync::atomic::AtomicBool,
}

impl Conn {
    fn idle_since(&self) -> Instant {
        *self
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Marks a connection busy for as long as one request is handled.
struct Busy(Arc<Conn>);

impl Busy {
    fn start(conn: &Arc<Conn>) -> Busy {
        conn.busy.fetch_add(1, Ordering::SeqCst);
        Busy(conn.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        *self
            .0
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.0.served.fetch_add(1, Ordering::SeqCst);
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The open connections, and a signal each time one closes.
#[derive(Default)]
struct Registry {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    closed: Notify,
}

impl Registry {
    fn len(&self) -> usize {
        self.conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Tells the connection idle the longest to close; false if every connection is busy.
    fn evict_one_idle(&self) -> bool {
        let conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        let victim = conns
            .values()
            .filter(|c| c.busy.load(Ordering::SeqCst) == 0 && !c.closing.load(Ordering::SeqCst))
            .min_by_key(|c| c.idle_since());
        match victim {
            Some(c) => {
                c.closing.store(true, Ordering::SeqCst);
                c.close.notify_one();
                true
            }
            None => false,
        }
    }

    /// Waits until fewer than `cap` connections are open (their descriptors closed), or
    /// until `timeout` has passed.
    async fn wait_below(&self, cap: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            // Registered before the count is read: a close in between is not missed.
            closed.as_mut().enable();
            if self.len() < cap {
                return;
            }
            if tokio::time::timeout_at(deadline, closed).await.is_err() {
                return;
            }
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes; then stops
/// accepting, lets requests in progress finish (at most `body_timeout` more), and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cap = effective_cap(limits.max_connections);
    tracing::info!(max_connections = cap, "accepting connections");
    let registry = Arc::new(Registry::default());
    let counts = Arc::new(Counts::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let reporter = tokio::spawn(report(counts.clone(), registry.clone()));
    let mut next_id = 0u64;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors (or a connection reset before it was accepted): wait
                    // for a connection to close, or a moment, rather than spin.
                    counts.accept_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %e, "accept failed");
                    registry.evict_one_idle();
                    registry.wait_below(registry.len(), Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if registry.len() >= cap {
            if registry.evict_one_idle() {
                counts.evicted.fetch_add(1, Ordering::Relaxed);
                // Its descriptor is free once its task has ended.
                registry.wait_below(cap, Duration::from_secs(1)).await;
            } else {
                counts.refused.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(refuse(stream));
                continue;
            }
        }
        next_id += 1;
        let conn = Arc::new(Conn {
            busy: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            served: AtomicUsize::new(0),
            close: Notify::new(),
            closing: Default::default(),
        });
        registry
            .conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(next_id, conn.clone());
        let task = Connection {
            id: next_id,
            conn,
            registry: registry.clone(),
            counts: counts.clone(),
            limits,
        };
        tokio::spawn(task.run(stream, peer, router.clone(), stop_rx.clone()));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Requests in progress finish; idle connections close at once.
    let deadline = Instant::now() + limits.body_timeout;
    registry.wait_below(1, deadline - Instant::now()).await;
    reporter.abort();
    Ok(())
}

/// One accepted connection's task.
struct Connection {
    id: u64,
    conn: Arc<Conn>,
    registry: Arc<Registry>,
    counts: Arc<Counts>,
    limits: ConnectionLimits,
}

impl Connection {
    async fn run(
        self,
        stream: TcpStream,
        peer: SocketAddr,
        router: Router,
        mut stop: watch::Receiver<bool>,
    ) {
        let conn = self.conn.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
            let busy = Busy::start(&conn);
            // Handlers key rate limits by the client's address.
            request.extensions_mut().insert(ConnectInfo(peer));
            let response = router.clone().oneshot(request.map(axum::body::Body::new));
            async move {
                // Busy until the answer's body is sent, not only until the handler returns: a
                // 4 MiB pull page to a tablet on a poor link takes longer than the idle limit.
                response.await.map(|r| {
                    r.map(|body| {
                        axum::body::Body::new(body.map_frame(move |frame| {
                            let _sending = &busy;
                            frame
                        }))
                    })
                })
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            // Request headers are small; the default buffer (≈400 KiB) times the connection cap
            // would be memory any client can claim without a token.
            .max_buf_size(MAX_READ_BUFFER);
        let http = builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(http);
        let mut stopping = false;
        loop {
            let idle_limit = if self.conn.served.load(Ordering::SeqCst) == 0 {
                self.limits.header_timeout
            } else {
                self.limits.keep_alive
            };
            let busy = self.conn.busy.load(Ordering::SeqCst) > 0;
            let deadline = if busy {
                Instant::now() + idle_limit
            } else {
                self.conn.idle_since() + idle_limit
            };
            tokio::select! {
                _ = http.as_mut() => break,
                () = self.conn.close.notified() => break,
                changed = stop.changed(), if !stopping => {
                    stopping = true;
                    if changed.is_ok() {
                        http.as_mut().graceful_shutdown();
                    }
                }
                () = tokio::time::sleep_until(deadline) => {
                    let idle = self.conn.busy.load(Ordering::SeqCst) == 0
                        && self.conn.idle_since() + idle_limit <= Instant::now();
                    if idle {
                        self.counts.timed_out.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }
        // Dropping the connection closes its socket.
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.registry
            .conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
        self.registry.closed.notify_waiters();
    }
}

/// Answers a connection over the cap with `503` and closes it, without reading its request.
async fn refuse(mut stream: TcpStream) {
    let body = serde_json::to_string(&feltbog_core::protocol::ErrorBody {
        code: feltbog_core::protocol::ErrorCode::Unavailable,
        message: "the server is busy: try again shortly".into(),
        wipe: false,
        retry_after_ms: Some(1000),
    })
    .unwrap_or_default();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Logs what the limits did, at most every ten seconds and only when they did something.
async fn report(counts: Arc<Counts>, registry: Arc<Registry>) {
    let mut every = tokio::time::interval(Duration::from_secs(10));
    loop {
        every.tick().await;
        let take = |c: &AtomicU64| c.swap(0, Ordering::Relaxed);
        let (evicted, refused, timed_out, accept_failed) = (
            take(&counts.evicted),
            take(&counts.refused),
            take(&counts.timed_out),
            take(&counts.accept_failed),
        );
        if evicted + refused + timed_out + accept_failed > 0 {
            tracing::warn!(
                evicted,
                refused,
                timed_out,
                accept_failed,
                open = registry.len(),
                "connection limits hit: idle connections closed, busy server refused new ones"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_fits_the_descriptor_limit() {
        // This process's limit is whatever the machine gives; the cap never exceeds it.
        let cap = effective_cap(usize::MAX);
        if let Some(limit) = open_file_limit() {
            assert!(cap <= limit.saturating_sub(RESERVED_DESCRIPTORS).max(1));
        }
        assert_eq!(effective_cap(3), 3.min(cap));
        assert!(effective_cap(0) >= 1);
    }
}
