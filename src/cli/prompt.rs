//! Asking before a destructive step, as Terraform does.

use super::output::{stderrln, stdoutln};
use std::io::IsTerminal as _;

use crate::exit::ExitStatus;

/// What the user said to a destructive step.
pub(super) enum Approval {
    Given,
    /// Not given; the command ends with this status (the reason is printed).
    Refused(ExitStatus),
}

/// Approval for `what` ("applying", "removing the block"): given by `flag`
/// (`--auto-approve`, `--yes`), else asked on a terminal, where only `yes`
/// approves. Off a terminal without the flag it is a usage error (64).
pub(super) fn approve(
    given: bool,
    what: &str,
    flag: &str,
    prompt: &str,
    command: &str,
) -> anyhow::Result<Approval> {
    if given {
        return Ok(Approval::Given);
    }
    if !std::io::stdin().is_terminal() {
        stderrln!("error: not {what} without confirmation: stdin is not a terminal; pass {flag}");
        return Ok(Approval::Refused(ExitStatus::Usage));
    }
    if !confirm(prompt)? {
        stdoutln!("\n{command} cancelled.");
        return Ok(Approval::Refused(ExitStatus::Failure));
    }
    Ok(Approval::Given)
}

/// Asks on the terminal, as Terraform does; only `yes` approves.
pub(super) fn confirm(prompt: &str) -> anyhow::Result<bool> {
    use std::io::Write as _;
    let mut stderr = std::io::stderr();
    write!(
        stderr,
        "\n{prompt}\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: "
    )?;
    stderr.flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}
