//! `backup verify`: re-read stored backups and check them against their sidecars.

use super::output::{stderrln, stdoutln};
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
    /// Instead, restore the newest backup (or --backup) of each policy into a scratch
    /// target (a temporary SQLite file, or a temporary database on the PostgreSQL server),
    /// check it against its metadata, drop the scratch target, and keep a JSON evidence record.
    #[arg(long)]
    pub restore_test: bool,
    /// Also decrypt encrypted backups and check what they hold (without it,
    /// their stored bytes are checked: size and SHA-256). The key comes from
    /// --identity or the policy's `encryption.age.identity`.
    #[arg(long)]
    pub decrypt: bool,
    /// The age identity file (or SSH private key) to decrypt with.
    #[arg(long, value_name = "FILE")]
    pub identity: Option<std::path::PathBuf>,
}

pub fn run(global: &GlobalArgs, args: &VerifyArgs) -> anyhow::Result<ExitStatus> {
    if args.restore_test {
        return restore_test(global, args);
    }
    let policies = match load_policies(global, args.policy.as_deref()) {
        Ok(policies) => policies,
        Err(status) => return Ok(status),
    };
    // Backups (sidecars that could be read) and unreadable sidecars are
    // counted apart: an unreadable sidecar is no backup, but it fails
    // verification all the same.
    let (mut checked, mut ok, mut failed, mut unreadable, mut errors) =
        (0_usize, 0_usize, 0_usize, 0_usize, 0_usize);
    for policy in &policies {
        if args.decrypt || args.identity.is_some() {
            match crate::codec::keys::load(policy, args.identity.as_deref()) {
                Err(error) => {
                    stderrln!("error: {}: {error}", policy.name);
                    errors += 1;
                    continue;
                }
                Ok(false) if policy.encryption.is_some() => {
                    stderrln!(
                        "error: {}: --decrypt needs a key: {}",
                        policy.name,
                        crate::codec::Error::NoIdentity
                    );
                    errors += 1;
                    continue;
                }
                Ok(_) => {}
            }
        }
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
                stderrln!("error: {} on {location}: {reason}", policy.name);
                errors += 1;
                continue;
            };
            for (name, reason) in &listing.unreadable {
                if args
                    .backup
                    .as_deref()
                    .is_some_and(|id| inventory::names::sidecar_id(name) != Some(id))
                {
                    continue;
                }
                stdoutln!("FAILED  {} {name} on {location}: {reason}", policy.name);
                unreadable += 1;
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
                    Ok(verified) => {
                        ok += 1;
                        let how = match verified {
                            crate::verify::Verified::Whole => "",
                            crate::verify::Verified::StoredOnly => {
                                " (encrypted: stored bytes checked; --decrypt checks the contents)"
                            }
                        };
                        stdoutln!(
                            "ok      {} {} on {location}{how}",
                            policy.name,
                            record.metadata.id
                        );
                    }
                    Err(problem) => {
                        failed += 1;
                        stdoutln!(
                            "FAILED  {} {} on {location}: {problem}",
                            policy.name,
                            record.metadata.id
                        );
                    }
                }
            }
        }
    }
    if let Some(id) = &args.backup
        && checked + unreadable == 0
    {
        stderrln!("error: no backup `{id}` found");
        return Ok(ExitStatus::Failure);
    }
    let noun = if checked == 1 { "backup" } else { "backups" };
    let sidecars = match unreadable {
        0 => String::new(),
        1 => "; 1 sidecar unreadable".to_owned(),
        count => format!("; {count} sidecars unreadable"),
    };
    stdoutln!("Verified {checked} {noun}: {ok} ok, {failed} failed{sidecars}.");
    Ok(if failed + unreadable > 0 {
        ExitStatus::VerificationFailed
    } else if errors > 0 {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}

/// `verify --restore-test`: one drill per policy, each with its evidence record.
fn restore_test(global: &GlobalArgs, args: &VerifyArgs) -> anyhow::Result<ExitStatus> {
    let policies = match load_policies(global, args.policy.as_deref()) {
        Ok(policies) => policies,
        Err(status) => return Ok(status),
    };
    let state = global.state();
    crate::runlog::start_log(&state, "verify", args.policy.as_deref());
    let mut failed = 0;
    let mut errors = 0;
    let mut locked = 0;
    let mut unusable = 0;
    for policy in &policies {
        if let Some(identity) = &args.identity
            && let Err(error) = crate::codec::keys::load(policy, Some(identity))
        {
            stderrln!("error: {}: {error}", policy.name);
            unusable += 1;
            continue;
        }
        // The backup must not be pruned while it is restored.
        let _lock = match state.lock(&policy.name) {
            Ok(lock) => lock,
            Err(error) => {
                stderrln!("error: {error}");
                match error.exit_status() {
                    ExitStatus::Locked => locked += 1,
                    _ => unusable += 1,
                }
                continue;
            }
        };
        let evidence = crate::restore::drill::run(policy, args.backup.as_deref());
        let (written, problems) = crate::restore::drill::keep(&state, policy, &evidence);
        for problem in problems {
            stderrln!("warning: {problem}");
        }
        let backup = evidence.backup.as_deref().unwrap_or("-");
        if evidence.passed() {
            stdoutln!(
                "ok      {} {backup}: restored into {}, checked, scratch removed ({:.1} s)",
                policy.name,
                evidence
                    .scratch_target
                    .as_deref()
                    .unwrap_or("a scratch target"),
                evidence.seconds
            );
        } else {
            failed += 1;
            let error = evidence.error.as_deref().unwrap_or("unknown error");
            stdoutln!("FAILED  {} {backup}: {error}", policy.name);
            let error = format!("restore drill of {backup} failed: {error}");
            for problem in crate::notify::other_failed(policy, error, evidence.backup.clone()) {
                stderrln!("warning: {problem}");
            }
        }
        match written {
            Ok(path) => stdoutln!("        evidence: {}", path.display()),
            Err(error) => {
                errors += 1;
                stderrln!("error: cannot write the evidence record: {error}");
            }
        }
    }
    let noun = if policies.len() == 1 {
        "policy"
    } else {
        "policies"
    };
    let skipped = locked + unusable;
    stdoutln!(
        "Restore-tested {} {noun}: {} passed, {failed} failed{}.",
        policies.len(),
        policies.len() - failed - skipped,
        if skipped > 0 {
            format!(", {skipped} skipped (locked or unusable state folder)")
        } else {
            String::new()
        }
    );
    Ok(if failed > 0 {
        ExitStatus::VerificationFailed
    } else if errors + unusable > 0 {
        ExitStatus::Failure
    } else if locked > 0 {
        ExitStatus::Locked
    } else {
        ExitStatus::Success
    })
}
