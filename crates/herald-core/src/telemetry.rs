//! Logging set-up. Log lines are sentences; `RUST_LOG` filters them; JSON on
//! request for log pipelines. Span export ([`crate::otel`]) is installed here
//! too, so a service calls [`init`] once.
//!
//! Lines logged while a record is processed carry the record's span fields
//! (`event_id`, `destination`, `attempt`, `trace_id`): in text as the span
//! prefix, in JSON under `span` and `spans`.

use tracing::subscriber::Interest;
use tracing::{span, Event, Metadata};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::layer::{Context, Filter};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    /// Parses `--log-format` (`text` or `json`).
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown log format `{other}` (text or json)")),
        }
    }
}

/// Installs the global subscriber, logs only. Default level `info`,
/// librdkafka at `warn`.
pub fn init_logging(format: LogFormat) {
    let _ = tracing_subscriber::registry()
        .with(log_layer(format))
        .try_init();
}

/// Installs logging and, when an OTLP endpoint is configured (see
/// [`crate::otel`]), span export as `service`. Keep the guard until exit:
/// dropping it flushes the spans still buffered.
pub fn init(format: LogFormat, service: &str) -> anyhow::Result<Telemetry> {
    let registry = tracing_subscriber::registry().with(log_layer(format));
    let (otel, provider) = match crate::otel::layer(service)? {
        // RUST_LOG filters the logs only; spans of every Herald crate are
        // exported whatever the log level.
        Some((layer, provider)) => (
            Some(layer.with_filter(Uncached(
                Targets::new().with_target("herald", LevelFilter::INFO),
            ))),
            Some(provider),
        ),
        None => (None, None),
    };
    let _ = registry.with(otel).try_init();
    Ok(Telemetry { provider })
}

/// Flushes and stops span export when dropped.
#[must_use = "dropping the guard stops span export"]
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.shutdown() {
                eprintln!("Could not flush the last spans: {e}");
            }
        }
    }
}

fn log_layer<S>(format: LogFormat) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn,librdkafka=warn"));
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let layer = match format {
        LogFormat::Text => layer.boxed(),
        LogFormat::Json => layer.json().flatten_event(true).boxed(),
    };
    layer.with_filter(Uncached(filter))
}

/// A per-layer filter that never lets a callsite be cached as always
/// enabled, so its decision is taken afresh for every event.
///
/// tracing-subscriber passes a per-layer filter's verdict from `enabled`
/// to `on_event` through a thread-local; a callsite cached as "always"
/// skips `enabled`, and reads the verdict left by the previous check. A
/// `log` record the filter refused (rdkafka logs through `log`, e.g. when
/// a client is created) leaves "disabled" there, and the next such event
/// on that thread was dropped: "Adapter started." never reached the log
/// under `RUST_LOG=info,herald_adapter=debug` (the e2e tests' setting;
/// `adapter_stall` checks the line). tokio-rs/tracing#2519; capping the
/// interest at "sometimes" is the fix proposed upstream.
struct Uncached<F>(F);

impl<S, F: Filter<S>> Filter<S> for Uncached<F> {
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        self.0.enabled(meta, cx)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        let interest = self.0.callsite_enabled(meta);
        if interest.is_always() {
            Interest::sometimes()
        } else {
            interest
        }
    }

    fn event_enabled(&self, event: &Event<'_>, cx: &Context<'_, S>) -> bool {
        self.0.event_enabled(event, cx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.0.max_level_hint()
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, cx: Context<'_, S>) {
        self.0.on_new_span(attrs, id, cx)
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, cx: Context<'_, S>) {
        self.0.on_record(id, values, cx)
    }

    fn on_enter(&self, id: &span::Id, cx: Context<'_, S>) {
        self.0.on_enter(id, cx)
    }

    fn on_exit(&self, id: &span::Id, cx: Context<'_, S>) {
        self.0.on_exit(id, cx)
    }

    fn on_close(&self, id: span::Id, cx: Context<'_, S>) {
        self.0.on_close(id, cx)
    }
}
