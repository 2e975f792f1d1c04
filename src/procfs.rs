//! What /proc says about a process: its identity (start time, boot), parent and group.
//!
//! Before any signal to a pid or pgid read from disk we check that it is still the process
//! we started: same boot, same start time, same owner. A pid alone is only a number that the
//! kernel hands out again.

use std::fs;
use std::os::unix::fs::MetadataExt;

/// The fields of `/proc/<pid>/stat` that we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: i32,
    pub state: u8,
    pub ppid: i32,
    pub pgrp: i32,
    /// Clock ticks after boot at which the process started (field 22).
    pub start_ticks: u64,
}

/// The id of the running boot, from `/proc/sys/kernel/random/boot_id`.
pub fn boot_id() -> Option<String> {
    let text = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(text.trim().to_owned())
}

/// When the running boot began, in Unix milliseconds (`btime` of `/proc/stat`, whole
/// seconds, rounded down).
pub fn boot_time_ms() -> Option<i64> {
    let text = fs::read_to_string("/proc/stat").ok()?;
    let seconds: i64 = text
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    seconds.checked_mul(1000)
}

/// Reads `/proc/<pid>/stat`; `None` when there is no such process.
pub fn stat(pid: i32) -> Option<ProcStat> {
    if pid <= 0 {
        return None;
    }
    let text = fs::read(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses the stat line. The command name (field 2) may hold spaces and parentheses, so
/// the fields are counted from the last `)`.
fn parse_stat(text: &[u8]) -> Option<ProcStat> {
    let open = text.iter().position(|&b| b == b'(')?;
    let close = text.iter().rposition(|&b| b == b')')?;
    let pid = std::str::from_utf8(&text[..open])
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let rest = std::str::from_utf8(text.get(close + 2..)?).ok()?;
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // `rest` starts at field 3 (state), so field N is fields[N - 3].
    Some(ProcStat {
        pid,
        state: *fields.first()?.as_bytes().first()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// The owner (real uid) of a process.
pub fn owner(pid: i32) -> Option<u32> {
    fs::metadata(format!("/proc/{pid}")).ok().map(|m| m.uid())
}

/// Every process, read from /proc. Processes that vanish while we read are skipped.
pub fn all() -> Vec<ProcStat> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat)
        .collect()
}

/// The processes whose parent is `pid` (zombies included).
pub fn children_of(pid: i32) -> Vec<i32> {
    all()
        .into_iter()
        .filter(|p| p.ppid == pid)
        .map(|p| p.pid)
        .collect()
}

/// Whether `pid` is a supervisor: it runs our own binary (the same file, even if it was
/// replaced since) entered through the hidden subcommand. A task's own processes cannot
/// pass for one without being one: a supervisor started without its lock and socket ends
/// at once.
pub fn is_supervisor(pid: i32) -> bool {
    let exe = |pid: &str| {
        fs::read_link(format!("/proc/{pid}/exe")).ok().map(|path| {
            let path = path.to_string_lossy().into_owned();
            path.strip_suffix(" (deleted)")
                .map(str::to_owned)
                .unwrap_or(path)
        })
    };
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let entry = cmdline.split(|&b| b == 0).nth(1);
    entry == Some(crate::supervisor::ENTRY.as_bytes())
        && exe(&pid.to_string()).is_some_and(|theirs| exe("self") == Some(theirs))
}

/// The live processes of user `uid` that started at or after `since` (clock ticks after
/// boot) and whose environment holds `name=value`. One pass over /proc: the owner and start
/// time are checked first, so only candidates have their environment read.
pub fn carrying(name: &str, value: &str, uid: u32, since: u64) -> Vec<ProcStat> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let wanted = format!("{name}={value}");
    entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid = entry.file_name().to_str()?.parse::<i32>().ok()?;
            (pid > 1 && entry.metadata().ok()?.uid() == uid).then_some(pid)
        })
        .filter_map(stat)
        .filter(|s| s.start_ticks >= since && s.state != b'Z')
        .filter(|s| {
            fs::read(format!("/proc/{}/environ", s.pid))
                .is_ok_and(|environ| environ.split(|&b| b == 0).any(|v| v == wanted.as_bytes()))
        })
        .collect()
}

