//! Atomic, durable replacement of a small file: write a temp file (O_EXCL, 0600), fsync it,
//! rename it over the target, fsync the directory. A reader sees the old file or the new
//! one, never a mix, and a crash at any point leaves the old one valid.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{Error, Result};

/// Marks our temp files: `.<name>.tmp.<pid>.<n>`.
const TEMP_MARK: &str = ".tmp.";

pub fn write(target: &Path, bytes: &[u8]) -> Result<()> {
    replace(target, bytes)?.sync()
}

/// Replaces `target` with `bytes`, durably written but with the rename not yet made durable:
/// the new content is visible to readers and can never be seen half-written, and a crash
/// leaves either the old file or the new one. [`Replaced::sync`] then makes the rename
/// durable; a caller may answer first and sync after, off its critical path.
#[expect(
    clippy::disallowed_methods,
    reason = "the atomic writer: the rename comes after the temp file is written and synced"
)]
pub fn replace(target: &Path, bytes: &[u8]) -> Result<Replaced> {
    let temp = temp_path(target);
    let result = write_temp(&temp, bytes)
        .and_then(|()| fs::rename(&temp, target).map_err(|e| Error::store("replace", target, e)));
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map(|()| Replaced {
        target: target.to_path_buf(),
    })
}

/// A replaced file whose directory entry is not yet synced.
#[derive(Debug)]
#[must_use = "sync() makes the rename durable"]
pub struct Replaced {
    target: PathBuf,
}

impl Replaced {
    /// Fsyncs the directory, making the rename durable.
    pub fn sync(self) -> Result<()> {
        sync_parent(&self.target)
    }
}

fn write_temp(temp: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(temp)
        .map_err(|e| Error::store("create", temp, e))?;
    // The umask may have taken bits away from 0600; files are 0600, whatever it is.
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .and_then(|()| file.write_all(bytes))
        .and_then(|()| file.sync_data())
        .map_err(|e| Error::store("write", temp, e))
}

fn sync_parent(target: &Path) -> Result<()> {
    let dir = target.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::store("sync the directory", dir, e))
}

fn temp_path(target: &Path) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    target.with_file_name(format!(".{name}{TEMP_MARK}{}.{n}", std::process::id()))
}

/// The pid of the writer of a temp file named `name` (`.<target>.tmp.<pid>.<n>`), if `name`
/// is one of ours.
pub fn temp_writer(name: &str) -> Option<i32> {
    let (_, rest) = name.strip_prefix('.')?.rsplit_once(TEMP_MARK)?;
    let (pid, n) = rest.split_once('.')?;
    n.parse::<u32>().ok()?;
    pid.parse().ok()
}

/// Removes temp files of `target` left by a writer that died between write and rename.
/// Only the lock holder may call this: it is the only writer of `target`.
pub fn remove_stale_temps(target: &Path) {
    let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
        return;
    };
    let prefix = format!(".{}{TEMP_MARK}", name.to_string_lossy());
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = fs::remove_file(entry.path());
        }
    }
}
