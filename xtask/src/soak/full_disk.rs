//! The soak's full-disk class (RELIABILITY 25): tasks whose state directory's filesystem
//! fills up while they run. It needs a state directory of its own on a small tmpfs, so it
//! runs as a sub-run after the main soak, with its own marker; where no tmpfs can be mounted
//! (not root) it is skipped, and the report says so.
//!
//! Four kinds of task, started while there is room; then the soak fills the disk to the
//! last byte (a file of its own) and, while it is full:
//! - `disk-exit` tasks are let go and exit with their own code: `exited`, that code;
//! - `disk-fill` tasks write to their log (progress lines among 64 KiB ones) until their
//!   `timeout_s`: `timed_out`;
//! - `disk-term` tasks have their supervisor SIGTERMed: `killed` (`supervisor_signal`);
//! - `disk-lost` tasks have their supervisor SIGKILLed: `lost`, answered at once.
//!
//! While the disk is full every `status`, `list` and `wait` must answer (no `StoreError`:
//! readers answer without writing), and no task but a `disk-lost` one may be answered
//! `lost`. Then the disk is freed and every record is checked as the main soak checks
//! them (terminal, its kind's end, `wait`/`status`/`list` agree with it), and so is every
//! journal: at most one `task.ended` per run, and the same end as the record.

use super::{
    Answer, Kind, Outcome, Soak, disagreement, ended, files_under, is_gone, lock, proc_stat,
    send_sigkill, valid_record,
};

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::Duration;

use serde_json::{Value, json};

/// A kind of task of the full-disk sub-run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum DiskKind {
    Exit,
    Fill,
    Term,
    Lost,
}

impl DiskKind {
    const ALL: [DiskKind; 4] = [
        DiskKind::Exit,
        DiskKind::Fill,
        DiskKind::Term,
        DiskKind::Lost,
    ];

    fn name(self) -> &'static str {
        match self {
            DiskKind::Exit => "disk-exit",
            DiskKind::Fill => "disk-fill",
            DiskKind::Term => "disk-term",
            DiskKind::Lost => "disk-lost",
        }
    }

    fn outcome(self, code: i64) -> Outcome {
        match self {
            DiskKind::Exit => ended("exited", "exit", Some(code), None),
            DiskKind::Fill => ended("timed_out", "timeout", None, Some("SIGTERM")),
            DiskKind::Term => ended("killed", "supervisor_signal", None, Some("SIGTERM")),
            DiskKind::Lost => ended("lost", "supervisor_lost", None, None),
        }
    }
}

/// One task of the sub-run.
#[derive(Debug)]
struct DiskTask {
    id: String,
    kind: DiskKind,
    code: i64,
}

/// What the sub-run adds to the report.
#[derive(Debug)]
pub(super) struct DiskReport {
    pub json: Value,
    /// One line for the table.
    pub line: String,
    /// Processes it left (and killed).
    pub leaked: usize,
}

