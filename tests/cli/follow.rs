//! The output side: `logs` (cursors, budgets, output modes, grep, rendering), `logs --stream`
//! and `events` (RELIABILITY 16, 17 and 23; DESIGN §4 `logs` and `events`).
//!
//! Streams are read by a helper thread, one NDJSON line at a time, and every read is
//! bounded ([`FRAME_HANG`]), so a stream that stops talking fails the test instead of
//! hanging it. Tasks whose output the test must control read a FIFO (`cat gate.fifo`): the
//! test decides when each line is written and, by closing the FIFO, when the task ends.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::support::{DEADLINE, Sandbox, make_fifo, open_fifo_writer, wait_until};

/// How long a stream may stay silent when a frame (or its end) is due.
const FRAME_HANG: Duration = Duration::from_secs(20);

/// `logs`' budgets in `--output auto` (src/commands/logs.rs).
const MAX_LINE_BYTES: usize = 8 * 1024;
const MAX_INLINE_BYTES: usize = 64 * 1024;

/// What the stdout reader of a [`Stream`] saw.
enum Seen {
    Line(String),
    /// EOF: the stream closed its stdout (it ended).
    Eof,
    /// The reader closed its end of the pipe on purpose (`| head -n`).
    HungUp,
}

/// A `--stream` invocation whose stdout is read line by line. Dropping it kills and reaps the
/// process if it is still running (it is our own child, so its pid cannot have been reused).
struct Stream {
    what: String,
    child: Child,
    seen: Receiver<Seen>,
    stderr: Receiver<String>,
}

/// How a stream ended.
#[derive(Debug)]
struct Ended {
    status: ExitStatus,
    stderr: String,
}

impl Stream {
    /// Spawns `command` and reads all its stdout.
    fn spawn(command: Command) -> Stream {
        Stream::spawn_reading(command, None)
    }

    /// Spawns `command`; the reader closes the pipe after `keep` lines, as `head -n` does.
    fn spawn_reading(mut command: Command, keep: Option<usize>) -> Stream {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let what = format!("{command:?}");
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let (sender, seen) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut read = 0;
            loop {
                if keep == Some(read) {
                    drop(reader);
                    let _ = sender.send(Seen::HungUp);
                    return;
                }
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => {
                        let _ = sender.send(Seen::Eof);
                        return;
                    }
                    Ok(_) => {
                        read += 1;
                        if sender.send(Seen::Line(line)).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let (sender, stderr_text) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            let _ = sender.send(text);
        });
        Stream {
            what,
            child,
            seen,
            stderr: stderr_text,
        }
    }

    /// The next frame; panics if none comes within [`FRAME_HANG`] or the stream ends.
    fn next(&mut self) -> Value {
        match self.seen.recv_timeout(FRAME_HANG) {
            Ok(Seen::Line(line)) => parse_frame(&line, &self.what),
            Ok(Seen::Eof) => {
                let ended = self.end();
                panic!("{} ended while a frame was due: {ended:?}", self.what)
            }
            Ok(Seen::HungUp) | Err(RecvTimeoutError::Disconnected) => {
                panic!("{}: the reader has stopped", self.what)
            }
            Err(RecvTimeoutError::Timeout) => {
                panic!("{} printed no frame within {FRAME_HANG:?}", self.what)
            }
        }
    }

    /// Every frame up to the end of stdout, then how the process ended.
    fn rest(&mut self) -> (Vec<Value>, Ended) {
        let mut frames = Vec::new();
        loop {
            match self.seen.recv_timeout(FRAME_HANG) {
                Ok(Seen::Line(line)) => frames.push(parse_frame(&line, &self.what)),
                Ok(Seen::Eof | Seen::HungUp) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{} did not end within {FRAME_HANG:?} of its last frame; frames since: {frames:#?}",
                    self.what
                ),
            }
        }
        (frames, self.end())
    }

