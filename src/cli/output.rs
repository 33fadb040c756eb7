//! stdout and stderr that a closed pipe cannot stop.
//!
//! `backup apply | head -1` closes stdout after one line; `println!` would
//! panic there, in the middle of a backup. The commands print through
//! [`stdout!`]/[`stdoutln!`] and [`stderr!`]/[`stderrln!`] instead, and a
//! write that fails is remembered, never fatal: the work goes on. After a
//! broken pipe (EPIPE: the reader went away) the rest of that stream is
//! dropped quietly and the command ends with its own exit code; any other
//! failure to write stdout (a full disk under `> file`) is reported once at
//! the end and makes a successful command exit 1 (see [`finish`]).

use std::fmt;
use std::io::{self, Write as _};
use std::sync::Mutex;

/// What went wrong on one stream, if anything.
#[derive(Debug, Default)]
struct State {
    /// The reader went away: nothing more is written.
    closed: bool,
    /// The first failure that was not a broken pipe.
    failure: Option<String>,
}

static STDOUT: Mutex<State> = Mutex::new(State {
    closed: false,
    failure: None,
});
static STDERR: Mutex<State> = Mutex::new(State {
    closed: false,
    failure: None,
});

fn write(state: &Mutex<State>, mut stream: impl io::Write, arguments: fmt::Arguments) {
    let mut state = state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if state.closed {
        return;
    }
    if let Err(error) = stream.write_fmt(arguments).and_then(|()| stream.flush()) {
        record(&mut state, &error);
    }
}

fn record(state: &mut State, error: &io::Error) {
    if error.kind() == io::ErrorKind::BrokenPipe {
        state.closed = true;
    } else if state.failure.is_none() {
        state.failure = Some(error.to_string());
    }
}

/// Writes to stdout; see the module's documentation for failures.
pub fn write_stdout(arguments: fmt::Arguments) {
    write(&STDOUT, io::stdout().lock(), arguments);
}

/// Writes to stderr; failures are dropped (there is nowhere to report them).
pub fn write_stderr(arguments: fmt::Arguments) {
    write(&STDERR, io::stderr().lock(), arguments);
}

/// Flushes stdout and turns a failure to write it into the command's
/// outcome: a command that succeeded but could not write its output fails
/// (exit 1); a broken pipe changes nothing.
pub fn finish(status: crate::exit::ExitStatus) -> crate::exit::ExitStatus {
    let mut state = STDOUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !state.closed
        && let Err(error) = io::stdout().flush()
    {
        record(&mut state, &error);
    }
    let Some(failure) = state.failure.clone() else {
        return status;
    };
    drop(state);
    write_stderr(format_args!(
        "error: cannot write the output to stdout: {failure}\n"
    ));
    match status {
        crate::exit::ExitStatus::Success => crate::exit::ExitStatus::Failure,
        other => other,
    }
}

/// `print!`, surviving a closed stdout.
macro_rules! stdout {
    ($($argument:tt)*) => {
        $crate::cli::output::write_stdout(format_args!($($argument)*))
    };
}

/// `println!`, surviving a closed stdout.
macro_rules! stdoutln {
    () => {
        $crate::cli::output::write_stdout(format_args!("\n"))
    };
    ($($argument:tt)*) => {
        $crate::cli::output::write_stdout(format_args!("{}\n", format_args!($($argument)*)))
    };
}

/// `eprint!`, surviving a closed stderr.
macro_rules! stderr {
    ($($argument:tt)*) => {
        $crate::cli::output::write_stderr(format_args!($($argument)*))
    };
}

/// `eprintln!`, surviving a closed stderr.
macro_rules! stderrln {
    () => {
        $crate::cli::output::write_stderr(format_args!("\n"))
    };
    ($($argument:tt)*) => {
        $crate::cli::output::write_stderr(format_args!("{}\n", format_args!($($argument)*)))
    };
}

pub(crate) use {stderr, stderrln, stdout, stdoutln};
