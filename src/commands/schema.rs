//! `schema list` and `schema show <name>`: the JSON Schemas of the contract, generated from
//! the types the commands parse and print ([`crate::schema`]).

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::schema::{self, Entry, Kind};

/// The answer of `schema list` (no `name`, no `schema` bodies) and `schema show`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SchemaAnswer {
    /// The name shown (`schema show`); absent for `schema list`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub schemas: Vec<SchemaItem>,
}

/// One schema.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SchemaItem {
    /// The command (`start`, `schema show`), or `frame` / `error`.
    pub name: &'static str,
    pub kind: Kind,
    /// The schema's `$id`, e.g. `background-tasks.start.input/v1`.
    pub id: String,
    /// Where it is committed in the source repository, e.g. `schemas/start.input.json`.
    pub file: String,
    /// The JSON Schema itself (draft 2020-12); `schema show` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
}

impl SchemaItem {
    fn new(entry: &Entry, with_body: bool) -> SchemaItem {
        SchemaItem {
            name: entry.name,
            kind: entry.kind,
            id: entry.id(),
            file: entry.file(),
            schema: with_body.then(|| entry.schema()),
        }
    }
}

pub fn list() -> SchemaAnswer {
    SchemaAnswer {
        name: None,
        schemas: schema::all()
            .iter()
            .map(|e| SchemaItem::new(e, false))
            .collect(),
    }
}

pub fn show(name: &str) -> Result<SchemaAnswer> {
    let schemas: Vec<SchemaItem> = schema::all()
        .iter()
        .filter(|e| e.name == name)
        .map(|e| SchemaItem::new(e, true))
        .collect();
    if schemas.is_empty() {
        // clap only lets known names through; this guards a caller of the library.
        return Err(Error::input(
            format!("no schema named {name:?}"),
            "Run schema list to see the names.",
        ));
    }
    Ok(SchemaAnswer {
        name: Some(name.to_owned()),
        schemas,
    })
}
