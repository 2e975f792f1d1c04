//! The table of tasks for people (`list --table`, `status --table`): one aligned row per
//! task, in the order of the JSON answer, fitted to the terminal's width.
//!
//! Columns: id, status, run, pid, started, duration, progress, ready, ports, tags. A value
//! that is unknown or not set is `-`. When the rows are wider than the terminal, the
//! widest shrinkable columns (tags, then id) are cut with `…`, never below a few
//! characters; other columns keep their width. Output never changes on its own: this is
//! printed only when `--table` asks for it, terminal or not. The width is the terminal's
//! (TIOCGWINSZ on stdout), else `$COLUMNS`, else unlimited (a pipe).

use std::fmt::Write as _;

use crate::payload::task::Task;

const HEADERS: [&str; 10] = [
    "ID", "STATUS", "RUN", "PID", "STARTED", "DURATION", "PROGRESS", "READY", "PORTS", "TAGS",
];
/// Columns that may be cut to fit, most willing first: tags, then id.
const SHRINKABLE: [usize; 2] = [9, 0];
/// The narrowest a cut column becomes.
const NARROWEST: usize = 6;

/// The table of `tasks`, each line ending in a newline; `width` is the room per line
/// (`None`: unlimited). No tasks: the header and a line saying so.
pub fn render(tasks: &[Task], width: Option<usize>) -> String {
    let rows: Vec<[String; 10]> = tasks.iter().map(row).collect();
    let mut widths: [usize; 10] = HEADERS.map(chars);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(chars(cell));
        }
    }
    if let Some(width) = width {
        fit(&mut widths, width);
    }
    let mut text = String::new();
    line(&mut text, &HEADERS.map(str::to_owned), &widths);
    for row in &rows {
        line(&mut text, row, &widths);
    }
    if rows.is_empty() {
        text.push_str("(no tasks)\n");
    }
    text
}

/// The room for a table on stdout: the terminal's columns, else `$COLUMNS`, else none.
pub fn terminal_width() -> Option<usize> {
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we pass; fd 1 may be anything,
    // and a failure leaves it untouched (checked by the return value).
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `size` is a valid, writable winsize.
    let got = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    if got == 0 && size.ws_col > 0 {
        return Some(usize::from(size.ws_col));
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .filter(|&c| c > 0)
}

fn row(task: &Task) -> [String; 10] {
    let dash = || "-".to_owned();
    [
        task.id.clone(),
        task.status.as_str().to_owned(),
        task.run.to_string(),
        task.pid.map_or_else(dash, |p| p.to_string()),
        task.started_at.as_deref().map_or_else(dash, started),
        task.duration_ms.map_or_else(dash, duration),
        progress(task),
        match task.ready {
            Some(true) => "yes".to_owned(),
            Some(false) => "no".to_owned(),
            None => dash(),
        },
        match task.ports.as_deref() {
            Some([]) | None => dash(),
            Some(ports) => ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(","),
        },
        if task.tags.is_empty() {
            dash()
        } else {
            task.tags.join(",")
        },
    ]
}

/// `2026-11-27T08:23:53.475Z` as `08:23:53` (UTC), with the date when it is not today's.
fn started(at: &str) -> String {
    let today = crate::time::rfc3339(crate::time::now_ms());
    match (at.get(..10), at.get(11..19)) {
        (Some(date), Some(time)) if today.starts_with(date) => time.to_owned(),
        (Some(date), Some(time)) => format!("{date} {time}"),
        _ => at.to_owned(),
    }
}

/// Milliseconds as `850ms`, `12.3s`, `4m05s` or `2h03m`.
fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    let s = ms / 1000;
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, s / 60 % 60)
    }
}

fn progress(task: &Task) -> String {
    let Some(progress) = &task.progress else {
        return "-".to_owned();
    };
    match (progress.percent, progress.current, progress.total) {
        (_, Some(current), Some(total)) => format!("{current}/{total}"),
        (Some(percent), _, _) => format!("{percent:.0}%"),
        (None, Some(current), None) => format!("{current}"),
        _ => "-".to_owned(),
    }
}

/// Cuts the shrinkable columns until a line fits in `width` (or they are at their narrowest).
fn fit(widths: &mut [usize; 10], width: usize) {
    let total = |w: &[usize; 10]| w.iter().sum::<usize>() + 2 * (w.len() - 1);
    for column in SHRINKABLE {
        let over = total(widths).saturating_sub(width);
        if over == 0 {
            return;
        }
        let floor = NARROWEST.max(chars(HEADERS[column]));
        widths[column] = widths[column].saturating_sub(over).max(floor);
    }
}

fn line(text: &mut String, cells: &[String; 10], widths: &[usize; 10]) {
    let mut line = String::new();
    for (i, (cell, &width)) in cells.iter().zip(widths).enumerate() {
        if i > 0 {
            line.push_str("  ");
        }
        let cell = cut(cell, width);
        let _ = write!(line, "{cell:<width$}");
    }
    text.push_str(line.trim_end());
    text.push('\n');
}

/// `text` in at most `width` characters, its end replaced by `…` when cut.
fn cut(text: &str, width: usize) -> String {
    if chars(text) <= width {
        return text.to_owned();
    }
    let kept: String = text.chars().take(width.saturating_sub(1)).collect();
    format!("{kept}…")
}

fn chars(text: &str) -> usize {
    text.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(12_345), "12.3s");
        assert_eq!(duration(245_000), "4m05s");
        assert_eq!(duration(7_380_000), "2h03m");
    }

    #[test]
    fn cells_are_cut_with_an_ellipsis() {
        assert_eq!(cut("abcdef", 6), "abcdef");
        assert_eq!(cut("abcdefgh", 6), "abcde…");
        assert_eq!(cut("ééééééé", 4), "ééé…");
    }

    #[test]
    fn tags_then_ids_give_way_to_the_width() {
        // 170 + 18 between columns: 58 over 130, all taken from the tags.
        let mut widths = [40, 7, 3, 6, 8, 8, 8, 5, 5, 80];
        fit(&mut widths, 130);
        let total: usize = widths.iter().sum::<usize>() + 18;
        assert_eq!(total, 130, "{widths:?}");
        assert_eq!(
            (widths[9], widths[0]),
            (22, 40),
            "the id keeps its width while tags can give"
        );
        // 100: the tags give all they can (74), the id the rest (14).
        let mut widths = [40, 7, 3, 6, 8, 8, 8, 5, 5, 80];
        fit(&mut widths, 100);
        assert_eq!((widths[9], widths[0]), (6, 26), "{widths:?}");
        // Narrower than the fixed columns: both at their narrowest, never below.
        let mut widths = [40, 7, 3, 6, 8, 8, 8, 5, 5, 80];
        fit(&mut widths, 60);
        assert_eq!((widths[9], widths[0]), (6, 6), "{widths:?}");
    }
}
