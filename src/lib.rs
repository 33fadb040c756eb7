//! `backup`: a declarative, GitOps-style database backup runner.
//!
//! Desired state lives in [`policy`]; schedules and retention are pure logic in
//! [`schedule`] and [`retention`]; [`cli`] wires commands to them and prints.
//! `main.rs` only builds the runtime, starts logging and maps the outcome to an
//! [`exit::ExitStatus`].

pub mod cli;
pub mod exit;
pub mod logging;
pub mod policy;
pub mod retention;
pub mod schedule;