    /// Waits for the process to exit by itself (bounded) and collects its stderr.
    fn end(&mut self) -> Ended {
        let mut status = None;
        wait_until(&format!("{} exits", self.what), DEADLINE, || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        let stderr = self
            .stderr
            .recv_timeout(FRAME_HANG)
            .unwrap_or_else(|_| panic!("{}: stderr still open after exit", self.what));
        Ended {
            status: status.expect("exited"),
            stderr,
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn parse_frame(line: &str, what: &str) -> Value {
    let frame: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("{what} printed a line that is not JSON ({e}): {line:?}"));
    for key in ["type", "task_id", "sequence", "timestamp", "data"] {
        assert!(frame.get(key).is_some(), "frame without {key}: {frame}");
    }
    frame
}

/// Asserts a stream ended by itself with exit code 0 and nothing on stderr.
fn assert_clean_exit(ended: &Ended, what: &str) {
    assert_eq!(ended.status.code(), Some(0), "{what}: {ended:?}");
    assert_eq!(ended.stderr, "", "{what} wrote to stderr: {ended:?}");
}

/// The write end of a FIFO a task reads its output from.
struct Gate {
    file: File,
}

impl Gate {
    /// Creates `name` in the sandbox's working directory (the default workdir of tasks).
    fn create(sandbox: &Sandbox, name: &str) -> PathBuf {
        let path = sandbox.work().join(name);
        make_fifo(&path);
        path
    }

    /// Opens the FIFO for writing once the task has opened it for reading. The open is
    /// non-blocking (ENXIO until there is a reader), so a task that never reads fails the
    /// test instead of hanging it; then writes block again, as a terminal's would.
    fn open(path: &Path) -> Gate {
        let file = open_fifo_writer(path);
        fcntl(&file, FcntlArg::F_SETFL(OFlag::empty())).expect("make the gate blocking");
        Gate { file }
    }

    fn write(&mut self, bytes: &[u8]) {
        self.file.write_all(bytes).expect("write to the gate");
    }
}

/// Starts task `id` that copies FIFO `<id>.fifo` to its output, then runs `then` (shell) and
/// exits; returns the open gate.
fn start_gated(sandbox: &Sandbox, id: &str, then: &str) -> Gate {
    let fifo = format!("{id}.fifo");
    let path = Gate::create(sandbox, &fifo);
    let shell = if then.is_empty() {
        format!("cat {fifo}")
    } else {
        format!("cat {fifo}; {then}")
    };
    sandbox.start(&json!({"id": id, "shell": shell}));
    Gate::open(&path)
}

/// Waits until the task's log holds exactly `content`.
fn wait_for_log(sandbox: &Sandbox, id: &str, content: &str) {
    wait_until(&format!("{id}'s log reads {content:?}"), DEADLINE, || {
        sandbox.log(id) == content
    });
}

fn log_path(sandbox: &Sandbox, id: &str) -> PathBuf {
    sandbox.task_dir(id).join("output.log")
}

/// The text of each line in an answer (`lines` of an inline answer).
fn texts(lines: &Value) -> Vec<String> {
    lines
        .as_array()
        .unwrap_or_else(|| panic!("not a list of lines: {lines}"))
        .iter()
        .map(|l| l.as_str().expect("a line is a string").to_owned())
        .collect()
}

fn sequence(frame: &Value) -> u64 {
    frame["sequence"].as_u64().expect("sequence")
}

/// RELIABILITY 16: 100 MB of output in one burst does not stall the task; every byte is in
/// the log, and `logs` answers its last lines.
#[test]
fn a_100_mb_burst_of_output_does_not_stall_the_task_and_logs_answers_its_tail() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({
        "id": "flood",
        "shell": r"head -c 100000000 /dev/zero | tr '\0' x | fold -w 99",
    }));
    let data = sandbox.ok(&["wait", "--timeout", "50"], &json!({"id": "flood"}));
    assert_eq!(data["status"], "exited", "{data}");
    assert_eq!(data["task"]["exit_code"], 0, "{data}");
    // 100,000,000 x's in lines of 99, each with its newline, and a last "x" without one.
    let lines = 100_000_000 / 99;
    let size = 100_000_000 + lines;
    assert_eq!(
        fs::metadata(log_path(&sandbox, "flood"))
            .expect("log")
            .len(),
        size
    );
    assert_eq!(data["task"]["log"]["size_bytes"], size, "{data}");

    let logs = sandbox.ok(&["logs"], &json!({"id": "flood", "lines": 3}));
    assert_eq!(logs["kind"], "summary+artifact", "{logs}");
    // One shape: the lines stay at the top of data, beside the summary and artifact.
    let inline = &logs;
    let full = "x".repeat(99);
    assert_eq!(
        texts(&inline["lines"]),
        [full.as_str(), &full, "x"],
        "{logs}"
    );
    assert_eq!(inline["total_lines"], lines + 1, "{logs}");
    assert_eq!(inline["next_cursor"], format!("1:{size}"), "{logs}");
    assert_eq!(logs["artifact"]["size_bytes"], size, "{logs}");
}

/// RELIABILITY 17: `logs --stream` prints each line the task appends, in order, with growing
/// sequence numbers and cursors that point just past each line.
#[test]
fn logs_stream_delivers_each_appended_line_with_growing_sequence_and_cursor() {
    let sandbox = Sandbox::new();
    let mut gate = start_gated(&sandbox, "tail", "");
    let mut stream =
        Stream::spawn(sandbox.command_with(&["logs", "--stream"], &json!({"id": "tail"})));
    let (mut offset, mut last_sequence) = (0, 0);
    for i in 1..=5 {
        let line = format!("line number {i}");
        gate.write(format!("{line}\n").as_bytes());
        let frame = stream.next();
        assert_eq!(frame["type"], "task.log.line", "{frame}");
        assert_eq!(frame["task_id"], "tail", "{frame}");
        assert_eq!(frame["data"]["line"], line, "{frame}");
        offset += line.len() + 1;
        assert_eq!(frame["data"]["cursor"], format!("1:{offset}"), "{frame}");
        assert!(
            sequence(&frame) > last_sequence,
            "{frame} after {last_sequence}"
        );
        last_sequence = sequence(&frame);
    }
    // The end of the task ends the stream.
    drop(gate);
    let (frames, ended) = stream.rest();
    assert_eq!(
        frames,
        Vec::<Value>::new(),
        "only line frames, and no more lines"
    );
    assert_clean_exit(&ended, "logs --stream");
    assert_eq!(sandbox.status("tail")["status"], "exited");
}

/// RELIABILITY 17: a log truncated under a follower (`: > output.log`) is read again from
/// its beginning: the next line the task writes is delivered whole.
#[test]
fn logs_stream_starts_over_when_the_log_is_truncated_under_it() {
    let sandbox = Sandbox::new();
    let mut gate = start_gated(&sandbox, "trunc", "");
    let mut stream =
        Stream::spawn(sandbox.command_with(&["logs", "--stream"], &json!({"id": "trunc"})));
    gate.write(b"first line before\n");
    assert_eq!(stream.next()["data"]["line"], "first line before");
    gate.write(b"second line before\n");
    let before = stream.next();
    assert_eq!(before["data"]["line"], "second line before");

    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(log_path(&sandbox, "trunc"))
        .expect("truncate the log");
    // Shorter than what was read, so the follower sees the log shrink whichever it reads
    // first: the empty log or the new line.
    gate.write(b"after\n");
    let after = stream.next();
    assert_eq!(after["type"], "task.log.line", "{after}");
    assert_eq!(after["data"]["line"], "after", "{after}");
    assert_eq!(after["data"]["cursor"], "1:6", "{after}");
    assert!(
        sequence(&after) > sequence(&before),
        "{after} after {before}"
    );
    gate.write(b"and on\n");
    assert_eq!(stream.next()["data"]["cursor"], "1:13");
    drop(gate);
    let (frames, ended) = stream.rest();
    assert_eq!(frames, Vec::<Value>::new());
    assert_clean_exit(&ended, "logs --stream");
}

/// RELIABILITY 17: what a task writes in the instant before it exits, with or without a
/// final newline, is printed, and then the stream ends by itself.
#[test]
fn logs_stream_prints_output_written_just_before_exit_then_ends_by_itself() {
    let sandbox = Sandbox::new();
    for (id, last) in [
        ("newline", r"printf 'last words\n'"),
        ("bare", "printf 'last words'"),
    ] {
        let mut gate = start_gated(&sandbox, id, &format!("printf 'penultimate\\n'; {last}"));
        let mut stream =
            Stream::spawn(sandbox.command_with(&["logs", "--stream"], &json!({"id": id})));
        gate.write(b"while running\n");
        assert_eq!(stream.next()["data"]["line"], "while running", "{id}");
        drop(gate);
        let (frames, ended) = stream.rest();
        let lines: Vec<&Value> = frames.iter().map(|f| &f["data"]["line"]).collect();
        assert_eq!(
            lines,
            [&json!("penultimate"), &json!("last words")],
            "{id}: {frames:#?}"
        );
        let log_size = fs::metadata(log_path(&sandbox, id)).expect("log").len();
        assert_eq!(
            frames[1]["data"]["cursor"],
            format!("1:{log_size}"),
            "{id}: the last frame reaches the end of the log"
        );
        assert_clean_exit(&ended, id);
        assert_eq!(sandbox.status(id)["exit_code"], 0);
    }
}

/// RELIABILITY 17 / DESIGN §2: `logs --stream | head -1` ends the stream quietly with exit 0,
/// whether the task goes on writing or sleeps without a word.
#[test]
fn logs_stream_exits_zero_quietly_when_its_reader_goes_away() {
    let sandbox = Sandbox::new();
    // A task that keeps writing: each poll below writes one more line.
    let mut gate = start_gated(&sandbox, "chatty", "");
    gate.write(b"hello\n");
    let mut stream = Stream::spawn_reading(
        sandbox.command_with(&["logs", "--stream"], &json!({"id": "chatty"})),
        Some(1),
    );
    assert_eq!(stream.next()["data"]["line"], "hello");
    let mut written = 0;
    wait_until(
        "logs --stream notices its reader is gone while the task writes",
        DEADLINE,
        || {
            written += 1;
            gate.write(format!("more {written}\n").as_bytes());
            matches!(stream.child.try_wait(), Ok(Some(_)))
        },
    );
    assert_clean_exit(&stream.end(), "logs --stream with the task writing");
    assert_eq!(sandbox.status("chatty")["status"], "running");

    // A quiet task: nothing is written after the reader leaves, so only noticing the closed
    // pipe can end the stream. The same holds for `events --stream`, with and without an id.
    sandbox.start(&json!({"id": "quiet", "shell": "echo hello; exec sleep 1000"}));
    wait_for_log(&sandbox, "quiet", "hello\n");
    let quiet = json!({"id": "quiet"});
    let followers = [
        sandbox.command_with(&["logs", "--stream"], &quiet),
        sandbox.command_with(&["events", "--stream"], &quiet),
        sandbox.command(&["events", "--stream"]),
    ];
    for command in followers {
        let what = format!("{command:?}");
        let mut stream = Stream::spawn_reading(command, Some(1));
        // Without an id, the first frame is the snapshot of the oldest task ("chatty").
        stream.next();
        assert_clean_exit(&stream.end(), &what);
    }
    assert_eq!(sandbox.status("quiet")["status"], "running");
    assert_eq!(sandbox.log("quiet"), "hello\n");

    // A `--timeout` ends a follow of a quiet task the same quiet way.
    let mut stream =
        Stream::spawn(sandbox.command_with(&["logs", "--stream", "--timeout", "0.5"], &quiet));
    let (frames, ended) = stream.rest();
    assert_clean_exit(&ended, "logs --stream --timeout 0.5");
    assert_eq!(frames.len(), 2, "{frames:#?}");
    assert_eq!(frames[0]["data"]["line"], "hello");
    // Its last frame says why it ended and where to resume (issue 14 item 2).
    assert_eq!(frames[1]["type"], "stream.end", "{frames:#?}");
    assert_eq!(frames[1]["data"]["reason"], "timeout", "{frames:#?}");
    assert_eq!(frames[1]["data"]["cursor"], "1:6", "{frames:#?}");
}

/// DESIGN §4: `next_cursor` resumes exactly after what was answered; with nothing new the
/// answer is empty and the cursor stays. A running task's unfinished last line is held back
/// until its newline arrives, so no line is split across answers.
#[test]
fn a_cursor_returns_exactly_the_new_lines_and_holds_back_an_unfinished_one() {
    let sandbox = Sandbox::new();
    let mut gate = start_gated(&sandbox, "cur", "");
    gate.write(b"one\ntwo\n");
    wait_for_log(&sandbox, "cur", "one\ntwo\n");
    let first = sandbox.ok(&["logs"], &json!({"id": "cur"}));
    assert_eq!(first["kind"], "inline", "{first}");
    assert_eq!(texts(&first["lines"]), ["one", "two"]);
    assert_eq!(first["next_cursor"], "1:8", "{first}");

    gate.write(b"three\nfour\n");
    wait_for_log(&sandbox, "cur", "one\ntwo\nthree\nfour\n");
    let second = sandbox.ok(
        &["logs"],
        &json!({"id": "cur", "after": first["next_cursor"]}),
    );
    assert_eq!(texts(&second["lines"]), ["three", "four"], "{second}");
    assert_eq!(second["next_cursor"], "1:19", "{second}");
    assert_eq!(second["cursor_reset"], Value::Null, "{second}");

    let idle = sandbox.ok(
        &["logs"],
        &json!({"id": "cur", "after": second["next_cursor"]}),
    );
    assert_eq!(texts(&idle["lines"]), Vec::<String>::new(), "{idle}");
    assert_eq!(idle["next_cursor"], second["next_cursor"], "{idle}");

    gate.write(b"par");
    wait_for_log(&sandbox, "cur", "one\ntwo\nthree\nfour\npar");
    let held = sandbox.ok(
        &["logs"],
        &json!({"id": "cur", "after": second["next_cursor"]}),
    );
    assert_eq!(texts(&held["lines"]), Vec::<String>::new(), "{held}");
    assert_eq!(held["next_cursor"], "1:19", "{held}");
    let tail = sandbox.ok(&["logs"], &json!({"id": "cur"}));
    assert_eq!(
        texts(&tail["lines"]),
        ["one", "two", "three", "four"],
        "a tail holds the unfinished line back too: {tail}"
    );

    gate.write(b"tial\n");
    wait_for_log(&sandbox, "cur", "one\ntwo\nthree\nfour\npartial\n");
    let whole = sandbox.ok(
        &["logs"],
        &json!({"id": "cur", "after": held["next_cursor"]}),
    );
    assert_eq!(texts(&whole["lines"]), ["partial"], "{whole}");
    assert_eq!(whole["next_cursor"], "1:27", "{whole}");
}

/// DESIGN §4: a cursor belongs to one run. After `restart` it reads the new run from its
/// start and says `new_run`; past the end of a truncated log it says `truncated`.
#[test]
fn a_cursor_from_an_earlier_run_or_past_a_truncated_end_starts_over_and_says_why() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "runs", "shell": "echo \"a $$\"; echo \"b $$\"; exec sleep 1000"}));
    let first_pid = sandbox.leader("runs").pid;
    wait_for_log(&sandbox, "runs", &format!("a {first_pid}\nb {first_pid}\n"));
    let run1 = sandbox.ok(&["logs"], &json!({"id": "runs"}));
    let cursor = run1["next_cursor"].as_str().expect("cursor").to_owned();
    assert!(cursor.starts_with("1:"), "{run1}");

    let restarted = sandbox.ok(&["restart"], &json!({"id": "runs"}));
    let second_pid = restarted["task"]["pid"].as_i64().expect("pid");
    let run2_log = format!("a {second_pid}\nb {second_pid}\n");
    wait_for_log(&sandbox, "runs", &run2_log);
    let logs = sandbox.ok(&["logs"], &json!({"id": "runs", "after": cursor}));
    assert_eq!(logs["run"], 2, "{logs}");
    assert_eq!(logs["cursor_reset"], "new_run", "{logs}");
    assert_eq!(
        texts(&logs["lines"]),
        [format!("a {second_pid}"), format!("b {second_pid}")],
        "{logs}"
    );
    assert_eq!(
        logs["next_cursor"],
        format!("2:{}", run2_log.len()),
        "{logs}"
    );
    let events = sandbox.ok(&["events"], &json!({"id": "runs", "after": cursor}));
    assert_eq!(events["cursor_reset"], "new_run", "{events}");
    let lines: Vec<&Value> = events["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .filter(|f| f["type"] == "task.log.line")
        .map(|f| &f["data"]["line"])
        .collect();
    assert_eq!(
        lines,
        [
            &json!(format!("a {second_pid}")),
            &json!(format!("b {second_pid}"))
        ],
        "{events}"
    );

    let mut gate = start_gated(&sandbox, "shrunk", "");
    gate.write(b"one\ntwo\nthree\n");
    wait_for_log(&sandbox, "shrunk", "one\ntwo\nthree\n");
    let before = sandbox.ok(&["logs"], &json!({"id": "shrunk"}));
    assert_eq!(before["next_cursor"], "1:14", "{before}");
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(log_path(&sandbox, "shrunk"))
        .expect("truncate the log");
    gate.write(b"x\n");
    wait_for_log(&sandbox, "shrunk", "x\n");
    let after = sandbox.ok(&["logs"], &json!({"id": "shrunk", "after": "1:14"}));
    assert_eq!(after["cursor_reset"], "truncated", "{after}");
    assert_eq!(texts(&after["lines"]), ["x"], "{after}");
    assert_eq!(after["next_cursor"], "1:2", "{after}");
}

