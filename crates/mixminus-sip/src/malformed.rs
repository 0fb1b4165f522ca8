//! Counting malformed SIP: `mixminus_sip_malformed_total{transport, reason}`.
//!
//! Over UDP our own receive path counts ([`crate::decide::frame`]). Over TCP the stream is
//! ezk's: it closes a connection whose bytes do not frame as SIP, and its endpoint drops a
//! message without base headers, each with a warning through the `log` crate and nothing
//! else. [`ezk_warnings`] is a `tracing` layer that counts those warnings; `mixminus serve`
//! installs it, an embedder that wants the TCP counts installs it beside its own (with
//! `tracing-log` forwarding `log` records, as `tracing_subscriber`'s `init` does).

use std::fmt;
use std::sync::atomic::Ordering;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::{filter_fn, FilterFn, Filtered};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// Counts one malformed message; `answered`: a `400` / `513` went back.
pub(crate) fn count(transport: &'static str, reason: &'static str, answered: bool) {
    metrics::counter!("mixminus_sip_malformed_total", "transport" => transport, "reason" => reason)
        .increment(1);
    if answered {
        metrics::counter!("mixminus_sip_malformed_answered_total", "transport" => transport)
            .increment(1);
    }
}

/// The layer [`ezk_warnings`] returns: it sees warnings and errors only.
pub type EzkWarningsLayer<S> = Filtered<EzkWarnings, FilterFn, S>;

/// A `tracing` layer counting the malformed SIP that ezk drops on its TCP transport in
/// `mixminus_sip_malformed_total{transport="tcp"}`: a stream that does not frame as SIP
/// (`reason="unparseable"`, the connection is closed) or exceeds 65535 bytes
/// (`"oversized"`), and a message without base headers (`"missing_headers"`; UDP messages
/// never reach ezk without them, see [`crate::decide::frame`]). It asks for ezk's
/// warnings whatever the log filter, so put the log filter on the other layers
/// (`fmt::layer().with_filter(..)`), not on the whole subscriber.
pub fn ezk_warnings<S>() -> EzkWarningsLayer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    // ezk logs through the `log` crate: its records reach tracing on the "log" callsites
    // (and are checked with their own target first). Every other callsite is never of
    // interest, so it costs nothing when the log filter is quieter than WARN: a warning
    // per junk packet elsewhere must not be formatted for this layer.
    let warnings: fn(&Metadata<'_>) -> bool =
        |m| *m.level() <= Level::WARN && (m.target() == "log" || m.target().starts_with("ezk_"));
    EzkWarnings.with_filter(filter_fn(warnings).with_max_level_hint(LevelFilter::WARN))
}

/// See [`ezk_warnings`].
#[derive(Debug, Clone, Copy, Default)]
pub struct EzkWarnings;

impl<S: Subscriber> Layer<S> for EzkWarnings {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let target = fields.target.as_deref().unwrap_or(event.metadata().target());
        if let Some(reason) = classify(target, &fields.message) {
            // Headerless UDP messages reach ezk only where a server fell back to its path.
            let transport = match reason {
                "missing_headers" if !crate::udp::UDP_CHECKED.load(Ordering::Relaxed) => "unknown",
                _ => "tcp",
            };
            count(transport, reason, false);
        }
    }
}

/// The `reason` of an ezk log line that reports a malformed message, if it is one.
fn classify(target: &str, message: &str) -> Option<&'static str> {
    if !target.starts_with("ezk_sip_core") {
        return None;
    }
    if let Some(error) = message.strip_prefix("An error occurred when reading stream ") {
        // ezk's stream decoder's two errors; others (a reset connection) are not malformed.
        return match error {
            "receiving message is malformed" => Some("unparseable"),
            "receiving message is too large" => Some("oversized"),
            _ => None,
        };
    }
    let headerless = message.starts_with("Failed to get base headers")
        || message.starts_with("Failed to get tsx key");
    headerless.then_some("missing_headers")
}

/// A `log` record's target (`tracing-log` passes it as a field) and message.
#[derive(Default)]
struct Fields {
    target: Option<String>,
    message: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "log.target" => self.target = Some(value.to_owned()),
            "message" => self.message = value.to_owned(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ezks_malformed_message_warnings_count() {
        let stream = "ezk_sip_core::transport::streaming";
        let reading = "An error occurred when reading stream ";
        assert_eq!(
            classify(stream, &format!("{reading}receiving message is malformed")),
            Some("unparseable")
        );
        assert_eq!(
            classify(stream, &format!("{reading}receiving message is too large")),
            Some("oversized")
        );
        assert_eq!(classify(stream, &format!("{reading}Connection reset by peer")), None);
        let endpoint = "ezk_sip_core::endpoint";
        assert_eq!(
            classify(endpoint, "Failed to get base headers for incoming message, missing"),
            Some("missing_headers")
        );
        assert_eq!(classify(endpoint, "the received message is an orphaned response"), None);
        assert_eq!(classify("other", "Failed to get base headers"), None);
    }
}
