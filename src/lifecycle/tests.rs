//! The lifecycle layer called as a server front end calls it: cancelling a wait from another
//! thread, hearing of progress, waiting again and again without leaving threads behind,
//! and reading a follow as an iterator. The tasks are records planted in a temporary state
//! directory, with this test process as their "supervisor" (it holds the lock; a `sleep`
//! stands in where the supervisor's exit matters); the integration tests (`tests/cli/`)
//! drive real tasks.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::lifecycle::follow::FollowArgs;
use crate::lifecycle::wait::WaitArgs;
use crate::lifecycle::{Cancel, Tasks};
use crate::paths::{StateDir, TaskId};
use crate::payload::frame::Event;
use crate::payload::input::{Until, WaitInput};
use crate::procfs::Identity;
use crate::state::TaskRecord;
use crate::state::journal::Journal;
use crate::state::lock::TaskLock;
use crate::state::record::{Reason, Status};
use crate::state::record_end;
use crate::timeline::Selection;

/// Bounds a test against hangs; nothing here should take more than a fraction of it.
const HANG: Duration = Duration::from_secs(20);

struct Planted {
    _dir: tempfile::TempDir,
    tasks: Tasks,
    id: TaskId,
    record: TaskRecord,
    lock: TaskLock,
}

/// A running task `t` whose supervisor is this process, holding the lock.
fn running() -> Planted {
    let dir = tempfile::tempdir().expect("a temp dir");
    let state = StateDir::open(dir.path().join("state")).expect("a state dir");
    let tasks = Tasks::new(state);
    let id = TaskId::parse("t").expect("an id");
    let paths = tasks.paths(&id);
    paths.create().expect("the task folder");
    let lock = TaskLock::try_acquire(&paths).expect("lock").expect("free");
    let me = std::process::id() as i32;
    let mut record = TaskRecord::first_run("t".into(), "/".into(), 1000, 0);
    record.supervisor_pid = Some(me);
    record.supervisor_start_ticks = Identity::of(me).map(|i| i.start_ticks);
    record.write(&paths).expect("write the record");
    Planted {
        _dir: dir,
        tasks,
        id,
        record,
        lock,
    }
}

fn wait_for(id: &TaskId, cancel: Cancel) -> WaitArgs {
    WaitArgs {
        input: WaitInput {
            id: Some(id.clone()),
            ids: None,
            mode: None,
            until: Until::Exit,
            tag: None,
            tags: None,
            status: None,
            fields: None,
        },
        timeout: Some(HANG),
        cancel,
        progress: None,
    }
}

#[test]
fn a_wait_cancelled_from_another_thread_ends_at_once_and_the_task_runs_on() {
    let planted = running();
    let cancel = Cancel::new();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let mut args = wait_for(&planted.id, cancel.clone());
    args.progress = Some(Box::new({
        let heard = heard.clone();
        move |task| heard.lock().expect("lock").push(task.status)
    }));
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        cancel.cancel();
    });
    let started = Instant::now();
    let waited = planted.tasks.wait(args);
    canceller.join().expect("the canceller");
    assert!(
        matches!(waited, Err(Error::TaskWaitTimedOut { .. })),
        "{waited:?}"
    );
    assert!(started.elapsed() < HANG / 2, "took {:?}", started.elapsed());
    assert_eq!(
        *heard.lock().expect("lock"),
        [crate::payload::task::Status::Running],
        "the progress callback hears of the task once while nothing changes"
    );
    let record = planted.tasks.record(&planted.id).expect("the record");
    assert_eq!(record.status, Status::Running);
    drop(planted.lock);
}

/// Ends the planted run as its supervisor would: records the end (exit code 3), then lets
/// go of the lock.
fn end_run(tasks: &Tasks, id: &TaskId, mut record: TaskRecord, lock: TaskLock) {
    let paths = tasks.paths(id);
    record.exit_code = Some(3);
    record.finish(Status::Exited, Reason::Exit, 1);
    record_end(&paths, Journal::open(&paths).ok().as_mut(), &record).expect("record");
    drop(lock);
}