/// DESIGN §4: paging with `next_cursor` visits every line exactly once, also when a page
/// stops early at the byte budget (its cursor then stops before the lines it left out).
#[test]
fn paging_with_next_cursor_visits_every_line_once_even_past_the_byte_budget() {
    let sandbox = Sandbox::new();
    // 250 lines of 1,000 bytes: a page of 100 is 100 KB, past the 64 KiB budget.
    sandbox.start(&json!({
        "id": "pages",
        "shell": r#"awk 'BEGIN { for (i = 1; i <= 250; i++) printf "%04d %0995d\n", i, 0 }'"#,
    }));
    sandbox.wait("pages");
    let line = |i: usize| format!("{i:04} {}", "0".repeat(995));
    for mode in ["auto", "inline"] {
        let (mut cursor, mut seen, mut pages) = ("1:0".to_owned(), Vec::new(), 0);
        loop {
            let answer = sandbox.ok(
                &["logs", "--output", mode],
                &json!({"id": "pages", "after": cursor}),
            );
            // One shape whatever the mode: the lines are at the top of data.
            let page = &answer;
            let lines = texts(&page["lines"]);
            let next = page["next_cursor"]
                .as_str()
                .expect("next_cursor")
                .to_owned();
            if lines.is_empty() {
                assert_eq!(next, cursor, "{mode}: an empty page keeps the cursor");
                assert_eq!(
                    page["omitted"],
                    json!({"before": 0, "after": 0}),
                    "{mode}: {page}"
                );
                break;
            }
            // What is left is said by direction: all of it after this page.
            let omitted_after = page["omitted"]["after"].as_u64().expect("omitted.after");
            assert_eq!(page["omitted"]["before"], 0, "{mode}: {page}");
            assert_eq!(
                omitted_after as usize,
                250 - seen.len() - lines.len(),
                "{mode}: omitted.after counts the lines still to come"
            );
            if mode == "auto" {
                let bytes: usize = lines.iter().map(String::len).sum();
                assert!(bytes <= MAX_INLINE_BYTES, "{mode}: a page of {bytes} bytes");
            } else {
                assert!(
                    lines.len() <= 100,
                    "{mode}: more than the default 100 lines"
                );
            }
            pages += 1;
            assert!(pages <= 250, "{mode}: paging does not end");
            seen.extend(lines);
            cursor = next;
        }
        assert_eq!(seen, (1..=250).map(line).collect::<Vec<_>>(), "{mode}");
        assert_eq!(cursor, "1:250250", "{mode}");
        assert!(pages >= 3, "{mode}: {pages} pages");
    }
}

