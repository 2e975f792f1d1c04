//! ANSI escape sequences in task output: colours, cursor moves, window titles.
//!
//! The log file keeps every byte; JSON answers and frames give lines as [`strip`] leaves
//! them, unless the payload asks for the bytes as written (`"ansi": true`). Progress lines
//! are read stripped whatever the payload says.

use std::borrow::Cow;

const ESC: char = '\u{1b}';
const BEL: char = '\u{7}';

/// `text` without its ANSI escape sequences: CSI (`ESC [ ... final`, colours and cursor
/// moves), OSC (`ESC ] ... BEL` or `ESC ] ... ESC \`, titles and hyperlinks, whose visible
/// text stays), the other two-byte escapes (`ESC (B`, `ESC =`, `ESC 7`), and the 8-bit CSI
/// (U+009B). An escape cut off at the end of the text is dropped. Text without `ESC` or
/// U+009B is returned as it is, without copying.
pub fn strip(text: &str) -> Cow<'_, str> {
    if !text.contains([ESC, '\u{9b}']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ESC => match chars.next() {
                Some('[') => skip_csi(&mut chars),
                Some(']' | 'P' | 'X' | '^' | '_') => skip_string(&mut chars),
                // ESC ( B and the like: one intermediate, then one final character.
                Some(' '..='/') => {
                    chars.next();
                }
                // ESC 7, ESC =, ESC M, ...: a single character.
                Some(_) | None => {}
            },
            '\u{9b}' => skip_csi(&mut chars),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Parameters and intermediates (0x20-0x3F), then one final character (0x40-0x7E).
fn skip_csi(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for c in chars.by_ref() {
        if ('\u{40}'..='\u{7e}').contains(&c) {
            return;
        }
        if !(' '..='?').contains(&c) {
            // Not a CSI after all: stop here, dropping only the malformed byte.
            return;
        }
    }
}

/// A string sequence (OSC, DCS, ...): up to BEL or `ESC \`.
fn skip_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while let Some(c) = chars.next() {
        match c {
            BEL => return,
            ESC => {
                if chars.peek() == Some(&'\\') {
                    chars.next();
                }
                return;
            }
            _ => {}
        }
    }
}

/// `line` as an answer gives it: stripped unless `keep` (the payload's `"ansi": true`).
pub fn shown(line: String, keep: bool) -> String {
    if keep {
        return line;
    }
    match strip(&line) {
        Cow::Borrowed(_) => line,
        Cow::Owned(clean) => clean,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_colours_cursor_moves_titles_and_hyperlinks() {
        for (raw, clean) in [
            ("\u{1b}[31mERROR\u{1b}[0m: boom", "ERROR: boom"),
            ("\u{1b}[1;38;5;196mred\u{1b}[m", "red"),
            ("\u{1b}[2K\u{1b}[1Gdone", "done"),
            ("\u{1b}]0;title\u{7}text", "text"),
            (
                "\u{1b}]8;;https://example.com\u{1b}\\link\u{1b}]8;;\u{1b}\\",
                "link",
            ),
            ("\u{1b}(Bplain\u{1b}=", "plain"),
            ("\u{9b}32mgreen", "green"),
            ("cut \u{1b}[3", "cut "),
            ("no escapes here", "no escapes here"),
            ("ünïcödé \u{1b}[1m✓\u{1b}[0m", "ünïcödé ✓"),
        ] {
            assert_eq!(strip(raw), clean, "{raw:?}");
        }
    }

    #[test]
    fn text_without_escapes_is_not_copied() {
        assert!(matches!(strip("plain"), Cow::Borrowed(_)));
        assert_eq!(shown("\u{1b}[1mx".to_owned(), true), "\u{1b}[1mx");
        assert_eq!(shown("\u{1b}[1mx".to_owned(), false), "x");
    }
}
