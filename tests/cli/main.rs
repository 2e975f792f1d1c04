//! The integration tests of `background-tasks`: one binary that drives the real executable.
//!
//! Each test owns a [`support::Sandbox`] (its own state directory, HOME and working
//! directory, a sealed environment) whose `Drop` kills every process the test started.
//! Tests wait on conditions with deadlines, never on fixed sleeps, and assert timing only
//! as generous bounds against hangs.
//!
//! Tests plant files and run programs of their own by design: the layering lints of
//! `clippy.toml` guard the product, not its tests.
#![allow(
    clippy::disallowed_methods,
    reason = "tests plant records and logs by hand and run helper programs"
)]

mod agent_waits;
mod batch;
mod children;
mod concurrency;
mod discovery;
mod disk_format;
mod failures;
mod faults_blame;
mod faults_bounds;
mod faults_compat;
mod faults_disk;
mod faults_input;
mod faults_probes;
mod faults_processes;
mod faults_races;
mod faults_symlinks;
mod faults_usage;
mod follow;
mod if_running;
mod input;
mod lifecycle;
mod list_fields;
#[cfg(feature = "mcp")]
mod mcp;
mod people;
mod properties;
mod ready;
mod reliability;
mod restart_policy;
mod retention;
mod schemas;
mod scripts;
mod security;
mod selectors;
#[cfg(feature = "serve")]
mod serve;
mod shapes;
mod steps;
mod stop_with_pid;
mod supervisor_faults;
mod support;
mod timeout;