/// A cursor that is not `<run>:<offset>` is refused, naming `after`, with a hint.
#[test]
fn a_malformed_cursor_is_a_command_input_error_at_after() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "c", "shell": "echo hi"}));
    sandbox.wait("c");
    for bad in ["abc", "1:", "-1:0", ":5", "1:2:3"] {
        for args in [&["logs"][..], &["logs", "--stream"], &["events"]] {
            let error = sandbox.fail(args, &json!({"id": "c", "after": bad}));
            assert_eq!(
                error["type"], "CommandInputError",
                "{args:?} {bad:?}: {error}"
            );
            assert_eq!(
                error["details"]["path"], "after",
                "{args:?} {bad:?}: {error}"
            );
            assert_eq!(error["details"]["retryable"], false, "{error}");
        }
    }
}

/// DESIGN §4 / the seed tool's artifact shape: a tail that leaves lines out answers the
/// lines shown and a pointer to the whole log; `--output` forces either shape.
#[test]
fn a_partial_tail_answers_summary_plus_artifact_pointing_at_the_whole_log() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "art", "shell": "printf 'one\\ntwo\\nthree\\n'"}));
    sandbox.wait("art");
    let log = log_path(&sandbox, "art");
    let size = fs::metadata(&log).expect("log").len();
    assert_eq!(size, 14);

    let check_artifact = |answer: &Value| {
        assert_eq!(answer["kind"], "summary+artifact", "{answer}");
        let artifact = &answer["artifact"];
        assert_eq!(artifact["key"], "task.art.logs", "{answer}");
        assert_eq!(artifact["kind"], "text", "{answer}");
        assert_eq!(
            artifact["relative_path"], "tasks/art/output.log",
            "{answer}"
        );
        assert_eq!(artifact["size_bytes"], size, "{answer}");
        let absolute = PathBuf::from(artifact["absolute_path"].as_str().expect("path"));
        assert!(absolute.is_absolute(), "{answer}");
        let (shown, real) = (
            fs::metadata(&absolute).expect("the artifact exists"),
            fs::metadata(&log).expect("log"),
        );
        assert_eq!(
            (shown.dev(), shown.ino()),
            (real.dev(), real.ino()),
            "{answer}"
        );
        assert!(answer["summary"].is_string(), "{answer}");
        // One shape: lines and next_cursor stay at the top, never under `inline`.
        assert!(answer["lines"].is_array(), "{answer}");
        assert!(answer["next_cursor"].is_string(), "{answer}");
        assert!(answer.get("inline").is_none(), "{answer}");
    };

    let tail = sandbox.ok(&["logs"], &json!({"id": "art", "lines": 1}));
    check_artifact(&tail);
    let summary = tail["summary"].as_str().expect("summary");
    assert!(summary.contains("1 of 3"), "{summary}");
    assert_eq!(texts(&tail["lines"]), ["three"], "{tail}");
    assert_eq!(tail["omitted"], json!({"before": 2, "after": 0}), "{tail}");

    let forced = sandbox.ok(&["logs", "--output", "artifact"], &json!({"id": "art"}));
    check_artifact(&forced);
    assert_eq!(texts(&forced["lines"]), ["one", "two", "three"]);
    assert_eq!(
        forced["omitted"],
        json!({"before": 0, "after": 0}),
        "{forced}"
    );

    let inline = sandbox.ok(
        &["logs", "--output", "inline"],
        &json!({"id": "art", "lines": 1}),
    );
    assert_eq!(inline["kind"], "inline", "{inline}");
    assert!(inline.get("artifact").is_none(), "{inline}");
    assert_eq!(texts(&inline["lines"]), ["three"], "{inline}");
    assert_eq!(
        inline["omitted"],
        json!({"before": 2, "after": 0}),
        "{inline}"
    );

    let whole = sandbox.ok(&["logs"], &json!({"id": "art"}));
    assert_eq!(whole["kind"], "inline", "{whole}");
    assert!(whole.get("artifact").is_none(), "{whole}");
    assert_eq!(texts(&whole["lines"]), ["one", "two", "three"], "{whole}");
    assert_eq!(
        whole["omitted"],
        json!({"before": 0, "after": 0}),
        "{whole}"
    );
    assert_eq!(whole["log"]["size_bytes"], size, "{whole}");
}

/// RELIABILITY 23: one 10 MB line is cut to the line budget in `auto` (the artifact holds it
/// whole) and shown whole with `--output inline`.
#[test]
fn a_10_mb_line_is_cut_in_auto_mode_and_whole_inline() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({
        "id": "wide",
        "shell": r"head -c 10000000 /dev/zero | tr '\0' y; echo",
    }));
    assert_eq!(sandbox.wait("wide")["exit_code"], 0);
    assert_eq!(
        fs::metadata(log_path(&sandbox, "wide")).expect("log").len(),
        10_000_001
    );

    let auto = sandbox.ok(&["logs"], &json!({"id": "wide"}));
    assert_eq!(
        auto["kind"], "summary+artifact",
        "a cut line is not the whole answer"
    );
    let inline = &auto;
    assert_eq!(inline["truncated_lines"], 1);
    assert_eq!(inline["total_lines"], 1);
    let shown = texts(&inline["lines"]);
    assert_eq!(shown.len(), 1);
    assert!(
        shown[0].len() <= MAX_LINE_BYTES + 100,
        "a 10 MB line shown as {} bytes",
        shown[0].len()
    );
    assert!(shown[0].starts_with(&"y".repeat(MAX_LINE_BYTES / 2)));
    assert_eq!(auto["artifact"]["size_bytes"], 10_000_001);

    let whole = sandbox.ok(&["logs", "--output", "inline"], &json!({"id": "wide"}));
    assert_eq!(whole["kind"], "inline");
    assert_eq!(whole["truncated_lines"], 0);
    let shown = texts(&whole["lines"]);
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].len(), 10_000_000);
    assert!(shown[0].bytes().all(|b| b == b'y'));
}

/// DESIGN §4: lines whose total passes the inline byte budget give way oldest first in
/// `auto`; `--output inline` shows them all.
#[test]
fn lines_past_the_64_kib_budget_give_way_oldest_first() {
    let sandbox = Sandbox::new();
    // 2,000 lines of exactly 100 bytes (200 KB), numbered.
    sandbox.start(&json!({
        "id": "many",
        "shell": r#"awk 'BEGIN { for (i = 1; i <= 2000; i++) printf "line %04d %090d\n", i, 0 }'"#,
    }));
    sandbox.wait("many");
    let line = |i: usize| format!("line {i:04} {}", "0".repeat(90));
    assert_eq!(line(1).len(), 100);

    let auto = sandbox.ok(&["logs"], &json!({"id": "many", "lines": 2000}));
    assert_eq!(auto["kind"], "summary+artifact", "{}", auto["summary"]);
    let inline = &auto;
    assert_eq!(inline["total_lines"], 2000);
    let shown = texts(&inline["lines"]);
    assert_eq!(inline["shown_lines"], shown.len());
    assert_eq!(inline["omitted"]["before"], 2000 - shown.len(), "{inline}");
    let bytes: usize = shown.iter().map(String::len).sum();
    assert!(bytes <= MAX_INLINE_BYTES, "{bytes} bytes of lines shown");
    assert!(
        bytes + 100 > MAX_INLINE_BYTES,
        "only {bytes} bytes shown: the budget was not filled"
    );
    // The newest lines, in order, up to the very last one.
    let first_shown = 2000 - shown.len() + 1;
    let expected: Vec<String> = (first_shown..=2000).map(line).collect();
    assert_eq!(shown, expected);

    let all = sandbox.ok(
        &["logs", "--output", "inline"],
        &json!({"id": "many", "lines": 2000}),
    );
    assert_eq!(all["kind"], "inline");
    assert_eq!(all["omitted"], json!({"before": 0, "after": 0}));
    assert_eq!(
        texts(&all["lines"]),
        (1..=2000).map(line).collect::<Vec<_>>()
    );
}