fn assert_exited_3(waited: crate::lifecycle::wait::Waited) {
    match waited {
        crate::lifecycle::wait::Waited::One { task, .. } => {
            assert_eq!(task.exit_code, Some(3));
            assert_eq!(task.status, crate::payload::task::Status::Exited);
        }
        other => panic!("{other:?}"),
    }
}

/// A process to stand for the supervisor: it exits when the planted run ends.
#[expect(
    clippy::disallowed_methods,
    reason = "a test starts a stand-in supervisor whose exit a wait must see"
)]
fn stand_in_supervisor() -> std::process::Child {
    std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .expect("spawn sleep")
}

#[test]
fn a_cancellable_wait_wakes_when_the_supervisor_exits() {
    let Planted {
        _dir,
        tasks,
        id,
        mut record,
        lock,
    } = running();
    let mut supervisor = stand_in_supervisor();
    let pid = supervisor.id() as i32;
    record.supervisor_pid = Some(pid);
    record.supervisor_start_ticks = Identity::of(pid).map(|i| i.start_ticks);
    record.write(&tasks.paths(&id)).expect("write the record");
    let ender = std::thread::spawn({
        let (tasks, id) = (tasks.clone(), id.clone());
        move || {
            std::thread::sleep(Duration::from_millis(100));
            end_run(&tasks, &id, record, lock);
            let _ = supervisor.kill();
            let _ = supervisor.wait();
        }
    });
    let started = Instant::now();
    let waited = tasks.wait(wait_for(&id, Cancel::new())).expect("the end");
    ender.join().expect("the ender");
    assert!(started.elapsed() < HANG / 2, "took {:?}", started.elapsed());
    assert_exited_3(waited);
}

#[test]
fn a_wait_in_a_process_exiting_after_its_call_wakes_when_the_lock_is_let_go() {
    let _helpers = LOCK_HELPERS.lock().unwrap_or_else(|e| e.into_inner());
    // The supervisor (this process) lets go of the lock and never exits: only the helper
    // blocked on the lock can see the end.
    let Planted {
        _dir,
        tasks,
        id,
        record,
        lock,
    } = running();
    let tasks = tasks.exiting_after_call();
    let ender = std::thread::spawn({
        let (tasks, id) = (tasks.clone(), id.clone());
        move || {
            std::thread::sleep(Duration::from_millis(100));
            end_run(&tasks, &id, record, lock);
        }
    });
    let waited = tasks.wait(wait_for(&id, Cancel::never())).expect("the end");
    ender.join().expect("the ender");
    assert_exited_3(waited);
}

