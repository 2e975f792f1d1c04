//! Checking the tool's ground (`doctor`): real checks of what the tool depends on, each `ok`, `warn` or `fail` with a hint:
//! the state directory (ours, private, local), locks, file notifications, the binary the
//! supervisors run, the tasks (running, lost, stale, unreadable) and temp files left behind.
//!
//! Checks only look: they create and remove one scratch folder in the state directory, and
//! read records the way `status` does (so a task found `lost` is recorded so).

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::follow::DirWatch;
use crate::paths::StateDir;
use crate::payload::discovery::{Check, CheckStatus, DoctorAnswer, Summary, TaskCounts};
use crate::state::folder::{Folder, Write as Access};
use crate::state::{Status, observe};
use crate::time::now_ms;

/// A finished task older than this is reported stale (worth a `prune`).
const STALE_AFTER_MS: i64 = 7 * 24 * 3600 * 1000;
/// How long a real file notification may take to arrive.
const NOTIFY_PATIENCE: Duration = Duration::from_secs(2);

/// `doctor`: the state directory to check.
#[derive(Debug, Clone)]
pub struct DoctorArgs {
    /// Checked where it is, never created.
    pub state_dir: PathBuf,
}

/// Runs every check; a check that cannot run says so in its own result.
pub fn check(args: DoctorArgs) -> DoctorAnswer {
    let root = args.state_dir;
    let mut checks = Vec::new();
    let mut tasks = TaskCounts::default();
    match open_existing(&root) {
        Err(check) => checks.push(check),
        Ok(None) => checks.push(Check::warn(
            "state_dir",
            format!("{} does not exist yet", root.display()),
            "Nothing to do: the first start creates it (0700).",
        )),
        Ok(Some(state)) => {
            checks.push(state_dir_mode(&root));
            checks.push(filesystem(&root));
            checks.push(locks(&state));
            checks.push(notify(&state));
            let (task_check, counts, supervisors) = task_states(&state);
            tasks = counts;
            checks.push(binary(&supervisors));
            checks.push(task_check);
            checks.push(temp_files(&state));
        }
    }
    let mut summary = Summary::default();
    for check in &checks {
        match check.status {
            CheckStatus::Ok => summary.ok += 1,
            CheckStatus::Warn => summary.warn += 1,
            CheckStatus::Fail => summary.fail += 1,
        }
    }
    DoctorAnswer {
        healthy: summary.fail == 0,
        summary,
        state_dir: root,
        checks,
        tasks,
    }
}

/// The state directory through the same checks every command makes, without creating it.
fn open_existing(root: &Path) -> Result<Option<StateDir>, Check> {
    match fs::symlink_metadata(root) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Check::fail(
                "state_dir",
                format!("cannot inspect {}: {e}", root.display()),
                "Check the permissions of its parent directories.",
            ));
        }
        Ok(_) => {}
    }
    StateDir::open(root.to_path_buf())
        .map(Some)
        .map_err(|e| Check::fail("state_dir", e.full_message(), e.hint()))
}

/// Refused modes fail in `open_existing`; readable by others is allowed but worth a warning:
/// logs and records may say more than their owner wants to share.
fn state_dir_mode(root: &Path) -> Check {
    let mode = fs::metadata(root).map(|m| m.mode() & 0o777).unwrap_or(0);
    if mode & 0o077 == 0 {
        Check::ok(
            "state_dir",
            format!("{} is ours, mode {mode:o}", root.display()),
        )
    } else {
        Check::warn(
            "state_dir",
            format!(
                "{} is ours but mode {mode:o} lets its group or others read it",
                root.display()
            ),
            format!("chmod 700 {}", root.display()),
        )
    }
}

/// Locks and notifications are unreliable on network and FUSE filesystems.
fn filesystem(root: &Path) -> Check {
    const REMOTE: [(i64, &str); 7] = [
        (0x6969, "NFS"),
        (0x6573_5546, "FUSE"),
        (0x517B, "SMB"),
        (0xFF53_4D42, "CIFS"),
        (0xFE53_4D42, "SMB2"),
        (0x0102_1997, "9P"),
        (0x00C3_6400, "Ceph"),
    ];
    let kind = match nix::sys::statfs::statfs(root) {
        // The magic's C type differs between architectures; it is i64 on x86_64.
        #[allow(clippy::useless_conversion, reason = "i64 only on some architectures")]
        Ok(stat) => i64::from(stat.filesystem_type().0),
        Err(e) => {
            return Check::warn(
                "filesystem",
                format!("cannot tell the filesystem: {e}"),
                "Keep the state directory on a local disk.",
            );
        }
    };
    match REMOTE.iter().find(|(magic, _)| *magic == kind) {
        Some((_, name)) => Check::warn(
            "filesystem",
            format!("the state directory is on {name} (type {kind:#x})"),
            "Locks and file notifications may not work across machines there: set BACKGROUND_TASKS_HOME to a local directory.",
        ),
        None if kind == 0x0102_1994 => {
            Check::ok("filesystem", "local (tmpfs: records and logs go at reboot)")
        }
        None => Check::ok("filesystem", format!("local (type {kind:#x})")),
    }
}

