//! Logging, once per process: human-readable lines or JSON, filtered by `RUST_LOG`
//! (default `info`). No log line carries personal data: types that hold it redact
//! themselves, and handlers log ids and kinds only.
//!
//! The AMQP client is capped at `debug` whatever `RUST_LOG` asks: at `trace`, lapin and
//! amq-protocol log every frame, message bodies — families' data — included.

use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::settings::LogFormat;

/// The filter when `RUST_LOG` is unset: the hub at info, chatty dependencies quieter.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,lapin=warn";

/// Installs the global subscriber writing to stderr; a second call is a no-op.
/// `default_filter` applies when `RUST_LOG` is unset.
pub fn init(format: LogFormat, default_filter: &str) {
    init_with_writer(format, default_filter, std::io::stderr);
}

/// Installs the global subscriber with a chosen writer (tests capture logs this way).
pub fn init_with_writer<W>(format: LogFormat, default_filter: &str, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Text => builder
            .with_target(false)
            .finish()
            .with(body_cap())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .finish()
            .with(body_cap())
            .try_init(),
    };
    let asks_trace = std::env::var("RUST_LOG").is_ok_and(|f| f.to_lowercase().contains("trace"));
    if installed.is_ok() && asks_trace {
        tracing::info!(
            "RUST_LOG asks for trace: lapin and amq_protocol stay at debug, since their trace \
             level logs message bodies."
        );
    }
}

/// The crates whose `trace` level logs AMQP frames with their bodies (a target matches
/// its crate's modules, and `amq_protocol` those of `amq_protocol_tcp`, `_types`, `_uri`).
const BODY_LOGGING_TARGETS: [&str; 2] = ["lapin", "amq_protocol"];

/// A global filter that lets everything through but the AMQP client's `trace`: layered over
/// the `RUST_LOG` filter, an event is logged only when both let it through.
fn body_cap() -> Targets {
    BODY_LOGGING_TARGETS
        .iter()
        .fold(Targets::new().with_default(Level::TRACE), |targets, t| {
            targets.with_target(*t, Level::DEBUG)
        })
}

/// An error and every source under it on one line, `outer: inner: root` (zero2prod's
/// `error_chain_fmt`): logs and dead-letter reasons keep the cause an operator needs.
/// Error texts of the hub name fields and rules, never values of personal fields.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut last = self.0.to_string();
        f.write_str(&last)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            // Many errors already end with their cause's text (sqlx's "error returned from
            // database: {0}"): printed once.
            if !last.ends_with(&text) {
                write!(f, ": {text}")?;
            }
            last = text;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_amqp_client_never_logs_at_trace_whatever_rust_log_asks() {
        let cap = body_cap();
        for target in [
            "lapin",
            "lapin::channel",
            "amq_protocol",
            "amq_protocol_types::parsing",
            "amq_protocol_tcp",
        ] {
            assert!(!cap.would_enable(target, &Level::TRACE), "{target}");
            assert!(cap.would_enable(target, &Level::DEBUG), "{target}");
        }
        for target in ["raccordo_core::amqp::consumer", "sqlx::query"] {
            assert!(cap.would_enable(target, &Level::TRACE), "{target}");
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer step failed")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn an_error_chain_prints_every_cause_on_one_line() {
        let error = Outer(std::io::Error::other("disk gone"));

        let text = ErrorChain(&error).to_string();

        assert_eq!(text, "outer step failed: disk gone");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("wrapper: {0}")]
    struct Echoing(#[source] std::io::Error);

    #[test]
    fn a_cause_its_error_already_quotes_is_printed_once() {
        let error = Outer(std::io::Error::other("x"));
        let echoing = Echoing(std::io::Error::other("disk gone"));

        assert_eq!(ErrorChain(&error).to_string(), "outer step failed: x");
        assert_eq!(ErrorChain(&echoing).to_string(), "wrapper: disk gone");
    }
}
