//! One module per subcommand. Each takes its arguments, returns its answer as a value, and
//! never prints or exits: `lib.rs` wraps the answer in the envelope.

pub mod events;
pub mod list;
pub mod logs;
pub mod restart;
pub mod start;
pub mod status;
pub mod stop;
pub mod wait;

use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::cli::Command;
use crate::envelope::Output;
use crate::error::{Error, Result};
use crate::paths::StateDir;
use crate::payload;

/// What a command produced.
#[derive(Debug)]
pub enum Reply {
    /// One answer, already encoded, to be printed as the envelope's `data`.
    Data(Box<RawValue>),
    /// Frames were already printed (`--stream`); nothing more to say.
    Streamed,
}

/// Runs a public command. Streaming commands print their frames through `output`.
pub fn execute(command: Command, output: &Output) -> Result<Reply> {
    execute_data(command, output)
}

fn execute_data(command: Command, output: &Output) -> Result<Reply> {
    let data = match command {
        Command::Start(args) => {
            let input = payload::require(
                payload::read(args.payload.as_deref())?,
                "start",
                r#"{"id":"web","command":"npm","args":["run","dev"]}"#,
            )?;
            let wait = args.wait.then(|| args.timeout.map(Duration::from_secs_f64));
            encode(start::run(input, wait)?)
        }
        Command::Status(args) => encode(status::run(id_payload(args.payload, "status")?)?),
        Command::List(args) => {
            let input = payload::optional(
                payload::read(args.payload.as_deref())?,
                r#"{"status":"running"}"#,
            )?;
            encode(list::run(input)?)
        }
        Command::Wait(args) => encode(wait::run(
            id_payload(args.payload, "wait")?,
            args.timeout.map(Duration::from_secs_f64),
        )?),
        Command::Stop(args) => {
            let input = payload::require(
                payload::read(args.payload.as_deref())?,
                "stop",
                r#"{"id":"web"}"#,
            )?;
            encode(stop::run(input, args.timeout.map(Duration::from_secs_f64))?)
        }
        Command::Restart(args) => {
            let input = payload::require(
                payload::read(args.payload.as_deref())?,
                "restart",
                r#"{"id":"web"}"#,
            )?;
            encode(restart::run(input)?)
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
        Command::Supervise => Err(Error::input(
            "__supervise is internal",
            "Use start; it runs the supervisor itself.",
        )),
    }?;
    Ok(Reply::Data(data))
}

fn id_payload(argument: Option<String>, command: &str) -> Result<payload::input::IdInput> {
    payload::require(
        payload::read(argument.as_deref())?,
        command,
        r#"{"id":"web"}"#,
    )
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
