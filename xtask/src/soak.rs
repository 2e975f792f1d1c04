//! `cargo xtask soak`: thousands of tasks started, stopped, restarted, timed out and
//! orphaned in parallel, then every record checked against what must have happened to it,
//! and every process accounted for (RELIABILITY.md's promise, at scale).
//!
//! Each task belongs to a class with a known outcome (see [`Class::outcomes`]). The tasks
//! are started from `parallel` client threads in waves of `wave` tasks; once a wave has
//! started, its long-running tasks are acted on (stopped, their supervisor SIGKILLed), so
//! hundreds of supervisors are alive at once. The `retention` class runs in a state
//! directory of its own (so that its `prune` calls remove only its tasks): each of its tasks
//! ends a first run, then is started again while `rm` and `prune` race the start, and every
//! run answered `running` must be the run found stopped at the end (issue 20: nothing
//! answered running is ever removed). Then every task is waited for, and:
//! - every `task.json` must parse and be terminal; `wait`, `status` and `list` must agree
//!   with it (corrupt, disagree);
//! - its status, exit code, signal, reason and run must be its class's (mismatched); a
//!   `lost` task outside the `lost` class is counted on its own (lost);
//! - `list` must count every task, and no temp file (`.*.tmp.*`) may be left;
//! - no process may be left: every task and every client runs with `BG_SOAK_MARK=<random>`
//!   in its environment, and a process that still carries it, or a `__supervise` of this
//!   state directory, is leaked. Leaked processes are then killed, by pid, after their
//!   identity (start time and marker) is checked again; nothing else is ever signalled.
//!
//! Everything happens in a fresh state directory under the temp dir, removed at the end
//! unless something failed. The full-disk class ([`full_disk`]) runs after the others, in a
//! state directory of its own on a small tmpfs (skipped, and said so, where none can be
//! mounted).

mod full_disk;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::bench::{Stats, ms};

/// How big a soak to run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub tasks: usize,
    /// Client threads, each running one command of the tool at a time.
    pub parallel: usize,
    /// Tasks started before the long-running ones among them are acted on.
    pub wave: usize,
    /// Seeds the order of the classes.
    pub seed: u64,
    /// The whole soak gives up (exit 2, state directory kept) after this long.
    pub deadline: Duration,
}

impl Options {
    pub const FULL: Options = Options {
        tasks: 5_000,
        parallel: 16,
        wave: 1_000,
        seed: 1,
        deadline: Duration::from_secs(3_600),
    };
    /// A small run for CI: every class, in a few seconds.
    pub const SMOKE: Options = Options {
        tasks: 200,
        parallel: 8,
        wave: 200,
        seed: 1,
        deadline: Duration::from_secs(300),
    };
}

/// What a soak found.
#[derive(Debug)]
pub struct Report {
    pub json: Value,
    pub table: String,
    /// Nothing lost, corrupt, disagreeing, mismatched or leaked, and no error.
    pub ok: bool,
    /// The state directory, when it was kept for a look.
    pub kept: Option<PathBuf>,
}

/// A kind of task: how it is started, what is done to it, and how it must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    /// `sh -c 'exit k'`: exits by itself with its code.
    Exit,
    /// `sleep 0.x` (argv, no shell): exits 0 after a moment.
    SleepExit,
    /// A command or workdir that does not exist: `SpawnFailed`, recorded `failed`.
    SpawnFail,
    /// `sleep 1000`, stopped: killed by SIGTERM.
    Stop,
    /// Ignores SIGTERM, stopped with `grace_s` 0.2: killed by SIGKILL.
    StopTrap,
    /// Exits by itself in 0-90 ms while a `stop` comes right after `start`: exited, or
    /// killed by the stop (by SIGTERM, or with its own code if it was already exiting).
    StopRace,
    /// `sleep 0.3; exit 4`, restarted right after `start`: run 2 exits 4.
    Restart,
    /// `sleep 1000` with `timeout_s` 0.5: timed out by SIGTERM.
    Timeout,
    /// `sleep 1000 & sleep 1000` whose supervisor is SIGKILLed: `lost` at the next
    /// `status`, and nothing of its group left after it.
    Lost,
    /// Starts a `setsid` escapee, then is stopped: killed, and the escapee with it.
    Escapee,
    /// Batches of 5 `sleep 0.1; exit k` with `--concurrency 2`.
    Batch,
    /// Batches of 3 `sleep 1000` with `--concurrency 2`, stopped as a batch (some while
    /// still queued).
    BatchStop,
    /// `exit 0`, then started again as `sleep 1000` while `rm` and `prune` race the start
    /// (in a state directory of its own), then stopped: killed by SIGTERM, in its second
    /// run or (removed before the start) the first run of a fresh folder, and always the
    /// run the start answered.
    Retention,
    /// Prints a 20 MB line, then `done`, and exits 0: `wait {until: {log}}` and `events`
    /// about it answer under [`ANSWER_BOUND`] (RELIABILITY 29).
    HugeLine,
    /// `sleep 1000`, restarted by [`RESTART_RACERS`] callers at once, then stopped: every
    /// restart answers its run running, exactly one task process is left after them, and
    /// the last run ends killed by SIGTERM (RELIABILITY 32).
    RestartRace,
    /// `exit 7` with a `restart_policy` (`on: "failure"`, `max_restarts` 2, short runs,
    /// delays from 0.1 s): restarted by its supervisor twice, then `failed` with reason
    /// `restart_limit` in run 3, its exit code kept.
    CrashLoop,
    /// `exit 7` with a `restart_policy` whose first delay is 30 s, stopped while the
    /// restart is pending: `killed` (`stop`) in run 2, which never ran, and nothing left.
    CrashLoopStop,
}

/// The most bytes an answer about a huge line may take (its line is cut to 8 KiB).
const ANSWER_BOUND: usize = 1 << 20;
/// The size of the `huge_line` class's line.
const HUGE_LINE: usize = 20_000_000;
/// How many `restart`s of one task race each other in the `restart_race` class.
const RESTART_RACERS: usize = 5;

/// One allowed end of a task.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    status: &'static str,
    reason: &'static str,
    exit_code: Option<i64>,
    signal: Option<&'static str>,
    run: u64,
    /// Whether the record names a pid (the task ran).
    ran: bool,
}

const fn ended(
    status: &'static str,
    reason: &'static str,
    exit_code: Option<i64>,
    signal: Option<&'static str>,
) -> Outcome {
    Outcome {
        status,
        reason,
        exit_code,
        signal,
        run: 1,
        ran: true,
    }
}

impl Class {
    /// Each class and its share of every 100 tasks.
    const MIX: [(Class, usize); 17] = [
        (Class::Exit, 16),
        (Class::SleepExit, 10),
        (Class::SpawnFail, 3),
        (Class::Stop, 14),
        (Class::StopTrap, 6),
        (Class::StopRace, 8),
        (Class::Restart, 8),
        (Class::Timeout, 8),
        (Class::Lost, 5),
        (Class::Escapee, 6),
        (Class::Batch, 10),
        (Class::BatchStop, 6),
        (Class::Retention, 6),
        (Class::HugeLine, 2),
        (Class::RestartRace, 4),
        (Class::CrashLoop, 4),
        (Class::CrashLoopStop, 3),
    ];

