//! Logs (`RELAY_LOG_FORMAT=json|pretty`, `RUST_LOG` filters) and, with the `otel` feature,
//! trace export.

use std::fmt;

use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormattedFields;
use tracing_subscriber::fmt::format::{FormatFields, JsonFields, Writer};

/// What logging set up that must be shut down at exit (the trace exporter, which flushes
/// the spans it still holds).
#[derive(Default)]
pub struct Telemetry {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    pub fn shutdown(self) {
        #[cfg(feature = "otel")]
        if let Some(p) = self.provider
            && let Err(e) = p.shutdown()
        {
            tracing::warn!(error = %e, "flushing traces failed");
        }
    }
}

pub fn init_logging(format: &str) -> Telemetry {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    // One global filter for every output (logs and exported traces).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let fmt = if format == "json" {
        fmt.json()
            .flatten_event(true)
            .with_current_span(true)
            .fmt_fields(JsonSpanFields)
            .boxed()
    } else {
        fmt.boxed()
    };
    #[allow(unused_mut)]
    let mut telemetry = Telemetry::default();
    #[allow(unused_mut)]
    let mut layers = vec![fmt];
    #[cfg(feature = "otel")]
    if crate::otel::configured() {
        match crate::otel::layer() {
            Ok((provider, layer)) => {
                layers.push(layer.boxed());
                telemetry.provider = Some(provider);
            }
            Err(e) => eprintln!("warning: OpenTelemetry export disabled: {e:#}"),
        }
    }
    // Logging may already be initialised (tests); that is fine.
    let _ = tracing_subscriber::registry()
        .with(layers)
        .with(filter)
        .try_init();
    #[cfg(not(feature = "otel"))]
    if std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").is_ok_and(|v| !v.trim().is_empty()) {
        tracing::warn!(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but this relay was built without the `otel` feature; no traces are exported"
        );
    }
    telemetry
}

/// JSON span fields that take a field recorded later by appending it to the fields already
/// written. tracing-subscriber's own [`JsonFields`] parses the span's fields back into a map
/// and writes them all again; the request span records `workspace_id` once the caller is
/// authenticated, so that cost (about a twentieth of a token read's CPU) was paid on every
/// authenticated request.
struct JsonSpanFields;

impl<'writer> FormatFields<'writer> for JsonSpanFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        JsonFields::new().format_fields(writer, fields)
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut added = String::new();
        JsonFields::new().format_fields(Writer::new(&mut added), fields)?;
        append_json_object(&mut current.fields, &added);
        Ok(())
    }
}

/// `{"a":1}` and `{"b":2}` make `{"a":1,"b":2}`. A key recorded twice appears twice; the
/// event formatter reads span fields with serde_json, which keeps the last, so the newer value
/// wins as it would with [`JsonFields`].
fn append_json_object(current: &mut String, added: &str) {
    let Some(added_members) = added.strip_prefix('{').filter(|m| m.len() > 1) else {
        return; // nothing was added
    };
    match current.strip_suffix('}') {
        Some(members) if members.len() > 1 => {
            current.truncate(members.len());
            current.push(',');
            current.push_str(added_members);
        }
        _ => {
            // Nothing written yet (or `{}`).
            current.clear();
            current.push_str(added);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[test]
    fn appending_to_json_objects() {
        let mut s = String::new();
        append_json_object(&mut s, r#"{"a":1}"#);
        assert_eq!(s, r#"{"a":1}"#);
        append_json_object(&mut s, "{}");
        assert_eq!(s, r#"{"a":1}"#);
        append_json_object(&mut s, r#"{"b":"x}","c":[2]}"#);
        assert_eq!(s, r#"{"a":1,"b":"x}","c":[2]}"#);
        let mut empty = String::from("{}");
        append_json_object(&mut empty, r#"{"d":true}"#);
        assert_eq!(empty, r#"{"d":true}"#);
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// A field recorded on a span after it was created shows on the span's log lines, next to
    /// the fields it was created with, as valid JSON; recording a field again replaces it.
    #[test]
    fn a_field_recorded_later_is_on_the_log_line() {
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .fmt_fields(JsonSpanFields)
            .with_writer(out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "request",
                request_id = "r-1",
                method = "GET",
                workspace_id = tracing::field::Empty,
                attempt = 1
            );
            let _entered = span.enter();
            tracing::info!("before");
            span.record("workspace_id", "ws-1");
            tracing::info!("after");
            span.record("attempt", 2);
            tracing::info!("again");
        });
        let text = String::from_utf8(out.0.lock().expect("not poisoned").clone()).expect("UTF-8");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("each log line is JSON"))
            .collect();
        assert_eq!(lines.len(), 3);
        let span = |i: usize| &lines[i]["span"];
        assert_eq!(span(0)["request_id"], "r-1");
        assert_eq!(span(0)["attempt"], 1);
        assert!(span(0).get("workspace_id").is_none());
        assert_eq!(span(1)["request_id"], "r-1");
        assert_eq!(span(1)["method"], "GET");
        assert_eq!(span(1)["workspace_id"], "ws-1");
        assert_eq!(span(2)["attempt"], 2);
        assert_eq!(lines[2]["spans"][0]["workspace_id"], "ws-1");
    }
}
