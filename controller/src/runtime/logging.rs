//! JSON logs shaped like Karpenter's (zap's production encoder), so log queries written for
//! Karpenter keep working: one object per line with `level` (`INFO`, …), `time` (RFC 3339, UTC,
//! milliseconds), `logger` (the tracing target), `message`, then the event's fields and its
//! spans' fields flattened into the object:
//!
//! ```text
//! {"level":"INFO","time":"2024-08-21T10:21:30.456Z","logger":"karpenter::leader","message":"acquired leader lease","lease":"karpenter-leader-election"}
//! ```

use std::fmt;

use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::runtime::settings::LogLevel;

/// The filter directive of a log level.
fn directive(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    }
}

/// `RUST_LOG` when set and valid (for per-module debugging), else `level` for everything.
fn filter(level: LogLevel) -> EnvFilter {
    match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::try_new(&spec).unwrap_or_else(|e| {
            eprintln!("ignoring invalid RUST_LOG {spec:?}: {e}");
            EnvFilter::new(directive(level))
        }),
        _ => EnvFilter::new(directive(level)),
    }
}

/// Installs the process-wide JSON logger on stdout at `level` (`RUST_LOG` overrides). A second
/// call, or one after another subscriber was installed, leaves the first in place.
pub fn init(level: LogLevel) {
    let _ = tracing_subscriber::registry()
        .with(filter(level))
        .with(layer(std::io::stdout))
        .try_init();
}

/// The formatting layer [`init`] installs, writing to `writer` (tests capture it).
pub fn layer<S, W>(writer: W) -> impl tracing_subscriber::Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        // Span fields are kept as JSON objects so the event formatter can merge them.
        .fmt_fields(JsonFields::new())
        .event_format(ZapJson)
        .with_writer(writer)
}

/// zap's level names.
fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARN",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

/// Collects an event's fields as JSON values.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_string(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}").into());
    }
}

/// The event formatter behind [`layer`].
pub struct ZapJson;

impl<S, N> FormatEvent<S, N> for ZapJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Map::new();
        // Outer spans first, so inner spans' and the event's own fields win on conflicts.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                let Some(stored) = ext.get::<FormattedFields<N>>() else {
                    continue;
                };
                if let Ok(Value::Object(span_fields)) = serde_json::from_str::<Value>(stored) {
                    fields.extend(span_fields);
                }
            }
        }
        event.record(&mut Fields(&mut fields));
        let message = fields.remove("message").unwrap_or_default();
        let json = |v: &Value| serde_json::to_string(v).map_err(|_| fmt::Error);
        // Written by hand to keep zap's key order (serde_json's map may sort keys).
        let mut line = format!(
            "{{\"level\":\"{}\",\"time\":\"{:.3}\",\"logger\":{},\"message\":{}",
            level_name(meta.level()),
            Timestamp::now(),
            json(&Value::from(meta.target()))?,
            json(&message)?,
        );
        for (key, value) in &fields {
            line.push_str(&format!(
                ",{}:{}",
                json(&Value::from(key.as_str()))?,
                json(value)?
            ));
        }
        line.push('}');
        writeln!(writer, "{line}")
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// The lines logged by `emit`, raw and parsed.
    fn capture(level: LogLevel, emit: impl FnOnce()) -> (Vec<String>, Vec<Value>) {
        let buf = Buffer::default();
        let subscriber = tracing_subscriber::registry()
            .with(EnvFilter::new(directive(level)))
            .with(layer(buf.clone()));
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let parsed = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect();
        (text.lines().map(str::to_string).collect(), parsed)
    }

    #[test]
    fn lines_are_zap_shaped_json() {
        let (raw, lines) = capture(LogLevel::Info, || {
            let span = tracing::info_span!("reconcile", controller = "nodeclaim.lifecycle");
            let _guard = span.enter();
            tracing::info!(
                nodepool = "default",
                count = 3,
                ready = true,
                "created nodeclaim"
            );
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["message"], "created nodeclaim");
        assert_eq!(line["logger"], module_path!());
        assert_eq!(line["nodepool"], "default");
        assert_eq!(line["count"], 3);
        assert_eq!(line["ready"], true);
        // The span's fields are flattened in too.
        assert_eq!(line["controller"], "nodeclaim.lifecycle");
        let time = line["time"].as_str().expect("time is a string");
        let parsed: Timestamp = time.parse().expect("RFC 3339 time");
        assert!(
            time.ends_with('Z') && time.len() == "2024-08-21T10:21:30.456Z".len(),
            "{time}"
        );
        let age = Timestamp::now().duration_since(parsed);
        assert!(age.as_secs() < 60, "{time}");
        // zap's key order: level, time, logger, message, then the fields.
        assert!(
            raw[0].starts_with("{\"level\":\"INFO\",\"time\":\""),
            "{}",
            raw[0]
        );
        let logger_at = raw[0].find("\"logger\":").unwrap();
        let message_at = raw[0].find("\"message\":").unwrap();
        let field_at = raw[0].find("\"nodepool\":").unwrap();
        assert!(
            logger_at < message_at && message_at < field_at,
            "{}",
            raw[0]
        );
    }

    #[test]
    fn level_filters_and_names() {
        let (_, lines) = capture(LogLevel::Warn, || {
            tracing::info!("hidden");
            tracing::warn!("shown");
            tracing::error!(error = "boom", "failed");
        });
        let levels: Vec<&str> = lines.iter().map(|l| l["level"].as_str().unwrap()).collect();
        assert_eq!(levels, ["WARN", "ERROR"]);
        assert_eq!(lines[1]["error"], "boom");
        let (_, lines) = capture(LogLevel::Debug, || tracing::debug!("detail"));
        assert_eq!(lines[0]["level"], "DEBUG");
    }
}
