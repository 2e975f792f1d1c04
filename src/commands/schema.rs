//! `schema list` and `schema show <name>`: the JSON Schemas of the contract, generated from
//! the types the commands parse and print ([`crate::schema`]).

use crate::error::{Error, Result};
use crate::payload::discovery::{SchemaAnswer, SchemaItem};
use crate::schema::{self, Entry};

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
    let name = &schema::shown_name(name);
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
