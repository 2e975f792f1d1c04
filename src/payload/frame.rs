//! Stream frames: one JSON object per line with `--stream`, and the items of `events`.
//!
//! `{"type":"task.log.line","task_id":"web","sequence":12,"timestamp":"...","data":{...}}`
//! (the seed tool's frame keys, in that order). Each type has its own `data`:
//! - `task.status` [`StatusData`] `{status, run, pid}`: a snapshot, then each change;
//! - `task.log.line` [`LogLineData`] `{line, cursor}`: one line of output; pass `cursor` as
//!   `after` to resume after it;
//! - `task.progress` [`Progress`] `{current, total, percent, message}`;
//! - `task.step` [`Step`] `{id, parent, title, status, current, total, percent, message,
//!   ...}`: a step as it stands after a change (changes between two of the supervisor's
//!   updates, at most four a second, come as one frame);
//! - `task.ready` [`ReadyData`] `{ready, run}`: the run's ready conditions all held;
//! - `task.ended` [`EndedData`] `{status, run, exit_code, signal, reason}`; a follow ends
//!   after it;
//! - `task.restarting` [`RestartingData`] `{run, reason, exit_code, signal, uptime_ms,
//!   delay_ms, restarts, unstable_runs, next_restart_at}`: the first frame of a run its
//!   supervisor starts by itself (`restart_policy`), after the previous run's `task.ended`;
//! - `stream.end` [`StreamEndData`] `{reason, cursor, next_sequence}`: the last frame of a
//!   `--stream` given a `--timeout` (after `task.ended`, when the run ended): not a
//!   lifecycle entry or a log line, but why the follow ended and where to resume.
//!
//! `sequence` numbers a run's frames in one order, its lifecycle entries and log lines as
//! they happened, from `(run - 1) * 2^32 + 1`: a frame's number never changes and never
//! repeats across restarts, so `after: <sequence>` resumes, and a number from an earlier
//! run starts over at the current run (with `cursor_reset: "new_run"`). `timestamp` is when
//! a lifecycle entry was recorded, or when a log line was read (the log holds no times).
//!
//! Lifecycle frames come from the task's journal (a disk type, [`JournalEntry`]): an entry of
//! a type this version does not know (a newer version wrote it) is not a frame here; its
//! sequence number is still taken, so numbers stay stable.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::output_log::{Cursor, MAX_LINE_BYTES, ShownLine};
use crate::payload::task::{Progress, Reason, Status, Step};
use crate::state::TaskRecord;
use crate::state::journal::{
    EndedEntry, JournalEntry, ReadyEntry, RestartingEntry, StatusEntry, kind,
};
use crate::state::record::{ProgressRecord, StepRecord};
use crate::time::{now_ms, rfc3339};

/// The frame type of a log line (log lines are not journaled: they are the log).
pub const LOG_LINE: &str = "task.log.line";

/// The frame type that ends a bounded follow (never journaled: it is the follow's own).
pub const STREAM_END: &str = "stream.end";

/// One frame: `{type, task_id, sequence, timestamp, data}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// The task the frame is about.
    pub task_id: String,
    /// The frame's place in its task's timeline; never repeats across restarts.
    pub sequence: u64,
    /// When it was recorded (a lifecycle entry) or read (a log line), RFC 3339 UTC.
    pub timestamp: String,
    /// Its type and `data`.
    pub event: Event,
}

/// A frame's type, with its `data`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Status(StatusData),
    LogLine(LogLineData),
    Progress(Progress),
    Step(Step),
    Ready(ReadyData),
    Ended(EndedData),
    Restarting(RestartingData),
    StreamEnd(StreamEndData),
}

