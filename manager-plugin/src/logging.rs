//! Forwards the plugin's `tracing` events to the host. A plugin carries its own copy of `tracing`, whose global
//! dispatcher the host cannot see; this installs a subscriber in that copy that hands every event to the host's
//! [`LogSink`], and a panic hook that reports panics the same way.

use std::fmt::{self, Write as _};
use std::sync::Arc;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

use crate::lifecycle::{LogLevel, LogRecord, LogSink};

/// Installs log forwarding to `sink` in this copy of `tracing` (first call wins) and a panic hook that logs.
pub(crate) fn install(sink: Arc<dyn LogSink>) {
    let filter = level_filter(sink.max_level());
    let subscriber = tracing_subscriber::registry().with(ForwardLayer { sink }.with_filter(filter));
    if tracing::subscriber::set_global_default(subscriber).is_ok() {
        std::panic::set_hook(Box::new(|info| {
            tracing::error!(target: "panic", "{info}");
        }));
    }
}

fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Trace => LevelFilter::TRACE,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
    }
}

fn log_level(level: &Level) -> LogLevel {
    match *level {
        Level::TRACE => LogLevel::Trace,
        Level::DEBUG => LogLevel::Debug,
        Level::INFO => LogLevel::Info,
        Level::WARN => LogLevel::Warn,
        _ => LogLevel::Error,
    }
}

struct ForwardLayer {
    sink: Arc<dyn LogSink>,
}

impl<S: Subscriber> Layer<S> for ForwardLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut visitor = FieldCollector::default();
        event.record(&mut visitor);
        self.sink.log(&LogRecord {
            level: log_level(meta.level()),
            target: meta.target().to_string(),
            message: visitor.message,
            fields: visitor.fields,
        });
    }
}

#[derive(Default)]
pub(crate) struct FieldCollector {
    message: String,
    fields: Vec<(String, String)>,
}

impl Visit for FieldCollector {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.fields.push((field.name().to_string(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = render(value);
        if field.name() == "message" {
            self.message.push_str(&text);
        } else {
            self.fields.push((field.name().to_string(), text));
        }
    }
}

/// Renders a field without ever panicking: a `Debug` (or `Display`, behind `%`) implementation that fails or
/// panics becomes a placeholder, so logging can never turn a successful plugin call into a failed one.
fn render(value: &dyn fmt::Debug) -> String {
    let mut text = String::new();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write!(text, "{value:?}"))) {
        Ok(Ok(())) => text,
        Ok(Err(fmt::Error)) => "<field formatting failed>".to_string(),
        Err(payload) => {
            crate::guard::drop_payload(payload);
            "<field formatting panicked>".to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FailingDebug;
    impl fmt::Debug for FailingDebug {
        fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
            Err(fmt::Error)
        }
    }

    struct PanickingDebug;
    impl fmt::Debug for PanickingDebug {
        fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
            panic!("debug broke")
        }
    }

    #[test]
    fn a_failing_or_panicking_debug_becomes_a_placeholder() {
        assert_eq!(render(&FailingDebug), "<field formatting failed>");
        assert_eq!(render(&PanickingDebug), "<field formatting panicked>");
        assert_eq!(render(&7), "7");
    }
}
