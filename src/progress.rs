//! Progress read from a task's own output, the newest line wins.
//!
//! Recognised lines: `Progress: 42%`, a line ending with `42%`, `step 3/17`, `[3/17]`, and
//! JSON lines `{"type":"progress","current":3,"total":17,"message":"..."}`.

use serde::{Deserialize, Serialize};

/// How far a task got, from its newest progress line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Progress {
    pub current: Option<f64>,
    pub total: Option<f64>,
    /// 0 to 100; derived from `current / total` when only those are given.
    pub percent: Option<f64>,
    pub message: Option<String>,
}

/// The progress a line reports, if it reports any.
pub fn parse(line: &str) -> Option<Progress> {
    let line = line.trim();
    if line.starts_with('{') {
        return parse_json(line);
    }
    if let Some(progress) = parse_fraction(line) {
        return Some(progress);
    }
    parse_percent(line)
}

fn parse_json(line: &str) -> Option<Progress> {
    #[derive(Deserialize)]
    struct Line {
        #[serde(rename = "type")]
        kind: String,
        current: Option<f64>,
        total: Option<f64>,
        percent: Option<f64>,
        message: Option<String>,
    }
    let parsed: Line = serde_json::from_str(line).ok()?;
    if parsed.kind != "progress" {
        return None;
    }
    Some(with_percent(Progress {
        current: parsed.current,
        total: parsed.total,
        percent: parsed.percent,
        message: parsed.message,
    }))
}

/// `step 3/17` (any case) or `[3/17]`, anywhere in the line.
fn parse_fraction(line: &str) -> Option<Progress> {
    let lower = line.to_ascii_lowercase();
    let at = lower
        .find("step ")
        .map(|i| i + "step ".len())
        .or_else(|| lower.find('[').map(|i| i + 1))?;
    let rest = &line[at..];
    let (current, rest) = rest.split_once('/')?;
    let total: String = rest.chars().take_while(char::is_ascii_digit).collect();
    if lower[at..].starts_with(|c: char| c.is_ascii_digit()) && line[..at].ends_with('[') {
        let after = &rest[total.len()..];
        if !after.starts_with(']') {
            return None;
        }
    }
    let current: f64 = current.trim().parse().ok()?;
    let total: f64 = total.parse().ok()?;
    (total > 0.0).then(|| {
        with_percent(Progress {
            current: Some(current),
            total: Some(total),
            percent: None,
            message: None,
        })
    })
}

/// `Progress: 42%`, or any line ending with a percentage such as `42%` or `42.5 %`.
fn parse_percent(line: &str) -> Option<Progress> {
    let body = line.strip_suffix('%')?.trim_end();
    let digits_start = body
        .rfind(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or(0, |i| i + 1);
    let percent: f64 = body[digits_start..].parse().ok()?;
    if !(0.0..=100.0).contains(&percent) {
        return None;
    }
    let message = body[..digits_start].trim().trim_end_matches(':').trim();
    let message = (!message.is_empty() && !message.eq_ignore_ascii_case("progress"))
        .then(|| message.to_owned());
    Some(Progress {
        current: None,
        total: None,
        percent: Some(percent),
        message,
    })
}

fn with_percent(mut progress: Progress) -> Progress {
    if progress.percent.is_none()
        && let (Some(current), Some(total)) = (progress.current, progress.total)
        && total > 0.0
    {
        progress.percent = Some((current / total * 1000.0).round() / 10.0);
    }
    progress
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fraction(line: &str) -> Option<(f64, f64)> {
        parse(line).and_then(|p| Some((p.current?, p.total?)))
    }

    #[test]
    fn recognises_each_form() {
        assert_eq!(parse("Progress: 42%").and_then(|p| p.percent), Some(42.0));
        assert_eq!(
            parse("downloading 42.5 %").and_then(|p| p.percent),
            Some(42.5)
        );
        assert_eq!(parse("42%").and_then(|p| p.percent), Some(42.0));
        assert_eq!(fraction("step 3/17"), Some((3.0, 17.0)));
        assert_eq!(fraction("Step 3/17: compiling"), Some((3.0, 17.0)));
        assert_eq!(fraction("[3/17] Building CXX object"), Some((3.0, 17.0)));
        assert_eq!(parse("[3/17]").and_then(|p| p.percent), Some(17.6));
        let json = parse(r#"{"type":"progress","current":3,"total":17,"message":"linking"}"#)
            .expect("json");
        assert_eq!(
            (json.current, json.total, json.message.as_deref()),
            (Some(3.0), Some(17.0), Some("linking"))
        );
    }

    #[test]
    fn ignores_lines_without_progress() {
        for line in [
            "",
            "hello",
            "100 files",
            "error: 3/0",
            "{\"type\":\"log\"}",
            "rate 150%",
            "{not json",
        ] {
            assert!(parse(line).is_none(), "{line:?}");
        }
    }
}
