//! The CLI's commands: thin adapters over the lifecycle layer, one module per subcommand.
//!
//! Each one reads its payload, turns it into the lifecycle's args struct, calls the
//! operation ([`crate::lifecycle`]) and turns the result into its answer type
//! ([`crate::payload::answer`]). None prints or exits (`lib.rs` wraps the answer in the
//! envelope; a `--stream` prints its frames through [`Output`]), and none calls another:
//! what two commands share lives in the layer below.

pub mod capabilities;
pub mod doctor;
pub mod events;
pub mod examples;
pub mod exit_status;
pub mod interrupt;
pub mod list;
pub mod logs;
pub mod restart;
pub mod rm;
pub mod schema;
pub mod start;
pub mod status;
pub mod stop;
pub mod wait;

use std::ops::ControlFlow;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::cli::{Command, ExamplesCommand, SchemaCommand};
use crate::envelope::Output;
use crate::error::{Error, Result};
use crate::lifecycle::Cancel;
use crate::lifecycle::batch::{self, Item};
use crate::paths::TaskId;
use crate::payload;
use crate::payload::batch::{BatchAnswer, ItemResult};
use crate::payload::frame::Frame;

/// What a command produced.
#[derive(Debug)]
pub enum Reply {
    /// One answer, already encoded, to be printed as the envelope's `data`.
    Data(Box<RawValue>),
    /// A batch answer in which some items failed: printed like `Data`, exit code 1.
    DataWithFailures(Box<RawValue>),
    /// One answer, printed like `Data`, with this exit code: `--exit-status` (the tasks'
    /// ends, [`exit_status`]) or an interrupted wait (130).
    DataWithCode(Box<RawValue>, u8),
    /// Frames were already printed (`--stream`); nothing more to say.
    Streamed,
    /// Plain text for a shell, not an envelope (`completions`).
    Text(String),
}

/// Runs a public command. Streaming commands print their frames through `output`.
pub fn execute(command: Command, output: &Output) -> Result<Reply> {
    match command {
        Command::Start(args) => start::run(args),
        Command::Status(args) => status::run(args),
        Command::List(args) => list::run(args),
        Command::Wait(args) => wait::run(args),
        Command::Stop(args) => stop::run(args),
        Command::Restart(args) => restart::run(args),
        Command::Rm(args) => rm::run(args),
        Command::Prune(args) => data(rm::prune(args)?),
        Command::Logs(args) => logs::run(args, output),
        Command::Events(args) => events::run(args, output),
        Command::Serve(args) => serve(args, output),
        Command::Doctor => doctor::run(),
        Command::Capabilities => data(capabilities::run()),
        Command::Schema(SchemaCommand::List) => data(schema::list()),
        Command::Schema(SchemaCommand::Show { name }) => data(schema::show(&name)?),
        Command::Examples(ExamplesCommand::List) => data(examples::list()),
        Command::Examples(ExamplesCommand::Show { command }) => data(examples::show(&command)?),
        Command::Completions(args) => Ok(Reply::Text(completions(args.shell))),
        // lib.rs serves it before any command runs: it prints no envelope.
        Command::Mcp => Err(Error::input(
            "mcp is not a command that answers an envelope",
            "Run background-tasks mcp from an MCP client.",
        )),
        Command::Supervise => Err(Error::input(
            "__supervise is internal",
            "Use start; it runs the supervisor itself.",
        )),
    }
}

/// `serve`: the browser view, a front end of its own (`crate::serve`); it prints its
/// envelope itself once it listens, then serves until stopped.
#[cfg(feature = "serve")]
fn serve(args: crate::cli::ServeArgs, output: &Output) -> Result<Reply> {
    crate::serve::run(args, output)
}

/// Without the `serve` feature, the command is there and says why it cannot run.
#[cfg(not(feature = "serve"))]
fn serve(_: crate::cli::ServeArgs, _: &Output) -> Result<Reply> {
    Err(Error::input(
        "this build has no serve: it was built without the `serve` feature",
        "Build with the default features (cargo build --features serve) to get the browser view.",
    ))
}

/// One answer.
fn data(answer: impl Serialize) -> Result<Reply> {
    Ok(Reply::Data(encode(answer)?))
}

/// A payload the command requires: its bytes, or an error that says what to send.
fn required_bytes(argument: Option<&str>, command: &str, example: &str) -> Result<Vec<u8>> {
    payload::present(payload::read(argument)?, command, example)
}

/// A command that takes one payload or an array of them: an array is run as a batch, a few
/// items at a time, and answered in input order.
fn one_or_batch<T: DeserializeOwned + Send, A: Serialize + Send>(
    argument: Option<&str>,
    command: &str,
    example: &str,
    id: impl Fn(&T) -> Option<&TaskId> + Sync,
    work: impl Fn(T) -> Result<A> + Sync,
) -> Result<Reply> {
    let bytes = required_bytes(argument, command, example)?;
    match payload::one_or_many(&bytes, example)? {
        Ok(one) => data(work(one)?),
        Err(many) => run_batch(many, id, work),
    }
}

