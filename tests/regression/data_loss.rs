//! Regression tests: data loss.

#[allow(unused_imports)]
use super::common;