/// `pid` and its ancestors up to init, nearest first.
pub fn ancestors(pid: i32) -> Vec<i32> {
    let mut chain = Vec::new();
    let mut next = Some(pid);
    while let Some(pid) = next.filter(|&p| p > 0 && !chain.contains(&p)) {
        chain.push(pid);
        next = stat(pid).map(|s| s.ppid);
    }
    chain
}

/// Why a pid cannot be followed as a task's owner (`stop_with_pid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAnOwner {
    /// No such process runs (or only its zombie is left).
    NotRunning,
    /// It is a thread of `process`, not a process: threads have pids of their own in
    /// /proc and `kill`, but no pidfd, and their end is not the process's end.
    Thread { process: i32 },
    /// It belongs to another user (real uid `uid`).
    OtherUser { uid: u32 },
}

/// Checks that `pid` is a running process of the calling user, fit to be followed as a
/// task's owner.
pub fn check_owner(pid: i32) -> Result<(), NotAnOwner> {
    if pid <= 1 {
        return Err(NotAnOwner::NotRunning);
    }
    let status =
        fs::read_to_string(format!("/proc/{pid}/status")).map_err(|_| NotAnOwner::NotRunning)?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    if field("State").is_none_or(|state| state.starts_with(['Z', 'X'])) {
        return Err(NotAnOwner::NotRunning);
    }
    let process = field("Tgid")
        .and_then(|t| t.parse::<i32>().ok())
        .ok_or(NotAnOwner::NotRunning)?;
    if process != pid {
        return Err(NotAnOwner::Thread { process });
    }
    // Uid: real, effective, saved, filesystem. The real uid says whose process it is.
    let uid = field("Uid")
        .and_then(|u| u.split_whitespace().next()?.parse::<u32>().ok())
        .ok_or(NotAnOwner::NotRunning)?;
    if uid != nix::unistd::geteuid().as_raw() {
        return Err(NotAnOwner::OtherUser { uid });
    }
    Ok(())
}

/// A process we started, as recorded: enough to recognise it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub pid: i32,
    pub start_ticks: u64,
}

impl Identity {
    /// The identity of a live process.
    pub fn of(pid: i32) -> Option<Identity> {
        stat(pid).map(|s| Identity {
            pid,
            start_ticks: s.start_ticks,
        })
    }

    /// Whether the process is still alive and still the one we recorded (not a zombie).
    pub fn is_alive(&self) -> bool {
        stat(self.pid).is_some_and(|s| s.start_ticks == self.start_ticks && s.state != b'Z')
    }

    /// Whether the process, still the one we recorded, is stopped (`T`: by a signal such as
    /// SIGSTOP or SIGTSTP; `t`: by a tracer); `None` once it is gone.
    pub fn is_stopped(&self) -> Option<bool> {
        stat(self.pid)
            .filter(|s| s.start_ticks == self.start_ticks && s.state != b'Z')
            .map(|s| matches!(s.state, b'T' | b't'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_command_name_with_spaces_and_parens() {
        let line =
            b"4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 1000 10";
        let stat = parse_stat(line).expect("parses");
        assert_eq!(stat.pid, 4242);
        assert_eq!(stat.state, b'S');
        assert_eq!(stat.ppid, 1);
        assert_eq!(stat.pgrp, 4242);
        assert_eq!(stat.start_ticks, 98765);
    }

    #[test]
    fn reads_our_own_process() {
        let me = std::process::id() as i32;
        let mine = stat(me).expect("our own stat");
        assert_eq!(mine.pid, me);
        assert!(Identity::of(me).is_some_and(|id| id.is_alive()));
        assert!(boot_id().is_some_and(|id| id.len() == 36));
        let booted = boot_time_ms().expect("btime");
        assert!(booted > 0 && booted <= crate::time::now_ms(), "{booted}");
        assert!(stat(0).is_none() && stat(-1).is_none());
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_stat(b"").is_none());
        assert!(parse_stat(b"12 (x) S").is_none());
        assert!(parse_stat(b"\xff\xfe").is_none());
    }
}
