//! The tools: names, descriptions and annotations from the command table
//! ([`crate::catalog::TOOLS`]), input and output schemas from the commands' own schemas (the
//! registry, [`crate::schema`], as `schema show` prints them), reshaped for MCP; and the
//! arguments only MCP has.
//!
//! An MCP input schema must be an object, and several model APIs refuse a tool whose input
//! schema has `oneOf`/`anyOf`/`allOf` at its root, or `$ref`s they do not resolve. So each
//! command's payload schema is made flat: references inlined, the root's combinators (one
//! of `command` and `shell`, `id` or `ids`) left to the parser, which checks them anyway
//! with the same messages as the CLI. A command that takes an array (a batch) takes it in
//! an `items` field. Then come the arguments that are flags on the command line (`wait`,
//! `concurrency`, `output`) or exist only here (`follow`, and the bound of a blocking call).

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::{Map, Value, json};

use crate::catalog::{self, ToolEntry};
use crate::error::{Error, Result};
use crate::payload::discovery::Kind;
use crate::schema;

/// How long a blocking call may wait when its bound is not given, in seconds.
pub const DEFAULT_BOUND_S: f64 = 25.0;
/// The longest bound: the TypeScript SDK abandons a request after 60 s, and some clients
/// (Claude Code) do not let progress notifications reset that timer.
pub const MAX_BOUND_S: f64 = 50.0;

/// Every tool, in the table's order (2026-07-28 asks for a stable `tools/list`).
pub fn all() -> Vec<Tool> {
    catalog::TOOLS.iter().map(tool).collect()
}

fn tool(entry: &ToolEntry) -> Tool {
    let annotations = ToolAnnotations::new()
        .read_only(entry.read_only)
        .destructive(entry.destructive)
        .idempotent(entry.idempotent)
        // Local processes and files only.
        .open_world(false);
    Tool::new(entry.name, entry.description, input_schema(entry))
        .with_raw_output_schema(Arc::new(output_schema(entry.name)))
        .with_annotations(annotations)
}

/// The command's payload schema, flat, with the tool's own arguments.
pub fn input_schema(entry: &ToolEntry) -> JsonObject {
    let payload = registered(entry.name, Kind::Input)
        .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    let (mut one, batch) = match batch_item(&payload) {
        Some(item) => (item.clone(), Some(item)),
        None => (payload.clone(), None),
    };
    let schema = one.as_object_mut().expect("a payload schema is an object");
    for key in [
        "$schema",
        "$id",
        "title",
        "description",
        "oneOf",
        "anyOf",
        "allOf",
        "if",
        "then",
        "else",
    ] {
        schema.remove(key);
    }
    schema.insert("type".into(), json!("object"));
    if let Some(item) = batch {
        // The single-task fields are required only without `items`: the parser checks it.
        schema.remove("required");
        let mut item = item.clone();
        if let Some(item) = item.as_object_mut() {
            item.remove("description");
        }
        add(
            schema,
            "items",
            json!({
                "description": "Several tasks at once, instead of the fields above: a batch, worked on in parallel and answered in input order, one result each.",
                "type": "array",
                "minItems": 1,
                "items": item
            }),
        );
    }
    for (name, property) in extra_arguments(entry) {
        add(schema, name, property);
    }
    schema.clone()
}

/// The command's answer schema, references inlined; the root is an object, as MCP wants.
pub fn output_schema(name: &str) -> JsonObject {
    let Some(Value::Object(mut schema)) = registered(name, Kind::Output) else {
        return JsonObject::new();
    };
    for key in ["$schema", "$id", "title", "description"] {
        schema.remove(key);
    }
    schema.insert("type".into(), json!("object"));
    schema
}

/// The schema of command `name` of this kind, from the registry, references inlined.
fn registered(name: &str, kind: Kind) -> Option<Value> {
    schema::all()
        .into_iter()
        .find(|e| e.name == name && e.kind == kind)
        .map(|e| inline(e.schema()))
}

