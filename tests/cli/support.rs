//! The harness every test uses.
//!
//! - [`Sandbox`]: a private state directory, HOME and working directory per test, and a sealed
//!   environment (only PATH, HOME and BACKGROUND_TASKS_HOME) for every run of the binary.
//!   Dropping it kills every supervisor and task process group recorded in its own state
//!   directory, after checking each pid still names the process that was recorded.
//! - [`Outcome`]: one finished invocation: exit code, stdout, stderr, the parsed envelope.
//! - [`wait_until`]: the only way a test waits: a condition polled against a deadline.
//! - /proc helpers: identity (start time, field 22 of `/proc/<pid>/stat`), groups, fds.
//!
//! Every invocation is bounded ([`HANG`]): a command that does not finish, or whose pipes
//! are still held open after it exits, fails the test instead of hanging the suite.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs;
use std::io::{self, Write};
use std::os::fd::RawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_background-tasks");

/// How long a condition may take to come true on two noisy cores.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// How long one invocation may take before it counts as a hang.
pub const HANG: Duration = Duration::from_secs(60);

/// Polls `condition` with a short backoff until it holds; panics naming `what` once
/// `deadline` has passed. The only place a test sleeps.
pub fn wait_until(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let deadline_at = Instant::now() + deadline;
    let mut pause = Duration::from_millis(1);
    loop {
        if condition() {
            return;
        }
        let now = Instant::now();
        assert!(
            now < deadline_at,
            "gave up after {deadline:?} waiting until {what}"
        );
        std::thread::sleep(pause.min(deadline_at - now)); // bounded by the deadline
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// One test's private world. Dropping it kills what the test started.
#[derive(Debug)]
pub struct Sandbox {
    root: tempfile::TempDir,
    /// Processes outside any task group (escapees) that the guard must also kill.
    tracked: Mutex<Vec<Identity>>,
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

impl Sandbox {
    /// `root/home` (HOME), `root/work` (the working directory) and `root/state`
    /// (BACKGROUND_TASKS_HOME, left for the binary to create).
    pub fn new() -> Sandbox {
        let root = tempfile::Builder::new()
            .prefix("bt-cli-")
            .tempdir()
            .expect("create the sandbox");
        for dir in ["home", "work"] {
            fs::create_dir(root.path().join(dir)).expect("create a sandbox dir");
        }
        Sandbox {
            root,
            tracked: Mutex::new(Vec::new()),
        }
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn home(&self) -> PathBuf {
        self.root().join("home")
    }

    /// The state directory (BACKGROUND_TASKS_HOME).
    pub fn state(&self) -> PathBuf {
        self.root().join("state")
    }

    /// The working directory of every invocation, so the default workdir of every task.
    pub fn work(&self) -> PathBuf {
        self.root().join("work")
    }

    pub fn task_dir(&self, id: &str) -> PathBuf {
        self.state().join("tasks").join(id)
    }

    /// `program` with a sealed environment, run in [`Sandbox::work`], stdin on /dev/null.
    pub fn sealed(&self, program: impl AsRef<OsStr>) -> Command {
        self.sealed_with_state(program, self.state())
    }

    /// Like [`Sandbox::sealed`] with another BACKGROUND_TASKS_HOME.
    pub fn sealed_with_state(&self, program: impl AsRef<OsStr>, state: PathBuf) -> Command {
        let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin"));
        let mut command = Command::new(program);
        command
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.home())
            .env("BACKGROUND_TASKS_HOME", state)
            .current_dir(self.work())
            .stdin(Stdio::null());
        command
    }

    /// The binary with `args`, sealed.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = self.sealed(BIN);
        command.args(args);
        command
    }

    /// `args` (the command and its flags) followed by `payload` as JSON text.
    pub fn command_with(&self, args: &[&str], payload: &Value) -> Command {
        let mut command = self.command(args);
        command.arg(payload.to_string());
        command
    }

    /// Runs the binary with `args` to the end (bounded by [`HANG`]).
    pub fn run(&self, args: &[&str]) -> Outcome {
        spawn(self.command(args)).finish()
    }

    /// Runs `args` with `payload` to the end.
    pub fn call(&self, args: &[&str], payload: &Value) -> Outcome {
        spawn(self.command_with(args, payload)).finish()
    }

    /// A successful call's `data`.
    pub fn ok(&self, args: &[&str], payload: &Value) -> Value {
        self.call(args, payload).data()
    }

    /// A failed call's `error` object.
    pub fn fail(&self, args: &[&str], payload: &Value) -> Value {
        self.call(args, payload).error()
    }

    /// Starts a task and returns its wire form.
    pub fn start(&self, payload: &Value) -> Value {
        let task = self.ok(&["start"], payload)["task"].clone();
        assert!(task.is_object(), "start answered no task: {task}");
        task
    }

    /// `status {id}`'s task.
    pub fn status(&self, id: &str) -> Value {
        let data = self.ok(&["status"], &serde_json::json!({ "id": id }));
        assert_eq!(data["task_id"], id);
        assert_eq!(data["status"], data["task"]["status"]);
        data["task"].clone()
    }

    /// `wait {id}`'s task.
    pub fn wait(&self, id: &str) -> Value {
        self.ok(&["wait"], &serde_json::json!({ "id": id }))["task"].clone()
    }

    /// `stop {id}`'s whole answer.
    pub fn stop(&self, id: &str) -> Value {
        self.ok(&["stop"], &serde_json::json!({ "id": id }))
    }

    /// The record on disk (`task.json`), as JSON.
    pub fn record(&self, id: &str) -> Value {
        let path = self.task_dir(id).join("task.json");
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
    }

    /// The supervisor of a task, as its record names it.
    pub fn supervisor(&self, id: &str) -> Identity {
        let record = self.record(id);
        Identity::from_record(&record, "supervisor_pid", "supervisor_start_ticks")
            .unwrap_or_else(|| panic!("record names no supervisor: {record}"))
    }

    /// The task's main process, as its record names it.
    pub fn leader(&self, id: &str) -> Identity {
        let record = self.record(id);
        Identity::from_record(&record, "pid", "pid_start_ticks")
            .unwrap_or_else(|| panic!("record names no pid: {record}"))
    }

    /// The current run's log bytes (empty if there is none yet).
    pub fn log(&self, id: &str) -> String {
        let bytes = fs::read(self.task_dir(id).join("output.log")).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Has the guard kill `process` too (a process that left every task group).
    pub fn track(&self, process: Identity) {
        self.tracked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(process);
    }
}

impl Drop for Sandbox {
    /// Kills every supervisor this sandbox's records name, then each task's process group,
    /// then the tracked processes; each only after its identity (start time) matches.
    /// Never panics: it also runs while a failed test unwinds.
    fn drop(&mut self) {
        let Ok(entries) = fs::read_dir(self.state().join("tasks")) else {
            return self.kill_tracked();
        };
        for entry in entries.flatten() {
            let Ok(bytes) = fs::read(entry.path().join("task.json")) else {
                continue;
            };
            let Ok(record) = serde_json::from_slice::<Value>(&bytes) else {
                continue;
            };
            kill_recorded_processes(&record);
        }
        self.kill_tracked();
    }
}

impl Sandbox {
    fn kill_tracked(&self) {
        let tracked = self.tracked.lock().unwrap_or_else(|e| e.into_inner());
        for process in tracked.iter() {
            if process.is_alive() {
                let _ = kill(Pid::from_raw(process.pid), Signal::SIGKILL);
            }
        }
    }
}

/// The guard's work for one record.
fn kill_recorded_processes(record: &Value) {
    if let Some(supervisor) =
        Identity::from_record(record, "supervisor_pid", "supervisor_start_ticks")
        && supervisor.is_alive()
    {
        // Escapees reparented to the supervisor (its subreaper children) would be handed to
        // init once it dies; note them first.
        let children: Vec<Identity> = processes()
            .into_iter()
            .filter(|p| p.ppid == supervisor.pid && p.state != 'Z')
            .map(|p| p.identity())
            .collect();
        let _ = kill(Pid::from_raw(supervisor.pid), Signal::SIGKILL);
        for child in children.iter().filter(|c| c.is_alive()) {
            let _ = kill(Pid::from_raw(child.pid), Signal::SIGKILL);
        }
    }
    if let Some(leader) = Identity::from_record(record, "pid", "pid_start_ticks") {
        // The group id is the leader's pid. While any member lives the kernel cannot hand the
        // number out again, so the group is ours unless the number now names another process.
        let reused = stat(leader.pid).is_some_and(|p| p.start_ticks != leader.start_ticks);
        if !reused {
            let _ = kill(Pid::from_raw(-leader.pid), Signal::SIGKILL);
        }
    }
}

/// Runs `command` on a helper thread, collecting stdout and stderr to EOF.
pub fn spawn(mut command: Command) -> Pending {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let what = format!("{command:?}");
    let started = Instant::now();
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let pid = child.id() as i32;
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let output = child.wait_with_output();
        let _ = sender.send((output, Instant::now()));
    });
    Pending {
        pid,
        what,
        started,
        receiver,
    }
}

/// A running invocation.
#[derive(Debug)]
pub struct Pending {
    pid: i32,
    what: String,
    started: Instant,
    receiver: mpsc::Receiver<(io::Result<Output>, Instant)>,
}

impl Pending {
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether the process is still running (not exited, not reaped).
    pub fn is_running(&self) -> bool {
        stat(self.pid).is_some_and(|p| p.state != 'Z')
    }

    /// Whether one of its threads sleeps in a file lock (`/proc/<pid>/task/*/wchan`).
    pub fn is_blocked_on_a_lock(&self) -> bool {
        fs::read_dir(format!("/proc/{}/task", self.pid))
            .into_iter()
            .flatten()
            .flatten()
            .any(|t| fs::read_to_string(t.path().join("wchan")).is_ok_and(|w| w.contains("lock")))
    }

    /// Waits for the end, at most [`HANG`].
    pub fn finish(self) -> Outcome {
        self.finish_within(HANG)
    }

    /// Waits for the end (exit and EOF on stdout and stderr), at most `bound`.
    pub fn finish_within(self, bound: Duration) -> Outcome {
        match self.receiver.recv_timeout(bound) {
            Ok((Ok(output), ended)) => Outcome {
                what: self.what,
                code: output.status.code(),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
                stdout_bytes: output.stdout,
                elapsed: ended - self.started,
                ended,
            },
            Ok((Err(e), _)) => panic!("wait for {}: {e}", self.what),
            Err(_) => {
                let running = self.is_running();
                if running {
                    // Our own unreaped child: its pid cannot have been reused.
                    let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
                }
                panic!(
                    "{} hung: no exit and EOF within {bound:?} (process still running: {running}; \
                     if not, someone else holds its stdout or stderr open)",
                    self.what
                )
            }
        }
    }
}

/// One finished invocation.
#[derive(Debug)]
pub struct Outcome {
    pub what: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// stdout as it was written (`stdout` replaced invalid UTF-8).
    pub stdout_bytes: Vec<u8>,
    /// From spawn to exit and EOF on both pipes.
    pub elapsed: Duration,
    pub ended: Instant,
}

impl Outcome {
    /// The success envelope's `data`, after checking the envelope's shape.
    pub fn data(&self) -> Value {
        assert_eq!(self.code, Some(0), "expected success from {self:#?}");
        let envelope = self.stdout_envelope();
        assert!(envelope["command"].is_string(), "{self:#?}");
        assert!(envelope.get("data").is_some(), "{self:#?}");
        envelope["data"].clone()
    }

    /// The success envelope on stdout whatever the exit code (a batch with a failed item and
    /// an unhealthy `doctor` answer there with exit 1), after checking it is one line of JSON
    /// with `ok: true` and that nothing went to stderr.
    pub fn stdout_envelope(&self) -> Value {
        assert_eq!(
            self.stderr, "",
            "an answer writes nothing to stderr: {self:#?}"
        );
        let envelope = single_json_line(&self.stdout, self);
        assert_eq!(envelope["ok"], true, "{self:#?}");
        envelope
    }

    /// The failure envelope (stderr, exit 1), after checking its shape.
    pub fn failure(&self) -> Value {
        assert_eq!(self.code, Some(1), "expected exit code 1 from {self:#?}");
        assert_eq!(
            self.stdout, "",
            "a failure writes nothing to stdout: {self:#?}"
        );
        let envelope = single_json_line(&self.stderr, self);
        assert_eq!(envelope["ok"], false, "{self:#?}");
        assert!(envelope["command"].is_string(), "{self:#?}");
        check_error(&envelope["error"], &format!("{self:#?}"));
        envelope
    }

    /// The failure envelope's `error` object.
    pub fn error(&self) -> Value {
        self.failure()["error"].clone()
    }
}

fn single_json_line(text: &str, outcome: &Outcome) -> Value {
    assert!(
        text.ends_with('\n') && text.matches('\n').count() == 1,
        "expected exactly one line of JSON from {}: {outcome:#?}",
        outcome.what
    );
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {outcome:#?}"))
}

/// A process as recorded: its pid and its start time (clock ticks after boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub pid: i32,
    pub start_ticks: u64,
}

impl Identity {
    fn from_record(record: &Value, pid_key: &str, ticks_key: &str) -> Option<Identity> {
        let pid = i32::try_from(record[pid_key].as_i64()?).ok()?;
        let start_ticks = record[ticks_key].as_u64()?;
        (pid > 1).then_some(Identity { pid, start_ticks })
    }

    /// Still there (zombie or not) with the recorded start time.
    pub fn exists(&self) -> bool {
        stat(self.pid).is_some_and(|p| p.start_ticks == self.start_ticks)
    }

    /// Still running (not a zombie) with the recorded start time.
    pub fn is_alive(&self) -> bool {
        stat(self.pid).is_some_and(|p| p.start_ticks == self.start_ticks && p.state != 'Z')
    }

    /// Sends `signal`, after checking the pid still names this process.
    pub fn signal(&self, signal: Signal) {
        assert!(
            self.is_alive(),
            "refusing to signal {self:?}: it is not that running process any more"
        );
        kill(Pid::from_raw(self.pid), signal)
            .unwrap_or_else(|e| panic!("signal {signal} to {self:?}: {e}"));
    }
}

/// The fields of `/proc/<pid>/stat` the tests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: i32,
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    /// Field 22: clock ticks after boot at which the process started.
    pub start_ticks: u64,
}

