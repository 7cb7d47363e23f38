//! The HTTP/1.1 server loop, hand-rolled on hyper instead of `axum::serve`, because the server must
//! hold against clients that never finish: `axum::serve` has no connection cap, no header, body or
//! idle timeout, waits at shutdown for every response (one live tail whose client stopped
//! reading held SIGTERM for the whole grace), and lets hyper answer unparseable requests with
//! empty bodies. Here:
//!
//! - at most `max_connections` connections are served; beyond that, new ones wait in the kernel's
//!   backlog (no descriptor is spent on them) until a slot frees;
//! - a connection that has not sent a whole request head `header_timeout` after it opened (or
//!   after the first byte of its next request) is closed; an idle keep-alive connection is closed
//!   after `idle_timeout`. A request in flight is never cut by these: a live tail stays open as
//!   long as its client reads (heartbeats keep proxies happy), and a request's body has
//!   `body_timeout` in all to arrive (`edge::TimedBody`);
//! - at shutdown, idle connections and live tails are dropped at once; other requests in flight
//!   get the grace;
//! - hyper's own answers to requests it cannot parse (`400`, `414`, `431`, written before any
//!   handler runs and without a body) are replaced, on their way to the socket, by problem
//!   documents (`Watched`).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::StatusCode;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::error::ApiError;

/// The largest request head hyper buffers (start line and headers). Larger than the limits the
/// edge checks enforce (`edge::MAX_URI_BYTES`, `edge::MAX_HEADER_BYTES`), so that those answer
/// with details; past this, hyper refuses on its own (a `431`, made a problem by `Watched`).
const MAX_HEAD_BUFFER: usize = 256 * 1024;

/// The path of the live tail: the one long-lived response, which neither holds a shutdown nor
/// counts as a request in flight for it.
const LIVE_TAIL_PATH: &str = "/v1/events/live";

/// The connection limits of `serve`, from the settings.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// How long requests in flight (not live tails) may run on after the shutdown signal.
    pub shutdown_grace: Duration,
}

/// Serves `router` on `listener` until `shutdown` fires, then lets requests in flight finish
/// for up to `limits.shutdown_grace` and drops what is left. Returns once no connection is open.
pub async fn serve(listener: TcpListener, router: Router, limits: Limits, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    loop {
        // A finished connection's task is reaped here, so the set holds only open ones.
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
            () = shutdown.cancelled() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors (EMFILE) or memory: wait for some to free rather than spin.
                warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let router = router.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            connection(stream, router, limits, shutdown).await;
            drop(slot);
        });
    }
    drop(listener);
    let drained =
        tokio::time::timeout(limits.shutdown_grace, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        warn!(
            grace_secs = limits.shutdown_grace.as_secs(),
            open = connections.len(),
            "requests still in flight after the shutdown grace; stopping without them"
        );
        connections.shutdown().await;
    }
}

/// What a connection's tasks (hyper's, the watchdog, the request guards) share.
#[derive(Debug, Default)]
struct Activity {
    /// Requests whose response has not ended (its body dropped).
    in_flight: AtomicUsize,
    /// Of those, the ones a shutdown waits for (not live tails).
    busy: AtomicUsize,
    /// The connection has served a request: an idle spell is keep-alive, not a silent opener.
    served: AtomicBool,
    /// Bytes arrived while no request was in flight: a request head is on its way.
    reading_head: AtomicBool,
    /// Bumped on every change above, so the watchdog knows whether its deadline still holds.
    epoch: AtomicU64,
    changed: Notify,
}

impl Activity {
    fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }
}

/// Counts one request in flight until the response body is dropped.
#[derive(Debug)]
struct InFlight {
    activity: Arc<Activity>,
    busy: bool,
}

impl InFlight {
    fn start(activity: &Arc<Activity>, busy: bool) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        if busy {
            activity.busy.fetch_add(1, Ordering::SeqCst);
        }
        activity.reading_head.store(false, Ordering::SeqCst);
        activity.bump();
        InFlight { activity: Arc::clone(activity), busy }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.busy {
            self.activity.busy.fetch_sub(1, Ordering::SeqCst);
        }
        self.activity.served.store(true, Ordering::SeqCst);
        self.activity.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.activity.bump();
    }
}