/// Runs the sub-run in `scratch`, recording its problems into `outer`'s.
pub(super) fn run(outer: &Soak, tasks: usize, scratch: &Path) -> DiskReport {
    let per_kind = (tasks / 40).clamp(4, 25);
    let size = (per_kind * 4 * 256 * 1024).max(8 << 20);
    let mountpoint = scratch.join("disk-state");
    let disk = match Disk::mount(&mountpoint, size) {
        Ok(disk) => disk,
        Err(why) => {
            eprintln!("soak: full disk: skipped: {why}");
            return DiskReport {
                json: json!({"skipped": why}),
                line: format!("full disk          skipped: {why}"),
                leaked: 0,
            };
        }
    };
    let inner = Soak {
        bin: outer.bin.clone(),
        state: mountpoint.clone(),
        retention_state: mountpoint.clone(),
        work: outer.work.clone(),
        home: outer.home.clone(),
        mark: format!("{}-disk", outer.mark),
        parallel: outer.parallel.min(8),
        planned: Vec::new(),
        problems: Mutex::new(Vec::new()),
        start_ms: Mutex::new(Vec::new()),
        trap_stop_ms: Mutex::new(Vec::new()),
        waves_done: AtomicBool::new(true),
        lists_meanwhile: AtomicUsize::new(0),
        stop_requests_left: AtomicUsize::new(0),
        ends: Mutex::new(BTreeMap::new()),
        retention_runs: Mutex::new(BTreeMap::new()),
        retention: Default::default(),
        huge_answer_bytes: AtomicUsize::new(0),
        restart_race_ms: Mutex::new(Vec::new()),
        pending_stop_ms: Mutex::new(Vec::new()),
        restarts_outrun: AtomicUsize::new(0),
    };
    let tasks: Vec<DiskTask> = DiskKind::ALL
        .iter()
        .flat_map(|&kind| {
            (0..per_kind).map(move |n| DiskTask {
                id: format!("{}-{n:03}", kind.name()),
                kind,
                code: (n % 7 + 1) as i64,
            })
        })
        .collect();
    eprintln!(
        "soak: full disk: {} tasks on a tmpfs of {} MiB",
        tasks.len(),
        size >> 20
    );
    let go = outer.work.join(format!("disk-go-{}", std::process::id()));
    let answered = sub_run(&inner, &disk, &tasks, &go);
    let _ = fs::remove_file(&go);
    let leaked = inner.check_processes();
    let problems = inner.problems.into_inner().unwrap_or_default();
    let count = problems.len();
    let mut ends: BTreeMap<&str, usize> = BTreeMap::new();
    for task in &tasks {
        *ends.entry(task.kind.name()).or_default() += 1;
    }
    lock(&outer.problems).extend(problems);
    drop(disk);
    let line = format!(
        "full disk          {} tasks on a {} MiB tmpfs filled while they ran: {} problem(s), {} answers while full ({} status, {} list, {} wait)",
        tasks.len(),
        size >> 20,
        count + leaked,
        answered.status + answered.list + answered.wait,
        answered.status,
        answered.list,
        answered.wait,
    );
    DiskReport {
        json: json!({
            "skipped": null,
            "tasks": tasks.len(),
            "tmpfs_bytes": size,
            "kinds": DiskKind::ALL.iter().map(|k| (k.name(), json!({
                "tasks": ends.get(k.name()).copied().unwrap_or(0),
                "must_end_as": k.outcome(1).describe().replace("code 1", "code k"),
            }))).collect::<BTreeMap<_, _>>(),
            "answered_while_full": {"status": answered.status, "list": answered.list, "wait": answered.wait},
            "problems": count,
            "leaked": leaked,
        }),
        line,
        leaked,
    }
}

/// How many reader answers came while the disk was full.
#[derive(Debug, Default)]
struct Answered {
    status: usize,
    list: usize,
    wait: usize,
}

fn sub_run(inner: &Soak, disk: &Disk, tasks: &[DiskTask], go: &Path) -> Answered {
    let go_text = go.display().to_string();
    inner.each(tasks, |task| {
        let wait_for_go = format!("until [ -e '{go_text}' ]; do sleep 0.02; done");
        let mut payload = match task.kind {
            DiskKind::Exit => json!({"shell": format!("{wait_for_go}; exit {}", task.code)}),
            // Progress lines between the blocks: the supervisor rewrites the record and
            // journals progress while the disk is full.
            DiskKind::Fill => json!({
                "shell": format!(
                    "{wait_for_go}; i=0; while :; do i=$((i+1)); echo \"step $i/1000000\"; \
                     head -c 65536 /dev/zero | tr '\\0' .; echo; done"
                ),
                "timeout_s": 6,
                "grace_s": 1,
            }),
            DiskKind::Term | DiskKind::Lost => json!({"command": "sleep", "args": ["1000"]}),
        };
        payload["id"] = json!(task.id);
        payload["env"] = json!({"BG_SOAK_MARK": inner.mark, "BG_SOAK_TASK": task.id});
        let answer = inner.call(&["start"], &payload);
        if !answer.ok {
            let text = answer.error_text();
            inner.problem(Kind::Error, &task.id, format!("start: {text}"));
        }
    });

    // Full to the last byte, then the tasks end in every way there is.
    disk.fill();
    if let Err(e) = fs::write(go, b"go") {
        inner.problem(
            Kind::Error,
            "go",
            format!("could not let the tasks go: {e}"),
        );
    }
    inner.each(tasks, |task| match task.kind {
        DiskKind::Term => signal_supervisor(inner, task, libc::SIGTERM),
        DiskKind::Lost => signal_supervisor(inner, task, libc::SIGKILL),
        DiskKind::Exit | DiskKind::Fill => {}
    });

    let counts = Mutex::new(Answered::default());
    inner.each(tasks, |task| {
        let answer = inner.call(&["status"], &json!({"id": task.id}));
        lock(&counts).status += 1;
        read_while_full(inner, task, "status", &answer);
    });
    let list = inner.call(&["list"], &json!({"fields": ["id", "status"]}));
    lock(&counts).list += 1;
    if !list.ok {
        let text = list.error_text();
        inner.problem(Kind::Error, "list", format!("list while full: {text}"));
    } else if list.body["unreadable"]
        .as_array()
        .is_some_and(|u| !u.is_empty())
    {
        let unreadable = &list.body["unreadable"];
        inner.problem(
            Kind::Corrupt,
            "list",
            format!("list while full: unreadable {unreadable}"),
        );
    }
    // Every end is recorded (or answered) while the disk is still full.
    let waited = Mutex::new(BTreeMap::new());
    inner.each(tasks, |task| {
        let answer = inner.call(&["wait", "--timeout", "60"], &json!({"id": task.id}));
        lock(&counts).wait += 1;
        read_while_full(inner, task, "wait", &answer);
        if answer.ok {
            lock(&waited).insert(task.id.clone(), answer.body["task"].clone());
        }
    });
    disk.free(tasks);
    check(inner, tasks, &waited.into_inner().unwrap_or_default());
    counts.into_inner().unwrap_or_default()
}