/// `task.restarting`: the supervisor starts run `run` by itself after `delay_ms`, because
/// the previous run ended as `reason` says.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct RestartingData {
    /// The run that starts after the delay.
    pub run: u32,
    /// Why the previous run is restarted: `exited` (exit 0, with `on: "always"`), `failed`
    /// (a non-zero exit code), `signal`, `timeout` (its `timeout_s`), `ready_timeout` (its
    /// `ready` conditions did not hold within their `timeout_s`).
    pub reason: String,
    /// The previous run's exit code.
    pub exit_code: Option<i32>,
    /// The signal that ended the previous run.
    pub signal: Option<String>,
    /// How long the previous run ran, in milliseconds.
    pub uptime_ms: Option<i64>,
    /// The wait before the run starts, in milliseconds.
    pub delay_ms: u64,
    /// Automatic restarts since a caller last started or restarted the task, this one
    /// included.
    pub restarts: u32,
    /// Runs shorter than `min_uptime_s` in a row, the previous run included (0 after a
    /// stable run); the task ends `failed` (`restart_limit`) once this passes
    /// `max_restarts`.
    pub unstable_runs: u32,
    /// When the run starts (RFC 3339).
    pub next_restart_at: String,
    /// `next_restart_at` in milliseconds since the Unix epoch.
    pub next_restart_at_ms: i64,
}

impl From<RestartingEntry> for RestartingData {
    fn from(entry: RestartingEntry) -> RestartingData {
        RestartingData {
            run: entry.run,
            reason: entry.reason,
            exit_code: entry.exit_code,
            signal: entry.signal,
            uptime_ms: entry.uptime_ms,
            delay_ms: entry.delay_ms,
            restarts: entry.restarts,
            unstable_runs: entry.unstable_runs,
            next_restart_at: rfc3339(entry.next_restart_at_ms),
            next_restart_at_ms: entry.next_restart_at_ms,
        }
    }
}

/// `stream.end`: why a follow given a `--timeout` ended, and where to resume.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct StreamEndData {
    /// `timeout`: the time ran out, the task runs on; `ended`: the run has ended and
    /// everything it said was sent.
    pub reason: StreamEndReason,
    /// Where the follow stood in the log (past the last line it read): `after` for `logs`,
    /// `logs --stream` or `events`, to go on without a gap or a repeat.
    pub cursor: Cursor,
    /// The next frame's sequence: `after: next_sequence - 1` resumes `events` there.
    pub next_sequence: u64,
}

/// Why a follow ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StreamEndReason {
    /// `--timeout` ran out.
    Timeout,
    /// The run ended.
    Ended,
    /// The task was removed (`rm`, `prune`) while it was followed (a follow of several
    /// tasks goes on with the others).
    Removed,
}

/// `task.status`: the task's status as it now stands.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct StatusData {
    pub status: Status,
    /// The run it is about.
    pub run: u32,
    /// The task's process, once it has one.
    pub pid: Option<i32>,
}

/// `task.log.line`: one line of output.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct LogLineData {
    /// The line, without its newline (what a terminal would show of a `\r` redraw), cut to
    /// the line budget (8 KiB); a cut line ends with `…[<n> more bytes]`.
    pub line: String,
    /// Pass as `after` to resume after this line.
    pub cursor: Cursor,
    /// Bytes of the line left out past the line budget; absent for a whole line. `logs`
    /// (its artifact, the log file) holds the line whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated_bytes: Option<u64>,
}

/// `task.ready`: every ready condition of the run held.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ReadyData {
    pub ready: bool,
    pub run: u32,
}

/// `task.ended`: how the run ended; a follow ends after it.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct EndedData {
    pub status: Status,
    pub run: u32,
    pub exit_code: Option<i32>,
    /// The signal that ended it (`"SIGTERM"`).
    pub signal: Option<String>,
    pub reason: Option<Reason>,
}

impl Event {
    /// The frame's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Status(_) => kind::STATUS,
            Event::LogLine(_) => LOG_LINE,
            Event::Progress(_) => kind::PROGRESS,
            Event::Step(_) => kind::STEP,
            Event::Ready(_) => kind::READY,
            Event::Ended(_) => kind::ENDED,
            Event::Restarting(_) => kind::RESTARTING,
            Event::StreamEnd(_) => STREAM_END,
        }
    }
}

impl From<StatusEntry> for StatusData {
    fn from(entry: StatusEntry) -> StatusData {
        StatusData {
            status: entry.status.into(),
            run: entry.run,
            pid: entry.pid,
        }
    }
}