impl ProcStat {
    pub fn identity(&self) -> Identity {
        Identity {
            pid: self.pid,
            start_ticks: self.start_ticks,
        }
    }
}

/// `/proc/<pid>/stat`, or `None` when there is no such process.
pub fn stat(pid: i32) -> Option<ProcStat> {
    if pid <= 0 {
        return None;
    }
    let text = fs::read(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let close = text.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(text.get(close + 2..)?).ok()?;
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // `rest` starts at field 3, so field N is fields[N - 3].
    Some(ProcStat {
        pid,
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// Every process on the machine.
pub fn processes() -> Vec<ProcStat> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat)
        .collect()
}

/// Every process (zombies included) in process group `pgid`.
pub fn group_members(pgid: i32) -> Vec<ProcStat> {
    processes().into_iter().filter(|p| p.pgrp == pgid).collect()
}

/// The running (non-zombie) processes in process group `pgid`.
pub fn live_group_members(pgid: i32) -> Vec<ProcStat> {
    group_members(pgid)
        .into_iter()
        .filter(|p| p.state != 'Z')
        .collect()
}

/// A hexadecimal signal mask from `/proc/<pid>/status` (`SigIgn`, `SigBlk`, ...).
pub fn signal_mask(pid: i32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    u64::from_str_radix(line.trim(), 16).unwrap_or_else(|e| panic!("{field} {line:?}: {e}"))
}

/// The bit of signal `signo` in a /proc signal mask.
pub fn signal_bit(signo: i32) -> u64 {
    1 << (signo - 1)
}

/// The open descriptors of a process and what each points at, sorted by number.
pub fn open_fds(pid: i32) -> Vec<(i32, String)> {
    let dir = format!("/proc/{pid}/fd");
    let mut fds: Vec<(i32, String)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {dir}: {e}"))
        .filter_map(|e| {
            let e = e.ok()?;
            let fd = e.file_name().to_str()?.parse().ok()?;
            let target = fs::read_link(e.path()).ok()?;
            Some((fd, target.to_string_lossy().into_owned()))
        })
        .collect();
    fds.sort();
    fds
}

/// Gives the child of `command` the descriptor `fd` of this process as `target`, without
/// close-on-exec, the way a careless harness leaks a pipe into what it runs. `fd` stays
/// close-on-exec here, so parallel tests' children never inherit it.
pub fn inherit_fd(command: &mut Command, fd: RawFd, target: RawFd) {
    // SAFETY: the hook runs between fork and exec and calls only dup2 and fcntl, which are
    // async-signal-safe; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if fd == target {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(fd, target) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Sets the umask of the child of `command` (never of the test process: tests share it).
pub fn with_umask(command: &mut Command, mask: libc::mode_t) {
    // SAFETY: umask is async-signal-safe and only changes the child's own mask.
    unsafe {
        command.pre_exec(move || {
            libc::umask(mask);
            Ok(())
        });
    }
}

/// Lowers the soft open-file limit of the child of `command` to `soft` (the hard limit stays
/// as it is), as a shell's `ulimit -Sn` does.
pub fn with_open_file_limit(command: &mut Command, soft: libc::rlim_t) {
    // SAFETY: getrlimit and setrlimit are async-signal-safe and change only the child's own
    // limit; the struct lives on the child's stack.
    unsafe {
        command.pre_exec(move || {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return Err(io::Error::last_os_error());
            }
            limit.rlim_cur = soft.min(limit.rlim_max);
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Makes the child of `command` start with SIGCHLD ignored, as some hostile callers do.
pub fn with_sigchld_ignored(command: &mut Command) {
    // SAFETY: signal is async-signal-safe; setting SIG_IGN installs no handler.
    unsafe {
        command.pre_exec(|| {
            if libc::signal(libc::SIGCHLD, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Creates a FIFO at `path`.
pub fn make_fifo(path: &Path) {
    let c_path = CString::new(path.as_os_str().as_encoded_bytes()).expect("no NUL in the path");
    // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call.
    let made = unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) };
    assert_eq!(
        made,
        0,
        "mkfifo {}: {}",
        path.display(),
        io::Error::last_os_error()
    );
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(path.clone());
            }
            found.push(path);
        }
    }
    found.sort();
    found
}

/// The names in `dir`, sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Checks the shape every error object has, in a failure envelope or in a batch result:
/// a type, a message, and details with a hint and whether it is retryable. `context` is
/// printed when a check fails.
pub fn check_error(error: &Value, context: &str) {
    assert!(error["type"].is_string(), "{context}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{context}"
    );
    assert!(
        error["details"]["hint"]
            .as_str()
            .is_some_and(|h| !h.is_empty()),
        "every error has a hint: {context}"
    );
    assert!(
        error["details"]["retryable"].is_boolean(),
        "every error says whether it is retryable: {context}"
    );
}

/// Opens FIFO `path` for writing once a task has it open for reading. The open is
/// non-blocking (ENXIO until there is a reader), so a task that never reads fails the test
/// instead of hanging it.
pub fn open_fifo_writer(path: &Path) -> fs::File {
    let mut fifo = None;
    wait_until(
        &format!("a task opens {} for reading", path.display()),
        DEADLINE,
        || {
            fifo = fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)
                .ok();
            fifo.is_some()
        },
    );
    fifo.expect("the FIFO")
}

/// Says on stderr what a test could not do here, and why, or what it found.
#[expect(clippy::print_stderr, reason = "a test says what it skipped and why")]
pub fn note(message: &str) {
    eprintln!("{message}");
}

// Tasks and batches, as several test files check them.

/// Every status a task can have.
pub const STATUSES: [&str; 7] = [
    "queued",
    "running",
    "exited",
    "killed",
    "timed_out",
    "failed",
    "lost",
];

/// A batch answer's `data`, after checking the whole contract of its shape: a success
/// envelope of `command` on stdout (one line, nothing on stderr), counts that agree with
/// the results, an outcome that agrees with the counts, one result per item in input
/// order with `data` when ok and `error` when not (never both), and exit code 1 exactly
/// when an item failed.
pub fn batch_answer(outcome: &Outcome, command: &str) -> Value {
    let envelope = outcome.stdout_envelope();
    assert_eq!(envelope["command"], command, "{outcome:#?}");
    let data = envelope["data"].clone();
    let results = data["results"]
        .as_array()
        .unwrap_or_else(|| panic!("a batch answer has results: {data}"));
    let total = results.len();
    let succeeded = results.iter().filter(|r| r["ok"] == true).count();
    assert_eq!(data["total"], total, "{data}");
    assert_eq!(data["success_count"], succeeded, "{data}");
    assert_eq!(data["error_count"], total - succeeded, "{data}");
    let expected = if succeeded == total {
        "succeeded"
    } else if succeeded == 0 {
        "failed"
    } else {
        "partial_failure"
    };
    assert_eq!(data["outcome"], expected, "{data}");
    assert!(
        data.get("concurrency")
            .is_some_and(|c| c.is_null() || c.as_u64().is_some_and(|n| n >= 1)),
        "concurrency is a number or null: {data}"
    );
    let code = if succeeded == total { 0 } else { 1 };
    assert_eq!(
        outcome.code,
        Some(code),
        "a batch with {} failed item(s) exits {code}: {outcome:#?}",
        total - succeeded
    );
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["index"], i, "results are in input order: {data}");
        assert!(result["ok"].is_boolean(), "{result}");
        assert!(
            result
                .get("target")
                .is_some_and(|t| t.is_string() || t.is_null()),
            "every result has a target: {result}"
        );
        if result["ok"] == true {
            assert!(result.get("data").is_some_and(Value::is_object), "{result}");
            assert!(result.get("error").is_none(), "ok and error: {result}");
        } else {
            assert!(result.get("data").is_none(), "failed and data: {result}");
            check_error(&result["error"], &result.to_string());
        }
    }
    data
}

/// Runs `args` with a batch `payload` and checks the answer.
pub fn call_batch(sandbox: &Sandbox, args: &[&str], payload: &Value) -> Value {
    assert!(payload.is_array(), "a batch payload is an array");
    batch_answer(&sandbox.call(args, payload), args[0])
}

/// The `i`th result of a batch answer.
pub fn result(data: &Value, i: usize) -> &Value {
    &data["results"][i]
}

/// Asserts that the `i`th result failed with `error_type`, for item `target`.
pub fn assert_item_failed(data: &Value, i: usize, target: &str, error_type: &str) {
    let item = result(data, i);
    assert_eq!(item["ok"], false, "item {i}: {data}");
    assert_eq!(item["target"], target, "item {i}: {data}");
    assert_eq!(item["error"]["type"], error_type, "item {i}: {data}");
}

/// The `i`th result's task, after checking it succeeded for task `id`.
pub fn item_task(data: &Value, i: usize, id: &str) -> Value {
    let item = result(data, i);
    assert_eq!(item["ok"], true, "item {i}: {data}");
    assert_eq!(item["target"], id, "item {i}: {data}");
    let task = item["data"]["task"].clone();
    assert_eq!(task["id"], id, "item {i}: {data}");
    task
}

/// Every task `list` answers, by id.
pub fn tasks_by_id(sandbox: &Sandbox, filter: &Value) -> BTreeMap<String, Value> {
    let data = sandbox.ok(&["list"], filter);
    let tasks = data["tasks"].as_array().expect("tasks");
    assert_eq!(data["total"], tasks.len(), "{data}");
    tasks
        .iter()
        .map(|t| (t["id"].as_str().expect("an id").to_owned(), t.clone()))
        .collect()
}

/// Asserts that `status` answers TaskNotFound for `id`.
pub fn assert_not_found(sandbox: &Sandbox, id: &str) {
    let error = sandbox.fail(&["status"], &json!({ "id": id }));
    assert_eq!(error["type"], "TaskNotFound", "{id}: {error}");
}

/// The running `sleep` processes whose working directory is `dir`: the tasks of one sandbox
/// that run `sleep` (a supervisor's working directory is `/`).
pub fn sleeps_in(dir: &Path) -> Vec<i32> {
    let dir = fs::canonicalize(dir).expect("canonicalize");
    processes()
        .into_iter()
        .filter(|p| p.state != 'Z')
        .filter(|p| {
            fs::read_to_string(format!("/proc/{}/comm", p.pid)).is_ok_and(|c| c == "sleep\n")
        })
        .filter(|p| fs::read_link(format!("/proc/{}/cwd", p.pid)).is_ok_and(|c| c == dir))
        .map(|p| p.pid)
        .collect()
}

/// The live supervisors of this sandbox: our binary's `__supervise` processes whose
/// BACKGROUND_TASKS_HOME is the sandbox's state directory.
pub fn supervisors_of(sandbox: &Sandbox) -> Vec<i32> {
    let home = format!("BACKGROUND_TASKS_HOME={}", sandbox.state().display());
    processes()
        .into_iter()
        .filter(|p| p.state != 'Z')
        .filter(|p| {
            fs::read(format!("/proc/{}/cmdline", p.pid))
                .is_ok_and(|c| c.split(|&b| b == 0).any(|arg| arg == b"__supervise"))
        })
        .filter(|p| {
            fs::read(format!("/proc/{}/environ", p.pid))
                .is_ok_and(|e| e.split(|&b| b == 0).any(|var| var == home.as_bytes()))
        })
        .map(|p| p.pid)
        .collect()
}

/// Waits until no supervisor of this sandbox runs any more.
pub fn wait_for_no_supervisor(sandbox: &Sandbox) {
    wait_until(
        "every supervisor of the sandbox has exited",
        DEADLINE,
        || supervisors_of(sandbox).is_empty(),
    );
}

/// Opens a FIFO gate once a task has it open for reading, and lets the task through.
pub fn open_gate(gate: &Path) {
    open_fifo_writer(gate)
        .write_all(b"go\n")
        .expect("write to the gate");
}

impl Outcome {
    /// The envelope, whatever it says: a success on stdout (exit 0, or exit 1 for a batch
    /// with a failed item) or a failure on stderr (exit 1), each checked as [`Outcome::data`] and [`Outcome::failure`] check them. Fails
    /// on anything else: a panic's message, a death by signal (an abort is exit 134 from a
    /// shell), a Rust exit code such as 101, or a stderr that is not one JSON envelope.
    pub fn envelope(&self) -> Value {
        assert!(
            !self.stderr.contains("panicked"),
            "a panic instead of an envelope: {self:#?}"
        );
        match self.code {
            Some(0) => {
                self.data();
                self.stdout_envelope()
            }
            // A batch with a failed item answers on stdout with exit 1.
            Some(1) if !self.stdout.is_empty() => self.stdout_envelope(),
            Some(1) => self.failure(),
            _ => panic!("expected exit 0 or 1 with an envelope: {self:#?}"),
        }
    }
}
