//! Regression tests: one per defect found from outside, each named after the
//! problem it pins (ripgrep's `tests/regression.rs`). Every test here failed
//! before its fix. Grouped by kind of defect, one file each under `regression/`.

mod common;

#[path = "regression/data_loss.rs"]
mod data_loss;
#[path = "regression/friction.rs"]
mod friction;
#[path = "regression/hostile.rs"]
mod hostile;
#[path = "regression/layers.rs"]
mod layers;
#[path = "regression/pr_loop.rs"]
mod pr_loop;
#[path = "regression/readme.rs"]
mod readme;
#[path = "regression/restores.rs"]
mod restores;
