//! `backup wal push|fetch`: PostgreSQL's `archive_command` and
//! `restore_command`. Wires [`crate::wal`] to the exit codes PostgreSQL
//! acts on and prints one line per outcome.

use super::output::{stderrln, stdoutln};
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{GlobalArgs, load_policies};
use crate::exit::ExitStatus;
use crate::wal::{fetch, push};

#[derive(Debug, Args)]
pub struct WalArgs {
    #[command(subcommand)]
    pub command: WalCommand,
}

#[derive(Debug, Subcommand)]
pub enum WalCommand {
    /// Archive one WAL file onto every destination of the policy
    /// (`archive_command = 'backup -p /etc/backup/policies wal push app-db %p'`).
    /// Exits 0 only once it is durable everywhere.
    Push(PushArgs),
    /// Fetch one archived WAL file
    /// (`restore_command = 'backup -p /etc/backup/policies wal fetch app-db %f %p'`).
    /// Exits 1 only when no destination holds it; 128 on every other failure, so
    /// PostgreSQL aborts recovery instead of ending it early.
    Fetch(FetchArgs),
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The policy whose archive receives the file.
    #[arg(value_name = "POLICY")]
    pub policy: String,
    /// The WAL file (PostgreSQL's `%p`).
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// The policy whose archive holds the file.
    #[arg(value_name = "POLICY")]
    pub policy: String,
    /// The WAL file's name (PostgreSQL's `%f`).
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Where to write it (PostgreSQL's `%p`).
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// The age identity file (or SSH private key) an encrypted archive is
    /// decrypted with. Default: the policy's `encryption.age.identity`.
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
}

pub fn run(global: &GlobalArgs, args: &WalArgs) -> anyhow::Result<ExitStatus> {
    match &args.command {
        WalCommand::Push(args) => run_push(global, args),
        WalCommand::Fetch(args) => {
            // A panic would exit 101, which PostgreSQL takes for "no such
            // file": it must abort recovery instead.
            let fetched =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_fetch(global, args)));
            Ok(fetched.unwrap_or_else(|_| {
                stderrln!("error: wal fetch failed unexpectedly");
                ExitStatus::WalFatal
            }))
        }
    }
}

fn run_push(global: &GlobalArgs, args: &PushArgs) -> anyhow::Result<ExitStatus> {
    let policy = match load_policies(global, Some(&args.policy)) {
        Ok(mut policies) => policies.remove(0),
        Err(status) => return Ok(status),
    };
    let outcome = match push::push(&policy, &args.path, &global.state()) {
        Ok(outcome) => outcome,
        Err(error) => {
            stderrln!("error: wal push of `{}`: {error}", args.path.display());
            return Ok(ExitStatus::Failure);
        }
    };
    if outcome.everywhere() {
        let stored = outcome
            .destinations
            .iter()
            .filter(|(_, result)| matches!(result, Ok(push::Placed::Stored)))
            .count();
        stdoutln!(
            "Archived {} as {}: stored on {stored}, already on {} of {} destinations",
            outcome.wal,
            outcome.object,
            outcome.destinations.len() - stored,
            outcome.destinations.len()
        );
        return Ok(ExitStatus::Success);
    }
    stderrln!(
        "error: wal push of `{}`: not stored on every destination (PostgreSQL retries; a retry completes the missing copies):",
        args.path.display()
    );
    for (location, result) in &outcome.destinations {
        match result {
            Ok(_) => stderrln!("  {location}: stored"),
            Err(error) => stderrln!("  {location}: FAILED: {error}"),
        }
    }
    Ok(ExitStatus::Failure)
}

fn run_fetch(global: &GlobalArgs, args: &FetchArgs) -> ExitStatus {
    let policy = match load_policies(global, Some(&args.policy)) {
        Ok(mut policies) => policies.remove(0),
        Err(_) => {
            stderrln!(
                "error: wal fetch of `{}`: the policy cannot be used; aborting recovery",
                args.name
            );
            return ExitStatus::WalFatal;
        }
    };
    // The key is needed only for an encrypted archive; a bad one given is an error now.
    if let Err(error) = crate::codec::keys::load(&policy, args.identity.as_deref()) {
        stderrln!("error: wal fetch of `{}`: {error}", args.name);
        return ExitStatus::WalFatal;
    }
    match fetch::fetch(&policy, &args.name, &args.path) {
        Ok(fetch::Fetched::Found {
            location,
            object,
            bytes,
        }) => {
            // On stderr: a failed write to stdout must not turn this into a 1.
            stderrln!(
                "Fetched {} ({bytes} bytes) from {location} ({object})",
                args.name
            );
            ExitStatus::Success
        }
        Ok(fetch::Fetched::Missing) => {
            stderrln!(
                "{} is not in the archive of `{}` on any destination",
                args.name,
                policy.name
            );
            ExitStatus::Failure
        }
        Err(error) => {
            stderrln!("error: wal fetch: {error}");
            ExitStatus::WalFatal
        }
    }
}