/// What a tool takes beyond its command's payload: the command's flags, and the bound of a
/// blocking call.
fn extra_arguments(entry: &ToolEntry) -> Vec<(&'static str, Value)> {
    let mut extra = Vec::new();
    match entry.name {
        "start" | "restart" => {
            let what = if entry.name == "start" {
                "Answer once the task is ready (its `ready` conditions hold) or has ended, instead of once it runs; at most `wait_timeout_s`."
            } else {
                "Answer once the new run is ready (its `ready` conditions hold) or has ended, instead of once it runs; at most `wait_timeout_s`."
            };
            extra.push((
                "wait",
                json!({"description": what, "type": "boolean", "default": false}),
            ));
        }
        "logs" => {
            extra.push((
                "output",
                json!({
                    "description": "auto: inline when the lines are whole and small, else the lines that fit and the log file's path; inline: always inline, nothing cut; artifact: always with the path.",
                    "enum": ["auto", "inline", "artifact"],
                    "default": "auto"
                }),
            ));
            extra.push(("follow", follow_property("lines")));
        }
        "events" => extra.push(("follow", follow_property("frames"))),
        _ => {}
    }
    if entry.name == "start" {
        extra.push((
            "concurrency",
            json!({"description": "With `items`: run at most this many of them at once; the rest are queued and start in order.", "type": "integer", "minimum": 1, "maximum": 65535}),
        ));
    }
    if let Some(bound) = entry.bound {
        extra.push((bound, bound_property(entry.name)));
    }
    extra
}

fn follow_property(what: &str) -> Value {
    json!({
        "description": format!("If no new {what} are there yet (after `after`) and the task runs, wait for some, or for its end, at most `timeout_s`."),
        "type": "boolean",
        "default": false
    })
}

fn bound_property(tool: &str) -> Value {
    let what = match tool {
        "stop" => {
            "How long to wait for the task's end, in seconds. The stop goes on without us (SIGKILL after the grace period)."
        }
        "start" | "restart" => "With `wait`: how long to wait, in seconds. The task runs on.",
        _ => "How long to wait, in seconds. The task runs on.",
    };
    json!({
        "description": format!("{what} Running out answers TaskWaitTimedOut (retryable) with the task's status and a log `cursor`: call again to keep waiting."),
        "type": "number",
        "minimum": 0,
        "maximum": MAX_BOUND_S,
        "default": DEFAULT_BOUND_S
    })
}

fn add(schema: &mut Map<String, Value>, name: &str, property: Value) {
    if let Some(Value::Object(properties)) = schema.get_mut("properties") {
        properties.insert(name.into(), property);
    } else {
        schema.insert("properties".into(), json!({ name: property }));
    }
}

/// The item schema of a one-or-batch payload (`anyOf: [item, array of items]`).
fn batch_item(schema: &Value) -> Option<&Value> {
    let alternatives = schema.get("anyOf")?.as_array()?;
    match alternatives.as_slice() {
        [one, many] if many.get("type") == Some(&json!("array")) => Some(one),
        _ => None,
    }
}

/// `schema` with every `{"$ref": "#/$defs/X"}` replaced by the definition (merged with the
/// keys beside the reference), and `$defs` dropped: not every client resolves references.
pub fn inline(schema: Value) -> Value {
    let Value::Object(mut root) = schema else {
        return schema;
    };
    let defs = match root.remove("$defs") {
        Some(Value::Object(defs)) => defs,
        _ => Map::new(),
    };
    let mut root = Value::Object(root);
    resolve(&mut root, &defs, 0);
    root
}

