//! Regression tests: friction.

#[allow(unused_imports)]
use super::common;