/// A scratch folder in the state directory, removed when dropped.
struct Scratch {
    parent: Folder,
    name: String,
    folder: Folder,
}

impl Scratch {
    fn new(state: &StateDir) -> Result<Scratch> {
        let name = crate::paths::scratch_name();
        let folder = state.folder().create_below(&[&name])?;
        Ok(Scratch {
            parent: state.folder().clone(),
            name,
            folder,
        })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self.parent.remove_below(&self.name);
    }
}

/// An exclusive lock taken through one open file must exclude another open file.
fn locks(state: &StateDir) -> Check {
    let result = (|| -> Result<bool, String> {
        let scratch = Scratch::new(state).map_err(|e| e.full_message())?;
        let open = || {
            scratch
                .folder
                .write_file("lock", Access::Lock)
                .map_err(|e| e.full_message())
        };
        let first: File = open()?;
        let second: File = open()?;
        first.lock().map_err(|e| e.to_string())?;
        let excluded = matches!(second.try_lock(), Err(fs::TryLockError::WouldBlock));
        first.unlock().map_err(|e| e.to_string())?;
        let released = second.try_lock().is_ok();
        Ok(excluded && released)
    })();
    match result {
        Ok(true) => Check::ok("locks", "exclusive locks exclude and release"),
        Ok(false) => Check::fail(
            "locks",
            "a second open file took a lock the first one held",
            "Liveness depends on locks: move the state directory (BACKGROUND_TASKS_HOME) to a local filesystem.",
        ),
        Err(e) => Check::fail(
            "locks",
            format!("cannot lock a file in the state directory: {e}"),
            "Check the state directory's permissions and free space.",
        ),
    }
}

/// A real watch must report a real change.
fn notify(state: &StateDir) -> Check {
    let scratch = match Scratch::new(state) {
        Ok(scratch) => scratch,
        Err(e) => {
            return Check::fail(
                "notify",
                format!("cannot create a scratch folder: {}", e.full_message()),
                "Check the state directory's permissions and free space.",
            );
        }
    };
    let watch = DirWatch::new(scratch.folder.path(), false);
    if !watch.is_watching() {
        let limit = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_instances")
            .map_or_else(|_| "?".to_owned(), |text| text.trim().to_owned());
        return Check::warn(
            "notify",
            format!(
                "file notifications cannot be set up: every inotify instance of this user may be in use (fs.inotify.max_user_instances is {limit}; each running task's supervisor holds one)"
            ),
            "Nothing is missed: followers poll every 250 ms and supervisors look at their task's output every 50-250 ms. Raise fs.inotify.max_user_instances for prompt wake-ups with many tasks.",
        );
    }
    let touched = scratch.folder.create_new("touched").and_then(|mut file| {
        file.write_all(b"x")
            .map_err(|e| Error::store("write", scratch.folder.file_path("touched"), e))
    });
    if let Err(e) = touched {
        return Check::fail(
            "notify",
            format!("cannot write in the state directory: {}", e.full_message()),
            "Check the state directory's permissions and free space.",
        );
    }
    if watch.changed_within(NOTIFY_PATIENCE) {
        Check::ok("notify", "a change was reported by inotify")
    } else {
        Check::warn(
            "notify",
            format!(
                "no notification arrived within {} s of a change",
                NOTIFY_PATIENCE.as_secs()
            ),
            "Followers fall back to polling every 250 ms; keep the state directory on a local filesystem.",
        )
    }
}

