//! Every clap type. Flags control execution only; the domain data is the PAYLOAD, one JSON
//! value given as literal text, `@path` or `-` (stdin).

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

const PAYLOAD_HELP: &str = "The payload: JSON text, @FILE to read a file, or - to read stdin";

#[derive(Debug, Parser)]
#[command(
    name = "background-tasks",
    version,
    about = "Start, track and control local background processes. Every answer is one JSON envelope.",
    long_about = "Start, track and control local background processes.\n\n\
        Each task runs under its own detached supervisor that records its pid, status, exit \
        code and signal, and captures its output to a log. Every command prints one JSON \
        envelope on stdout ({\"ok\":true,\"command\":..,\"data\":..}); failures print \
        {\"ok\":false,..,\"error\":{type,message,details:{hint,retryable}}} on stderr and exit 1.\n\n\
        State lives in $BACKGROUND_TASKS_HOME, else ~/.local/state/background-tasks.",
    after_help = "Examples:\n  \
        background-tasks start '{\"id\":\"web\",\"shell\":\"python3 -m http.server 8000\"}'\n  \
        background-tasks status '{\"id\":\"web\"}'\n  \
        background-tasks logs '{\"id\":\"web\",\"lines\":20}'\n  \
        background-tasks stop '{\"id\":\"web\"}'"
)]
pub struct Cli {
    /// Indent the JSON answer for people.
    #[arg(long, global = true)]
    pub pretty: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// The whole command line as clap sees it: for completions, man pages and `capabilities`.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a task under its own supervisor; answers once it is running (or failed to start).
    #[command(
        after_help = "Payload: {id?, name?, command, args?, workdir?, env?, tags?, shell?, grace_s?,\n\
        timeout_s?, if_running?, stop_with_pid?, ready?, restart_policy?, rate_limit?, fields?},\n\
        or an array of them (a batch).\n\
        Give either command (+args, run directly, no shell) or shell (run by /bin/sh -c).\n\
        timeout_s: stop it after that long (status timed_out).\n\
        if_running: error (default) | reuse (answer the running task if nothing that defines it\n\
        differs: command, args, shell, workdir, env names, tags, timeout_s) | restart.\n\
        stop_with_pid: stop it when that process exits (reason owner_exited); given again with\n\
        reuse, that process is added: it stops when the last of them has exited.\n\
        fields: answer only these fields of the task, e.g. [\"id\",\"status\"].\n\
        ready: {log?, port?, http?, timeout_s?}: when it counts as ready; with --wait, answer\n\
        once ready (TaskNotReady, with the log's tail, if it ends first or ready.timeout_s runs out).\n\
        restart_policy: {on: never|failure|always, max_restarts? (5), min_uptime_s? (10), backoff?:\n\
        {initial_s? (0.5), factor? (2), max_s? (30)}}: its supervisor starts the next run itself\n\
        after a growing delay (journal: task.restarting; status: restarts, next_restart_at);\n\
        after max_restarts restarts of runs shorter than min_uptime_s in a row it ends failed\n\
        (reason restart_limit). Never after a stop; stop cancels a pending restart.\n\
        rate_limit: {max, per_s}: at most max fresh spawns of this id per per_s seconds\n\
        (StartThrottled with retry_after_s, retryable; a reuse is not a spawn).\n\
        The answer's next_cursor is the run's beginning: logs {after: next_cursor} misses nothing.\n\
        --exit-status (with --wait): the exit code follows the task (see capabilities.exit_codes).\n\
        SIGINT (Ctrl-C), SIGTERM or SIGHUP during --wait: the answer is printed with the task as\n\
        it is (it runs on; data.interrupted names the signal) and the exit code is 130.\n\n\
        Examples:\n  \
        background-tasks start '{\"id\":\"build\",\"command\":\"cargo\",\"args\":[\"build\"]}'\n  \
        background-tasks start '{\"id\":\"web\",\"shell\":\"npm run dev\",\"if_running\":\"reuse\"}'\n  \
        background-tasks start --wait --timeout 60 '{\"shell\":\"make test\"}'\n  \
        background-tasks start --wait '{\"id\":\"web\",\"shell\":\"npm run dev\",\"ready\":{\"port\":3000}}'\n  \
        background-tasks start --concurrency 4 '[{\"shell\":\"make a\"},{\"shell\":\"make b\"}]'"
    )]
    Start(StartArgs),
    /// Show one task: status, pid, exit code or signal, times, log size.
    #[command(
        after_help = "Payload: {id}\n\nExample:\n  background-tasks status '{\"id\":\"web\"}'"
    )]
    Status(TableArgs),
    /// List tasks, oldest first, optionally filtered.
    #[command(
        after_help = "Payload (optional, all filters must match): {ids?, status?, success?, exit_code?, tag?,\n\
        tags?, name?, workdir?, fields?}\n\
        status: one status or an array of them. success: true (exited 0) or false (every other\n\
        ended task, killed and timed out included).\n\
        fields: answer only these fields of each task, e.g. [\"id\",\"status\"].\n\n\
        Examples:\n  background-tasks list\n  background-tasks list '{\"status\":\"running\",\"tag\":\"dev\"}'\n  \
        background-tasks list '{\"success\":false,\"fields\":[\"id\",\"status\",\"exit_code\"]}'"
    )]
    List(TableArgs),
    /// Block until a task has ended, or until conditions hold (until); --timeout bounds the wait.
    #[command(
        after_help = "Payload: {id, until?} or {ids, mode?} or a selector {tag?, tags?, status?, mode?};\n\
        each with fields? (answer only these fields of each task).\n\
        until: \"exit\" (the default), or conditions that must all hold: {log?, port?, http?,\n\
        after?}. With log, the answer's match {line, cursor} is the line that met it; after (a\n\
        cursor) counts only newer lines. If the task ends first: TaskNotReady, with the log's tail.\n\
        Running out of --timeout (default 100): TaskWaitTimedOut with status and cursor.\n\
        ids: several tasks; mode: all (the default: until every one has ended) or any (until\n\
        the first has ended). Answers {mode, tasks, ended}. A selector chooses the tasks with\n\
        that tag, all those tags, that status (or one of an array), as they are when it begins.\n\
        --exit-status: the exit code follows the tasks (see capabilities.exit_codes).\n\
        SIGINT (Ctrl-C), SIGTERM or SIGHUP: the answer is printed with the tasks as they are\n\
        (data.interrupted names the signal) and the exit code is 130.\n\n\
        Examples:\n  background-tasks wait --timeout 30 '{\"id\":\"build\"}'\n  \
        background-tasks wait --timeout 600 '{\"ids\":[\"lint\",\"unit\"],\"mode\":\"any\"}'\n  \
        background-tasks wait --timeout 30 '{\"id\":\"web\",\"until\":{\"http\":\"http://127.0.0.1:3000/health\"}}'\n  \
        background-tasks wait '{\"id\":\"web\",\"until\":{\"log\":\"hmr update\",\"after\":\"1:2048\"}}'\n  \
        background-tasks wait --timeout 600 '{\"tag\":\"session-7\",\"fields\":[\"id\",\"status\"]}'"
    )]
    Wait(WaitArgs),
    /// Stop a task's whole process tree: a signal (default SIGTERM), then SIGKILL after grace_s.
    #[command(
        after_help = "Payload: {id, signal?, grace_s?, fields?}, an array of them, or a selector\n\
        {tag?, tags?, status?, signal?, grace_s?, fields?}: every queued or running task with that\n\
        tag, all those tags (with status: that status), answered as a batch.\n\
        Answers once the task has ended. Stopping a task that already ended changes nothing.\n\n\
        Examples:\n  background-tasks stop '{\"id\":\"web\",\"grace_s\":2}'\n  \
        background-tasks stop '{\"tag\":\"session-7\"}'"
    )]
    Stop(StopArgs),
    /// Stop a task if it runs, then start its next run with the same command; --wait answers
    /// once it is ready.
    #[command(after_help = "Payload: {id, env?}, or an array of them (a batch).\n\
        Environment values are never stored: a task started with env needs them again.\n\
        With --wait: answer once the new run is ready (its ready conditions) or has ended.\n\n\
        Examples:\n  background-tasks restart '{\"id\":\"web\"}'\n  \
        background-tasks restart --wait '{\"id\":\"web\"}'")]
    Restart(RestartArgs),
    /// Show a task's output (stdout and stderr, in the order written); --stream follows it.
    #[command(after_help = "Payload: {id, lines?, after?, grep?, ansi?}\n\
        lines: how many of the last lines (default 100); with after, at most this many new ones.\n\
        The answer has lines and next_cursor at the top; omitted {before, after} counts lines\n\
        left out; when cut, kind is summary+artifact with summary and artifact beside them.\n\
        after: a cursor (next_cursor of an earlier answer, or a frame's cursor): only what came after it.\n\
        grep: only lines matching this regular expression (matched without ANSI escapes).\n\
        ansi: true keeps ANSI escape sequences (colours) in the lines; by default they are\n\
        removed (the log file keeps every byte).\n\n\
        Examples:\n  \
        background-tasks logs '{\"id\":\"web\",\"lines\":20}'\n  \
        background-tasks logs '{\"id\":\"build\",\"after\":\"1:5120\"}'\n  \
        background-tasks logs --stream '{\"id\":\"build\"}'")]
    Logs(LogsArgs),
    /// Show a task's lifecycle frames and log lines in one order; --stream follows them.
    #[command(after_help = "Payload (optional): {id?, after?, lines?, ansi?}\n\
        after: a frame's sequence number, or a log line's cursor: only later frames.\n\
        lines: how many past log lines to include first (default 100).\n\
        ansi: true keeps ANSI escape sequences in log lines (removed by default).\n\
        Without an id: every task's status (--stream follows changes until --timeout).\n\n\
        Frames: task.status, task.log.line {line, cursor}, task.ended {status, exit_code, signal};\n\
        with --stream --timeout, one task's follow ends with stream.end {reason, cursor, next_sequence}.\n\n\
        Examples:\n  \
        background-tasks events '{\"id\":\"build\"}'\n  \
        background-tasks events --stream '{\"id\":\"build\",\"lines\":0}'\n  \
        background-tasks events --stream --timeout 60")]
    Events(EventsArgs),
    /// Remove finished tasks and their files (force: stop a running one first).
    #[command(after_help = "Payload: {id, force?} or an array of them\n\
        A running or queued task is refused unless force is true.\n\n\
        Examples:\n  background-tasks rm '{\"id\":\"build\"}'\n  \
        background-tasks rm '[{\"id\":\"a\"},{\"id\":\"b\",\"force\":true}]'")]
    Rm(PayloadArgs),
    /// Remove finished tasks in bulk: by age, status, keeping the newest.
    #[command(
        after_help = "Payload (optional): {older_than_s?, keep_last?, status?}\n\
        Never touches running or queued tasks.\n\n\
        Example:\n  background-tasks prune '{\"older_than_s\":86400,\"keep_last\":20}'"
    )]
    Prune(PayloadArgs),
    /// Serve a live view of the tasks in the browser (127.0.0.1 only) until stopped.
    #[command(
        after_help = "No payload. The first line is the envelope, whose data.url (with a fresh\n\
        token) opens the page; data.events_url streams every task's changes (Server-Sent Events).\n\
        The page and scripts use the same API: GET /api/tasks, GET /api/tasks/<id>,\n\
        POST /api/tasks/<id>/stop|restart, GET /api/tasks/<id>/events (SSE, with the task's log).\n\
        Scripts send the token as `Authorization: Bearer <token>` or `?token=`.\n\
        Ends with exit 0 on SIGTERM or SIGINT (Ctrl-C).\n\n\
        Examples:\n  \
        background-tasks serve --open\n  \
        background-tasks start '{\"id\":\"ui\",\"command\":\"background-tasks\",\"args\":[\"serve\",\"--port\",\"8765\"],\"ready\":{\"port\":8765}}'"
    )]
    Serve(ServeArgs),
    /// Check the state directory, locks, file notifications, the supervisors' binary and the
    /// tasks; every check says ok, warn or fail with a hint. Exit 1 if any check fails.
    #[command(
        after_help = "No payload. Checks: state_dir (exists, ours, 0700, not a symlink), \
        filesystem (local; warns on NFS/FUSE/SMB), locks (exclusive locks exclude), notify (a \
        real watch fires), binary (this executable and the running supervisors' still exist), \
        tasks (running, queued, lost, stale, unreadable), temp_files (left by a writer that \
        died).\n\nExample:\n  background-tasks doctor --pretty"
    )]
    Doctor,
    /// Describe this build: version, protocol, commands and their flags, statuses, error
    /// types, exit codes, limits and defaults, and features.
    #[command(
        after_help = "No payload. Agents: read this once to learn the tool.\n\n\
        Example:\n  background-tasks capabilities --pretty"
    )]
    Capabilities,
    /// The JSON Schemas (draft 2020-12) of every payload, answer, stream frame and error.
    #[command(
        subcommand,
        after_help = "Examples:\n  background-tasks schema list\n  background-tasks schema show start"
    )]
    Schema(SchemaCommand),
    /// Example payloads for each command, each valid against its schema.
    #[command(
        subcommand,
        after_help = "Examples:\n  background-tasks examples list\n  background-tasks examples show start"
    )]
    Examples(ExamplesCommand),
    /// Print a shell completion script (plain text, not JSON).
    #[command(after_help = "Examples:\n  \
        source <(background-tasks completions bash)\n  \
        background-tasks completions zsh > ~/.zfunc/_background-tasks\n  \
        background-tasks completions fish > ~/.config/fish/completions/background-tasks.fish")]
    Completions(CompletionsArgs),
    /// Serve the task commands as MCP tools to an MCP client, over stdin and stdout.
    #[command(
        after_help = "No payload. JSON-RPC on stdin and stdout (the Model Context Protocol, \
        both the initialize handshake and the stateless 2026-07-28); nothing else is printed. \
        One tool per command: start, status, list, wait, stop, restart, logs, events, rm, \
        prune. It exits at stdin's EOF and when its parent process dies; tasks it started \
        run on (unless started with stop_with_pid).\n\n\
        Example (registering it with an MCP client):\n  \
        {\"mcpServers\": {\"background-tasks\": {\"command\": \"background-tasks\", \"args\": [\"mcp\"]}}}"
    )]
    Mcp,
    /// Internal: the per-task supervisor. Started by `start`; never run it by hand.
    #[command(name = "__supervise", hide = true)]
    Supervise,
}

