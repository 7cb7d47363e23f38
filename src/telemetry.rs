//! Logs and traces of the `annals` process. Logs go to stderr (`ANNALS_LOG` filters them). When
//! the standard `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans are also exported over OTLP
//! (HTTP/protobuf; the other standard `OTEL_*` variables apply), and the W3C trace context is
//! the propagator, so a request's `traceparent` makes its spans part of the caller's trace.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;

/// Flushes exported spans when dropped (at the end of `main`).
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("annals: flushing spans to the OTLP endpoint failed: {e}");
            }
        }
    }
}

pub fn init() -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_env("ANNALS_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let fmt = || tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok().filter(|e| !e.is_empty());
    let Some(_) = endpoint else {
        tracing_subscriber::registry().with(fmt().with_filter(filter)).init();
        return Ok(Telemetry { provider: None });
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().build()?;
    let resource = opentelemetry_sdk::Resource::builder().with_service_name("annals").build();
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("annals"));
    // Spans are exported whatever `ANNALS_LOG` says of logs: the request spans are at info.
    let spans = EnvFilter::new("info");
    tracing_subscriber::registry().with(fmt().with_filter(filter)).with(otel.with_filter(spans)).init();
    Ok(Telemetry { provider: Some(provider) })
}
