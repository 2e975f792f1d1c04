//! `capabilities`: what this build is and does, for an agent to learn the tool from the tool:
//! version, protocol, commands and flags (read from the clap definitions), statuses, error
//! types, exit codes, limits, defaults and the optional features this machine supports.

use crate::catalog;
use crate::commands::exit_status;
use crate::error::{EXIT_FAILURE, Error};
use crate::lifecycle::logs::{MAX_INLINE_BYTES, MAX_LINE_BYTES};
use crate::lifecycle::wait::LOG_TAIL_LINES;
use crate::paths::TaskId;
use crate::payload::MAX_PAYLOAD_BYTES;
use crate::payload::discovery::{
    CapabilitiesAnswer, CommandInfo, Defaults, ErrorInfo, ExitCodeInfo, Feature, FlagInfo, Limits,
    McpToolInfo, ModeInfo, StatusInfo, StepsInfo,
};
use crate::payload::input::{DEFAULT_GRACE_S, DEFAULT_LOG_LINES, MAX_SECONDS, MAX_TIMEOUT_S};
use crate::payload::task::{Reason, Status};
use crate::state::record::FORMAT_VERSION;

/// The version of the JSON contract (envelope, payloads, answers, frames); the schemas' ids
/// carry it (`/v1`).
pub const PROTOCOL_VERSION: u32 = crate::schema::VERSION;

