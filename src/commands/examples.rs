//! `examples list` and `examples show <command>`: the example payloads of
//! [`crate::payload::examples`], each with a command line that runs it.

use crate::error::{Error, Result};
use crate::payload::examples::{EXAMPLES, Example, ExamplesAnswer};

pub fn list() -> ExamplesAnswer {
    ExamplesAnswer {
        command: None,
        examples: EXAMPLES.iter().map(|e| e.answer(false)).collect(),
    }
}

pub fn show(command: &str) -> Result<ExamplesAnswer> {
    let examples: Vec<Example> = EXAMPLES
        .iter()
        .filter(|e| e.command == command)
        .map(|e| e.answer(true))
        .collect();
    if examples.is_empty() {
        return Err(Error::input(
            format!("no examples for {command:?}"),
            "Run examples list to see which commands have examples.",
        ));
    }
    Ok(ExamplesAnswer {
        command: Some(command.to_owned()),
        examples,
    })
}