    fn name(self) -> &'static str {
        match self {
            Class::Exit => "exit",
            Class::SleepExit => "sleep_exit",
            Class::SpawnFail => "spawn_fail",
            Class::Stop => "stop",
            Class::StopTrap => "stop_trap",
            Class::StopRace => "stop_race",
            Class::Restart => "restart",
            Class::Timeout => "timeout",
            Class::Lost => "lost",
            Class::Escapee => "escapee",
            Class::Batch => "batch",
            Class::BatchStop => "batch_stop",
            Class::Retention => "retention",
            Class::HugeLine => "huge_line",
            Class::RestartRace => "restart_race",
            Class::CrashLoop => "crash_loop",
            Class::CrashLoopStop => "crash_loop_stop",
        }
    }

    /// Tasks per job: batches start several at once.
    fn size(self) -> usize {
        match self {
            Class::Batch => 5,
            Class::BatchStop => 3,
            _ => 1,
        }
    }

    /// The ends a task of this class may have; `code` is its own exit code.
    fn outcomes(self, code: i64) -> Vec<Outcome> {
        match self {
            Class::Exit | Class::Batch => vec![ended("exited", "exit", Some(code), None)],
            Class::SleepExit => vec![ended("exited", "exit", Some(0), None)],
            Class::SpawnFail => vec![Outcome {
                ran: false,
                ..ended("failed", "spawn_error", None, None)
            }],
            Class::Stop | Class::Escapee => {
                vec![ended("killed", "stop", None, Some("SIGTERM"))]
            }
            Class::StopTrap => vec![ended("killed", "stop", None, Some("SIGKILL"))],
            // Stopped while already exiting, the task ends with its own code after the stop:
            // `killed` by the stop, with that code and no signal, as a task that exits
            // gracefully on SIGTERM is.
            Class::StopRace => vec![
                ended("exited", "exit", Some(5), None),
                ended("killed", "stop", None, Some("SIGTERM")),
                ended("killed", "stop", Some(5), None),
            ],
            Class::Restart => vec![Outcome {
                run: 2,
                ..ended("exited", "exit", Some(4), None)
            }],
            Class::Timeout => vec![ended("timed_out", "timeout", None, Some("SIGTERM"))],
            Class::Lost => vec![ended("lost", "supervisor_lost", None, None)],
            Class::BatchStop => vec![
                ended("killed", "stop", None, Some("SIGTERM")),
                Outcome {
                    ran: false,
                    ..ended("killed", "stop", None, None)
                },
            ],
            Class::Retention => vec![
                Outcome {
                    run: 2,
                    ..ended("killed", "stop", None, Some("SIGTERM"))
                },
                ended("killed", "stop", None, Some("SIGTERM")),
            ],
            Class::HugeLine => vec![ended("exited", "exit", Some(0), None)],
            // Each restart that acted makes a run: two to all of them (some may find the
            // run another one just started, and answer it).
            Class::RestartRace => (2..=1 + RESTART_RACERS as u64)
                .map(|run| Outcome {
                    run,
                    ..ended("killed", "stop", None, Some("SIGTERM"))
                })
                .collect(),
            Class::CrashLoop => vec![Outcome {
                run: 3,
                ..ended("failed", "restart_limit", Some(7), None)
            }],
            // Stopped once the restart is pending, as planned; or, on a machine too slow
            // for the wait, while run 1 still ran or as it exited (then never restarted).
            Class::CrashLoopStop => vec![
                Outcome {
                    run: 2,
                    ran: false,
                    ..ended("killed", "stop", None, None)
                },
                ended("killed", "stop", None, Some("SIGTERM")),
                ended("exited", "exit", Some(7), None),
            ],
        }
    }
}

impl Outcome {
    fn matches(&self, record: &Value) -> bool {
        record["status"] == self.status
            && record["reason"] == self.reason
            && record["exit_code"].as_i64() == self.exit_code
            && record["signal"].as_str() == self.signal
            && record["run"].as_u64() == Some(self.run)
            && record["pid"].is_i64() == self.ran
    }

    fn describe(&self) -> String {
        let mut text = format!("{} ({})", self.status, self.reason);
        if let Some(code) = self.exit_code {
            let _ = write!(text, " code {code}");
        }
        if let Some(signal) = self.signal {
            let _ = write!(text, " {signal}");
        }
        if self.run != 1 {
            let _ = write!(text, " run {}", self.run);
        }
        if !self.ran {
            text.push_str(" never ran");
        }
        text
    }
}

/// One task of the plan.
#[derive(Debug)]
struct Planned {
    id: String,
    class: Class,
    /// The exit code it chooses, for classes that exit by themselves.
    code: i64,
}

/// One start: a task, or a batch of them.
#[derive(Debug)]
struct Job {
    class: Class,
    tasks: Range<usize>,
}

/// The tasks, in a shuffled but reproducible order of classes.
fn plan(options: &Options) -> (Vec<Planned>, Vec<Job>) {
    let mut pattern: Vec<Class> = Class::MIX
        .iter()
        .flat_map(|&(class, share)| {
            // A batch of `size` tasks takes `size` shares.
            std::iter::repeat_n(class, share.div_ceil(class.size()))
        })
        .collect();
    let mut rng = options.seed.max(1);
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut planned, mut jobs) = (Vec::new(), Vec::new());
    while planned.len() < options.tasks {
        // Fisher-Yates over each round of the pattern.
        for i in (1..pattern.len()).rev() {
            pattern.swap(i, (next() % (i as u64 + 1)) as usize);
        }
        for &class in &pattern {
            let first = planned.len();
            let size = class.size().min(options.tasks - first);
            if size == 0 {
                break;
            }
            for n in first..first + size {
                planned.push(Planned {
                    id: format!("{}-{n:05}", class.name().replace('_', "-")),
                    class,
                    code: match class {
                        Class::Exit => (n % 256) as i64,
                        Class::Batch => (n % 7) as i64,
                        _ => 0,
                    },
                });
            }
            jobs.push(Job {
                class,
                tasks: first..first + size,
            });
        }
    }
    (planned, jobs)
}

/// What went wrong, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// A command failed that should not have (or succeeded where it should have failed).
    Error,
    /// A `task.json` that does not parse, is missing, or is not terminal.
    Corrupt,
    /// `wait`, `status` or `list` said something else than the record.
    Disagree,
    /// The record is not what the task's class must end as.
    Mismatch,
    /// `lost` outside the `lost` class.
    Lost,
    /// A process left behind.
    Leak,
    /// A temp file left in the state directory.
    TempFile,
}

impl Kind {
    const ALL: [Kind; 7] = [
        Kind::Lost,
        Kind::Corrupt,
        Kind::Disagree,
        Kind::Mismatch,
        Kind::Leak,
        Kind::Error,
        Kind::TempFile,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Error => "errors",
            Kind::Corrupt => "corrupt",
            Kind::Disagree => "disagree",
            Kind::Mismatch => "mismatched",
            Kind::Lost => "lost",
            Kind::Leak => "leaked",
            Kind::TempFile => "temp_files",
        }
    }
}

#[derive(Debug)]
struct Problem {
    kind: Kind,
    /// The task (or process) it is about.
    subject: String,
    message: String,
}

/// An answer of the tool: the envelope's `data`, or its `error`.
#[derive(Debug)]
struct Answer {
    ok: bool,
    body: Value,
    ms: f64,
    /// Bytes printed (stdout and stderr).
    bytes: usize,
}

impl Answer {
    fn error_text(&self) -> String {
        if self.ok {
            return format!("unexpected success: {}", self.body);
        }
        format!(
            "{}: {}",
            self.body["type"].as_str().unwrap_or("?"),
            self.body["message"].as_str().unwrap_or_default()
        )
    }
}

/// Seconds spent in each phase: starting the waves, acting on them, waiting for every
/// task, checking.
#[derive(Debug, Default)]
struct Phases {
    start: f64,
    act: f64,
    wait: f64,
    check: f64,
}

