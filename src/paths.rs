//! Where the state lives: the only place paths are resolved.
//!
//! `$BACKGROUND_TASKS_HOME`, else the platform state dir (`~/.local/state/background-tasks`
//! on Linux). Under it, one folder per task: `tasks/<id>/`. Task ids are validated by
//! [`TaskId`] before they become a path component, so nothing is created outside the root;
//! and every folder and file under the root is opened through the root's own descriptor,
//! one component at a time, never through a symlink ([`Folder`]).

use std::fmt;
use std::fs::{self, DirBuilder};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::state::folder::Folder;

/// Environment variables we read, all in one place.
pub mod env {
    /// Overrides the state directory.
    pub const HOME: &str = "BACKGROUND_TASKS_HOME";
    /// Set by the supervisor in its task's environment, inherited by every process the task
    /// starts: `<task id>:<run>:<supervisor pid>:<its start time>`. Whoever finds the task
    /// `lost` finds and kills the processes that left its group by it.
    pub const RUN: &str = "BACKGROUND_TASKS_RUN";
    /// Set by the supervisor in its task's environment: the task's id. A `start` run from
    /// inside the task records it as the new task's `parent`.
    pub const TASK_ID: &str = "BACKGROUND_TASKS_TASK_ID";
    /// Debug builds only: a fault for the tests to inject (see `fault`).
    pub const FAULT: &str = "BACKGROUND_TASKS_FAULT";
}

/// How much of an invalid id an error shows.
const SHOWN_ID_BYTES: usize = 80;

/// A validated task id: `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(String);

impl TaskId {
    /// The rule as a regular expression.
    pub const PATTERN: &'static str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$";

    pub const RULE: &'static str =
        "1-64 characters: letters, digits, '.', '_' or '-', starting with a letter or digit";

    pub fn parse(text: &str) -> Result<TaskId, String> {
        let bytes = text.as_bytes();
        let valid = !bytes.is_empty()
            && bytes.len() <= 64
            && bytes[0].is_ascii_alphanumeric()
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if valid {
            Ok(TaskId(text.to_owned()))
        } else if text.len() <= SHOWN_ID_BYTES {
            Err(format!("invalid task id {text:?}: {}", TaskId::RULE))
        } else {
            // A 10 MB id must not come back as a 10 MB error: show its start and its size.
            let mut end = SHOWN_ID_BYTES;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            Err(format!(
                "invalid task id {:?}... ({} bytes): {}",
                &text[..end],
                text.len(),
                TaskId::RULE
            ))
        }
    }

    /// A fresh id, `bg_` and 8 hex digits.
    pub fn generate() -> TaskId {
        use std::hash::{BuildHasher, Hasher};
        // RandomState is seeded from the OS's randomness; hashing the time and pid spreads
        // ids made in the same instant by different processes.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_i64(crate::time::now_ms());
        hasher.write_u32(std::process::id());
        TaskId(format!("bg_{:08x}", hasher.finish() as u32))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for TaskId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        TaskId::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for TaskId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TaskId".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A task id: 1-64 characters, letters, digits, '.', '_' or '-', starting with a letter or digit.",
            "type": "string",
            "pattern": TaskId::PATTERN
        })
    }
}

impl serde::Serialize for TaskId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// The state directory, checked to be ours and private, and open: everything under it is
/// opened through its descriptor, one component at a time, following no symlink
/// ([`Folder`]).
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
    folder: Folder,
}

impl StateDir {
    /// Where the state directory is, from the environment or the platform.
    pub fn locate() -> Result<PathBuf> {
        if let Some(home) = std::env::var_os(env::HOME).filter(|v| !v.is_empty()) {
            let home = PathBuf::from(home);
            return Ok(if home.is_absolute() {
                home
            } else {
                std::env::current_dir()
                    .map_err(|e| Error::store("read the current directory", ".", e))?
                    .join(home)
            });
        }
        directories::ProjectDirs::from("", "", "background-tasks")
            .and_then(|dirs| dirs.state_dir().map(Path::to_path_buf))
            .ok_or_else(|| {
                Error::input(
                    "no state directory: HOME is not set",
                    format!("Set {} to a private directory.", env::HOME),
                )
            })
    }

