//! The options every command takes, and how they resolve: policy paths,
//! the state folder, colours.

use super::output::stderrln;
use std::io::IsTerminal as _;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::logging::LogFormat;

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Policy file or folder (repeatable; folders are searched for *.yaml and *.yml).
    /// Default: `policies/`. The environment variable takes a `:`-separated list.
    #[arg(
        short = 'p',
        long = "policies",
        value_name = "PATH",
        global = true,
        env = "BACKUP_POLICIES",
        value_delimiter = ':'
    )]
    pub policies: Vec<PathBuf>,
    /// More log output on stderr (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less log output on stderr (-q errors only, -qq nothing).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub quiet: u8,
    /// When to use colours.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,
    /// Format of log lines on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// This host's state folder: policy locks and cron's logs. Default:
    /// /var/lib/backup for root, else ~/.local/state/backup.
    #[arg(long, value_name = "DIR", global = true, env = "BACKUP_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// The name this host goes by: recorded in sidecars and run records,
    /// matched against `metadata.hosts`, and the lease holder's name.
    /// Default: the kernel's host name.
    #[arg(long, value_name = "NAME", global = true, env = "BACKUP_HOST", value_parser = parse_host)]
    pub host: Option<String>,
}

/// A host name as `--host` takes it: what `metadata.hosts` can name.
fn parse_host(text: &str) -> Result<String, String> {
    crate::engine::check_host_name(text).map(|()| text.to_owned())
}

impl GlobalArgs {
    pub fn verbosity(&self) -> i8 {
        let verbose = i8::try_from(self.verbose).unwrap_or(i8::MAX);
        let quiet = i8::try_from(self.quiet).unwrap_or(i8::MAX);
        verbose.saturating_sub(quiet)
    }

    /// The policy paths: those given to the command, else `-p`, else `policies/`.
    pub fn policy_paths(&self, given: &[PathBuf]) -> Vec<PathBuf> {
        if !given.is_empty() {
            given.to_vec()
        } else if !self.policies.is_empty() {
            self.policies.clone()
        } else {
            vec![PathBuf::from(crate::policy::DEFAULT_PATH)]
        }
    }

    pub fn state(&self) -> crate::state::StateDir {
        let root = self
            .state_dir
            .clone()
            .unwrap_or_else(crate::state::default_dir);
        crate::state::StateDir::new(&root)
    }

    /// Says on stderr where the state folder is when no `--state-dir` (or
    /// `BACKUP_STATE_DIR`) chose it: run records, locks and logs go there.
    pub fn announce_state_dir(&self) {
        if self.state_dir.is_none() {
            stderrln!(
                "State folder: {} (the default; --state-dir or BACKUP_STATE_DIR chooses another).",
                self.state().path().display()
            );
        }
    }

    /// The sidecar cache in the state folder.
    pub fn sidecar_cache(&self) -> crate::inventory::SidecarCache {
        crate::inventory::SidecarCache::new(self.state().path())
    }

    pub fn stdout_color(&self) -> bool {
        self.color.enabled(std::io::stdout().is_terminal())
    }

    pub fn stderr_color(&self) -> bool {
        self.color.enabled(std::io::stderr().is_terminal())
    }
}

/// When to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set.
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    fn enabled(self, terminal: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                terminal
                    && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
                    && std::env::var_os("TERM").is_none_or(|term| term != "dumb")
            }
        }
    }
}

/// Output format of a command's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}