impl From<EndedEntry> for EndedData {
    fn from(entry: EndedEntry) -> EndedData {
        EndedData {
            status: entry.status.into(),
            run: entry.run,
            exit_code: entry.exit_code,
            signal: entry.signal,
            reason: entry.reason.and_then(Into::into),
        }
    }
}

impl From<ReadyEntry> for ReadyData {
    fn from(entry: ReadyEntry) -> ReadyData {
        ReadyData {
            ready: entry.ready,
            run: entry.run,
        }
    }
}

impl Frame {
    /// The frame of a journal entry, numbered `sequence`; `None` for an entry whose type
    /// or data this version does not know.
    pub fn from_entry(task_id: &str, sequence: u64, entry: JournalEntry) -> Option<Frame> {
        let data = entry.data;
        let event = match entry.kind.as_str() {
            kind::STATUS => Event::Status(parse::<StatusEntry>(data)?.into()),
            kind::ENDED => Event::Ended(parse::<EndedEntry>(data)?.into()),
            kind::READY => Event::Ready(parse::<ReadyEntry>(data)?.into()),
            kind::PROGRESS => Event::Progress(Progress::from(&parse::<ProgressRecord>(data)?)),
            kind::STEP => Event::Step(Step::from(&parse::<StepRecord>(data)?)),
            kind::RESTARTING => Event::Restarting(parse::<RestartingEntry>(data)?.into()),
            _ => return None,
        };
        Some(Frame {
            task_id: task_id.to_owned(),
            sequence,
            timestamp: rfc3339(entry.timestamp_ms),
            event,
        })
    }

    /// A log line that ends at byte `end` of run `run`'s log, read now: cut to the line
    /// budget ([`MAX_LINE_BYTES`]), saying how much was left out, so that one frame is never
    /// more than one line budget and its JSON, whatever the task printed.
    pub fn log_line(task_id: &str, run: u32, line: ShownLine, end: u64, sequence: u64) -> Frame {
        let line = line.cut_to(MAX_LINE_BYTES);
        let truncated_bytes = (line.cut > 0).then_some(line.cut);
        Frame {
            task_id: task_id.to_owned(),
            sequence,
            timestamp: rfc3339(now_ms()),
            event: Event::LogLine(LogLineData {
                line: line.into_text(),
                cursor: Cursor { run, offset: end },
                truncated_bytes,
            }),
        }
    }

    /// The frame's size in bytes, as one compact JSON line (without its newline).
    pub fn encoded_len(&self) -> usize {
        let mut counter = ByteCount(0);
        // Writing to a counter cannot fail, and a frame always encodes.
        let _ = serde_json::to_writer(&mut counter, self);
        counter.0
    }

    /// The task's status as its record says now (what the journal's `task.status` entries
    /// say, built the same way: [`StatusEntry::of`]).
    pub fn status(record: &TaskRecord, sequence: u64) -> Frame {
        Frame {
            task_id: record.id.clone(),
            sequence,
            timestamp: rfc3339(now_ms()),
            event: Event::Status(StatusEntry::of(record).into()),
        }
    }

    /// The last frame of a bounded follow of task `task_id`: why it ended, and where it
    /// stood (`cursor` in the log, `next_sequence` in the timeline).
    pub fn stream_end(task_id: &str, data: StreamEndData) -> Frame {
        Frame {
            task_id: task_id.to_owned(),
            sequence: data.next_sequence.saturating_sub(1),
            timestamp: rfc3339(now_ms()),
            event: Event::StreamEnd(data),
        }
    }

    /// How the run of `record` ended, for a follower that found no `task.ended` in the
    /// journal (what the journal's entry says, built the same way: [`EndedEntry::of`]).
    pub fn ended(record: &TaskRecord, sequence: u64) -> Frame {
        Frame {
            task_id: record.id.clone(),
            sequence,
            timestamp: rfc3339(record.ended_at_ms.unwrap_or_else(now_ms)),
            event: Event::Ended(EndedEntry::of(record).into()),
        }
    }
}

