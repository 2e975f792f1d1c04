//! The I/O layer of the state directory: every folder under it is opened without following
//! a symlink, and every file in a folder through the folder's descriptor (RELIABILITY 33).
//!
//! A [`Folder`] is a directory opened with `O_DIRECTORY | O_NOFOLLOW`, one component at a
//! time from the state directory's own descriptor (`tasks`, then the task's id; `batches`,
//! then the batch's). Files in it are opened with `openat(O_NOFOLLOW)` relative to it, their
//! modes set on the open descriptor (`fchmod`), and renames and removals are made relative
//! to it (`renameat`, `unlinkat`). So a task folder, a `tasks/` folder or a file in a folder
//! that is a symlink is refused ([`Error::Symlink`], naming it), and nothing outside the
//! state directory is ever written, created, truncated, read into an answer, chmodded or
//! removed through one. A file that is not a regular file (a FIFO planted as a record) is
//! refused too, and reads open with `O_NONBLOCK`, so that one cannot block a reader.
//!
//! Costs: opening a task folder is two `openat`s from the open state directory; a file in
//! it is one `openat` and one `fstat`.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::{Mode, fchmod, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::error::{Error, Result};

/// Files under the state directory are private to their owner.
pub const FILE_MODE: u32 = 0o600;
/// So are folders.
pub const FOLDER_MODE: u32 = 0o700;

/// A folder under the state directory, open. Cloning shares the descriptor.
#[derive(Debug, Clone)]
pub struct Folder {
    fd: Arc<OwnedFd>,
    path: PathBuf,
}

/// How a file is opened for writing; each creates it (mode 0600) when it is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// Appends only (`O_APPEND`): a log.
    Append,
    /// Reads, and appends: the journal, which finds its last entry first.
    ReadAppend,
    /// Reads and writes, never truncated: a lock file.
    Lock,
}

impl Folder {
    /// The open state directory itself, from a descriptor `paths` opened and checked.
    pub(crate) fn root(fd: OwnedFd, path: PathBuf) -> Folder {
        Folder {
            fd: Arc::new(fd),
            path,
        }
    }

    /// The folder's path, for messages and answers.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` in the folder, for messages and answers.
    pub fn file_path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens the folder `names` (one component each) below this one, following no
    /// symlink; `None` when one of them does not exist.
    pub fn open_below(&self, names: &[&str]) -> Result<Option<Folder>> {
        let mut folder = self.clone();
        for name in names {
            match folder.open_child(name)? {
                Some(child) => folder = child,
                None => return Ok(None),
            }
        }
        Ok(Some(folder))
    }

    /// Opens the folders `names` below this one, creating each that is missing with mode
    /// 0700, set at creation whatever the umask.
    pub fn create_below(&self, names: &[&str]) -> Result<Folder> {
        let mut folder = self.clone();
        for name in names {
            folder = folder.create_child(name)?;
        }
        Ok(folder)
    }

    fn open_child(&self, name: &str) -> Result<Option<Folder>> {
        let path = self.file_path(name);
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match openat(self.as_fd(), name, flags, Mode::empty()) {
            Ok(fd) => Ok(Some(Folder {
                fd: Arc::new(fd),
                path,
            })),
            Err(Errno::ENOENT) => Ok(None),
            // With O_DIRECTORY, a symlink is "not a directory": say what it is.
            Err(Errno::ENOTDIR) if self.is_link(name) => Err(Error::Symlink { path }),
            Err(e) => Err(refused("open the folder", path, e)),
        }
    }

