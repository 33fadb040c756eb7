//! The process exit codes: one documented enum (see the README's table).
//!
//! Every command maps its outcome to one of these; nothing else calls
//! `std::process::exit`. A failure is never 0.

/// How `backup` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything asked for was done (or, for `plan --detailed-exitcode`, nothing is pending).
    Success,
    /// Something failed: a backup, a copy, a prune, a command not yet built, an internal error.
    Failure,
    /// `plan --detailed-exitcode` only: the plan has changes.
    ChangesPending,
    /// A policy is invalid; nothing was done.
    InvalidPolicy,
    /// Another `backup` holds the policy's lock; nothing was done.
    Locked,
    /// A backup failed verification (checksum, size, gzip stream, restore test).
    VerificationFailed,
    /// The command line was wrong (unknown flag, missing argument).
    Usage,
    /// `status` only (Nagios): some policy needs attention.
    Warning,
    /// `status` only (Nagios): some policy is critical.
    Critical,
    /// `status` only (Nagios UNKNOWN): it cannot tell, because a policy file
    /// is invalid, no policy has the name asked for, or the Prometheus
    /// textfile could not be written.
    Unknown,
    /// `wal fetch` only: the WAL file may exist but could not be fetched (a
    /// destination did not answer, a damaged copy, a missing or wrong key,
    /// an invalid policy, PATH not writable). Above 125, so PostgreSQL
    /// aborts recovery instead of taking it for a missing file.
    WalFatal,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::ChangesPending => 2,
            ExitStatus::InvalidPolicy => 3,
            ExitStatus::Locked => 4,
            ExitStatus::VerificationFailed => 5,
            ExitStatus::Usage => 64,
            ExitStatus::Warning => 1,
            ExitStatus::Critical => 2,
            ExitStatus::Unknown => 3,
            ExitStatus::WalFatal => 128,
        }
    }
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        std::process::ExitCode::from(status.code())
    }
}
