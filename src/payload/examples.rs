//! Example payloads, kept as files under `examples/<command>/<name>.json` (usable as
//! `@examples/start/batch.json`) and compiled in, and the answer of `examples list|show`.
//! A test validates each against its command's schema and runs the `start` ones for real.

use serde::Serialize;
use serde_json::Value;

/// One example payload.
#[derive(Debug)]
pub struct ExampleFile {
    pub command: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    /// Flags that go with it (`--wait`).
    pub flags: &'static [&'static str],
    /// The payload, as in the file.
    pub text: &'static str,
}

macro_rules! example {
    ($command:literal, $name:literal, $flags:expr, $description:literal) => {
        ExampleFile {
            command: $command,
            name: $name,
            description: $description,
            flags: $flags,
            text: include_str!(concat!("../../examples/", $command, "/", $name, ".json")),
        }
    };
}

/// Every example, by command.
pub const EXAMPLES: &[ExampleFile] = &[
    example!(
        "start",
        "dev-server",
        &["--wait"],
        "Start a dev server and answer once its port accepts connections; run it again and the running server is answered (reused: true) instead of a second one."
    ),
    example!(
        "start",
        "command-and-args",
        &[],
        "Run a program directly (no shell), stopped if it runs longer than 30 minutes."
    ),
    example!(
        "start",
        "wait-for-the-end",
        &["--wait", "--timeout", "600"],
        "Run a shell line with an environment variable and answer when it has ended; its `step 1/2` lines become the task's progress."
    ),
    example!(
        "start",
        "steps",
        &["--wait", "--timeout", "60"],
        "A task that reports a tree of steps (a parent, Build, with two children, Compile and Test) by printing step lines, `{\"type\":\"background-tasks.step\",\"id\",\"parent\",\"title\",\"status\"}`; the answer's `steps` holds them, and `events` has a `task.step` frame for each change."
    ),
    example!(
        "start",
        "batch",
        &["--concurrency", "2", "--wait"],
        "A batch: three tasks, at most two at a time, answered in input order once all have ended."
    ),
    example!(
        "start",
        "timeout",
        &[],
        "A long task that is stopped after 10 minutes (status timed_out), with 2 s between SIGTERM and SIGKILL."
    ),
    example!(
        "start",
        "restart-on-failure",
        &["--wait"],
        "A task its supervisor restarts when it fails, after 0.2 s, then 0.4 s: after 2 restarts of runs shorter than 5 s it ends failed (reason restart_limit), which --wait answers; a 6th start within a minute answers StartThrottled with retry_after_s."
    ),
    example!(
        "status",
        "one-task",
        &[],
        "One task's status, pid, exit code and ports."
    ),
    example!(
        "list",
        "running-dev-tasks",
        &[],
        "Running tasks tagged dev."
    ),
    example!(
        "list",
        "some-fields",
        &[],
        "Every task, with only the fields a script needs."
    ),
    example!("list", "by-id", &[], "Only these tasks."),
    example!(
        "list",
        "failed-tasks",
        &[],
        "Every task that ended other than with exit code 0 (killed and timed out included), with epoch-millisecond end times for jq."
    ),
    example!(
        "wait",
        "until-it-ends",
        &["--timeout", "600"],
        "Block until the task has ended (TaskWaitTimedOut after 10 minutes; the task runs on)."
    ),
    example!(
        "wait",
        "until-http-answers",
        &["--timeout", "60"],
        "Block until a URL answers 2xx or 3xx: instead of sleeping and hoping the server is up."
    ),
    example!(
        "wait",
        "until-a-log-line",
        &["--timeout", "60"],
        "Block until the current run prints a line matching a regular expression."
    ),
    example!(
        "wait",
        "first-of-several",
        &["--timeout", "600"],
        "Block until the first of several tasks has ended (mode all: until every one has)."
    ),
    example!(
        "wait",
        "every-task-tagged",
        &["--timeout", "600"],
        "Block until every task tagged session-7 has ended, answering only the fields a script needs."
    ),
    example!(
        "stop",
        "one-task",
        &[],
        "SIGTERM to the task's whole process group, SIGKILL after its grace_s; answers once it has ended."
    ),
    example!(
        "stop",
        "signal-and-grace",
        &[],
        "SIGINT first (like Ctrl-C), SIGKILL 10 s later if it still runs."
    ),
    example!("stop", "batch", &[], "Stop two tasks in one call."),
    example!(
        "stop",
        "every-task-tagged",
        &[],
        "Stop every queued or running task tagged session-7, answered as a batch with only each task's id and status."
    ),
    example!(
        "restart",
        "one-task",
        &[],
        "Stop the task if it runs and start its next run with the same command."
    ),
    example!(
        "restart",
        "with-env",
        &[],
        "Environment values are never stored: a task started with env needs them again."
    ),
    example!("logs", "last-lines", &[], "The last 50 lines of output."),
    example!(
        "logs",
        "poll-with-a-cursor",
        &[],
        "Only what came after a cursor: pass each answer's next_cursor as the next call's after to poll without repeats."
    ),
    example!(
        "logs",
        "grep",
        &[],
        "Only lines matching a regular expression, among the last 200."
    ),
    example!(
        "events",
        "lifecycle-only",
        &["--stream"],
        "Follow status changes and the end, without past log lines."
    ),
    example!(
        "events",
        "several-tasks-with-their-output",
        &["--stream"],
        "Follow every task tagged session-7 (as tagged now), their new output lines included, until each has ended; each frame's task_id and sequence resume that task."
    ),
    example!(
        "events",
        "resume-after-a-cursor",
        &[],
        "Frames after a log cursor (a line's cursor, or next_cursor)."
    ),
    example!(
        "events",
        "resume-after-a-sequence",
        &[],
        "Frames after a frame's sequence number (here the first frame of run 2)."
    ),
    example!(
        "rm",
        "one-task",
        &[],
        "Remove a finished task and its files."
    ),
    example!(
        "rm",
        "batch",
        &[],
        "Remove two tasks; force stops the second first if it still runs."
    ),
    example!(
        "prune",
        "older-than-a-day",
        &[],
        "Remove tasks that ended more than a day ago."
    ),
    example!(
        "prune",
        "keep-the-newest",
        &[],
        "Remove tasks that exited, keeping the 20 that ended last."
    ),
];

