//! Steps: a tree of named phases a task reports on its own output, folded into `steps`.
//!
//! A step line is one line of output that is a JSON object whose `type` is
//! [`LINE_TYPE`] (`"background-tasks.step"`), for example
//! `{"type":"background-tasks.step","id":"build","parent":null,"title":"Build","status":"running","current":1,"total":3,"message":"compiling"}`.
//! The namespaced `type` is what keeps the JSON logs of ordinary programs
//! (`{"level":"info","step":"compile"}`, `{"type":"step","id":1}`) from ever being taken for
//! steps; the whole line must be the object (after ANSI escapes and surrounding spaces are
//! removed), not a log line that merely contains one.
//!
//! Fields: `id` (a string, required, at most [`MAX_ID_BYTES`]), `parent` (the id of another
//! step), `title` (defaults to the id), `status` (`running`, `done`, `failed`, `skipped`;
//! `running` when a step is first seen without one), `current`/`total` (numbers; `percent`
//! is derived), `message`. Other fields are ignored. A line with a wrong field type or an
//! unknown status is not a step.
//!
//! Folding ([`StepTree`]): a line for a known id merges into it (fields it gives replace
//! those it had; absent or `null` ones keep theirs). A step's `parent` is taken when the step
//! is first seen, and only if that parent is already known; otherwise (an unknown parent, or
//! the step itself) it is a root. So every `parent` names a step listed before it and the
//! tree can never hold a cycle (a → b → a): nothing ever walks it without end. Bounds:
//! at most [`MAX_STEPS`] steps per run, titles and messages cut to the line budget
//! (`…[<n> more bytes]`), and at most [`TEXT_BUDGET`] bytes of titles and messages in all;
//! a new step past either bound is left out and counted in `steps_dropped`, and a message
//! that would go past the text budget is cut to fit.
//!
//! When the run ends, each step still `running` is closed with the run's outcome: `done`
//! when the task exited with 0, `failed` otherwise.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::output_log::{mark_cut, shorten, truncate};
use crate::state::record::{StepRecord, StepStatus};

/// The `type` of a step line.
pub const LINE_TYPE: &str = "background-tasks.step";
/// An example step line (`capabilities`).
pub const EXAMPLE: &str = r#"{"type":"background-tasks.step","id":"build.compile","parent":"build","title":"Compile","status":"running","current":3,"total":17,"message":"linking"}"#;
/// The most steps one run keeps.
pub const MAX_STEPS: usize = 256;
/// The most bytes of titles and messages one run's steps keep in all.
pub const TEXT_BUDGET: usize = 256 * 1024;
/// The longest step id; a line with a longer one is not a step.
pub const MAX_ID_BYTES: usize = 256;
/// The longest line read as a step line; a longer line is not a step (it is counted in
/// `steps_dropped` when it began like one).
pub const MAX_LINE: usize = 1024 * 1024;

/// One step line, as parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct StepLine {
    pub id: String,
    pub parent: Option<String>,
    pub title: Option<String>,
    pub status: Option<StepStatus>,
    pub current: Option<f64>,
    pub total: Option<f64>,
    pub message: Option<String>,
}

/// The step a line reports, if it is a step line (already stripped of ANSI escapes).
pub fn parse(line: &str) -> Option<StepLine> {
    #[derive(Deserialize)]
    struct Line {
        #[serde(rename = "type")]
        kind: String,
        id: String,
        #[serde(default)]
        parent: Option<String>,
        #[serde(default)]
        title: Option<String>,
        #[serde(default)]
        status: Option<String>,
        #[serde(default)]
        current: Option<f64>,
        #[serde(default)]
        total: Option<f64>,
        #[serde(default)]
        message: Option<String>,
    }
    let line = line.trim();
    if !line.starts_with('{') || !line.contains(LINE_TYPE) {
        return None;
    }
    let parsed: Line = serde_json::from_str(line).ok()?;
    if parsed.kind != LINE_TYPE || parsed.id.is_empty() || parsed.id.len() > MAX_ID_BYTES {
        return None;
    }
    let status = match parsed.status.as_deref() {
        None => None,
        Some("running") => Some(StepStatus::Running),
        Some("done") => Some(StepStatus::Done),
        Some("failed") => Some(StepStatus::Failed),
        Some("skipped") => Some(StepStatus::Skipped),
        Some(_) => return None,
    };
    let finite = |n: Option<f64>| n.filter(|n| n.is_finite());
    Some(StepLine {
        id: parsed.id,
        parent: parsed.parent.filter(|p| !p.is_empty()),
        title: parsed.title,
        status,
        current: finite(parsed.current),
        total: finite(parsed.total),
        message: parsed.message,
    })
}