/// Shared by every client thread.
struct Soak {
    bin: PathBuf,
    state: PathBuf,
    /// The `retention` class's own state directory.
    retention_state: PathBuf,
    work: PathBuf,
    home: PathBuf,
    /// `BG_SOAK_MARK`'s value: every process of this soak carries it.
    mark: String,
    parallel: usize,
    planned: Vec<Planned>,
    problems: Mutex<Vec<Problem>>,
    /// Milliseconds of each single `start`, until its answer.
    start_ms: Mutex<Vec<f64>>,
    /// Milliseconds of each `stop` of a task that ignores SIGTERM (grace 0.2 s).
    trap_stop_ms: Mutex<Vec<f64>>,
    /// Set once every wave has been started and acted on.
    waves_done: AtomicBool,
    /// `list` calls made while the waves ran.
    lists_meanwhile: AtomicUsize,
    /// `stop.json` files found in task folders (none may be: `stop` writes none).
    stop_requests_left: AtomicUsize,
    /// How many tasks of each class ended in each of its outcomes.
    ends: Mutex<BTreeMap<Class, Vec<usize>>>,
    /// The `retention` class's runs answered `running`, by id: (run, pid).
    retention_runs: Mutex<BTreeMap<String, (Value, Value)>>,
    /// What the `retention` class's racing `rm`, `prune` and `start` did.
    retention: RetentionTally,
    /// The largest answer about a `huge_line` task, in bytes.
    huge_answer_bytes: AtomicUsize,
    /// Milliseconds of each racing `restart` of the `restart_race` class.
    restart_race_ms: Mutex<Vec<f64>>,
    /// Milliseconds of each `stop` of a `crash_loop_stop` task.
    pending_stop_ms: Mutex<Vec<f64>>,
    /// Racing restarts that answered that another racer's newer run began first.
    restarts_outrun: AtomicUsize,
}

/// What the racing callers of the `retention` class did.
#[derive(Debug, Default)]
struct RetentionTally {
    rm_removed: AtomicUsize,
    rm_refused: AtomicUsize,
    pruned: AtomicUsize,
    prune_skipped: AtomicUsize,
    /// Starts that answered run 1: they carried on in a fresh folder after a removal.
    fresh_starts: AtomicUsize,
    restarted_runs: AtomicUsize,
    /// First runs whose `start --wait` answered that another class member's `prune`
    /// removed the ended run before its end was read (`details.removed_meanwhile`).
    first_runs_removed: AtomicUsize,
}

pub fn run(bin: PathBuf, options: Options) -> Result<Report> {
    let scratch = std::env::temp_dir().join(format!("bt-soak-{}", std::process::id()));
    fs::create_dir_all(&scratch)?;
    fs::set_permissions(&scratch, fs::Permissions::from_mode(0o700))?;
    let (work, home) = (scratch.join("work"), scratch.join("home"));
    fs::create_dir_all(&work)?;
    fs::create_dir_all(&home)?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let (planned, jobs) = plan(&options);
    let soak = Soak {
        bin,
        state: scratch.join("state"),
        retention_state: scratch.join("state-retention"),
        work,
        home,
        mark: format!("{:016x}", nanos ^ (u64::from(std::process::id()) << 40)),
        parallel: options.parallel.max(1),
        planned,
        problems: Mutex::new(Vec::new()),
        start_ms: Mutex::new(Vec::new()),
        trap_stop_ms: Mutex::new(Vec::new()),
        waves_done: AtomicBool::new(false),
        lists_meanwhile: AtomicUsize::new(0),
        stop_requests_left: AtomicUsize::new(0),
        ends: Mutex::new(BTreeMap::new()),
        retention_runs: Mutex::new(BTreeMap::new()),
        retention: RetentionTally::default(),
        huge_answer_bytes: AtomicUsize::new(0),
        restart_race_ms: Mutex::new(Vec::new()),
        pending_stop_ms: Mutex::new(Vec::new()),
        restarts_outrun: AtomicUsize::new(0),
    };
    eprintln!(
        "soak: {} tasks, {} callers, waves of {}, state dir {}",
        soak.planned.len(),
        soak.parallel,
        options.wave,
        soak.state.display()
    );

    let done = AtomicBool::new(false);
    let peak = AtomicUsize::new(0);
    let started = Instant::now();
    let mut phases = Phases::default();
    let driven = std::thread::scope(|scope| {
        scope.spawn(|| watchdog(&done, options.deadline, &scratch));
        scope.spawn(|| count_supervisors(&soak, &done, &peak));
        scope.spawn(|| soak.read_while_acting());
        let result = soak.drive(&jobs, options.wave, &mut phases);
        soak.waves_done.store(true, Ordering::Relaxed);
        done.store(true, Ordering::Relaxed);
        result
    });
    // A task's end on a full disk: a state directory of its own, on a small tmpfs.
    let disk = driven
        .is_ok()
        .then(|| full_disk::run(&soak, options.tasks, &scratch));
    // Whatever happened, nothing of ours may run on.
    let leaks = soak.check_processes() + disk.as_ref().map_or(0, |d| d.leaked);
    driven.with_context(|| format!("state kept in {}", scratch.display()))?;
    let wall = started.elapsed();
    phases.check = wall.as_secs_f64() - phases.start - phases.act - phases.wait;

    let disk_line = disk.as_ref().map(|d| d.line.as_str());
    let (mut json, ok, table) = soak.report(
        &options,
        wall,
        &phases,
        peak.load(Ordering::Relaxed),
        leaks,
        disk_line,
    );
    json["full_disk"] = disk.map_or(Value::Null, |d| d.json);
    let kept = if ok {
        let _ = fs::remove_dir_all(&scratch);
        None
    } else {
        Some(scratch)
    };
    json["kept"] = json!(kept);
    Ok(Report {
        json,
        table,
        ok,
        kept,
    })
}

