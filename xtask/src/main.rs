//! Development tasks: `cargo xtask <task>`.
//!
//! - `bench [--smoke] [--only NAME] [--bin PATH] [--out PATH]`: the benchmark of DESIGN.md §7 (see
//!   BENCHMARKS.md). It builds the release binary unless `--bin` names one, prints a table
//!   and writes JSON (default `target/bench/latest.json`). `--smoke` runs one small
//!   iteration of every measurement, to keep the bench from rotting.
//! - `schemas [--check]`: writes the JSON Schemas to `schemas/`, or checks they are fresh.
//! - `man [--out DIR]`: man pages from the clap definitions (default `target/man`).
//! - `screenshot [--bin PATH] [--out PATH] [--size WxH]`: the README's picture of `serve`
//!   with real tasks in it, taken in headless Chromium (default `docs/serve.png`,
//!   1400x860).
//! - `soak [--smoke] [--tasks N] [--parallel P] [--wave W] [--seed S] [--deadline S]
//!   [--bin PATH] [--out PATH]`: starts, stops, restarts and orphans thousands of tasks in
//!   parallel (default 5,000 from 16 callers; `--smoke`: 200), then checks that every record
//!   is valid and truthful and that no process is left. Prints a table, writes JSON (default
//!   `target/soak/latest.json`) and fails if anything was lost, corrupt, mismatched or leaked.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "xtask talks to people"
)]
// The layering lints of clippy.toml guard the product, not its tools.
#![allow(
    clippy::disallowed_methods,
    reason = "xtask builds, benchmarks and soaks the binary: it runs programs and writes reports"
)]

mod bench;
mod build;
mod man;
mod schemas;
mod screenshot;
mod soak;

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
        Some("soak") => soak_command(args.collect()),
        Some("screenshot") => screenshot_command(args.collect()),
        None | Some("help" | "--help" | "-h") => {
            println!(
                "cargo xtask <task>\n\n  bench [--smoke] [--only NAME] [--bin PATH] [--out PATH]\n                                              measure DESIGN.md §7 (BENCHMARKS.md); NAME: start, wait,\n                                              status/list, log capture, follow, supervisors, serve\n  schemas [--check]                           write schemas/ (or check it is fresh)\n  man [--out DIR]                             man pages (default target/man)\n  screenshot [--bin PATH] [--out PATH] [--size WxH]\n                                              the README's picture of serve (default docs/serve.png)\n  soak [--smoke] [--tasks N] [--parallel P] [--wave W] [--seed S] [--deadline S] [--bin PATH] [--out PATH]\n                                              start, stop, restart and orphan thousands of tasks; check every record and process"
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
    let mut only = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--smoke" => plan = bench::Plan::SMOKE,
            "--only" => only = Some(args.next().context("--only needs a measurement's name")?),
            "--bin" => bin = Some(PathBuf::from(args.next().context("--bin needs a path")?)),
            "--out" => out = PathBuf::from(args.next().context("--out needs a path")?),
            other => bail!("unknown bench option {other:?}"),
        }
    }
    let bin = build::binary(bin)?;
    let rows = bench::run(bin, plan, only.as_deref())?;
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

fn screenshot_command(args: Vec<String>) -> Result<()> {
    let root = build::workspace_root();
    let (mut bin, mut out, mut size) = (None, root.join("docs/serve.png"), (1400, 860));
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bin" => bin = Some(PathBuf::from(args.next().context("--bin needs a path")?)),
            "--out" => out = PathBuf::from(args.next().context("--out needs a path")?),
            "--size" => {
                let text = args.next().context("--size needs WxH")?;
                let (w, h) = text.split_once('x').context("--size needs WxH")?;
                size = (w.parse()?, h.parse()?);
            }
            other => bail!("unknown screenshot option {other:?}"),
        }
    }
    let bin = build::binary(bin)?;
    screenshot::run(&bin, &out, size)?;
    println!("{}", out.display());
    Ok(())
}

fn soak_command(args: Vec<String>) -> Result<()> {
    let root = build::workspace_root();
    let mut options = soak::Options::FULL;
    let (mut tasks, mut parallel, mut wave, mut seed, mut deadline) =
        (None, None, None, None, None);
    let mut bin = None;
    let mut out = root.join("target/soak/latest.json");
    let mut args = args.into_iter();
    let number = |flag: &str, value: Option<String>| -> Result<u64> {
        let value = value.with_context(|| format!("{flag} needs a number"))?;
        value
            .parse()
            .with_context(|| format!("{flag} {value:?} is not a number"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--smoke" => options = soak::Options::SMOKE,
            "--tasks" => tasks = Some(number("--tasks", args.next())? as usize),
            "--parallel" => parallel = Some(number("--parallel", args.next())? as usize),
            "--wave" => wave = Some(number("--wave", args.next())? as usize),
            "--seed" => seed = Some(number("--seed", args.next())?),
            "--deadline" => deadline = Some(number("--deadline", args.next())?),
            "--bin" => bin = Some(PathBuf::from(args.next().context("--bin needs a path")?)),
            "--out" => out = PathBuf::from(args.next().context("--out needs a path")?),
            other => bail!("unknown soak option {other:?}"),
        }
    }
    // Flags win over --smoke, wherever they stand.
    options.tasks = tasks.unwrap_or(options.tasks);
    if options.tasks == 0 {
        bail!("--tasks needs at least 1");
    }
    options.parallel = parallel.unwrap_or(options.parallel);
    options.wave = wave.unwrap_or(options.wave);
    options.seed = seed.unwrap_or(options.seed);
    options.deadline = deadline.map_or(options.deadline, std::time::Duration::from_secs);
    let bin = build::binary(bin)?;
    let report = soak::run(bin, options)?;
    print!("{}", report.table);
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&report.json)? + "\n")?;
    println!("\nJSON: {}", out.display());
    if let Some(kept) = &report.kept {
        println!("state kept for a look: {}", kept.display());
    }
    if !report.ok {
        bail!("the soak found problems (see above)");
    }
    Ok(())
}