/// A run's steps, as folded from its step lines, with what changed since last taken.
#[derive(Debug, Default)]
pub struct StepTree {
    nodes: Vec<StepRecord>,
    /// Bytes of titles and messages held.
    text: usize,
    /// Steps (and step lines) left out: past a bound, or a line too long to read.
    dropped: u64,
    /// Places in `nodes` changed since [`StepTree::take_changed`].
    changed: BTreeSet<usize>,
    dropped_changed: bool,
}

impl StepTree {
    /// Folds one step line in, at `now_ms`.
    pub fn apply(&mut self, line: StepLine, now_ms: i64) {
        let title = line.title.as_deref().map(cut);
        let message = line.message.as_deref().map(cut);
        if let Some(at) = self.nodes.iter().position(|n| n.id == line.id) {
            self.update(at, line, title, message, now_ms);
            return;
        }
        let title = title.unwrap_or_else(|| cut(&line.id));
        let size = title.len() + message.as_ref().map_or(0, String::len);
        if self.nodes.len() >= MAX_STEPS || self.text + size > TEXT_BUDGET {
            self.drop_one();
            return;
        }
        // Only a step listed already can be a parent: no cycle, no step its own parent.
        let parent = line
            .parent
            .filter(|p| self.nodes.iter().any(|n| &n.id == p));
        let status = line.status.unwrap_or(StepStatus::Running);
        let mut node = StepRecord {
            id: line.id,
            parent,
            title: Some(title),
            status,
            current: line.current,
            total: line.total,
            percent: None,
            message,
            started_at_ms: Some(now_ms),
            ended_at_ms: status.is_terminal().then_some(now_ms),
            extra: Default::default(),
        };
        node.percent = percent(&node);
        self.text += size;
        self.nodes.push(node);
        self.changed.insert(self.nodes.len() - 1);
    }

    fn update(
        &mut self,
        at: usize,
        line: StepLine,
        title: Option<String>,
        message: Option<String>,
        now_ms: i64,
    ) {
        let before = self.nodes[at].clone();
        let node = &mut self.nodes[at];
        if let Some(title) = title {
            let old = node.title.as_ref().map_or(0, String::len);
            if let Some(title) = within_budget(title, TEXT_BUDGET.saturating_sub(self.text - old)) {
                self.text = self.text - old + title.len();
                node.title = Some(title);
            }
        }
        if let Some(message) = message {
            let old = node.message.as_ref().map_or(0, String::len);
            if let Some(message) =
                within_budget(message, TEXT_BUDGET.saturating_sub(self.text - old))
            {
                self.text = self.text - old + message.len();
                node.message = Some(message);
            }
        }
        if let Some(status) = line.status {
            if status != node.status {
                node.ended_at_ms = status.is_terminal().then_some(now_ms);
            }
            node.status = status;
        }
        if line.current.is_some() {
            node.current = line.current;
        }
        if line.total.is_some() {
            node.total = line.total;
        }
        node.percent = percent(node);
        if *node != before {
            self.changed.insert(at);
        }
    }

    fn drop_one(&mut self) {
        self.dropped += 1;
        self.dropped_changed = true;
    }

    /// A line that began like a step line was too long to be read as one.
    pub fn drop_overlong(&mut self) {
        self.drop_one();
    }

    /// Closes every step still running with the run's outcome: `done` when `succeeded`,
    /// `failed` otherwise.
    pub fn close(&mut self, succeeded: bool, now_ms: i64) {
        let status = if succeeded {
            StepStatus::Done
        } else {
            StepStatus::Failed
        };
        for (at, node) in self.nodes.iter_mut().enumerate() {
            if node.status == StepStatus::Running {
                node.status = status;
                node.ended_at_ms = Some(now_ms);
                self.changed.insert(at);
            }
        }
    }

    /// Whether anything changed since last taken.
    pub fn has_changes(&self) -> bool {
        !self.changed.is_empty() || self.dropped_changed
    }

    /// Every step, in the order first seen (a parent before its children).
    pub fn nodes(&self) -> &[StepRecord] {
        &self.nodes
    }

    /// Steps and step lines left out.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The steps changed since last taken, in the order first seen; forgets them.
    pub fn take_changed(&mut self) -> Vec<StepRecord> {
        self.dropped_changed = false;
        std::mem::take(&mut self.changed)
            .into_iter()
            .filter_map(|at| self.nodes.get(at).cloned())
            .collect()
    }
}

/// A title or message cut to the line budget, saying how much was left out.
/// `text`, cut to the `room` the text budget leaves (its marker included); `None` when
/// not even the marker fits (the step keeps what it had).
fn within_budget(mut text: String, room: usize) -> Option<String> {
    const MARKER: usize = 32;
    if text.len() <= room {
        return Some(text);
    }
    if room < MARKER {
        return None;
    }
    let cut_bytes = truncate(&mut text, room - MARKER);
    Some(mark_cut(text, cut_bytes))
}