/// Ends the soak if it runs past its deadline: something hangs.
fn watchdog(done: &AtomicBool, deadline: Duration, scratch: &Path) {
    let until = Instant::now() + deadline;
    while !done.load(Ordering::Relaxed) {
        if Instant::now() >= until {
            eprintln!(
                "soak: gave up after {deadline:?}: something hangs; state kept in {}",
                scratch.display()
            );
            std::process::exit(2);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Samples how many of this soak's supervisors are alive, for the report's peak.
fn count_supervisors(soak: &Soak, done: &AtomicBool, peak: &AtomicUsize) {
    while !done.load(Ordering::Relaxed) {
        let alive = processes()
            .filter(|&pid| {
                fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| "background-tasks".starts_with(c.trim_end()))
                    && soak.is_our_supervisor(pid)
            })
            .count();
        peak.fetch_max(alive, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(500));
    }
}

impl Soak {
    /// Runs the waves, then waits for every task and checks every record.
    fn drive(&self, jobs: &[Job], wave: usize, phases: &mut Phases) -> Result<()> {
        let mut first = 0;
        let mut wave_no = 0;
        while first < jobs.len() {
            let mut last = first;
            let mut count = 0;
            while last < jobs.len() && count < wave.max(1) {
                count += jobs[last].tasks.len();
                last += 1;
            }
            wave_no += 1;
            let t = Instant::now();
            self.each(&jobs[first..last], |job| self.start_job(job));
            let started = t.elapsed().as_secs_f64();
            let t = Instant::now();
            self.each(&jobs[first..last], |job| self.act(job));
            let acted = t.elapsed().as_secs_f64();
            eprintln!(
                "soak: wave {wave_no}: {count} tasks started in {started:.1} s, acted on in {acted:.1} s"
            );
            phases.start += started;
            phases.act += acted;
            first = last;
        }
        self.waves_done.store(true, Ordering::Relaxed);

        let t = Instant::now();
        let waited = Mutex::new(BTreeMap::new());
        self.each(&self.planned, |task| {
            let answer =
                self.call_for(task, &["wait", "--timeout", "120"], &json!({"id": task.id}));
            if answer.ok {
                lock(&waited).insert(task.id.clone(), answer.body["task"].clone());
            } else {
                self.problem(
                    Kind::Error,
                    &task.id,
                    format!("wait: {}", answer.error_text()),
                );
            }
        });
        phases.wait = t.elapsed().as_secs_f64();
        eprintln!("soak: every task waited for in {:.1} s", phases.wait);
        self.check_records(&waited.into_inner().unwrap_or_default())
    }

    /// Lists every task over and over while the waves run: records being written, tasks
    /// found lost (a list reconciles them too, racing the soak's own `status`), and every
    /// answer must still parse with nothing unreadable.
    fn read_while_acting(&self) {
        while !self.waves_done.load(Ordering::Relaxed) {
            let answer = self.call(&["list"], &json!({"fields": ["id", "status", "run"]}));
            self.lists_meanwhile.fetch_add(1, Ordering::Relaxed);
            if !answer.ok {
                let text = answer.error_text();
                self.problem(Kind::Error, "list", format!("list while acting: {text}"));
            } else if answer.body["unreadable"]
                .as_array()
                .is_some_and(|u| !u.is_empty())
            {
                let unreadable = &answer.body["unreadable"];
                self.problem(
                    Kind::Corrupt,
                    "list",
                    format!("list while acting: unreadable {unreadable}"),
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `f` over `items` from `parallel` threads.
    fn each<T: Sync>(&self, items: &[T], f: impl Fn(&T) + Sync) {
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..self.parallel.min(items.len()) {
                scope.spawn(|| {
                    while let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) {
                        f(item);
                    }
                });
            }
        });
    }

    fn problem(&self, kind: Kind, subject: &str, message: String) {
        lock(&self.problems).push(Problem {
            kind,
            subject: subject.to_owned(),
            message,
        });
    }

    /// Runs the tool with a sealed environment and returns its answer.
    fn call(&self, args: &[&str], payload: &Value) -> Answer {
        self.call_in(&self.state, args, payload)
    }

    /// [`Soak::call`] in the state directory of `task`'s class.
    fn call_for(&self, task: &Planned, args: &[&str], payload: &Value) -> Answer {
        self.call_in(self.state_of(&task.id), args, payload)
    }

    /// The state directory a task lives in: the `retention` class has its own.
    fn state_of(&self, id: &str) -> &Path {
        if id.starts_with("retention-") {
            &self.retention_state
        } else {
            &self.state
        }
    }

    /// Runs the tool in state directory `state`.
    fn call_in(&self, state: &Path, args: &[&str], payload: &Value) -> Answer {
        let started = Instant::now();
        let output = Command::new(&self.bin)
            .args(args)
            .arg(payload.to_string())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("BACKGROUND_TASKS_HOME", state)
            .env("BG_SOAK_MARK", &self.mark)
            .current_dir(&self.work)
            .stdin(Stdio::null())
            .output();
        let elapsed = ms(started.elapsed());
        let output = match output {
            Ok(output) => output,
            Err(e) => {
                return Answer {
                    ok: false,
                    body: json!({"type": "Spawn", "message": e.to_string()}),
                    ms: elapsed,
                    bytes: 0,
                };
            }
        };
        let bytes = output.stdout.len() + output.stderr.len();
        // A batch with a failed item answers on stdout with exit code 1.
        for stream in [&output.stdout, &output.stderr] {
            if let Ok(envelope) = serde_json::from_slice::<Value>(stream) {
                let ok = envelope["ok"] == true;
                let body = envelope[if ok { "data" } else { "error" }].clone();
                return Answer {
                    ok: ok && (output.status.success() || body["outcome"].is_string()),
                    body,
                    ms: elapsed,
                    bytes,
                };
            }
        }
        Answer {
            ok: false,
            body: json!({"type": "Unparseable", "message": format!(
                "{}; stdout {:?}; stderr {:?}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
            )}),
            ms: elapsed,
            bytes,
        }
    }

    /// The environment every task gets in its payload: the marker, and its own id.
    fn env(&self, task: &Planned) -> Value {
        json!({"BG_SOAK_MARK": self.mark, "BG_SOAK_TASK": task.id})
    }

    fn payload(&self, task: &Planned) -> Value {
        let mut payload = match task.class {
            Class::Exit => json!({"shell": format!("exit {}", task.code)}),
            Class::SleepExit => {
                json!({"command": "sleep", "args": [format!("0.{}", 1 + task.code % 5)]})
            }
            Class::SpawnFail if task.id.ends_with(['0', '2', '4', '6', '8']) => {
                json!({"command": format!("/nonexistent/{}", task.id)})
            }
            Class::SpawnFail => json!({"command": "true", "workdir": "/nonexistent"}),
            Class::Stop | Class::BatchStop => json!({"command": "sleep", "args": ["1000"]}),
            // Its first run; `retention_race` starts the second.
            Class::Retention => json!({"shell": "exit 0"}),
            Class::StopTrap => json!({
                "shell": "trap '' TERM; echo trapped; sleep 1000",
                "grace_s": 0.2,
            }),
            Class::StopRace => {
                let n = self.index(task);
                json!({"shell": format!("sleep 0.0{}; exit 5", n % 10)})
            }
            Class::Restart => json!({"shell": "sleep 0.3; exit 4"}),
            Class::Timeout => {
                json!({"command": "sleep", "args": ["1000"], "timeout_s": 0.5, "grace_s": 1})
            }
            Class::Lost => json!({"shell": "sleep 1000 & echo bg $!; sleep 1000"}),
            Class::Escapee => json!({
                "shell": "setsid sh -c 'echo escaped $$; exec sleep 1000' & sleep 1000",
            }),
            Class::Batch => json!({"shell": format!("sleep 0.1; exit {}", task.code)}),
            Class::HugeLine => json!({
                "shell": format!("head -c {HUGE_LINE} /dev/zero | tr '\\0' x; echo; echo done"),
            }),
            Class::RestartRace => json!({"command": "sleep", "args": ["1000"], "grace_s": 2}),
            Class::CrashLoop => json!({
                "shell": "exit 7",
                "restart_policy": {"on": "failure", "max_restarts": 2, "min_uptime_s": 30,
                                   "backoff": {"initial_s": 0.1, "factor": 2, "max_s": 1}},
            }),
            Class::CrashLoopStop => json!({
                "shell": "exit 7",
                "restart_policy": {"on": "failure", "min_uptime_s": 30,
                                   "backoff": {"initial_s": 30}},
            }),
        };
        payload["id"] = json!(task.id);
        payload["env"] = self.env(task);
        payload["tags"] = json!(["soak", task.class.name()]);
        payload
    }

    fn index(&self, task: &Planned) -> usize {
        task.id
            .rsplit('-')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Starts a job's tasks; a race class also gets its stop or restart at once.
    fn start_job(&self, job: &Job) {
        let tasks = &self.planned[job.tasks.clone()];
        if matches!(job.class, Class::Batch | Class::BatchStop) {
            let payload = Value::Array(tasks.iter().map(|t| self.payload(t)).collect());
            let answer = self.call(&["start", "--concurrency", "2"], &payload);
            if !answer.ok || answer.body["outcome"] != "succeeded" {
                let text = if answer.ok {
                    answer.body["results"].to_string()
                } else {
                    answer.error_text()
                };
                self.problem(Kind::Error, &tasks[0].id, format!("batch start: {text}"));
            }
            return;
        }
        let task = &tasks[0];
        if job.class == Class::Retention {
            return self.retention_race(task);
        }
        let answer = self.call(&["start"], &self.payload(task));
        if job.class == Class::SpawnFail {
            if answer.ok || answer.body["type"] != "SpawnFailed" {
                let text = answer.error_text();
                self.problem(Kind::Error, &task.id, format!("start: {text}"));
            }
            return;
        }
        if !answer.ok {
            let text = answer.error_text();
            self.problem(Kind::Error, &task.id, format!("start: {text}"));
            return;
        }
        lock(&self.start_ms).push(answer.ms);
        match job.class {
            Class::StopRace => {
                let answer = self.call(&["stop"], &json!({"id": task.id}));
                if !answer.ok {
                    let text = answer.error_text();
                    self.problem(Kind::Error, &task.id, format!("stop: {text}"));
                }
            }
            Class::Restart => {
                let answer =
                    self.call(&["restart"], &json!({"id": task.id, "env": self.env(task)}));
                if !answer.ok {
                    let text = answer.error_text();
                    self.problem(Kind::Error, &task.id, format!("restart: {text}"));
                } else if answer.body["task"]["run"] != 2 {
                    self.problem(
                        Kind::Mismatch,
                        &task.id,
                        format!("restart answered run {}", answer.body["task"]["run"]),
                    );
                }
            }
            _ => {}
        }
    }

    /// What is done to a wave's tasks once all of it has started.
    fn act(&self, job: &Job) {
        let tasks = &self.planned[job.tasks.clone()];
        match job.class {
            Class::Stop => self.stop(&tasks[0]),
            Class::StopTrap => {
                let task = &tasks[0];
                // Stopped before its trap is set, it would rightly die of SIGTERM.
                if self.until_log(task, "trapped", "^trapped$").is_some() {
                    let answer = self.call(&["stop"], &json!({"id": task.id}));
                    lock(&self.trap_stop_ms).push(answer.ms);
                    if !answer.ok {
                        let text = answer.error_text();
                        self.problem(Kind::Error, &task.id, format!("stop: {text}"));
                    }
                }
            }
            Class::Lost => self.orphan(&tasks[0]),
            Class::Retention => {
                let task = &tasks[0];
                let answer = self.call_for(task, &["stop"], &json!({"id": task.id}));
                if !answer.ok {
                    let text = answer.error_text();
                    self.problem(Kind::Error, &task.id, format!("stop: {text}"));
                }
            }
            Class::Escapee => self.stop_with_escapee(&tasks[0]),
            Class::HugeLine => self.read_huge_line(&tasks[0]),
            Class::RestartRace => self.race_restarts(&tasks[0]),
            Class::CrashLoopStop => self.stop_pending_restart(&tasks[0]),
            Class::BatchStop => {
                let payload: Vec<Value> = tasks.iter().map(|t| json!({"id": t.id})).collect();
                let answer = self.call(&["stop"], &Value::Array(payload));
                if !answer.ok || answer.body["outcome"] != "succeeded" {
                    let text = if answer.ok {
                        answer.body["results"].to_string()
                    } else {
                        answer.error_text()
                    };
                    self.problem(Kind::Error, &tasks[0].id, format!("batch stop: {text}"));
                }
            }
            _ => {}
        }
    }

    /// A `retention` task: its first run ends, then a `start` of its second run races an
    /// `rm` of the task and a `prune` of every ended task of the class (other clients'
    /// tasks included). The start must answer `running` (in a fresh folder if the removal
    /// came first) or a retryable error; `rm` may remove the ended run or find the new one
    /// running; nothing answered `running` may be removed.
    fn retention_race(&self, task: &Planned) {
        let first = self.call_for(task, &["start", "--wait"], &self.payload(task));
        if first.ok {
            lock(&self.start_ms).push(first.ms);
        } else if first.body["type"] == "TaskNotFound"
            && first.body["details"]["removed_meanwhile"] == true
        {
            // Another member's prune of every ended task won the race to its end: the
            // answer says so, and the second start goes on in a fresh folder.
            self.retention
                .first_runs_removed
                .fetch_add(1, Ordering::Relaxed);
        } else {
            let text = first.error_text();
            self.problem(Kind::Error, &task.id, format!("first run: {text}"));
            return;
        }
        let mut second = self.payload(task);
        second["shell"] = json!("sleep 1000");
        let (rm, start, prune) = std::thread::scope(|scope| {
            let rm = scope.spawn(|| self.call_for(task, &["rm"], &json!({"id": task.id})));
            let start = scope.spawn(|| self.call_for(task, &["start"], &second));
            let prune =
                scope.spawn(|| self.call_for(task, &["prune"], &json!({"status": "exited"})));
            (rm.join(), start.join(), prune.join())
        });
        let (Ok(rm), Ok(start), Ok(prune)) = (rm, start, prune) else {
            self.problem(Kind::Error, &task.id, "a racing caller panicked".into());
            return;
        };
        let tally = &self.retention;
        if rm.ok {
            tally.rm_removed.fetch_add(1, Ordering::Relaxed);
        } else if rm.body["type"] == "TaskAlreadyRunning" {
            tally.rm_refused.fetch_add(1, Ordering::Relaxed);
        } else if rm.body["type"] != "TaskNotFound" {
            let text = rm.error_text();
            self.problem(Kind::Error, &task.id, format!("rm racing a start: {text}"));
        }
        if prune.ok {
            let count = |key: &str| prune.body[key].as_array().map_or(0, Vec::len);
            tally.pruned.fetch_add(count("removed"), Ordering::Relaxed);
            tally
                .prune_skipped
                .fetch_add(count("skipped"), Ordering::Relaxed);
        } else {
            let text = prune.error_text();
            self.problem(
                Kind::Error,
                &task.id,
                format!("prune racing starts: {text}"),
            );
        }
        if !start.ok || start.body["task"]["status"] != "running" {
            let text = start.error_text();
            self.problem(
                Kind::Error,
                &task.id,
                format!("start racing rm and prune: {text}"),
            );
            return;
        }
        let run = start.body["task"]["run"].clone();
        let counter = if run == 1 {
            &tally.fresh_starts
        } else {
            &tally.restarted_runs
        };
        counter.fetch_add(1, Ordering::Relaxed);
        lock(&self.retention_runs)
            .insert(task.id.clone(), (run, start.body["task"]["pid"].clone()));
    }

    /// A `huge_line` task: the answers that carry its line stay small.
    fn read_huge_line(&self, task: &Planned) {
        let waited = self.call(
            &["wait", "--timeout", "60"],
            &json!({"id": task.id, "until": {"log": "^done$"}}),
        );
        let events = self.call(&["events"], &json!({"id": task.id}));
        for (what, answer) in [("wait until done", waited), ("events", events)] {
            self.huge_answer_bytes
                .fetch_max(answer.bytes, Ordering::Relaxed);
            if !answer.ok {
                let text = answer.error_text();
                self.problem(Kind::Error, &task.id, format!("{what}: {text}"));
            } else if answer.bytes > ANSWER_BOUND {
                self.problem(
                    Kind::Error,
                    &task.id,
                    format!("{what} answered {} bytes about a 20 MB line", answer.bytes),
                );
            }
        }
    }

    /// A `crash_loop_stop` task: once its restart is pending (`status` says when it
    /// starts; up to 10 s of looking), `stop` must end it at once, not after the delay.
    fn stop_pending_restart(&self, task: &Planned) {
        let id = json!({"id": task.id});
        for _ in 0..200 {
            let answer = self.call(&["status"], &id);
            if !answer.ok || answer.body["task"]["next_restart_at_ms"].is_i64() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50)); // bounded: 200 looks
        }
        let answer = self.call(&["stop"], &id);
        lock(&self.pending_stop_ms).push(answer.ms);
        if !answer.ok {
            let text = answer.error_text();
            self.problem(
                Kind::Error,
                &task.id,
                format!("stop of a pending restart: {text}"),
            );
        } else if answer.ms > 20_000.0 {
            self.problem(
                Kind::Error,
                &task.id,
                format!("stop of a pending restart took {} ms", answer.ms),
            );
        }
    }

    /// A `restart_race` task: [`RESTART_RACERS`] restarts at once each answer a run
    /// running, one task process is left, and it is stopped.
    fn race_restarts(&self, task: &Planned) {
        let payload = json!({"id": task.id, "env": self.env(task)});
        let answers: Vec<Answer> = std::thread::scope(|scope| {
            let racers: Vec<_> = (0..RESTART_RACERS)
                .map(|_| scope.spawn(|| self.call(&["restart"], &payload)))
                .collect();
            racers.into_iter().filter_map(|r| r.join().ok()).collect()
        });
        for answer in &answers {
            lock(&self.restart_race_ms).push(answer.ms);
            let hint = answer.body["details"]["hint"].as_str().unwrap_or_default();
            if !answer.ok
                && answer.body["type"] == "TaskAlreadyRunning"
                && hint.starts_with("Another start or restart began a newer run")
            {
                // It stopped the run it found, and another racer's run began before its
                // own could: that run is answered as it is, and left running.
                self.restarts_outrun.fetch_add(1, Ordering::Relaxed);
            } else if !answer.ok {
                let text = answer.error_text();
                self.problem(Kind::Error, &task.id, format!("racing restart: {text}"));
            } else if answer.body["task"]["status"] != "running" {
                self.problem(
                    Kind::Mismatch,
                    &task.id,
                    format!("racing restart answered {}", answer.body["task"]["status"]),
                );
            }
        }
        // Whatever the order, one run is left, and with it one task process (the stopped
        // runs' processes are gone once their restarts answered).
        let entry = format!("BG_SOAK_TASK={}", task.id);
        let left: Vec<i32> = processes()
            .filter(|&pid| {
                environ_has(pid, entry.as_bytes())
                    && !self.is_our_supervisor(pid)
                    && proc_stat(pid).is_some_and(|s| s.state != b'Z')
            })
            .collect();
        if left.len() != 1 {
            self.problem(
                Kind::Leak,
                &task.id,
                format!(
                    "{} task processes after racing restarts: {left:?}",
                    left.len()
                ),
            );
        }
        self.stop(task);
    }

    fn stop(&self, task: &Planned) {
        let answer = self.call(&["stop"], &json!({"id": task.id}));
        if !answer.ok {
            let text = answer.error_text();
            self.problem(Kind::Error, &task.id, format!("stop: {text}"));
        }
    }

    /// Waits (with `wait {until: {log}}`) until the task printed a line that starts with
    /// `word` and matches `regex`, and returns that line.
    fn until_log(&self, task: &Planned, word: &str, regex: &str) -> Option<String> {
        let payload = json!({"id": task.id, "until": {"log": regex}});
        let answer = self.call(&["wait", "--timeout", "30"], &payload);
        if !answer.ok {
            let text = answer.error_text();
            self.problem(Kind::Error, &task.id, format!("wait until {regex}: {text}"));
            return None;
        }
        let log = fs::read_to_string(self.task_dir(&task.id).join("output.log")).ok()?;
        log.lines()
            .find(|line| line.starts_with(word))
            .map(str::to_owned)
    }

    /// The process a task printed as `<word> <pid>`, with its start time.
    fn printed_process(&self, task: &Planned, word: &str) -> Option<(i32, u64)> {
        let line = self.until_log(task, word, &format!("^{word} [0-9]+$"))?;
        let pid = line.split(' ').nth(1)?.parse().ok()?;
        let Some(stat) = proc_stat(pid) else {
            self.problem(
                Kind::Error,
                &task.id,
                format!("{line:?}: no such process any more"),
            );
            return None;
        };
        Some((pid, stat.start_ticks))
    }

    /// SIGKILLs the task's supervisor: the next `status` must say `lost`, and after it
    /// nothing of the task's group may be left.
    fn orphan(&self, task: &Planned) {
        let Some(background) = self.printed_process(task, "bg") else {
            return;
        };
        let Some(record) = self.record(&task.id) else {
            self.problem(Kind::Corrupt, &task.id, "no readable task.json".into());
            return;
        };
        let supervisor = record["supervisor_pid"].as_i64().unwrap_or(0) as i32;
        let supervisor_start = record["supervisor_start_ticks"].as_u64();
        let leader = record["pid"].as_i64().unwrap_or(0) as i32;
        let leader_start = record["pid_start_ticks"].as_u64();
        let Some(supervisor_start) = supervisor_start.filter(|&start| {
            self.is_our_supervisor(supervisor)
                && proc_stat(supervisor).is_some_and(|s| s.start_ticks == start)
        }) else {
            self.problem(
                Kind::Error,
                &task.id,
                format!("supervisor {supervisor} is not the live __supervise the record names"),
            );
            return;
        };
        send_sigkill(supervisor);
        if !until(Duration::from_secs(10), || {
            is_gone(supervisor, supervisor_start)
        }) {
            self.problem(
                Kind::Error,
                &task.id,
                format!("supervisor {supervisor} survived SIGKILL for 10 s"),
            );
            return;
        }
        let answer = self.call(&["status"], &json!({"id": task.id}));
        if !answer.ok || answer.body["status"] != "lost" {
            let said = if answer.ok {
                answer.body["status"].to_string()
            } else {
                answer.error_text()
            };
            self.problem(
                Kind::Mismatch,
                &task.id,
                format!("status right after its supervisor was SIGKILLed: {said}"),
            );
        }
        let group = [
            (leader, leader_start.unwrap_or(0)),
            (background.0, background.1),
        ];
        // SIGKILL is sent by that status; the kernel needs a moment to end them.
        if !until(Duration::from_secs(5), || {
            group.iter().all(|&(pid, start)| is_gone(pid, start))
        }) {
            self.problem(
                Kind::Mismatch,
                &task.id,
                format!("its group outlived the status that found it lost: {group:?} (pid, start)"),
            );
        }
    }

    /// Stops a task whose escapee (another session) is running: the escapee must be gone
    /// by the time `stop` answers.
    fn stop_with_escapee(&self, task: &Planned) {
        let Some((pid, start)) = self.printed_process(task, "escaped") else {
            return;
        };
        self.stop(task);
        if !is_gone(pid, start) {
            let later = until(Duration::from_secs(5), || is_gone(pid, start));
            self.problem(
                Kind::Mismatch,
                &task.id,
                format!(
                    "escapee {pid} alive when stop answered ({})",
                    if later {
                        "gone within 5 s"
                    } else {
                        "still alive 5 s later"
                    }
                ),
            );
        }
    }

    fn task_dir(&self, id: &str) -> PathBuf {
        self.state_of(id).join("tasks").join(id)
    }

    fn record(&self, id: &str) -> Option<Value> {
        let bytes = fs::read(self.task_dir(id).join("task.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Whether `pid` is a `__supervise` of this soak's state directory.
    fn is_our_supervisor(&self, pid: i32) -> bool {
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        cmdline.split(|&b| b == 0).any(|arg| arg == b"__supervise")
            && [&self.state, &self.retention_state]
                .into_iter()
                .any(|state| {
                    environ_has(
                        pid,
                        format!("BACKGROUND_TASKS_HOME={}", state.display()).as_bytes(),
                    )
                })
    }

    /// Reads every record and checks it against `wait`, `status`, `list` and its class.
    fn check_records(&self, waited: &BTreeMap<String, Value>) -> Result<()> {
        let statuses = Mutex::new(BTreeMap::new());
        self.each(&self.planned, |task| {
            let answer = self.call_for(task, &["status"], &json!({"id": task.id}));
            if answer.ok {
                lock(&statuses).insert(task.id.clone(), answer.body["task"].clone());
            } else {
                self.problem(
                    Kind::Error,
                    &task.id,
                    format!("status: {}", answer.error_text()),
                );
            }
        });
        let statuses = statuses.into_inner().unwrap_or_default();
        let states = [&self.state, &self.retention_state];
        let mut listed: BTreeMap<String, Value> = BTreeMap::new();
        let mut total = 0;
        for state in states {
            let list = self.call_in(state, &["list"], &json!({}));
            if !list.ok {
                self.problem(Kind::Error, "list", list.error_text());
            }
            total += list.body["total"].as_u64().unwrap_or(0);
            if list.body["unreadable"]
                .as_array()
                .is_some_and(|u| !u.is_empty())
            {
                self.problem(
                    Kind::Corrupt,
                    "list",
                    format!("unreadable: {}", list.body["unreadable"]),
                );
            }
            listed.extend(
                list.body["tasks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| Some((t["id"].as_str()?.to_owned(), t.clone()))),
            );
        }
        if total != self.planned.len() as u64 {
            self.problem(
                Kind::Error,
                "list",
                format!("total {total} for {} tasks", self.planned.len()),
            );
        }

        let planned: BTreeSet<&str> = self.planned.iter().map(|t| t.id.as_str()).collect();
        for state in states {
            let Ok(entries) = fs::read_dir(state.join("tasks")) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(".removed.") {
                    self.problem(Kind::Error, &name, "a removed task's folder left".into());
                } else if !planned.contains(name.as_str()) {
                    self.problem(Kind::Error, &name, "a task folder nobody started".into());
                }
            }
        }
        let answered = lock(&self.retention_runs).clone();
        for task in &self.planned {
            let path = self.task_dir(&task.id).join("task.json");
            let record = match fs::read(&path)
                .context("read")
                .and_then(|bytes| Ok(serde_json::from_slice::<Value>(&bytes)?))
            {
                Ok(record) => record,
                Err(e) => {
                    self.problem(Kind::Corrupt, &task.id, format!("task.json: {e:#}"));
                    continue;
                }
            };
            if let Err(why) = valid_record(&record, &task.id) {
                self.problem(Kind::Corrupt, &task.id, why);
                continue;
            }
            for (source, answers) in [("wait", waited), ("status", &statuses), ("list", &listed)] {
                match answers.get(&task.id) {
                    Some(answer) => {
                        if let Some(field) = disagreement(&record, answer) {
                            self.problem(
                                Kind::Disagree,
                                &task.id,
                                format!(
                                    "{source} says {field} {}, task.json {}",
                                    answer[field], record[field]
                                ),
                            );
                        }
                    }
                    // `wait` and `status` failures are already errors.
                    None if source == "list" => {
                        self.problem(Kind::Disagree, &task.id, "not listed".into())
                    }
                    None => {}
                }
            }
            let outcomes = task.class.outcomes(task.code);
            if let Some(i) = outcomes.iter().position(|o| o.matches(&record)) {
                let mut ends = lock(&self.ends);
                ends.entry(task.class)
                    .or_insert_with(|| vec![0; outcomes.len()])[i] += 1;
            } else {
                let expected: Vec<String> = outcomes.iter().map(Outcome::describe).collect();
                self.problem(
                    Kind::Mismatch,
                    &task.id,
                    format!(
                        "expected {}; task.json: status {} reason {} exit_code {} signal {} run {} pid {} error {}",
                        expected.join(" or "),
                        record["status"],
                        record["reason"],
                        record["exit_code"],
                        record["signal"],
                        record["run"],
                        record["pid"],
                        record["error"],
                    ),
                );
            }
            if record["status"] == "lost" && task.class != Class::Lost {
                self.problem(Kind::Lost, &task.id, format!("lost: {}", record["error"]));
            }
            // The run a racing start answered `running` is the run that was stopped: it was
            // neither removed nor replaced.
            if let Some((run, pid)) = answered.get(&task.id)
                && (&record["run"] != run || &record["pid"] != pid)
            {
                self.problem(
                    Kind::Lost,
                    &task.id,
                    format!(
                        "start answered run {run} pid {pid} running; the record is run {} pid {}",
                        record["run"], record["pid"]
                    ),
                );
            }
        }
        for path in states.into_iter().flat_map(|state| files_under(state)) {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            match name.as_deref() {
                Some(n) if n.starts_with('.') && n.contains(".tmp.") => {
                    self.problem(Kind::TempFile, &path.display().to_string(), "left".into());
                }
                // `stop` sends its request in the signal: no file may appear (RELIABILITY 32).
                Some("stop.json") => {
                    self.stop_requests_left.fetch_add(1, Ordering::Relaxed);
                    self.problem(
                        Kind::Error,
                        &path.display().to_string(),
                        "a stop.json".into(),
                    );
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Finds every process this soak left, then kills them, by pid, after checking each
    /// is still the process found. Returns how many there were.
    fn check_processes(&self) -> usize {
        let marker = format!("BG_SOAK_MARK={}", self.mark);
        let me = std::process::id() as i32;
        let leaked: Vec<(i32, u64)> = processes()
            .filter(|&pid| pid != me)
            .filter(|&pid| environ_has(pid, marker.as_bytes()) || self.is_our_supervisor(pid))
            .filter_map(|pid| Some((pid, proc_stat(pid)?.start_ticks)))
            .collect();
        for &(pid, start) in &leaked {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .unwrap_or_default();
            let task = task_of(pid);
            self.problem(
                Kind::Leak,
                &format!("pid {pid}"),
                format!("{} (task {task})", cmdline.trim_end()),
            );
            let same = proc_stat(pid).is_some_and(|s| s.start_ticks == start && s.state != b'Z')
                && (environ_has(pid, marker.as_bytes()) || self.is_our_supervisor(pid));
            if same {
                send_sigkill(pid);
            }
        }
        leaked.len()
    }

    /// The figures, the table and whether the soak passed.
    fn report(
        &self,
        options: &Options,
        wall: Duration,
        phases: &Phases,
        peak_supervisors: usize,
        leaked_processes: usize,
        full_disk: Option<&str>,
    ) -> (Value, bool, String) {
        let problems = lock(&self.problems);
        let count = |kind: Kind| -> usize {
            let subjects: BTreeSet<&str> = problems
                .iter()
                .filter(|p| p.kind == kind)
                .map(|p| p.subject.as_str())
                .collect();
            match kind {
                Kind::Error => problems.iter().filter(|p| p.kind == kind).count(),
                Kind::Leak => leaked_processes,
                _ => subjects.len(),
            }
        };
        let counts: BTreeMap<&str, usize> =
            Kind::ALL.iter().map(|&k| (k.name(), count(k))).collect();
        let ok = counts.values().all(|&n| n == 0);
        let mut per_class: BTreeMap<Class, usize> = BTreeMap::new();
        for task in &self.planned {
            *per_class.entry(task.class).or_default() += 1;
        }
        let start = Stats::new(lock(&self.start_ms).clone());
        let trap = Stats::new(lock(&self.trap_stop_ms).clone());

        let mut table = String::new();
        let _ = writeln!(
            table,
            "soak: {} tasks from {} callers in waves of {} (seed {})",
            self.planned.len(),
            self.parallel,
            options.wave,
            options.seed
        );
        let _ = writeln!(
            table,
            "{:<12} {:>6}  must end as (how many did)",
            "class", "tasks"
        );
        let counted = lock(&self.ends);
        for (class, n) in &per_class {
            let tally = counted.get(class);
            let ends: Vec<String> = class
                .outcomes(0)
                .iter()
                .enumerate()
                .map(|(i, o)| {
                    let seen = tally.map_or(0, |t| t[i]);
                    format!("{} ({seen})", o.describe())
                })
                .collect();
            let mut ends = ends.join(" | ");
            if matches!(class, Class::Exit | Class::Batch) {
                ends = ends.replace("code 0", "code k");
            }
            let _ = writeln!(table, "{:<12} {:>6}  {ends}", class.name(), n);
        }
        let phase_text = format!(
            "start {:.1} s, act {:.1} s, wait {:.1} s, check {:.1} s",
            phases.start, phases.act, phases.wait, phases.check
        );
        let _ = writeln!(
            table,
            "wall time          {:.1} s ({})",
            wall.as_secs_f64(),
            phase_text
        );
        let _ = writeln!(
            table,
            "start latency      p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms ({} single starts)",
            start.median(),
            start.pct(0.99),
            start.pct(1.0),
            start.samples.len()
        );
        let _ = writeln!(
            table,
            "stop of a TERM-ignoring task (grace 0.2 s): p50 {:.0} ms, max {:.0} ms",
            trap.median(),
            trap.pct(1.0)
        );
        let _ = writeln!(table, "peak supervisors   {peak_supervisors}");
        let racing = Stats::new(lock(&self.restart_race_ms).clone());
        let _ = writeln!(
            table,
            "racing restarts    {} answers ({} at once per task), {} of them outrun by a newer run: p50 {:.0} ms, max {:.0} ms",
            racing.samples.len(),
            RESTART_RACERS,
            self.restarts_outrun.load(Ordering::Relaxed),
            racing.median(),
            racing.pct(1.0)
        );
        let _ = writeln!(
            table,
            "huge lines         largest answer about a {} MB line: {} bytes (bound {})",
            HUGE_LINE / 1_000_000,
            self.huge_answer_bytes.load(Ordering::Relaxed),
            ANSWER_BOUND
        );
        let tally = &self.retention;
        let n = |count: &AtomicUsize| count.load(Ordering::Relaxed);
        let _ = writeln!(
            table,
            "retention races    first runs removed before their end was read {}; rm removed {} (refused {}), prune removed {} (skipped {}); starts: {} in a fresh folder, {} as run 2",
            n(&tally.first_runs_removed),
            n(&tally.rm_removed),
            n(&tally.rm_refused),
            n(&tally.pruned),
            n(&tally.prune_skipped),
            n(&tally.fresh_starts),
            n(&tally.restarted_runs)
        );
        let lists = self.lists_meanwhile.load(Ordering::Relaxed);
        let _ = writeln!(table, "lists meanwhile    {lists}");
        let stop_requests = self.stop_requests_left.load(Ordering::Relaxed);
        let _ = writeln!(
            table,
            "stop.json left     {stop_requests} (stop asks through the signal: must be 0)"
        );
        if let Some(line) = full_disk {
            let _ = writeln!(table, "{line}");
        }
        for kind in Kind::ALL {
            let _ = writeln!(table, "{:<18} {}", kind.name(), counts[kind.name()]);
        }
        let _ = writeln!(
            table,
            "result             {}",
            if ok { "PASS" } else { "FAIL" }
        );
        for kind in Kind::ALL {
            for problem in problems.iter().filter(|p| p.kind == kind).take(5) {
                let _ = writeln!(
                    table,
                    "  {}: {}: {}",
                    kind.name(),
                    problem.subject,
                    problem.message
                );
            }
        }

        let examples: BTreeMap<&str, Vec<Value>> = Kind::ALL
            .iter()
            .map(|&kind| {
                let first = problems
                    .iter()
                    .filter(|p| p.kind == kind)
                    .take(20)
                    .map(|p| json!({"subject": p.subject, "message": p.message}))
                    .collect();
                (kind.name(), first)
            })
            .collect();
        let json = json!({
            "format": "background-tasks-soak/v1",
            "machine": {
                "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
                "kernel": fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
            },
            "tasks": self.planned.len(),
            "parallel": self.parallel,
            "wave": options.wave,
            "seed": options.seed,
            "classes": per_class.iter().map(|(c, n)| (c.name(), json!({
                "tasks": n,
                "ends": c.outcomes(0).iter().enumerate().map(|(i, o)| json!({
                    "outcome": o.describe(),
                    "count": counted.get(c).map_or(0, |t| t[i]),
                })).collect::<Vec<_>>(),
            }))).collect::<BTreeMap<_, _>>(),
            "wall_s": wall.as_secs_f64(),
            "phases_s": {"start": phases.start, "act": phases.act, "wait": phases.wait,
                         "check": phases.check},
            "start_latency_ms": {"runs": start.samples.len(), "p50": start.median(),
                                  "p99": start.pct(0.99), "max": start.pct(1.0)},
            "trap_stop_ms": {"runs": trap.samples.len(), "p50": trap.median(), "max": trap.pct(1.0)},
            "peak_supervisors": peak_supervisors,
            "restart_race_ms": {"runs": lock(&self.restart_race_ms).len(),
                                "max": Stats::new(lock(&self.restart_race_ms).clone()).pct(1.0)},
            "pending_restart_stop_ms": {"runs": lock(&self.pending_stop_ms).len(),
                                        "max": Stats::new(lock(&self.pending_stop_ms).clone()).pct(1.0)},
            "huge_line_largest_answer_bytes": self.huge_answer_bytes.load(Ordering::Relaxed),
            "retention": {
                "rm_removed": self.retention.rm_removed.load(Ordering::Relaxed),
                "rm_refused": self.retention.rm_refused.load(Ordering::Relaxed),
                "pruned": self.retention.pruned.load(Ordering::Relaxed),
                "prune_skipped": self.retention.prune_skipped.load(Ordering::Relaxed),
                "fresh_starts": self.retention.fresh_starts.load(Ordering::Relaxed),
                "second_runs": self.retention.restarted_runs.load(Ordering::Relaxed),
                "first_runs_removed": self.retention.first_runs_removed.load(Ordering::Relaxed),
            },
            "lists_meanwhile": self.lists_meanwhile.load(Ordering::Relaxed),
            "stop_requests_left": self.stop_requests_left.load(Ordering::Relaxed),
            "counts": counts,
            "examples": examples,
            "ok": ok,
        });
        (json, ok, table)
    }
}

/// A record must be terminal and say who it is.
fn valid_record(record: &Value, id: &str) -> Result<(), String> {
    const TERMINAL: [&str; 5] = ["exited", "killed", "timed_out", "failed", "lost"];
    if record["format_version"] != 1 {
        return Err(format!("format_version {}", record["format_version"]));
    }
    if record["id"] != id {
        return Err(format!("id {} in the folder of {id}", record["id"]));
    }
    if !record["status"]
        .as_str()
        .is_some_and(|s| TERMINAL.contains(&s))
    {
        return Err(format!("status {} after wait", record["status"]));
    }
    if !record["ended_at_ms"].is_i64() || !record["run"].is_u64() {
        return Err("no ended_at_ms or run".into());
    }
    Ok(())
}

/// The first field in which an answer's task differs from the record.
fn disagreement(record: &Value, answer: &Value) -> Option<&'static str> {
    [
        "status",
        "run",
        "pid",
        "pgid",
        "exit_code",
        "signal",
        "reason",
        "core_dumped",
    ]
    .into_iter()
    .find(|&field| record[field] != answer[field])
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Polls `condition` until it holds or `limit` passes.
fn until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every pid in /proc.
fn processes() -> impl Iterator<Item = i32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
}

#[derive(Debug)]
struct ProcStat {
    state: u8,
    start_ticks: u64,
}

fn proc_stat(pid: i32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces and parentheses: state is
    // field 3, start time field 22.
    let rest: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    Some(ProcStat {
        state: *rest.first()?.as_bytes().first()?,
        start_ticks: rest.get(19)?.parse().ok()?,
    })
}

/// Whether the process that had `pid` and `start_ticks` has ended (a zombie has).
fn is_gone(pid: i32, start_ticks: u64) -> bool {
    proc_stat(pid).is_none_or(|s| s.start_ticks != start_ticks || s.state == b'Z')
}

fn environ_has(pid: i32, entry: &[u8]) -> bool {
    fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|&b| b == 0).any(|e| e == entry))
}

/// The `BG_SOAK_TASK` of a process, if it has one.
fn task_of(pid: i32) -> String {
    fs::read(format!("/proc/{pid}/environ"))
        .ok()
        .and_then(|env| {
            env.split(|&b| b == 0)
                .find_map(|e| e.strip_prefix(b"BG_SOAK_TASK=").map(<[u8]>::to_vec))
        })
        .map_or_else(|| "?".into(), |v| String::from_utf8_lossy(&v).into_owned())
}

fn send_sigkill(pid: i32) {
    if pid > 1 {
        // SAFETY: kill has no memory effects; the pid was checked to be ours just before.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}
