//! Atomic, durable replacement of a small file in a [`Folder`]: write a temp file (`O_EXCL`,
//! 0600) through the folder, fsync it, rename it over the target (`renameat`), fsync the
//! folder. A reader sees the old file or the new one, never a mix, and a crash at any point
//! leaves the old one valid.
//!
//! The two halves can be taken apart: [`stage`] writes the temp file (the half that needs
//! room on the disk) and [`Staged::commit`] renames it (which needs none). A writer that must
//! say something elsewhere only once the new file is sure to follow (the journal's
//! `task.ended` before a terminal record) stages, says it, then commits.
//!
//! A [`Reserve`] sets the room aside in advance: a temp file allocated now (`fallocate`),
//! filled in place later and renamed. The supervisor reserves its end's record when the run
//! begins, so a disk that fills up while the task runs cannot cost the task its end
//! (RELIABILITY 25).

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{Error, Result};
use crate::state::folder::Folder;

/// Marks our temp files: `.<name>.tmp.<pid>.<n>`.
const TEMP_MARK: &str = ".tmp.";

/// Replaces `name` in `folder` with `bytes`, durably.
pub fn write(folder: &Folder, name: &str, bytes: &[u8]) -> Result<()> {
    replace(folder, name, bytes)?.sync()
}

/// Replaces `name` with `bytes`, durably written but with the rename not yet made durable:
/// the new content is visible to readers and can never be seen half-written, and a crash
/// leaves either the old file or the new one. [`Replaced::sync`] then makes the rename
/// durable; a caller may answer first and sync after, off its critical path.
pub fn replace(folder: &Folder, name: &str, bytes: &[u8]) -> Result<Replaced> {
    stage(folder, name, bytes)?.commit()
}

/// Replaces `name` with `bytes` without waiting for the disk: the new content is visible to
/// readers at once and never half-written for them, but a crash before [`Replaced::sync`]
/// may leave the file empty or torn (a reader takes such a record, written before the boot
/// it is read in, as the crash's: `TaskRecord::read_in`). For a record that a crash makes
/// stale anyway (a `running` record reads `lost` after a reboot), synced once the caller has
/// answered.
pub fn replace_unsynced(folder: &Folder, name: &str, bytes: &[u8]) -> Result<Replaced> {
    let (mut staged, file) = write_temp(folder, name, bytes)?;
    staged.unsynced = Some(file);
    staged.commit()
}

/// Writes `bytes` into a new temp file beside `name` and syncs it, without the rename.
pub fn stage(folder: &Folder, name: &str, bytes: &[u8]) -> Result<Staged> {
    let (staged, file) = write_temp(folder, name, bytes)?;
    file.sync_data()
        .map_err(|e| Error::store("write", folder.file_path(&staged.temp), e))?;
    Ok(staged)
}

/// A new temp file beside `name` holding `bytes`, not yet synced.
fn write_temp(folder: &Folder, name: &str, bytes: &[u8]) -> Result<(Staged, File)> {
    let temp = temp_name(name);
    let mut file = folder.create_new(&temp)?;
    // From here on, dropping `staged` before its commit removes the temp file.
    let staged = Staged::new(folder, temp, name);
    file.write_all(bytes)
        .map_err(|e| Error::store("write", folder.file_path(&staged.temp), e))?;
    Ok((staged, file))
}

/// A temp file written and synced, to be renamed over its target; removed if dropped first.
#[derive(Debug)]
#[must_use = "commit() renames the staged file over its target"]
pub struct Staged {
    folder: Folder,
    temp: String,
    target: String,
    pending: bool,
    /// The file, when its content is not yet synced ([`replace_unsynced`]).
    unsynced: Option<File>,
}

impl Staged {
    fn new(folder: &Folder, temp: String, target: &str) -> Staged {
        Staged {
            folder: folder.clone(),
            temp,
            target: target.to_owned(),
            pending: true,
            unsynced: None,
        }
    }

    /// Renames the staged file over its target (no room on the disk needed).
    pub fn commit(mut self) -> Result<Replaced> {
        self.folder.rename(&self.temp, &self.target)?;
        self.pending = false;
        Ok(Replaced {
            folder: self.folder.clone(),
            unsynced: self.unsynced.take(),
            target: std::mem::take(&mut self.target),
        })
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.pending {
            let _ = self.folder.remove(&self.temp);
        }
    }
}

/// A replaced file whose directory entry (and, from [`replace_unsynced`], content) is not
/// yet synced.
#[derive(Debug)]
#[must_use = "sync() makes the replacement durable"]
pub struct Replaced {
    folder: Folder,
    unsynced: Option<File>,
    target: String,
}

impl Replaced {
    /// Makes the replacement durable: the content if it was not synced yet, then the rename
    /// (the folder).
    pub fn sync(self) -> Result<()> {
        if let Some(file) = self.unsynced {
            file.sync_data()
                .map_err(|e| Error::store("sync", self.folder.file_path(&self.target), e))?;
        }
        self.folder.sync()
    }
}

/// Room on the disk set aside for a later replacement of `target`: a temp file of a given
/// size, allocated now. [`Reserve::fill`] writes into it in place, so on a disk that has
/// filled up meanwhile the write needs no new room as long as it fits. Removed if dropped
/// before it is staged.
#[derive(Debug)]
pub struct Reserve {
    staged: Staged,
    file: File,
    size: u64,
}

