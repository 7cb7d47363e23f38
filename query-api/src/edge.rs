//! Checks at the edge of the router, before any handler: the size of a request's head, the
//! content type of a body (JSON routes take JSON only, and every route with a body is one), and
//! the time a body has to arrive. One place, so that every route gets them alike; the server
//! loop (`server.rs`) handles what hyper refuses before the router sees a request.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, BodyTimedOut};
use crate::state::AppState;

/// The longest request target (path and query) served; longer ones are a `414`.
pub const MAX_URI_BYTES: usize = 16 * 1024;
/// The most bytes of header names and values a request may send; more is a `431`.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// `414` and `431` problems for heads past the limits (hyper's own, higher limits answer
/// through the server loop).
pub async fn head_limits(request: Request, next: Next) -> Response {
    let uri = request.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri > MAX_URI_BYTES {
        return ApiError::UriTooLong(format!("the request's URI has {uri} bytes; at most {MAX_URI_BYTES} are served"))
            .into_response();
    }
    let headers: usize = request.headers().iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
    if headers > MAX_HEADER_BYTES {
        return ApiError::HeadersTooLarge(format!(
            "the request's headers have {headers} bytes; at most {MAX_HEADER_BYTES} are served"
        ))
        .into_response();
    }
    next.run(request).await
}

/// Every route that takes a body takes JSON: a request with a body must say `application/json`
/// or a `+json` type (any case, with parameters such as `charset`), or it is a `415`. A request
/// without a body (no `content-length` above 0, no `transfer-encoding`) passes whatever it says:
/// routes whose body is optional take none. The body then has `body_timeout` to arrive.
pub async fn json_bodies(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0);
    if !has_body {
        return next.run(request).await;
    }
    let content_type = headers.get(header::CONTENT_TYPE);
    if !content_type.and_then(|v| v.to_str().ok()).is_some_and(is_json) {
        let content_type = content_type.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        return ApiError::UnsupportedMediaType { content_type }.into_response();
    }
    let timeout = state.settings.body_timeout;
    let request = request.map(|body| Body::new(TimedBody::new(body, timeout)));
    next.run(request).await
}

/// `application/json` or `application/…+json`, whatever the case and the parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", subtype)) => subtype == "json" || (subtype.len() > 5 && subtype.ends_with("+json")),
        _ => false,
    }
}

/// A request body with a deadline for all of it (a client trickling bytes would otherwise hold
/// a handler, and its connection, for as long as it likes).
struct TimedBody {
    body: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
}

impl TimedBody {
    fn new(body: Body, timeout: Duration) -> TimedBody {
        TimedBody { body, deadline: Box::pin(tokio::time::sleep(timeout)), timeout }
    }
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::BoxError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut(this.timeout.as_secs())))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn json_and_plus_json_in_any_case_with_parameters_are_json() {
        for yes in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
            " application/json ",
        ] {
            assert!(is_json(yes), "{yes}");
        }
        for no in ["text/plain", "application/x-www-form-urlencoded", "text/json", "application/+json", "", "json"] {
            assert!(!is_json(no), "{no}");
        }
    }
}
