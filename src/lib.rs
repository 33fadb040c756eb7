//! `backup`: a declarative, GitOps-style database backup runner.
//!
//! Desired state lives in [`policy`], actual state in [`inventory`] (read from
//! the [`destination`]s); [`engine`] takes a backup of a [`database`] onto
//! destinations and [`verify`] checks one; schedules and retention are pure
//! logic in [`schedule`] and [`retention`]; [`observe`] gathers what a plan
//! is computed from (inventory, drill evidence, crontab, delete probes),
//! [`plan`] compares desired and actual state and [`apply`] carries the plan
//! out, under the locks of [`state`]; [`format`] is how sizes and times
//! read; [`cli`] parses arguments, calls these and prints.
//! `main.rs` only builds the runtime, starts logging and maps the outcome to an
//! [`exit::ExitStatus`].

pub mod apply;
pub mod bounded;
pub mod catalog;
pub mod cli;
pub mod codec;
pub mod database;
pub mod destination;
pub mod engine;
pub mod exit;
pub mod fleet;
pub mod format;
pub mod inventory;
pub mod logging;
pub mod notify;
pub mod observe;
pub mod plan;
pub mod planfile;
pub mod policy;
pub mod restore;
pub mod retention;
pub mod runlog;
pub mod schedule;
pub mod state;
pub mod status;
pub mod verify;
pub mod wal;