    fn is_link(&self, name: &str) -> bool {
        fstatat(self.as_fd(), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
            .is_ok_and(|stat| stat.st_mode & libc::S_IFMT == libc::S_IFLNK)
    }

    fn create_child(&self, name: &str) -> Result<Folder> {
        let created = match mkdirat(self.as_fd(), name, Mode::from_bits_truncate(FOLDER_MODE)) {
            Ok(()) => true,
            Err(Errno::EEXIST) => false,
            Err(e) => return Err(refused("create the folder", self.file_path(name), e)),
        };
        let folder = self.open_child(name)?.ok_or_else(|| {
            Error::store(
                "open the folder",
                self.file_path(name),
                io::Error::from(io::ErrorKind::NotFound),
            )
        })?;
        if created {
            // The umask may have taken bits away at creation; set the mode we promise.
            fchmod(folder.as_fd(), Mode::from_bits_truncate(FOLDER_MODE))
                .map_err(|e| refused("set the mode of", folder.path.clone(), e))?;
        }
        Ok(folder)
    }

    /// Opens `name` for reading; `None` when it does not exist.
    pub fn read_file(&self, name: &str) -> Result<Option<File>> {
        Ok(self.open_read(name)?.map(|(file, _)| file))
    }

    /// Opens `name` for reading and says how big it is; `None` when it does not exist.
    fn open_read(&self, name: &str) -> Result<Option<(File, u64)>> {
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
        let fd = match openat(self.as_fd(), name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(refused("open", self.file_path(name), e)),
        };
        let file = File::from(fd);
        let size = self.regular(&file, name)?.len();
        Ok(Some((file, size)))
    }

    /// Reads the whole of `name`; `None` when it does not exist.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        use std::io::Read;
        let Some((file, size)) = self.open_read(name)? else {
            return Ok(None);
        };
        // Sized from the one fstat already made (File::read_to_end would make another), and
        // read to that size: no further read to find the end. Our files are replaced whole,
        // never grown in place, so the size is the content; a file that grew meanwhile reads
        // as it was at the fstat.
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0).saturating_add(1));
        (&file)
            .take(size)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::store("read", self.file_path(name), e))?;
        Ok(Some(bytes))
    }

    /// Opens `name` for writing as `how` says, creating it (0600) when it is missing. Its
    /// mode is made 0600 on the open descriptor if it is not.
    pub fn write_file(&self, name: &str, how: Write) -> Result<File> {
        let access = match how {
            Write::Append => OFlag::O_WRONLY | OFlag::O_APPEND,
            Write::ReadAppend => OFlag::O_RDWR | OFlag::O_APPEND,
            Write::Lock => OFlag::O_RDWR,
        };
        let flags = access | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(
            self.as_fd(),
            name,
            flags,
            Mode::from_bits_truncate(FILE_MODE),
        )
        .map_err(|e| refused("open", self.file_path(name), e))?;
        let file = File::from(fd);
        let mode = self.regular(&file, name)?.permissions().mode();
        if mode & 0o777 != FILE_MODE {
            fchmod(file.as_fd(), Mode::from_bits_truncate(FILE_MODE))
                .map_err(|e| refused("set the mode of", self.file_path(name), e))?;
        }
        Ok(file)
    }

    /// Creates `name`, which must not exist (`O_EXCL`), mode 0600 whatever the umask.
    pub fn create_new(&self, name: &str) -> Result<File> {
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(
            self.as_fd(),
            name,
            flags,
            Mode::from_bits_truncate(FILE_MODE),
        )
        .map_err(|e| refused("create", self.file_path(name), e))?;
        let file = File::from(fd);
        fchmod(file.as_fd(), Mode::from_bits_truncate(FILE_MODE))
            .map_err(|e| refused("set the mode of", self.file_path(name), e))?;
        Ok(file)
    }

    /// The size of `name` (not of what a link points at); `None` when it does not exist or
    /// is not a regular file.
    pub fn size(&self, name: &str) -> Option<u64> {
        let stat = fstatat(self.as_fd(), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
        (stat.st_mode & libc::S_IFMT == libc::S_IFREG).then_some(stat.st_size as u64)
    }

    /// When `name` (not what a link points at) was last modified, in Unix milliseconds.
    pub fn modified_ms(&self, name: &str) -> Option<i64> {
        let stat = fstatat(self.as_fd(), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
        Some(
            stat.st_mtime
                .saturating_mul(1000)
                .saturating_add(stat.st_mtime_nsec / 1_000_000),
        )
    }

    /// Refuses `name` if it is a symlink (one `fstatat`); a missing file is fine. For a file
    /// that a later process opens (the supervisor, its journal), so that the caller can say
    /// so now.
    pub fn refuse_link(&self, name: &str) -> Result<()> {
        if self.is_link(name) {
            return Err(Error::Symlink {
                path: self.file_path(name),
            });
        }
        Ok(())
    }

    /// Renames `from` to `to` in this folder, replacing `to`. Returns `false` when `from`
    /// does not exist. A link is renamed itself, never what it points at.
    pub fn rename(&self, from: &str, to: &str) -> Result<bool> {
        match renameat(self.as_fd(), from, self.as_fd(), to) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(Error::store("rename", self.file_path(from), e.into())),
        }
    }

    /// Removes the file `name`; one that does not exist is fine. A link is removed itself.
    pub fn remove(&self, name: &str) -> Result<()> {
        match unlinkat(self.as_fd(), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(Error::store("remove", self.file_path(name), e.into())),
        }
    }

    /// The names in the folder (not `.` and `..`), as the folder's own descriptor lists them.
    pub fn names(&self) -> Result<Vec<std::ffi::OsString>> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let mut dir = nix::dir::Dir::openat(self.as_fd(), ".", flags, Mode::empty())
            .map_err(|e| Error::store("read", self.path.clone(), e.into()))?;
        let mut names = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(|e| Error::store("read", self.path.clone(), e.into()))?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name != "." && name != ".." {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    /// Removes the folder `name` below this one and everything in it, following no link:
    /// each entry is removed relative to the folder's descriptor (a link itself, never what
    /// it points at), then the folder. A folder that does not exist is fine; one that is a
    /// symlink is refused.
    pub fn remove_below(&self, name: &str) -> Result<()> {
        let Some(folder) = self.open_child(name)? else {
            return Ok(());
        };
        for entry in folder.names()? {
            let Some(entry) = entry.to_str() else {
                // Not a name of ours; removed by its bytes all the same.
                let path = folder.path.join(&entry);
                match unlinkat(
                    folder.as_fd(),
                    entry.as_os_str(),
                    UnlinkatFlags::NoRemoveDir,
                ) {
                    Ok(()) | Err(Errno::ENOENT) => continue,
                    Err(e) => return Err(Error::store("remove", path, e.into())),
                }
            };
            match unlinkat(folder.as_fd(), entry, UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(Errno::EISDIR) => folder.remove_below(entry)?,
                Err(e) => return Err(Error::store("remove", folder.file_path(entry), e.into())),
            }
        }
        drop(folder);
        match unlinkat(self.as_fd(), name, UnlinkatFlags::RemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(Error::store("remove", self.file_path(name), e.into())),
        }
    }

    /// Makes the folder's entries durable (after a rename in it).
    pub fn sync(&self) -> Result<()> {
        nix::unistd::fsync(self.as_fd())
            .map_err(|e| Error::store("sync the directory", self.path.clone(), e.into()))
    }

    /// Refuses a file that is not a regular file; returns what fstat said of it.
    fn regular(&self, file: &File, name: &str) -> Result<std::fs::Metadata> {
        let meta = file
            .metadata()
            .map_err(|e| Error::store("inspect", self.file_path(name), e))?;
        if !meta.is_file() {
            return Err(Error::store(
                "use",
                self.file_path(name),
                io::Error::other("it is not a regular file"),
            ));
        }
        Ok(meta)
    }
}

/// An error of an `*at` call on `path`: a symlink where none may be is named as such.
fn refused(action: &'static str, path: PathBuf, errno: Errno) -> Error {
    if errno == Errno::ELOOP {
        Error::Symlink { path }
    } else {
        Error::store(action, path, errno.into())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::paths::{StateDir, TaskId};

    /// A state directory in a temp dir, and a folder outside it that links point at.
    #[expect(
        clippy::disallowed_methods,
        reason = "the test plants a folder and a file outside the state directory"
    )]
    fn setup() -> (tempfile::TempDir, StateDir, PathBuf) {
        let home = tempfile::tempdir().expect("a temp dir");
        let state = StateDir::open(home.path().join("state")).expect("the state dir");
        let outside = home.path().join("outside");
        std::fs::create_dir(&outside).expect("outside");
        std::fs::write(outside.join("file"), b"OUTSIDE").expect("an outside file");
        (home, state, outside)
    }

    #[test]
    fn a_link_in_a_folder_is_refused_by_every_open_and_left_as_it_is() {
        let (_home, state, outside) = setup();
        let paths = state.task(&TaskId::parse("t").expect("id"));
        let folder = paths.create().expect("the task folder");
        symlink(outside.join("file"), paths.dir.join("link")).expect("plant");
        let is_link =
            |e: Error| matches!(e, Error::Symlink { ref path } if path.ends_with("t/link"));
        assert!(is_link(folder.read_file("link").expect_err("read")));
        assert!(is_link(folder.read("link").expect_err("read")));
        for how in [Write::Append, Write::ReadAppend, Write::Lock] {
            assert!(is_link(folder.write_file("link", how).expect_err("write")));
        }
        assert!(is_link(folder.refuse_link("link").expect_err("refused")));
        assert!(folder.create_new("link").is_err());
        assert_eq!(folder.size("link"), None);
        // Renamed and removed itself, never what it points at.
        assert!(folder.rename("link", "moved").expect("renamed"));
        folder.remove("moved").expect("removed");
        assert_eq!(
            std::fs::read(outside.join("file")).expect("intact"),
            b"OUTSIDE"
        );
        let mode = std::fs::metadata(outside.join("file"))
            .expect("meta")
            .permissions()
            .mode();
        assert_ne!(mode & 0o777, FILE_MODE, "never chmodded");
    }

    #[test]
    fn a_task_folder_that_is_a_link_is_refused_and_never_emptied() {
        let (_home, state, outside) = setup();
        state.create_tasks_dir().expect("tasks/");
        let paths = state.task(&TaskId::parse("evil").expect("id"));
        symlink(&outside, &paths.dir).expect("plant the folder link");
        let is_link =
            |e: Error| matches!(e, Error::Symlink { ref path } if path.ends_with("tasks/evil"));
        assert!(is_link(paths.open().expect_err("open")));
        assert!(is_link(paths.create().expect_err("create")));
        assert!(is_link(paths.remove().expect_err("remove")));
        assert!(
            outside.join("file").exists(),
            "nothing removed through the link"
        );
    }

    #[test]
    fn files_and_folders_are_private_whatever_the_umask() {
        let (_home, state, _outside) = setup();
        // SAFETY: umask only changes this process's file mode creation mask.
        let old = unsafe { libc::umask(0o000) };
        let paths = state.task(&TaskId::parse("t").expect("id"));
        let folder = paths.create().expect("the task folder");
        let file = folder.write_file("log", Write::Append).expect("a file");
        let temp = folder.create_new("new").expect("a new file");
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        let mode = |m: std::fs::Metadata| m.permissions().mode() & 0o777;
        assert_eq!(
            mode(std::fs::metadata(&paths.dir).expect("dir")),
            FOLDER_MODE
        );
        assert_eq!(mode(file.metadata().expect("file")), FILE_MODE);
        assert_eq!(mode(temp.metadata().expect("file")), FILE_MODE);
    }

    #[test]
    fn a_folder_is_removed_entry_by_entry() {
        let (_home, state, outside) = setup();
        let paths = state.task(&TaskId::parse("t").expect("id"));
        let folder = paths.create().expect("the task folder");
        folder.write_file("a", Write::Append).expect("a");
        symlink(&outside, paths.dir.join("dir-link")).expect("plant");
        symlink(outside.join("file"), paths.dir.join("file-link")).expect("plant");
        paths.remove().expect("removed");
        assert!(!paths.dir.exists());
        assert_eq!(
            std::fs::read(outside.join("file")).expect("intact"),
            b"OUTSIDE"
        );
        paths.remove().expect("a missing folder is fine");
    }
}
