//! The HTTP/1.1 server under the API ([`crate::serve::frontend::http::router`]): its own
//! runtime, a cap on open connections, and timeouts, so that no client can starve the
//! process's other work or exhaust its file descriptors.
//!
//! - **Own runtime.** Connections, body reads and request parsing run on `threads` threads of
//!   their own (and their blocking pool), never on the runtime that serves the cluster's QUIC
//!   links (registration, health, plans, batches). A flood of HTTP work slows HTTP only.
//! - **Connection cap.** At most `max_connections` are open (by default three quarters of the
//!   descriptor limit, which is raised to its hard limit at start, less a reserve, at most
//!   16,384). At the cap a new connection evicts the connection idle longest (no request in
//!   flight); when every connection is busy, the new one gets `503` and is closed.
//! - **Timeouts.** A request head must arrive within `header_timeout` of its first byte
//!   (slow-header clients are cut off); a connection with no request in flight for
//!   `idle_timeout` is closed; bodies have their own timeout in the router
//!   ([`crate::serve::frontend::http::HttpOptions::body_timeout`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Notify;

/// Limits of the HTTP server.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Most open connections; 0 picks it from the descriptor limit ([`connection_cap`]).
    pub max_connections: usize,
    /// Longest time from a request's first byte to the end of its head.
    pub header_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Threads of the server's own runtime.
    pub threads: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 0,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            threads: 2,
        }
    }
}

/// Descriptors left to the rest of the process (model files, QUIC sockets, the GPU driver).
const RESERVE: u64 = 64;
/// The automatic cap never exceeds this.
const MOST_CONNECTIONS: u64 = 16_384;

/// The connection cap for a descriptor limit: three quarters of it, less a reserve for the
/// rest of the process, at least 8 and at most 16,384.
pub fn connection_cap(descriptor_limit: u64) -> usize {
    (descriptor_limit.saturating_mul(3) / 4).saturating_sub(RESERVE).clamp(8, MOST_CONNECTIONS) as usize
}

/// Raises the soft descriptor limit to the hard one where allowed; returns the soft limit now
/// in force (or `None` where it cannot be read).
pub fn raise_descriptor_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit/setrlimit write/read the struct passed by pointer only.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
                return None;
            }
            if l.rlim_cur < l.rlim_max {
                let want = libc::rlimit { rlim_cur: l.rlim_max, rlim_max: l.rlim_max };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                    l.rlim_cur = l.rlim_max;
                }
            }
        }
        Some(l.rlim_cur)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// One open connection, as the cap and the idle timeout see it.
struct Conn {
    /// Requests being served on it.
    in_flight: AtomicUsize,
    /// Milliseconds since the server's start at its last request's end (or its opening).
    last_active_ms: AtomicU64,
    /// Tells the connection to close once its request in flight (if any) is answered.
    close: Notify,
    /// Whether it has answered a request (until then, closing it can lose nothing).
    answered: std::sync::atomic::AtomicBool,
}

struct Registry {
    epoch: Instant,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    next: AtomicU64,
    cap: usize,
    /// Sockets held: open connections and those still closing.
    sockets: AtomicUsize,
    refused: AtomicU64,
    evicted: AtomicU64,
}