#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// List every schema: its name, kind (input, output, frame, error), $id and file.
    #[command(after_help = "Example:\n  background-tasks schema list")]
    List,
    /// Show the schemas of one command (its payload and answer), or of `frame` or `error`.
    #[command(after_help = "Examples:\n  background-tasks schema show start\n  \
        background-tasks schema show frame\n  \
        background-tasks schema show start | jq '.data.schemas[] | select(.kind==\"input\") | .schema'")]
    Show {
        /// A command (start, status, ..., schema.list), `frame` or `error`.
        #[arg(value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(crate::schema::show_values()))]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExamplesCommand {
    /// List every example: its command, name, description and how to run it.
    #[command(after_help = "Example:\n  background-tasks examples list")]
    List,
    /// Show the example payloads of one command, each with a command line that runs it.
    #[command(after_help = "Examples:\n  background-tasks examples show start\n  \
        background-tasks examples show logs")]
    Show {
        /// A command that takes a payload.
        #[arg(value_name = "COMMAND", value_parser = clap::builder::PossibleValuesParser::new(crate::payload::examples::commands()))]
        command: String,
    },
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Parses a command line (program name first). Also answers the command's name as the
/// envelope says it (`schema show`), from what clap matched and the command table; `None`
/// for the hidden `__supervise`.
pub fn parse(args: &[std::ffi::OsString]) -> Result<(Cli, Option<&'static str>), clap::Error> {
    let mut matches = command().try_get_matches_from(args)?;
    let mut words = Vec::new();
    let mut current = &matches;
    while let Some((word, sub)) = current.subcommand() {
        words.push(word);
        current = sub;
    }
    let name = crate::catalog::find(&words.join(" ")).map(|c| c.name);
    let cli = <Cli as clap::FromArgMatches>::from_arg_matches_mut(&mut matches)
        .map_err(|e| e.format(&mut command()))?;
    Ok((cli, name))
}

#[derive(Debug, Args)]
pub struct PayloadArgs {
    #[arg(value_name = "PAYLOAD", help = PAYLOAD_HELP)]
    pub payload: Option<String>,
}

/// `list` and `status`: a payload, and the table for people.
#[derive(Debug, Args)]
pub struct TableArgs {
    #[arg(value_name = "PAYLOAD", help = PAYLOAD_HELP)]
    pub payload: Option<String>,
    /// Print an aligned table for people (id, status, run, pid, started, duration,
    /// progress, ready, ports, tags) fitted to the terminal's width, not JSON.
    #[arg(long)]
    pub table: bool,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    #[arg(value_name = "PAYLOAD", help = PAYLOAD_HELP)]
    pub payload: Option<String>,
    /// Answer once the task is ready (when it has ready conditions) or has ended, instead of
    /// when it is running; at most --timeout.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this many seconds (fractions allowed) with TaskWaitTimedOut;
    /// the task runs on. Default 100; `none` waits for good.
    #[arg(long, value_name = "SECONDS", requires = "wait", value_parser = timeout)]
    pub timeout: Option<Timeout>,
    /// With --wait: the exit code follows the task(s): a task's own exit code, 124 timed
    /// out, 125 lost, 127 failed to start, 128 + signal killed (capabilities.exit_codes);
    /// the answer is printed as usual.
    #[arg(long, requires = "wait")]
    pub exit_status: bool,
    /// With a batch: run at most N of its tasks at once; the rest are queued and start in
    /// order as slots free up.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: Option<u16>,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    #[arg(value_name = "PAYLOAD", help = PAYLOAD_HELP)]
    pub payload: Option<String>,
    /// Give up after this many seconds (fractions allowed) with TaskWaitTimedOut; the task
    /// runs on. Default 100; `none` waits for good.
    #[arg(long, value_name = "SECONDS", value_parser = timeout)]
    pub timeout: Option<Timeout>,
    /// The exit code follows the task(s) waited for: a task's own exit code, 124 timed out,
    /// 125 lost, 127 failed to start, 128 + signal killed (capabilities.exit_codes); the
    /// answer is printed as usual.
    #[arg(long)]
    pub exit_status: bool,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    #[arg(value_name = "PAYLOAD", help = PAYLOAD_HELP)]
    pub payload: Option<String>,
    /// Give up waiting for the end after this many seconds with TaskWaitTimedOut (the
    /// supervisor still sends SIGKILL after grace_s). Default 100, whatever grace_s is;
    /// `none` waits for good.
    #[arg(long, value_name = "SECONDS", value_parser = timeout)]
    pub timeout: Option<Timeout>,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    #[arg(value_name = "PAYLOAD", help = PAYLOAD_HELP)]
    pub payload: Option<String>,
    /// Answer once the new run is ready (when it has ready conditions) or has ended, as
    /// start --wait does; at most --timeout.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this many seconds (fractions allowed) with
    /// TaskWaitTimedOut; the task runs on. Default 100; `none` waits for good.
    #[arg(long, value_name = "SECONDS", requires = "wait", value_parser = timeout)]
    pub timeout: Option<Timeout>,
    /// With --wait: the exit code follows the task(s): a task's own exit code, 124 timed
    /// out, 125 lost, 127 failed to start, 128 + signal killed (capabilities.exit_codes);
    /// the answer is printed as usual.
    #[arg(long, requires = "wait")]
    pub exit_status: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[arg(value_name = "PAYLOAD", help = PAYLOAD_HELP)]
    pub payload: Option<String>,
    /// auto: inline when whole and small, else the lines plus a pointer to the log file;
    /// inline: always inline, nothing cut; artifact: always the pointer form.
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputMode,
    /// Follow the log: print NDJSON task.log.line frames until the task has ended.
    #[arg(long)]
    pub stream: bool,
    /// With --stream: stop following after this many seconds (fractions allowed); the last
    /// frame is then stream.end {reason, cursor}. Default: no bound.
    #[arg(long, value_name = "SECONDS", requires = "stream", value_parser = timeout)]
    pub timeout: Option<Timeout>,
    /// Print the log's bytes as the task wrote them, not JSON (ANSI colours and invalid
    /// UTF-8 kept); with --stream, like tail -f, ending when the task ends.
    #[arg(long, conflicts_with = "output")]
    pub raw: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The port to listen on, on 127.0.0.1 (default: any free port; the envelope says which).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub port: u16,
    /// Open the page in the desktop's browser (xdg-open); the envelope says whether it could.
    #[arg(long)]
    pub open: bool,
    /// Seconds of silence before a stream gets a keep-alive comment (default 15; for tests).
    #[arg(long, value_name = "SECONDS", hide = true, value_parser = seconds)]
    pub keep_alive: Option<f64>,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    #[arg(value_name = "PAYLOAD", help = PAYLOAD_HELP)]
    pub payload: Option<String>,
    /// Follow: print NDJSON frames as they happen (for one task, until task.ended).
    #[arg(long)]
    pub stream: bool,
    /// With --stream: stop following after this many seconds (fractions allowed); the last
    /// frame is then stream.end {reason, cursor}. Default: no bound.
    #[arg(long, value_name = "SECONDS", requires = "stream", value_parser = timeout)]
    pub timeout: Option<Timeout>,
    /// With --stream, for people: every task's output lines as they come (or only the
    /// payload's id, or the tasks its {tag, tags, status} selector chooses, until they have
    /// ended), each prefixed `id | ` (coloured on a terminal unless NO_COLOR is set), and a
    /// line when a run begins or ends; not JSON.
    #[arg(long, requires = "stream")]
    pub raw: bool,
}

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputMode {
    /// Inline when the answer is whole and small, else summary+artifact.
    #[default]
    Auto,
    /// Always inline, nothing cut.
    Inline,
    /// Always summary+artifact.
    Artifact,
}

/// How long a waiting call (`wait`, `start --wait`, `restart --wait`, `stop`) blocks when
/// `--timeout` is absent. Agent harnesses kill a tool call after two minutes (Claude Code's
/// Bash tool, among others, by default): 100 s answers with a retryable `TaskWaitTimedOut`
/// and a cursor 20 s before that, which leaves room for the process to start and the answer
/// to be read, and is long enough that most builds and test runs end within one call.
pub const DEFAULT_WAIT_S: f64 = 100.0;

/// `--timeout`: a number of seconds, or `none` (no bound).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Timeout {
    Seconds(f64),
    None,
}

