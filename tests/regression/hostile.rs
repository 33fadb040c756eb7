//! Regression tests: hostile.

#[allow(unused_imports)]
use super::common;
