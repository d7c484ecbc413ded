//! The accept loop and connection hygiene: a cap on open connections, a limit on how long a
//! connection may sit idle between requests and on how long a client may take to send a
//! request's head, and graceful shutdown.
//!
//! Each connection carries a small [`Slot`] the watchdog reads: how many of its requests are
//! in flight (from the moment the head is parsed until the response body is dropped), when it
//! went idle, and when the first byte of a new request head arrived. A connection with nothing
//! in flight that stays idle past `idle_timeout` or sends a head slower than
//! `header_read_timeout` is closed. At the cap, the connection idle the longest is closed to make
//! room (a real request is answered even when idle or half-sent connections fill the cap); when
//! every connection is busy, new ones wait in the listen backlog.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http_body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};

/// Connection limits, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Longest a client may take to send a request's head, from its first byte.
    pub header_read_timeout: Duration,
    /// Longest a kept-alive connection may sit idle between requests.
    pub idle_timeout: Duration,
    /// Most client connections open at once (at least 1).
    pub max_connections: usize,
}

/// What the watchdog knows about one connection.
struct Slot {
    /// Requests whose response is not finished.
    inflight: AtomicU32,
    /// When the connection last went idle (ms since `epoch`).
    idle_since: AtomicU64,
    /// When the first byte of a request head arrived while idle (ms since `epoch` + 1; 0: none).
    head_started: AtomicU64,
    evict: Notify,
    epoch: Instant,
}

