//! The binary under test, shared by `bench` and `soak`: the one `--bin` names, or a fresh
//! release build of this workspace's.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The workspace's root: the parent of this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// `bin` made absolute, or `target/release/background-tasks` after building it.
pub fn binary(bin: Option<PathBuf>) -> Result<PathBuf> {
    let bin = match bin {
        Some(bin) => bin,
        None => {
            let root = workspace_root();
            let status = Command::new(env!("CARGO"))
                .args([
                    "build",
                    "--release",
                    "--quiet",
                    "--package",
                    "background-tasks",
                ])
                .current_dir(&root)
                .status()?;
            if !status.success() {
                bail!("cargo build --release failed");
            }
            root.join("target/release/background-tasks")
        }
    };
    bin.canonicalize()
        .with_context(|| format!("no binary at {}", bin.display()))
}