async fn connection(stream: TcpStream, router: Router, limits: Limits, shutdown: CancellationToken) {
    let activity = Arc::new(Activity::default());
    let io = TokioIo::new(Watched { inner: stream, activity: Arc::clone(&activity), replacement: None });
    let service_activity = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let busy = request.uri().path() != LIVE_TAIL_PATH;
        let guard = InFlight::start(&service_activity, busy);
        let router = router.clone();
        async move {
            let response = router.oneshot(request.map(Body::new)).await?;
            Ok::<_, std::convert::Infallible>(response.map(|body| Body::new(Guarded { body, _guard: guard })))
        }
    });
    let mut builder = http1::Builder::new();
    // The watchdog times heads out (hyper's timer would also time out idle keep-alive
    // connections at the same deadline, and cannot tell a live tail from a stalled request).
    builder.header_read_timeout(None).max_buf_size(MAX_HEAD_BUFFER);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let watchdog = watchdog(&activity, limits);
    tokio::pin!(watchdog);
    tokio::select! {
        served = connection.as_mut() => {
            if let Err(e) = served {
                debug!(error = %e, "connection ended with an error");
            }
            return;
        }
        () = watchdog.as_mut() => {
            debug!("connection closed: no request in time");
            return;
        }
        () = shutdown.cancelled() => {}
    }
    // Shutting down: an idle connection or a live tail (whose client may have stopped reading)
    // goes now; a request in flight finishes, then the connection closes.
    if activity.busy.load(Ordering::SeqCst) == 0 {
        return;
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

/// Resolves when the connection has been silent too long: no whole request head within
/// `header_timeout` of its opening or of its next request's first byte, or idle (kept alive,
/// nothing in flight) for `idle_timeout`. Never while a request is in flight.
async fn watchdog(activity: &Activity, limits: Limits) {
    loop {
        let changed = activity.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let epoch = activity.epoch.load(Ordering::SeqCst);
        if activity.in_flight.load(Ordering::SeqCst) > 0 {
            changed.await;
            continue;
        }
        let waiting_for_head = !activity.served.load(Ordering::SeqCst) || activity.reading_head.load(Ordering::SeqCst);
        let timeout = if waiting_for_head { limits.header_timeout } else { limits.idle_timeout };
        tokio::select! {
            () = changed => continue,
            () = tokio::time::sleep(timeout) => {
                if activity.epoch.load(Ordering::SeqCst) == epoch {
                    return;
                }
            }
        }
    }
}

/// A response body that keeps its request counted in flight until it is dropped.
struct Guarded {
    body: Body,
    _guard: InFlight,
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The socket as hyper sees it: notes when a request head starts to arrive (for the watchdog),
/// and swaps hyper's bodiless answers to unparseable requests for problem documents.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    /// A problem response written in place of hyper's, and how much of it is on the socket.
    replacement: Option<(Vec<u8>, usize)>,
}

impl Watched {
    /// Writes what is left of the replacement; `Ready` once it is all on the socket.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.replacement {
            if *written == bytes.len() {
                break;
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// `buf` is hyper's automatic answer to a request it could not parse: if so, a problem
    /// document replaces it, and the caller reports `buf` as written.
    fn replace(&mut self, buf: &[u8]) -> bool {
        if self.replacement.is_some() || self.activity.in_flight.load(Ordering::SeqCst) > 0 {
            return false;
        }
        let Some(problem) = parse_error_problem(buf) else { return false };
        self.replacement = Some((problem, 0));
        true
    }
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before
            && this.activity.in_flight.load(Ordering::SeqCst) == 0
            && !this.activity.reading_head.swap(true, Ordering::SeqCst)
        {
            this.activity.bump();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.replace(buf) {
            // Written or not yet, hyper's bytes are accounted for; flush writes the rest.
            let _ = this.poll_replacement(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        std::task::ready!(this.poll_replacement(cx))?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            if this.replace(first) {
                let _ = this.poll_replacement(cx)?;
                return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
            }
        }
        std::task::ready!(this.poll_replacement(cx))?;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_replacement(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_replacement(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// The problem response for hyper's automatic answer in `head`, if `head` is one: a status line
/// of `400`, `414` or `431` in a head without a `content-type` (every response of the router has
/// one; hyper's own answers to parse errors have none and no body).
fn parse_error_problem(head: &[u8]) -> Option<Vec<u8>> {
    let status = match head.get(..13)? {
        b"HTTP/1.1 400 " | b"HTTP/1.0 400 " => StatusCode::BAD_REQUEST,
        b"HTTP/1.1 414 " | b"HTTP/1.0 414 " => StatusCode::URI_TOO_LONG,
        b"HTTP/1.1 431 " | b"HTTP/1.0 431 " => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        _ => return None,
    };
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    if head[..end].to_ascii_lowercase().windows(13).any(|w| w == b"content-type:") {
        return None;
    }
    let error = match status {
        StatusCode::URI_TOO_LONG => ApiError::UriTooLong(format!("the request's URI is longer than {} bytes", 65_534)),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ApiError::HeadersTooLarge(format!(
            "the request's head has more than 100 headers or is larger than {MAX_HEAD_BUFFER} bytes"
        )),
        _ => ApiError::MalformedRequest(
            "the request line or a header is not valid HTTP/1.1 (RFC 9112); the connection is closed".into(),
        ),
    };
    let (status, body) = error.document();
    let body = body.to_string();
    let mut response = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body.as_bytes());
    Some(response)
}
