//! One module per subcommand. Each takes its arguments, returns its answer as a value, and
//! never prints or exits: `lib.rs` wraps the answer in the envelope.

pub mod batch;
pub mod capabilities;
pub mod doctor;
pub mod events;
pub mod examples;
pub mod list;
pub mod logs;
pub mod restart;
pub mod rm;
pub mod schema;
pub mod start;
pub mod status;
pub mod stop;
pub mod wait;

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::cli::{Command, ExamplesCommand, SchemaCommand};
use crate::envelope::Output;
use crate::error::{Error, Result};
use crate::paths::{StateDir, TaskId};
use crate::payload;
use crate::payload::input::{RestartInput, RmInput, StartPayload, StopInput};

/// What a command produced.
#[derive(Debug)]
pub enum Reply {
    /// One answer, already encoded, to be printed as the envelope's `data`.
    Data(Box<RawValue>),
    /// A batch answer in which some items failed: printed like `Data`, exit code 1.
    DataWithFailures(Box<RawValue>),
    /// Frames were already printed (`--stream`); nothing more to say.
    Streamed,
    /// Plain text for a shell, not an envelope (`completions`).
    Text(String),
}

/// Runs a public command. Streaming commands print their frames through `output`.
pub fn execute(command: Command, output: &Output) -> Result<Reply> {
    let data = match command {
        Command::Start(args) => {
            let bytes = require(args.payload.as_deref(), "start", START_EXAMPLE)?;
            let payload = match payload::one_or_many(&bytes, START_EXAMPLE)? {
                Ok(one) => StartPayload::One(Box::new(one)),
                Err(many) => StartPayload::Batch(many),
            };
            let options = start::StartOptions {
                wait: args.wait.then(|| args.timeout.map(Duration::from_secs_f64)),
                concurrency: args.concurrency.map(usize::from),
            };
            return start::run(payload, options);
        }
        Command::Status(args) => encode(status::run(id_payload(args.payload, "status")?)?),
        Command::List(args) => {
            let input = payload::optional(
                payload::read(args.payload.as_deref())?,
                r#"{"status":"running"}"#,
            )?;
            encode(list::run(input)?)
        }
        Command::Wait(args) => {
            let input = payload::require(
                payload::read(args.payload.as_deref())?,
                "wait",
                r#"{"id":"web","until":{"port":3000}}"#,
            )?;
            encode(wait::run(input, args.timeout.map(Duration::from_secs_f64))?)
        }
        Command::Stop(args) => {
            let timeout = args.timeout.map(Duration::from_secs_f64);
            return one_or_batch(
                args.payload.as_deref(),
                "stop",
                r#"{"id":"web"}"#,
                |input: &StopInput| &input.id,
                |input| encode(stop::run(input, timeout)?),
            );
        }
        Command::Restart(args) => {
            return one_or_batch(
                args.payload.as_deref(),
                "restart",
                r#"{"id":"web"}"#,
                |input: &RestartInput| &input.id,
                |input| encode(restart::run(input)?),
            );
        }
        Command::Rm(args) => {
            return one_or_batch(
                args.payload.as_deref(),
                "rm",
                r#"{"id":"web"}"#,
                |input: &RmInput| &input.id,
                |input| encode(rm::run(input)?),
            );
        }
        Command::Prune(args) => {
            let input = payload::optional(
                payload::read(args.payload.as_deref())?,
                r#"{"older_than_s":86400,"keep_last":10}"#,
            )?;
            encode(rm::prune(input)?)
        }
        Command::Logs(args) => {
            let input = payload::require(
                payload::read(args.payload.as_deref())?,
                "logs",
                r#"{"id":"web","lines":50}"#,
            )?;
            let stream = args
                .stream
                .then(|| args.timeout.map(Duration::from_secs_f64));
            return logs::run(input, args.output, output, stream);
        }
        Command::Events(args) => {
            let input = payload::optional(
                payload::read(args.payload.as_deref())?,
                r#"{"id":"web","after":12}"#,
            )?;
            let stream = args
                .stream
                .then(|| args.timeout.map(Duration::from_secs_f64));
            return events::run(input, output, stream);
        }
        Command::Doctor => {
            let answer = doctor::run()?;
            let healthy = answer.healthy;
            let data = encode(answer)?;
            return Ok(if healthy {
                Reply::Data(data)
            } else {
                Reply::DataWithFailures(data)
            });
        }
        Command::Capabilities => encode(capabilities::run()),
        Command::Schema(SchemaCommand::List) => encode(schema::list()),
        Command::Schema(SchemaCommand::Show { name }) => encode(schema::show(&name)?),
        Command::Examples(ExamplesCommand::List) => encode(examples::list()),
        Command::Examples(ExamplesCommand::Show { command }) => encode(examples::show(&command)?),
        Command::Completions(args) => return Ok(Reply::Text(completions(args.shell))),
        Command::Supervise => Err(Error::input(
            "__supervise is internal",
            "Use start; it runs the supervisor itself.",
        )),
    }?;
    Ok(Reply::Data(data))
}

const START_EXAMPLE: &str = r#"{"id":"web","command":"npm","args":["run","dev"]}"#;

fn require(argument: Option<&str>, command: &str, example: &str) -> Result<Vec<u8>> {
    payload::present(payload::read(argument)?, command, example)
}

/// A command that takes one payload or an array of them: an array is run as a batch.
fn one_or_batch<T: DeserializeOwned + Send>(
    argument: Option<&str>,
    command: &str,
    example: &str,
    id: impl Fn(&T) -> &TaskId + Sync,
    work: impl Fn(T) -> Result<Box<RawValue>> + Sync,
) -> Result<Reply> {
    let bytes = require(argument, command, example)?;
    match payload::one_or_many(&bytes, example)? {
        Ok(one) => work(one).map(Reply::Data),
        Err(many) => {
            let items = many.into_iter().enumerate().collect();
            let results =
                batch::run_items(items, batch::WORKERS, |t| Some(id(t).to_string()), work);
            batch::answer(results, None)
        }
    }
}

fn id_payload(argument: Option<String>, command: &str) -> Result<payload::input::IdInput> {
    payload::require(
        payload::read(argument.as_deref())?,
        command,
        r#"{"id":"web"}"#,
    )
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

/// The state directory, created on first use and checked on every use.
pub fn open_state() -> Result<StateDir> {
    StateDir::open(StateDir::locate()?)
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
