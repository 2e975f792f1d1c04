//! Restarting: stop the task if it runs, then start its next run (`run` + 1) with the same
//! command, workdir and tags. A restart waits only for the run it stopped; if a racing
//! caller has started a newer run by then, that run is answered as `TaskAlreadyRunning`
//! (saying so), never stopped in turn and never waited for.

use crate::error::{Error, Result};
use crate::lifecycle::Tasks;
use crate::lifecycle::launch::Run;
use crate::lifecycle::stop::{StopArgs, stop_record};
use crate::payload::input::{IfRunning, RestartInput};
use crate::payload::task::Task;
use crate::state::{TaskRecord, observe};

/// `restart`: one task, with the values of its environment again (they are never stored).
#[derive(Debug)]
pub struct RestartArgs {
    pub input: RestartInput,
}

impl Tasks {
    /// Stops the task if it runs and starts its next run; answers the new run.
    pub fn restart(&self, args: RestartArgs) -> Result<Task> {
        let input = args.input;
        input.validate()?;
        let paths = self.paths(&input.id);
        let record = observe(&paths, &input.id)?;
        // A task recorded by a newer version is left to it.
        if !record.understood() {
            return Err(record.newer());
        }
        // A record a crash left unreadable says `lost` and no more (`torn_by_crash`).
        if record.command.is_none() && record.shell.is_none() {
            return Err(Error::input_at(
                "id",
                format!(
                    "id: what task `{}` ran is not known (its record did not survive a crash)",
                    input.id
                ),
                "Start it again with its command: start {\"id\":..,\"command\":..}.",
            ));
        }
        // Values of the environment are never stored, so they must come again.
        let missing: Vec<&str> = record
            .env_keys
            .iter()
            .filter(|key| !input.env.contains_key(*key))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(Error::input_at(
                "env",
                format!(
                    "env: the task was started with {} whose values are never stored",
                    missing.join(", ")
                ),
                "Pass the values again: restart {\"id\":..,\"env\":{...}}.",
            ));
        }
        let stopped = !record.status.is_terminal();
        if stopped {
            match stop_record(&paths, &StopArgs::new(input.id.clone()), self.lock_threads) {
                // The run ended and `rm` or `prune` removed it before the stop could read its
                // end: it is over all the same, and the restart starts the next run afresh.
                Ok(_) | Err(Error::TaskNotFound { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        let mut env_keys = record.env_keys.clone();
        env_keys.extend(
            input
                .env
                .keys()
                .filter(|k| !record.env_keys.contains(k))
                .cloned(),
        );
        // The same task, run again: `launch_run` clears what belonged to the last run.
        let template = TaskRecord {
            env_keys,
            // A restart runs now, not in the queue of the batch it first ran in.
            batch: None,
            // The next run, also if `rm` or `prune` removed the ended run meanwhile (then
            // there is no record left to count from, and the restart carries on in a fresh
            // folder).
            run: record.run.saturating_add(1),
            ..record
        };
        let launched = self.launch_run(Run {
            id: &input.id,
            template,
            env: input.env,
            if_running: IfRunning::Error,
            turn: None,
            // `start`'s rate limit counts the spawns of `start` alone.
            rate_limit: None,
        });
        // A run in the way began after this call looked (it stopped the one it found, or
        // found none running): another caller started it.
        let (record, _) = launched.map_err(started_meanwhile)?;
        Ok(Task::from_record(&record, &paths))
    }
}

/// A run found running when the restart's own run was to start was started by another
/// caller (a racing `start` or `restart`) after this restart looked: after it stopped the
/// run it found, or found none running.
pub(crate) fn started_meanwhile(error: Error) -> Error {
    match error {
        Error::TaskAlreadyRunning {
            id,
            pid,
            differences,
            hint: None,
        } => Error::TaskAlreadyRunning {
            id,
            pid,
            differences,
            hint: Some(STARTED_MEANWHILE),
        },
        other => other,
    }
}

/// The hint of [`started_meanwhile`].
pub(crate) const STARTED_MEANWHILE: &str = "Another start or restart began a newer run while this call was restarting the task; that run is left running. Use status to see it, or restart again to replace it.";
