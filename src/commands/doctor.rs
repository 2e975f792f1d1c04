//! `doctor`: real checks of the state directory, locks, notifications, the supervisors'
//! binary and the tasks ([`crate::lifecycle::doctor`]); exit code 1 if any check failed.

use super::{Reply, encode};
use crate::error::Result;
use crate::lifecycle::doctor::{self, DoctorArgs};
use crate::paths::StateDir;

pub fn run() -> Result<Reply> {
    let answer = doctor::check(DoctorArgs {
        state_dir: StateDir::locate()?,
    });
    let healthy = answer.healthy;
    let data = encode(answer)?;
    Ok(if healthy {
        Reply::Data(data)
    } else {
        Reply::DataWithFailures(data)
    })
}
