//! Progress read from a task's own output, the newest line wins.
//!
//! Recognised lines ([`FORMS`], listed by `capabilities` as `progress_forms`): JSON lines
//! `{"type":"progress","current":3,"total":17,"message":"..."}`, tqdm bars, pytest's
//! `[ 27%]`, cargo's `Building [==>  ] 12/80: ...`, `step 3/17`, `[3/17]`, npm/webpack lines
//! that begin with a percentage (the percent wins over an x/y in the same line), and lines
//! ending with one (`Progress: 42%`). A line is read as a terminal shows it: ANSI escape
//! sequences removed, a `\r`-redrawn bar by its last redraw (done by the log reader).

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

/// The forms of progress lines recognised, each with an example, in the order they are tried.
pub const FORMS: &[(&str, &str)] = &[
    (
        "json",
        r#"{"type":"progress","current":3,"total":17,"message":"linking"}"#,
    ),
    (
        "tqdm",
        " 45%|████      | 45/100 [00:01<00:02, 40.0it/s] (its last \\r redraw)",
    ),
    ("pytest", "........................ [ 27%]"),
    ("cargo", "    Building [=====>     ] 12/80: serde, libc"),
    ("step", "step 3/17"),
    ("bracketed", "[3/17] Building CXX object foo.o"),
    (
        "leading_percent",
        " 62% building 31/50 modules (npm, webpack: the percent wins over x/y)",
    ),
    ("trailing_percent", "Progress: 42%"),
];

/// The progress a line reports, if it reports any.
pub fn parse(line: &str) -> Option<Progress> {
    let clean = crate::ansi::strip(line);
    let line = clean.trim();
    if line.starts_with('{') {
        return parse_json(line);
    }
    parse_tqdm(line)
        .or_else(|| parse_pytest(line))
        .or_else(|| parse_cargo(line))
        .or_else(|| parse_fraction(line))
        .or_else(|| parse_leading_percent(line))
        .or_else(|| parse_percent(line))
}

/// A percentage 0 to 100 (`42`, `42.5`, ` 7`), or `None`.
fn percentage(text: &str) -> Option<f64> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let percent: f64 = text.parse().ok()?;
    (0.0..=100.0).contains(&percent).then_some(percent)
}

/// A count (`45`, `1.5`): digits and at most one dot.
fn count(text: &str) -> Option<f64> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    text.parse().ok()
}

/// `x/y` at the start of `text` (after spaces): both counts, `y > 0`, and the rest.
fn leading_fraction(text: &str) -> Option<(f64, f64, &str)> {
    let text = text.trim_start();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '/'))
        .unwrap_or(text.len());
    let (current, total) = text[..end].split_once('/')?;
    let (current, total) = (count(current)?, count(total)?);
    (total > 0.0).then_some((current, total, &text[end..]))
}

