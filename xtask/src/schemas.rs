//! `cargo xtask schemas [--check]`: writes every schema the library generates to `schemas/`
//! (uv's Write mode), or with `--check` fails when a committed one is stale or missing, or
//! when `schemas/` holds a file no schema writes (uv's Check mode).

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};

pub fn run(root: &Path, check: bool) -> Result<()> {
    let entries = background_tasks::schema::all();
    let dir = root.join("schemas");
    let mut stale = Vec::new();
    for entry in &entries {
        let path = root.join(entry.file());
        let fresh = entry.file_text();
        let committed = fs::read_to_string(&path).unwrap_or_default();
        if committed == fresh {
            continue;
        }
        if check {
            stale.push(entry.file());
        } else {
            fs::create_dir_all(&dir)?;
            fs::write(&path, fresh).with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", entry.file());
        }
    }
    let known: Vec<String> = entries.iter().map(|e| e.file()).collect();
    for file in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let name = format!("schemas/{}", file?.file_name().to_string_lossy());
        if !known.contains(&name) {
            if check {
                stale.push(format!("{name} (no schema writes it)"));
            } else {
                fs::remove_file(root.join(&name))?;
                println!("removed {name}");
            }
        }
    }
    if !stale.is_empty() {
        bail!(
            "stale schemas: {}\nrun `cargo xtask schemas` and commit schemas/",
            stale.join(", ")
        );
    }
    if check {
        println!("{} schemas are fresh", entries.len());
    }
    Ok(())
}
