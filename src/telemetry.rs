//! Structured logs through `tracing`.
//!
//! The level filter comes from `RUST_LOG` (default [`DEFAULT_FILTER`]); the
//! format is plain text or one JSON object per line (`--log-format`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Filter used when `RUST_LOG` is unset or empty.
pub const DEFAULT_FILTER: &str = "info,kube=warn";

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid RUST_LOG filter: {0}")]
    InvalidFilter(#[source] tracing_subscriber::filter::ParseError),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Installs the global subscriber. Call once, at start-up.
pub fn init(format: LogFormat) -> Result<(), Error> {
    let filter = filter_from(std::env::var("RUST_LOG").ok().as_deref())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        // Colours only on a terminal, never into log files or collectors.
        .with_ansi(std::io::stdout().is_terminal());
    let installed = match format {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    installed.map_err(|_| Error::AlreadyInstalled)
}

/// The filter for a `RUST_LOG` value; unset or blank means [`DEFAULT_FILTER`].
/// An invalid value is an error rather than silently ignored.
fn filter_from(rust_log: Option<&str>) -> Result<EnvFilter, Error> {
    match rust_log.map(str::trim) {
        Some(directives) if !directives.is_empty() => {
            EnvFilter::try_new(directives).map_err(Error::InvalidFilter)
        }
        _ => EnvFilter::try_new(DEFAULT_FILTER).map_err(Error::InvalidFilter),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_filter_when_unset_or_blank() {
        assert_eq!(
            filter_from(None).unwrap().to_string(),
            filter_from(Some(DEFAULT_FILTER)).unwrap().to_string()
        );
        assert_eq!(
            filter_from(Some("  ")).unwrap().to_string(),
            filter_from(None).unwrap().to_string()
        );
    }

    #[test]
    fn explicit_filter_wins() {
        let filter = filter_from(Some("debug,hyper=off")).unwrap().to_string();
        assert!(filter.contains("hyper=off"), "{filter}");
    }

    #[test]
    fn invalid_filter_is_an_error() {
        assert!(matches!(
            filter_from(Some("info,foo=notalevel")),
            Err(Error::InvalidFilter(_))
        ));
    }
}
