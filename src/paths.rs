//! Where the state lives: the only place paths are resolved.
//!
//! `$BACKGROUND_TASKS_HOME`, else the platform state dir (`~/.local/state/background-tasks`
//! on Linux). Under it, one folder per task: `tasks/<id>/`. Task ids are validated by
//! [`TaskId`] before they become a path component, so nothing is created outside the root.

use std::fmt;
use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Environment variables we read, all in one place.
pub mod env {
    /// Overrides the state directory.
    pub const HOME: &str = "BACKGROUND_TASKS_HOME";
    /// Set by the supervisor in its task's environment, inherited by every process the task
    /// starts: `<task id>:<run>:<supervisor pid>:<its start time>`. Whoever finds the task
    /// `lost` finds and kills the processes that left its group by it.
    pub const RUN: &str = "BACKGROUND_TASKS_RUN";
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

/// The state directory, checked to be ours and private.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
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
        let dir = StateDir { root };
        match fs::symlink_metadata(&dir.root) {
            Ok(_) => dir.check(&dir.root)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                create_private_dir_all(&dir.root)?;
                dir.check(&dir.root)?;
            }
            Err(e) => return Err(Error::store("inspect the state directory", &dir.root, e)),
        }
        Ok(dir)
    }

    fn check(&self, path: &Path) -> Result<()> {
        let refuse = |reason: String| {
            Err(Error::UnsafeStateDir {
                path: path.to_path_buf(),
                reason,
            })
        };
        let meta = fs::symlink_metadata(path)
            .map_err(|e| Error::store("inspect the state directory", path, e))?;
        if meta.file_type().is_symlink() {
            return refuse("it is a symlink".into());
        }
        if !meta.is_dir() {
            return refuse("it is not a directory".into());
        }
        let me = nix::unistd::geteuid().as_raw();
        if meta.uid() != me {
            return refuse(format!("it is owned by uid {}, not {me}", meta.uid()));
        }
        if meta.mode() & 0o022 != 0 {
            return refuse(format!(
                "its mode {:o} lets others write to it",
                meta.mode() & 0o777
            ));
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/tasks`, the parent of every task folder.
    pub fn tasks_dir(&self) -> PathBuf {
        self.root.join("tasks")
    }

    /// `<root>/batches`: the slot and turn locks of batches started with `--concurrency`.
    pub fn batches_dir(&self) -> PathBuf {
        self.root.join("batches")
    }

    /// One batch's folder. Batch ids are generated by `start` (`b_` and hex digits).
    pub fn batch_dir(&self, batch: &str) -> PathBuf {
        self.batches_dir().join(batch)
    }

    /// The lock files of one batch. Nothing is created.
    pub fn batch(&self, batch: &str) -> BatchPaths {
        BatchPaths {
            dir: self.batch_dir(batch),
        }
    }

    /// Every valid task id with a folder under `tasks/`, in no particular order.
    pub fn task_ids(&self) -> Result<Vec<TaskId>> {
        let tasks_dir = self.tasks_dir();
        let entries = match fs::read_dir(&tasks_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::store("read", tasks_dir, e)),
        };
        Ok(entries
            .filter_map(|entry| TaskId::parse(entry.ok()?.file_name().to_str()?).ok())
            .collect())
    }

    /// The files of one task. Nothing is created.
    pub fn task(&self, id: &TaskId) -> TaskPaths {
        TaskPaths {
            dir: self.tasks_dir().join(id.as_str()),
        }
    }
}

/// A scratch folder of this process under the state directory at `root` (doctor's, to
/// try locks and notifications for real); hidden, and named for the process.
pub fn scratch_dir(root: &Path) -> PathBuf {
    root.join(format!(".doctor.{}", std::process::id()))
}

/// The name of a task's ready request, which its supervisor watches for.
pub const READY_REQUEST: &str = "ready.json";

/// The files of one task folder.
#[derive(Debug, Clone)]
pub struct TaskPaths {
    pub dir: PathBuf,
}

impl TaskPaths {
    /// The record, replaced atomically by its one writer.
    pub fn record(&self) -> PathBuf {
        self.dir.join("task.json")
    }
    /// Combined stdout and stderr of the current run.
    pub fn log(&self) -> PathBuf {
        self.dir.join("output.log")
    }
    /// The log of an earlier run.
    pub fn old_log(&self, run: u32) -> PathBuf {
        self.dir.join(format!("output.{run}.log"))
    }
    /// The append-only lifecycle journal, across runs.
    pub fn journal(&self) -> PathBuf {
        self.dir.join("events.jsonl")
    }
    /// Held exclusively by the supervisor for its whole life; never replaced.
    pub fn lock(&self) -> PathBuf {
        self.dir.join("supervisor.lock")
    }
    /// A stop request for the supervisor: signal and grace.
    pub fn stop_request(&self) -> PathBuf {
        self.dir.join("stop.json")
    }
    /// A new ready condition for the supervisor's run (`if_running: "reuse"` with another
    /// `ready`).
    pub fn ready_request(&self) -> PathBuf {
        self.dir.join(READY_REQUEST)
    }

    /// Creates the task folder (and `tasks/`), mode 0700 whatever the umask.
    pub fn create(&self) -> Result<()> {
        if let Some(parent) = self.dir.parent() {
            create_private_dir(parent)?;
        }
        create_private_dir(&self.dir)
    }
}

/// The files of one batch started with `--concurrency` (see `supervisor::queue`).
#[derive(Debug, Clone)]
pub struct BatchPaths {
    pub dir: PathBuf,
}

impl BatchPaths {
    /// Slot `k`: held by a running task's supervisor for its whole life.
    pub fn slot(&self, k: usize) -> PathBuf {
        self.dir.join(format!("slot.{k}.lock"))
    }
    /// Turn `index`: held by the task at that place until it has a slot.
    pub fn turn(&self, index: usize) -> PathBuf {
        self.dir.join(format!("turn.{index}.lock"))
    }
}

/// Creates one directory with mode 0700; an existing one is fine.
fn create_private_dir(path: &Path) -> Result<()> {
    match DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => set_private_mode(path, 0o700),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::store("create the directory", path, e)),
    }
}

pub fn create_private_dir_all(path: &Path) -> Result<()> {
    DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(path)
        .map_err(|e| Error::store("create the state directory", path, e))?;
    set_private_mode(path, 0o700)
}

/// The umask may have taken bits away at creation; set the mode we promise.
pub fn set_private_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| Error::store("set the mode of", path, e))
}

#[cfg(test)]
mod tests {
    use super::TaskId;

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