/// DESIGN §4: `events` of an ended task is its whole life in one numbered order: running,
/// each line, the terminal status and `task.ended`; `after` resumes by sequence; a line has
/// the same number in `events` and `logs --stream`.
#[test]
fn events_of_an_ended_task_number_its_lifecycle_and_lines_without_gaps() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "ev", "shell": "printf 'alpha\\nbeta\\n'; exit 3"}));
    sandbox.wait("ev");
    let events = sandbox.ok(&["events"], &json!({"id": "ev"}));
    assert_eq!(events["task_id"], "ev");
    assert_eq!(events["ended"], true, "{events}");
    let frames = events["frames"].as_array().expect("frames").clone();
    let kinds: Vec<&str> = frames
        .iter()
        .map(|f| f["type"].as_str().expect("type"))
        .collect();
    assert_eq!(
        kinds,
        [
            "task.status",
            "task.log.line",
            "task.log.line",
            "task.status",
            "task.ended"
        ],
        "{events}"
    );
    let numbers: Vec<u64> = frames.iter().map(sequence).collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5], "{events}");
    assert_eq!(events["next_sequence"], 6, "{events}");
    for frame in &frames {
        assert_eq!(frame["task_id"], "ev", "{frame}");
    }
    assert_eq!(frames[0]["data"]["status"], "running");
    assert_eq!(frames[1]["data"], json!({"line": "alpha", "cursor": "1:6"}));
    assert_eq!(frames[2]["data"], json!({"line": "beta", "cursor": "1:11"}));
    assert_eq!(frames[3]["data"]["status"], "exited");
    let ended = &frames[4]["data"];
    assert_eq!(ended["status"], "exited", "{ended}");
    assert_eq!(ended["exit_code"], 3, "{ended}");
    assert_eq!(ended["signal"], Value::Null, "{ended}");

    let later = sandbox.ok(&["events"], &json!({"id": "ev", "after": 2}));
    let later_numbers: Vec<u64> = later["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .map(sequence)
        .collect();
    assert_eq!(later_numbers, [3, 4, 5], "{later}");
    let none = sandbox.ok(&["events"], &json!({"id": "ev", "after": 5}));
    assert_eq!(none["frames"], json!([]), "{none}");

    let mut stream =
        Stream::spawn(sandbox.command_with(&["logs", "--stream"], &json!({"id": "ev"})));
    let (streamed, ended) = stream.rest();
    assert_clean_exit(&ended, "logs --stream of an ended task");
    let pick = |f: &Value| (sequence(f), f["data"].clone());
    assert_eq!(
        streamed.iter().map(pick).collect::<Vec<_>>(),
        [pick(&frames[1]), pick(&frames[2])],
        "the same lines, the same numbers"
    );
}

/// DESIGN §4: `events --stream` on a running task prints its frames as they happen and ends
/// by itself after `task.ended`; every number it printed is the number `events` gives later.
#[test]
fn events_stream_follows_a_running_task_until_its_end() {
    let sandbox = Sandbox::new();
    let mut gate = start_gated(&sandbox, "live", "exit 5");
    let mut stream =
        Stream::spawn(sandbox.command_with(&["events", "--stream"], &json!({"id": "live"})));
    let running = stream.next();
    assert_eq!(running["type"], "task.status", "{running}");
    assert_eq!(running["data"]["status"], "running", "{running}");
    let mut seen = vec![running];
    for line in ["first", "second"] {
        gate.write(format!("{line}\n").as_bytes());
        let frame = stream.next();
        assert_eq!(frame["type"], "task.log.line", "{frame}");
        assert_eq!(frame["data"]["line"], line, "{frame}");
        seen.push(frame);
    }
    drop(gate);
    let (rest, ended) = stream.rest();
    assert_clean_exit(&ended, "events --stream");
    let kinds: Vec<&Value> = rest.iter().map(|f| &f["type"]).collect();
    assert_eq!(
        kinds,
        [&json!("task.status"), &json!("task.ended")],
        "{rest:#?}"
    );
    assert_eq!(rest[0]["data"]["status"], "exited");
    assert_eq!(rest[1]["data"]["status"], "exited");
    assert_eq!(rest[1]["data"]["exit_code"], 5);
    seen.extend(rest);
    let numbers: Vec<u64> = seen.iter().map(sequence).collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5], "{seen:#?}");

    let listed = sandbox.ok(&["events"], &json!({"id": "live"}));
    let strip = |f: &Value| (f["type"].clone(), sequence(f), f["data"].clone());
    let listed: Vec<_> = listed["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .map(strip)
        .collect();
    assert_eq!(listed, seen.iter().map(strip).collect::<Vec<_>>());
}

/// A follow belongs to one run: `restart` ends it (after the old run's end) and none of the
/// new run's lines reach it; the new run is followed by a new invocation.
#[test]
fn a_follow_of_one_run_ends_at_restart_and_never_shows_the_next_runs_lines() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "again", "shell": "echo \"run of $$\"; exec sleep 1000"}));
    let first_pid = sandbox.leader("again").pid;
    let first_line = format!("run of {first_pid}");
    wait_for_log(&sandbox, "again", &format!("{first_line}\n"));
    let id = json!({"id": "again"});
    let mut lines = Stream::spawn(sandbox.command_with(&["logs", "--stream"], &id));
    let mut events = Stream::spawn(sandbox.command_with(&["events", "--stream"], &id));
    assert_eq!(lines.next()["data"]["line"], first_line);
    assert_eq!(events.next()["data"]["status"], "running");
    assert_eq!(events.next()["data"]["line"], first_line);

    let restarted = sandbox.ok(&["restart"], &id);
    assert_eq!(restarted["task"]["run"], 2, "{restarted}");
    let (rest, ended) = lines.rest();
    assert_clean_exit(&ended, "logs --stream across a restart");
    assert_eq!(
        rest,
        Vec::<Value>::new(),
        "run 2's lines reached run 1's follow"
    );
    let (rest, ended) = events.rest();
    assert_clean_exit(&ended, "events --stream across a restart");
    let kinds: Vec<&Value> = rest.iter().map(|f| &f["type"]).collect();
    assert_eq!(
        kinds,
        [&json!("task.status"), &json!("task.ended")],
        "{rest:#?}"
    );
    for frame in &rest {
        assert_eq!(frame["data"]["run"], 1, "{frame}");
        assert_eq!(frame["data"]["status"], "killed", "{frame}");
    }

    let second_pid = restarted["task"]["pid"].as_i64().expect("pid");
    let mut second = Stream::spawn(sandbox.command_with(&["logs", "--stream"], &id));
    let frame = second.next();
    assert_eq!(
        frame["data"]["line"],
        format!("run of {second_pid}"),
        "{frame}"
    );
    assert_eq!(
        frame["data"]["cursor"]
            .as_str()
            .map(|c| c.starts_with("2:")),
        Some(true)
    );
}

