//! Logging set-up: tracing to stderr, in text or JSON, and a copy of each
//! run's log lines to its per-run log file.
//!
//! `-v`/`-q` pick the level on stderr; `RUST_LOG`, when set, overrides them.
//! stdout is never used for logs: it carries the command's data. The per-run
//! file (see [`crate::runlog::start_log`]) gets every line at info level and
//! above, in the same format, whatever `-v`/`-q` say. Secrets never reach a
//! log line: ours travel as `Secret`, which prints `***`; dependencies' own
//! lines below info are dropped whatever `RUST_LOG` says (HTTP, TLS and S3
//! clients log requests there, URLs, headers and bodies with their tokens);
//! and every line is written with each value a reference resolved to
//! replaced by `***` ([`crate::policy::secret::redact`]).

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use tracing_subscriber::filter::{FilterExt as _, LevelFilter, Targets, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The per-run log file, once a command started one.
static RUN_LOG: Mutex<Option<(File, PathBuf)>> = Mutex::new(None);

/// Sends a copy of the log lines to `file` from now on.
pub fn set_run_log(file: File, path: PathBuf) {
    *RUN_LOG.lock().unwrap_or_else(PoisonError::into_inner) = Some((file, path));
}

/// Where the per-run log lines go, if anywhere.
pub fn run_log_path() -> Option<PathBuf> {
    RUN_LOG
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .map(|(_, path)| path.clone())
}

/// Writes each formatted line to the per-run log file, or nowhere.
struct RunLogWriter;

impl Write for RunLogWriter {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        let mut guard = RUN_LOG.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((file, _)) = guard.as_mut() {
            // A log file that cannot be written must not break the run.
            let _ = write_redacted(file, buffer);
        }
        Ok(buffer.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for RunLogWriter {
    type Writer = RunLogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        RunLogWriter
    }
}

/// Writes one formatted line (tracing hands over a whole line at a time)
/// with the secrets it holds replaced by `***`.
fn write_redacted(out: &mut impl Write, buffer: &[u8]) -> io::Result<()> {
    match std::str::from_utf8(buffer) {
        Ok(text) => out.write_all(crate::policy::secret::redact(text).as_bytes()),
        Err(_) => out.write_all(buffer),
    }
}

/// stderr, through [`write_redacted`].
struct StderrWriter;

impl Write for StderrWriter {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        // A closed stderr must not break the run either.
        let _ = write_redacted(&mut io::stderr().lock(), buffer);
        Ok(buffer.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for StderrWriter {
    type Writer = StderrWriter;

    fn make_writer(&'a self) -> Self::Writer {
        StderrWriter
    }
}

/// Whether a log line is shown at all: dependencies' below info never are,
/// whatever `RUST_LOG` asks for, because HTTP, TLS and S3 clients log whole
/// requests there (ureq the URL with its token and the bytes sent, the AWS
/// SDK the signed headers).
fn never_secret(metadata: &tracing::Metadata<'_>) -> bool {
    let target = metadata.target();
    target == "backup"
        || target.starts_with("backup::")
        || *metadata.level() <= tracing::Level::INFO
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

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
        .unwrap_or_else(|_| EnvFilter::new(format!("backup={level}")))
        .and(filter_fn(never_secret));
    let stderr: BoxedLayer = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(StderrWriter)
            .with_target(false)
            .with_ansi(color)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(false)
            .with_writer(StderrWriter)
            .with_target(false)
            .with_filter(filter)
            .boxed(),
    };
    let file_filter = Targets::new().with_target("backup", LevelFilter::INFO);
    let file: BoxedLayer = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(RunLogWriter)
            .with_target(false)
            .with_ansi(false)
            .with_filter(file_filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(false)
            .with_writer(RunLogWriter)
            .with_target(false)
            .with_filter(file_filter)
            .boxed(),
    };
    // Already installed (tests call this more than once): keep the first.
    let _ = tracing_subscriber::registry()
        .with(vec![stderr, file])
        .try_init();
}
