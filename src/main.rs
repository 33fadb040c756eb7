//! The `backup` binary: parse the command line, start logging, run, exit.

use std::process::ExitCode;

use backup::cli::Cli;
use backup::exit::ExitStatus;
use clap::Parser as _;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return match error.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitStatus::Success
                }
                // PostgreSQL's restore_command: a wrong command line must
                // abort recovery, not read as "no such file".
                _ if is_wal_fetch() => ExitStatus::WalFatal,
                _ => ExitStatus::Usage,
            }
            .into();
        }
    };
    backup::logging::init(
        cli.global.verbosity(),
        cli.global.log_format,
        cli.global.stderr_color(),
    );
    match backup::cli::run(cli) {
        Ok(status) => status.into(),
        Err(error) => {
            backup::cli::output::write_stderr(format_args!("error: {error:#}\n"));
            ExitStatus::Failure.into()
        }
    }
}

/// Whether the command line asks for `wal fetch`.
fn is_wal_fetch() -> bool {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    arguments
        .windows(2)
        .any(|pair| pair[0] == "wal" && pair[1] == "fetch")
}
