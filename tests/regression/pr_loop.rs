//! Regression tests: pr loop.

#[allow(unused_imports)]
use super::common;