/// Threads of this process named `name` (a thread's name is its creator's unless it sets
/// one). Counted by name, not in all, because `cargo test` runs the tests of this module
/// side by side in one process, where other tests' threads come and go.
fn threads_named(name: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

/// Held by the tests that count lock helpers: their number is one for the whole process.
static LOCK_HELPERS: Mutex<()> = Mutex::new(());

/// RELIABILITY 31, for a long-lived process (the MCP server, the web view): waits given up
/// on, by their timeout or by a cancel, leave no thread behind, whether on one task or on
/// several.
#[test]
fn two_hundred_abandoned_waits_leave_no_thread_behind() {
    let _helpers = LOCK_HELPERS.lock().unwrap_or_else(|e| e.into_inner());
    // The waits run on a thread of their own name, which every thread they start takes.
    std::thread::Builder::new()
        .name("abandoned-waits".into())
        .spawn(abandon_two_hundred_waits)
        .expect("a thread")
        .join()
        .expect("the waits");
}

fn abandon_two_hundred_waits() {
    let planted = running();
    let before = threads_named("abandoned-waits");
    for i in 0..200 {
        let cancel = Cancel::new();
        let mut args = wait_for(&planted.id, cancel.clone());
        args.timeout = Some(Duration::from_millis(5));
        if i % 4 == 1 {
            // Several tasks at once: one poll over their pidfds.
            args.input.id = None;
            args.input.ids = Some(vec![planted.id.clone(), planted.id.clone()]);
            args.input.mode = Some(crate::payload::input::WaitMode::Any);
        }
        if i % 4 == 2 {
            args.timeout = Some(HANG);
            cancel.cancel();
        }
        let waited = planted.tasks.wait(args);
        assert!(
            matches!(waited, Err(Error::TaskWaitTimedOut { .. })),
            "wait {i}: {waited:?}"
        );
    }
    assert_eq!(crate::state::lock::lock_threads(), 0, "lock helpers left");
    assert_eq!(
        threads_named("abandoned-waits"),
        before,
        "threads left behind by 200 waits"
    );
    let record = planted.tasks.record(&planted.id).expect("the record");
    assert_eq!(record.status, Status::Running, "the task runs on");
    drop(planted.lock);
}

/// In a process that exits after its call, waits given up on may leave a helper blocked on
/// the lock, but never more than `MAX_LOCK_THREADS` at once; they go when the lock is let
/// go.
#[test]
fn lock_helpers_are_bounded_and_end_with_the_lock() {
    let _helpers = LOCK_HELPERS.lock().unwrap_or_else(|e| e.into_inner());
    let planted = running();
    let tasks = planted.tasks.clone().exiting_after_call();
    let before = threads_named("lock-wait");
    for _ in 0..50 {
        let mut args = wait_for(&planted.id, Cancel::never());
        args.timeout = Some(Duration::from_millis(2));
        assert!(matches!(
            tasks.wait(args),
            Err(Error::TaskWaitTimedOut { .. })
        ));
    }
    let helpers = crate::state::lock::lock_threads();
    assert!(
        (1..=crate::state::lock::MAX_LOCK_THREADS).contains(&helpers),
        "{helpers} helpers"
    );
    drop(planted.lock);
    let deadline = Instant::now() + HANG;
    while threads_named("lock-wait") > before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        threads_named("lock-wait"),
        before,
        "helpers outlived the lock"
    );
    assert_eq!(crate::state::lock::lock_threads(), 0);
}

#[test]
#[expect(
    clippy::disallowed_methods,
    reason = "a test plants the task's log as its run would have written it"
)]
fn a_follow_read_as_an_iterator_ends_with_the_run_or_when_cancelled() {
    let Planted {
        _dir,
        tasks,
        id,
        mut record,
        lock,
    } = running();
    let paths = tasks.paths(&id);
    let mut journal = Journal::open(&paths).expect("the journal");
    journal.status(&record, 0).expect("journal");
    std::fs::write(paths.log(), b"one\ntwo\n").expect("the log");
    let follow = |cancel: Cancel| FollowArgs {
        id: id.clone(),
        selection: Selection {
            after: None,
            lines: None,
            only_lines: false,
            budget: None,
            ansi: false,
        },
        grep: None,
        timeout: Some(HANG),
        cancel,
    };

    // While the task runs, the follow waits for more; cancelling ends it.
    let cancel = Cancel::new();
    let mut frames = tasks.frames(follow(cancel.clone()));
    let kinds: Vec<&str> = frames
        .by_ref()
        .take(3)
        .map(|f| f.expect("a frame").event.kind())
        .collect();
    assert_eq!(kinds, ["task.status", "task.log.line", "task.log.line"]);
    let started = Instant::now();
    cancel.cancel();
    assert!(frames.next().is_none(), "frames after the cancel");
    assert!(started.elapsed() < HANG / 2, "took {:?}", started.elapsed());

    // Once the run has ended, the follow ends by itself after `task.ended`.
    record.finish(Status::Killed, Reason::Stop, 1);
    record.signal = Some("SIGTERM".into());
    record_end(&paths, Some(&mut journal), &record).expect("record the end");
    drop(lock);
    let frames: Vec<_> = tasks
        .frames(follow(Cancel::new()))
        .map(|f| f.expect("a frame"))
        .collect();
    let last = frames.last().expect("frames");
    match &last.event {
        Event::Ended(data) => {
            assert_eq!(data.signal.as_deref(), Some("SIGTERM"));
            assert_eq!(data.status, crate::payload::task::Status::Killed);
        }
        other => panic!("the last frame is {other:?}"),
    }
    assert_eq!(frames.len(), 5, "{frames:?}");
}

