//! Development tasks: `cargo xtask <task>`.
//!
//! - `bench [--smoke] [--bin PATH] [--out PATH]`: the benchmark of DESIGN.md §7 (see
//!   BENCHMARKS.md). It builds the release binary unless `--bin` names one, prints a table
//!   and writes JSON (default `target/bench/latest.json`). `--smoke` runs one small
//!   iteration of every measurement, to keep the bench from rotting.
//! - `schemas [--check]`: writes the JSON Schemas to `schemas/`, or checks they are fresh.
//! - `man [--out DIR]`: man pages from the clap definitions (default `target/man`).
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "xtask talks to people"
)]

mod bench;
mod build;
mod man;
mod schemas;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("bench") => bench_command(args.collect()),
        Some("schemas") => {
            let check = match args.next().as_deref() {
                None => false,
                Some("--check") => true,
                Some(other) => bail!("unknown schemas option {other:?}"),
            };
            schemas::run(&build::workspace_root(), check)
        }
        Some("man") => {
            let out = match (args.next().as_deref(), args.next()) {
                (None, _) => build::workspace_root().join("target/man"),
                (Some("--out"), Some(dir)) => PathBuf::from(dir),
                _ => bail!("usage: cargo xtask man [--out DIR]"),
            };
            man::run(&out)
        }
        None | Some("help" | "--help" | "-h") => {
            println!(
                "cargo xtask <task>\n\n  bench [--smoke] [--bin PATH] [--out PATH]   measure DESIGN.md §7 (BENCHMARKS.md)\n  schemas [--check]                           write schemas/ (or check it is fresh)\n  man [--out DIR]                             man pages (default target/man)"
            );
            Ok(())
        }
        Some(other) => bail!("unknown task {other:?}; run `cargo xtask help`"),
    }
}

fn bench_command(args: Vec<String>) -> Result<()> {
    let root = build::workspace_root();
    let mut plan = bench::Plan::FULL;
    let mut bin = None;
    let mut out = root.join("target/bench/latest.json");
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--smoke" => plan = bench::Plan::SMOKE,
            "--bin" => bin = Some(PathBuf::from(args.next().context("--bin needs a path")?)),
            "--out" => out = PathBuf::from(args.next().context("--out needs a path")?),
            other => bail!("unknown bench option {other:?}"),
        }
    }
    let bin = build::binary(bin)?;
    let rows = bench::run(bin, plan)?;
    print!("{}", bench::table(&rows));
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        &out,
        serde_json::to_string_pretty(&bench::to_json(&rows, &plan))? + "\n",
    )?;
    println!("\nJSON: {}", out.display());
    Ok(())
}
