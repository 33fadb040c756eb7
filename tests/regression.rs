//! Regression tests: one per defect found from outside, each named after the
//! problem it pins (ripgrep's `tests/regression.rs`). Every test here failed
//! before its fix. Grouped by kind of defect, one file each under `regression/`.

mod common;

mod data_loss;
mod friction;
mod hostile;
mod pr_loop;
mod readme;
mod restores;