#[test]
#[expect(
    clippy::disallowed_methods,
    reason = "a test plants the task's log as its run would have written it"
)]
fn a_follow_in_batches_says_at_once_whether_anything_will_come() {
    use crate::lifecycle::follow::Batch;
    use crate::timeline::After;
    use std::ops::ControlFlow;
    let Planted {
        _dir,
        tasks,
        id,
        mut record,
        lock,
    } = running();
    let paths = tasks.paths(&id);
    let mut journal = Journal::open(&paths).expect("the journal");
    journal.status(&record, 0).expect("journal");
    std::fs::write(paths.log(), b"one\ntwo\n").expect("the log");
    let follow = |after: Option<After>| FollowArgs {
        id: id.clone(),
        selection: Selection {
            after,
            lines: None,
            only_lines: false,
            budget: None,
            ansi: false,
        },
        grep: None,
        timeout: Some(HANG),
        cancel: Cancel::new(),
    };
    let batches = |after: Option<After>, stop_after: usize| {
        let mut got: Vec<Batch> = Vec::new();
        tasks
            .follow_batches(follow(after), 2, &mut |batch| {
                got.push(batch);
                if got.len() == stop_after {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .expect("a follow");
        got
    };

    // Running: the opening read comes at once, `max` frames a batch, and is not the end.
    let got = batches(None, 2);
    let sizes: Vec<(usize, bool)> = got.iter().map(|b| (b.frames.len(), b.ended)).collect();
    assert_eq!(sizes, [(2, false), (1, false)]);

    // Ended: the whole run, the last batch says so.
    record.finish(Status::Exited, Reason::Exit, 1);
    record_end(&paths, Some(&mut journal), &record).expect("record the end");
    drop(lock);
    let got = batches(None, usize::MAX);
    assert!(got.last().is_some_and(|b| b.ended), "{got:?}");
    let last = got
        .iter()
        .flat_map(|b| &b.frames)
        .last()
        .expect("frames")
        .sequence;
    // Resumed after the last frame: one empty batch that is the end, at once.
    let got = batches(Some(After::Sequence(last)), usize::MAX);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].frames.is_empty() && got[0].ended, "{got:?}");
}

#[test]
fn a_follow_of_every_task_hands_a_snapshot_then_changes_and_removals() {
    use crate::lifecycle::follow::{FollowAllArgs, TaskChange};
    use std::ops::ControlFlow;
    use std::sync::mpsc;
    let Planted {
        _dir,
        tasks,
        id,
        mut record,
        lock,
    } = running();
    let paths = tasks.paths(&id);
    let cancel = Cancel::new();
    let (sender, changes) = mpsc::channel();
    let follower = std::thread::spawn({
        let (tasks, cancel) = (tasks.clone(), cancel.clone());
        move || {
            let args = FollowAllArgs {
                timeout: Some(HANG),
                cancel,
            };
            tasks.follow_tasks(args, &mut |batch| match sender.send(batch) {
                Ok(()) => ControlFlow::Continue(()),
                Err(_) => ControlFlow::Break(()),
            })
        }
    });
    let next = || changes.recv_timeout(HANG).expect("a batch of changes");
    match next().as_slice() {
        [TaskChange::Snapshot(all)] => {
            assert_eq!(all.len(), 1);
            assert_eq!(all[0].id, "t");
            assert_eq!(all[0].ports, Some(Vec::new()));
        }
        other => panic!("{other:?}"),
    }
    // Any field of the record, not only the status.
    record.ready = Some(true);
    record.write(&paths).expect("write the record");
    match next().as_slice() {
        [TaskChange::Changed(task)] => assert_eq!(task.ready, Some(true)),
        other => panic!("{other:?}"),
    }
    drop(lock);
    paths.remove().expect("remove the task");
    // Its supervisor (this test) let go first, so it may be seen lost before it is gone.
    let removed = (0..3).any(|_| {
        next()
            .iter()
            .any(|c| matches!(c, TaskChange::Removed(gone) if gone == "t"))
    });
    assert!(removed);
    cancel.cancel();
    follower.join().expect("the follower").expect("no error");
}