/// DESIGN §4: "`after` resumes from a frame's cursor or sequence". A follower of run 1 that
/// resumes with the last sequence it saw, after a restart it did not see, must get the new
/// run's frames: its `task.status` (running, run 2) and every line it has written.
#[test]
fn events_after_a_sequence_seen_before_a_restart_resumes_with_the_new_runs_frames() {
    let sandbox = Sandbox::new();
    sandbox
        .start(&json!({"id": "resume", "shell": "printf 'one\\ntwo\\nthree\\n'; exec sleep 1000"}));
    wait_for_log(&sandbox, "resume", "one\ntwo\nthree\n");
    let id = json!({"id": "resume"});
    // A follower of run 1 sees its whole life, up to its end at the restart.
    let mut follower = Stream::spawn(sandbox.command_with(&["events", "--stream"], &id));
    let mut seen = vec![follower.next()];
    assert_eq!(seen[0]["data"]["status"], "running");
    sandbox.ok(&["restart"], &id);
    let (rest, ended) = follower.rest();
    assert_clean_exit(&ended, "events --stream of run 1");
    seen.extend(rest);
    let last = seen.last().expect("frames");
    assert_eq!(last["type"], "task.ended", "{seen:#?}");
    let last_seen = sequence(last);

    // Run 2 writes the same three lines; the follower comes back with `after`.
    wait_for_log(&sandbox, "resume", "one\ntwo\nthree\n");
    let resumed = sandbox.ok(&["events"], &json!({"id": "resume", "after": last_seen}));
    let frames = resumed["frames"].as_array().expect("frames");
    let got: Vec<(String, Value)> = frames
        .iter()
        .map(|f| {
            let data = &f["data"];
            let what = if f["type"] == "task.log.line" {
                data["line"].clone()
            } else {
                data["run"].clone()
            };
            (f["type"].as_str().expect("type").to_owned(), what)
        })
        .collect();
    let expected = vec![
        ("task.status".to_owned(), json!(2)),
        ("task.log.line".to_owned(), json!("one")),
        ("task.log.line".to_owned(), json!("two")),
        ("task.log.line".to_owned(), json!("three")),
    ];
    assert_eq!(
        got, expected,
        "events {{after: {last_seen}}} (the last sequence run 1's follower saw) lost run 2's \
         frames; run 1's frames were {seen:#?}; the answer was {resumed:#}"
    );
    // The caller is told its number belonged to an earlier run, and run 2's numbers never
    // repeat run 1's.
    assert_eq!(resumed["cursor_reset"], "new_run", "{resumed:#}");
    assert!(
        frames.iter().all(|f| sequence(f) > last_seen),
        "{resumed:#}"
    );
}

/// RELIABILITY 4 seen by a follower: when the supervisor is SIGKILLed, `events --stream`
/// does not wait for ever; it ends with a `task.ended` frame that says `lost` (and
/// `logs --stream` ends too).
#[test]
fn events_stream_of_a_task_whose_supervisor_is_sigkilled_ends_with_lost() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "orphan", "command": "sleep", "args": ["1000"]}));
    let mut stream =
        Stream::spawn(sandbox.command_with(&["events", "--stream"], &json!({"id": "orphan"})));
    let first = stream.next();
    assert_eq!(first["data"]["status"], "running", "{first}");
    let mut lines =
        Stream::spawn(sandbox.command_with(&["logs", "--stream"], &json!({"id": "orphan"})));
    let supervisor = sandbox.supervisor("orphan");
    supervisor.signal(Signal::SIGKILL);
    let (rest, ended) = lines.rest();
    assert_clean_exit(&ended, "logs --stream after the supervisor died");
    assert_eq!(rest, Vec::<Value>::new(), "the task wrote nothing");
    let (rest, ended) = stream.rest();
    assert_clean_exit(&ended, "events --stream after the supervisor died");
    let last = rest
        .last()
        .unwrap_or_else(|| panic!("no frame after the kill"));
    assert_eq!(last["type"], "task.ended", "{rest:#?}");
    assert_eq!(last["data"]["status"], "lost", "{last}");
    assert_eq!(last["data"]["reason"], "supervisor_lost", "{last}");
    assert_eq!(sandbox.status("orphan")["status"], "lost");
}

/// DESIGN §4: `events --stream` without an id prints every task's status, then the changes
/// of a task started while it runs, and ends at its `--timeout` with exit 0.
#[test]
fn events_stream_without_an_id_follows_every_task_until_its_timeout() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "done", "command": "true"}));
    sandbox.wait("done");
    sandbox.start(&json!({"id": "busy", "command": "sleep", "args": ["1000"]}));
    let mut stream = Stream::spawn(sandbox.command(&["events", "--stream", "--timeout", "2"]));
    let mut snapshot = Vec::new();
    for _ in 0..3 {
        snapshot.push(stream.next());
    }
    let summary = |f: &Value| {
        (
            f["type"].as_str().expect("type").to_owned(),
            f["task_id"].as_str().expect("id").to_owned(),
            f["data"]["status"].as_str().expect("status").to_owned(),
        )
    };
    let expect =
        |kind: &str, id: &str, status: &str| (kind.to_owned(), id.to_owned(), status.to_owned());
    assert_eq!(
        snapshot.iter().map(summary).collect::<Vec<_>>(),
        [
            expect("task.status", "done", "exited"),
            expect("task.ended", "done", "exited"),
            expect("task.status", "busy", "running"),
        ],
        "{snapshot:#?}"
    );

    sandbox.start(&json!({"id": "fresh", "command": "sleep", "args": ["1000"]}));
    let fresh = stream.next();
    assert_eq!(
        summary(&fresh),
        expect("task.status", "fresh", "running"),
        "{fresh}"
    );
    assert!(sequence(&fresh) > sequence(&snapshot[2]), "{fresh}");
    let (rest, ended) = stream.rest();
    assert_clean_exit(&ended, "events --stream --timeout 2");
    assert!(
        rest.iter().all(|f| f["task_id"] == "fresh"),
        "nothing changed but the new task: {rest:#?}"
    );
}

/// DESIGN §4: `grep` keeps only matching lines (in answers and streams); a pattern that is
/// not a regex is a `CommandInputError` at `grep`.
#[test]
fn grep_keeps_only_matching_lines_and_a_bad_regex_is_an_input_error() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({
        "id": "g",
        "shell": "printf 'ok 1\\nerr 2\\nok 3\\nerror 4\\nfine 5\\n'",
    }));
    sandbox.wait("g");
    let logs = sandbox.ok(&["logs"], &json!({"id": "g", "grep": "err"}));
    assert_eq!(texts(&logs["lines"]), ["err 2", "error 4"], "{logs}");
    assert_eq!(logs["grep"], "err", "{logs}");
    let logs = sandbox.ok(&["logs"], &json!({"id": "g", "grep": "^ok [0-9]$"}));
    assert_eq!(texts(&logs["lines"]), ["ok 1", "ok 3"], "{logs}");

    let mut stream = Stream::spawn(
        sandbox.command_with(&["logs", "--stream"], &json!({"id": "g", "grep": "err"})),
    );
    let (frames, ended) = stream.rest();
    assert_clean_exit(&ended, "logs --stream with grep");
    let lines: Vec<&Value> = frames.iter().map(|f| &f["data"]["line"]).collect();
    assert_eq!(lines, [&json!("err 2"), &json!("error 4")]);

    for args in [&["logs"][..], &["logs", "--stream"]] {
        let error = sandbox.fail(args, &json!({"id": "g", "grep": "(unclosed"}));
        assert_eq!(error["type"], "CommandInputError", "{error}");
        assert_eq!(error["details"]["path"], "grep", "{error}");
    }
}