pub fn run() -> CapabilitiesAnswer {
    let cli = crate::cli::command();
    let commands = catalog::COMMANDS
        .iter()
        .filter_map(|entry| {
            let name = entry.name;
            let mut words = name.split(' ');
            let mut command = cli.find_subcommand(words.next()?)?;
            for word in words {
                command = command.find_subcommand(word)?;
            }
            Some(CommandInfo {
                name: name.to_owned(),
                summary: command
                    .get_about()
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
                payload: entry.payload.as_str(),
                batch: entry.batch,
                stream: entry.stream,
                flags: flags(command, false),
                schemas: crate::schema::all()
                    .iter()
                    .filter(|e| e.name == name)
                    .map(|e| e.id())
                    .collect(),
            })
        })
        .collect();
    CapabilitiesAnswer {
        name: "background-tasks",
        version: env!("CARGO_PKG_VERSION"),
        protocol_version: PROTOCOL_VERSION,
        record_format_version: FORMAT_VERSION,
        commands,
        global_flags: flags(&cli, true),
        payload_modes: vec![
            mode("json", "Literal JSON text as the last argument."),
            mode("@path", "@ and a file's path: the file holds the JSON."),
            mode("-", "A single dash: JSON read from stdin."),
        ],
        output_modes: vec![
            mode(
                "auto",
                "Inline when the lines shown are the whole log and fit the budget, else summary+artifact.",
            ),
            mode("inline", "Always inline, nothing cut."),
            mode(
                "artifact",
                "Always summary+artifact: the lines and the log file's path.",
            ),
        ],
        statuses: Status::ALL
            .iter()
            .map(|s| StatusInfo {
                name: s.as_str(),
                terminal: s.is_terminal(),
            })
            .collect(),
        reasons: variants::<Reason>(),
        error_types: Error::TYPES
            .iter()
            .map(|&kind| ErrorInfo {
                kind,
                retryable: match kind {
                    "TaskWaitTimedOut" => "always",
                    "TaskNotReady" | "SpawnFailed" | "StoreError" => "sometimes",
                    _ => "never",
                },
            })
            .collect(),
        exit_codes: vec![
            ExitCodeInfo {
                code: 0,
                meaning: "Success: the envelope on stdout says ok: true (also --help, --version, and a closed stdout). With --exit-status (wait, start --wait, restart --wait) the answer is on stdout as usual and the code follows the tasks: 0 when every one succeeded or runs on (ready, or not the one mode any waited for); else that of the first that did not, in answer order: its own exit code (1 to 255) when it exited by itself, or 124, 125, 127 or 128 + signal below. An error of the call itself is still 1, with stdout empty.",
            },
            ExitCodeInfo {
                code: EXIT_FAILURE,
                meaning: "Failure: the error envelope on stderr; or a batch with a failed item, or doctor with a failed check (their answer is on stdout).",
            },
        ]
        .into_iter()
        .chain(
            exit_status::CODES
                .iter()
                .map(|&(code, meaning)| ExitCodeInfo { code, meaning }),
        )
        .collect(),
        progress_forms: crate::progress::FORMS
            .iter()
            .map(|&(name, description)| mode(name, description))
            .collect(),
        steps: StepsInfo {
            line_type: crate::steps::LINE_TYPE,
            example: crate::steps::EXAMPLE,
            description: "A line of output that is a JSON object with this `type` and a string `id` reports a step; `parent` (the id of a step already reported), `title` (default: the id), `status` (default running), `current`, `total` and `message` are optional, other fields are ignored. A line for a known id merges into it: the fields it gives replace those the step had. A parent is taken when the step is first seen, and only if already known (else the step is a root), so there is never a cycle. Titles and messages are cut to the line budget. Status and every task answer show `steps` (flat, parents first); `events` has a `task.step` frame per change (changes between two updates, at most four a second, come as one). When the run ends, each step still running is closed with its outcome: done after exit 0, failed otherwise.",
            statuses: vec!["running", "done", "failed", "skipped"],
            max_steps: crate::steps::MAX_STEPS,
            max_text_bytes: crate::steps::TEXT_BUDGET,
            max_line_bytes: crate::steps::MAX_LINE,
            max_id_bytes: crate::steps::MAX_ID_BYTES,
        },
        limits: Limits {
            max_payload_bytes: MAX_PAYLOAD_BYTES,
            max_line_bytes: MAX_LINE_BYTES,
            max_inline_bytes: MAX_INLINE_BYTES,
            max_grace_s: MAX_SECONDS,
            max_timeout_s: MAX_TIMEOUT_S,
            task_id_pattern: TaskId::PATTERN,
            batch_workers: crate::lifecycle::batch::WORKERS,
            log_tail_lines: LOG_TAIL_LINES,
        },
        defaults: Defaults {
            grace_s: DEFAULT_GRACE_S,
            wait_timeout_s: crate::cli::DEFAULT_WAIT_S,
            log_lines: DEFAULT_LOG_LINES,
            output: "auto",
            stop_signal: "SIGTERM",
            if_running: "error",
            until: "exit",
            state_dir: "~/.local/state/background-tasks",
        },
        features: features(),
        mcp_tools: mcp_tools(),
        environment: vec![
            mode(
                crate::paths::env::HOME,
                "The state directory (default ~/.local/state/background-tasks). Set in every task's environment to the state directory it runs from.",
            ),
            mode(
                crate::paths::env::TASK_ID,
                "Set in every task's environment to its id: a start run from inside a task records it as the new task's parent.",
            ),
        ],
    }
}

fn mode(name: &'static str, description: &'static str) -> ModeInfo {
    ModeInfo { name, description }
}

/// The flags and positional arguments of `command` (only the global ones for the top level).
fn flags(command: &clap::Command, global: bool) -> Vec<FlagInfo> {
    command
        .get_arguments()
        .filter(|a| !a.is_hide_set() && a.is_global_set() == global)
        .filter(|a| !global || a.get_long().is_some())
        .map(|arg| {
            let value = arg
                .get_value_names()
                .and_then(|names| names.first())
                .map(|n| n.to_string());
            let takes_value = arg.get_action().takes_values();
            FlagInfo {
                name: match arg.get_long() {
                    Some(long) => format!("--{long}"),
                    None => format!("<{}>", value.clone().unwrap_or_default()),
                },
                value: if takes_value {
                    value.or_else(|| Some(arg.get_id().as_str().to_uppercase()))
                } else {
                    None
                },
                values: if takes_value {
                    arg.get_possible_values()
                        .iter()
                        .filter(|v| !v.is_hide_set())
                        .map(|v| v.get_name().to_owned())
                        .collect()
                } else {
                    Vec::new()
                },
                help: arg.get_help().map(|h| h.to_string()).unwrap_or_default(),
            }
        })
        .chain(
            // --help and --version are clap's own.
            global
                .then(|| {
                    [
                        (
                            "--help",
                            "Print help (a command's --help explains its payload).",
                        ),
                        ("--version", "Print the version."),
                    ]
                    .map(|(name, help)| FlagInfo {
                        name: name.to_owned(),
                        value: None,
                        values: Vec::new(),
                        help: help.to_owned(),
                    })
                })
                .into_iter()
                .flatten(),
        )
        .collect()
}

