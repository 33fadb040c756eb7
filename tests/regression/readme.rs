//! Regression tests: readme.

#[allow(unused_imports)]
use super::common;