impl Timeout {
    /// The bound of a waiting call: as given, [`DEFAULT_WAIT_S`] when absent, `None` (no
    /// bound) for `none`.
    pub fn of_wait(given: Option<Timeout>) -> Option<Duration> {
        // The tests see the default bound apply without waiting 100 s for it.
        let default = if crate::fault::injected("short_default_wait") {
            2.0
        } else {
            DEFAULT_WAIT_S
        };
        match given {
            Some(Timeout::Seconds(s)) => Some(Duration::from_secs_f64(s)),
            Some(Timeout::None) => None,
            None => Some(Duration::from_secs_f64(default)),
        }
    }

    /// The bound of a `--stream` follow: as given; `None` (no bound) when absent or `none`.
    pub fn of_follow(given: Option<Timeout>) -> Option<Duration> {
        match given {
            Some(Timeout::Seconds(s)) => Some(Duration::from_secs_f64(s)),
            _ => None,
        }
    }
}

fn timeout(text: &str) -> Result<Timeout, String> {
    if text == "none" {
        return Ok(Timeout::None);
    }
    seconds(text)
        .map(Timeout::Seconds)
        .map_err(|_| format!("{text:?} is not a number of seconds (0 or more) or none"))
}

fn seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && (0.0..=1e9).contains(&value) => Ok(value),
        _ => Err(format!("{text:?} is not a number of seconds (0 or more)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command clap knows (its visible subcommands, and theirs) is in the command
    /// table, and every command of the table is one clap knows: the table cannot drift
    /// from the parser.
    #[test]
    fn clap_names_the_commands_of_the_table() {
        let cli = command();
        let mut clap_names = Vec::new();
        for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
            if sub.has_subcommands() {
                for leaf in sub.get_subcommands() {
                    clap_names.push(format!("{} {}", sub.get_name(), leaf.get_name()));
                }
            } else {
                clap_names.push(sub.get_name().to_owned());
            }
        }
        let table: Vec<String> = crate::catalog::names().map(str::to_owned).collect();
        assert_eq!(clap_names, table);
    }

    #[test]
    fn the_matched_name_is_the_tables() {
        for (line, name) in [
            (&["bt", "status", "{}"][..], Some("status")),
            (&["bt", "schema", "show", "start"][..], Some("schema show")),
            (
                &["bt", "--pretty", "examples", "list"][..],
                Some("examples list"),
            ),
            (&["bt", "__supervise"][..], None),
        ] {
            let args: Vec<std::ffi::OsString> = line.iter().map(Into::into).collect();
            let (_, matched) = parse(&args).expect("parses");
            assert_eq!(matched, name, "{line:?}");
        }
    }
}
