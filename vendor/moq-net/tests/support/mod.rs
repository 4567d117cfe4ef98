//! Shared test support for moq-net integration tests.

pub mod harness;
pub mod mock;