/// DESIGN §4 / RELIABILITY 16: invalid UTF-8 shows as U+FFFD and a progress bar redrawn with
/// `\r` shows its last state, in `logs`, `events` and streams, while the log keeps every byte.
#[test]
fn invalid_utf8_and_carriage_returns_render_as_a_terminal_would_while_the_bytes_stay() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({
        "id": "raw",
        "shell": r"printf 'a\377\376b\n10%%\r20%%\r30%%\ndone\r\n'",
    }));
    sandbox.wait("raw");
    assert_eq!(
        fs::read(log_path(&sandbox, "raw")).expect("log"),
        b"a\xff\xfeb\n10%\r20%\r30%\ndone\r\n"
    );
    let expected = ["a\u{fffd}\u{fffd}b", "30%", "done"];
    let logs = sandbox.ok(&["logs"], &json!({"id": "raw"}));
    assert_eq!(texts(&logs["lines"]), expected, "{logs}");

    let events = sandbox.ok(&["events"], &json!({"id": "raw"}));
    let lines: Vec<&str> = events["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .filter(|f| f["type"] == "task.log.line")
        .map(|f| f["data"]["line"].as_str().expect("line"))
        .collect();
    assert_eq!(lines, expected, "{events}");

    let mut stream =
        Stream::spawn(sandbox.command_with(&["logs", "--stream"], &json!({"id": "raw"})));
    let (frames, ended) = stream.rest();
    assert_clean_exit(&ended, "logs --stream");
    let lines: Vec<&str> = frames
        .iter()
        .map(|f| f["data"]["line"].as_str().expect("line"))
        .collect();
    assert_eq!(lines, expected);
}

/// Issue 20 item 6: `events --stream {ids}` or a selector follows several tasks in one NDJSON
/// stream. Each frame is numbered as the task's own follow numbers it (so
/// `events {id, after: sequence}` resumes that task exactly there), log lines come only
/// when `lines` is asked for, each with its cursor, and the stream ends by itself once every
/// task has ended.
#[test]
fn events_stream_over_several_tasks_ends_when_each_has_ended_and_each_frame_resumes_its_task() {
    let sandbox = Sandbox::new();
    let mut gates = Vec::new();
    for (id, then) in [("web", "exit 3"), ("api", "")] {
        let fifo = format!("{id}.fifo");
        let path = Gate::create(&sandbox, &fifo);
        sandbox.start(&json!({"id": id, "tags": ["dev"], "shell": format!("cat {fifo}; {then}")}));
        gates.push(Gate::open(&path));
    }
    // An ended task with the tag is part of the choice: its frames up to its end, at once.
    sandbox.start(&json!({"id": "old", "tags": ["dev"], "shell": "echo gone"}));
    sandbox.wait("old");
    sandbox.start(&json!({"id": "other", "command": "sleep", "args": ["1000"]}));
    gates[0].write(b"web 1\n");
    wait_for_log(&sandbox, "web", "web 1\n");

    let mut stream = Stream::spawn(
        sandbox.command_with(&["events", "--stream"], &json!({"tag": "dev", "lines": 5})),
    );
    let mut frames = Vec::new();
    // Both running tasks are followed once `api`'s opening status frame was printed.
    while !frames
        .iter()
        .any(|f: &Value| f["task_id"] == "api" && f["type"] == "task.status")
    {
        frames.push(stream.next());
    }
    gates[1].write(b"api 1\n");
    gates[0].write(b"web 2\n");
    drop(gates);
    let (rest, ended) = stream.rest();
    assert_clean_exit(&ended, "events --stream {tag}");
    frames.extend(rest);

    assert!(
        frames.iter().all(|f| f["task_id"] != "other"),
        "only the chosen tasks: {frames:#?}"
    );
    let of = |id: &str| -> Vec<&Value> { frames.iter().filter(|f| f["task_id"] == id).collect() };
    for id in ["web", "api", "old"] {
        let own = of(id);
        let numbers: Vec<u64> = own.iter().map(|f| sequence(f)).collect();
        assert!(
            numbers.windows(2).all(|w| w[0] < w[1]),
            "{id}'s frames are numbered in its own order: {own:#?}"
        );
        let last = own
            .last()
            .unwrap_or_else(|| panic!("no frame of {id}: {frames:#?}"));
        assert_eq!(
            last["type"], "task.ended",
            "{id} ends with its end: {own:#?}"
        );
        // Every frame of the stream is the frame the task's own events answer with that
        // sequence, so the stream resumes per task from any of them.
        let own_events =
            sandbox.ok(&["events"], &json!({"id": id, "lines": 100}))["frames"].clone();
        for frame in &own {
            let same = own_events
                .as_array()
                .expect("frames")
                .iter()
                .find(|f| f["sequence"] == frame["sequence"])
                .unwrap_or_else(|| {
                    panic!(
                        "{id}: no frame {} in events: {own_events}",
                        frame["sequence"]
                    )
                });
            assert_eq!(same["type"], frame["type"], "{id}: {frame} vs {same}");
            assert_eq!(
                same["data"]["line"], frame["data"]["line"],
                "{id}: {frame} vs {same}"
            );
            assert_eq!(
                same["data"]["cursor"], frame["data"]["cursor"],
                "{id}: {frame} vs {same}"
            );
        }
    }
    let lines = |id: &str| -> Vec<String> {
        of(id)
            .iter()
            .filter(|f| f["type"] == "task.log.line")
            .map(|f| {
                assert!(
                    f["data"]["cursor"].is_string(),
                    "a line carries its cursor: {f}"
                );
                f["data"]["line"].as_str().expect("line").to_owned()
            })
            .collect()
    };
    assert_eq!(lines("web"), ["web 1", "web 2"], "{frames:#?}");
    assert_eq!(lines("api"), ["api 1"], "{frames:#?}");
    assert_eq!(lines("old"), ["gone"], "{frames:#?}");
    assert_eq!(of("web").last().expect("end")["data"]["exit_code"], 3);

    // Resuming one task after a frame seen in the stream gives what followed it.
    let first_web_line = of("web")
        .into_iter()
        .find(|f| f["type"] == "task.log.line")
        .expect("a web line");
    let resumed = sandbox.ok(
        &["events"],
        &json!({"id": "web", "after": sequence(first_web_line)}),
    );
    let resumed_lines: Vec<&Value> = resumed["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .filter(|f| f["type"] == "task.log.line")
        .collect();
    assert_eq!(resumed_lines.len(), 1, "{resumed}");
    assert_eq!(resumed_lines[0]["data"]["line"], "web 2", "{resumed}");

    // Without `lines`, lifecycle frames only.
    let outcome = sandbox.call(&["events", "--stream"], &json!({"ids": ["web", "old"]}));
    let quiet: Vec<Value> = outcome
        .stdout
        .lines()
        .map(|l| parse_frame(l, "events --stream {ids}"))
        .collect();
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert!(
        quiet.iter().all(|f| f["type"] != "task.log.line"),
        "no log lines unless asked: {quiet:#?}"
    );
    for id in ["web", "old"] {
        assert!(
            quiet
                .iter()
                .any(|f| f["task_id"] == id && f["type"] == "task.ended"),
            "{id}: {quiet:#?}"
        );
    }
    sandbox.stop("other");
}

/// Issue 20 item 6: a stream over several tasks given `--timeout` ends with a `stream.end`
/// per task (where to resume it); a task removed while it is followed is said at once
/// (`reason: "removed"`) and the others go on; what it cannot do is refused with a path.
#[test]
fn events_stream_over_several_tasks_says_how_each_ended_and_refuses_what_it_cannot_do() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "long", "command": "sleep", "args": ["1000"]}));
    sandbox.start(&json!({"id": "short", "command": "true"}));
    sandbox.wait("short");
    let outcome = sandbox.call(
        &["events", "--stream", "--timeout", "0.5"],
        &json!({"ids": ["long", "short"], "lines": 0}),
    );
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    let frames: Vec<Value> = outcome
        .stdout
        .lines()
        .map(|l| parse_frame(l, "events --stream --timeout"))
        .collect();
    let ends: Vec<&Value> = frames
        .iter()
        .filter(|f| f["type"] == "stream.end")
        .collect();
    assert_eq!(ends.len(), 2, "{frames:#?}");
    assert_eq!(ends[0]["task_id"], "long", "{frames:#?}");
    assert_eq!(ends[0]["data"]["reason"], "timeout", "{frames:#?}");
    assert_eq!(ends[1]["task_id"], "short", "{frames:#?}");
    assert_eq!(ends[1]["data"]["reason"], "ended", "{frames:#?}");
    for end in &ends {
        assert!(end["data"]["cursor"].is_string(), "{end}");
        assert!(end["data"]["next_sequence"].is_u64(), "{end}");
    }

    // A task whose folder disappears under the follow.
    let gate_path = Gate::create(&sandbox, "stays.fifo");
    sandbox.start(&json!({"id": "stays", "shell": "cat stays.fifo"}));
    let gate = Gate::open(&gate_path);
    let mut stream = Stream::spawn(
        sandbox.command_with(&["events", "--stream"], &json!({"ids": ["long", "stays"]})),
    );
    let mut seen = Vec::new();
    while !seen.iter().any(|f: &Value| f["task_id"] == "stays") {
        seen.push(stream.next());
    }
    let supervisor = sandbox.supervisor("long");
    sandbox.track(sandbox.leader("long"));
    sandbox.track(supervisor);
    fs::rename(sandbox.task_dir("long"), sandbox.root().join("long-away")).expect("move away");
    let removed = stream.next();
    assert_eq!(removed["type"], "stream.end", "{removed}");
    assert_eq!(removed["task_id"], "long", "{removed}");
    assert_eq!(removed["data"]["reason"], "removed", "{removed}");
    drop(gate);
    let (rest, ended) = stream.rest();
    assert_clean_exit(&ended, "events --stream after a removal");
    assert!(
        rest.iter()
            .any(|f| f["task_id"] == "stays" && f["type"] == "task.ended"),
        "the other task is followed to its end: {rest:#?}"
    );
    supervisor.signal(Signal::SIGTERM);

    for (payload, path) in [
        (json!({"ids": ["stays"], "after": 3}), "after"),
        (json!({"id": "stays", "ids": ["stays"]}), "id"),
        (json!({"ids": ["stays"], "tag": "x"}), "ids"),
    ] {
        let error = sandbox.fail(&["events", "--stream"], &payload);
        assert_eq!(error["type"], "CommandInputError", "{payload}: {error}");
        assert_eq!(error["details"]["path"], path, "{payload}: {error}");
    }
    let error = sandbox.fail(
        &["events", "--stream"],
        &json!({"ids": ["stays", "nobody"]}),
    );
    assert_eq!(error["type"], "TaskNotFound", "{error}");
    let error = sandbox.fail(&["events"], &json!({"ids": ["stays"]}));
    assert_eq!(error["type"], "CommandInputError", "{error}");
    assert!(
        error["details"]["hint"]
            .as_str()
            .is_some_and(|h| h.contains("--stream")),
        "{error}"
    );
}

