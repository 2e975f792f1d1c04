//! background-tasks: start, track and control local background processes.
//!
//! The process model, in three processes:
//!
//! ```text
//! background-tasks start ...  ──spawns──▶  background-tasks __supervise <id>  ──spawns──▶  the task
//! (answers in milliseconds,                (one per task, own session,                     (own session
//!  then exits)                              holds supervisor.lock, records                  and group, output
//!                                           pid/exit/signal in task.json)                   → output.log)
//! ```
//!
//! There is no daemon: every other command reads the state directory ([`paths`]), trusting
//! a record only as far as the lock says its supervisor is alive ([`state`]). Every
//! operation on tasks is in [`lifecycle`], with typed args and results; the CLI's commands
//! ([`commands`]) are adapters over it that return values and never print, and so are the
//! browser view (`serve`) and the MCP server (`mcp`), each behind the cargo feature of its
//! name. Everything printed goes through [`envelope`], except what `mcp` serves: JSON-RPC,
//! written by the MCP SDK.

pub mod ansi;
pub mod catalog;
pub mod cli;
pub mod commands;
pub mod envelope;
pub mod error;
pub mod escapees;
pub mod fault;
pub mod follow;
pub mod lifecycle;
#[cfg(feature = "mcp")]
pub mod mcp;
pub mod output_log;
pub mod paths;
pub mod payload;
pub mod pidfd;
pub mod procfs;
pub mod progress;
pub mod ready;
pub mod schema;
#[cfg(feature = "serve")]
pub mod serve;
pub mod state;
pub mod steps;
pub mod supervisor;
pub mod table;
pub mod time;
pub mod timeline;
pub mod wire_schema;

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::OnceLock;

use clap::error::ErrorKind;

use crate::cli::Command;
use crate::envelope::Output;
use crate::error::{EXIT_FAILURE, Error};

/// Runs the command line `args` (program name first) and returns the exit code.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    // The supervisor is entered only by `start`, as `__supervise <id>`: it skips building
    // the whole command line, which is on the path of every `start`.
    if args.len() == 3 && args[1] == supervisor::ENTRY {
        return supervisor::run::run(&args[2]);
    }
    run_command(&args)
}

/// Every command but the supervisor's entry. Never inlined into [`run`]: its frame (the
/// command line, every command's values) is tens of KiB of stack, which a supervisor, one
/// per running task, would otherwise touch and keep as private memory.
#[inline(never)]
fn run_command(args: &[OsString]) -> ExitCode {
    std::panic::set_hook(Box::new(internal_error));
    let (cli, name) = match cli::parse(args) {
        Ok(parsed) => parsed,
        Err(error) => return usage_error(args, &error),
    };
    let (Some(name), false) = (name, matches!(cli.command, Command::Supervise)) else {
        // Reached only with extra arguments, i.e. by hand.
        return usage_error_message("background-tasks", "__supervise is internal; start runs it");
    };
    let output = Output { pretty: cli.pretty };
    let _ = COMMAND.set(name);
    if fault::injected("panic") {
        panic!("injected fault: panic");
    }
    if matches!(cli.command, Command::Mcp) {
        return serve_mcp(&output);
    }
    match commands::execute(cli.command, &output) {
        // A closed stdout is not a failure: the reader got what it wanted.
        Ok(commands::Reply::Data(data)) => {
            let _ = output.success(name, &data);
            ExitCode::SUCCESS
        }
        Ok(commands::Reply::DataWithFailures(data)) => {
            let _ = output.success(name, &data);
            ExitCode::from(EXIT_FAILURE)
        }
        Ok(commands::Reply::DataWithCode(data, code)) => {
            let _ = output.success(name, &data);
            ExitCode::from(code)
        }
        Ok(commands::Reply::Streamed) => ExitCode::SUCCESS,
        Ok(commands::Reply::Text(text)) => {
            let _ = output.plain(&text);
            ExitCode::SUCCESS
        }
        Err(error) => {
            output.failure(name, &error);
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// `mcp`: serves MCP until stdin's EOF or the parent's death. Its stdout is JSON-RPC, so it
/// answers no envelope.
#[cfg(feature = "mcp")]
fn serve_mcp(_: &Output) -> ExitCode {
    ExitCode::from(mcp::run())
}

/// `mcp` in a build without the feature: an error envelope that says so.
#[cfg(not(feature = "mcp"))]
fn serve_mcp(output: &Output) -> ExitCode {
    output.failure(
        "mcp",
        &Error::input(
            "mcp is not compiled into this build",
            "Build background-tasks with its default features (the mcp feature) to serve MCP.",
        ),
    );
    ExitCode::from(EXIT_FAILURE)
}

/// The command being run, for the envelope of a panic.
static COMMAND: OnceLock<&'static str> = OnceLock::new();

/// The last-resort panic hook: a panic is a bug, and its last word is still an envelope
/// (`InternalError`, saying where) on stderr with exit code 1, not a Rust backtrace and an
/// abort. Whatever a task was doing goes on: tasks belong to their supervisors.
#[expect(
    clippy::disallowed_methods,
    reason = "a panic hook cannot return run()'s ExitCode; after the envelope, exit is its last word"
)]
fn internal_error(info: &std::panic::PanicHookInfo<'_>) {
    let error = Error::from_panic(info);
    let command = COMMAND.get().copied().unwrap_or("background-tasks");
    Output { pretty: false }.failure(command, &error);
    std::process::exit(i32::from(EXIT_FAILURE));
}

fn usage_error_message(command: &str, message: &str) -> ExitCode {
    Output { pretty: false }.failure(
        command,
        &Error::input(message, "Use start; it runs the supervisor itself."),
    );
    ExitCode::from(EXIT_FAILURE)
}

/// `--help` and `--version` print normally; every other parse error is an envelope.
fn usage_error(args: &[OsString], error: &clap::Error) -> ExitCode {
    let pretty = args.iter().any(|a| a == "--pretty");
    let output = Output { pretty };
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        let _ = output.plain(&error.render().to_string());
        return ExitCode::SUCCESS;
    }
    let words: Vec<&str> = args
        .iter()
        .skip(1)
        .filter_map(|a| a.to_str())
        .filter(|a| !a.starts_with('-'))
        .take(2)
        .collect();
    let command = catalog::named_by(&words).unwrap_or("background-tasks");
    let message = if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        "a command is required".to_owned()
    } else {
        let rendered = error.render().to_string();
        let mut lines = rendered.lines();
        let mut message = lines
            .next()
            .unwrap_or("invalid command line")
            .trim_start_matches("error: ")
            .to_owned();
        if message.ends_with(':') {
            // "the following required arguments were not provided:" and the names below.
            let names: Vec<&str> = lines
                .by_ref()
                .take_while(|l| l.starts_with("  "))
                .map(str::trim)
                .collect();
            message.push(' ');
            message.push_str(&names.join(", "));
        } else if let Some(allowed) = lines.find(|l| l.trim_start().starts_with("[possible values"))
        {
            // An invalid value is followed by the values allowed: they are the fix.
            message.push(' ');
            message.push_str(allowed.trim());
        }
        message
    };
    let hint = if command == "background-tasks" {
        format!(
            "Run background-tasks --help; commands: {}.",
            catalog::names().collect::<Vec<_>>().join(", ")
        )
    } else {
        format!("Run background-tasks {command} --help.")
    };
    output.failure(command, &Error::input(message, hint));
    ExitCode::from(EXIT_FAILURE)
}
