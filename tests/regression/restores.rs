//! Regression tests: restores.

#[allow(unused_imports)]
use super::common;
