//! CORS for the browser pages of `ANNALS_CORS_ORIGINS` (none by default). A request from one of
//! those origins goes through tower-http's `CorsLayer` (preflights answered, the headers a page
//! needs allowed and exposed); any other request — no `Origin`, or an origin not listed — never
//! meets it, so it gets no CORS header at all and an `OPTIONS` is refused like any unknown
//! method. Exact origins only: a wildcard would let any site's pages read what a user's
//! browser can reach.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::Router;
use tower::{Layer, ServiceExt};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Request headers a page may send: the key, a JSON body, and `EventSource`'s resume point.
const ALLOWED_HEADERS: [HeaderName; 3] =
    [header::AUTHORIZATION, header::CONTENT_TYPE, HeaderName::from_static("last-event-id")];

/// Response headers a page may read besides the CORS-safelisted ones: when to retry (`503`,
/// `429`), where a created thing is, the auth challenge, and the request id for support.
const EXPOSED_HEADERS: [HeaderName; 4] =
    [header::RETRY_AFTER, header::LOCATION, header::WWW_AUTHENTICATE, HeaderName::from_static("x-request-id")];

/// `router`, answering CORS for `origins` (validated by the settings); unchanged when none.
pub fn layer(router: Router, origins: &[String]) -> Router {
    if origins.is_empty() {
        return router;
    }
    let allowed: Arc<[HeaderValue]> =
        origins.iter().map(|o| HeaderValue::from_str(o).expect("origins are checked by the settings")).collect();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(allowed.iter().cloned()))
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers(ALLOWED_HEADERS)
        .expose_headers(EXPOSED_HEADERS)
        .max_age(Duration::from_secs(600));
    // The same routes, behind the CORS layer, for requests from a listed origin only.
    let with_cors = cors.layer(router.clone());
    router.layer(axum::middleware::from_fn(move |mut request: Request, next: Next| {
        let (with_cors, allowed) = (with_cors.clone(), Arc::clone(&allowed));
        async move {
            let listed = request.headers().get(header::ORIGIN).is_some_and(|origin| allowed.contains(origin));
            if listed {
                // Routed again by the copy: the route this router matched must not stay (axum
                // would take it for a nesting prefix, and the auth extractor reads it).
                request.extensions_mut().remove::<MatchedPath>();
                with_cors.oneshot(request).await.into_response()
            } else {
                next.run(request).await
            }
        }
    }))
}