impl Slot {
    fn new(epoch: Instant) -> Slot {
        let s = Slot {
            inflight: AtomicU32::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            evict: Notify::new(),
            epoch,
        };
        s.idle_since.store(s.now(), Ordering::Relaxed);
        s
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn is_idle(&self) -> bool {
        self.inflight.load(Ordering::Relaxed) == 0
    }

    /// When this connection must be closed if nothing changes (`None`: busy).
    fn deadline(&self, l: &ConnLimits) -> Option<u64> {
        if !self.is_idle() {
            return None;
        }
        match self.head_started.load(Ordering::Relaxed) {
            0 => Some(self.idle_since.load(Ordering::Relaxed) + l.idle_timeout.as_millis() as u64),
            t => Some(t - 1 + l.header_read_timeout.as_millis() as u64),
        }
    }
}

/// Marks a request in flight until dropped (with the response body).
struct InFlight(Arc<Slot>);

impl InFlight {
    fn start(slot: Arc<Slot>) -> InFlight {
        slot.inflight.fetch_add(1, Ordering::Relaxed);
        slot.head_started.store(0, Ordering::Relaxed);
        InFlight(slot)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let s = &self.0;
        s.idle_since.store(s.now(), Ordering::Relaxed);
        s.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request counted as in flight until it is done.
struct Tracked {
    inner: Body,
    _flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, noting when a request head starts arriving on an idle connection, and giving
/// the answers hyper makes by itself for an unparsable head (400, 414, 431: empty bodies) an
/// OpenAI-style JSON body like every other error the gateway makes.
struct Watched {
    io: TcpStream,
    slot: Arc<Slot>,
    /// A replacement answer being written, and how much of it is out.
    rewrite: Option<(Vec<u8>, usize)>,
}

/// The JSON answer standing in for hyper's automatic answer `head`, if it is one.
fn openai_error_for(head: &[u8]) -> Option<Vec<u8>> {
    let (status, reason, code, message) = if head.starts_with(b"HTTP/1.1 400 ") {
        (
            400,
            "Bad Request",
            "invalid_request",
            "the request is not valid HTTP/1.1",
        )
    } else if head.starts_with(b"HTTP/1.1 431 ") {
        (
            431,
            "Request Header Fields Too Large",
            "request_header_fields_too_large",
            "the request's headers are too large",
        )
    } else if head.starts_with(b"HTTP/1.1 414 ") {
        (
            414,
            "URI Too Long",
            "uri_too_long",
            "the request's URI is too long",
        )
    } else {
        return None;
    };
    // Only an answer without a body (the gateway's own errors always carry one).
    let text = std::str::from_utf8(head).ok()?;
    if !text.ends_with("\r\n\r\n") || !text.to_ascii_lowercase().contains("content-length: 0\r\n") {
        return None;
    }
    let body = downshift_api::ErrorBody::new("invalid_request_error", code, message).to_json();
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    Some(out)
}

impl Watched {
    /// Whether a write now can only be hyper's automatic answer to a bad head: nothing was
    /// dispatched since the head began.
    fn answering_bad_head(&self) -> bool {
        self.slot.is_idle() && self.slot.head_started.load(Ordering::Relaxed) != 0
    }

    /// Writes the pending replacement; `Ready` once all of it is out.
    fn poll_rewrite(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, off)) = self.rewrite.as_mut() {
            if *off >= bytes.len() {
                self.rewrite = None;
                break;
            }
            match Pin::new(&mut self.io).poll_write(cx, &bytes[*off..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => *off += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before
            && self.slot.is_idle()
            && self.slot.head_started.load(Ordering::Relaxed) == 0
        {
            let now = self.slot.now() + 1;
            self.slot.head_started.store(now, Ordering::Relaxed);
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.rewrite.is_none()
            && self.answering_bad_head()
            && let Some(answer) = openai_error_for(buf)
        {
            self.rewrite = Some((answer, 0));
        }
        if self.rewrite.is_some() {
            return match self.poll_rewrite(cx) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(buf.len())),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            };
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.rewrite.is_none() && self.answering_bad_head() {
            let flat: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            if let Some(answer) = openai_error_for(&flat) {
                self.rewrite = Some((answer, 0));
            }
        }
        if self.rewrite.is_some() {
            let total = bufs.iter().map(|b| b.len()).sum();
            return match self.poll_rewrite(cx) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(total)),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            };
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The open connections, for eviction at the cap.
#[derive(Default)]
struct Registry {
    next: u64,
    slots: HashMap<u64, Arc<Slot>>,
}

impl Registry {
    /// Asks the connection idle the longest to close; says whether there was one.
    fn evict_one(&self) -> bool {
        let victim = self.slots.values().filter(|s| s.is_idle()).min_by_key(|s| {
            // A connection sending a head counts from the head's first byte.
            match s.head_started.load(Ordering::Relaxed) {
                0 => s.idle_since.load(Ordering::Relaxed),
                t => t - 1,
            }
        });
        match victim {
            Some(s) => {
                s.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets open requests finish for up
/// to `grace` (connections idle at that point are closed at once).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> io::Result<()> {
    let cap = limits.max_connections.max(1);
    let permits = Arc::new(Semaphore::new(cap));
    let registry = Arc::new(Mutex::new(Registry::default()));
    let epoch = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut builder = hyper::server::conn::http1::Builder::new();
    // hyper's own head timer runs from the moment a connection waits for a head, idle time
    // included: a backstop behind the watchdog's finer rules.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout + limits.header_read_timeout);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => a,
        };
        let (stream, _) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors (EMFILE/ENFILE) or a connection reset before it was
                // accepted: make room if an idle connection can give way, then retry shortly.
                let evicted = registry
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .evict_one();
                tracing::warn!(error = %e, evicted, "accept failed");
                tokio::time::sleep(Duration::from_millis(if evicted { 5 } else { 50 })).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // At the cap: the longest-idle connection makes room; with none idle, wait.
                registry
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .evict_one();
                let acquire = permits.clone().acquire_owned();
                tokio::select! {
                    _ = &mut shutdown => break,
                    p = acquire => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                }
            }
        };
        let slot = Arc::new(Slot::new(epoch));
        let id = {
            let mut r = registry.lock().unwrap_or_else(|p| p.into_inner());
            r.next += 1;
            let id = r.next;
            r.slots.insert(id, slot.clone());
            id
        };
        let (app, builder, registry, stop) = (
            app.clone(),
            builder.clone(),
            registry.clone(),
            stop_rx.clone(),
        );
        tokio::spawn(async move {
            serve_one(stream, app, &builder, slot, limits, stop).await;
            registry
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .slots
                .remove(&id);
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a permit until it ends.
    let all = u32::try_from(cap).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(grace, permits.acquire_many(all)).await;
    if drained.is_err() {
        tracing::warn!("in-flight requests did not finish within the grace period");
    }
    Ok(())
}

async fn serve_one(
    stream: TcpStream,
    app: Router,
    builder: &hyper::server::conn::http1::Builder,
    slot: Arc<Slot>,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
) {
    let io = TokioIo::new(Watched {
        io: stream,
        slot: slot.clone(),
        rewrite: None,
    });
    let svc_slot = slot.clone();
    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let flight = InFlight::start(svc_slot.clone());
        let app = app.clone();
        async move {
            let resp = tower_call(app, req.map(Body::new)).await;
            Ok::<_, std::convert::Infallible>(resp.map(|b| {
                Body::new(Tracked {
                    inner: b,
                    _flight: flight,
                })
            }))
        }
    });
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    let mut draining = *stop.borrow();
    if draining {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        // The state changes without waking this task, so it looks again at least every half
        // head timeout: a head that starts arriving is cut off within 1.5 times the limit.
        let soon = Instant::now() + limits.header_read_timeout / 2;
        let check = match slot.deadline(&limits) {
            Some(ms) => (slot.epoch + Duration::from_millis(ms)).min(soon),
            None => soon,
        };
        tokio::select! {
            _ = conn.as_mut() => return,
            changed = stop.changed(), if !draining => {
                if changed.is_err() || *stop.borrow() {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
            _ = slot.evict.notified() => {
                if slot.is_idle() {
                    return;
                }
            }
            _ = tokio::time::sleep_until(check.into()) => {
                if let Some(ms) = slot.deadline(&limits)
                    && slot.now() >= ms
                {
                    // Idle too long, or a head sent too slowly: drop the connection.
                    return;
                }
            }
        }
    }
}

async fn tower_call(mut app: Router, req: axum::extract::Request) -> axum::response::Response {
    // A router is always ready (`poll_ready` is a no-op), so it is called directly.
    match tower_service::Service::call(&mut app, req).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyper_s_empty_error_answers_get_an_openai_body() {
        let head =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let out = String::from_utf8(openai_error_for(head).unwrap()).unwrap();
        assert!(out.starts_with("HTTP/1.1 431 "), "{out}");
        let body: serde_json::Value =
            serde_json::from_str(out.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["error"]["code"], "request_header_fields_too_large");
        assert!(out.contains(&format!(
            "content-length: {}",
            out.split("\r\n\r\n").nth(1).unwrap().len()
        )));
        // An answer with a body, or a success, is left alone.
        assert!(
            openai_error_for(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n").is_none()
        );
        assert!(openai_error_for(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
    }
}
