//! `backup verify`: re-read stored backups and check them against their sidecars.

use super::output::{stderrln, stdoutln};
use clap::Args;

use super::{GlobalArgs, load_policies};
use crate::exit::ExitStatus;
use crate::restore::drills::{self, Drilled};
use crate::verify::Verified;
use crate::verify::sweep::{self, Checked};

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

/// Registers each policy's key where `args` ask for decryption; the
/// policies whose key cannot be had are named and left out.
fn with_keys(
    policies: Vec<crate::policy::Policy>,
    args: &VerifyArgs,
    needed: bool,
) -> (Vec<crate::policy::Policy>, usize) {
    if !needed {
        return (policies, 0);
    }
    let mut refused = 0;
    let kept = policies
        .into_iter()
        .filter(
            |policy| match crate::codec::keys::load(policy, args.identity.as_deref()) {
                Err(error) => {
                    stderrln!("error: {}: {error}", policy.name);
                    refused += 1;
                    false
                }
                Ok(false) if args.decrypt && policy.encryption.is_some() => {
                    stderrln!(
                        "error: {}: --decrypt needs a key: {}",
                        policy.name,
                        crate::codec::Error::NoIdentity
                    );
                    refused += 1;
                    false
                }
                Ok(_) => true,
            },
        )
        .collect();
    (kept, refused)
}

pub fn run(global: &GlobalArgs, args: &VerifyArgs) -> anyhow::Result<ExitStatus> {
    if args.restore_test {
        return restore_test(global, args);
    }
    let policies = match load_policies(global, args.policy.as_deref()) {
        Ok(policies) => policies,
        Err(status) => return Ok(status),
    };
    let needed = args.decrypt || args.identity.is_some();
    let (policies, refused) = with_keys(policies, args, needed);
    let mut tally = sweep::backups(
        &policies,
        args.backup.as_deref(),
        &mut |checked| match checked {
            Checked::Unlisted {
                policy,
                location,
                reason,
            } => stderrln!("error: {policy} on {location}: {reason}"),
            Checked::Unreadable {
                policy,
                location,
                name,
                reason,
            } => stdoutln!("FAILED  {policy} {name} on {location}: {reason}"),
            Checked::Wal {
                policy,
                location,
                result: Ok(summary),
            } => stdoutln!("ok      {policy} {summary} on {location}"),
            Checked::Wal {
                policy,
                location,
                result: Err(problem),
            } => stdoutln!("FAILED  {policy} WAL archive on {location}: {problem}"),
            Checked::Backup {
                policy,
                location,
                id,
                result: Ok(Verified::Whole),
            } => stdoutln!("ok      {policy} {id} on {location}"),
            Checked::Backup {
                policy,
                location,
                id,
                result: Ok(Verified::StoredOnly),
            } => stdoutln!(
                "ok      {policy} {id} on {location} (encrypted: stored bytes checked; --decrypt checks the contents)"
            ),
            Checked::Backup {
                policy,
                location,
                id,
                result: Err(problem),
            } => stdoutln!("FAILED  {policy} {id} on {location}: {problem}"),
        },
    );
    tally.errors += refused;
    if let Some(id) = &args.backup
        && tally.checked + tally.unreadable == 0
    {
        stderrln!("error: no backup `{id}` found");
        return Ok(ExitStatus::Failure);
    }
    stdoutln!("{}", tally.summary());
    Ok(tally.exit_status())
}

/// `verify --restore-test`: one drill per policy, each with its evidence record.
fn restore_test(global: &GlobalArgs, args: &VerifyArgs) -> anyhow::Result<ExitStatus> {
    let policies = match load_policies(global, args.policy.as_deref()) {
        Ok(policies) => policies,
        Err(status) => return Ok(status),
    };
    let state = global.state();
    crate::runlog::start_log(&state, "verify", args.policy.as_deref());
    let (policies, refused) = with_keys(policies, args, args.identity.is_some());
    let mut tally = drills::drills(&state, &policies, args.backup.as_deref(), &mut |drilled| {
        match drilled {
            Drilled::Unlocked(error) => stderrln!("error: {error}"),
            Drilled::Problem(problem) => stderrln!("warning: {problem}"),
            Drilled::Drill { policy, evidence } => {
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
                    let error = evidence.error.as_deref().unwrap_or("unknown error");
                    stdoutln!("FAILED  {} {backup}: {error}", policy.name);
                }
            }
            Drilled::Kept(Ok(path)) => stdoutln!("        evidence: {}", path.display()),
            Drilled::Kept(Err(error)) => {
                stderrln!("error: cannot write the evidence record: {error}")
            }
        }
    });
    tally.unusable += refused;
    stdoutln!("{}", tally.summary());
    Ok(tally.exit_status())
}