/// The answer of `examples list` (no payloads) and `examples show` (with them).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ExamplesAnswer {
    /// The command shown (`examples show`); absent for `examples list`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    pub examples: Vec<Example>,
}

/// One example.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Example {
    pub command: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    /// Flags that go with the payload.
    pub flags: &'static [&'static str],
    /// Where it is kept in the source repository (`examples/start/batch.json`).
    pub file: String,
    /// A command line that runs it.
    pub run: String,
    /// The payload; `examples show` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
}

impl ExampleFile {
    /// The payload as one line of JSON.
    pub fn payload(&self) -> Value {
        // The files are checked by a test to be JSON; Null would only hide a broken build.
        serde_json::from_str(self.text).unwrap_or(Value::Null)
    }

    /// `background-tasks start --wait '{"id":...}'`.
    pub fn command_line(&self) -> String {
        let payload = self.payload().to_string().replace('\'', r"'\''");
        let mut line = format!("background-tasks {}", self.command);
        for flag in self.flags {
            line.push(' ');
            line.push_str(flag);
        }
        line.push_str(&format!(" '{payload}'"));
        line
    }

    /// The example as `examples list` (without the payload) or `examples show` shows it.
    pub fn answer(&self, with_payload: bool) -> Example {
        Example {
            command: self.command,
            name: self.name,
            description: self.description,
            flags: self.flags,
            file: format!("examples/{}/{}.json", self.command, self.name),
            run: self.command_line(),
            payload: with_payload.then(|| self.payload()),
        }
    }
}

/// The commands that have examples, in order.
pub fn commands() -> Vec<&'static str> {
    let mut commands: Vec<&'static str> = Vec::new();
    for example in EXAMPLES {
        if !commands.contains(&example.command) {
            commands.push(example.command);
        }
    }
    commands
}