/// Runs `items` as a batch, a few at a time, answered in input order.
fn run_batch<T: Send, A: Serialize + Send>(
    items: Vec<T>,
    id: impl Fn(&T) -> Option<&TaskId> + Sync,
    work: impl Fn(T) -> Result<A> + Sync,
) -> Result<Reply> {
    let items = items.into_iter().enumerate().collect();
    let results = batch::run_items(
        items,
        batch::WORKERS,
        |t| id(t).map(ToString::to_string),
        work,
    );
    batch_reply(results, None, |_, answer| answer)
}

/// The batch answer for `items`, each answered by `answer` (given the item's index);
/// exit code 1 if any failed.
fn batch_reply<T, A: Serialize>(
    items: Vec<Item<T>>,
    concurrency: Option<usize>,
    answer: impl Fn(usize, T) -> A,
) -> Result<Reply> {
    let answer = batch_answer(items, concurrency, answer)?;
    let failed = answer.error_count > 0;
    let data = encode(answer)?;
    Ok(if failed {
        Reply::DataWithFailures(data)
    } else {
        Reply::Data(data)
    })
}

/// How a batch after `--wait` is answered (`start`, `restart`): `task_outcomes` counts how
/// the waited tasks ended, `interrupted` names a signal that ended the wait, and the exit
/// code follows `--exit-status` ([`exit_status::code`]), or is 1 when an item failed (an
/// interrupt's 130 wins over both).
struct WaitedBatch {
    wait: bool,
    exit_status: bool,
    interrupted: Option<&'static str>,
    concurrency: Option<usize>,
}

impl WaitedBatch {
    fn reply<T, A: Serialize>(
        self,
        items: Vec<Item<T>>,
        task: impl Fn(&T) -> &crate::payload::task::Task,
        answer: impl Fn(usize, T) -> A,
    ) -> Result<Reply> {
        let waited: Vec<_> = items
            .iter()
            .filter_map(|item| item.result.as_ref().ok())
            .map(&task)
            .collect();
        let outcomes = self
            .wait
            .then(|| crate::payload::batch::TaskOutcomes::count(waited.iter().copied()));
        let code = exit_status::code(self.exit_status, self.interrupted, waited);
        let mut batch = batch_answer(items, self.concurrency, answer)?;
        batch.task_outcomes = outcomes;
        batch.interrupted = self.interrupted;
        let code = match (batch.error_count, self.interrupted) {
            (_, Some(_)) => code,
            (1.., None) => crate::error::EXIT_FAILURE,
            (0, None) => code,
        };
        Ok(Reply::DataWithCode(encode(batch)?, code))
    }
}

/// The batch answer for `items`, each answered by `answer`.
fn batch_answer<T, A: Serialize>(
    items: Vec<Item<T>>,
    concurrency: Option<usize>,
    answer: impl Fn(usize, T) -> A,
) -> Result<BatchAnswer> {
    let results = items
        .into_iter()
        .map(|item| {
            let index = item.index;
            let result = item.result.and_then(|t| encode(answer(index, t)));
            ItemResult::new(item.index, item.target, result)
        })
        .collect();
    Ok(BatchAnswer::new(results, concurrency))
}

/// `--stream`: prints each frame as it comes; a closed stdout ends the follow, as does a
/// reader that went away while nothing was printed.
fn print_frames(output: &Output) -> (impl FnMut(Frame) -> ControlFlow<()>, Cancel) {
    let output = *output;
    let sink = move |frame: Frame| match output.frame(&frame) {
        Ok(()) => ControlFlow::Continue(()),
        Err(_) => ControlFlow::Break(()),
    };
    (sink, Cancel::when(move || output.reader_gone()))
}

/// A `--stream` given a `--timeout` ends with a `stream.end` frame, after the run's end or
/// when the time ran out; one stopped from outside (the reader went away) prints nothing.
fn end_stream(
    timeout: Option<std::time::Duration>,
    id: &str,
    end: crate::lifecycle::follow::FollowEnd,
    sink: &mut impl FnMut(Frame) -> ControlFlow<()>,
) {
    if timeout.is_none() {
        return;
    }
    if let Some(frame) = end.frame(id) {
        let _ = sink(frame);
    }
}

/// A completion script for `shell`, generated from the clap definitions.
fn completions(shell: clap_complete::Shell) -> String {
    // clap_complete offers hidden subcommands too (clap-rs/clap#1335): complete a copy of
    // the command line without them.
    let full = crate::cli::command();
    let mut command = clap::Command::new("background-tasks")
        .args(full.get_arguments().cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "background-tasks", &mut script);
    String::from_utf8_lossy(&script).into_owned()
}

/// Encodes an answer once, straight from its typed value: no intermediate JSON tree.
pub fn encode(answer: impl Serialize) -> Result<Box<RawValue>> {
    // Answers are plain structs of strings and numbers; this cannot fail.
    serde_json::value::to_raw_value(&answer).map_err(|e| {
        Error::input(
            format!("could not encode the answer: {e}"),
            "This is a bug; please report it.",
        )
    })
}
