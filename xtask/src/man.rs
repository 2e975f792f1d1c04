//! `cargo xtask man [--out DIR]`: man pages rendered from the clap definitions, one for the
//! tool and one per command (`background-tasks-start.1`), into `target/man` by default.

use std::path::Path;

use anyhow::{Context, Result};

pub fn run(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out)?;
    clap_mangen::generate_to(background_tasks::cli::command(), out)
        .with_context(|| format!("writing man pages to {}", out.display()))?;
    let mut pages: Vec<String> = std::fs::read_dir(out)?
        .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
        .filter(|name| name.ends_with(".1"))
        .collect();
    pages.sort();
    println!("wrote {} man pages to {}:", pages.len(), out.display());
    for page in pages {
        println!("  {page}");
    }
    println!("read one with: man -l {}/background-tasks.1", out.display());
    Ok(())
}
