//! `backup verify`: re-read stored backups and check them against their sidecars.

use clap::Args;

use super::{GlobalArgs, load_policies};
use crate::destination;
use crate::exit::ExitStatus;
use crate::inventory;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Verify only this policy.
    #[arg(value_name = "POLICY")]
    pub policy: Option<String>,
    /// Verify only this backup id.
    #[arg(long, value_name = "ID")]
    pub backup: Option<String>,
    /// Also restore into a scratch target and compare (not built yet).
    #[arg(long)]
    pub restore_test: bool,
}

pub fn run(global: &GlobalArgs, args: &VerifyArgs) -> anyhow::Result<ExitStatus> {
    if args.restore_test {
        return super::not_built("verify --restore-test");
    }
    let policies = match load_policies(global, args.policy.as_deref()) {
        Ok(policies) => policies,
        Err(status) => return Ok(status),
    };
    let (mut checked, mut ok, mut failed, mut errors) = (0_usize, 0_usize, 0_usize, 0_usize);
    for policy in &policies {
        for spec in &policy.destinations {
            let location = destination::describe(spec);
            let opened = destination::open(spec);
            let listing = opened
                .as_ref()
                .map_err(ToString::to_string)
                .and_then(|destination| {
                    inventory::read(destination.as_ref(), &policy.name, None)
                        .map_err(|error| error.to_string())
                });
            let (Ok(destination), Ok(listing)) = (opened.as_ref(), listing.as_ref()) else {
                let reason = listing.err().unwrap_or_default();
                eprintln!("error: {} on {location}: {reason}", policy.name);
                errors += 1;
                continue;
            };
            for (name, reason) in &listing.unreadable {
                println!("FAILED  {} {name} on {location}: {reason}", policy.name);
                failed += 1;
            }
            for record in &listing.backups {
                if args
                    .backup
                    .as_deref()
                    .is_some_and(|id| id != record.metadata.id)
                {
                    continue;
                }
                checked += 1;
                match crate::verify::verify(destination.as_ref(), record) {
                    Ok(()) => {
                        ok += 1;
                        println!(
                            "ok      {} {} on {location}",
                            policy.name, record.metadata.id
                        );
                    }
                    Err(problem) => {
                        failed += 1;
                        println!(
                            "FAILED  {} {} on {location}: {problem}",
                            policy.name, record.metadata.id
                        );
                    }
                }
            }
        }
    }
    if let Some(id) = &args.backup
        && checked == 0
    {
        eprintln!("error: no backup `{id}` found");
        return Ok(ExitStatus::Failure);
    }
    let noun = if checked == 1 { "backup" } else { "backups" };
    println!("Verified {checked} {noun}: {ok} ok, {failed} failed.");
    Ok(if failed > 0 {
        ExitStatus::VerificationFailed
    } else if errors > 0 {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}