/// Counts tasks by state; returns the running supervisors' pids for [`binary`].
fn task_states(state: &StateDir) -> (Check, TaskCounts, Vec<i32>) {
    let mut counts = TaskCounts::default();
    let mut supervisors = Vec::new();
    let mut unreadable = Vec::new();
    let mut lost = Vec::new();
    let ids = match state.task_ids() {
        Ok(ids) => ids,
        Err(e) => {
            return (
                Check::fail("tasks", e.full_message(), e.hint()),
                counts,
                supervisors,
            );
        }
    };
    let now = now_ms();
    for id in ids {
        counts.total += 1;
        let record = match observe(&state.task(&id), &id) {
            Ok(record) => record,
            Err(crate::error::Error::TaskNotFound { .. }) => {
                // A folder without a record: a start that failed before writing one, or a
                // task being removed right now.
                counts.total -= 1;
                continue;
            }
            Err(_) => {
                counts.unreadable += 1;
                unreadable.push(id.to_string());
                continue;
            }
        };
        match record.status {
            Status::Queued => counts.queued += 1,
            // A status word of a newer version: not known to have ended.
            Status::Running | Status::Unknown => counts.running += 1,
            Status::Lost => {
                counts.lost += 1;
                lost.push(id.to_string());
            }
            _ => counts.finished += 1,
        }
        if !record.status.is_terminal() {
            supervisors.extend(record.supervisor_pid);
        }
        if record.status.is_terminal()
            && now - record.ended_at_ms.unwrap_or(record.created_at_ms) > STALE_AFTER_MS
        {
            counts.stale += 1;
        }
    }
    let message = format!(
        "{} tasks: {} running, {} queued, {} finished, {} lost, {} stale, {} unreadable",
        counts.total,
        counts.running,
        counts.queued,
        counts.finished,
        counts.lost,
        counts.stale,
        counts.unreadable
    );
    let check = if !unreadable.is_empty() {
        Check::warn(
            "tasks",
            format!("{message}; unreadable: {}", first_few(&unreadable)),
            "Their records were damaged outside background-tasks: remove those task folders under tasks/.",
        )
    } else if !lost.is_empty() {
        Check::warn(
            "tasks",
            format!("{message}; lost: {}", first_few(&lost)),
            "Their supervisors vanished (killed, or a reboot); what was left of them was stopped. restart or rm them.",
        )
    } else if counts.stale > 0 {
        Check::warn(
            "tasks",
            message,
            "Remove old finished tasks: background-tasks prune '{\"older_than_s\":604800}'.",
        )
    } else {
        Check::ok("tasks", message)
    };
    (check, counts, supervisors)
}

/// This executable, and the one each running supervisor runs, must still exist: a binary
/// replaced under a running supervisor keeps working, but is worth knowing about.
fn binary(supervisors: &[i32]) -> Check {
    let deleted = |link: &Path| link.to_string_lossy().ends_with(" (deleted)");
    let me = fs::read_link("/proc/self/exe").unwrap_or_default();
    if deleted(&me) {
        return Check::fail(
            "binary",
            format!("this executable was deleted: {}", me.display()),
            "Reinstall background-tasks; new starts run this same file.",
        );
    }
    let replaced: Vec<String> = supervisors
        .iter()
        .filter(|&&pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            // Only a process that is still one of our supervisors counts.
            cmdline
                .split(|&b| b == 0)
                .any(|arg| arg == crate::supervisor::ENTRY.as_bytes())
                && fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| deleted(&exe))
        })
        .map(|pid| pid.to_string())
        .collect();
    if replaced.is_empty() {
        Check::ok(
            "binary",
            format!(
                "{} exists; {} running supervisors run an existing binary",
                me.display(),
                supervisors.len()
            ),
        )
    } else {
        Check::warn(
            "binary",
            format!(
                "{} supervisors run a binary that was replaced or deleted (pids {})",
                replaced.len(),
                first_few(&replaced)
            ),
            "They keep working until their tasks end; restart those tasks to run the current binary.",
        )
    }
}

/// Temp files of record writes whose writer died between write and rename.
fn temp_files(state: &StateDir) -> Check {
    let mut stale = Vec::new();
    for id in state.task_ids().unwrap_or_default() {
        let Ok(Some(folder)) = state.task(&id).open() else {
            continue;
        };
        for name in folder.names().unwrap_or_default() {
            let name = name.to_string_lossy().into_owned();
            if let Some(writer) = crate::state::atomic::temp_writer(&name)
                && !Path::new(&format!("/proc/{writer}")).exists()
            {
                stale.push(folder.file_path(&name).display().to_string());
            }
        }
    }
    if stale.is_empty() {
        Check::ok("temp_files", "no temp files left behind")
    } else {
        Check::warn(
            "temp_files",
            format!(
                "{} temp files left by writers that died: {}",
                stale.len(),
                first_few(&stale)
            ),
            "They are harmless (the records are whole) and go when their task next runs; delete them by hand to reclaim the space.",
        )
    }
}

fn first_few(items: &[String]) -> String {
    let mut text = items.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > 5 {
        text.push_str(&format!(" and {} more", items.len() - 5));
    }
    text
}