/// A reader's answer while the disk is full: an answer (never a `StoreError`), and never
/// `lost` for a task whose supervisor was not killed.
fn read_while_full(inner: &Soak, task: &DiskTask, what: &str, answer: &Answer) {
    if !answer.ok {
        let text = answer.error_text();
        inner.problem(Kind::Error, &task.id, format!("{what} while full: {text}"));
        return;
    }
    let status = &answer.body["task"]["status"];
    if task.kind == DiskKind::Lost && status != "lost" {
        inner.problem(
            Kind::Mismatch,
            &task.id,
            format!("{what} while full after its supervisor was SIGKILLed: {status}"),
        );
    }
    if task.kind != DiskKind::Lost && status == "lost" {
        inner.problem(Kind::Lost, &task.id, format!("{what} while full: lost"));
    }
}

/// Sends `signal` to the task's supervisor, after checking it is the live `__supervise` the
/// record names.
fn signal_supervisor(inner: &Soak, task: &DiskTask, signal: i32) {
    let Some(record) = inner.record(&task.id) else {
        inner.problem(Kind::Corrupt, &task.id, "no readable task.json".into());
        return;
    };
    let pid = record["supervisor_pid"].as_i64().unwrap_or(0) as i32;
    let start = record["supervisor_start_ticks"].as_u64();
    let ours = start.is_some_and(|start| {
        inner.is_our_supervisor(pid) && proc_stat(pid).is_some_and(|s| s.start_ticks == start)
    });
    if !ours {
        inner.problem(
            Kind::Error,
            &task.id,
            format!("supervisor {pid} is not the live __supervise the record names"),
        );
        return;
    }
    if signal == libc::SIGKILL {
        send_sigkill(pid);
        let start = start.unwrap_or(0);
        if !super::until(Duration::from_secs(10), || is_gone(pid, start)) {
            inner.problem(
                Kind::Error,
                &task.id,
                format!("supervisor {pid} survived SIGKILL"),
            );
        }
    } else if pid > 1 {
        // SAFETY: kill has no memory effects; the pid was checked to be ours just before.
        unsafe { libc::kill(pid, signal) };
    }
}

