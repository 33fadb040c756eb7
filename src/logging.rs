//! Logging set-up: tracing to stderr, in text or JSON.
//!
//! `-v`/`-q` pick the level; `RUST_LOG`, when set, overrides them. stdout is
//! never used for logs: it carries the command's data. Secrets never reach a
//! log line because they travel as `Secret`, which prints `***`.

use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Installs the global subscriber. `verbosity` is `-v` count minus `-q` count.
pub fn init(verbosity: i8, format: LogFormat, color: bool) {
    let level = match verbosity {
        i8::MIN..=-2 => "off",
        -1 => "error",
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("backup={level}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let result = match format {
        LogFormat::Text => builder.with_ansi(color).try_init(),
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
    };
    // Already installed (tests call this more than once): keep the first.
    let _ = result;
}