/// A stream over several tasks counts a task as ended only when it has: a task its restart
/// policy restarts is followed into each new run, from its first frame, up to its final
/// end (here `restart_limit` in run 3), and each frame keeps its run's numbering.
#[test]
fn events_stream_over_several_tasks_follows_a_task_through_its_automatic_restarts() {
    let sandbox = Sandbox::new();
    let policy = json!({"on": "failure", "max_restarts": 2, "min_uptime_s": 10,
        "backoff": {"initial_s": 0.1, "factor": 2, "max_s": 1}});
    // Run 1 waits for the file `go`, made once the stream follows it; later runs find it.
    let shell = "while [ ! -e go ]; do sleep 0.02; done; echo up; exit 7";
    sandbox.start(&json!({"id": "crash", "tags": ["t"], "shell": shell, "restart_policy": policy}));
    sandbox.start(&json!({"id": "ok", "tags": ["t"], "command": "true"}));
    let mut stream = Stream::spawn(
        sandbox.command_with(&["events", "--stream"], &json!({"tag": "t", "lines": 5})),
    );
    let mut frames = vec![stream.next()];
    assert_eq!(frames[0]["task_id"], "crash", "{frames:#?}");
    fs::write(sandbox.work().join("go"), "").expect("make the gate");
    let (rest, ended) = stream.rest();
    assert_clean_exit(&ended, "events --stream over a crash loop");
    frames.extend(rest);
    let crash: Vec<&Value> = frames.iter().filter(|f| f["task_id"] == "crash").collect();
    let ends: Vec<(u64, &str)> = crash
        .iter()
        .filter(|f| f["type"] == "task.ended")
        .map(|f| {
            (
                f["data"]["run"].as_u64().expect("run"),
                f["data"]["reason"].as_str().expect("reason"),
            )
        })
        .collect();
    assert_eq!(
        ends,
        [(1, "exit"), (2, "exit"), (3, "restart_limit")],
        "{crash:#?}"
    );
    let restarting = crash
        .iter()
        .filter(|f| f["type"] == "task.restarting")
        .count();
    assert_eq!(restarting, 2, "{crash:#?}");
    let lines = crash
        .iter()
        .filter(|f| f["type"] == "task.log.line")
        .count();
    assert_eq!(lines, 3, "each run's line: {crash:#?}");
    let numbers: Vec<u64> = crash.iter().map(|f| sequence(f)).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{crash:#?}");
    assert_eq!(crash.last().expect("frames")["type"], "task.ended");
    assert!(
        frames
            .iter()
            .any(|f| f["task_id"] == "ok" && f["type"] == "task.ended"),
        "{frames:#?}"
    );
}

/// `events --stream {tag}` over more tasks than the caller's soft open-file limit allows
/// (each followed task holds its log open; a shell's default `ulimit -n` is often 1024): the
/// stream raises its soft limit as far as the hard limit lets it and follows every task,
/// instead of failing with `StoreError` (EMFILE) after printing some of their frames.
#[test]
fn events_stream_over_several_tasks_follows_more_tasks_than_the_soft_open_file_limit() {
    const TASKS: usize = 40;
    const SOFT: libc::rlim_t = 24;
    let mut hard = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only fills the struct it is given.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut hard) };
    assert_eq!(read, 0, "getrlimit");
    if hard.rlim_max < 4 * TASKS as libc::rlim_t {
        crate::support::note("the hard open-file limit is too low to test raising the soft one");
        return;
    }
    let sandbox = Sandbox::new();
    let batch: Vec<Value> = (0..TASKS)
        .map(|i| json!({"id": format!("many-{i}"), "command": "true", "tags": ["many"]}))
        .collect();
    let started = sandbox.ok(&["start"], &json!(batch));
    assert_eq!(started["success_count"], TASKS, "{started}");
    for i in 0..TASKS {
        sandbox.wait(&format!("many-{i}"));
    }

    let mut command = sandbox.command_with(
        &["events", "--stream", "--timeout", "30"],
        &json!({"tag": "many"}),
    );
    crate::support::with_open_file_limit(&mut command, SOFT);
    let outcome = crate::support::spawn(command).finish();
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    let frames: Vec<Value> = outcome
        .stdout
        .lines()
        .map(|l| parse_frame(l, "events --stream {tag} under a low open-file limit"))
        .collect();
    let count = |kind: &str| frames.iter().filter(|f| f["type"] == kind).count();
    assert_eq!(count("task.ended"), TASKS, "{outcome:#?}");
    assert_eq!(count("stream.end"), TASKS, "{outcome:#?}");
    assert!(
        frames
            .iter()
            .filter(|f| f["type"] == "stream.end")
            .all(|f| f["data"]["reason"] == "ended"),
        "{frames:#?}"
    );
}