/// tqdm: `desc:  45%|████      | 45/100 [00:01<00:02, 40.0it/s]`. The percent is tqdm's;
/// `n/total` when both are plain numbers; the description, if any, is the message.
fn parse_tqdm(line: &str) -> Option<Progress> {
    let (left, rest) = line.split_once("%|")?;
    let digits_start = left
        .rfind(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or(0, |i| i + 1);
    let percent = percentage(&left[digits_start..])?;
    let desc = left[..digits_start].trim().trim_end_matches(':').trim();
    let (_, after_bar) = rest.split_once('|')?;
    let fraction = leading_fraction(after_bar);
    Some(Progress {
        current: fraction.map(|f| f.0),
        total: fraction.map(|f| f.1),
        percent: Some(percent),
        message: (!desc.is_empty()).then(|| desc.to_owned()),
    })
}

/// pytest: a line ending with `[ 27%]` (after the dots of `-q`, or a test's name and outcome
/// with `-v`). The message is the test file or test, when the line names one.
fn parse_pytest(line: &str) -> Option<Progress> {
    let body = line.strip_suffix("%]")?;
    let open = body.rfind('[')?;
    let percent = percentage(&body[open + 1..])?;
    let before = body[..open].trim();
    let first = before.split_whitespace().next().unwrap_or("");
    // `-q` prints only outcome letters: `..F.sxX`.
    let named = !first.is_empty() && !first.chars().all(|c| ".FEsxXp".contains(c));
    Some(Progress {
        current: None,
        total: None,
        percent: Some(percent),
        message: named.then(|| first.to_owned()),
    })
}

/// cargo: `Building [=====>     ] 12/80: serde, libc` (the word before the bar, then
/// `x/y`); the message is the word and what follows the colon.
fn parse_cargo(line: &str) -> Option<Progress> {
    let (word, rest) = line.split_once(" [")?;
    let word = word.trim();
    if word.is_empty() || !word.chars().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    let (bar, after) = rest.split_once(']')?;
    if !bar.chars().all(|c| matches!(c, '=' | '>' | ' ' | '-')) {
        return None;
    }
    let (current, total, tail) = leading_fraction(after)?;
    let doing = tail.trim_start_matches(':').trim();
    Some(with_percent(Progress {
        current: Some(current),
        total: Some(total),
        percent: None,
        message: Some(if doing.is_empty() {
            word.to_owned()
        } else {
            format!("{word}: {doing}")
        }),
    }))
}

/// npm/webpack: a line that begins with a percentage and goes on in words,
/// ` 62% building 31/50 modules`. The percent wins over an `x/y` in the same line (kept as
/// current/total); the words are the message.
fn parse_leading_percent(line: &str) -> Option<Progress> {
    let (number, rest) = line.split_once('%')?;
    let percent = percentage(number)?;
    let message = rest.trim();
    if !rest.starts_with(' ') || !message.starts_with(|c: char| c.is_alphabetic()) {
        return None;
    }
    let fraction = message
        .split_whitespace()
        .find_map(|word| leading_fraction(word).filter(|f| f.2.is_empty()));
    Some(Progress {
        current: fraction.map(|f| f.0),
        total: fraction.map(|f| f.1),
        percent: Some(percent),
        message: Some(message.to_owned()),
    })
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
    fn recognises_the_tools_forms() {
        let pytest = parse("........................................ [ 27%]").expect("pytest");
        assert_eq!((pytest.percent, pytest.message), (Some(27.0), None));
        let verbose =
            parse("tests/test_x.py::test_a PASSED                    [100%]").expect("pytest -v");
        assert_eq!(
            (verbose.percent, verbose.message.as_deref()),
            (Some(100.0), Some("tests/test_x.py::test_a"))
        );
        let named = parse("tests/test_funcs.py ....F...s...                 [  3%]").expect("file");
        assert_eq!(named.message.as_deref(), Some("tests/test_funcs.py"));

        let tqdm = parse(" 45%|████      | 45/100 [00:01<00:02, 40.0it/s]").expect("tqdm");
        assert_eq!(
            (tqdm.percent, tqdm.current, tqdm.total, tqdm.message),
            (Some(45.0), Some(45.0), Some(100.0), None)
        );
        let described = parse("train:  7%|▋         | 7/100 [00:00<?, ?it/s]").expect("desc");
        assert_eq!(
            (described.percent, described.message.as_deref()),
            (Some(7.0), Some("train"))
        );
        let scaled = parse("100%|██████████| 1.2k/1.2k [00:01<00:00, 1.1kit/s]").expect("k");
        assert_eq!((scaled.percent, scaled.current), (Some(100.0), None));

        let cargo =
            parse("    Building [=====>                   ] 12/80: serde, libc").expect("cargo");
        assert_eq!(
            (cargo.current, cargo.total, cargo.percent),
            (Some(12.0), Some(80.0), Some(15.0))
        );
        assert_eq!(cargo.message.as_deref(), Some("Building: serde, libc"));

        let webpack = parse(" 62% building 31/50 modules").expect("webpack");
        assert_eq!(
            (webpack.percent, webpack.current, webpack.total),
            (Some(62.0), Some(31.0), Some(50.0))
        );
        assert_eq!(webpack.message.as_deref(), Some("building 31/50 modules"));
        let sealing = parse("92% sealing asset processing").expect("webpack");
        assert_eq!((sealing.percent, sealing.current), (Some(92.0), None));
    }

    #[test]
    fn reads_lines_through_their_colours() {
        let coloured = "\u{1b}[32m\u{1b}[1m    Building\u{1b}[0m [==>  ] 3/10: foo";
        assert_eq!(fraction(coloured), Some((3.0, 10.0)));
        assert_eq!(
            parse("\u{1b}[32m.....\u{1b}[0m\u{1b}[32m [ 50%]\u{1b}[0m").and_then(|p| p.percent),
            Some(50.0)
        );
    }

    #[test]
    fn every_listed_form_parses_its_example() {
        for (name, example) in FORMS {
            let line = example.split(" (").next().unwrap_or(example);
            assert!(parse(line).is_some(), "{name}: {line:?}");
        }
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
            "collected 1234 items",
            "5 passed in 0.01s [ok]",
            "see [docs] 3/4",
            "150% |bar| 1/2",
            "100%done",
            "a|b|c 1/2",
        ] {
            assert!(parse(line).is_none(), "{line:?}");
        }
    }
}