impl Registry {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Room for one more connection: `true` when below the cap or an idle one was told to
    /// close.
    fn make_room(&self) -> bool {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.len() < self.cap {
            return true;
        }
        let idle = open
            .iter()
            .filter(|(_, c)| c.in_flight.load(Ordering::Acquire) == 0)
            .min_by_key(|(_, c)| c.last_active_ms.load(Ordering::Acquire))
            .map(|(&id, _)| id);
        match idle.and_then(|id| open.remove(&id)) {
            Some(c) => {
                // Out of the count at once; its socket closes as soon as it notices.
                c.close.notify_one();
                self.evicted.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }
}

/// The HTTP server: stops (closing every connection) when dropped.
pub struct HttpServer {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
    registry: Arc<Registry>,
}

impl HttpServer {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.registry.open.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
    /// Connections closed to make room for new ones, and connections refused because every
    /// open one was busy.
    pub fn evicted_and_refused(&self) -> (u64, u64) {
        (self.registry.evicted.load(Ordering::Relaxed), self.registry.refused.load(Ordering::Relaxed))
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The answer to a connection over the cap while every open connection is busy.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 74\r\n\r\n{\"error\": \"this server has too many open connections; retry in a second\"}\n";

/// Serves `app` on `addr` with `limits`, on a runtime of its own.
pub fn serve(app: Router, addr: SocketAddr, limits: &ServerLimits) -> anyhow::Result<HttpServer> {
    let cap = match limits.max_connections {
        0 => connection_cap(raise_descriptor_limit().unwrap_or(1024)),
        n => n,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(limits.threads.max(1))
        .max_blocking_threads(limits.threads.max(1) * 2)
        .thread_name("poolpipe-http")
        .enable_all()
        .build()
        .context("starting the HTTP server's runtime")?;
    let listener = {
        let _guard = runtime.enter();
        let std = std::net::TcpListener::bind(addr).with_context(|| format!("binding the HTTP API on {addr}"))?;
        std.set_nonblocking(true)?;
        tokio::net::TcpListener::from_std(std).context("the HTTP listener")?
    };
    let bound = listener.local_addr()?;
    let registry = Arc::new(Registry {
        epoch: Instant::now(),
        open: Mutex::default(),
        next: AtomicU64::new(0),
        cap,
        sockets: AtomicUsize::new(0),
        refused: AtomicU64::new(0),
        evicted: AtomicU64::new(0),
    });
    runtime.spawn(accept_loop(listener, app, limits.clone(), registry.clone()));
    tracing::debug!("HTTP API on {bound}: at most {cap} connections");
    Ok(HttpServer { addr: bound, runtime: Some(runtime), registry })
}

async fn accept_loop(listener: tokio::net::TcpListener, app: Router, limits: ServerLimits, registry: Arc<Registry>) {
    let mut last_warning: Option<Instant> = None;
    loop {
        // Connections told to close still hold their sockets for a moment: past a quarter
        // over the cap, new ones wait in the kernel's backlog until those are gone.
        while registry.sockets.load(Ordering::Acquire) >= registry.cap + (registry.cap / 4).max(1) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of descriptors (or a connection reset before it was taken): wait a
                // little rather than spin; say so at most every 10 s.
                if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!("HTTP accept: {e}");
                    last_warning = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if !registry.make_room() {
            registry.refused.fetch_add(1, Ordering::Relaxed);
            let _ = stream.try_write(BUSY);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let id = registry.next.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            in_flight: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(registry.now_ms()),
            close: Notify::new(),
            answered: std::sync::atomic::AtomicBool::new(false),
        });
        registry.open.lock().unwrap_or_else(|p| p.into_inner()).insert(id, conn.clone());
        let (app, limits, registry) = (app.clone(), limits.clone(), registry.clone());
        registry.sockets.fetch_add(1, Ordering::AcqRel);
        tokio::spawn(async move {
            serve_connection(stream, app, &limits, &registry, &conn).await;
            registry.open.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            registry.sockets.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

/// Marks a request in flight on its connection until dropped.
struct InFlight {
    conn: Arc<Conn>,
    registry: Arc<Registry>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.conn.last_active_ms.store(self.registry.now_ms(), Ordering::Release);
        self.conn.answered.store(true, Ordering::Release);
        self.conn.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    app: Router,
    limits: &ServerLimits,
    registry: &Arc<Registry>,
    conn: &Arc<Conn>,
) {
    let service = {
        let (conn, registry) = (conn.clone(), registry.clone());
        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            conn.in_flight.fetch_add(1, Ordering::AcqRel);
            conn.last_active_ms.store(registry.now_ms(), Ordering::Release);
            let mark = InFlight { conn: conn.clone(), registry: registry.clone() };
            let call = tower::ServiceExt::oneshot(app.clone(), req.map(axum::body::Body::new));
            async move {
                // The request counts as in flight until its answer's body is sent.
                let r = call.await;
                r.map(|resp| {
                    resp.map(|body| {
                        axum::body::Body::new(http_body_util::BodyExt::map_frame(body, move |f| {
                            let _ = &mark;
                            f
                        }))
                    })
                })
            }
        })
    };
    let http = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(http);
    let idle = limits.idle_timeout;
    let quiet = || Duration::from_millis(registry.now_ms().saturating_sub(conn.last_active_ms.load(Ordering::Acquire)));
    loop {
        let check_in = idle.saturating_sub(quiet()).max(Duration::from_millis(10));
        tokio::select! {
            _ = http.as_mut() => return,
            _ = conn.close.notified() => break,
            _ = tokio::time::sleep(check_in) => {
                if conn.in_flight.load(Ordering::Acquire) == 0 && quiet() >= idle {
                    break;
                }
            }
        }
    }
    // Closing: a connection that never had a request (an idle or slow-header one) closes at
    // once; a request in flight is answered first (bounded); an idle connection that answered
    // before gets a moment to flush what it wrote.
    if conn.in_flight.load(Ordering::Acquire) == 0 && !conn.answered.load(Ordering::Acquire) {
        return;
    }
    http.as_mut().graceful_shutdown();
    let grace =
        if conn.in_flight.load(Ordering::Acquire) == 0 { Duration::from_secs(1) } else { Duration::from_secs(30) };
    let _ = tokio::time::timeout(grace, http.as_mut()).await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_busy_answer_declares_its_length() {
        let text = std::str::from_utf8(super::BUSY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        serde_json::from_str::<serde_json::Value>(body).unwrap();
    }
}
