//! Workspace integration tests, one binary with a module per area, run by
//! `cargo xtask test` against real parts.

mod distribution;
mod fault_proxy;
mod distribution_faults;
mod harness;
mod memory;
mod secrets;
mod token_auth;
