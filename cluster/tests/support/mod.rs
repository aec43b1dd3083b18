//! Shared helpers for the integration tests of `procpool-cluster`.
//!
//! Each test file pulls this in with `mod support;`, so it is compiled once per test
//! binary. A binary that uses only part of the harness would otherwise warn (and fail
//! under `-D warnings`) about the helpers it leaves unused, hence the allow below.
#![allow(dead_code)]

pub(crate) mod agent;
pub(crate) mod server;
pub(crate) mod watch;