fn resolve(value: &mut Value, defs: &Map<String, Value>, depth: usize) {
    // The payload and answer types hold no recursive type; a depth bound keeps it so.
    assert!(depth < 64, "a schema nests references too deeply");
    match value {
        Value::Object(map) => {
            let target = map
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/$defs/"))
                .and_then(|name| defs.get(name))
                .cloned();
            if let Some(Value::Object(definition)) = target {
                map.remove("$ref");
                for (key, value) in definition {
                    map.entry(key).or_insert(value);
                }
                resolve(value, defs, depth + 1);
                return;
            }
            for child in map.values_mut() {
                resolve(child, defs, depth);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| resolve(v, defs, depth)),
        _ => {}
    }
}

/// The tool's own arguments, taken out of the arguments before the rest is parsed as the
/// command's payload.
#[derive(Debug, Default)]
pub struct Extra {
    /// The bound of a blocking call (default 25 s).
    pub bound: Duration,
    pub wait: bool,
    pub follow: bool,
    pub concurrency: Option<usize>,
    pub output: Option<String>,
}

/// Takes the tool's own arguments out of `args`, checked.
pub fn take_extra(entry: &ToolEntry, args: &mut JsonObject) -> Result<Extra> {
    let mut extra = Extra {
        bound: Duration::from_secs_f64(DEFAULT_BOUND_S),
        ..Extra::default()
    };
    for (name, _) in extra_arguments(entry) {
        let Some(value) = args.remove(name) else {
            continue;
        };
        if value.is_null() {
            continue;
        }
        match name {
            "wait" => extra.wait = boolean(name, &value)?,
            "follow" => extra.follow = boolean(name, &value)?,
            "concurrency" => {
                let n = value
                    .as_u64()
                    .filter(|n| (1..=65535).contains(n))
                    .ok_or_else(|| {
                        Error::input_at(
                            name,
                            format!("concurrency: {value} is not a number from 1 to 65535"),
                            "Give how many of the items may run at once, e.g. 4.",
                        )
                    })?;
                extra.concurrency = Some(n as usize);
            }
            "output" => {
                let mode = value
                    .as_str()
                    .filter(|m| ["auto", "inline", "artifact"].contains(m))
                    .ok_or_else(|| {
                        Error::input_at(
                            name,
                            format!("output: {value} is not auto, inline or artifact"),
                            "Give \"auto\" (the default), \"inline\" or \"artifact\".",
                        )
                    })?;
                extra.output = Some(mode.to_owned());
            }
            bound => {
                let seconds = value
                    .as_f64()
                    .filter(|s| (0.0..=MAX_BOUND_S).contains(s))
                    .ok_or_else(|| {
                        Error::input_at(
                            bound,
                            format!("{bound}: {value} is not a number of seconds from 0 to {MAX_BOUND_S}"),
                            format!("Give at most {MAX_BOUND_S} seconds, and call again to keep waiting."),
                        )
                    })?;
                extra.bound = Duration::from_secs_f64(seconds);
            }
        }
    }
    Ok(extra)
}

fn boolean(name: &str, value: &Value) -> Result<bool> {
    value.as_bool().ok_or_else(|| {
        Error::input_at(
            name,
            format!("{name}: invalid type: {value}, expected a boolean"),
            "Give true or false.",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field of a command's payload is an argument of its tool, and no input schema
    /// has a combinator or a reference at its root.
    #[test]
    fn every_payload_field_is_a_flat_argument() {
        for entry in &catalog::TOOLS {
            let schema = Value::Object(input_schema(entry));
            let text = schema.to_string();
            assert!(!text.contains("$ref"), "{}: {text}", entry.name);
            for key in ["oneOf", "anyOf", "allOf", "if", "$defs"] {
                assert!(
                    schema.get(key).is_none(),
                    "{}: {key} at the root",
                    entry.name
                );
            }
            assert_eq!(schema["type"], "object");
            let Some(payload) = registered(entry.name, Kind::Input) else {
                continue;
            };
            let payload = batch_item(&payload).cloned().unwrap_or(payload);
            for field in payload["properties"]
                .as_object()
                .expect("properties")
                .keys()
            {
                assert!(
                    schema["properties"].get(field).is_some(),
                    "{}: {field} is missing",
                    entry.name
                );
            }
        }
    }

    #[test]
    fn output_schemas_are_objects_without_references() {
        for entry in &catalog::TOOLS {
            let schema = Value::Object(output_schema(entry.name));
            assert_eq!(schema["type"], "object", "{}", entry.name);
            assert!(!schema.to_string().contains("$ref"), "{}", entry.name);
        }
    }

    #[test]
    fn bounds_are_checked_and_default_to_25_s() {
        let wait = catalog::TOOLS.iter().find(|t| t.name == "wait").unwrap();
        let mut args = JsonObject::new();
        assert_eq!(
            take_extra(wait, &mut args).unwrap().bound,
            Duration::from_secs(25)
        );
        for bad in [json!(51), json!(-1), json!("5")] {
            let mut args = json!({"id": "x", "timeout_s": bad})
                .as_object()
                .unwrap()
                .clone();
            let error = take_extra(wait, &mut args).unwrap_err();
            assert_eq!(error.details()["path"], "timeout_s", "{bad}");
        }
    }
}
