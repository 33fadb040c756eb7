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
