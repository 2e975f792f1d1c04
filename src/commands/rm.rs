//! `rm {id, force?}` (or an array) and `prune {older_than_s?, keep_last?, status?}`: remove
//! finished tasks and their files ([`crate::lifecycle::retention`]).

use super::{Reply, one_or_batch};
use crate::cli::PayloadArgs;
use crate::error::Result;
use crate::lifecycle::Tasks;
use crate::lifecycle::retention::{PruneArgs, RmArgs};
use crate::payload;
use crate::payload::answer::{PruneAnswer, RmAnswer};
use crate::payload::input::{PruneInput, RmInput};

pub fn run(args: PayloadArgs) -> Result<Reply> {
    one_or_batch(
        args.payload.as_deref(),
        "rm",
        r#"{"id":"web"}"#,
        |input: &RmInput| Some(&input.id),
        |input| {
            let removed = Tasks::open()?.exiting_after_call().rm(RmArgs { input })?;
            Ok(RmAnswer {
                task_id: removed.task_id.to_string(),
                removed: true,
                status: removed.status,
            })
        },
    )
}

pub fn prune(args: PayloadArgs) -> Result<PruneAnswer> {
    let input: PruneInput = payload::optional(
        payload::read(args.payload.as_deref())?,
        r#"{"older_than_s":86400,"keep_last":10}"#,
    )?;
    input.validate()?;
    let pruned = Tasks::open()?.prune(PruneArgs { input })?;
    Ok(PruneAnswer {
        total_removed: pruned.removed.len(),
        removed: pruned.removed,
        skipped: pruned.skipped,
    })
}
