//! The integration tests of `background-tasks`: one binary that drives the real executable.
//!
//! Each test owns a [`support::Sandbox`] (its own state directory, HOME and working
//! directory, a sealed environment) whose `Drop` kills every process the test started.
//! Tests wait on conditions with deadlines, never on fixed sleeps, and assert timing only
//! as generous bounds against hangs.

mod batch;
mod discovery;
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
mod input;
mod lifecycle;
mod properties;
mod ready;
mod reliability;
mod schemas;
mod security;
mod support;
