//! Logging: `tracing` everywhere; to the systemd journal with structured fields when
//! running under systemd (`JOURNAL_STREAM` set and the journal reachable), else
//! human-readable lines on stderr. `CLASSBOX_LOG` (or `RUST_LOG`) sets the filter.

use std::fmt::Write as _;

use systemd_journal_logger::JournalLog;
use tracing::field::{Field, Visit};
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

pub fn init(verbose: bool) {
    let default = if verbose { "debug" } else { "info" };
    // moq-net and quinn are chatty at info about every stream; keep them quieter.
    let directives = std::env::var("CLASSBOX_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| format!("{default},moq_net=error,quinn=warn,web_transport_quinn=warn"));
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new(default));

    if std::env::var_os("JOURNAL_STREAM").is_some()
        && systemd_journal_logger::connected_to_journal()
        && let Ok(journal) = JournalLog::new()
    {
        let _ = tracing_subscriber::registry()
            .with(JournalLayer { journal }.with_filter(filter))
            .with(RecentLayer.with_filter(EnvFilter::new("info,moq_net=error,quinn=warn")))
            .try_init();
        return;
    }
    let _ = tracing_subscriber::registry()
        .with(RecentLayer.with_filter(EnvFilter::new("info,moq_net=error,quinn=warn")))
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false)
                .with_filter(filter),
        )
        .try_init();
}

/// The last lines logged (info and above), for the page's diagnostics and the support
/// bundle. Fields are kept as logged: nothing secret is ever logged.
static RECENT: std::sync::Mutex<std::collections::VecDeque<String>> =
    std::sync::Mutex::new(std::collections::VecDeque::new());
const RECENT_LINES: usize = 300;

pub fn recent_logs() -> Vec<String> {
    RECENT
        .lock()
        .map(|r| r.iter().cloned().collect())
        .unwrap_or_default()
}

struct RecentLayer;

impl<S: tracing::Subscriber> Layer<S> for RecentLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut line = format!(
            "{} {:5} {}",
            crate::lms::xapi::rfc3339(crate::frame::unix_micros() as i64 / 1000),
            event.metadata().level(),
            fields.message
        );
        for (k, v) in &fields.extra {
            let _ = write!(line, " {}={v}", k.to_ascii_lowercase());
        }
        if let Ok(mut recent) = RECENT.lock() {
            if recent.len() >= RECENT_LINES {
                recent.pop_front();
            }
            recent.push_back(line);
        }
    }
}

/// Forwards each event to the journal: the message as MESSAGE, every field (room,
/// peer, track, ...) as an upper-cased journal field, plus the span names.
struct JournalLayer {
    journal: JournalLog,
}

#[derive(Default)]
struct Fields {
    message: String,
    extra: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.extra
                .push((field.name().to_ascii_uppercase(), format!("{value:?}")));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.extra
                .push((field.name().to_ascii_uppercase(), value.to_string()));
        }
    }
}

impl<S> Layer<S> for JournalLayer
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let Some(scope) = ctx.event_scope(event) {
            let spans: Vec<&str> = scope.from_root().map(|s| s.name()).collect();
            fields.extra.push(("SPAN".into(), spans.join(":")));
        }
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => log::Level::Error,
            tracing::Level::WARN => log::Level::Warn,
            tracing::Level::INFO => log::Level::Info,
            tracing::Level::DEBUG => log::Level::Debug,
            tracing::Level::TRACE => log::Level::Trace,
        };
        let mut text = fields.message.clone();
        for (k, v) in &fields.extra {
            let _ = write!(text, " {}={v}", k.to_ascii_lowercase());
        }
        let kvs: Vec<(&str, &str)> = fields
            .extra
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let args = format_args!("{text}");
        let record = log::Record::builder()
            .args(args)
            .level(level)
            .target(event.metadata().target())
            .module_path(event.metadata().module_path())
            .file(event.metadata().file())
            .line(event.metadata().line())
            .key_values(&kvs)
            .build();
        let _ = self.journal.journal_send(&record);
    }
}