/// Once the disk is free: every record, answer and journal.
fn check(inner: &Soak, tasks: &[DiskTask], waited: &BTreeMap<String, Value>) {
    let statuses = Mutex::new(BTreeMap::new());
    inner.each(tasks, |task| {
        let answer = inner.call(&["status"], &json!({"id": task.id}));
        if answer.ok {
            lock(&statuses).insert(task.id.clone(), answer.body["task"].clone());
        } else {
            let text = answer.error_text();
            inner.problem(Kind::Error, &task.id, format!("status: {text}"));
        }
    });
    let statuses = statuses.into_inner().unwrap_or_default();
    let list = inner.call(&["list"], &json!({}));
    let listed: BTreeMap<String, Value> = list.body["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| Some((t["id"].as_str()?.to_owned(), t.clone())))
        .collect();
    for task in tasks {
        let Some(record) = inner.record(&task.id) else {
            inner.problem(Kind::Corrupt, &task.id, "no readable task.json".into());
            continue;
        };
        if let Err(why) = valid_record(&record, &task.id) {
            inner.problem(Kind::Corrupt, &task.id, why);
            continue;
        }
        for (source, answers) in [("wait", waited), ("status", &statuses), ("list", &listed)] {
            if let Some(field) = answers.get(&task.id).and_then(|a| disagreement(&record, a)) {
                let said = &answers[&task.id][field];
                inner.problem(
                    Kind::Disagree,
                    &task.id,
                    format!("{source} says {field} {said}, task.json {}", record[field]),
                );
            }
        }
        let outcome = task.kind.outcome(task.code);
        if !outcome.matches(&record) {
            inner.problem(
                Kind::Mismatch,
                &task.id,
                format!(
                    "expected {}; task.json: status {} reason {} exit_code {} signal {} error {}",
                    outcome.describe(),
                    record["status"],
                    record["reason"],
                    record["exit_code"],
                    record["signal"],
                    record["error"],
                ),
            );
        }
        if record["status"] == "lost" && task.kind != DiskKind::Lost {
            inner.problem(Kind::Lost, &task.id, format!("lost: {}", record["error"]));
        }
        check_journal(inner, &task.id, &record);
    }
    for path in files_under(&inner.state) {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.is_some_and(|n| n.starts_with('.') && n.contains(".tmp.")) {
            inner.problem(Kind::TempFile, &path.display().to_string(), "left".into());
        }
    }
}

/// The journal may miss a line, but never contradicts the record: at most one
/// `task.ended` for the run, and if there is one, it says the record's end.
fn check_journal(inner: &Soak, id: &str, record: &Value) {
    let bytes =
        fs::read(inner.state.join("tasks").join(id).join("events.jsonl")).unwrap_or_default();
    let ends: Vec<Value> = String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|e| e["type"] == "task.ended" && e["run"] == record["run"])
        .collect();
    if ends.len() > 1 {
        inner.problem(
            Kind::Disagree,
            id,
            format!(
                "the journal ends run {} {} times",
                record["run"],
                ends.len()
            ),
        );
    }
    if let Some(end) = ends.last()
        && (end["data"]["status"] != record["status"]
            || end["data"]["exit_code"] != record["exit_code"]
            || end["data"]["signal"] != record["signal"])
    {
        inner.problem(
            Kind::Disagree,
            id,
            format!(
                "the journal says {} {} {}, task.json {} {} {}",
                end["data"]["status"],
                end["data"]["exit_code"],
                end["data"]["signal"],
                record["status"],
                record["exit_code"],
                record["signal"]
            ),
        );
    }
}

/// A small tmpfs mounted as the sub-run's state directory; unmounted when dropped.
#[derive(Debug)]
struct Disk {
    mountpoint: PathBuf,
}

impl Disk {
    fn mount(mountpoint: &Path, size: usize) -> Result<Disk, String> {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(mountpoint)
            .map_err(|e| format!("create the mount point: {e}"))?;
        let target = CString::new(mountpoint.as_os_str().as_encoded_bytes())
            .map_err(|_| "the mount point holds a NUL".to_owned())?;
        let options = CString::new(format!("size={size},mode=0700")).expect("no NUL");
        // SAFETY: every argument is a valid NUL-terminated string that outlives the call.
        let mounted = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                options.as_ptr().cast(),
            )
        };
        if mounted != 0 {
            let error = std::io::Error::last_os_error();
            let _ = fs::remove_dir(mountpoint);
            return Err(format!(
                "mounting a tmpfs failed ({error}); it needs root or CAP_SYS_ADMIN"
            ));
        }
        Ok(Disk {
            mountpoint: mountpoint.to_path_buf(),
        })
    }

    /// Writes a file of the soak's own until the disk is full, to the last byte.
    fn fill(&self) {
        let Ok(mut file) = fs::File::create(self.mountpoint.join("filler")) else {
            return;
        };
        let block = vec![0_u8; 64 * 1024];
        for size in [block.len(), 4096, 1] {
            while file.write(&block[..size]).is_ok_and(|n| n > 0) {}
        }
    }

    /// Removes the soak's filler and empties the logs of the tasks that filled the disk.
    fn free(&self, tasks: &[DiskTask]) {
        let _ = fs::remove_file(self.mountpoint.join("filler"));
        for task in tasks.iter().filter(|t| t.kind == DiskKind::Fill) {
            let log = self
                .mountpoint
                .join("tasks")
                .join(&task.id)
                .join("output.log");
            if let Ok(file) = fs::OpenOptions::new().write(true).open(log) {
                let _ = file.set_len(0);
            }
        }
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        if let Ok(target) = CString::new(self.mountpoint.as_os_str().as_encoded_bytes()) {
            // SAFETY: `target` is a valid NUL-terminated string that outlives the call.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
        let _ = fs::remove_dir(&self.mountpoint);
    }
}
