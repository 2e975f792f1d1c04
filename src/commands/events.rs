//! `events {id?, after?, lines?}`: a task's lifecycle frames and log lines in one order;
//! `{ids}` or a selector (`tag`, `tags`, `status`): several tasks'; without any, every
//! task's status. `--stream` prints the frames as NDJSON as they happen: for one task until
//! its `task.ended` frame, for several until each has ended (log lines only when `lines`
//! is given), for every task until `--timeout` ([`crate::lifecycle::follow`]). A follow of
//! one or several tasks given `--timeout` ends with a `stream.end` frame per task (why it
//! ended, where to resume it); one of every task has no cursor to resume from and ends
//! without one.

use std::io::IsTerminal;
use std::ops::ControlFlow;
use std::time::Duration;

use super::{Reply, data, end_stream, print_frames};
use crate::cli::{EventsArgs as Flags, Timeout};
use crate::envelope::Output;
use crate::error::{Error, Result};
use crate::lifecycle::Tasks;
use crate::lifecycle::follow::{EventsOf, FollowAllArgs};
use crate::lifecycle::raw::{RawAllArgs, RawEvent};
use crate::payload;
use crate::payload::input::{EventsInput, RawEventsInput};
use crate::payload::task::{Status, Task};

pub fn run(flags: Flags, output: &Output) -> Result<Reply> {
    let bytes = payload::read(flags.payload.as_deref())?;
    let timeout = Timeout::of_follow(flags.timeout);
    if flags.raw {
        let input: RawEventsInput = payload::optional(bytes, r#"{"tag":"session-7"}"#)?;
        return raw(&Tasks::open()?, input, timeout, output);
    }
    let input: EventsInput = payload::optional(bytes, r#"{"id":"web","after":12}"#)?;
    let tasks = Tasks::open()?;
    let (mut sink, cancel) = print_frames(output);
    match (
        tasks.events_of(&input, timeout, cancel.clone())?,
        flags.stream,
    ) {
        (EventsOf::One(args), false) => data(tasks.events(args)?),
        (EventsOf::One(args), true) => {
            let id = args.id.to_string();
            let end = tasks.follow(args, &mut sink)?;
            end_stream(timeout, &id, end, &mut sink);
            Ok(Reply::Streamed)
        }
        (EventsOf::Several(_), false) => Err(several_need_a_stream()),
        (EventsOf::Several(args), true) => {
            // How each ended, when the bound was given (as for one task).
            for (id, end) in tasks.follow_many(args, &mut sink)? {
                end_stream(timeout, id.as_str(), end, &mut sink);
            }
            Ok(Reply::Streamed)
        }
        (EventsOf::Every, false) => data(tasks.all_events()?),
        (EventsOf::Every, true) => {
            tasks.follow_all(FollowAllArgs { timeout, cancel }, &mut sink)?;
            Ok(Reply::Streamed)
        }
    }
}

/// `events {ids}` or a selector without `--stream`.
fn several_need_a_stream() -> Error {
    Error::input_at(
        "ids",
        "ids, tag, tags, status: several tasks are followed with --stream",
        "Add --stream to follow them until each has ended; for their status now use list with the same ids or selector.",
    )
}

/// `--stream --raw`: lines prefixed with their task's id, and a line per run that begins or
/// ends, as `docker compose logs -f` prints its services.
fn raw(
    tasks: &Tasks,
    input: RawEventsInput,
    timeout: Option<Duration>,
    output: &Output,
) -> Result<Reply> {
    let colour = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    let ids = match (input.selector(), input.id) {
        (Some(_), Some(_)) => {
            return Err(Error::input_at(
                "id",
                "id: give id or a selector (tag, tags, status), not both",
                "Use {\"id\":\"web\"} for one task or {\"tag\":\"session-7\"} for every task tagged so.",
            ));
        }
        // The tasks chosen as they are now; none chosen is nothing to follow.
        (Some(selector), None) => match tasks.select(&selector, false)? {
            ids if ids.is_empty() => return Ok(Reply::Streamed),
            ids => Some(ids),
        },
        (None, id) => id.map(|id| vec![id]),
    };
    let args = RawAllArgs { ids, timeout };
    let output = *output;
    tasks.raw_all(args, &mut |event| {
        let text = match event {
            RawEvent::Line { id, line } => {
                let mut text = prefix(id, colour);
                text.extend_from_slice(line);
                text
            }
            RawEvent::Started(task) => {
                let mut text = prefix(&task.id, colour);
                text.extend_from_slice(format!("— run {} started", task.run).as_bytes());
                text
            }
            RawEvent::Ended(task) => {
                let mut text = prefix(&task.id, colour);
                text.extend_from_slice(ended(task).as_bytes());
                text
            }
        };
        let mut text = text;
        text.push(b'\n');
        match output.raw(&text) {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        }
    })?;
    Ok(Reply::Streamed)
}

/// `id | `, coloured by the id (the same id, the same colour) when `colour`.
fn prefix(id: &str, colour: bool) -> Vec<u8> {
    if !colour {
        return format!("{id} | ").into_bytes();
    }
    // Six readable colours (31-36), chosen by a hash of the id.
    let hash = id
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!("\x1b[{}m{id}\x1b[0m | ", 31 + hash % 6).into_bytes()
}

/// `— exited 0 after 12.3 s`, `— killed by SIGTERM after 4.0 s`, `— lost`.
fn ended(task: &Task) -> String {
    let how = match (task.status, task.exit_code, task.signal.as_deref()) {
        (Status::Exited, Some(code), _) => format!("exited {code}"),
        (status, _, Some(signal)) => format!("{} by {signal}", status.as_str()),
        (status, Some(code), None) => format!("{} ({code})", status.as_str()),
        (status, None, None) => status.as_str().to_owned(),
    };
    match task.duration_ms {
        Some(ms) => format!("— {how} after {:.1} s", ms as f64 / 1000.0),
        None => format!("— {how}"),
    }
}