    /// Opens the state directory at `root`, creating it (0700) when it is missing, and refuses
    /// one that is a symlink, not a directory, owned by someone else or writable by others.
    pub fn open(root: PathBuf) -> Result<StateDir> {
        let fd = match open_root(&root)? {
            Some(fd) => fd,
            None => {
                create_private_dir_all(&root)?;
                open_root(&root)?.ok_or_else(|| {
                    Error::store(
                        "open the state directory",
                        &root,
                        io::Error::from(io::ErrorKind::NotFound),
                    )
                })?
            }
        };
        check(&root, &fd)?;
        Ok(StateDir {
            folder: Folder::root(fd, root.clone()),
            root,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The state directory, open.
    pub fn folder(&self) -> &Folder {
        &self.folder
    }

    /// `<root>/tasks`, the parent of every task folder.
    pub fn tasks_dir(&self) -> PathBuf {
        self.root.join(TASKS)
    }

    /// The name under `tasks/` to which `rm` and `prune` move a task's folder, under its
    /// lock, before deleting it: hidden (never a valid task id), unique to this call.
    pub fn removal_name(&self, id: &TaskId) -> String {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{REMOVAL_PREFIX}{id}.{}.{n}", std::process::id())
    }

    /// `tasks/`, open; `None` before the first task.
    pub fn tasks(&self) -> Result<Option<Folder>> {
        self.folder.open_below(&[TASKS])
    }

    /// `<root>/batches`: the slot and turn locks of batches started with `--concurrency`.
    pub fn batches_dir(&self) -> PathBuf {
        self.root.join(BATCHES)
    }

    /// The lock files of one batch (`b_` and hex digits, generated by `start`). Nothing is
    /// created.
    pub fn batch(&self, batch: &str) -> BatchPaths {
        BatchPaths {
            dir: self.batches_dir().join(batch),
            state: self.folder.clone(),
            id: batch.to_owned(),
        }
    }

    /// Creates `tasks/` (0700) if it is missing, and opens it.
    pub fn create_tasks_dir(&self) -> Result<Folder> {
        self.folder.create_below(&[TASKS])
    }

    /// `batches/`, open; `None` when no batch was ever made.
    pub fn batches(&self) -> Result<Option<Folder>> {
        self.folder.open_below(&[BATCHES])
    }

    /// Every valid task id with a folder under `tasks/`, in no particular order.
    pub fn task_ids(&self) -> Result<Vec<TaskId>> {
        let Some(tasks) = self.folder.open_below(&[TASKS])? else {
            return Ok(Vec::new());
        };
        Ok(tasks
            .names()?
            .into_iter()
            .filter_map(|name| TaskId::parse(name.to_str()?).ok())
            .collect())
    }

    /// The files of one task. Nothing is created.
    pub fn task(&self, id: &TaskId) -> TaskPaths {
        TaskPaths {
            dir: self.tasks_dir().join(id.as_str()),
            state: self.folder.clone(),
            id: id.as_str().to_owned(),
        }
    }
}

/// Opens the state directory itself without following a symlink; `None` when it is missing.
fn open_root(root: &Path) -> Result<Option<OwnedFd>> {
    use nix::errno::Errno;
    use nix::fcntl::{OFlag, open};
    use nix::sys::stat::Mode;
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let refuse = |reason: &str| {
        Err(Error::UnsafeStateDir {
            path: root.to_path_buf(),
            reason: reason.to_owned(),
        })
    };
    match open(root, flags, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::ENOENT) => Ok(None),
        // With O_DIRECTORY | O_NOFOLLOW, a symlink reads as "not a directory" (or a loop).
        Err(Errno::ENOTDIR | Errno::ELOOP) => match fs::symlink_metadata(root) {
            Ok(meta) if meta.file_type().is_symlink() => refuse("it is a symlink"),
            _ => refuse("it is not a directory"),
        },
        Err(e) => Err(Error::store("open the state directory", root, e.into())),
    }
}

/// Refuses a state directory owned by someone else or writable by others.
fn check(root: &Path, fd: &OwnedFd) -> Result<()> {
    let refuse = |reason: String| {
        Err(Error::UnsafeStateDir {
            path: root.to_path_buf(),
            reason,
        })
    };
    let meta = nix::sys::stat::fstat(fd)
        .map_err(|e| Error::store("inspect the state directory", root, e.into()))?;
    let me = nix::unistd::geteuid().as_raw();
    if meta.st_uid != me {
        return refuse(format!("it is owned by uid {}, not {me}", meta.st_uid));
    }
    let mode = meta.st_mode as u32;
    if mode & 0o022 != 0 {
        return refuse(format!(
            "its mode {:o} lets others write to it",
            mode & 0o777
        ));
    }
    Ok(())
}

/// The parent of every task folder.
const TASKS: &str = "tasks";
/// The parent of every batch folder.
const BATCHES: &str = "batches";

/// The name of this process's scratch folder in the state directory (doctor's, to try
/// locks and notifications for real); hidden, and named for the process.
pub fn scratch_name() -> String {
    format!(".doctor.{}", std::process::id())
}

/// The start of the name of a task folder being removed ([`StateDir::removal_name`]).
pub const REMOVAL_PREFIX: &str = ".removed.";

/// The names of the files in a task folder.
pub mod names {
    /// The record, replaced atomically by its one writer.
    pub const RECORD: &str = "task.json";
    /// Combined stdout and stderr of the current run.
    pub const LOG: &str = "output.log";
    /// The append-only lifecycle journal, across runs.
    pub const JOURNAL: &str = "events.jsonl";
    /// Held exclusively by the supervisor for its whole life; never replaced.
    pub const LOCK: &str = "supervisor.lock";
    /// Where older versions wrote a stop request (`stop` now sends it in the signal); a
    /// supervisor removes one left there when it starts.
    pub const STOP_REQUEST: &str = "stop.json";
    /// A new ready condition for the supervisor's run (`if_running: "reuse"` with another
    /// `ready`), which the supervisor watches for.
    pub const READY_REQUEST: &str = "ready.json";
    /// The ids of the tasks started from inside this one, a line each, appended by their
    /// `start` (a hint: a child is one whose own record names this task its `parent`).
    pub const CHILDREN: &str = "children";
    /// When `start` spawned the task's recent runs (`rate_limit`), written under the lock.
    pub const SPAWNS: &str = "spawns.json";

    /// The log of an earlier run.
    pub fn old_log(run: u32) -> String {
        format!("output.{run}.log")
    }

    /// The run whose kept log `name` is ([`old_log`]'s inverse).
    pub fn old_log_run(name: &str) -> Option<u32> {
        name.strip_prefix("output.")?
            .strip_suffix(".log")?
            .parse()
            .ok()
    }
}

/// The files of one task folder: their paths (for messages and answers), and the folder
/// opened through the state directory's descriptor ([`TaskPaths::open`]).
#[derive(Debug, Clone)]
pub struct TaskPaths {
    pub dir: PathBuf,
    /// The state directory, open.
    state: Folder,
    /// The folder's name under `tasks/`: the task id.
    id: String,
}

impl TaskPaths {
    /// The record, replaced atomically by its one writer.
    pub fn record(&self) -> PathBuf {
        self.dir.join(names::RECORD)
    }
    /// Combined stdout and stderr of the current run.
    pub fn log(&self) -> PathBuf {
        self.dir.join(names::LOG)
    }
    /// The log of an earlier run.
    pub fn old_log(&self, run: u32) -> PathBuf {
        self.dir.join(names::old_log(run))
    }
    /// The append-only lifecycle journal, across runs.
    pub fn journal(&self) -> PathBuf {
        self.dir.join(names::JOURNAL)
    }
    /// Held exclusively by the supervisor for its whole life; never replaced.
    pub fn lock(&self) -> PathBuf {
        self.dir.join(names::LOCK)
    }
    /// Where older versions wrote a stop request (`stop` now sends it in the signal); a
    /// supervisor removes one left there when it starts.
    pub fn stop_request(&self) -> PathBuf {
        self.dir.join(names::STOP_REQUEST)
    }

    /// The task folder, open (following no symlink); `None` when it does not exist.
    pub fn open(&self) -> Result<Option<Folder>> {
        self.state.open_below(&[TASKS, &self.id])
    }

    /// Opens the file `name` of the task's folder for reading, following no symlink (see
    /// [`Folder::read_file`]); `None` when it or the folder does not exist.
    pub fn read_file(&self, name: &str) -> Result<Option<std::fs::File>> {
        match self.open()? {
            Some(folder) => folder.read_file(name),
            None => Ok(None),
        }
    }

    /// Creates the task folder (and `tasks/`), mode 0700 whatever the umask, and opens it.
    pub fn create(&self) -> Result<Folder> {
        self.state.create_below(&[TASKS, &self.id])
    }

    /// Removes the task folder and everything in it, following no link (see
    /// [`Folder::remove_below`]). Only the holder of the task's lock may.
    pub fn remove(&self) -> Result<()> {
        match self.state.open_below(&[TASKS])? {
            Some(tasks) => tasks.remove_below(&self.id),
            None => Ok(()),
        }
    }
}

/// The files of one batch started with `--concurrency` (see `supervisor::queue`).
#[derive(Debug, Clone)]
pub struct BatchPaths {
    pub dir: PathBuf,
    /// The state directory, open.
    state: Folder,
    /// The folder's name under `batches/`.
    id: String,
}

impl BatchPaths {
    /// Slot `k`: held by a running task's supervisor for its whole life.
    pub fn slot(k: usize) -> String {
        format!("slot.{k}.lock")
    }
    /// Turn `index`: held by the task at that place until it has a slot.
    pub fn turn(index: usize) -> String {
        format!("turn.{index}.lock")
    }

    /// The batch's folder, open (following no symlink); `None` when it does not exist.
    pub fn open(&self) -> Result<Option<Folder>> {
        self.state.open_below(&[BATCHES, &self.id])
    }

    /// Creates the batch's folder (and `batches/`), mode 0700, and opens it.
    pub fn create(&self) -> Result<Folder> {
        self.state.create_below(&[BATCHES, &self.id])
    }
}

/// Creates the state directory and its missing parents with mode 0700, by path: the one
/// folder that cannot be made through an open parent of ours.
#[expect(
    clippy::disallowed_methods,
    reason = "the state directory itself, before it can be opened; it is then opened without following a symlink and checked"
)]
pub fn create_private_dir_all(path: &Path) -> Result<()> {
    DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(path)
        .map_err(|e| Error::store("create the state directory", path, e))?;
    // The umask may have taken bits away at creation; set the mode we promise.
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::store("set the mode of", path, e))
}

#[cfg(test)]
mod tests {
    use super::{TaskId, names};

    #[test]
    fn a_kept_logs_name_gives_back_its_run() {
        assert_eq!(names::old_log_run(&names::old_log(7)), Some(7));
        for other in ["output.log", "output.x.log", "output.7.txt", "events.jsonl"] {
            assert_eq!(names::old_log_run(other), None, "{other}");
        }
    }

    #[test]
    fn task_ids_follow_the_rule() {
        for good in ["web", "a", "A.b_c-d", "0", &"x".repeat(64), "bg_0123abcd"] {
            assert!(TaskId::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "-a",
            "_a",
            ".a",
            "a b",
            "a\0b",
            "é",
            &"x".repeat(65),
        ] {
            assert!(TaskId::parse(bad).is_err(), "{bad:?}");
        }
        let long = format!("{}é", "x".repeat(79));
        let error = TaskId::parse(&long).expect_err("too long");
        assert!(error.contains(r#"xxx"... (81 bytes)"#), "{error}");
        assert!(!error.contains('é'), "{error}");
        let generated = TaskId::generate();
        assert!(TaskId::parse(generated.as_str()).is_ok());
        assert!(generated.as_str().starts_with("bg_") && generated.as_str().len() == 11);
    }
}
