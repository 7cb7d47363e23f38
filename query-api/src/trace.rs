//! Trace context across the HTTP edge: a request's span continues the caller's trace (W3C
//! `traceparent`, through whatever propagator the process installed; none unless OTLP export is
//! on), and appends store the trace context of their own span in the events' metadata so that
//! consumers can continue it in turn.

use std::collections::HashMap;

use axum::extract::Request;
use axum::http::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The span of one request, child of the caller's span if it sent a trace context.
pub fn request_span(request: &Request) -> Span {
    let span = tracing::info_span!(
        "request",
        otel.kind = "server",
        http.request.method = %request.method(),
        url.path = %request.uri().path(),
    );
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(request.headers())));
    let _ = span.set_parent(parent);
    span
}

/// The `traceparent` to store with appended events: the current span's when traces are
/// exported (so consumers continue from the append), else the request's own header.
pub fn traceparent_for_events(headers: &HeaderMap) -> Option<String> {
    let mut injected = Carrier::default();
    let cx = Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut injected));
    injected.0.remove("traceparent").or_else(|| {
        headers.get("traceparent").and_then(|v| v.to_str().ok()).filter(|v| is_traceparent(v)).map(str::to_owned)
    })
}

/// A W3C `traceparent`: version, 32-hex trace id, 16-hex parent id, 2-hex flags.
fn is_traceparent(v: &str) -> bool {
    let parts: Vec<&str> = v.split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    parts.len() >= 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

#[derive(Default)]
struct Carrier(HashMap<String, String>);

impl Injector for Carrier {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}