/// The names of an enum's variants, as serialized (from its schema).
fn variants<T: schemars::JsonSchema>() -> Vec<String> {
    let schema = schemars::schema_for!(T);
    let value = schema.as_value();
    if let Some(values) = value.get("enum").and_then(|v| v.as_array()) {
        return values
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
    }
    value
        .get("oneOf")
        .and_then(|v| v.as_array())
        .map(|alternatives| {
            alternatives
                .iter()
                .filter_map(|a| a.get("const").and_then(|c| c.as_str()).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The tools of `background-tasks mcp`, from the command table; none without the feature.
fn mcp_tools() -> Vec<McpToolInfo> {
    if !cfg!(feature = "mcp") {
        return Vec::new();
    }
    catalog::TOOLS
        .iter()
        .map(|tool| McpToolInfo {
            name: tool.name,
            read_only: tool.read_only,
            destructive: tool.destructive,
            idempotent: tool.idempotent,
            bound: tool.bound,
        })
        .collect()
}

/// What this machine's kernel offers that the tool uses when it can.
fn features() -> Vec<Feature> {
    // SAFETY: pidfd_open on our own pid with no flags returns a new descriptor (closed at
    // once) or -1 with ENOSYS on kernels before 5.3.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    if pidfd >= 0 {
        // SAFETY: the descriptor was just opened here and is owned by nothing else.
        unsafe { libc::close(pidfd as i32) };
    }
    // SAFETY: close_range over an empty range of descriptors touches none; it fails with
    // ENOSYS on kernels before 5.9.
    let close_range =
        unsafe { libc::syscall(libc::SYS_close_range, u32::MAX - 1, u32::MAX - 1, 0) } == 0;
    // SAFETY: inotify_init1 returns a new descriptor (closed at once) or -1.
    let inotify = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    if inotify >= 0 {
        // SAFETY: as above, our own new descriptor.
        unsafe { libc::close(inotify) };
    }
    vec![
        Feature {
            name: "pidfd",
            available: pidfd >= 0,
            description: "waits for a task's end and stop watch its supervisor through a pidfd, with no thread, and stop_with_pid follows its process through one (Linux 5.3+); without, waits use a helper thread or probe the lock, and the owner counts as gone and the task is stopped.",
        },
        Feature {
            name: "close_range",
            available: close_range,
            description: "Inherited descriptors are marked close-on-exec in one call (Linux 5.9+); else through /proc/self/fd.",
        },
        Feature {
            name: "inotify",
            available: inotify >= 0,
            description: "Followers and waits wake on file changes; without it they poll every 250 ms.",
        },
        Feature {
            name: "serve",
            available: cfg!(feature = "serve"),
            description: "serve: a live view of the tasks in the browser (HTTP and Server-Sent Events on 127.0.0.1); absent from builds without the serve feature.",
        },
        Feature {
            name: "completions",
            available: true,
            description: "completions bash|zsh|fish|elvish|powershell prints a completion script.",
        },
        Feature {
            name: "mcp",
            available: cfg!(feature = "mcp"),
            description: "mcp serves the task commands as MCP tools over stdio (mcp_tools lists them); a build without the mcp feature answers CommandInputError.",
        },
        Feature {
            name: "schemas",
            available: true,
            description: "schema list / schema show: JSON Schemas (draft 2020-12) of every payload, answer, frame and error.",
        },
    ]
}