/// Counts the bytes written to it.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn parse<T: serde::de::DeserializeOwned>(data: Value) -> Option<T> {
    serde_json::from_value(data).ok()
}

impl Serialize for Frame {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(5))?;
        map.serialize_entry("type", self.event.kind())?;
        map.serialize_entry("task_id", &self.task_id)?;
        map.serialize_entry("sequence", &self.sequence)?;
        map.serialize_entry("timestamp", &self.timestamp)?;
        match &self.event {
            Event::Status(data) => map.serialize_entry("data", data)?,
            Event::LogLine(data) => map.serialize_entry("data", data)?,
            Event::Progress(data) => map.serialize_entry("data", data)?,
            Event::Step(data) => map.serialize_entry("data", data)?,
            Event::Ready(data) => map.serialize_entry("data", data)?,
            Event::Ended(data) => map.serialize_entry("data", data)?,
            Event::Restarting(data) => map.serialize_entry("data", data)?,
            Event::StreamEnd(data) => map.serialize_entry("data", data)?,
        }
        map.end()
    }
}

/// One schema per frame type (`oneOf`, told apart by `type`), each with its `data`.
impl JsonSchema for Frame {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Frame".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let one = |kind: &str, description: &str, data: Schema| {
            json_schema!({
                "type": "object",
                "description": description,
                "properties": {
                    "type": {"const": kind},
                    "task_id": {
                        "type": "string",
                        "description": "The task the frame is about."
                    },
                    "sequence": {
                        "type": "integer",
                        "format": "uint64",
                        "minimum": 0,
                        "description": "The frame's place in its task's timeline; never repeats across restarts."
                    },
                    "timestamp": {
                        "type": "string",
                        "description": "When it was recorded (a lifecycle entry) or read (a log line), RFC 3339 UTC."
                    },
                    "data": data
                },
                "required": ["type", "task_id", "sequence", "timestamp", "data"]
            })
        };
        let frames = [
            one(
                kind::STATUS,
                "`task.status`: the task's status, a snapshot and then each change.",
                generator.subschema_for::<StatusData>(),
            ),
            one(
                LOG_LINE,
                "`task.log.line`: one line of the current run's output.",
                generator.subschema_for::<LogLineData>(),
            ),
            one(
                kind::PROGRESS,
                "`task.progress`: the newest progress the task's output reported.",
                generator.subschema_for::<Progress>(),
            ),
            one(
                kind::STEP,
                "`task.step`: a step of the run as it stands after a change (its step lines read between two of the supervisor's updates, at most four a second, come as one frame); when the run ends, each step still running is closed with its outcome (`done` after exit 0, else `failed`) in a frame of its own.",
                generator.subschema_for::<Step>(),
            ),
            one(
                kind::READY,
                "`task.ready`: every ready condition of the run held.",
                generator.subschema_for::<ReadyData>(),
            ),
            one(
                kind::ENDED,
                "`task.ended`: how the run ended; a follow ends after it.",
                generator.subschema_for::<EndedData>(),
            ),
            one(
                kind::RESTARTING,
                "`task.restarting`: the first frame of a run its supervisor starts by itself (`restart_policy`), after the previous run's `task.ended`: why, and after how long.",
                generator.subschema_for::<RestartingData>(),
            ),
            one(
                STREAM_END,
                "`stream.end`: the last frame of a `--stream` given a `--timeout`; not a log line or a lifecycle entry: why the follow ended (`timeout`, `ended`) and the cursor to resume from. Its `sequence` is the last one the follow reached (the next frame's, less one).",
                generator.subschema_for::<StreamEndData>(),
            ),
        ];
        json_schema!({
            "description": "One frame: `{type, task_id, sequence, timestamp, data}`, with `data` by `type`.",
            "oneOf": frames
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON of each frame type is what the journal and the follow printed before
    /// frames were typed: the same keys, in the same order.
    #[test]
    fn frames_keep_their_keys_and_order() {
        let entry = |kind: &str, data: Value| JournalEntry {
            sequence: 1,
            kind: kind.to_owned(),
            timestamp_ms: 0,
            run: 1,
            log_offset: 0,
            data,
        };
        let cases = [
            (
                entry(
                    kind::STATUS,
                    serde_json::json!({"status": "running", "run": 1, "pid": 42}),
                ),
                r#"{"type":"task.status","task_id":"t","sequence":7,"timestamp":"1970-01-01T00:00:00.000Z","data":{"status":"running","run":1,"pid":42}}"#,
            ),
            (
                entry(
                    kind::ENDED,
                    serde_json::json!({"status": "killed", "run": 1, "exit_code": null, "signal": "SIGTERM", "reason": "stop"}),
                ),
                r#"{"type":"task.ended","task_id":"t","sequence":7,"timestamp":"1970-01-01T00:00:00.000Z","data":{"status":"killed","run":1,"exit_code":null,"signal":"SIGTERM","reason":"stop"}}"#,
            ),
            (
                entry(kind::READY, serde_json::json!({"ready": true, "run": 1})),
                r#"{"type":"task.ready","task_id":"t","sequence":7,"timestamp":"1970-01-01T00:00:00.000Z","data":{"ready":true,"run":1}}"#,
            ),
            (
                entry(
                    kind::PROGRESS,
                    serde_json::json!({"current": 3.0, "total": 17.0, "percent": 17.647058823529413, "message": null}),
                ),
                r#"{"type":"task.progress","task_id":"t","sequence":7,"timestamp":"1970-01-01T00:00:00.000Z","data":{"current":3.0,"total":17.0,"percent":17.647058823529413,"message":null}}"#,
            ),
        ];
        for (entry, json) in cases {
            let frame = Frame::from_entry("t", 7, entry).expect("a known entry");
            assert_eq!(serde_json::to_string(&frame).expect("encode"), json);
        }
        let shown = |text: &str, cut: u64| ShownLine {
            text: text.into(),
            cut,
        };
        let mut line = Frame::log_line("t", 2, shown("hello", 0), 12, 9);
        line.timestamp = "T".into();
        let json = serde_json::to_string(&line).expect("encode");
        assert_eq!(
            json,
            r#"{"type":"task.log.line","task_id":"t","sequence":9,"timestamp":"T","data":{"line":"hello","cursor":"2:12"}}"#
        );
        assert_eq!(line.encoded_len(), json.len());
        // A line past the line budget is cut there and says by how much, in its text and
        // in `truncated_bytes` (additive: absent for a whole line).
        let mut long = Frame::log_line("t", 1, shown(&"x".repeat(MAX_LINE_BYTES + 5), 100), 9, 1);
        long.timestamp = "T".into();
        let Event::LogLine(data) = &long.event else {
            panic!("a log line frame");
        };
        assert_eq!(data.truncated_bytes, Some(105));
        assert_eq!(
            data.line,
            format!("{}…[105 more bytes]", "x".repeat(MAX_LINE_BYTES))
        );
        assert!(long.encoded_len() < MAX_LINE_BYTES + 200);
    }

    /// A newer version's entries are skipped, not errors; a newer status word reads running.
    #[test]
    fn entries_of_a_newer_version_are_forgiven() {
        let entry = |kind: &str, data: Value| JournalEntry {
            sequence: 1,
            kind: kind.to_owned(),
            timestamp_ms: 0,
            run: 1,
            log_offset: 0,
            data,
        };
        assert!(
            Frame::from_entry("t", 1, entry("task.future", serde_json::json!({"id": "a"})))
                .is_none()
        );
        assert!(
            Frame::from_entry("t", 1, entry(kind::STATUS, serde_json::json!("garbage"))).is_none()
        );
        let frame = Frame::from_entry(
            "t",
            1,
            entry(
                kind::STATUS,
                serde_json::json!({"status": "paused", "run": 1, "pid": null, "why": "x"}),
            ),
        )
        .expect("a status entry");
        assert_eq!(
            frame.event,
            Event::Status(StatusData {
                status: Status::Running,
                run: 1,
                pid: None
            })
        );
    }
}