impl Reserve {
    /// Allocates `size` bytes for a later replacement of `target` in `folder`.
    pub fn new(folder: &Folder, target: &str, size: u64) -> Result<Reserve> {
        let temp = temp_name(target);
        let file = folder.create_new(&temp)?;
        let mut reserve = Reserve {
            staged: Staged::new(folder, temp, target),
            file,
            size: 0,
        };
        reserve.grow(size)?;
        Ok(reserve)
    }

    /// Bytes set aside.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Sets aside at least `size` bytes (never fewer than now).
    pub fn grow(&mut self, size: u64) -> Result<()> {
        if size <= self.size {
            return Ok(());
        }
        let length = i64::try_from(size).unwrap_or(i64::MAX);
        // posix_fallocate writes zeros itself where the filesystem cannot allocate.
        nix::fcntl::posix_fallocate(self.file.as_fd(), 0, length)
            .map_err(|e| Error::store("set room aside in", self.path(), e.into()))?;
        self.size = size;
        Ok(())
    }

    /// Writes `bytes` in place of what the reserve holds and syncs them. Within the room set
    /// aside no new room is needed; beyond it, the rest may fail on a full disk, and the
    /// reserve stays for another try.
    pub fn fill(&mut self, bytes: &[u8]) -> Result<()> {
        let path = self.path();
        self.file
            .write_all_at(bytes, 0)
            .and_then(|()| self.file.set_len(bytes.len() as u64))
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::store("write", path, e))?;
        self.size = self.size.min(bytes.len() as u64);
        Ok(())
    }

    /// The filled reserve, to be renamed over its target.
    pub fn staged(self) -> Staged {
        self.staged
    }

    fn path(&self) -> std::path::PathBuf {
        self.staged.folder.file_path(&self.staged.temp)
    }
}

fn temp_name(target: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(".{target}{TEMP_MARK}{}.{n}", std::process::id())
}

/// The pid of the writer of a temp file named `name` (`.<target>.tmp.<pid>.<n>`), if `name`
/// is one of ours.
pub fn temp_writer(name: &str) -> Option<i32> {
    let (_, rest) = name.strip_prefix('.')?.rsplit_once(TEMP_MARK)?;
    let (pid, n) = rest.split_once('.')?;
    n.parse::<u32>().ok()?;
    pid.parse().ok()
}

/// Removes temp files of `target` left by a writer that died between write and rename, and
/// the reserve of a supervisor that died. Only the lock holder may call this: it is the
/// only writer of `target`.
pub fn remove_stale_temps(folder: &Folder, target: &str) {
    let prefix = format!(".{target}{TEMP_MARK}");
    let Ok(names) = folder.names() else {
        return;
    };
    for name in names {
        if let Some(name) = name.to_str()
            && name.starts_with(&prefix)
        {
            let _ = folder.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::{StateDir, TaskId};

    fn folder() -> (tempfile::TempDir, Folder) {
        let home = tempfile::tempdir().expect("a temp dir");
        let state = StateDir::open(home.path().join("state")).expect("the state dir");
        let folder = state
            .task(&TaskId::parse("t").expect("id"))
            .create()
            .expect("the folder");
        (home, folder)
    }

    fn names(folder: &Folder) -> Vec<String> {
        let mut names: Vec<String> = folder
            .names()
            .expect("names")
            .into_iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_staged_file_is_invisible_until_committed_and_gone_if_dropped() {
        let (_home, folder) = folder();
        write(&folder, "r", b"one").expect("written");
        let staged = stage(&folder, "r", b"two").expect("staged");
        assert_eq!(folder.read("r").expect("read"), Some(b"one".to_vec()));
        staged.commit().expect("renamed").sync().expect("synced");
        assert_eq!(folder.read("r").expect("read"), Some(b"two".to_vec()));
        drop(stage(&folder, "r", b"three").expect("staged"));
        assert_eq!(names(&folder), ["r"]);
    }

    #[test]
    fn a_reserve_is_filled_in_place_and_renamed() {
        let (_home, folder) = folder();
        let mut reserve = Reserve::new(&folder, "r", 4096).expect("reserved");
        assert_eq!(reserve.size(), 4096);
        reserve.grow(100).expect("never shrinks");
        assert_eq!(reserve.size(), 4096);
        assert_eq!(names(&folder).len(), 1, "the reserve is a temp file");
        reserve.fill(b"the end").expect("filled");
        reserve
            .staged()
            .commit()
            .expect("renamed")
            .sync()
            .expect("synced");
        assert_eq!(folder.read("r").expect("read"), Some(b"the end".to_vec()));
        assert_eq!(names(&folder), ["r"]);
        drop(Reserve::new(&folder, "r", 10).expect("reserved"));
        assert_eq!(names(&folder), ["r"], "a dropped reserve is removed");
    }

    #[test]
    fn stale_temps_and_reserves_are_recognised_and_removed() {
        let (_home, folder) = folder();
        let reserve = Reserve::new(&folder, "r", 10).expect("reserved");
        let staged = stage(&folder, "r", b"x").expect("staged");
        for name in names(&folder) {
            assert_eq!(
                temp_writer(&name),
                Some(std::process::id() as i32),
                "{name}"
            );
        }
        std::mem::forget((reserve, staged)); // as a writer that died would leave them
        remove_stale_temps(&folder, "r");
        assert!(names(&folder).is_empty());
    }
}