fn cut(text: &str) -> String {
    shorten(text)
}

fn percent(node: &StepRecord) -> Option<f64> {
    match (node.current, node.total) {
        (Some(current), Some(total)) if total > 0.0 => {
            Some(((current / total * 1000.0).round() / 10.0).clamp(0.0, 100.0))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output_log::MAX_LINE_BYTES;

    fn line(id: &str, parent: Option<&str>, status: Option<StepStatus>) -> StepLine {
        StepLine {
            id: id.into(),
            parent: parent.map(Into::into),
            title: None,
            status,
            current: None,
            total: None,
            message: None,
        }
    }

    #[test]
    fn only_namespaced_whole_lines_are_steps() {
        let step = parse(EXAMPLE).expect("the example is a step");
        assert_eq!(
            (step.id.as_str(), step.parent.as_deref()),
            ("build.compile", Some("build"))
        );
        assert_eq!(step.status, Some(StepStatus::Running));
        for not_a_step in [
            r#"{"level":"info","step":"compile","status":"done"}"#,
            r#"{"type":"step","id":1}"#,
            r#"{"type":"step","id":"a","status":"running"}"#,
            r#"{"type":"progress","current":3,"total":17}"#,
            r#"{"msg":"saw {\"type\":\"background-tasks.step\",\"id\":\"x\"}"}"#,
            r#"2026-01-01 {"type":"background-tasks.step","id":"x"}"#,
            r#"{"type":"background-tasks.step","id":1}"#,
            r#"{"type":"background-tasks.step","id":""}"#,
            r#"{"type":"background-tasks.step","id":"x","status":"paused"}"#,
            r#"{"type":"background-tasks.step","id":"x","title":7}"#,
            r#"{"type":"background-tasks.step"}"#,
        ] {
            assert!(parse(not_a_step).is_none(), "{not_a_step}");
        }
        let spaced = r#"  { "type" : "background-tasks.step", "id" : "x", "extra": [1] }  "#;
        assert!(parse(spaced).is_some());
    }

    #[test]
    fn merges_by_id_and_never_holds_a_cycle() {
        let mut tree = StepTree::default();
        tree.apply(line("a", Some("b"), None), 1); // b unknown: a is a root
        tree.apply(line("b", Some("a"), None), 2);
        tree.apply(line("a", Some("b"), Some(StepStatus::Done)), 3); // parent fixed
        tree.apply(line("c", Some("c"), None), 4); // itself: a root
        let nodes = tree.nodes();
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[0].parent, None);
        assert_eq!(nodes[0].status, StepStatus::Done);
        assert_eq!(nodes[0].ended_at_ms, Some(3));
        assert_eq!(nodes[1].parent.as_deref(), Some("a"));
        assert_eq!(nodes[2].parent, None);
        assert_eq!(tree.take_changed().len(), 3);
        assert!(!tree.has_changes());
        tree.apply(line("a", None, Some(StepStatus::Done)), 5);
        assert!(!tree.has_changes(), "the same state again is no change");
        tree.close(false, 6);
        let closed = tree.take_changed();
        assert_eq!(
            closed
                .iter()
                .map(|n| (n.id.as_str(), n.status))
                .collect::<Vec<_>>(),
            [("b", StepStatus::Failed), ("c", StepStatus::Failed)]
        );
    }

    #[test]
    fn bounded_in_count_and_text() {
        let mut tree = StepTree::default();
        for i in 0..(MAX_STEPS + 10) {
            tree.apply(line(&format!("s{i}"), None, None), 0);
        }
        assert_eq!((tree.nodes().len(), tree.dropped()), (MAX_STEPS, 10));

        let mut tree = StepTree::default();
        let mut big = line("big", None, None);
        big.title = Some("t".repeat(100_000));
        tree.apply(big, 0);
        let title = tree.nodes()[0].title.clone().unwrap_or_default();
        assert!(title.len() < MAX_LINE_BYTES + 32);
        assert!(title.ends_with("more bytes]"));
        for i in 0..100 {
            let mut step = line(&format!("m{i}"), None, None);
            step.message = Some("m".repeat(MAX_LINE_BYTES));
            tree.apply(step, 0);
        }
        assert!(tree.text <= TEXT_BUDGET);
        assert!(tree.dropped() > 0);
        let mut grow = line("big", None, None);
        grow.message = Some("g".repeat(MAX_LINE_BYTES));
        tree.apply(grow, 0);
        assert!(tree.text <= TEXT_BUDGET, "{}", tree.text);
        // A known step's new title is held to the budget as a message is.
        for i in 0..100 {
            let mut retitle = line(&format!("m{i}"), None, None);
            retitle.title = Some("r".repeat(MAX_LINE_BYTES));
            tree.apply(retitle, 0);
        }
        assert!(tree.text <= TEXT_BUDGET, "{}", tree.text);
    }
}
